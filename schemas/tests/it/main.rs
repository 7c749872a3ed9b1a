//! Integration tests of the bundle format: the tamper matrix and the committed JSON Schemas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_corpus;
mod json_schemas;
mod tamper;
