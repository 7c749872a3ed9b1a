//! Why an import was refused: one variant per reason, each with a stable code for the API.

/// The one reason an import was refused. A refusal changes nothing: no file in the store,
/// no trust state change, no manifest or tag in the registry.
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ImportRefusalKind),
    derive(strum::EnumIter, Hash),
    doc = "Which reason, without its details. `Bundle` stands for every [`schemas::RefusalKind`]."
)]
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

impl ImportRefusalKind {
    /// The stable code of an agent-side reason. `Bundle` has none of its own: a bundle
    /// refusal carries the code of its [`schemas::RefusalKind`].
    pub fn code(self) -> Option<&'static str> {
        match self {
            ImportRefusalKind::Bundle => None,
            ImportRefusalKind::OlderBuild => Some("older_build"),
            ImportRefusalKind::NoSpace => Some("insufficient_space"),
            ImportRefusalKind::StoreFull => Some("store_full"),
            ImportRefusalKind::Write => Some("write_failed"),
            ImportRefusalKind::Source => Some("source_unreadable"),
        }
    }
}

impl ImportRefusal {
    /// A stable, machine-readable code for the reason, as the API reports it.
    pub fn code(&self) -> &'static str {
        match self {
            ImportRefusal::Bundle(r) => r.code(),
            other => ImportRefusalKind::from(other)
                .code()
                .unwrap_or_else(|| unreachable!("only Bundle has no code of its own")),
        }
    }

    /// The message with its causes, on one line.
    pub fn full_message(&self) -> String {
        crate::error_chain(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use strum::IntoEnumIterator;

    use super::ImportRefusalKind;

    #[test]
    fn every_code_is_distinct_across_the_format_and_the_agent() {
        let format = schemas::RefusalKind::iter().map(schemas::RefusalKind::code);
        let agent = ImportRefusalKind::iter().filter_map(ImportRefusalKind::code);
        let all: Vec<&str> = format.chain(agent).collect();
        let distinct: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), distinct.len(), "a code is used twice: {all:?}");
        assert!(
            all.iter()
                .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')),
            "{all:?}"
        );
    }
}
