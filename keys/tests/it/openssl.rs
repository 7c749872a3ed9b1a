//! Interoperability with OpenSSL (always installed): its key files load, and it verifies our
//! signatures over PAE bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

use keys::{Envelope, KeyError, MANIFEST_PAYLOAD_TYPE, PublicKey, SigningKey, verify_envelope};
use sha2::{Digest as _, Sha256};

use crate::fixtures::set;

/// A variable no test sets.
const UNSET_VAR: &str = "SEALIFT_TEST_PASSPHRASE_NEVER_SET";

/// Runs openssl and returns its stdout; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn genpkey(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["genpkey", "-algorithm", "ed25519", "-out", name];
    args.extend_from_slice(extra);
    openssl(dir, &args);
    dir.join(name)
}

fn pubout(dir: &Path, key: &str, out: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["pkey", "-in", key, "-pubout", "-out", out];
    args.extend_from_slice(extra);
    openssl(dir, &args);
    dir.join(out)
}

#[test]
fn loads_openssl_key_and_openssl_verifies_our_pae_signature() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let private = genpkey(d, "k.pem", &[]);
    let key = SigningKey::load(&private, UNSET_VAR).unwrap();
    let public = PublicKey::load(pubout(d, "k.pem", "pub.pem", &[])).unwrap();
    assert_eq!(key.public_key(), public);

    // keyid = sha256 of the SPKI DER openssl writes.
    let der = openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"]);
    assert_eq!(public.to_spki_der(), der);
    assert_eq!(public.key_id().to_string(), hex::encode(Sha256::digest(&der)));
    assert_eq!(public.to_spki_pem(), fs_err::read_to_string(d.join("pub.pem")).unwrap());

    // Our signature over the PAE bytes verifies with openssl and with us.
    let mut env = Envelope::new(MANIFEST_PAYLOAD_TYPE, b"{\"version\":\"2.4.0\"}".to_vec());
    env.sign(&key).unwrap();
    verify_envelope(
        &env,
        MANIFEST_PAYLOAD_TYPE,
        &[&keys::KeySet::new(1, vec![public]).unwrap()],
    )
    .unwrap();
    fs_err::write(d.join("pae.bin"), env.pae_bytes()).unwrap();
    fs_err::write(d.join("sig.bin"), &env.signatures[0].sig).unwrap();
    let out = openssl(
        d,
        &[
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "pae.bin", "-sigfile", "sig.bin",
        ],
    );
    assert!(String::from_utf8_lossy(&out).contains("Signature Verified Successfully"));

    // A flipped PAE byte fails in openssl too (the test would be vacuous otherwise).
    let mut pae = env.pae_bytes();
    pae[0] ^= 1;
    fs_err::write(d.join("pae.bin"), pae).unwrap();
    let status = Command::new("openssl")
        .args([
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "pae.bin", "-sigfile", "sig.bin",
        ])
        .current_dir(d)
        .output()
        .unwrap()
        .status;
    assert!(!status.success());
}

#[test]
fn openssl_signature_verifies_with_us() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    genpkey(d, "k.pem", &[]);
    let public = PublicKey::load(pubout(d, "k.pem", "pub.pem", &[])).unwrap();
    let mut env = Envelope::new(MANIFEST_PAYLOAD_TYPE, b"payload".to_vec());
    fs_err::write(d.join("pae.bin"), env.pae_bytes()).unwrap();
    openssl(
        d,
        &[
            "pkeyutl", "-sign", "-inkey", "k.pem", "-rawin", "-in", "pae.bin", "-out", "sig.bin",
        ],
    );
    // Detached signing: the signature is made elsewhere and attached.
    let sig = fs_err::read(d.join("sig.bin")).unwrap();
    env.attach(public.key_id(), sig).unwrap();
    let keys = keys::KeySet::new(1, vec![public]).unwrap();
    verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap();
}

#[test]
fn openssl_reads_our_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = keys::generate_key_files(d, "ours").unwrap();
    let pub_pem = pubout(d, "ours.key", "ours-by-openssl.pub", &[]);
    assert_eq!(
        fs_err::read_to_string(pub_pem).unwrap(),
        fs_err::read_to_string(&files.public_key).unwrap()
    );
}

#[test]
fn loads_encrypted_openssl_key_with_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = genpkey(d, "enc.pem", &["-aes-256-cbc", "-pass", "pass:secret"]);
    let pem = fs_err::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let public = PublicKey::load(pubout(d, "enc.pem", "enc.pub", &["-passin", "pass:secret"])).unwrap();

    let key = SigningKey::from_pkcs8_pem(&pem, Some(b"secret")).unwrap();
    assert_eq!(key.public_key(), public);

    let err = SigningKey::from_pkcs8_pem(&pem, None).unwrap_err();
    assert!(matches!(err, KeyError::PassphraseRequired), "{err:?}");
    assert_eq!(err.to_string(), "private key is encrypted and no passphrase was given");

    let err = SigningKey::from_pkcs8_pem(&pem, Some(b"wrong")).unwrap_err();
    assert!(matches!(err, KeyError::Decrypt { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot decrypt private key: wrong passphrase or unsupported encryption"
    );
}

#[test]
fn loads_key_encrypted_by_openssl_pkcs8_topk8() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    genpkey(d, "plain.pem", &[]);
    openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "plain.pem",
            "-passout",
            "pass:x",
            "-out",
            "topk8.pem",
        ],
    );
    let plain = SigningKey::load(d.join("plain.pem"), UNSET_VAR).unwrap();
    let pem = fs_err::read_to_string(d.join("topk8.pem")).unwrap();
    let key = SigningKey::from_pkcs8_pem(&pem, Some(b"x")).unwrap();
    assert_eq!(key.key_id(), plain.key_id());
}

#[test]
fn load_takes_passphrase_from_the_named_environment_variable() {
    // Tests cannot set variables (that needs `unsafe`), so encrypt with the value of one that
    // is always set: openssl reads PATH from the environment the test runs in.
    assert!(std::env::var_os("PATH").is_some());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = genpkey(d, "enc.pem", &["-aes-256-cbc", "-pass", "env:PATH"]);
    let public = PublicKey::load(pubout(d, "enc.pem", "enc.pub", &["-passin", "env:PATH"])).unwrap();

    let key = SigningKey::load(&path, "PATH").unwrap();
    assert_eq!(key.public_key(), public);

    let err = SigningKey::load(&path, UNSET_VAR).unwrap_err();
    match &err {
        KeyError::PassphraseEnvUnset { path: p, var } => {
            assert_eq!(p, &path);
            assert_eq!(var, UNSET_VAR);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "private key {} is encrypted: set the environment variable {UNSET_VAR} to its passphrase",
            path.display()
        )
    );

    // A wrong passphrase (another variable's value) names the file, with the cause below.
    let path_value = std::env::var_os("PATH").unwrap();
    let other = std::env::vars_os()
        .find_map(|(k, v)| (v != path_value).then(|| k.into_string().ok()).flatten())
        .expect("some variable other than PATH");
    let err = SigningKey::load(&path, &other).unwrap_err();
    match &err {
        KeyError::KeyFile { path: p, source } => {
            assert_eq!(p, &path);
            assert!(matches!(**source, KeyError::Decrypt { .. }), "{source:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn key_set_of_openssl_keys_meets_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = SigningKey::load(genpkey(d, "a.pem", &[]), UNSET_VAR).unwrap();
    let b = SigningKey::load(genpkey(d, "b.pem", &[]), UNSET_VAR).unwrap();
    let keys = set(2, &[&a, &b]);
    let mut env = Envelope::new(MANIFEST_PAYLOAD_TYPE, b"m".to_vec());
    env.sign(&a).unwrap();
    env.sign(&b).unwrap();
    verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap();
}
