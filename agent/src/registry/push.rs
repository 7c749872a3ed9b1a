//! The push itself, in three phases: every config and layer blob (bounded parallel, across
//! images), then each image's platform manifests and its index, then every tag.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::{StreamExt as _, stream};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use reqwest::header::HeaderValue;
use schemas::Digest;
use schemas::manifest::ImageRecord;

use super::error::{Action, Cause, PushError};
use super::plan::{BlobJob, ImageJob, ManifestJob, Plan};
use super::progress::PushProgress;
use super::source::{Activity, BlobReader, BlobSource, ChunkStream, ReadStop};
use super::target::{Registry, RegistryTarget};

/// Registries refuse bigger manifests (distribution's limit).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// An upload that takes no bytes for this long is abandoned.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the registry may take to confirm an upload once every byte was handed over.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(600);
const WATCH_TICK: Duration = Duration::from_secs(1);
/// Attempts per blob upload when the failure looks transient.
const ATTEMPTS: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Read size and queue depth of monolithic uploads (one request, streamed).
const MONOLITHIC_CHUNK: usize = 1 << 20;
const MONOLITHIC_QUEUE: usize = 4;
/// Chunked uploads send one PATCH per chunk.
const PATCH_CHUNK: usize = 4 << 20;
const PATCH_QUEUE: usize = 2;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Blob uploads (per repository) that sent bytes.
    pub blobs_uploaded: usize,
    /// Blobs a repository already held (found by HEAD on the digest).
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository of the registry instead of uploaded.
    pub blobs_mounted: usize,
    pub bytes_uploaded: u64,
    pub manifests_pushed: usize,
    /// Manifests and indexes the registry already held.
    pub manifests_skipped: usize,
    pub tags_pushed: usize,
    /// Tags already pointing at the right digest.
    pub tags_skipped: usize,
}

/// Pushes `images` to `target`, reading each blob from `blobs` (every digest an image lists must
/// be there). Configs and layers go first, up to `parallelism` at a time across all images; then
/// each image's platform manifests and its index, byte for byte by digest; tags last, once every
/// manifest of every image is in place. A blob or manifest the repository already has (HEAD by
/// digest) is skipped, so a broken push run again resumes at blob granularity, and an unchanged
/// bundle uploads nothing. A corrupt blob fails the push before its upload can complete, and
/// then no manifest or tag is pushed.
pub async fn push_images(
    target: &RegistryTarget,
    images: &[ImageRecord],
    blobs: &BTreeMap<Digest, BlobSource>,
    parallelism: usize,
    progress: Arc<PushProgress>,
) -> Result<PushReport, PushError> {
    let plan = Plan::new(target, images, blobs)?;
    progress.start(plan.bytes_total(), plan.blobs.len() as u64, plan.images.len() as u64);
    let _finish = Finish(&progress);
    let registry = Registry::connect(target).await?;
    let pusher = Pusher {
        registry,
        progress: progress.clone(),
        abort: Arc::new(AtomicBool::new(false)),
        parallelism: parallelism.max(1),
    };
    pusher.run(plan).await
}

struct Finish<'a>(&'a PushProgress);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

struct Pusher {
    registry: Registry,
    progress: Arc<PushProgress>,
    abort: Arc<AtomicBool>,
    parallelism: usize,
}

/// What happened to one blob across its repositories.
#[derive(Debug, Default)]
struct BlobOutcome {
    uploaded: usize,
    mounted: usize,
    skipped: usize,
    bytes: u64,
}

impl Pusher {
    async fn run(&self, plan: Plan) -> Result<PushReport, PushError> {
        let mut report = PushReport::default();
        let Some(first) = plan.images.first() else {
            return Ok(report);
        };
        tracing::info!(
            images = plan.images.len(),
            blobs = plan.blobs.len(),
            bytes = plan.bytes_total(),
            registry = %self.registry.host,
            "pushing images"
        );
        self.registry.probe(&first.repository).await?;
        let manifests = load_manifests(&plan).await?;

        // Phase 1: configs and layers.
        let outcomes: Vec<Result<BlobOutcome, PushError>> = stream::iter(0..plan.blobs.len())
            .map(|i| self.push_blob(&plan.blobs[i]))
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        let mut failure = None;
        for outcome in outcomes {
            match outcome {
                Ok(o) => {
                    report.blobs_uploaded += o.uploaded;
                    report.blobs_mounted += o.mounted;
                    report.blobs_skipped += o.skipped;
                    report.bytes_uploaded += o.bytes;
                }
                // The first real failure; the rest were stopped because of it.
                Err(PushError::Aborted { .. }) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        tracing::info!(
            uploaded = report.blobs_uploaded,
            mounted = report.blobs_mounted,
            skipped = report.blobs_skipped,
            bytes = report.bytes_uploaded,
            "every blob is in the registry"
        );

        // Phase 2: per image, its platform manifests, then its index.
        let done = Mutex::new(HashSet::new());
        let counts: Vec<Result<(usize, usize), PushError>> = stream::iter(0..plan.images.len())
            .map(|i| self.push_manifests(&plan.images[i], &manifests, &done))
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        for c in counts {
            let (pushed, skipped) = c?;
            report.manifests_pushed += pushed;
            report.manifests_skipped += skipped;
        }

        // Phase 3: tags, now that every manifest of every image is in place.
        // Indexes, not references: the closure must not be generic over lifetimes (Send).
        let tags: Vec<(usize, usize)> = (plan.images.iter().enumerate())
            .flat_map(|(i, image)| (0..image.tags.len()).map(move |t| (i, t)))
            .collect();
        let results: Vec<Result<bool, PushError>> = stream::iter(tags)
            .map(|(i, t)| self.push_tag(&plan.images[i], &plan.images[i].tags[t], &manifests))
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        for r in results {
            if r? {
                report.tags_pushed += 1;
            } else {
                report.tags_skipped += 1;
            }
        }
        let elapsed = self.progress.elapsed().as_secs_f64();
        tracing::info!(
            ?report,
            seconds = elapsed,
            mib_per_second = if elapsed > 0.0 {
                report.bytes_uploaded as f64 / elapsed / f64::from(1u32 << 20)
            } else {
                0.0
            },
            "push complete"
        );
        Ok(report)
    }

    fn aborted(&self, action: impl FnOnce() -> Action) -> Result<(), PushError> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(PushError::Aborted {
                action: Box::new(action()),
            });
        }
        Ok(())
    }

    /// One blob into every repository needing it: HEAD each; mount from a repository that has it;
    /// upload where nothing else works.
    async fn push_blob(&self, job: &BlobJob) -> Result<BlobOutcome, PushError> {
        let result = self.push_blob_everywhere(job).await;
        if result.is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
        result
    }

    async fn push_blob_everywhere(&self, job: &BlobJob) -> Result<BlobOutcome, PushError> {
        let digest = job.digest;
        let mut outcome = BlobOutcome::default();
        let mut present: Option<&str> = None;
        let mut missing = Vec::new();
        for repository in &job.repositories {
            self.aborted(|| Action::CheckBlob {
                digest,
                repository: repository.to_string(),
            })?;
            match self.blob_exists(repository, &digest).await {
                Ok(true) => {
                    present.get_or_insert(repository);
                    outcome.skipped += 1;
                }
                Ok(false) => missing.push(repository),
                // `distribution` answers 500 to a HEAD whose link file a crash left empty, and
                // keeps doing so: only an upload rewrites the link. Whether the registry is
                // really down, the upload (with its own retries) tells.
                Err(PushError::Registry {
                    cause: Cause::Unavailable { status },
                    ..
                }) if status != 429 => {
                    tracing::warn!(%digest, repository = %repository, status,
                        "the registry answered {status} to a blob check; uploading the blob");
                    missing.push(repository);
                }
                Err(e) => return Err(e),
            }
        }
        for repository in missing {
            if let Some(from) = present {
                match self.mount(repository, from, &digest).await {
                    Ok(()) => {
                        tracing::debug!(%digest, from, repository = %repository, "mounted blob");
                        outcome.mounted += 1;
                        continue;
                    }
                    Err(e) => tracing::info!("{e}; uploading the blob instead"),
                }
            }
            if outcome.uploaded > 0 {
                // Uploaded once already (a mount failed): the progress counts it again.
                self.progress.bytes_total.fetch_add(job.source.size, Ordering::Relaxed);
            }
            let sent = self.upload(repository, job).await?;
            tracing::debug!(%digest, repository = %repository, bytes = sent, "uploaded blob");
            outcome.uploaded += 1;
            outcome.bytes += sent;
            present.get_or_insert(repository);
        }
        let nothing_sent = outcome.uploaded == 0 && outcome.mounted == 0;
        self.progress
            .blob_finished(job.source.size, nothing_sent, outcome.bytes.min(job.source.size));
        Ok(outcome)
    }

    async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, PushError> {
        let reference = self.registry.blob_ref(repository, digest);
        let digest_str = digest.to_string();
        self.registry
            .call(
                Action::CheckBlob {
                    digest: *digest,
                    repository: repository.to_owned(),
                },
                self.registry.client().blob_exists(&reference, &digest_str),
            )
            .await
    }

    async fn mount(&self, repository: &str, from: &str, digest: &Digest) -> Result<(), PushError> {
        let reference = self.registry.blob_ref(repository, digest);
        let source = self.registry.blob_ref(from, digest);
        let digest_str = digest.to_string();
        self.registry
            .call(
                Action::MountBlob {
                    digest: *digest,
                    from: from.to_owned(),
                    repository: repository.to_owned(),
                },
                self.registry.client().mount_blob(&reference, &source, &digest_str),
            )
            .await
    }

    /// Uploads with a few attempts when failures look transient; before trying again, a HEAD
    /// finds an upload that was committed although its answer was lost.
    async fn upload(&self, repository: &str, job: &BlobJob) -> Result<u64, PushError> {
        let mut attempt = 1;
        loop {
            if attempt > 1 {
                tokio::time::sleep(RETRY_BACKOFF * (attempt - 1)).await;
                self.aborted(|| Action::UploadBlob {
                    digest: job.digest,
                    repository: repository.to_owned(),
                })?;
                match self.blob_exists(repository, &job.digest).await {
                    Ok(true) => {
                        self.progress.add_sent(job.source.size);
                        return Ok(job.source.size);
                    }
                    Ok(false) => {}
                    Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                        tracing::warn!("{e}; trying again (attempt {} of {ATTEMPTS})", attempt + 1);
                        attempt += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let chunked = self.registry.prefers_chunked();
            let mut result = self.upload_once(repository, job, chunked).await;
            if !chunked && result.as_ref().is_err_and(PushError::wants_chunked) {
                if let Err(e) = &result {
                    tracing::info!("{e}");
                }
                self.registry.use_chunked_from_now();
                result = self.upload_once(repository, job, true).await;
            }
            match result {
                Ok(sent) => return Ok(sent),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!("{e}; trying again (attempt {} of {ATTEMPTS})", attempt + 1);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One upload: the bundle's bytes streamed from a blocking reader that hashes them and
    /// withholds the last chunk unless the digest matches; a watchdog ends a stalled upload.
    async fn upload_once(&self, repository: &str, job: &BlobJob, chunked: bool) -> Result<u64, PushError> {
        let action = Action::UploadBlob {
            digest: job.digest,
            repository: repository.to_owned(),
        };
        self.aborted(|| action.clone())?;
        let (chunk, queue) = if chunked {
            (PATCH_CHUNK, PATCH_QUEUE)
        } else {
            (MONOLITHIC_CHUNK, MONOLITHIC_QUEUE)
        };
        let (tx, rx) = tokio::sync::mpsc::channel(queue);
        let (body, closer) = ChunkStream::new(rx);
        let activity = Arc::new(Activity::new());
        let reader = BlobReader {
            source: job.source.clone(),
            digest: job.digest,
            chunk,
            tx,
            activity: activity.clone(),
            progress: self.progress.clone(),
            abort: self.abort.clone(),
        };
        let reading = tokio::task::spawn_blocking(move || reader.run());
        let reference = self.registry.blob_ref(repository, &job.digest);
        let digest_str = job.digest.to_string();
        let client = if chunked {
            self.registry.chunked_client()
        } else {
            self.registry.client()
        };
        let sent = tokio::select! {
            r = client.push_blob_stream(&reference, body, &digest_str, Some(job.source.size)) => {
                r.map(|_| ()).map_err(|e| self.registry.error(action.clone(), e))
            }
            e = watchdog(&activity, &action, &self.registry.host) => Err(e),
        };
        // Unblocks the reader if the upload stopped taking bytes, then waits for it.
        closer.close();
        let read = reading.await;
        let result = match (read, sent) {
            (Err(source), _) => Err(PushError::ReaderFailed {
                entry: BlobSource::entry(&job.digest),
                source,
            }),
            // The bundle's fault outranks the upload's failure it caused.
            (Ok(Err(ReadStop::Bundle(e))), _) => Err(e),
            (Ok(Err(ReadStop::Aborted)), _) => Err(PushError::Aborted {
                action: Box::new(action),
            }),
            (Ok(_), Err(e)) => Err(e),
            (Ok(_), Ok(())) => Ok(job.source.size),
        };
        if result.is_err() {
            self.progress.take_back_sent(activity.sent());
        }
        result
    }

    /// Pushes an image's platform manifests, then its top manifest or index. Returns (pushed,
    /// already present).
    async fn push_manifests(
        &self,
        image: &ImageJob,
        manifests: &HashMap<Digest, Bytes>,
        done: &Mutex<HashSet<(Arc<str>, Digest)>>,
    ) -> Result<(usize, usize), PushError> {
        let (mut pushed, mut skipped) = (0, 0);
        for m in image.platforms.iter().chain(std::iter::once(&image.top)) {
            let first_time = done
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((image.repository.clone(), m.digest));
            if !first_time {
                continue;
            }
            if self.manifest_exists(&image.repository, &m.digest).await? {
                skipped += 1;
                continue;
            }
            let action = Action::PushManifest {
                image: image.name.clone(),
                digest: m.digest,
                repository: image.repository.to_string(),
            };
            let reference = self.registry.blob_ref(&image.repository, &m.digest);
            self.put_manifest(action, &reference, m, manifests).await?;
            pushed += 1;
        }
        self.progress.image_finished();
        tracing::debug!(image = %image.name, repository = %image.repository, pushed, skipped, "manifests in place");
        Ok((pushed, skipped))
    }

    async fn put_manifest(
        &self,
        action: Action,
        reference: &oci_client::Reference,
        m: &ManifestJob,
        manifests: &HashMap<Digest, Bytes>,
    ) -> Result<(), PushError> {
        let bytes = manifests.get(&m.digest).cloned().unwrap_or_default();
        let content_type = HeaderValue::from_str(&m.media_type).map_err(|_| {
            self.registry.error(
                action.clone(),
                OciDistributionError::UnsupportedMediaTypeError(m.media_type.clone()),
            )
        })?;
        self.registry
            .call(
                action,
                self.registry.client().push_manifest_raw(reference, bytes, content_type),
            )
            .await
            .map(|_| ())
    }

    /// The digest a manifest reference resolves to, or `None` when the registry has none.
    async fn resolve(&self, action: Action, reference: &oci_client::Reference) -> Result<Option<String>, PushError> {
        let found = tokio::time::timeout(
            super::target::REQUEST_TIMEOUT,
            self.registry
                .client()
                .fetch_manifest_digest(reference, self.registry.auth()),
        )
        .await;
        match found {
            Err(_) => Err(PushError::TimedOut {
                action: Box::new(action),
                registry: self.registry.host.clone(),
                after: super::target::REQUEST_TIMEOUT,
            }),
            Ok(Ok(digest)) => Ok(Some(digest)),
            Ok(Err(e)) if is_not_found(&e) => Ok(None),
            Ok(Err(e)) => Err(self.registry.error(action, e)),
        }
    }

    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> Result<bool, PushError> {
        let action = Action::CheckManifest {
            digest: *digest,
            repository: repository.to_owned(),
        };
        let reference = self.registry.blob_ref(repository, digest);
        Ok(self.resolve(action, &reference).await?.is_some())
    }

    /// Points `tag` at the image's top digest unless it already does. Returns whether it pushed.
    async fn push_tag(
        &self,
        image: &ImageJob,
        tag: &str,
        manifests: &HashMap<Digest, Bytes>,
    ) -> Result<bool, PushError> {
        let reference = self.registry.tag_ref(&image.repository, tag);
        let check = Action::CheckTag {
            tag: tag.to_owned(),
            repository: image.repository.to_string(),
        };
        if self.resolve(check, &reference).await?.as_deref() == Some(image.top.digest.to_string().as_str()) {
            return Ok(false);
        }
        let action = Action::PushTag {
            image: image.name.clone(),
            tag: tag.to_owned(),
            digest: image.top.digest,
            repository: image.repository.to_string(),
        };
        self.put_manifest(action, &reference, &image.top, manifests).await?;
        tracing::info!(image = %image.name, "tagged {}/{}:{tag} as {}", self.registry.host, image.repository, image.top.digest);
        Ok(true)
    }
}

/// Ends an upload that stalls: no bytes taken for [`STALL_TIMEOUT`], or no answer within
/// [`COMMIT_TIMEOUT`] after the last byte.
async fn watchdog(activity: &Activity, action: &Action, registry: &str) -> PushError {
    loop {
        tokio::time::sleep(WATCH_TICK).await;
        let idle = activity.idle();
        if activity.all_read() {
            if idle > COMMIT_TIMEOUT {
                return PushError::CommitTimedOut {
                    action: Box::new(action.clone()),
                    registry: registry.to_owned(),
                    after: COMMIT_TIMEOUT,
                };
            }
        } else if idle > STALL_TIMEOUT {
            return PushError::Stalled {
                action: Box::new(action.clone()),
                registry: registry.to_owned(),
                after: STALL_TIMEOUT,
            };
        }
    }
}

/// Reads every manifest and index from the bundle and checks its digest, before anything is
/// pushed.
async fn load_manifests(plan: &Plan) -> Result<HashMap<Digest, Bytes>, PushError> {
    let wanted = plan.manifests.clone();
    let first = wanted.keys().next().copied().unwrap_or_else(|| Digest::of(b""));
    tokio::task::spawn_blocking(move || {
        let mut out = HashMap::new();
        for (digest, (source, image)) in wanted {
            if source.size > MAX_MANIFEST_BYTES {
                return Err(PushError::ManifestTooLarge {
                    entry: BlobSource::entry(&digest),
                    image,
                    size: source.size,
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            out.insert(digest, Bytes::from(source.read_verified(&digest)?));
        }
        Ok(out)
    })
    .await
    .map_err(|source| PushError::ReaderFailed {
        entry: BlobSource::entry(&first),
        source,
    })?
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.as_u16() == 404),
        _ => false,
    }
}
