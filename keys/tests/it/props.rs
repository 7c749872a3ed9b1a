//! Property tests: sign/verify round trips, every single-bit flip fails, parsers round-trip.

use keys::{Envelope, EnvelopeError, KeyError, KeyId, KeySet, SigningKey, TrustError, verify_envelope};
use proptest::prelude::*;

fn signed_envelope(seed: [u8; 32], payload_type: &str, payload: &[u8]) -> (Envelope, KeySet) {
    let key = SigningKey::from_seed(&seed);
    let mut env = Envelope::new(payload_type, payload.to_vec());
    env.sign(&key).unwrap();
    (env, KeySet::new(1, vec![key.public_key()]).unwrap())
}

fn assert_bad_signature(result: Result<(), TrustError>) -> Result<(), TestCaseError> {
    match result {
        Err(TrustError::BadSignature {
            source: KeyError::BadSignature { .. },
            ..
        }) => Ok(()),
        other => Err(TestCaseError::fail(format!("expected BadSignature, got {other:?}"))),
    }
}

const PAYLOAD_TYPE: &str = "[ -~]{0,40}";

proptest! {
    #[test]
    fn sign_verify_round_trip(
        seed in any::<[u8; 32]>(),
        payload_type in PAYLOAD_TYPE,
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (env, keys) = signed_envelope(seed, &payload_type, &payload);
        verify_envelope(&env, &payload_type, &[&keys]).unwrap();
        let parsed = Envelope::parse_canonical(&env.to_canonical_json()).unwrap();
        prop_assert_eq!(&parsed, &env);
        verify_envelope(&parsed, &payload_type, &[&keys]).unwrap();
    }

    #[test]
    fn any_bit_flip_in_payload_fails(
        seed in any::<[u8; 32]>(),
        payload in proptest::collection::vec(any::<u8>(), 1..256),
        index in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut env, keys) = signed_envelope(seed, "application/x-test", &payload);
        let i = index.index(env.payload.len());
        env.payload[i] ^= 1 << bit;
        assert_bad_signature(verify_envelope(&env, "application/x-test", &[&keys]))?;
    }

    #[test]
    fn any_bit_flip_in_payload_type_fails(
        seed in any::<[u8; 32]>(),
        payload_type in "[ -~]{1,40}",
        index in any::<prop::sample::Index>(),
        bit in 0u8..7,
    ) {
        let (mut env, keys) = signed_envelope(seed, &payload_type, b"payload");
        let mut bytes = env.payload_type.clone().into_bytes();
        let i = index.index(bytes.len());
        bytes[i] ^= 1 << bit; // stays ASCII, hence UTF-8
        env.payload_type = String::from_utf8(bytes).unwrap();
        // Expecting the flipped type, the signature must still fail.
        let flipped = env.payload_type.clone();
        assert_bad_signature(verify_envelope(&env, &flipped, &[&keys]))?;
        // Expecting the original type, the type itself is refused.
        let is_wrong_type = matches!(
            verify_envelope(&env, &payload_type, &[&keys]),
            Err(TrustError::WrongPayloadType { .. })
        );
        prop_assert!(is_wrong_type);
    }

    #[test]
    fn any_bit_flip_in_signature_fails(
        seed in any::<[u8; 32]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        index in 0usize..64,
        bit in 0u8..8,
    ) {
        let (mut env, keys) = signed_envelope(seed, "application/x-test", &payload);
        env.signatures[0].sig[index] ^= 1 << bit;
        assert_bad_signature(verify_envelope(&env, "application/x-test", &[&keys]))?;
    }

    #[test]
    fn key_id_round_trips(bytes in any::<[u8; 32]>()) {
        let text = hex::encode(bytes);
        let id: KeyId = text.parse().unwrap();
        prop_assert_eq!(id.to_string(), text.clone());
        prop_assert_eq!(id.as_bytes(), &bytes);
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
    }

    #[test]
    fn key_id_rejects_other_text(text in "\\PC{0,70}") {
        let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match text.parse::<KeyId>() {
            Ok(id) => { prop_assert!(valid); prop_assert_eq!(id.to_string(), text); }
            Err(err) => {
                prop_assert!(!valid);
                let is_invalid_key_id = matches!(err, KeyError::InvalidKeyId { .. });
                prop_assert!(is_invalid_key_id);
            }
        }
    }

    #[test]
    fn envelope_round_trips_with_any_signatures(
        payload_type in PAYLOAD_TYPE,
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        sigs in proptest::collection::btree_map(any::<[u8; 32]>(), any::<[u8; 32]>(), 0..5),
    ) {
        let mut env = Envelope::new(payload_type, payload);
        for (id, half) in &sigs {
            let keyid: KeyId = hex::encode(id).parse().unwrap();
            env.attach(keyid, [half.as_slice(), half.as_slice()].concat()).unwrap();
        }
        let bytes = env.to_canonical_json();
        let parsed = Envelope::parse_canonical(&bytes).unwrap();
        prop_assert_eq!(&parsed, &env);
        prop_assert_eq!(parsed.to_canonical_json(), bytes);
        // Serde goes through the same form.
        prop_assert_eq!(serde_json::from_slice::<Envelope>(&serde_json::to_vec(&env).unwrap()).unwrap(), env);
    }

    #[test]
    fn parse_canonical_never_panics_and_accepts_only_fixed_points(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(env) = Envelope::parse_canonical(&bytes) {
            prop_assert_eq!(env.to_canonical_json(), bytes);
        }
    }

    #[test]
    fn any_byte_change_in_canonical_envelope_is_refused_or_fails_verification(
        seed in any::<[u8; 32]>(),
        payload in proptest::collection::vec(any::<u8>(), 1..64),
        index in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (env, keys) = signed_envelope(seed, "application/x-test", &payload);
        let mut bytes = env.to_canonical_json();
        let i = index.index(bytes.len());
        bytes[i] ^= 1 << bit;
        match Envelope::parse_canonical(&bytes) {
            Err(EnvelopeError::Json { .. } | EnvelopeError::NotCanonical) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
            Ok(changed) => match verify_envelope(&changed, "application/x-test", &[&keys]) {
                Err(
                    TrustError::WrongPayloadType { .. }
                    | TrustError::UnknownKey { .. }
                    | TrustError::BadSignature { .. },
                ) => {}
                other => prop_assert!(false, "{changed:?} gave {other:?}"),
            },
        }
    }
}
