//! The bundle store: verified bundles kept as files under `bundles/`, with an index.
//!
//! Layout of the store directory:
//! - `bundles/<identity hex>.sealift` — verified bundles, byte for byte as imported;
//! - `index.json` — what each stored bundle is (switched atomically);
//! - `uploads/<id>/` — uploads in progress (data, head, checkpoint);
//! - `trust.json` — the trust state; `audit.jsonl` — the audit log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use schemas::{Digest, Timestamp};
use serde::{Deserialize, Serialize};

use crate::persist;
use crate::refusal::ImportRefusal;

/// Where one blob's bytes sit in a stored bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLocation {
    pub offset: u64,
    pub size: u64,
}

/// One stored, verified bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredBundle {
    pub identity: Digest,
    pub product: String,
    pub version: String,
    pub sequence: u64,
    pub size: u64,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub imported_at: Timestamp,
    pub signers: Vec<String>,
    pub root_version: u32,
    pub images: Vec<String>,
    /// Why the bundle must be kept (`current`, `previous`, `backup:<ts>`); never removed while pinned.
    #[serde(default)]
    pub pins: BTreeSet<String>,
    /// Admitted by `import --for-restore` although expired: usable only as a restore target.
    #[serde(default)]
    pub restore_only: bool,
    /// Set when an operation found an entry whose bytes no longer match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    /// Content offset and size of each blob entry, for pushing without re-reading the rest.
    pub blobs: BTreeMap<Digest, BlobLocation>,
    /// The head entry's bytes (re-verified before any later use).
    pub head_entry_file: String,
}

impl StoredBundle {
    pub fn semver(&self) -> semver::Version {
        semver::Version::parse(&self.version).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
    }
}

/// The store directory and its index.
pub struct Store {
    dir: PathBuf,
    max_bytes: u64,
    reserve_bytes: u64,
    index: Mutex<Vec<StoredBundle>>,
}

impl Store {
    pub fn open(dir: &Path, max_bytes: u64, reserve_bytes: u64) -> std::io::Result<Self> {
        for sub in ["bundles", "uploads"] {
            fs_err::create_dir_all(dir.join(sub))?;
        }
        let index: Vec<StoredBundle> = persist::read_json(&dir.join("index.json"))?.unwrap_or_default();
        // Files that no index entry names are leftovers of an interrupted commit.
        let named: BTreeSet<String> = index
            .iter()
            .flat_map(|b| [bundle_file(&b.identity), b.head_entry_file.clone()])
            .collect();
        for entry in fs_err::read_dir(dir.join("bundles"))? {
            let entry = entry?;
            let name = format!("bundles/{}", entry.file_name().to_string_lossy());
            if !named.contains(&name) {
                tracing::warn!("removing {name}, which no index entry names");
                fs_err::remove_file(entry.path())?;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            reserve_bytes,
            index: Mutex::new(index),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StoredBundle>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored bundle, newest version first (ties: higher sequence first).
    pub fn list(&self) -> Vec<StoredBundle> {
        let mut all = self.lock().clone();
        all.sort_by(|a, b| b.semver().cmp(&a.semver()).then(b.sequence.cmp(&a.sequence)));
        all
    }

    pub fn get(&self, identity: &Digest) -> Option<StoredBundle> {
        self.lock().iter().find(|b| b.identity == *identity).cloned()
    }

    pub fn path_of(&self, identity: &Digest) -> PathBuf {
        self.dir.join(bundle_file(identity))
    }

    pub fn used_bytes(&self) -> u64 {
        self.lock().iter().map(|b| b.size).sum()
    }

    /// Free bytes on the store's volume beyond the reserve.
    pub fn free_beyond_reserve(&self) -> std::io::Result<u64> {
        Ok(free_bytes(&self.dir)?.saturating_sub(self.reserve_bytes))
    }

    /// Refuses, before any blob is written, a bundle of `need` bytes that does not fit the
    /// volume (free space minus the reserve) or `maxBytes`.
    pub fn check_space(&self, need: u64) -> Result<(), ImportRefusal> {
        let used = self.used_bytes();
        let have = self.max_bytes.saturating_sub(used);
        if need > have {
            return Err(ImportRefusal::StoreFull {
                need,
                have,
                max: self.max_bytes,
            });
        }
        let free = free_bytes(&self.dir).map_err(|source| ImportRefusal::Write { source })?;
        let have = free.saturating_sub(self.reserve_bytes);
        if need > have {
            return Err(ImportRefusal::NoSpace { need, have });
        }
        Ok(())
    }

    /// Moves a verified upload into the store and records it; bundles it replaces (same
    /// version, lower sequence) are dropped unless pinned.
    pub fn commit(&self, data: &Path, head_entry: &[u8], bundle: StoredBundle) -> std::io::Result<()> {
        let target = self.path_of(&bundle.identity);
        persist::write_atomically(&self.dir.join(&bundle.head_entry_file), head_entry)?;
        fs_err::rename(data, &target)?;
        fs_err::File::open(self.dir.join("bundles"))?.sync_all()?;
        let mut index = self.lock();
        let mut next: Vec<StoredBundle> = index
            .iter()
            .filter(|b| b.identity != bundle.identity)
            .cloned()
            .collect();
        let replaced: Vec<StoredBundle> = next
            .iter()
            .filter(|b| b.version == bundle.version && b.sequence < bundle.sequence && b.pins.is_empty())
            .cloned()
            .collect();
        next.retain(|b| !replaced.iter().any(|r| r.identity == b.identity));
        next.push(bundle);
        persist::write_json(&self.dir.join("index.json"), &next)?;
        *index = next;
        drop(index);
        for r in replaced {
            self.remove_files(&r)?;
        }
        Ok(())
    }

    /// Keeps the `keep + 2` newest unpinned bundles (room for current and previous until the
    /// release engine pins them); returns the identities removed.
    pub fn apply_retention(&self, keep: usize) -> std::io::Result<Vec<Digest>> {
        let all = self.list();
        let doomed: Vec<StoredBundle> = all
            .iter()
            .filter(|b| b.pins.is_empty())
            .skip(keep + 2)
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(vec![]);
        }
        let mut index = self.lock();
        let next: Vec<StoredBundle> = index
            .iter()
            .filter(|b| !doomed.iter().any(|d| d.identity == b.identity))
            .cloned()
            .collect();
        persist::write_json(&self.dir.join("index.json"), &next)?;
        *index = next;
        drop(index);
        for d in &doomed {
            self.remove_files(d)?;
        }
        Ok(doomed.iter().map(|d| d.identity).collect())
    }

    fn remove_files(&self, b: &StoredBundle) -> std::io::Result<()> {
        for f in [self.path_of(&b.identity), self.dir.join(&b.head_entry_file)] {
            match fs_err::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves the release engine's `current` and `previous` pins (other pins stay).
    pub fn set_release_pins(&self, current: Option<Digest>, previous: Option<Digest>) -> std::io::Result<()> {
        let mut index = self.lock();
        let mut next = index.clone();
        for b in next.iter_mut() {
            b.pins.remove("current");
            b.pins.remove("previous");
            if Some(b.identity) == current {
                b.pins.insert("current".to_owned());
            } else if Some(b.identity) == previous {
                b.pins.insert("previous".to_owned());
            }
        }
        persist::write_json(&self.dir.join("index.json"), &next)?;
        *index = next;
        Ok(())
    }

    /// Sets the `backup:<ts>` pins: each bundle a backup needs for its restore is kept while
    /// the backup exists (other pins stay).
    pub fn set_backup_pins(&self, needed: &std::collections::BTreeMap<Digest, Vec<String>>) -> std::io::Result<()> {
        let mut index = self.lock();
        let mut next = index.clone();
        for b in next.iter_mut() {
            b.pins.retain(|p| !p.starts_with("backup:"));
            for ts in needed.get(&b.identity).into_iter().flatten() {
                b.pins.insert(format!("backup:{ts}"));
            }
        }
        if next != *index {
            persist::write_json(&self.dir.join("index.json"), &next)?;
            *index = next;
        }
        Ok(())
    }

    /// Marks a stored bundle corrupt, naming the entry whose bytes no longer match.
    pub fn mark_corrupt(&self, identity: &Digest, reason: String) -> std::io::Result<()> {
        let mut index = self.lock();
        let mut next = index.clone();
        if let Some(b) = next.iter_mut().find(|b| b.identity == *identity) {
            b.corrupt = Some(reason);
        }
        persist::write_json(&self.dir.join("index.json"), &next)?;
        *index = next;
        Ok(())
    }

    /// Clears a corrupt mark: the whole file verified again (`verify-store`).
    pub fn clear_corrupt(&self, identity: &Digest) -> std::io::Result<()> {
        let mut index = self.lock();
        let mut next = index.clone();
        if let Some(b) = next.iter_mut().find(|b| b.identity == *identity) {
            b.corrupt = None;
        }
        persist::write_json(&self.dir.join("index.json"), &next)?;
        *index = next;
        Ok(())
    }
}

pub fn bundle_file(identity: &Digest) -> String {
    format!("bundles/{}.sealift", identity.hex())
}

pub fn head_file(identity: &Digest) -> String {
    format!("bundles/{}.head", identity.hex())
}

/// Free bytes on the volume holding `dir` (statvfs: blocks available to unprivileged users).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}
