//! Root rotation: a bundle signed by the release key of root version 2 verifies against a
//! customer who trusts only `1.root.json`, because the head carries the whole chain; a
//! forged rotation (signed only by a fresh key) is refused naming the root chain.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use schemas::head::Head;
use tests::sample::sample_spec;

use crate::common::*;

/// A directory holding a copy of `roots/1.root.json` only.
fn first_root_only(lab: &Lab, name: &str) -> PathBuf {
    let dir = lab.at(name);
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::copy(lab.vendor.roots.join("1.root.json"), dir.join("1.root.json")).unwrap();
    dir
}

/// `root rotate --root-dir DIR --key K… [--root-pub P] --release-pub R`.
fn rotate(dir: &Path, signers: &[&Path], root_pub: Option<&Path>, release_pub: &Path) -> Run {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("root"),
        OsStr::new("rotate"),
        OsStr::new("--root-dir"),
        dir.as_os_str(),
    ];
    for k in signers {
        args.extend([OsStr::new("--key"), k.as_os_str()]);
    }
    if let Some(p) = root_pub {
        args.extend([OsStr::new("--root-pub"), p.as_os_str()]);
    }
    args.extend([OsStr::new("--release-pub"), release_pub.as_os_str()]);
    bundler(args)
}

#[test]
fn bundle_signed_by_the_rotated_release_key_verifies_against_the_first_root_alone() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let anchor = first_root_only(&lab, "customer-roots");
    let next = keygen(&lab.at("keys"), "release-2");
    rotate(&lab.vendor.roots, &[&lab.vendor.root.key], None, &next.public)
        .ok()
        .stdout_has(&format!("{}", lab.vendor.roots.join("2.root.json").display()))
        .stderr_has("the root chain verifies through version 2");

    // The old release key is no longer a release key.
    let out = lab.at("rotated.sealift");
    let r = lab.build(sample_spec("1.0.0"), "1.0.0", &out).run().refused();
    assert_eq!(
        r.error_line(),
        format!(
            "error: key {} ({}) is not a release key of root version 2",
            lab.vendor.release.key.display(),
            lab.vendor.release.id
        )
    );
    assert_eq!(
        r.hints(),
        ["hint: add it with `sealift-bundler root rotate --release-pub …`"]
    );

    lab.build(sample_spec("1.0.0"), "1.0.0", &out)
        .keys(&[&next.key])
        .run()
        .ok();
    let full = verify_json(&out, &lab.vendor.roots);
    assert_eq!(full["rootVersion"], 2);
    assert_eq!(full["signers"], serde_json::json!([next.id]));

    // The customer trusts only version 1; the head carries 1 and 2.
    assert_eq!(head_json(&out)["roots"].as_array().unwrap().len(), 2);
    let anchored = verify_json(&out, &anchor);
    assert_eq!(anchored["rootVersion"], 2);
    assert_eq!(anchored["identity"], full["identity"]);
}

#[test]
fn forged_root_rotation_is_refused_naming_the_root_chain() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let keys = lab.at("attacker");
    let (fresh, evil) = (keygen(&keys, "fresh"), keygen(&keys, "evil"));
    let forged = first_root_only(&lab, "forged-roots");
    rotate(&forged, &[&fresh.key], Some(&fresh.public), &evil.public)
        .ok()
        .stderr_has("WARN the root chain does not verify yet");
    let chain_refusal = format!(
        "error: cannot trust the root directory {dir}\n  caused by: root chain in {dir} does not verify\n  \
         caused by: root version 2 does not verify\n  caused by: previous root threshold not met: 0 valid \
         signatures by distinct previous root keys, 1 required\n",
        dir = forged.display()
    );

    // The vendor side refuses to build from it.
    lab.build(sample_spec("1.0.0"), "1.0.0", lab.at("evil.sealift"))
        .keys(&[&evil.key])
        .root_dir(&forged)
        .run()
        .refused()
        .stderr_has(&chain_refusal);

    // The customer side refuses to trust it.
    let good = lab.sample_bundle("1.0.0", "good");
    verify(&good, &forged, &[]).refused().stderr_has(&chain_refusal);

    // A bundle whose head carries the forged version 2 is refused against version 1.
    let (_, at, size) = entries(&good)[0].clone();
    let mut bytes = fs_err::read(&good).unwrap();
    let mut head = Head::from_entry(&bytes[at..at + size]).unwrap();
    let forged_root: keys::Envelope =
        serde_json::from_slice(&fs_err::read(forged.join("2.root.json")).unwrap()).unwrap();
    head.roots.push(forged_root);
    bytes[at..at + size].copy_from_slice(&head.to_entry_of_size(size).unwrap());
    let spliced = lab.at("spliced.sealift");
    fs_err::write(&spliced, bytes).unwrap();
    let r = lab.verify(&spliced, &[]).refused();
    r.stderr_has(
        "caused by: root chain is not trusted\n  caused by: root version 2 does not verify\n  caused by: previous \
         root threshold not met: 0 valid signatures by distinct previous root keys, 1 required",
    );
}
