//! The agent SIGKILLed at step boundaries and inside steps of an upgrade, then restarted:
//! every run must end with the same objects, registry, status and history as a run nobody
//! interrupted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use super::harness::{VIEWER, get_json};
use super::release::{Cluster, Vendor, outcomes, phase, wait_for};

/// Where to kill the agent, judged from its persisted operation (`release/operation.json`).
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// At the first moment the operation is seen with this step done (steps that take no
    /// time, like Backup today, may already be done too).
    AfterStep(&'static str),
    /// In the Apply step, once this many objects were applied (between two objects).
    Applied(usize),
    /// While this migration Job runs (created, not finished).
    DuringJob(&'static str),
}

impl KillAt {
    fn reached(self, op: &Value) -> bool {
        let done: Vec<&str> = op["done"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match self {
            KillAt::AfterStep(step) => done.contains(&step),
            KillAt::Applied(n) => {
                done.contains(&"PreHooks")
                    && !done.contains(&"Apply")
                    && op["applied"].as_array().is_some_and(|a| a.len() >= n)
            }
            KillAt::DuringJob(id) => {
                let started = op["startedJobs"].as_array().into_iter().flatten().any(|j| j == id);
                let finished = op["stepLogs"].as_array().into_iter().flatten().any(|l| l["step"] == id);
                started && !finished
            }
        }
    }
}

/// What a finished upgrade left, without what differs between any two runs (uids,
/// resourceVersions, timestamps, generated pod names, digests of the random test keys).
#[derive(Debug, PartialEq)]
struct EndState {
    objects: BTreeMap<String, Value>,
    history: Vec<(String, String, String)>,
    current: String,
    phase: String,
    tags: Vec<String>,
}

fn strip(mut o: Value) -> Value {
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "ownerReferences",
        ] {
            meta.remove(k);
        }
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove("controller-uid");
            labels.remove("batch.kubernetes.io/controller-uid");
        }
    }
    if let Some(obj) = o.as_object_mut() {
        obj.remove("status");
    }
    // Job selectors and pod template labels carry the controller uid the API server assigned.
    if o["kind"] == "Job"
        && let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.remove("selector");
        if let Some(labels) = spec
            .get_mut("template")
            .and_then(|t| t.pointer_mut("/metadata/labels"))
            .and_then(Value::as_object_mut)
        {
            labels.remove("controller-uid");
            labels.remove("batch.kubernetes.io/controller-uid");
        }
    }
    // The one-time step token is random per plan.
    if let Some(containers) = o
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
    {
        for c in containers {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["name"] == "SEALIFT_STEP_TOKEN" {
                    e["value"] = Value::String("<token>".into());
                }
            }
        }
    }
    // Generated site secrets are random per site: compare which keys exist, not the values.
    if o["kind"] == "Secret"
        && let Some(data) = o.get_mut("data").and_then(Value::as_object_mut)
    {
        for v in data.values_mut() {
            *v = Value::String("<value>".into());
        }
    }
    o
}

/// Each run has its own registry port: images name it.
fn without_registry(v: Value, registry: &str) -> Value {
    replaced(v, registry, "<registry>")
}

/// `v` with every occurrence of `from` in its strings replaced by `to`.
fn replaced(v: Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| replaced(x, from, to)).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, replaced(x, from, to))).collect()),
        other => other,
    }
}

async fn end_state(c: &Cluster) -> EndState {
    let mut objects = BTreeMap::new();
    for (api_version, kind, plural) in [
        ("apps/v1", "Deployment", "deployments"),
        ("apps/v1", "StatefulSet", "statefulsets"),
        ("v1", "Service", "services"),
        ("v1", "ConfigMap", "configmaps"),
        ("v1", "Secret", "secrets"),
        ("v1", "ServiceAccount", "serviceaccounts"),
        ("batch/v1", "Job", "jobs"),
    ] {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ar = kube::core::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "sample", &ar);
        for o in api.list(&ListParams::default()).await.unwrap() {
            let v = serde_json::to_value(&o).unwrap();
            let name = v["metadata"]["name"].as_str().unwrap().to_owned();
            if kind == "ServiceAccount" && name == "default" {
                continue;
            }
            // The registry's and the agent's ports differ from run to run.
            let v = without_registry(strip(v), &c.target.addr());
            objects.insert(format!("{kind}/{name}"), replaced(v, &c.url, "<agent>"));
        }
    }
    let r = c.release().await;
    let mut tags = Vec::new();
    for repo in ["sealift-sample/web", "sealift-sample/api", "sealift-sample/db"] {
        let v: Value = reqwest::get(format!("http://{}/v2/{repo}/tags/list", c.target.addr()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut t: Vec<String> = v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("{repo}:{}", t.as_str().unwrap()))
            .collect();
        t.sort();
        tags.extend(t);
    }
    EndState {
        objects,
        history: outcomes(&c.history().await),
        current: r["status"]["currentVersion"].as_str().unwrap_or("").to_owned(),
        phase: phase(&r).to_owned(),
        tags,
    }
}

/// Installs 1.0.0, upgrades to 2.0.0, killing the agent at `kill` once; returns the end.
async fn upgrade_killed_at(vendor: &Vendor, bundles: &[std::path::PathBuf], kill: Option<KillAt>) -> EndState {
    let mut c = Cluster::start_with_lease(vendor, "2s").await;
    for b in bundles {
        c.import(b);
    }
    let out = c.cli_async(&["upgrade", "1.0.0", "--wait"]).await;
    assert!(out.status.success(), "{}", c.log());
    let out = c.cli_async(&["upgrade", "2.0.0"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if let Some(at) = kill {
        let path = c.dir.path().join("store/release/operation.json");
        let started = Instant::now();
        loop {
            let op: Option<Value> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            if op.as_ref().is_some_and(|op| at.reached(op)) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{at:?} never reached: {op:?}\n{}",
                c.log()
            );
            // Some kill points last only a few API calls (after Prune, the Record step).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // SIGKILL: no chance to clean up.
        let mut agent = c.agent.take().unwrap();
        agent.kill().unwrap();
        agent.wait().unwrap();
        c.spawn_agent().await;
    }
    wait_for(&c, "2.0.0 to be ready", |r| {
        phase(r) == "Ready" && r["status"]["currentVersion"] == "2.0.0"
    })
    .await;
    let state = end_state(&c).await;
    if kill.is_some() {
        // Every kill point is after Persist: the restarted agent resumes the plan.
        assert!(c.log().contains("resuming after a restart"), "{}", c.log());
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_killed_anywhere_ends_as_an_uninterrupted_one() {
    let vendor = Vendor::new();
    let bundles = vec![vendor.build("1.0.0", 1), vendor.build("2.0.0", 2)];
    let reference = upgrade_killed_at(&vendor, &bundles, None).await;
    assert_eq!(reference.current, "2.0.0");
    assert_eq!(
        reference.history,
        [
            ("1.0.0".to_owned(), "install".to_owned(), "superseded".to_owned()),
            ("2.0.0".to_owned(), "upgrade".to_owned(), "deployed".to_owned()),
        ]
    );
    assert!(reference.objects.contains_key("Job/sample-app-add-column-r2"));
    for at in [
        KillAt::AfterStep("Persist"),
        KillAt::AfterStep("Stage"),
        KillAt::DuringJob("add-column"),
        KillAt::AfterStep("PreHooks"),
        KillAt::Applied(2),
        KillAt::AfterStep("Apply"),
        KillAt::AfterStep("PostHooks"),
        KillAt::AfterStep("Prune"),
    ] {
        let state = upgrade_killed_at(&vendor, &bundles, Some(at)).await;
        let differing: Vec<String> = state
            .objects
            .keys()
            .chain(reference.objects.keys())
            .filter(|k| state.objects.get(*k) != reference.objects.get(*k))
            .map(|k| {
                format!(
                    "{k}:\n  killed:    {}\n  reference: {}",
                    state.objects.get(k).map(Value::to_string).unwrap_or_default(),
                    reference.objects.get(k).map(Value::to_string).unwrap_or_default()
                )
            })
            .collect();
        assert!(
            differing.is_empty(),
            "killed at {at:?}, objects differ:\n{}",
            differing.join("\n")
        );
        assert_eq!(state, reference, "killed at {at:?}");
    }
}

/// Empties the registry's storage (as if it had been rebuilt) and starts it again.
fn wipe(registry: &mut tests::registry::Registry) {
    registry.kill().unwrap();
    std::fs::remove_dir_all(registry.storage_dir()).unwrap();
    std::fs::create_dir_all(registry.storage_dir()).unwrap();
    registry.restart().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_killed_in_the_middle_of_its_image_push_resumes_it() {
    use tests::oci_fixtures::{SyntheticImage, push_with_skopeo};
    let vendor = Vendor::new();
    // 2.0.0's api image made big enough (3 × 48 MiB) for a push to be caught half-way.
    let big = SyntheticImage::new("sealift-sample/api", "2.0.0", &[48 << 20, 48 << 20, 48 << 20], 77)
        .write_layout(&vendor.dir.path().join("big-api"))
        .unwrap();
    push_with_skopeo(&big, &vendor.registry, "sealift-sample/api:2.0.0").unwrap();
    let v1 = vendor.build("1.0.0", 1);
    let v2 = vendor.build("2.0.0", 2);
    let mut c = Cluster::start_with_lease(&vendor, "2s").await;
    c.import(&v1);
    c.import(&v2);
    let out = c.cli_async(&["upgrade", "1.0.0", "--wait"]).await;
    assert!(out.status.success(), "{}", c.log());
    // The cluster's registry was rebuilt: staging 2.0.0 has every blob to push again.
    wipe(&mut c.target);
    let out = c.cli_async(&["upgrade", "2.0.0"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    let caught = loop {
        let s: Value = get_json(&format!("{}/api/v1/status", c.url), VIEWER).await;
        let (done, total) = (
            s["push"]["bytesDone"].as_u64().unwrap(),
            s["push"]["bytesTotal"].as_u64().unwrap(),
        );
        if s["push"]["running"] == true && done > 0 && done < total {
            break (done, total);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no push in progress seen: {s}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut agent = c.agent.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    c.spawn_agent().await;
    let r = wait_for(&c, "2.0.0 to be ready", |r| {
        phase(r) == "Ready" && r["status"]["currentVersion"] == "2.0.0"
    })
    .await;
    assert!(c.log().contains("resuming after a restart"), "{}", c.log());
    assert_eq!(
        outcomes(&c.history().await),
        [
            ("1.0.0".to_owned(), "install".to_owned(), "superseded".to_owned()),
            ("2.0.0".to_owned(), "upgrade".to_owned(), "deployed".to_owned()),
        ],
        "killed with {caught:?} bytes pushed: {r}"
    );
    // Every image of 2.0.0 is in the registry again, byte for byte.
    let raw = tests::oci_fixtures::skopeo_inspect_raw(&c.target, "sealift-sample/api:2.0.0").unwrap();
    assert_eq!(schemas::Digest::of(&raw), big.digest);
}
