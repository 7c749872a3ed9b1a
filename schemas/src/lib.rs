//! What a Sealift bundle is: the types of the build spec and the signed manifest, the
//! archive codec (a sans-IO push parser and a writer), and verification.
//!
//! This crate is synchronous and never touches the network or Kubernetes.

pub mod entry;
pub mod head;
pub mod inspect;
pub mod json_schema;
pub mod layout;
pub mod manifest;
pub mod names;
pub mod oci;
pub mod policy;
pub mod reader;
pub mod refusal;
pub mod release;
pub mod rendered;
pub mod spec;
pub mod tar_header;
pub mod timestamp;
pub mod verified;
pub mod writer;

pub use entry::EntryPath;
pub use manifest::Manifest;
pub use names::{Digest, ImageName, ProductName};
pub use policy::Policy;
pub use reader::{BundleReader, Checkpoint, Event};
pub use refusal::{Refusal, RefusalKind};
pub use timestamp::Timestamp;
pub use verified::{VerifiedBundle, VerifiedHead, VerifyError, verify_file};
