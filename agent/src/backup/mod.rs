//! Backups of the application the agent manages, and restores from them.
//!
//! - [`archive`]: the signed (optionally encrypted) archive format and its storage.
//! - [`catalog`]: the agent's backups, settings, step-Job grants and restore log.
//! - [`capture`]: taking a backup under the operation Lease.
//! - [`restore`]: checking a restore request and restoring only data.
//! - [`settings`], [`schedule`]: the settings seed 001 names, the cron scheduler, retention.
//!
//! The release engine calls in here at its Backup step, for a `Restore` operation's data, and
//! when an automatic rollback must undo an irreversible migration.

pub mod archive;
pub mod capture;
pub mod catalog;
pub mod restore;
pub mod schedule;
pub mod settings;

use std::sync::Arc;

use schemas::Timestamp;

use crate::backup::archive::BackupId;
use crate::backup::archive::{BackupKind, BackupState};
use crate::backup::catalog::RestoreRecord;
use crate::backup::restore::RestoreTarget;
use crate::release::engine::{Engine, EngineError};
use crate::release::history::{Revision, StepLog};
use crate::release::operation::{Operation, OperationKind};
use crate::release::planner::{self, SiteState};

/// A fresh backup id for now; `None` when one with this second's timestamp exists (seed 001's
/// timestamps are the ids: a second request in the same second is refused).
pub fn new_id(engine: &Engine) -> Option<BackupId> {
    let id = BackupId::from_timestamp(jiff::Timestamp::now()).ok()?;
    match engine.backups.contains(&id) {
        Ok(false) => Some(id),
        _ => None,
    }
}

/// Why a backup was not started.
#[derive(Debug, thiserror::Error)]
pub enum BackupRequestError {
    #[error("a backup with the timestamp {0} exists; try again in a second")]
    SameSecond(String),
    #[error("nothing is installed: there is nothing to back up")]
    NothingInstalled,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl BackupRequestError {
    pub fn code(&self) -> &'static str {
        match self {
            BackupRequestError::SameSecond(_) => "backup_exists",
            BackupRequestError::NothingInstalled => "nothing_installed",
            BackupRequestError::Engine(e) => e.code(),
        }
    }
}

/// Starts a backup of the deployed revision in the background (refused while an operation
/// or another backup runs). Returns its id at once.
pub fn start_backup(
    engine: &Arc<Engine>,
    kind: BackupKind,
    requested_by: &str,
) -> Result<BackupId, BackupRequestError> {
    let current = engine
        .history
        .deployed()
        .map_err(|e| EngineError::Internal(e.to_string()))?
        .ok_or(BackupRequestError::NothingInstalled)?;
    let id = new_id(engine).ok_or_else(|| {
        BackupRequestError::SameSecond(
            BackupId::from_timestamp(jiff::Timestamp::now())
                .map(|id| id.to_string())
                .unwrap_or_default(),
        )
    })?;
    engine.reserve(&format!("backup {id}"))?;
    // Claim the id before answering, so a second request in the same second is refused.
    let writer = match capture::begin(engine, &engine.backups, &id, kind, &current) {
        Ok(w) => w,
        Err(e) => {
            engine.unreserve();
            return Err(BackupRequestError::Engine(EngineError::Internal(e)));
        }
    };
    sync_pins(engine);
    let me = engine.clone();
    let by = requested_by.to_owned();
    let id_out = id;
    tokio::spawn(async move {
        me.agent.record(
            &by,
            "backup",
            Some(current.version.clone()),
            "started",
            None,
            Some(format!("backup {id} ({kind})")),
        );
        let result = match me.lock(&format!("backup {id}"), true).await {
            Ok(renewer) => {
                let r = capture::capture(&me, &me.backups, writer, &current).await;
                me.unlock(renewer).await;
                r
            }
            Err(e) => {
                let reason = format!("cannot take the operation lease: {e}");
                if let Err(m) = writer.fail(&reason) {
                    tracing::error!("cannot mark backup {id} failed: {m}");
                }
                Err(reason)
            }
        };
        me.unreserve();
        sync_pins(&me);
        match result {
            Ok(status) => {
                me.agent.record(
                    &by,
                    "backup",
                    Some(current.version.clone()),
                    "ok",
                    None,
                    Some(format!("backup {id}: {} bytes", status.size_bytes)),
                );
                apply_retention(&me);
            }
            Err(e) => {
                tracing::warn!("{e}");
                me.agent.record(
                    &by,
                    "backup",
                    Some(current.version.clone()),
                    "failed",
                    Some("backup_failed"),
                    Some(e),
                );
            }
        }
    });
    Ok(id_out)
}

/// The Backup step of an operation: an upgrade backs up the revision it leaves (unless the
/// admin skipped it); other operations record why they take none.
pub async fn before_upgrade(engine: &Engine, op: &mut Operation) -> Result<(), String> {
    let skipped = |why: &str| StepLog {
        step: "backup".into(),
        job: String::new(),
        outcome: "skipped".into(),
        log: why.to_owned(),
    };
    let log = if op.kind != OperationKind::Upgrade {
        skipped(&format!("no backup before {}", op.kind.as_str()))
    } else if op.flags.skip_backup {
        skipped("skipped by request (--no-backup / spec.skipBackup)")
    } else if !engine.backups.settings().settings.backup_before_upgrade {
        skipped("skipped: backupBeforeUpgrade is false")
    } else {
        let previous = op
            .previous
            .and_then(|n| engine.history.get(n).ok().flatten())
            .ok_or("no current revision to back up")?;
        let id = match op.backup.as_ref().map(|b| b.parse::<BackupId>()) {
            // Resumed after a restart: that backup was interrupted; take a new one.
            Some(Ok(old)) => {
                let _ = archive::mark_failed(engine.backups.storage.as_ref(), &old, archive::INTERRUPTED_REASON);
                wait_for_new_id(engine).await
            }
            _ => wait_for_new_id(engine).await,
        };
        op.backup = Some(id.to_string());
        engine.save(op);
        let writer = capture::begin(engine, &engine.backups, &id, BackupKind::PreUpgrade, &previous)?;
        let captured = capture::capture(engine, &engine.backups, writer, &previous).await;
        sync_pins(engine);
        let status = captured.map_err(|e| format!("pre-upgrade backup failed: {e}"))?;
        apply_retention(engine);
        StepLog {
            step: "backup".into(),
            job: id.to_string(),
            outcome: "succeeded".into(),
            log: format!("backup {id} of {} ({} bytes)", previous.version, status.size_bytes),
        }
    };
    op.step_logs.push(log);
    Ok(())
}

async fn wait_for_new_id(engine: &Engine) -> BackupId {
    loop {
        if let Some(id) = new_id(engine) {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The backup of a restore operation, which [`restore::check`] verified in full when it
/// started; later passes skip the digest pass (reads still check every byte).
fn open_target(engine: &Engine, target: &RestoreTarget) -> Result<archive::VerifiedBackup, String> {
    let id: BackupId = target.backup.parse().map_err(|e| format!("{e}"))?;
    engine.backups.reopen_verified(&id).map_err(|e| e.to_string())
}

/// The site state a restore renders with: the backup's.
pub fn restore_site(engine: &Engine, target: &RestoreTarget) -> Result<SiteState, String> {
    restore::site_of(&open_target(engine, target)?)
}

/// At a restore's Persist step: the backup's site state becomes the agent's, and the trust
/// state is raised by the backup's (never lowered).
pub fn adopt_site_and_trust(engine: &Engine, target: &RestoreTarget) -> Result<(), String> {
    let backup = open_target(engine, target)?;
    let site = restore::site_of(&backup)?;
    planner::save_site(engine, &site).map_err(|e| e.to_string())?;
    restore::raise_trust(engine, &backup)
}

/// A restore's data objects, before its manifests are applied.
pub async fn restore_data_objects(engine: &Engine, op: &mut Operation) -> Result<(), String> {
    let target = op.restore.clone().ok_or("a restore without a backup")?;
    let plan = op.plan.clone().ok_or("no plan")?;
    let backup = open_target(engine, &target)?;
    let logs = restore::restore_objects(engine, &backup, &target, &plan, restore::DataPass::Core).await?;
    op.step_logs.extend(logs);
    engine.save(op);
    Ok(())
}

/// A restore's restore steps, after its manifests are ready.
pub async fn restore_step_data(engine: &Engine, op: &mut Operation) -> Result<(), String> {
    let target = op.restore.clone().ok_or("a restore without a backup")?;
    let plan = op.plan.clone().ok_or("no plan")?;
    let backup = open_target(engine, &target)?;
    if !op.step_logs.iter().any(|l| l.step == "restore-custom") {
        let mut logs = restore::restore_objects(engine, &backup, &target, &plan, restore::DataPass::Custom).await?;
        logs.push(StepLog {
            step: "restore-custom".into(),
            job: String::new(),
            outcome: "succeeded".into(),
            log: "custom resources restored".into(),
        });
        op.step_logs.extend(logs);
        engine.save(op);
    }
    let logs = restore::run_restore_steps(
        engine,
        &engine.backups,
        &backup,
        &target,
        &plan.data_steps,
        &plan.namespace,
        op.revision,
    )
    .await?;
    op.step_logs.extend(logs);
    engine.save(op);
    Ok(())
}

/// Automatic rollback after an irreversible migration: the pre-upgrade backup's data objects
/// and restore steps, under the previous revision's manifests.
pub async fn restore_after_failed_upgrade(
    engine: &Engine,
    backup: &str,
    previous: &Revision,
) -> Result<Vec<StepLog>, String> {
    let namespace = capture::namespace_of(previous);
    let target = RestoreTarget {
        backup: backup.to_owned(),
        source_namespace: namespace.clone(),
        skip: vec![],
        request: String::new(),
    };
    let id: BackupId = target.backup.parse().map_err(|e| format!("{e}"))?;
    let verified = engine.backups.open_verified(&id).map_err(|e| e.to_string())?;
    let plan = crate::release::operation::Plan {
        namespace: namespace.clone(),
        objects: previous.applied.clone(),
        data_steps: previous.data_steps.clone(),
        ..Default::default()
    };
    let mut logs = restore::restore_objects(engine, &verified, &target, &plan, restore::DataPass::Core).await?;
    logs.extend(restore::restore_objects(engine, &verified, &target, &plan, restore::DataPass::Custom).await?);
    logs.extend(
        restore::run_restore_steps(
            engine,
            &engine.backups,
            &verified,
            &target,
            &previous.data_steps,
            &namespace,
            previous.revision,
        )
        .await?,
    );
    Ok(logs)
}

/// Records a restore's start.
pub fn record_restore_start(engine: &Engine, checked: &restore::CheckedRestore, by: &str) {
    engine.backups.record_restore(RestoreRecord {
        timestamp: checked.target.backup.clone(),
        status: "Running".into(),
        started: Timestamp::now(),
        finished: None,
        version: checked.version.clone(),
        source_namespace: checked.target.source_namespace.clone(),
        skipped: checked.target.skip.clone(),
        revision: None,
        reason: String::new(),
        requested_by: by.to_owned(),
        request: checked.target.request.clone(),
    });
}

fn restore_record(engine: &Engine, target: &RestoreTarget) -> Option<RestoreRecord> {
    engine
        .backups
        .restores()
        .into_iter()
        .find(|r| r.timestamp == target.backup && r.request == target.request)
}

/// Records a restore request refused before it started (so `restore --wait` ends).
pub fn record_restore_unstarted(engine: &Engine, backup: &str, request: &str, by: &str, reason: &str) {
    engine.backups.record_restore(RestoreRecord {
        timestamp: backup.to_owned(),
        status: "Failed".into(),
        started: Timestamp::now(),
        finished: Some(Timestamp::now()),
        version: String::new(),
        source_namespace: String::new(),
        skipped: vec![],
        revision: None,
        reason: reason.to_owned(),
        requested_by: by.to_owned(),
        request: request.to_owned(),
    });
}

/// Records a restore that could not start after it was recorded as running.
pub fn record_restore_refused(engine: &Engine, target: &RestoreTarget, reason: &str) {
    if let Some(mut record) = restore_record(engine, target) {
        record.status = "Failed".into();
        record.finished = Some(Timestamp::now());
        record.reason = reason.to_owned();
        engine.backups.record_restore(record);
    }
}

/// Records how a restore operation ended.
pub fn record_restore_end(engine: &Engine, op: &Operation, target: &RestoreTarget, failure: Option<&str>) {
    let started = restore_record(engine, target).map(|r| r.started).unwrap_or(op.started);
    engine.backups.record_restore(RestoreRecord {
        timestamp: target.backup.clone(),
        status: if failure.is_some() { "Failed" } else { "Success" }.into(),
        started,
        finished: Some(Timestamp::now()),
        version: op.version.clone(),
        source_namespace: target.source_namespace.clone(),
        skipped: target.skip.clone(),
        revision: Some(op.revision),
        reason: failure.unwrap_or_default().to_owned(),
        requested_by: op.requested_by.clone(),
        request: target.request.clone(),
    });
}

/// Pins in the store every bundle a backup (running or successful) would restore, and only
/// those: called whenever backups come or go.
pub fn sync_pins(engine: &Engine) {
    let mut needed: std::collections::BTreeMap<schemas::Digest, Vec<String>> = Default::default();
    for (id, status) in engine.backups.list() {
        if status.status == BackupState::Failed {
            continue;
        }
        if let Some(digest) = status.bundle.as_deref().and_then(|b| b.parse().ok()) {
            needed.entry(digest).or_default().push(id.to_string());
        }
    }
    if let Err(e) = engine.agent.store.set_backup_pins(&needed) {
        tracing::error!("cannot pin the bundles backups need: {e}");
    }
}

/// Removes backups beyond `backupRetentionCount` (see [`settings::beyond_retention`]).
pub fn apply_retention(engine: &Engine) {
    let count = engine.backups.settings().settings.backup_retention_count;
    // The versions a rollback can go to: the current one and the one before it.
    let mut protected_versions = Vec::new();
    if let Some(current) = engine.history.deployed().ok().flatten() {
        let all = engine.history.all().unwrap_or_default();
        let previous = all
            .iter()
            .rev()
            .filter(|r| r.revision < current.revision && r.version != current.version)
            .find(|r| matches!(r.outcome, crate::release::history::Outcome::Superseded));
        if let Some(p) = previous {
            protected_versions.push(p.version.clone());
        }
        protected_versions.push(current.version);
    }
    let candidates: Vec<settings::RetentionCandidate<BackupId>> = engine
        .backups
        .list()
        .into_iter()
        .map(|(id, s)| settings::RetentionCandidate {
            protected: s.status == BackupState::Running
                || (s.kind == BackupKind::PreUpgrade && protected_versions.contains(&s.app_version)),
            successful: s.status == BackupState::Success,
            id,
        })
        .collect();
    for id in settings::beyond_retention(&candidates, count) {
        match engine.backups.delete(&id) {
            Ok(()) => {
                tracing::info!("backup {id} removed by retention (backupRetentionCount {count})");
                engine.agent.record(
                    "-",
                    "backup-retention",
                    None,
                    "ok",
                    None,
                    Some(format!("removed backup {id}")),
                );
            }
            Err(e) => tracing::warn!("cannot remove backup {id}: {e}"),
        }
    }
    sync_pins(engine);
}
