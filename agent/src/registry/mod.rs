//! Loading a bundle's images into the local OCI registry with `oci-client`.
//!
//! [`push_images`] reads every blob straight out of the stored bundle file ([`BlobSource`]:
//! file, content offset, size) and pushes by digest:
//!
//! 1. every config and layer blob, up to `parallelism` at a time across all images, largest
//!    first. Each repository is asked first (HEAD by digest, never by tag) and skipped when it
//!    has the blob; a blob another repository of the registry already holds (before or during
//!    this push) is mounted from there; otherwise it is uploaded as one streamed request
//!    (monolithic), or in chunks if the registry refuses that. The bytes are hashed as they are
//!    read, on a blocking thread, and the last chunk goes out only when the digest matches, so
//!    a corrupt entry is never committed (the registry checks the digest too) and the error
//!    names the entry `blobs/sha256/<hex>`. Memory stays bounded: a few MiB per upload.
//! 2. then, per image, its platform manifests and then its index (or its single manifest),
//!    byte for byte with their media type, by digest; present ones are skipped.
//! 3. then every tag, once every manifest of every image is in place.
//!
//! A push that breaks (registry restarted, network lost) is simply run again: committed blobs
//! are found by HEAD and not sent again; an unchanged bundle uploads nothing. Transient
//! failures of one upload are tried again twice within a push. Every request has a deadline;
//! an upload ends when it takes no bytes for two minutes, naming the blob and the registry.

mod error;
mod plan;
mod progress;
mod push;
mod source;
mod target;

pub use error::{Action, Cause, PushError};
pub use progress::{PushProgress, PushSnapshot};
pub use push::{MAX_MANIFEST_BYTES, PushReport, push_images};
pub use source::BlobSource;
pub use target::RegistryTarget;
