//! Writing a backup: status Running, entries (streamed, optionally age-encrypted), then the
//! signed manifest and status Success — or status Failed, never Success, when anything stops it.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::error::ArchiveError;
use super::manifest::{self, BackupInfo, BackupManifest, Encryption, FORMAT, MANIFEST_FILE, ManifestEntry};
use super::names::{BackupId, EntryName};
use super::status::{
    BackupState, BackupStatus, STATUS_FILE, list_backups, read_status, status_key, write_status, write_status_at,
};
use super::storage::{BackupStorage, Commit, PendingObject, SharedStorage};

/// The prefix of entries inside a backup.
pub const ENTRIES_DIR: &str = "entries";

/// The prefix import stages archives under (see [`super::import`]).
pub(crate) const INCOMING_PREFIX: &str = ".incoming-";

/// What [`recover_interrupted`] records as the reason.
pub const INTERRUPTED_REASON: &str = "interrupted: the agent stopped while it ran";

/// What a writer dropped without `finish` or `fail` records as the reason.
pub const ABANDONED_REASON: &str = "abandoned: the backup task ended without finishing it";

pub(crate) fn entry_key(id: &BackupId, path: &EntryName) -> String {
    format!("{id}/{ENTRIES_DIR}/{path}")
}

pub(crate) fn manifest_key(id: &BackupId) -> String {
    format!("{id}/{MANIFEST_FILE}")
}

/// A backup being written. Dropping it without [`BackupWriter::finish`] or
/// [`BackupWriter::fail`] marks the backup Failed, so a panicking capture never leaves one
/// Running.
pub struct BackupWriter {
    storage: SharedStorage,
    id: BackupId,
    info: BackupInfo,
    recipient: Option<age::x25519::Recipient>,
    done: bool,
}

impl std::fmt::Debug for BackupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupWriter")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BackupWriter {
    /// Starts backup `id` (status Running); [`ArchiveError::Exists`] when the id is taken.
    /// With `encryption`, every entry is age-encrypted to that recipient.
    pub fn create(
        storage: SharedStorage,
        id: BackupId,
        info: BackupInfo,
        encryption: Option<age::x25519::Recipient>,
    ) -> Result<BackupWriter, ArchiveError> {
        let status = BackupStatus {
            status: BackupState::Running,
            reason: None,
            created: id.to_timestamp(),
            finished: None,
            size_bytes: 0,
            app_version: info.app_version.clone(),
            kind: info.kind,
            revision: info.revision,
            encrypted: encryption.is_some(),
            bundle: Some(info.bundle.clone()),
        };
        write_status_at(storage.as_ref(), &id, &status_key(&id), &status, Commit::New)?;
        Ok(BackupWriter {
            storage,
            id,
            info,
            recipient: encryption,
            done: false,
        })
    }

    /// The backup's id.
    pub fn id(&self) -> BackupId {
        self.id
    }

    /// Writes a whole entry.
    pub fn add_bytes(&self, path: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        let mut sink = self.entry(path)?;
        sink.write_all(bytes)
            .map_err(|e| ArchiveError::io(format!("writing entry {path} of backup {}", self.id), e))?;
        sink.finish().map(|_| ())
    }

    /// Starts an entry, streamed: write to the sink, then [`EntrySink::finish`].
    pub fn entry(&self, path: &str) -> Result<EntrySink, ArchiveError> {
        EntrySink::open(self.storage.clone(), self.id, path.parse()?, self.recipient.clone())
    }

    /// Hashes every entry as stored, signs the manifest with `key`, marks the backup Success.
    /// On failure the backup is marked Failed with the reason, and the error returned.
    pub fn finish(mut self, key: &keys::SigningKey) -> Result<BackupStatus, ArchiveError> {
        self.done = true;
        let result = self.seal(key);
        if let Err(e) = &result {
            let _ = mark_failed(self.storage.as_ref(), &self.id, &e.to_string());
        }
        result
    }

    /// Marks the backup Failed with `reason`, keeping what it holds for inspection.
    pub fn fail(mut self, reason: &str) -> Result<BackupStatus, ArchiveError> {
        self.done = true;
        mark_failed(self.storage.as_ref(), &self.id, reason)
    }

    fn seal(&self, key: &keys::SigningKey) -> Result<BackupStatus, ArchiveError> {
        let storage = self.storage.as_ref();
        let mut status = running_status(storage, &self.id)?;
        let entries = hash_entries(storage, &self.id)?;
        let manifest = BackupManifest {
            format: FORMAT,
            id: self.id,
            product: self.info.product.clone(),
            app_version: self.info.app_version.clone(),
            bundle: self.info.bundle.clone(),
            sequence: self.info.sequence,
            source_namespace: self.info.source_namespace.clone(),
            kind: self.info.kind,
            revision: self.info.revision,
            created: status.created,
            encrypted: self.recipient.as_ref().map(|r| Encryption {
                recipient: r.to_string(),
            }),
            entries,
        };
        let envelope = manifest::sign(&manifest, key)?;
        put_new(storage, &manifest_key(&self.id), &envelope)
            .map_err(|e| ArchiveError::io(format!("writing the manifest of backup {}", self.id), e))?;
        status.status = BackupState::Success;
        status.finished = Some(jiff::Timestamp::now());
        status.size_bytes = manifest.entries_size() + envelope.len() as u64;
        write_status(storage, &self.id, &status)?;
        Ok(status)
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = mark_failed(self.storage.as_ref(), &self.id, ABANDONED_REASON)
        {
            tracing::warn!("backup {}: cannot mark it Failed: {e}", self.id);
        }
    }
}

/// The status of `id`, which must be Running.
fn running_status(storage: &dyn BackupStorage, id: &BackupId) -> Result<BackupStatus, ArchiveError> {
    let status = read_status(storage, id)?;
    if status.status != BackupState::Running {
        return Err(ArchiveError::NotRunning {
            id: *id,
            status: status.status,
        });
    }
    Ok(status)
}

/// Writes a small object once.
pub(crate) fn put_new(storage: &dyn BackupStorage, key: &str, bytes: &[u8]) -> io::Result<()> {
    let mut object = storage.create(key)?;
    object.write_all(bytes)?;
    object.commit(Commit::New)
}

/// The manifest entries of every committed entry of `id`, re-read from storage.
fn hash_entries(storage: &dyn BackupStorage, id: &BackupId) -> Result<Vec<ManifestEntry>, ArchiveError> {
    let prefix = format!("{id}/{ENTRIES_DIR}");
    let names = storage
        .list_objects(&prefix)
        .map_err(|e| ArchiveError::io(format!("listing the entries of backup {id}"), e))?;
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let path: EntryName = name.parse()?;
        let key = entry_key(id, &path);
        let (size, sha256) = storage
            .open(&key)
            .and_then(sha256_of)
            .map_err(|e| ArchiveError::io(format!("reading entry {path} of backup {id}"), e))?;
        entries.push(ManifestEntry { path, size, sha256 });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Size and lowercase hex SHA-256 of everything `r` yields.
pub(crate) fn sha256_of(mut r: impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// An entry being written: plaintext in, stored (possibly age-encrypted) bytes to a pending
/// object. Memory is bounded by the age chunk (64 KiB) and the write buffer. Nothing is
/// visible until [`EntrySink::finish`]; dropped before it, the entry is not there at all (an
/// aborted upload leaves nothing).
pub struct EntrySink {
    storage: SharedStorage,
    id: BackupId,
    path: EntryName,
    out: Option<SinkWriter>,
    written: u64,
}

enum SinkWriter {
    Plain(Box<dyn PendingObject>),
    Age(age::stream::StreamWriter<Box<dyn PendingObject>>),
}

impl std::fmt::Debug for EntrySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntrySink")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl EntrySink {
    fn open(
        storage: SharedStorage,
        id: BackupId,
        path: EntryName,
        recipient: Option<age::x25519::Recipient>,
    ) -> Result<EntrySink, ArchiveError> {
        let key = entry_key(&id, &path);
        let io_err = |e| ArchiveError::io(format!("writing entry {path} of backup {id}"), e);
        // Refused up front, so a second upload of a part does not send gigabytes first.
        match storage.size(&key) {
            Ok(_) => return Err(ArchiveError::PartExists { id, path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let pending = storage.create(&key).map_err(io_err)?;
        let out = match recipient {
            None => SinkWriter::Plain(pending),
            Some(r) => {
                let encryptor =
                    age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).map_err(|e| {
                        ArchiveError::io(format!("encrypting entry {path} of backup {id}"), io::Error::other(e))
                    })?;
                SinkWriter::Age(encryptor.wrap_output(pending).map_err(io_err)?)
            }
        };
        Ok(EntrySink {
            storage,
            id,
            path,
            out: Some(out),
            written: 0,
        })
    }

    /// Commits the entry, once: a second entry at the same path is refused
    /// ([`ArchiveError::PartExists`]), as is one for a backup no longer Running. Returns the
    /// plaintext bytes written.
    pub fn finish(mut self) -> Result<u64, ArchiveError> {
        let (id, path) = (self.id, self.path.clone());
        let io_err = |e| ArchiveError::io(format!("writing entry {path} of backup {id}"), e);
        let pending = match self.out.take() {
            Some(SinkWriter::Plain(p)) => p,
            Some(SinkWriter::Age(w)) => w.finish().map_err(io_err)?,
            None => return Err(io_err(io::Error::other("the entry was already finished"))),
        };
        running_status(self.storage.as_ref(), &id)?;
        match pending.commit(Commit::New) {
            Ok(()) => Ok(self.written),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ArchiveError::PartExists { id, path }),
            Err(e) => Err(io_err(e)),
        }
    }
}

impl Write for EntrySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.out.as_mut() {
            Some(SinkWriter::Plain(w)) => w.write(buf)?,
            Some(SinkWriter::Age(w)) => w.write(buf)?,
            None => return Err(io::Error::other("the entry was already finished")),
        };
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(SinkWriter::Plain(w)) => w.flush(),
            Some(SinkWriter::Age(w)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// A sink for one entry of a Running backup, independent of its [`BackupWriter`]: backup
/// step Jobs upload their parts through the API while the capture task writes the rest.
/// Refuses a path already committed ([`ArchiveError::PartExists`]) and a backup that is not
/// Running ([`ArchiveError::NotRunning`]); both are checked again at commit.
pub fn open_part_sink(
    storage: SharedStorage,
    id: &BackupId,
    path: &str,
    encryption: Option<age::x25519::Recipient>,
) -> Result<EntrySink, ArchiveError> {
    running_status(storage.as_ref(), id)?;
    EntrySink::open(storage, *id, path.parse()?, encryption)
}

/// Marks backup `id` Failed with `reason` (a Running one; a Failed one stays as it is). What
/// it holds stays for inspection. A Success backup is refused ([`ArchiveError::NotRunning`]).
pub fn mark_failed(storage: &dyn BackupStorage, id: &BackupId, reason: &str) -> Result<BackupStatus, ArchiveError> {
    let mut status = read_status(storage, id)?;
    match status.status {
        BackupState::Failed => return Ok(status),
        BackupState::Success => {
            return Err(ArchiveError::NotRunning {
                id: *id,
                status: status.status,
            });
        }
        BackupState::Running => {}
    }
    status.status = BackupState::Failed;
    status.reason = Some(reason.to_owned());
    status.finished = Some(jiff::Timestamp::now());
    status.size_bytes = stored_size(storage, id);
    write_status(storage, id, &status)?;
    Ok(status)
}

/// Bytes stored under `id` besides the status file (best effort: a listing shows them, it
/// decides nothing).
fn stored_size(storage: &dyn BackupStorage, id: &BackupId) -> u64 {
    let prefix = id.to_string();
    storage
        .list_objects(&prefix)
        .unwrap_or_default()
        .iter()
        .filter(|k| *k != STATUS_FILE)
        .filter_map(|k| storage.size(&format!("{prefix}/{k}")).ok())
        .sum()
}

/// At agent start: every backup still Running was interrupted and becomes Failed
/// ([`INTERRUPTED_REASON`]); unfinished imports and temporary objects are removed. Call it
/// before any backup or import starts. Returns the backups it marked Failed.
pub fn recover_interrupted(storage: &dyn BackupStorage) -> Result<Vec<BackupId>, ArchiveError> {
    storage
        .remove_leftovers()
        .map_err(|e| ArchiveError::io("removing temporary backup objects", e))?;
    let prefixes = storage
        .list_prefixes()
        .map_err(|e| ArchiveError::io("listing the backups", e))?;
    for staging in prefixes.iter().filter(|p| p.starts_with(INCOMING_PREFIX)) {
        storage
            .delete_prefix(staging)
            .map_err(|e| ArchiveError::io(format!("removing the unfinished import {staging}"), e))?;
    }
    let mut failed = Vec::new();
    for id in list_backups(storage)? {
        match read_status(storage, &id) {
            Ok(s) if s.status == BackupState::Running => {
                mark_failed(storage, &id, INTERRUPTED_REASON)?;
                failed.push(id);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("backup {id}: {e}"),
        }
    }
    Ok(failed)
}
