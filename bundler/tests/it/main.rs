//! Integration tests of `sealift-bundler`, run as the real binary against the real
//! `distribution` registry, skopeo, openssl and the Helm engine (all on loopback).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod format1;
mod golden;
mod scenarios;
