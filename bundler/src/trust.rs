//! The vendor's trust inputs: the root directory and the release signing keys.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use keys::{Envelope, SigningKey, TrustedRoots, VerifiedChain};

/// The root chain of a `--root-dir`, verified link by link.
pub struct RootDir {
    pub envelopes: Vec<Envelope>,
    pub chain: VerifiedChain,
}

impl RootDir {
    pub fn load(dir: &Path) -> Result<Self> {
        let envelopes =
            keys::root_dir::load(dir).with_context(|| format!("cannot load roots from {}", dir.display()))?;
        let chain = keys::root_dir::verify(dir)
            .with_context(|| format!("cannot trust the root directory {}", dir.display()))?;
        Ok(Self { envelopes, chain })
    }

    /// Everything in the directory is trusted (the vendor's published roots).
    pub fn trusted(&self) -> Result<TrustedRoots> {
        TrustedRoots::from_envelopes(&self.envelopes).context("cannot trust the root directory")
    }
}

/// Loads release keys, refusing any that the current root does not list as a release key.
pub fn load_release_keys(paths: &[PathBuf], roots: &RootDir) -> Result<Vec<SigningKey>> {
    if paths.is_empty() {
        bail!(
            "no signing key given\nhint: pass --key release.key (a PKCS#8 PEM key listed in the root's release keys)"
        );
    }
    let current = roots.chain.current();
    paths
        .iter()
        .map(|p| {
            let key = SigningKey::load(p, keys::PASSPHRASE_ENV)
                .with_context(|| format!("cannot load signing key {}", p.display()))?;
            if !current.release_keys.contains(&key.key_id()) {
                bail!(
                    "key {} ({}) is not a release key of root version {}\nhint: add it with `sealift-bundler root rotate --release-pub …`",
                    p.display(),
                    key.key_id(),
                    current.version
                );
            }
            Ok(key)
        })
        .collect()
}
