//! Reading a backup: everything is verified before the first data byte is handed out.

use std::io::{self, Read};

use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use super::error::ArchiveError;
use super::manifest::{self, BackupManifest, BackupTrust, MANIFEST_FILE, ManifestEntry};
use super::names::{BackupId, EntryName};
use super::status::{BackupState, STATUS_FILE, read_status};
use super::storage::{BackupStorage, SharedStorage};
use super::writer::{ENTRIES_DIR, entry_key, manifest_key, sha256_of};

/// A backup whose status, signature, manifest and every entry's size and digest were
/// checked; the only way to read a backup's data.
pub struct VerifiedBackup {
    storage: SharedStorage,
    manifest: BackupManifest,
    identity: Option<age::x25519::Identity>,
}

impl std::fmt::Debug for VerifiedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedBackup")
            .field("id", &self.manifest.id)
            .finish_non_exhaustive()
    }
}

/// Opens backup `id` for a restore, refusing it unless: its status is Success; its manifest
/// is canonical DSSE signed by `trust.own` or a `trust.trusted` key and parses strictly; it
/// names `id`; every listed entry is stored with exactly its size and sha256 and nothing
/// else is; and, when encrypted, `identity` is the key it was encrypted to.
pub fn open_verified(
    storage: SharedStorage,
    id: &BackupId,
    trust: &BackupTrust,
    identity: Option<&age::x25519::Identity>,
) -> Result<VerifiedBackup, ArchiveError> {
    open(storage, id, trust, identity, Depth::Full)
}

/// Opens a backup that was verified in full earlier in the same operation: every check of
/// [`open_verified`] except re-hashing the entries, so a multi-GB backup is not read once per
/// restore pass. The sizes and the exact set of entries are still checked, and every read
/// hashes its bytes and fails at the last byte if they changed since.
pub fn reopen_verified(
    storage: SharedStorage,
    id: &BackupId,
    trust: &BackupTrust,
    identity: Option<&age::x25519::Identity>,
) -> Result<VerifiedBackup, ArchiveError> {
    open(storage, id, trust, identity, Depth::Sizes)
}

/// How much of a stored backup is checked before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Everything, including every entry's digest: one read of every stored byte.
    Full,
    /// Everything but the entries' digests (the reads check those).
    Sizes,
}

fn open(
    storage: SharedStorage,
    id: &BackupId,
    trust: &BackupTrust,
    identity: Option<&age::x25519::Identity>,
    depth: Depth,
) -> Result<VerifiedBackup, ArchiveError> {
    let (manifest, _) = verify_stored(storage.as_ref(), id, trust, depth, |m| manifest::check_key(m, identity))?;
    Ok(VerifiedBackup {
        storage,
        manifest,
        identity: identity.cloned(),
    })
}

impl VerifiedBackup {
    /// The signed manifest.
    pub fn manifest(&self) -> &BackupManifest {
        &self.manifest
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.manifest.entries
    }

    /// Whether the backup has an entry at `path`.
    pub fn contains(&self, path: &str) -> bool {
        path.parse().is_ok_and(|p| self.manifest.entry(&p).is_some())
    }

    /// The plaintext of an entry, streamed. The stored bytes are hashed again as they are
    /// read: should they change after verification (a failing disk), the read fails at the
    /// last byte with [`ArchiveError::EntryDigest`] (recover it with [`ArchiveError::io`]).
    pub fn read(&self, path: &str) -> Result<Box<dyn Read + Send>, ArchiveError> {
        let id = self.manifest.id;
        let path: EntryName = path.parse()?;
        let entry = self.manifest.entry(&path).ok_or_else(|| ArchiveError::EntryMissing {
            id: id.to_string(),
            path: path.clone(),
        })?;
        let stored = self
            .storage
            .open(&entry_key(&id, &path))
            .map_err(|e| ArchiveError::io(format!("reading entry {path} of backup {id}"), e))?;
        let checked = CheckedReader::new(stored, id.to_string(), entry.clone());
        let Some(identity) = self.identity.as_ref().filter(|_| self.manifest.encrypted.is_some()) else {
            return Ok(Box::new(checked));
        };
        let failed = |reason: String| ArchiveError::DecryptFailed {
            id: id.to_string(),
            reason: format!("entry {path}: {reason}"),
        };
        let decryptor = age::Decryptor::new_buffered(io::BufReader::with_capacity(1 << 16, checked))
            .map_err(|e| failed(e.to_string()))?;
        let reader = decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .map_err(|e| failed(e.to_string()))?;
        Ok(Box::new(reader))
    }

    /// An entry parsed as JSON.
    pub fn read_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ArchiveError> {
        let reader = io::BufReader::new(self.read(path)?);
        serde_json::from_reader(reader).map_err(|e| {
            let context = format!("reading entry {path} of backup {}", self.manifest.id);
            match e.io_error_kind() {
                Some(_) => ArchiveError::io(context, io::Error::from(e)),
                None => match path.parse() {
                    Ok(path) => ArchiveError::EntryInvalid {
                        id: self.manifest.id,
                        path,
                        reason: e.to_string(),
                    },
                    Err(name) => name,
                },
            }
        })
    }
}

/// Verifies a stored backup to `depth` without decrypting anything (for [`open_verified`] and
/// export);
/// `check_key` runs once the manifest is trusted and before any entry is hashed. Returns the
/// manifest and the envelope's bytes.
pub(crate) fn verify_stored(
    storage: &dyn BackupStorage,
    id: &BackupId,
    trust: &BackupTrust,
    depth: Depth,
    check_key: impl FnOnce(&BackupManifest) -> Result<(), ArchiveError>,
) -> Result<(BackupManifest, Vec<u8>), ArchiveError> {
    let status = read_status(storage, id)?;
    if status.status != BackupState::Success {
        return Err(ArchiveError::NotSuccessful {
            id: *id,
            status: status.status,
            reason: status.reason,
        });
    }
    let bytes = read_manifest_bytes(storage, id)?;
    let manifest = manifest::verify(&bytes, trust, &id.to_string())?;
    if manifest.id != *id {
        return Err(ArchiveError::ManifestInvalid {
            id: id.to_string(),
            reason: format!("it is the manifest of backup {}", manifest.id),
        });
    }
    check_key(&manifest)?;
    check_listing(storage, &manifest)?;
    check_entries(storage, &manifest, depth)?;
    Ok((manifest, bytes))
}

fn read_manifest_bytes(storage: &dyn BackupStorage, id: &BackupId) -> Result<Vec<u8>, ArchiveError> {
    let invalid = |reason: String| ArchiveError::ManifestInvalid {
        id: id.to_string(),
        reason,
    };
    let reader = match storage.open(&manifest_key(id)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(invalid("it is missing".into())),
        other => other.map_err(|e| ArchiveError::io(format!("reading the manifest of backup {id}"), e))?,
    };
    let mut bytes = Vec::new();
    reader
        .take(keys::MAX_ENVELOPE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ArchiveError::io(format!("reading the manifest of backup {id}"), e))?;
    if bytes.len() > keys::MAX_ENVELOPE_BYTES {
        return Err(invalid(format!("it is larger than {} bytes", keys::MAX_ENVELOPE_BYTES)));
    }
    Ok(bytes)
}

/// Exactly the listed entries are stored (beside the status and manifest files).
fn check_listing(storage: &dyn BackupStorage, manifest: &BackupManifest) -> Result<(), ArchiveError> {
    let id = manifest.id;
    let objects = storage
        .list_objects(&id.to_string())
        .map_err(|e| ArchiveError::io(format!("listing backup {id}"), e))?;
    let entries_prefix = format!("{ENTRIES_DIR}/");
    let mut stored = Vec::new();
    for object in objects {
        if object == STATUS_FILE || object == MANIFEST_FILE {
            continue;
        }
        let listed = object
            .strip_prefix(&entries_prefix)
            .and_then(|p| p.parse::<EntryName>().ok())
            .filter(|p| manifest.entry(p).is_some());
        match listed {
            Some(p) => stored.push(p),
            None => {
                return Err(ArchiveError::EntryUnlisted {
                    id: id.to_string(),
                    path: object,
                });
            }
        }
    }
    if let Some(missing) = manifest.entries.iter().find(|e| stored.binary_search(&e.path).is_err()) {
        return Err(ArchiveError::EntryMissing {
            id: id.to_string(),
            path: missing.path.clone(),
        });
    }
    Ok(())
}

/// Every entry's size (all first: cheap), then, at [`Depth::Full`], every entry's digest.
fn check_entries(storage: &dyn BackupStorage, manifest: &BackupManifest, depth: Depth) -> Result<(), ArchiveError> {
    let id = manifest.id;
    let io_err = |path: &EntryName, e| ArchiveError::io(format!("reading entry {path} of backup {id}"), e);
    for entry in &manifest.entries {
        let found = storage
            .size(&entry_key(&id, &entry.path))
            .map_err(|e| io_err(&entry.path, e))?;
        check_size(&id.to_string(), entry, found)?;
    }
    if depth == Depth::Sizes {
        return Ok(());
    }
    for entry in &manifest.entries {
        let (size, sha256) = storage
            .open(&entry_key(&id, &entry.path))
            .and_then(sha256_of)
            .map_err(|e| io_err(&entry.path, e))?;
        check_size(&id.to_string(), entry, size)?;
        check_digest(&id.to_string(), entry, sha256)?;
    }
    Ok(())
}

pub(crate) fn check_size(id: &str, entry: &ManifestEntry, found: u64) -> Result<(), ArchiveError> {
    if found != entry.size {
        return Err(ArchiveError::EntrySize {
            id: id.to_owned(),
            path: entry.path.clone(),
            expected: entry.size,
            found,
        });
    }
    Ok(())
}

pub(crate) fn check_digest(id: &str, entry: &ManifestEntry, found: String) -> Result<(), ArchiveError> {
    if found != entry.sha256 {
        return Err(ArchiveError::EntryDigest {
            id: id.to_owned(),
            path: entry.path.clone(),
            expected: entry.sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// Passes stored bytes through while hashing them; fails instead of handing out the last
/// byte when size or digest differ from the manifest's.
pub(crate) struct CheckedReader<R> {
    inner: R,
    id: String,
    entry: ManifestEntry,
    read: u64,
    hasher: Option<Sha256>,
}

impl<R: Read> CheckedReader<R> {
    pub(crate) fn new(inner: R, id: String, entry: ManifestEntry) -> CheckedReader<R> {
        CheckedReader {
            inner,
            id,
            entry,
            read: 0,
            hasher: Some(Sha256::new()),
        }
    }

    fn settle(&mut self) -> io::Result<()> {
        if let Some(hasher) = self.hasher.take() {
            check_digest(&self.id, &self.entry, hex::encode(hasher.finalize())).map_err(ArchiveError::into_io)?;
        }
        Ok(())
    }
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read == self.entry.size {
            self.settle()?;
        }
        let n = self.inner.read(buf)?;
        let total = self.read + n as u64;
        if (n == 0 && total < self.entry.size) || total > self.entry.size {
            return Err(check_size(&self.id, &self.entry, total)
                .err()
                .unwrap_or_else(|| unreachable!("sizes differ"))
                .into_io());
        }
        self.read = total;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        if total == self.entry.size {
            self.settle()?;
        }
        Ok(n)
    }
}

/// Deletes backup `id`: data, manifest and status.
pub fn delete_backup(storage: &dyn BackupStorage, id: &BackupId) -> Result<(), ArchiveError> {
    match storage.delete_prefix(&id.to_string()) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ArchiveError::NotFound { id: *id }),
        other => other.map_err(|e| ArchiveError::io(format!("deleting backup {id}"), e)),
    }
}
