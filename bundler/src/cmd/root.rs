//! `sealift-bundler root`: the root of trust, a directory of `1.root.json` … `N.root.json`.
//!
//! Each version lists the root keys and release keys with their thresholds; version N+1 must be
//! signed by a threshold of N's root keys and of its own. The logic lives in `keys::root_dir`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keys::root_dir::{self, KeySetChange};
use keys::{PublicKey, RootDocument, SigningKey};

/// Manage the root of trust: init, rotate, sign.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RootCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RootCommand {
    /// Write DIR/1.root.json, signed by every given root key.
    Init(InitArgs),
    /// Add a signature to the newest (or a given) root version, in place.
    // `--version` is the root version here, not clap's version flag.
    #[command(disable_version_flag = true)]
    Sign(SignArgs),
    /// Write the next root version with new keys or thresholds, signed by old and/or new root
    /// keys; key sets not given are carried over.
    Rotate(RotateArgs),
}

/// Write DIR/1.root.json, signed by every given root key.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The root directory (created if missing); it must not have a 1.root.json yet.
    #[arg(long, value_name = "DIR")]
    pub root_dir: PathBuf,
    /// A root private key (PKCS#8 PEM): listed as a root key, and signs. Repeatable. An
    /// encrypted key's passphrase is read from $SEALIFT_KEY_PASSPHRASE.
    #[arg(long = "root-key", value_name = "PRIV", required = true, num_args = 1..)]
    pub root_keys: Vec<PathBuf>,
    /// Another root public key (SPKI PEM) to list, whose holder signs later with `root sign`.
    /// Repeatable.
    #[arg(long = "root-pub", value_name = "PUB", num_args = 1..)]
    pub root_pubs: Vec<PathBuf>,
    /// How many distinct root keys must sign a root version [default: 1].
    #[arg(long, value_name = "N")]
    pub root_threshold: Option<u32>,
    /// A release public key (SPKI PEM), whose private key signs bundles. Repeatable.
    #[arg(long = "release-pub", value_name = "PUB", required = true, num_args = 1..)]
    pub release_pubs: Vec<PathBuf>,
    /// How many distinct release keys must sign a bundle [default: 1].
    #[arg(long, value_name = "N")]
    pub release_threshold: Option<u32>,
}

/// Add a signature to the newest (or a given) root version, in place.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The root directory.
    #[arg(long, value_name = "DIR")]
    pub root_dir: PathBuf,
    /// The signing key (PKCS#8 PEM): a root key of that version or of the one before. An
    /// encrypted key's passphrase is read from $SEALIFT_KEY_PASSPHRASE.
    #[arg(long, value_name = "PRIV")]
    pub key: PathBuf,
    /// The root version to sign [default: the newest].
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
}

/// Write the next root version, signed by old and/or new root keys.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The root directory; the new file is <N+1>.root.json for its newest version N.
    #[arg(long, value_name = "DIR")]
    pub root_dir: PathBuf,
    /// A signing key (PKCS#8 PEM): a root key of version N or of the new version. Repeatable.
    /// An encrypted key's passphrase is read from $SEALIFT_KEY_PASSPHRASE.
    #[arg(long = "key", value_name = "PRIV", required = true, num_args = 1..)]
    pub keys: Vec<PathBuf>,
    /// The new root public keys (SPKI PEM), replacing all of version N's. Repeatable. Without
    /// it, the root keys are carried over.
    #[arg(long = "root-pub", value_name = "PUB", num_args = 1..)]
    pub root_pubs: Vec<PathBuf>,
    /// The new root threshold [default: version N's].
    #[arg(long, value_name = "N")]
    pub root_threshold: Option<u32>,
    /// The new release public keys (SPKI PEM), replacing all of version N's. Repeatable.
    /// Without it, the release keys are carried over.
    #[arg(long = "release-pub", value_name = "PUB", num_args = 1..)]
    pub release_pubs: Vec<PathBuf>,
    /// The new release threshold [default: version N's].
    #[arg(long, value_name = "N")]
    pub release_threshold: Option<u32>,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        RootCommand::Init(args) => init(args),
        RootCommand::Sign(args) => sign(args),
        RootCommand::Rotate(args) => rotate(args),
    }
}

fn init(args: InitArgs) -> Result<()> {
    // Resolve every input before writing anything.
    let signers = load_signing_keys(&args.root_keys)?;
    let root_pubs = load_public_keys(&args.root_pubs)?;
    let release_pubs = load_public_keys(&args.release_pubs)?;
    fs_err::create_dir_all(&args.root_dir)?;
    let (path, doc) = root_dir::init(
        &args.root_dir,
        &signers,
        root_pubs,
        args.root_threshold,
        release_pubs,
        args.release_threshold,
    )
    .with_context(|| format!("cannot initialize the root directory {}", args.root_dir.display()))?;
    wrote(&path, &doc)?;
    report_chain(&args.root_dir);
    Ok(())
}

fn sign(args: SignArgs) -> Result<()> {
    let signer = load_signing_key(&args.key)?;
    let path = root_dir::sign(&args.root_dir, args.version, &signer)
        .with_context(|| format!("cannot sign a root in {}", args.root_dir.display()))?;
    tracing::info!("signed {} with key {}", path.display(), signer.key_id());
    outln!("{}", path.display())?;
    report_chain(&args.root_dir);
    Ok(())
}

fn rotate(args: RotateArgs) -> Result<()> {
    let signers = load_signing_keys(&args.keys)?;
    let change = |pubs: &[PathBuf], threshold| -> Result<KeySetChange> {
        Ok(KeySetChange {
            keys: match pubs {
                [] => None,
                pubs => Some(load_public_keys(pubs)?),
            },
            threshold,
        })
    };
    let root = change(&args.root_pubs, args.root_threshold)?;
    let release = change(&args.release_pubs, args.release_threshold)?;
    if root.keys.is_none() && root.threshold.is_none() && release.keys.is_none() && release.threshold.is_none() {
        tracing::warn!("no key set changes: the new root version lists the same keys");
    }
    let (path, doc) = root_dir::rotate(&args.root_dir, root, release, &signers)
        .with_context(|| format!("cannot rotate the root in {}", args.root_dir.display()))?;
    wrote(&path, &doc)?;
    report_chain(&args.root_dir);
    Ok(())
}

fn load_signing_key(path: &Path) -> Result<SigningKey> {
    SigningKey::load(path, keys::PASSPHRASE_ENV).with_context(|| format!("cannot load signing key {}", path.display()))
}

fn load_signing_keys(paths: &[PathBuf]) -> Result<Vec<SigningKey>> {
    paths.iter().map(|p| load_signing_key(p)).collect()
}

fn load_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|p| PublicKey::load(p).with_context(|| format!("cannot load public key {}", p.display())))
        .collect()
}

/// Logs what a new root version holds and prints its path on stdout.
fn wrote(path: &Path, doc: &RootDocument) -> Result<()> {
    let ids = |set: &keys::KeySet| {
        set.keys()
            .iter()
            .map(|k| k.key_id().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    tracing::info!(
        "wrote {} (root version {}): root keys {} of [{}], release keys {} of [{}]",
        path.display(),
        doc.version,
        doc.root_keys.threshold(),
        ids(&doc.root_keys),
        doc.release_keys.threshold(),
        ids(&doc.release_keys)
    );
    outln!("{}", path.display())?;
    Ok(())
}

/// Says whether the directory's chain verifies now: with k-of-n root keys, signatures are
/// usually collected one holder at a time.
fn report_chain(dir: &Path) {
    match root_dir::verify(dir) {
        Ok(chain) => tracing::info!("the root chain verifies through version {}", chain.len()),
        Err(e) => {
            tracing::warn!("the root chain does not verify yet: {:#}", anyhow::Error::from(e));
            tracing::warn!(
                "hint: collect more signatures with `sealift-bundler root sign --root-dir {} --key KEY`",
                dir.display()
            );
        }
    }
}
