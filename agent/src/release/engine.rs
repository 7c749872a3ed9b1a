//! The release engine: runs one operation at a time as a persisted plan under the Lease,
//! and the failure policy (automatic rollback, or leaving the failed revision for debugging).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use schemas::Timestamp;
use serde_json::{Value, json};

use crate::backup::catalog::BackupCatalog;
use crate::release::cluster::{Cluster, ClusterError};
use crate::release::history::{AppliedObject, History, ObjectKey, Outcome, Revision, StepLog, applied_digest};
use crate::release::jobs;
use crate::release::lease::{LeaseError, LeaseLock};
use crate::release::operation::{Failure, Flags, Operation, OperationFile, OperationKind, PlannedJob, Step};
use crate::release::resource::{Progress, Reason, SealiftRelease, SealiftReleaseStatus};
use crate::release::rollout::{self, WaitError};
use crate::release::{planner, preflight};
use crate::service::Agent;
use crate::store::StoredBundle;

/// Where the engine runs and how patient it is.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The agent's namespace: the `SealiftRelease` and the Lease live here.
    pub namespace: String,
    /// Overrides the bundle's namespace for the application.
    pub app_namespace: Option<String>,
    /// This agent's identity in the Lease (pod name + a random suffix).
    pub identity: String,
    pub lease_seconds: i32,
    pub wave_timeout: Duration,
    pub job_timeout_floor: Duration,
    pub poll: Duration,
    /// A wave in which no object changed for this long fails as stalled.
    pub stall_window: Duration,
    /// The longest an operation's forward steps may take in all.
    pub operation_timeout: Duration,
    /// Host (and port) nodes pull images from.
    pub pull_host: String,
    /// `SEALIFT_AGENT_URL` for step Jobs.
    pub agent_url: Option<String>,
    /// The agent's CA (PEM), mounted into step Jobs when the agent serves TLS under it.
    pub agent_ca: Option<String>,
}

/// What a running step Job may ask the agent about itself (`GET /api/v1/step/context`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepContext {
    pub step: String,
    pub job: String,
    pub namespace: String,
    pub operation: String,
    pub revision: u32,
    pub from_version: Option<String>,
    pub to_version: String,
}

/// Why a request for an operation was refused before it started.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("version {version} is not imported; imported versions: {imported}")]
    NotImported { version: String, imported: String },
    #[error(
        "{to} is older than the current version {from}. Downgrading is not recommended without asking the vendor: \
         the older version may not be backward compatible with data the newer one wrote, and the application may \
         become unstable. To go ahead anyway: --allow-downgrade (spec.allowDowngradeTo: {to})"
    )]
    Downgrade { from: String, to: String },
    #[error("{0}")]
    Busy(String),
    #[error("{version} is already the current version")]
    AlreadyCurrent { version: String },
    #[error("no recorded revision of {version}; use `upgrade {version} --allow-downgrade`")]
    NoRevision { version: String },
    #[error("nothing is installed")]
    NothingInstalled,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::NotImported { .. } => "not_imported",
            EngineError::Downgrade { .. } => "downgrade_needs_confirmation",
            EngineError::Busy(_) => "operation_running",
            EngineError::AlreadyCurrent { .. } => "already_current",
            EngineError::NoRevision { .. } => "no_revision",
            EngineError::NothingInstalled => "nothing_installed",
            EngineError::Cluster(_) => "cluster_error",
            EngineError::Internal(_) => "internal",
        }
    }
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

/// A step failed: where, and why (one line).
#[derive(Debug)]
struct StepFailure {
    step: Step,
    cause: String,
}

impl StepFailure {
    fn at(step: Step) -> impl FnOnce(String) -> StepFailure {
        move |cause| StepFailure { step, cause }
    }
}

pub struct Engine {
    pub agent: Arc<Agent>,
    /// Backups of the application (archives, settings, grants of step Jobs).
    pub backups: Arc<BackupCatalog>,
    pub cluster: Cluster,
    pub cfg: EngineConfig,
    pub history: History,
    ops: OperationFile,
    lease: LeaseLock,
    /// The operation running in this process.
    running: Mutex<Option<String>>,
    /// Tokens of step Jobs running now (SHA-256 → what the step may know).
    step_tokens: Mutex<std::collections::BTreeMap<String, StepContext>>,
    /// Generations of the resource written through the API, and by whom.
    requesters: Mutex<std::collections::BTreeMap<i64, String>>,
    status: tokio::sync::Mutex<SealiftReleaseStatus>,
    progress: tokio::sync::watch::Sender<Progress>,
    /// Publishes Kubernetes Events on the `SealiftRelease`.
    recorder: kube::runtime::events::Recorder,
    /// The step the last Event was published for (one Event per step, not per object).
    last_event_step: Mutex<Option<Step>>,
}

impl Engine {
    pub fn new(
        agent: Arc<Agent>,
        backups: Arc<BackupCatalog>,
        client: kube::Client,
        cfg: EngineConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = agent.store.dir().join("release");
        fs_err::create_dir_all(&dir)?;
        let history = History::open(&dir.join("revisions"))?;
        let lease = LeaseLock {
            namespace: cfg.namespace.clone(),
            name: format!("sealift-{}", agent.config.trust.product),
            identity: cfg.identity.clone(),
            duration_seconds: cfg.lease_seconds,
        };
        let (progress, _) = tokio::sync::watch::channel(Progress::default());
        let recorder = kube::runtime::events::Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "sealift-agent".into(),
                instance: Some(cfg.identity.clone()),
            },
        );
        Ok(Arc::new(Self {
            agent,
            backups,
            recorder,
            last_event_step: Mutex::new(None),
            cluster: Cluster::new(client),
            cfg,
            history,
            ops: OperationFile::new(&dir),
            lease,
            running: Mutex::new(None),
            requesters: Mutex::new(std::collections::BTreeMap::new()),
            step_tokens: Mutex::new(std::collections::BTreeMap::new()),
            status: tokio::sync::Mutex::new(SealiftReleaseStatus::default()),
            progress,
        }))
    }

    pub fn product(&self) -> String {
        self.agent.config.trust.product.to_string()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The operation running in this process, if any.
    pub fn running(&self) -> Option<String> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn status(&self) -> SealiftReleaseStatus {
        self.status.lock().await.clone()
    }

    fn api(&self) -> Api<SealiftRelease> {
        Api::namespaced(self.cluster.client().clone(), &self.cfg.namespace)
    }

    /// Adopts the status found on the resource (after a restart).
    pub async fn adopt_status(&self, found: Option<SealiftReleaseStatus>) {
        {
            // What the resource says is what was last written: the base of later patches.
            let mut s = self.status.lock().await;
            *s = found.unwrap_or_default();
        }
        // Then what the store knows (a process killed after recording a revision but before
        // writing the status leaves the resource behind the history).
        let current = self.history.deployed().ok().flatten().map(|d| d.version);
        self.update_status(|s| s.current_version = current).await;
    }

    /// Changes the status and writes it to the resource as a JSON merge patch from the last
    /// written status (fields that became empty are removed with `null`).
    pub async fn update_status(&self, change: impl FnOnce(&mut SealiftReleaseStatus)) {
        let body = {
            let mut s = self.status.lock().await;
            let before = serde_json::to_value(&*s).unwrap_or(Value::Null);
            change(&mut s);
            s.revisions = self.history.summaries().unwrap_or_default();
            let after = serde_json::to_value(&*s).unwrap_or(Value::Null);
            json!({ "status": merge_patch(&before, &after) })
        };
        let params = PatchParams::default();
        if let Err(e) = self
            .api()
            .patch_status(&self.product(), &params, &Patch::Merge(&body))
            .await
        {
            tracing::warn!("cannot write the SealiftRelease status: {e}");
        }
    }

    pub async fn set_state(&self, reason: Reason, message: &str, generation: Option<i64>) {
        let now = Timestamp::now().to_string();
        self.update_status(|s| s.set_state(reason, message, generation, &now))
            .await;
    }

    /// Publishes a Kubernetes Event on the `SealiftRelease` (best effort: a cluster that
    /// refuses Events does not stop an operation).
    pub async fn event(&self, warning: bool, reason: &str, note: &str) {
        use kube::Resource as _;
        use kube::runtime::events::{Event, EventType};
        let Ok(release) = self.api().get(&self.product()).await else {
            return;
        };
        let reference = release.object_ref(&());
        let mut note = note.to_owned();
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::debug!("cannot publish an Event: {e}");
        }
    }

    async fn report(&self, step: Step, wave: Option<&str>, ready: u32, total: u32, message: &str) {
        let new_step = {
            let mut last = self.last_event_step.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *last != Some(step);
            *last = Some(step);
            changed
        };
        if new_step {
            self.event(false, step.as_str(), message).await;
        }
        let p = Progress {
            step: step.as_str().to_owned(),
            wave: wave.map(str::to_owned),
            ready,
            total,
            image_bytes: self.agent.push_progress.snapshot().bytes_done,
            image_bytes_total: self.agent.push_progress.snapshot().bytes_total,
            message: message.to_owned(),
        };
        self.progress.send_replace(p.clone());
        self.update_status(|s| s.progress = Some(p)).await;
    }

    // ---------------------------------------------------------------------------------------
    // Front doors

    /// The stored bundle for a typed version, or the refusal listing what is imported.
    pub fn bundle_for(&self, version: &str) -> Result<StoredBundle, EngineError> {
        let list = self.agent.store.list();
        let mut candidates: Vec<&StoredBundle> = list.iter().filter(|b| b.version == version).collect();
        candidates.sort_by_key(|b| std::cmp::Reverse(b.sequence));
        match candidates.first() {
            Some(b) => Ok((*b).clone()),
            None => {
                let mut versions: Vec<&StoredBundle> = list.iter().collect();
                versions.sort_by_key(|b| std::cmp::Reverse(b.semver()));
                let mut names: Vec<String> = versions.iter().map(|b| b.version.clone()).collect();
                names.dedup();
                Err(EngineError::NotImported {
                    version: version.to_owned(),
                    imported: if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                })
            }
        }
    }

    /// Checks an upgrade request the way the controller will, so the API can answer at once.
    pub fn check_upgrade(&self, version: &str, allow_downgrade: bool) -> Result<StoredBundle, EngineError> {
        if let Some(op) = self.running() {
            return Err(EngineError::Busy(format!("{op} is running")));
        }
        let bundle = self.bundle_for(version)?;
        if let Ok(Some(current)) = self.history.deployed() {
            let from = semver::Version::parse(&current.version).map_err(internal)?;
            if bundle.semver() < from && !allow_downgrade {
                return Err(EngineError::Downgrade {
                    from: current.version,
                    to: version.to_owned(),
                });
            }
        }
        Ok(bundle)
    }

    /// Writes version and flags to the resource in one merge patch, and remembers who asked
    /// for the generation it produced (a later `kubectl patch` is attributed to kubectl).
    /// Returns the generation the patch produced.
    pub async fn patch_spec(&self, spec: Value, requested_by: &str) -> Result<Option<i64>, EngineError> {
        let patched = self
            .api()
            .patch(
                &self.product(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .map_err(|e| {
                EngineError::Cluster(ClusterError::Api {
                    object: format!("SealiftRelease/{}", self.product()),
                    message: e.to_string(),
                })
            })?;
        if let Some(generation) = patched.metadata.generation {
            self.requesters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(generation, requested_by.to_owned());
        }
        Ok(patched.metadata.generation)
    }

    /// The context of the step Job holding `token`, while it runs.
    pub fn step_context(&self, token: &str) -> Option<StepContext> {
        let hash = jobs::token_hash(token);
        self.step_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
    }

    /// Who wrote `generation` through the API; `kubectl` for any other writer.
    pub fn requester(&self, generation: Option<i64>) -> String {
        generation
            .and_then(|g| {
                self.requesters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&g)
                    .cloned()
            })
            .unwrap_or_else(|| "kubectl".to_owned())
    }

    // ---------------------------------------------------------------------------------------
    // Operations

    /// Starts an install or upgrade to `version` in the background; refuses if one runs here.
    pub fn begin(
        self: &Arc<Self>,
        kind: OperationKind,
        version: &str,
        flags: Flags,
        generation: Option<i64>,
        requested_by: &str,
    ) -> Result<(), EngineError> {
        let bundle = self.bundle_for(version)?;
        self.start(
            kind,
            version,
            bundle.identity,
            bundle.sequence,
            None,
            flags,
            generation,
            requested_by,
            None,
        )
    }

    /// The revision a rollback goes to: `revision` if given, else the newest one that was
    /// deployed before the current one (of another version).
    pub fn rollback_target(&self, revision: Option<u32>, version: Option<&str>) -> Result<Revision, EngineError> {
        let all = self.history.all().map_err(internal)?;
        let current = self.history.deployed().map_err(internal)?;
        let good = |r: &&Revision| matches!(r.outcome, Outcome::Deployed | Outcome::Superseded);
        let found = match (revision, version) {
            (Some(n), _) => all.iter().find(|r| r.revision == n).filter(good).cloned(),
            (None, Some(v)) => all.iter().rev().filter(good).find(|r| r.version == v).cloned(),
            (None, None) => {
                let current_version = current.as_ref().map(|c| c.version.clone()).unwrap_or_default();
                all.iter()
                    .rev()
                    .filter(good)
                    .find(|r| r.version != current_version)
                    .cloned()
            }
        };
        found.ok_or_else(|| EngineError::NoRevision {
            version: version
                .map(str::to_owned)
                .or(revision.map(|n| format!("revision {n}")))
                .unwrap_or_else(|| "a previous version".into()),
        })
    }

    /// Starts a manual rollback to a recorded revision (offline from the store).
    pub fn begin_rollback(
        self: &Arc<Self>,
        target: &Revision,
        generation: Option<i64>,
        requested_by: &str,
    ) -> Result<(), EngineError> {
        if self.agent.store.get(&target.bundle).is_none() {
            return Err(EngineError::NotImported {
                version: target.version.clone(),
                imported: "its bundle is no longer in the store".into(),
            });
        }
        self.start(
            OperationKind::Rollback,
            &target.version,
            target.bundle,
            target.sequence,
            Some(target.revision),
            Flags::default(),
            generation,
            requested_by,
            None,
        )
    }

    /// Starts an uninstall of the current release.
    pub fn begin_uninstall(
        self: &Arc<Self>,
        delete_data: bool,
        generation: Option<i64>,
        requested_by: &str,
    ) -> Result<(), EngineError> {
        let current = self
            .history
            .deployed()
            .map_err(internal)?
            .ok_or(EngineError::NothingInstalled)?;
        let flags = Flags {
            delete_data,
            ..Default::default()
        };
        self.start(
            OperationKind::Uninstall,
            &current.version,
            current.bundle,
            current.sequence,
            None,
            flags,
            generation,
            requested_by,
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        self: &Arc<Self>,
        kind: OperationKind,
        version: &str,
        bundle: schemas::Digest,
        sequence: u64,
        source_revision: Option<u32>,
        flags: Flags,
        generation: Option<i64>,
        requested_by: &str,
        restore: Option<crate::backup::restore::RestoreTarget>,
    ) -> Result<(), EngineError> {
        let previous = self.history.deployed().map_err(internal)?;
        let revision = self.history.next_number().map_err(internal)?;
        let op = Operation {
            id: format!("op-{revision}-{}", Timestamp::now().unix()),
            kind,
            version: version.to_owned(),
            bundle,
            sequence,
            revision,
            source_revision,
            previous: previous.map(|p| p.revision),
            generation,
            flags,
            requested_by: requested_by.to_owned(),
            started: Timestamp::now(),
            started_jobs: vec![],
            warnings: vec![],
            done: vec![],
            plan: None,
            applied: BTreeSet::new(),
            created: BTreeSet::new(),
            step_logs: vec![],
            failure: None,
            rollback: None,
            left_behind: vec![],
            restore,
            backup: None,
        };
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = running.as_ref() {
                return Err(EngineError::Busy(format!("{r} is running")));
            }
            *running = Some(format!("{} (lease holder {})", op.describe(), self.cfg.identity));
        }
        let me = self.clone();
        tokio::spawn(async move { me.drive(op, false).await });
        Ok(())
    }

    /// Marks this agent busy with `what` (a backup): operations and other backups are refused
    /// until [`Engine::unreserve`].
    pub fn reserve(&self, what: &str) -> Result<(), EngineError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.as_ref() {
            return Err(EngineError::Busy(format!("{r} is running")));
        }
        *running = Some(format!("{what} (lease holder {})", self.cfg.identity));
        Ok(())
    }

    pub fn unreserve(&self) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Takes the operation Lease for `what` (waiting out a dead holder's) and keeps renewing it
    /// until [`Engine::unlock`].
    pub async fn lock(self: &Arc<Self>, what: &str, resumed: bool) -> Result<tokio::task::JoinHandle<()>, LeaseError> {
        let client = self.cluster.client().clone();
        if resumed {
            self.lease.acquire_or_wait_expiry(&client, what).await?;
        } else {
            self.lease.acquire(&client, what).await?;
        }
        let me = self.clone();
        Ok(tokio::spawn(async move {
            let every = Duration::from_secs((me.cfg.lease_seconds.max(3) / 3) as u64);
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = me.lease.renew(me.cluster.client()).await {
                    tracing::warn!("lease renewal failed: {e}");
                }
            }
        }))
    }

    pub async fn unlock(&self, renewer: tokio::task::JoinHandle<()>) {
        renewer.abort();
        if let Err(e) = self.lease.release(self.cluster.client()).await {
            tracing::warn!("cannot release the lease: {e}");
        }
    }

    /// Starts a restore of a checked backup: re-deploys its version, then restores its data.
    pub fn begin_restore(
        self: &Arc<Self>,
        checked: crate::backup::restore::CheckedRestore,
        generation: Option<i64>,
        requested_by: &str,
    ) -> Result<(), EngineError> {
        self.start(
            OperationKind::Restore,
            &checked.version,
            checked.bundle.identity,
            checked.bundle.sequence,
            None,
            Flags {
                allow_downgrade: true,
                ..Default::default()
            },
            generation,
            requested_by,
            Some(checked.target),
        )
    }

    /// Resumes an operation a previous process left in `operation.json`.
    pub fn resume_if_any(self: &Arc<Self>) -> anyhow::Result<bool> {
        let Some(op) = self.ops.load()? else {
            return Ok(false);
        };
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            *running = Some(format!("{} (lease holder {})", op.describe(), self.cfg.identity));
        }
        tracing::info!(operation = %op.describe(), "resuming after a restart");
        let me = self.clone();
        tokio::spawn(async move { me.drive(op, true).await });
        Ok(true)
    }

    pub(crate) fn save(&self, op: &Operation) {
        if let Err(e) = self.ops.save(op) {
            tracing::error!("cannot persist the operation: {e}");
        }
    }

    fn reason_running(kind: OperationKind) -> Reason {
        match kind {
            OperationKind::Install => Reason::Installing,
            OperationKind::Upgrade => Reason::Upgrading,
            OperationKind::Rollback => Reason::RollingBack,
            OperationKind::Uninstall => Reason::Uninstalling,
            OperationKind::Restore => Reason::Restoring,
        }
    }

    /// Runs an operation to its end, whatever happens.
    async fn drive(self: Arc<Self>, mut op: Operation, resumed: bool) {
        let renewer = match self.lock(&op.describe(), resumed).await {
            Ok(r) => r,
            Err(e) => {
                self.refuse_start(&op, &e).await;
                return;
            }
        };
        if !op.done.contains(&Step::Lock) {
            op.done.push(Step::Lock);
        }
        self.agent.record(
            &op.requested_by,
            op.kind.as_str(),
            Some(op.version.clone()),
            "started",
            None,
            Some(format!(
                "revision {}{}",
                op.revision,
                if resumed { ", resumed" } else { "" }
            )),
        );
        self.set_state(
            Self::reason_running(op.kind),
            &format!("{} to {}", op.kind.as_str(), op.version),
            op.generation,
        )
        .await;
        self.update_status(|s| s.desired_version = Some(op.version.clone()))
            .await;

        let outcome = match op.failure.clone() {
            // Killed while the failure policy ran: finish it.
            Some(f) => Err(StepFailure {
                step: f.step,
                cause: f.cause,
            }),
            None => match tokio::time::timeout(self.cfg.operation_timeout, self.forward(&mut op)).await {
                Ok(result) => result,
                // Every step persisted what it did: the failure policy takes it from there.
                Err(_) => Err(StepFailure {
                    step: op.next_step().unwrap_or(Step::Record),
                    cause: format!(
                        "the operation did not finish within {}s (kubernetes.operationTimeout)",
                        self.cfg.operation_timeout.as_secs()
                    ),
                }),
            },
        };
        match outcome {
            Ok(()) => self.succeeded(&mut op).await,
            Err(f) => self.failed(&mut op, f).await,
        }
        self.unlock(renewer).await;
        if let Err(e) = self.ops.clear() {
            tracing::error!("cannot clear the finished operation: {e}");
        }
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.last_event_step.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.progress.send_replace(Progress::default());
        self.update_status(|s| s.progress = None).await;
    }

    async fn refuse_start(&self, op: &Operation, e: &LeaseError) {
        tracing::warn!("cannot start {}: {e}", op.describe());
        self.agent.record(
            &op.requested_by,
            op.kind.as_str(),
            Some(op.version.clone()),
            "refused",
            Some("operation_running"),
            Some(e.to_string()),
        );
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The forward steps, from wherever the operation stands.
    async fn forward(&self, op: &mut Operation) -> Result<(), StepFailure> {
        // Verify, Render and Preflight write nothing: after a restart before Persist they run
        // again; after Persist the persisted plan is the source.
        if op.plan.is_none() {
            op.done
                .retain(|s| !matches!(s, Step::Verify | Step::Render | Step::Preflight));
            self.report(Step::Verify, None, 0, 0, "verifying the bundle").await;
            let verified = planner::verify(self, op).map_err(StepFailure::at(Step::Verify))?;
            op.done.push(Step::Verify);
            self.report(Step::Render, None, 0, 0, "rendering").await;
            let previous = match op.previous {
                Some(n) => self
                    .history
                    .get(n)
                    .map_err(|e| StepFailure::at(Step::Render)(e.to_string()))?,
                None => None,
            };
            let plan = match op.kind {
                OperationKind::Install | OperationKind::Upgrade | OperationKind::Restore => {
                    planner::render(self, op, &verified, previous.as_ref())
                        .await
                        .map_err(StepFailure::at(Step::Render))?
                }
                OperationKind::Rollback => {
                    planner::from_history(self, op, previous.as_ref()).map_err(StepFailure::at(Step::Render))?
                }
                OperationKind::Uninstall => {
                    let mut plan =
                        planner::from_history(self, op, previous.as_ref()).map_err(StepFailure::at(Step::Render))?;
                    // The release's pre-delete and post-delete hooks, rendered for this site.
                    match planner::render(self, op, &verified, previous.as_ref()).await {
                        Ok(rendered) => plan.jobs = rendered.jobs,
                        Err(e) => op
                            .warnings
                            .push(format!("delete hooks not run: the release cannot be rendered: {e}")),
                    }
                    plan
                }
            };
            op.done.push(Step::Render);
            self.report(Step::Preflight, None, 0, 0, "preflight checks").await;
            preflight::run(self, op, &verified, &plan, previous.as_ref())
                .await
                .map_err(StepFailure::at(Step::Preflight))?;
            op.done.push(Step::Preflight);
            // Values generated for this site are kept from now on, whatever the outcome.
            if !plan.generated.is_empty() {
                planner::keep_generated(self, &plan.generated).map_err(StepFailure::at(Step::Persist))?;
            }
            if let Some(target) = &op.restore {
                // From here on the site is the backup's, and the trust state at least its.
                crate::backup::adopt_site_and_trust(self, target).map_err(StepFailure::at(Step::Persist))?;
            }
            op.plan = Some(plan);
            op.done.push(Step::Persist);
            self.ops
                .save(op)
                .map_err(|e| StepFailure::at(Step::Persist)(e.to_string()))?;
        }
        while let Some(step) = op.next_step() {
            self.run_step(op, step).await?;
            op.done.push(step);
            self.save(op);
        }
        Ok(())
    }

    async fn run_step(&self, op: &mut Operation, step: Step) -> Result<(), StepFailure> {
        let fail = StepFailure::at(step);
        match step {
            Step::Lock | Step::Verify | Step::Render | Step::Preflight | Step::Persist => Ok(()),
            Step::Stage if op.kind == OperationKind::Uninstall => Ok(()),
            Step::Stage => {
                self.report(step, None, 0, 0, "pushing images").await;
                let manifest = planner::manifest_of(self, op).map_err(fail)?;
                match self.agent.push(&manifest, &op.bundle).await {
                    Ok(pushed) => match pushed.error {
                        Some(e) => Err(StepFailure { step, cause: e }),
                        None => Ok(()),
                    },
                    Err(e) => Err(StepFailure {
                        step,
                        cause: e.to_string(),
                    }),
                }
            }
            Step::Backup => {
                self.report(step, None, 0, 0, "backing up").await;
                crate::backup::before_upgrade(self, op).await.map_err(fail)
            }
            Step::PreHooks => {
                let namespace = op.plan.as_ref().map(|p| p.namespace.clone()).unwrap_or_default();
                self.ensure_namespace(op, &namespace)
                    .await
                    .map_err(StepFailure::at(step))?;
                if op.kind == OperationKind::Restore {
                    self.report(step, None, 0, 0, "restoring data objects").await;
                    return crate::backup::restore_data_objects(self, op).await.map_err(fail);
                }
                self.run_jobs(op, "pre").await.map_err(fail)
            }
            Step::PostHooks if op.kind == OperationKind::Restore => {
                self.report(step, None, 0, 0, "running restore steps").await;
                crate::backup::restore_step_data(self, op).await.map_err(fail)
            }
            Step::Apply => self.apply(op).await.map_err(fail),
            // Uninstall: the inventory goes first, then the post-delete hooks run (Helm's order).
            Step::PostHooks if op.kind == OperationKind::Uninstall => {
                self.prune(op).await.map_err(StepFailure::at(Step::Prune))?;
                self.run_jobs(op, "post").await.map_err(fail)
            }
            Step::Prune if op.kind == OperationKind::Uninstall => Ok(()),
            Step::PostHooks => self.run_jobs(op, "post").await.map_err(fail),
            Step::Prune => self.prune(op).await.map_err(fail),
            Step::Record => Ok(()),
        }
    }

    async fn run_jobs(&self, op: &mut Operation, phase: &str) -> Result<(), String> {
        let Some(plan) = op.plan.clone() else {
            return Ok(());
        };
        let mut jobs: Vec<&PlannedJob> = plan.jobs.iter().filter(|j| j.phase == phase).collect();
        jobs.sort_by_key(|j| j.weight);
        let step = if phase == "pre" {
            Step::PreHooks
        } else {
            Step::PostHooks
        };
        let total = jobs.len() as u32;
        for (i, job) in jobs.into_iter().enumerate() {
            if op
                .step_logs
                .iter()
                .any(|l| l.step == job.id && l.outcome == "succeeded")
            {
                continue;
            }
            self.report(step, None, i as u32, total, &format!("running {}", job.id))
                .await;
            let key = ObjectKey::of(&job.object).ok_or("a step without a name")?;
            let policies = &job.delete_policies;
            let policy =
                |p: &str| policies.iter().any(|x| x == p) || (p == "before-hook-creation" && policies.is_empty());
            if !op.started_jobs.contains(&job.id) {
                // A hook left by an earlier release is replaced (Helm's default policy).
                if job.hook && policy("before-hook-creation") {
                    self.delete_and_wait(&key).await?;
                }
                op.started_jobs.push(job.id.clone());
                self.save(op);
            }
            if key.kind != "Job" {
                // A hook that is not a Job is applied and counts as done.
                self.cluster
                    .apply(&job.object, true, false)
                    .await
                    .map_err(|e| e.to_string())?;
                op.step_logs.push(StepLog {
                    step: job.id.clone(),
                    job: key.to_string(),
                    outcome: "succeeded".into(),
                    log: "applied".into(),
                });
                self.save(op);
                continue;
            }
            let timeout = job
                .object
                .pointer("/spec/activeDeadlineSeconds")
                .and_then(Value::as_u64)
                .map(|s| Duration::from_secs(s + 30))
                .unwrap_or(self.cfg.job_timeout_floor)
                .max(self.cfg.job_timeout_floor);
            if let Some(hash) = &job.token_sha256 {
                let previous = match op.previous {
                    Some(n) => self.history.get(n).ok().flatten().map(|r| r.version),
                    None => None,
                };
                let context = StepContext {
                    step: job.id.clone(),
                    job: key.name.clone(),
                    namespace: key.namespace.clone(),
                    operation: op.kind.as_str().to_owned(),
                    revision: op.revision,
                    from_version: previous,
                    to_version: op.version.clone(),
                };
                self.step_tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(hash.clone(), context);
            }
            let result = jobs::run_job(&self.cluster, &job.object, timeout, self.cfg.poll).await;
            if let Some(hash) = &job.token_sha256 {
                self.step_tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(hash);
            }
            match result {
                Ok(mut log) => {
                    log.step = job.id.clone();
                    op.step_logs.push(log);
                    self.save(op);
                    if job.hook && policy("hook-succeeded") {
                        self.cluster.delete(&key).await.map_err(|e| e.to_string())?;
                    }
                }
                Err(e) => {
                    op.step_logs.push(StepLog {
                        step: job.id.clone(),
                        job: key.name.clone(),
                        outcome: "failed".into(),
                        log: e.to_string(),
                    });
                    self.save(op);
                    if job.hook && policy("hook-failed") {
                        let _ = self.cluster.delete(&key).await;
                    }
                    let when = match (phase, op.kind) {
                        ("pre", OperationKind::Install) => "pre-install",
                        ("pre", OperationKind::Uninstall) => "pre-delete",
                        ("pre", OperationKind::Rollback) => "pre-rollback",
                        ("pre", _) => "pre-upgrade",
                        (_, OperationKind::Install) => "post-install",
                        (_, OperationKind::Uninstall) => "post-delete",
                        (_, OperationKind::Rollback) => "post-rollback",
                        _ => "post-upgrade",
                    };
                    return Err(format!("{when} step {}: {e}", job.id));
                }
            }
        }
        Ok(())
    }

    /// Applies the plan's objects wave by wave, waiting for each wave.
    async fn apply(&self, op: &mut Operation) -> Result<(), String> {
        let plan = op.plan.clone().ok_or("no plan")?;
        let previous_inventory: BTreeSet<ObjectKey> = match op.previous {
            Some(n) => self
                .history
                .get(n)
                .map_err(|e| e.to_string())?
                .map(|r| r.inventory().into_iter().collect())
                .unwrap_or_default(),
            None => BTreeSet::new(),
        };
        for wave in &plan.waves {
            let objects: Vec<&AppliedObject> = plan.objects.iter().filter(|o| &o.wave == wave).collect();
            let total = objects.len() as u32;
            // Objects whose Namespace or CRD this plan created could not be dry-run in
            // preflight: every object of the wave is dry-run now, before the first is applied.
            let mut refused = Vec::new();
            for applied in &objects {
                let key = ObjectKey::of(&applied.object).ok_or("object without a name")?;
                let force = previous_inventory.contains(&key) || op.created.contains(&key);
                if let Err(e) = self.cluster.apply(&applied.object, force, true).await {
                    refused.push(e.to_string());
                }
            }
            if !refused.is_empty() {
                return Err(format!(
                    "wave {wave}: server-side dry-run refused: {}",
                    refused.join("; ")
                ));
            }
            let mut keys = Vec::new();
            for (i, applied) in objects.iter().enumerate() {
                let key = ObjectKey::of(&applied.object).ok_or("object without a name")?;
                self.report(Step::Apply, Some(wave), i as u32, total, &format!("applying {key}"))
                    .await;
                let ours = previous_inventory.contains(&key) || op.created.contains(&key);
                if !ours && !op.applied.contains(&key) {
                    let live = self.cluster.get(&key).await.map_err(|e| e.to_string())?;
                    if live.is_none() {
                        op.created.insert(key.clone());
                        self.save(op);
                    }
                }
                let force = previous_inventory.contains(&key) || op.created.contains(&key);
                let before = if force {
                    self.cluster.get(&key).await.map_err(|e| e.to_string())?
                } else {
                    None
                };
                let after = self
                    .cluster
                    .apply(&applied.object, force, false)
                    .await
                    .map_err(|e| format!("applying {key}: {e}"))?;
                if let Some(before) = before {
                    for manager in rollout::fields_taken(&before, &after) {
                        let note = format!("took fields of {key} that {manager} managed");
                        tracing::warn!("{note}");
                        self.event(true, "FieldsTaken", &note).await;
                        op.step_logs.push(StepLog {
                            step: "apply".into(),
                            job: key.to_string(),
                            outcome: "took-fields".into(),
                            log: note,
                        });
                    }
                }
                op.applied.insert(key.clone());
                self.save(op);
                if key.kind == "CustomResourceDefinition" {
                    self.cluster.refresh_discovery();
                }
                keys.push(key);
            }
            let wave_name = wave.clone();
            let mut counts = (0, total);
            rollout::wait_ready(
                &self.cluster,
                &keys,
                self.cfg.wave_timeout,
                self.cfg.poll,
                self.cfg.stall_window,
                |ready, total| {
                    counts = (ready, total);
                },
            )
            .await
            .map_err(|e| match e {
                WaitError::Failed { object, reason } => format!("wave {wave_name}: {object} failed: {reason}"),
                other => format!("wave {wave_name}: {other}"),
            })?;
            self.report(
                Step::Apply,
                Some(wave),
                counts.1,
                counts.1,
                &format!("wave {wave} ready"),
            )
            .await;
            if keys.iter().any(|k| k.kind == "CustomResourceDefinition") {
                self.cluster.refresh_discovery();
            }
        }
        Ok(())
    }

    /// Deletes an object and waits until it is gone.
    async fn delete_and_wait(&self, key: &ObjectKey) -> Result<(), String> {
        if !self.cluster.delete(key).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        for _ in 0..600 {
            if self.cluster.get(key).await.map_err(|e| e.to_string())?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{key} was not deleted within a minute"))
    }

    /// Creates the application namespace if missing (recorded, never pruned).
    async fn ensure_namespace(&self, op: &mut Operation, namespace: &str) -> Result<(), String> {
        let key = ObjectKey {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: namespace.to_owned(),
        };
        if self.cluster.get(&key).await.map_err(|e| e.to_string())?.is_none() {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
                "labels": {"app.kubernetes.io/managed-by": "sealift"}}});
            self.cluster.apply(&ns, false, false).await.map_err(|e| e.to_string())?;
            op.created.insert(key);
            op.step_logs.push(StepLog {
                step: "namespace".into(),
                job: String::new(),
                outcome: "created".into(),
                log: format!("created namespace {namespace} (never pruned)"),
            });
            self.save(op);
        }
        Ok(())
    }

    async fn prune(&self, op: &mut Operation) -> Result<(), String> {
        let Some(previous) = op.previous else {
            return Ok(());
        };
        let Some(prev) = self.history.get(previous).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let plan = op.plan.clone().ok_or("no plan")?;
        let now: BTreeSet<ObjectKey> = plan.objects.iter().filter_map(|o| ObjectKey::of(&o.object)).collect();
        let gone: Vec<ObjectKey> = prev.inventory().into_iter().filter(|k| !now.contains(k)).collect();
        let planned = |k: &ObjectKey| {
            prev.applied
                .iter()
                .find(|a| ObjectKey::of(&a.object).as_ref() == Some(k))
                .map(|a| a.object.clone())
        };
        let mut gone = gone;
        if op.flags.delete_data {
            // `uninstall --delete-data`: PVCs go first, explicitly.
            for k in gone.iter().filter(|k| k.kind == "PersistentVolumeClaim") {
                self.cluster.delete(k).await.map_err(|e| e.to_string())?;
            }
            gone.retain(|k| k.kind != "PersistentVolumeClaim");
        }
        let kept = rollout::delete_under_rule(&self.cluster, &gone, planned)
            .await
            .map_err(|e| e.to_string())?;
        op.left_behind.extend(kept);
        Ok(())
    }

    fn revision_of(&self, op: &Operation, outcome: Outcome, reason: &str) -> Revision {
        let plan = op.plan.clone().unwrap_or_default();
        Revision {
            revision: op.revision,
            version: op.version.clone(),
            sequence: op.sequence,
            bundle: op.bundle,
            operation: op.kind.as_str().to_owned(),
            outcome,
            started: op.started,
            finished: Some(Timestamp::now()),
            reason: reason.to_owned(),
            requested_by: op.requested_by.clone(),
            flags: op.flags.names(),
            applied_digest: applied_digest(&plan.objects),
            applied: plan.objects,
            differences: plan.differences,
            steps: op.step_logs.clone(),
            left_behind: op.left_behind.clone(),
            jobs: plan.jobs,
            sensitive: plan.sensitive,
            data_steps: plan.data_steps,
        }
    }

    /// Records the new revision as deployed and the previous one as superseded.
    async fn succeeded(&self, op: &mut Operation) {
        if let Some(prev) = op.previous.and_then(|n| self.history.get(n).ok().flatten()) {
            let mut prev = prev;
            if prev.outcome == Outcome::Deployed {
                prev.outcome = Outcome::Superseded;
                if let Err(e) = self.history.write(&prev) {
                    tracing::error!("cannot record revision {}: {e}", prev.revision);
                }
            }
        }
        let uninstall = op.kind == OperationKind::Uninstall;
        let outcome = if uninstall {
            Outcome::Uninstalled
        } else {
            Outcome::Deployed
        };
        let revision = self.revision_of(op, outcome, "");
        if let Err(e) = self.history.write(&revision) {
            tracing::error!("cannot record revision {}: {e}", revision.revision);
        }
        let previous = op
            .previous
            .and_then(|n| self.history.get(n).ok().flatten())
            .map(|r| r.bundle);
        if uninstall {
            self.pin(None, previous);
        } else {
            self.pin(Some(op.bundle), previous);
        }
        self.agent.record(
            &op.requested_by,
            op.kind.as_str(),
            Some(op.version.clone()),
            "ok",
            None,
            Some(format!("revision {} deployed", op.revision)),
        );
        if let Some(target) = &op.restore {
            crate::backup::record_restore_end(self, op, target, None);
        }
        let left = op.left_behind.clone();
        let version = (!uninstall).then(|| op.version.clone());
        self.update_status(|s| {
            s.current_version = version.clone();
            s.failed_generation = None;
            s.left_behind = left;
        })
        .await;
        let mut message = match op.kind {
            OperationKind::Uninstall => format!("{} is uninstalled", op.version),
            OperationKind::Rollback => format!("rolled back to {}; it is ready", op.version),
            OperationKind::Restore => format!(
                "restored backup {} ({}); it is ready",
                op.restore.as_ref().map(|t| t.backup.as_str()).unwrap_or(""),
                op.version
            ),
            _ => format!("{} is ready", op.version),
        };
        for w in &op.warnings {
            message.push_str("; warning: ");
            message.push_str(w);
        }
        self.event(false, "Succeeded", &format!("revision {}: {message}", op.revision))
            .await;
        self.set_state(Reason::Ready, &message, op.generation).await;
    }

    /// Pins the current and previous bundles in the store (never garbage-collected).
    fn pin(&self, current: Option<schemas::Digest>, previous: Option<schemas::Digest>) {
        if let Err(e) = self.agent.store.set_release_pins(current, previous) {
            tracing::error!("cannot move the store pins: {e}");
        }
    }

    /// Records the operation's revision as failed (best effort: the status still tells).
    fn record_failed_revision(&self, op: &Operation, reason: &str) {
        let revision = self.revision_of(op, Outcome::Failed, reason);
        if let Err(e) = self.history.write(&revision) {
            tracing::error!("cannot record revision {}: {e}", revision.revision);
        }
    }

    /// Ends an operation that failed before it changed the application: audited, evented,
    /// and the generation is not run again until the spec changes.
    async fn stop_unchanged(&self, op: &Operation, reason: Reason, code: &str, message: &str) {
        self.agent.record(
            &op.requested_by,
            op.kind.as_str(),
            Some(op.version.clone()),
            "failed",
            Some(code),
            Some(message.to_owned()),
        );
        let gen_ = op.generation;
        self.update_status(|s| s.failed_generation = gen_).await;
        self.event(true, reason.as_str(), message).await;
        self.set_state(reason, message, op.generation).await;
    }

    /// The failure policy.
    async fn failed(&self, op: &mut Operation, f: StepFailure) {
        let cause = f.cause.clone();
        tracing::warn!(step = f.step.as_str(), "operation failed: {cause}");
        if f.step <= Step::Preflight {
            // Nothing was written: the release stays as it was.
            self.stop_unchanged(op, Reason::PreflightFailed, "preflight_failed", &cause)
                .await;
            return;
        }
        if f.step == Step::Backup {
            // Stage only pushed images: the application was not touched.
            let message = format!("{cause}; nothing was changed (upgrade with --no-backup to go ahead without one)");
            self.record_failed_revision(op, &message);
            self.stop_unchanged(op, Reason::BackupFailed, "backup_failed", &message)
                .await;
            return;
        }
        op.failure = Some(Failure {
            step: f.step,
            cause: cause.clone(),
        });
        self.save(op);
        let failed_reason = match op.kind {
            OperationKind::Install => Reason::InstallFailed,
            OperationKind::Upgrade => Reason::UpgradeFailed,
            OperationKind::Rollback => Reason::RollbackFailed,
            OperationKind::Uninstall => Reason::UninstallFailed,
            OperationKind::Restore => Reason::RestoreFailed,
        };
        if matches!(
            op.kind,
            OperationKind::Rollback | OperationKind::Uninstall | OperationKind::Restore
        ) {
            if let Some(target) = &op.restore {
                crate::backup::record_restore_end(self, op, target, Some(&cause));
            }
            // A failed rollback or uninstall is not rolled back in turn.
            self.record_failed_revision(op, &cause);
            self.agent.record(
                &op.requested_by,
                op.kind.as_str(),
                Some(op.version.clone()),
                "failed",
                Some(failure_code(op.kind)),
                Some(cause.clone()),
            );
            let gen_ = op.generation;
            self.update_status(|s| s.failed_generation = gen_).await;
            self.set_state(failed_reason, &cause, op.generation).await;
            return;
        }
        if op.flags.disable_rollback {
            self.record_failed_revision(op, &cause);
            self.agent.record(
                &op.requested_by,
                op.kind.as_str(),
                Some(op.version.clone()),
                "failed",
                Some(failure_code(op.kind)),
                Some(format!("{cause}; rollback disabled")),
            );
            let gen_ = op.generation;
            self.update_status(|s| s.failed_generation = gen_).await;
            self.set_state(
                failed_reason,
                &format!(
                    "{cause}; rollback disabled: the failed revision {} is left for debugging (retry, upgrade to another version, or rollback)",
                    op.revision
                ),
                op.generation,
            )
            .await;
            return;
        }
        self.set_state(Reason::RollingBack, &format!("{cause}; rolling back"), op.generation)
            .await;
        let result = self.roll_back_failed(op).await;
        let gen_ = op.generation;
        match result {
            Ok(target) => {
                let message = match &target {
                    Some(v) => format!("{cause}; rolled back to {v}"),
                    None => format!("{cause}; the objects this install created were removed"),
                };
                self.agent.record(
                    &op.requested_by,
                    op.kind.as_str(),
                    Some(op.version.clone()),
                    "failed",
                    Some(failure_code(op.kind)),
                    Some(message.clone()),
                );
                let left = op.left_behind.clone();
                self.update_status(|s| {
                    s.failed_generation = gen_;
                    s.current_version = target.clone();
                    s.left_behind = left;
                })
                .await;
                self.event(true, failed_reason.as_str(), &message).await;
                self.set_state(failed_reason, &message, op.generation).await;
            }
            Err(rollback_cause) => {
                let message = format!("{cause}; rollback failed: {rollback_cause}");
                self.record_failed_revision(op, &message);
                self.agent.record(
                    &op.requested_by,
                    "rollback",
                    Some(op.version.clone()),
                    "failed",
                    Some("rollback_failed"),
                    Some(message.clone()),
                );
                self.update_status(|s| s.failed_generation = gen_).await;
                self.event(true, Reason::RollbackFailed.as_str(), &message).await;
                self.set_state(Reason::RollbackFailed, &message, op.generation).await;
            }
        }
    }

    /// Automatic rollback of a failed operation: down steps, the previous revision's
    /// manifests in reverse wave order, deletion of what only the failed attempt created.
    /// Returns the version rolled back to (`None` after a failed install).
    async fn roll_back_failed(&self, op: &mut Operation) -> Result<Option<String>, String> {
        let cause = op.failure.as_ref().map(|f| f.cause.clone()).unwrap_or_default();
        let mut progress = op.rollback.clone().unwrap_or_default();
        let plan = op.plan.clone().unwrap_or_default();
        // An irreversible migration that completed blocks the automatic rollback.
        let completed = |id: &str| op.step_logs.iter().any(|l| l.step == id && l.outcome == "succeeded");
        let irreversible = plan
            .jobs
            .iter()
            .find(|j| !j.hook && !j.reversible && completed(&j.id))
            .map(|j| j.id.clone());
        if let (Some(id), None) = (&irreversible, &op.backup) {
            return Err(format!(
                "the irreversible migration {id} already ran and this upgrade took no backup: automatic rollback is blocked (restore a backup taken before it)"
            ));
        }
        // Migrations that ran — completed, or failed part-way — in the order they ran; their
        // down steps run newest first.
        let mut ran: Vec<&PlannedJob> = Vec::new();
        for log in &op.step_logs {
            if !matches!(log.outcome.as_str(), "succeeded" | "failed") {
                continue;
            }
            if let Some(job) = plan.jobs.iter().find(|j| !j.hook && j.id == log.step)
                && !ran.iter().any(|r| r.id == job.id)
            {
                ran.push(job);
            }
        }
        for job in ran.iter().rev() {
            if progress.down_steps_done.contains(&job.id) {
                continue;
            }
            if let Some(down) = &job.down {
                self.report(Step::PreHooks, None, 0, 0, &format!("reverting {}", job.id))
                    .await;
                let timeout = self.cfg.job_timeout_floor;
                match jobs::run_job(&self.cluster, down, timeout, self.cfg.poll).await {
                    Ok(mut log) => {
                        log.step = format!("{}-down", job.id);
                        log.outcome = "reverted".into();
                        op.step_logs.push(log);
                    }
                    Err(e) => return Err(format!("down step of {}: {e}", job.id)),
                }
            }
            progress.down_steps_done.push(job.id.clone());
            op.rollback = Some(progress.clone());
            self.save(op);
        }
        let previous = match op.previous {
            Some(n) => self.history.get(n).map_err(|e| e.to_string())?,
            None => None,
        };
        if !progress.reapplied {
            if let Some(prev) = &previous {
                let mut waves: Vec<String> = Vec::new();
                for a in &prev.applied {
                    if !waves.contains(&a.wave) {
                        waves.push(a.wave.clone());
                    }
                }
                for wave in waves.iter().rev() {
                    let mut keys = Vec::new();
                    for a in prev.applied.iter().filter(|a| &a.wave == wave) {
                        self.cluster
                            .apply(&a.object, true, false)
                            .await
                            .map_err(|e| e.to_string())?;
                        if let Some(k) = ObjectKey::of(&a.object) {
                            keys.push(k);
                        }
                    }
                    self.report(Step::Apply, Some(wave), 0, keys.len() as u32, "rolling back")
                        .await;
                }
            }
            progress.reapplied = true;
            op.rollback = Some(progress.clone());
            self.save(op);
        }
        if let (Some(_), Some(backup)) = (&irreversible, op.backup.clone())
            && let Some(prev) = &previous
            && !progress.data_restored
        {
            // The migration changed data for good: the pre-upgrade backup's data goes back
            // under the previous release's manifests.
            self.report(Step::Apply, None, 0, 0, &format!("restoring backup {backup}"))
                .await;
            let logs = crate::backup::restore_after_failed_upgrade(self, &backup, prev).await?;
            op.step_logs.extend(logs);
            progress.data_restored = true;
            op.rollback = Some(progress.clone());
            self.save(op);
        }
        if !progress.cleaned {
            let keep: BTreeSet<ObjectKey> = previous
                .as_ref()
                .map(|p| p.inventory().into_iter().collect())
                .unwrap_or_default();
            let only_failed: Vec<ObjectKey> = op.created.iter().filter(|k| !keep.contains(k)).cloned().collect();
            let planned = |k: &ObjectKey| {
                plan.objects
                    .iter()
                    .find(|a| ObjectKey::of(&a.object).as_ref() == Some(k))
                    .map(|a| a.object.clone())
            };
            let kept = rollout::delete_under_rule(&self.cluster, &only_failed, planned)
                .await
                .map_err(|e| e.to_string())?;
            op.left_behind.extend(kept);
            progress.cleaned = true;
            op.rollback = Some(progress.clone());
            self.save(op);
        }
        if let Some(prev) = &previous {
            let keys = prev.inventory();
            rollout::wait_ready(
                &self.cluster,
                &keys,
                self.cfg.wave_timeout,
                self.cfg.poll,
                self.cfg.stall_window,
                |_, _| {},
            )
            .await
            .map_err(|e| format!("after rollback: {e}"))?;
        }
        // Record: the failed revision, then a rollback revision re-deploying the previous one.
        let failed = self.revision_of(op, Outcome::Failed, &cause);
        self.history.write(&failed).map_err(|e| e.to_string())?;
        let Some(prev) = previous else {
            return Ok(None);
        };
        let mut superseded = prev.clone();
        superseded.outcome = Outcome::Superseded;
        self.history.write(&superseded).map_err(|e| e.to_string())?;
        let number = self.history.next_number().map_err(|e| e.to_string())?;
        let rollback = Revision {
            revision: number,
            operation: "rollback".into(),
            outcome: Outcome::Deployed,
            started: Timestamp::now(),
            finished: Some(Timestamp::now()),
            reason: format!("automatic rollback after revision {} failed: {cause}", op.revision),
            requested_by: "-".into(),
            flags: vec![],
            steps: op
                .step_logs
                .iter()
                .filter(|l| l.outcome == "reverted")
                .cloned()
                .collect(),
            left_behind: op.left_behind.clone(),
            ..prev.clone()
        };
        self.history.write(&rollback).map_err(|e| e.to_string())?;
        self.pin(Some(prev.bundle), Some(op.bundle));
        self.agent.record(
            "-",
            "rollback",
            Some(prev.version.clone()),
            "ok",
            None,
            Some(format!(
                "revision {number} re-deployed {} after revision {} failed",
                prev.version, op.revision
            )),
        );
        Ok(Some(prev.version))
    }
}

/// The audit code of a failed operation of `kind`.
fn failure_code(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Install => "install_failed",
        OperationKind::Upgrade => "upgrade_failed",
        OperationKind::Rollback => "rollback_failed",
        OperationKind::Uninstall => "uninstall_failed",
        OperationKind::Restore => "restore_failed",
    }
}

/// The RFC 7386 merge patch that turns `before` into `after`.
fn merge_patch(before: &Value, after: &Value) -> Value {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in a {
                match b.get(k) {
                    Some(old) if old == v => {}
                    Some(old) => {
                        out.insert(k.clone(), merge_patch(old, v));
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in b.keys() {
                if !a.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => after.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patches_remove_what_disappeared() {
        let before = json!({"a": 1, "p": {"wave": "x", "step": "Apply"}, "gone": true});
        let after = json!({"a": 1, "p": {"step": "Verify"}});
        let patch = merge_patch(&before, &after);
        assert_eq!(patch, json!({"p": {"wave": null, "step": "Verify"}, "gone": null}));
    }
}
