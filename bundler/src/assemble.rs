//! Turns the build's parts into a signed bundle: entry list, manifest, head, archive.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use keys::{Envelope, SigningKey};
use schemas::entry::{
    CHART_PATH, EntryPath, MIGRATIONS_PATH, OCI_INDEX_PATH, OCI_LAYOUT_PATH, RENDER_PATH, VARIABLES_PATH,
};
use schemas::head::Head;
use schemas::manifest::{ChartInfo, EntryRecord, ImageRecord, Manifest, SCHEMA_VERSION};
use schemas::spec::ImageLocation;
use schemas::writer::{Content, EntrySource};
use schemas::{Digest, ProductName, Timestamp, oci};

use crate::images::{BlobCache, FetchedImage};

/// The release's identity fields.
#[derive(Debug, Clone)]
pub struct Release {
    pub product: ProductName,
    pub version: semver::Version,
    pub sequence: u64,
    pub min_sequence: u64,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub chart: ChartInfo,
    /// The spec's extra image locations, signed so the agent rewrites them.
    pub image_locations: Vec<ImageLocation>,
}

/// The metadata entries' bytes.
#[derive(Debug, Clone)]
pub struct MetadataBytes {
    pub chart: Vec<u8>,
    pub render: Vec<u8>,
    pub variables: Vec<u8>,
    pub migrations: Vec<u8>,
}

/// A bundle ready to write: its signed head and its entries in archive order.
pub struct Assembled {
    pub manifest: Manifest,
    pub head: Head,
    pub entries: Vec<EntrySource>,
}

fn bytes_entry(path: &str, bytes: Vec<u8>) -> (EntryRecord, EntrySource) {
    let path: EntryPath = path.parse().unwrap_or_else(|_| unreachable!("fixed paths are valid"));
    let record = EntryRecord {
        path: path.clone(),
        size: bytes.len() as u64,
        digest: Digest::of(&bytes),
    };
    (
        record,
        EntrySource {
            path,
            size: bytes.len() as u64,
            content: Content::Bytes(bytes),
        },
    )
}

/// Lays out the entries and the manifest.
pub fn assemble(
    release: Release,
    meta: MetadataBytes,
    images: &[FetchedImage],
    cache: &BlobCache,
) -> Result<Assembled> {
    let records: Vec<ImageRecord> = images.iter().map(|i| i.record.clone()).collect();
    let mut pairs = vec![
        bytes_entry(CHART_PATH, meta.chart),
        bytes_entry(RENDER_PATH, meta.render),
        bytes_entry(VARIABLES_PATH, meta.variables),
        bytes_entry(MIGRATIONS_PATH, meta.migrations),
        bytes_entry(OCI_LAYOUT_PATH, oci::layout_file()),
        bytes_entry(OCI_INDEX_PATH, oci::index_file(&records)),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for image in images {
        for d in &image.record.blobs {
            if !seen.insert(*d) {
                continue;
            }
            let size = *image
                .blob_sizes
                .get(d)
                .with_context(|| format!("image {}: no size for blob {d}", image.record.name))?;
            let path = EntryPath::blob(d);
            pairs.push((
                EntryRecord {
                    path: path.clone(),
                    size,
                    digest: *d,
                },
                EntrySource {
                    path,
                    size,
                    content: Content::File(cache.path(d)),
                },
            ));
        }
    }
    let (entries, sources): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        product: release.product,
        version: release.version,
        sequence: release.sequence,
        min_sequence: release.min_sequence,
        created: release.created,
        expires: release.expires,
        chart: release.chart,
        entries,
        images: records,
        image_locations: release.image_locations,
    };
    schemas::layout::check(&manifest).context("the bundle the bundler laid out is inconsistent")?;
    Ok(Assembled {
        head: Head {
            roots: vec![],
            release: Envelope::new(keys::MANIFEST_PAYLOAD_TYPE, manifest.to_payload()),
        },
        manifest,
        entries: sources,
    })
}

impl Assembled {
    /// Signs the manifest with every key and attaches the root chain.
    pub fn sign(&mut self, roots: &[Envelope], signers: &[SigningKey]) -> Result<()> {
        self.head.roots = roots.to_vec();
        for k in signers {
            self.head
                .release
                .sign(k)
                .with_context(|| format!("cannot sign with key {}", k.key_id()))?;
        }
        Ok(())
    }
}

/// Writes `out` atomically: a temporary file beside it, fsync, rename, fsync of the directory.
pub fn write_atomically(out: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("output directory {} does not exist", dir.display());
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".sealift-")
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    write(tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", out.display()))?;
    tmp.persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(image_locations: Vec<ImageLocation>) -> Release {
        Release {
            product: "acme".parse().unwrap(),
            version: semver::Version::new(1, 0, 0),
            sequence: 1,
            min_sequence: 0,
            created: Timestamp::from_unix(1_767_225_600).unwrap(),
            expires: Timestamp::from_unix(1_767_225_600 + 86_400).unwrap(),
            chart: ChartInfo {
                name: "acme".into(),
                version: "1.0.0".into(),
                app_version: None,
                release_name: "acme".into(),
                namespace: "acme".into(),
                kube_version: "v1.33.0".into(),
                api_versions: vec![],
                helm_version: "test".into(),
            },
            image_locations,
        }
    }

    fn meta() -> MetadataBytes {
        MetadataBytes {
            chart: b"chart".to_vec(),
            render: b"render".to_vec(),
            variables: b"{}".to_vec(),
            migrations: b"{}".to_vec(),
        }
    }

    #[test]
    fn image_locations_are_signed_only_when_the_spec_has_some() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path()).unwrap();
        let none = assemble(release(vec![]), meta(), &[], &cache).unwrap();
        let payload = String::from_utf8(none.manifest.to_payload()).unwrap();
        assert!(!payload.contains("imageLocations"), "{payload}");

        let location = ImageLocation {
            api_version: Some("db.example.com/v1".into()),
            kind: "Database".into(),
            pointers: vec!["/spec/image".into()],
            arg_patterns: vec![],
            env_patterns: vec![],
        };
        let some = assemble(release(vec![location.clone()]), meta(), &[], &cache).unwrap();
        let payload = some.manifest.to_payload();
        assert_eq!(Manifest::parse(&payload).unwrap().image_locations, vec![location]);
        assert!(String::from_utf8(payload).unwrap().contains("\"imageLocations\""));
    }
}
