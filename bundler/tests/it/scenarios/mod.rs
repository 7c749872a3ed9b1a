//! End-to-end scenarios of `sealift-bundler`, one file per topic, each with the real
//! registry, skopeo, openssl, tar and the Helm engine.

mod build;
mod chart_checks;
mod images;
mod inputs;
mod inspect;
mod keys_openssl;
mod reproducible;
mod roots;
mod sign;
mod tamper;
mod verify;
