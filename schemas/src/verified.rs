//! Verified views of a bundle. Verification is their only constructor.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::entry::{CHART_PATH, MIGRATIONS_PATH, OCI_INDEX_PATH, OCI_LAYOUT_PATH, RENDER_PATH, VARIABLES_PATH};
use crate::head::Head;
use crate::layout;
use crate::manifest::Manifest;
use crate::names::Digest;
use crate::oci;
use crate::policy::Policy;
use crate::reader::{BundleReader, Event};
use crate::refusal::Refusal;
use crate::release::{Migrations, Variables};

/// A head whose root chain, release signatures and manifest verified.
#[derive(Debug, Clone)]
pub struct VerifiedHead {
    entry: Vec<u8>,
    head: Head,
    manifest: Manifest,
    identity: Digest,
    root_version: u32,
    root_hashes: Vec<(u32, [u8; 32])>,
    signers: Vec<keys::KeyId>,
}

impl VerifiedHead {
    /// Verifies a head entry: canonical form, the root chain from `trusted`, the release
    /// envelope under the newest root's release keys, then the manifest.
    pub fn verify(entry: &[u8], trusted: &keys::TrustedRoots) -> Result<Self, Refusal> {
        let head = Head::from_entry(entry)?;
        let chain = keys::RootChain::verify(&head.roots, trusted).map_err(|source| Refusal::RootChain { source })?;
        chain
            .verify_release(&head.release)
            .map_err(|source| Refusal::ReleaseSignatures { source })?;
        let current = chain.current();
        let manifest = Manifest::parse(&head.release.payload).map_err(|source| Refusal::Manifest { source })?;
        layout::check(&manifest)?;
        let identity = Digest::of(&head.release.payload);
        let signers = head.release.signatures.iter().map(|s| s.keyid).collect();
        Ok(Self {
            entry: entry.to_vec(),
            root_version: current.version,
            root_hashes: chain.hashes(),
            head,
            manifest,
            identity,
            signers,
        })
    }

    /// The head entry's bytes as read (kept to resume a parse).
    pub fn entry(&self) -> &[u8] {
        &self.entry
    }
    pub fn head(&self) -> &Head {
        &self.head
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The manifest payload bytes exactly as signed.
    pub fn manifest_payload(&self) -> &[u8] {
        &self.head.release.payload
    }
    /// sha256 of the manifest payload: the bundle's identity, unchanged by co-signing.
    pub fn identity(&self) -> Digest {
        self.identity
    }
    /// Version of the newest root in the chain, which governs the release signatures.
    pub fn root_version(&self) -> u32 {
        self.root_version
    }
    /// (version, sha256 of the canonical envelope) of every root in the chain.
    pub fn root_hashes(&self) -> &[(u32, [u8; 32])] {
        &self.root_hashes
    }
    /// Key ids of the release signatures (every one verified).
    pub fn signers(&self) -> &[keys::KeyId] {
        &self.signers
    }
}

/// The metadata entries of a bundle, each checked against the manifest's digest.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub chart: Vec<u8>,
    pub render: String,
    pub variables: Variables,
    pub migrations: Migrations,
}

/// Collects metadata entries from reader events and parses them strictly.
#[derive(Debug, Default)]
pub struct MetadataCollector {
    chart: Option<Vec<u8>>,
    render: Option<Vec<u8>>,
    variables: Option<Vec<u8>>,
    migrations: Option<Vec<u8>>,
    layout_seen: bool,
    index_seen: bool,
}

impl MetadataCollector {
    /// Takes a verified entry's content; checks the OCI layout files against the manifest.
    pub fn take(&mut self, manifest: &Manifest, path: &str, content: Vec<u8>) -> Result<(), Refusal> {
        let invalid = |reason: String| Refusal::MetadataInvalid {
            path: path.to_owned(),
            reason,
        };
        match path {
            CHART_PATH => self.chart = Some(content),
            RENDER_PATH => self.render = Some(content),
            VARIABLES_PATH => self.variables = Some(content),
            MIGRATIONS_PATH => self.migrations = Some(content),
            OCI_LAYOUT_PATH => {
                if content != oci::layout_file() {
                    return Err(invalid("not the OCI layout marker this format writes".into()));
                }
                self.layout_seen = true;
            }
            OCI_INDEX_PATH => {
                if content != oci::index_file(&manifest.images) {
                    return Err(invalid("does not list exactly the manifest's images".into()));
                }
                self.index_seen = true;
            }
            _ => {}
        }
        Ok(())
    }

    pub fn is_complete(&self) -> bool {
        self.chart.is_some()
            && self.render.is_some()
            && self.variables.is_some()
            && self.migrations.is_some()
            && self.layout_seen
            && self.index_seen
    }

    /// Parses the collected entries.
    pub fn finish(self) -> Result<Metadata, Refusal> {
        let missing = |path: &str| Refusal::MetadataInvalid {
            path: path.to_owned(),
            reason: "not read".into(),
        };
        Ok(Metadata {
            render: parse_render(self.render.ok_or_else(|| missing(RENDER_PATH))?)?,
            variables: parse_json(VARIABLES_PATH, &self.variables.ok_or_else(|| missing(VARIABLES_PATH))?)?,
            migrations: parse_json(
                MIGRATIONS_PATH,
                &self.migrations.ok_or_else(|| missing(MIGRATIONS_PATH))?,
            )?,
            chart: self.chart.ok_or_else(|| missing(CHART_PATH))?,
        })
    }
}

/// Checks one metadata entry on its own, as [`MetadataCollector`] does over all of them: the
/// OCI layout files against the manifest, the render as UTF-8, variables and migrations
/// parsed strictly. For readers that keep no entry (the agent's resumable upload).
pub fn check_metadata_entry(manifest: &Manifest, path: &str, content: Vec<u8>) -> Result<(), Refusal> {
    match path {
        RENDER_PATH => parse_render(content).map(drop),
        VARIABLES_PATH => parse_json::<Variables>(path, &content).map(drop),
        MIGRATIONS_PATH => parse_json::<Migrations>(path, &content).map(drop),
        _ => MetadataCollector::default().take(manifest, path, content),
    }
}

fn parse_render(content: Vec<u8>) -> Result<String, Refusal> {
    String::from_utf8(content).map_err(|_| Refusal::MetadataInvalid {
        path: RENDER_PATH.into(),
        reason: "not UTF-8".into(),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &str, content: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(content).map_err(|e| Refusal::MetadataInvalid {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// A bundle file every byte of which verified. The only way to read bundle contents.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    path: PathBuf,
    head: VerifiedHead,
    metadata: Metadata,
    size: u64,
}

impl VerifiedBundle {
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn head(&self) -> &VerifiedHead {
        &self.head
    }
    pub fn manifest(&self) -> &Manifest {
        self.head.manifest()
    }
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// Size of the bundle file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Why a file could not be verified: it could not be read, or it was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Size of each read from the file.
const READ_CHUNK: usize = 1 << 20;

/// How far [`read_bundle`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extent {
    /// Every byte, to the end-of-archive blocks.
    Whole,
    /// The head and the metadata entries only; stops before the first blob.
    Metadata,
}

/// Drives the push parser over a file in `chunk`-sized reads, collecting the head and the
/// metadata entries. Returns them with the bytes read.
pub(crate) fn read_bundle(
    path: &Path,
    mut reader: BundleReader,
    extent: Extent,
    chunk: usize,
    mut progress: impl FnMut(u64),
) -> Result<(VerifiedHead, Metadata, u64), VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; chunk];
    let mut events = Vec::new();
    let mut collector = MetadataCollector::default();
    let mut head: Option<VerifiedHead> = None;
    while !(extent == Extent::Metadata && collector.is_complete()) {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            reader.finish()?;
            break;
        }
        reader.push(&buf[..n], &mut events)?;
        for event in events.drain(..) {
            match event {
                Event::HeadVerified(h) => head = Some(*h),
                Event::EntryVerified {
                    path,
                    content: Some(content),
                    ..
                } => {
                    if let Some(h) = &head {
                        collector.take(h.manifest(), path.as_str(), content)?;
                    }
                }
                Event::EntryStarted { .. } | Event::EntryVerified { .. } | Event::Finished => {}
            }
        }
        progress(reader.offset());
    }
    let head = head.ok_or(Refusal::Truncated {
        offset: reader.offset(),
        context: "the head".into(),
    })?;
    Ok((head, collector.finish()?, reader.offset()))
}

/// Verifies a whole bundle file, calling `progress(bytes_read)` after each chunk.
pub fn verify_file(
    path: &Path,
    trusted: keys::TrustedRoots,
    policy: Policy,
    progress: impl FnMut(u64),
) -> Result<VerifiedBundle, VerifyError> {
    let reader = BundleReader::new(trusted, policy);
    let (head, metadata, size) = read_bundle(path, reader, Extent::Whole, READ_CHUNK, progress)?;
    Ok(VerifiedBundle {
        path: path.to_owned(),
        head,
        metadata,
        size,
    })
}
