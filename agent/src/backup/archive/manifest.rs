//! `<id>/manifest.json`: the signed list of a backup's entries, and who may have signed it.

use serde::{Deserialize, Serialize};

use super::error::ArchiveError;
use super::names::{BackupId, EntryName};
use super::status::BackupKind;

/// The DSSE payload type of a backup manifest.
pub const BACKUP_PAYLOAD_TYPE: &str = "application/vnd.sealift.backup.v1+json";

/// The manifest file's name inside a backup.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The only manifest format this agent writes and reads.
pub const FORMAT: u32 = 1;

/// What the backup engine says about a backup; signed into its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub product: String,
    pub app_version: String,
    /// The identity of the bundle the application runs, `sha256:<hex>`.
    pub bundle: String,
    /// That bundle's sequence.
    pub sequence: u64,
    /// The namespace the application's objects were read from.
    pub source_namespace: String,
    pub kind: BackupKind,
    /// The revision a pre-upgrade backup was taken of.
    pub revision: Option<u32>,
}

/// The signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupManifest {
    /// Always [`FORMAT`].
    pub format: u32,
    pub id: BackupId,
    pub product: String,
    pub app_version: String,
    pub bundle: String,
    pub sequence: u64,
    pub source_namespace: String,
    pub kind: BackupKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    pub created: jiff::Timestamp,
    /// Set when every entry is age-encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<Encryption>,
    /// Every entry, sorted by path, each once.
    pub entries: Vec<ManifestEntry>,
}

/// How a backup's entries are encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Encryption {
    /// The age X25519 recipient (`age1…`) they are encrypted to.
    pub recipient: String,
}

/// One entry as stored (after encryption, if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ManifestEntry {
    pub path: EntryName,
    /// Stored bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
}

impl BackupManifest {
    /// The entry listed at `path`.
    pub fn entry(&self, path: &EntryName) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| e.path.cmp(path))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Bytes of all entries.
    pub fn entries_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// The keys a backup's manifest may be signed with.
#[derive(Debug, Clone)]
pub struct BackupTrust {
    /// This agent's own key.
    pub own: keys::PublicKey,
    /// Other agents' keys, from `backups.trustedKeys`.
    pub trusted: Vec<keys::PublicKey>,
}

impl BackupTrust {
    fn key(&self, keyid: &keys::KeyId) -> Option<&keys::PublicKey> {
        std::iter::once(&self.own)
            .chain(&self.trusted)
            .find(|k| k.key_id() == *keyid)
    }
}

/// The manifest's envelope bytes: canonical DSSE, one signature by `key`.
pub(crate) fn sign(manifest: &BackupManifest, key: &keys::SigningKey) -> Result<Vec<u8>, ArchiveError> {
    let invalid = |reason: String| ArchiveError::ManifestInvalid {
        id: manifest.id.to_string(),
        reason,
    };
    let payload = serde_json::to_vec(manifest).map_err(|e| invalid(e.to_string()))?;
    let mut envelope = keys::Envelope::new(BACKUP_PAYLOAD_TYPE, payload);
    envelope.sign(key).map_err(|e| invalid(e.to_string()))?;
    Ok(envelope.to_canonical_json())
}

/// Parses and checks a manifest envelope: canonical form, exactly one signature, by a
/// trusted key, verifying (`verify_strict`); then the payload, strictly. `label` names the
/// backup in messages (the id it is stored under, or the archive being imported).
pub(crate) fn verify(bytes: &[u8], trust: &BackupTrust, label: &str) -> Result<BackupManifest, ArchiveError> {
    let invalid = |reason: String| ArchiveError::ManifestInvalid {
        id: label.to_owned(),
        reason,
    };
    let envelope = keys::Envelope::parse_canonical(bytes).map_err(|e| invalid(error_chain(&e)))?;
    if envelope.payload_type != BACKUP_PAYLOAD_TYPE {
        return Err(invalid(format!(
            "payload type is {:?}, expected {BACKUP_PAYLOAD_TYPE:?}",
            envelope.payload_type
        )));
    }
    let [signature] = envelope.signatures.as_slice() else {
        return Err(invalid(format!(
            "it has {} signatures, expected exactly one (the agent's)",
            envelope.signatures.len()
        )));
    };
    let key = trust.key(&signature.keyid).ok_or_else(|| ArchiveError::UntrustedKey {
        id: label.to_owned(),
        keyid: signature.keyid,
    })?;
    key.verify(&envelope.pae_bytes(), &signature.sig)
        .map_err(|_| ArchiveError::SignatureInvalid {
            id: label.to_owned(),
            keyid: signature.keyid,
        })?;
    let manifest: BackupManifest =
        serde_json::from_slice(&envelope.payload).map_err(|e| invalid(format!("payload: {e}")))?;
    check_payload(&manifest).map_err(invalid)?;
    Ok(manifest)
}

/// What serde cannot say: the format, sorted unique entries, well-formed digests.
fn check_payload(manifest: &BackupManifest) -> Result<(), String> {
    if manifest.format != FORMAT {
        return Err(format!(
            "format {} is not supported (this agent reads format {FORMAT})",
            manifest.format
        ));
    }
    if let Some(w) = manifest.entries.windows(2).find(|w| w[0].path >= w[1].path) {
        return Err(format!(
            "entries are not sorted by path and unique: {} before {}",
            w[0].path, w[1].path
        ));
    }
    if let Some(e) = manifest
        .entries
        .iter()
        .find(|e| e.sha256.len() != 64 || !e.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    {
        return Err(format!("entry {} has a malformed sha256 {:?}", e.path, e.sha256));
    }
    Ok(())
}

/// An error with its sources, `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Checks that `identity` can decrypt a backup encrypted as `manifest` says. Comparing
/// recipients suffices: the ciphertext's digest is signed, so it is exactly what the agent
/// encrypted to that recipient.
pub(crate) fn check_key(
    manifest: &BackupManifest,
    identity: Option<&age::x25519::Identity>,
) -> Result<(), ArchiveError> {
    let Some(enc) = &manifest.encrypted else {
        return Ok(());
    };
    let id = manifest.id.to_string();
    let Some(identity) = identity else {
        return Err(ArchiveError::EncryptedNoKey {
            id,
            recipient: enc.recipient.clone(),
        });
    };
    let have = identity.to_public().to_string();
    if have != enc.recipient {
        return Err(ArchiveError::DecryptFailed {
            id,
            reason: format!(
                "it is encrypted to {}, and the configured key is that of {have}",
                enc.recipient
            ),
        });
    }
    Ok(())
}
