//! Reads only the head and the metadata entries, for `inspect`: milliseconds whatever
//! the bundle's size.

use std::io::Read;
use std::path::Path;

use crate::head::Head;
use crate::policy::Policy;
use crate::reader::BundleReader;
use crate::refusal::Refusal;
use crate::tar_header::{self, BLOCK};
use crate::verified::{Extent, Metadata, VerifiedHead, VerifyError, read_bundle};

const CHUNK: usize = 64 * 1024;

/// Verifies the head against `trusted` and reads the metadata entries, checking their
/// hashes; stops before the first blob.
pub fn read_metadata(path: &Path, trusted: keys::TrustedRoots) -> Result<(VerifiedHead, Metadata), VerifyError> {
    let reader = BundleReader::new(trusted, Policy::integrity_only());
    let (head, metadata, _) = read_bundle(path, reader, Extent::Metadata, CHUNK, |_| {})?;
    Ok((head, metadata))
}

/// A head checked only against the root chain it carries: signatures and hashes hold, but
/// nothing says the chain's first root is one you trust. Output built from it must say
/// UNTRUSTED.
#[derive(Debug)]
pub struct UnverifiedHead {
    head: VerifiedHead,
    metadata: Metadata,
}

impl UnverifiedHead {
    /// Reads the head, anchors trust in its own `1.root.json`, then reads the metadata.
    pub fn read(path: &Path) -> Result<Self, VerifyError> {
        let io = |source| VerifyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut header = [0u8; BLOCK];
        file.read_exact(&mut header).map_err(|_| Refusal::Truncated {
            offset: 0,
            context: "the head's header".into(),
        })?;
        let size = tar_header::parse(&header).size.ok_or(Refusal::NonCanonicalHeader {
            path: crate::entry::HEAD_PATH.into(),
            offset: 124,
            field: "size",
        })?;
        if size > crate::head::MAX_HEAD_BYTES {
            return Err(Refusal::HeadTooLarge {
                size,
                limit: crate::head::MAX_HEAD_BYTES,
            }
            .into());
        }
        let mut entry = vec![0u8; size as usize];
        file.read_exact(&mut entry).map_err(|_| Refusal::Truncated {
            offset: BLOCK as u64,
            context: "the head".into(),
        })?;
        let head = Head::from_entry(&entry)?;
        let first = head.roots.first().ok_or(Refusal::HeadMalformed {
            reason: "the head carries no root".into(),
        })?;
        let trusted = keys::TrustedRoots::from_envelopes(std::slice::from_ref(first))
            .map_err(|source| Refusal::RootChain { source })?;
        let (head, metadata) = read_metadata(path, trusted)?;
        Ok(Self { head, metadata })
    }

    /// The head, verified only against its own chain.
    pub fn untrusted_head(&self) -> &VerifiedHead {
        &self.head
    }
    pub fn untrusted_metadata(&self) -> &Metadata {
        &self.metadata
    }
}
