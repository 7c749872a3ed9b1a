//! The admin web page: served by the agent with strict headers, and end to end in headless
//! Debian chromium (playwright-core, `agent/tests/e2e/page.mjs`) against the real agent on
//! the Kubernetes API simulator and the real registry. The browser test's steps are listed
//! at the top of `page.mjs`; this side starts everything, runs it, and checks the cluster,
//! history, variables and audit log it left.
//!
//! Needs Debian `chromium` and `npm ci` in `agent/tests/e2e` (both done by
//! `scripts/setup.sh`); without them the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::get_json;
use super::release::{ADMIN, Cluster, VIEWER, Vendor, condition, phase, wait_for};

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("e2e")
}

/// Chromium, node and the npm packages, or a failure that says how to get them.
fn browser_prerequisites() -> PathBuf {
    let chromium = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "{} is missing: the web page's end-to-end test needs Debian's chromium \
         (bash scripts/setup.sh installs it, or apt-get install chromium)",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: the browser test runs with node (bash scripts/setup.sh installs nodejs and npm)"
    );
    for package in ["playwright-core", "axe-core"] {
        let manifest = e2e_dir().join("node_modules").join(package).join("package.json");
        assert!(
            manifest.exists(),
            "{} is missing: run `npm ci --no-audit --no-fund` in agent/tests/e2e (bash scripts/setup.sh does)",
            manifest.display()
        );
    }
    chromium
}

/// Runs `node agent/tests/e2e/SCRIPT` with `env`, printing its output; fails on a non-zero
/// exit or after `limit`.
async fn run_node(script: &str, env: Vec<(&'static str, String)>, limit: Duration) {
    let script = e2e_dir().join(script);
    let status = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(e2e_dir())
            .envs(env)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Ok(status);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not finish within {limit:?}", script.display()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    match status {
        Ok(s) => assert!(s.success(), "the browser test failed ({s}); its output is above"),
        Err(e) => panic!("{e}"),
    }
}

/// A copy of `file` with one byte changed after the head, where the agent refuses it.
fn tampered(file: &Path) -> PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    let out = file.with_file_name("tampered.sealift");
    std::fs::write(&out, bytes).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_headless_chromium_upload_values_upgrade_rollback_viewer_and_axe() {
    let chromium = browser_prerequisites();
    let started = Instant::now();
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build("2.0.0", 2);
    let v3 = vendor.build("3.0.0", 3);
    let bad = tampered(&v2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v3);
    let out = c.cli_async(&["upgrade", "1.0.0", "--wait"]).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    eprintln!("web: 1.0.0 installed after {:?}", started.elapsed());

    // The page and its assets: right types, strict headers, no token needed to load it.
    let http = reqwest::Client::new();
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/api.js", "text/javascript; charset=utf-8"),
        ("/upgrade.js", "text/javascript; charset=utf-8"),
        ("/backups.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
    ] {
        let resp = http.get(format!("{}{path}", c.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert_eq!(h["content-type"], ty, "{path}");
        assert_eq!(h["content-security-policy"], agent::web::CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
    }
    // The API never takes a token from the URL.
    for path in [
        "/api/v1/versions",
        "/api/v1/release",
        "/api/v1/audit",
        "/api/v1/variables",
        "/api/v1/events",
    ] {
        for param in ["token", "access_token"] {
            let resp = http
                .get(format!("{}{path}?{param}={ADMIN}", c.url))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401, "{path}?{param}=");
        }
    }
    let resp = http
        .post(format!("{}/api/v1/upgrade?access_token={ADMIN}", c.url))
        .json(&serde_json::json!({"version": "3.0.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // What the tampered copy is refused for, so the page can be held to it.
    let code = "digest_mismatch";

    let shots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let env = vec![
        ("AGENT_URL", c.url.clone()),
        ("ADMIN_TOKEN", ADMIN.to_owned()),
        ("VIEWER_TOKEN", VIEWER.to_owned()),
        ("BUNDLE_FILE", v2.display().to_string()),
        ("TAMPERED_FILE", bad.display().to_string()),
        ("TAMPERED_CODE", code.to_owned()),
        ("SCREENSHOT_DIR", shots.display().to_string()),
        ("CHROMIUM", chromium.display().to_string()),
    ];
    if std::env::var_os("SEALIFT_E2E_HOLD").is_some() {
        // Debugging aid: keep the agent up and run the script by hand with this environment.
        let lines: Vec<String> = env.iter().map(|(k, v)| format!("export {k}='{v}'")).collect();
        let hold = shots.with_file_name("e2e-hold.env");
        std::fs::write(&hold, lines.join("\n") + "\n").unwrap();
        eprintln!("web: holding; environment in {}; delete it to go on", hold.display());
        while hold.exists() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let browser = Instant::now();
    run_node("page.mjs", env, Duration::from_secs(300)).await;
    eprintln!("web: browser test took {:?}", browser.elapsed());

    // What the page did, seen from the cluster and the API.
    let r = wait_for(&c, "the manual rollback", |r| phase(r) == "Ready").await;
    assert_eq!(r["status"]["currentVersion"], "2.0.0", "{r}");
    assert_eq!(r["spec"]["version"], "2.0.0", "{r}");
    assert_eq!(condition(&r, "Ready")["status"], "True", "{r}");
    let history = c.history().await;
    let runs: Vec<(String, String, String)> = history
        .iter()
        .map(|h| {
            (
                h["version"].as_str().unwrap().to_owned(),
                h["operation"].as_str().unwrap().to_owned(),
                h["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        runs.contains(&("3.0.0".into(), "upgrade".into(), "failed".into())),
        "{runs:?}"
    );
    assert_eq!(
        runs.first(),
        Some(&("2.0.0".into(), "rollback".into(), "deployed".into())),
        "the manual rollback is the newest revision: {runs:?}"
    );
    assert_eq!(
        runs.iter().filter(|r| r.1 == "rollback").count(),
        2,
        "the automatic and the manual rollback: {runs:?}"
    );
    let vars = get_json(&format!("{}/api/v1/variables", c.url), VIEWER).await;
    let host = vars["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "hostname")
        .unwrap()
        .clone();
    assert_eq!(
        (host["source"].as_str(), host["value"].as_str()),
        (Some("site"), Some("apps.dark.example")),
        "{host}"
    );
    let versions = get_json(&format!("{}/api/v1/versions", c.url), VIEWER).await;
    let listed: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["3.0.0", "2.0.0", "1.0.0"]);
    let audit = c.audit().await;
    let has = |action: &str, token: &str, outcome: &str, version: Option<&str>| {
        audit.iter().any(|a| {
            a["action"] == action
                && a["token"] == token
                && a["outcome"] == outcome
                && version.is_none_or(|v| a["version"] == v)
        })
    };
    assert!(
        has("import", "alice", "refused", None),
        "the tampered upload is audited"
    );
    assert!(has("upgrade", "alice", "accepted", Some("2.0.0")), "{audit:?}");
    assert!(has("upgrade", "alice", "accepted", Some("3.0.0")), "{audit:?}");
    assert!(has("vars-set", "alice", "ok", None), "{audit:?}");
    assert!(has("rollback", "alice", "accepted", Some("2.0.0")), "{audit:?}");
    assert!(has("backup", "alice", "ok", Some("2.0.0")), "{audit:?}");
    assert!(has("restore", "alice", "accepted", Some("2.0.0")), "{audit:?}");
    assert!(
        runs.iter().any(|r| r.0 == "2.0.0" && r.1 == "restore"),
        "the restore from the page is a revision: {runs:?}"
    );
    let backups = get_json(&format!("{}/api/v1/backups", c.url), VIEWER).await;
    let kinds: Vec<(&str, &str, &str)> = backups["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap(),
                b["status"].as_str().unwrap(),
                b["appVersion"].as_str().unwrap(),
            )
        })
        .collect();
    // The page took a manual backup and, at the end, deleted it.
    assert!(!kinds.iter().any(|k| k.0 == "manual"), "{kinds:?}");
    assert!(has("backup-delete", "alice", "ok", Some("2.0.0")), "{audit:?}");
    assert!(kinds.contains(&("preUpgrade", "Success", "1.0.0")), "{kinds:?}");
    assert!(
        has("upgrade", "victor", "refused", None),
        "the viewer's upgrade from the page is refused and audited"
    );
    eprintln!("web: whole test {:?}", started.elapsed());
}
