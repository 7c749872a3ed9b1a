//! Reading images from an OCI image layout directory (synchronous; run off the runtime).

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use schemas::Digest;
use serde::Deserialize;

use super::cache::{BlobCache, CacheError};
use super::error::{Fail, Problem};
use super::oci::{Descriptor, MAX_MANIFEST};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    manifests: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The descriptor in `index.json` whose ref name is `reference`.
pub fn select(dir: &Path, reference: &str) -> Result<Descriptor, Fail> {
    let path = dir.join("index.json");
    let bytes = read_limited(&path, MAX_MANIFEST)?;
    let index: RawIndex = serde_json::from_slice(&bytes).map_err(|e| Fail::read(&path, e))?;
    let mut found: Option<Descriptor> = None;
    for entry in &index.manifests {
        if entry.annotations.get(REF_NAME).map(String::as_str) != Some(reference) {
            continue;
        }
        let digest: Digest = entry.digest.parse().map_err(|e| Fail::read(&path, e))?;
        let d = Descriptor {
            media_type: entry.media_type.clone().unwrap_or_default(),
            digest,
            size: entry.size,
            platform: None,
        };
        match &found {
            Some(prev) if prev.digest != d.digest => {
                return Err(Problem::LayoutRefAmbiguous {
                    reference: reference.to_owned(),
                }
                .into());
            }
            Some(_) => {}
            None => found = Some(d),
        }
    }
    found.ok_or_else(|| {
        let available = index
            .manifests
            .iter()
            .filter_map(|e| e.annotations.get(REF_NAME).cloned())
            .collect();
        Problem::LayoutRefNotFound {
            reference: reference.to_owned(),
            available,
        }
        .into()
    })
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

fn open_blob(dir: &Path, digest: &Digest) -> Result<fs_err::File, Fail> {
    let path = blob_path(dir, digest);
    fs_err::File::open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Fail::new(Problem::LayoutBlobMissing { digest: *digest }, e)
        } else {
            Fail::read(&path, e)
        }
    })
}

/// A manifest's bytes, checked against its digest and (when known) size.
pub fn read_manifest(dir: &Path, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>, Fail> {
    let mut file = open_blob(dir, digest)?;
    let limit = size.unwrap_or(MAX_MANIFEST).min(MAX_MANIFEST);
    let mut bytes = Vec::new();
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Fail::read(blob_path(dir, digest), e))?;
    let actual = Digest::of(&bytes);
    if let Some(size) = size
        && size != bytes.len() as u64
    {
        return Err(Problem::SizeMismatch {
            what: "manifest",
            digest: *digest,
            expected: size,
            actual: bytes.len() as u64,
        }
        .into());
    }
    if actual != *digest {
        return Err(Problem::DigestMismatch {
            what: "manifest",
            expected: *digest,
            actual,
        }
        .into());
    }
    Ok(bytes)
}

/// Read size when copying a blob out of a layout.
const COPY_BUFFER: usize = 1 << 20;

/// Copies one blob into the cache, checking digest and size.
pub fn copy_blob(dir: &Path, digest: &Digest, size: u64, cache: &BlobCache) -> Result<u64, Fail> {
    let file = open_blob(dir, digest)?;
    let mut writer = cache.writer(Some(size))?;
    // Large reads: the hash, not syscalls, should bound the copy.
    let mut reader = io::BufReader::with_capacity(COPY_BUFFER, file);
    match io::copy(&mut reader, &mut writer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            return Err(Problem::TooLarge {
                digest: *digest,
                limit: size,
            }
            .into());
        }
        Err(e) => {
            return Err(CacheError::Write {
                path: writer.dir().to_owned(),
                source: e,
            }
            .into());
        }
    }
    Ok(writer.finish(digest, Some(size))?)
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Fail> {
    let file = fs_err::File::open(path).map_err(|e| Fail::read(path, e))?;
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Fail::read(path, e))?;
    Ok(bytes)
}
