//! A content-addressed blob cache: `DIR/sha256/<hex>`. A blob enters it only through a
//! [`BlobWriter`] that hashes while it writes to a temporary file in the same directory and
//! renames it into place when the digest (and size, when known) match.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use schemas::Digest;
use sha2::Digest as _;

/// Why a blob could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create blob cache directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create a temporary file in {path}")]
    TempFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write to the blob cache in {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot store blob {path}")]
    Persist {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected} has digest {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
}

/// Blobs by digest under `DIR/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    /// Opens (creating if needed) the cache rooted at `dir`.
    pub fn new(dir: &Path) -> Result<Self, CacheError> {
        let dir = dir.join("sha256");
        fs_err::create_dir_all(&dir).map_err(|source| CacheError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Where the blob with this digest is (or would be) stored.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    /// Whether the blob is stored.
    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// The stored size of a blob, if it is stored.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        fs_err::metadata(self.path(d))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Whether the blob is stored with exactly this size.
    pub fn contains_sized(&self, d: &Digest, size: u64) -> bool {
        self.size(d) == Some(size)
    }

    /// Stores bytes already in memory (manifests), checking their digest.
    pub fn put_bytes(&self, expected: &Digest, bytes: &[u8]) -> Result<u64, CacheError> {
        let size = bytes.len() as u64;
        if self.contains_sized(expected, size) {
            let actual = Digest::of(bytes);
            if actual != *expected {
                return Err(CacheError::DigestMismatch {
                    expected: *expected,
                    actual,
                });
            }
            return Ok(size);
        }
        let mut w = self.writer(Some(size))?;
        w.write_all(bytes).map_err(|source| CacheError::Write {
            path: self.dir.clone(),
            source,
        })?;
        w.finish(expected, Some(size))
    }

    /// A writer for one blob. With `limit`, writing more than `limit` bytes fails.
    pub fn writer(&self, limit: Option<u64>) -> Result<BlobWriter, CacheError> {
        let file = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.dir)
            .map_err(|source| CacheError::TempFile {
                path: self.dir.clone(),
                source,
            })?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: sha2::Sha256::new(),
            len: 0,
            limit,
            head: Vec::new(),
            dir: self.dir.clone(),
        })
    }
}

/// Streams one blob into the cache while hashing it. Dropping it without `finish` removes
/// the temporary file.
pub struct BlobWriter {
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: sha2::Sha256,
    len: u64,
    limit: Option<u64>,
    head: Vec<u8>,
    dir: PathBuf,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("dir", &self.dir)
            .field("len", &self.len)
            .finish()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let new_len = self.len + buf.len() as u64;
        if let Some(limit) = self.limit
            && new_len > limit
        {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("blob exceeds its declared size of {limit} bytes"),
            ));
        }
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        if self.head.len() < 8 {
            let take = (8 - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..take]);
        }
        self.len = new_len;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache directory the blob goes to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first (up to 8) bytes written, to sniff compression.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Checks the digest (and size) and moves the blob into place. Returns its size.
    pub fn finish(self, expected: &Digest, size: Option<u64>) -> Result<u64, CacheError> {
        let (actual, len, file, dir) = self.close()?;
        if let Some(size) = size
            && size != len
        {
            return Err(CacheError::SizeMismatch {
                digest: *expected,
                expected: size,
                actual: len,
            });
        }
        if actual != *expected {
            return Err(CacheError::DigestMismatch {
                expected: *expected,
                actual,
            });
        }
        persist(file, &dir, &actual)?;
        Ok(len)
    }

    /// Moves the blob into place under whatever digest it has.
    pub fn finish_any(self) -> Result<(Digest, u64), CacheError> {
        let (actual, len, file, dir) = self.close()?;
        persist(file, &dir, &actual)?;
        Ok((actual, len))
    }

    fn close(self) -> Result<(Digest, u64, tempfile::NamedTempFile, PathBuf), CacheError> {
        let dir = self.dir;
        let file = self.file.into_inner().map_err(|e| CacheError::Write {
            path: dir.clone(),
            source: e.into_error(),
        })?;
        let digest = Digest::from_bytes(self.hasher.finalize().into());
        Ok((digest, self.len, file, dir))
    }
}

fn persist(file: tempfile::NamedTempFile, dir: &Path, digest: &Digest) -> Result<(), CacheError> {
    let path = dir.join(digest.hex());
    file.persist(&path)
        .map_err(|e| CacheError::Persist { path, source: e.error })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_matching_blobs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let cache = BlobCache::new(dir.path())?;
        let good = Digest::of(b"hello");
        assert_eq!(cache.put_bytes(&good, b"hello")?, 5);
        assert!(cache.contains(&good));
        assert_eq!(fs_err::read(cache.path(&good))?, b"hello");

        let wrong = Digest::of(b"other");
        let result = cache.put_bytes(&wrong, b"hello");
        assert!(matches!(result, Err(CacheError::DigestMismatch { .. })), "{result:?}");
        assert!(!cache.contains(&wrong));

        let mut w = cache.writer(Some(3))?;
        assert!(w.write_all(b"hello").is_err());
        drop(w);
        let leftovers = fs_err::read_dir(dir.path().join("sha256"))?.count();
        assert_eq!(leftovers, 1, "temporary files are removed");
        Ok(())
    }
}
