//! `sealift-bundler`, the vendor program: packs one release — the Helm chart, its render
//! by real Helm, every image and the migration metadata — into one signed bundle.

pub mod assemble;
pub mod chart;
pub mod cli;
pub mod cmd;
pub mod helm;
pub mod image_refs;
pub mod images;
pub mod progress;
pub mod rbac;
pub mod render;
pub mod trust;
pub mod variables;
pub mod waves;
