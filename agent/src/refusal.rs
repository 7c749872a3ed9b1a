//! Why an import was refused: one variant per reason, each with a stable code for the API.

/// The one reason an import was refused. A refusal changes nothing: no file in the store,
/// no trust state change, no manifest or tag in the registry.
#[derive(Debug, thiserror::Error)]
pub enum ImportRefusal {
    #[error("bundle refused")]
    Bundle(#[from] schemas::Refusal),
    #[error("version {version} was already accepted with sequence {accepted}; this build has sequence {offered}")]
    OlderBuild {
        version: String,
        accepted: u64,
        offered: u64,
    },
    #[error("not enough space for the bundle: need {need} bytes, have {have} (free space minus the reserve)")]
    NoSpace { need: u64, have: u64 },
    #[error("the store would exceed maxBytes: need {need} bytes, have {have} of {max}")]
    StoreFull { need: u64, have: u64, max: u64 },
    #[error("the bundle could not be written to the store")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("the file {path} cannot be read")]
    Source {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImportRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            ImportRefusal::Bundle(r) => r.code(),
            ImportRefusal::OlderBuild { .. } => "older_build",
            ImportRefusal::NoSpace { .. } => "insufficient_space",
            ImportRefusal::StoreFull { .. } => "store_full",
            ImportRefusal::Write { .. } => "write_failed",
            ImportRefusal::Source { .. } => "source_unreadable",
        }
    }

    /// The message with its causes, on one line.
    pub fn full_message(&self) -> String {
        crate::error_chain(self)
    }
}
