//! `<id>/status.json`: the one mutable, unsigned file of a backup.
//!
//! It says whether the backup is Running, Success or Failed and carries what listings show.
//! It is not trusted for anything else: a restore reads only the signed manifest, and
//! Success is a precondition, never a proof (verification re-checks everything).

use std::io::Read as _;

use serde::{Deserialize, Serialize};

use super::error::ArchiveError;
use super::names::BackupId;
use super::storage::{BackupStorage, Commit};

/// The status file's name inside a backup.
pub const STATUS_FILE: &str = "status.json";

/// The largest status file read (it holds a reason and a few fields).
const MAX_STATUS_BYTES: u64 = 1 << 20;

/// Where a backup is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
pub enum BackupState {
    Running,
    Success,
    Failed,
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum BackupKind {
    Manual,
    Scheduled,
    PreUpgrade,
}

/// The contents of `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    pub status: BackupState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<jiff::Timestamp>,
    /// Bytes stored: entries and manifest (0 while Running).
    pub size_bytes: u64,
    pub app_version: String,
    pub kind: BackupKind,
    /// The revision a pre-upgrade backup was taken of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    pub encrypted: bool,
    /// The identity of the bundle the backed-up version runs (`sha256:…`): the store keeps it
    /// pinned while the backup exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

/// The status file's key.
pub(crate) fn status_key(id: &BackupId) -> String {
    format!("{id}/{STATUS_FILE}")
}

/// Reads a backup's status; [`ArchiveError::NotFound`] when there is no such backup.
pub fn read_status(storage: &dyn BackupStorage, id: &BackupId) -> Result<BackupStatus, ArchiveError> {
    read_status_at(storage, id, &status_key(id))
}

pub(crate) fn read_status_at(
    storage: &dyn BackupStorage,
    id: &BackupId,
    key: &str,
) -> Result<BackupStatus, ArchiveError> {
    let mut bytes = Vec::new();
    match storage.open(key) {
        Ok(r) => r.take(MAX_STATUS_BYTES + 1).read_to_end(&mut bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ArchiveError::NotFound { id: *id }),
        Err(e) => Err(e),
    }
    .map_err(|e| ArchiveError::io(format!("reading the status of backup {id}"), e))?;
    if bytes.len() as u64 > MAX_STATUS_BYTES {
        return Err(ArchiveError::StatusInvalid {
            id: *id,
            reason: format!("it is larger than {MAX_STATUS_BYTES} bytes"),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ArchiveError::StatusInvalid {
        id: *id,
        reason: e.to_string(),
    })
}

/// Writes a backup's status (atomically replacing the previous one).
pub fn write_status(storage: &dyn BackupStorage, id: &BackupId, status: &BackupStatus) -> Result<(), ArchiveError> {
    write_status_at(storage, id, &status_key(id), status, Commit::Replace)
}

pub(crate) fn write_status_at(
    storage: &dyn BackupStorage,
    id: &BackupId,
    key: &str,
    status: &BackupStatus,
    mode: Commit,
) -> Result<(), ArchiveError> {
    let mut bytes = serde_json::to_vec_pretty(status).map_err(|e| ArchiveError::StatusInvalid {
        id: *id,
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    let mut object = storage
        .create(key)
        .map_err(|e| ArchiveError::io(format!("writing the status of backup {id}"), e))?;
    std::io::Write::write_all(&mut object, &bytes)
        .and_then(|()| object.commit(mode))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => ArchiveError::Exists { id: *id },
            _ => ArchiveError::io(format!("writing the status of backup {id}"), e),
        })
}

/// Every backup id in the storage, oldest first. Prefixes that are no id (staging) are
/// skipped.
pub fn list_backups(storage: &dyn BackupStorage) -> Result<Vec<BackupId>, ArchiveError> {
    let mut ids: Vec<BackupId> = storage
        .list_prefixes()
        .map_err(|e| ArchiveError::io("listing the backups", e))?
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    ids.sort();
    Ok(ids)
}
