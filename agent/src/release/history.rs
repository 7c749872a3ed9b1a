//! Revisions: what each operation applied, in the agent's store (`release/revisions/N.json`).
//! The custom resource's status carries the last ten summaries; the full records —
//! inventory, applied manifests, their differences from the signed render, migration logs —
//! stay here and are served by `GET /api/v1/revisions/{n}`.

use std::path::{Path, PathBuf};

use schemas::{Digest, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::persist;
use crate::release::resource::RevisionSummary;

/// One object by its identity in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of(object: &Value) -> Option<Self> {
        let meta = object.get("metadata")?;
        Some(Self {
            api_version: object.get("apiVersion")?.as_str()?.to_owned(),
            kind: object.get("kind")?.as_str()?.to_owned(),
            namespace: meta.get("namespace").and_then(Value::as_str).unwrap_or("").to_owned(),
            name: meta.get("name")?.as_str()?.to_owned(),
        })
    }

    /// The group of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// How an operation ended for its revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pending,
    Deployed,
    Superseded,
    Failed,
    RolledBack,
    Uninstalled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Deployed => "deployed",
            Outcome::Superseded => "superseded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled-back",
            Outcome::Uninstalled => "uninstalled",
        }
    }
}

/// A migration step or hook that ran, with its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepLog {
    pub step: String,
    pub job: String,
    /// `succeeded`, `failed`, `reverted`.
    pub outcome: String,
    #[serde(default)]
    pub log: String,
}

/// Everything one revision applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: u32,
    pub version: String,
    pub sequence: u64,
    #[schema(value_type = String)]
    pub bundle: Digest,
    /// `install`, `upgrade`, `rollback`, `uninstall`.
    pub operation: String,
    pub outcome: Outcome,
    #[schema(value_type = String)]
    pub started: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub finished: Option<Timestamp>,
    #[serde(default)]
    pub reason: String,
    /// Who asked (token name, or `kubectl` for a spec change seen by the controller).
    #[serde(default)]
    pub requested_by: String,
    #[serde(default)]
    pub flags: Vec<String>,
    /// `sha256:` of the applied manifests as written below.
    pub applied_digest: String,
    /// The objects applied, in apply order, with their waves.
    pub applied: Vec<AppliedObject>,
    /// Where the applied objects differ from the signed render (variables, images); values of
    /// sensitive variables are not shown.
    #[serde(default)]
    pub differences: Vec<String>,
    #[serde(default)]
    pub steps: Vec<StepLog>,
    #[serde(default)]
    pub left_behind: Vec<String>,
    /// The plan's step Jobs (a later rollback runs the down steps of those that ran).
    #[serde(default)]
    pub jobs: Vec<crate::release::operation::PlannedJob>,
    /// Where sensitive variables' values sit in `applied` (hidden by [`Revision::redacted`]).
    #[serde(default)]
    pub sensitive: Vec<crate::release::operation::SensitiveSlot>,
    /// The release's backup and restore steps (what a backup of this revision runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_steps: Vec<crate::release::operation::DataStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedObject {
    pub wave: String,
    pub object: Value,
}

impl Revision {
    /// Down-step Jobs of the reversible migrations that ran, newest first.
    pub fn down_steps(&self) -> Vec<(String, Value)> {
        self.jobs
            .iter()
            .rev()
            .filter(|j| !j.hook && self.steps.iter().any(|l| l.step == j.id && l.outcome == "succeeded"))
            .filter_map(|j| j.down.clone().map(|d| (j.id.clone(), d)))
            .collect()
    }

    /// Migrations that ran and cannot be undone.
    pub fn irreversible_ran(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|j| {
                !j.hook && !j.reversible && self.steps.iter().any(|l| l.step == j.id && l.outcome == "succeeded")
            })
            .map(|j| j.id.clone())
            .collect()
    }

    /// The revision as the API shows it: Secret values and step tokens replaced by
    /// `<redacted>` (the full record stays in the agent's store).
    pub fn redacted(&self) -> Revision {
        fn hide_step_token(job: &mut Value) {
            for c in job
                .pointer_mut("/spec/template/spec/containers")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for e in c["env"].as_array_mut().into_iter().flatten() {
                    if e["name"] == "SEALIFT_STEP_TOKEN" {
                        e["value"] = Value::String("<redacted>".into());
                    }
                }
            }
        }
        let mut r = self.clone();
        for a in &mut r.applied {
            if a.object["kind"] == "Secret" {
                for field in ["data", "stringData"] {
                    if let Some(m) = a.object.get_mut(field).and_then(Value::as_object_mut) {
                        for v in m.values_mut() {
                            *v = Value::String("<redacted>".into());
                        }
                    }
                }
            }
        }
        for slot in &self.sensitive {
            if let Some(a) = r
                .applied
                .iter_mut()
                .find(|a| ObjectKey::of(&a.object).as_ref() == Some(&slot.object))
                && let Some(v) = a.object.pointer_mut(&slot.pointer)
            {
                *v = Value::String("<redacted>".into());
            }
        }
        for j in &mut r.jobs {
            hide_step_token(&mut j.object);
            if let Some(d) = j.down.as_mut() {
                hide_step_token(d);
            }
        }
        r
    }

    pub fn inventory(&self) -> Vec<ObjectKey> {
        self.applied.iter().filter_map(|a| ObjectKey::of(&a.object)).collect()
    }

    pub fn summary(&self) -> RevisionSummary {
        RevisionSummary {
            revision: self.revision,
            version: self.version.clone(),
            sequence: self.sequence,
            bundle: self.bundle.to_string(),
            applied_digest: self.applied_digest.clone(),
            operation: self.operation.clone(),
            outcome: self.outcome.as_str().to_owned(),
            started: self.started.to_string(),
            finished: self.finished.map(|t| t.to_string()),
            reason: self.reason.clone(),
        }
    }
}

/// `sha256:` over the canonical JSON of the applied objects.
pub fn applied_digest(applied: &[AppliedObject]) -> String {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(applied).unwrap_or_default();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The revision records on disk.
pub struct History {
    dir: PathBuf,
}

impl History {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fs_err::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_owned() })
    }

    fn path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{n:06}.json"))
    }

    pub fn write(&self, revision: &Revision) -> std::io::Result<()> {
        persist::write_json(&self.path(revision.revision), revision)
    }

    pub fn get(&self, n: u32) -> std::io::Result<Option<Revision>> {
        persist::read_json(&self.path(n))
    }

    /// Every revision, oldest first.
    pub fn all(&self) -> std::io::Result<Vec<Revision>> {
        let mut numbers = Vec::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".json").and_then(|n| n.parse::<u32>().ok()) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut out = Vec::new();
        for n in numbers {
            if let Some(r) = self.get(n)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn next_number(&self) -> std::io::Result<u32> {
        Ok(self.all()?.last().map(|r| r.revision + 1).unwrap_or(1))
    }

    /// The revision currently deployed, if any.
    pub fn deployed(&self) -> std::io::Result<Option<Revision>> {
        Ok(self.all()?.into_iter().rev().find(|r| r.outcome == Outcome::Deployed))
    }

    /// The newest revision of `version` that was deployed at some point.
    pub fn last_good_of(&self, version: &str) -> std::io::Result<Option<Revision>> {
        Ok(self
            .all()?
            .into_iter()
            .rev()
            .find(|r| r.version == version && matches!(r.outcome, Outcome::Deployed | Outcome::Superseded)))
    }

    /// The last ten, newest first.
    pub fn summaries(&self) -> std::io::Result<Vec<RevisionSummary>> {
        Ok(self.all()?.iter().rev().take(10).map(Revision::summary).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revisions_shown_by_the_api_hide_secrets_sensitive_slots_and_step_tokens() {
        let rev: Revision = serde_json::from_value(json!({
            "revision": 1, "version": "1.0.0", "sequence": 1,
            "bundle": format!("sha256:{}", "0".repeat(64)),
            "operation": "install", "outcome": "deployed", "started": "2026-01-01T00:00:00Z",
            "appliedDigest": "sha256:x",
            "applied": [
                {"wave": "rest", "object": {"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "db", "namespace": "app"}, "data": {"pw": "c2VjcmV0"}}},
                {"wave": "rest", "object": {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "cfg", "namespace": "app"}, "data": {"DSN": "postgres://u:secret@db", "MODE": "fast"}}},
            ],
            "sensitive": [{"object": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "app", "name": "cfg"},
                "pointer": "/data/DSN"}],
            "jobs": [{"id": "m", "phase": "pre", "weight": 0, "reversible": false, "hook": false,
                "object": {"spec": {"template": {"spec": {"containers": [{"name": "step",
                    "env": [{"name": "SEALIFT_STEP_TOKEN", "value": "t0ken"}, {"name": "X", "value": "1"}]}]}}}}}],
        }))
        .unwrap();
        let shown = serde_json::to_string(&rev.redacted()).unwrap();
        for hidden in ["c2VjcmV0", "postgres://u:secret@db", "t0ken"] {
            assert!(!shown.contains(hidden), "{hidden} shown: {shown}");
        }
        assert!(
            shown.contains("\"MODE\":\"fast\"") && shown.contains("\"value\":\"1\""),
            "{shown}"
        );
        // The record on disk keeps everything.
        assert!(serde_json::to_string(&rev).unwrap().contains("postgres://u:secret@db"));
    }
}
