//! Root documents: the root and release keys with their thresholds, by version.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::error::{KeySetError, RootError};
use crate::key::{KeyId, PublicKey};

/// payloadType of root envelopes.
pub const ROOT_PAYLOAD_TYPE: &str = "application/vnd.sealift.root.v1+json";

/// payloadType of release envelopes, whose payload is a bundle manifest.
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.sealift.manifest.v1+json";

/// The `type` field of every root document.
pub const ROOT_TYPE: &str = "sealift.root";

/// Whose keys a key set holds, or which keys a threshold counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Root keys: they sign root documents.
    Root,
    /// The previous root version's root keys, which must also sign a new root version.
    PreviousRoot,
    /// Release keys: they sign manifests.
    Release,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Root => "root",
            Role::PreviousRoot => "previous root",
            Role::Release => "release",
        })
    }
}

/// A set of distinct public keys with a threshold between 1 and the number of keys.
///
/// Keys are kept sorted by key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    threshold: u32,
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// A key set; refuses a key listed twice and a threshold outside 1..=keys.len().
    pub fn new(threshold: u32, mut keys: Vec<PublicKey>) -> Result<KeySet, KeySetError> {
        keys.sort_by_key(PublicKey::key_id);
        let mut by_bytes = BTreeSet::new();
        let mut by_id = BTreeSet::new();
        for key in &keys {
            // Both checks, though one implies the other for canonical keys.
            if !by_bytes.insert(*key.as_bytes()) || !by_id.insert(key.key_id()) {
                return Err(KeySetError::DuplicateKey { keyid: key.key_id() });
            }
        }
        if threshold == 0 || threshold as usize > keys.len() {
            return Err(KeySetError::ThresholdOutOfRange {
                threshold,
                keys: keys.len(),
            });
        }
        Ok(KeySet { threshold, keys })
    }

    /// This set with its keys and/or threshold replaced; the threshold is kept when only the
    /// keys change (and must then still fit).
    pub fn with_changes(&self, keys: Option<Vec<PublicKey>>, threshold: Option<u32>) -> Result<KeySet, KeySetError> {
        KeySet::new(
            threshold.unwrap_or(self.threshold),
            keys.unwrap_or_else(|| self.keys.clone()),
        )
    }

    /// How many distinct keys of the set must sign.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The keys, sorted by key id.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The key with this id, if the set has it.
    pub fn get(&self, keyid: &KeyId) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.key_id() == *keyid)
    }

    /// Whether the set has this key id.
    pub fn contains(&self, keyid: &KeyId) -> bool {
        self.get(keyid).is_some()
    }

    fn to_wire(&self) -> KeySetWire {
        KeySetWire {
            threshold: self.threshold,
            keys: self
                .keys
                .iter()
                .map(|k| KeyWire {
                    keyid: k.key_id().to_string(),
                    public_key: BASE64.encode(k.to_spki_der()),
                })
                .collect(),
        }
    }

    fn from_wire(role: Role, wire: KeySetWire) -> Result<KeySet, RootError> {
        let mut keys = Vec::with_capacity(wire.keys.len());
        for KeyWire { keyid, public_key } in wire.keys {
            let der = BASE64.decode(&public_key).map_err(|source| RootError::KeyEncoding {
                role,
                keyid: keyid.clone(),
                source,
            })?;
            let key = PublicKey::from_spki_der(&der).map_err(|source| RootError::Key {
                role,
                keyid: keyid.clone(),
                source,
            })?;
            let actual = key.key_id();
            if actual.to_string() != keyid {
                return Err(RootError::KeyIdMismatch {
                    role,
                    listed: keyid,
                    actual,
                });
            }
            keys.push(key);
        }
        KeySet::new(wire.threshold, keys).map_err(|source| RootError::KeySet { role, source })
    }
}

/// One version of the root of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDocument {
    /// The version, from 1; each version is signed by the one before.
    pub version: u32,
    /// Keys that sign root documents.
    pub root_keys: KeySet,
    /// Keys that sign release manifests.
    pub release_keys: KeySet,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RootWire {
    #[serde(rename = "type")]
    type_: String,
    version: u32,
    root_keys: KeySetWire,
    release_keys: KeySetWire,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySetWire {
    threshold: u32,
    keys: Vec<KeyWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyWire {
    keyid: String,
    public_key: String,
}

impl RootDocument {
    /// Parses a root payload strictly: no unknown or duplicate fields, `type` is
    /// `sealift.root`, version ≥ 1, every key valid with its listed keyid, valid key sets.
    pub fn parse(payload: &[u8]) -> Result<RootDocument, RootError> {
        let wire: RootWire = serde_json::from_slice(payload).map_err(|source| RootError::Json { source })?;
        if wire.type_ != ROOT_TYPE {
            return Err(RootError::WrongType { found: wire.type_ });
        }
        if wire.version == 0 {
            return Err(RootError::InvalidVersion { version: 0 });
        }
        Ok(RootDocument {
            version: wire.version,
            root_keys: KeySet::from_wire(Role::Root, wire.root_keys)?,
            release_keys: KeySet::from_wire(Role::Release, wire.release_keys)?,
        })
    }

    /// The payload bytes: pretty JSON with a final newline, keys sorted by key id.
    pub fn to_payload(&self) -> Vec<u8> {
        let wire = RootWire {
            type_: ROOT_TYPE.to_owned(),
            version: self.version,
            root_keys: self.root_keys.to_wire(),
            release_keys: self.release_keys.to_wire(),
        };
        let mut out =
            serde_json::to_vec_pretty(&wire).unwrap_or_else(|_| unreachable!("a root document always serializes"));
        out.push(b'\n');
        out
    }

    /// An unsigned envelope holding this document.
    pub fn to_envelope(&self) -> Envelope {
        Envelope::new(ROOT_PAYLOAD_TYPE, self.to_payload())
    }

    /// The next version, with the key sets given replaced and the others carried over.
    pub fn successor(&self, root_keys: Option<KeySet>, release_keys: Option<KeySet>) -> RootDocument {
        RootDocument {
            version: self.version + 1,
            root_keys: root_keys.unwrap_or_else(|| self.root_keys.clone()),
            release_keys: release_keys.unwrap_or_else(|| self.release_keys.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::KeyError;
    use crate::key::SigningKey;

    fn pk(seed: u8) -> PublicKey {
        SigningKey::from_seed(&[seed; 32]).public_key()
    }

    fn doc() -> RootDocument {
        RootDocument {
            version: 1,
            root_keys: KeySet::new(2, vec![pk(1), pk(2), pk(3)]).unwrap(),
            release_keys: KeySet::new(1, vec![pk(4)]).unwrap(),
        }
    }

    fn payload_json() -> serde_json::Value {
        serde_json::from_slice(&doc().to_payload()).unwrap()
    }

    fn parse_value(v: &serde_json::Value) -> Result<RootDocument, RootError> {
        RootDocument::parse(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn payload_round_trips_and_has_the_documented_shape() {
        let d = doc();
        let payload = d.to_payload();
        assert_eq!(RootDocument::parse(&payload).unwrap(), d);
        assert_eq!(d.to_payload(), payload, "deterministic");
        let v = payload_json();
        assert_eq!(v["type"], "sealift.root");
        assert_eq!(v["version"], 1);
        assert_eq!(v["rootKeys"]["threshold"], 2);
        let k = &v["releaseKeys"]["keys"][0];
        assert_eq!(k["keyid"], pk(4).key_id().to_string());
        assert_eq!(k["publicKey"], BASE64.encode(pk(4).to_spki_der()));
        let order: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(order, ["type", "version", "rootKeys", "releaseKeys"]);
    }

    #[test]
    fn refuses_unknown_and_duplicate_fields() {
        let mut v = payload_json();
        v["extra"] = 1.into();
        let err = parse_value(&v).unwrap_err();
        assert!(matches!(err, RootError::Json { .. }), "{err:?}");
        assert_eq!(err.to_string(), "malformed root document");

        let text = String::from_utf8(doc().to_payload()).unwrap();
        let dup = text.replacen("\"version\": 1,", "\"version\": 1,\n  \"version\": 2,", 1);
        assert_ne!(dup, text);
        let err = RootDocument::parse(dup.as_bytes()).unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("duplicate field `version`"), "{source}");

        let float = text.replacen("\"version\": 1,", "\"version\": 1.0,", 1);
        let err = RootDocument::parse(float.as_bytes()).unwrap_err();
        assert!(matches!(err, RootError::Json { .. }), "{err:?}");
    }

    #[test]
    fn refuses_wrong_type_and_version_zero() {
        let mut v = payload_json();
        v["type"] = "sealift.manifest".into();
        let err = parse_value(&v).unwrap_err();
        assert!(
            matches!(&err, RootError::WrongType { found } if found == "sealift.manifest"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "root document has type \"sealift.manifest\", expected \"sealift.root\""
        );

        let mut v = payload_json();
        v["version"] = 0.into();
        let err = parse_value(&v).unwrap_err();
        assert!(matches!(err, RootError::InvalidVersion { version: 0 }), "{err:?}");
        assert_eq!(err.to_string(), "root document has version 0; versions start at 1");
    }

    #[test]
    fn refuses_key_listed_twice() {
        let err = KeySet::new(1, vec![pk(1), pk(1)]).unwrap_err();
        assert_eq!(err, KeySetError::DuplicateKey { keyid: pk(1).key_id() });
        assert_eq!(
            err.to_string(),
            format!("key {} is listed more than once", pk(1).key_id())
        );

        let mut v = payload_json();
        let first = v["rootKeys"]["keys"][0].clone();
        v["rootKeys"]["keys"].as_array_mut().unwrap().push(first);
        let err = parse_value(&v).unwrap_err();
        assert!(
            matches!(
                &err,
                RootError::KeySet {
                    role: Role::Root,
                    source: KeySetError::DuplicateKey { .. }
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "invalid root keys");
    }

    #[test]
    fn refuses_threshold_out_of_range() {
        for threshold in [0, 4] {
            let err = KeySet::new(threshold, vec![pk(1), pk(2), pk(3)]).unwrap_err();
            assert_eq!(err, KeySetError::ThresholdOutOfRange { threshold, keys: 3 });
        }
        let err = KeySet::new(1, vec![]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "threshold 1 is not between 1 and the number of keys (0)"
        );

        let mut v = payload_json();
        v["releaseKeys"]["threshold"] = 2.into();
        let err = parse_value(&v).unwrap_err();
        assert!(
            matches!(
                &err,
                RootError::KeySet {
                    role: Role::Release,
                    source: KeySetError::ThresholdOutOfRange { threshold: 2, keys: 1 }
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "invalid release keys");
    }

    #[test]
    fn with_changes_keeps_threshold_and_checks_it() {
        let set = KeySet::new(2, vec![pk(1), pk(2)]).unwrap();
        let changed = set.with_changes(Some(vec![pk(3), pk(4), pk(5)]), None).unwrap();
        assert_eq!(changed.threshold(), 2);
        assert_eq!(changed.keys().len(), 3);
        let err = set.with_changes(Some(vec![pk(3)]), None).unwrap_err();
        assert_eq!(err, KeySetError::ThresholdOutOfRange { threshold: 2, keys: 1 });
        assert_eq!(set.with_changes(None, Some(1)).unwrap().threshold(), 1);
    }

    #[test]
    fn refuses_listed_keyid_that_is_not_the_keys() {
        let mut v = payload_json();
        let wrong = pk(9).key_id().to_string();
        v["releaseKeys"]["keys"][0]["keyid"] = wrong.clone().into();
        let err = parse_value(&v).unwrap_err();
        assert!(
            matches!(&err, RootError::KeyIdMismatch { role: Role::Release, listed, actual } if *listed == wrong && *actual == pk(4).key_id()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("release key listed as {wrong} has key id {}", pk(4).key_id())
        );
    }

    #[test]
    fn refuses_bad_base64_and_weak_keys() {
        let mut v = payload_json();
        v["rootKeys"]["keys"][1]["publicKey"] = "not base64!".into();
        let err = parse_value(&v).unwrap_err();
        assert!(
            matches!(err, RootError::KeyEncoding { role: Role::Root, .. }),
            "{err:?}"
        );
        assert!(err.to_string().ends_with("is not valid base64"), "{err}");

        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut der = pk(1).to_spki_der();
        der[12..].copy_from_slice(&identity);
        let mut v = payload_json();
        v["releaseKeys"]["keys"][0]["publicKey"] = BASE64.encode(&der).into();
        let err = parse_value(&v).unwrap_err();
        match &err {
            RootError::Key {
                role: Role::Release,
                source: KeyError::WeakPublicKey { .. },
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("release key "), "{err}");
    }

    #[test]
    fn successor_carries_unchanged_sets() {
        let d = doc();
        let new_release = KeySet::new(1, vec![pk(7)]).unwrap();
        let next = d.successor(None, Some(new_release.clone()));
        assert_eq!(next.version, 2);
        assert_eq!(next.root_keys, d.root_keys);
        assert_eq!(next.release_keys, new_release);
        let env = next.to_envelope();
        assert_eq!(env.payload_type, ROOT_PAYLOAD_TYPE);
        assert_eq!(RootDocument::parse(&env.payload).unwrap(), next);
    }
}
