//! End-to-end scenarios of `sealift-bundler`, one file per topic, each with the real
//! registry, skopeo, openssl, tar and the Helm engine.

mod build;
mod inputs;
