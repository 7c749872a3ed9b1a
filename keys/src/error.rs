//! Error types of the `keys` crate.
//!
//! Messages are lowercase and name the key, version or path concerned; causes are attached with
//! `#[source]` rather than repeated in the text.

use std::path::PathBuf;

use crate::key::KeyId;
use crate::root::Role;

/// Errors reading, parsing or using a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key id that is not 64 lowercase hexadecimal characters.
    #[error("invalid key id {value:?}: expected 64 lowercase hexadecimal characters")]
    InvalidKeyId {
        /// The text that was given.
        value: String,
    },

    /// A public key that is not a well-formed ed25519 SubjectPublicKeyInfo.
    #[error("malformed ed25519 spki public key")]
    MalformedPublicKey {
        #[source]
        source: pkcs8::spki::Error,
    },

    /// A public key whose DER or point encoding is not the canonical one.
    #[error("public key {key} is not canonically encoded")]
    NonCanonicalPublicKey {
        /// Hex of the 32-byte encoding as given.
        key: String,
    },

    /// A public key of small order, which would let anyone forge signatures.
    #[error("public key {keyid} is weak (a small-order point) and cannot be trusted")]
    WeakPublicKey {
        /// The key's id.
        keyid: KeyId,
    },

    /// A private key that is not a well-formed ed25519 PKCS#8 document.
    #[error("malformed ed25519 pkcs#8 private key")]
    MalformedPrivateKey {
        #[source]
        source: pkcs8::Error,
    },

    /// A PEM file that holds something other than a PKCS#8 private key.
    #[error("expected a pkcs#8 private key (BEGIN PRIVATE KEY or BEGIN ENCRYPTED PRIVATE KEY), found BEGIN {label}")]
    UnexpectedPemLabel {
        /// The PEM label found.
        label: String,
    },

    /// An encrypted private key given without a passphrase.
    #[error("private key is encrypted and no passphrase was given")]
    PassphraseRequired,

    /// An encrypted private key whose passphrase is taken from an unset environment variable.
    #[error(
        "private key {} is encrypted: set the environment variable {var} to its passphrase",
        path.display()
    )]
    PassphraseEnvUnset {
        /// The key file.
        path: PathBuf,
        /// The environment variable that was read.
        var: String,
    },

    /// An encrypted private key that could not be decrypted.
    #[error("cannot decrypt private key: wrong passphrase or unsupported encryption")]
    Decrypt {
        #[source]
        source: pkcs8::Error,
    },

    /// A signature that is not 64 bytes long.
    #[error("signature by key {keyid} is {len} bytes long, expected 64")]
    SignatureLength {
        /// The key the signature claims.
        keyid: KeyId,
        /// Its length.
        len: usize,
    },

    /// A signature that does not verify (strictly) with the key.
    #[error("signature by key {keyid} does not verify")]
    BadSignature {
        /// The key that was used.
        keyid: KeyId,
    },

    /// A key name for `keygen` that is not a plain file name.
    #[error("invalid key name {name:?}: use letters, digits, '-', '_' and '.', not starting with '.'")]
    InvalidKeyName {
        /// The name given.
        name: String,
    },

    /// A file that would be overwritten.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },

    /// Something wrong with the contents of a key file.
    #[error("key file {}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        #[source]
        source: Box<KeyError>,
    },

    /// Reading or writing a file failed (the error names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Errors building or parsing a DSSE envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// An envelope over the size limit, refused before parsing.
    #[error("envelope is {size} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Its size (or at least this much, when read from a stream).
        size: u64,
        /// The limit.
        max: u64,
    },

    /// Bytes that are not a DSSE envelope.
    #[error("malformed dsse envelope")]
    Json {
        #[source]
        source: serde_json::Error,
    },

    /// Two signatures with one key id.
    #[error("envelope has more than one signature by key {keyid}")]
    DuplicateSignature {
        /// The repeated key id.
        keyid: KeyId,
    },

    /// A detached signature of the wrong length.
    #[error("signature by key {keyid} is {len} bytes long, expected 64")]
    SignatureLength {
        /// The key id given with it.
        keyid: KeyId,
        /// Its length.
        len: usize,
    },

    /// An envelope that parses but is not byte for byte in canonical form.
    #[error(
        "envelope is not in canonical form (compact json, fields payloadType, payload, signatures in that order, signatures sorted by keyid)"
    )]
    NotCanonical,
}

/// Errors in a set of keys with a threshold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The same key listed twice.
    #[error("key {keyid} is listed more than once")]
    DuplicateKey {
        /// The repeated key.
        keyid: KeyId,
    },

    /// A threshold of zero or above the number of keys.
    #[error("threshold {threshold} is not between 1 and the number of keys ({keys})")]
    ThresholdOutOfRange {
        /// The threshold.
        threshold: u32,
        /// The number of keys.
        keys: usize,
    },
}

/// Errors in a root document's payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// Not JSON of the root document's shape (unknown or duplicate fields included).
    #[error("malformed root document")]
    Json {
        #[source]
        source: serde_json::Error,
    },

    /// A `type` other than `sealift.root`.
    #[error("root document has type {found:?}, expected \"sealift.root\"")]
    WrongType {
        /// The type found.
        found: String,
    },

    /// Version 0.
    #[error("root document has version {version}; versions start at 1")]
    InvalidVersion {
        /// The version found.
        version: u32,
    },

    /// A key whose `publicKey` is not standard base64.
    #[error("{role} key {keyid} is not valid base64")]
    KeyEncoding {
        /// The key's role.
        role: Role,
        /// The key id listed beside it.
        keyid: String,
        #[source]
        source: base64::DecodeError,
    },

    /// A key that is malformed, non-canonical or weak.
    #[error("{role} key {keyid} is invalid")]
    Key {
        /// The key's role.
        role: Role,
        /// The key id listed beside it.
        keyid: String,
        #[source]
        source: KeyError,
    },

    /// A listed key id that is not the id of the key beside it.
    #[error("{role} key listed as {listed} has key id {actual}")]
    KeyIdMismatch {
        /// The key's role.
        role: Role,
        /// The key id listed.
        listed: String,
        /// The key's real id.
        actual: KeyId,
    },

    /// A key set that breaks the key-set rules.
    #[error("invalid {role} keys")]
    KeySet {
        /// The key set's role.
        role: Role,
        #[source]
        source: KeySetError,
    },
}

/// Errors verifying signatures and root chains.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// An envelope of another kind than expected (e.g. a root presented as a release).
    #[error("envelope has payload type {found:?}, expected {expected:?}")]
    WrongPayloadType {
        /// The payload type required.
        expected: String,
        /// The payload type found.
        found: String,
    },

    /// A signature by a key no governing key set lists.
    #[error("signature by unknown key {keyid}")]
    UnknownKey {
        /// The key id of the signature.
        keyid: KeyId,
    },

    /// A signature that does not verify.
    #[error("signature by key {keyid} does not verify")]
    BadSignature {
        /// The key id of the signature.
        keyid: KeyId,
        #[source]
        source: KeyError,
    },

    /// Two signatures with one key id.
    #[error("more than one signature by key {keyid}")]
    DuplicateSignature {
        /// The repeated key id.
        keyid: KeyId,
    },

    /// Too few distinct keys of a key set signed.
    #[error("{role} threshold not met: {have} valid signatures by distinct {role} keys, {need} required")]
    ThresholdNotMet {
        /// Whose keys.
        role: Role,
        /// How many distinct keys of the set signed.
        have: usize,
        /// The set's threshold.
        need: u32,
    },

    /// A root document that does not parse.
    #[error("invalid root document")]
    InvalidRoot {
        #[source]
        source: RootError,
    },

    /// A link of a root chain that does not verify.
    #[error("root version {version} does not verify")]
    RootLink {
        /// The version of the failing root.
        version: u32,
        #[source]
        source: Box<TrustError>,
    },

    /// A root chain with a version out of sequence.
    #[error("root chain is out of sequence: expected root version {expected}, found {found}")]
    ChainGap {
        /// The version expected at this position.
        expected: u32,
        /// The version found.
        found: u32,
    },

    /// A root chain whose root differs from the one already trusted at that version.
    #[error("root version {version} differs from the root version {version} already trusted")]
    RootMismatch {
        /// The version concerned.
        version: u32,
    },

    /// A root chain older than the newest trusted root: nothing goes back.
    #[error("root chain ends at version {have}, older than the trusted root version {need}")]
    ChainTooShort {
        /// The chain's newest version.
        have: u32,
        /// The newest trusted version.
        need: u32,
    },

    /// An envelope checked against no key set at all.
    #[error("no key set governs this envelope")]
    NoGoverningKeys,

    /// Nothing to anchor a chain to.
    #[error("no trusted root: a root chain can only be verified from a trusted root")]
    NoTrustedRoot,
}

/// Errors in a directory of root files (`1.root.json` … `N.root.json`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootDirError {
    /// No root file at all.
    #[error("no root files (<N>.root.json) in {}", dir.display())]
    Empty {
        /// The directory.
        dir: PathBuf,
    },

    /// A `*.root.json` file whose name is not `<N>.root.json` with N ≥ 1 without leading zeros.
    #[error("root file name {} is not <N>.root.json with N a version from 1", path.display())]
    BadFileName {
        /// The file.
        path: PathBuf,
    },

    /// A missing version below the newest.
    #[error("{} has {newest}.root.json but no {missing}.root.json", dir.display())]
    Gap {
        /// The directory.
        dir: PathBuf,
        /// The first missing version.
        missing: u32,
        /// The newest version present.
        newest: u32,
    },

    /// A version asked for that the directory does not have.
    #[error("{} has no root version {version} (newest is {newest})", dir.display())]
    NoSuchVersion {
        /// The directory.
        dir: PathBuf,
        /// The version asked for.
        version: u32,
        /// The newest version present.
        newest: u32,
    },

    /// A root file that is not a canonical DSSE envelope (or cannot take another signature).
    #[error("root file {}", path.display())]
    Envelope {
        /// The file.
        path: PathBuf,
        #[source]
        source: EnvelopeError,
    },

    /// A root file whose envelope is not a root or whose root document is invalid.
    #[error("root file {}", path.display())]
    Root {
        /// The file.
        path: PathBuf,
        #[source]
        source: Box<TrustError>,
    },

    /// A root file named for another version than it holds.
    #[error("root file {} holds root version {found}", path.display())]
    VersionMismatch {
        /// The file.
        path: PathBuf,
        /// The version inside.
        found: u32,
    },

    /// The directory's root chain does not verify.
    #[error("root chain in {} does not verify", dir.display())]
    Chain {
        /// The directory.
        dir: PathBuf,
        #[source]
        source: Box<TrustError>,
    },

    /// A key that may not sign this root version.
    #[error("key {keyid} may not sign root version {version}: it is not a root key of that version or the one before")]
    NotARootKey {
        /// The key.
        keyid: KeyId,
        /// The root version.
        version: u32,
    },

    /// A new or changed key set that breaks the key-set rules.
    #[error("invalid {role} keys")]
    KeySet {
        /// The key set's role.
        role: Role,
        #[source]
        source: KeySetError,
    },

    /// A root file that already exists.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },

    /// Writing a root file failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Reading the directory or a file failed (the error names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
