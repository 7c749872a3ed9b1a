//! Threshold verification and root chains: the accepted case, then one test per attack.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keys::{
    Envelope, EnvelopeError, KeyError, KeySetError, MANIFEST_PAYLOAD_TYPE, ROOT_PAYLOAD_TYPE, Role, RootChain,
    RootDocument, RootError, Signature, TrustError, TrustedRoots, VerifiedChain, verify_envelope,
};
use sha2::{Digest as _, Sha256};

use crate::fixtures::{doc, key, release, set, signed};

/// Root 1 (root keys 1,2 of 2; release key 10), root 2 (root keys 2,3 of 2), root 3 (root key 4
/// of 1; release key 11), each signed by enough old and new keys.
fn chain() -> Vec<Envelope> {
    let (k1, k2, k3, k4, r10, r11) = (key(1), key(2), key(3), key(4), key(10), key(11));
    let d1 = doc(1, set(2, &[&k1, &k2]), set(1, &[&r10]));
    let d2 = d1.successor(Some(set(2, &[&k2, &k3])), None);
    let d3 = d2.successor(Some(set(1, &[&k4])), Some(set(1, &[&r11])));
    vec![
        signed(&d1, &[&k1, &k2]),
        signed(&d2, &[&k1, &k2, &k3]),
        signed(&d3, &[&k2, &k3, &k4]),
    ]
}

fn anchored_at_1(chain: &[Envelope]) -> TrustedRoots {
    TrustedRoots::from_envelopes(&chain[..1]).unwrap()
}

/// The error of a chain link, checking its version and message.
fn link_error(err: TrustError, want_version: u32) -> TrustError {
    assert_eq!(err.to_string(), format!("root version {want_version} does not verify"));
    match err {
        TrustError::RootLink { version, source } => {
            assert_eq!(version, want_version);
            *source
        }
        other => panic!("expected RootLink, got {other:?}"),
    }
}

#[test]
fn accepts_chain_1_2_3() {
    let chain = chain();
    let verified = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap();
    assert_eq!(verified.len(), 3);
    assert!(!verified.is_empty());
    assert_eq!(verified.current().version, 3);
    assert_eq!(verified.current().release_keys, set(1, &[&key(11)]));
    assert_eq!(verified.documents()[0].version, 1);
    let expected: Vec<(u32, [u8; 32])> = (1..)
        .zip(&chain)
        .map(|(v, env)| (v, Sha256::digest(env.to_canonical_json()).into()))
        .collect();
    assert_eq!(verified.hashes(), expected);

    // The persisted hashes verify the same chain next time.
    let again = RootChain::verify(&chain, &TrustedRoots::from_hashes(verified.hashes())).unwrap();
    assert_eq!(again, verified);

    // The current root governs releases.
    verified.verify_release(&release(b"manifest", &[&key(11)])).unwrap();
    let err = verified.verify_release(&release(b"manifest", &[&key(10)])).unwrap_err();
    assert!(
        matches!(&err, TrustError::UnknownKey { keyid } if *keyid == key(10).key_id()),
        "{err:?}"
    );
}

#[test]
fn accepts_chain_extending_a_trusted_anchor_that_is_not_version_1() {
    let chain = chain();
    let trusted = TrustedRoots::from_envelopes(&chain[1..2]).unwrap();
    assert_eq!(trusted.newest(), Some(2));
    let verified = RootChain::verify(&chain, &trusted).unwrap();
    assert_eq!(verified.current().version, 3);
}

#[test]
fn checks_links_before_a_later_anchor() {
    let mut chain = chain();
    let trusted = TrustedRoots::from_envelopes(&chain[1..2]).unwrap();
    // Root 1 loses a signature; root 2 (the anchor) is unchanged.
    chain[0].signatures.pop();
    let err = RootChain::verify(&chain, &trusted).unwrap_err();
    let inner = link_error(err, 1);
    assert!(
        matches!(
            inner,
            TrustError::ThresholdNotMet {
                role: Role::Root,
                have: 1,
                need: 2
            }
        ),
        "{inner:?}"
    );
}

#[test]
fn rejects_rotation_signed_only_by_new_keys() {
    let (k1, k3) = (key(1), key(3));
    let d1 = doc(1, set(1, &[&k1]), set(1, &[&key(10)]));
    let d2 = d1.successor(Some(set(1, &[&k3])), None);
    let chain = [signed(&d1, &[&k1]), signed(&d2, &[&k3])];
    let err = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap_err();
    let inner = link_error(err, 2);
    assert!(
        matches!(
            inner,
            TrustError::ThresholdNotMet {
                role: Role::PreviousRoot,
                have: 0,
                need: 1
            }
        ),
        "{inner:?}"
    );
    assert_eq!(
        inner.to_string(),
        "previous root threshold not met: 0 valid signatures by distinct previous root keys, 1 required"
    );
}

#[test]
fn rejects_rotation_signed_only_by_old_keys() {
    let (k1, k3) = (key(1), key(3));
    let d1 = doc(1, set(1, &[&k1]), set(1, &[&key(10)]));
    let d2 = d1.successor(Some(set(1, &[&k3])), None);
    let chain = [signed(&d1, &[&k1]), signed(&d2, &[&k1])];
    let err = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap_err();
    let inner = link_error(err, 2);
    assert!(
        matches!(
            inner,
            TrustError::ThresholdNotMet {
                role: Role::Root,
                have: 0,
                need: 1
            }
        ),
        "{inner:?}"
    );
    assert_eq!(
        inner.to_string(),
        "root threshold not met: 0 valid signatures by distinct root keys, 1 required"
    );
}

#[test]
fn rejects_rotation_under_old_threshold() {
    let (k1, k2, k3) = (key(1), key(2), key(3));
    let d1 = doc(1, set(2, &[&k1, &k2]), set(1, &[&key(10)]));
    let d2 = d1.successor(Some(set(1, &[&k3])), None);
    let chain = [signed(&d1, &[&k1, &k2]), signed(&d2, &[&k1, &k3])];
    let err = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap_err();
    let inner = link_error(err, 2);
    assert!(
        matches!(
            inner,
            TrustError::ThresholdNotMet {
                role: Role::PreviousRoot,
                have: 1,
                need: 2
            }
        ),
        "{inner:?}"
    );
}

#[test]
fn rejects_root_1_under_its_own_threshold() {
    let (k1, k2) = (key(1), key(2));
    let d1 = doc(1, set(2, &[&k1, &k2]), set(1, &[&key(10)]));
    let chain = [signed(&d1, &[&k1])];
    let err = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap_err();
    let inner = link_error(err, 1);
    assert!(
        matches!(
            inner,
            TrustError::ThresholdNotMet {
                role: Role::Root,
                have: 1,
                need: 2
            }
        ),
        "{inner:?}"
    );
}

#[test]
fn rejects_duplicate_signature_instead_of_counting_it_twice() {
    let (r1, r2) = (key(10), key(11));
    let keys = set(2, &[&r1, &r2]);
    let mut env = release(b"manifest", &[&r1]);
    let copy = env.signatures[0].clone();
    env.signatures.push(copy);
    let err = verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap_err();
    assert!(
        matches!(&err, TrustError::DuplicateSignature { keyid } if *keyid == r1.key_id()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("more than one signature by key {}", r1.key_id())
    );
    // And its canonical bytes never parse back.
    let err = Envelope::parse_canonical(&env.to_canonical_json()).unwrap_err();
    assert!(matches!(err, EnvelopeError::DuplicateSignature { .. }), "{err:?}");

    // Without the copy, one key is one signature: threshold 2 is not met.
    env.signatures.pop();
    let err = verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::ThresholdNotMet {
                role: Role::Release,
                have: 1,
                need: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "release threshold not met: 1 valid signatures by distinct release keys, 2 required"
    );
}

#[test]
fn rejects_root_listing_one_key_twice() {
    let (k1, k2) = (key(1), key(2));
    let d1 = doc(1, set(2, &[&k1, &k2]), set(1, &[&key(10)]));
    // Replace the second key by a copy of the first, so that one key would meet threshold 2.
    let mut v: serde_json::Value = serde_json::from_slice(&d1.to_payload()).unwrap();
    let first = v["rootKeys"]["keys"][0].clone();
    let first_id = first["keyid"].as_str().unwrap().to_owned();
    v["rootKeys"]["keys"][1] = first;
    let signer = if k1.key_id().to_string() == first_id { &k1 } else { &k2 };
    let mut env = Envelope::new(ROOT_PAYLOAD_TYPE, serde_json::to_vec(&v).unwrap());
    env.sign(signer).unwrap();
    let trusted = TrustedRoots::from_hashes(vec![(1, env.canonical_sha256())]);
    let err = RootChain::verify(std::slice::from_ref(&env), &trusted).unwrap_err();
    let inner = link_error(err, 1);
    match inner {
        TrustError::InvalidRoot {
            source:
                RootError::KeySet {
                    role: Role::Root,
                    source: KeySetError::DuplicateKey { keyid },
                },
        } => assert_eq!(keyid, signer.key_id()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rejects_signature_by_unknown_key() {
    let (r1, stranger) = (key(10), key(99));
    let keys = set(1, &[&r1]);
    let env = release(b"manifest", &[&r1, &stranger]);
    let err = verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap_err();
    assert!(
        matches!(&err, TrustError::UnknownKey { keyid } if *keyid == stranger.key_id()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("signature by unknown key {}", stranger.key_id())
    );

    // In a root chain too, even when the thresholds are met.
    let (k1, k2) = (key(1), key(2));
    let d1 = doc(1, set(1, &[&k1]), set(1, &[&r1]));
    let d2 = d1.successor(Some(set(1, &[&k2])), None);
    let chain = [signed(&d1, &[&k1]), signed(&d2, &[&k1, &k2, &stranger])];
    let err = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap_err();
    let inner = link_error(err, 2);
    assert!(matches!(inner, TrustError::UnknownKey { .. }), "{inner:?}");
}

#[test]
fn rejects_unsigned_envelope() {
    let keys = set(1, &[&key(10)]);
    let env = release(b"manifest", &[]);
    let err = verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::ThresholdNotMet {
                role: Role::Release,
                have: 0,
                need: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_bad_signatures() {
    let r1 = key(10);
    let keys = set(1, &[&r1]);
    let mut env = release(b"manifest", &[&r1]);
    env.payload[0] ^= 1;
    let err = verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap_err();
    match &err {
        TrustError::BadSignature {
            keyid,
            source: KeyError::BadSignature { .. },
        } => assert_eq!(*keyid, r1.key_id()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("signature by key {} does not verify", r1.key_id())
    );

    // A signature of the wrong length, e.g. from a hand-edited envelope.
    let mut env = release(b"manifest", &[]);
    env.signatures.push(Signature {
        keyid: r1.key_id(),
        sig: vec![0; 10],
    });
    let err = verify_envelope(&env, MANIFEST_PAYLOAD_TYPE, &[&keys]).unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::BadSignature {
                source: KeyError::SignatureLength { len: 10, .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_weak_key_in_root() {
    let k1 = key(1);
    let d1 = doc(1, set(1, &[&k1]), set(1, &[&key(10)]));
    let mut v: serde_json::Value = serde_json::from_slice(&d1.to_payload()).unwrap();
    // The identity point [1, 0, …, 0], in SPKI DER, listed under its own keyid.
    let mut der = key(10).public_key().to_spki_der();
    der[12..].copy_from_slice(&{
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    });
    let keyid = hex::encode(Sha256::digest(&der));
    v["releaseKeys"]["keys"][0] = serde_json::json!({"keyid": keyid, "publicKey": BASE64.encode(&der)});
    let env = signed_payload(serde_json::to_vec(&v).unwrap(), &k1);
    let err = TrustedRoots::from_envelopes(std::slice::from_ref(&env)).unwrap_err();
    assert_eq!(err.to_string(), "invalid root document");
    match err {
        TrustError::InvalidRoot {
            source:
                RootError::Key {
                    role: Role::Release,
                    keyid: listed,
                    source: KeyError::WeakPublicKey { keyid: weak },
                },
        } => {
            assert_eq!(listed, keyid);
            assert_eq!(weak.to_string(), keyid);
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = keys::PublicKey::from_spki_der(&der).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is weak (a small-order point) and cannot be trusted")
    );
}

fn signed_payload(payload: Vec<u8>, signer: &keys::SigningKey) -> Envelope {
    let mut env = Envelope::new(ROOT_PAYLOAD_TYPE, payload);
    env.sign(signer).unwrap();
    env
}

#[test]
fn rejects_non_canonical_root_envelope() {
    let chain = chain();
    let env = &chain[1];
    let canonical = String::from_utf8(env.to_canonical_json()).unwrap();
    assert_eq!(Envelope::parse_canonical(canonical.as_bytes()).unwrap(), *env);
    let v: serde_json::Value = serde_json::from_str(&canonical).unwrap();
    let sigs = v["signatures"].as_array().unwrap();
    let reordered = format!(
        r#"{{"signatures":{},"payloadType":{},"payload":{}}}"#,
        v["signatures"], v["payloadType"], v["payload"]
    );
    let unsorted = format!(
        r#"{{"payloadType":{},"payload":{},"signatures":[{},{},{}]}}"#,
        v["payloadType"], v["payload"], sigs[2], sigs[0], sigs[1]
    );
    for bad in [
        format!("{canonical}\n"),
        canonical.replacen(":", ": ", 1),
        reordered,
        unsorted,
    ] {
        let err = Envelope::parse_canonical(bad.as_bytes()).unwrap_err();
        assert!(matches!(err, EnvelopeError::NotCanonical), "{bad}: {err:?}");
        assert!(err.to_string().starts_with("envelope is not in canonical form"));
    }
}

#[test]
fn rejects_root_envelope_presented_as_release() {
    let chain = chain();
    let d1 = RootDocument::parse(&chain[0].payload).unwrap();
    let err = verify_envelope(&chain[0], MANIFEST_PAYLOAD_TYPE, &[&d1.root_keys]).unwrap_err();
    match &err {
        TrustError::WrongPayloadType { expected, found } => {
            assert_eq!(expected, MANIFEST_PAYLOAD_TYPE);
            assert_eq!(found, ROOT_PAYLOAD_TYPE);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("envelope has payload type {ROOT_PAYLOAD_TYPE:?}, expected {MANIFEST_PAYLOAD_TYPE:?}")
    );

    // And a release envelope in a root chain.
    let mut chain = chain;
    chain.push(release(b"manifest", &[&key(4)]));
    let err = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap_err();
    let inner = link_error(err, 4);
    assert!(matches!(inner, TrustError::WrongPayloadType { .. }), "{inner:?}");
    // Or configured as a trusted root.
    let err = TrustedRoots::from_envelopes(&chain[3..]).unwrap_err();
    assert!(matches!(err, TrustError::WrongPayloadType { .. }), "{err:?}");
}

#[test]
fn rejects_chain_shorter_than_trusted_root() {
    let chain = chain();
    let trusted = TrustedRoots::from_envelopes(&chain).unwrap();
    let err = RootChain::verify(&chain[..2], &trusted).unwrap_err();
    assert!(matches!(err, TrustError::ChainTooShort { have: 2, need: 3 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "root chain ends at version 2, older than the trusted root version 3"
    );
    let err = RootChain::verify(&[], &trusted).unwrap_err();
    assert!(matches!(err, TrustError::ChainTooShort { have: 0, need: 3 }), "{err:?}");
}

#[test]
fn rejects_trusted_root_with_different_bytes() {
    let mut chain = chain();
    let trusted = TrustedRoots::from_envelopes(&chain).unwrap();
    // The chain offers root 2 with one signature fewer: other bytes than the trusted root 2.
    chain[1].signatures.retain(|s| s.keyid != key(1).key_id());
    let err = RootChain::verify(&chain, &trusted).unwrap_err();
    assert!(matches!(err, TrustError::RootMismatch { version: 2 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "root version 2 differs from the root version 2 already trusted"
    );
    // A persisted version 0 can never match.
    let trusted = TrustedRoots::from_hashes(vec![(0, [0; 32]), (1, chain[0].canonical_sha256())]);
    let err = RootChain::verify(&chain, &trusted).unwrap_err();
    assert!(matches!(err, TrustError::RootMismatch { version: 0 }), "{err:?}");
}

#[test]
fn rejects_chain_out_of_sequence() {
    let chain = chain();
    let skipped = [chain[0].clone(), chain[2].clone()];
    let err = RootChain::verify(&skipped, &anchored_at_1(&chain)).unwrap_err();
    assert!(matches!(err, TrustError::ChainGap { expected: 2, found: 3 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "root chain is out of sequence: expected root version 2, found 3"
    );
}

#[test]
fn rejects_invalid_root_document_in_chain() {
    let k1 = key(1);
    let env = signed_payload(b"{\"type\":\"sealift.root\"}".to_vec(), &k1);
    let trusted = TrustedRoots::from_hashes(vec![(1, env.canonical_sha256())]);
    let err = RootChain::verify(std::slice::from_ref(&env), &trusted).unwrap_err();
    let inner = link_error(err, 1);
    assert!(
        matches!(
            inner,
            TrustError::InvalidRoot {
                source: RootError::Json { .. }
            }
        ),
        "{inner:?}"
    );
}

#[test]
fn refuses_to_verify_without_anchor_or_keys() {
    let chain = chain();
    let err = RootChain::verify(&chain, &TrustedRoots::from_hashes(vec![])).unwrap_err();
    assert!(matches!(err, TrustError::NoTrustedRoot), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no trusted root: a root chain can only be verified from a trusted root"
    );
    let err = verify_envelope(&release(b"m", &[]), MANIFEST_PAYLOAD_TYPE, &[]).unwrap_err();
    assert!(matches!(err, TrustError::NoGoverningKeys), "{err:?}");
    assert_eq!(err.to_string(), "no key set governs this envelope");
}

#[test]
fn counts_a_key_in_both_old_and_new_root_sets_for_both() {
    let (k1, k2) = (key(1), key(2));
    let d1 = doc(1, set(1, &[&k1]), set(1, &[&key(10)]));
    let d2 = d1.successor(Some(set(1, &[&k1, &k2])), None);
    let chain = [signed(&d1, &[&k1]), signed(&d2, &[&k1])];
    let verified: VerifiedChain = RootChain::verify(&chain, &anchored_at_1(&chain)).unwrap();
    assert_eq!(verified.len(), 2);
}
