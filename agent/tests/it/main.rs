//! Integration tests of `sealift-agent` with the real registry, skopeo and the real CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_surface;
mod backup;
mod config;
mod deploy;
mod harness;
mod import;
mod push;
mod refusals;
mod release;
mod release_resume;
mod release_scenarios;
mod restage;
mod tls;
mod vendor;
mod web;
