//! A directory of root files `1.root.json` … `N.root.json`, each a canonical DSSE envelope, and
//! the vendor's operations on it: init, rotate, sign.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::envelope::{Envelope, MAX_ENVELOPE_BYTES};
use crate::error::{EnvelopeError, RootDirError};
use crate::key::{PublicKey, SigningKey};
use crate::root::{KeySet, Role, RootDocument};
use crate::trust::{RootChain, TrustedRoots, VerifiedChain, root_document};

const SUFFIX: &str = ".root.json";

/// `<version>.root.json`.
pub fn file_name(version: u32) -> String {
    format!("{version}{SUFFIX}")
}

/// `dir/<version>.root.json`.
pub fn path_for(dir: &Path, version: u32) -> PathBuf {
    dir.join(file_name(version))
}

/// Loads root versions 1..=N from `dir`, in order.
///
/// Every `*.root.json` file must be named `<N>.root.json` (N from 1, no leading zeros); other
/// files are ignored. Versions must run from 1 without gaps, and each file must be a canonical
/// root envelope holding the version in its name. Signatures are not checked: see [`verify`].
pub fn load(dir: impl AsRef<Path>) -> Result<Vec<Envelope>, RootDirError> {
    let dir = dir.as_ref();
    let mut versions = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        let version = parse_version(stem).ok_or_else(|| RootDirError::BadFileName { path: entry.path() })?;
        versions.push(version);
    }
    versions.sort_unstable();
    let Some(&newest) = versions.last() else {
        return Err(RootDirError::Empty { dir: dir.to_owned() });
    };
    if let Some(missing) = (1..=newest).zip(&versions).find(|(want, have)| want != *have) {
        return Err(RootDirError::Gap {
            dir: dir.to_owned(),
            missing: missing.0,
            newest,
        });
    }
    (1..=newest)
        .map(|version| read_root_file(&path_for(dir, version), version))
        .collect()
}

fn parse_version(stem: &str) -> Option<u32> {
    let digits = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit());
    if !digits || stem.starts_with('0') {
        return None;
    }
    stem.parse().ok()
}

/// Reads one root file, bounded by [`MAX_ENVELOPE_BYTES`], and checks it holds `version`.
fn read_root_file(path: &Path, version: u32) -> Result<Envelope, RootDirError> {
    let envelope_error = |source| RootDirError::Envelope {
        path: path.to_owned(),
        source,
    };
    let file = fs_err::File::open(path)?;
    let size = file.metadata()?.len();
    let max = MAX_ENVELOPE_BYTES as u64;
    if size > max {
        return Err(envelope_error(EnvelopeError::TooLarge { size, max }));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    let env = Envelope::parse_canonical(&bytes).map_err(envelope_error)?;
    let doc = root_document(&env).map_err(|source| RootDirError::Root {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    if doc.version != version {
        return Err(RootDirError::VersionMismatch {
            path: path.to_owned(),
            found: doc.version,
        });
    }
    Ok(env)
}

/// Loads the directory and verifies its chain from `1.root.json`, trusting its files.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifiedChain, RootDirError> {
    let dir = dir.as_ref();
    let chain = load(dir)?;
    let chain_error = |source| RootDirError::Chain {
        dir: dir.to_owned(),
        source: Box::new(source),
    };
    let trusted = TrustedRoots::from_envelopes(&chain).map_err(chain_error)?;
    RootChain::verify(&chain, &trusted).map_err(chain_error)
}

/// Changes to one key set in a rotation: new keys and/or a new threshold.
#[derive(Debug, Clone, Default)]
pub struct KeySetChange {
    /// The new keys (replacing all of them), if they change.
    pub keys: Option<Vec<PublicKey>>,
    /// The new threshold, if it changes; when only the keys change the old threshold is kept.
    pub threshold: Option<u32>,
}

impl KeySetChange {
    fn apply(self, role: Role, old: &KeySet) -> Result<Option<KeySet>, RootDirError> {
        if self.keys.is_none() && self.threshold.is_none() {
            return Ok(None);
        }
        old.with_changes(self.keys, self.threshold)
            .map(Some)
            .map_err(|source| RootDirError::KeySet { role, source })
    }
}

/// Writes `dir/1.root.json`: root keys are the signers' public keys plus `extra_root_keys`,
/// release keys are `release_keys`; thresholds default to 1. Signed by every signer.
pub fn init(
    dir: impl AsRef<Path>,
    signers: &[SigningKey],
    extra_root_keys: Vec<PublicKey>,
    root_threshold: Option<u32>,
    release_keys: Vec<PublicKey>,
    release_threshold: Option<u32>,
) -> Result<(PathBuf, RootDocument), RootDirError> {
    let dir = dir.as_ref();
    let mut root_keys: Vec<PublicKey> = signers.iter().map(SigningKey::public_key).collect();
    for key in extra_root_keys {
        // A signer's public key given again is the same key, not a second one.
        if !root_keys.contains(&key) {
            root_keys.push(key);
        }
    }
    let key_set = |role, threshold: Option<u32>, keys| {
        KeySet::new(threshold.unwrap_or(1), keys).map_err(|source| RootDirError::KeySet { role, source })
    };
    let doc = RootDocument {
        version: 1,
        root_keys: key_set(Role::Root, root_threshold, root_keys)?,
        release_keys: key_set(Role::Release, release_threshold, release_keys)?,
    };
    let path = path_for(dir, 1);
    let env = signed_envelope(&doc, None, signers, &path)?;
    write_atomic(dir, &path, &env.to_canonical_json(), false)?;
    Ok((path, doc))
}

/// Writes `dir/<N+1>.root.json` for the newest version N in `dir`, with the changed key sets
/// (others carried over), signed by `signers`, each of which must be a root key of N or N+1.
pub fn rotate(
    dir: impl AsRef<Path>,
    root: KeySetChange,
    release: KeySetChange,
    signers: &[SigningKey],
) -> Result<(PathBuf, RootDocument), RootDirError> {
    let dir = dir.as_ref();
    let chain = load(dir)?;
    let newest = newest_document(dir, &chain)?;
    let doc = newest.successor(
        root.apply(Role::Root, &newest.root_keys)?,
        release.apply(Role::Release, &newest.release_keys)?,
    );
    let path = path_for(dir, doc.version);
    let env = signed_envelope(&doc, Some(&newest), signers, &path)?;
    write_atomic(dir, &path, &env.to_canonical_json(), false)?;
    Ok((path, doc))
}

/// Adds `signer`'s signature to root `version` (default: the newest) in place, atomically.
/// The signer must be a root key of that version or of the one before.
pub fn sign(dir: impl AsRef<Path>, version: Option<u32>, signer: &SigningKey) -> Result<PathBuf, RootDirError> {
    let dir = dir.as_ref();
    let chain = load(dir)?;
    let newest = u32::try_from(chain.len()).unwrap_or(u32::MAX);
    let version = version.unwrap_or(newest);
    let index = version as usize;
    if version == 0 || index > chain.len() {
        return Err(RootDirError::NoSuchVersion {
            dir: dir.to_owned(),
            version,
            newest,
        });
    }
    let path = path_for(dir, version);
    let root_error = |path: &Path| {
        let path = path.to_owned();
        move |source| RootDirError::Root {
            path,
            source: Box::new(source),
        }
    };
    let mut env = chain[index - 1].clone();
    let doc = root_document(&env).map_err(root_error(&path))?;
    let previous = match index {
        1 => None,
        _ => Some(root_document(&chain[index - 2]).map_err(root_error(&path_for(dir, version - 1)))?),
    };
    check_may_sign(&doc, previous.as_ref(), signer)?;
    env.sign(signer).map_err(|source| RootDirError::Envelope {
        path: path.clone(),
        source,
    })?;
    write_atomic(dir, &path, &env.to_canonical_json(), true)?;
    Ok(path)
}

fn newest_document(dir: &Path, chain: &[Envelope]) -> Result<RootDocument, RootDirError> {
    let newest = chain
        .last()
        .ok_or_else(|| RootDirError::Empty { dir: dir.to_owned() })?;
    root_document(newest).map_err(|source| RootDirError::Root {
        path: path_for(dir, u32::try_from(chain.len()).unwrap_or(u32::MAX)),
        source: Box::new(source),
    })
}

fn check_may_sign(
    doc: &RootDocument,
    previous: Option<&RootDocument>,
    signer: &SigningKey,
) -> Result<(), RootDirError> {
    let keyid = signer.key_id();
    let allowed =
        doc.root_keys.contains(&keyid) || previous.is_some_and(|previous| previous.root_keys.contains(&keyid));
    if !allowed {
        return Err(RootDirError::NotARootKey {
            keyid,
            version: doc.version,
        });
    }
    Ok(())
}

fn signed_envelope(
    doc: &RootDocument,
    previous: Option<&RootDocument>,
    signers: &[SigningKey],
    path: &Path,
) -> Result<Envelope, RootDirError> {
    let mut env = doc.to_envelope();
    for signer in signers {
        check_may_sign(doc, previous, signer)?;
        env.sign(signer).map_err(|source| RootDirError::Envelope {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(env)
}

/// Writes `bytes` to `path` through a synced temporary file in `dir` and a rename, then syncs
/// `dir`. Without `overwrite`, refuses an existing `path`.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), RootDirError> {
    let write_error = |source| RootDirError::Write {
        path: path.to_owned(),
        source,
    };
    if !overwrite && fs_err::symlink_metadata(path).is_ok() {
        return Err(RootDirError::Exists { path: path.to_owned() });
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_error)?;
    // Root files are public: 0644 whatever the umask (tempfile creates 0600), or the
    // permissions of the file being replaced.
    #[cfg(unix)]
    {
        let permissions = match fs_err::metadata(path) {
            Ok(existing) if overwrite => existing.permissions(),
            _ => std::os::unix::fs::PermissionsExt::from_mode(0o644),
        };
        tmp.as_file().set_permissions(permissions).map_err(write_error)?;
    }
    tmp.write_all(bytes).map_err(write_error)?;
    tmp.as_file().sync_all().map_err(write_error)?;
    let persisted = if overwrite {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    if let Err(e) = persisted {
        return Err(if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            RootDirError::Exists { path: path.to_owned() }
        } else {
            write_error(e.error)
        });
    }
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)?;
    Ok(())
}
