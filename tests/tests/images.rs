//! Image fetching against the real `distribution` registry, with skopeo as the independent
//! second client: it seeds the registry and makes the OCI layouts and docker archives the
//! bundler reads. Image names say `quay.io`; a registry override maps them to loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use bundler::images::{BlobCache, FetchError, FetchOptions, FetchedImage, Problem, fetch_images};
use schemas::Digest;
use schemas::spec::{ImageSource, ImageSpec};
use tests::oci_fixtures::{
    BuiltImage, LayerCompression, SyntheticImage, push_with_skopeo, skopeo_copy_to_docker_archive,
    skopeo_copy_to_oci_layout,
};
use tests::registry::{Registry, RegistryAuth, RegistryOptions, docker_config_for};

const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A scratch directory with a blob cache and an empty docker config.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new().prefix("sealift-images-").tempdir()?,
        })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn cache(&self, name: &str) -> Result<BlobCache> {
        Ok(BlobCache::new(&self.path().join(name))?)
    }
    /// Options mapping `quay.io` to `registry`, with an empty docker config.
    fn options(&self, registry: Option<&Registry>) -> Result<FetchOptions> {
        let mut opts = FetchOptions {
            docker_config: Some(docker_config_for(self.path(), "none", None)?),
            base_dir: self.path().to_owned(),
            ..FetchOptions::default()
        };
        if let Some(r) = registry {
            opts.registry_overrides.insert("quay.io".to_owned(), r.addr());
        }
        Ok(opts)
    }
}

fn spec(name: &str) -> Result<ImageSpec> {
    Ok(ImageSpec {
        name: name.parse()?,
        source: None,
        target: None,
        platforms: Vec::new(),
    })
}

fn anonymous() -> Result<Registry> {
    Registry::start(RegistryOptions::default())
}

/// Writes `image` into a fresh layout under `scratch` and pushes it as `dest`.
fn seed(scratch: &Scratch, registry: &Registry, image: &SyntheticImage, dest: &str) -> Result<BuiltImage> {
    let dir = scratch
        .path()
        .join(format!("seed-{}-{}", image.repo.replace('/', "-"), image.tag));
    let built = image.write_layout(&dir)?;
    push_with_skopeo(&built, registry, dest)?;
    Ok(built)
}

async fn fetch_one(spec: ImageSpec, opts: &FetchOptions, cache: &BlobCache) -> Result<FetchedImage> {
    let mut out = fetch_images(&[spec], opts, cache).await?;
    out.pop().context("fetch_images returned nothing")
}

async fn fetch_err(spec: ImageSpec, opts: &FetchOptions, cache: &BlobCache) -> Result<FetchError> {
    match fetch_images(&[spec], opts, cache).await {
        Ok(images) => bail!("fetch unexpectedly succeeded: {images:?}"),
        Err(e) => Ok(e),
    }
}

/// The error and its causes, one line.
fn chain(e: &FetchError) -> String {
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The blobs a layout image needs, in bundle order.
fn expected_blobs(built: &BuiltImage) -> Vec<Digest> {
    let mut out = Vec::new();
    if built.is_index() {
        out.push(built.digest);
    }
    for m in &built.manifests {
        for d in std::iter::once(m.digest)
            .chain(std::iter::once(m.config))
            .chain(m.layers.iter().copied())
        {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Every blob of `fetched` is in `cache` with the bytes the layout has.
fn assert_cache_matches_layout(fetched: &FetchedImage, cache: &BlobCache, built: &BuiltImage) -> Result<()> {
    for d in &fetched.record.blobs {
        let cached = fs_err::read(cache.path(d))?;
        ensure!(Digest::of(&cached) == *d, "cache holds wrong bytes for {d}");
        ensure!(cached.len() as u64 == fetched.blob_sizes[d], "size of {d}");
        let original = fs_err::read(built.blob_path(d))?;
        ensure!(cached == original, "blob {d} differs from the layout");
    }
    Ok(())
}

fn all_sizes(fetched: &FetchedImage) -> u64 {
    fetched.blob_sizes.values().sum()
}

#[tokio::test]
async fn fetches_single_platform_image_by_tag_and_by_digest_through_an_override() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    let built = seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/app", "1.0", &[3000, 70_000], 1),
        "acme/app:1.0",
    )?;
    let opts = scratch.options(Some(&registry))?;
    let cache = scratch.cache("cache")?;

    let by_tag = fetch_one(spec("quay.io/acme/app:1.0")?, &opts, &cache).await?;
    let r = &by_tag.record;
    assert_eq!(r.name.as_str(), "quay.io/acme/app:1.0");
    assert_eq!(r.target.as_str(), "acme/app");
    assert_eq!(r.tags, vec!["1.0".to_owned()]);
    assert_eq!(r.digest, built.digest);
    assert_eq!(r.source_digest, None);
    assert_eq!(r.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(r.size, built.size);
    assert!(r.platforms.is_empty());
    assert_eq!(r.blobs, expected_blobs(&built));
    assert_eq!(r.total_size, all_sizes(&by_tag));
    assert_cache_matches_layout(&by_tag, &cache, &built)?;

    // By digest in the name: no tag to push.
    let by_digest = fetch_one(
        spec(&format!("quay.io/acme/app@{}", built.digest))?,
        &opts,
        &scratch.cache("cache2")?,
    )
    .await?;
    assert_eq!(by_digest.record.digest, built.digest);
    assert_eq!(by_digest.record.blobs, r.blobs);
    assert!(by_digest.record.tags.is_empty());

    // By digest in the source, keeping the name's tag.
    let mut pinned = spec("quay.io/acme/app:1.0")?;
    pinned.source = Some(ImageSource::Registry {
        digest: Some(built.digest.to_string()),
    });
    let pinned = fetch_one(pinned, &opts, &cache).await?;
    assert_eq!(pinned, by_tag);

    // A pinned digest the registry does not have.
    let mut wrong = spec("quay.io/acme/app:1.0")?;
    wrong.source = Some(ImageSource::Registry {
        digest: Some(Digest::of(b"nothing").to_string()),
    });
    let err = fetch_err(wrong, &opts, &cache).await?;
    assert!(
        matches!(&err, FetchError::Image { problem, .. } if matches!(**problem, Problem::ManifestUnknown)),
        "{}",
        chain(&err)
    );

    // Prefix and explicit target.
    let mut with_target = spec("quay.io/acme/app:1.0")?;
    with_target.target = Some("vendor/app".parse()?);
    let prefixed = FetchOptions {
        target_prefix: Some("mirror/".to_owned()),
        ..opts.clone()
    };
    let got = fetch_one(with_target, &prefixed, &cache).await?;
    assert_eq!(got.record.target.as_str(), "mirror/vendor/app");
    Ok(())
}

#[tokio::test]
async fn registry_and_skopeo_oci_layout_give_identical_records_and_bytes() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    let image = SyntheticImage::new("acme/app", "2.0", &[5000, 40_000, 5000], 7)
        .with_platforms(&["linux/amd64", "linux/arm64"]);
    let built = seed(&scratch, &registry, &image, "acme/app:2.0")?;
    let layout = scratch.path().join("from-skopeo");
    skopeo_copy_to_oci_layout(&registry, "acme/app:2.0", &layout, "2.0")?;
    let opts = scratch.options(Some(&registry))?;

    let reg_cache = scratch.cache("reg")?;
    let from_registry = fetch_one(spec("quay.io/acme/app:2.0")?, &opts, &reg_cache).await?;

    let lay_cache = scratch.cache("lay")?;
    let mut s = spec("quay.io/acme/app:2.0")?;
    // Relative to base_dir.
    s.source = Some(ImageSource::OciLayout {
        path: PathBuf::from("from-skopeo"),
        reference: "2.0".to_owned(),
    });
    let from_layout = fetch_one(s, &opts, &lay_cache).await?;

    assert_eq!(from_registry, from_layout);
    let r = &from_registry.record;
    assert_eq!(r.digest, built.digest);
    assert_eq!(r.media_type, OCI_INDEX);
    assert_eq!(r.blobs, expected_blobs(&built));
    let platforms: Vec<(&str, Digest)> = r.platforms.iter().map(|p| (p.platform.as_str(), p.digest)).collect();
    assert_eq!(
        platforms,
        vec![
            ("linux/amd64", built.manifests[0].digest),
            ("linux/arm64", built.manifests[1].digest)
        ]
    );
    for d in &r.blobs {
        let a = fs_err::read(reg_cache.path(d))?;
        let b = fs_err::read(lay_cache.path(d))?;
        assert!(a == b, "blob {d} differs between registry and layout fetches");
    }
    assert_cache_matches_layout(&from_registry, &reg_cache, &built)?;

    // A reference the layout does not list.
    let mut missing = spec("quay.io/acme/app:2.0")?;
    missing.source = Some(ImageSource::OciLayout {
        path: layout.clone(),
        reference: "9.9".to_owned(),
    });
    let err = fetch_err(missing, &opts, &lay_cache).await?;
    let msg = err.to_string();
    assert!(
        msg.contains("from OCI layout") && msg.contains("\"9.9\" is not in index.json (it lists 2.0)"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn docker_archive_from_skopeo_becomes_a_docker_v2_manifest_over_uncompressed_layers() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    let image = SyntheticImage::new("acme/db", "3.1", &[20_000, 1000], 11).with_compression(LayerCompression::Gzip);
    let built = seed(&scratch, &registry, &image, "acme/db:3.1")?;
    let archive = scratch.path().join("db.tar");
    skopeo_copy_to_docker_archive(&registry, "acme/db:3.1", &archive, "quay.io/acme/db:3.1")?;
    let opts = scratch.options(None)?;
    let cache = scratch.cache("cache")?;

    let mut s = spec("quay.io/acme/db:3.1")?;
    s.source = Some(ImageSource::DockerArchive {
        path: archive.clone(),
        reference: None,
    });
    let fetched = fetch_one(s.clone(), &opts, &cache).await?;
    let r = &fetched.record;
    assert_eq!(r.media_type, DOCKER_V2);
    assert_eq!(r.target.as_str(), "acme/db");
    let m = &built.manifests[0];
    // Manifest, config (same bytes as pushed), then the layers skopeo decompressed.
    let mut want = vec![r.digest, m.config];
    want.extend(m.diff_ids.iter().copied());
    assert_eq!(r.blobs, want);
    assert_eq!(
        fs_err::read(cache.path(&m.config))?,
        fs_err::read(built.blob_path(&m.config))?
    );
    let manifest: serde_json::Value = serde_json::from_slice(&fs_err::read(cache.path(&r.digest))?)?;
    assert_eq!(manifest["mediaType"], DOCKER_V2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    assert_eq!(r.total_size, all_sizes(&fetched));

    // Same archive, same bytes; and the tag can be named.
    s.source = Some(ImageSource::DockerArchive {
        path: archive.clone(),
        reference: Some("quay.io/acme/db:3.1".to_owned()),
    });
    let again = fetch_one(s.clone(), &opts, &scratch.cache("again")?).await?;
    assert_eq!(again, fetched);

    s.source = Some(ImageSource::DockerArchive {
        path: archive,
        reference: Some("quay.io/acme/db:9".to_owned()),
    });
    let err = fetch_err(s, &opts, &cache).await?;
    let msg = err.to_string();
    assert!(
        msg.contains("from docker archive")
            && msg.contains("\"quay.io/acme/db:9\" is not in the archive (it has quay.io/acme/db:3.1)"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn platform_filter_rewrites_the_index_and_records_the_source_digest() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    let image = SyntheticImage::new("acme/app", "4.0", &[4000, 4000], 21).with_platforms(&[
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    ]);
    let built = seed(&scratch, &registry, &image, "acme/app:4.0")?;
    let cache = scratch.cache("cache")?;

    let mut s = spec("quay.io/acme/app:4.0")?;
    s.platforms = vec!["linux/arm64".to_owned(), "linux/arm/v7".to_owned()];
    let opts = scratch.options(Some(&registry))?;
    let filtered = fetch_one(s, &opts, &cache).await?;
    let r = &filtered.record;
    assert_eq!(r.source_digest, Some(built.digest));
    assert_ne!(r.digest, built.digest);
    assert_eq!(r.media_type, OCI_INDEX);
    let platforms: Vec<&str> = r.platforms.iter().map(|p| p.platform.as_str()).collect();
    assert_eq!(platforms, vec!["linux/arm64", "linux/arm/v7"]);

    // The rewritten index is the original JSON with only the chosen entries.
    let index_bytes = fs_err::read(cache.path(&r.digest))?;
    assert_eq!(Digest::of(&index_bytes), r.digest);
    let mut original: serde_json::Value = serde_json::from_slice(&fs_err::read(built.blob_path(&built.digest))?)?;
    if let Some(list) = original["manifests"].as_array_mut() {
        list.remove(0);
    }
    assert_eq!(index_bytes, serde_json::to_vec(&original)?);
    let amd64 = &built.manifests[0];
    assert!(!r.blobs.contains(&amd64.digest) && !r.blobs.iter().any(|d| amd64.layers.contains(d)));
    let mut want = vec![r.digest];
    for m in &built.manifests[1..] {
        want.extend([m.digest, m.config]);
        want.extend(m.layers.iter().copied());
    }
    assert_eq!(r.blobs, want);

    // --platform applies to specs that list none; the spec's own list wins.
    let by_default = FetchOptions {
        default_platforms: vec!["linux/arm64".to_owned()],
        ..opts.clone()
    };
    let got = fetch_one(spec("quay.io/acme/app:4.0")?, &by_default, &cache).await?;
    assert_eq!(got.record.platforms.len(), 1);
    assert_eq!(got.record.platforms[0].digest, built.manifests[1].digest);
    assert_eq!(got.record.source_digest, Some(built.digest));

    // Without a filter the index stays byte-identical.
    let whole = fetch_one(spec("quay.io/acme/app:4.0")?, &opts, &cache).await?;
    assert_eq!(whole.record.digest, built.digest);
    assert_eq!(whole.record.source_digest, None);
    assert_eq!(whole.record.platforms.len(), 3);
    Ok(())
}

#[tokio::test]
async fn missing_platform_is_refused_naming_the_platforms_the_image_has() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    let image = SyntheticImage::new("acme/app", "5.0", &[1000], 5).with_platforms(&["linux/amd64", "linux/arm64"]);
    seed(&scratch, &registry, &image, "acme/app:5.0")?;
    let mut s = spec("quay.io/acme/app:5.0")?;
    s.platforms = vec!["linux/amd64".to_owned(), "linux/s390x".to_owned()];
    let err = fetch_err(s, &scratch.options(Some(&registry))?, &scratch.cache("cache")?).await?;
    assert_eq!(
        err.to_string(),
        format!(
            "image quay.io/acme/app:5.0 (pulled from {}): platform linux/s390x not found; the image has linux/amd64, linux/arm64",
            registry.addr()
        )
    );

    // A single-platform image must be the platform asked for.
    seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/one", "1", &[1000], 6),
        "acme/one:1",
    )?;
    let mut s = spec("quay.io/acme/one:1")?;
    s.platforms = vec!["linux/arm64".to_owned()];
    let err = fetch_err(s, &scratch.options(Some(&registry))?, &scratch.cache("cache")?).await?;
    assert!(
        err.to_string()
            .ends_with("the image is single-platform linux/amd64, but linux/arm64 was requested"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn missing_image_is_refused_as_manifest_unknown_naming_the_host_contacted() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/app", "1.0", &[1000], 3),
        "acme/app:1.0",
    )?;
    let err = fetch_err(
        spec("quay.io/acme/app:2.4.0")?,
        &scratch.options(Some(&registry))?,
        &scratch.cache("cache")?,
    )
    .await?;
    assert_eq!(
        err.to_string(),
        format!(
            "image quay.io/acme/app:2.4.0 (pulled from {}): manifest unknown",
            registry.addr()
        )
    );
    assert!(matches!(&err, FetchError::Image { problem, .. } if matches!(**problem, Problem::ManifestUnknown)));
    Ok(())
}

#[tokio::test]
async fn htpasswd_registry_takes_the_docker_config_credentials_and_refuses_wrong_ones() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = Registry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd {
            user: "vendor".to_owned(),
            password: "s3cret-pw".to_owned(),
        },
        tls: false,
    })?;
    let built = seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/app", "1.0", &[2000], 9),
        "acme/app:1.0",
    )?;
    let cache = scratch.cache("cache")?;

    let good = FetchOptions {
        docker_config: Some(registry.docker_config()?),
        ..scratch.options(Some(&registry))?
    };
    let fetched = fetch_one(spec("quay.io/acme/app:1.0")?, &good, &cache).await?;
    assert_eq!(fetched.record.digest, built.digest);

    let wrong_dir = scratch.path().join("wrong");
    let wrong_config = docker_config_for(&wrong_dir, &registry.addr(), Some(("vendor", "not-the-password")))?;
    let wrong = FetchOptions {
        docker_config: Some(wrong_config.clone()),
        ..scratch.options(Some(&registry))?
    };
    let err = fetch_err(spec("quay.io/acme/app:1.0")?, &wrong, &scratch.cache("wrong")?).await?;
    assert_eq!(
        err.to_string(),
        format!(
            "image quay.io/acme/app:1.0 (pulled from {addr}): not authorized: the registry refused the credentials for {addr} from {}",
            wrong_config.display(),
            addr = registry.addr()
        )
    );

    let anonymous = scratch.options(Some(&registry))?;
    let err = fetch_err(spec("quay.io/acme/app:1.0")?, &anonymous, &scratch.cache("anon")?).await?;
    assert!(
        err.to_string().contains("not authorized: anonymous access was refused"),
        "{}",
        chain(&err)
    );
    Ok(())
}

#[tokio::test]
async fn tls_registry_is_trusted_only_with_its_ca() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = Registry::start(RegistryOptions {
        auth: RegistryAuth::Anonymous,
        tls: true,
    })?;
    let built = seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/app", "1.0", &[2000], 13),
        "acme/app:1.0",
    )?;
    let ca = registry.ca_pem_path().context("TLS registry has a CA")?;

    let trusted = FetchOptions {
        ca_certs: vec![ca],
        ..scratch.options(Some(&registry))?
    };
    let fetched = fetch_one(spec("quay.io/acme/app:1.0")?, &trusted, &scratch.cache("ok")?).await?;
    assert_eq!(fetched.record.digest, built.digest);

    // Loopback may use plain HTTP, but a TLS registry never falls back to it.
    let err = fetch_err(
        spec("quay.io/acme/app:1.0")?,
        &scratch.options(Some(&registry))?,
        &scratch.cache("no-ca")?,
    )
    .await?;
    assert_eq!(
        err.to_string(),
        format!(
            "image quay.io/acme/app:1.0 (pulled from {addr}): the TLS certificate of {addr} is not trusted (pass the CA that signed it)",
            addr = registry.addr()
        )
    );
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));
    Ok(())
}

#[tokio::test]
async fn two_specs_mapping_to_one_target_are_refused_naming_both() -> Result<()> {
    let scratch = Scratch::new()?;
    let opts = scratch.options(None)?;
    let cache = scratch.cache("cache")?;
    let specs = [spec("quay.io/acme/app:1.0")?, spec("docker.io/acme/app:1.1")?];
    let err = fetch_images(&specs, &opts, &cache)
        .await
        .err()
        .context("conflict accepted")?;
    assert_eq!(
        err.to_string(),
        "images quay.io/acme/app:1.0 and docker.io/acme/app:1.1 both map to target repository acme/app (hint: set `target` on one of them)"
    );

    let mut other = spec("quay.io/other/app:1.0")?;
    other.target = Some("acme/app".parse()?);
    let err = fetch_images(&[spec("quay.io/acme/app:1.0")?, other], &opts, &cache)
        .await
        .err()
        .context("conflict accepted")?;
    assert!(matches!(err, FetchError::TargetConflict { .. }), "{err}");

    let err = fetch_images(
        &[spec("quay.io/acme/app:1.0")?, spec("quay.io/acme/app:1.0")?],
        &opts,
        &cache,
    )
    .await
    .err()
    .context("duplicate accepted")?;
    assert_eq!(err.to_string(), "image quay.io/acme/app:1.0 is listed twice");
    Ok(())
}

#[tokio::test]
async fn two_tags_of_one_repository_share_the_target_and_the_blobs() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    let a = seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/app", "1.0", &[3000], 31),
        "acme/app:1.0",
    )?;
    let b = seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/app", "1.1", &[3000], 32),
        "acme/app:1.1",
    )?;
    let fetched = fetch_images(
        &[spec("quay.io/acme/app:1.0")?, spec("quay.io/acme/app:1.1")?],
        &scratch.options(Some(&registry))?,
        &scratch.cache("cache")?,
    )
    .await?;
    let digests: Vec<Digest> = fetched.iter().map(|f| f.record.digest).collect();
    assert_eq!(digests, vec![a.digest, b.digest]);
    assert!(fetched.iter().all(|f| f.record.target.as_str() == "acme/app"));
    Ok(())
}

#[tokio::test]
async fn corrupted_layout_blob_is_refused_and_never_cached() -> Result<()> {
    let scratch = Scratch::new()?;
    let layout = scratch.path().join("layout");
    let built = SyntheticImage::new("acme/app", "1.0", &[4096], 17).write_layout(&layout)?;
    let layer = built.manifests[0].layers[0];
    let path = built.blob_path(&layer);
    let mut bytes = fs_err::read(&path)?;
    bytes[1000] ^= 0x01;
    fs_err::write(&path, &bytes)?;

    let cache = scratch.cache("cache")?;
    let mut s = spec("quay.io/acme/app:1.0")?;
    s.source = Some(ImageSource::OciLayout {
        path: layout,
        reference: "1.0".to_owned(),
    });
    let err = fetch_err(s, &scratch.options(None)?, &cache).await?;
    let msg = err.to_string();
    assert!(msg.starts_with("image quay.io/acme/app:1.0 (from OCI layout "), "{msg}");
    assert!(
        msg.contains(&format!("blob {layer} has digest {}", Digest::of(&bytes))),
        "{msg}"
    );
    assert!(!cache.contains(&layer));
    Ok(())
}

#[tokio::test]
async fn parallel_fetch_of_many_images_is_deterministic() -> Result<()> {
    let scratch = Scratch::new()?;
    let registry = anonymous()?;
    let mut specs = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..4u64 {
        let repo = format!("acme/svc{i}");
        let image =
            SyntheticImage::new(&repo, "1.0", &[2000, 3000], 100 + i).with_platforms(&["linux/amd64", "linux/arm64"]);
        let built = seed(&scratch, &registry, &image, &format!("{repo}:1.0"))?;
        expected.insert(i, built.digest);
        specs.push(spec(&format!("quay.io/{repo}:1.0"))?);
    }
    let opts = FetchOptions {
        parallelism: 8,
        ..scratch.options(Some(&registry))?
    };
    let first = fetch_images(&specs, &opts, &scratch.cache("one")?).await?;
    let second = fetch_images(
        &specs,
        &FetchOptions {
            parallelism: 1,
            ..opts.clone()
        },
        &scratch.cache("two")?,
    )
    .await?;
    assert_eq!(first, second);
    for (i, f) in first.iter().enumerate() {
        assert_eq!(Some(&f.record.digest), expected.get(&(i as u64)));
    }
    Ok(())
}

/// Blob downloads the registry logged.
fn blob_gets(registry: &Registry) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| {
            l.contains("response completed") && l.contains("http.request.method=GET") && l.contains("/blobs/sha256:")
        })
        .count()
}

#[tokio::test]
async fn restarted_registry_keeps_its_images_and_cached_blobs_are_not_downloaded_again() -> Result<()> {
    let scratch = Scratch::new()?;
    let mut registry = anonymous()?;
    let built = seed(
        &scratch,
        &registry,
        &SyntheticImage::new("acme/app", "1.0", &[3000, 3000], 41),
        "acme/app:1.0",
    )?;
    let opts = scratch.options(Some(&registry))?;
    let cache = scratch.cache("cache")?;
    let first = fetch_one(spec("quay.io/acme/app:1.0")?, &opts, &cache).await?;
    let after_first = blob_gets(&registry);
    assert!(
        after_first >= 3,
        "config and two layers were downloaded:\n{}",
        registry.log()
    );

    let port = registry.port();
    registry.kill()?;
    assert!(!registry.is_running());
    registry.restart()?;
    assert_eq!(registry.port(), port);
    let second = fetch_one(spec("quay.io/acme/app:1.0")?, &opts, &cache).await?;
    assert_eq!(second, first);
    assert_eq!(second.record.digest, built.digest);
    assert_eq!(blob_gets(&registry), after_first, "cached blobs were fetched again");
    Ok(())
}
