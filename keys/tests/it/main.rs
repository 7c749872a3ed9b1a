//! The `keys` crate's integration tests: one binary, one module per concern.
#![allow(clippy::unwrap_used)]

mod fixtures;
mod openssl;
mod props;
mod root_dir;
mod trust;
