//! Readiness of applied objects, decided from the objects as the API server returns them.
//!
//! A port of kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status`, the rules Helm 4
//! `--wait=watcher` and Flux use) with the changes the release engine needs:
//!
//! - Jobs are strict (Helm 4's Job reader): `Current` only once complete, never while running.
//! - A LoadBalancer Service never blocks: dark clusters often have no load balancer.
//! - A Pod in phase `Failed` is `Failed` (kstatus calls it `Current`); a Namespace that is
//!   terminating and a PVC that is `Lost` are `Failed`.
//! - A paused Deployment is not waited for (as Helm 4).
//! - Fail fast from the pods a workload owns: a container waiting on an image it cannot pull,
//!   a bad image name, a configuration error or a crash loop fails the wait at once, naming the
//!   pod, the container, the reason and the kubelet's message. Only pods of the workload's
//!   current revision count, so an upgrade that replaces crash-looping pods is not failed by
//!   the old ones.
//!
//! Everything here is a pure function over `serde_json::Value`: no client, no clock. The
//! caller fetches the object and the pods its [`pod_selector`] selects, and feeds each
//! wave's assessments to a [`StallDetector`] with the time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Container waiting reasons that end the wait at once. Kubernetes retries them with a
/// back-off, but in an air-gapped cluster none of them heals without a change by someone.
pub const FAIL_FAST_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CrashLoopBackOff",
];

/// What one object's readiness is. Reasons say what is awaited or what failed, without the
/// object's own name (the caller prefixes it), but naming pods and containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Ready: the next wave may start.
    Current,
    /// Not ready yet, and nothing says it will not become ready.
    InProgress { reason: String },
    /// Will not become ready without intervention.
    Failed { reason: String },
}

impl Assessment {
    fn in_progress(reason: impl Into<String>) -> Self {
        Self::InProgress { reason: reason.into() }
    }

    fn failed(reason: impl Into<String>) -> Self {
        Self::Failed { reason: reason.into() }
    }

    pub fn is_current(&self) -> bool {
        matches!(self, Self::Current)
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

impl fmt::Display for Assessment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Current => f.write_str("current"),
            Self::InProgress { reason } => write!(f, "in progress: {reason}"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// The kinds with rules of their own, by API group and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    Pod,
    PersistentVolumeClaim,
    Service,
    CustomResourceDefinition,
    Namespace,
    AlwaysReady,
    Other,
}

impl Kind {
    fn of(object: &Value) -> Self {
        let api_version = str_at(object, &["apiVersion"]).unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let kind = str_at(object, &["kind"]).unwrap_or_default();
        match (group, kind) {
            ("apps" | "extensions", "Deployment") => Self::Deployment,
            ("apps", "StatefulSet") => Self::StatefulSet,
            ("apps" | "extensions", "DaemonSet") => Self::DaemonSet,
            ("apps" | "extensions", "ReplicaSet") => Self::ReplicaSet,
            ("", "ReplicationController") => Self::ReplicationController,
            ("batch", "Job") => Self::Job,
            ("", "Pod") => Self::Pod,
            ("", "PersistentVolumeClaim") => Self::PersistentVolumeClaim,
            ("", "Service") => Self::Service,
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Self::CustomResourceDefinition,
            ("", "Namespace") => Self::Namespace,
            ("", "ConfigMap" | "Secret" | "ServiceAccount")
            | ("rbac.authorization.k8s.io", "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding")
            | ("policy", "PodDisruptionBudget")
            | ("batch", "CronJob") => Self::AlwaysReady,
            _ => Self::Other,
        }
    }

    /// Whether objects of this kind create pods from `spec.selector` and a template.
    fn owns_pods(self) -> bool {
        matches!(
            self,
            Self::Deployment
                | Self::StatefulSet
                | Self::DaemonSet
                | Self::ReplicaSet
                | Self::ReplicationController
                | Self::Job
        )
    }
}

/// Assess one object's readiness. `pods` are the pods its [`pod_selector`] selects (empty for
/// kinds without pods); only those of the object's current revision are used for failing fast.
pub fn assess(object: &Value, pods: &[Value]) -> Assessment {
    let kind = Kind::of(object);
    let assessment = match generic(object, kind) {
        Some(decided) => return decided,
        None => by_kind(object, kind),
    };
    if !kind.owns_pods() {
        return assessment;
    }
    let problem = first_pod_problem(current_revision_pods(object, kind, pods));
    match (assessment, problem) {
        (Assessment::InProgress { .. }, Some(problem)) => Assessment::Failed { reason: problem },
        (Assessment::Failed { reason }, Some(problem)) => Assessment::Failed {
            reason: format!("{reason}; {problem}"),
        },
        (assessment, _) => assessment,
    }
}

/// The rules kstatus applies to every kind first: deletion, the generation observed, and
/// the standard `Reconciling` and `Stalled` conditions.
fn generic(object: &Value, kind: Kind) -> Option<Assessment> {
    if str_at(object, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_empty()) {
        return Some(if kind == Kind::Namespace {
            Assessment::failed("namespace is terminating")
        } else {
            Assessment::in_progress("being deleted")
        });
    }
    let generation = int_at(object, &["metadata", "generation"]);
    let observed = int_at(object, &["status", "observedGeneration"]);
    if let (Some(generation), Some(observed)) = (generation, observed)
        && generation != observed
    {
        return Some(Assessment::in_progress(format!(
            "generation {generation} not yet observed by its controller (observed {observed})"
        )));
    }
    // The DaemonSet controller always sets both; kstatus waits until it has.
    if kind == Kind::DaemonSet {
        if generation.is_none() {
            return Some(Assessment::in_progress("metadata.generation not set"));
        }
        if observed.is_none() {
            return Some(Assessment::in_progress("status.observedGeneration not set yet"));
        }
    }
    for c in conditions(object) {
        if c.kind == "Reconciling" && c.status == "True" {
            return Some(Assessment::in_progress(c.describe("reconciling")));
        }
        if c.kind == "Stalled" && c.status == "True" {
            return Some(Assessment::failed(c.describe("stalled")));
        }
    }
    None
}

fn by_kind(object: &Value, kind: Kind) -> Assessment {
    match kind {
        Kind::Deployment => deployment(object),
        Kind::StatefulSet => stateful_set(object),
        Kind::DaemonSet => daemon_set(object),
        Kind::ReplicaSet => replica_set(object),
        Kind::Job => job(object),
        Kind::Pod => pod(object),
        Kind::PersistentVolumeClaim => match str_at(object, &["status", "phase"]) {
            Some("Bound") => Assessment::Current,
            Some("Lost") => Assessment::failed("claim lost its volume (phase Lost)"),
            phase => Assessment::in_progress(format!("not bound (phase {})", phase.unwrap_or("unknown"))),
        },
        // kstatus waits for a LoadBalancer's clusterIP; the API server assigns it on create,
        // and load-balancer ingress may never come in a dark cluster. Never block.
        Kind::Service | Kind::AlwaysReady => Assessment::Current,
        Kind::CustomResourceDefinition => crd(object),
        Kind::Namespace => match str_at(object, &["status", "phase"]) {
            Some("Active") => Assessment::Current,
            Some("Terminating") => Assessment::failed("namespace is terminating"),
            phase => Assessment::in_progress(format!("phase {}", phase.unwrap_or("not set yet"))),
        },
        Kind::ReplicationController | Kind::Other => ready_condition(object),
    }
}

/// Custom resources and kinds without rules: `Ready` if present, otherwise current as soon as
/// it exists (kstatus: "the absence of any known conditions means the resource is current").
fn ready_condition(object: &Value) -> Assessment {
    match conditions(object).find(|c| c.kind == "Ready") {
        Some(c) if c.status == "True" => Assessment::Current,
        Some(c) => Assessment::in_progress(c.describe("not ready")),
        None => Assessment::Current,
    }
}

fn deployment(object: &Value) -> Assessment {
    if object.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        // Helm 4 leaves paused Deployments out of the wait: nothing will roll them out.
        return Assessment::Current;
    }
    // Without progressDeadlineSeconds the controller never reports progress; kstatus then
    // counts the Deployment as progressing.
    let mut progressing = int_at(object, &["spec", "progressDeadlineSeconds"]).is_none();
    let mut available = false;
    for c in conditions(object) {
        match c.kind {
            "Progressing" if c.reason == "ProgressDeadlineExceeded" => {
                return Assessment::failed(c.describe("progress deadline exceeded"));
            }
            "Progressing" if c.status == "True" && c.reason == "NewReplicaSetAvailable" => progressing = true,
            "Available" if c.status == "True" => available = true,
            _ => {}
        }
    }
    let spec = int_at(object, &["spec", "replicas"]).unwrap_or(1);
    let replicas = status_int(object, "replicas");
    let updated = status_int(object, "updatedReplicas");
    let ready = status_int(object, "readyReplicas");
    let available_replicas = status_int(object, "availableReplicas");
    if spec > replicas {
        Assessment::in_progress(format!("replicas {replicas}/{spec}"))
    } else if spec > updated {
        Assessment::in_progress(format!("updated replicas {updated}/{spec}"))
    } else if replicas > spec {
        Assessment::in_progress(format!("{} old replicas pending termination", replicas - spec))
    } else if updated > available_replicas {
        Assessment::in_progress(format!("available replicas {available_replicas}/{updated}"))
    } else if spec > ready {
        Assessment::in_progress(format!("ready replicas {ready}/{spec}"))
    } else if !progressing {
        Assessment::in_progress("new replica set not yet available")
    } else if !available {
        Assessment::in_progress("deployment not yet available")
    } else {
        Assessment::Current
    }
}

fn stateful_set(object: &Value) -> Assessment {
    if str_at(object, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        // kstatus: a user-managed StatefulSet; its pods change only when someone deletes them.
        return Assessment::Current;
    }
    let spec = int_at(object, &["spec", "replicas"]).unwrap_or(1);
    let replicas = status_int(object, "replicas");
    let ready = status_int(object, "readyReplicas");
    let current = status_int(object, "currentReplicas");
    let updated = status_int(object, "updatedReplicas");
    if spec > replicas {
        return Assessment::in_progress(format!("replicas {replicas}/{spec}"));
    }
    if spec > ready {
        return Assessment::in_progress(format!("ready replicas {ready}/{spec}"));
    }
    if replicas > spec {
        return Assessment::in_progress(format!("{} replicas pending termination", replicas - spec));
    }
    if let Some(partition) = int_at(object, &["spec", "updateStrategy", "rollingUpdate", "partition"]) {
        let want = spec - partition;
        return if updated < want {
            Assessment::in_progress(format!("updated replicas {updated}/{want} (partition {partition})"))
        } else {
            Assessment::Current
        };
    }
    if spec > current {
        return Assessment::in_progress(format!("current replicas {current}/{spec}"));
    }
    let current_revision = str_at(object, &["status", "currentRevision"]).unwrap_or_default();
    let update_revision = str_at(object, &["status", "updateRevision"]).unwrap_or_default();
    if current_revision != update_revision {
        return Assessment::in_progress(format!(
            "current revision {current_revision} is not yet the update revision {update_revision}"
        ));
    }
    Assessment::Current
}

fn daemon_set(object: &Value) -> Assessment {
    let Some(desired) = int_at(object, &["status", "desiredNumberScheduled"]) else {
        return Assessment::in_progress("status.desiredNumberScheduled not set yet");
    };
    let checks = [
        ("currentNumberScheduled", "scheduled"),
        ("updatedNumberScheduled", "updated"),
        ("numberAvailable", "available"),
        ("numberReady", "ready"),
    ];
    for (field, what) in checks {
        let n = status_int(object, field);
        if desired > n {
            return Assessment::in_progress(format!("{what} pods {n}/{desired}"));
        }
    }
    Assessment::Current
}

fn replica_set(object: &Value) -> Assessment {
    if let Some(c) = conditions(object).find(|c| c.kind == "ReplicaFailure" && c.status == "True") {
        return Assessment::in_progress(c.describe("replica failure"));
    }
    let spec = int_at(object, &["spec", "replicas"]).unwrap_or(1);
    let replicas = status_int(object, "replicas");
    let checks = [
        ("fullyLabeledReplicas", "labelled"),
        ("availableReplicas", "available"),
        ("readyReplicas", "ready"),
    ];
    for (field, what) in checks {
        let n = status_int(object, field);
        if spec > n {
            return Assessment::in_progress(format!("{what} replicas {n}/{spec}"));
        }
    }
    if replicas > spec {
        return Assessment::in_progress(format!("{} replicas pending termination", replicas - spec));
    }
    Assessment::Current
}

/// Helm 4's strict Job reader, not kstatus's (which calls a running Job current).
fn job(object: &Value) -> Assessment {
    let succeeded = status_int(object, "succeeded");
    let active = status_int(object, "active");
    let failed = status_int(object, "failed");
    for c in conditions(object) {
        if c.status != "True" {
            continue;
        }
        match c.kind {
            // FailureTarget (Kubernetes 1.31+) comes before Failed, while pods terminate.
            "Failed" | "FailureTarget" => {
                return Assessment::failed(c.describe(&format!("job failed ({failed} failed pods)")));
            }
            "Complete" => return Assessment::Current,
            _ => {}
        }
    }
    if let Some(completions) = int_at(object, &["spec", "completions"])
        && succeeded >= completions
    {
        return Assessment::Current;
    }
    if conditions(object).any(|c| c.kind == "Suspended" && c.status == "True")
        || object.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
    {
        return Assessment::in_progress("job is suspended");
    }
    if str_at(object, &["status", "startTime"]).is_none() {
        return Assessment::in_progress("job not started");
    }
    let completions = int_at(object, &["spec", "completions"]).map_or_else(|| "?".to_owned(), |n| n.to_string());
    Assessment::in_progress(format!(
        "job running: {succeeded}/{completions} succeeded, {active} active, {failed} failed"
    ))
}

fn pod(object: &Value) -> Assessment {
    match str_at(object, &["status", "phase"]) {
        Some("Succeeded") => Assessment::Current,
        Some("Failed") => {
            let mut reason = String::from("pod failed");
            if let Some(r) = str_at(object, &["status", "reason"]) {
                reason.push_str(&format!(": {r}"));
            }
            if let Some(m) = str_at(object, &["status", "message"]) {
                reason.push_str(&format!(" ({m})"));
            }
            for (container, terminated) in terminated_containers(object) {
                reason.push_str(&format!("; container {container}: {terminated}"));
            }
            Assessment::failed(reason)
        }
        Some("Running") if conditions(object).any(|c| c.kind == "Ready" && c.status == "True") => Assessment::Current,
        phase => {
            if let Some(problem) = pod_problems(object).into_iter().next() {
                return Assessment::failed(problem);
            }
            match (
                phase,
                conditions(object).find(|c| c.kind == "PodScheduled" && c.status == "False"),
            ) {
                (Some("Pending"), Some(c)) => Assessment::in_progress(c.describe("not scheduled")),
                (Some("Running"), _) => Assessment::in_progress("running but not ready"),
                (Some(phase), _) => Assessment::in_progress(format!("phase {phase}")),
                (None, _) => Assessment::in_progress("phase not set yet"),
            }
        }
    }
}

fn crd(object: &Value) -> Assessment {
    let mut established = false;
    for c in conditions(object) {
        match (c.kind, c.status) {
            ("NamesAccepted", "False") => return Assessment::failed(c.describe("names not accepted")),
            ("Established", "False") if c.reason != "Installing" => {
                return Assessment::failed(c.describe("not established"));
            }
            ("Established", "True") => established = true,
            _ => {}
        }
    }
    if established {
        Assessment::Current
    } else {
        Assessment::in_progress("not yet established")
    }
}

/// The pods of the workload's current revision, when the status says which that is;
/// otherwise every pod not being deleted.
fn current_revision_pods<'a>(object: &Value, kind: Kind, pods: &'a [Value]) -> Vec<&'a Value> {
    let live = pods
        .iter()
        .filter(|p| str_at(p, &["metadata", "deletionTimestamp"]).is_none_or(str::is_empty));
    // The label and the value pods of the current revision carry.
    let current: Option<(&str, String)> = match kind {
        Kind::Deployment => new_replica_set_hash(object).map(|hash| ("pod-template-hash", hash)),
        Kind::StatefulSet => {
            str_at(object, &["status", "updateRevision"]).map(|rev| ("controller-revision-hash", rev.to_owned()))
        }
        Kind::DaemonSet => {
            int_at(object, &["metadata", "generation"]).map(|g| ("pod-template-generation", g.to_string()))
        }
        _ => None,
    };
    match current {
        Some((label, value)) => live
            .filter(|p| str_at(p, &["metadata", "labels", label]).is_none_or(|v| v == value))
            .collect(),
        None => live.collect(),
    }
}

/// The `pod-template-hash` of a Deployment's newest ReplicaSet. The controller names that
/// ReplicaSet in its `Progressing` condition (`ReplicaSet "web-7d9f8c6b5" is progressing.`),
/// and a ReplicaSet's name is the Deployment's name, a dash and that hash.
fn new_replica_set_hash(object: &Value) -> Option<String> {
    let name = str_at(object, &["metadata", "name"])?;
    let condition = conditions(object).find(|c| c.kind == "Progressing")?;
    let (_, rest) = condition.message.split_once('"')?;
    let (replica_set, _) = rest.split_once('"')?;
    let hash = replica_set.strip_prefix(name)?.strip_prefix('-')?;
    (!hash.is_empty()).then(|| hash.to_owned())
}

/// The first fail-fast problem among `pods` (by pod name), with a count of the others.
fn first_pod_problem(mut pods: Vec<&Value>) -> Option<String> {
    pods.sort_by_key(|p| str_at(p, &["metadata", "name"]).unwrap_or_default());
    let mut problems = pods.into_iter().flat_map(pod_problems);
    let first = problems.next()?;
    Some(match problems.count() {
        0 => first,
        1 => format!("{first} (and 1 more failing container)"),
        more => format!("{first} (and {more} more failing containers)"),
    })
}

/// A description of each container and init container of `pod` waiting for one of the
/// [`FAIL_FAST_REASONS`].
fn pod_problems(pod: &Value) -> Vec<String> {
    let pod_name = str_at(pod, &["metadata", "name"]).unwrap_or("(unnamed)");
    let mut out = Vec::new();
    for (field, what) in [
        ("initContainerStatuses", "init container"),
        ("containerStatuses", "container"),
    ] {
        for status in array_at(pod, &["status", field]) {
            let Some(reason) = str_at(status, &["state", "waiting", "reason"]) else {
                continue;
            };
            if !FAIL_FAST_REASONS.contains(&reason) {
                continue;
            }
            let container = str_at(status, &["name"]).unwrap_or("(unnamed)");
            let mut problem = format!("pod {pod_name} {what} {container}: {reason}");
            if let Some(message) = str_at(status, &["state", "waiting", "message"]).filter(|m| !m.is_empty()) {
                problem.push_str(&format!(" ({message})"));
            }
            if let Some(terminated) = status.pointer("/lastState/terminated") {
                problem.push_str(&format!("; last terminated: {}", describe_terminated(terminated)));
            }
            out.push(problem);
        }
    }
    out
}

/// `(container, how it ended)` for each container of `pod` that terminated unsuccessfully.
fn terminated_containers(pod: &Value) -> Vec<(&str, String)> {
    ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .flat_map(|field| array_at(pod, &["status", field]))
        .filter_map(|status| {
            let terminated = status.pointer("/state/terminated")?;
            (int_at(terminated, &["exitCode"]) != Some(0)).then(|| {
                (
                    str_at(status, &["name"]).unwrap_or("(unnamed)"),
                    describe_terminated(terminated),
                )
            })
        })
        .collect()
}

fn describe_terminated(terminated: &Value) -> String {
    let mut out = match int_at(terminated, &["exitCode"]) {
        Some(code) => format!("exit code {code}"),
        None => "terminated".to_owned(),
    };
    if let Some(reason) = str_at(terminated, &["reason"]) {
        out.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = str_at(terminated, &["message"])
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        out.push_str(&format!(": {message}"));
    }
    out
}

/// The label selector (`app=web,tier in (a,b),!canary`) of the pods an object owns: from
/// `spec.selector` of Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs (and the
/// plain map of a ReplicationController). `None` for other kinds, and for a selector that is
/// missing, empty (it would select every pod) or malformed.
pub fn pod_selector(object: &Value) -> Option<String> {
    let kind = Kind::of(object);
    if !kind.owns_pods() {
        return None;
    }
    let selector = object.pointer("/spec/selector")?.as_object()?;
    let (labels, expressions) = if kind == Kind::ReplicationController {
        (Some(selector), None)
    } else {
        (
            selector.get("matchLabels").and_then(Value::as_object),
            selector.get("matchExpressions").and_then(Value::as_array),
        )
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (key, value) in labels.into_iter().flatten() {
        requirements.push((key.clone(), format!("{key}={}", value.as_str()?)));
    }
    for expression in expressions.into_iter().flatten() {
        let key = str_at(expression, &["key"])?;
        let mut values = array_at(expression, &["values"])
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()?;
        values.sort_unstable();
        let requirement = match str_at(expression, &["operator"])? {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" if values.is_empty() => key.to_owned(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_owned(), requirement));
    }
    if requirements.is_empty() {
        return None;
    }
    // As Kubernetes prints selectors: requirements sorted by key.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Some(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// What an object and its pods look like, reduced to what moves while a rollout makes
/// progress: the object's status (without heartbeat times) and each pod's phase and
/// containers' readiness. Restart counts are left out: a crash loop is not progress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(object: &Value, pods: &[Value]) -> Self {
        let mut status = object.get("status").cloned().unwrap_or(Value::Null);
        if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in conditions.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("lastUpdateTime");
                c.remove("lastHeartbeatTime");
                c.remove("lastProbeTime");
            }
        }
        let mut pods: Vec<Value> = pods
            .iter()
            .map(|p| {
                let containers: Vec<Value> = ["initContainerStatuses", "containerStatuses"]
                    .into_iter()
                    .flat_map(|field| array_at(p, &["status", field]))
                    .map(|c| {
                        let state = c
                            .get("state")
                            .and_then(Value::as_object)
                            .and_then(|s| s.keys().next().cloned());
                        serde_json::json!([c.get("name"), c.get("ready"), c.get("started"), state])
                    })
                    .collect();
                serde_json::json!([
                    p.pointer("/metadata/name"),
                    p.pointer("/metadata/deletionTimestamp").is_some(),
                    p.pointer("/status/phase"),
                    containers,
                ])
            })
            .collect();
        pods.sort_by_key(|p| p.to_string());
        let canonical = serde_json::json!([status, pods]).to_string();
        Self(hex::encode(Sha256::digest(canonical.as_bytes())))
    }
}

/// No object of a wave changed for the detector's window while one is still in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// The in-progress object unchanged the longest (the caller's key for it).
    pub object: String,
    /// Seconds since any object of the wave last changed.
    pub for_seconds: u64,
    /// That object's last in-progress reason.
    pub reason: String,
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no progress for {}s; still waiting for {}: {}",
            self.for_seconds, self.object, self.reason
        )
    }
}

#[derive(Debug)]
struct Seen {
    assessment: Assessment,
    fingerprint: Fingerprint,
    changed: Timestamp,
}

/// Notices a wave that stopped moving: fed each object's assessment and [`Fingerprint`] on
/// every poll, it reports [`Stalled`] once no object changed either for `window` while at
/// least one is still in progress. One detector per wave; the clock is the caller's.
#[derive(Debug)]
pub struct StallDetector {
    window: Duration,
    objects: BTreeMap<String, Seen>,
    last_change: Option<Timestamp>,
}

impl StallDetector {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            objects: BTreeMap::new(),
            last_change: None,
        }
    }

    /// Record one object's state at `now`. A new object, or a changed assessment or
    /// fingerprint, counts as progress of the wave.
    pub fn observe(&mut self, now: Timestamp, object: &str, assessment: &Assessment, fingerprint: &Fingerprint) {
        let changed = match self.objects.get_mut(object) {
            Some(seen) if seen.assessment == *assessment && seen.fingerprint == *fingerprint => false,
            Some(seen) => {
                seen.assessment = assessment.clone();
                seen.fingerprint = fingerprint.clone();
                seen.changed = now;
                true
            }
            None => {
                self.objects.insert(
                    object.to_owned(),
                    Seen {
                        assessment: assessment.clone(),
                        fingerprint: fingerprint.clone(),
                        changed: now,
                    },
                );
                true
            }
        };
        if changed {
            self.last_change = Some(self.last_change.map_or(now, |last| last.max(now)));
        }
    }

    /// `Some` once the wave has had no change for the window and an object is in progress.
    pub fn stalled(&self, now: Timestamp) -> Option<Stalled> {
        let last_change = self.last_change?;
        let (object, seen) = self
            .objects
            .iter()
            .filter(|(_, seen)| matches!(seen.assessment, Assessment::InProgress { .. }))
            .min_by_key(|(_, seen)| seen.changed)?;
        let quiet = Duration::try_from(now.duration_since(last_change)).unwrap_or(Duration::ZERO);
        if quiet < self.window {
            return None;
        }
        let Assessment::InProgress { reason } = &seen.assessment else {
            return None;
        };
        Some(Stalled {
            object: object.clone(),
            for_seconds: quiet.as_secs(),
            reason: reason.clone(),
        })
    }
}

struct Condition<'a> {
    kind: &'a str,
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    /// `what: Reason: message`, leaving out what is empty.
    fn describe(&self, what: &str) -> String {
        let mut out = what.to_owned();
        for part in [self.reason, self.message] {
            if !part.is_empty() {
                out.push_str(": ");
                out.push_str(part);
            }
        }
        out
    }
}

fn conditions(object: &Value) -> impl Iterator<Item = Condition<'_>> {
    array_at(object, &["status", "conditions"]).iter().filter_map(|c| {
        Some(Condition {
            kind: c.get("type")?.as_str()?,
            status: c.get("status").and_then(Value::as_str).unwrap_or("Unknown"),
            reason: c.get("reason").and_then(Value::as_str).unwrap_or_default(),
            message: c.get("message").and_then(Value::as_str).unwrap_or_default(),
        })
    })
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str()
}

fn int_at(value: &Value, path: &[&str]) -> Option<i64> {
    at(value, path)?.as_i64()
}

fn array_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn status_int(object: &Value, field: &str) -> i64 {
    int_at(object, &["status", field]).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const WEB_SELECTOR: &str =
        "app.kubernetes.io/component=web,app.kubernetes.io/instance=sample-app,app.kubernetes.io/name=sample-app";

    fn in_progress(reason: &str) -> Assessment {
        Assessment::InProgress {
            reason: reason.to_owned(),
        }
    }

    fn failed(reason: &str) -> Assessment {
        Assessment::Failed {
            reason: reason.to_owned(),
        }
    }

    fn labels(component: &str) -> Value {
        json!({
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": "sample-app",
            "app.kubernetes.io/name": "sample-app"
        })
    }

    /// `sample-app-web` after `kubectl rollout status` said it was done.
    fn deployment_rolled_out() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "sample-app-web",
                "namespace": "sample",
                "uid": "0b5f8a8e-6c1e-4f53-9d0e-6f1f3c7d2a10",
                "resourceVersion": "48213",
                "generation": 2,
                "creationTimestamp": "2025-11-20T10:02:11Z",
                "labels": labels("web"),
                "annotations": { "deployment.kubernetes.io/revision": "2" }
            },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": labels("web") },
                "template": {
                    "metadata": { "labels": labels("web") },
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "registry.local:5000/sample/web@sha256:5f1c2a8e9b0d7c6a4e3f2b1a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d",
                            "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                            "readinessProbe": { "httpGet": { "path": "/healthz", "port": "http", "scheme": "HTTP" } }
                        }],
                        "restartPolicy": "Always"
                    }
                },
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600
            },
            "status": {
                "observedGeneration": 2,
                "replicas": 3,
                "updatedReplicas": 3,
                "readyReplicas": 3,
                "availableReplicas": 3,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "lastUpdateTime": "2025-11-20T10:02:40Z",
                        "lastTransitionTime": "2025-11-20T10:02:40Z",
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability."
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "lastUpdateTime": "2025-11-21T08:15:02Z",
                        "lastTransitionTime": "2025-11-20T10:02:11Z",
                        "reason": "NewReplicaSetAvailable",
                        "message": "ReplicaSet \"sample-app-web-7d9f8c6b5\" has successfully progressed."
                    }
                ]
            }
        })
    }

    /// The same Deployment two pods into a rollout to template hash `5c4b7f9d8`: four pods,
    /// one of them an old one still serving.
    fn deployment_mid_rollout() -> Value {
        let mut d = deployment_rolled_out();
        d["metadata"]["generation"] = json!(3);
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("3");
        d["status"] = json!({
            "observedGeneration": 3,
            "replicas": 4,
            "updatedReplicas": 2,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "unavailableReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "lastUpdateTime": "2025-11-20T10:02:40Z",
                    "lastTransitionTime": "2025-11-20T10:02:40Z",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability."
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "lastUpdateTime": "2025-11-21T09:00:12Z",
                    "lastTransitionTime": "2025-11-20T10:02:11Z",
                    "reason": "ReplicaSetUpdated",
                    "message": "ReplicaSet \"sample-app-web-5c4b7f9d8\" is progressing."
                }
            ]
        });
        d
    }

    fn container_status(name: &str, state: Value, last_state: Value, ready: bool, restarts: i64) -> Value {
        json!({
            "name": name,
            "state": state,
            "lastState": last_state,
            "ready": ready,
            "restartCount": restarts,
            "image": format!("registry.local:5000/sample/{name}@sha256:5f1c2a8e9b0d7c6a4e3f2b1a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"),
            "imageID": "",
            "started": false
        })
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({ "waiting": { "reason": reason, "message": message } })
    }

    fn running() -> Value {
        json!({ "running": { "startedAt": "2025-11-21T09:00:20Z" } })
    }

    /// A pod of `sample-app-web` with template hash `hash`.
    fn web_pod(name: &str, hash: &str, phase: &str, ready: bool, statuses: Vec<Value>) -> Value {
        let mut pod_labels = labels("web");
        pod_labels["pod-template-hash"] = json!(hash);
        let ready = if ready { "True" } else { "False" };
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": format!("sample-app-web-{hash}-"),
                "namespace": "sample",
                "uid": "8f6a1d2e-3b4c-4d5e-8f70-112233445566",
                "labels": pod_labels,
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": format!("sample-app-web-{hash}"),
                    "uid": "3c2b1a09-8f7e-4d6c-9b5a-0a1b2c3d4e5f",
                    "controller": true,
                    "blockOwnerDeletion": true
                }]
            },
            "spec": { "containers": [{ "name": "web", "image": "registry.local:5000/sample/web@sha256:5f1c" }] },
            "status": {
                "phase": phase,
                "conditions": [
                    { "type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2025-11-21T09:00:15Z" },
                    { "type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2025-11-21T09:00:13Z" },
                    { "type": "Ready", "status": ready, "lastProbeTime": null, "lastTransitionTime": "2025-11-21T09:00:13Z" },
                    { "type": "ContainersReady", "status": ready, "lastProbeTime": null, "lastTransitionTime": "2025-11-21T09:00:13Z" },
                    { "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2025-11-21T09:00:12Z" }
                ],
                "hostIP": "172.18.0.2",
                "podIP": "10.244.0.17",
                "startTime": "2025-11-21T09:00:12Z",
                "qosClass": "BestEffort",
                "containerStatuses": statuses
            }
        })
    }

    fn healthy_web_pod(name: &str, hash: &str) -> Value {
        web_pod(
            name,
            hash,
            "Running",
            true,
            vec![container_status("web", running(), json!({}), true, 0)],
        )
    }

    fn crash_looping_web_pod(name: &str, hash: &str) -> Value {
        web_pod(
            name,
            hash,
            "Running",
            false,
            vec![container_status(
                "web",
                waiting(
                    "CrashLoopBackOff",
                    &format!(
                        "back-off 10s restarting failed container=web pod={name}_sample(8f6a1d2e-3b4c-4d5e-8f70-112233445566)"
                    ),
                ),
                json!({ "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "message": "panic: DATABASE_URL is not set\n",
                    "startedAt": "2025-11-21T09:00:31Z",
                    "finishedAt": "2025-11-21T09:00:31Z",
                    "containerID": "containerd://4b0e6a1f2d3c"
                } }),
                false,
                2,
            )],
        )
    }

    /// The mid-rollout Deployment's pods: two old ready, two new of which `new_pod` is one.
    fn mid_rollout_pods(new_pod: Value) -> Vec<Value> {
        vec![
            healthy_web_pod("sample-app-web-7d9f8c6b5-2mzkd", "7d9f8c6b5"),
            healthy_web_pod("sample-app-web-7d9f8c6b5-q8v4n", "7d9f8c6b5"),
            healthy_web_pod("sample-app-web-5c4b7f9d8-h7t2k", "5c4b7f9d8"),
            new_pod,
        ]
    }

    // ---- Deployment ----

    #[test]
    fn deployment_rolled_out_is_current() {
        assert_eq!(assess(&deployment_rolled_out(), &[]), Assessment::Current);
    }

    #[test]
    fn deployment_mid_rollout_with_old_replicas_is_in_progress() {
        let pods = mid_rollout_pods(healthy_web_pod("sample-app-web-5c4b7f9d8-x2x4q", "5c4b7f9d8"));
        assert_eq!(
            assess(&deployment_mid_rollout(), &pods),
            in_progress("updated replicas 2/3")
        );
    }

    #[test]
    fn deployment_with_old_pods_pending_termination_is_in_progress() {
        let mut d = deployment_mid_rollout();
        d["status"]["updatedReplicas"] = json!(3);
        d["status"]["readyReplicas"] = json!(4);
        d["status"]["availableReplicas"] = json!(4);
        assert_eq!(assess(&d, &[]), in_progress("1 old replicas pending termination"));
    }

    #[test]
    fn deployment_with_updated_pods_not_yet_available_is_in_progress() {
        let mut d = deployment_mid_rollout();
        d["status"] = json!({ "observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 2 });
        assert_eq!(assess(&d, &[]), in_progress("available replicas 2/3"));
    }

    #[test]
    fn deployment_whose_new_generation_is_not_yet_observed_is_in_progress() {
        // Just applied: the status still describes the previous, finished rollout.
        let mut d = deployment_rolled_out();
        d["metadata"]["generation"] = json!(3);
        assert_eq!(
            assess(
                &d,
                &[crash_looping_web_pod("sample-app-web-7d9f8c6b5-2mzkd", "7d9f8c6b5")]
            ),
            in_progress("generation 3 not yet observed by its controller (observed 2)")
        );
    }

    #[test]
    fn deployment_without_status_is_in_progress_with_one_replica_by_default() {
        let mut d = deployment_rolled_out();
        d["spec"].as_object_mut().unwrap().remove("replicas");
        d["status"] = json!({});
        assert_eq!(assess(&d, &[]), in_progress("replicas 0/1"));
    }

    #[test]
    fn deployment_past_its_progress_deadline_fails() {
        let mut d = deployment_mid_rollout();
        d["status"]["conditions"][1] = json!({
            "type": "Progressing",
            "status": "False",
            "lastUpdateTime": "2025-11-21T09:10:12Z",
            "lastTransitionTime": "2025-11-21T09:10:12Z",
            "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"sample-app-web-5c4b7f9d8\" has timed out progressing."
        });
        assert_eq!(
            assess(&d, &[]),
            failed(
                "progress deadline exceeded: ProgressDeadlineExceeded: ReplicaSet \"sample-app-web-5c4b7f9d8\" has timed out progressing."
            )
        );
    }

    #[test]
    fn deployment_past_its_deadline_names_the_failing_pod_too() {
        let mut d = deployment_mid_rollout();
        d["status"]["conditions"][1]["reason"] = json!("ProgressDeadlineExceeded");
        d["status"]["conditions"][1]["message"] =
            json!("ReplicaSet \"sample-app-web-5c4b7f9d8\" has timed out progressing.");
        let pods = mid_rollout_pods(crash_looping_web_pod("sample-app-web-5c4b7f9d8-x2x4q", "5c4b7f9d8"));
        let Assessment::Failed { reason } = assess(&d, &pods) else {
            panic!("not failed")
        };
        assert!(reason.starts_with("progress deadline exceeded: "), "{reason}");
        assert!(
            reason.contains("; pod sample-app-web-5c4b7f9d8-x2x4q container web: CrashLoopBackOff"),
            "{reason}"
        );
    }

    #[test]
    fn deployment_not_yet_reporting_a_new_replica_set_available_is_in_progress() {
        let mut d = deployment_rolled_out();
        d["status"]["conditions"][1]["reason"] = json!("ReplicaSetUpdated");
        assert_eq!(assess(&d, &[]), in_progress("new replica set not yet available"));
        d["spec"].as_object_mut().unwrap().remove("progressDeadlineSeconds");
        assert_eq!(assess(&d, &[]), Assessment::Current);
    }

    #[test]
    fn deployment_not_available_is_in_progress() {
        let mut d = deployment_rolled_out();
        d["status"]["conditions"][0]["status"] = json!("False");
        d["status"]["conditions"][0]["reason"] = json!("MinimumReplicasUnavailable");
        assert_eq!(assess(&d, &[]), in_progress("deployment not yet available"));
    }

    #[test]
    fn paused_deployment_is_not_waited_for() {
        let mut d = deployment_mid_rollout();
        d["spec"]["paused"] = json!(true);
        assert_eq!(assess(&d, &[]), Assessment::Current);
    }

    // ---- Failing fast from pods ----

    fn assess_new_pod_waiting(reason: &str, message: &str) -> Assessment {
        let pod = web_pod(
            "sample-app-web-5c4b7f9d8-x2x4q",
            "5c4b7f9d8",
            "Pending",
            false,
            vec![container_status("web", waiting(reason, message), json!({}), false, 0)],
        );
        assess(&deployment_mid_rollout(), &mid_rollout_pods(pod))
    }

    #[test]
    fn fails_fast_on_image_pull_back_off() {
        let message = "Back-off pulling image \"registry.local:5000/sample/web@sha256:5f1c\"";
        assert_eq!(
            assess_new_pod_waiting("ImagePullBackOff", message),
            failed(&format!(
                "pod sample-app-web-5c4b7f9d8-x2x4q container web: ImagePullBackOff ({message})"
            ))
        );
    }

    #[test]
    fn fails_fast_on_err_image_pull() {
        let message = "failed to pull and unpack image \"registry.local:5000/sample/web@sha256:5f1c\": failed to resolve reference \"registry.local:5000/sample/web@sha256:5f1c\": registry.local:5000/sample/web@sha256:5f1c: not found";
        assert_eq!(
            assess_new_pod_waiting("ErrImagePull", message),
            failed(&format!(
                "pod sample-app-web-5c4b7f9d8-x2x4q container web: ErrImagePull ({message})"
            ))
        );
    }

    #[test]
    fn fails_fast_on_err_image_never_pull() {
        let message = "Container image \"sample/web:2.0.0\" is not present with pull policy of Never";
        assert_eq!(
            assess_new_pod_waiting("ErrImageNeverPull", message),
            failed(&format!(
                "pod sample-app-web-5c4b7f9d8-x2x4q container web: ErrImageNeverPull ({message})"
            ))
        );
    }

    #[test]
    fn fails_fast_on_invalid_image_name() {
        let message = "Failed to apply default image tag \"registry.local:5000/Sample/Web:2.0.0\": couldn't parse image name \"registry.local:5000/Sample/Web:2.0.0\": invalid reference format: repository name (Sample/Web) must be lowercase";
        assert_eq!(
            assess_new_pod_waiting("InvalidImageName", message),
            failed(&format!(
                "pod sample-app-web-5c4b7f9d8-x2x4q container web: InvalidImageName ({message})"
            ))
        );
    }

    #[test]
    fn fails_fast_on_create_container_config_error() {
        let message = "secret \"sample-app-db\" not found";
        assert_eq!(
            assess_new_pod_waiting("CreateContainerConfigError", message),
            failed(
                "pod sample-app-web-5c4b7f9d8-x2x4q container web: CreateContainerConfigError (secret \"sample-app-db\" not found)"
            )
        );
    }

    #[test]
    fn fails_fast_on_crash_loop_back_off_with_the_last_exit() {
        let pods = mid_rollout_pods(crash_looping_web_pod("sample-app-web-5c4b7f9d8-x2x4q", "5c4b7f9d8"));
        assert_eq!(
            assess(&deployment_mid_rollout(), &pods),
            failed(
                "pod sample-app-web-5c4b7f9d8-x2x4q container web: CrashLoopBackOff (back-off 10s restarting failed \
                 container=web pod=sample-app-web-5c4b7f9d8-x2x4q_sample(8f6a1d2e-3b4c-4d5e-8f70-112233445566)); \
                 last terminated: exit code 1 (Error): panic: DATABASE_URL is not set"
            )
        );
    }

    #[test]
    fn fails_fast_on_a_crash_looping_init_container() {
        let mut pod = web_pod(
            "sample-app-web-5c4b7f9d8-x2x4q",
            "5c4b7f9d8",
            "Pending",
            false,
            vec![container_status(
                "web",
                waiting("PodInitializing", ""),
                json!({}),
                false,
                0,
            )],
        );
        pod["status"]["initContainerStatuses"] = json!([container_status(
            "wait-for-db",
            waiting(
                "CrashLoopBackOff",
                "back-off 20s restarting failed container=wait-for-db pod=sample-app-web-5c4b7f9d8-x2x4q_sample(8f6a)"
            ),
            json!({ "terminated": { "exitCode": 2, "reason": "Error", "startedAt": "2025-11-21T09:00:31Z", "finishedAt": "2025-11-21T09:00:33Z" } }),
            false,
            3,
        )]);
        assert_eq!(
            assess(&deployment_mid_rollout(), &mid_rollout_pods(pod)),
            failed(
                "pod sample-app-web-5c4b7f9d8-x2x4q init container wait-for-db: CrashLoopBackOff (back-off 20s \
                 restarting failed container=wait-for-db pod=sample-app-web-5c4b7f9d8-x2x4q_sample(8f6a)); \
                 last terminated: exit code 2 (Error)"
            )
        );
    }

    #[test]
    fn fail_fast_counts_the_other_failing_containers() {
        let pods = vec![
            crash_looping_web_pod("sample-app-web-5c4b7f9d8-zz9pq", "5c4b7f9d8"),
            crash_looping_web_pod("sample-app-web-5c4b7f9d8-x2x4q", "5c4b7f9d8"),
        ];
        let Assessment::Failed { reason } = assess(&deployment_mid_rollout(), &pods) else {
            panic!("not failed")
        };
        assert!(
            reason.starts_with("pod sample-app-web-5c4b7f9d8-x2x4q container web: CrashLoopBackOff"),
            "{reason}"
        );
        assert!(reason.ends_with(" (and 1 more failing container)"), "{reason}");
    }

    #[test]
    fn containers_still_being_created_do_not_fail() {
        assert_eq!(
            assess_new_pod_waiting("ContainerCreating", ""),
            in_progress("updated replicas 2/3")
        );
    }

    #[test]
    fn fail_fast_ignores_crashing_pods_of_the_old_replica_set() {
        // The upgrade replaces a crash-looping version: its pods must not fail the new one.
        let pods = vec![
            crash_looping_web_pod("sample-app-web-7d9f8c6b5-2mzkd", "7d9f8c6b5"),
            healthy_web_pod("sample-app-web-5c4b7f9d8-h7t2k", "5c4b7f9d8"),
        ];
        assert_eq!(
            assess(&deployment_mid_rollout(), &pods),
            in_progress("updated replicas 2/3")
        );
    }

    #[test]
    fn fail_fast_ignores_pods_being_deleted() {
        let mut pod = crash_looping_web_pod("sample-app-web-5c4b7f9d8-x2x4q", "5c4b7f9d8");
        pod["metadata"]["deletionTimestamp"] = json!("2025-11-21T09:01:00Z");
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert_eq!(
            assess(&deployment_mid_rollout(), &[pod]),
            in_progress("updated replicas 2/3")
        );
    }

    #[test]
    fn fail_fast_uses_every_pod_when_the_new_replica_set_is_unknown() {
        let mut d = deployment_mid_rollout();
        d["status"]["conditions"].as_array_mut().unwrap().pop();
        let pods = [crash_looping_web_pod("sample-app-web-7d9f8c6b5-2mzkd", "7d9f8c6b5")];
        assert!(assess(&d, &pods).is_failed());
    }

    #[test]
    fn a_current_workload_is_not_failed_by_a_stray_pod() {
        let pods = [crash_looping_web_pod("sample-app-web-7d9f8c6b5-2mzkd", "7d9f8c6b5")];
        assert_eq!(assess(&deployment_rolled_out(), &pods), Assessment::Current);
    }

    // ---- StatefulSet ----

    fn stateful_set() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": { "name": "sample-app-db", "namespace": "sample", "generation": 2, "labels": labels("db") },
            "spec": {
                "replicas": 3,
                "serviceName": "sample-app-db",
                "selector": { "matchLabels": labels("db") },
                "template": { "metadata": { "labels": labels("db") }, "spec": { "containers": [{ "name": "db", "image": "registry.local:5000/sample/db@sha256:9a8b" }] } },
                "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } },
                "podManagementPolicy": "OrderedReady",
                "revisionHistoryLimit": 10,
                "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain", "whenScaled": "Retain" }
            },
            "status": {
                "observedGeneration": 2,
                "replicas": 3,
                "readyReplicas": 3,
                "currentReplicas": 3,
                "updatedReplicas": 3,
                "availableReplicas": 3,
                "currentRevision": "sample-app-db-6d5c9b8f7",
                "updateRevision": "sample-app-db-6d5c9b8f7",
                "collisionCount": 0
            }
        })
    }

    fn db_pod(ordinal: u32, revision: &str, statuses: Vec<Value>) -> Value {
        let mut pod_labels = labels("db");
        pod_labels["controller-revision-hash"] = json!(revision);
        pod_labels["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
        pod_labels["statefulset.kubernetes.io/pod-name"] = json!(format!("sample-app-db-{ordinal}"));
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": format!("sample-app-db-{ordinal}"), "namespace": "sample", "labels": pod_labels },
            "status": { "phase": "Running", "containerStatuses": statuses }
        })
    }

    #[test]
    fn stateful_set_rolled_out_is_current() {
        assert_eq!(assess(&stateful_set(), &[]), Assessment::Current);
    }

    #[test]
    fn stateful_set_mid_rolling_update_is_in_progress() {
        let mut s = stateful_set();
        s["metadata"]["generation"] = json!(3);
        s["status"] = json!({
            "observedGeneration": 3, "replicas": 3, "readyReplicas": 2, "currentReplicas": 2, "updatedReplicas": 1,
            "availableReplicas": 2, "currentRevision": "sample-app-db-6d5c9b8f7", "updateRevision": "sample-app-db-84f7b6c5d"
        });
        assert_eq!(assess(&s, &[]), in_progress("ready replicas 2/3"));
        s["status"]["readyReplicas"] = json!(3);
        assert_eq!(assess(&s, &[]), in_progress("updated replicas 1/3 (partition 0)"));
    }

    #[test]
    fn stateful_set_with_a_partition_is_current_once_the_partition_is_updated() {
        let mut s = stateful_set();
        s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
        s["status"]["updatedReplicas"] = json!(1);
        s["status"]["currentReplicas"] = json!(2);
        s["status"]["updateRevision"] = json!("sample-app-db-84f7b6c5d");
        assert_eq!(assess(&s, &[]), Assessment::Current);
        s["status"]["updatedReplicas"] = json!(0);
        assert_eq!(assess(&s, &[]), in_progress("updated replicas 0/1 (partition 2)"));
    }

    #[test]
    fn stateful_set_without_a_partition_waits_for_the_update_revision() {
        let mut s = stateful_set();
        s["spec"]["updateStrategy"] = json!({ "type": "RollingUpdate" });
        s["status"]["updateRevision"] = json!("sample-app-db-84f7b6c5d");
        assert_eq!(
            assess(&s, &[]),
            in_progress(
                "current revision sample-app-db-6d5c9b8f7 is not yet the update revision sample-app-db-84f7b6c5d"
            )
        );
        s["status"]["currentReplicas"] = json!(1);
        assert_eq!(assess(&s, &[]), in_progress("current replicas 1/3"));
    }

    #[test]
    fn stateful_set_with_extra_replicas_is_in_progress() {
        let mut s = stateful_set();
        s["spec"]["replicas"] = json!(2);
        assert_eq!(assess(&s, &[]), in_progress("1 replicas pending termination"));
    }

    #[test]
    fn stateful_set_on_delete_is_current_at_once() {
        let mut s = stateful_set();
        s["spec"]["updateStrategy"] = json!({ "type": "OnDelete" });
        s["status"]["readyReplicas"] = json!(0);
        assert_eq!(assess(&s, &[]), Assessment::Current);
    }

    #[test]
    fn stateful_set_fails_fast_only_on_pods_of_the_update_revision() {
        let mut s = stateful_set();
        s["status"]["readyReplicas"] = json!(2);
        s["status"]["updateRevision"] = json!("sample-app-db-84f7b6c5d");
        let pull = || {
            container_status(
                "db",
                waiting(
                    "ImagePullBackOff",
                    "Back-off pulling image \"registry.local:5000/sample/db@sha256:9a8b\"",
                ),
                json!({}),
                false,
                0,
            )
        };
        let old = db_pod(0, "sample-app-db-6d5c9b8f7", vec![pull()]);
        assert_eq!(
            assess(&s, std::slice::from_ref(&old)),
            in_progress("ready replicas 2/3")
        );
        let new = db_pod(2, "sample-app-db-84f7b6c5d", vec![pull()]);
        assert_eq!(
            assess(&s, &[old, new]),
            failed(
                "pod sample-app-db-2 container db: ImagePullBackOff (Back-off pulling image \"registry.local:5000/sample/db@sha256:9a8b\")"
            )
        );
    }

    // ---- DaemonSet ----

    fn daemon_set() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": { "name": "sample-app-agent", "namespace": "sample", "generation": 1, "labels": labels("agent") },
            "spec": {
                "selector": { "matchLabels": labels("agent") },
                "template": { "metadata": { "labels": labels("agent") }, "spec": { "containers": [{ "name": "agent", "image": "registry.local:5000/sample/agent@sha256:77aa" }] } },
                "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1, "maxSurge": 0 } },
                "revisionHistoryLimit": 10
            },
            "status": {
                "currentNumberScheduled": 2,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": 2,
                "numberReady": 2,
                "observedGeneration": 1,
                "updatedNumberScheduled": 2,
                "numberAvailable": 2
            }
        })
    }

    #[test]
    fn daemon_set_rolled_out_is_current() {
        assert_eq!(assess(&daemon_set(), &[]), Assessment::Current);
    }

    #[test]
    fn daemon_set_not_yet_observed_is_in_progress() {
        let mut d = daemon_set();
        d["status"] = json!({ "currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0 });
        assert_eq!(assess(&d, &[]), in_progress("status.observedGeneration not set yet"));
    }

    #[test]
    fn daemon_set_updating_is_in_progress() {
        let mut d = daemon_set();
        d["metadata"]["generation"] = json!(2);
        d["status"] = json!({
            "currentNumberScheduled": 2, "numberMisscheduled": 0, "desiredNumberScheduled": 2, "numberReady": 1,
            "observedGeneration": 2, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberUnavailable": 1
        });
        assert_eq!(assess(&d, &[]), in_progress("updated pods 1/2"));
    }

    #[test]
    fn daemon_set_fails_fast_only_on_pods_of_its_generation() {
        let mut d = daemon_set();
        d["metadata"]["generation"] = json!(2);
        d["status"]["observedGeneration"] = json!(2);
        d["status"]["numberReady"] = json!(1);
        let pod = |generation: &str| {
            let mut pod_labels = labels("agent");
            pod_labels["pod-template-generation"] = json!(generation);
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": format!("sample-app-agent-g{generation}"), "namespace": "sample", "labels": pod_labels },
                "status": { "phase": "Running", "containerStatuses": [container_status("agent", waiting("CrashLoopBackOff", "back-off 40s restarting failed container=agent"), json!({}), false, 4)] }
            })
        };
        assert_eq!(assess(&d, &[pod("1")]), in_progress("ready pods 1/2"));
        assert_eq!(
            assess(&d, &[pod("1"), pod("2")]),
            failed(
                "pod sample-app-agent-g2 container agent: CrashLoopBackOff (back-off 40s restarting failed container=agent)"
            )
        );
    }

    // ---- ReplicaSet ----

    fn replica_set() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": { "name": "sample-app-web-7d9f8c6b5", "namespace": "sample", "generation": 1 },
            "spec": { "replicas": 2, "selector": { "matchLabels": labels("web") } },
            "status": { "replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 2, "observedGeneration": 1 }
        })
    }

    #[test]
    fn replica_set_available_is_current() {
        assert_eq!(assess(&replica_set(), &[]), Assessment::Current);
    }

    #[test]
    fn replica_set_with_a_replica_failure_is_in_progress() {
        let mut r = replica_set();
        r["status"] = json!({
            "replicas": 0, "observedGeneration": 1,
            "conditions": [{
                "type": "ReplicaFailure", "status": "True", "lastTransitionTime": "2025-11-21T09:00:12Z", "reason": "FailedCreate",
                "message": "pods \"sample-app-web-7d9f8c6b5-\" is forbidden: exceeded quota: compute, requested: limits.cpu=500m, used: limits.cpu=2, limited: limits.cpu=2"
            }]
        });
        assert_eq!(
            assess(&r, &[]),
            in_progress(
                "replica failure: FailedCreate: pods \"sample-app-web-7d9f8c6b5-\" is forbidden: exceeded quota: compute, \
                 requested: limits.cpu=500m, used: limits.cpu=2, limited: limits.cpu=2"
            )
        );
    }

    #[test]
    fn replica_set_short_of_ready_replicas_is_in_progress() {
        let mut r = replica_set();
        r["status"]["readyReplicas"] = json!(1);
        assert_eq!(assess(&r, &[]), in_progress("ready replicas 1/2"));
    }

    // ---- Pod ----

    #[test]
    fn pod_running_and_ready_is_current() {
        assert_eq!(
            assess(&healthy_web_pod("sample-app-web-7d9f8c6b5-2mzkd", "7d9f8c6b5"), &[]),
            Assessment::Current
        );
    }

    #[test]
    fn pod_running_but_not_ready_is_in_progress() {
        let pod = web_pod(
            "p",
            "7d9f8c6b5",
            "Running",
            false,
            vec![container_status("web", running(), json!({}), false, 0)],
        );
        assert_eq!(assess(&pod, &[]), in_progress("running but not ready"));
    }

    #[test]
    fn pod_crash_looping_fails() {
        let pod = crash_looping_web_pod("sample-app-web-7d9f8c6b5-2mzkd", "7d9f8c6b5");
        let Assessment::Failed { reason } = assess(&pod, &[]) else {
            panic!("not failed")
        };
        assert!(
            reason.starts_with("pod sample-app-web-7d9f8c6b5-2mzkd container web: CrashLoopBackOff"),
            "{reason}"
        );
    }

    #[test]
    fn pod_succeeded_is_current() {
        let mut pod = healthy_web_pod("sample-app-smoke", "x");
        pod["status"]["phase"] = json!("Succeeded");
        assert_eq!(assess(&pod, &[]), Assessment::Current);
    }

    #[test]
    fn pod_failed_is_failed_with_its_exit() {
        let mut pod = healthy_web_pod("sample-app-smoke", "x");
        pod["status"]["phase"] = json!("Failed");
        pod["status"]["containerStatuses"] = json!([container_status(
            "web",
            json!({ "terminated": { "exitCode": 137, "reason": "OOMKilled", "startedAt": "2025-11-21T09:00:20Z", "finishedAt": "2025-11-21T09:00:50Z" } }),
            json!({}),
            false,
            0,
        )]);
        assert_eq!(
            assess(&pod, &[]),
            failed("pod failed; container web: exit code 137 (OOMKilled)")
        );
    }

    #[test]
    fn evicted_pod_is_failed() {
        let mut pod = healthy_web_pod("sample-app-smoke", "x");
        pod["status"]["phase"] = json!("Failed");
        pod["status"]["reason"] = json!("Evicted");
        pod["status"]["message"] = json!("The node was low on resource: ephemeral-storage.");
        pod["status"]["containerStatuses"] = json!([]);
        assert_eq!(
            assess(&pod, &[]),
            failed("pod failed: Evicted (The node was low on resource: ephemeral-storage.)")
        );
    }

    #[test]
    fn unschedulable_pod_is_in_progress() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "sample-app-web-7d9f8c6b5-2mzkd", "namespace": "sample", "creationTimestamp": "2025-11-21T09:00:12Z" },
            "status": {
                "phase": "Pending",
                "conditions": [{
                    "type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": "2025-11-21T09:00:12Z",
                    "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
                }],
                "qosClass": "Burstable"
            }
        });
        assert_eq!(
            assess(&pod, &[]),
            in_progress(
                "not scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes \
                 are available: 1 No preemption victims found for incoming pod."
            )
        );
    }

    // ---- Job ----

    fn job_object(status: Value) -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "sample-app-migrate-2-0-0", "namespace": "sample", "generation": 1,
                "uid": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
                "labels": { "batch.kubernetes.io/controller-uid": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d", "batch.kubernetes.io/job-name": "sample-app-migrate-2-0-0" }
            },
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": 2,
                "activeDeadlineSeconds": 600,
                "completionMode": "NonIndexed",
                "suspend": false,
                "manualSelector": false,
                "podReplacementPolicy": "TerminatingOrFailed",
                "selector": { "matchLabels": { "batch.kubernetes.io/controller-uid": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d" } },
                "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "migrate", "image": "registry.local:5000/sample/migrate@sha256:c0ff" }] } }
            },
            "status": status
        })
    }

    #[test]
    fn job_complete_is_current() {
        let j = job_object(json!({
            "conditions": [
                { "type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": "2025-11-21T09:01:40Z", "lastTransitionTime": "2025-11-21T09:01:40Z", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods" },
                { "type": "Complete", "status": "True", "lastProbeTime": "2025-11-21T09:01:41Z", "lastTransitionTime": "2025-11-21T09:01:41Z", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods" }
            ],
            "startTime": "2025-11-21T09:01:02Z", "completionTime": "2025-11-21T09:01:41Z",
            "succeeded": 1, "terminating": 0, "ready": 0, "uncountedTerminatedPods": {}
        }));
        assert_eq!(assess(&j, &[]), Assessment::Current);
    }

    #[test]
    fn running_job_is_in_progress_not_current() {
        let j = job_object(
            json!({ "startTime": "2025-11-21T09:01:02Z", "active": 1, "terminating": 0, "ready": 1, "uncountedTerminatedPods": {} }),
        );
        assert_eq!(
            assess(&j, &[]),
            in_progress("job running: 0/1 succeeded, 1 active, 0 failed")
        );
    }

    #[test]
    fn job_with_every_completion_succeeded_is_current_before_its_condition() {
        let j = job_object(
            json!({ "startTime": "2025-11-21T09:01:02Z", "succeeded": 1, "terminating": 0, "ready": 0, "uncountedTerminatedPods": {} }),
        );
        assert_eq!(assess(&j, &[]), Assessment::Current);
    }

    #[test]
    fn job_not_started_is_in_progress() {
        assert_eq!(assess(&job_object(json!({})), &[]), in_progress("job not started"));
    }

    #[test]
    fn suspended_job_is_in_progress() {
        let mut j = job_object(json!({
            "conditions": [{ "type": "Suspended", "status": "True", "lastProbeTime": "2025-11-21T09:01:02Z", "lastTransitionTime": "2025-11-21T09:01:02Z", "reason": "JobSuspended", "message": "Job suspended" }]
        }));
        j["spec"]["suspend"] = json!(true);
        assert_eq!(assess(&j, &[]), in_progress("job is suspended"));
    }

    #[test]
    fn job_failed_by_its_backoff_limit_fails() {
        let j = job_object(json!({
            "conditions": [
                { "type": "FailureTarget", "status": "True", "lastProbeTime": "2025-11-21T09:02:30Z", "lastTransitionTime": "2025-11-21T09:02:30Z", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" },
                { "type": "Failed", "status": "True", "lastProbeTime": "2025-11-21T09:02:31Z", "lastTransitionTime": "2025-11-21T09:02:31Z", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" }
            ],
            "startTime": "2025-11-21T09:01:02Z", "failed": 3, "terminating": 0, "ready": 0, "uncountedTerminatedPods": {}
        }));
        assert_eq!(
            assess(&j, &[]),
            failed("job failed (3 failed pods): BackoffLimitExceeded: Job has reached the specified backoff limit")
        );
    }

    #[test]
    fn job_past_its_active_deadline_fails() {
        let j = job_object(json!({
            "conditions": [{ "type": "Failed", "status": "True", "lastProbeTime": "2025-11-21T09:11:02Z", "lastTransitionTime": "2025-11-21T09:11:02Z", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline" }],
            "startTime": "2025-11-21T09:01:02Z", "failed": 1, "terminating": 0, "ready": 0, "uncountedTerminatedPods": {}
        }));
        assert_eq!(
            assess(&j, &[]),
            failed("job failed (1 failed pods): DeadlineExceeded: Job was active longer than specified deadline")
        );
    }

    #[test]
    fn job_whose_pod_cannot_pull_its_image_fails_fast() {
        let j = job_object(
            json!({ "startTime": "2025-11-21T09:01:02Z", "active": 1, "terminating": 0, "ready": 0, "uncountedTerminatedPods": {} }),
        );
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "sample-app-migrate-2-0-0-7xk2p", "namespace": "sample", "labels": { "batch.kubernetes.io/controller-uid": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d", "job-name": "sample-app-migrate-2-0-0" } },
            "status": { "phase": "Pending", "containerStatuses": [container_status("migrate", waiting("ErrImagePull", "registry.local:5000/sample/migrate@sha256:c0ff: not found"), json!({}), false, 0)] }
        });
        assert_eq!(
            assess(&j, &[pod]),
            failed(
                "pod sample-app-migrate-2-0-0-7xk2p container migrate: ErrImagePull (registry.local:5000/sample/migrate@sha256:c0ff: not found)"
            )
        );
    }

    // ---- PVC, Service, CRD, Namespace, always-ready kinds ----

    fn pvc(phase: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": "data-sample-app-db-0", "namespace": "sample", "annotations": { "volume.kubernetes.io/storage-provisioner": "rancher.io/local-path" } },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } }, "storageClassName": "local-path", "volumeMode": "Filesystem" },
            "status": { "phase": phase }
        })
    }

    #[test]
    fn pvc_waits_until_bound() {
        assert_eq!(assess(&pvc("Bound"), &[]), Assessment::Current);
        assert_eq!(assess(&pvc("Pending"), &[]), in_progress("not bound (phase Pending)"));
        assert_eq!(assess(&pvc("Lost"), &[]), failed("claim lost its volume (phase Lost)"));
    }

    #[test]
    fn load_balancer_service_without_ingress_is_current() {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "sample-app-web", "namespace": "sample", "labels": labels("web") },
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "10.96.112.40", "clusterIPs": ["10.96.112.40"],
                "ports": [{ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 31380 }],
                "selector": labels("web"),
                "sessionAffinity": "None", "externalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack", "allocateLoadBalancerNodePorts": true, "internalTrafficPolicy": "Cluster"
            },
            "status": { "loadBalancer": {} }
        });
        assert_eq!(assess(&service, &[]), Assessment::Current);
        let mut without_ip = service.clone();
        without_ip["spec"]["clusterIP"] = json!("");
        assert_eq!(assess(&without_ip, &[]), Assessment::Current);
    }

    fn crd(conditions: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": "widgets.sample.example.com", "generation": 1 },
            "spec": {
                "group": "sample.example.com",
                "names": { "kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget" },
                "scope": "Namespaced",
                "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": { "type": "object" } } }]
            },
            "status": {
                "acceptedNames": { "kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget" },
                "conditions": conditions,
                "storedVersions": ["v1"]
            }
        })
    }

    #[test]
    fn crd_not_yet_established_is_in_progress() {
        let c = crd(json!([
            { "type": "NamesAccepted", "status": "True", "lastTransitionTime": "2025-11-21T09:00:01Z", "reason": "NoConflicts", "message": "no conflicts found" },
            { "type": "Established", "status": "False", "lastTransitionTime": "2025-11-21T09:00:01Z", "reason": "Installing", "message": "the initial names have been accepted" }
        ]));
        assert_eq!(assess(&c, &[]), in_progress("not yet established"));
        assert_eq!(assess(&crd(json!([])), &[]), in_progress("not yet established"));
    }

    #[test]
    fn crd_established_is_current() {
        let c = crd(json!([
            { "type": "NamesAccepted", "status": "True", "lastTransitionTime": "2025-11-21T09:00:01Z", "reason": "NoConflicts", "message": "no conflicts found" },
            { "type": "Established", "status": "True", "lastTransitionTime": "2025-11-21T09:00:01Z", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted" }
        ]));
        assert_eq!(assess(&c, &[]), Assessment::Current);
    }

    #[test]
    fn crd_whose_names_conflict_fails() {
        let c = crd(json!([
            { "type": "NamesAccepted", "status": "False", "lastTransitionTime": "2025-11-21T09:00:01Z", "reason": "NameConflict", "message": "\"widgets\" is already in use" },
            { "type": "Established", "status": "False", "lastTransitionTime": "2025-11-21T09:00:01Z", "reason": "NotAccepted", "message": "not all names are accepted" }
        ]));
        assert_eq!(
            assess(&c, &[]),
            failed("names not accepted: NameConflict: \"widgets\" is already in use")
        );
    }

    fn namespace(phase: Option<&str>) -> Value {
        let mut ns = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": "sample", "labels": { "kubernetes.io/metadata.name": "sample" } },
            "spec": { "finalizers": ["kubernetes"] },
            "status": {}
        });
        if let Some(phase) = phase {
            ns["status"]["phase"] = json!(phase);
        }
        ns
    }

    #[test]
    fn namespace_is_current_when_active_and_fails_when_terminating() {
        assert_eq!(assess(&namespace(Some("Active")), &[]), Assessment::Current);
        assert_eq!(assess(&namespace(None), &[]), in_progress("phase not set yet"));
        let mut terminating = namespace(Some("Terminating"));
        terminating["metadata"]["deletionTimestamp"] = json!("2025-11-21T09:00:00Z");
        assert_eq!(assess(&terminating, &[]), failed("namespace is terminating"));
    }

    #[test]
    fn config_and_rbac_kinds_are_current() {
        for (api_version, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("policy/v1", "PodDisruptionBudget"),
            ("batch/v1", "CronJob"),
        ] {
            let object = json!({ "apiVersion": api_version, "kind": kind, "metadata": { "name": "sample-app", "namespace": "sample" } });
            assert_eq!(assess(&object, &[]), Assessment::Current, "{kind}");
        }
    }

    #[test]
    fn object_being_deleted_is_in_progress() {
        let mut cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "sample-app", "namespace": "sample" } });
        cm["metadata"]["deletionTimestamp"] = json!("2025-11-21T09:00:00Z");
        assert_eq!(assess(&cm, &[]), in_progress("being deleted"));
    }

    // ---- Generic objects (custom resources) ----

    fn widget(generation: i64, status: Value) -> Value {
        json!({
            "apiVersion": "sample.example.com/v1", "kind": "Widget",
            "metadata": { "name": "default", "namespace": "sample", "generation": generation },
            "spec": { "size": 3 },
            "status": status
        })
    }

    #[test]
    fn custom_resource_without_conditions_is_current_once_it_exists() {
        assert_eq!(assess(&widget(1, json!(null)), &[]), Assessment::Current);
        assert_eq!(
            assess(&widget(1, json!({ "phase": "Whatever" })), &[]),
            Assessment::Current
        );
    }

    #[test]
    fn custom_resource_follows_its_ready_condition() {
        let ready = |status: &str| {
            widget(
                2,
                json!({ "observedGeneration": 2, "conditions": [{ "type": "Ready", "status": status, "reason": "Provisioning", "message": "waiting for 3 shards", "lastTransitionTime": "2025-11-21T09:00:00Z", "observedGeneration": 2 }] }),
            )
        };
        assert_eq!(assess(&ready("True"), &[]), Assessment::Current);
        assert_eq!(
            assess(&ready("False"), &[]),
            in_progress("not ready: Provisioning: waiting for 3 shards")
        );
        assert_eq!(
            assess(&ready("Unknown"), &[]),
            in_progress("not ready: Provisioning: waiting for 3 shards")
        );
    }

    #[test]
    fn custom_resource_reconciling_is_in_progress_and_stalled_fails() {
        let with = |kind: &str| {
            widget(
                2,
                json!({ "observedGeneration": 2, "conditions": [
                { "type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2025-11-21T09:00:00Z" },
                { "type": kind, "status": "True", "reason": "Resizing", "message": "2 of 3 shards moved", "lastTransitionTime": "2025-11-21T09:00:00Z" }
            ] }),
            )
        };
        assert_eq!(
            assess(&with("Reconciling"), &[]),
            in_progress("reconciling: Resizing: 2 of 3 shards moved")
        );
        assert_eq!(
            assess(&with("Stalled"), &[]),
            failed("stalled: Resizing: 2 of 3 shards moved")
        );
    }

    #[test]
    fn custom_resource_whose_generation_is_not_yet_observed_is_in_progress() {
        let w = widget(
            4,
            json!({ "observedGeneration": 3, "conditions": [{ "type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": "2025-11-21T09:00:00Z" }] }),
        );
        assert_eq!(
            assess(&w, &[]),
            in_progress("generation 4 not yet observed by its controller (observed 3)")
        );
    }

    #[test]
    fn deployment_of_another_group_is_a_generic_object() {
        let object = json!({ "apiVersion": "example.com/v1", "kind": "Deployment", "metadata": { "name": "x" }, "spec": { "replicas": 3 } });
        assert_eq!(assess(&object, &[]), Assessment::Current);
        assert_eq!(pod_selector(&object), None);
    }

    // ---- pod_selector ----

    #[test]
    fn pod_selector_of_match_labels_is_sorted_by_key() {
        assert_eq!(pod_selector(&deployment_rolled_out()).as_deref(), Some(WEB_SELECTOR));
        assert_eq!(
            pod_selector(&stateful_set()).as_deref(),
            Some(WEB_SELECTOR.replace("=web", "=db").as_str())
        );
        assert_eq!(
            pod_selector(&job_object(json!({}))).as_deref(),
            Some("batch.kubernetes.io/controller-uid=6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d")
        );
    }

    #[test]
    fn pod_selector_renders_match_expressions() {
        let mut d = deployment_rolled_out();
        d["spec"]["selector"] = json!({
            "matchLabels": { "app.kubernetes.io/name": "sample-app" },
            "matchExpressions": [
                { "key": "tier", "operator": "In", "values": ["web", "api"] },
                { "key": "track", "operator": "NotIn", "values": ["canary"] },
                { "key": "sample.dev/managed", "operator": "Exists" },
                { "key": "legacy", "operator": "DoesNotExist", "values": [] }
            ]
        });
        assert_eq!(
            pod_selector(&d).as_deref(),
            Some("app.kubernetes.io/name=sample-app,!legacy,sample.dev/managed,tier in (api,web),track notin (canary)")
        );
    }

    #[test]
    fn pod_selector_of_a_replication_controller_is_its_map() {
        let rc = json!({ "apiVersion": "v1", "kind": "ReplicationController", "metadata": { "name": "legacy" }, "spec": { "replicas": 1, "selector": { "app": "legacy", "tier": "web" } } });
        assert_eq!(pod_selector(&rc).as_deref(), Some("app=legacy,tier=web"));
    }

    #[test]
    fn pod_selector_is_none_without_pods_or_a_usable_selector() {
        assert_eq!(pod_selector(&pvc("Bound")), None);
        assert_eq!(pod_selector(&healthy_web_pod("p", "h")), None);
        let with_selector = |selector: Value| {
            let mut d = deployment_rolled_out();
            d["spec"]["selector"] = selector;
            pod_selector(&d)
        };
        assert_eq!(with_selector(json!({})), None, "empty selects every pod");
        assert_eq!(
            with_selector(json!({ "matchLabels": {} , "matchExpressions": [] })),
            None
        );
        assert_eq!(
            with_selector(json!({ "matchExpressions": [{ "key": "tier", "operator": "In", "values": [] }] })),
            None
        );
        assert_eq!(
            with_selector(json!({ "matchExpressions": [{ "key": "tier", "operator": "Gt", "values": ["1"] }] })),
            None
        );
        assert_eq!(with_selector(json!({ "matchLabels": { "replicas": 3 } })), None);
    }

    // ---- Fingerprint ----

    #[test]
    fn fingerprint_ignores_heartbeats_and_restart_counts() {
        let d = deployment_mid_rollout();
        let pods = mid_rollout_pods(crash_looping_web_pod("sample-app-web-5c4b7f9d8-x2x4q", "5c4b7f9d8"));
        let before = Fingerprint::of(&d, &pods);

        let mut later = d.clone();
        later["status"]["conditions"][1]["lastUpdateTime"] = json!("2025-11-21T09:05:00Z");
        let mut later_pods = pods.clone();
        later_pods[3]["status"]["containerStatuses"][0]["restartCount"] = json!(7);
        later_pods.reverse();
        assert_eq!(Fingerprint::of(&later, &later_pods), before);

        later["status"]["updatedReplicas"] = json!(3);
        assert_ne!(Fingerprint::of(&later, &later_pods), before);
        let mut ready_pods = pods.clone();
        ready_pods[3]["status"]["containerStatuses"][0]["ready"] = json!(true);
        assert_ne!(Fingerprint::of(&d, &ready_pods), before);
        assert_ne!(Fingerprint::of(&d, &pods[..3]), before);
    }

    // ---- StallDetector ----

    struct FakeClock(Timestamp);

    impl FakeClock {
        fn new() -> Self {
            Self(Timestamp::from_second(1_763_715_600).unwrap())
        }

        fn now(&self) -> Timestamp {
            self.0
        }

        fn advance(&mut self, seconds: i64) -> Timestamp {
            self.0 = self.0.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap();
            self.0
        }
    }

    fn web_progress(updated: i64) -> (Assessment, Fingerprint) {
        let mut d = deployment_mid_rollout();
        d["status"]["updatedReplicas"] = json!(updated);
        (assess(&d, &[]), Fingerprint::of(&d, &[]))
    }

    fn current_config() -> (Assessment, Fingerprint) {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "sample-app" } });
        (assess(&cm, &[]), Fingerprint::of(&cm, &[]))
    }

    #[test]
    fn stall_detector_reports_a_wave_without_progress_after_its_window() {
        let mut clock = FakeClock::new();
        let mut stalls = StallDetector::new(Duration::from_secs(300));
        let (web, web_fp) = web_progress(2);
        let (config, config_fp) = current_config();
        for _ in 0..30 {
            stalls.observe(clock.now(), "apps/v1 Deployment sample/sample-app-web", &web, &web_fp);
            stalls.observe(clock.now(), "v1 ConfigMap sample/sample-app", &config, &config_fp);
            assert_eq!(stalls.stalled(clock.now()), None);
            clock.advance(10);
        }
        clock.advance(3);
        assert_eq!(
            stalls.stalled(clock.now()),
            Some(Stalled {
                object: "apps/v1 Deployment sample/sample-app-web".to_owned(),
                for_seconds: 303,
                reason: "updated replicas 2/3".to_owned(),
            })
        );
    }

    #[test]
    fn stall_detector_restarts_its_window_when_any_object_changes() {
        let mut clock = FakeClock::new();
        let mut stalls = StallDetector::new(Duration::from_secs(300));
        let (web, web_fp) = web_progress(1);
        let (db, db_fp) = web_progress(0);
        stalls.observe(clock.now(), "web", &web, &web_fp);
        stalls.observe(clock.now(), "db", &db, &db_fp);
        clock.advance(250);
        let (web2, web2_fp) = web_progress(2);
        stalls.observe(clock.now(), "web", &web2, &web2_fp);
        stalls.observe(clock.now(), "db", &db, &db_fp);
        assert_eq!(stalls.stalled(clock.advance(249)), None);
        // Fed the same again: no progress; the object unchanged longest is named.
        stalls.observe(clock.now(), "web", &web2, &web2_fp);
        stalls.observe(clock.now(), "db", &db, &db_fp);
        assert_eq!(stalls.stalled(clock.advance(1)), None);
        let stalled = stalls.stalled(clock.advance(50)).unwrap();
        assert_eq!((stalled.object.as_str(), stalled.for_seconds), ("db", 300));
    }

    #[test]
    fn stall_detector_ignores_waves_with_nothing_in_progress() {
        let mut clock = FakeClock::new();
        let mut stalls = StallDetector::new(Duration::from_secs(60));
        assert_eq!(stalls.stalled(clock.now()), None, "nothing observed");
        let (config, config_fp) = current_config();
        stalls.observe(clock.now(), "config", &config, &config_fp);
        let failing = failed("pod x container web: CrashLoopBackOff");
        stalls.observe(clock.now(), "web", &failing, &config_fp);
        assert_eq!(stalls.stalled(clock.advance(3600)), None);
    }

    #[test]
    fn stall_detector_counts_a_change_of_assessment_as_progress() {
        let mut clock = FakeClock::new();
        let mut stalls = StallDetector::new(Duration::from_secs(60));
        let (web, fp) = web_progress(2);
        let (db, db_fp) = web_progress(0);
        stalls.observe(clock.now(), "web", &web, &fp);
        stalls.observe(clock.now(), "db", &db, &db_fp);
        clock.advance(59);
        stalls.observe(clock.now(), "web", &Assessment::Current, &fp);
        assert_eq!(stalls.stalled(clock.advance(59)), None);
        assert_eq!(
            stalls.stalled(clock.advance(1)).map(|s| s.object),
            Some("db".to_owned())
        );
    }

    #[test]
    fn stall_detector_tolerates_a_clock_going_backwards() {
        let mut clock = FakeClock::new();
        let mut stalls = StallDetector::new(Duration::from_secs(60));
        let (web, fp) = web_progress(2);
        stalls.observe(clock.now(), "web", &web, &fp);
        assert_eq!(stalls.stalled(clock.advance(-30)), None);
        assert_eq!(stalls.stalled(clock.advance(90)).map(|s| s.for_seconds), Some(60));
    }

    #[test]
    fn assessment_and_stall_read_as_sentences() {
        assert_eq!(Assessment::Current.to_string(), "current");
        assert_eq!(
            in_progress("ready replicas 1/3").to_string(),
            "in progress: ready replicas 1/3"
        );
        assert_eq!(failed("job failed").to_string(), "failed: job failed");
        let stalled = Stalled {
            object: "Deployment sample/sample-app-web".to_owned(),
            for_seconds: 300,
            reason: "ready replicas 1/3".to_owned(),
        };
        assert_eq!(
            stalled.to_string(),
            "no progress for 300s; still waiting for Deployment sample/sample-app-web: ready replicas 1/3"
        );
    }
}
