//! The vendor's root directory: init, sign, rotate, load, and every refusal.

use std::path::Path;

use keys::root_dir::{self, KeySetChange};
use keys::{Envelope, EnvelopeError, KeySetError, MAX_ENVELOPE_BYTES, Role, RootDirError, TrustError};

use crate::fixtures::{key, pubs, release};

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `1.root.json` with root keys 1 and 2 (threshold 2), signed by both; release key 10.
fn initialized() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    root_dir::init(dir.path(), &[key(1), key(2)], vec![], Some(2), pubs(&[&key(10)]), None).unwrap();
    dir
}

#[test]
fn init_sign_rotate_then_the_directory_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (path, doc) = root_dir::init(
        d,
        &[key(1)],
        pubs(&[&key(2), &key(1)]),
        Some(2),
        pubs(&[&key(10)]),
        None,
    )
    .unwrap();
    assert_eq!(path, d.join("1.root.json"));
    assert_eq!(doc.version, 1);
    assert_eq!(
        doc.root_keys.keys().len(),
        2,
        "a signer's own public key is not listed twice"
    );
    assert_eq!(doc.release_keys.threshold(), 1);

    // One of two root signatures so far.
    let err = root_dir::verify(d).unwrap_err();
    match &err {
        RootDirError::Chain { dir: in_dir, source } => {
            assert_eq!(in_dir, d);
            match &**source {
                TrustError::RootLink { version: 1, source } => assert!(
                    matches!(
                        **source,
                        TrustError::ThresholdNotMet {
                            role: Role::Root,
                            have: 1,
                            need: 2
                        }
                    ),
                    "{source:?}"
                ),
                other => panic!("unexpected {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("root chain in {} does not verify", d.display())
    );

    assert_eq!(root_dir::sign(d, None, &key(2)).unwrap(), path);
    assert_eq!(root_dir::verify(d).unwrap().len(), 1);

    // Rotate the root keys to key 3; keys 1 and 2 (old) and 3 (new) sign.
    let (path, doc) = root_dir::rotate(
        d,
        KeySetChange {
            keys: Some(pubs(&[&key(3)])),
            threshold: Some(1),
        },
        KeySetChange::default(),
        &[key(1), key(2), key(3)],
    )
    .unwrap();
    assert_eq!(path, d.join("2.root.json"));
    assert_eq!(doc.version, 2);
    assert_eq!(doc.release_keys.keys(), pubs(&[&key(10)]).as_slice(), "carried over");
    let verified = root_dir::verify(d).unwrap();
    assert_eq!(verified.current(), &doc);

    // The files are the envelopes' canonical bytes, and nothing else is left behind.
    assert_eq!(file_names(d), ["1.root.json", "2.root.json"]);
    #[cfg(unix)]
    for name in file_names(d) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs_err::metadata(d.join(&name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{name} is public");
    }
    let loaded = root_dir::load(d).unwrap();
    assert_eq!(fs_err::read(&path).unwrap(), loaded[1].to_canonical_json());
}

#[test]
fn rotate_release_keys_only() {
    let dir = initialized();
    let (_, doc) = root_dir::rotate(
        dir.path(),
        KeySetChange::default(),
        KeySetChange {
            keys: Some(pubs(&[&key(11), &key(12)])),
            threshold: Some(2),
        },
        &[key(1), key(2)],
    )
    .unwrap();
    assert_eq!(doc.release_keys.threshold(), 2);
    let verified = root_dir::verify(dir.path()).unwrap();
    verified.verify_release(&release(b"m", &[&key(11), &key(12)])).unwrap();
}

#[test]
fn sign_refuses_keys_that_may_not_sign() {
    let dir = initialized();
    let err = root_dir::sign(dir.path(), None, &key(9)).unwrap_err();
    assert!(
        matches!(&err, RootDirError::NotARootKey { keyid, version: 1 } if *keyid == key(9).key_id()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "key {} may not sign root version 1: it is not a root key of that version or the one before",
            key(9).key_id()
        )
    );

    let err = root_dir::rotate(
        dir.path(),
        KeySetChange::default(),
        KeySetChange::default(),
        &[key(1), key(9)],
    )
    .unwrap_err();
    assert!(matches!(err, RootDirError::NotARootKey { version: 2, .. }), "{err:?}");
    assert_eq!(file_names(dir.path()), ["1.root.json"], "nothing written");
}

#[test]
fn sign_refuses_a_second_signature_by_one_key() {
    let dir = initialized();
    let before = fs_err::read(dir.path().join("1.root.json")).unwrap();
    let err = root_dir::sign(dir.path(), Some(1), &key(1)).unwrap_err();
    match &err {
        RootDirError::Envelope {
            path,
            source: EnvelopeError::DuplicateSignature { keyid },
        } => {
            assert_eq!(path, &dir.path().join("1.root.json"));
            assert_eq!(*keyid, key(1).key_id());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(fs_err::read(dir.path().join("1.root.json")).unwrap(), before);
}

#[test]
fn sign_refuses_versions_not_in_the_directory() {
    let dir = initialized();
    for version in [0, 2] {
        let err = root_dir::sign(dir.path(), Some(version), &key(1)).unwrap_err();
        assert!(
            matches!(&err, RootDirError::NoSuchVersion { version: v, newest: 1, .. } if *v == version),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("{} has no root version {version} (newest is 1)", dir.path().display())
        );
    }
}

#[test]
fn sign_an_older_version_with_a_key_of_the_previous_root() {
    let dir = initialized();
    root_dir::rotate(
        dir.path(),
        KeySetChange {
            keys: Some(pubs(&[&key(3)])),
            threshold: Some(1),
        },
        KeySetChange::default(),
        &[key(1), key(3)],
    )
    .unwrap();
    // Root 2 still needs key 2 (old threshold 2).
    match root_dir::verify(dir.path()).unwrap_err() {
        RootDirError::Chain { source, .. } => {
            assert!(matches!(*source, TrustError::RootLink { version: 2, .. }), "{source:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    root_dir::sign(dir.path(), Some(2), &key(2)).unwrap();
    assert_eq!(root_dir::verify(dir.path()).unwrap().len(), 2);
}

#[test]
fn refuses_key_sets_that_break_the_rules() {
    let dir = initialized();
    // Keeping threshold 2 with one new key.
    let err = root_dir::rotate(
        dir.path(),
        KeySetChange {
            keys: Some(pubs(&[&key(3)])),
            threshold: None,
        },
        KeySetChange::default(),
        &[key(1), key(2)],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            RootDirError::KeySet {
                role: Role::Root,
                source: KeySetError::ThresholdOutOfRange { threshold: 2, keys: 1 }
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "invalid root keys");

    let empty = tempfile::tempdir().unwrap();
    let err = root_dir::init(empty.path(), &[key(1)], vec![], None, vec![], None).unwrap_err();
    assert!(
        matches!(
            err,
            RootDirError::KeySet {
                role: Role::Release,
                source: KeySetError::ThresholdOutOfRange { threshold: 1, keys: 0 }
            }
        ),
        "{err:?}"
    );
    assert!(file_names(empty.path()).is_empty());
}

#[test]
fn init_refuses_to_overwrite() {
    let dir = initialized();
    let before = fs_err::read(dir.path().join("1.root.json")).unwrap();
    let err = root_dir::init(dir.path(), &[key(5)], vec![], None, pubs(&[&key(10)]), None).unwrap_err();
    let path = dir.path().join("1.root.json");
    assert!(
        matches!(&err, RootDirError::Exists { path: p } if *p == path),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("{} already exists; refusing to overwrite it", path.display())
    );
    assert_eq!(fs_err::read(&path).unwrap(), before);
}

#[test]
fn init_into_missing_directory_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = root_dir::init(&missing, &[key(1)], vec![], None, pubs(&[&key(10)]), None).unwrap_err();
    let path = missing.join("1.root.json");
    assert!(
        matches!(&err, RootDirError::Write { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("cannot write {}", path.display()));
}

#[test]
fn load_refuses_empty_or_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("README.md"), "roots").unwrap();
    let err = root_dir::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, RootDirError::Empty { dir: d } if d == dir.path()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("no root files (<N>.root.json) in {}", dir.path().display())
    );

    let err = root_dir::load(dir.path().join("missing")).unwrap_err();
    assert!(
        matches!(&err, RootDirError::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn load_refuses_badly_named_root_files() {
    for name in [
        "01.root.json",
        "0.root.json",
        "x.root.json",
        ".root.json",
        "99999999999.root.json",
    ] {
        let dir = initialized();
        fs_err::write(dir.path().join(name), "{}").unwrap();
        let err = root_dir::load(dir.path()).unwrap_err();
        let path = dir.path().join(name);
        assert!(
            matches!(&err, RootDirError::BadFileName { path: p } if *p == path),
            "{name}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "root file name {} is not <N>.root.json with N a version from 1",
                path.display()
            )
        );
    }
}

#[test]
fn load_refuses_gaps() {
    let dir = initialized();
    let one = fs_err::read(dir.path().join("1.root.json")).unwrap();
    fs_err::write(dir.path().join("3.root.json"), one).unwrap();
    let err = root_dir::load(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            RootDirError::Gap {
                missing: 2,
                newest: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("{} has 3.root.json but no 2.root.json", dir.path().display())
    );
}

#[test]
fn load_refuses_file_holding_another_version() {
    let dir = initialized();
    let one = fs_err::read(dir.path().join("1.root.json")).unwrap();
    fs_err::write(dir.path().join("2.root.json"), one).unwrap();
    let err = root_dir::load(dir.path()).unwrap_err();
    let path = dir.path().join("2.root.json");
    assert!(
        matches!(&err, RootDirError::VersionMismatch { path: p, found: 1 } if *p == path),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("root file {} holds root version 1", path.display())
    );
}

#[test]
fn load_refuses_non_canonical_or_oversized_files() {
    let dir = initialized();
    let path = dir.path().join("1.root.json");
    let mut bytes = fs_err::read(&path).unwrap();
    bytes.push(b'\n');
    fs_err::write(&path, &bytes).unwrap();
    let err = root_dir::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, RootDirError::Envelope { path: p, source: EnvelopeError::NotCanonical } if *p == path),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("root file {}", path.display()));

    fs_err::write(&path, vec![b' '; MAX_ENVELOPE_BYTES + 10]).unwrap();
    let err = root_dir::load(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            RootDirError::Envelope { source: EnvelopeError::TooLarge { size, .. }, .. }
                if *size == MAX_ENVELOPE_BYTES as u64 + 10
        ),
        "{err:?}"
    );
}

#[test]
fn load_refuses_a_release_envelope_as_root_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("1.root.json");
    let env: Envelope = release(b"manifest", &[&key(10)]);
    fs_err::write(&path, env.to_canonical_json()).unwrap();
    let err = root_dir::load(dir.path()).unwrap_err();
    match &err {
        RootDirError::Root { path: p, source } => {
            assert_eq!(p, &path);
            assert!(matches!(**source, TrustError::WrongPayloadType { .. }), "{source:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), format!("root file {}", path.display()));
}
