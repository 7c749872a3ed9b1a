//! Where backups live: a small object-store interface, and its directory implementation.
//!
//! Keys are `/`-separated relative paths: `<prefix>/<name>`, where the prefix is a backup id
//! (or a staging prefix such as `.incoming-…` during an import). The interface is what an
//! object store offers too (list by prefix, get, size, conditional put, delete by prefix), so
//! an S3-like storage can be added behind it; a prefix rename becomes copy-then-delete there.

use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::names::check_path;

/// How [`PendingObject::commit`] treats an object that already exists under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Replace it atomically (the status file).
    Replace,
    /// Refuse with [`io::ErrorKind::AlreadyExists`] (entries and the manifest: written once).
    New,
}

/// An object being written. Nothing is visible under its key before [`PendingObject::commit`];
/// dropping it without committing leaves nothing behind.
pub trait PendingObject: Write + Send {
    /// Makes the written bytes durable and visible under the key, in one step.
    fn commit(self: Box<Self>, mode: Commit) -> io::Result<()>;
}

/// Backup storage. Synchronous: callers run it on blocking threads.
pub trait BackupStorage: Send + Sync + fmt::Debug {
    /// The top-level prefixes (backup ids and staging prefixes), in any order.
    fn list_prefixes(&self) -> io::Result<Vec<String>>;
    /// Every object key below `prefix`, relative to it, sorted; empty when there is none.
    fn list_objects(&self, prefix: &str) -> io::Result<Vec<String>>;
    /// Reads an object; [`io::ErrorKind::NotFound`] when there is none.
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + Send>>;
    /// The size of an object in bytes.
    fn size(&self, key: &str) -> io::Result<u64>;
    /// Starts writing an object.
    fn create(&self, key: &str) -> io::Result<Box<dyn PendingObject>>;
    /// Removes every object below `prefix`; a concurrent lister sees all of them or none.
    fn delete_prefix(&self, prefix: &str) -> io::Result<()>;
    /// Moves every object below `from` to below `to`, refusing with
    /// [`io::ErrorKind::AlreadyExists`] when `to` holds anything.
    fn rename_prefix(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes what interrupted writes left behind. Only while no write is under way (start).
    fn remove_leftovers(&self) -> io::Result<()>;
}

/// Storage shared between the writer, part uploads and readers.
pub type SharedStorage = Arc<dyn BackupStorage>;

/// Backups in a directory (the agent's `<store>/backups`): `<id>/…` as files. Objects being
/// written are temporary files in `<dir>/.tmp/` (same filesystem, so a commit is a rename).
#[derive(Debug, Clone)]
pub struct DirStorage {
    root: PathBuf,
}

/// The directory of temporary files; not a prefix.
const TMP_DIR: &str = ".tmp";

impl DirStorage {
    /// Storage in `root`, created if missing.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<DirStorage> {
        let root = root.into();
        fs_err::create_dir_all(root.join(TMP_DIR))?;
        Ok(DirStorage { root })
    }

    /// The directory it keeps backups in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`, refusing a key that could leave the root.
    fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        check_path(key)
            .map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, format!("storage key {key:?}: {reason}")))?;
        if key.split('/').next() == Some(TMP_DIR) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("storage key {key:?} is inside the temporary directory"),
            ));
        }
        Ok(self.root.join(key))
    }

    fn scratch_name(&self, what: &str) -> PathBuf {
        self.root
            .join(TMP_DIR)
            .join(format!("{what}-{:016x}", rand::random::<u64>()))
    }
}

/// fsync a directory, so a rename in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

/// Appends the files below `dir` (relative to `base`, `/`-joined) to `out`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(base, &path, out)?;
            continue;
        }
        let rel = path
            .strip_prefix(base)
            .map_err(io::Error::other)?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        out.push(rel);
    }
    Ok(())
}

impl BackupStorage for DirStorage {
    fn list_prefixes(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != TMP_DIR && entry.file_type()?.is_dir() {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn list_objects(&self, prefix: &str) -> io::Result<Vec<String>> {
        let dir = self.path_of(prefix)?;
        let mut out = Vec::new();
        match walk(&dir, &dir, &mut out) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => return Ok(Vec::new()),
            other => other?,
        }
        out.sort();
        Ok(out)
    }

    fn open(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(self.path_of(key)?)?,
        )))
    }

    fn size(&self, key: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.path_of(key)?)?.len())
    }

    fn create(&self, key: &str) -> io::Result<Box<dyn PendingObject>> {
        let dest = self.path_of(key)?;
        let tmp = tempfile::Builder::new()
            .prefix("object-")
            .tempfile_in(self.root.join(TMP_DIR))?;
        Ok(Box::new(DirPending {
            file: BufWriter::with_capacity(1 << 16, tmp),
            dest,
        }))
    }

    fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        let dir = self.path_of(prefix)?;
        // Renamed away first, so nobody lists a half-deleted backup.
        let doomed = self.scratch_name("deleted");
        std::fs::rename(&dir, &doomed)?;
        sync_dir(&self.root)?;
        fs_err::remove_dir_all(&doomed)
    }

    fn rename_prefix(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (self.path_of(from)?, self.path_of(to)?);
        // Claiming `to` with create_dir fails if it exists; renaming a directory onto the
        // empty one we made is atomic, and fails if something was written into it meanwhile.
        std::fs::create_dir(&to)?;
        match std::fs::rename(&from, &to) {
            Ok(()) => sync_dir(&self.root),
            Err(e) => {
                let _ = std::fs::remove_dir(&to);
                if e.kind() == io::ErrorKind::DirectoryNotEmpty {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, e));
                }
                Err(e)
            }
        }
    }

    fn remove_leftovers(&self) -> io::Result<()> {
        let tmp = self.root.join(TMP_DIR);
        fs_err::remove_dir_all(&tmp)?;
        fs_err::create_dir_all(&tmp)
    }
}

/// A [`DirStorage`] object being written: a temporary file.
struct DirPending {
    file: BufWriter<tempfile::NamedTempFile>,
    dest: PathBuf,
}

impl Write for DirPending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl PendingObject for DirPending {
    fn commit(self: Box<Self>, mode: Commit) -> io::Result<()> {
        let DirPending { file, dest } = *self;
        let tmp = file.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        let parent = dest.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(parent)?;
        match mode {
            Commit::Replace => tmp.persist(&dest).map_err(|e| e.error)?,
            Commit::New => tmp.persist_noclobber(&dest).map_err(|e| e.error)?,
        };
        sync_dir(parent)
    }
}
