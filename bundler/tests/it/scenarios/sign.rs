//! Co-signing in place and the detached flow: a release threshold of two is met by a
//! second signature added to the head only; signatures made by openssl are attached;
//! signatures by keys outside the root are refused.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use tests::sample::sample_spec;

use crate::common::*;

/// A root whose release threshold is 2 of keys A and B (and a key C it does not list).
struct TwoOfTwo {
    a: KeyPair,
    b: KeyPair,
    c: KeyPair,
    roots: PathBuf,
}

fn two_of_two(lab: &Lab) -> TwoOfTwo {
    let keys = lab.at("cosign-keys");
    let (a, b, c) = (keygen(&keys, "a"), keygen(&keys, "b"), keygen(&keys, "c"));
    let roots = lab.at("cosign-roots");
    root_init(&roots, &lab.vendor.root, &[&a.public, &b.public], Some(2)).ok();
    TwoOfTwo { a, b, c, roots }
}

/// Builds the sample app signed by A only.
fn signed_by_a(lab: &Lab, t: &TwoOfTwo, name: &str) -> PathBuf {
    let out = lab.at(name);
    let r = lab
        .build(sample_spec("1.0.0"), "1.0.0", &out)
        .keys(&[&t.a.key])
        .root_dir(&t.roots)
        .run()
        .ok();
    r.stderr_has(&format!(
        " WARN {} has 1 of the 2 release signatures it needs: it verifies only once co-signed",
        out.display()
    ))
    .stdout_has(&format!("written {} (not yet verifiable: co-sign it)", out.display()));
    out
}

/// Everything after the head entry.
fn after_head(file: &Path) -> Vec<u8> {
    let (_, data, size) = entries(file)[0].clone();
    fs_err::read(file).unwrap()[data + size.div_ceil(512) * 512..].to_vec()
}

fn sign(file: &Path, args: &[&OsStr]) -> Run {
    let mut all: Vec<OsString> = vec!["sign".into(), file.into()];
    all.extend(args.iter().map(|a| a.to_os_string()));
    bundler(all)
}

#[test]
fn bundle_below_release_threshold_verifies_after_co_signing_in_place() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let t = two_of_two(&lab);
    let file = signed_by_a(&lab, &t, "cosign.sealift");
    let identity = sha256(&manifest_payload(&file));
    let size = fs_err::metadata(&file).unwrap().len();
    let rest = after_head(&file);

    verify(&file, &t.roots, &[]).refused().stderr_has(
        "caused by: release signatures are not trusted\n  caused by: release threshold not met: 1 valid \
             signatures by distinct release keys, 2 required",
    );

    sign(&file, &[OsStr::new("--key"), t.b.key.as_os_str()])
        .ok()
        .stderr_has(&format!("signed by {}", t.b.id));

    let v = verify_json(&file, &t.roots);
    assert_eq!(v["identity"], identity, "co-signing does not change the identity");
    let mut signers = vec![t.a.id.clone(), t.b.id.clone()];
    signers.sort();
    assert_eq!(v["signers"], serde_json::json!(signers));
    assert_eq!(
        fs_err::metadata(&file).unwrap().len(),
        size,
        "the file size is unchanged"
    );
    assert!(after_head(&file) == rest, "only the head was rewritten");

    // The same key twice is refused, and the file stays valid.
    sign(&file, &[OsStr::new("--key"), t.b.key.as_os_str()])
        .refused()
        .stderr_has(&format!("error: cannot sign with {}", t.b.key.display()))
        .stderr_has(&format!(
            "caused by: envelope has more than one signature by key {}",
            t.b.id
        ));
    verify(&file, &t.roots, &[]).ok();
}

#[test]
fn detached_signature_made_by_openssl_over_the_pae_is_attached_and_verifies() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let t = two_of_two(&lab);
    let file = signed_by_a(&lab, &t, "detached.sealift");
    let pae = lab.at("pae.bin");
    let sig = lab.at("sig.bin");
    sign(&file, &[OsStr::new("--print-pae"), pae.as_os_str()]).ok();
    tool(
        "openssl",
        [
            OsStr::new("pkeyutl"),
            OsStr::new("-sign"),
            OsStr::new("-inkey"),
            t.b.key.as_os_str(),
            OsStr::new("-rawin"),
            OsStr::new("-in"),
            pae.as_os_str(),
            OsStr::new("-out"),
            sig.as_os_str(),
        ],
    );

    // A signature presented with another key's public half is refused before attaching.
    sign(
        &file,
        &[
            OsStr::new("--attach"),
            sig.as_os_str(),
            OsStr::new("--pub"),
            t.a.public.as_os_str(),
        ],
    )
    .refused()
    .stderr_has(&format!(
        "error: signature {} does not verify with {} over this bundle",
        sig.display(),
        t.a.public.display()
    ));
    // --attach needs --pub.
    sign(&file, &[OsStr::new("--attach"), sig.as_os_str()])
        .usage()
        .stderr_has("--pub <PUB>");

    sign(
        &file,
        &[
            OsStr::new("--attach"),
            sig.as_os_str(),
            OsStr::new("--pub"),
            t.b.public.as_os_str(),
        ],
    )
    .ok()
    .stderr_has(&format!("attached signature by {}", t.b.id));
    let v = verify_json(&file, &t.roots);
    assert_eq!(v["signers"].as_array().unwrap().len(), 2);
}

#[test]
fn attached_signature_by_a_key_outside_the_root_is_refused_by_verify() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let t = two_of_two(&lab);
    let file = lab.sample_bundle("1.0.0", "sample");
    let pae = lab.at("pae.bin");
    let sig = lab.at("sig.bin");

    sign(&file, &[])
        .refused()
        .stderr_has("error: nothing to do")
        .hint_has("pass --key K to co-sign, or --print-pae / --attach for detached signing");

    sign(&file, &[OsStr::new("--print-pae"), pae.as_os_str()]).ok();
    tool(
        "openssl",
        [
            OsStr::new("pkeyutl"),
            OsStr::new("-sign"),
            OsStr::new("-inkey"),
            t.c.key.as_os_str(),
            OsStr::new("-rawin"),
            OsStr::new("-in"),
            pae.as_os_str(),
            OsStr::new("-out"),
            sig.as_os_str(),
        ],
    );
    sign(
        &file,
        &[
            OsStr::new("--attach"),
            sig.as_os_str(),
            OsStr::new("--pub"),
            t.c.public.as_os_str(),
        ],
    )
    .ok();
    let r = lab.verify(&file, &[]).refused();
    assert_eq!(r.error_line(), format!("error: {} is refused", file.display()));
    r.stderr_has(&format!(
        "caused by: release signatures are not trusted\n  caused by: signature by unknown key {}",
        t.c.id
    ));
}
