//! Registry push against the real `distribution` registry on loopback (anonymous, htpasswd,
//! TLS with a test CA), checked with skopeo as the independent client and with the registry's
//! own request log.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent::registry::{BlobSource, Cause, PushError, PushProgress, PushReport, RegistryTarget, push_images};
use schemas::Digest;
use schemas::manifest::{ImageRecord, PlatformRecord};
use tests::oci_fixtures::{
    BuiltImage, LayerCompression, OCI_MANIFEST, SyntheticImage, skopeo_copy_to_oci_layout, skopeo_inspect_raw,
};
use tests::registry::{Registry, RegistryAuth, RegistryOptions};

const MIB: usize = 1 << 20;

/// Synthetic images laid out in one file the way a bundle stores blobs: each blob once, byte
/// for byte, at a known offset (with filler between, so a wrong offset cannot pass).
struct TestBundle {
    dir: tempfile::TempDir,
    file: PathBuf,
    blobs: BTreeMap<Digest, BlobSource>,
    images: Vec<ImageRecord>,
}

impl TestBundle {
    fn new(images: &[SyntheticImage]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let file = dir.path().join("bundle.sealift");
        let mut out = std::io::BufWriter::new(fs_err::File::create(&file).unwrap());
        let mut offset = 0u64;
        let mut blobs = BTreeMap::new();
        let mut records = Vec::new();
        for image in images {
            let built = image.write_layout(&layout).unwrap();
            // Bundle order: the top manifest or index, then per platform its manifest, config
            // and layers, each once.
            let mut order = vec![built.digest];
            for m in &built.manifests {
                order.push(m.digest);
                order.push(m.config);
                order.extend(&m.layers);
            }
            let mut listed = Vec::new();
            for d in order {
                if listed.contains(&d) {
                    continue;
                }
                listed.push(d);
                if blobs.contains_key(&d) {
                    continue;
                }
                out.write_all(&[0x5a; 512]).unwrap();
                offset += 512;
                let mut blob = fs_err::File::open(built.blob_path(&d)).unwrap();
                let size = std::io::copy(&mut blob, &mut out).unwrap();
                blobs.insert(
                    d,
                    BlobSource {
                        file: file.clone(),
                        offset,
                        size,
                    },
                );
                offset += size;
            }
            records.push(record(image, &built, listed, &blobs));
        }
        out.write_all(&[0x5a; 512]).unwrap();
        out.flush().unwrap();
        Self {
            dir,
            file,
            blobs,
            images: records,
        }
    }

    /// Flips one byte of blob `d` at `at` bytes into it.
    fn corrupt(&self, d: &Digest, at: u64) {
        let source = &self.blobs[d];
        let mut f = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.file)
            .unwrap();
        f.seek(SeekFrom::Start(source.offset + at)).unwrap();
        let mut byte = [0u8];
        f.read_exact(&mut byte).unwrap();
        f.seek(SeekFrom::Start(source.offset + at)).unwrap();
        f.write_all(&[byte[0] ^ 0x01]).unwrap();
    }

    fn size_of(&self, d: &Digest) -> u64 {
        self.blobs[d].size
    }
}

fn record(
    image: &SyntheticImage,
    built: &BuiltImage,
    blobs: Vec<Digest>,
    sources: &BTreeMap<Digest, BlobSource>,
) -> ImageRecord {
    let platforms = if built.is_index() {
        built
            .manifests
            .iter()
            .map(|m| PlatformRecord {
                platform: m.platform.clone(),
                digest: m.digest,
                size: m.size,
                media_type: OCI_MANIFEST.to_owned(),
            })
            .collect()
    } else {
        Vec::new()
    };
    ImageRecord {
        name: format!("quay.io/{}:{}", image.repo, image.tag).parse().unwrap(),
        target: image.repo.parse().unwrap(),
        tags: vec![image.tag.clone()],
        digest: built.digest,
        source_digest: None,
        media_type: built.media_type.clone(),
        size: built.size,
        platforms,
        total_size: blobs.iter().map(|d| sources[d].size).sum(),
        blobs,
    }
}

fn target_for(registry: &Registry) -> RegistryTarget {
    RegistryTarget {
        url: registry.url(),
        path_prefix: None,
        credentials: registry.credentials().map(|(u, p)| (u.to_owned(), p.to_owned())),
        ca_pem: registry.ca_pem_path(),
        insecure_http: !registry.options().tls,
    }
}

async fn push(target: &RegistryTarget, bundle: &TestBundle) -> Result<PushReport, PushError> {
    push_images(
        target,
        &bundle.images,
        &bundle.blobs,
        4,
        Arc::new(PushProgress::default()),
    )
    .await
}

/// One request from the registry's access log.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    uri: String,
    status: u16,
}

impl Request {
    fn is_blob_upload(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") && self.uri.contains("/blobs/uploads/")
    }

    fn is_mount(&self) -> bool {
        self.method == "POST" && self.uri.contains("mount=")
    }

    /// The digest of a completed blob upload (`PUT …?digest=…` answered 201).
    fn committed_blob(&self) -> Option<Digest> {
        if self.method != "PUT" || self.status != 201 || !self.uri.contains("/blobs/uploads/") {
            return None;
        }
        let (_, rest) = self.uri.split_once("digest=")?;
        let value = rest.split('&').next()?.replace("%3A", ":").replace("%3a", ":");
        value.parse().ok()
    }

    fn is_manifest_put(&self) -> bool {
        self.method == "PUT" && self.uri.contains("/manifests/")
    }
}

/// The access-log lines (`… "METHOD URI HTTP/1.1" STATUS …`) of `log`.
fn requests(log: &str) -> Vec<Request> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("] \"")?;
            let (request, rest) = rest.split_once('"')?;
            let mut parts = request.split(' ');
            let method = parts.next()?.to_owned();
            let uri = parts.next()?.to_owned();
            let status = rest.split_whitespace().next()?.parse().ok()?;
            Some(Request { method, uri, status })
        })
        .collect()
}

fn requests_since(registry: &Registry, from: usize) -> Vec<Request> {
    requests(registry.log().get(from..).unwrap_or_default())
}

/// For every index and platform manifest: the registry serves the same bytes (skopeo inspect
/// --raw hashes to the digest) and skopeo copies the image out; tags resolve to the top digest.
fn assert_served(registry: &Registry, prefix: &str, bundle: &TestBundle) {
    let out = bundle.dir.path().join("copied");
    for (i, image) in bundle.images.iter().enumerate() {
        let repository = format!("{prefix}{}", image.target);
        let digests = std::iter::once(image.digest).chain(image.platforms.iter().map(|p| p.digest));
        for (j, d) in digests.enumerate() {
            let reference = format!("{repository}@{d}");
            let raw = skopeo_inspect_raw(registry, &reference).unwrap();
            assert_eq!(Digest::of(&raw), d, "{reference}");
            skopeo_copy_to_oci_layout(registry, &reference, &out, &format!("image-{i}-{j}"))
                .unwrap_or_else(|e| panic!("skopeo copy {reference}: {e:#}"));
        }
        for tag in &image.tags {
            let raw = skopeo_inspect_raw(registry, &format!("{repository}:{tag}")).unwrap();
            assert_eq!(Digest::of(&raw), image.digest, "{repository}:{tag}");
        }
    }
}

fn sample_images() -> Vec<SyntheticImage> {
    vec![
        SyntheticImage::new("acme/app", "1.0", &[300_000, 1_000_000], 1),
        SyntheticImage::new("acme/multi", "2.0", &[200_000, 500_000], 2)
            .with_platforms(&["linux/amd64", "linux/arm64/v8"])
            .with_compression(LayerCompression::Gzip),
        // Same seed and layer sizes as acme/app: the same layers in another repository.
        SyntheticImage::new("acme/sidecar", "1.0", &[300_000, 1_000_000], 1),
    ]
}

fn distinct_blob_count(bundle: &TestBundle) -> usize {
    let manifests: BTreeSet<Digest> = bundle
        .images
        .iter()
        .flat_map(|i| std::iter::once(i.digest).chain(i.platforms.iter().map(|p| p.digest)))
        .collect();
    bundle.blobs.keys().filter(|d| !manifests.contains(d)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_images_byte_identical_and_repush_uploads_nothing() {
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let bundle = TestBundle::new(&sample_images());
    let target = target_for(&registry);

    let progress = Arc::new(PushProgress::default());
    let report = push_images(&target, &bundle.images, &bundle.blobs, 4, progress.clone())
        .await
        .unwrap();
    // acme/sidecar's two layers come by cross-repository mount from acme/app.
    assert_eq!(report.blobs_mounted, 2, "{report:?}");
    assert_eq!(report.blobs_uploaded, distinct_blob_count(&bundle), "{report:?}");
    assert_eq!(report.blobs_skipped, 0);
    // 1 + (2 platforms + index) + 1 manifests, 3 tags.
    assert_eq!((report.manifests_pushed, report.tags_pushed), (5, 3), "{report:?}");
    let snapshot = progress.snapshot();
    assert!(!snapshot.running);
    assert_eq!(snapshot.bytes_done, snapshot.bytes_total);
    assert_eq!(snapshot.blobs_done, snapshot.blobs_total);
    assert_eq!((snapshot.images_done, snapshot.images_total), (3, 3));
    let log = requests(&registry.log());
    assert_eq!(log.iter().filter(|r| r.is_mount() && r.status == 201).count(), 2);
    // Tags only after every manifest: the first tag PUT follows the last digest PUT.
    let manifest_puts: Vec<&Request> = log.iter().filter(|r| r.is_manifest_put()).collect();
    let first_tag = manifest_puts
        .iter()
        .position(|r| !r.uri.contains("/manifests/sha256:"))
        .unwrap();
    assert!(
        manifest_puts[first_tag..]
            .iter()
            .all(|r| !r.uri.contains("/manifests/sha256:")),
        "{manifest_puts:#?}"
    );
    assert_served(&registry, "", &bundle);

    // The same images again: nothing is uploaded, mounted or re-tagged.
    let before = registry.log().len();
    let again = push(&target, &bundle).await.unwrap();
    assert_eq!(
        again,
        PushReport {
            blobs_skipped: report.blobs_uploaded + report.blobs_mounted,
            manifests_skipped: 5,
            tags_skipped: 3,
            ..PushReport::default()
        }
    );
    let uploads: Vec<Request> = requests_since(&registry, before)
        .into_iter()
        .filter(|r| r.is_blob_upload() || r.is_manifest_put())
        .collect();
    assert!(uploads.is_empty(), "re-push sent {uploads:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_with_htpasswd_credentials_and_names_refused_ones() {
    let registry = Registry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd {
            user: "pusher".into(),
            password: "s3cret-pass".into(),
        },
        tls: false,
    })
    .unwrap();
    let bundle = TestBundle::new(&sample_images()[..2]);
    let target = target_for(&registry);

    let mut wrong = target.clone();
    wrong.credentials = Some(("pusher".into(), "wrong".into()));
    let err = push(&wrong, &bundle).await.unwrap_err();
    assert!(
        matches!(&err, PushError::Registry { cause: Cause::CredentialsRefused, registry: r, .. } if *r == registry.addr()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "connecting for repository acme/app on registry {} failed: the registry refused the configured credentials",
            registry.addr()
        )
    );
    let mut anonymous = target.clone();
    anonymous.credentials = None;
    let err = push(&anonymous, &bundle).await.unwrap_err();
    assert!(
        matches!(
            &err,
            PushError::Registry {
                cause: Cause::CredentialsRequired,
                ..
            }
        ),
        "{err:?}"
    );

    let report = push(&target, &bundle).await.unwrap();
    assert_eq!(report.blobs_uploaded, distinct_blob_count(&bundle));
    assert_served(&registry, "", &bundle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_over_tls_trusting_the_configured_ca_only() {
    let registry = Registry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd {
            user: "pusher".into(),
            password: "tls-pass".into(),
        },
        tls: true,
    })
    .unwrap();
    let bundle = TestBundle::new(&sample_images()[1..2]);
    let target = target_for(&registry);
    assert!(target.url.starts_with("https://"));

    let mut no_ca = target.clone();
    no_ca.ca_pem = None;
    let err = push(&no_ca, &bundle).await.unwrap_err();
    assert!(
        matches!(
            &err,
            PushError::Registry {
                cause: Cause::UntrustedCertificate,
                ..
            }
        ),
        "{err:?}"
    );

    let report = push(&target, &bundle).await.unwrap();
    assert_eq!(report.blobs_uploaded, distinct_blob_count(&bundle));
    assert_eq!((report.manifests_pushed, report.tags_pushed), (3, 1));
    assert_served(&registry, "", &bundle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_plain_http_unless_configured() {
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let bundle = TestBundle::new(&sample_images()[..1]);
    let mut target = target_for(&registry);
    target.insecure_http = false;
    let before = registry.log().len();
    let err = push(&target, &bundle).await.unwrap_err();
    assert!(matches!(err, PushError::PlainHttpNotAllowed { .. }), "{err:?}");
    assert!(requests_since(&registry, before).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_the_path_prefix() {
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let bundle = TestBundle::new(&[
        SyntheticImage::new("acme/big", "3.0", &[16 * MIB, 16 * MIB, 16 * MIB, 16 * MIB], 7),
        SyntheticImage::new("acme/app", "1.0", &[300_000], 1),
    ]);
    let mut target = target_for(&registry);
    target.path_prefix = Some("mirror/sealift".into());

    let started = Instant::now();
    let report = push(&target, &bundle).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "pushed {} bytes in {seconds:.2} s: {:.0} MiB/s",
        report.bytes_uploaded,
        report.bytes_uploaded as f64 / seconds / MIB as f64
    );
    let log = requests(&registry.log());
    let outside: Vec<&Request> = log
        .iter()
        .filter(|r| r.uri != "/v2/" && !r.uri.starts_with("/v2/mirror/sealift/acme/"))
        .collect();
    assert!(outside.is_empty(), "{outside:#?}");
    assert_served(&registry, "mirror/sealift/", &bundle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_corrupt_blob_and_pushes_no_manifest_or_tag() {
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let bundle = TestBundle::new(&[
        SyntheticImage::new("acme/good", "1.0", &[100_000, 400_000], 5),
        SyntheticImage::new("acme/bad", "1.0", &[100_000, 400_000], 6),
    ]);
    let bad = &bundle.images[1];
    let layer = *bad.blobs.last().unwrap();
    bundle.corrupt(&layer, bundle.size_of(&layer) / 2);
    let target = target_for(&registry);

    let err = push(&target, &bundle).await.unwrap_err();
    let entry = format!("blobs/sha256/{}", layer.hex());
    assert!(
        matches!(&err, PushError::CorruptEntry { expected, .. } if *expected == layer),
        "{err:?}"
    );
    assert_eq!(err.corrupt_entry(), Some(entry.as_str()));
    assert!(
        err.to_string()
            .starts_with(&format!("bundle entry {entry} in {} is corrupt", bundle.file.display())),
        "{err}"
    );

    let log = requests(&registry.log());
    assert!(!log.iter().any(Request::is_manifest_put), "{log:#?}");
    assert!(!log.iter().any(|r| r.committed_blob() == Some(layer)), "{log:#?}");
    for image in &bundle.images {
        for reference in [
            format!("{}@{}", image.target, image.digest),
            format!("{}:1.0", image.target),
        ] {
            let found = skopeo_inspect_raw(&registry, &reference);
            assert!(found.is_err(), "{reference} is in the registry");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_corrupt_manifest_before_uploading_anything() {
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let bundle = TestBundle::new(&sample_images()[1..2]);
    let platform = bundle.images[0].platforms[1].digest;
    bundle.corrupt(&platform, 10);
    let target = target_for(&registry);

    let before = registry.log().len();
    let err = push(&target, &bundle).await.unwrap_err();
    assert_eq!(
        err.corrupt_entry(),
        Some(format!("blobs/sha256/{}", platform.hex()).as_str())
    );
    let uploads: Vec<Request> = requests_since(&registry, before)
        .into_iter()
        .filter(|r| r.is_blob_upload() || r.is_manifest_put())
        .collect();
    assert!(uploads.is_empty(), "{uploads:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_the_registry_dies_without_resending_committed_blobs() {
    let mut registry = Registry::start(RegistryOptions::default()).unwrap();
    let bundle = TestBundle::new(&[SyntheticImage::new("acme/big", "1.0", &[16 * MIB; 10], 9)]);
    let target = target_for(&registry);
    let total_blobs = distinct_blob_count(&bundle);

    let progress = Arc::new(PushProgress::default());
    let running = tokio::spawn({
        let (target, images, blobs, progress) = (
            target.clone(),
            bundle.images.clone(),
            bundle.blobs.clone(),
            progress.clone(),
        );
        async move { push_images(&target, &images, &blobs, 2, progress).await }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.blobs_done.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < deadline, "no blob committed within 60 s");
        assert!(!running.is_finished(), "the push ended before the kill");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The registry logs a request just after answering it: wait for those lines.
    while requests(&registry.log())
        .iter()
        .filter_map(Request::committed_blob)
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "the log shows no committed blob");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    registry.kill().unwrap();
    let err = running.await.unwrap().unwrap_err();
    assert!(err.to_string().contains(&registry.addr()), "{err}");
    let done_at_kill = progress.blobs_done.load(Ordering::Relaxed) as usize;
    assert!(done_at_kill < total_blobs, "everything was pushed before the kill");

    let before_log = registry.log();
    let committed_before: BTreeSet<Digest> = requests(&before_log)
        .iter()
        .filter_map(Request::committed_blob)
        .collect();
    assert!(committed_before.len() >= 3, "{committed_before:?}");

    registry.restart().unwrap();
    let report = push(&target, &bundle).await.unwrap();
    let after = requests_since(&registry, before_log.len());
    let committed_after: BTreeSet<Digest> = after.iter().filter_map(Request::committed_blob).collect();
    let sent_again: Vec<&Digest> = committed_before.intersection(&committed_after).collect();
    assert!(
        sent_again.is_empty(),
        "uploaded again after the restart: {sent_again:?}"
    );
    assert_eq!(committed_after.len(), report.blobs_uploaded);
    assert!(report.blobs_skipped >= committed_before.len(), "{report:?}");
    assert_eq!(report.blobs_skipped + report.blobs_uploaded, total_blobs, "{report:?}");
    let bytes_before: u64 = committed_before.iter().map(|d| bundle.size_of(d)).sum();
    let bytes_all: u64 = bundle.images[0].total_size - bundle.images[0].size;
    assert!(report.bytes_uploaded <= bytes_all - bytes_before, "{report:?}");
    // Each upload after the restart is one POST and one PUT: nothing was retried.
    let upload_requests = after.iter().filter(|r| r.is_blob_upload()).count();
    assert_eq!(upload_requests, 2 * report.blobs_uploaded, "{after:#?}");
    assert_served(&registry, "", &bundle);
}

/// `distribution` writes a blob's link file in place: a crash while writing it leaves it empty,
/// and every HEAD of that blob in that repository answers 500 from then on. The push uploads
/// such a blob again (which rewrites the link) instead of failing on the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_link_a_crash_emptied_is_uploaded_again() {
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let bundle = TestBundle::new(&sample_images()[..1]);
    let target = target_for(&registry);
    let first = push(&target, &bundle).await.unwrap();
    assert!(first.blobs_uploaded >= 2, "{first:?}");

    let layers = registry
        .storage_dir()
        .join("docker/registry/v2/repositories/acme/app/_layers/sha256");
    let hex = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .min()
        .unwrap();
    std::fs::write(layers.join(&hex).join("link"), b"").unwrap();
    let head = reqwest::Client::new()
        .head(format!("{}/v2/acme/app/blobs/sha256:{hex}", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 500, "the registry's answer to an empty link");

    let before = registry.log().len();
    let again = push(&target, &bundle).await.unwrap();
    assert_eq!(again.blobs_uploaded, 1, "{again:?}");
    assert_eq!(again.blobs_skipped, first.blobs_uploaded - 1, "{again:?}");
    let uploads: Vec<Request> = requests_since(&registry, before)
        .into_iter()
        .filter(|r| r.is_blob_upload())
        .collect();
    assert_eq!(uploads.len(), 2, "one POST and one PUT: {uploads:#?}");
    assert!(uploads[1].uri.contains(&hex), "{uploads:#?}");
    assert_served(&registry, "", &bundle);
}

/// A bearer-token registry: `distribution` with `auth.token`, and a token server on loopback
/// that checks basic credentials and signs RS256 JWTs with a key made by the `openssl` CLI.
mod token_auth {
    use std::process::{Command, Stdio};
    use std::sync::atomic::AtomicUsize;

    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    use super::*;

    const USER: &str = "pusher";
    const PASSWORD: &str = "token-pass";
    const SERVICE: &str = "sealift-test-registry";
    const ISSUER: &str = "sealift-test-issuer";

    struct TokenServer {
        dir: PathBuf,
        issued: AtomicUsize,
        refused: AtomicUsize,
    }

    fn openssl(args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn token(
        State(server): State<Arc<TokenServer>>,
        Query(query): Query<Vec<(String, String)>>,
        headers: HeaderMap,
    ) -> Result<axum::Json<serde_json::Value>, StatusCode> {
        let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            server.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StatusCode::UNAUTHORIZED);
        }
        // Grants what each scope asks for: `repository:NAME:ACTIONS`.
        let access: Vec<serde_json::Value> = query
            .iter()
            .filter(|(k, _)| k == "scope")
            .filter_map(|(_, scope)| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let cert_pem = fs_err::read_to_string(server.dir.join("token.crt")).unwrap();
        let cert_b64: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [cert_b64] });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": USER, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now - 10,
            "jti": format!("jti-{}", server.issued.load(Ordering::Relaxed)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let dir = server.dir.clone();
        let signature = tokio::task::spawn_blocking(move || {
            let mut child = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(dir.join("token.key"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            (signing_input, out.stdout)
        })
        .await
        .unwrap();
        server.issued.fetch_add(1, Ordering::Relaxed);
        let jwt = format!("{}.{}", signature.0, URL_SAFE_NO_PAD.encode(signature.1));
        Ok(axum::Json(serde_json::json!({ "token": jwt, "expires_in": 300 })))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pushes_with_bearer_tokens_from_the_registry_token_server() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("token.key");
        let crt = dir.path().join("token.crt");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sealift token issuer",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
        ]);
        let server = Arc::new(TokenServer {
            dir: dir.path().to_owned(),
            issued: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token))
            .with_state(server.clone());
        let serving = tokio::spawn(async move { axum::serve(listener, app).await });
        let registry = Registry::start(RegistryOptions {
            auth: RegistryAuth::Token {
                user: USER.into(),
                password: PASSWORD.into(),
                realm,
                service: SERVICE.into(),
                issuer: ISSUER.into(),
                root_cert_bundle: crt.clone(),
            },
            tls: false,
        })
        .unwrap();

        let bundle = TestBundle::new(&sample_images());
        let target = target_for(&registry);
        assert_eq!(target.credentials, Some((USER.into(), PASSWORD.into())));
        let mut wrong = target.clone();
        wrong.credentials = Some((USER.into(), "wrong".into()));
        let err = push(&wrong, &bundle).await.unwrap_err();
        assert!(
            matches!(
                &err,
                PushError::Registry {
                    cause: Cause::CredentialsRefused,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(server.refused.load(Ordering::Relaxed) > 0);

        let report = push(&target, &bundle).await.unwrap();
        assert!(server.issued.load(Ordering::Relaxed) > 0);
        // The token only covers the pushed repository, so mounts fall back to uploads.
        assert_eq!(
            report.blobs_uploaded + report.blobs_mounted,
            distinct_blob_count(&bundle) + 2
        );
        assert_eq!((report.manifests_pushed, report.tags_pushed), (5, 3), "{report:?}");
        for image in &bundle.images {
            let digests = std::iter::once(image.digest).chain(image.platforms.iter().map(|p| p.digest));
            for d in digests {
                let raw = skopeo_inspect_raw(&registry, &format!("{}@{d}", image.target)).unwrap();
                assert_eq!(Digest::of(&raw), d);
            }
            let tagged = skopeo_inspect_raw(&registry, &format!("{}:{}", image.target, image.tags[0])).unwrap();
            assert_eq!(Digest::of(&tagged), image.digest);
        }
        let again = push(&target, &bundle).await.unwrap();
        assert_eq!(
            (again.blobs_uploaded, again.blobs_mounted, again.bytes_uploaded),
            (0, 0, 0)
        );
        serving.abort();
    }
}
