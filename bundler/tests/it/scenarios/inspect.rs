//! `inspect` (head and metadata only; UNTRUSTED without a root) and `rbac`.

use std::ffi::OsStr;
use std::path::Path;

use serde_json::{Value, json};

use crate::common::*;

fn inspect(file: &Path, extra: &[&OsStr]) -> Run {
    let mut args = vec![OsStr::new("inspect"), file.as_os_str()];
    args.extend_from_slice(extra);
    bundler(args)
}

#[test]
fn inspect_labels_output_untrusted_without_a_root_and_trusted_with_it() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");
    let identity = sha256(&manifest_payload(&file));

    let untrusted = inspect(&file, &[]).ok();
    assert_eq!(
        untrusted.stdout.lines().next().unwrap(),
        "trust      UNTRUSTED (no root given)"
    );
    let untrusted = untrusted
        .stdout_has(&format!("identity   {identity}\n"))
        .stdout_has("product    sample-app\n")
        .stdout_has("version    1.0.0 (sequence 1, minSequence 0)\n");

    let trusted = inspect(&file, &[OsStr::new("--root-dir"), lab.vendor.roots.as_os_str()]).ok();
    assert_eq!(trusted.stdout.lines().next().unwrap(), "trust      trusted");
    assert_eq!(
        trusted.stdout.lines().skip(1).collect::<Vec<_>>(),
        untrusted.stdout.lines().skip(1).collect::<Vec<_>>()
    );

    // Another vendor's root is refused.
    let other = Vendor::new(&lab.at("other-vendor"));
    inspect(&file, &[OsStr::new("--root-dir"), other.roots.as_os_str()])
        .refused()
        .stderr_has("root version 1 differs from the root version 1 already trusted");

    // Inspect reads only the head and metadata: a damaged blob does not stop it, verify does.
    let (name, at, _) = entries(&file).last().unwrap().clone();
    let damaged = tampered(&file, &lab.at("damaged.sealift"), |b| b[at + 7] ^= 0x20);
    inspect(&damaged, &[OsStr::new("--root-dir"), lab.vendor.roots.as_os_str()]).ok();
    lab.verify(&damaged, &[])
        .refused()
        .stderr_has(&format!("caused by: entry {name} has digest"));
}

#[test]
fn inspect_json_lists_chart_images_variables_steps_policy_and_waves_hiding_sensitive_defaults() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let dir = lab.at("app");
    let spec = copy_sample("1.0.0", &dir);
    edit(
        &spec,
        "    sensitive: true\n    generate:\n      length: 24\n      charset: alphanumeric\n",
        "    sensitive: true\n    default: Hunter2Hunter2\n",
    );
    let file = lab.at("sample.sealift");
    lab.build(&spec, "1.0.0", &file).run().ok();
    let v = inspect(&file, &[OsStr::new("--format"), OsStr::new("json")])
        .ok()
        .json();

    assert_eq!(v["trust"], "UNTRUSTED (no root given)");
    assert_eq!(v["identity"], sha256(&manifest_payload(&file)));
    assert_eq!(v["signers"], json!([lab.vendor.release.id]));
    let chart = &v["chart"];
    assert_eq!(chart["name"], "sample-app");
    assert_eq!(chart["version"], "1.0.0");
    assert_eq!(chart["appVersion"], "1.0.0");
    assert_eq!(chart["releaseName"], "sample-app");
    assert_eq!(chart["namespace"], "sample");
    assert_eq!(chart["kubeVersion"], "v1.33.0");
    assert!(chart["helmVersion"].as_str().unwrap().starts_with("v4."), "{chart}");

    // Images: digests as verify reports them; sizes are the sums of their blobs' entries.
    let verified = verify_json(&file, &lab.vendor.roots);
    let manifest: Value = serde_json::from_slice(&manifest_payload(&file)).unwrap();
    let sizes: std::collections::BTreeMap<String, u64> =
        entries(&file).into_iter().map(|(n, _, s)| (n, s as u64)).collect();
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for (i, image) in images.iter().enumerate() {
        assert_eq!(image["digest"], verified["images"][i]["digest"]);
        assert_eq!(image["tags"], json!(["1.0.0"]));
        let blobs = manifest["images"][i]["blobs"].as_array().unwrap();
        let sum: u64 = blobs
            .iter()
            .map(|d| sizes[&format!("blobs/sha256/{}", &d.as_str().unwrap()["sha256:".len()..])])
            .sum();
        assert_eq!(image["totalSize"], sum, "{}", image["name"]);
    }
    assert_eq!(images[0]["platforms"].as_array().unwrap().len(), 2);
    for p in images[0]["platforms"].as_array().unwrap() {
        assert_eq!(p["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert!(p["size"].as_u64().unwrap() > 0);
    }

    let vars = v["variables"].as_array().unwrap();
    let summary: Vec<(&str, &Value, &Value, &Value)> = vars
        .iter()
        .map(|x| (x["name"].as_str().unwrap(), &x["default"], &x["sensitive"], &x["slots"]))
        .collect();
    assert_eq!(
        summary,
        [
            ("hostname", &json!("sample.example.com"), &json!(false), &json!(2)),
            ("replicas", &json!(2), &json!(false), &json!(1)),
            ("adminPassword", &Value::Null, &json!(true), &json!(1)),
            ("storageGi", &json!(1), &json!(false), &json!(1)),
        ]
    );
    // The default is in the bundle (the agent needs it) but inspect never prints it.
    let entry = String::from_utf8(tar_entry(&file, "sealift/variables.json")).unwrap();
    assert!(entry.contains("\"default\": \"Hunter2Hunter2\""));
    let text = inspect(&file, &[]).ok();
    assert!(!text.stdout.contains("Hunter2") && !v.to_string().contains("Hunter2"));
    text.stdout_has("  adminPassword (string), sensitive  1 slot(s)");

    assert_eq!(v["namespace"], json!({"default": "sample", "slots": 1}));
    assert_eq!(v["releaseName"], "sample-app");
    let steps: Vec<(&str, &str, &str)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["kind"].as_str().unwrap(),
                s["phase"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("migrate-schema", "migration", "preUpgrade"),
            ("dump-db", "backup", "backup"),
            ("load-db", "restore", "restore")
        ]
    );
    assert_eq!(v["steps"][0]["fromVersions"], "<1.0.0");
    assert_eq!(v["steps"][0]["reversible"], true);
    assert_eq!(v["upgradePolicy"], json!({"kubeVersions": ">=1.27.0"}));
    assert_eq!(
        v["waves"],
        json!([
            {"name": "data", "objects": 1},
            {"name": "backend", "objects": 1},
            {"name": "frontend", "objects": 1},
            {"name": "rest", "objects": 10},
        ])
    );
}

/// The YAML documents `rbac` prints, by kind.
fn rbac_documents(stdout: &str) -> Vec<Value> {
    stdout
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect()
}

/// `(apiGroup, resource)` pairs of a role's rules.
fn grants(role: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                out.push((g.as_str().unwrap().to_owned(), r.as_str().unwrap().to_owned()));
            }
        }
    }
    out
}

#[test]
fn rbac_prints_the_role_and_cluster_role_the_bundle_needs() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");
    let r = bundler([
        OsStr::new("rbac"),
        file.as_os_str(),
        OsStr::new("--root-dir"),
        lab.vendor.roots.as_os_str(),
    ])
    .ok();
    let docs = rbac_documents(&r.stdout);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]);

    let role = &docs[0];
    assert_eq!(role["metadata"]["namespace"], "sample");
    let namespaced = grants(role);
    for (group, resource) in [
        ("apps", "statefulsets"),
        ("apps", "deployments"),
        ("batch", "jobs"),
        ("", "secrets"),
        ("", "configmaps"),
        ("networking.k8s.io", "ingresses"),
        ("sample.sealift.dev", "widgets"),
    ] {
        assert!(
            namespaced.contains(&(group.to_owned(), resource.to_owned())),
            "Role lacks {group}/{resource}: {namespaced:?}"
        );
    }
    let cluster = grants(&docs[2]);
    assert!(
        cluster.contains(&(
            "apiextensions.k8s.io".to_owned(),
            "customresourcedefinitions".to_owned()
        )),
        "{cluster:?}"
    );
    assert_eq!(docs[1]["subjects"][0]["name"], "sealift-agent");

    // Another namespace, and without a root the output is the same but a warning says so.
    let other = bundler([
        OsStr::new("rbac"),
        file.as_os_str(),
        OsStr::new("--namespace"),
        OsStr::new("shop"),
    ])
    .ok()
    .stderr_has("UNTRUSTED");
    let docs = rbac_documents(&other.stdout);
    assert_eq!(docs[0]["metadata"]["namespace"], "shop");
    // The bindings name the agent's ServiceAccount where the agent runs, not the app's namespace.
    assert_eq!(docs[1]["subjects"][0]["namespace"], "sealift-system");
    assert_eq!(docs[3]["subjects"][0]["namespace"], "sealift-system");
    let elsewhere = bundler([
        OsStr::new("rbac"),
        file.as_os_str(),
        OsStr::new("--agent-namespace"),
        OsStr::new("ops"),
    ])
    .ok();
    let docs = rbac_documents(&elsewhere.stdout);
    assert_eq!(docs[1]["subjects"][0]["namespace"], "ops");
    assert_eq!(docs[3]["subjects"][0]["namespace"], "ops");
}

/// `inspect FILE | head -1`: a reader that closes the pipe early ends the program quietly,
/// for every output form (text, JSON, rbac) — exit 0, nothing on stderr, no panic.
#[test]
fn a_closed_stdout_ends_inspect_quietly() {
    let file = tests::sample::repo_root().join("testdata/format-1/sample-app-1.0.0.sealift");
    let forms: [&[&str]; 3] = [&["inspect"], &["inspect", "--format", "json"], &["rbac"]];
    for args in forms {
        // The pipe's reader is gone before the program writes its first byte: the first write
        // fails with EPIPE every time, not only when the output outgrows the pipe buffer.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = bundler_cmd()
            .args(args)
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }

    // The shell pipeline itself, under pipefail.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; "$0" inspect "$1" | head -1"#)
        .arg(bin())
        .arg(&file)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "trust      UNTRUSTED (no root given)\n"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
