//! One operation (install, upgrade, rollback, uninstall) as a persisted plan. The record in
//! `release/operation.json` is rewritten atomically after every completed step and after every
//! object applied, so an agent killed at any moment resumes where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use schemas::{Digest, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::persist;
use crate::release::history::{AppliedObject, ObjectKey, StepLog};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperationKind {
    Install,
    Upgrade,
    Rollback,
    Uninstall,
    /// Re-deploys a backup's version and restores its data.
    Restore,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Install => "install",
            OperationKind::Upgrade => "upgrade",
            OperationKind::Rollback => "rollback",
            OperationKind::Uninstall => "uninstall",
            OperationKind::Restore => "restore",
        }
    }
}

/// The plan's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    Lock,
    Verify,
    Render,
    Preflight,
    Persist,
    Stage,
    Backup,
    PreHooks,
    Apply,
    PostHooks,
    Prune,
    Record,
}

impl Step {
    pub const ALL: [Step; 12] = [
        Step::Lock,
        Step::Verify,
        Step::Render,
        Step::Preflight,
        Step::Persist,
        Step::Stage,
        Step::Backup,
        Step::PreHooks,
        Step::Apply,
        Step::PostHooks,
        Step::Prune,
        Step::Record,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Lock => "Lock",
            Step::Verify => "Verify",
            Step::Render => "Render",
            Step::Preflight => "Preflight",
            Step::Persist => "Persist",
            Step::Stage => "Stage",
            Step::Backup => "Backup",
            Step::PreHooks => "PreHooks",
            Step::Apply => "Apply",
            Step::PostHooks => "PostHooks",
            Step::Prune => "Prune",
            Step::Record => "Record",
        }
    }

    /// Steps before `Persist` write nothing and are simply run again after a restart.
    pub fn writes(self) -> bool {
        self >= Step::Persist
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flags {
    #[serde(default)]
    pub disable_rollback: bool,
    #[serde(default)]
    pub ignore_current_health: bool,
    #[serde(default)]
    pub skip_backup: bool,
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Uninstall only: delete PersistentVolumeClaims too.
    #[serde(default)]
    pub delete_data: bool,
}

impl Flags {
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (on, name) in [
            (self.disable_rollback, "disableRollback"),
            (self.ignore_current_health, "ignoreCurrentHealth"),
            (self.skip_backup, "skipBackup"),
            (self.allow_downgrade, "allowDowngrade"),
            (self.delete_data, "deleteData"),
        ] {
            if on {
                out.push(name.to_owned());
            }
        }
        out
    }
}

/// A migration step or Helm hook, as a Job (or hook object) ready to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedJob {
    /// Step id (`add-column`) or hook object name.
    pub id: String,
    /// `pre` or `post`.
    pub phase: String,
    pub weight: i32,
    pub object: Value,
    /// For reversible migrations: the Job running the down step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<Value>,
    pub reversible: bool,
    /// Helm hook delete policies (`hook-succeeded`, `hook-failed`, `before-hook-creation`).
    #[serde(default)]
    pub delete_policies: Vec<String>,
    /// A Helm hook (true) or a vendor migration step (false).
    pub hook: bool,
    /// SHA-256 of the one-time token in the Job's `SEALIFT_STEP_TOKEN` (valid while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// What the operation will apply, fixed at `Persist`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The application namespace.
    pub namespace: String,
    /// Objects in apply order (Namespaces and CRDs first, then the waves).
    pub objects: Vec<AppliedObject>,
    /// Wave names in order, including the leading `cluster` wave of Namespaces and CRDs.
    pub waves: Vec<String>,
    pub jobs: Vec<PlannedJob>,
    pub differences: Vec<String>,
    /// Site secrets generated for this plan (kept in the agent's store).
    #[serde(default)]
    pub generated: BTreeMap<String, String>,
    /// Where values of sensitive variables sit in the applied objects (hidden from the API).
    #[serde(default)]
    pub sensitive: Vec<SensitiveSlot>,
    /// The release's backup and restore steps, their images resolved (run by backups and
    /// restores, not by this operation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_steps: Vec<DataStep>,
}

/// A backup or restore step of a release, ready to become a Job for one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataStep {
    #[schema(value_type = Object)]
    pub step: schemas::release::Step,
    /// The step's image, rewritten to the cluster registry by digest.
    pub image: String,
    /// The release name (Job names start with it).
    pub release: String,
}

/// A JSON pointer in one applied object holding a sensitive variable's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SensitiveSlot {
    #[schema(value_type = Object)]
    pub object: ObjectKey,
    pub pointer: String,
}

/// The state of the automatic rollback after a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackProgress {
    pub down_steps_done: Vec<String>,
    pub reapplied: bool,
    pub cleaned: bool,
    /// The pre-upgrade backup's data was restored (after an irreversible migration).
    #[serde(default)]
    pub data_restored: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: String,
    pub kind: OperationKind,
    pub version: String,
    pub bundle: Digest,
    pub sequence: u64,
    /// The revision number this operation writes.
    pub revision: u32,
    /// Rollback only: the recorded revision whose manifests are re-applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<u32>,
    /// The deployed revision when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub flags: Flags,
    pub requested_by: String,
    pub started: Timestamp,
    /// Steps completed, in order.
    pub done: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Objects applied so far (resume skips nothing: applying again is idempotent, but
    /// `created` must survive).
    #[serde(default)]
    pub applied: BTreeSet<ObjectKey>,
    /// Objects that did not exist before this operation applied them.
    #[serde(default)]
    pub created: BTreeSet<ObjectKey>,
    #[serde(default)]
    pub step_logs: Vec<StepLog>,
    /// Jobs and hooks this operation created (so a resumed step finds them instead of
    /// replacing them).
    #[serde(default)]
    pub started_jobs: Vec<String>,
    /// Set once the operation failed; the failure policy is then running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackProgress>,
    /// Objects kept by the deletion rule.
    #[serde(default)]
    pub left_behind: Vec<String>,
    /// Shown in the final status and audited (a rollback target that is expired or revoked).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Restore only: the backup and what to restore from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<crate::backup::restore::RestoreTarget>,
    /// The backup this operation took at its Backup step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: Step,
    pub cause: String,
}

impl Operation {
    pub fn next_step(&self) -> Option<Step> {
        Step::ALL.into_iter().find(|s| !self.done.contains(s))
    }

    /// What this operation is, for 409s and `Queued` messages.
    pub fn describe(&self) -> String {
        format!(
            "{} to {} (revision {})",
            self.kind.as_str(),
            self.version,
            self.revision
        )
    }
}

/// `release/operation.json`: the operation in flight, if any.
pub struct OperationFile {
    path: PathBuf,
}

impl OperationFile {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("operation.json"),
        }
    }

    pub fn load(&self) -> std::io::Result<Option<Operation>> {
        persist::read_json(&self.path)
    }

    pub fn save(&self, op: &Operation) -> std::io::Result<()> {
        persist::write_json(&self.path, op)
    }

    pub fn clear(&self) -> std::io::Result<()> {
        match fs_err::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
