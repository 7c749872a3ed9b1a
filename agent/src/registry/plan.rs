//! What a push has to do, worked out before any request: the distinct blobs (configs and
//! layers) with every repository that needs each, and per image its manifests and tags.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use schemas::manifest::ImageRecord;
use schemas::{Digest, ImageName};

use super::error::PushError;
use super::source::BlobSource;
use super::target::RegistryTarget;

/// One config or layer blob, pushed once per repository that needs it.
#[derive(Debug, Clone)]
pub(crate) struct BlobJob {
    pub digest: Digest,
    pub source: BlobSource,
    /// Repositories needing it, in image order, each once.
    pub repositories: Vec<Arc<str>>,
}

/// A manifest or index to push by digest.
#[derive(Debug, Clone)]
pub(crate) struct ManifestJob {
    pub digest: Digest,
    pub media_type: String,
}

/// One image: its repository, platform manifests, top manifest or index, and tags.
#[derive(Debug, Clone)]
pub(crate) struct ImageJob {
    pub name: ImageName,
    pub repository: Arc<str>,
    pub platforms: Vec<ManifestJob>,
    pub top: ManifestJob,
    pub tags: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Plan {
    /// Largest first, so the longest uploads start early; ties in bundle order.
    pub blobs: Vec<BlobJob>,
    pub images: Vec<ImageJob>,
    /// Every manifest and index, to read and check before anything is pushed.
    pub manifests: BTreeMap<Digest, (BlobSource, ImageName)>,
}

impl Plan {
    pub fn new(
        target: &RegistryTarget,
        images: &[ImageRecord],
        sources: &BTreeMap<Digest, BlobSource>,
    ) -> Result<Self, PushError> {
        let mut blobs: Vec<BlobJob> = Vec::new();
        let mut blob_index: HashMap<Digest, usize> = HashMap::new();
        let mut manifests = BTreeMap::new();
        let mut jobs = Vec::new();
        let mut repositories: HashMap<String, Arc<str>> = HashMap::new();
        let mut tags: HashMap<(Arc<str>, String), (Digest, ImageName)> = HashMap::new();

        for image in images {
            let repository = target.repository(&image.name, &image.target)?;
            let repository = repositories
                .entry(repository.clone())
                .or_insert_with(|| Arc::from(repository))
                .clone();
            let source = |digest: &Digest| {
                sources.get(digest).cloned().ok_or_else(|| PushError::MissingBlob {
                    image: image.name.clone(),
                    digest: *digest,
                })
            };
            let manifest_digests: BTreeSet<Digest> = std::iter::once(image.digest)
                .chain(image.platforms.iter().map(|p| p.digest))
                .collect();
            for digest in &manifest_digests {
                manifests.insert(*digest, (source(digest)?, image.name.clone()));
            }
            for digest in image.blobs.iter().filter(|d| !manifest_digests.contains(d)) {
                match blob_index.get(digest) {
                    Some(&i) => {
                        let job = &mut blobs[i];
                        if !job.repositories.contains(&repository) {
                            job.repositories.push(repository.clone());
                        }
                    }
                    None => {
                        blob_index.insert(*digest, blobs.len());
                        blobs.push(BlobJob {
                            digest: *digest,
                            source: source(digest)?,
                            repositories: vec![repository.clone()],
                        });
                    }
                }
            }
            for tag in &image.tags {
                if let Some((digest, first)) =
                    tags.insert((repository.clone(), tag.clone()), (image.digest, image.name.clone()))
                    && digest != image.digest
                {
                    return Err(PushError::TagConflict {
                        repository: repository.to_string(),
                        tag: tag.clone(),
                        first,
                        second: image.name.clone(),
                    });
                }
            }
            jobs.push(ImageJob {
                name: image.name.clone(),
                repository,
                platforms: image
                    .platforms
                    .iter()
                    .map(|p| ManifestJob {
                        digest: p.digest,
                        media_type: p.media_type.clone(),
                    })
                    .collect(),
                top: ManifestJob {
                    digest: image.digest,
                    media_type: image.media_type.clone(),
                },
                tags: image.tags.clone(),
            });
        }
        // Stable: equal sizes keep bundle order.
        blobs.sort_by_key(|b| std::cmp::Reverse(b.source.size));
        Ok(Self {
            blobs,
            images: jobs,
            manifests,
        })
    }

    pub fn bytes_total(&self) -> u64 {
        self.blobs.iter().map(|b| b.source.size).sum()
    }
}
