//! The on-disk backup archive: layout, checksums, signature, optional encryption, and
//! export/import as one file.
//!
//! # Layout (keys in a [`BackupStorage`]; [`DirStorage`] maps them to files)
//!
//! ```text
//! <id>/status.json        mutable, unsigned: Running | Success | Failed, for listings
//! <id>/entries/<path>     the data, each entry possibly age-encrypted, written once
//! <id>/manifest.json      DSSE envelope (canonical JSON), payload type
//!                         application/vnd.sealift.backup.v1+json, one signature by the agent
//! ```
//!
//! `<id>` is a [`BackupId`] (`YYYY-MM-DDtHH-MM-SS`, UTC); `<path>` an [`EntryName`]. The
//! manifest ([`BackupManifest`]) lists every entry with the size and sha256 of its *stored*
//! bytes (ciphertext when encrypted), so integrity is checked without the decryption key and
//! an export carries encrypted backups as they are.
//!
//! # Rules
//!
//! - A backup is Success only after [`BackupWriter::finish`] hashed every committed entry
//!   again from storage and wrote the signed manifest. Anything else ends Failed: an error in
//!   `finish`, [`BackupWriter::fail`], a writer dropped unfinished, or an agent restart
//!   ([`recover_interrupted`]).
//! - Entries are written once (a commit never replaces one), through a temporary object and
//!   an atomic rename: an aborted upload leaves nothing, a second upload of a part is refused.
//! - Data is read only through a [`VerifiedBackup`] ([`open_verified`]), and that checks
//!   everything first: status, canonical envelope, exactly one signature by this agent's key
//!   or an explicitly trusted one (`verify_strict`), strict manifest naming the same id, the
//!   exact set of stored entries, each one's size and digest, and that the configured age
//!   identity is the recipient. Reads hash the bytes again and fail at the last byte if they
//!   changed since. Later passes of the same operation use [`reopen_verified`], which skips
//!   only the digest pass: a restore reads each stored byte twice (verify, restore), not once
//!   per pass.
//! - Every refusal is an [`ArchiveError`] with a stable [`ArchiveError::code`].
//!
//! # Choices
//!
//! - One signature, not a threshold: a backup is the agent's own statement. Trust in another
//!   agent's backups is explicit (`backups.trustedKeys`); an unknown key is named in the error.
//! - Encryption per entry (age X25519, streamed in 64 KiB chunks): memory stays bounded for
//!   GB-sized entries, and each entry decrypts on its own during a partial restore. A wrong
//!   key is detected at open by comparing recipients: the ciphertext's digest is signed, so it
//!   is exactly what was encrypted to the recipient the manifest names.
//! - The manifest is capped by [`keys::MAX_ENVELOPE_BYTES`] (1 MiB, the envelope parser's
//!   limit): several thousand entries. The engine should group small objects into entries.
//! - The export ([`export`], [`Export`]) puts the manifest first, so [`import`] verifies the
//!   signature before writing any entry byte and checks each entry as it streams in.

pub mod agent_key;
mod bundle_tar;
mod error;
mod manifest;
mod names;
mod reader;
mod status;
mod storage;
mod writer;

#[cfg(test)]
mod tests;

pub use agent_key::{SIGNING_KEY, load_identity, load_or_create};
pub use bundle_tar::{ARCHIVE_ROOT, Export, export, import};
pub use error::ArchiveError;
pub use manifest::{
    BACKUP_PAYLOAD_TYPE, BackupInfo, BackupManifest, BackupTrust, Encryption, FORMAT, MANIFEST_FILE, ManifestEntry,
};
pub use names::{BackupId, EntryName, MAX_ENTRY_NAME};
pub use reader::{VerifiedBackup, delete_backup, open_verified, reopen_verified};
pub use status::{BackupKind, BackupState, BackupStatus, STATUS_FILE, list_backups, read_status, write_status};
pub use storage::{BackupStorage, Commit, DirStorage, PendingObject, SharedStorage};
pub use writer::{
    ABANDONED_REASON, BackupWriter, ENTRIES_DIR, EntrySink, INTERRUPTED_REASON, mark_failed, open_part_sink,
    recover_interrupted,
};
