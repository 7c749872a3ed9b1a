//! Restoring a backup: checked before it starts (archive verified, bundle stored, part and
//! wave names known), then — inside a release-engine operation that re-deploys the backup's
//! version — only data comes back from the archive: Secrets, ConfigMaps, PVC definitions,
//! custom resources of the release's CRDs, and the backup steps' dumps through the restore
//! steps. Never workloads, images or RBAC.

use std::collections::BTreeSet;

use schemas::release::StepKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backup::archive::{ArchiveError, BackupId, VerifiedBackup};
use crate::backup::capture::{self, OBJECTS, SITE, TRUST};
use crate::backup::catalog::{BackupCatalog, PartGrant};
use crate::release::engine::Engine;
use crate::release::history::{ObjectKey, StepLog};
use crate::release::operation::{DataStep, Plan};
use crate::release::planner::SiteState;
use crate::store::StoredBundle;
use crate::trust_state::TrustState;

/// What a restore operation restores (kept in the persisted operation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTarget {
    /// The backup (`YYYY-MM-DDtHH-MM-SS`).
    pub backup: String,
    /// The namespace the backup's objects were taken from.
    pub source_namespace: String,
    /// Backup-step and wave names not restored.
    #[serde(default)]
    pub skip: Vec<String>,
    /// The `spec.request` id that asked for it (names its record).
    #[serde(default)]
    pub request: String,
}

/// Why a restore request is refused before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum RestoreRefusal {
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    #[error(
        "the backup is of {version}, whose bundle is not in the store: import {version} first (`sealift-agent import FILE`; on a fresh cluster `import --for-restore FILE` admits an expired bundle)"
    )]
    BundleMissing { version: String },
    #[error("unknown name(s) in svcs: {unknown}; valid names are the backup steps and waves of {version}: {valid}")]
    UnknownNames {
        unknown: String,
        version: String,
        valid: String,
    },
    #[error("a restore needs confirm: true (it replaces the application's data with the backup's)")]
    NotConfirmed,
    #[error("{0}")]
    Internal(String),
}

impl RestoreRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            RestoreRefusal::Archive(e) => e.code(),
            RestoreRefusal::BundleMissing { .. } => "bundle_not_imported",
            RestoreRefusal::UnknownNames { .. } => "unknown_restore_names",
            RestoreRefusal::NotConfirmed => "confirmation_required",
            RestoreRefusal::Internal(_) => "internal",
        }
    }
}

/// A restore request that passed its checks.
pub struct CheckedRestore {
    pub version: String,
    pub bundle: StoredBundle,
    pub target: RestoreTarget,
}

/// Checks a restore request: the archive verifies completely, the backup's bundle is stored,
/// every skipped name is a backup step or wave of that release.
pub fn check(
    engine: &Engine,
    catalog: &BackupCatalog,
    id: &BackupId,
    source_namespace: Option<String>,
    skip: Vec<String>,
    request: String,
) -> Result<CheckedRestore, RestoreRefusal> {
    let backup = catalog.open_for_restore(id, &request)?;
    let manifest = backup.manifest();
    let version = manifest.app_version.clone();
    let stored = engine
        .agent
        .store
        .list()
        .into_iter()
        .filter(|b| b.version == version && b.corrupt.is_none())
        .max_by_key(|b| (b.identity.to_string() == manifest.bundle, b.sequence))
        .ok_or_else(|| RestoreRefusal::BundleMissing {
            version: version.clone(),
        })?;
    let valid = restore_names(engine, &stored)?;
    let unknown: Vec<&String> = skip.iter().filter(|s| !valid.contains(*s)).collect();
    if !unknown.is_empty() {
        return Err(RestoreRefusal::UnknownNames {
            unknown: unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            version,
            valid: valid.into_iter().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(CheckedRestore {
        version,
        bundle: stored,
        target: RestoreTarget {
            backup: id.to_string(),
            source_namespace: source_namespace.unwrap_or_else(|| manifest.source_namespace.clone()),
            skip,
            request,
        },
    })
}

/// The names `svcs` may use: the release's backup steps and its waves.
fn restore_names(engine: &Engine, bundle: &StoredBundle) -> Result<BTreeSet<String>, RestoreRefusal> {
    let path = engine.agent.store.path_of(&bundle.identity);
    let (_, metadata) = schemas::inspect::read_metadata(&path, engine.agent.trust_state().trusted_roots())
        .map_err(|e| RestoreRefusal::Internal(format!("the stored bundle of {}: {e}", bundle.version)))?;
    let mut names: BTreeSet<String> = metadata
        .migrations
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Backup)
        .map(|s| s.id.to_string())
        .collect();
    names.extend(metadata.migrations.waves.iter().map(|w| w.name.clone()));
    Ok(names)
}

/// The site state kept in the archive (variable values, generated secrets, patches).
pub fn site_of(backup: &VerifiedBackup) -> Result<SiteState, String> {
    backup.read_json(SITE).map_err(|e| e.to_string())
}

/// Raises the agent's trust state by the archive's: never lowers it.
pub fn raise_trust(engine: &Engine, backup: &VerifiedBackup) -> Result<(), String> {
    let theirs: TrustState = backup.read_json(TRUST).map_err(|e| e.to_string())?;
    engine.agent.raise_trust(&theirs).map_err(|e| e.to_string())?;
    Ok(())
}

/// Which data objects a pass restores: Secrets, ConfigMaps and PVCs go before the manifests
/// are applied (workloads start with their data), custom resources after (their CRDs exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPass {
    Core,
    Custom,
}

/// Restores the archive's data objects of one pass into the plan's namespace. Returns what
/// it did (the `Core` pass also lists what is never restored).
pub async fn restore_objects(
    engine: &Engine,
    backup: &VerifiedBackup,
    target: &RestoreTarget,
    plan: &Plan,
    pass: DataPass,
) -> Result<Vec<StepLog>, String> {
    let objects: Vec<Value> = backup.read_json(OBJECTS).map_err(|e| e.to_string())?;
    let mut selection = select_data(objects, target, plan);
    let core = |o: &Value| o["apiVersion"] == "v1";
    selection.data.retain(|o| core(o) == (pass == DataPass::Core));
    if pass == DataPass::Custom {
        selection.ignored.clear();
    }
    let mut logs = Vec::new();
    for (key, why) in &selection.ignored {
        logs.push(StepLog {
            step: "restore".into(),
            job: key.clone(),
            outcome: "not-restored".into(),
            log: why.clone(),
        });
    }
    for object in selection.data {
        let Some(key) = ObjectKey::of(&object) else {
            continue;
        };
        if key.kind == "PersistentVolumeClaim" && engine.cluster.get(&key).await.map_err(|e| e.to_string())?.is_some() {
            logs.push(StepLog {
                step: "restore".into(),
                job: key.to_string(),
                outcome: "kept".into(),
                log: "exists; a PVC definition is restored only where it is missing".into(),
            });
            continue;
        }
        engine
            .cluster
            .apply(&object, true, false)
            .await
            .map_err(|e| format!("restoring {key}: {e}"))?;
        logs.push(StepLog {
            step: "restore".into(),
            job: key.to_string(),
            outcome: "restored".into(),
            log: String::new(),
        });
    }
    Ok(logs)
}

/// The archive's objects split into those a restore applies and those it never applies.
pub struct DataSelection {
    pub data: Vec<Value>,
    /// (object, why not).
    pub ignored: Vec<(String, String)>,
}

/// Only data: Secrets, ConfigMaps, PVC definitions and custom resources of the plan's CRDs,
/// from the source namespace, moved to the plan's; custom resources only with images the
/// plan uses; none of a skipped wave.
pub fn select_data(objects: Vec<Value>, target: &RestoreTarget, plan: &Plan) -> DataSelection {
    let custom: BTreeSet<(String, String)> = plan
        .objects
        .iter()
        .filter(|a| a.object["kind"] == "CustomResourceDefinition")
        .filter_map(|a| {
            let group = a.object.pointer("/spec/group")?.as_str()?.to_owned();
            let kind = a.object.pointer("/spec/names/kind")?.as_str()?.to_owned();
            Some((group, kind))
        })
        .collect();
    let images: BTreeSet<String> = plan.objects.iter().flat_map(|a| images_in(&a.object)).collect();
    let skipped_wave = |key: &ObjectKey| {
        plan.objects
            .iter()
            .find(|a| ObjectKey::of(&a.object).is_some_and(|k| k.kind == key.kind && k.name == key.name))
            .is_some_and(|a| target.skip.contains(&a.wave))
    };
    let mut out = DataSelection {
        data: vec![],
        ignored: vec![],
    };
    for mut object in objects {
        let Some(key) = ObjectKey::of(&object) else {
            continue;
        };
        let core_data = key.api_version == "v1" && capture::DATA_KINDS.iter().any(|(_, k)| *k == key.kind);
        let custom_data = custom.contains(&(key.group().to_owned(), key.kind.clone()));
        if !core_data && !custom_data {
            out.ignored.push((
                key.to_string(),
                "only data is restored (Secrets, ConfigMaps, PVC definitions, the release's custom resources); workloads, RBAC and other kinds come from the bundle".into(),
            ));
            continue;
        }
        if key.namespace != target.source_namespace {
            out.ignored.push((
                key.to_string(),
                format!("not in the source namespace {}", target.source_namespace),
            ));
            continue;
        }
        if skipped_wave(&key) {
            out.ignored.push((key.to_string(), "its wave is skipped".into()));
            continue;
        }
        if custom_data && let Some(image) = images_in(&object).into_iter().find(|i| !images.contains(i)) {
            out.ignored.push((
                key.to_string(),
                format!("names the image {image}, which the release does not use (a restore never brings images)"),
            ));
            continue;
        }
        object["metadata"]["namespace"] = json!(plan.namespace);
        out.data.push(object);
    }
    out
}

/// Every string under an `image` key.
fn images_in(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "image"
                    && let Some(s) = v.as_str()
                {
                    out.push(s.to_owned());
                }
                out.extend(images_in(v));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| out.extend(images_in(v))),
        _ => {}
    }
    out
}

/// Runs the release's restore steps, each reading the part of the backup step at the same
/// position (the first restore step reads the first backup step's dump); skipped names are
/// left out.
pub async fn run_restore_steps(
    engine: &Engine,
    catalog: &BackupCatalog,
    backup: &VerifiedBackup,
    target: &RestoreTarget,
    data_steps: &[DataStep],
    namespace: &str,
    revision: u32,
) -> Result<Vec<StepLog>, String> {
    let id: BackupId = target.backup.parse().map_err(|e| format!("{e}"))?;
    let backups: Vec<&DataStep> = data_steps.iter().filter(|s| s.step.kind == StepKind::Backup).collect();
    let restores: Vec<&DataStep> = data_steps.iter().filter(|s| s.step.kind == StepKind::Restore).collect();
    let mut logs = Vec::new();
    for (i, step) in restores.into_iter().enumerate() {
        let Some(source) = backups.get(i) else {
            return Err(format!("restore step {} has no backup step to read from", step.step.id));
        };
        let part = source.step.id.to_string();
        if target.skip.contains(&part) || target.skip.contains(&step.step.id.to_string()) {
            logs.push(StepLog {
                step: step.step.id.to_string(),
                job: String::new(),
                outcome: "skipped".into(),
                log: format!("{part} is skipped"),
            });
            continue;
        }
        if !backup.contains(&capture::part_entry(&part)) {
            return Err(format!(
                "the backup has no data of {part} for restore step {}",
                step.step.id
            ));
        }
        let grant = PartGrant {
            backup: id,
            part: part.clone(),
            upload: false,
        };
        capture::run_data_step(engine, catalog, grant, step, namespace, revision).await?;
        logs.push(StepLog {
            step: step.step.id.to_string(),
            job: String::new(),
            outcome: "succeeded".into(),
            log: format!("restored {part}"),
        });
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::history::AppliedObject;

    fn plan() -> Plan {
        let obj = |wave: &str, o: Value| AppliedObject {
            wave: wave.into(),
            object: o,
        };
        Plan {
            namespace: "target".into(),
            objects: vec![
                obj(
                    "cluster",
                    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                        "metadata": {"name": "widgets.x.io"},
                        "spec": {"group": "x.io", "names": {"kind": "Widget"}}}),
                ),
                obj(
                    "config",
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "target"}}),
                ),
                obj(
                    "data",
                    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "target"},
                        "spec": {"template": {"spec": {"containers": [{"image": "reg/db@sha256:1"}]}}}}),
                ),
                obj(
                    "data",
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "db-data", "namespace": "target"}}),
                ),
            ],
            ..Default::default()
        }
    }

    fn target(skip: &[&str]) -> RestoreTarget {
        RestoreTarget {
            backup: "2026-11-22t06-00-00".into(),
            source_namespace: "source".into(),
            skip: skip.iter().map(|s| (*s).to_owned()).collect(),
            request: "r1".into(),
        }
    }

    fn names(values: &[Value]) -> Vec<String> {
        values.iter().filter_map(ObjectKey::of).map(|k| k.to_string()).collect()
    }

    #[test]
    fn only_data_comes_back_moved_to_the_target_namespace() {
        let archive = vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "source"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "source"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "evil", "namespace": "source"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "admin"}}),
            json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "source"},
                "spec": {"image": "reg/db@sha256:1"}}),
            json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "bad", "namespace": "source"},
                "spec": {"image": "evil.io/miner:1"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other", "namespace": "elsewhere"}}),
        ];
        let picked = select_data(archive, &target(&[]), &plan());
        assert_eq!(
            names(&picked.data),
            ["Secret/target/s", "ConfigMap/target/cfg", "Widget/target/w"]
        );
        let ignored: Vec<&str> = picked.ignored.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            ignored,
            [
                "Deployment/source/evil",
                "ClusterRoleBinding/admin",
                "Widget/source/bad",
                "Secret/elsewhere/other"
            ]
        );
        assert!(picked.ignored[2].1.contains("evil.io/miner:1"));
    }

    #[test]
    fn a_skipped_wave_keeps_its_data() {
        let archive = vec![
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "db-data", "namespace": "source"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "source"}}),
        ];
        let picked = select_data(archive, &target(&["data"]), &plan());
        assert_eq!(names(&picked.data), ["ConfigMap/target/cfg"]);
        assert_eq!(picked.ignored[0].1, "its wave is skipped");
    }
}
