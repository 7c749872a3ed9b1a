//! Release-engine scenarios of issue 5, end to end: the real `sealift-agent serve` binary, the
//! Kubernetes API simulator and the real registry. Each scenario builds variants of the sample
//! app (a copy of `testdata/sample-app/<version>` edited in a tempdir), drives the agent through
//! its CLI or `kubectl patch`, and checks the cluster objects, the registry where it matters,
//! the `SealiftRelease` status (reason and message), the history and the audit log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubesim::{AccessRule, Diff, Snapshot};
use serde_json::{Value, json};

use super::release::{
    AGENT_NS, Cluster, VIEWER, Vendor, condition, image_of, kubectl_patch, outcomes, phase, wait_for,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A copy of `testdata/sample-app/<version>` (build spec and chart) to edit.
pub(crate) fn sample_copy(version: &str) -> tempfile::TempDir {
    let from = tests::sample::sample_spec(version)
        .parent()
        .expect("the sample spec has a directory")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    tests::sample::copy_dir(&from, dir.path()).unwrap();
    tests::sample::simulate_data_steps(dir.path()).unwrap();
    dir
}

/// Replaces the one occurrence of `from` in `file` (relative to `dir`) with `to`.
pub(crate) fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{file} should contain {from:?} once:\n{text}"
    );
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// Replaces the build spec's `steps:` list (up to `upgradePolicy:`) with `steps`.
fn set_steps(dir: &Path, steps: &str) {
    let path = dir.join("sealift.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("\nsteps:\n").expect("a steps list") + 1;
    let end = text.find("\nupgradePolicy:").expect("an upgrade policy") + 1;
    let text = format!("{}steps:\n{}{}", &text[..start], steps, &text[end..]);
    std::fs::write(&path, text).unwrap();
}

/// A copy of `version` without the Widget CRD and its custom resource.
fn without_widgets(version: &str) -> tempfile::TempDir {
    let d = sample_copy(version);
    std::fs::remove_dir_all(d.path().join("chart/crds")).unwrap();
    std::fs::remove_file(d.path().join("chart/templates/widget.yaml")).unwrap();
    d
}

/// The web pods of this copy crash-loop in the simulator.
fn crash_looping_web(dir: &Path) {
    edit(
        dir,
        "chart/values.yaml",
        "  podAnnotations: {}\n",
        "  podAnnotations:\n    sim.sealift.dev/crash-loop: \"web: cannot bind :8080\"\n",
    );
}

pub(crate) fn spec(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("sealift.yaml")
}

pub(crate) use super::harness::text;

/// What changed outside the agent's own namespace (its `SealiftRelease` and Lease), Events
/// aside: the application's objects and every cluster-scoped one.
pub(crate) fn app_diff(before: &Snapshot, after: &Snapshot) -> Diff {
    let mut d = before.diff(after);
    let app = |k: &kubesim::ObjectKey| k.namespace != AGENT_NS && k.resource != "events";
    d.added.retain(app);
    d.removed.retain(app);
    d.changed.retain(app);
    d
}

/// Installs (or upgrades to) `version` through the CLI and waits for it.
pub(crate) async fn upgrade_ok(c: &Cluster, version: &str, extra: &[&str]) {
    let mut args = vec!["upgrade", version, "--wait"];
    args.extend_from_slice(extra);
    let out = c.cli_async(&args).await;
    assert!(out.status.success(), "upgrade {version}: {}\n{}", text(&out), c.log());
    let r = c.release().await;
    assert_eq!(r["status"]["currentVersion"], version, "{r}");
    assert_eq!(phase(&r), "Ready", "{r}");
}

/// An upgrade that must not complete; returns the release afterwards.
pub(crate) async fn upgrade_fails(c: &Cluster, version: &str, extra: &[&str]) -> Value {
    let mut args = vec!["upgrade", version, "--wait"];
    args.extend_from_slice(extra);
    let out = c.cli_async(&args).await;
    assert!(!out.status.success(), "upgrade {version} should fail: {}", text(&out));
    c.release().await
}

/// The active `Stalled` condition: (reason, message).
pub(crate) fn stalled(r: &Value) -> (String, String) {
    let s = condition(r, "Stalled");
    assert_eq!(s["status"], "True", "not stalled: {r}");
    (
        s["reason"].as_str().unwrap_or_default().to_owned(),
        s["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// One revision in full (`GET /api/v1/revisions/{n}`).
async fn revision(c: &Cluster, n: u64) -> Value {
    reqwest::Client::new()
        .get(format!("{}/api/v1/revisions/{n}", c.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sets a site variable the way `vars set` will: `release/site.json` in the agent's store,
/// keeping whatever else is there (values generated for this site).
fn set_site_value(c: &Cluster, name: &str, value: Value) {
    let path = c.dir.path().join("store/release/site.json");
    let mut site: Value = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => json!({}),
    };
    site["values"][name] = value;
    std::fs::write(&path, serde_json::to_vec_pretty(&site).unwrap()).unwrap();
}

async fn web(c: &Cluster) -> Value {
    c.get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
        .await
        .expect("the web Deployment exists")
}

async fn job(c: &Cluster, name: &str) -> Option<Value> {
    c.get("batch/v1", "Job", "jobs", "sample", name).await
}

fn job_failed(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Failed" && c["status"] == "True")
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `HEAD /v2/<repo>/manifests/<reference>` on a registry: the status and the digest.
async fn manifest_head(registry: &str, repo: &str, reference: &str) -> (u16, Option<String>) {
    let resp = reqwest::Client::new()
        .head(format!("http://{registry}/v2/{repo}/manifests/{reference}"))
        .header("Accept", MANIFEST_TYPES)
        .send()
        .await
        .unwrap();
    let digest = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), digest)
}

/// `(repository, digest)` of a `host/repo@sha256:…` reference.
fn repo_and_digest(image: &str) -> (String, String) {
    let (name, digest) = image.split_once('@').expect("an image by digest");
    let repo = name.split_once('/').expect("a host").1;
    (repo.to_owned(), digest.to_owned())
}

fn audit_has(audit: &[Value], what: &str, matches: impl Fn(&Value) -> bool) {
    assert!(audit.iter().any(matches), "no audit record for {what} in:\n{audit:#?}");
}

fn history_tuple(version: &str, operation: &str, outcome: &str) -> (String, String, String) {
    (version.to_owned(), operation.to_owned(), outcome.to_owned())
}

// ---------------------------------------------------------------------------------------------
// 1. v1 → v2: an object pruned, a CRD and its custom resource added, a variable newly required

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_needing_a_new_variable_is_refused_then_prunes_and_adds_a_crd() {
    let vendor = Vendor::new();
    // 1.0.0 has the legacy ConfigMap and no Widget CRD.
    let d1 = without_widgets("1.0.0");
    // 2.0.0 drops the legacy ConfigMap, adds the CRD and a Widget, and needs `adminEmail`.
    let d2 = sample_copy("2.0.0");
    edit(
        d2.path(),
        "sealift.yaml",
        "\nsteps:\n",
        "\n  - name: adminEmail\n    type: string\n    description: Where the application sends operator mail (new in 2.0.0).\n    \
         valuesPath: adminEmail\n    required: true\n\nsteps:\n",
    );
    edit(
        d2.path(),
        "chart/values.yaml",
        "\nweb:\n",
        "\n# Operator mail address (a site variable).\nadminEmail: \"\"\n\nweb:\n",
    );
    edit(
        d2.path(),
        "chart/values.schema.json",
        "    \"images\": {",
        "    \"adminEmail\": { \"type\": \"string\" },\n    \"images\": {",
    );
    edit(
        d2.path(),
        "chart/templates/configmap.yaml",
        "  SEARCH_ENABLED: \"true\"\n",
        "  SEARCH_ENABLED: \"true\"\n  ADMIN_EMAIL: {{ .Values.adminEmail | quote }}\n",
    );
    let v1 = vendor.build_spec(&spec(&d1), "1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;
    assert!(
        c.get("v1", "ConfigMap", "configmaps", "sample", "sample-app-legacy")
            .await
            .is_some()
    );
    let crd = (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    assert!(
        c.get(crd.0, crd.1, crd.2, "", "widgets.sample.sealift.dev")
            .await
            .is_none()
    );
    let password = c
        .get("v1", "Secret", "secrets", "sample", "sample-app-db")
        .await
        .unwrap()["data"]["admin-password"]
        .clone();

    // Refused in preflight, naming the newly required variable; nothing in the cluster moved.
    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "PreflightFailed", "{r}");
    assert!(
        message.contains("adminEmail: required and not set (newly required by this release)"),
        "{message}"
    );
    assert_eq!(phase(&r), "Stalled/PreflightFailed");
    assert_eq!(r["status"]["currentVersion"], "1.0.0");
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a refused upgrade changed the cluster:\n{diff}");
    assert_eq!(
        outcomes(&c.history().await),
        [history_tuple("1.0.0", "install", "deployed")],
        "a preflight refusal records no revision"
    );
    let audit = c.audit().await;
    audit_has(&audit, "the preflight refusal", |a| {
        a["action"] == "upgrade"
            && a["version"] == "2.0.0"
            && a["outcome"] == "failed"
            && a["code"] == "preflight_failed"
            && a["detail"].as_str().unwrap_or_default().contains("adminEmail")
    });

    // The admin sets the value, then retries with one request.
    set_site_value(&c, "adminEmail", json!("ops@example.com"));
    kubectl_patch(
        &c,
        json!({"spec": {"request": {"id": "after-vars", "action": "Retry"}}}),
    )
    .await;
    let r = wait_for(&c, "the retried upgrade", |r| {
        r["status"]["handledRequest"] == "after-vars" && phase(r) == "Ready" && r["status"]["currentVersion"] == "2.0.0"
    })
    .await;
    assert_eq!(condition(&r, "Ready")["message"], "2.0.0 is ready", "{r}");

    // Pruned: the legacy ConfigMap. Added: the CRD (Established) and a Widget of it.
    assert!(
        c.get("v1", "ConfigMap", "configmaps", "sample", "sample-app-legacy")
            .await
            .is_none()
    );
    let crd_obj = c
        .get(crd.0, crd.1, crd.2, "", "widgets.sample.sealift.dev")
        .await
        .expect("CRD added");
    assert!(
        crd_obj["status"]["conditions"].to_string().contains("Established"),
        "{crd_obj}"
    );
    let widget = c
        .get(
            "sample.sealift.dev/v1alpha1",
            "Widget",
            "widgets",
            "sample",
            "sample-app-widget",
        )
        .await
        .expect("the Widget exists");
    assert_eq!(widget["spec"]["color"], "blue");
    let config = c
        .get("v1", "ConfigMap", "configmaps", "sample", "sample-app-config")
        .await
        .unwrap();
    assert_eq!(config["data"]["ADMIN_EMAIL"], "ops@example.com");
    // The registry has 2.0.0's web image, which the Deployment pulls by digest.
    let (repo, digest) = repo_and_digest(&image_of(&web(&c).await));
    assert_eq!(manifest_head(&c.target.addr(), &repo, &digest).await.0, 200);
    // "Generate once per site": the password generated at install is kept.
    let secret = c
        .get("v1", "Secret", "secrets", "sample", "sample-app-db")
        .await
        .unwrap();
    assert_eq!(
        secret["data"]["admin-password"], password,
        "the generated adminPassword changed on upgrade"
    );

    assert_eq!(
        outcomes(&c.history().await),
        [
            history_tuple("1.0.0", "install", "superseded"),
            history_tuple("2.0.0", "upgrade", "deployed"),
        ]
    );
    let rev = revision(&c, 2).await;
    let applied = rev["applied"].to_string();
    assert!(
        applied.contains("\"Widget\"") && applied.contains("widgets.sample.sealift.dev"),
        "{rev}"
    );
    assert!(!applied.contains("sample-app-legacy"), "{rev}");
    let audit = c.audit().await;
    audit_has(&audit, "the retry request", |a| {
        a["action"] == "retry" && a["outcome"] == "accepted"
    });
    audit_has(&audit, "the upgrade", |a| {
        a["action"] == "upgrade" && a["version"] == "2.0.0" && a["outcome"] == "ok" && a["token"] == "kubectl"
    });
}

// ---------------------------------------------------------------------------------------------
// 2. An image missing from the registry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_lost_from_the_registry_fails_fast_on_pull_and_rolls_back() {
    let vendor = Vendor::new();
    // 2.0.0's pre-upgrade migration waits for a gate file: the test removes the web image
    // from the registry after Stage pushed it and before Apply, as a registry cleanup
    // running during the upgrade would.
    let gate = tempfile::tempdir().unwrap();
    let gate_file = gate.path().join("open");
    let d2 = sample_copy("2.0.0");
    set_steps(
        d2.path(),
        &format!(
            r#"  - id: add-column
    kind: migration
    phase: preUpgrade
    image: quay.io/sealift-sample/api:2.0.0
    command: ["/app/migrate", "add-column"]
    env:
      - name: GATE
        value: "{gate}"
    backoffLimit: 0
    reversible: true
    down:
      command: ["/app/migrate", "drop-column"]
      env:
        - name: GATE
          value: "{gate}"
    podTemplate:
      annotations:
        sim.sealift.dev/exec: 'while [ ! -e "$GATE" ]; do sleep 0.05; done; echo migrated'
"#,
            gate = gate_file.display()
        ),
    );
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;
    let v1_web = image_of(&web(&c).await);
    let registry = c.target.addr();
    let (status, v2_web_digest) = manifest_head(&registry, "sealift-sample/web", "2.0.0").await;
    assert_eq!(status, 200, "import staged 2.0.0's web image");
    let v2_web_digest = v2_web_digest.expect("a digest");

    let out = c.cli_async(&["upgrade", "2.0.0"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let started = Instant::now();
    while job(&c, "sample-app-add-column-r2").await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the migration did not start\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deleted = reqwest::Client::new()
        .delete(format!(
            "http://{registry}/v2/sealift-sample/web/manifests/{v2_web_digest}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202, "deleting the manifest");
    assert_eq!(
        manifest_head(&registry, "sealift-sample/web", &v2_web_digest).await.0,
        404
    );
    std::fs::write(&gate_file, "").unwrap();
    let opened = Instant::now();

    let r = wait_for(&c, "the failed upgrade", |r| phase(r).starts_with("Stalled")).await;
    // Fail fast: far sooner than the 60 s wave timeout.
    assert!(
        opened.elapsed() < Duration::from_secs(40),
        "took {:?}",
        opened.elapsed()
    );
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "UpgradeFailed", "{r}");
    assert!(
        message.contains("ErrImagePull") || message.contains("ImagePullBackOff"),
        "{message}"
    );
    assert!(message.contains("sample-app-web"), "{message}");
    assert!(message.ends_with("; rolled back to 1.0.0"), "{message}");
    assert_eq!(r["status"]["currentVersion"], "1.0.0");
    assert_eq!(
        r["spec"]["version"], "2.0.0",
        "an automatic rollback leaves the typed version"
    );

    // The cluster runs 1.0.0 again; the registry still lacks the lost image and has 1.0.0's.
    assert_eq!(image_of(&web(&c).await), v1_web);
    assert_eq!(
        manifest_head(&registry, "sealift-sample/web", &v2_web_digest).await.0,
        404
    );
    let (repo, digest) = repo_and_digest(&v1_web);
    assert_eq!(manifest_head(&registry, &repo, &digest).await.0, 200);
    // The migration that ran was reverted.
    assert!(job(&c, "sample-app-add-column-r2-down").await.is_some());

    let history = c.history().await;
    assert_eq!(
        outcomes(&history),
        [
            history_tuple("1.0.0", "install", "superseded"),
            history_tuple("2.0.0", "upgrade", "failed"),
            history_tuple("1.0.0", "rollback", "deployed"),
        ]
    );
    let failed = revision(&c, 2).await;
    assert!(
        failed["reason"].as_str().unwrap().contains("ImagePull")
            || failed["reason"].as_str().unwrap().contains("ErrImagePull")
    );
    let audit = c.audit().await;
    audit_has(&audit, "the failed upgrade", |a| {
        a["action"] == "upgrade"
            && a["version"] == "2.0.0"
            && a["outcome"] == "failed"
            && a["code"] == "upgrade_failed"
            && a["detail"]
                .as_str()
                .unwrap_or_default()
                .ends_with("; rolled back to 1.0.0")
    });
    audit_has(&audit, "the automatic rollback", |a| {
        a["action"] == "rollback" && a["version"] == "1.0.0" && a["outcome"] == "ok"
    });
}

// ---------------------------------------------------------------------------------------------
// 3. A failing pre-upgrade migration

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_upgrade_migration_changes_no_object_and_rolls_back() {
    let vendor = Vendor::new();
    let d2 = sample_copy("2.0.0");
    edit(
        d2.path(),
        "sealift.yaml",
        "    fromVersions: \"<2.0.0\"\n",
        // The up step (it has MIGRATION_TARGET) fails; its down step (no such env) succeeds.
        "    fromVersions: \"<2.0.0\"\n    podTemplate:\n      annotations:\n        sim.sealift.dev/exec: 'if [ -n \"$MIGRATION_TARGET\" ]; then echo \"boom: column search_vector exists\"; exit 3; fi'\n",
    );
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;
    let v1_web = image_of(&web(&c).await);

    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "UpgradeFailed", "{r}");
    assert!(message.starts_with("pre-upgrade step add-column: "), "{message}");
    assert!(
        message.contains("Job/sample/sample-app-add-column-r2 failed"),
        "{message}"
    );
    assert!(
        message.contains("boom: column search_vector exists"),
        "the step's log: {message}"
    );
    assert!(message.ends_with("; rolled back to 1.0.0"), "{message}");
    assert_eq!(r["status"]["currentVersion"], "1.0.0");

    // No application object changed: only the step's Job and its pods (and the pre-upgrade
    // hook's pods) were added.
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(
        diff.changed.is_empty() && diff.removed.is_empty(),
        "objects changed:\n{diff}"
    );
    for k in &diff.added {
        assert!(
            (k.resource == "jobs" && k.name.starts_with("sample-app-add-column-r2")) || k.resource == "pods",
            "unexpected new object {k:?}:\n{diff}"
        );
    }
    assert!(job_failed(&job(&c, "sample-app-add-column-r2").await.unwrap()));
    // A reversible step that failed part-way is reverted too (its down step ran and passed).
    assert!(
        job(&c, "sample-app-add-column-r2-down")
            .await
            .is_some_and(|j| j["status"]["conditions"].to_string().contains("Complete")),
        "the failed step's down step ran"
    );
    assert_eq!(image_of(&web(&c).await), v1_web);

    assert_eq!(
        outcomes(&c.history().await),
        [
            history_tuple("1.0.0", "install", "superseded"),
            history_tuple("2.0.0", "upgrade", "failed"),
            history_tuple("1.0.0", "rollback", "deployed"),
        ]
    );
    let failed = revision(&c, 2).await;
    let step = failed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "add-column")
        .cloned()
        .unwrap_or_else(|| panic!("no add-column step log: {failed}"));
    assert_eq!(step["outcome"], "failed");
    assert!(
        step["log"]
            .as_str()
            .unwrap()
            .contains("boom: column search_vector exists"),
        "{step}"
    );
    let audit = c.audit().await;
    audit_has(&audit, "the failed upgrade", |a| {
        a["action"] == "upgrade"
            && a["outcome"] == "failed"
            && a["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("pre-upgrade step add-column")
    });
}

// ---------------------------------------------------------------------------------------------
// 4. A failing post-upgrade migration with reversible down steps, run for real

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_upgrade_migration_runs_the_down_steps_and_rolls_back() {
    let vendor = Vendor::new();
    let markers = tempfile::tempdir().unwrap();
    let m = markers.path().display().to_string();
    // Two reversible post-upgrade steps run as local commands: `seed-cache` succeeds,
    // `reindex` leaves its marker and then fails. Each down step removes its marker; every
    // run appends to a journal.
    let step = |id: &str, fail: bool| {
        let up_tail = if fail {
            r#"echo "reindex: no space left on device"; exit 5; "#
        } else {
            ""
        };
        format!(
            r#"  - id: {id}
    kind: migration
    phase: postUpgrade
    image: quay.io/sealift-sample/api:2.0.0
    command: ["/app/migrate", "{id}"]
    env:
      - name: MARKERS
        value: "{m}"
      - name: DIRECTION
        value: up
    backoffLimit: 0
    reversible: true
    down:
      command: ["/app/migrate", "{id}", "--down"]
      env:
        - name: MARKERS
          value: "{m}"
        - name: DIRECTION
          value: down
    podTemplate:
      annotations:
        sim.sealift.dev/exec: 'echo "{id} $DIRECTION" >> "$MARKERS/journal"; if [ "$DIRECTION" = up ]; then touch "$MARKERS/{id}"; {up_tail}else rm "$MARKERS/{id}"; fi'
"#
        )
    };
    let d2 = sample_copy("2.0.0");
    set_steps(
        d2.path(),
        &format!("{}{}", step("seed-cache", false), step("reindex", true)),
    );
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;
    let v1_web = image_of(&web(&c).await);

    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "UpgradeFailed", "{r}");
    assert!(message.starts_with("post-upgrade step reindex: "), "{message}");
    assert!(message.contains("no space left on device"), "{message}");
    assert!(message.ends_with("; rolled back to 1.0.0"), "{message}");
    assert_eq!(r["status"]["currentVersion"], "1.0.0");
    assert_eq!(image_of(&web(&c).await), v1_web, "1.0.0's web is back");

    // Both down steps ran, newest first, and removed the markers.
    let journal = std::fs::read_to_string(markers.path().join("journal")).unwrap();
    assert!(!markers.path().join("seed-cache").exists(), "journal:\n{journal}");
    assert!(
        !markers.path().join("reindex").exists(),
        "the failed step's down step did not run; journal:\n{journal}"
    );
    assert_eq!(
        journal.lines().collect::<Vec<_>>(),
        ["seed-cache up", "reindex up", "reindex down", "seed-cache down"]
    );
    assert!(job(&c, "sample-app-seed-cache-r2-down").await.is_some());
    assert!(job(&c, "sample-app-reindex-r2-down").await.is_some());

    assert_eq!(
        outcomes(&c.history().await),
        [
            history_tuple("1.0.0", "install", "superseded"),
            history_tuple("2.0.0", "upgrade", "failed"),
            history_tuple("1.0.0", "rollback", "deployed"),
        ]
    );
    let rollback = revision(&c, 3).await;
    let reverted: Vec<&str> = rollback["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "reverted")
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(reverted, ["reindex-down", "seed-cache-down"], "{rollback}");
    let audit = c.audit().await;
    audit_has(&audit, "the failed upgrade", |a| {
        a["action"] == "upgrade"
            && a["outcome"] == "failed"
            && a["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("post-upgrade step reindex")
    });
    audit_has(&audit, "the automatic rollback", |a| {
        a["action"] == "rollback" && a["outcome"] == "ok"
    });
}

// ---------------------------------------------------------------------------------------------
// 5. Rollback after v2 added a CRD and a PVC

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_keeps_the_crd_and_pvc_the_failed_version_added_and_lists_them() {
    let vendor = Vendor::new();
    let d1 = without_widgets("1.0.0");
    let d2 = sample_copy("2.0.0");
    std::fs::write(
        d2.path().join("chart/templates/uploads-pvc.yaml"),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {{ include \"sample-app.fullname\" . }}-uploads\n  \
         labels:\n    {{- include \"sample-app.labels\" . | nindent 4 }}\nspec:\n  accessModes: [\"ReadWriteOnce\"]\n  \
         resources:\n    requests:\n      storage: 1Gi\n",
    )
    .unwrap();
    // The PVC and the Widget come first, then the web fails.
    edit(
        d2.path(),
        "sealift.yaml",
        "waves:\n",
        "waves:\n  - name: storage\n    select:\n      - kind: PersistentVolumeClaim\n      - kind: Widget\n",
    );
    crash_looping_web(d2.path());
    let v1 = vendor.build_spec(&spec(&d1), "1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;
    let v1_web = image_of(&web(&c).await);

    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "UpgradeFailed", "{r}");
    assert!(message.contains("CrashLoopBackOff"), "{message}");
    assert!(message.ends_with("; rolled back to 1.0.0"), "{message}");
    assert_eq!(image_of(&web(&c).await), v1_web);

    // Kept under the deletion rule: the CRD and the PVC. Deleted: the Widget, which only the
    // failed revision created.
    let crd = c
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "",
            "widgets.sample.sealift.dev",
        )
        .await;
    assert!(crd.is_some(), "the CRD is kept");
    let pvc = c
        .get(
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "sample",
            "sample-app-uploads",
        )
        .await
        .expect("the PVC is kept");
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert!(
        c.get(
            "sample.sealift.dev/v1alpha1",
            "Widget",
            "widgets",
            "sample",
            "sample-app-widget"
        )
        .await
        .is_none(),
        "the Widget only 2.0.0 created is deleted"
    );
    let expected = [
        "CustomResourceDefinition/widgets.sample.sealift.dev (CRDs are never deleted)",
        "PersistentVolumeClaim/sample/sample-app-uploads (PVCs keep data and are never deleted)",
    ];
    let mut left = string_list(&r["status"]["leftBehind"]);
    left.sort();
    assert_eq!(left, expected, "{r}");

    assert_eq!(
        outcomes(&c.history().await),
        [
            history_tuple("1.0.0", "install", "superseded"),
            history_tuple("2.0.0", "upgrade", "failed"),
            history_tuple("1.0.0", "rollback", "deployed"),
        ]
    );
    for n in [2, 3] {
        let rev = revision(&c, n).await;
        let mut left = string_list(&rev["leftBehind"]);
        left.sort();
        assert_eq!(left, expected, "revision {n}: {rev}");
    }
    let audit = c.audit().await;
    audit_has(&audit, "the failed upgrade", |a| {
        a["action"] == "upgrade" && a["version"] == "2.0.0" && a["outcome"] == "failed"
    });
}

// ---------------------------------------------------------------------------------------------
// 6. An immutable selector change

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_selector_change_is_refused_in_preflight() {
    let vendor = Vendor::new();
    let d2 = sample_copy("2.0.0");
    let file = "chart/templates/web-deployment.yaml";
    edit(
        d2.path(),
        file,
        "      app.kubernetes.io/component: web\n  template:",
        "      app.kubernetes.io/component: web\n      app.kubernetes.io/tier: frontend\n  template:",
    );
    edit(
        d2.path(),
        file,
        "        app.kubernetes.io/component: web\n    spec:",
        "        app.kubernetes.io/component: web\n        app.kubernetes.io/tier: frontend\n    spec:",
    );
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;

    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "PreflightFailed", "{r}");
    assert!(message.contains("Deployment/sample/sample-app-web"), "{message}");
    assert!(message.contains("spec.selector"), "{message}");
    assert!(message.contains("immutable"), "{message}");
    assert!(
        !message.contains("sample-app-api"),
        "only the changed object is named: {message}"
    );
    assert_eq!(r["status"]["currentVersion"], "1.0.0");
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a refused upgrade changed the cluster:\n{diff}");
    assert!(job(&c, "sample-app-add-column-r2").await.is_none(), "no migration ran");

    assert_eq!(
        outcomes(&c.history().await),
        [history_tuple("1.0.0", "install", "deployed")]
    );
    let audit = c.audit().await;
    audit_has(&audit, "the preflight refusal", |a| {
        a["action"] == "upgrade"
            && a["code"] == "preflight_failed"
            && a["detail"].as_str().unwrap_or_default().contains("spec.selector")
    });
}

// ---------------------------------------------------------------------------------------------
// 7. A missing permission, then a retry once granted

/// Every verb on everything, except `create` on `statefulsets.apps` in namespace `sample`.
fn rules_without_statefulset_create() -> Vec<AccessRule> {
    let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let verbs = list(&["get", "list", "watch", "patch", "update", "delete", "deletecollection"]);
    vec![
        AccessRule {
            verbs,
            ..AccessRule::allow_all()
        },
        AccessRule {
            verbs: list(&["create"]),
            groups: list(&[
                "",
                "batch",
                "networking.k8s.io",
                "apiextensions.k8s.io",
                "sample.sealift.dev",
                "sealift.dev",
                "coordination.k8s.io",
                "rbac.authorization.k8s.io",
                "policy",
                "authorization.k8s.io",
            ]),
            ..AccessRule::allow_all()
        },
        AccessRule {
            verbs: list(&["create"]),
            groups: list(&["apps"]),
            resources: list(&["deployments", "replicasets", "daemonsets", "controllerrevisions"]),
            namespaces: vec![],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_listed_with_rbac_and_a_retry_succeeds_once_granted() {
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.sim.set_access_rules(rules_without_statefulset_create());

    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "1.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "PreflightFailed", "{r}");
    let (first, snippet) = message.split_once('\n').unwrap_or((message.as_str(), ""));
    assert_eq!(
        first,
        "missing permissions: create statefulsets.apps in namespace sample. Grant them (RBAC below), then retry:",
        "exactly the missing permission: {message}"
    );
    // The snippet is ready to apply: a Role and its binding to the agent's ServiceAccount.
    let docs: Vec<Value> = snippet
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect();
    assert_eq!(docs.len(), 2, "{snippet}");
    assert_eq!(docs[0]["kind"], "Role");
    assert_eq!(docs[0]["metadata"]["namespace"], "sample");
    assert_eq!(
        docs[0]["rules"],
        json!([{"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["create"]}])
    );
    assert_eq!(docs[1]["kind"], "RoleBinding");
    assert_eq!(docs[1]["roleRef"]["name"], docs[0]["metadata"]["name"]);
    assert_eq!(
        docs[1]["subjects"],
        json!([{"kind": "ServiceAccount", "name": "sealift-agent", "namespace": AGENT_NS}])
    );
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a refused install changed the cluster:\n{diff}");
    assert!(c.get("v1", "Namespace", "namespaces", "", "sample").await.is_none());
    assert!(c.history().await.is_empty());

    // Granted; one request retries.
    c.sim.set_access_rules(vec![AccessRule::allow_all()]);
    kubectl_patch(&c, json!({"spec": {"request": {"id": "granted", "action": "Retry"}}})).await;
    let r = wait_for(&c, "the retried install", |r| {
        r["status"]["handledRequest"] == "granted" && phase(r) == "Ready" && r["status"]["currentVersion"] == "1.0.0"
    })
    .await;
    assert_eq!(condition(&r, "Ready")["message"], "1.0.0 is ready");
    assert!(
        c.get("apps/v1", "StatefulSet", "statefulsets", "sample", "sample-app-db")
            .await
            .is_some()
    );
    assert_eq!(
        outcomes(&c.history().await),
        [history_tuple("1.0.0", "install", "deployed")]
    );
    let audit = c.audit().await;
    audit_has(&audit, "the refusal", |a| {
        a["action"] == "install"
            && a["outcome"] == "failed"
            && a["code"] == "preflight_failed"
            && a["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("create statefulsets.apps")
    });
    audit_has(&audit, "the retry", |a| {
        a["action"] == "retry" && a["detail"] == "request granted"
    });
    audit_has(&audit, "the install", |a| {
        a["action"] == "install" && a["outcome"] == "ok"
    });
}

// ---------------------------------------------------------------------------------------------
// 8. The rollback itself failing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollback_ends_stalled_with_both_causes() {
    let vendor = Vendor::new();
    let d2 = sample_copy("2.0.0");
    // The migration runs; its down step cannot undo it.
    set_steps(
        d2.path(),
        r#"  - id: add-column
    kind: migration
    phase: preUpgrade
    image: quay.io/sealift-sample/api:2.0.0
    command: ["/app/migrate", "add-column"]
    env:
      - name: DIRECTION
        value: up
    backoffLimit: 0
    reversible: true
    down:
      command: ["/app/migrate", "drop-column"]
      env:
        - name: DIRECTION
          value: down
    podTemplate:
      annotations:
        sim.sealift.dev/exec: 'if [ "$DIRECTION" = down ]; then echo "cannot drop column search_vector: in use"; exit 4; fi; echo "column added"'
"#,
    );
    crash_looping_web(d2.path());
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build_spec(&spec(&d2), "2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    upgrade_ok(&c, "1.0.0", &[]).await;

    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "RollbackFailed", "{r}");
    assert_eq!(phase(&r), "Stalled/RollbackFailed");
    let (cause, rollback_cause) = message
        .split_once("; rollback failed: ")
        .unwrap_or_else(|| panic!("both causes: {message}"));
    assert!(
        cause.contains("sample-app-web") && cause.contains("CrashLoopBackOff"),
        "{message}"
    );
    assert!(rollback_cause.contains("add-column"), "{message}");
    assert!(
        rollback_cause.contains("cannot drop column search_vector: in use"),
        "{message}"
    );
    let down = job(&c, "sample-app-add-column-r2-down")
        .await
        .expect("the down step ran");
    assert!(job_failed(&down), "{down}");

    let history = outcomes(&c.history().await);
    assert_eq!(
        history.last(),
        Some(&history_tuple("2.0.0", "upgrade", "failed")),
        "the failed attempt is recorded: {history:?}"
    );
    let audit = c.audit().await;
    audit_has(&audit, "the failed rollback", |a| {
        let detail = a["detail"].as_str().unwrap_or_default();
        a["outcome"] == "failed"
            && a["code"] == "rollback_failed"
            && detail.contains("CrashLoopBackOff")
            && detail.contains("cannot drop column")
    });
}

// ---------------------------------------------------------------------------------------------
// 9. Downgrades, required intermediate releases, expired bundles

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrades_intermediate_releases_and_an_expired_bundle() {
    let vendor = Vendor::new();
    let d3 = sample_copy("3.0.0");
    edit(
        d3.path(),
        "chart/values.yaml",
        "  podAnnotations:\n    sim.sealift.dev/crash-loop: \"true\"\n",
        "  podAnnotations: {}\n",
    );
    edit(
        d3.path(),
        "sealift.yaml",
        "upgradePolicy:\n",
        "upgradePolicy:\n  requiredIntermediates: [\"2.0.0\"]\n",
    );
    let v2 = vendor.build("2.0.0", 2);
    let v3 = vendor.build_spec(&spec(&d3), "3.0.0", 3);
    let c = Cluster::start(&vendor).await;
    for f in [&v2, &v3] {
        c.import(f);
    }
    // 1.0.0 was built an hour ago and expires 30 s from now: long enough to build, import
    // and install it (about 7 s) on a slow machine, over when the test comes back to it.
    let now = schemas::Timestamp::now().unix();
    let expires = now + 30;
    let d1 = sample_copy("1.0.0");
    let v1 = vendor.build_spec_with(
        &spec(&d1),
        "1.0.0",
        1,
        now - 3600,
        &["--valid-for", &format!("{}s", expires - (now - 3600))],
    );
    c.import(&v1);
    upgrade_ok(&c, "1.0.0", &[]).await;
    let v1_web = image_of(&web(&c).await);

    // 3.0.0 needs 2.0.0 on the way.
    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "3.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "PreflightFailed", "{r}");
    assert!(message.contains("needs the intermediate release 2.0.0"), "{message}");
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a refused upgrade changed the cluster:\n{diff}");
    upgrade_ok(&c, "2.0.0", &[]).await;
    upgrade_ok(&c, "3.0.0", &[]).await;

    // A downgrade needs the flag: refused at once, nothing started.
    let out = c.cli_async(&["upgrade", "2.0.0"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2.0.0 is older than the current version 3.0.0") && err.contains("--allow-downgrade"),
        "{err}"
    );
    let r = c.release().await;
    assert_eq!(
        r["spec"]["version"], "3.0.0",
        "the refused downgrade did not touch the spec"
    );
    assert_eq!(phase(&r), "Ready");
    upgrade_ok(&c, "2.0.0", &["--allow-downgrade"]).await;
    assert!(image_of(&web(&c).await).contains("/sealift-sample/web@sha256:"));
    assert_eq!(
        outcomes(&c.history().await),
        [
            history_tuple("1.0.0", "install", "superseded"),
            history_tuple("2.0.0", "upgrade", "superseded"),
            history_tuple("3.0.0", "upgrade", "superseded"),
            history_tuple("2.0.0", "upgrade", "deployed"),
        ]
    );
    assert_eq!(revision(&c, 4).await["flags"], json!(["allowDowngrade"]));

    // 1.0.0 has expired meanwhile: refused as an upgrade target, fine as a rollback target.
    let wait = expires + 1 - schemas::Timestamp::now().unix();
    if wait > 0 {
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    }
    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "1.0.0", &["--allow-downgrade"]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "PreflightFailed", "{r}");
    assert!(
        message.contains("1.0.0 cannot be installed") && message.contains("expired"),
        "{message}"
    );
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a refused upgrade changed the cluster:\n{diff}");

    // (`rollback --wait` is not used here: right after a failed attempt at the same version it
    // returns that attempt's stale failure before the rollback starts.)
    let out = c.cli_async(&["rollback", "--to", "1.0.0"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let r = wait_for(&c, "the rollback to the expired 1.0.0", |r| {
        phase(r) == "Ready" && r["status"]["currentVersion"] == "1.0.0"
    })
    .await;
    assert_eq!(r["status"]["currentVersion"], "1.0.0", "{r}");
    assert_eq!(r["spec"]["version"], "1.0.0");
    assert_eq!(image_of(&web(&c).await), v1_web);
    let ready = condition(&r, "Ready");
    assert_eq!(ready["status"], "True", "{r}");
    assert!(
        ready["message"].as_str().unwrap_or_default().contains("expired"),
        "status warns that the rollback target is expired: {r}"
    );
    assert_eq!(
        outcomes(&c.history().await).last(),
        Some(&history_tuple("1.0.0", "rollback", "deployed"))
    );
    let audit = c.audit().await;
    audit_has(&audit, "the refused downgrade", |a| {
        a["action"] == "upgrade" && a["outcome"] == "refused" && a["code"] == "downgrade_needs_confirmation"
    });
    audit_has(&audit, "the intermediate-release refusal", |a| {
        a["version"] == "3.0.0"
            && a["code"] == "preflight_failed"
            && a["detail"].as_str().unwrap_or_default().contains("2.0.0")
    });
    audit_has(&audit, "the expired upgrade refusal", |a| {
        a["action"] == "upgrade"
            && a["version"] == "1.0.0"
            && a["code"] == "preflight_failed"
            && a["detail"].as_str().unwrap_or_default().contains("expired")
    });
    audit_has(&audit, "the expiry warning of the rollback", |a| {
        a["action"] == "rollback" && a["version"] == "1.0.0" && a["outcome"] == "warning" && a["code"] == "expired"
    });
    audit_has(&audit, "the rollback", |a| {
        a["action"] == "rollback" && a["version"] == "1.0.0" && a["outcome"] == "ok"
    });
}

// ---------------------------------------------------------------------------------------------
// 10. Uninstall runs the release's pre-delete and post-delete hooks around the deletion

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_runs_delete_hooks_around_the_deletion_and_keeps_what_the_rule_keeps() {
    let vendor = Vendor::new();
    let markers = tempfile::tempdir().unwrap();
    let d1 = sample_copy("1.0.0");
    let hook = |event: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: sample-app-{event}\n  annotations:\n    \
             \"helm.sh/hook\": {event}\nspec:\n  backoffLimit: 0\n  template:\n    metadata:\n      annotations:\n        \
             sim.sealift.dev/exec: 'echo ran > \"$MARKER\"'\n    spec:\n      restartPolicy: Never\n      containers:\n        \
             - name: hook\n          image: {{{{ include \"sample-app.image\" (dict \"root\" . \"component\" \"api\") | quote }}}}\n          \
             env:\n            - name: MARKER\n              value: {}\n",
            markers.path().join(event).display()
        )
    };
    std::fs::write(
        d1.path().join("chart/templates/delete-hooks.yaml"),
        format!("{}---\n{}", hook("pre-delete"), hook("post-delete")),
    )
    .unwrap();
    let v1 = vendor.build_spec(&spec(&d1), "1.0.0", 1);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    upgrade_ok(&c, "1.0.0", &[]).await;
    assert!(
        !markers.path().join("pre-delete").exists(),
        "delete hooks do not run at install"
    );

    let out = c.cli_async(&["uninstall", "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let r = wait_for(&c, "the uninstall", |r| {
        phase(r) == "Ready" && r["status"].get("currentVersion").is_none()
    })
    .await;
    for event in ["pre-delete", "post-delete"] {
        assert!(markers.path().join(event).exists(), "the {event} hook did not run: {r}");
    }
    assert!(
        c.get("apps/v1", "Deployment", "deployments", "sample", "sample-app-web")
            .await
            .is_none(),
        "the web Deployment is gone"
    );
    let left = r["status"]["leftBehind"].to_string();
    assert!(left.contains("CustomResourceDefinition"), "{r}");
    assert_eq!(
        outcomes(&c.history().await).last().unwrap(),
        &history_tuple("1.0.0", "uninstall", "uninstalled")
    );
}

// ---------------------------------------------------------------------------------------------
// 11. Site patches: applied after the variables; never a new image

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_patches_apply_and_one_bringing_an_image_is_refused_before_any_change() {
    let vendor = Vendor::new();
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build("2.0.0", 2);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    c.import(&v2);
    let file = c.dir.path().join("patches.json");
    std::fs::write(
        &file,
        json!({"patches": [{"kind": "Deployment", "name": "sample-app-web", "patch": {"spec": {"replicas": 3}}}]})
            .to_string(),
    )
    .unwrap();
    let out = c.cli_async(&["patches", "--set", &file.display().to_string()]).await;
    assert!(out.status.success(), "{}", text(&out));
    upgrade_ok(&c, "1.0.0", &[]).await;
    assert_eq!(web(&c).await["spec"]["replicas"], 3);
    let rev = revision(&c, 1).await;
    assert!(
        string_list(&rev["differences"]).contains(&"Deployment sample-app-web: /spec/replicas".to_owned()),
        "{}",
        rev["differences"]
    );

    // A patch that brings an image the bundle does not hold: refused, nothing changes.
    std::fs::write(
        &file,
        json!({"patches": [{"kind": "Deployment", "name": "sample-app-web", "patch": {"spec": {"template": {"spec":
            {"containers": [{"name": "web", "image": "docker.io/library/nginx:latest"}]}}}}}]})
        .to_string(),
    )
    .unwrap();
    let out = c.cli_async(&["patches", "--set", &file.display().to_string()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "2.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "PreflightFailed", "{r}");
    assert!(
        message.contains("brings image docker.io/library/nginx:latest, which the bundle does not hold"),
        "{message}"
    );
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a refused patch changed the cluster:\n{diff}");
    let audit = c.audit().await;
    audit_has(&audit, "the patch change", |a| {
        a["action"] == "patches-set" && a["outcome"] == "ok"
    });
}

// ---------------------------------------------------------------------------------------------
// 12. A failed install from nothing removes what it created, under the deletion rule

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_install_removes_what_it_created_and_keeps_what_the_rule_keeps() {
    let vendor = Vendor::new();
    let v3 = vendor.build("3.0.0", 3);
    let c = Cluster::start(&vendor).await;
    c.import(&v3);
    let r = upgrade_fails(&c, "3.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "InstallFailed", "{r}");
    assert!(message.contains("CrashLoopBackOff"), "{message}");
    assert!(
        message.ends_with("the objects this install created were removed"),
        "{message}"
    );
    assert!(r["status"].get("currentVersion").is_none(), "{r}");
    for (api_version, kind, plural, name) in [
        ("apps/v1", "Deployment", "deployments", "sample-app-web"),
        ("apps/v1", "Deployment", "deployments", "sample-app-api"),
        ("apps/v1", "StatefulSet", "statefulsets", "sample-app-db"),
        ("v1", "ConfigMap", "configmaps", "sample-app-config"),
    ] {
        assert!(
            c.get(api_version, kind, plural, "sample", name).await.is_none(),
            "{kind}/{name} left"
        );
    }
    // The namespace the install created and the CRD stay (never deleted), and are listed.
    assert!(c.get("v1", "Namespace", "namespaces", "", "sample").await.is_some());
    assert!(
        r["status"]["leftBehind"]
            .to_string()
            .contains("CustomResourceDefinition"),
        "{r}"
    );
    assert_eq!(
        outcomes(&c.history().await),
        [history_tuple("3.0.0", "install", "failed")]
    );
}

// ---------------------------------------------------------------------------------------------
// 13. A custom resource of a CRD the plan installs is checked offline in preflight

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_breaking_its_new_crd_is_refused_in_preflight() {
    let vendor = Vendor::new();
    let d1 = sample_copy("1.0.0");
    edit(
        d1.path(),
        "chart/templates/widget.yaml",
        "  size: {{ .Values.widget.size }}\n",
        "  size: {{ .Values.widget.size }}\n  shape: round\n",
    );
    let v1 = vendor.build_spec(&spec(&d1), "1.0.0", 1);
    let c = Cluster::start(&vendor).await;
    c.import(&v1);
    let before = c.sim.snapshot();
    let r = upgrade_fails(&c, "1.0.0", &[]).await;
    let (reason, message) = stalled(&r);
    assert_eq!(reason, "PreflightFailed", "{r}");
    assert!(
        message
            .contains("Widget/sample/sample-app-widget: .spec.shape: unknown field (checked against the bundle's CRD)"),
        "{message}"
    );
    let diff = app_diff(&before, &c.sim.snapshot());
    assert!(diff.is_empty(), "a preflight refusal changed the cluster:\n{diff}");
}
