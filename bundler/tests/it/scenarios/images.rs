//! Images: references the spec lacks, test-only simulator annotations, and the platform
//! filter on the multi-arch web image.

use std::ffi::OsStr;

use tests::oci_fixtures::skopeo_inspect_raw;
use tests::sample::sample_spec;

use crate::common::*;

const WAIT_FOR: &str = "quay.io/sealift-sample/wait-for:2.1.0";

/// A copy of the sample app 1.0.0 whose api Deployment has an init container with an
/// image the spec does not list.
fn spec_with_unlisted_image(lab: &Lab) -> std::path::PathBuf {
    let dir = lab.at("app");
    let spec = copy_sample("1.0.0", &dir);
    edit(
        &dir.join("chart/templates/api-deployment.yaml"),
        "    spec:\n      containers:\n",
        &format!(
            "    spec:\n      initContainers:\n        - name: wait-for-db\n          image: {WAIT_FOR}\n      containers:\n"
        ),
    );
    spec
}

#[test]
fn image_the_spec_lacks_is_a_warning_and_an_error_with_strict() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let spec = spec_with_unlisted_image(&lab);

    let out = lab.at("lenient.sealift");
    lab.build(&spec, "1.0.0", &out).run().ok().stderr_has(&format!(
        " WARN the render references images the spec does not list: {WAIT_FOR}\n"
    ));
    let v = verify_json(&out, &lab.vendor.roots);
    assert_eq!(v["images"].as_array().unwrap().len(), 3);

    let strict = lab.at("strict.sealift");
    let r = lab.build(&spec, "1.0.0", &strict).arg("--strict").run().refused();
    assert_eq!(
        r.error_line(),
        format!("error: the render references images the spec does not list: {WAIT_FOR}")
    );
    assert_eq!(r.hints(), ["hint: add them to `images` in the spec"]);
    assert!(!strict.exists());
}

#[test]
fn simulator_annotations_are_refused_unless_allowed() {
    let lab = Lab::with_versions(&["3.0.0"]);
    let out = lab.at("failing.sealift");
    let r = lab.build(sample_spec("3.0.0"), "3.0.0", &out).run().refused();
    assert_eq!(
        r.error_line(),
        "error: test-only simulator annotations (sim.sealift.dev/*) found: Deployment sample-app-web (from \
         sample-app/templates/web-deployment.yaml) has sim.sealift.dev/crash-loop"
    );
    assert_eq!(
        r.hints(),
        ["hint: only test bundles for the API simulator carry them (--allow-simulator-annotations)"]
    );
    assert!(!out.exists());

    lab.build(sample_spec("3.0.0"), "3.0.0", &out)
        .arg("--allow-simulator-annotations")
        .run()
        .ok()
        .stderr_has(" WARN bundle carries test-only simulator annotations: Deployment sample-app-web");
    let v = verify_json(&out, &lab.vendor.roots);
    assert_eq!(v["version"], "3.0.0");
    let render = String::from_utf8(tar_entry(&out, "sealift/rendered.yaml")).unwrap();
    assert!(render.contains("sim.sealift.dev/crash-loop: \"true\""), "{render}");
}

/// `inspect FILE --format json`.
fn inspect_json(file: &std::path::Path) -> serde_json::Value {
    bundler([
        OsStr::new("inspect"),
        file.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("json"),
    ])
    .ok()
    .json()
}

#[test]
fn platform_filter_keeps_one_platform_of_the_multi_arch_image_and_records_the_source_digest() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let served = sha256(&skopeo_inspect_raw(lab.registry(), "sealift-sample/web:1.0.0").unwrap());

    let whole = lab.sample_bundle("1.0.0", "whole");
    let web = &inspect_json(&whole)["images"][0];
    assert_eq!(web["name"], "quay.io/sealift-sample/web:1.0.0");
    assert_eq!(web["digest"], served);
    assert_eq!(web["sourceDigest"], serde_json::Value::Null);
    let platforms: Vec<&str> = web["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    let filtered = lab.at("amd64.sealift");
    lab.build(sample_spec("1.0.0"), "1.0.0", &filtered)
        .args(["--platform", "linux/amd64"])
        .run()
        .ok();
    let v = inspect_json(&filtered);
    let web_amd64 = &v["images"][0];
    assert_eq!(web_amd64["sourceDigest"], served);
    assert_ne!(web_amd64["digest"], served);
    assert_eq!(web_amd64["mediaType"], "application/vnd.oci.image.index.v1+json");
    let kept = web_amd64["platforms"].as_array().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["platform"], "linux/amd64");
    assert_eq!(kept[0], web["platforms"][0], "the amd64 manifest is kept as it was");
    assert!(web_amd64["totalSize"].as_u64().unwrap() < web["totalSize"].as_u64().unwrap());
    // The other images have one platform and are untouched.
    assert_eq!(v["images"][1]["sourceDigest"], serde_json::Value::Null);
    verify(&filtered, &lab.vendor.roots, &[]).ok();

    // The rewritten index is in the bundle and lists only amd64, and skopeo reads it.
    let dir = lab.at("extracted");
    fs_err::create_dir_all(&dir).unwrap();
    tool(
        "tar",
        [
            OsStr::new("xf"),
            filtered.as_os_str(),
            OsStr::new("-C"),
            dir.as_os_str(),
        ],
    );
    let index = tool(
        "skopeo",
        [
            "inspect".to_owned(),
            "--raw".to_owned(),
            format!("oci:{}:sealift-sample/web:1.0.0", dir.display()),
        ],
    );
    assert_eq!(sha256(&index), web_amd64["digest"].as_str().unwrap());
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
}

#[test]
fn platform_the_index_lacks_is_refused_naming_what_it_has() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let r = lab
        .build(sample_spec("1.0.0"), "1.0.0", lab.at("x.sealift"))
        .args(["--platform", "linux/s390x"])
        .run()
        .refused();
    assert_eq!(
        r.error_line(),
        format!(
            "error: image quay.io/sealift-sample/web:1.0.0 (pulled from {}): platform linux/s390x not found; the \
             image has linux/amd64, linux/arm64",
            lab.registry().addr()
        )
    );
}

#[test]
fn two_images_mapping_to_one_target_repository_are_refused_with_a_hint() {
    let lab = Lab::offline();
    let dir = lab.at("app");
    let spec = copy_sample("1.0.0", &dir);
    edit(
        &spec,
        "  - name: quay.io/sealift-sample/db:1.0.0\n",
        "  - name: quay.io/sealift-sample/db:1.0.0\n  - name: ghcr.io/sealift-sample/web:1.0.0\n",
    );
    let r = lab
        .build(&spec, "1.0.0", lab.at("x.sealift"))
        // Never the network, even if the check moved after pulling.
        .args(["--registry-override", &format!("ghcr.io={CLOSED_LOOPBACK}")])
        .run()
        .refused()
        .stderr_has(
            " WARN image ghcr.io/sealift-sample/web:1.0.0 is listed in the spec but the render never mentions it",
        );
    assert_eq!(
        r.error_line(),
        "error: images quay.io/sealift-sample/web:1.0.0 and ghcr.io/sealift-sample/web:1.0.0 both map to target \
         repository sealift-sample/web (hint: set `target` on one of them)"
    );
}

#[test]
fn image_pinned_by_digest_gives_the_same_bundle_and_an_unknown_digest_is_refused() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let by_tag = lab.sample_bundle("1.0.0", "by-tag");
    let db = sha256(&skopeo_inspect_raw(lab.registry(), "sealift-sample/db:1.0.0").unwrap());
    let dir = lab.at("app");
    let spec = copy_sample("1.0.0", &dir);
    let pin = |digest: &str| {
        let text = fs_err::read_to_string(tests::sample::sample_spec("1.0.0")).unwrap();
        let name = "  - name: quay.io/sealift-sample/db:1.0.0\n";
        assert!(text.contains(name));
        fs_err::write(
            &spec,
            text.replacen(
                name,
                &format!("{name}    source:\n      registry:\n        digest: {digest}\n"),
                1,
            ),
        )
        .unwrap();
    };

    pin(&db);
    let pinned = lab.at("pinned.sealift");
    lab.build(&spec, "1.0.0", &pinned).run().ok();
    assert!(fs_err::read(&pinned).unwrap() == fs_err::read(&by_tag).unwrap());

    let unknown = format!("sha256:{}", "1".repeat(64));
    pin(&unknown);
    let r = lab.build(&spec, "1.0.0", lab.at("unknown.sealift")).run().refused();
    assert_eq!(
        r.error_line(),
        format!(
            "error: image quay.io/sealift-sample/db:1.0.0 (pulled from {}): manifest unknown",
            lab.registry().addr()
        )
    );
    r.stderr_has(&format!("/v2/sealift-sample/db/manifests/{unknown}"));
}
