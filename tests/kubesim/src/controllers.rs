//! Simulated controllers: Deployment → ReplicaSet → Pod, StatefulSet, DaemonSet, Job, the
//! kubelet's pod status (image pulls, failure injection, `sim.sealift.dev/exec`) and PVC
//! binding. They run every `SimConfig::tick` against the store, writing status the way the
//! real controllers do.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::SimConfig;
use crate::cluster::{Cluster, now};
use crate::images::{self, PullError};
use crate::store::ObjectKey;

/// Pod-template annotation: the container exits with 1 again and again (CrashLoopBackOff).
pub const CRASH_LOOP: &str = "sim.sealift.dev/crash-loop";
/// Pod-template annotation: containers run but never become ready.
pub const NEVER_READY: &str = "sim.sealift.dev/never-ready";
/// Pod-template annotation: readiness takes this many seconds (default `slow_start_delay`).
pub const SLOW_START: &str = "sim.sealift.dev/slow-start";
/// Pod-template annotation on Jobs: `EXIT_CODE` or `EXIT_CODE:log line` — the pod fails.
pub const JOB_FAIL: &str = "sim.sealift.dev/job-fail";
/// Pod-template annotation on Jobs: a shell command run locally with the container's env;
/// its exit code and output become the pod's status and log. Test-only.
pub const EXEC: &str = "sim.sealift.dev/exec";

const NODE: &str = "kubesim-node";
const MANAGER: &str = "kube-controller-manager";
const KUBELET: &str = "kubelet";

/// What the kubelet knows about one pod.
#[derive(Debug, Default)]
struct PodRuntime {
    running_since: Option<Instant>,
    restarts: i64,
    last_crash: Option<Instant>,
    exec: Option<ExecState>,
    ip: String,
}

#[derive(Debug, Clone)]
enum ExecState {
    Running,
    Done { code: i32, output: String },
}

enum Work {
    Pull(String, Result<(), PullError>),
    Exec(String, i32, String),
}

struct Controllers {
    config: SimConfig,
    pulls: BTreeMap<String, Result<(), PullError>>,
    pulling: BTreeSet<String>,
    pods: BTreeMap<String, PodRuntime>,
    /// Deployment uid → (last counts, when they last moved).
    progress: BTreeMap<String, (Value, Instant)>,
    /// Job uid → when it started, for `activeDeadlineSeconds`.
    job_started: BTreeMap<String, Instant>,
    next_ip: u32,
    work: JoinSet<Work>,
    /// Events already recorded (object uid + reason + message).
    events: BTreeSet<String>,
}

/// Runs the controllers until the task is aborted.
pub async fn run(cluster: Arc<Mutex<Cluster>>, config: SimConfig) {
    let mut interval = tokio::time::interval(config.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut c = Controllers {
        config,
        pulls: BTreeMap::new(),
        pulling: BTreeSet::new(),
        pods: BTreeMap::new(),
        progress: BTreeMap::new(),
        job_started: BTreeMap::new(),
        next_ip: 1,
        work: JoinSet::new(),
        events: BTreeSet::new(),
    };
    loop {
        interval.tick().await;
        while let Some(done) = c.work.try_join_next() {
            match done {
                Ok(Work::Pull(image, result)) => {
                    c.pulling.remove(&image);
                    c.pulls.insert(image, result);
                }
                Ok(Work::Exec(uid, code, output)) => {
                    if let Some(p) = c.pods.get_mut(&uid) {
                        p.exec = Some(ExecState::Done { code, output });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "controller work failed"),
            }
        }
        let Ok(mut guard) = cluster.lock() else {
            return;
        };
        c.reconcile(&mut guard);
    }
}

fn uid(o: &Value) -> String {
    o["metadata"]["uid"].as_str().unwrap_or_default().to_string()
}

fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn namespace(o: &Value) -> String {
    o["metadata"]["namespace"].as_str().unwrap_or_default().to_string()
}

fn int(v: &Value, default: i64) -> i64 {
    v.as_i64().unwrap_or(default)
}

fn owned_by<'a>(objects: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    let owner_uid = uid(owner);
    objects
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"].as_array().is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["uid"] == owner_uid.as_str() && r["controller"] == true)
            })
        })
        .collect()
}

fn owner_ref(owner: &Value, kind: &str, api_version: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name(owner), "uid": uid(owner), "controller": true, "blockOwnerDeletion": true}])
}

/// A short stable hash, spelled as Kubernetes spells pod-template hashes.
fn short_hash(value: &Value, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = DefaultHasher::new();
    value.to_string().hash(&mut h);
    let mut n = h.finish();
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn deleting(o: &Value) -> bool {
    !o["metadata"]["deletionTimestamp"].is_null()
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, time: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason, "message": message, "lastTransitionTime": time, "lastUpdateTime": time})
}

/// Keeps lastTransitionTime of conditions whose status did not change.
fn keep_transition_times(old: &Value, new: &mut Value) {
    let Some(new_conditions) = new.as_array_mut() else {
        return;
    };
    for c in new_conditions {
        if let Some(prev) = old.as_array().and_then(|cs| cs.iter().find(|p| p["type"] == c["type"]))
            && prev["status"] == c["status"]
        {
            c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
            if prev["reason"] == c["reason"] && !prev["lastUpdateTime"].is_null() {
                c["lastUpdateTime"] = prev["lastUpdateTime"].clone();
            }
        }
    }
}

fn pod_from_template(
    template: &Value,
    owner: &Value,
    owner_kind: &str,
    api_version: &str,
    pod_name: &str,
    extra_labels: &Value,
) -> Value {
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["name"] = json!(pod_name);
    metadata["namespace"] = json!(namespace(owner));
    if !metadata["labels"].is_object() {
        metadata["labels"] = json!({});
    }
    if let Some(extra) = extra_labels.as_object() {
        for (k, v) in extra {
            metadata["labels"][k] = v.clone();
        }
    }
    metadata["ownerReferences"] = owner_ref(owner, owner_kind, api_version);
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(NODE);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

impl Controllers {
    /// Records a core/v1 Event about `object` once.
    #[allow(clippy::too_many_arguments)]
    fn event(
        events: &mut BTreeSet<String>,
        cluster: &mut Cluster,
        object: &Value,
        kind: &str,
        api_version: &str,
        kind_type: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let key = format!("{}/{reason}/{message}", uid(object));
        if !events.insert(key.clone()) {
            return;
        }
        let time = now();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{}", name(object), short_hash(&json!(key), 16)), "namespace": namespace(object)},
            "involvedObject": {"apiVersion": api_version, "kind": kind, "name": name(object), "namespace": namespace(object), "uid": uid(object), "resourceVersion": object["metadata"]["resourceVersion"]},
            "reason": reason,
            "message": message,
            "type": kind_type,
            "source": {"component": component},
            "firstTimestamp": time,
            "lastTimestamp": time,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": NODE,
        });
        cluster.controller_write("", "Event", event, "", component);
    }

    fn reconcile(&mut self, cluster: &mut Cluster) {
        let all = |cluster: &Cluster, group: &str, resource: &str| -> Vec<Value> {
            cluster
                .store
                .list(group, resource, None)
                .map(|(_, o)| o.clone())
                .collect()
        };
        self.deployments(
            cluster,
            &all(cluster, "apps", "deployments"),
            &all(cluster, "apps", "replicasets"),
        );
        self.replicasets(cluster, &all(cluster, "apps", "replicasets"), &all(cluster, "", "pods"));
        self.statefulsets(
            cluster,
            &all(cluster, "apps", "statefulsets"),
            &all(cluster, "", "pods"),
        );
        self.daemonsets(cluster, &all(cluster, "apps", "daemonsets"), &all(cluster, "", "pods"));
        self.jobs(cluster, &all(cluster, "batch", "jobs"), &all(cluster, "", "pods"));
        self.kubelet(cluster, &all(cluster, "", "pods"));
        self.bind_claims(cluster, &all(cluster, "", "persistentvolumeclaims"));
    }

    // ---- Deployment --------------------------------------------------------------------

    fn deployments(&mut self, cluster: &mut Cluster, deployments: &[Value], replicasets: &[Value]) {
        for d in deployments.iter().filter(|d| !deleting(d)) {
            if d["spec"]["paused"] == true {
                continue;
            }
            let desired = int(&d["spec"]["replicas"], 1);
            let template = &d["spec"]["template"];
            let hash = short_hash(template, 10);
            let owned = owned_by(replicasets, d);
            let current = owned
                .iter()
                .find(|rs| rs["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
                .cloned();
            let new_rs = match current {
                Some(rs) => {
                    if int(&rs["spec"]["replicas"], 0) != desired {
                        let mut rs = rs.clone();
                        rs["spec"]["replicas"] = json!(desired);
                        cluster.controller_write("apps", "ReplicaSet", rs.clone(), "", MANAGER);
                    }
                    rs.clone()
                }
                None => {
                    let mut t = template.clone();
                    if !t["metadata"]["labels"].is_object() {
                        t["metadata"]["labels"] = json!({});
                    }
                    t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                    let mut selector = d["spec"]["selector"].clone();
                    if !selector["matchLabels"].is_object() {
                        selector["matchLabels"] = json!({});
                    }
                    selector["matchLabels"]["pod-template-hash"] = json!(hash);
                    let mut labels = t["metadata"]["labels"].clone();
                    labels["pod-template-hash"] = json!(hash);
                    let rs = json!({
                        "apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": format!("{}-{hash}", name(d)), "namespace": namespace(d), "labels": labels,
                            "annotations": {"deployment.kubernetes.io/revision": (owned.len() + 1).to_string(), "deployment.kubernetes.io/desired-replicas": desired.to_string()},
                            "ownerReferences": owner_ref(d, "Deployment", "apps/v1")},
                        "spec": {"replicas": desired, "selector": selector, "template": t, "minReadySeconds": d["spec"]["minReadySeconds"].clone()},
                    });
                    match cluster.controller_write("apps", "ReplicaSet", rs, "", MANAGER) {
                        Some(created) => {
                            let message = format!("Scaled up replica set {} to {desired}", name(&created));
                            Self::event(
                                &mut self.events,
                                cluster,
                                d,
                                "Deployment",
                                "apps/v1",
                                "Normal",
                                "ScalingReplicaSet",
                                &message,
                                "deployment-controller",
                            );
                            created
                        }
                        None => continue,
                    }
                }
            };
            let new_ready = int(&new_rs["status"]["readyReplicas"], 0);
            let new_count = int(&new_rs["status"]["replicas"], 0);
            let old: Vec<&&Value> = owned.iter().filter(|rs| uid(rs) != uid(&new_rs)).collect();
            // Old ReplicaSets scale down once the new one is fully ready.
            if new_ready >= desired {
                for rs in &old {
                    if int(&rs["spec"]["replicas"], 0) != 0 {
                        let mut rs = (**rs).clone();
                        rs["spec"]["replicas"] = json!(0);
                        cluster.controller_write("apps", "ReplicaSet", rs, "", MANAGER);
                    }
                }
            }
            let old_count: i64 = old.iter().map(|rs| int(&rs["status"]["replicas"], 0)).sum();
            let old_ready: i64 = old.iter().map(|rs| int(&rs["status"]["readyReplicas"], 0)).sum();
            let replicas = new_count + old_count;
            let ready = new_ready + old_ready;
            let time = now();
            let max_unavailable = match &d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] {
                Value::Number(n) => n.as_i64().unwrap_or(0),
                Value::String(s) if s.ends_with('%') => {
                    desired * s.trim_end_matches('%').parse::<i64>().unwrap_or(25) / 100
                }
                _ => 0,
            };
            let available = ready >= desired - max_unavailable;
            let complete = new_ready >= desired && old_count == 0 && new_count == desired;
            let previous = &d["status"]["conditions"];
            let counts = json!([new_count, new_ready, old_count, d["metadata"]["generation"]]);
            let progress = self.progress.entry(uid(d)).or_insert((counts.clone(), Instant::now()));
            if progress.0 != counts {
                *progress = (counts, Instant::now());
            }
            let deadline = self
                .config
                .scaled(int(&d["spec"]["progressDeadlineSeconds"], 600) as f64);
            let progressing = if complete {
                condition(
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{}\" has successfully progressed.", name(&new_rs)),
                    &time,
                )
            } else if progress.1.elapsed() >= deadline {
                condition(
                    "Progressing",
                    false,
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{}\" has timed out progressing.", name(&new_rs)),
                    &time,
                )
            } else {
                condition(
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{}\" is progressing.", name(&new_rs)),
                    &time,
                )
            };
            let available_cond = if available {
                condition(
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    &time,
                )
            } else {
                condition(
                    "Available",
                    false,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    &time,
                )
            };
            let mut conditions = json!([available_cond, progressing]);
            keep_transition_times(previous, &mut conditions);
            let mut status = json!({
                "observedGeneration": d["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": new_count,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": conditions,
            });
            if replicas - ready > 0 {
                status["unavailableReplicas"] = json!(replicas - ready);
            }
            let mut d3 = d.clone();
            d3["status"] = status;
            cluster.controller_write("apps", "Deployment", d3, "status", MANAGER);
        }
    }

    // ---- ReplicaSet --------------------------------------------------------------------

    fn replicasets(&mut self, cluster: &mut Cluster, replicasets: &[Value], pods: &[Value]) {
        for rs in replicasets.iter().filter(|r| !deleting(r)) {
            let desired = int(&rs["spec"]["replicas"], 1);
            let mine: Vec<&Value> = owned_by(pods, rs).into_iter().filter(|p| !deleting(p)).collect();
            let count = mine.len() as i64;
            if count < desired {
                for _ in count..desired {
                    let pod_name = format!(
                        "{}-{}",
                        name(rs),
                        short_hash(&json!([uid(rs), self.next_ip, rand_counter()]), 5)
                    );
                    let pod = pod_from_template(
                        &rs["spec"]["template"],
                        rs,
                        "ReplicaSet",
                        "apps/v1",
                        &pod_name,
                        &json!({}),
                    );
                    cluster.controller_write("", "Pod", pod, "", MANAGER);
                }
            } else if count > desired {
                let mut victims: Vec<&Value> = mine.clone();
                victims.sort_by_key(|p| is_ready(p));
                for p in victims.into_iter().take((count - desired) as usize) {
                    cluster.controller_delete(&ObjectKey::new("", "pods", &namespace(p), &name(p)));
                }
            }
            let ready = mine.iter().filter(|p| is_ready(p)).count() as i64;
            let mut rs2 = rs.clone();
            rs2["status"] = json!({
                "replicas": count.min(desired.max(count)),
                "fullyLabeledReplicas": count,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"]["generation"],
            });
            cluster.controller_write("apps", "ReplicaSet", rs2, "status", MANAGER);
        }
    }

    // ---- StatefulSet -------------------------------------------------------------------

    fn statefulsets(&mut self, cluster: &mut Cluster, sets: &[Value], pods: &[Value]) {
        for s in sets.iter().filter(|s| !deleting(s)) {
            let desired = int(&s["spec"]["replicas"], 1);
            let revision = format!("{}-{}", name(s), short_hash(&s["spec"]["template"], 10));
            let mine: Vec<&Value> = owned_by(pods, s);
            let ordinal = |p: &Value| {
                name(p)
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(-1)
            };
            let parallel = s["spec"]["podManagementPolicy"] == "Parallel";
            // Claims from volumeClaimTemplates.
            for i in 0..desired {
                for t in s["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
                    let claim = format!("{}-{}-{i}", name(t), name(s));
                    if cluster
                        .store
                        .get(&ObjectKey::new("", "persistentvolumeclaims", &namespace(s), &claim))
                        .is_none()
                    {
                        let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace(s), "labels": s["spec"]["selector"]["matchLabels"].clone()}, "spec": t["spec"].clone()});
                        if !pvc["metadata"]["labels"].is_object() {
                            pvc["metadata"]["labels"] = json!({});
                        }
                        cluster.controller_write("", "PersistentVolumeClaim", pvc, "", MANAGER);
                    }
                }
            }
            // Create missing ordinals in order (OrderedReady waits for the previous one).
            for i in 0..desired {
                let existing = mine.iter().find(|p| ordinal(p) == i);
                match existing {
                    Some(p) if deleting(p) => break,
                    Some(p) => {
                        if !parallel && !is_ready(p) {
                            break;
                        }
                    }
                    None => {
                        let pod_name = format!("{}-{i}", name(s));
                        let mut pod = pod_from_template(
                            &s["spec"]["template"],
                            s,
                            "StatefulSet",
                            "apps/v1",
                            &pod_name,
                            &json!({"controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": pod_name, "apps.kubernetes.io/pod-index": i.to_string()}),
                        );
                        let mut volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
                        for t in s["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
                            volumes.push(json!({"name": name(t), "persistentVolumeClaim": {"claimName": format!("{}-{}-{i}", name(t), name(s))}}));
                        }
                        if !volumes.is_empty() {
                            pod["spec"]["volumes"] = Value::Array(volumes);
                        }
                        pod["spec"]["hostname"] = json!(pod_name);
                        cluster.controller_write("", "Pod", pod, "", MANAGER);
                        if !parallel {
                            break;
                        }
                    }
                }
            }
            // Scale down from the highest ordinal; roll out a new revision from the highest.
            let all_ready = mine.iter().filter(|p| !deleting(p)).all(|p| is_ready(p));
            for p in mine.iter().filter(|p| ordinal(p) >= desired && !deleting(p)) {
                cluster.controller_delete(&ObjectKey::new("", "pods", &namespace(p), &name(p)));
            }
            let on_delete = s["spec"]["updateStrategy"]["type"] == "OnDelete";
            if all_ready && !on_delete {
                let partition = int(&s["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
                if let Some(p) = mine
                    .iter()
                    .filter(|p| {
                        ordinal(p) >= partition
                            && ordinal(p) < desired
                            && p["metadata"]["labels"]["controller-revision-hash"] != revision.as_str()
                    })
                    .max_by_key(|p| ordinal(p))
                {
                    cluster.controller_delete(&ObjectKey::new("", "pods", &namespace(p), &name(p)));
                }
            }
            let live: Vec<&&Value> = mine.iter().filter(|p| !deleting(p) && ordinal(p) < desired).collect();
            let updated = live
                .iter()
                .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == revision.as_str())
                .count() as i64;
            let ready = live.iter().filter(|p| is_ready(p)).count() as i64;
            let current_revision = if updated == desired {
                revision.clone()
            } else {
                s["status"]["currentRevision"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| revision.clone())
            };
            let mut s2 = s.clone();
            s2["status"] = json!({
                "observedGeneration": s["metadata"]["generation"],
                "replicas": live.len(),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": if current_revision == revision { updated } else { live.len() as i64 - updated },
                "updatedReplicas": updated,
                "currentRevision": current_revision,
                "updateRevision": revision,
                "collisionCount": 0,
            });
            cluster.controller_write("apps", "StatefulSet", s2, "status", MANAGER);
        }
    }

    // ---- DaemonSet ---------------------------------------------------------------------

    fn daemonsets(&mut self, cluster: &mut Cluster, sets: &[Value], pods: &[Value]) {
        for ds in sets.iter().filter(|d| !deleting(d)) {
            let hash = short_hash(&ds["spec"]["template"], 10);
            let mine: Vec<&Value> = owned_by(pods, ds).into_iter().filter(|p| !deleting(p)).collect();
            let current: Vec<&&Value> = mine
                .iter()
                .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == hash.as_str())
                .collect();
            for p in mine
                .iter()
                .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] != hash.as_str())
            {
                cluster.controller_delete(&ObjectKey::new("", "pods", &namespace(p), &name(p)));
            }
            if current.is_empty() {
                let pod_name = format!("{}-{}", name(ds), short_hash(&json!([uid(ds), hash]), 5));
                let pod = pod_from_template(
                    &ds["spec"]["template"],
                    ds,
                    "DaemonSet",
                    "apps/v1",
                    &pod_name,
                    &json!({"controller-revision-hash": hash}),
                );
                cluster.controller_write("", "Pod", pod, "", MANAGER);
            }
            let ready = current.iter().filter(|p| is_ready(p)).count() as i64;
            let mut ds2 = ds.clone();
            ds2["status"] = json!({
                "observedGeneration": ds["metadata"]["generation"],
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": mine.len().min(1),
                "updatedNumberScheduled": current.len().min(1),
                "numberReady": ready,
                "numberAvailable": ready,
                "numberMisscheduled": 0,
            });
            if ready == 0 {
                ds2["status"]["numberUnavailable"] = json!(1);
            }
            cluster.controller_write("apps", "DaemonSet", ds2, "status", MANAGER);
        }
    }

    // ---- Job ---------------------------------------------------------------------------

    fn jobs(&mut self, cluster: &mut Cluster, jobs: &[Value], pods: &[Value]) {
        for job in jobs.iter().filter(|j| !deleting(j)) {
            let conditions = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
            if conditions
                .iter()
                .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
            {
                continue;
            }
            if job["spec"]["suspend"] == true {
                continue;
            }
            self.job_started.entry(uid(job)).or_insert_with(Instant::now);
            let mine: Vec<&Value> = owned_by(pods, job);
            let succeeded = mine.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
            let failed = mine.iter().filter(|p| phase(p) == "Failed").count() as i64;
            let active: Vec<&&Value> = mine
                .iter()
                .filter(|p| !matches!(phase(p), "Succeeded" | "Failed") && !deleting(p))
                .collect();
            let completions = int(&job["spec"]["completions"], 1);
            let parallelism = int(&job["spec"]["parallelism"], 1);
            let backoff_limit = int(&job["spec"]["backoffLimit"], 6);
            let time = now();
            let start_time = job["status"]["startTime"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| time.clone());
            let mut status = json!({
                "startTime": start_time,
                "active": active.len(),
                "succeeded": succeeded,
                "failed": failed,
                "ready": active.iter().filter(|p| is_ready(p)).count(),
                "terminating": 0,
                "uncountedTerminatedPods": {},
            });
            if succeeded >= completions {
                status["completionTime"] = json!(time);
                status["conditions"] = json!([
                    condition(
                        "SuccessCriteriaMet",
                        true,
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        &time
                    ),
                    condition(
                        "Complete",
                        true,
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        &time
                    ),
                ]);
                status["active"] = json!(0);
                Self::event(
                    &mut self.events,
                    cluster,
                    job,
                    "Job",
                    "batch/v1",
                    "Normal",
                    "Completed",
                    "Job completed",
                    "job-controller",
                );
            } else if let Some(limit) = job["spec"]["activeDeadlineSeconds"].as_i64().filter(|_| {
                self.job_started.get(&uid(job)).is_some_and(|t| {
                    t.elapsed() >= self.config.scaled(int(&job["spec"]["activeDeadlineSeconds"], 0) as f64)
                })
            }) {
                let message = format!("Job was active longer than specified deadline ({limit}s)");
                status["conditions"] = json!([
                    condition("FailureTarget", true, "DeadlineExceeded", &message, &time),
                    condition("Failed", true, "DeadlineExceeded", &message, &time),
                ]);
                status["active"] = json!(0);
                Self::event(
                    &mut self.events,
                    cluster,
                    job,
                    "Job",
                    "batch/v1",
                    "Warning",
                    "DeadlineExceeded",
                    &message,
                    "job-controller",
                );
                for p in &active {
                    cluster.controller_delete(&ObjectKey::new("", "pods", &namespace(p), &name(p)));
                }
            } else if failed > backoff_limit {
                Self::event(
                    &mut self.events,
                    cluster,
                    job,
                    "Job",
                    "batch/v1",
                    "Warning",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    "job-controller",
                );
                status["conditions"] = json!([
                    condition(
                        "FailureTarget",
                        true,
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        &time
                    ),
                    condition(
                        "Failed",
                        true,
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        &time
                    ),
                ]);
                status["active"] = json!(0);
                for p in &active {
                    cluster.controller_delete(&ObjectKey::new("", "pods", &namespace(p), &name(p)));
                }
            } else {
                let want = parallelism.min(completions - succeeded) - active.len() as i64;
                for _ in 0..want.max(0) {
                    let pod_name = format!("{}-{}", name(job), short_hash(&json!([uid(job), rand_counter()]), 5));
                    let pod =
                        pod_from_template(&job["spec"]["template"], job, "Job", "batch/v1", &pod_name, &json!({}));
                    cluster.controller_write("", "Pod", pod, "", MANAGER);
                }
                status["active"] = json!(active.len() as i64 + want.max(0));
            }
            let mut j2 = job.clone();
            j2["status"] = status;
            cluster.controller_write("batch", "Job", j2, "status", MANAGER);
        }
    }

    // ---- PVC ---------------------------------------------------------------------------

    fn bind_claims(&mut self, cluster: &mut Cluster, claims: &[Value]) {
        for pvc in claims
            .iter()
            .filter(|c| c["status"]["phase"] != "Bound" && !deleting(c))
        {
            let mut p = pvc.clone();
            let volume = format!("pvc-{}", uid(pvc));
            p["status"] = json!({
                "phase": "Bound",
                "accessModes": pvc["spec"]["accessModes"].clone(),
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"].clone()},
            });
            if let Some(updated) = cluster.controller_write("", "PersistentVolumeClaim", p, "status", MANAGER)
                && updated["spec"]["volumeName"].is_null()
            {
                let mut u = updated;
                u["spec"]["volumeName"] = json!(volume);
                cluster.controller_write("", "PersistentVolumeClaim", u, "", MANAGER);
            }
        }
    }

    // ---- kubelet -----------------------------------------------------------------------

    fn kubelet(&mut self, cluster: &mut Cluster, pods: &[Value]) {
        let live: BTreeSet<String> = pods.iter().map(uid).collect();
        self.pods.retain(|u, _| live.contains(u));
        for pod in pods {
            if deleting(pod) || matches!(phase(pod), "Succeeded" | "Failed") {
                continue;
            }
            let pod_uid = uid(pod);
            if !self.pods.contains_key(&pod_uid) {
                self.next_ip += 1;
                let ip = format!("10.244.{}.{}", self.next_ip / 250, self.next_ip % 250 + 1);
                self.pods.insert(
                    pod_uid.clone(),
                    PodRuntime {
                        ip,
                        ..PodRuntime::default()
                    },
                );
            }
            let status = self.pod_status(cluster, pod, &pod_uid);
            let mut p = pod.clone();
            let mut status = status;
            keep_transition_times(&pod["status"]["conditions"], &mut status["conditions"]);
            p["status"] = status;
            cluster.controller_write("", "Pod", p, "status", KUBELET);
        }
    }

    fn pod_status(&mut self, cluster: &mut Cluster, pod: &Value, pod_uid: &str) -> Value {
        let time = now();
        let ns = namespace(pod);
        let pod_name = name(pod);
        let annotations = pod["metadata"]["annotations"].clone();
        let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
        let start_time = pod["status"]["startTime"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| time.clone());
        let ip = self.pods.get(pod_uid).map(|r| r.ip.clone()).unwrap_or_default();
        let mut base = json!({"hostIP": "10.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": start_time, "qosClass": "BestEffort"});

        // Image pulls.
        let mut pull_error: Option<(String, String)> = None;
        let mut pending = false;
        for c in &containers {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            match self.pulls.get(&image) {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    pull_error.get_or_insert((c["name"].as_str().unwrap_or_default().to_string(), e.to_string()));
                }
                None => {
                    pending = true;
                    if self.pulling.insert(image.clone()) {
                        let registry = self.config.registry.clone();
                        self.work.spawn(async move {
                            let result = images::pull(registry.as_ref(), &image).await;
                            Work::Pull(image, result)
                        });
                    }
                }
            }
        }
        let waiting_statuses = |reason: &str, message: &str| -> Value {
            Value::Array(containers.iter().map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": false, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}})).collect())
        };
        let conditions_for = |ready: bool, scheduled_only: bool| -> Value {
            let mut cs = vec![condition("PodScheduled", true, "", "", &time)];
            if !scheduled_only {
                cs.push(condition("Initialized", true, "", "", &time));
                cs.push(condition(
                    "ContainersReady",
                    ready,
                    if ready { "" } else { "ContainersNotReady" },
                    "",
                    &time,
                ));
                cs.push(condition(
                    "Ready",
                    ready,
                    if ready { "" } else { "ContainersNotReady" },
                    "",
                    &time,
                ));
            }
            for c in cs.iter_mut() {
                if let Some(m) = c.as_object_mut() {
                    m.shift_remove("lastUpdateTime");
                    if m.get("reason").is_some_and(|r| r == "") {
                        m.shift_remove("reason");
                        m.shift_remove("message");
                    }
                }
            }
            Value::Array(cs)
        };
        if let Some((_, message)) = pull_error {
            Self::event(
                &mut self.events,
                cluster,
                pod,
                "Pod",
                "v1",
                "Warning",
                "Failed",
                &message,
                KUBELET,
            );
            let runtime = self.pods.get_mut(pod_uid);
            let backoff = runtime.is_some_and(|r| {
                let since = *r.running_since.get_or_insert_with(Instant::now);
                since.elapsed() > Duration::from_secs(1)
            });
            base["phase"] = json!("Pending");
            base["conditions"] = conditions_for(false, false);
            base["containerStatuses"] =
                waiting_statuses(if backoff { "ImagePullBackOff" } else { "ErrImagePull" }, &message);
            return base;
        }
        if pending {
            base["phase"] = json!("Pending");
            base["conditions"] = conditions_for(false, false);
            base["containerStatuses"] = waiting_statuses("ContainerCreating", "");
            return base;
        }

        let Some(runtime) = self.pods.get_mut(pod_uid) else {
            return base;
        };
        let running_since = *runtime.running_since.get_or_insert_with(Instant::now);
        let elapsed = running_since.elapsed();
        let started_at = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| time.clone());
        let restart_never = pod["spec"]["restartPolicy"] != "Always";
        let container_name = containers
            .first()
            .and_then(|c| c["name"].as_str())
            .unwrap_or("main")
            .to_string();
        let log_key = (ns.clone(), pod_name.clone(), container_name.clone());

        // Run-to-completion pods (Jobs): injected failure, local exec, or success.
        if restart_never && elapsed >= self.config.start_delay {
            let mut outcome: Option<(i32, String)> = None;
            if let Some(spec) = annotations[JOB_FAIL].as_str() {
                let (code, line) = spec
                    .split_once(':')
                    .unwrap_or((spec, "job failed (injected by sim.sealift.dev/job-fail)"));
                outcome = Some((code.trim().parse().unwrap_or(1), format!("{}\n", line.trim())));
            } else if let Some(command) = annotations[EXEC].as_str() {
                match runtime.exec.clone() {
                    None if self.config.allow_exec => {
                        runtime.exec = Some(ExecState::Running);
                        let env: Vec<(String, String)> = containers
                            .first()
                            .and_then(|c| c["env"].as_array().cloned())
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|e| {
                                Some((
                                    e["name"].as_str()?.to_string(),
                                    e["value"].as_str().unwrap_or_default().to_string(),
                                ))
                            })
                            .collect();
                        let command = command.to_string();
                        let uid_owned = pod_uid.to_string();
                        self.work.spawn(async move {
                            let (code, output) = run_exec(&command, &env).await;
                            Work::Exec(uid_owned, code, output)
                        });
                    }
                    None => outcome = Some((126, "sim.sealift.dev/exec is disabled in this simulator\n".to_string())),
                    Some(ExecState::Running) => {}
                    Some(ExecState::Done { code, output }) => outcome = Some((code, output)),
                }
            } else {
                outcome = Some((0, String::new()));
            }
            if let Some((code, output)) = outcome {
                cluster.logs.insert(log_key, output);
                let (phase_name, reason) = if code == 0 {
                    ("Succeeded", "Completed")
                } else {
                    ("Failed", "Error")
                };
                base["phase"] = json!(phase_name);
                let mut conds = conditions_for(false, false);
                if let Some(cs) = conds.as_array_mut() {
                    for c in cs
                        .iter_mut()
                        .filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady")
                    {
                        c["reason"] = json!("PodCompleted");
                    }
                }
                base["conditions"] = conds;
                base["containerStatuses"] = Value::Array(containers.iter().map(|c| json!({"name": c["name"], "image": c["image"], "imageID": format!("{}@sha256:simulated", c["image"].as_str().unwrap_or_default()), "ready": false, "started": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": time}}})).collect());
                return base;
            }
        }

        // Crash loop: the container exits 1 over and over.
        if annotations[CRASH_LOOP].is_string() && elapsed >= self.config.start_delay {
            let crash_every = self.config.start_delay.max(Duration::from_millis(200));
            if runtime.last_crash.is_none_or(|t| t.elapsed() >= crash_every) {
                runtime.restarts += 1;
                runtime.last_crash = Some(Instant::now());
            }
            let message = annotations[CRASH_LOOP]
                .as_str()
                .filter(|m| !m.is_empty())
                .unwrap_or("container exited with code 1 (injected by sim.sealift.dev/crash-loop)");
            cluster.logs.insert(log_key, format!("{message}\n"));
            let backoff = format!("Back-off restarting failed container {container_name} in pod {pod_name}");
            Self::event(
                &mut self.events,
                cluster,
                pod,
                "Pod",
                "v1",
                "Warning",
                "BackOff",
                &backoff,
                KUBELET,
            );
            base["phase"] = json!("Running");
            base["conditions"] = conditions_for(false, false);
            base["containerStatuses"] = Value::Array(containers.iter().map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": false, "restartCount": runtime.restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {} in pod {pod_name}", c["name"].as_str().unwrap_or_default())}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message, "startedAt": started_at, "finishedAt": time}}})).collect());
            return base;
        }

        let slow = match &annotations[SLOW_START] {
            Value::String(s) => s
                .parse::<f64>()
                .map(|secs| self.config.scaled(secs))
                .unwrap_or(self.config.slow_start_delay),
            _ => Duration::ZERO,
        };
        let ready = annotations[NEVER_READY].is_null() && elapsed >= self.config.start_delay + slow;
        cluster.logs.entry(log_key).or_default();
        base["phase"] = json!("Running");
        base["conditions"] = conditions_for(ready, false);
        base["containerStatuses"] = Value::Array(containers.iter().map(|c| json!({"name": c["name"], "image": c["image"], "imageID": format!("{}@sha256:simulated", c["image"].as_str().unwrap_or_default()), "ready": ready, "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": started_at}}})).collect());
        base
    }
}

/// A process-wide counter for unique generated names.
fn rand_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs a Job's `sim.sealift.dev/exec` command with `sh -c`, the container's env, and a
/// 10-minute limit; returns its exit code and combined output.
async fn run_exec(command: &str, env: &[(String, String)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match tokio::time::timeout(Duration::from_secs(600), cmd.output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.code().unwrap_or(137), text)
        }
        Ok(Err(e)) => (127, format!("running {command:?}: {e}\n")),
        Err(_) => (124, format!("{command:?} timed out after 600s\n")),
    }
}
