//! Ed25519 keys, DSSE envelopes and Sealift's roots of trust.
//!
//! - [`KeyId`], [`PublicKey`] (SPKI PEM/DER) and [`SigningKey`] (PKCS#8 PEM, optionally
//!   encrypted), interoperable with `openssl genpkey -algorithm ed25519`.
//! - [`Envelope`]: DSSE v1, signatures over [`pae`] of the exact payload bytes, one canonical
//!   byte form.
//! - [`RootDocument`] and [`KeySet`]: root and release keys with thresholds, by version.
//! - [`verify_envelope`] and [`RootChain::verify`]: threshold verification with `verify_strict`,
//!   counting distinct keys; root chains from version 1 through every trusted root.
//! - [`root_dir`]: the vendor's directory of root files and its init / rotate / sign operations.
//!
//! This crate is synchronous, touches no network, and knows nothing about bundles.

mod envelope;
mod error;
mod key;
mod root;
pub mod root_dir;
mod trust;

pub use envelope::{Envelope, MAX_ENVELOPE_BYTES, Signature, pae};
pub use error::{EnvelopeError, KeyError, KeySetError, RootDirError, RootError, TrustError};
pub use key::{GeneratedKeyFiles, KeyId, PASSPHRASE_ENV, PublicKey, SigningKey, generate_key_files};
pub use root::{KeySet, MANIFEST_PAYLOAD_TYPE, ROOT_PAYLOAD_TYPE, ROOT_TYPE, Role, RootDocument};
pub use trust::{RootChain, TrustedRoots, VerifiedChain, root_document, verify_envelope, verify_envelope_with_roles};

/// Re-exported so callers can hold [`SigningKey::to_pkcs8_pem`]'s result by name.
pub use pkcs8::der::zeroize::Zeroizing;
