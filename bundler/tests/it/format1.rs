//! The committed format-1 bundle (`testdata/format-1/`) keeps verifying in every release,
//! checked with an injected clock so its expiry never matters.

use std::process::Command;

use tests::sample::repo_root;

const AT: &str = "2026-06-01T00:00:00Z";

fn fixture(name: &str) -> std::path::PathBuf {
    repo_root().join("testdata/format-1").join(name)
}

#[test]
fn committed_format_1_bundle_still_verifies() {
    let out = Command::new(env!("CARGO_BIN_EXE_sealift-bundler"))
        .arg("verify")
        .arg(fixture("sample-app-1.0.0.sealift"))
        .arg("--root-dir")
        .arg(fixture("roots"))
        .args(["--product", "sample-app", "--at", AT, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let identity = std::fs::read_to_string(fixture("IDENTITY")).unwrap();
    assert_eq!(v["identity"].as_str(), Some(identity.trim()));
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["images"].as_array().map(Vec::len), Some(3));
}

#[test]
fn committed_format_1_bundle_extracts_to_an_oci_layout_skopeo_reads() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("xf")
        .arg(fixture("sample-app-1.0.0.sealift"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    for image in [
        "sealift-sample/web:1.0.0",
        "sealift-sample/api:1.0.0",
        "sealift-sample/db:1.0.0",
    ] {
        let dest = tempfile::tempdir().unwrap();
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "--quiet"])
            .arg(format!("oci:{}:{image}", dir.path().display()))
            .arg(format!("oci:{}:copy", dest.path().display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn committed_format_1_bundle_is_refused_after_a_byte_flip() {
    let mut bytes = std::fs::read(fixture("sample-app-1.0.0.sealift")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x80;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flipped.sealift");
    std::fs::write(&file, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealift-bundler"))
        .arg("verify")
        .arg(&file)
        .arg("--root-dir")
        .arg(fixture("roots"))
        .args(["--at", AT])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is refused"));
}
