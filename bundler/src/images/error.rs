//! What can go wrong while fetching images. Every image error names the image and where it
//! came from (the registry host actually contacted, the layout or the archive).

use std::fmt;
use std::path::PathBuf;

use schemas::names::NameError;
use schemas::{Digest, ImageName};

use super::cache::CacheError;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where an image's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A registry; `host` is the one contacted (after registry overrides).
    Registry {
        host: String,
    },
    OciLayout {
        path: PathBuf,
    },
    DockerArchive {
        path: PathBuf,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Registry { host } => write!(f, "pulled from {host}"),
            Origin::OciLayout { path } => write!(f, "from OCI layout {}", path.display()),
            Origin::DockerArchive { path } => write!(f, "from docker archive {}", path.display()),
        }
    }
}

/// What went wrong with one image.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("repository unknown")]
    RepositoryUnknown,
    #[error("blob {0} unknown")]
    BlobUnknown(Digest),
    #[error("not authorized: the registry refused the credentials for {host} from {}", config.display())]
    CredentialsRefused { host: String, config: PathBuf },
    #[error("not authorized: anonymous access was refused and {} has no credentials for {host}", config.display())]
    AnonymousRefusedWithConfig { host: String, config: PathBuf },
    #[error("not authorized: anonymous access was refused and no docker config was found")]
    AnonymousRefused,
    #[error("access denied")]
    Denied,
    #[error("the TLS certificate of {host} is not trusted (pass the CA that signed it)")]
    UntrustedCertificate { host: String },
    #[error("TLS connection to {host} failed")]
    Tls { host: String },
    #[error("cannot connect to {host}")]
    Unreachable { host: String },
    #[error("timed out waiting for {host}")]
    TimedOut { host: String },
    #[error("the registry answered with an error")]
    Registry,
    #[error("invalid credentials for {host} in {}", config.display())]
    BadCredentials { host: String, config: PathBuf },
    #[error("invalid digest {value:?}")]
    InvalidDigest { value: String },
    #[error("{what} {expected} has digest {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} {digest} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        what: &'static str,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is larger than its descriptor's {limit} bytes")]
    TooLarge { digest: Digest, limit: u64 },
    #[error("manifest {digest} is not valid: {reason}")]
    InvalidManifest { digest: Digest, reason: String },
    #[error("manifest {digest} has media type {media_type}, which is not supported")]
    UnsupportedMediaType { digest: Digest, media_type: String },
    #[error("index {index} lists another index {child}; nested indexes are not supported")]
    NestedIndex { index: Digest, child: Digest },
    #[error("platform {} not found; the image has {}", missing.join(", "), list_or_none(available))]
    PlatformMissing {
        missing: Vec<String>,
        available: Vec<String>,
    },
    #[error("the image is single-platform {actual}, but {} was requested", requested.join(", "))]
    PlatformMismatch { actual: String, requested: Vec<String> },
    #[error(
        "reference {reference:?} is not in index.json (it lists {})",
        list_or_none(available)
    )]
    LayoutRefNotFound { reference: String, available: Vec<String> },
    #[error("reference {reference:?} names several different manifests in index.json")]
    LayoutRefAmbiguous { reference: String },
    #[error("blob {digest} is missing from the layout")]
    LayoutBlobMissing { digest: Digest },
    #[error("{reference:?} is not in the archive (it has {})", list_or_none(available))]
    ArchiveTagNotFound { reference: String, available: Vec<String> },
    #[error("the archive holds several images ({}); set `reference` to choose one", available.join(", "))]
    ArchiveAmbiguous { available: Vec<String> },
    #[error("the archive holds no image")]
    ArchiveEmpty,
    #[error("{path} is not in the archive")]
    ArchiveEntryMissing { path: String },
    #[error("manifest.json of the archive is not valid")]
    ArchiveManifest,
    #[error("path {path:?} in the archive is not valid")]
    ArchivePath { path: String },
    #[error("layer {path} is zstd-compressed, which a docker v2 manifest cannot describe")]
    ArchiveZstdLayer { path: String },
    #[error("cannot read {}", path.display())]
    Read { path: PathBuf },
    #[error("cannot store a blob in the cache")]
    Cache,
    #[error("cannot set up an HTTP client for {host} (are the CA certificates valid PEM?)")]
    ClientSetup { host: String },
    #[error("a background task failed")]
    Task,
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// A problem with its underlying cause, before it is attached to an image.
#[derive(Debug)]
pub(crate) struct Fail {
    pub problem: Problem,
    pub source: Option<BoxError>,
}

impl Fail {
    pub fn new(problem: Problem, source: impl Into<BoxError>) -> Self {
        Self {
            problem,
            source: Some(source.into()),
        }
    }

    pub fn read(path: impl Into<PathBuf>, source: impl Into<BoxError>) -> Self {
        Self::new(Problem::Read { path: path.into() }, source)
    }

    pub fn into_fetch_error(self, image: &ImageName, origin: &Origin) -> FetchError {
        FetchError::Image {
            image: image.clone(),
            origin: origin.clone(),
            problem: Box::new(self.problem),
            source: self.source,
        }
    }
}

impl From<Problem> for Fail {
    fn from(problem: Problem) -> Self {
        Self { problem, source: None }
    }
}

impl From<CacheError> for Fail {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::DigestMismatch { expected, actual } => Problem::DigestMismatch {
                what: "blob",
                expected,
                actual,
            }
            .into(),
            CacheError::SizeMismatch {
                digest,
                expected,
                actual,
            } => Problem::SizeMismatch {
                what: "blob",
                digest,
                expected,
                actual,
            }
            .into(),
            other => Fail::new(Problem::Cache, other),
        }
    }
}

impl From<tokio::task::JoinError> for Fail {
    fn from(e: tokio::task::JoinError) -> Self {
        Fail::new(Problem::Task, e)
    }
}

/// Why `fetch_images` failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("image {image} ({origin}): {problem}")]
    Image {
        image: ImageName,
        origin: Origin,
        problem: Box<Problem>,
        #[source]
        source: Option<BoxError>,
    },
    #[error("images {first} and {second} both map to target repository {target} (hint: set `target` on one of them)")]
    TargetConflict {
        first: ImageName,
        second: ImageName,
        target: String,
    },
    #[error("image {image} is listed twice")]
    Duplicate { image: ImageName },
    #[error("image {image}: target repository {value:?} is not valid")]
    InvalidTarget {
        image: ImageName,
        value: String,
        #[source]
        source: NameError,
    },
    #[error("invalid platform {value:?}: expected os/arch[/variant]")]
    InvalidPlatform { value: String },
    #[error("cannot read docker config {}", path.display())]
    DockerConfig {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("cannot read CA certificate {}", path.display())]
    CaCert {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
}
