//! The release engine end to end: the real `sealift-agent serve` binary against the Kubernetes
//! API simulator and the real registry. Install from nothing, upgrade, and an upgrade whose
//! component crash-loops and rolls back by itself — each checked in the cluster, the
//! registry, the `SealiftRelease` status, the history and the audit log.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tests::registry::{Registry, RegistryOptions};

pub(crate) use super::vendor::Vendor;

use super::harness::{self, AgentYaml, write_agent_dir};
pub(crate) use super::harness::{ADMIN, VIEWER};
pub(crate) const AGENT_NS: &str = "sealift-system";

/// The agent binary serving against the simulator.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) sim: kubesim::Simulator,
    pub(crate) target: Registry,
    pub(crate) client: kube::Client,
    pub(crate) url: String,
    pub(crate) agent: Option<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub(crate) async fn start(vendor: &Vendor) -> Self {
        Self::start_with_lease(vendor, "5s").await
    }

    /// As [`Cluster::start`], with the operation Lease's duration (how long a restarted agent
    /// waits before taking over the operation of a killed one).
    pub(crate) async fn start_with_lease(vendor: &Vendor, lease: &str) -> Self {
        Self::start_configured(vendor, lease, "", "").await
    }

    /// As [`Cluster::start_with_lease`], with lines added to the `kubernetes:` section
    /// (`kube_extra`, indented by the caller) and top-level sections (`extra`).
    pub(crate) async fn start_configured(vendor: &Vendor, lease: &str, kube_extra: &str, extra: &str) -> Self {
        let target = Registry::start(RegistryOptions::default()).unwrap();
        let sim = kubesim::Simulator::start(kubesim::SimConfig {
            registry: Some(kubesim::RegistryConfig::plain(&target.addr())),
            ..Default::default()
        })
        .await
        .unwrap();
        let client = sim.kube_client().unwrap();
        let namespaces: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
        );
        namespaces
            .patch(
                AGENT_NS,
                &PatchParams::apply("test"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AGENT_NS}})),
            )
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        write_agent_dir(
            dir.path(),
            &vendor.roots,
            AgentYaml {
                listen: &format!("127.0.0.1:{port}"),
                product: "sample-app",
                max_bytes: "10Gi",
                registry: &target.addr(),
                extra: &format!(
                    "kubernetes:\n  namespace: {AGENT_NS}\n  kubeconfig: {}\n  leaseDuration: {lease}\n  waveTimeout: 60s\n  pollInterval: 200ms\n  agentUrl: http://127.0.0.1:{port}\n{kube_extra}{extra}",
                    sim.kubeconfig_path().display()
                ),
            },
        );
        let mut c = Self {
            dir,
            sim,
            target,
            client,
            url: format!("http://127.0.0.1:{port}"),
            agent: None,
        };
        c.spawn_agent().await;
        c
    }

    pub(crate) async fn spawn_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
            .args(["serve", "--config"])
            .arg(self.dir.path().join("agent.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let exited = self.agent.as_mut().and_then(|a| a.try_wait().ok().flatten());
            assert!(exited.is_none(), "the agent exited ({exited:?}): {}", self.log());
            let health = http.get(format!("{}/healthz", self.url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "agent did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// `sealift-agent ARGS` as the admin.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        harness::cli(&self.url, ADMIN, args)
    }

    pub(crate) async fn cli_async(&self, args: &[&str]) -> std::process::Output {
        harness::cli_async(&self.url, ADMIN, args).await
    }

    pub(crate) fn import(&self, file: &Path) {
        let out = self.cli(&["import", &file.display().to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    pub(crate) async fn release(&self) -> Value {
        self.release_opt().await.expect("the SealiftRelease sample-app exists")
    }

    /// The SealiftRelease, or `None` while it does not exist (deleted and not yet recreated).
    pub(crate) async fn release_opt(&self) -> Option<Value> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), AGENT_NS, &release_resource());
        api.get_opt("sample-app")
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Waits until the agent runs no operation and no backup (`running` is null).
    pub(crate) async fn wait_idle(&self) {
        let started = Instant::now();
        loop {
            let v: Value = harness::get_json(&format!("{}/api/v1/release", self.url), VIEWER).await;
            if v["running"].is_null() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the agent stayed busy with {}\n{}",
                v["running"],
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn get(&self, api_version: &str, kind: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ar = kube::core::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = if ns.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), ns, &ar)
        };
        api.get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    pub(crate) async fn audit(&self) -> Vec<Value> {
        let out = self.cli_async(&["audit"]).await;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub(crate) async fn history(&self) -> Vec<Value> {
        let v: Value = harness::get_json(&format!("{}/api/v1/revisions", self.url), VIEWER).await;
        v["revisions"].as_array().unwrap().clone()
    }
}

pub(crate) fn release_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "sealift.dev".into(),
        version: "v1alpha1".into(),
        api_version: "sealift.dev/v1alpha1".into(),
        kind: "SealiftRelease".into(),
        plural: "sealiftreleases".into(),
    }
}

pub(crate) fn condition(release: &Value, type_: &str) -> Value {
    release["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

pub(crate) fn image_of(deployment: &Value) -> String {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn outcomes(history: &[Value]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = history
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_owned(),
                r["operation"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.reverse();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_and_an_automatic_rollback() {
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build("2.0.0", 2);
    let v3 = vendor.build("3.0.0", 3);
    let c = Cluster::start(&vendor).await;

    // The agent applied its CRD and created the one release, with nothing installed.
    let r = c.release().await;
    assert_eq!(r["spec"].get("version"), None, "{r}");
    assert_eq!(r["metadata"]["finalizers"][0], "sealift.dev/keep-release");
    for f in [&v1, &v2, &v3] {
        c.import(f);
    }

    // A version that is not imported is refused at once, naming what is; the cluster is
    // untouched.
    let before = c.sim.snapshot();
    let out = c.cli_async(&["upgrade", "9.9.9"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("9.9.9 is not imported; imported versions: 3.0.0, 2.0.0, 1.0.0"),
        "{err}"
    );
    let changed = before.diff(&c.sim.snapshot());
    assert!(changed.is_empty(), "{changed:?}");

    // Install 1.0.0 from nothing: the namespace is created, images point at the cluster
    // registry by digest.
    assert!(c.get("v1", "Namespace", "namespaces", "", "sample").await.is_none());
    let out = c.cli_async(&["upgrade", "1.0.0", "--wait"]).await;
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    let r = c.release().await;
    assert_eq!(r["status"]["currentVersion"], "1.0.0", "{r}");
    assert_eq!(condition(&r, "Ready")["status"], "True", "{r}");
    let web = c
        .get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
        .await
        .expect("web deployed");
    let image = image_of(&web);
    assert!(
        image.starts_with(&format!("{}/sealift-sample/web@sha256:", c.target.addr())),
        "{image}"
    );
    assert!(c.get("v1", "Namespace", "namespaces", "", "sample").await.is_some());
    // The password generated for this site is kept in the store for every later render.
    let site: Value =
        serde_json::from_slice(&std::fs::read(c.dir.path().join("store/release/site.json")).unwrap()).unwrap();
    assert_eq!(
        site["generated"]["adminPassword"].as_str().map(str::len),
        Some(24),
        "{site}"
    );
    // …and never shown: a viewer reading the revision sees no Secret value nor step token.
    let password = site["generated"]["adminPassword"].as_str().unwrap().to_owned();
    let details = reqwest::Client::new()
        .get(format!("{}/api/v1/revisions/1", c.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&password);
    assert!(details.contains("\"kind\":\"Secret\""), "{details}");
    assert!(
        !details.contains(&password) && !details.contains(&encoded),
        "a secret value is shown"
    );
    assert!(details.contains("<redacted>"));
    // What workloads read goes before them: no declared wave selected the ConfigMap, yet it
    // is applied in the `config` wave, ahead of the declared waves.
    let applied: Value = serde_json::from_str(&details).unwrap();
    let position = |kind: &str, name: &str| {
        applied["applied"]
            .as_array()
            .unwrap()
            .iter()
            .position(|a| a["object"]["kind"] == kind && a["object"]["metadata"]["name"] == name)
            .unwrap()
    };
    assert!(position("ConfigMap", "sample-app-config") < position("Deployment", "sample-app-web"));
    assert!(position("Secret", "sample-app-db") < position("StatefulSet", "sample-app-db"));

    // Someone scales the web Deployment by hand (another field manager).
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        "sample",
        &kube::core::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    );
    deployments
        .patch(
            "sample-app-web",
            &PatchParams::apply("admin-tweak").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "sample-app-web", "namespace": "sample"}, "spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    let started = Instant::now();
    while c
        .get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
        .await
        .unwrap()["status"]["availableReplicas"]
        != 5
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the hand-scaled web never became ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Upgrade to 2.0.0 through kubectl's path: a merge patch of spec.version.
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), AGENT_NS, &release_resource());
    api.patch(
        "sample-app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"version": "2.0.0"}})),
    )
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let r = c.release().await;
        if r["status"]["currentVersion"] == "2.0.0" && r["status"]["phase"] == "Ready" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "upgrade to 2.0.0 did not finish: {r}\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let web = c
        .get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
        .await
        .unwrap();
    assert!(image_of(&web).contains("/sealift-sample/web@sha256:"));
    assert_ne!(image_of(&web), image, "the web image moved to 2.0.0");
    let v2_web = image_of(&web);
    // The release's value wins over the hand edit, and taking the field is on record.
    assert_eq!(web["spec"]["replicas"], 2);
    let details: Value = harness::get_json(&format!("{}/api/v1/revisions/2", c.url), VIEWER).await;
    let took = details["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["outcome"] == "took-fields" && l["log"].as_str().unwrap().contains("admin-tweak"));
    assert!(took, "{}", details["steps"]);
    // The pre-upgrade migration ran as a Job with a deterministic name.
    assert!(
        c.get("batch/v1", "Job", "jobs", "sample", "sample-app-add-column-r2")
            .await
            .is_some()
    );

    // 3.0.0 crash-loops: it fails fast and rolls back to 2.0.0 by itself.
    let out = c.cli_async(&["upgrade", "3.0.0", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let r = c.release().await;
    let stalled = condition(&r, "Stalled");
    assert_eq!(stalled["status"], "True", "{r}");
    assert_eq!(stalled["reason"], "UpgradeFailed", "{r}");
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("CrashLoopBackOff"), "{message}");
    assert!(message.ends_with("; rolled back to 2.0.0"), "{message}");
    assert_eq!(r["status"]["currentVersion"], "2.0.0");
    assert_eq!(
        r["spec"]["version"], "3.0.0",
        "an automatic rollback leaves the typed version"
    );
    let web = c
        .get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
        .await
        .unwrap();
    assert_eq!(image_of(&web), v2_web, "2.0.0's web image is back");
    // The reversible migration of 3.0.0 ran its down step.
    assert!(
        c.get("batch/v1", "Job", "jobs", "sample", "sample-app-add-index-r3-down")
            .await
            .is_some()
    );

    let history = c.history().await;
    assert_eq!(
        outcomes(&history),
        [
            ("1.0.0".into(), "install".into(), "superseded".into()),
            ("2.0.0".into(), "upgrade".into(), "superseded".into()),
            ("3.0.0".into(), "upgrade".into(), "failed".into()),
            ("2.0.0".into(), "rollback".into(), "deployed".into()),
        ]
    );
    let audit = c.audit().await;
    let upgrade_refused = audit
        .iter()
        .any(|a| a["action"] == "upgrade" && a["outcome"] == "refused" && a["code"] == "not_imported");
    assert!(upgrade_refused, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "upgrade" && a["version"] == "3.0.0" && a["outcome"] == "failed")
    );
    // Kubernetes Events on the SealiftRelease, one per step and one per outcome.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client.clone(), AGENT_NS);
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("sample-app"))
        .filter_map(|e| e.reason)
        .collect();
    for reason in [
        "Verify",
        "Preflight",
        "Stage",
        "PreHooks",
        "Apply",
        "Succeeded",
        "UpgradeFailed",
    ] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} Event in {reasons:?}");
    }
    // The real kubectl shows the printer columns.
    let out = Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
        .arg("--kubeconfig")
        .arg(c.sim.kubeconfig_path())
        .args(["get", "sealiftreleases", "-n", AGENT_NS])
        .output()
        .expect("kubectl 1.33 beside the machine's kubectl dispatcher");
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "VERSION", "DESIRED", "READY", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..4], ["sample-app", "2.0.0", "3.0.0", "False"], "{table}");

    // Any other SealiftRelease is not this agent's: marked Stalled/Ignored, nothing done.
    api.patch(
        "intruder",
        &PatchParams::apply("test"),
        &Patch::Apply(json!({"apiVersion": "sealift.dev/v1alpha1", "kind": "SealiftRelease",
            "metadata": {"name": "intruder", "namespace": AGENT_NS}, "spec": {"version": "1.0.0"}})),
    )
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let other = serde_json::to_value(api.get("intruder").await.unwrap()).unwrap();
        if other["status"]["phase"] == "Stalled/Ignored" {
            assert!(
                condition(&other, "Stalled")["message"]
                    .as_str()
                    .unwrap()
                    .contains("only SealiftRelease")
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{other}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The failed generation is not retried by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.history().await.len(), 4);
}

pub(crate) async fn wait_for(c: &Cluster, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        // A deleted release is absent until the agent recreates it: that is "not yet".
        let r = c.release_opt().await;
        if let Some(r) = &r
            && done(r)
        {
            // A final phase shows a moment before the agent lets go of the operation (Lease,
            // bookkeeping): the caller's next request must not find it still busy.
            if phase(r) == "Ready" || phase(r).starts_with("Stalled") {
                c.wait_idle().await;
            }
            return r.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {}\n{}",
            r.map_or("the release is absent".to_string(), |r| r.to_string()),
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn phase(r: &Value) -> &str {
    r["status"]["phase"].as_str().unwrap_or("")
}

pub(crate) async fn kubectl_patch(c: &Cluster, patch: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), AGENT_NS, &release_resource());
    api.patch("sample-app", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_disabled_retry_roll_forward_queue_manual_rollback_and_uninstall() {
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build("2.0.0", 2);
    let v3 = vendor.build("3.0.0", 3);
    let c = Cluster::start(&vendor).await;
    for f in [&v1, &v2, &v3] {
        c.import(f);
    }
    let out = c.cli_async(&["upgrade", "1.0.0", "--wait"]).await;
    assert!(out.status.success(), "{}", c.log());
    let v1_web = image_of(
        &c.get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
            .await
            .unwrap(),
    );

    // Rollback disabled: the failed revision stays for debugging.
    let out = c.cli_async(&["upgrade", "3.0.0", "--disable-rollback", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1));
    let r = c.release().await;
    let stalled = condition(&r, "Stalled");
    assert_eq!(stalled["reason"], "UpgradeFailed", "{r}");
    assert!(
        stalled["message"].as_str().unwrap().contains("rollback disabled"),
        "{r}"
    );
    let web = c
        .get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
        .await
        .unwrap();
    assert_ne!(image_of(&web), v1_web, "the failed 3.0.0 web stays in place");
    // Not re-run while the generation is unchanged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.history().await.len(), 2);

    // Retry through spec.request (kubectl): runs once, fails again the same way.
    kubectl_patch(&c, json!({"spec": {"request": {"id": "retry-1", "action": "Retry"}}})).await;
    let r = wait_for(&c, "the retry", |r| {
        r["status"]["handledRequest"] == "retry-1"
            && phase(r) == "Stalled/UpgradeFailed"
            && r["status"]["revisions"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    assert_eq!(r["status"]["revisions"][0]["outcome"], "failed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.history().await.len(), 3, "a handled request id runs once");

    // Roll forward to 2.0.0 through the API; meanwhile a second API upgrade is refused (409)
    // and a version set through kubectl waits (Queued) and runs afterwards.
    let out = c.cli_async(&["upgrade", "2.0.0"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(&c, "2.0.0 to start", |r| phase(r) == "Reconciling/Upgrading").await;
    let out = c.cli_async(&["upgrade", "1.0.0", "--allow-downgrade"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("upgrade to 2.0.0") && err.contains("(operation_running)"),
        "{err}"
    );
    kubectl_patch(&c, json!({"spec": {"version": "1.0.0", "allowDowngradeTo": "1.0.0"}})).await;
    let r = wait_for(&c, "the queued version", |r| phase(r) == "Reconciling/Queued").await;
    assert!(
        condition(&r, "Reconciling")["message"]
            .as_str()
            .unwrap()
            .contains("1.0.0 is queued"),
        "{r}"
    );
    wait_for(&c, "the queued downgrade to finish", |r| {
        phase(r) == "Ready" && r["status"]["currentVersion"] == "1.0.0"
    })
    .await;
    let history = outcomes(&c.history().await);
    assert_eq!(history[3], ("2.0.0".into(), "upgrade".into(), "superseded".into()));
    assert_eq!(history[4], ("1.0.0".into(), "upgrade".into(), "deployed".into()));

    // Manual rollback (to the previous version, 2.0.0): spec.version follows in the same patch.
    let out = c.cli_async(&["rollback", "--wait"]).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    let r = c.release().await;
    assert_eq!(r["spec"]["version"], "2.0.0");
    assert_eq!(r["status"]["currentVersion"], "2.0.0");
    assert_eq!(
        outcomes(&c.history().await).last().unwrap(),
        &("2.0.0".to_owned(), "rollback".to_owned(), "deployed".to_owned())
    );
    // `rollback --to` a version without a recorded revision is refused.
    let out = c.cli_async(&["rollback", "--to", "3.0.0"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upgrade 3.0.0 --allow-downgrade"));

    // Deleting the SealiftRelease uninstalls nothing: it comes back, spec at the current version.
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), AGENT_NS, &release_resource());
    let before_uid = c.release().await["metadata"]["uid"].clone();
    api.delete("sample-app", &Default::default()).await.unwrap();
    let r = wait_for(&c, "the release to come back", |r| r["metadata"]["uid"] != before_uid).await;
    assert_eq!(r["spec"]["version"], "2.0.0", "{r}");
    assert!(
        c.get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
            .await
            .is_some()
    );

    // Uninstall: the inventory goes, the deletion rule keeps CRDs and lists them.
    let out = c.cli_async(&["uninstall", "--yes"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = wait_for(&c, "the uninstall", |r| {
        phase(r) == "Ready" && r["status"].get("currentVersion").is_none()
    })
    .await;
    assert!(
        c.get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
            .await
            .is_none()
    );
    let left = r["status"]["leftBehind"].to_string();
    assert!(left.contains("CustomResourceDefinition"), "{r}");
    let audit = c.audit().await;
    for action in ["retry", "rollback", "uninstall", "delete-release"] {
        assert!(audit.iter().any(|a| a["action"] == action), "no {action} in {audit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_where_nothing_moves_fails_as_stalled_before_its_timeout() {
    use agent::release::cluster::Cluster as Kube;
    use agent::release::rollout::{WaitError, wait_ready};
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default()).await.unwrap();
    let kube = Kube::new(sim.kube_client().unwrap());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    kube.apply(&crd, true, false).await.unwrap();
    kube.apply(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
        true,
        false,
    )
    .await
    .unwrap();
    kube.refresh_discovery();
    // Its controller says "not ready" and never changes its mind.
    let gadget = json!({"apiVersion": "example.dev/v1", "kind": "Gadget",
        "metadata": {"name": "g", "namespace": "app"},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting", "message": "for a part"}]}});
    kube.apply(&gadget, true, false).await.unwrap();
    let key = agent::release::history::ObjectKey::of(&gadget).unwrap();
    let started = Instant::now();
    let err = wait_ready(
        &kube,
        &[key],
        Duration::from_secs(60),
        Duration::from_millis(100),
        Duration::from_secs(1),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WaitError::Stalled(_)), "{err}");
    assert!(err.to_string().contains("Gadget/app/g"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeout ended it, not the stall"
    );
}
