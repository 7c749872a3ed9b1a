//! Fetching every image of a release into a content-addressed [`BlobCache`]: from registries
//! (with overrides, auth, custom CAs), OCI image layouts and `docker save` archives, with an
//! optional platform filter. Every byte is checked against its digest before it is kept.
//!
//! The record of an image lists its blobs in bundle order: the top manifest or index, then for
//! each platform manifest (in index order) the manifest, its config and its layers, each once.

mod archive;
mod auth;
mod cache;
mod error;
mod layout;
mod oci;
mod registry;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use schemas::manifest::{ImageRecord, PlatformRecord};
use schemas::names::RepositoryPath;
use schemas::spec::{ImageSource, ImageSpec};
use schemas::{Digest, ImageName};

pub use auth::DockerConfig;
pub use cache::{BlobCache, BlobWriter, CacheError};
pub use error::{FetchError, Origin, Problem};

use error::Fail;
use oci::{Descriptor, Parsed, Platform};
use registry::{Connection, Registries};

/// How to fetch images.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Registry host → mirror host used for the connection (the names stay unchanged).
    pub registry_overrides: BTreeMap<String, String>,
    /// Hosts (`host[:port]` or `host`) that may be reached over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// Docker `config.json` with registry credentials; `None`: `$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json` when present.
    pub docker_config: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for registries, besides the system roots.
    pub ca_certs: Vec<PathBuf>,
    /// Prefix for every target repository path.
    pub target_prefix: Option<String>,
    /// Platforms (`os/arch[/variant]`) kept of every index whose spec lists none.
    pub default_platforms: Vec<String>,
    /// Blobs fetched at once.
    pub parallelism: usize,
    /// Directory relative source paths are resolved against.
    pub base_dir: PathBuf,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            registry_overrides: BTreeMap::new(),
            insecure_registries: Vec::new(),
            docker_config: None,
            ca_certs: Vec::new(),
            target_prefix: None,
            default_platforms: Vec::new(),
            parallelism: 4,
            base_dir: PathBuf::from("."),
        }
    }
}

/// One fetched image: its record and the size of each of its blobs, all in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedImage {
    pub record: ImageRecord,
    pub blob_sizes: BTreeMap<Digest, u64>,
}

/// Fetches every image into `cache`. The result is in spec order.
pub async fn fetch_images(
    specs: &[ImageSpec],
    opts: &FetchOptions,
    cache: &BlobCache,
) -> Result<Vec<FetchedImage>, FetchError> {
    let targets = resolve_targets(specs, opts.target_prefix.as_deref())?;
    let default_platforms = parse_platforms(&opts.default_platforms)?;
    let registries = Registries::new(&opts.insecure_registries, opts.docker_config.as_deref(), &opts.ca_certs)?;
    let ctx = Arc::new(Context {
        opts: opts.clone(),
        cache: cache.clone(),
        registries,
        default_platforms,
    });
    let parallelism = opts.parallelism.max(1);

    let planned: Vec<Planned> = stream::iter(specs.iter().zip(targets))
        .map(|(spec, target)| plan(ctx.clone(), spec, target))
        .buffered(parallelism)
        .try_collect()
        .await?;

    let mut seen = HashSet::new();
    let jobs: Vec<BlobJob> = planned
        .iter()
        .flat_map(|p| p.jobs.iter())
        .filter(|j| seen.insert(j.digest))
        .cloned()
        .collect();
    tracing::info!(images = planned.len(), blobs = jobs.len(), "fetching blobs");
    stream::iter(jobs)
        .map(|job| run_job(ctx.clone(), job))
        .buffer_unordered(parallelism)
        .try_collect::<()>()
        .await?;

    Ok(planned.into_iter().map(|p| p.fetched).collect())
}

struct Context {
    opts: FetchOptions,
    cache: BlobCache,
    registries: Registries,
    default_platforms: Vec<Platform>,
}

struct Planned {
    fetched: FetchedImage,
    jobs: Vec<BlobJob>,
}

/// One blob still to be copied into the cache.
#[derive(Clone)]
struct BlobJob {
    image: ImageName,
    origin: Origin,
    digest: Digest,
    size: u64,
    from: BlobFrom,
}

#[derive(Clone)]
enum BlobFrom {
    Registry {
        conn: Arc<Connection>,
        path: String,
    },
    Layout {
        dir: PathBuf,
    },
    /// Already imported (docker archive); missing means the import went wrong.
    Imported,
}

async fn run_job(ctx: Arc<Context>, job: BlobJob) -> Result<(), FetchError> {
    if ctx.cache.contains_sized(&job.digest, job.size) {
        return Ok(());
    }
    tracing::debug!(image = %job.image, digest = %job.digest, size = job.size, "fetching blob");
    let result = fetch_blob(&ctx, &job).await;
    result
        .map(|_| ())
        .map_err(|f| f.into_fetch_error(&job.image, &job.origin))
}

async fn fetch_blob(ctx: &Context, job: &BlobJob) -> Result<u64, Fail> {
    match &job.from {
        BlobFrom::Registry { conn, path } => {
            let reference = conn.reference(path, None, Some(&job.digest));
            conn.blob(&reference, &job.digest, job.size, &ctx.cache).await
        }
        BlobFrom::Layout { dir } => {
            let (dir, digest, size, cache) = (dir.clone(), job.digest, job.size, ctx.cache.clone());
            tokio::task::spawn_blocking(move || layout::copy_blob(&dir, &digest, size, &cache)).await?
        }
        BlobFrom::Imported => Err(Problem::BlobUnknown(job.digest).into()),
    }
}

/// Where manifests come from while planning.
enum Source {
    Registry { conn: Arc<Connection>, path: String },
    Layout { dir: PathBuf },
    Imported,
}

impl Source {
    async fn manifest(&self, ctx: &Context, d: &Descriptor) -> Result<Vec<u8>, Fail> {
        let bytes = match self {
            Source::Registry { conn, path } => conn.manifest(&conn.reference(path, None, Some(&d.digest))).await?,
            Source::Layout { dir } => {
                let (dir, digest, size) = (dir.clone(), d.digest, d.size);
                return tokio::task::spawn_blocking(move || layout::read_manifest(&dir, &digest, Some(size))).await?;
            }
            Source::Imported => {
                fs_err::read(ctx.cache.path(&d.digest)).map_err(|e| Fail::read(ctx.cache.path(&d.digest), e))?
            }
        };
        check(&bytes, "manifest", &d.digest, Some(d.size))?;
        Ok(bytes)
    }

    fn blob_from(&self) -> BlobFrom {
        match self {
            Source::Registry { conn, path } => BlobFrom::Registry {
                conn: conn.clone(),
                path: path.clone(),
            },
            Source::Layout { dir } => BlobFrom::Layout { dir: dir.clone() },
            Source::Imported => BlobFrom::Imported,
        }
    }
}

fn check(bytes: &[u8], what: &'static str, digest: &Digest, size: Option<u64>) -> Result<(), Fail> {
    let actual = Digest::of(bytes);
    if actual != *digest {
        return Err(Problem::DigestMismatch {
            what,
            expected: *digest,
            actual,
        }
        .into());
    }
    if let Some(size) = size
        && size != bytes.len() as u64
    {
        return Err(Problem::SizeMismatch {
            what,
            digest: *digest,
            expected: size,
            actual: bytes.len() as u64,
        }
        .into());
    }
    Ok(())
}

async fn plan(ctx: Arc<Context>, spec: &ImageSpec, target: RepositoryPath) -> Result<Planned, FetchError> {
    let name = &spec.name;
    let requested = if spec.platforms.is_empty() {
        ctx.default_platforms.clone()
    } else {
        parse_platforms(&spec.platforms)?
    };
    let source = spec.source.clone().unwrap_or(ImageSource::Registry { digest: None });
    let origin = origin_of(&ctx, &source, &name.reference().host);
    tracing::info!(image = %name, origin = %origin, "resolving image");
    let result = plan_from(&ctx, spec, &source, &origin, target, &requested).await;
    result.map_err(|f| f.into_fetch_error(name, &origin))
}

async fn plan_from(
    ctx: &Context,
    spec: &ImageSpec,
    source: &ImageSource,
    origin: &Origin,
    target: RepositoryPath,
    requested: &[Platform],
) -> Result<Planned, Fail> {
    let reference = spec.name.reference();
    // The top manifest or index, checked against its digest when one is known.
    let (src, top_bytes, top_digest, top_hint) = match source {
        ImageSource::Registry { digest } => {
            let host = ctx
                .opts
                .registry_overrides
                .get(&reference.host)
                .unwrap_or(&reference.host);
            let pinned = match digest.as_deref().or(reference.digest.as_deref()) {
                Some(d) => Some(
                    d.parse::<Digest>()
                        .map_err(|_| Problem::InvalidDigest { value: d.to_owned() })?,
                ),
                None => None,
            };
            let conn = ctx.registries.connect(host).await?;
            let bytes = conn
                .manifest(&conn.reference(&reference.path, reference.tag.as_deref(), pinned.as_ref()))
                .await?;
            let digest = Digest::of(&bytes);
            if let Some(pinned) = pinned {
                check(&bytes, "manifest", &pinned, None)?;
            }
            (
                Source::Registry {
                    conn,
                    path: reference.path.clone(),
                },
                bytes,
                digest,
                None,
            )
        }
        ImageSource::OciLayout { path, reference: r } => {
            let path = ctx.opts.base_dir.join(path);
            let (dir, r) = (path.clone(), r.clone());
            let (desc, bytes) = tokio::task::spawn_blocking(move || -> Result<_, Fail> {
                let desc = layout::select(&dir, &r)?;
                let bytes = layout::read_manifest(&dir, &desc.digest, Some(desc.size))?;
                Ok((desc, bytes))
            })
            .await??;
            let hint = Some(desc.media_type).filter(|m| !m.is_empty());
            (Source::Layout { dir: path }, bytes, desc.digest, hint)
        }
        ImageSource::DockerArchive { path, reference: r } => {
            let (file, r, cache) = (ctx.opts.base_dir.join(path), r.clone(), ctx.cache.clone());
            let imported = tokio::task::spawn_blocking(move || archive::import(&file, r.as_deref(), &cache)).await??;
            (Source::Imported, imported.manifest, imported.digest, None)
        }
    };

    let top = oci::parse(&top_digest, &top_bytes, top_hint.as_deref())?;
    let mut manifests: Vec<(Digest, Vec<u8>, Parsed)> = Vec::new();
    let mut platforms = Vec::new();
    let (stored_bytes, stored_digest, source_digest) = match &top {
        Parsed::Index { entries, .. } => {
            let keep: Vec<usize> = if requested.is_empty() {
                (0..entries.len()).collect()
            } else {
                select_platforms(entries, requested)?
            };
            for &i in &keep {
                let entry = &entries[i];
                let bytes = src.manifest(ctx, entry).await?;
                let hint = Some(entry.media_type.as_str()).filter(|m| !m.is_empty());
                let parsed = oci::parse(&entry.digest, &bytes, hint)?;
                if let Parsed::Index { .. } = parsed {
                    return Err(Problem::NestedIndex {
                        index: top_digest,
                        child: entry.digest,
                    }
                    .into());
                }
                platforms.push(PlatformRecord {
                    platform: entry
                        .platform
                        .as_ref()
                        .map_or_else(|| "unknown".to_owned(), Platform::to_string),
                    digest: entry.digest,
                    size: entry.size,
                    media_type: parsed.media_type().to_owned(),
                });
                manifests.push((entry.digest, bytes, parsed));
            }
            if requested.is_empty() {
                (top_bytes.clone(), top_digest, None)
            } else {
                let rewritten = oci::filter_index(&top_digest, &top_bytes, &keep)?;
                let d = Digest::of(&rewritten);
                (rewritten, d, Some(top_digest))
            }
        }
        Parsed::Manifest { .. } => {
            manifests.push((top_digest, top_bytes.clone(), top.clone()));
            (top_bytes.clone(), top_digest, None)
        }
    };

    // Manifests are blobs too.
    ctx.cache.put_bytes(&stored_digest, &stored_bytes)?;
    for (d, bytes, _) in &manifests {
        ctx.cache.put_bytes(d, bytes)?;
    }

    let mut blobs = Vec::new();
    let mut blob_sizes = BTreeMap::new();
    let mut add = |d: Digest, size: u64, blobs: &mut Vec<Digest>| -> bool {
        if blob_sizes.insert(d, size).is_none() {
            blobs.push(d);
            true
        } else {
            false
        }
    };
    add(stored_digest, stored_bytes.len() as u64, &mut blobs);
    let mut jobs = Vec::new();
    for (d, bytes, parsed) in &manifests {
        add(*d, bytes.len() as u64, &mut blobs);
        let Parsed::Manifest { config, layers, .. } = parsed else {
            continue;
        };
        for desc in std::iter::once(config).chain(layers) {
            if add(desc.digest, desc.size, &mut blobs) && !ctx.cache.contains_sized(&desc.digest, desc.size) {
                jobs.push(BlobJob {
                    image: spec.name.clone(),
                    origin: origin.clone(),
                    digest: desc.digest,
                    size: desc.size,
                    from: src.blob_from(),
                });
            }
        }
    }

    // A single-platform image asked for by platform must be that platform.
    if let Parsed::Manifest { config, .. } = &top
        && !requested.is_empty()
    {
        if let Some(i) = jobs.iter().position(|j| j.digest == config.digest) {
            let job = jobs.remove(i);
            fetch_blob(ctx, &job).await?;
        }
        let path = ctx.cache.path(&config.digest);
        let bytes = fs_err::read(&path).map_err(|e| Fail::read(&path, e))?;
        let actual = oci::config_platform(&bytes);
        if !actual.as_ref().is_some_and(|a| requested.iter().all(|r| r.selects(a))) {
            return Err(Problem::PlatformMismatch {
                actual: actual.map_or_else(|| "of unknown platform".to_owned(), |a| a.to_string()),
                requested: requested.iter().map(Platform::to_string).collect(),
            }
            .into());
        }
    }

    let record = ImageRecord {
        name: spec.name.clone(),
        target,
        tags: reference.tag.iter().cloned().collect(),
        digest: stored_digest,
        source_digest,
        media_type: top.media_type().to_owned(),
        size: stored_bytes.len() as u64,
        platforms,
        total_size: blob_sizes.values().sum(),
        blobs,
    };
    Ok(Planned {
        fetched: FetchedImage { record, blob_sizes },
        jobs,
    })
}

fn origin_of(ctx: &Context, source: &ImageSource, host: &str) -> Origin {
    match source {
        ImageSource::Registry { .. } => Origin::Registry {
            host: ctx
                .opts
                .registry_overrides
                .get(host)
                .map_or(host, String::as_str)
                .to_owned(),
        },
        ImageSource::OciLayout { path, .. } => Origin::OciLayout {
            path: ctx.opts.base_dir.join(path),
        },
        ImageSource::DockerArchive { path, .. } => Origin::DockerArchive {
            path: ctx.opts.base_dir.join(path),
        },
    }
}

/// Indexes of the entries the requested platforms select; every requested platform must
/// select at least one.
fn select_platforms(entries: &[Descriptor], requested: &[Platform]) -> Result<Vec<usize>, Fail> {
    let missing: Vec<String> = requested
        .iter()
        .filter(|r| {
            !entries
                .iter()
                .any(|e| e.platform.as_ref().is_some_and(|p| r.selects(p)))
        })
        .map(Platform::to_string)
        .collect();
    if !missing.is_empty() {
        let available = entries
            .iter()
            .filter_map(|e| e.platform.as_ref().map(Platform::to_string))
            .collect();
        return Err(Problem::PlatformMissing { missing, available }.into());
    }
    Ok((0..entries.len())
        .filter(|&i| {
            entries[i]
                .platform
                .as_ref()
                .is_some_and(|p| requested.iter().any(|r| r.selects(p)))
        })
        .collect())
}

fn parse_platforms(values: &[String]) -> Result<Vec<Platform>, FetchError> {
    values
        .iter()
        .map(|v| v.parse().map_err(|()| FetchError::InvalidPlatform { value: v.clone() }))
        .collect()
}

/// Each spec's target repository, refusing two specs that would collide there.
fn resolve_targets(specs: &[ImageSpec], prefix: Option<&str>) -> Result<Vec<RepositoryPath>, FetchError> {
    let mut targets = Vec::with_capacity(specs.len());
    let mut by_target: BTreeMap<RepositoryPath, Vec<&ImageSpec>> = BTreeMap::new();
    for spec in specs {
        let reference = spec.name.reference();
        let base = spec
            .target
            .as_ref()
            .map_or_else(|| reference.path.clone(), |t| t.as_str().to_owned());
        let value = match prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            Some(p) => format!("{p}/{base}"),
            None => base,
        };
        let target: RepositoryPath = value.parse().map_err(|source| FetchError::InvalidTarget {
            image: spec.name.clone(),
            value: value.clone(),
            source,
        })?;
        let others = by_target.entry(target.clone()).or_default();
        for other in others.iter() {
            if other.name == spec.name {
                return Err(FetchError::Duplicate {
                    image: spec.name.clone(),
                });
            }
            let (a, b) = (other.name.reference(), reference.clone());
            let same_repository = a.host == b.host && a.path == b.path;
            let same_source = source_key(other) == source_key(spec);
            let tag_clash = a.tag.is_some() && a.tag == b.tag;
            if !same_repository || !same_source || tag_clash {
                return Err(FetchError::TargetConflict {
                    first: other.name.clone(),
                    second: spec.name.clone(),
                    target: target.to_string(),
                });
            }
        }
        others.push(spec);
        targets.push(target);
    }
    Ok(targets)
}

/// What kind of source and where, ignoring which image in it.
fn source_key(spec: &ImageSpec) -> (u8, Option<&Path>) {
    match &spec.source {
        None | Some(ImageSource::Registry { .. }) => (0, None),
        Some(ImageSource::OciLayout { path, .. }) => (1, Some(path)),
        Some(ImageSource::DockerArchive { path, .. }) => (2, Some(path)),
    }
}
