//! The manifest's promises about the archive, checked right after its signature.

use std::collections::{BTreeMap, BTreeSet};

use crate::entry::{EntryPath, METADATA_PATHS};
use crate::manifest::Manifest;
use crate::names::Digest;
use crate::refusal::Refusal;

/// Most entries a bundle may have.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Checks that the manifest describes exactly the archive the writer produces: the
/// metadata entries in their fixed order, then every image blob once, in image order.
pub fn check(m: &Manifest) -> Result<(), Refusal> {
    let bad = |reason: String| Err(Refusal::ManifestInconsistent { reason });
    if m.sequence < m.min_sequence {
        return bad(format!(
            "sequence {} is below its own minSequence {}",
            m.sequence, m.min_sequence
        ));
    }
    if m.expires <= m.created {
        return bad(format!("expires {} is not after created {}", m.expires, m.created));
    }
    if m.entries.len() > MAX_ENTRIES {
        return bad(format!("{} entries, more than {MAX_ENTRIES}", m.entries.len()));
    }
    for (i, want) in METADATA_PATHS.iter().enumerate() {
        match m.entries.get(i) {
            Some(e) if e.path.as_str() == *want => {}
            Some(e) => return bad(format!("entry {} is {}, expected {want}", i + 2, e.path)),
            None => return bad(format!("entry {want} is missing")),
        }
    }
    let mut expected_blobs = Vec::new();
    let mut seen = BTreeSet::new();
    for image in &m.images {
        for d in &image.blobs {
            if seen.insert(*d) {
                expected_blobs.push(*d);
            }
        }
    }
    let blobs = &m.entries[METADATA_PATHS.len()..];
    if blobs.len() != expected_blobs.len() {
        return bad(format!(
            "{} blob entries for {} distinct image blobs",
            blobs.len(),
            expected_blobs.len()
        ));
    }
    let mut sizes = BTreeMap::new();
    for (entry, want) in blobs.iter().zip(&expected_blobs) {
        if entry.path != EntryPath::blob(want) {
            return bad(format!(
                "entry {} is out of order, expected {}",
                entry.path,
                EntryPath::blob(want)
            ));
        }
        if entry.digest != *want {
            return bad(format!("entry {} records digest {}", entry.path, entry.digest));
        }
        sizes.insert(*want, entry.size);
    }
    let mut names = BTreeSet::new();
    let mut tags = BTreeSet::new();
    for image in &m.images {
        if !names.insert(image.name.as_str()) {
            return bad(format!("image {} is listed twice", image.name));
        }
        for tag in &image.tags {
            if !tags.insert((image.target.as_str(), tag.as_str())) {
                return bad(format!("tag {}:{tag} is given to two images", image.target));
            }
        }
        if image.blobs.first() != Some(&image.digest) {
            return bad(format!(
                "image {} does not list its manifest {} first",
                image.name, image.digest
            ));
        }
        let unique: BTreeSet<&Digest> = image.blobs.iter().collect();
        if unique.len() != image.blobs.len() {
            return bad(format!("image {} lists a blob twice", image.name));
        }
        if sizes.get(&image.digest) != Some(&image.size) {
            return bad(format!(
                "image {} records size {} for its manifest",
                image.name, image.size
            ));
        }
        for p in &image.platforms {
            if !unique.contains(&p.digest) || sizes.get(&p.digest) != Some(&p.size) {
                return bad(format!(
                    "image {} platform {} is not among its blobs",
                    image.name, p.platform
                ));
            }
        }
        let total: u64 = image.blobs.iter().filter_map(|d| sizes.get(d)).sum();
        if total != image.total_size {
            return bad(format!(
                "image {} records totalSize {}, its blobs add to {total}",
                image.name, image.total_size
            ));
        }
    }
    Ok(())
}
