//! `sealift-bundler keygen`: generate an ed25519 key pair in the files OpenSSL writes.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Generate an ed25519 key pair: DIR/NAME.key (PKCS#8 PEM, mode 0600) and DIR/NAME.pub
/// (SPKI PEM), as `openssl genpkey -algorithm ed25519` would. Prints the key id on stdout.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write the key files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Base name of the files, e.g. `release` for release.key and release.pub.
    #[arg(long, value_name = "NAME")]
    pub name: String,
}

pub fn run(args: Args) -> Result<()> {
    fs_err::create_dir_all(&args.out)?;
    let files = keys::generate_key_files(&args.out, &args.name)
        .with_context(|| format!("cannot generate key pair {:?}", args.name))?;
    tracing::info!(
        "wrote {} (private, unencrypted, mode 0600) and {} (public)",
        files.private_key.display(),
        files.public_key.display()
    );
    tracing::info!(
        "to encrypt the private key: openssl pkcs8 -topk8 -v2 aes-256-cbc -in {} -out {}.enc, then set {} to its passphrase when using it",
        files.private_key.display(),
        files.private_key.display(),
        keys::PASSPHRASE_ENV
    );
    outln!("{}", files.keyid)?;
    Ok(())
}
