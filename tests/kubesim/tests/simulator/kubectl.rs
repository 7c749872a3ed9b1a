//! The independent second client: kubectl 1.33 against the simulator.

use std::path::Path;
use std::process::{Command, Output};

use kubesim::Simulator;

use crate::start;

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

fn kubectl(sim: &Simulator, args: &[&str]) -> Output {
    assert!(
        Path::new(KUBECTL).exists(),
        "kubectl 1.33 is required at {KUBECTL} (it ships beside the kubectl version dispatcher of the machine image); install google-cloud-cli's kubectl component"
    );
    let cache = sim.work_dir().join("kube-cache");
    Command::new(KUBECTL)
        .args(args)
        .arg(format!("--cache-dir={}", cache.display()))
        .env("KUBECONFIG", sim.kubeconfig_path())
        .env("HOME", sim.work_dir())
        .output()
        .expect("kubectl runs")
}

/// Writes a file into the simulator's work directory and returns its path.
pub fn write(sim: &Simulator, name: &str, text: &str) -> String {
    let path = sim.work_dir().join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_string_lossy().into_owned()
}

pub fn kubectl_ok(sim: &Simulator, args: &[&str]) -> String {
    ok(sim, args)
}

fn ok(sim: &Simulator, args: &[&str]) -> String {
    let out = kubectl(sim, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    app: demo
data:
  mode: fast
---
apiVersion: v1
kind: Service
metadata:
  name: demo
spec:
  selector:
    app: demo
  ports:
  - port: 80
    targetPort: 8080
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_get_patch_delete() {
    let (sim, _client) = start().await;
    let dir = sim.work_dir().to_path_buf();
    let manifest = dir.join("manifest.yaml");
    std::fs::write(&manifest, MANIFEST).expect("write manifest");
    let path = manifest.to_string_lossy().into_owned();

    let version = ok(&sim, &["version", "-o", "json"]);
    assert!(version.contains("\"gitVersion\": \"v1.33.0-kubesim\""), "{version}");

    let applied = ok(&sim, &["apply", "--server-side", "-f", &path]);
    assert_eq!(
        applied.trim(),
        "configmap/settings serverside-applied\nservice/demo serverside-applied"
    );
    let again = ok(&sim, &["apply", "--server-side", "-f", &path]);
    assert_eq!(
        again.trim(),
        "configmap/settings serverside-applied\nservice/demo serverside-applied"
    );

    let managed = ok(
        &sim,
        &[
            "get",
            "configmap",
            "settings",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}",
        ],
    );
    assert_eq!(managed, "kubectl/Apply");

    let table = ok(&sim, &["get", "services"]);
    let header: Vec<&str> = table.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("demo ") && l.contains("ClusterIP") && l.contains("80/TCP")),
        "{table}"
    );

    let patched = ok(
        &sim,
        &[
            "patch",
            "configmap",
            "settings",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"mode":"slow"}}"#,
        ],
    );
    assert_eq!(patched.trim(), "configmap/settings patched");
    assert_eq!(
        ok(&sim, &["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]),
        "slow"
    );

    let strategic = kubectl(
        &sim,
        &["patch", "configmap", "settings", "-p", r#"{"data":{"mode":"x"}}"#],
    );
    assert!(!strategic.status.success());
    assert!(
        String::from_utf8_lossy(&strategic.stderr)
            .contains("strategic merge patch (application/strategic-merge-patch+json) is not simulated"),
        "{}",
        String::from_utf8_lossy(&strategic.stderr)
    );

    let deleted = ok(&sim, &["delete", "-f", &path]);
    assert_eq!(
        deleted.trim(),
        "configmap \"settings\" deleted\nservice \"demo\" deleted"
    );
    let missing = kubectl(&sim, &["get", "cm", "settings"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("configmaps \"settings\" not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_crd_printer_columns_and_waits_for_conditions() {
    let (sim, _client) = start().await;
    let dir = sim.work_dir().to_path_buf();
    let crd = dir.join("crd.json");
    std::fs::write(&crd, crate::crds_and_watch::widget_crd().to_string()).expect("write crd");
    ok(&sim, &["apply", "--server-side", "-f", &crd.to_string_lossy()]);
    let waited = ok(
        &sim,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=20s",
        ],
    );
    assert_eq!(
        waited.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met"
    );

    let cr = dir.join("cr.yaml");
    std::fs::write(
        &cr,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 7\n",
    )
    .expect("write cr");
    ok(&sim, &["apply", "--server-side", "-f", &cr.to_string_lossy()]);
    let table = ok(&sim, &["get", "widgets"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "READY"]);
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(row, ["w1", "7"], "a missing status prints an empty cell");

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  sise: 7\n",
    )
    .expect("write bad");
    let refused = kubectl(&sim, &["apply", "--server-side", "-f", &bad.to_string_lossy()]);
    assert!(!refused.status.success(), "strict validation refuses unknown fields");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unknown field \"spec.sise\""),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_waits_for_a_deployment_and_prints_workload_columns() {
    let registry = crate::registry::start_registry();
    let image = crate::registry::push_image(&registry, "acme/web", "1");
    let (sim, _client) = crate::start_with(kubesim::SimConfig {
        registry: Some(kubesim::RegistryConfig::plain(&registry.addr())),
        ..kubesim::SimConfig::default()
    })
    .await;
    let manifest = sim.work_dir().join("web.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: app\n        image: {image}\n"
        ),
    )
    .expect("write manifest");
    let applied = ok(&sim, &["apply", "--server-side", "-f", &manifest.to_string_lossy()]);
    assert_eq!(applied.trim(), "deployment.apps/web serverside-applied");
    let waited = ok(
        &sim,
        &["wait", "--for=condition=Available", "deployment/web", "--timeout=30s"],
    );
    assert_eq!(waited.trim(), "deployment.apps/web condition met");
    let rollout = ok(&sim, &["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(rollout.contains("successfully rolled out"), "{rollout}");

    let table = ok(&sim, &["get", "deployments"]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(lines[1][..4], ["web", "2/2", "2", "2"]);
    let pods = ok(&sim, &["get", "pods", "-l", "app=web"]);
    let lines: Vec<Vec<&str>> = pods.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(lines.len(), 3, "{pods}");
    assert!(lines[1..].iter().all(|l| l[1..4] == ["1/1", "Running", "0"]), "{pods}");

    let scaled = ok(&sim, &["scale", "deployment/web", "--replicas=3"]);
    assert_eq!(scaled.trim(), "deployment.apps/web scaled");
    ok(
        &sim,
        &[
            "wait",
            "--for=jsonpath={.status.readyReplicas}=3",
            "deployment/web",
            "--timeout=30s",
        ],
    );

    let deleted = ok(&sim, &["delete", "deployment", "web"]);
    assert_eq!(deleted.trim(), "deployment.apps \"web\" deleted");
    let left = ok(&sim, &["get", "pods,replicasets", "-o", "name"]);
    assert_eq!(left.trim(), "", "dependents were garbage-collected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_prints_rows_and_events_have_columns() {
    use std::io::{BufRead, BufReader};

    let (sim, client) = start().await;
    let cache = sim.work_dir().join("kube-cache");
    let mut child = Command::new(KUBECTL)
        .args([
            "get",
            "configmaps",
            "--watch",
            "--output-watch-events",
            "--request-timeout=20s",
        ])
        .arg(format!("--cache-dir={}", cache.display()))
        .env("KUBECONFIG", sim.kubeconfig_path())
        .env("HOME", sim.work_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get --watch starts");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            let done = line.contains("watched-cm");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, "default");
    cms.create(
        &Default::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "watched-cm"}, "data": {"a": "b"}}))
            .expect("cm"),
    )
    .await
    .expect("create");
    let lines = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
        .await
        .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["EVENT", "NAME", "DATA", "AGE"], "{lines:?}");
    let row: Vec<&str> = lines.last().expect("row").split_whitespace().collect();
    assert_eq!(row[..3], ["ADDED", "watched-cm", "1"], "{lines:?}");

    // Events print the columns kubectl users expect.
    let job = write(
        &sim,
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: nope\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: registry.example.com/x:1\n",
    );
    ok(&sim, &["apply", "--server-side", "-f", &job]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = ok(&sim, &["get", "events"]);
        let lines: Vec<&str> = events.lines().collect();
        if lines.iter().any(|l| {
            l.contains("Warning") && l.contains("Failed") && l.contains("registry not configured in simulator")
        }) {
            let header: Vec<&str> = lines[0].split_whitespace().collect();
            assert_eq!(header, ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no pull failure event: {events}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
