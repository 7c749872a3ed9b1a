//! The `SealiftRelease` custom resource: the one place the desired state lives.
//!
//! `spec.version` is what an admin typed; the CLI, the HTTP API, the web page and
//! `kubectl patch --type merge` all write it. The agent owns `status`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Finalizer that keeps a deleted `SealiftRelease` from vanishing unnoticed: the agent
/// removes it, records the deletion and creates the resource again. Nothing is uninstalled.
pub const FINALIZER: &str = "sealift.dev/keep-release";

/// Field manager of every write the agent makes.
pub const FIELD_MANAGER: &str = "sealift-agent";

/// Desired state of the product this agent installs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sealift.dev",
    version = "v1alpha1",
    kind = "SealiftRelease",
    plural = "sealiftreleases",
    singular = "sealiftrelease",
    shortname = "slr",
    namespaced,
    status = "SealiftReleaseStatus",
    doc = "The version of one product a Sealift agent keeps installed",
    printcolumn = r#"{"name":"VERSION","type":"string","jsonPath":".status.currentVersion"}"#,
    printcolumn = r#"{"name":"DESIRED","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"PHASE","type":"string","priority":1,"jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SealiftReleaseSpec {
    /// The version the admin typed. Empty: nothing installed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Allows moving to an older version; effective only while equal to `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_downgrade_to: Option<String>,
    /// A failed operation for the current `version` is left as it is for debugging.
    #[serde(default)]
    pub disable_rollback: bool,
    /// Start the operation although the current release is not healthy.
    #[serde(default)]
    pub ignore_current_health: bool,
    /// Skip the pre-upgrade backup.
    #[serde(default)]
    pub skip_backup: bool,
    /// A one-shot action; each `id` runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<ReleaseRequest>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    pub id: String,
    pub action: RequestAction,
    /// Target revision of a `Rollback` (default: the previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    /// Backup of a `Restore` (its timestamp, `YYYY-MM-DDtHH-MM-SS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// `Restore`: the namespace the backup was taken from (default: the backup's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// `Restore`: backup steps and waves not to restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
    /// `Uninstall`: delete PersistentVolumeClaims too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_data: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RequestAction {
    Retry,
    Rollback,
    Restore,
    Uninstall,
}

/// Observed state, written only by the agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealiftReleaseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// `Ready`, `Reconciling` or `Stalled`, plus the reason (`Stalled/UpgradeFailed`).
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Generation whose operation failed: it is not run again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Objects the deletion rule kept (CRDs, PVCs, Namespaces, objects marked keep).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<String>,
    /// The last ten revisions, newest first.
    #[serde(default)]
    pub revisions: Vec<RevisionSummary>,
}

/// A kstatus condition (`Ready`, `Reconciling`, `Stalled`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub last_transition_time: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The plan step running (`Apply`).
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    #[serde(default)]
    pub ready: u32,
    #[serde(default)]
    pub total: u32,
    #[serde(default)]
    pub image_bytes: u64,
    #[serde(default)]
    pub image_bytes_total: u64,
    #[serde(default)]
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSummary {
    pub revision: u32,
    pub version: String,
    pub sequence: u64,
    /// The bundle identity (`sha256:` of the manifest payload).
    pub bundle: String,
    /// `sha256:` of the applied manifests.
    pub applied_digest: String,
    /// `install`, `upgrade`, `rollback`, …
    pub operation: String,
    /// `deployed`, `superseded`, `failed`, `rolled-back`, `pending`.
    pub outcome: String,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// The closed list of condition reasons (PRODUCT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    Ready,
    Installing,
    Upgrading,
    RollingBack,
    Restoring,
    BackingUp,
    Uninstalling,
    Queued,
    PreflightFailed,
    InstallFailed,
    UpgradeFailed,
    RollbackFailed,
    BackupFailed,
    RestoreFailed,
    UninstallFailed,
    Ignored,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ready => "Ready",
            Reason::Installing => "Installing",
            Reason::Upgrading => "Upgrading",
            Reason::RollingBack => "RollingBack",
            Reason::Restoring => "Restoring",
            Reason::BackingUp => "BackingUp",
            Reason::Uninstalling => "Uninstalling",
            Reason::Queued => "Queued",
            Reason::PreflightFailed => "PreflightFailed",
            Reason::InstallFailed => "InstallFailed",
            Reason::UpgradeFailed => "UpgradeFailed",
            Reason::RollbackFailed => "RollbackFailed",
            Reason::BackupFailed => "BackupFailed",
            Reason::RestoreFailed => "RestoreFailed",
            Reason::UninstallFailed => "UninstallFailed",
            Reason::Ignored => "Ignored",
        }
    }

    /// The kstatus condition this reason belongs to.
    pub fn condition(self) -> &'static str {
        match self {
            Reason::Ready => "Ready",
            Reason::Installing
            | Reason::Upgrading
            | Reason::RollingBack
            | Reason::Restoring
            | Reason::BackingUp
            | Reason::Uninstalling
            | Reason::Queued => "Reconciling",
            _ => "Stalled",
        }
    }
}

impl SealiftReleaseStatus {
    /// Sets the one abnormal-true condition for `reason` (or Ready), keeping transition
    /// times of conditions whose status did not change.
    pub fn set_state(&mut self, reason: Reason, message: &str, generation: Option<i64>, now: &str) {
        let active = reason.condition();
        let mut next = Vec::new();
        for type_ in ["Ready", "Reconciling", "Stalled"] {
            let on = type_ == active;
            let status = if on { "True" } else { "False" };
            let (reason_text, msg) = if on || type_ == "Ready" {
                (reason.as_str().to_owned(), message.to_owned())
            } else {
                (format!("Not{type_}"), String::new())
            };
            let previous = self.conditions.iter().find(|c| c.type_ == type_);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.to_owned(),
            };
            // kstatus: abnormal-true conditions are present only while true.
            if type_ != "Ready" && !on {
                continue;
            }
            next.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason_text,
                message: msg,
                observed_generation: generation,
                last_transition_time,
            });
        }
        self.conditions = next;
        self.phase = if active == "Ready" {
            "Ready".to_owned()
        } else {
            format!("{active}/{}", reason.as_str())
        };
        self.observed_generation = generation;
    }

    /// The reason of the active condition, if any.
    pub fn reason(&self) -> Option<&str> {
        let active = self
            .conditions
            .iter()
            .find(|c| c.type_ != "Ready" && c.status == "True")
            .or_else(|| self.conditions.iter().find(|c| c.type_ == "Ready"))?;
        Some(active.reason.as_str())
    }
}

/// The CRD as YAML, for `deploy/` and `sealift-agent crd`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = SealiftRelease::crd();
    let value = serde_json::to_value(&crd).unwrap_or_default();
    serde_saphyr::to_string(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_kstatus() {
        let mut s = SealiftReleaseStatus::default();
        s.set_state(Reason::Upgrading, "to 2.0.0", Some(3), "t1");
        assert_eq!(s.phase, "Reconciling/Upgrading");
        let types: Vec<_> = s
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(types, [("Ready", "False"), ("Reconciling", "True")]);
        s.set_state(Reason::UpgradeFailed, "boom; rolled back to 1.0.0", Some(3), "t2");
        assert_eq!(s.phase, "Stalled/UpgradeFailed");
        assert_eq!(s.reason(), Some("UpgradeFailed"));
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, "t1", "Ready stayed False");
        s.set_state(Reason::Ready, "2.0.0 is ready", Some(4), "t3");
        assert_eq!(s.phase, "Ready");
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0].status, "True");
    }

    #[test]
    fn the_crd_has_the_printer_columns() {
        let yaml = crd_yaml();
        for col in ["VERSION", "DESIRED", "READY", "AGE"] {
            assert!(yaml.contains(&format!("name: {col}")), "{yaml}");
        }
        assert!(yaml.contains("sealiftreleases.sealift.dev"));
    }
}
