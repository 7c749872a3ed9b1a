//! Backups and restores of issue 7, end to end: the real agent binary, the simulator and the
//! real registry. The sample app's backup and restore steps run for real as exec'd Jobs: the
//! backup step PUTs a file (the "database") to `$SEALIFT_BACKUP_URL` with its step token, the
//! restore step reads it back, so data round-trips through the agent's signed archive.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::release::{ADMIN, AGENT_NS, Cluster, VIEWER, Vendor, condition, kubectl_patch, wait_for};
use super::release_scenarios::{app_diff, edit, sample_copy, spec, stalled, text, upgrade_fails, upgrade_ok};

const NS: &str = "sample";

/// A copy of the sample app `version` whose backup step uploads `$DATA/db` and whose restore
/// step writes it back.
fn with_data_steps(version: &str, data: &Path) -> tempfile::TempDir {
    let d = sample_copy(version);
    let env = format!("    env:\n      - name: DATA\n        value: \"{}\"\n", data.display());
    // `$DATA/hold` keeps the dump waiting (a backup to interrupt).
    let dump = r#"while [ -e "$DATA/hold" ]; do sleep 0.05; done; [ -f "$DATA/db" ] || { echo "no database at $DATA/db"; exit 3; }; curl -sSf -X PUT --data-binary @"$DATA/db" -H "Authorization: Bearer $SEALIFT_STEP_TOKEN" "$SEALIFT_BACKUP_URL""#;
    let load = r#"curl -sSf -o "$DATA/db" -H "Authorization: Bearer $SEALIFT_STEP_TOKEN" "$SEALIFT_BACKUP_URL""#;
    edit(
        d.path(),
        "sealift.yaml",
        &format!(
            "    podTemplate:\n      annotations:\n        sample.sealift.dev/step: backup\n        sim.sealift.dev/exec: '{}'\n",
            tests::sample::SIM_DUMP
        ),
        &format!("{env}    podTemplate:\n      annotations:\n        sim.sealift.dev/exec: '{dump}'\n"),
    );
    edit(
        d.path(),
        "sealift.yaml",
        &format!(
            "    podTemplate:\n      annotations:\n        sim.sealift.dev/exec: '{}'\n",
            tests::sample::SIM_LOAD
        ),
        &format!("{env}    podTemplate:\n      annotations:\n        sim.sealift.dev/exec: '{load}'\n"),
    );
    d
}

fn db(data: &Path) -> String {
    std::fs::read_to_string(data.join("db")).unwrap_or_default()
}

async fn http(c: &Cluster, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", c.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `POST /api/v1/restores` with an admin token.
async fn post_restore(c: &Cluster, body: Value) -> (u16, Value) {
    http(c, reqwest::Method::POST, "/api/v1/restores", ADMIN, Some(body)).await
}

/// Takes a backup through the CLI and waits for it; returns its timestamp.
async fn backup_now(c: &Cluster) -> String {
    let out = c.cli_async(&["backup", "create", "--wait"]).await;
    assert!(out.status.success(), "backup create: {}\n{}", text(&out), c.log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split_whitespace()
        .nth(1)
        .expect("`backup TS started`")
        .to_owned()
}

async fn restore_ok(c: &Cluster, args: &[&str]) {
    let mut argv = vec!["restore"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--yes", "--wait"]);
    let out = c.cli_async(&argv).await;
    assert!(out.status.success(), "restore: {}\n{}", text(&out), c.log());
}

fn secret(name: &str, ns: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
        "type": "Opaque", "stringData": {"token": value}})
}

fn secrets(c: &Cluster, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        c.client.clone(),
        ns,
        &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    )
}

async fn put_secret(c: &Cluster, ns: &str, name: &str, value: &str) {
    secrets(c, ns)
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(secret(name, ns, value)),
        )
        .await
        .unwrap();
}

async fn secret_value(c: &Cluster, ns: &str, name: &str) -> Option<String> {
    let s = secrets(c, ns).get_opt(name).await.unwrap()?;
    let v = serde_json::to_value(s).unwrap();
    let b64 = v.pointer("/data/token")?.as_str()?.to_owned();
    use base64::Engine as _;
    Some(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap())
}

fn trust(c: &Cluster) -> Value {
    serde_json::from_slice(&std::fs::read(c.dir.path().join("store/trust.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_change_restore_compare() {
    let vendor = Vendor::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("db"), "rows of 1.0.0").unwrap();
    let v1 = vendor.build_spec(&spec(&with_data_steps("1.0.0", data.path())), "1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&with_data_steps("2.0.0", data.path())), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    upgrade_ok(&c, "1.0.0", &[]).await;
    put_secret(&c, NS, "user-upload", "kept by the app").await;

    // A viewer sees backups but cannot take one.
    let (status, body) = http(&c, reqwest::Method::POST, "/api/v1/backups", VIEWER, Some(json!({}))).await;
    assert_eq!(status, 403, "{body}");
    let ts = backup_now(&c).await;
    let (status, list) = http(&c, reqwest::Method::GET, "/api/v1/backups", VIEWER, None).await;
    assert_eq!(status, 200);
    let b = &list["backups"][0];
    assert_eq!(b["timestamp"], ts.as_str(), "{list}");
    assert_eq!(b["status"], "Success", "{list}");
    assert_eq!(b["appVersion"], "1.0.0");
    assert_eq!(b["kind"], "manual");
    assert!(b["sizeBytes"].as_u64().unwrap() > 0);
    assert!(!list.to_string().contains("kept by the app"), "no data in listings");
    // Through the API: 202 with the timestamp; a second request meanwhile is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, started) = http(&c, reqwest::Method::POST, "/api/v1/backups", ADMIN, Some(json!({}))).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["status"], "Running");
    let (status, body) = http(&c, reqwest::Method::POST, "/api/v1/backups", ADMIN, Some(json!({}))).await;
    assert_eq!(status, 409, "{body}");
    let second = format!("/api/v1/backups/{}", started["timestamp"].as_str().unwrap());
    let started_at = Instant::now();
    while http(&c, reqwest::Method::GET, &second, VIEWER, None).await.1["status"] == "Running" {
        assert!(started_at.elapsed() < Duration::from_secs(60), "{}", c.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The bundle a backup restores is pinned in the store while the backup exists.
    let second_ts = started["timestamp"].as_str().unwrap().to_owned();
    let pins = || async {
        let versions = http(&c, reqwest::Method::GET, "/api/v1/versions", VIEWER, None).await.1;
        let v1 = versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["version"] == "1.0.0")
            .cloned()
            .unwrap();
        v1["pins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect::<Vec<String>>()
    };
    let before_delete = pins().await;
    assert!(before_delete.contains(&format!("backup:{ts}")), "{before_delete:?}");
    assert!(
        before_delete.contains(&format!("backup:{second_ts}")),
        "{before_delete:?}"
    );
    let (status, _) = http(&c, reqwest::Method::DELETE, &second, VIEWER, None).await;
    assert_eq!(status, 403);
    let out = c.cli_async(&["backup", "delete", &second_ts]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(http(&c, reqwest::Method::GET, &second, VIEWER, None).await.0, 404);
    assert!(!c.dir.path().join(format!("store/backups/{second_ts}")).exists());
    let after_delete = pins().await;
    assert!(
        !after_delete.contains(&format!("backup:{second_ts}")),
        "{after_delete:?}"
    );
    assert!(after_delete.contains(&format!("backup:{ts}")), "{after_delete:?}");

    // Change data and objects.
    std::fs::write(data.path().join("db"), "rows after a bad day").unwrap();
    secrets(&c, NS)
        .delete("user-upload", &Default::default())
        .await
        .unwrap();
    // Unknown names are refused with the valid ones.
    let (status, body) = post_restore(
        &c,
        json!({"timestamp": ts, "svcs": {"gitserver": {"disable": true}}, "confirm": true}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "unknown_restore_names");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("gitserver") && msg.contains("dump-db") && msg.contains("frontend"),
        "{msg}"
    );
    // Without confirmation: refused.
    let (status, body) = post_restore(&c, json!({"timestamp": ts})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "confirmation_required");

    // Import 2.0.0 afterwards: the trust state moves past the backup's.
    c.import(&v2);
    let trust_before = trust(&c);
    restore_ok(&c, &[&ts]).await;
    assert_eq!(db(data.path()), "rows of 1.0.0", "{}", c.log());
    assert_eq!(
        secret_value(&c, NS, "user-upload").await.as_deref(),
        Some("kept by the app"),
        "{:#?}",
        c.history().await.first()
    );
    let r = c.release().await;
    assert_eq!(r["status"]["currentVersion"], "1.0.0", "{r}");
    let record = http(
        &c,
        reqwest::Method::GET,
        &format!("/api/v1/restores/{ts}"),
        VIEWER,
        None,
    )
    .await
    .1;
    assert_eq!(record["status"], "Success", "{record}");
    // Trust state never lowered by the older backup.
    let trust_after = trust(&c);
    assert_eq!(trust_after["minSequence"], trust_before["minSequence"]);
    assert_eq!(trust_after["clockFloor"], trust_before["clockFloor"]);
    assert!(trust_after["versions"]["2.0.0"].is_object(), "{trust_after}");

    // Skipping the database part restores the objects only.
    std::fs::write(data.path().join("db"), "rows written later").unwrap();
    secrets(&c, NS)
        .delete("user-upload", &Default::default())
        .await
        .unwrap();
    restore_ok(&c, &[&ts, "--skip", "dump-db"]).await;
    assert_eq!(db(data.path()), "rows written later");
    assert_eq!(
        secret_value(&c, NS, "user-upload").await.as_deref(),
        Some("kept by the app")
    );

    // A corrupted backup is refused before anything changes.
    let entry = c.dir.path().join(format!("store/backups/{ts}/entries/objects.json"));
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&entry, bytes).unwrap();
    let before = c.sim.snapshot();
    let (status, body) = post_restore(&c, json!({"timestamp": ts, "confirm": true})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "entry_digest", "{body}");
    assert!(body["message"].as_str().unwrap().contains("objects.json"), "{body}");
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a refused restore changed the cluster:\n{diff}");

    // During an upgrade, restores and backups are refused.
    let upgrade = c.cli_async(&["upgrade", "2.0.0"]).await;
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    let started_at = Instant::now();
    while !http(&c, reqwest::Method::GET, "/api/v1/release", VIEWER, None).await.1["running"].is_string() {
        assert!(
            started_at.elapsed() < Duration::from_secs(30),
            "the upgrade did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = post_restore(&c, json!({"timestamp": ts, "confirm": true})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("operation_running")),
        "{body}"
    );
    let (status, _) = http(&c, reqwest::Method::POST, "/api/v1/backups", ADMIN, Some(json!({}))).await;
    assert_eq!(status, 409);
    let r = wait_for(&c, "the upgrade to end", |r| {
        r["status"]["phase"] == "Ready" && r["status"]["currentVersion"] == "2.0.0"
    })
    .await;
    // The upgrade took its own backup of 1.0.0 first.
    let steps = c.history().await;
    let list = http(&c, reqwest::Method::GET, "/api/v1/backups", VIEWER, None).await.1;
    let pre: Vec<&Value> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kind"] == "preUpgrade")
        .collect();
    assert_eq!(pre.len(), 1, "{list}\n{r}\n{steps:?}");
    assert_eq!(pre[0]["appVersion"], "1.0.0");
    assert_eq!(pre[0]["status"], "Success");

    // A Restore request written with kubectl for a backup that does not exist: refused
    // before anything starts, and recorded so `restore --wait` ends.
    kubectl_patch(
        &c,
        json!({"spec": {"request": {"id": "by-hand", "action": "Restore", "backup": "2020-01-01t00-00-00"}}}),
    )
    .await;
    let r = wait_for(&c, "the request to be refused", |r| {
        condition(r, "Stalled")["reason"] == "RestoreFailed"
    })
    .await;
    let message = condition(&r, "Stalled")["message"].as_str().unwrap().to_owned();
    assert!(message.contains("2020-01-01t00-00-00"), "{message}");
    let record = http(
        &c,
        reqwest::Method::GET,
        "/api/v1/restores/2020-01-01t00-00-00",
        VIEWER,
        None,
    )
    .await
    .1;
    assert_eq!(
        (record["status"].as_str(), record["request"].as_str()),
        (Some("Failed"), Some("by-hand")),
        "{record}"
    );
    assert_eq!(r["status"]["currentVersion"], "2.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_and_retention() {
    let vendor = Vendor::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("db"), "rows").unwrap();
    let v1 = vendor.build_spec(&spec(&with_data_steps("1.0.0", data.path())), "1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&with_data_steps("2.0.0", data.path())), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;
    upgrade_ok(&c, "2.0.0", &[]).await;
    // A bad frequency is refused, naming the field.
    let (status, body) = http(
        &c,
        reqwest::Method::PUT,
        "/api/v1/backups/config",
        ADMIN,
        Some(json!({"enableRegularBackups": true, "backupFrequency": "0 0 * * *", "backupRetentionCount": 2, "backupBeforeUpgrade": true})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("backupFrequency"), "{body}");
    let out = c
        .cli_async(&[
            "backup",
            "config",
            "--set",
            "enableRegularBackups=true",
            "--set",
            "backupFrequency=*/2 * * * * *",
            "--set",
            "backupRetentionCount=2",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    // Wait until retention has removed scheduled backups.
    let started = Instant::now();
    loop {
        let removed = c
            .audit()
            .await
            .iter()
            .filter(|r| r["action"] == "backup-retention")
            .count();
        if removed >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "retention never ran:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = c
        .cli_async(&["backup", "config", "--set", "enableRegularBackups=false"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    // A run already started finishes; one waiting for the agent is dropped (it looks at the
    // setting again within a second). Settled: idle, and still idle a moment later.
    let started = Instant::now();
    loop {
        c.wait_idle().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let running = http(&c, reqwest::Method::GET, "/api/v1/release", VIEWER, None).await.1["running"].clone();
        if running.is_null() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "backups kept starting after regular backups were disabled: {running}"
        );
    }
    let list = http(&c, reqwest::Method::GET, "/api/v1/backups", VIEWER, None).await.1;
    let all = list["backups"].as_array().unwrap();
    let scheduled: Vec<&Value> = all.iter().filter(|b| b["kind"] == "scheduled").collect();
    let pre: Vec<&Value> = all.iter().filter(|b| b["kind"] == "preUpgrade").collect();
    assert!(scheduled.len() <= 2, "{list}");
    assert!(!scheduled.is_empty(), "{list}");
    assert!(scheduled.iter().all(|b| b["status"] == "Success"), "{list}");
    // The pre-upgrade backup of the previous revision is outside the count.
    assert_eq!(pre.len(), 1, "{list}");
    let started = c
        .audit()
        .await
        .iter()
        .filter(|r| r["action"] == "backup" && r["outcome"] == "started")
        .count();
    assert!(started >= 4, "{started} backups started");
}

/// The agent's public key, as `sealift-agent backup key` prints it.
async fn agent_public_key(c: &Cluster, out: &Path) {
    let printed = c.cli_async(&["backup", "key"]).await;
    assert!(printed.status.success(), "{}", text(&printed));
    let pem = String::from_utf8(printed.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    std::fs::write(out, pem).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_restore_on_a_second_cluster_in_another_namespace() {
    let vendor = Vendor::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("db"), "rows from cluster A").unwrap();
    let v1 = vendor.build_spec(&spec(&with_data_steps("1.0.0", data.path())), "1.0.0", 1);
    let a = Cluster::start(&vendor).await;
    a.import(&v1);
    upgrade_ok(&a, "1.0.0", &[]).await;
    put_secret(&a, NS, "user-upload", "from A").await;
    let ts = backup_now(&a).await;
    let archive = a.dir.path().join("backup.tar");
    let out = a
        .cli_async(&["backup", "export", &ts, "-o", &archive.display().to_string()])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    // A viewer cannot download archives (they carry Secrets).
    let (status, _) = http(
        &a,
        reqwest::Method::GET,
        &format!("/api/v1/backups/{ts}/archive"),
        VIEWER,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let a_pub = a.dir.path().join("agent-a.pub");
    agent_public_key(&a, &a_pub).await;

    let b = Cluster::start_configured(
        &vendor,
        "5s",
        "  appNamespace: moved\n",
        &format!("backups:\n  trustedKeys: [{}]\n", a_pub.display()),
    )
    .await;
    // An edited archive is refused and leaves nothing.
    let mut edited = std::fs::read(&archive).unwrap();
    let at = edited.len() / 2;
    edited[at] ^= 0x20;
    let edited_path = b.dir.path().join("edited.tar");
    std::fs::write(&edited_path, edited).unwrap();
    let out = b
        .cli_async(&["backup", "import", &edited_path.display().to_string()])
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    let list = http(&b, reqwest::Method::GET, "/api/v1/backups", ADMIN, None).await.1;
    assert_eq!(list["backups"], json!([]), "{list}");

    // Restore needs the bundle first, and says so.
    let out = b.cli_async(&["backup", "import", &archive.display().to_string()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let (status, body) = post_restore(&b, json!({"timestamp": ts, "confirm": true})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("bundle_not_imported")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("import 1.0.0 first"),
        "{body}"
    );
    b.import(&v1);
    std::fs::write(data.path().join("db"), "wiped").unwrap();
    restore_ok(&b, &[&ts, "--source-namespace", NS]).await;
    assert_eq!(db(data.path()), "rows from cluster A", "{}", b.log());
    assert_eq!(
        secret_value(&b, "moved", "user-upload").await.as_deref(),
        Some("from A")
    );
    let web = b
        .get("apps/v1", "Deployment", "deployments", "moved", "sample-app-web")
        .await;
    assert!(web.is_some(), "the release was re-rendered into namespace moved");

    // A validly signed archive carrying a Deployment and RBAC restores only its data.
    let forged = forge_archive(&a, &ts, b.dir.path()).await;
    let out = b
        .cli_async(&["backup", "import", &forged.1.display().to_string()])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    restore_ok(&b, &[&forged.0]).await;
    assert_eq!(secret_value(&b, "moved", "planted").await.as_deref(), Some("data"));
    assert!(
        b.get("apps/v1", "Deployment", "deployments", "moved", "evil")
            .await
            .is_none()
    );
    assert!(
        b.get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "",
            "evil-admin"
        )
        .await
        .is_none()
    );
}

/// A new archive signed with agent A's key: backup `ts`'s entries plus a Deployment, a
/// ClusterRoleBinding and a Secret in `objects.json`. Returns its id and file.
async fn forge_archive(a: &Cluster, ts: &str, dir: &Path) -> (String, PathBuf) {
    use agent::backup::archive::{self, BackupId, BackupInfo, BackupKind, BackupTrust, DirStorage, SharedStorage};
    let api: Api<DynamicObject> = Api::namespaced_with(
        a.client.clone(),
        AGENT_NS,
        &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let s = serde_json::to_value(api.get("sealift-agent-backup-key").await.unwrap()).unwrap();
    use base64::Engine as _;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(s["data"]["backup.key"].as_str().unwrap())
        .unwrap();
    let key = keys::SigningKey::from_pkcs8_pem(std::str::from_utf8(&pem).unwrap(), None).unwrap();
    let trust = BackupTrust {
        own: key.public_key(),
        trusted: vec![],
    };
    let source: SharedStorage = std::sync::Arc::new(DirStorage::new(a.dir.path().join("store/backups")).unwrap());
    let original = archive::open_verified(source, &ts.parse().unwrap(), &trust, None).unwrap();
    let m = original.manifest().clone();
    let storage: SharedStorage = std::sync::Arc::new(DirStorage::new(dir.join("forged")).unwrap());
    let id = BackupId::from_timestamp(m.created.checked_add(jiff::SignedDuration::from_secs(3600)).unwrap()).unwrap();
    let writer = archive::BackupWriter::create(
        storage.clone(),
        id,
        BackupInfo {
            product: m.product.clone(),
            app_version: m.app_version.clone(),
            bundle: m.bundle.clone(),
            sequence: m.sequence,
            source_namespace: m.source_namespace.clone(),
            kind: BackupKind::Manual,
            revision: None,
        },
        None,
    )
    .unwrap();
    for e in original.entries() {
        let path = e.path.as_str();
        if path == "objects.json" {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut original.read(path).unwrap(), &mut bytes).unwrap();
        writer.add_bytes(path, &bytes).unwrap();
    }
    let objects = json!([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "evil", "namespace": NS},
         "spec": {"selector": {"matchLabels": {"app": "evil"}}, "template": {"metadata": {"labels": {"app": "evil"}},
            "spec": {"containers": [{"name": "x", "image": "evil.example/miner:1"}]}}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "evil-admin"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}]},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "planted", "namespace": NS},
         "type": "Opaque", "data": {"token": "ZGF0YQ=="}},
    ]);
    writer
        .add_bytes("objects.json", &serde_json::to_vec(&objects).unwrap())
        .unwrap();
    writer.finish(&key).unwrap();
    let file = dir.join("forged.tar");
    archive::export(storage, &id, &trust, std::fs::File::create(&file).unwrap()).unwrap();
    (id.to_string(), file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_protect_upgrades() {
    let vendor = Vendor::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("db"), "rows before 2.0.0").unwrap();
    let v1 = vendor.build_spec(&spec(&with_data_steps("1.0.0", data.path())), "1.0.0", 1);
    // 2.0.0: an irreversible migration rewrites the data, then a post-upgrade step fails.
    let d2 = with_data_steps("2.0.0", data.path());
    edit(
        d2.path(),
        "sealift.yaml",
        "steps:\n",
        &format!(
            "steps:\n  - id: rewrite-rows\n    kind: migration\n    phase: preUpgrade\n    image: quay.io/sealift-sample/api:2.0.0\n    command: [\"/app/migrate\", \"rewrite\"]\n    env:\n      - name: DATA\n        value: \"{d}\"\n    podTemplate:\n      annotations:\n        sim.sealift.dev/exec: 'echo \"rows in the 2.0.0 format\" > \"$DATA/db\"'\n  - id: verify-rows\n    kind: migration\n    phase: postUpgrade\n    image: quay.io/sealift-sample/api:2.0.0\n    command: [\"/app/migrate\", \"verify\"]\n    podTemplate:\n      annotations:\n        sim.sealift.dev/exec: 'echo \"verify: 3 rows lost\"; exit 2'\n",
            d = data.path().display()
        ),
    );
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;

    // A failing pre-upgrade backup stops the upgrade before any change.
    std::fs::remove_file(data.path().join("db")).unwrap();
    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "BackupFailed", "{r}");
    assert!(
        message.contains("dump-db") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(r["status"]["currentVersion"], "1.0.0");
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(
        diff.changed.is_empty() && diff.removed.is_empty(),
        "a failed backup changed the application:\n{diff}"
    );
    assert!(!data.path().join("db").exists(), "the migration did not run");
    let list = http(&c, reqwest::Method::GET, "/api/v1/backups", VIEWER, None).await.1;
    assert_eq!(list["backups"][0]["status"], "Failed", "{list}");

    // With the backup: the irreversible migration runs, the upgrade fails after it, and the
    // automatic rollback restores the pre-upgrade backup's data under 1.0.0.
    std::fs::write(data.path().join("db"), "rows before 2.0.0").unwrap();
    let out = c.cli_async(&["retry", "--wait"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let r = c.release().await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "UpgradeFailed", "{r}\n{}", c.log());
    assert!(
        message.contains("verify-rows") && message.ends_with("rolled back to 1.0.0"),
        "{message}"
    );
    assert_eq!(r["status"]["currentVersion"], "1.0.0");
    assert_eq!(db(data.path()), "rows before 2.0.0", "{}", c.log());

    // Without a backup the same failure ends Stalled, naming the migration.
    let r = upgrade_fails(&c, "2.0.0", &["--no-backup"]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "RollbackFailed", "{r}");
    assert!(
        message.contains("rewrite-rows") && message.contains("took no backup"),
        "{message}"
    );
}

/// Restarts the agent with `extra` appended to its configuration.
async fn restart_with(c: &mut Cluster, extra: &str) {
    restart_edited(c, |text| format!("{text}{extra}")).await;
}

/// Restarts the agent with its configuration changed by `edit`.
async fn restart_edited(c: &mut Cluster, edit: impl FnOnce(String) -> String) {
    let mut agent = c.agent.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let cfg = c.dir.path().join("agent.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, edit(text)).unwrap();
    c.spawn_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_interrupted_and_missed_backups() {
    let vendor = Vendor::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("db"), "rows to keep secret").unwrap();
    let v1 = vendor.build_spec(&spec(&with_data_steps("1.0.0", data.path())), "1.0.0", 1);
    let mut c = Cluster::start(&vendor).await;
    // Encryption at rest with an age identity from a Secret of the agent's namespace.
    let identity = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret as _;
    put_secret_key(&c, "backup-age", "age.key", identity.to_string().expose_secret()).await;
    restart_with(&mut c, "backups:\n  encryption: {secret: backup-age, key: age.key}\n").await;
    c.import(&v1);
    upgrade_ok(&c, "1.0.0", &[]).await;
    put_secret(&c, NS, "user-upload", "kept by the app").await;
    let ts = backup_now(&c).await;
    let view = http(&c, reqwest::Method::GET, &format!("/api/v1/backups/{ts}"), VIEWER, None)
        .await
        .1;
    assert_eq!(view["encrypted"], true, "{view}");
    let entries = c.dir.path().join(format!("store/backups/{ts}/entries"));
    for f in ["objects.json", "parts/dump-db"] {
        let bytes = std::fs::read(entries.join(f)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{f} is not an age file");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("user-upload") && !text.contains("rows to keep secret"),
            "{f} leaks"
        );
    }
    std::fs::write(data.path().join("db"), "overwritten").unwrap();
    restore_ok(&c, &[&ts]).await;
    assert_eq!(db(data.path()), "rows to keep secret");

    // A backup interrupted by the agent's death ends Failed, never Success.
    std::fs::write(data.path().join("hold"), "").unwrap();
    let out = c.cli_async(&["backup", "create"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let held = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let jobs: Api<DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        NS,
        &kube::core::ApiResource::erase::<k8s_openapi::api::batch::v1::Job>(&()),
    );
    let started = Instant::now();
    while !jobs.list(&Default::default()).await.unwrap().items.iter().any(|j| {
        j.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.contains("dump-db") && n.ends_with(&held.replace('-', "")))
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the dump Job never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    restart_with(&mut c, "").await;
    std::fs::remove_file(data.path().join("hold")).unwrap();
    let view = http(
        &c,
        reqwest::Method::GET,
        &format!("/api/v1/backups/{held}"),
        VIEWER,
        None,
    )
    .await
    .1;
    assert_eq!(view["status"], "Failed", "{view}");
    assert!(view["reason"].as_str().unwrap().contains("interrupted"), "{view}");
    let (status, body) = post_restore(&c, json!({"timestamp": held, "confirm": true})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("backup_not_successful")),
        "{body}"
    );

    // A scheduled run missed while the agent was down is skipped and logged, not made up.
    let out = c
        .cli_async(&[
            "backup",
            "config",
            "--set",
            "backupFrequency=*/2 * * * * *",
            "--set",
            "enableRegularBackups=true",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let mut agent = c.agent.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.spawn_agent().await;
    let out = c
        .cli_async(&["backup", "config", "--set", "enableRegularBackups=false"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let missed: Vec<Value> = c
        .audit()
        .await
        .into_iter()
        .filter(|r| r["action"] == "backup" && r["outcome"] == "skipped" && r["code"] == "missed")
        .collect();
    assert_eq!(missed.len(), 1, "{:#?}", c.audit().await);
    assert!(c.log().contains("was missed while the agent was down"), "{}", c.log());

    // A volume without room for the dump: the part upload is refused (507), nothing of it is
    // kept, and the backup ends Failed.
    restart_edited(&mut c, |text| text.replace("reserveBytes: 0", "reserveBytes: 1000Ti")).await;
    let out = c.cli_async(&["backup", "create", "--wait"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let list = http(&c, reqwest::Method::GET, "/api/v1/backups/latest", VIEWER, None)
        .await
        .1;
    assert_eq!(list["status"], "Failed", "{list}");
    let reason = list["reason"].as_str().unwrap();
    assert!(reason.contains("dump-db") && reason.contains("507"), "{reason}");
    let full = list["timestamp"].as_str().unwrap();
    assert!(
        !c.dir
            .path()
            .join(format!("store/backups/{full}/entries/parts/dump-db"))
            .exists()
    );
}

async fn put_secret_key(c: &Cluster, name: &str, key: &str, value: &str) {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": AGENT_NS},
        "type": "Opaque", "stringData": {key: value}});
    secrets(c, AGENT_NS)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(secret))
        .await
        .unwrap();
}
