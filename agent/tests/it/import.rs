//! Trusted import through the real HTTP API and the real `sealift-agent import` CLI, with
//! the real registry and skopeo. Every refusal is checked to change nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use agent::config::AgentConfig;
use agent::service::Agent;
use schemas::Timestamp;
use tests::oci_fixtures::skopeo_inspect_raw;
use tests::registry::{Registry, RegistryOptions};

pub(crate) use super::harness::{ADMIN, VIEWER};
use super::harness::{AgentYaml, write_agent_dir};
/// SOURCE_DATE_EPOCH of test bundles: 2026-01-01.
pub(crate) use super::vendor::{CREATED, Vendor};

/// A running agent on loopback with its own store and target registry.
pub(crate) struct RunningAgent {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) agent: Arc<Agent>,
    pub(crate) url: String,
    pub(crate) target: Registry,
    pub(crate) _server: tokio::task::JoinHandle<()>,
}

pub(crate) fn write_config(dir: &Path, vendor: &Vendor, target: &Registry, product: &str, max_bytes: &str) -> PathBuf {
    write_agent_dir(
        dir,
        &vendor.roots,
        AgentYaml {
            listen: "127.0.0.1:0",
            product,
            max_bytes,
            registry: &target.addr(),
            extra: "",
        },
    )
}

pub(crate) async fn start_agent_in(dir: tempfile::TempDir, target: Registry, now: i64) -> RunningAgent {
    let cfg = AgentConfig::load(&dir.path().join("agent.yaml")).unwrap();
    let agent = Arc::new(Agent::open_with_clock(cfg, Box::new(move || Timestamp::from_unix(now).unwrap())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = agent::api::router(agent.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    RunningAgent {
        dir,
        agent,
        url,
        target,
        _server: server,
    }
}

pub(crate) async fn start_agent(vendor: &Vendor, product: &str, max_bytes: &str, now: i64) -> RunningAgent {
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    write_config(dir.path(), vendor, &target, product, max_bytes);
    start_agent_in(dir, target, now).await
}

/// Runs `sealift-agent import …` against the agent.
pub(crate) async fn cli_import(a: &RunningAgent, file: &Path, token: &str, extra: &[&str]) -> std::process::Output {
    let (url, file, token) = (a.url.clone(), file.to_owned(), token.to_owned());
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
            .arg("import")
            .arg(&file)
            .args(["--server", &url, "--token", &token])
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Everything a refusal must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) trust: Vec<u8>,
    pub(crate) index: Vec<u8>,
    pub(crate) bundles: Vec<String>,
    pub(crate) uploads: Vec<String>,
    pub(crate) registry: Vec<String>,
}

pub(crate) fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Repositories, tags and manifest revisions in the registry's storage.
pub(crate) fn registry_state(r: &Registry) -> Vec<String> {
    let root = r.storage_dir();
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&root).sort_by_file_name().into_iter().flatten() {
        let p = e.path().strip_prefix(&root).unwrap().display().to_string();
        if p.contains("/_manifests/") {
            out.push(p);
        }
    }
    out
}

pub(crate) fn snapshot(a: &RunningAgent) -> Snapshot {
    let store = a.dir.path().join("store");
    Snapshot {
        trust: std::fs::read(store.join("trust.json")).unwrap_or_default(),
        index: std::fs::read(store.join("index.json")).unwrap_or_default(),
        bundles: list(&store.join("bundles")),
        uploads: list(&store.join("uploads")),
        registry: registry_state(&a.target),
    }
}

pub(crate) fn last_audit(a: &RunningAgent) -> agent::audit::AuditRecord {
    a.agent.audit.read().unwrap().pop().expect("an audit record")
}

pub(crate) fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 2026-03-01: after the test bundles' creation, before their expiry.
pub(crate) const NOW: i64 = CREATED + 59 * 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_sample_app_and_loads_every_image_into_the_registry() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let v2 = vendor.build_plain("2.0.0", 2, &[]);
    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let out = cli_import(&a, &v1, ADMIN, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("imported sample-app 1.0.0 (sequence 1)"), "{text}");
    assert!(text.contains("image    quay.io/sealift-sample/web:1.0.0"), "{text}");
    let out = cli_import(&a, &v2, ADMIN, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Versions, newest first.
    let out = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .args(["versions", "--server", &a.url, "--token", VIEWER])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let p2 = text.find("2.0.0").expect("2.0.0 listed");
    let p1 = text.find("1.0.0").expect("1.0.0 listed");
    assert!(p2 < p1, "{text}");

    // Every index and platform manifest is in the registry byte for byte, and skopeo copies it.
    let head = schemas::inspect::read_metadata(
        &v1,
        keys::TrustedRoots::from_envelopes(&keys::root_dir::load(&vendor.roots).unwrap()).unwrap(),
    )
    .unwrap()
    .0;
    for image in &head.manifest().images {
        let mut digests = vec![image.digest];
        digests.extend(image.platforms.iter().map(|p| p.digest));
        for d in digests {
            let reference = format!("{}@{d}", image.target);
            let raw = skopeo_inspect_raw(&a.target, &reference).unwrap();
            assert_eq!(schemas::Digest::of(&raw), d, "{reference}");
            let dest = tempfile::tempdir().unwrap();
            let copied = Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--src-tls-verify=false", "--quiet"])
                .arg(format!("docker://{}/{reference}", a.target.addr()))
                .arg(format!("oci:{}:x", dest.path().display()))
                .output()
                .unwrap();
            assert!(copied.status.success(), "skopeo copy {reference}: {}", stderr(&copied));
        }
        let tagged = skopeo_inspect_raw(&a.target, &format!("{}:{}", image.target, image.tags[0])).unwrap();
        assert_eq!(schemas::Digest::of(&tagged), image.digest);
    }

    // The same bundle again: idempotent, nothing uploaded.
    let before = snapshot(&a);
    let out = cli_import(&a, &v1, ADMIN, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("already imported"), "{text}");
    assert!(text.contains("0 blobs uploaded"), "{text}");
    let after = snapshot(&a);
    assert_eq!(before.index, after.index);
    assert_eq!(before.bundles, after.bundles);
    assert_eq!(before.registry, after.registry);
}

/// Imports `file` and expects a refusal with `code` that changed nothing.
async fn assert_refused(a: &RunningAgent, file: &Path, extra: &[&str], code: &str, message: &str) {
    let before = snapshot(a);
    let out = cli_import(a, file, ADMIN, extra).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "not refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr(&out);
    assert!(err.contains(&format!("({code})")), "expected code {code}: {err}");
    assert!(err.contains(message), "expected {message:?}: {err}");
    assert_eq!(snapshot(a), before, "refusal {code} changed state");
    let audit = last_audit(a);
    assert_eq!(
        (audit.outcome.as_str(), audit.code.as_deref()),
        ("refused", Some(code)),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_reason_and_change_nothing() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 5, &[]);
    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    assert!(cli_import(&a, &v1, ADMIN, &[]).await.status.success());

    // Same version, lower sequence: a replayed older build.
    let older = vendor.build_plain("1.0.0", 4, &[]);
    assert_refused(&a, &older, &[], "older_build", "already accepted with sequence 5").await;
    // The head verified before the refusal: the audit record names its version.
    assert_eq!(last_audit(&a).version.as_deref(), Some("1.0.0"));
    // Raising minSequence revokes lower builds.
    let v2 = vendor.build_plain("2.0.0", 10, &["--min-sequence", "9"]);
    assert!(cli_import(&a, &v2, ADMIN, &[]).await.status.success());
    let revoked = vendor.build_plain("2.0.0", 8, &[]);
    assert_refused(&a, &revoked, &[], "below_min_sequence", "below the minimum sequence 9").await;
    assert_eq!(last_audit(&a).version.as_deref(), Some("2.0.0"));
    // --allow-older admits it, audited as a warning.
    let out = cli_import(&a, &older, ADMIN, &["--allow-older"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        a.agent
            .audit
            .read()
            .unwrap()
            .iter()
            .any(|r| r.code.as_deref() == Some("allow_older"))
    );

    // Signed by someone else's root.
    let stranger = Vendor::new();
    let foreign = stranger.build_plain("3.0.0", 20, &[]);
    assert_refused(&a, &foreign, &[], "root_chain_untrusted", "root chain is not trusted").await;
    // Its head did not verify: no version is claimed for it.
    assert_eq!(last_audit(&a).version, None);

    // 100 random byte flips, into an agent that does not hold the bundle: the whole file is
    // sent and verified. (An agent holding its identity takes only the head, whose every
    // byte still counts: see `restage.rs`.)
    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let bytes = std::fs::read(&v1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x5eed_u64;
    for i in 0..100 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let at = (seed >> 33) as usize % bytes.len();
        let mut m = bytes.clone();
        m[at] ^= 1 << (i % 8);
        let f = dir.path().join(format!("flip-{i}.sealift"));
        std::fs::write(&f, &m).unwrap();
        let before = snapshot(&a);
        let out = cli_import(&a, &f, ADMIN, &[]).await;
        // A flipped byte must never be accepted.
        assert_eq!(out.status.code(), Some(1), "flip at {at} accepted");
        assert_eq!(snapshot(&a), before, "flip at {at} changed state");
        assert_eq!(last_audit(&a).outcome, "refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_product_and_space_refusals() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &["--valid-for", "30d"]);
    // Expired: the clock is past the install window.
    let a = start_agent(&vendor, "sample-app", "10Gi", CREATED + 31 * 86_400).await;
    assert_refused(&a, &v1, &[], "expired", "expired at").await;
    assert_eq!(last_audit(&a).version.as_deref(), Some("1.0.0"));
    // ...but admitted as a restore target.
    let out = cli_import(&a, &v1, ADMIN, &["--for-restore"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(a.agent.store.list()[0].restore_only);

    // Created in the future of the agent's clock.
    let a = start_agent(&vendor, "sample-app", "10Gi", CREATED - 2 * 3600).await;
    assert_refused(&a, &v1, &[], "created_in_future", "more than 3600s after the clock").await;

    // Wrong product.
    let a = start_agent(&vendor, "other-product", "10Gi", NOW).await;
    assert_refused(&a, &v1, &[], "wrong_product", "expected \"other-product\"").await;

    // maxBytes: refused up front, before any byte is uploaded.
    let a = start_agent(&vendor, "sample-app", "1000", NOW).await;
    assert_refused(&a, &v1, &[], "store_full", "need").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_behind_the_floor_is_refused() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let v2 = vendor.build_plain("2.0.0", 2, &[]);
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    write_config(dir.path(), &vendor, &target, "sample-app", "10Gi");
    let a = start_agent_in(dir, target, NOW).await;
    assert!(cli_import(&a, &v1, ADMIN, &[]).await.status.success());
    // Restart the agent with its clock set back a week: the floor is NOW.
    let RunningAgent {
        dir, target, _server, ..
    } = a;
    _server.abort();
    let a = start_agent_in(dir, target, NOW - 7 * 86_400).await;
    assert_refused(&a, &v2, &[], "clock_behind_floor", "behind the clock floor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_and_viewers_cannot_mutate() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let before = snapshot(&a);
    let client = reqwest::Client::new();
    let r = client.post(format!("{}/api/v1/uploads", a.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{}/api/v1/uploads", a.url))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{}/api/v1/uploads", a.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client.get(format!("{}/api/v1/versions", a.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{}/api/v1/versions", a.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = cli_import(&a, &v1, VIEWER, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    assert_eq!(snapshot(&a), before);
    let audit = a.agent.audit.read().unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.token == "victor" && r.code.as_deref() == Some("forbidden"))
    );
    assert!(
        audit
            .iter()
            .any(|r| r.token == "-" && r.code.as_deref() == Some("unauthorized"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_after_an_agent_restart() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let bytes = std::fs::read(&v1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    write_config(dir.path(), &vendor, &target, "sample-app", "10Gi");
    let a = start_agent_in(dir, target, NOW).await;
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{}/api/v1/uploads", a.url))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "size": bytes.len() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let cut = bytes.len() * 2 / 3;
    let r = client
        .put(format!("{}/api/v1/uploads/{id}?offset=0", a.url))
        .bearer_auth(ADMIN)
        .body(bytes[..cut].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A part at the wrong offset: 409 naming the expected one.
    let r = client
        .put(format!("{}/api/v1/uploads/{id}?offset=7", a.url))
        .bearer_auth(ADMIN)
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["expectedOffset"].as_u64(), Some(cut as u64));

    // Restart: the upload resumes from its last verified entry boundary.
    let RunningAgent {
        dir, target, _server, ..
    } = a;
    _server.abort();
    let a = start_agent_in(dir, target, NOW).await;
    let v: serde_json::Value = client
        .get(format!("{}/api/v1/uploads/{id}", a.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resume = v["offset"].as_u64().unwrap() as usize;
    assert!(resume > 0 && resume <= cut, "resume offset {resume} of {cut}");
    let r = client
        .put(format!("{}/api/v1/uploads/{id}?offset={resume}", a.url))
        .bearer_auth(ADMIN)
        .body(bytes[resume..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = client
        .post(format!("{}/api/v1/uploads/{id}/commit", a.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let summary: serde_json::Value = r.json().await.unwrap();
    assert_eq!(summary["version"], "1.0.0");
    assert_eq!(a.agent.store.list().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_a_path_on_the_agent_volume() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let out = tokio::task::spawn_blocking({
        let (url, v1) = (a.url.clone(), v1.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
                .arg("import")
                .arg("--from-path")
                .arg(&v1)
                .args(["--server", &url, "--token", ADMIN])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported sample-app 1.0.0"));
}

#[test]
fn a_failing_writer_leaves_no_partial_file() {
    use std::io::Write;
    struct Failing(usize);
    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    write_config(dir.path(), &vendor, &target, "sample-app", "10Gi");
    let cfg = AgentConfig::load(&dir.path().join("agent.yaml")).unwrap();
    let store = agent::store::Store::open(&cfg.store.dir, 1 << 40, 0).unwrap();
    let root = keys::Envelope::parse_canonical(&std::fs::read(&cfg.trust.root).unwrap()).unwrap();
    let ctx = agent::import::ImportContext {
        product: "sample-app".parse().unwrap(),
        skew_seconds: 3600,
        now: Timestamp::from_unix(NOW).unwrap(),
        state: agent::trust_state::TrustState::anchored(&root, 1),
        options: Default::default(),
    };
    let mut importer = agent::import::Importer::new(ctx, dir.path().join("data"), Box::new(Failing(100_000)));
    let bytes = std::fs::read(&v1).unwrap();
    let err = bytes
        .chunks(64 * 1024)
        .try_for_each(|c| importer.push(c, &store))
        .unwrap_err();
    assert_eq!(err.code(), "write_failed");
    assert!(agent::error_chain(&err).contains("No space left on device"), "{err}");
    assert!(list(&cfg.store.dir.join("bundles")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_free_space_and_unreadable_sources_are_refused() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    // A reserve larger than any volume: free space minus the reserve is zero.
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    let cfg = write_config(dir.path(), &vendor, &target, "sample-app", "10Gi");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("reserveBytes: 0", "reserveBytes: 1000Ti");
    std::fs::write(&cfg, text).unwrap();
    let a = start_agent_in(dir, target, NOW).await;
    assert_refused(
        &a,
        &v1,
        &[],
        "insufficient_space",
        "not enough space for the bundle: need",
    )
    .await;

    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let before = snapshot(&a);
    let out = tokio::task::spawn_blocking({
        let url = a.url.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
                .args([
                    "import",
                    "--from-path",
                    "/nonexistent/bundle.sealift",
                    "--server",
                    &url,
                    "--token",
                    ADMIN,
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("(source_unreadable)"), "{}", stderr(&out));
    assert_eq!(snapshot(&a), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_uploads_expire_after_a_day() {
    let vendor = Vendor::new();
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    write_config(dir.path(), &vendor, &target, "sample-app", "10Gi");
    let a = start_agent_in(dir, target, NOW).await;
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{}/api/v1/uploads", a.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let uploads = a.dir.path().join("store/uploads");
    assert_eq!(list(&uploads), vec![id.clone()]);
    let RunningAgent {
        dir, target, _server, ..
    } = a;
    _server.abort();
    let a = start_agent_in(dir, target, NOW + 25 * 3600).await;
    let r = client
        .get(format!("{}/api/v1/uploads/{id}", a.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(list(&uploads).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_is_accepted_and_never_goes_back() {
    let vendor = Vendor::new();
    let old = vendor.build_plain("1.0.0", 1, &[]);
    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    // The vendor rotates to root 2 with a new release key, signed by the root key.
    let keys_dir = vendor.dir.path().join("keys");
    let new_release = keys::generate_key_files(&keys_dir, "release2").unwrap();
    let root_key = keys::SigningKey::load(keys_dir.join("root.key"), keys::PASSPHRASE_ENV).unwrap();
    keys::root_dir::rotate(
        &vendor.roots,
        keys::root_dir::KeySetChange::default(),
        keys::root_dir::KeySetChange {
            keys: Some(vec![keys::PublicKey::load(&new_release.public_key).unwrap()]),
            threshold: None,
        },
        &[root_key],
    )
    .unwrap();
    let rotated = Vendor {
        dir: vendor.dir,
        registry: vendor.registry,
        release_key: new_release.private_key,
        roots: vendor.roots,
    };
    let v2 = rotated.build_plain("2.0.0", 2, &[]);
    let out = cli_import(&a, &v2, ADMIN, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(a.agent.trust_state().roots.len(), 2);
    // A bundle signed under root 1 only is now refused: its chain is shorter than the trusted one.
    assert_refused(&a, &old, &[], "root_chain_untrusted", "root chain is not trusted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_sequence_rebuild_replaces_the_listed_build_and_retention_keeps_the_newest() {
    let vendor = Vendor::new();
    let first = vendor.build_plain("1.0.0", 1, &[]);
    let rebuild = vendor.build_plain("1.0.0", 2, &[]);
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    let cfg = write_config(dir.path(), &vendor, &target, "sample-app", "10Gi");
    let text = std::fs::read_to_string(&cfg).unwrap() + "retention: {keep: 0}\n";
    std::fs::write(&cfg, text).unwrap();
    let a = start_agent_in(dir, target, NOW).await;
    assert!(cli_import(&a, &first, ADMIN, &[]).await.status.success());
    assert!(cli_import(&a, &rebuild, ADMIN, &[]).await.status.success());
    let listed = a.agent.store.list();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].version.as_str(), listed[0].sequence), ("1.0.0", 2));
    assert_eq!(
        list(&a.dir.path().join("store/bundles")).len(),
        2,
        "one bundle file and its head"
    );

    // keep 0: the two newest (room for current and previous) stay, older ones go.
    let v2 = vendor.build_plain("2.0.0", 3, &[]);
    let v3 = vendor.build_plain("3.0.0", 4, &[]);
    assert!(cli_import(&a, &v2, ADMIN, &[]).await.status.success());
    assert!(cli_import(&a, &v3, ADMIN, &[]).await.status.success());
    let versions: Vec<String> = a.agent.store.list().into_iter().map(|b| b.version).collect();
    assert_eq!(versions, vec!["3.0.0".to_owned(), "2.0.0".to_owned()]);
    assert_eq!(list(&a.dir.path().join("store/bundles")).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_bundle_is_refused_for_import_while_a_stored_one_stays_listed() {
    let vendor = Vendor::new();
    let stored = vendor.build_plain("1.0.0", 1, &["--valid-for", "30d"]);
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    write_config(dir.path(), &vendor, &target, "sample-app", "10Gi");
    let a = start_agent_in(dir, target, CREATED + 86_400).await;
    assert!(cli_import(&a, &stored, ADMIN, &[]).await.status.success());
    // Forty days later both bundles are past their window: a new import is refused, the stored
    // one stays in the store and the listing (expiry bounds import and installation only).
    let RunningAgent {
        dir, target, _server, ..
    } = a;
    _server.abort();
    let a = start_agent_in(dir, target, CREATED + 40 * 86_400).await;
    let late = vendor.build_plain("2.0.0", 2, &["--valid-for", "30d"]);
    assert_refused(&a, &late, &[], "expired", "expired at").await;
    let listed = a.agent.store.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, "1.0.0");
    assert!(a.agent.store.path_of(&listed[0].identity).is_file());
}

/// A loopback TCP proxy that cuts the first connection after `cut` bytes from the client,
/// then forwards every later connection whole.
async fn flaky_proxy(upstream: String, cut: usize) -> String {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Bytes sent to the agent over all connections; the connection that carries byte `cut`
    // is dropped mid-request, once.
    let total = Arc::new(AtomicUsize::new(0));
    let broken = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (upstream, total, broken) = (upstream.clone(), total.clone(), broken.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_r, mut client_w) = client.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                });
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = client_r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let before = total.fetch_add(n, Ordering::SeqCst);
                    if before + n >= cut && !broken.swap(true, Ordering::SeqCst) {
                        let keep = cut.saturating_sub(before);
                        let _ = server_w.write_all(&buf[..keep]).await;
                        // Drop both sides mid-request: the client sees a broken connection.
                        back.abort();
                        return;
                    }
                    if server_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = back.await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_command_resumes_after_a_broken_connection() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let upstream = a.url.trim_start_matches("http://").to_owned();
    // The connection carrying the 100,000th byte sent breaks mid-request.
    let proxy = flaky_proxy(upstream, 100_000).await;
    let out = tokio::task::spawn_blocking({
        let (proxy, v1) = (proxy.clone(), v1.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
                .arg("import")
                .arg(&v1)
                .args(["--server", &proxy, "--token", ADMIN])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("upload interrupted") && err.contains("resuming"),
        "no break was seen: {err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported sample-app 1.0.0"));
    assert_eq!(a.agent.store.list().len(), 1);
}
