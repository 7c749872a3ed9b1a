//! Keys and OpenSSL: openssl-made keys sign bundles, openssl verifies a real bundle's
//! signature over its PAE bytes, encrypted PKCS#8 keys take their passphrase from the
//! environment, and keygen writes what openssl reads.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::Engine as _;
use tests::sample::sample_spec;

use crate::common::*;

fn openssl<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> Vec<u8> {
    tool("openssl", args)
}

#[test]
fn keygen_writes_a_private_key_only_the_owner_reads_and_openssl_reads_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let pair = keygen(dir.path(), "release");
    let mode = fs_err::metadata(&pair.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let derived = openssl([
        OsStr::new("pkey"),
        OsStr::new("-in"),
        pair.key.as_os_str(),
        OsStr::new("-pubout"),
    ]);
    assert_eq!(derived, fs_err::read(&pair.public).unwrap());
    assert_eq!(pair.id, openssl_key_id(&pair.public));
}

#[test]
fn openssl_generated_release_key_signs_a_bundle_that_verifies() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let dir = lab.at("openssl");
    fs_err::create_dir_all(&dir).unwrap();
    let key = dir.join("release.key");
    let public = dir.join("release.pub");
    openssl([
        OsStr::new("genpkey"),
        OsStr::new("-algorithm"),
        OsStr::new("ed25519"),
        OsStr::new("-out"),
        key.as_os_str(),
    ]);
    openssl([
        OsStr::new("pkey"),
        OsStr::new("-in"),
        key.as_os_str(),
        OsStr::new("-pubout"),
        OsStr::new("-out"),
        public.as_os_str(),
    ]);
    let roots = dir.join("roots");
    root_init(&roots, &lab.vendor.root, &[&public], None).ok();

    let out = lab.at("openssl.sealift");
    lab.build(sample_spec("1.0.0"), "1.0.0", &out)
        .keys(&[&key])
        .root_dir(&roots)
        .run()
        .ok();
    let v = verify_json(&out, &roots);
    assert_eq!(v["signers"], serde_json::json!([openssl_key_id(&public)]));

    // Against the lab's own root (another 1.root.json) the bundle is refused.
    lab.verify(&out, &[])
        .refused()
        .stderr_has("caused by: root chain is not trusted\n  caused by: root version 1 differs from the root version 1 already trusted");
}

/// Writes the first release signature of the bundle's head (base64 in head.json) to `to`.
fn first_signature(file: &Path, to: &Path) -> String {
    let head = head_json(file);
    let sig = &head["release"]["signatures"][0];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sig["sig"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 64);
    fs_err::write(to, bytes).unwrap();
    sig["keyid"].as_str().unwrap().to_owned()
}

#[test]
fn openssl_verifies_a_real_bundle_signature_over_the_printed_pae_bytes() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");
    let before = fs_err::read(&file).unwrap();
    let pae = lab.at("pae.bin");
    let sig = lab.at("sig.bin");

    bundler([
        OsStr::new("sign"),
        file.as_os_str(),
        OsStr::new("--print-pae"),
        pae.as_os_str(),
    ])
    .ok()
    .stderr_has(&format!("bytes to sign to {}", pae.display()));
    assert_eq!(
        fs_err::read(&file).unwrap(),
        before,
        "--print-pae leaves the bundle alone"
    );

    // PAE(type, payload) as DSSE defines it, over the manifest payload.
    let payload = manifest_payload(&file);
    let mut expected = format!(
        "DSSEv1 {} application/vnd.sealift.manifest.v1+json {} ",
        "application/vnd.sealift.manifest.v1+json".len(),
        payload.len()
    )
    .into_bytes();
    expected.extend_from_slice(&payload);
    assert_eq!(fs_err::read(&pae).unwrap(), expected);

    assert_eq!(first_signature(&file, &sig), lab.vendor.release.id);
    let args = |pae: &Path| {
        vec![
            "pkeyutl".into(),
            "-verify".into(),
            "-pubin".into(),
            "-inkey".into(),
            lab.vendor.release.public.clone().into_os_string(),
            "-rawin".into(),
            "-in".into(),
            pae.as_os_str().to_owned(),
            "-sigfile".into(),
            sig.clone().into_os_string(),
        ]
    };
    let ok = openssl(args(&pae));
    assert_eq!(String::from_utf8_lossy(&ok).trim(), "Signature Verified Successfully");

    // One changed byte of the PAE and openssl refuses too (the check is not vacuous).
    let bad = lab.at("bad-pae.bin");
    let mut bytes = expected;
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    fs_err::write(&bad, bytes).unwrap();
    let r = tool_run("openssl", args(&bad));
    assert_ne!(r.code, Some(0));
    assert!(r.stdout.contains("Signature Verification Failure"), "{r:?}");
}

#[test]
fn encrypted_pkcs8_release_key_takes_its_passphrase_from_the_environment() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let plain = lab.sample_bundle("1.0.0", "plain");
    let encrypted = lab.at("release.enc.key");
    openssl([
        OsStr::new("pkcs8"),
        OsStr::new("-topk8"),
        OsStr::new("-v2"),
        OsStr::new("aes-256-cbc"),
        OsStr::new("-in"),
        lab.vendor.release.key.as_os_str(),
        OsStr::new("-out"),
        encrypted.as_os_str(),
        OsStr::new("-passout"),
        OsStr::new("pass:correct horse battery"),
    ]);
    assert!(
        fs_err::read_to_string(&encrypted)
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
    let out = lab.at("encrypted.sealift");
    let build = || lab.build(sample_spec("1.0.0"), "1.0.0", &out).keys(&[&encrypted]);

    let r = build().run().refused();
    assert_eq!(
        r.error_line(),
        format!("error: cannot load signing key {}", encrypted.display())
    );
    r.stderr_has(&format!(
        "caused by: private key {} is encrypted: set the environment variable SEALIFT_KEY_PASSPHRASE to its passphrase",
        encrypted.display()
    ));

    build()
        .env("SEALIFT_KEY_PASSPHRASE", "wrong")
        .run()
        .refused()
        .stderr_has("caused by: cannot decrypt private key: wrong passphrase or unsupported encryption");
    assert!(!out.exists());

    build()
        .env("SEALIFT_KEY_PASSPHRASE", "correct horse battery")
        .run()
        .ok();
    // The same key, decrypted: ed25519 is deterministic, so the bundle is the same.
    assert!(fs_err::read(&out).unwrap() == fs_err::read(&plain).unwrap());
}
