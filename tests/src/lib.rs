//! Test harnesses shared by the integration tests, the demo and the benchmarks: the real
//! `distribution` registry, synthetic OCI images pushed with skopeo, the sample app.

pub mod oci_fixtures;
pub mod registry;
pub mod sample;
