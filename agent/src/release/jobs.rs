//! Migration steps and Helm hooks run as Jobs with deterministic names, so an agent restarted
//! mid-step finds the Job it created instead of starting a second one.

use std::time::{Duration, Instant};

use schemas::release::{EnvVar, Step as MigrationStep};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::release::cluster::{Cluster, ClusterError};
use crate::release::history::{ObjectKey, StepLog};

/// Label on every Job the agent creates.
pub const STEP_LABEL: &str = "sealift.dev/step";

/// ConfigMap in the application namespace holding the agent's CA for step Jobs.
pub const CA_CONFIG_MAP: &str = "sealift-agent-ca";
/// Where step containers find the agent's CA.
pub const CA_MOUNT_DIR: &str = "/etc/sealift";

/// The ConfigMap carrying the agent's CA certificate into the application namespace.
pub fn ca_config_map(namespace: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CA_CONFIG_MAP,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "sealift"},
        },
        "data": {"ca.crt": ca_pem},
    })
}

/// A fresh token for one step Job (32 random bytes, hex).
pub fn new_step_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// How a step token is kept: only its SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A Job name from parts, at most 63 characters, stable for the same parts.
pub fn job_name(release: &str, step: &str, revision: u32, suffix: &str) -> String {
    let full = format!("{release}-{step}-r{revision}{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let hash = hex::encode(&sha2::Sha256::digest(full.as_bytes())[..4]);
    let mut cut = full[..54].to_owned();
    while !cut.is_char_boundary(cut.len()) {
        cut.pop();
    }
    format!("{}-{hash}", cut.trim_end_matches('-'))
}

/// Everything a step Job needs from the surrounding plan.
pub struct JobContext<'a> {
    pub namespace: &'a str,
    pub release: &'a str,
    pub revision: u32,
    /// The step's image, already rewritten to the cluster registry by digest.
    pub image: String,
    /// Extra environment (`SEALIFT_AGENT_URL`, …).
    pub env: Vec<EnvVar>,
    /// Mount the agent's CA ConfigMap at [`CA_MOUNT_DIR`] (`SEALIFT_AGENT_CA` names the file).
    pub mount_ca: bool,
}

/// The Job for a migration step (`down == true`: its down step).
pub fn migration_job(step: &MigrationStep, ctx: &JobContext<'_>, down: bool) -> Option<Value> {
    let (command, env, suffix) = if down {
        let d = step.down.as_ref()?;
        let command = if d.command.is_empty() {
            step.command.clone()
        } else {
            d.command.clone()
        };
        (command, d.env.clone(), "-down")
    } else {
        (step.command.clone(), step.env.clone(), "")
    };
    let name = job_name(ctx.release, step.id.as_str(), ctx.revision, suffix);
    let mut all_env: Vec<Value> = env.iter().map(|e| json!({"name": e.name, "value": e.value})).collect();
    all_env.extend(ctx.env.iter().map(|e| json!({"name": e.name, "value": e.value})));
    let mut container = json!({
        "name": "step",
        "image": ctx.image,
        "command": command,
        "env": all_env,
    });
    let mut pod_spec = json!({"restartPolicy": "Never", "containers": []});
    let mut annotations = json!({});
    if let Some(t) = &step.pod_template {
        for (k, v) in &t.annotations {
            annotations[k] = json!(v);
        }
        if let Some(sa) = &t.service_account_name {
            pod_spec["serviceAccountName"] = json!(sa);
        }
        if !t.volumes.is_empty() {
            pod_spec["volumes"] = json!(t.volumes);
        }
        if !t.volume_mounts.is_empty() {
            container["volumeMounts"] = json!(t.volume_mounts);
        }
        if let Some(r) = &t.resources {
            container["resources"] = r.clone();
        }
        if let Some(s) = &t.security_context {
            pod_spec["securityContext"] = s.clone();
        }
        if !t.node_selector.is_empty() {
            pod_spec["nodeSelector"] = json!(t.node_selector);
        }
        if !t.tolerations.is_empty() {
            pod_spec["tolerations"] = json!(t.tolerations);
        }
    }
    if ctx.mount_ca {
        let mounts = container["volumeMounts"].as_array().cloned().unwrap_or_default();
        let mut mounts = mounts;
        mounts.push(json!({"name": "sealift-agent-ca", "mountPath": CA_MOUNT_DIR, "readOnly": true}));
        container["volumeMounts"] = json!(mounts);
        let mut volumes = pod_spec["volumes"].as_array().cloned().unwrap_or_default();
        volumes.push(json!({"name": "sealift-agent-ca", "configMap": {"name": CA_CONFIG_MAP}}));
        pod_spec["volumes"] = json!(volumes);
        if let Some(env) = container["env"].as_array_mut() {
            env.push(json!({"name": "SEALIFT_AGENT_CA", "value": format!("{CA_MOUNT_DIR}/ca.crt")}));
        }
    }
    pod_spec["containers"] = json!([container]);
    Some(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": ctx.namespace,
            "labels": {"app.kubernetes.io/managed-by": "sealift", STEP_LABEL: step.id.as_str()},
        },
        "spec": {
            "backoffLimit": step.backoff_limit,
            "activeDeadlineSeconds": step.timeout_seconds,
            "template": {
                "metadata": {"annotations": annotations, "labels": {STEP_LABEL: step.id.as_str()}},
                "spec": pod_spec,
            },
        },
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{job} failed: {reason}{log}")]
    Failed { job: String, reason: String, log: String },
    #[error("{job} did not finish within {seconds}s")]
    Timeout { job: String, seconds: u64 },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

fn condition_true(job: &Value, type_: &str) -> Option<String> {
    job.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .map(|c| {
            format!(
                "{}: {}",
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
}

/// Creates the Job unless it exists (a resumed step), waits for it, returns its log.
/// `replace_failed`: delete a failed Job of the same name first (a retry).
pub async fn run_job(cluster: &Cluster, job: &Value, timeout: Duration, poll: Duration) -> Result<StepLog, JobError> {
    let key = ObjectKey::of(job).ok_or_else(|| {
        JobError::Cluster(ClusterError::Api {
            object: "Job".into(),
            message: "no name".into(),
        })
    })?;
    if cluster.get(&key).await?.is_none() {
        cluster.create(job).await?;
    }
    let started = Instant::now();
    loop {
        let live = cluster.get(&key).await?.unwrap_or(Value::Null);
        if condition_true(&live, "Complete").is_some() {
            let log = job_log(cluster, &key).await;
            return Ok(StepLog {
                step: job
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(STEP_LABEL))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                job: key.name.clone(),
                outcome: "succeeded".into(),
                log,
            });
        }
        if let Some(reason) = condition_true(&live, "Failed") {
            let log = job_log(cluster, &key).await;
            let shown = if log.trim().is_empty() {
                String::new()
            } else {
                format!("; log: {}", last_lines(&log, 5))
            };
            return Err(JobError::Failed {
                job: key.to_string(),
                reason,
                log: shown,
            });
        }
        if started.elapsed() > timeout {
            return Err(JobError::Timeout {
                job: key.to_string(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// The logs of the Job's pods, newest last.
pub async fn job_log(cluster: &Cluster, job: &ObjectKey) -> String {
    let pods = cluster
        .list("v1", "Pod", &job.namespace, &format!("job-name={}", job.name))
        .await
        .unwrap_or_default();
    let mut out = String::new();
    for p in pods {
        if let Some(name) = p.pointer("/metadata/name").and_then(Value::as_str) {
            out.push_str(&cluster.pod_log(&job.namespace, name).await);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_stable_and_short() {
        assert_eq!(job_name("app", "migrate", 3, ""), "app-migrate-r3");
        let long = job_name(&"a".repeat(40), &"b".repeat(40), 12, "-down");
        assert!(long.len() <= 63);
        assert_eq!(long, job_name(&"a".repeat(40), &"b".repeat(40), 12, "-down"));
        assert_ne!(long, job_name(&"a".repeat(40), &"b".repeat(40), 13, "-down"));
    }
}
