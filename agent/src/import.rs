//! One import: bytes arrive (an upload's parts, or a file on the agent's volume), are
//! written to the upload's data file and pushed through the format's parser as they come.
//! The head is checked against the trust state before any blob is written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use schemas::{BundleReader, Checkpoint, Digest, Event, Policy, Timestamp, VerifiedHead};
use serde::{Deserialize, Serialize};

use crate::refusal::ImportRefusal;
use crate::store::{BlobLocation, Store};
use crate::trust_state::TrustState;

/// What the admin asked for besides the import itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportOptions {
    /// Accept a build older than the one accepted for its version, or below minSequence
    /// (warned and audited).
    #[serde(default)]
    pub allow_older: bool,
    /// Admit an expired but otherwise valid bundle, only as a restore target (audited).
    #[serde(default)]
    pub for_restore: bool,
}

/// The clock and policy inputs of an import.
#[derive(Debug, Clone)]
pub struct ImportContext {
    pub product: schemas::ProductName,
    pub skew_seconds: i64,
    pub now: Timestamp,
    pub state: TrustState,
    pub options: ImportOptions,
}

impl ImportContext {
    pub fn policy(&self) -> Policy {
        Policy {
            product: Some(self.product.clone()),
            min_sequence: if self.options.allow_older {
                0
            } else {
                self.state.min_sequence
            },
            now: Some(self.now),
            check_expiry: !self.options.for_restore,
            clock_floor: Some(self.state.clock_floor),
            skew_seconds: self.skew_seconds,
        }
    }

    /// The replay rule: one listed build per version; a lower sequence is refused.
    pub fn check_replay(&self, head: &VerifiedHead) -> Result<(), ImportRefusal> {
        let m = head.manifest();
        if let Some(accepted) = self.state.versions.get(&m.version.to_string())
            && accepted.identity != head.identity()
            && accepted.sequence > m.sequence
            && !self.options.allow_older
        {
            return Err(ImportRefusal::OlderBuild {
                version: m.version.to_string(),
                accepted: accepted.sequence,
                offered: m.sequence,
            });
        }
        Ok(())
    }
}

/// Total archive size the manifest implies.
pub fn archive_size(head: &VerifiedHead) -> u64 {
    let block = 512u64;
    let entries: u64 = head
        .manifest()
        .entries
        .iter()
        .map(|e| block + e.size + schemas::tar_header::padding(e.size))
        .sum();
    block + head.entry().len() as u64 + schemas::tar_header::padding(head.entry().len() as u64) + entries + 2 * block
}

/// Persisted progress of an upload, enough to resume after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadRecord {
    pub id: String,
    pub created: Timestamp,
    pub token: String,
    pub options: ImportOptions,
    /// The bundle's size as the client declared it: once that many bytes arrived, an archive
    /// that has not ended is truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The last verified entry boundary (bytes of the data file that count).
    pub committed: u64,
    /// Manifest index of the next entry at `committed` (absent before the head verified).
    #[serde(default)]
    pub next_entry: Option<usize>,
    pub blobs: BTreeMap<Digest, BlobLocation>,
}

/// A verified, complete bundle waiting to be committed to the store.
pub struct Verified {
    pub head: VerifiedHead,
    pub blobs: BTreeMap<Digest, BlobLocation>,
    pub size: u64,
    pub data: PathBuf,
}

/// One import in progress.
pub struct Importer {
    ctx: ImportContext,
    reader: BundleReader,
    sink: Box<dyn Write + Send>,
    data: PathBuf,
    offset: u64,
    head: Option<VerifiedHead>,
    /// The version of a head whose signatures verified, even when a check after that
    /// (policy, replay, space) refused it: refusals are audited with it.
    version: Option<String>,
    blobs: BTreeMap<Digest, BlobLocation>,
    events: Vec<Event>,
}

impl Importer {
    /// Starts an import writing to `data` through `sink` (the file, or a test's failing writer).
    ///
    /// The parser checks the head's integrity and signatures only; the policy (product,
    /// minSequence, clock, expiry) is checked here right after, at the same point, so that a
    /// refusal knows which version it refused.
    pub fn new(ctx: ImportContext, data: PathBuf, sink: Box<dyn Write + Send>) -> Self {
        let reader = BundleReader::new(ctx.state.trusted_roots(), Policy::integrity_only());
        Self {
            ctx,
            reader,
            sink,
            data,
            offset: 0,
            head: None,
            version: None,
            blobs: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Resumes from a persisted upload whose data file was truncated to `record.committed`.
    pub fn resume(
        ctx: ImportContext,
        data: PathBuf,
        sink: Box<dyn Write + Send>,
        head_entry: &[u8],
        record: &UploadRecord,
    ) -> Result<Self, ImportRefusal> {
        let next_entry = record.next_entry.unwrap_or(0);
        let checkpoint = Checkpoint {
            offset: record.committed,
            next_entry,
        };
        let reader = BundleReader::resume(ctx.state.trusted_roots(), ctx.policy(), head_entry, checkpoint)?;
        let head = reader.head().cloned();
        Ok(Self {
            ctx,
            reader,
            sink,
            data,
            offset: record.committed,
            version: head.as_ref().map(|h| h.manifest().version.to_string()),
            head,
            blobs: record.blobs.clone(),
            events: Vec::new(),
        })
    }

    /// Bytes accepted so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The last entry boundary: where a resumed upload continues.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.reader.checkpoint()
    }

    pub fn head(&self) -> Option<&VerifiedHead> {
        self.head.as_ref()
    }

    /// The version the head names, once its signatures verified (also after a refusal).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    pub fn blobs(&self) -> &BTreeMap<Digest, BlobLocation> {
        &self.blobs
    }

    pub fn is_finished(&self) -> bool {
        self.reader.is_finished()
    }

    /// Verifies then writes `bytes`. Space and replay are checked as soon as the head
    /// verifies, before any blob byte is written.
    pub fn push(&mut self, bytes: &[u8], store: &Store) -> Result<(), ImportRefusal> {
        self.reader.push(bytes, &mut self.events)?;
        for event in self.events.drain(..) {
            match event {
                Event::HeadVerified(head) => {
                    self.version = Some(head.manifest().version.to_string());
                    self.ctx.policy().check(head.manifest())?;
                    self.ctx.check_replay(&head)?;
                    store.check_space(archive_size(&head))?;
                    self.head = Some(*head);
                }
                Event::EntryStarted { path, size, offset, .. } => {
                    if let Some(d) = path.blob_digest() {
                        self.blobs.insert(d, BlobLocation { offset, size });
                    }
                }
                // Metadata entries are checked one by one as `verify` checks them together
                // (the OCI layout files against the manifest, the JSON strictly): an upload
                // resumed after a restart keeps none of them.
                Event::EntryVerified {
                    path,
                    content: Some(content),
                    ..
                } => {
                    if let Some(head) = &self.head {
                        schemas::verified::check_metadata_entry(head.manifest(), path.as_str(), content)?;
                    }
                }
                Event::EntryVerified { .. } | Event::Finished => {}
            }
        }
        self.sink
            .write_all(bytes)
            .map_err(|source| ImportRefusal::Write { source })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// The input ended (a file on the agent's volume was read to its end): refuses an archive
    /// that has not ended, naming where it stops.
    pub fn end_of_input(&self) -> Result<(), ImportRefusal> {
        Ok(self.reader.finish()?)
    }

    /// Makes the bytes written so far durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.sink.flush()
    }

    /// Completes the import: the archive must have ended.
    pub fn finish(mut self) -> Result<Verified, ImportRefusal> {
        self.reader.finish()?;
        self.sink.flush().map_err(|source| ImportRefusal::Write { source })?;
        let head = self.head.take().ok_or(schemas::Refusal::Truncated {
            offset: 0,
            context: "the head".into(),
        })?;
        Ok(Verified {
            head,
            blobs: self.blobs,
            size: self.offset,
            data: self.data,
        })
    }
}

/// A file sink that syncs on flush.
pub struct FileSink(pub std::fs::File);

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.sync_data()
    }
}

/// Opens (creating) an upload data file for appending at `len`.
pub fn open_data(path: &Path, len: u64) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    file.set_len(len)?;
    use std::io::Seek;
    let mut f = file;
    f.seek(std::io::SeekFrom::Start(len))?;
    Ok(f)
}
