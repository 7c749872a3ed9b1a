//! Taking a backup of the deployed revision: its objects and the application namespace's data
//! objects (one LIST per kind, server-populated fields removed), the agent's own state, and the
//! dumps the release's backup steps upload. The caller holds the operation Lease.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use schemas::release::StepKind;
use serde_json::{Value, json};

use crate::backup::archive::{BackupId, BackupInfo, BackupKind, BackupStatus, BackupWriter};
use crate::backup::catalog::{BackupCatalog, PartGrant};
use crate::release::engine::Engine;
use crate::release::history::{ObjectKey, Revision};
use crate::release::jobs::{self, JobContext};
use crate::release::operation::DataStep;

/// Archive entries.
pub const OBJECTS: &str = "objects.json";
pub const REVISIONS: &str = "state/revisions.json";
pub const SITE: &str = "state/site.json";
pub const TRUST: &str = "state/trust.json";

/// The archive entry of a backup step's upload.
pub fn part_entry(step: &str) -> String {
    format!("parts/{step}")
}

/// Kinds whose objects in the application namespace are data: all of them are backed up and
/// restored (custom resources of the release's CRDs join them).
pub const DATA_KINDS: [(&str, &str); 3] = [("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim")];

/// The namespace the revision's namespaced objects live in.
pub fn namespace_of(revision: &Revision) -> String {
    revision
        .applied
        .iter()
        .find_map(|a| a.object.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

/// Starts backup `id` of `revision`: from now on it is listed as Running.
pub fn begin(
    engine: &Engine,
    catalog: &BackupCatalog,
    id: &BackupId,
    kind: BackupKind,
    revision: &Revision,
) -> Result<BackupWriter, String> {
    let namespace = namespace_of(revision);
    let info = BackupInfo {
        product: engine.product(),
        app_version: revision.version.clone(),
        bundle: revision.bundle.to_string(),
        sequence: revision.sequence,
        source_namespace: namespace.clone(),
        kind,
        revision: Some(revision.revision),
    };
    BackupWriter::create(catalog.storage.clone(), *id, info, catalog.recipient()).map_err(|e| e.to_string())
}

/// Takes the backup `writer` began (the caller holds the Lease). On any error it is marked
/// Failed with the reason.
pub async fn capture(
    engine: &Engine,
    catalog: &BackupCatalog,
    mut writer: BackupWriter,
    revision: &Revision,
) -> Result<BackupStatus, String> {
    let id = writer.id();
    let namespace = namespace_of(revision);
    let taken = fill(engine, catalog, &mut writer, &id, revision, &namespace).await;
    match taken {
        Ok(()) => writer.finish(catalog.signing_key()).map_err(|e| e.to_string()),
        Err(e) => {
            let reason = format!("backup {id}: {e}");
            if let Err(m) = writer.fail(&reason) {
                tracing::error!("cannot mark backup {id} failed: {m}");
            }
            Err(reason)
        }
    }
}

async fn fill(
    engine: &Engine,
    catalog: &BackupCatalog,
    writer: &mut BackupWriter,
    id: &BackupId,
    revision: &Revision,
    namespace: &str,
) -> Result<(), String> {
    let objects = collect_objects(engine, revision, namespace).await?;
    let entries: [(&str, Vec<u8>); 4] = [
        (OBJECTS, to_json(&objects)?),
        (REVISIONS, to_json(&engine.history.all().map_err(|e| e.to_string())?)?),
        (
            SITE,
            to_json(&crate::release::planner::load_site(engine).map_err(|e| e.to_string())?)?,
        ),
        (TRUST, to_json(&engine.agent.trust_state())?),
    ];
    for (path, bytes) in entries {
        writer.add_bytes(path, &bytes).map_err(|e| e.to_string())?;
    }
    for step in revision.data_steps.iter().filter(|s| s.step.kind == StepKind::Backup) {
        run_backup_step(engine, catalog, id, revision, namespace, step).await?;
        if !catalog.part_stored(id, step.step.id.as_str()) {
            return Err(format!(
                "backup step {} finished without uploading its data (PUT $SEALIFT_BACKUP_URL)",
                step.step.id
            ));
        }
    }
    Ok(())
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec_pretty(value).map_err(|e| e.to_string())
}

/// Environment of a backup or restore step Job: where it sends or reads its part.
pub fn step_env(
    engine: &Engine,
    id: &BackupId,
    part: &str,
    token: &str,
) -> Result<Vec<schemas::release::EnvVar>, String> {
    let url = engine.cfg.agent_url.clone().ok_or(
        "kubernetes.agentUrl is not set: backup and restore steps cannot reach the agent to send or read their data",
    )?;
    let var = |name: &str, value: String| schemas::release::EnvVar {
        name: name.to_owned(),
        value,
    };
    Ok(vec![
        var("SEALIFT_AGENT_URL", url.clone()),
        var("SEALIFT_STEP_TOKEN", token.to_owned()),
        var("SEALIFT_BACKUP", id.to_string()),
        var(
            "SEALIFT_BACKUP_URL",
            format!("{}/api/v1/backups/{id}/parts/{part}", url.trim_end_matches('/')),
        ),
    ])
}

/// The Job of a backup or restore step for backup `id` (its name carries the backup's time).
pub fn data_job(
    engine: &Engine,
    step: &DataStep,
    namespace: &str,
    revision: u32,
    id: &BackupId,
    env: Vec<schemas::release::EnvVar>,
) -> Result<Value, String> {
    let ctx = JobContext {
        namespace,
        release: &step.release,
        revision,
        image: step.image.clone(),
        env,
        mount_ca: engine.cfg.agent_ca.is_some(),
    };
    let mut job = jobs::migration_job(&step.step, &ctx, false).ok_or("no job")?;
    let stamp: String = id.to_string().chars().filter(|c| *c != '-').collect();
    job["metadata"]["name"] = json!(jobs::job_name(
        &step.release,
        step.step.id.as_str(),
        revision,
        &format!("-{stamp}")
    ));
    Ok(job)
}

/// Runs one step Job with a one-time grant for its part, then removes the Job.
pub async fn run_data_step(
    engine: &Engine,
    catalog: &BackupCatalog,
    grant: PartGrant,
    step: &DataStep,
    namespace: &str,
    revision: u32,
) -> Result<(), String> {
    let id = grant.backup;
    let part = grant.part.clone();
    let token = catalog.grant(grant);
    let result = async {
        let env = step_env(engine, &id, &part, &token)?;
        let job = data_job(engine, step, namespace, revision, &id, env)?;
        let timeout = Duration::from_secs(u64::from(step.step.timeout_seconds) + 30).max(engine.cfg.job_timeout_floor);
        jobs::run_job(&engine.cluster, &job, timeout, engine.cfg.poll)
            .await
            .map_err(|e| format!("step {}: {e}", step.step.id))?;
        if let Some(key) = ObjectKey::of(&job)
            && let Err(e) = engine.cluster.delete(&key).await
        {
            tracing::warn!("cannot remove the finished Job {key}: {e}");
        }
        Ok(())
    }
    .await;
    catalog.revoke(&token);
    result
}

async fn run_backup_step(
    engine: &Engine,
    catalog: &BackupCatalog,
    id: &BackupId,
    revision: &Revision,
    namespace: &str,
    step: &DataStep,
) -> Result<(), String> {
    let grant = PartGrant {
        backup: *id,
        part: step.step.id.to_string(),
        upload: true,
    };
    run_data_step(engine, catalog, grant, step, namespace, revision.revision).await
}

/// The revision's objects and the namespace's data objects, one LIST per kind.
pub async fn collect_objects(engine: &Engine, revision: &Revision, namespace: &str) -> Result<Vec<Value>, String> {
    let inventory: BTreeSet<ObjectKey> = revision.inventory().into_iter().collect();
    // Kinds to list, and whether every object of the kind in the namespace is taken (data).
    let mut kinds: BTreeMap<(String, String), bool> = BTreeMap::new();
    for key in &inventory {
        kinds
            .entry((key.api_version.clone(), key.kind.clone()))
            .or_insert(false);
    }
    for (api_version, kind) in DATA_KINDS {
        kinds.insert((api_version.to_owned(), kind.to_owned()), true);
    }
    for (api_version, kind) in custom_kinds(revision) {
        kinds.insert((api_version, kind), true);
    }
    let mut out = Vec::new();
    for ((api_version, kind), all) in kinds {
        let namespaced = engine
            .cluster
            .is_namespaced(&api_version, &kind)
            .await
            .map_err(|e| e.to_string())?;
        let Some(namespaced) = namespaced else {
            // Not served (a CRD removed by hand): nothing of it exists to back up.
            continue;
        };
        let listed = engine
            .cluster
            .list(&api_version, &kind, if namespaced { namespace } else { "" }, "")
            .await
            .map_err(|e| e.to_string())?;
        for mut object in listed {
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
            let Some(key) = ObjectKey::of(&object) else {
                continue;
            };
            let take = inventory.contains(&key) || (all && namespaced && !is_system_object(&object));
            if take {
                out.push(portable(object));
            }
        }
    }
    Ok(out)
}

/// `(apiVersion, kind)` of the custom resources the revision's CRDs define (served version).
pub fn custom_kinds(revision: &Revision) -> Vec<(String, String)> {
    revision
        .applied
        .iter()
        .filter(|a| a.object["kind"] == "CustomResourceDefinition")
        .filter_map(|a| {
            let spec = a.object.get("spec")?;
            let group = spec.get("group")?.as_str()?;
            let kind = spec.pointer("/names/kind")?.as_str()?;
            let versions = spec.get("versions")?.as_array()?;
            let version = versions
                .iter()
                .find(|v| v["storage"] == true)
                .or_else(|| versions.first())?
                .get("name")?
                .as_str()?;
            Some((format!("{group}/{version}"), kind.to_owned()))
        })
        .collect()
}

/// Objects Kubernetes or the agent itself keeps in every namespace.
fn is_system_object(object: &Value) -> bool {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    (kind == "ConfigMap" && (name == "kube-root-ca.crt" || name == jobs::CA_CONFIG_MAP))
        || (kind == "Secret" && object["type"] == "kubernetes.io/service-account-token")
}

/// The object without what the API server fills in (so it can be applied to another cluster).
pub fn portable(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
            "ownerReferences",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(field);
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.retain(|k, _| !k.starts_with("pv.kubernetes.io/") && !k.contains("storage-provisioner"));
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if object["kind"] == "PersistentVolumeClaim"
        && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
    {
        // Bound to a volume of the cluster it came from.
        spec.remove("volumeName");
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_objects_lose_server_fields() {
        let pvc = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "sample", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{}],
                "annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "me"}},
            "spec": {"volumeName": "pv-1", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound"},
        });
        assert_eq!(
            portable(pvc),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "sample", "annotations": {"keep": "me"}},
                "spec": {"resources": {"requests": {"storage": "1Gi"}}},
            })
        );
    }

    #[test]
    fn system_objects_are_not_data() {
        assert!(is_system_object(
            &json!({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}})
        ));
        assert!(is_system_object(
            &json!({"kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "t"}})
        ));
        assert!(!is_system_object(
            &json!({"kind": "Secret", "metadata": {"name": "db"}})
        ));
    }
}
