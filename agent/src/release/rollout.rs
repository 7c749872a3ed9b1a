//! Applying objects wave by wave and waiting until each wave is ready; the one deletion rule.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::release::cluster::{Cluster, ClusterError};
use crate::release::history::ObjectKey;
use crate::release::readiness::{Assessment, Fingerprint, StallDetector, assess, pod_selector};

/// Kinds whose pods are inspected for fail-fast reasons.
const POD_OWNERS: [&str; 5] = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"];

/// Managers other than the agent whose fields (outside `status`) the apply that turned
/// `before` into `after` took away.
pub fn fields_taken(before: &Value, after: &Value) -> Vec<String> {
    use crate::release::resource::FIELD_MANAGER;
    let entries = |o: &Value| -> Vec<(String, Value)> {
        o.pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|m| m["subresource"].as_str().is_none_or(str::is_empty))
            .filter_map(|m| {
                let manager = m["manager"].as_str()?;
                (manager != FIELD_MANAGER).then(|| {
                    (
                        format!("{manager} ({})", m["operation"].as_str().unwrap_or("?")),
                        m["fieldsV1"].clone(),
                    )
                })
            })
            .collect()
    };
    let after = entries(after);
    entries(before)
        .into_iter()
        .filter(|(who, fields)| !after.iter().any(|(w, f)| w == who && f == fields))
        .map(|(who, _)| who)
        .collect()
}

/// Why the deletion rule keeps an object, or `None` if it may be deleted.
pub fn kept_by_rule(key: &ObjectKey, object: Option<&Value>) -> Option<&'static str> {
    match key.kind.as_str() {
        "CustomResourceDefinition" => return Some("CRDs are never deleted"),
        "PersistentVolumeClaim" => return Some("PVCs keep data and are never deleted"),
        "Namespace" => return Some("Namespaces are never deleted"),
        _ => {}
    }
    let annotations = object.and_then(|o| o.pointer("/metadata/annotations"));
    let annotation = |name: &str| annotations.and_then(|a| a.get(name)).and_then(Value::as_str);
    if annotation("helm.sh/resource-policy") == Some("keep") {
        return Some("annotated helm.sh/resource-policy: keep");
    }
    if annotation("sealift.dev/prune") == Some("disabled") {
        return Some("annotated sealift.dev/prune: disabled");
    }
    None
}

/// Deletes `keys` under the deletion rule; returns what was kept, as `Kind/ns/name (why)`.
pub async fn delete_under_rule(
    cluster: &Cluster,
    keys: &[ObjectKey],
    planned: impl Fn(&ObjectKey) -> Option<Value>,
) -> Result<Vec<String>, ClusterError> {
    let mut kept = Vec::new();
    for key in keys {
        let live = match cluster.get(key).await {
            Ok(v) => v,
            Err(ClusterError::NotServed { .. }) => continue,
            Err(e) => return Err(e),
        };
        let Some(live) = live else { continue };
        let reason = kept_by_rule(key, Some(&live)).or_else(|| kept_by_rule(key, planned(key).as_ref()));
        if let Some(reason) = reason {
            kept.push(format!("{key} ({reason})"));
            continue;
        }
        cluster.delete(key).await?;
        tracing::info!(object = %key, "deleted");
    }
    Ok(kept)
}

/// The state of one object as readiness sees it.
pub async fn assess_object(cluster: &Cluster, key: &ObjectKey) -> Result<Assessment, ClusterError> {
    Ok(observe_object(cluster, key).await?.0)
}

/// The assessment of one object and a fingerprint of its progress (for the stall detector).
async fn observe_object(cluster: &Cluster, key: &ObjectKey) -> Result<(Assessment, Fingerprint), ClusterError> {
    let Some(live) = cluster.get(key).await? else {
        let missing = Assessment::InProgress {
            reason: "not found".into(),
        };
        return Ok((missing, Fingerprint::of(&Value::Null, &[])));
    };
    let pods = if POD_OWNERS.contains(&key.kind.as_str()) {
        match pod_selector(&live) {
            Some(selector) => cluster.list("v1", "Pod", &key.namespace, &selector).await?,
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    Ok((assess(&live, &pods), Fingerprint::of(&live, &pods)))
}

/// Why waiting for a set of objects ended without all being ready.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{object} failed: {reason}")]
    Failed { object: String, reason: String },
    #[error("not ready after {seconds}s: {pending}")]
    Timeout { seconds: u64, pending: String },
    #[error("{0}")]
    Stalled(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Waits until every object is Current; fails fast on a Failed one, and when nothing in the
/// set made progress for `stall_window` (or the whole wait exceeds `timeout`).
/// `report(ready, total)` is called whenever the count changes.
pub async fn wait_ready(
    cluster: &Cluster,
    keys: &[ObjectKey],
    timeout: Duration,
    poll: Duration,
    stall_window: Duration,
    mut report: impl FnMut(u32, u32),
) -> Result<(), WaitError> {
    let started = Instant::now();
    let mut stalls = StallDetector::new(stall_window);
    let total = keys.len() as u32;
    let mut last_ready = u32::MAX;
    loop {
        let mut pending = Vec::new();
        let now = jiff::Timestamp::now();
        for key in keys {
            let (assessment, fingerprint) = observe_object(cluster, key).await?;
            stalls.observe(now, &key.to_string(), &assessment, &fingerprint);
            match assessment {
                Assessment::Current => {}
                Assessment::Failed { reason } => {
                    return Err(WaitError::Failed {
                        object: key.to_string(),
                        reason,
                    });
                }
                Assessment::InProgress { reason } => pending.push(format!("{key}: {reason}")),
            }
        }
        let ready = total - pending.len() as u32;
        if ready != last_ready {
            report(ready, total);
            last_ready = ready;
        }
        if pending.is_empty() {
            return Ok(());
        }
        if let Some(stalled) = stalls.stalled(now) {
            return Err(WaitError::Stalled(stalled.to_string()));
        }
        if started.elapsed() >= timeout {
            return Err(WaitError::Timeout {
                seconds: timeout.as_secs(),
                pending: pending.join("; "),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(kind: &str) -> ObjectKey {
        ObjectKey {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: "ns".into(),
            name: "x".into(),
        }
    }

    #[test]
    fn fields_taken_names_managers_that_lost_fields() {
        let before = json!({"metadata": {"managedFields": [
            {"manager": "sealift-agent", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "admin-tweak", "operation": "Apply", "fieldsV1": {"f:spec": {"f:paused": {}, "f:minReadySeconds": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
        ]}});
        let after = json!({"metadata": {"managedFields": [
            {"manager": "sealift-agent", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:paused": {}}}},
            {"manager": "admin-tweak", "operation": "Apply", "fieldsV1": {"f:spec": {"f:minReadySeconds": {}}}},
        ]}});
        assert_eq!(fields_taken(&before, &after), ["admin-tweak (Apply)"]);
        assert!(fields_taken(&after, &after).is_empty());
    }

    #[test]
    fn the_deletion_rule_keeps_data_and_marked_objects() {
        assert!(kept_by_rule(&key("PersistentVolumeClaim"), None).is_some());
        assert!(kept_by_rule(&key("Namespace"), None).is_some());
        assert!(kept_by_rule(&key("CustomResourceDefinition"), None).is_some());
        assert!(kept_by_rule(&key("ConfigMap"), None).is_none());
        let keep = json!({"metadata": {"annotations": {"helm.sh/resource-policy": "keep"}}});
        assert!(kept_by_rule(&key("ConfigMap"), Some(&keep)).is_some());
        let off = json!({"metadata": {"annotations": {"sealift.dev/prune": "disabled"}}});
        assert!(kept_by_rule(&key("Secret"), Some(&off)).is_some());
    }
}
