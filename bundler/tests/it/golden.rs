//! Golden renders: the committed output of the `helm template` stand-in for the scaffold
//! chart and each sample-app release. `just golden` (SEALIFT_BLESS=1) regenerates them.

use std::path::Path;
use std::process::Command;

use tests::sample::{SAMPLE_VERSIONS, helm_stand_in, repo_root};

fn helm_template(args: &[&str]) -> String {
    let out = Command::new(helm_stand_in())
        .arg("template")
        .args(args)
        .output()
        .expect("run the helm stand-in");
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn check_golden(name: &str, rendered: &str) {
    let path = repo_root().join("testdata/golden").join(name);
    if std::env::var_os("SEALIFT_BLESS").is_some() {
        std::fs::write(&path, rendered).expect("write golden");
        return;
    }
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; run `just golden`", path.display()));
    assert!(
        committed == rendered,
        "{} differs from the render; run `just golden` and review the diff",
        path.display()
    );
}

fn chart(rel: &str) -> String {
    repo_root().join(rel).display().to_string()
}

#[test]
fn golden_scaffold_render_matches() {
    let rendered = helm_template(&["demo", &chart("testdata/charts/scaffold"), "--kube-version", "v1.33.0"]);
    check_golden("scaffold.yaml", &rendered);
}

#[test]
fn golden_sample_app_renders_match() {
    for version in SAMPLE_VERSIONS {
        let dir = chart(&format!("testdata/sample-app/{version}/chart"));
        let rendered = helm_template(&[
            "sample-app",
            &dir,
            "--namespace",
            "sample",
            "--kube-version",
            "v1.33.0",
            "--include-crds",
        ]);
        check_golden(&format!("sample-app-{version}.yaml"), &rendered);
    }
}

#[test]
fn render_follows_values_and_kube_version() {
    let scaffold = chart("testdata/charts/scaffold");
    let base = helm_template(&["demo", &scaffold, "--kube-version", "v1.33.0"]);
    assert!(base.contains("replicas: 1"), "{base}");

    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "replicaCount: 3\ningress:\n  enabled: true\n").unwrap();
    let changed = helm_template(&[
        "demo",
        &scaffold,
        "--kube-version",
        "v1.33.0",
        "-f",
        values.to_str().unwrap(),
    ]);
    assert!(changed.contains("replicas: 3"), "{changed}");
    assert!(
        changed.contains("apiVersion: networking.k8s.io/v1\nkind: Ingress"),
        "{changed}"
    );

    // The scaffold's Ingress picks its apiVersion from the Kubernetes version.
    let old = helm_template(&[
        "demo",
        &scaffold,
        "--kube-version",
        "v1.18.0",
        "-f",
        values.to_str().unwrap(),
    ]);
    assert!(
        old.contains("apiVersion: networking.k8s.io/v1beta1\nkind: Ingress"),
        "{old}"
    );
    assert_ne!(old, changed);
}

#[test]
fn golden_files_exist_for_every_sample_version() {
    for version in SAMPLE_VERSIONS {
        assert!(Path::new(&repo_root().join(format!("testdata/golden/sample-app-{version}.yaml"))).exists());
    }
}
