//! Deterministic keys and roots for the tests.

use keys::{Envelope, KeySet, PublicKey, RootDocument, SigningKey};

/// The test key with this number.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

/// A key set of these keys.
pub fn set(threshold: u32, keys: &[&SigningKey]) -> KeySet {
    KeySet::new(threshold, keys.iter().map(|k| k.public_key()).collect()).unwrap()
}

/// The public keys of these keys.
pub fn pubs(keys: &[&SigningKey]) -> Vec<PublicKey> {
    keys.iter().map(|k| k.public_key()).collect()
}

/// A root document.
pub fn doc(version: u32, root: KeySet, release: KeySet) -> RootDocument {
    RootDocument {
        version,
        root_keys: root,
        release_keys: release,
    }
}

/// The root document's envelope, signed by `signers`.
pub fn signed(doc: &RootDocument, signers: &[&SigningKey]) -> Envelope {
    let mut env = doc.to_envelope();
    for signer in signers {
        env.sign(signer).unwrap();
    }
    env
}

/// A release envelope over `payload`, signed by `signers`.
pub fn release(payload: &[u8], signers: &[&SigningKey]) -> Envelope {
    let mut env = Envelope::new(keys::MANIFEST_PAYLOAD_TYPE, payload.to_vec());
    for signer in signers {
        env.sign(signer).unwrap();
    }
    env
}
