//! Building the sample app from the real registry (anonymous, htpasswd with a docker
//! `config.json`, TLS with a test CA), verifying it, and reading it with `tar` and skopeo.

use std::ffi::OsStr;

use tests::oci_fixtures::skopeo_inspect_raw;
use tests::registry::{RegistryAuth, RegistryOptions};
use tests::sample::SAMPLE_COMPONENTS;

use crate::common::*;

/// The digest the registry serves for `sealift-sample/COMPONENT:1.0.0`, read by skopeo.
fn served_digest(lab: &Lab, component: &str) -> String {
    sha256(&skopeo_inspect_raw(lab.registry(), &format!("sealift-sample/{component}:1.0.0")).unwrap())
}

#[test]
fn sample_app_built_from_anonymous_registry_verifies_with_expected_summary() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");

    let text = lab.verify(&file, &[]).ok();
    assert!(
        text.stdout.starts_with(&format!("verified {}\n", file.display())),
        "{}",
        text.stdout
    );

    let v = verify_json(&file, &lab.vendor.roots);
    assert_eq!(v["verified"], true);
    assert_eq!(v["product"], "sample-app");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["sequence"], 1);
    assert_eq!(v["minSequence"], 0);
    assert_eq!(v["rootVersion"], 1);
    // The identity is the sha256 of the manifest payload in the head.
    assert_eq!(v["identity"], sha256(&manifest_payload(&file)));
    // Signed by the release key, whose id is the sha256 of its SPKI DER (computed by openssl).
    assert_eq!(v["signers"], serde_json::json!([lab.vendor.release.id]));
    assert_eq!(lab.vendor.release.id, openssl_key_id(&lab.vendor.release.public));
    assert_eq!(v["size"], fs_err::metadata(&file).unwrap().len());
    assert_eq!(v["created"], rfc3339(lab.epoch));

    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for (image, component) in images.iter().zip(SAMPLE_COMPONENTS) {
        assert_eq!(image["name"], format!("quay.io/sealift-sample/{component}:1.0.0"));
        assert_eq!(image["target"], format!("sealift-sample/{component}"));
        // Byte for byte what the registry serves.
        assert_eq!(image["digest"], served_digest(&lab, component));
    }
    assert_eq!(
        images[0]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(images[1]["platforms"], serde_json::json!([]));
}

#[test]
fn builds_from_htpasswd_registry_with_credentials_from_docker_config() {
    let lab = Lab::htpasswd(&["1.0.0"]);
    let out = lab.at("auth.sealift");

    // Without credentials the registry refuses; the error names the image, the mirror and
    // the docker config that had no credentials for it.
    let refused = lab
        .build(tests::sample::sample_spec("1.0.0"), "1.0.0", &out)
        .run()
        .refused();
    let addr = lab.registry().addr();
    assert_eq!(
        refused.error_line(),
        format!(
            "error: image quay.io/sealift-sample/web:1.0.0 (pulled from {addr}): not authorized: anonymous access was \
             refused and {} has no credentials for {addr}",
            lab.docker_config.display()
        )
    );
    assert!(!out.exists(), "no bundle is written when a build fails");

    let config = lab.registry().docker_config().unwrap();
    lab.build(tests::sample::sample_spec("1.0.0"), "1.0.0", &out)
        .docker_config(&config)
        .run()
        .ok();
    let v = verify_json(&out, &lab.vendor.roots);
    assert_eq!(v["images"][0]["digest"], served_digest(&lab, "web"));
}

#[test]
fn builds_from_tls_registry_trusting_the_test_ca() {
    let lab = Lab::with_registry(
        RegistryOptions {
            auth: RegistryAuth::Anonymous,
            tls: true,
        },
        &["1.0.0"],
    );
    let out = lab.at("tls.sealift");
    let ca = lab.registry().ca_pem_path().unwrap();

    // An untrusted certificate is a TLS error, never a silent fall-back to plain HTTP.
    let refused = lab
        .build(tests::sample::sample_spec("1.0.0"), "1.0.0", &out)
        .run()
        .refused();
    let addr = lab.registry().addr();
    assert_eq!(
        refused.error_line(),
        format!(
            "error: image quay.io/sealift-sample/web:1.0.0 (pulled from {addr}): the TLS certificate of {addr} is not \
             trusted (pass the CA that signed it)"
        )
    );
    let refused = refused.stderr_has("caused by: invalid peer certificate: UnknownIssuer");
    assert!(!out.exists(), "{}", refused.stderr);

    lab.build(tests::sample::sample_spec("1.0.0"), "1.0.0", &out)
        .arg("--registry-ca")
        .arg(&ca)
        .run()
        .ok();
    let v = verify_json(&out, &lab.vendor.roots);
    assert_eq!(v["images"][2]["digest"], served_digest(&lab, "db"));
}

#[test]
fn tar_lists_head_then_metadata_then_blobs() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");
    let names = tar_list(&file);
    assert_eq!(
        names[..7],
        [
            "sealift/head.json",
            "sealift/chart.tgz",
            "sealift/rendered.yaml",
            "sealift/variables.json",
            "sealift/migrations.json",
            "oci-layout",
            "index.json",
        ]
    );
    assert!(names.len() > 7);
    assert!(names[7..].iter().all(|n| n.starts_with("blobs/sha256/")), "{names:?}");
    // Blobs in manifest image order: the first is the web index itself.
    assert_eq!(
        format!("sha256:{}", &names[7]["blobs/sha256/".len()..]),
        served_digest(&lab, "web")
    );
}

#[test]
fn extracted_bundle_is_an_oci_layout_skopeo_copies_from() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");
    let dir = lab.at("extracted");
    fs_err::create_dir_all(&dir).unwrap();
    tool(
        "tar",
        [OsStr::new("xf"), file.as_os_str(), OsStr::new("-C"), dir.as_os_str()],
    );

    for component in SAMPLE_COMPONENTS {
        let other = lab.at(&format!("copy-{component}"));
        tool(
            "skopeo",
            [
                "--insecure-policy".to_owned(),
                "copy".to_owned(),
                "--all".to_owned(),
                "--preserve-digests".to_owned(),
                "--quiet".to_owned(),
                format!("oci:{}:sealift-sample/{component}:1.0.0", dir.display()),
                format!("oci:{}:x", other.display()),
            ],
        );
        // The copy holds the very manifest the registry serves.
        let raw = tool(
            "skopeo",
            [
                "inspect".to_owned(),
                "--raw".to_owned(),
                format!("oci:{}:x", other.display()),
            ],
        );
        assert_eq!(sha256(&raw), served_digest(&lab, component), "{component}");
    }
}
