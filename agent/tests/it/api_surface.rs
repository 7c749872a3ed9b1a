//! The API's surface beside import and release: the committed OpenAPI document, `/readyz`,
//! `/metrics`, the server-sent progress stream, the site's variables and `verify-store` —
//! in process where that suffices, and with the real binary against the simulator where the
//! release engine must run.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent::config::AgentConfig;
use agent::service::Agent;
use kube::api::{Api, Patch, PatchParams};
use schemas::Timestamp;
use serde_json::{Value, json};
use tests::registry::{Registry, RegistryOptions};

use super::harness::{ADMIN, AgentYaml, VIEWER, cli_async, get_json, text, write_agent_dir};
use super::release::{AGENT_NS, Cluster, Vendor};

/// 2026-01-02: inside the test bundles' validity.
const NOW: i64 = 1_767_312_000;

// ---------------------------------------------------------------------------------------------
// Harness

/// The agent in process, with every router the binary merges (the release ones only with an
/// engine).
struct InProcess {
    _dir: tempfile::TempDir,
    agent: Arc<Agent>,
    url: String,
    _target: Registry,
    _server: tokio::task::JoinHandle<()>,
}

async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, server)
}

/// A trust root (and its keys) for an agent that imports nothing.
fn roots_only() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = keys::generate_key_files(dir.path(), "root").unwrap();
    let release = keys::generate_key_files(dir.path(), "release").unwrap();
    let root_key = keys::SigningKey::load(&root.private_key, keys::PASSPHRASE_ENV).unwrap();
    let release_pub = keys::PublicKey::load(&release.public_key).unwrap();
    keys::root_dir::init(dir.path(), &[root_key], vec![], None, vec![release_pub], None).unwrap();
    dir
}

/// An agent in process without a release engine, trusting `roots/1.root.json`, with
/// `kubernetes` appended to its configuration when given.
async fn in_process(roots: &Path, kubernetes: Option<&str>) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    let path = write_agent_dir(
        dir.path(),
        roots,
        AgentYaml {
            listen: "127.0.0.1:0",
            product: "sample-app",
            max_bytes: "10Gi",
            registry: &target.addr(),
            extra: kubernetes.unwrap_or(""),
        },
    );
    let cfg = AgentConfig::load(&path).unwrap();
    let agent = Arc::new(Agent::open_with_clock(cfg, Box::new(|| Timestamp::from_unix(NOW).unwrap())).unwrap());
    let app = agent::api::app(agent.clone(), None);
    let (url, server) = serve(app).await;
    InProcess {
        _dir: dir,
        agent,
        url,
        _target: target,
        _server: server,
    }
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn scrape(url: &str) -> String {
    let resp = get(&format!("{url}/metrics"), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    resp.text().await.unwrap()
}

/// One sample of a Prometheus text exposition: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses a Prometheus text exposition (format 0.0.4) strictly: every line is a `# HELP`, a
/// `# TYPE` (once per family, before its samples, with a known type) or a sample whose name,
/// labels (escaped values) and value parse, and belongs to the family typed above it.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let name_re = regex::Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
    let label_re = regex::Regex::new(r#"^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)"#).unwrap();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut typed: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(name_re.is_match(name), "bad HELP line {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(name_re.is_match(name), "bad TYPE line {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(typed.insert(name.to_owned()), "family {name} typed twice");
            current = Some(name.to_owned());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("labels of {line:?}"));
                let mut labels = Vec::new();
                while !rest.is_empty() {
                    let c = label_re
                        .captures(rest)
                        .unwrap_or_else(|| panic!("label at {rest:?} in {line:?}"));
                    labels.push((c[1].to_owned(), c[2].to_owned()));
                    rest = &rest[c[0].len()..];
                }
                (name, labels)
            }
            None => (series, vec![]),
        };
        assert!(name_re.is_match(name), "bad metric name in {line:?}");
        assert_eq!(current.as_deref(), Some(name), "{line:?} outside its family");
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

/// A loopback TCP proxy that can be cut: then every open connection is dropped and new ones
/// are closed at once (an API server that stopped answering).
struct CuttableProxy {
    url: String,
    open: Arc<AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(true));
        let flag = open.clone();
        let task = tokio::spawn(async move {
            let mut conns: Vec<tokio::task::JoinHandle<()>> = Vec::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    for c in conns.drain(..) {
                        c.abort();
                    }
                    drop(client);
                    continue;
                }
                let flag = flag.clone();
                conns.push(tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let cut = async {
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = cut => {}
                    }
                }));
            }
        });
        Self { url, open, _task: task }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAPI

/// Routes the document does not describe yet: the step Jobs' own endpoint (its handler needs a
/// `#[utoipa::path]` and `StepContext` a `ToSchema`). Remove an entry once it is documented.
const NOT_YET_DOCUMENTED: &[&str] = &[];

fn openapi_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

/// Every `.route("PATH", …)` in the API's source.
fn routed_paths() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let re = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for c in re.captures_iter(&source) {
            out.insert(c[1].to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_committed_covers_every_route_and_is_served() {
    let generated = agent::api::openapi::json();
    let path = openapi_path();
    if std::env::var_os("SEALIFT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "agent/openapi.json differs from what the code generates; regenerate it with\n  \
         SEALIFT_BLESS=1 cargo nextest run -p agent --test it openapi_document"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer",
            "description": "An admin or viewer token from the agent's configuration (`tokens`)."})
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));

    // Every route of the code is documented, and nothing else.
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed = routed_paths();
    let undocumented: Vec<&str> = routed.difference(&documented).map(String::as_str).collect();
    let unrouted: Vec<&String> = documented.difference(&routed).collect();
    assert!(
        undocumented == NOT_YET_DOCUMENTED && unrouted.is_empty(),
        "routes without a #[utoipa::path] listed in openapi.rs: {undocumented:?} (known: {NOT_YET_DOCUMENTED:?}); \
         documented but not routed: {unrouted:?}"
    );
    for p in [
        "/api/v1/events",
        "/api/v1/variables",
        "/api/v1/variables/{name}",
        "/api/v1/verify-store",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(documented.contains(p), "{p} is not documented");
    }
    // Probes and metrics need no token; everything under /api/v1 does.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let open = op.get("security") == Some(&json!([{}]));
            assert_eq!(
                open,
                !path.starts_with("/api/v1/"),
                "{method} {path}: security {:?}",
                op.get("security")
            );
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    let events = &doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"];
    assert!(events.get("text/event-stream").is_some(), "{events}");

    // Served as generated, to viewers and admins, never without a token.
    let roots = roots_only();
    let a = in_process(roots.path(), None).await;
    let url = format!("{}/api/v1/openapi.json", a.url);
    assert_eq!(get(&url, None).await.status(), 401);
    let resp = get(&url, Some(VIEWER)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), generated);
}

// ---------------------------------------------------------------------------------------------
// /readyz

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_what_is_not_ready() {
    let roots = roots_only();
    // Without `kubernetes`: ready when the store is open.
    let plain = in_process(roots.path(), None).await;
    let resp = get(&format!("{}/readyz", plain.url), None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"][0]["name"], "store");
    assert_eq!(body["checks"].as_array().unwrap().len(), 1, "{body}");

    // With `kubernetes` but no engine yet: 503, naming the engine.
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default()).await.unwrap();
    let proxy = CuttableProxy::start(sim.address()).await;
    let kubeconfig = std::fs::read_to_string(sim.kubeconfig_path())
        .unwrap()
        .replace(sim.url(), &proxy.url);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig_path = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig_path, kubeconfig).unwrap();
    let k = format!(
        "kubernetes:\n  namespace: {AGENT_NS}\n  kubeconfig: {}\n",
        kubeconfig_path.display()
    );
    let a = in_process(roots.path(), Some(&k)).await;
    let resp = get(&format!("{}/readyz", a.url), None).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "engine" && c["ok"] == false && c["message"] == "the release engine has not started"),
        "{body}"
    );

    // With the engine running: ready, the API server answers.
    let client = sim.kube_client().unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    namespaces
        .patch(
            AGENT_NS,
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AGENT_NS}})),
        )
        .await
        .unwrap();
    let k = a.agent.config.kubernetes.clone().unwrap();
    let engine = agent::release::start(a.agent.clone(), &k, None).await.unwrap();
    let app = agent::api::app(a.agent.clone(), Some(engine));
    let (url, _server) = serve(app).await;
    let resp = get(&format!("{url}/readyz"), None).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store", "engine", "apiServer"]);
    assert!(
        body["checks"][2]["message"]
            .as_str()
            .unwrap()
            .starts_with("the Kubernetes API server answers (v1.33"),
        "{body}"
    );

    // Every documented operation is routed: without a token it is refused (401; a missing
    // body or query may be refused first), never missing (404) or of another method (405);
    // the probes answer without one.
    let doc: Value = serde_json::from_str(&agent::api::openapi::json()).unwrap();
    let http = reqwest::Client::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{n}", "1")
            .replace("{name}", "hostname")
            .replace("{ts}", "2026-01-01t00-00-00")
            .replace("{step}", "dump-db");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = http
                .request(m, format!("{url}{concrete}"))
                .send()
                .await
                .unwrap()
                .status();
            if path.starts_with("/api/v1/") {
                // A body or query is parsed before the token is looked at (415, 400).
                assert!(
                    status == 401 || (method != "get" && ![404, 405].contains(&status.as_u16())),
                    "{method} {path}: {status}"
                );
            } else {
                assert!(status == 200 || status == 503, "{method} {path}: {status}");
            }
        }
    }

    // The API server stops answering: 503, saying so.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = get(&format!("{url}/readyz"), None).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    let api = &body["checks"][2];
    assert_eq!(api["ok"], false, "{body}");
    assert!(
        api["message"]
            .as_str()
            .unwrap()
            .starts_with("the Kubernetes API server d"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// /metrics and verify-store

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_count_imports_refusals_and_pushed_bytes() {
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let a = in_process(&vendor.roots, None).await;
    let before = parse_exposition(&scrape(&a.url).await);
    assert_eq!(
        value_of(&before, "sealift_imports_total", &[("outcome", "ok")]),
        Some(0.0)
    );
    assert_eq!(value_of(&before, "sealift_store_bundles", &[]), Some(0.0));
    assert_eq!(value_of(&before, "sealift_image_bytes_pushed_total", &[]), Some(0.0));
    assert_eq!(
        value_of(
            &before,
            "sealift_operations_total",
            &[("kind", "upgrade"), ("outcome", "failed")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value_of(&before, "sealift_release_info", &[]),
        None,
        "no release without an engine"
    );

    // A viewer's import is refused (forbidden), then the admin's succeeds.
    let refused = import(&a, &v1, VIEWER).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let out = import(&a, &v1, ADMIN).await;
    assert!(out.status.success(), "{}", text(&out));

    let after = parse_exposition(&scrape(&a.url).await);
    assert_eq!(
        value_of(&after, "sealift_imports_total", &[("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value_of(&after, "sealift_refusals_total", &[("code", "forbidden")]),
        Some(1.0)
    );
    assert_eq!(value_of(&after, "sealift_store_bundles", &[]), Some(1.0));
    let size = a.agent.store.list()[0].size as f64;
    assert_eq!(value_of(&after, "sealift_store_used_bytes", &[]), Some(size));
    let pushed = value_of(&after, "sealift_image_bytes_pushed_total", &[]).unwrap();
    assert!(pushed > 0.0, "image bytes were pushed");

    // Importing it again pushes nothing: the counter stays.
    let out = import(&a, &v1, ADMIN).await;
    assert!(out.status.success(), "{}", text(&out));
    let again = parse_exposition(&scrape(&a.url).await);
    assert_eq!(
        value_of(&again, "sealift_imports_total", &[("outcome", "ok")]),
        Some(2.0)
    );
    assert_eq!(value_of(&again, "sealift_image_bytes_pushed_total", &[]), Some(pushed));
}

async fn import(a: &InProcess, file: &Path, token: &str) -> std::process::Output {
    cli_async(&a.url, token, &["import", &file.display().to_string()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_store_rehashes_every_bundle_and_marks_one_with_a_flipped_byte() {
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build("2.0.0", 2);
    let a = in_process(&vendor.roots, None).await;
    for f in [&v1, &v2] {
        let out = import(&a, f, ADMIN).await;
        assert!(out.status.success(), "{}", text(&out));
    }

    // Both intact.
    let out = cli_async(&a.url, ADMIN, &["verify-store"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 bundles intact"), "{stdout}");

    // A viewer may not run it (and is audited).
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/verify-store", a.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Flip one byte inside a blob of 1.0.0's stored copy (a failing disk).
    let stored = a.agent.store.list().into_iter().find(|b| b.version == "1.0.0").unwrap();
    let (digest, loc) = stored.blobs.iter().max_by_key(|(_, l)| l.size).unwrap();
    let file = a.agent.store.path_of(&stored.identity);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = (loc.offset + loc.size / 2) as usize;
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/verify-store", a.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let check: Value = resp.json().await.unwrap();
    assert_eq!(
        (check["intact"].as_u64(), check["corrupt"].as_u64()),
        (Some(1), Some(1)),
        "{check}"
    );
    let entry = format!("blobs/sha256/{}", digest.hex());
    let bad = check["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["version"] == "1.0.0")
        .unwrap();
    assert_eq!(bad["intact"], false);
    assert_eq!(bad["entry"], entry.as_str(), "{bad}");
    assert!(
        bad["problem"]
            .as_str()
            .unwrap()
            .contains(&format!("the manifest says {digest}")),
        "{bad}"
    );
    let good = check["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["version"] == "2.0.0")
        .unwrap();
    assert_eq!(good["intact"], true);

    // The index names the entry; `versions` shows it; the audit log has it; metrics count it.
    let marked = a.agent.store.get(&stored.identity).unwrap().corrupt.unwrap();
    assert!(marked.contains(&entry), "{marked}");
    let versions: Value = get(&format!("{}/api/v1/versions", a.url), Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["version"] == "1.0.0" && v["corrupt"].as_str().is_some_and(|c| c.contains(&entry))),
        "{versions}"
    );
    let audit = a.agent.audit.read().unwrap();
    assert!(
        audit.iter().any(|r| r.action == "verify-store"
            && r.outcome == "failed"
            && r.code.as_deref() == Some("stored_bundle_corrupt")
            && r.version.as_deref() == Some("1.0.0")
            && r.detail.as_deref().is_some_and(|d| d.contains(&entry))),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.action == "verify-store" && r.outcome == "refused" && r.code.as_deref() == Some("forbidden"))
    );
    let samples = parse_exposition(&scrape(&a.url).await);
    assert_eq!(value_of(&samples, "sealift_store_corrupt_bundles", &[]), Some(1.0));

    // The CLI says which and exits 1 with the way out.
    let out = cli_async(&a.url, ADMIN, &["verify-store"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CORRUPT") && stdout.contains(&entry), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 stored bundle(s) are corrupt") && stderr.contains("hint: import the same file again"),
        "{stderr}"
    );

    // Byte restored: the full re-hash passes again and clears the mark (audited).
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let out = cli_async(&a.url, ADMIN, &["verify-store"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(a.agent.store.get(&stored.identity).unwrap().corrupt, None);
    assert!(
        a.agent
            .audit
            .read()
            .unwrap()
            .iter()
            .any(|r| r.code.as_deref() == Some("corrupt_mark_cleared"))
    );
}

// ---------------------------------------------------------------------------------------------
// Server-sent events, with the real binary against the simulator

/// Reads an event stream's raw text until `done` holds for it or `timeout` passes.
async fn read_stream(resp: reqwest::Response, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let mut resp = resp;
    let mut text = String::new();
    let started = Instant::now();
    while started.elapsed() < timeout && !done(&text) {
        match tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    text
}

/// `(event, data)` of every event in a raw stream.
fn events_of(raw: &str) -> Vec<(String, Value)> {
    raw.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                    event = Some(e.to_owned());
                }
                if let Some(d) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                    data.push_str(d);
                }
            }
            Some((event?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_progress_status_and_heartbeats_and_upgrade_wait_follows_them() {
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    let http = reqwest::Client::new();

    // Tokens never in the URL: without the header the stream is refused; a query token too.
    let url = format!("{}/api/v1/events", c.url);
    let resp = http.get(format!("{url}?access_token={ADMIN}")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{url}?token={VIEWER}"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("Authorization header"),
        "{body}"
    );

    // A viewer follows the install; an admin runs `upgrade --wait`, which follows the same stream.
    let resp = http
        .get(format!("{url}?heartbeatSeconds=1"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let reader = tokio::spawn(read_stream(resp, Duration::from_secs(180), |raw| {
        events_of(raw)
            .iter()
            .any(|(e, d)| e == "status" && d["status"]["phase"] == "Ready" && d["status"]["currentVersion"] == "1.0.0")
            && raw.matches(": heartbeat").count() >= 2
    }));
    let out = c.cli_async(&["upgrade", "1.0.0", "--wait"]).await;
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("polling"), "`--wait` used the event stream: {stderr}");
    assert!(stderr.contains("  step Apply"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.0.0 is ready"));

    let raw = reader.await.unwrap();
    let events = events_of(&raw);
    let steps: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "progress")
        .filter_map(|(_, d)| d["step"].as_str())
        .collect();
    for step in ["Verify", "Render", "Preflight", "Stage", "Apply"] {
        assert!(steps.contains(&step), "no progress event for {step}: {steps:?}");
    }
    let phases: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "status")
        .filter_map(|(_, d)| d["status"]["phase"].as_str())
        .collect();
    assert!(phases.contains(&"Reconciling/Installing"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"Ready"), "{phases:?}");
    assert!(
        raw.matches(": heartbeat").count() >= 2,
        "heartbeats every second when idle:\n{raw}"
    );

    // Ready, and the metrics carry the release.
    let resp = http.get(format!("{}/readyz", c.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let samples = parse_exposition(&scrape(&c.url).await);
    assert_eq!(
        value_of(
            &samples,
            "sealift_release_info",
            &[
                ("current_version", "1.0.0"),
                ("desired_version", "1.0.0"),
                ("phase", "Ready")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &samples,
            "sealift_operations_total",
            &[("kind", "install"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &samples,
            "sealift_operations_total",
            &[("kind", "install"), ("outcome", "started")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &samples,
            "sealift_operations_total",
            &[("kind", "upgrade"), ("outcome", "ok")]
        ),
        Some(0.0),
        "the upgrade request is not counted as an operation"
    );
    assert_eq!(value_of(&samples, "sealift_operation_running", &[]), Some(0.0));
}

// ---------------------------------------------------------------------------------------------
// Variables

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vars_are_checked_against_declarations_and_sensitive_values_are_never_shown() {
    const PASSWORD: &str = "s3cret-Value-4242";
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);

    // Before the first install, the newest imported release's declarations.
    let out = c.cli_async(&["vars", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.starts_with("variables of 1.0.0\n"), "{listed}");
    for (name, shown) in [
        ("hostname", "sample.example.com"),
        ("replicas", "2"),
        ("adminPassword", "<generated at the next install or upgrade>"),
        ("storageGi", "1"),
    ] {
        assert!(
            listed.lines().any(|l| l.starts_with(name) && l.contains(shown)),
            "{name} {shown} in\n{listed}"
        );
    }

    // Each value is checked against the declaration, with the render's own rules.
    for (args, expected) in [
        (
            vec!["vars", "set", "replicas=50"],
            "replicas: 50 is above the maximum 20",
        ),
        (
            vec!["vars", "set", "replicas=two"],
            "replicas: expected an integer, got a string",
        ),
        (
            vec!["vars", "set", "hostname=Not_A_Host"],
            "hostname: \"Not_A_Host\" does not match the pattern",
        ),
        (
            vec!["vars", "set", "adminPassword=hunter2-literal"],
            "adminPassword: is sensitive and can only be set from a Secret",
        ),
        (
            vec!["vars", "set", "adminPassword", "--from-secret", "db/password"],
            "adminPassword: Secret db/password has no such key",
        ),
        (vec!["vars", "set", "nosuch=1"], "1.0.0 declares no variable nosuch"),
    ] {
        let out = c.cli_async(&args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }

    // A viewer may list but not set.
    let resp = reqwest::Client::new()
        .put(format!("{}/api/v1/variables/replicas", c.url))
        .bearer_auth(VIEWER)
        .json(&json!({"value": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // The password from a Secret, the others as literals.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.client.clone(), AGENT_NS);
    secrets
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db", "namespace": AGENT_NS},
                "stringData": {"password": PASSWORD}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    for args in [
        vec!["vars", "set", "adminPassword", "--from-secret", "db/password"],
        vec!["vars", "set", "replicas=3"],
        vec!["vars", "set", "hostname=app.example.org"],
    ] {
        let out = c.cli_async(&args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let out = c.cli_async(&["vars", "list"]).await;
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("adminPassword") && l.contains("secret") && l.contains("<from secret db/password>")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("replicas") && l.contains("site") && l.contains(" 3"))
    );
    let api: Value = get_json(&format!("{}/api/v1/variables", c.url), VIEWER).await;
    let pw = api["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "adminPassword")
        .unwrap();
    assert_eq!(pw["source"], "secret");
    assert_eq!(pw["secret"], json!({"secret": "db", "key": "password"}));
    assert!(pw.get("value").is_none(), "{pw}");

    // The next install uses them.
    let out = c.cli_async(&["upgrade", "1.0.0", "--wait"]).await;
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    let web = c
        .get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
        .await
        .unwrap();
    assert_eq!(web["spec"]["replicas"], 3, "{web}");

    // Never echoed: not in the listing, site.json, the audit log or the API's answers.
    let site = std::fs::read_to_string(c.dir.path().join("store/release/site.json")).unwrap();
    assert!(site.contains("\"password\""), "{site}");
    let audit = c.audit().await;
    let audit_text = serde_json::to_string(&audit).unwrap();
    for leaked in [PASSWORD, "hunter2-literal", "Not_A_Host"] {
        assert!(!site.contains(leaked), "{leaked} in site.json");
        assert!(!audit_text.contains(leaked), "{leaked} in the audit log");
        assert!(!listed.contains(leaked));
    }
    let sets: Vec<&Value> = audit.iter().filter(|a| a["action"] == "vars-set").collect();
    assert_eq!(sets.iter().filter(|a| a["outcome"] == "ok").count(), 3, "{sets:?}");
    assert!(
        sets.iter().any(|a| a["outcome"] == "refused"
            && a["code"] == "invalid_value"
            && a["detail"] == "replicas from a literal: above_maximum"),
        "{sets:?}"
    );
    assert!(
        sets.iter()
            .any(|a| a["outcome"] == "ok" && a["detail"] == "adminPassword set from Secret db/password"),
        "{sets:?}"
    );
    assert!(
        sets.iter()
            .any(|a| a["outcome"] == "refused" && a["code"] == "forbidden"),
        "{sets:?}"
    );
}
