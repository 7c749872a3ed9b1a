//! `sealift-agent`, the customer-side program: trusted import of bundles into its store,
//! images into the cluster's registry, and (later) the release engine.

pub mod api;
pub mod audit;
pub mod backup;
pub mod backup_cli;
pub mod cli;
pub mod client;
pub mod config;
pub mod import;
pub mod metrics;
pub mod persist;
pub mod refusal;
pub mod registry;
pub mod release;
pub mod release_view;
pub mod service;
pub mod store;
pub mod tls_bootstrap;
pub mod trust_state;
pub mod web;

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
