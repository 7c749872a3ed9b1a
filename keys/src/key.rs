//! Ed25519 keys: key ids, public keys (SPKI) and signing keys (PKCS#8).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{KeypairBytes, PublicKeyBytes};
use pkcs8::der::zeroize::Zeroizing;
use pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use pkcs8::{DecodePublicKey as _, EncryptedPrivateKeyInfo, SecretDocument};
use sha2::{Digest as _, Sha256};

use crate::error::KeyError;

/// The environment variable [`SigningKey::load`] is usually given: it holds the passphrase of
/// encrypted private key files.
pub const PASSPHRASE_ENV: &str = "SEALIFT_KEY_PASSPHRASE";

const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
const ENCRYPTED_PRIVATE_KEY_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// A key's id: the lowercase hex sha256 of the key's SPKI DER encoding (64 characters).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 32]);

impl KeyId {
    /// The id of the key with this SPKI DER encoding.
    pub fn of_spki_der(spki_der: &[u8]) -> KeyId {
        KeyId(Sha256::digest(spki_der).into())
    }

    /// The 32 bytes of the hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<KeyId, KeyError> {
        let invalid = || KeyError::InvalidKeyId { value: s.to_owned() };
        // Only the lowercase form is accepted, so that one key has one spelling.
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| invalid())?;
        Ok(KeyId(bytes))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<KeyId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ed25519 public key that is canonically encoded and not weak.
///
/// Equality is by the 32-byte encoding. Signatures are checked with `verify_strict` only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// A public key from its 32-byte encoding; refuses non-canonical encodings and weak keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        let non_canonical = || KeyError::NonCanonicalPublicKey {
            key: hex::encode(bytes),
        };
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| non_canonical())?;
        // `from_bytes` accepts y coordinates ≥ p; re-encoding the point shows them.
        if key.to_edwards().compress().to_bytes() != *bytes {
            return Err(non_canonical());
        }
        let key = PublicKey(key);
        if key.0.is_weak() {
            return Err(KeyError::WeakPublicKey { keyid: key.key_id() });
        }
        Ok(key)
    }

    /// A public key from SPKI DER (RFC 8410), which must be the canonical 44-byte encoding.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let bytes =
            PublicKeyBytes::from_public_key_der(der).map_err(|source| KeyError::MalformedPublicKey { source })?;
        let key = PublicKey::from_bytes(bytes.as_ref())?;
        if key.to_spki_der() != der {
            return Err(KeyError::NonCanonicalPublicKey {
                key: hex::encode(bytes.as_ref()),
            });
        }
        Ok(key)
    }

    /// A public key from SPKI PEM (`BEGIN PUBLIC KEY`), as `openssl pkey -pubout` writes.
    pub fn from_spki_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let (label, doc) =
            pkcs8::Document::from_pem(pem).map_err(|source| KeyError::MalformedPublicKey { source: source.into() })?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::MalformedPublicKey {
                source: pkcs8::spki::Error::Asn1(pkcs8::der::Error::from(
                    pkcs8::der::pem::Error::UnexpectedTypeLabel { expected: "PUBLIC KEY" },
                )),
            });
        }
        PublicKey::from_spki_der(doc.as_bytes())
    }

    /// Reads an SPKI PEM public key file.
    pub fn load(path: impl AsRef<Path>) -> Result<PublicKey, KeyError> {
        let path = path.as_ref();
        let pem = fs_err::read_to_string(path)?;
        PublicKey::from_spki_pem(&pem).map_err(|source| KeyError::KeyFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// The SPKI DER encoding (44 bytes).
    pub fn to_spki_der(&self) -> Vec<u8> {
        spki_der(self.0.as_bytes())
    }

    /// The SPKI PEM encoding, with a final newline.
    pub fn to_spki_pem(&self) -> String {
        pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.to_spki_der())
            .unwrap_or_else(|_| unreachable!("pem encoding of 44 bytes cannot fail"))
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of_spki_der(&self.to_spki_der())
    }

    /// Checks an ed25519 signature over `msg` with `verify_strict`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| KeyError::SignatureLength {
            keyid: self.key_id(),
            len: sig.len(),
        })?;
        self.0
            .verify_strict(msg, &sig)
            .map_err(|_| KeyError::BadSignature { keyid: self.key_id() })
    }

    /// Writes the SPKI PEM to a new file; refuses to overwrite one.
    pub fn save_new(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        write_new(path.as_ref(), self.to_spki_pem().as_bytes(), 0o644)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

/// SPKI DER for ed25519 (RFC 8410): a fixed 12-byte prefix and the 32-byte key.
fn spki_der(key: &[u8; 32]) -> Vec<u8> {
    PublicKeyBytes(*key)
        .to_public_key_der()
        .map(|doc| doc.into_vec())
        .unwrap_or_else(|_| unreachable!("der encoding of a 32-byte key cannot fail"))
}

/// An ed25519 private key; zeroized on drop.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key with this 32-byte seed (RFC 8032 private key), for deterministic test keys.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A key from PKCS#8 PEM: `BEGIN PRIVATE KEY` (RFC 8410, v1 or v2 with the public key) or
    /// `BEGIN ENCRYPTED PRIVATE KEY` (PBES2, as OpenSSL writes), which needs the passphrase.
    pub fn from_pkcs8_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        let label = pkcs8::der::pem::decode_label(pem.as_bytes()).map_err(|source| KeyError::MalformedPrivateKey {
            source: pkcs8::der::Error::from(source).into(),
        })?;
        match label {
            PRIVATE_KEY_LABEL => ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                .map(SigningKey)
                .map_err(|source| KeyError::MalformedPrivateKey { source }),
            ENCRYPTED_PRIVATE_KEY_LABEL => {
                let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
                let (_, doc) = SecretDocument::from_pem(pem)
                    .map_err(|source| KeyError::MalformedPrivateKey { source: source.into() })?;
                let info = EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
                    .map_err(|source| KeyError::MalformedPrivateKey { source })?;
                let der = info
                    .decrypt(passphrase)
                    .map_err(|source| KeyError::Decrypt { source })?;
                // A wrong passphrase passes the padding check one time in 256 and yields garbage.
                ed25519_dalek::SigningKey::from_pkcs8_der(der.as_bytes())
                    .map(SigningKey)
                    .map_err(|source| KeyError::Decrypt { source })
            }
            other => Err(KeyError::UnexpectedPemLabel {
                label: other.to_owned(),
            }),
        }
    }

    /// Reads a PKCS#8 PEM private key file. If it is encrypted, its passphrase is the value of
    /// the environment variable `passphrase_env` (usually [`PASSPHRASE_ENV`]).
    pub fn load(path: impl AsRef<Path>, passphrase_env: &str) -> Result<SigningKey, KeyError> {
        let path = path.as_ref();
        let pem = Zeroizing::new(fs_err::read_to_string(path)?);
        let in_file = |source: KeyError| KeyError::KeyFile {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let encrypted =
            pkcs8::der::pem::decode_label(pem.as_bytes()).is_ok_and(|label| label == ENCRYPTED_PRIVATE_KEY_LABEL);
        if !encrypted {
            return SigningKey::from_pkcs8_pem(&pem, None).map_err(in_file);
        }
        let passphrase = std::env::var_os(passphrase_env).ok_or_else(|| KeyError::PassphraseEnvUnset {
            path: path.to_owned(),
            var: passphrase_env.to_owned(),
        })?;
        let passphrase = Zeroizing::new(passphrase.into_encoded_bytes());
        SigningKey::from_pkcs8_pem(&pem, Some(&passphrase)).map_err(in_file)
    }

    /// The unencrypted PKCS#8 PEM (RFC 8410 v1, as `openssl genpkey` writes), with a final newline.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let keypair = KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        keypair
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap_or_else(|_| unreachable!("pkcs#8 encoding of a 32-byte seed cannot fail"))
    }

    /// Writes the unencrypted PKCS#8 PEM to a new file created with mode 0600; refuses to
    /// overwrite one.
    pub fn save_new(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        write_new(path.as_ref(), self.to_pkcs8_pem().as_bytes(), 0o600)
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// The ed25519 signature of `msg` (pure Ed25519, deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

/// The files written by [`generate_key_files`].
#[derive(Debug)]
pub struct GeneratedKeyFiles {
    /// The new key's id.
    pub keyid: KeyId,
    /// `DIR/NAME.key`, the private key (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// `DIR/NAME.pub`, the public key (SPKI PEM).
    pub public_key: PathBuf,
}

/// Generates a key and writes `dir/name.key` (PKCS#8 PEM, created with mode 0600) and
/// `dir/name.pub` (SPKI PEM). Refuses to overwrite either file.
pub fn generate_key_files(dir: &Path, name: &str) -> Result<GeneratedKeyFiles, KeyError> {
    let valid_name = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid_name {
        return Err(KeyError::InvalidKeyName { name: name.to_owned() });
    }
    let private_key = dir.join(format!("{name}.key"));
    let public_key = dir.join(format!("{name}.pub"));
    for path in [&private_key, &public_key] {
        if fs_err::symlink_metadata(path).is_ok() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    let key = SigningKey::generate();
    key.save_new(&private_key)?;
    if let Err(e) = key.public_key().save_new(&public_key) {
        // Leave nothing half-made behind.
        let _ = fs_err::remove_file(&private_key);
        return Err(e);
    }
    Ok(GeneratedKeyFiles {
        keyid: key.key_id(),
        private_key,
        public_key,
    })
}

/// Creates `path` (never overwriting) with `mode` on Unix, writes `contents` and syncs it.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::io::Write as _;

    let mut options = fs_err::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use fs_err::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: path.to_owned() }
        } else {
            KeyError::Io(e)
        }
    })?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn key_id_is_sha256_of_spki_der() {
        let key = SigningKey::from_seed(&[7; 32]).public_key();
        let der = key.to_spki_der();
        assert_eq!(der.len(), 44);
        assert_eq!(
            key.key_id().to_string(),
            hex::encode(Sha256::digest(&der)),
            "keyid is the hex sha256 of the SPKI DER"
        );
    }

    #[test]
    fn rejects_uppercase_or_short_key_id() {
        let id = SigningKey::from_seed(&[1; 32]).key_id().to_string();
        for bad in [
            id.to_uppercase(),
            id[..63].to_owned(),
            format!("{id}0"),
            "zz".repeat(32),
        ] {
            let err = bad.parse::<KeyId>().unwrap_err();
            assert!(
                matches!(&err, KeyError::InvalidKeyId { value } if *value == bad),
                "{err:?}"
            );
            assert!(err.to_string().starts_with("invalid key id"), "{err}");
        }
    }

    #[test]
    fn key_id_serializes_as_string() {
        let id = SigningKey::from_seed(&[1; 32]).key_id();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
        let err = serde_json::from_str::<KeyId>("\"abc\"").unwrap_err();
        assert!(err.to_string().contains("invalid key id"), "{err}");
    }

    #[test]
    fn public_key_pem_and_der_round_trip() {
        let key = SigningKey::from_seed(&[2; 32]).public_key();
        let pem = key.to_spki_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(PublicKey::from_spki_pem(&pem).unwrap(), key);
        assert_eq!(PublicKey::from_spki_der(&key.to_spki_der()).unwrap(), key);
    }

    #[test]
    fn rejects_weak_public_key() {
        // The identity point: small order, signs "anything" under non-strict verification.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let err = PublicKey::from_bytes(&identity).unwrap_err();
        let keyid = KeyId::of_spki_der(&spki_der(&identity));
        assert!(
            matches!(&err, KeyError::WeakPublicKey { keyid: k } if *k == keyid),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("public key {keyid} is weak (a small-order point) and cannot be trusted")
        );
        // Also through SPKI DER and PEM.
        let err = PublicKey::from_spki_der(&spki_der(&identity)).unwrap_err();
        assert!(matches!(err, KeyError::WeakPublicKey { .. }), "{err:?}");
    }

    #[test]
    fn rejects_non_canonical_point_encoding() {
        // y = p + 1 (p = 2^255 - 19), which decompresses to the same point as y = 1.
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xee;
        bytes[31] = 0x7f;
        let err = PublicKey::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(&err, KeyError::NonCanonicalPublicKey { key } if *key == hex::encode(bytes)),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("public key {} is not canonically encoded", hex::encode(bytes))
        );
    }

    #[test]
    fn rejects_non_canonical_spki_der() {
        let key = SigningKey::from_seed(&[3; 32]).public_key();
        // Same key, with explicit NULL algorithm parameters (not RFC 8410's encoding).
        let mut der = vec![0x30, 0x2c, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00];
        der.extend_from_slice(&[0x03, 0x21, 0x00]);
        der.extend_from_slice(key.as_bytes());
        let err = PublicKey::from_spki_der(&der).unwrap_err();
        assert!(
            matches!(
                &err,
                KeyError::MalformedPublicKey { .. } | KeyError::NonCanonicalPublicKey { .. }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_malformed_public_key() {
        let err = PublicKey::from_spki_der(b"not der").unwrap_err();
        assert!(matches!(err, KeyError::MalformedPublicKey { .. }), "{err:?}");
        assert_eq!(err.to_string(), "malformed ed25519 spki public key");
        // A private key where a public key belongs.
        let pem = SigningKey::from_seed(&[4; 32]).to_pkcs8_pem();
        let err = PublicKey::from_spki_pem(&pem).unwrap_err();
        assert!(matches!(err, KeyError::MalformedPublicKey { .. }), "{err:?}");
    }

    #[test]
    fn signing_key_pem_round_trip_is_rfc8410_v1() {
        let key = SigningKey::from_seed(&[5; 32]);
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{}", *pem);
        let (_, doc) = SecretDocument::from_pem(&pem).unwrap();
        assert_eq!(doc.as_bytes().len(), 48, "v1 without the public key, as openssl writes");
        let back = SigningKey::from_pkcs8_pem(&pem, None).unwrap();
        assert_eq!(back.key_id(), key.key_id());
    }

    #[test]
    fn loads_v2_pkcs8_with_public_key() {
        let key = SigningKey::from_seed(&[6; 32]);
        let v2 = KeypairBytes {
            secret_key: [6; 32],
            public_key: Some(PublicKeyBytes(*key.public_key().as_bytes())),
        }
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
        assert_eq!(SigningKey::from_pkcs8_pem(&v2, None).unwrap().key_id(), key.key_id());

        // A v2 key whose public key does not belong to the private key is refused.
        let other = SigningKey::from_seed(&[9; 32]).public_key();
        let bad = KeypairBytes {
            secret_key: [6; 32],
            public_key: Some(PublicKeyBytes(*other.as_bytes())),
        }
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
        let err = SigningKey::from_pkcs8_pem(&bad, None).unwrap_err();
        assert!(matches!(err, KeyError::MalformedPrivateKey { .. }), "{err:?}");
        assert_eq!(err.to_string(), "malformed ed25519 pkcs#8 private key");
    }

    #[test]
    fn rejects_public_key_pem_as_private_key() {
        let pem = SigningKey::from_seed(&[4; 32]).public_key().to_spki_pem();
        let err = SigningKey::from_pkcs8_pem(&pem, None).unwrap_err();
        assert!(
            matches!(&err, KeyError::UnexpectedPemLabel { label } if label == "PUBLIC KEY"),
            "{err:?}"
        );
        assert!(err.to_string().ends_with("found BEGIN PUBLIC KEY"), "{err}");
    }

    #[test]
    fn rejects_text_that_is_not_pem() {
        let err = SigningKey::from_pkcs8_pem("hello", None).unwrap_err();
        assert!(matches!(err, KeyError::MalformedPrivateKey { .. }), "{err:?}");
    }

    #[test]
    fn encrypted_key_round_trip_through_pkcs8_encryption() {
        let key = SigningKey::from_seed(&[8; 32]);
        let pem = KeypairBytes {
            secret_key: [8; 32],
            public_key: None,
        }
        .to_pkcs8_encrypted_pem(rand::rngs::OsRng, b"hunter2", LineEnding::LF)
        .unwrap();
        let back = SigningKey::from_pkcs8_pem(&pem, Some(b"hunter2")).unwrap();
        assert_eq!(back.key_id(), key.key_id());

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
    fn verify_rejects_wrong_length_and_wrong_message() {
        let key = SigningKey::from_seed(&[10; 32]);
        let public = key.public_key();
        let sig = key.sign(b"hello");
        public.verify(b"hello", &sig).unwrap();

        let err = public.verify(b"hello", &sig[..63]).unwrap_err();
        assert!(
            matches!(&err, KeyError::SignatureLength { keyid, len: 63 } if *keyid == key.key_id()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("signature by key {} is 63 bytes long, expected 64", key.key_id())
        );

        let err = public.verify(b"hellO", &sig).unwrap_err();
        assert!(
            matches!(&err, KeyError::BadSignature { keyid } if *keyid == key.key_id()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("signature by key {} does not verify", key.key_id())
        );
    }

    #[test]
    fn verify_rejects_non_reduced_s() {
        // s + ℓ verifies under lax checks in some libraries; never here.
        let key = SigningKey::from_seed(&[11; 32]);
        let mut sig = key.sign(b"msg");
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (s, l) in sig[32..].iter_mut().zip(L) {
            let v = u16::from(*s) + u16::from(l) + carry;
            *s = v as u8;
            carry = v >> 8;
        }
        let err = key.public_key().verify(b"msg", &sig).unwrap_err();
        assert!(matches!(err, KeyError::BadSignature { .. }), "{err:?}");
    }

    #[test]
    fn generate_key_files_writes_private_0600_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_key_files(dir.path(), "release").unwrap();
        assert_eq!(files.private_key, dir.path().join("release.key"));
        assert_eq!(files.public_key, dir.path().join("release.pub"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs_err::metadata(&files.private_key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = SigningKey::load(&files.private_key, "SEALIFT_TEST_UNSET_VARIABLE").unwrap();
        assert_eq!(key.key_id(), files.keyid);
        assert_eq!(PublicKey::load(&files.public_key).unwrap().key_id(), files.keyid);

        let err = generate_key_files(dir.path(), "release").unwrap_err();
        assert!(
            matches!(&err, KeyError::Exists { path } if *path == files.private_key),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{} already exists; refusing to overwrite it",
                files.private_key.display()
            )
        );
        // A stray .pub alone also stops it, before any key is written.
        fs_err::write(dir.path().join("other.pub"), "x").unwrap();
        let err = generate_key_files(dir.path(), "other").unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err:?}");
        assert!(!dir.path().join("other.key").exists());
        // save_new on its own refuses too.
        let err = key.save_new(&files.private_key).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err:?}");
    }

    #[test]
    fn generate_key_files_rejects_path_like_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "../x", "a/b", ".hidden", "a b"] {
            let err = generate_key_files(dir.path(), name).unwrap_err();
            assert!(
                matches!(&err, KeyError::InvalidKeyName { name: n } if n == name),
                "{err:?}"
            );
            assert!(err.to_string().starts_with("invalid key name"), "{err}");
        }
    }

    #[test]
    fn load_names_the_file_and_passes_io_errors_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.pub");
        fs_err::write(&path, "garbage").unwrap();
        let err = PublicKey::load(&path).unwrap_err();
        match &err {
            KeyError::KeyFile { path: p, source } => {
                assert_eq!(p, &path);
                assert!(matches!(**source, KeyError::MalformedPublicKey { .. }));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.to_string(), format!("key file {}", path.display()));

        let missing = dir.path().join("missing.key");
        let err = SigningKey::load(&missing, PASSPHRASE_ENV).unwrap_err();
        assert!(matches!(&err, KeyError::Io(e) if e.kind() == std::io::ErrorKind::NotFound));
        assert!(err.to_string().contains("missing.key"), "{err}");
    }
}
