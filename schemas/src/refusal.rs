//! Why a bundle is refused: one variant per reason, each with a stable code.

use crate::names::Digest;
use crate::timestamp::Timestamp;

/// The one reason a bundle was refused. Every check in the reader and the policy ends
/// in exactly one of these; `code()` is the machine-readable form used by the API.
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(RefusalKind),
    derive(strum::EnumIter, Hash),
    doc = "Which reason, without its details: every kind is enumerable (`RefusalKind::iter()`), so tests can prove each one is covered."
)]
pub enum Refusal {
    #[error("file ends at byte {offset} inside {context}")]
    Truncated { offset: u64, context: String },
    #[error("entry {index} at byte {offset} is not a regular file (typeflag {typeflag:?})")]
    NotRegularFile { index: usize, offset: u64, typeflag: char },
    #[error("entry {index} at byte {offset} has an unsafe path {path:?}: {reason}")]
    UnsafePath {
        index: usize,
        offset: u64,
        path: String,
        reason: String,
    },
    #[error("entry {index} at byte {offset} is {found:?}, expected {expected:?}")]
    UnexpectedEntry {
        index: usize,
        offset: u64,
        expected: String,
        found: String,
    },
    #[error("entry {path} declares {declared} bytes, the manifest says {expected}")]
    EntrySizeMismatch { path: String, declared: u64, expected: u64 },
    #[error("header of {path} at byte {offset} is not canonical: field {field} differs")]
    NonCanonicalHeader {
        path: String,
        offset: u64,
        field: &'static str,
    },
    #[error("header of {path} at byte {offset} has a bad checksum")]
    HeaderChecksum { path: String, offset: u64 },
    #[error("head is {size} bytes, more than the limit of {limit}")]
    HeadTooLarge { size: u64, limit: u64 },
    #[error("head is not valid JSON of the head form: {reason}")]
    HeadMalformed { reason: String },
    #[error("head is not in canonical form (first difference at byte {offset} of the head entry)")]
    HeadNotCanonical { offset: u64 },
    #[error("head padding at byte {offset} of the head entry is not zero")]
    HeadPadding { offset: u64 },
    #[error("{what} envelope is invalid")]
    Envelope {
        what: String,
        #[source]
        source: keys::EnvelopeError,
    },
    #[error("root chain is not trusted")]
    RootChain {
        #[source]
        source: keys::TrustError,
    },
    #[error("release signatures are not trusted")]
    ReleaseSignatures {
        #[source]
        source: keys::TrustError,
    },
    #[error("manifest cannot be read")]
    Manifest {
        #[source]
        source: crate::manifest::ManifestError,
    },
    #[error("manifest is inconsistent: {reason}")]
    ManifestInconsistent { reason: String },
    #[error("entry {path} has digest {actual}, the manifest says {expected}")]
    DigestMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("padding after {path} at byte {offset} is not zero")]
    NonZeroPadding { path: String, offset: u64 },
    #[error("end-of-archive block at byte {offset} is not zero")]
    EndBlock { offset: u64 },
    #[error("data after the end of the archive at byte {offset}")]
    TrailingData { offset: u64 },
    #[error("metadata entry {path} is {size} bytes, more than the limit of {limit}")]
    MetadataTooLarge { path: String, size: u64, limit: u64 },
    #[error("metadata entry {path} is invalid: {reason}")]
    MetadataInvalid { path: String, reason: String },
    #[error("bundle is for product {found:?}, expected {expected:?}")]
    WrongProduct { expected: String, found: String },
    #[error("bundle sequence {sequence} is below the minimum sequence {min_sequence}")]
    BelowMinSequence { sequence: u64, min_sequence: u64 },
    #[error("bundle expired at {expires} (clock: {now})")]
    Expired { expires: Timestamp, now: Timestamp },
    #[error("bundle was created at {created}, more than {skew_seconds}s after the clock ({now})")]
    CreatedInFuture {
        created: Timestamp,
        now: Timestamp,
        skew_seconds: i64,
    },
    #[error("clock {now} is more than {skew_seconds}s behind the clock floor {floor}")]
    ClockBehindFloor {
        now: Timestamp,
        floor: Timestamp,
        skew_seconds: i64,
    },
}

impl RefusalKind {
    /// A stable, machine-readable code for the reason.
    pub fn code(self) -> &'static str {
        match self {
            RefusalKind::Truncated => "truncated",
            RefusalKind::NotRegularFile => "not_regular_file",
            RefusalKind::UnsafePath => "unsafe_path",
            RefusalKind::UnexpectedEntry => "unexpected_entry",
            RefusalKind::EntrySizeMismatch => "entry_size_mismatch",
            RefusalKind::NonCanonicalHeader => "non_canonical_header",
            RefusalKind::HeaderChecksum => "header_checksum",
            RefusalKind::HeadTooLarge => "head_too_large",
            RefusalKind::HeadMalformed => "head_malformed",
            RefusalKind::HeadNotCanonical => "head_not_canonical",
            RefusalKind::HeadPadding => "head_padding",
            RefusalKind::Envelope => "envelope_invalid",
            RefusalKind::RootChain => "root_chain_untrusted",
            RefusalKind::ReleaseSignatures => "release_signatures_untrusted",
            RefusalKind::Manifest => "manifest_invalid",
            RefusalKind::ManifestInconsistent => "manifest_inconsistent",
            RefusalKind::DigestMismatch => "digest_mismatch",
            RefusalKind::NonZeroPadding => "non_zero_padding",
            RefusalKind::EndBlock => "end_block_not_zero",
            RefusalKind::TrailingData => "trailing_data",
            RefusalKind::MetadataTooLarge => "metadata_too_large",
            RefusalKind::MetadataInvalid => "metadata_invalid",
            RefusalKind::WrongProduct => "wrong_product",
            RefusalKind::BelowMinSequence => "below_min_sequence",
            RefusalKind::Expired => "expired",
            RefusalKind::CreatedInFuture => "created_in_future",
            RefusalKind::ClockBehindFloor => "clock_behind_floor",
        }
    }
}

impl Refusal {
    /// A stable, machine-readable code for the reason.
    pub fn code(&self) -> &'static str {
        RefusalKind::from(self).code()
    }

    /// The message with its causes, on one line.
    pub fn full_message(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}
