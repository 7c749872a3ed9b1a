//! Why a push failed: the registry action, the registry, and what the failure means.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use schemas::{Digest, ImageName};

/// A push that did not complete. Every variant names the image, digest, entry or registry
/// concerned; the client's error is attached as the source.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("registry url {url:?} is not valid: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("registry {url} is plain HTTP, which is used only when insecure HTTP is configured")]
    PlainHttpNotAllowed { url: String },
    #[error("cannot use the registry CA certificate {path}")]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up the client for registry {registry}")]
    Client {
        registry: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("image {image}: repository {repository:?} is not a valid repository path: {reason}")]
    InvalidRepository {
        image: ImageName,
        repository: String,
        reason: &'static str,
    },
    #[error("images {first} and {second} both want tag {tag:?} in repository {repository}")]
    TagConflict {
        repository: String,
        tag: String,
        first: ImageName,
        second: ImageName,
    },
    #[error("image {image} needs blob {digest}, which the bundle does not hold")]
    MissingBlob { image: ImageName, digest: Digest },
    /// A bundle entry whose bytes do not hash to its digest. The caller marks the stored
    /// bundle corrupt; nothing of it was committed to the registry.
    #[error("bundle entry {entry} in {file} is corrupt: expected {expected}, its content hashes to {actual}")]
    CorruptEntry {
        entry: String,
        file: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot read bundle entry {entry} from {file} (bytes {offset}..{end})")]
    ReadEntry {
        entry: String,
        file: PathBuf,
        offset: u64,
        end: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {entry} of image {image} is {size} bytes, more than registries accept ({limit})")]
    ManifestTooLarge {
        entry: String,
        image: ImageName,
        size: u64,
        limit: u64,
    },
    #[error("{action} on registry {registry} failed: {cause}")]
    Registry {
        action: Box<Action>,
        registry: String,
        cause: Cause,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("{action} on registry {registry}: no answer within {after:?}")]
    TimedOut {
        action: Box<Action>,
        registry: String,
        after: Duration,
    },
    #[error("{action} on registry {registry}: no progress for {after:?}")]
    Stalled {
        action: Box<Action>,
        registry: String,
        after: Duration,
    },
    #[error("{action} on registry {registry}: the registry did not confirm the upload within {after:?}")]
    CommitTimedOut {
        action: Box<Action>,
        registry: String,
        after: Duration,
    },
    /// Stopped because another part of the push failed first (never the error returned).
    #[error("{action} was stopped because another part of the push failed")]
    Aborted { action: Box<Action> },
    #[error("reading bundle entry {entry} stopped unexpectedly")]
    ReaderFailed {
        entry: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl PushError {
    /// The bundle entry (`blobs/sha256/<hex>`) found corrupt or unreadable, if that is why.
    pub fn corrupt_entry(&self) -> Option<&str> {
        match self {
            PushError::CorruptEntry { entry, .. } | PushError::ReadEntry { entry, .. } => Some(entry),
            _ => None,
        }
    }

    /// Whether trying the same request again may succeed (network trouble, 5xx, timeouts).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            PushError::Registry { cause, .. } => matches!(
                cause,
                Cause::Unreachable | Cause::Interrupted | Cause::TimedOut | Cause::Unavailable { .. }
            ),
            PushError::TimedOut { .. } | PushError::Stalled { .. } | PushError::CommitTimedOut { .. } => true,
            _ => false,
        }
    }

    /// Whether the registry refused a monolithic upload in a way a chunked one may avoid.
    pub(crate) fn wants_chunked(&self) -> bool {
        match self {
            PushError::Registry { source, .. } => match source.as_ref() {
                OciDistributionError::SpecViolationError(_) => true,
                OciDistributionError::ServerError { code, .. } => matches!(code, 405 | 411 | 413 | 416 | 501),
                _ => false,
            },
            _ => false,
        }
    }
}

/// What the agent was doing when the registry failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Connect {
        repository: String,
    },
    CheckBlob {
        digest: Digest,
        repository: String,
    },
    UploadBlob {
        digest: Digest,
        repository: String,
    },
    MountBlob {
        digest: Digest,
        from: String,
        repository: String,
    },
    CheckManifest {
        digest: Digest,
        repository: String,
    },
    PushManifest {
        image: ImageName,
        digest: Digest,
        repository: String,
    },
    CheckTag {
        tag: String,
        repository: String,
    },
    PushTag {
        image: ImageName,
        tag: String,
        digest: Digest,
        repository: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Connect { repository } => write!(f, "connecting for repository {repository}"),
            Action::CheckBlob { digest, repository } => write!(f, "checking for blob {digest} in {repository}"),
            Action::UploadBlob { digest, repository } => write!(f, "uploading blob {digest} to {repository}"),
            Action::MountBlob {
                digest,
                from,
                repository,
            } => write!(f, "mounting blob {digest} from {from} into {repository}"),
            Action::CheckManifest { digest, repository } => {
                write!(f, "checking for manifest {digest} in {repository}")
            }
            Action::PushManifest {
                image,
                digest,
                repository,
            } => write!(f, "pushing manifest {digest} of image {image} to {repository}"),
            Action::CheckTag { tag, repository } => write!(f, "checking tag {repository}:{tag}"),
            Action::PushTag {
                image,
                tag,
                digest,
                repository,
            } => write!(f, "tagging {repository}:{tag} as {digest} (image {image})"),
        }
    }
}

/// What a registry failure means for the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// 401 with credentials configured.
    CredentialsRefused,
    /// 401 without credentials.
    CredentialsRequired,
    /// 403.
    Denied,
    UntrustedCertificate,
    Tls,
    Unreachable,
    /// The connection broke mid-request.
    Interrupted,
    TimedOut,
    /// 5xx or 429: the registry may recover.
    Unavailable {
        status: u16,
    },
    /// Any other refusal, with the registry's words.
    Rejected {
        status: Option<u16>,
        message: String,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::CredentialsRefused => f.write_str("the registry refused the configured credentials"),
            Cause::CredentialsRequired => f.write_str("the registry requires credentials and none are configured"),
            Cause::Denied => f.write_str("the registry denied access"),
            Cause::UntrustedCertificate => {
                f.write_str("the registry's TLS certificate is not trusted (configure its CA certificate)")
            }
            Cause::Tls => f.write_str("the TLS handshake failed"),
            Cause::Unreachable => f.write_str("cannot connect"),
            Cause::Interrupted => f.write_str("the connection broke"),
            Cause::TimedOut => f.write_str("timed out"),
            Cause::Unavailable { status } => write!(f, "the registry answered {status}"),
            Cause::Rejected {
                status: Some(status),
                message,
            } => write!(f, "the registry answered {status}: {message}"),
            Cause::Rejected { status: None, message } => write!(f, "{message}"),
        }
    }
}

impl Cause {
    /// Classifies a client error; `with_credentials` tells a refused login from a missing one.
    pub(crate) fn of(e: &OciDistributionError, with_credentials: bool) -> Cause {
        let unauthorized = || {
            if with_credentials {
                Cause::CredentialsRefused
            } else {
                Cause::CredentialsRequired
            }
        };
        let by_status = |status: u16, message: String| match status {
            401 => unauthorized(),
            403 => Cause::Denied,
            429 | 500..=599 => Cause::Unavailable { status },
            _ => Cause::Rejected {
                status: Some(status),
                message,
            },
        };
        match e {
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.contains(&&OciErrorCode::Unauthorized) {
                    unauthorized()
                } else if codes.contains(&&OciErrorCode::Denied) {
                    Cause::Denied
                } else {
                    Cause::Rejected {
                        status: None,
                        message: short(
                            &envelope
                                .errors
                                .iter()
                                .map(|e| format!("{:?}: {}", e.code, e.message))
                                .collect::<Vec<_>>()
                                .join("; "),
                        ),
                    }
                }
            }
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                unauthorized()
            }
            OciDistributionError::ServerError { code, message, .. } => by_status(*code, short(message)),
            OciDistributionError::RequestError(re) => {
                let chain = error_chain(re);
                if let Some(status) = re.status() {
                    by_status(status.as_u16(), String::new())
                } else if re.is_timeout() {
                    Cause::TimedOut
                } else if chain.contains("certificate") || chain.contains("unknownissuer") {
                    Cause::UntrustedCertificate
                } else if chain.contains("tls") || chain.contains("handshake") || chain.contains("corrupt message") {
                    Cause::Tls
                } else if re.is_connect() {
                    Cause::Unreachable
                } else {
                    Cause::Interrupted
                }
            }
            OciDistributionError::IoError(io) if io.kind() == std::io::ErrorKind::TimedOut => Cause::TimedOut,
            OciDistributionError::IoError(_) => Cause::Interrupted,
            other => Cause::Rejected {
                status: None,
                message: short(&other.to_string()),
            },
        }
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out.to_ascii_lowercase()
}
