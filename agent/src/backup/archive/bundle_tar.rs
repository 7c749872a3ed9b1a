//! Export and import: one backup as one tar file, for moving clusters and disaster recovery.
//!
//! The file is a deterministic ustar stream (mode 0644, uid/gid 0, mtime 0; GNU long-name
//! records for paths over 100 bytes): `sealift-backup/manifest.json` (the envelope's exact
//! bytes) first, then `sealift-backup/entries/<path>` in manifest order. The status file is
//! not exported: it is unsigned and the importer writes its own. The manifest comes first so
//! that an import verifies the signature before it writes a single entry byte, and can refuse
//! each entry (unlisted, wrong size, wrong digest) as it arrives.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::error::ArchiveError;
use super::manifest::{self, BackupManifest, BackupTrust, MANIFEST_FILE};
use super::names::{BackupId, EntryName};
use super::reader::{CheckedReader, Depth, check_digest, check_size, verify_stored};
use super::status::{BackupState, BackupStatus, STATUS_FILE, read_status, write_status_at};
use super::storage::{BackupStorage, Commit, SharedStorage};
use super::writer::{ENTRIES_DIR, INCOMING_PREFIX, entry_key, put_new};

/// The directory everything in an exported archive is under.
pub const ARCHIVE_ROOT: &str = "sealift-backup";

const BLOCK: u64 = 512;

/// A verified backup ready to be exported: verification happens in [`Export::prepare`], so
/// an API handler can refuse a corrupt backup with a proper status and send the size as
/// Content-Length before it streams the body.
pub struct Export {
    storage: SharedStorage,
    manifest: BackupManifest,
    envelope: Vec<u8>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("id", &self.manifest.id)
            .finish_non_exhaustive()
    }
}

impl Export {
    /// Verifies backup `id` as [`super::open_verified`] does (without decrypting: an
    /// encrypted backup is exported encrypted, and needs no key here).
    pub fn prepare(storage: SharedStorage, id: &BackupId, trust: &BackupTrust) -> Result<Export, ArchiveError> {
        let (manifest, envelope) = verify_stored(storage.as_ref(), id, trust, Depth::Full, |_| Ok(()))?;
        Ok(Export {
            storage,
            manifest,
            envelope,
        })
    }

    /// The manifest of the backup being exported.
    pub fn manifest(&self) -> &BackupManifest {
        &self.manifest
    }

    /// The exact length of what [`Export::write_to`] writes.
    pub fn size(&self) -> Result<u64, ArchiveError> {
        // The headers (and long-name records) as the writer makes them, counted; data and
        // padding computed.
        let mut counter = Counter(0);
        let mut builder = tar::Builder::new(&mut counter);
        let data = |size: u64| size.div_ceil(BLOCK) * BLOCK;
        let mut total = data(self.envelope.len() as u64);
        append(&mut builder, &manifest_path(), self.envelope.len() as u64, io::empty())?;
        for entry in &self.manifest.entries {
            append(&mut builder, &entry_path(&entry.path), entry.size, io::empty())?;
            total += data(entry.size);
        }
        builder
            .into_inner()
            .map_err(|e| ArchiveError::io("sizing the export", e))?;
        Ok(total + counter.0)
    }

    /// Writes the archive. Entries are hashed again on the way out, so bytes that changed
    /// since verification fail the export instead of reaching the file. Returns bytes written.
    pub fn write_to(&self, out: impl Write) -> Result<u64, ArchiveError> {
        let id = self.manifest.id;
        let mut counted = Counter2 { inner: out, count: 0 };
        let mut builder = tar::Builder::new(&mut counted);
        append(
            &mut builder,
            &manifest_path(),
            self.envelope.len() as u64,
            self.envelope.as_slice(),
        )?;
        for entry in &self.manifest.entries {
            let stored = self
                .storage
                .open(&entry_key(&id, &entry.path))
                .map_err(|e| ArchiveError::io(format!("reading entry {} of backup {id}", entry.path), e))?;
            let checked = CheckedReader::new(stored, id.to_string(), entry.clone());
            append(&mut builder, &entry_path(&entry.path), entry.size, checked)?;
        }
        builder
            .into_inner()
            .and_then(|w| w.flush())
            .map_err(|e| ArchiveError::io(format!("writing the export of backup {id}"), e))?;
        Ok(counted.count)
    }
}

/// Verifies backup `id` and writes it as one archive to `out`; returns bytes written.
pub fn export(
    storage: SharedStorage,
    id: &BackupId,
    trust: &BackupTrust,
    out: impl Write,
) -> Result<u64, ArchiveError> {
    Export::prepare(storage, id, trust)?.write_to(out)
}

fn manifest_path() -> String {
    format!("{ARCHIVE_ROOT}/{MANIFEST_FILE}")
}

fn entry_path(path: &EntryName) -> String {
    format!("{ARCHIVE_ROOT}/{ENTRIES_DIR}/{path}")
}

/// Appends one regular file with the one header form exports use.
fn append<W: Write>(builder: &mut tar::Builder<W>, path: &str, size: u64, data: impl Read) -> Result<(), ArchiveError> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    builder
        .append_data(&mut header, path, data)
        .map_err(|e| ArchiveError::io(format!("writing {path} to the archive"), e))
}

/// Counts bytes written and drops them.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts bytes written through.
struct Counter2<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counter2<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where an imported backup is written until it verified: removed on drop unless published.
struct Staging<'a> {
    storage: &'a dyn BackupStorage,
    prefix: String,
    published: bool,
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if !self.published
            && let Err(e) = self.storage.delete_prefix(&self.prefix)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove the refused import {}: {e}", self.prefix);
        }
    }
}

/// Imports an archive made by [`export`] (here or by another agent whose key `trust` lists).
///
/// The stream is staged in `.incoming-<random>` inside the storage and verified as it
/// arrives: the manifest must come first and verify (signature by a trusted key, strict
/// payload, `identity` matching an encrypted backup); then only regular files named
/// `sealift-backup/entries/<listed path>`, each once, with the listed size and sha256
/// (directories only as parents of such paths). Every listed entry must have arrived. The
/// id must be free. Only then is the backup moved into place with status Success. On any
/// refusal nothing is left in the storage.
pub fn import(
    storage: &dyn BackupStorage,
    input: impl Read,
    trust: &BackupTrust,
    identity: Option<&age::x25519::Identity>,
) -> Result<BackupId, ArchiveError> {
    let mut staging = Staging {
        storage,
        prefix: format!("{INCOMING_PREFIX}{:016x}", rand::random::<u64>()),
        published: false,
    };
    let mut archive = tar::Archive::new(input);
    let mut entries = archive.entries().map_err(invalid_archive)?;
    let (manifest, envelope) = read_manifest(&mut entries, trust, identity)?;
    let id = manifest.id;
    check_free(storage, &id)?;
    let mut seen = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(invalid_archive)?;
        if let Some(path) = data_entry(&entry, &manifest)? {
            if !seen.insert(path.clone()) {
                return Err(ArchiveError::ArchiveInvalid {
                    reason: format!("entry {path} appears twice"),
                });
            }
            stage_entry(storage, &staging.prefix, &manifest, &path, entry)?;
        }
    }
    if let Some(missing) = manifest.entries.iter().find(|e| !seen.contains(&e.path)) {
        return Err(ArchiveError::EntryMissing {
            id: id.to_string(),
            path: missing.path.clone(),
        });
    }
    let io_err = |e| ArchiveError::io(format!("storing the imported backup {id}"), e);
    put_new(storage, &format!("{}/{MANIFEST_FILE}", staging.prefix), &envelope).map_err(io_err)?;
    let status = imported_status(&manifest, envelope.len() as u64);
    write_status_at(
        storage,
        &id,
        &format!("{}/{STATUS_FILE}", staging.prefix),
        &status,
        Commit::New,
    )?;
    match storage.rename_prefix(&staging.prefix, &id.to_string()) {
        Ok(()) => staging.published = true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(ArchiveError::Exists { id }),
        Err(e) => return Err(io_err(e)),
    }
    Ok(id)
}

fn invalid_archive(e: io::Error) -> ArchiveError {
    ArchiveError::ArchiveInvalid {
        reason: format!("not a readable tar stream: {e}"),
    }
}

/// The first entry: the manifest, verified before anything else is read.
fn read_manifest<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    trust: &BackupTrust,
    identity: Option<&age::x25519::Identity>,
) -> Result<(BackupManifest, Vec<u8>), ArchiveError> {
    let first_is_not = |what: &str| ArchiveError::ArchiveInvalid {
        reason: format!(
            "the first entry must be the regular file {}, it is {what}",
            manifest_path()
        ),
    };
    let entry = entries
        .next()
        .ok_or_else(|| first_is_not("missing (empty archive)"))?
        .map_err(invalid_archive)?;
    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    if name != manifest_path() || !entry.header().entry_type().is_file() {
        return Err(first_is_not(&format!("{name:?}")));
    }
    let max = keys::MAX_ENVELOPE_BYTES as u64;
    if entry.size() > max {
        return Err(ArchiveError::ArchiveInvalid {
            reason: format!("the manifest is {} bytes, more than the limit of {max}", entry.size()),
        });
    }
    let mut bytes = Vec::new();
    entry.take(max + 1).read_to_end(&mut bytes).map_err(invalid_archive)?;
    let manifest = manifest::verify(&bytes, trust, "from the imported archive")?;
    manifest::check_key(&manifest, identity)?;
    Ok((manifest, bytes))
}

fn check_free(storage: &dyn BackupStorage, id: &BackupId) -> Result<(), ArchiveError> {
    match read_status(storage, id) {
        Err(ArchiveError::NotFound { .. }) => Ok(()),
        Ok(_) | Err(ArchiveError::StatusInvalid { .. }) => Err(ArchiveError::Exists { id: *id }),
        Err(e) => Err(e),
    }
}

/// The listed entry a tar entry holds; `None` for an acceptable directory; a refusal for
/// anything else (links, devices, odd names, unlisted paths).
fn data_entry<R: Read>(
    entry: &tar::Entry<'_, R>,
    manifest: &BackupManifest,
) -> Result<Option<EntryName>, ArchiveError> {
    let raw = entry.path_bytes();
    let name = std::str::from_utf8(&raw).map_err(|_| ArchiveError::ArchiveInvalid {
        reason: format!("entry name {:?} is not UTF-8", String::from_utf8_lossy(&raw)),
    })?;
    let kind = entry.header().entry_type();
    let under_entries = name.strip_prefix(&format!("{ARCHIVE_ROOT}/{ENTRIES_DIR}/"));
    if kind.is_dir() {
        let trimmed = name.trim_end_matches('/');
        let ok = trimmed == ARCHIVE_ROOT
            || trimmed == format!("{ARCHIVE_ROOT}/{ENTRIES_DIR}")
            || under_entries.is_some_and(|p| p.trim_end_matches('/').parse::<EntryName>().is_ok());
        return match ok {
            true => Ok(None),
            false => Err(ArchiveError::ArchiveInvalid {
                reason: format!("unexpected directory {name:?}"),
            }),
        };
    }
    if !kind.is_file() {
        return Err(ArchiveError::ArchiveInvalid {
            reason: format!("{name:?} is a {kind:?} entry; only regular files are accepted"),
        });
    }
    let path: EntryName = under_entries
        .ok_or_else(|| ArchiveError::ArchiveInvalid {
            reason: format!("unexpected file {name:?} (expected {ARCHIVE_ROOT}/{ENTRIES_DIR}/…)"),
        })?
        .parse()?;
    if manifest.entry(&path).is_none() {
        return Err(ArchiveError::EntryUnlisted {
            id: manifest.id.to_string(),
            path: path.to_string(),
        });
    }
    Ok(Some(path))
}

/// Streams one entry into staging, checking its size and digest before committing it.
fn stage_entry(
    storage: &dyn BackupStorage,
    prefix: &str,
    manifest: &BackupManifest,
    path: &EntryName,
    mut data: impl Read,
) -> Result<(), ArchiveError> {
    let id = manifest.id.to_string();
    let Some(listed) = manifest.entry(path) else {
        return Err(ArchiveError::EntryUnlisted {
            id,
            path: path.to_string(),
        });
    };
    let io_err = |e| ArchiveError::io(format!("storing entry {path} of the imported backup {id}"), e);
    let object = storage
        .create(&format!("{prefix}/{ENTRIES_DIR}/{path}"))
        .map_err(io_err)?;
    let mut out = Hashing {
        inner: object,
        hasher: Sha256::new(),
        size: 0,
    };
    // One byte beyond the listed size is enough to tell it is too long.
    io::copy(&mut (&mut data).take(listed.size + 1), &mut out).map_err(invalid_archive)?;
    check_size(&id, listed, out.size)?;
    check_digest(&id, listed, hex::encode(out.hasher.finalize()))?;
    out.inner.commit(Commit::New).map_err(io_err)
}

/// Hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn imported_status(manifest: &BackupManifest, envelope_len: u64) -> BackupStatus {
    BackupStatus {
        status: BackupState::Success,
        reason: None,
        created: manifest.created,
        finished: Some(jiff::Timestamp::now()),
        size_bytes: manifest.entries_size() + envelope_len,
        app_version: manifest.app_version.clone(),
        kind: manifest.kind,
        revision: manifest.revision,
        encrypted: manifest.encrypted.is_some(),
        bundle: Some(manifest.bundle.clone()),
    }
}
