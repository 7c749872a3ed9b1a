//! Reading blobs out of the stored bundle: a bounded stream of chunks, hashed on a blocking
//! thread as they are read, whose last chunk is released only when the digest matches — so an
//! upload of corrupt bytes can never be committed.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;
use futures_util::Stream;
use oci_client::errors::OciDistributionError;
use schemas::Digest;
use sha2::Digest as _;

use super::error::PushError;
use super::progress::PushProgress;

/// Where one blob's bytes are: an entry's content in the stored bundle file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    /// The stored bundle.
    pub file: PathBuf,
    /// Where the entry's content starts (the reader's `EntryStarted::offset`).
    pub offset: u64,
    /// The entry's size.
    pub size: u64,
}

impl BlobSource {
    /// The bundle entry holding `digest`.
    pub fn entry(digest: &Digest) -> String {
        format!("blobs/sha256/{}", digest.hex())
    }

    fn read_error(&self, digest: &Digest, source: std::io::Error) -> PushError {
        PushError::ReadEntry {
            entry: Self::entry(digest),
            file: self.file.clone(),
            offset: self.offset,
            end: self.offset + self.size,
            source,
        }
    }

    fn corrupt(&self, expected: &Digest, actual: Digest) -> PushError {
        PushError::CorruptEntry {
            entry: Self::entry(expected),
            file: self.file.clone(),
            expected: *expected,
            actual,
        }
    }

    fn open(&self, digest: &Digest) -> Result<fs_err::File, PushError> {
        let mut file = fs_err::File::open(&self.file).map_err(|e| self.read_error(digest, e))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| self.read_error(digest, e))?;
        Ok(file)
    }

    /// Reads a small blob (a manifest) whole and checks its digest. Blocking.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, PushError> {
        let mut file = self.open(digest)?;
        let len = usize::try_from(self.size).map_err(|_| {
            self.read_error(
                digest,
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, "entry too large for memory"),
            )
        })?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes).map_err(|e| self.read_error(digest, e))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(self.corrupt(digest, actual));
        }
        Ok(bytes)
    }
}

/// When a blob upload last moved, and whether all its bytes were handed over.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    all_read: AtomicBool,
    sent: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            all_read: AtomicBool::new(false),
            sent: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last chunk was taken by the upload.
    pub fn idle(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    pub fn all_read(&self) -> bool {
        self.all_read.load(Ordering::Relaxed)
    }

    /// Bytes handed to the upload so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

type Chunk = Result<Bytes, OciDistributionError>;

/// Reads `source` in chunks of `chunk` bytes into `tx`, hashing as it goes; the last chunk goes
/// out only if the digest matches, otherwise an error item aborts the upload. Stops early when
/// `abort` is set or the receiving side is gone. Runs on a blocking thread.
pub(crate) struct BlobReader {
    pub source: BlobSource,
    pub digest: Digest,
    pub chunk: usize,
    pub tx: tokio::sync::mpsc::Sender<Chunk>,
    pub activity: Arc<Activity>,
    pub progress: Arc<PushProgress>,
    pub abort: Arc<AtomicBool>,
}

/// Why a [`BlobReader`] stopped early.
#[derive(Debug)]
pub(crate) enum ReadStop {
    /// The bundle is at fault: corrupt or unreadable.
    Bundle(PushError),
    /// The push is being aborted.
    Aborted,
    /// The upload stopped taking bytes (its own error says why).
    ReceiverGone,
}

impl BlobReader {
    pub fn run(self) -> Result<u64, ReadStop> {
        let fail = |tx: &tokio::sync::mpsc::Sender<Chunk>, e: PushError| {
            // The upload sees an error instead of the end of its body (unless it is gone).
            let _ = tx.blocking_send(Err(OciDistributionError::GenericError(Some(e.to_string()))));
            ReadStop::Bundle(e)
        };
        let mut file = match self.source.open(&self.digest) {
            Ok(f) => f,
            Err(e) => return Err(fail(&self.tx, e)),
        };
        let mut hasher = sha2::Sha256::new();
        let mut remaining = self.source.size;
        if remaining == 0 {
            let actual = Digest::from_bytes(hasher.clone().finalize().into());
            if actual != self.digest {
                return Err(fail(&self.tx, self.source.corrupt(&self.digest, actual)));
            }
        }
        while remaining > 0 {
            if self.abort.load(Ordering::Relaxed) {
                return Err(ReadStop::Aborted);
            }
            let n = usize::try_from(remaining).map_or(self.chunk, |r| r.min(self.chunk));
            let mut buf = vec![0u8; n];
            if let Err(e) = file.read_exact(&mut buf) {
                return Err(fail(&self.tx, self.source.read_error(&self.digest, e)));
            }
            hasher.update(&buf);
            remaining -= n as u64;
            if remaining == 0 {
                let actual = Digest::from_bytes(hasher.clone().finalize().into());
                if actual != self.digest {
                    return Err(fail(&self.tx, self.source.corrupt(&self.digest, actual)));
                }
            }
            if self.tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return Err(ReadStop::ReceiverGone);
            }
            self.activity.sent.fetch_add(n as u64, Ordering::Relaxed);
            self.progress.add_sent(n as u64);
            self.activity.touch();
        }
        self.activity.all_read.store(true, Ordering::Relaxed);
        self.activity.touch();
        Ok(self.source.size)
    }
}

/// The body stream handed to the client. Its receiver can be taken away ([`ChunkStream::close`])
/// while the client still holds the stream, which unblocks and stops the reader.
pub(crate) struct ChunkStream {
    rx: Arc<Mutex<Option<tokio::sync::mpsc::Receiver<Chunk>>>>,
}

impl ChunkStream {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Chunk>) -> (Self, ChunkStreamCloser) {
        let rx = Arc::new(Mutex::new(Some(rx)));
        (Self { rx: rx.clone() }, ChunkStreamCloser { rx })
    }
}

/// Closes a [`ChunkStream`] from outside.
pub(crate) struct ChunkStreamCloser {
    rx: Arc<Mutex<Option<tokio::sync::mpsc::Receiver<Chunk>>>>,
}

impl ChunkStreamCloser {
    pub fn close(&self) {
        drop(self.rx.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}

impl Drop for ChunkStreamCloser {
    fn drop(&mut self) {
        self.close();
    }
}

impl Stream for ChunkStream {
    type Item = Chunk;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let mut rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        match rx.as_mut() {
            Some(rx) => rx.poll_recv(cx),
            None => Poll::Ready(Some(Err(OciDistributionError::GenericError(Some(
                "upload cancelled".to_owned(),
            ))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn source_with(content: &[u8]) -> (tempfile::NamedTempFile, BlobSource) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"padding-before").unwrap();
        file.write_all(content).unwrap();
        file.write_all(b"padding-after").unwrap();
        let source = BlobSource {
            file: file.path().to_owned(),
            offset: 14,
            size: content.len() as u64,
        };
        (file, source)
    }

    fn run_reader(source: BlobSource, digest: Digest) -> (Result<u64, ReadStop>, Vec<Chunk>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let reader = BlobReader {
            source,
            digest,
            chunk: 7,
            tx,
            activity: Arc::new(Activity::new()),
            progress: Arc::new(PushProgress::default()),
            abort: Arc::new(AtomicBool::new(false)),
        };
        let result = reader.run();
        let mut items = Vec::new();
        while let Ok(item) = rx.try_recv() {
            items.push(item);
        }
        (result, items)
    }

    #[test]
    fn streams_a_good_blob_in_chunks() {
        let content = b"the quick brown fox jumps over the lazy dog";
        let (_file, source) = source_with(content);
        let (result, items) = run_reader(source, Digest::of(content));
        assert_eq!(result.unwrap(), content.len() as u64);
        let joined: Vec<u8> = items.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(joined, content);
    }

    #[test]
    fn withholds_the_last_chunk_of_a_corrupt_blob() {
        let content = b"the quick brown fox jumps over the lazy dog";
        let (_file, source) = source_with(b"the quick brown fox jumps over the lazy cog");
        let digest = Digest::of(content);
        let (result, items) = run_reader(source, digest);
        let Err(ReadStop::Bundle(e)) = result else {
            panic!("expected a corrupt entry, got {result:?}")
        };
        assert_eq!(
            e.corrupt_entry(),
            Some(format!("blobs/sha256/{}", digest.hex()).as_str())
        );
        assert!(
            e.to_string()
                .starts_with(&format!("bundle entry blobs/sha256/{} in ", digest.hex()))
        );
        // Every chunk but the last went out, then the error: the upload cannot complete.
        let sent: usize = items.iter().filter_map(|c| c.as_ref().ok()).map(Bytes::len).sum();
        assert!(sent < content.len());
        assert!(items.last().unwrap().is_err());
    }

    #[test]
    fn reports_a_truncated_entry() {
        let (_file, mut source) = source_with(b"short");
        source.size = 1000;
        let (result, _) = run_reader(source, Digest::of(b"whatever"));
        let Err(ReadStop::Bundle(e @ PushError::ReadEntry { .. })) = result else {
            panic!("expected a read error, got {result:?}")
        };
        assert!(e.to_string().contains("blobs/sha256/"), "{e}");
    }

    #[test]
    fn reads_and_checks_a_manifest() {
        let content = br#"{"schemaVersion":2}"#;
        let (_file, source) = source_with(content);
        assert_eq!(source.read_verified(&Digest::of(content)).unwrap(), content);
        let other = Digest::of(b"other");
        assert!(matches!(
            source.read_verified(&other),
            Err(PushError::CorruptEntry { expected, .. }) if expected == other
        ));
    }
}
