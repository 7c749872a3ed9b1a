//! DSSE envelopes: exact payload bytes, signed over their pre-authentication encoding.
//!
//! The JSON form is `{"payloadType":…,"payload":"<base64>","signatures":[{"keyid":…,"sig":"<base64>"}]}`.
//! There is exactly one accepted byte form of an envelope (compact, in that field order, signatures
//! sorted by keyid), so that a root's bytes, and hence its hash, cannot vary.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::EnvelopeError;
use crate::key::{KeyId, SigningKey};

/// The largest envelope [`Envelope::parse_canonical`] reads (1 MiB).
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The id of the key that made it.
    pub keyid: KeyId,
    /// The 64-byte ed25519 signature over the envelope's PAE bytes.
    pub sig: Vec<u8>,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "EnvelopeWire", try_from = "EnvelopeWire")]
pub struct Envelope {
    /// What the payload is, e.g. [`crate::ROOT_PAYLOAD_TYPE`].
    pub payload_type: String,
    /// The exact signed bytes.
    pub payload: Vec<u8>,
    /// The signatures, at most one per key id.
    pub signatures: Vec<Signature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvelopeWire {
    payload_type: String,
    payload: String,
    signatures: Vec<SignatureWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureWire {
    keyid: KeyId,
    sig: String,
}

impl From<Envelope> for EnvelopeWire {
    fn from(env: Envelope) -> EnvelopeWire {
        let mut signatures: Vec<SignatureWire> = env
            .signatures
            .into_iter()
            .map(|s| SignatureWire {
                keyid: s.keyid,
                sig: BASE64.encode(&s.sig),
            })
            .collect();
        signatures.sort_by_key(|s| s.keyid);
        EnvelopeWire {
            payload_type: env.payload_type,
            payload: BASE64.encode(&env.payload),
            signatures,
        }
    }
}

impl TryFrom<EnvelopeWire> for Envelope {
    type Error = String;

    fn try_from(wire: EnvelopeWire) -> Result<Envelope, String> {
        let payload = BASE64
            .decode(&wire.payload)
            .map_err(|e| format!("payload is not standard base64: {e}"))?;
        let signatures = wire
            .signatures
            .into_iter()
            .map(|s| {
                let sig = BASE64
                    .decode(&s.sig)
                    .map_err(|e| format!("signature by key {} is not standard base64: {e}", s.keyid))?;
                Ok(Signature { keyid: s.keyid, sig })
            })
            .collect::<Result<_, String>>()?;
        Ok(Envelope {
            payload_type: wire.payload_type,
            payload,
            signatures,
        })
    }
}

impl Envelope {
    /// An unsigned envelope.
    pub fn new(payload_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Envelope {
        Envelope {
            payload_type: payload_type.into(),
            payload: payload.into(),
            signatures: Vec::new(),
        }
    }

    /// The bytes a signature covers: `pae(payload_type, payload)`.
    pub fn pae_bytes(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Adds `key`'s signature; refuses a key that already signed.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), EnvelopeError> {
        let keyid = key.key_id();
        self.check_not_signed_by(&keyid)?;
        let sig = key.sign(&self.pae_bytes()).to_vec();
        self.insert(Signature { keyid, sig });
        Ok(())
    }

    /// Adds a detached signature made elsewhere (e.g. on an HSM over [`Envelope::pae_bytes`]).
    ///
    /// Checks its length and that `keyid` has not signed yet; it does not verify it: that is
    /// the trust policy's job ([`crate::verify_envelope`]).
    pub fn attach(&mut self, keyid: KeyId, sig: Vec<u8>) -> Result<(), EnvelopeError> {
        if sig.len() != 64 {
            return Err(EnvelopeError::SignatureLength { keyid, len: sig.len() });
        }
        self.check_not_signed_by(&keyid)?;
        self.insert(Signature { keyid, sig });
        Ok(())
    }

    fn check_not_signed_by(&self, keyid: &KeyId) -> Result<(), EnvelopeError> {
        if self.signatures.iter().any(|s| s.keyid == *keyid) {
            return Err(EnvelopeError::DuplicateSignature { keyid: *keyid });
        }
        Ok(())
    }

    fn insert(&mut self, sig: Signature) {
        let at = self.signatures.partition_point(|s| s.keyid < sig.keyid);
        self.signatures.insert(at, sig);
    }

    /// The one canonical byte form: compact JSON, fields in DSSE order, signatures sorted by
    /// keyid, standard padded base64.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(&EnvelopeWire::from(self.clone()))
            .unwrap_or_else(|_| unreachable!("an envelope always serializes"))
    }

    /// sha256 of [`Envelope::to_canonical_json`]: the identity of a root version.
    pub fn canonical_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.to_canonical_json()).into()
    }

    /// Parses an envelope, refusing one over [`MAX_ENVELOPE_BYTES`], with a repeated keyid, or
    /// whose bytes are not exactly its canonical form.
    pub fn parse_canonical(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len() as u64,
                max: MAX_ENVELOPE_BYTES as u64,
            });
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(|source| EnvelopeError::Json { source })?;
        let mut seen = std::collections::BTreeSet::new();
        for s in &env.signatures {
            if !seen.insert(s.keyid) {
                return Err(EnvelopeError::DuplicateSignature { keyid: s.keyid });
            }
        }
        if env.to_canonical_json() != bytes {
            return Err(EnvelopeError::NotCanonical);
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pae_matches_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn pae_counts_bytes_not_chars() {
        assert_eq!(pae("é", b"x"), "DSSEv1 2 é 1 x".as_bytes().to_vec());
    }

    fn signed() -> (Envelope, SigningKey, SigningKey) {
        let a = SigningKey::from_seed(&[1; 32]);
        let b = SigningKey::from_seed(&[2; 32]);
        let mut env = Envelope::new("application/x-test", b"{\"a\":1}".to_vec());
        env.sign(&a).unwrap();
        env.sign(&b).unwrap();
        (env, a, b)
    }

    #[test]
    fn canonical_json_has_dsse_shape_and_sorted_signatures() {
        let (env, a, b) = signed();
        let json = String::from_utf8(env.to_canonical_json()).unwrap();
        let (first, second) = if a.key_id() < b.key_id() { (&a, &b) } else { (&b, &a) };
        let sig = |k: &SigningKey| BASE64.encode(k.sign(&env.pae_bytes()));
        assert_eq!(
            json,
            format!(
                r#"{{"payloadType":"application/x-test","payload":"eyJhIjoxfQ==","signatures":[{{"keyid":"{}","sig":"{}"}},{{"keyid":"{}","sig":"{}"}}]}}"#,
                first.key_id(),
                sig(first),
                second.key_id(),
                sig(second)
            )
        );
        assert_eq!(Envelope::parse_canonical(json.as_bytes()).unwrap(), env);
    }

    #[test]
    fn sign_refuses_a_key_that_already_signed() {
        let (mut env, a, _) = signed();
        let err = env.sign(&a).unwrap_err();
        assert!(
            matches!(&err, EnvelopeError::DuplicateSignature { keyid } if *keyid == a.key_id()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("envelope has more than one signature by key {}", a.key_id())
        );
        assert_eq!(env.signatures.len(), 2);
    }

    #[test]
    fn attach_checks_length_and_duplicates_but_does_not_verify() {
        let (mut env, a, _) = signed();
        let c = SigningKey::from_seed(&[3; 32]);
        let err = env.attach(c.key_id(), vec![0; 63]).unwrap_err();
        assert!(
            matches!(&err, EnvelopeError::SignatureLength { keyid, len: 63 } if *keyid == c.key_id()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("signature by key {} is 63 bytes long, expected 64", c.key_id())
        );
        let err = env.attach(a.key_id(), vec![0; 64]).unwrap_err();
        assert!(matches!(err, EnvelopeError::DuplicateSignature { .. }), "{err:?}");

        // A garbage signature is attached; verification will refuse it later.
        env.attach(c.key_id(), vec![0; 64]).unwrap();
        assert_eq!(env.signatures.len(), 3);
        assert!(env.signatures.windows(2).all(|w| w[0].keyid < w[1].keyid));
        // A detached signature over pae_bytes is what sign() makes.
        let mut detached = Envelope::new("t", b"p".to_vec());
        detached
            .attach(c.key_id(), c.sign(&detached.pae_bytes()).to_vec())
            .unwrap();
        let mut direct = Envelope::new("t", b"p".to_vec());
        direct.sign(&c).unwrap();
        assert_eq!(detached, direct);
    }

    #[test]
    fn refuses_oversized_envelope_before_parsing() {
        let bytes = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        let err = Envelope::parse_canonical(&bytes).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::TooLarge { size, max } if size == MAX_ENVELOPE_BYTES as u64 + 1 && max == MAX_ENVELOPE_BYTES as u64),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "envelope is {} bytes, more than the limit of {} bytes",
                MAX_ENVELOPE_BYTES + 1,
                MAX_ENVELOPE_BYTES
            )
        );
    }

    #[test]
    fn refuses_non_canonical_forms() {
        let (env, _, _) = signed();
        let canonical = String::from_utf8(env.to_canonical_json()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&canonical).unwrap();
        let sigs = v["signatures"].as_array().unwrap();
        let reordered_fields = format!(
            r#"{{"payload":{},"payloadType":{},"signatures":{}}}"#,
            v["payload"], v["payloadType"], v["signatures"]
        );
        let unsorted = format!(
            r#"{{"payloadType":{},"payload":{},"signatures":[{},{}]}}"#,
            v["payloadType"], v["payload"], sigs[1], sigs[0]
        );
        let escaped = canonical.replacen("application", "\\u0061pplication", 1);
        for bad in [
            format!("{canonical} "),
            format!(" {canonical}"),
            canonical.replacen(",", ", ", 1),
            serde_json::to_string_pretty(&v).unwrap(),
            reordered_fields,
            unsorted,
            escaped,
            // Unpadded base64 of the same payload.
            canonical.replacen("eyJhIjoxfQ==", "eyJhIjoxfQ", 1),
        ] {
            let err = Envelope::parse_canonical(bad.as_bytes()).unwrap_err();
            match &err {
                EnvelopeError::NotCanonical => assert!(
                    err.to_string().starts_with("envelope is not in canonical form"),
                    "{err}"
                ),
                // Unpadded base64 does not even decode.
                EnvelopeError::Json { .. } if bad.contains("eyJhIjoxfQ\"") => {}
                other => panic!("{bad}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_duplicate_keyids_and_unknown_fields() {
        let (env, _, _) = signed();
        let v: serde_json::Value = serde_json::from_slice(&env.to_canonical_json()).unwrap();
        let s0 = &v["signatures"][0];
        let dup = format!(
            r#"{{"payloadType":{},"payload":{},"signatures":[{s0},{s0}]}}"#,
            v["payloadType"], v["payload"]
        );
        let err = Envelope::parse_canonical(dup.as_bytes()).unwrap_err();
        let keyid: KeyId = s0["keyid"].as_str().unwrap().parse().unwrap();
        assert!(
            matches!(&err, EnvelopeError::DuplicateSignature { keyid: k } if *k == keyid),
            "{err:?}"
        );

        let extra = format!(
            r#"{{"payloadType":{},"payload":{},"signatures":[],"x":1}}"#,
            v["payloadType"], v["payload"]
        );
        let err = Envelope::parse_canonical(extra.as_bytes()).unwrap_err();
        assert!(matches!(err, EnvelopeError::Json { .. }), "{err:?}");
        assert_eq!(err.to_string(), "malformed dsse envelope");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("unknown field `x`"), "{source}");

        let dup_field = r#"{"payloadType":"a","payloadType":"a","payload":"","signatures":[]}"#;
        let err = Envelope::parse_canonical(dup_field.as_bytes()).unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("duplicate field `payloadType`"), "{source}");
    }
}
