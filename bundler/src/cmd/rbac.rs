//! `sealift-bundler rbac`: the Role and ClusterRole the agent needs to apply a bundle.

use std::path::PathBuf;

use anyhow::Result;
use schemas::inspect::{UnverifiedHead, read_metadata};

use crate::rbac;
use crate::render;
use crate::trust::RootDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub file: PathBuf,
    /// Verify the head against this root directory first.
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// Namespace the application is installed in (default: the bundle's).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Name of the agent's ServiceAccount and of the roles.
    #[arg(long, default_value = "sealift-agent")]
    pub name: String,
    /// Namespace of the agent's ServiceAccount (where `deploy/` puts it).
    #[arg(long, default_value = "sealift-system")]
    pub agent_namespace: String,
}

pub fn run(args: Args) -> Result<()> {
    let metadata = match &args.root_dir {
        Some(dir) => read_metadata(&args.file, RootDir::load(dir)?.trusted()?)?.1,
        None => {
            tracing::warn!("no --root-dir: the bundle is checked only against its own root chain (UNTRUSTED)");
            UnverifiedHead::read(&args.file)?.untrusted_metadata().clone()
        }
    };
    let docs = render::parse(&metadata.render)?;
    let namespace = args
        .namespace
        .unwrap_or_else(|| metadata.variables.namespace.default.clone());
    out!(
        "{}",
        rbac::print(&rbac::roles(&docs, &args.name, &namespace, &args.agent_namespace))?
    )?;
    Ok(())
}
