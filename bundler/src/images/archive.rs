//! Importing an image from a `docker save` (or skopeo `docker-archive:`) tar: its config and
//! layers are streamed into the cache and described by a Docker v2 schema 2 manifest built
//! here, deterministically. Synchronous; run off the runtime.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read as _};
use std::path::Path;

use schemas::Digest;
use schemas::names::ImageReference;
use serde::Deserialize;
use serde_json::json;

use super::cache::{BlobCache, CacheError};
use super::error::{Fail, Problem};
use super::oci::{DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, MAX_MANIFEST};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The manifest built for the archive's image; its blobs are in the cache.
pub struct Imported {
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

struct Stored {
    digest: Digest,
    size: u64,
    head: Vec<u8>,
}

/// Imports the image tagged `reference` (or the only image) from the archive at `path`.
pub fn import(path: &Path, reference: Option<&str>, cache: &BlobCache) -> Result<Imported, Fail> {
    // Pass 1: manifest.json and links.
    let mut manifest_json = None;
    let mut links: HashMap<String, String> = HashMap::new();
    for_each_entry(path, |entry_path, entry| {
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| Fail::read(path, e))?
                .map(|t| t.to_string_lossy().into_owned());
            if let Some(target) = target {
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    let parent = entry_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    normalize(&format!("{parent}/{target}"))
                } else {
                    normalize(&target)
                };
                if let Some(resolved) = resolved {
                    links.insert(entry_path.to_owned(), resolved);
                }
            }
        } else if entry_path == "manifest.json" {
            let mut bytes = Vec::new();
            entry
                .take(MAX_MANIFEST)
                .read_to_end(&mut bytes)
                .map_err(|e| Fail::read(path, e))?;
            manifest_json = Some(bytes);
        }
        Ok(())
    })?;
    let manifest_json = manifest_json.ok_or_else(|| Problem::ArchiveEntryMissing {
        path: "manifest.json".to_owned(),
    })?;
    let entries: Vec<ArchiveEntry> =
        serde_json::from_slice(&manifest_json).map_err(|e| Fail::new(Problem::ArchiveManifest, e))?;
    let entry = choose(&entries, reference)?;

    let resolve = |p: &str| -> Result<String, Fail> {
        let mut cur = normalize(p).ok_or_else(|| Problem::ArchivePath { path: p.to_owned() })?;
        for _ in 0..16 {
            match links.get(&cur) {
                Some(next) => cur = next.clone(),
                None => return Ok(cur),
            }
        }
        Err(Problem::ArchivePath { path: p.to_owned() }.into())
    };
    let config_path = resolve(&entry.config)?;
    let layer_paths: Vec<String> = entry.layers.iter().map(|l| resolve(l)).collect::<Result<_, _>>()?;

    // Pass 2: stream the config and layers into the cache.
    let mut wanted: BTreeMap<String, Option<Stored>> = BTreeMap::new();
    wanted.insert(config_path.clone(), None);
    for l in &layer_paths {
        wanted.insert(l.clone(), None);
    }
    for_each_entry(path, |entry_path, entry| {
        if !entry.header().entry_type().is_file() {
            return Ok(());
        }
        let Some(slot) = wanted.get_mut(entry_path) else {
            return Ok(());
        };
        if slot.is_some() {
            return Ok(());
        }
        let mut writer = cache.writer(None)?;
        io::copy(entry, &mut writer).map_err(|e| Fail::read(path, e))?;
        let head = writer.head().to_vec();
        let (digest, size) = writer.finish_any().map_err(Fail::from)?;
        *slot = Some(Stored { digest, size, head });
        Ok(())
    })?;
    let get = |p: &String| -> Result<&Stored, Fail> {
        wanted
            .get(p)
            .and_then(Option::as_ref)
            .ok_or_else(|| Problem::ArchiveEntryMissing { path: p.clone() }.into())
    };

    let config = get(&config_path)?;
    let mut layers = Vec::new();
    for p in &layer_paths {
        let l = get(p)?;
        let media_type = if l.head.starts_with(&[0x1f, 0x8b]) {
            DOCKER_LAYER_GZIP
        } else if l.head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(Problem::ArchiveZstdLayer { path: p.clone() }.into());
        } else {
            DOCKER_LAYER
        };
        layers.push(json!({ "mediaType": media_type, "size": l.size, "digest": l.digest.to_string() }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": { "mediaType": DOCKER_CONFIG, "size": config.size, "digest": config.digest.to_string() },
        "layers": layers,
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Fail::new(Problem::ArchiveManifest, e))?;
    let digest = Digest::of(&manifest);
    cache
        .put_bytes(&digest, &manifest)
        .map_err(|e: CacheError| Fail::from(e))?;
    Ok(Imported { manifest, digest })
}

fn choose<'a>(entries: &'a [ArchiveEntry], reference: Option<&str>) -> Result<&'a ArchiveEntry, Fail> {
    let tags = |e: &'a ArchiveEntry| e.repo_tags.iter().flatten();
    let available: Vec<String> = entries.iter().flat_map(tags).cloned().collect();
    match reference {
        None => match entries {
            [] => Err(Problem::ArchiveEmpty.into()),
            [only] => Ok(only),
            _ => Err(Problem::ArchiveAmbiguous { available }.into()),
        },
        Some(r) => {
            let wanted = ImageReference::parse(r).ok();
            entries
                .iter()
                .find(|e| tags(e).any(|t| t == r || (wanted.is_some() && ImageReference::parse(t).ok() == wanted)))
                .ok_or_else(|| {
                    Problem::ArchiveTagNotFound {
                        reference: r.to_owned(),
                        available,
                    }
                    .into()
                })
        }
    }
}

/// Calls `f` with each entry's normalized path, in archive order.
fn for_each_entry(
    path: &Path,
    mut f: impl FnMut(&str, &mut tar::Entry<'_, fs_err::File>) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let file = fs_err::File::open(path).map_err(|e| Fail::read(path, e))?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().map_err(|e| Fail::read(path, e))? {
        let mut entry = entry.map_err(|e| Fail::read(path, e))?;
        let raw = entry
            .path()
            .map_err(|e| Fail::read(path, e))?
            .to_string_lossy()
            .into_owned();
        let Some(name) = normalize(&raw) else {
            continue;
        };
        f(&name, &mut entry)?;
    }
    Ok(())
}

/// `./a/../b//c` → `b/c`; `None` for paths that climb above the root.
fn normalize(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_paths() {
        assert_eq!(normalize("./a/../b//c").as_deref(), Some("b/c"));
        assert_eq!(normalize("abc/../def.tar").as_deref(), Some("def.tar"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("."), None);
    }
}
