//! `sealift-bundler verify`: every stateless check the agent makes, offline.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schemas::{Policy, Timestamp, VerifiedHead, VerifyError};
use serde_json::json;

use crate::progress::Progress;
use crate::trust::RootDir;

/// Output format of summaries on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub file: PathBuf,
    /// The vendor's root directory (1.root.json … N.root.json) to trust.
    #[arg(long)]
    pub root_dir: PathBuf,
    /// Refuse bundles of any other product.
    #[arg(long)]
    pub product: Option<schemas::ProductName>,
    /// Refuse bundles with a lower sequence.
    #[arg(long, default_value_t = 0)]
    pub min_sequence: u64,
    /// Check expiry and creation time as of this time (RFC 3339) instead of the clock.
    #[arg(long, value_name = "TIME")]
    pub at: Option<Timestamp>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> Result<()> {
    let roots = RootDir::load(&args.root_dir)?;
    let mut policy = Policy::import(args.at.unwrap_or_else(Timestamp::now));
    policy.product = args.product.clone();
    policy.min_sequence = args.min_sequence;
    let size = fs_err::metadata(&args.file)?.len();
    let mut progress = Progress::bytes("verifying", size, args.format == Format::Json);
    let result = schemas::verify_file(&args.file, roots.trusted()?, policy, |n| progress.set(n));
    progress.finish();
    match result {
        Ok(bundle) => print_summary(bundle.head(), bundle.size(), args.format, "verified", &args.file),
        Err(VerifyError::Refused(r)) => {
            if args.format == Format::Json {
                outln!(
                    "{}",
                    json!({ "verified": false, "code": r.code(), "reason": r.full_message() })
                )?;
            }
            Err(anyhow::Error::new(r)).with_context(|| format!("{} is refused", args.file.display()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The summary every command that produces or checks a bundle prints.
pub fn print_summary(head: &VerifiedHead, size: u64, format: Format, verb: &str, path: &Path) -> Result<()> {
    let m = head.manifest();
    let signers: Vec<String> = head.signers().iter().map(ToString::to_string).collect();
    match format {
        Format::Json => {
            let images: Vec<_> = m
                .images
                .iter()
                .map(|i| json!({ "name": i.name, "target": i.target, "digest": i.digest, "size": i.total_size, "platforms": i.platforms.iter().map(|p| &p.platform).collect::<Vec<_>>() }))
                .collect();
            let v = json!({
                "verified": true,
                "file": path,
                "product": m.product,
                "version": m.version.to_string(),
                "sequence": m.sequence,
                "minSequence": m.min_sequence,
                "identity": head.identity(),
                "created": m.created,
                "expires": m.expires,
                "rootVersion": head.root_version(),
                "signers": signers,
                "size": size,
                "images": images,
            });
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Text => {
            outln!("{verb} {}", path.display())?;
            outln!("  product   {}", m.product)?;
            outln!(
                "  version   {} (sequence {}, minSequence {})",
                m.version,
                m.sequence,
                m.min_sequence
            )?;
            outln!("  identity  {}", head.identity())?;
            outln!("  created   {}  expires {}", m.created, m.expires)?;
            outln!(
                "  signers   {} (root version {})",
                signers.join(", "),
                head.root_version()
            )?;
            outln!("  size      {size} bytes, {} entries", m.entries.len() + 1)?;
            outln!("  images    {}", m.images.len())?;
            for i in &m.images {
                outln!("    {} -> {}@{} ({} bytes)", i.name, i.target, i.digest, i.total_size)?;
            }
        }
    }
    Ok(())
}
