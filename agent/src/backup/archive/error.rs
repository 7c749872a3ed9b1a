//! Why a backup archive was refused: one variant per reason, each with a stable code.

use super::names::{BackupId, EntryName};
use super::status::BackupState;

/// The one reason an archive operation was refused. Messages name the backup, the entry or
/// the key and what was expected against what was found, so an operator can act on them.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("there is no backup {id}")]
    NotFound { id: BackupId },
    #[error("backup {id} already exists")]
    Exists { id: BackupId },
    #[error("backup {id} is {status}, not Success{}", reason_suffix(.reason))]
    NotSuccessful {
        id: BackupId,
        status: BackupState,
        reason: Option<String>,
    },
    #[error("backup {id} is {status}: it no longer takes entries or status changes")]
    NotRunning { id: BackupId, status: BackupState },
    #[error("{value:?} is not a backup timestamp of the form YYYY-MM-DDtHH-MM-SS (UTC): {reason}")]
    IdInvalid { value: String, reason: String },
    #[error("the status of backup {id} cannot be read: {reason}")]
    StatusInvalid { id: BackupId, reason: String },
    #[error("the manifest of backup {id} is invalid: {reason}")]
    ManifestInvalid { id: String, reason: String },
    #[error("the manifest signature of backup {id} by key {keyid} does not verify")]
    SignatureInvalid { id: String, keyid: keys::KeyId },
    #[error(
        "backup {id} is signed by key {keyid}, which is neither this agent's key nor a trusted one\n\
         hint: to accept backups of that agent, add its public key (SPKI PEM) to backups.trustedKeys in the agent's configuration"
    )]
    UntrustedKey { id: String, keyid: keys::KeyId },
    #[error("backup {id} has no entry {path}, which its manifest lists")]
    EntryMissing { id: String, path: EntryName },
    #[error("entry {path} of backup {id} is {found} bytes, the manifest says {expected}")]
    EntrySize {
        id: String,
        path: EntryName,
        expected: u64,
        found: u64,
    },
    #[error("entry {path} of backup {id} has sha256 {found}, the manifest says {expected}")]
    EntryDigest {
        id: String,
        path: EntryName,
        expected: String,
        found: String,
    },
    #[error("backup {id} holds {path}, which its manifest does not list")]
    EntryUnlisted { id: String, path: String },
    #[error("{value:?} is not a valid backup entry path: {reason}")]
    EntryName { value: String, reason: String },
    #[error("entry {path} of backup {id} is not what it should hold: {reason}")]
    EntryInvalid {
        id: BackupId,
        path: EntryName,
        reason: String,
    },
    #[error(
        "backup {id} is encrypted (to {recipient}) and no decryption key is configured\n\
         hint: configure the Secret key holding its AGE-SECRET-KEY-1… identity"
    )]
    EncryptedNoKey { id: String, recipient: String },
    #[error("backup {id} cannot be decrypted: {reason}")]
    DecryptFailed { id: String, reason: String },
    #[error("the backup archive is invalid: {reason}")]
    ArchiveInvalid { reason: String },
    #[error("entry {path} of backup {id} was already written; an entry is written once")]
    PartExists { id: BackupId, path: EntryName },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
}

impl ArchiveError {
    /// A stable, machine-readable code for the reason, as the API reports it.
    pub fn code(&self) -> &'static str {
        match self {
            ArchiveError::NotFound { .. } => "backup_not_found",
            ArchiveError::Exists { .. } => "backup_exists",
            ArchiveError::NotSuccessful { .. } => "backup_not_successful",
            ArchiveError::NotRunning { .. } => "backup_not_running",
            ArchiveError::IdInvalid { .. } => "backup_id_invalid",
            ArchiveError::StatusInvalid { .. } => "status_invalid",
            ArchiveError::ManifestInvalid { .. } => "manifest_invalid",
            ArchiveError::SignatureInvalid { .. } => "signature_invalid",
            ArchiveError::UntrustedKey { .. } => "untrusted_key",
            ArchiveError::EntryMissing { .. } => "entry_missing",
            ArchiveError::EntrySize { .. } => "entry_size",
            ArchiveError::EntryDigest { .. } => "entry_digest",
            ArchiveError::EntryUnlisted { .. } => "entry_unlisted",
            ArchiveError::EntryName { .. } => "entry_name",
            ArchiveError::EntryInvalid { .. } => "entry_invalid",
            ArchiveError::EncryptedNoKey { .. } => "encrypted_no_key",
            ArchiveError::DecryptFailed { .. } => "decrypt_failed",
            ArchiveError::ArchiveInvalid { .. } => "archive_invalid",
            ArchiveError::PartExists { .. } => "part_exists",
            ArchiveError::Io { .. } => "io",
        }
    }

    /// An I/O failure, with what was being done. An error that carries an `ArchiveError`
    /// (as [`super::VerifiedBackup::read`]'s reader reports a digest mismatch) is that error.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ArchiveError {
        if source.get_ref().is_some_and(|inner| inner.is::<ArchiveError>()) {
            let inner = source.into_inner().map(|b| b.downcast::<ArchiveError>());
            if let Some(Ok(e)) = inner {
                return *e;
            }
            unreachable!("checked to hold an ArchiveError just above")
        }
        ArchiveError::Io {
            context: context.into(),
            source,
        }
    }

    /// This error as an `io::Error` (for readers), recoverable with [`ArchiveError::io`].
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }
}
