//! Regular backups: fires on `backupFrequency` while `enableRegularBackups` is true. A run
//! that falls due while an operation (or another backup) holds the agent waits for it; a run
//! missed while the agent was down is skipped and logged, never made up.

use std::sync::Arc;
use std::time::Duration;

use schemas::Timestamp;

use crate::backup::archive::BackupKind;
use crate::backup::{BackupRequestError, settings, start_backup};
use crate::release::engine::{Engine, EngineError};

/// Runs for the life of the agent.
pub async fn run(engine: Arc<Engine>) {
    report_missed(&engine);
    loop {
        let state = engine.backups.settings();
        let changed = engine.backups.changed.notified();
        if !state.settings.enable_regular_backups {
            changed.await;
            continue;
        }
        let now = Timestamp::now();
        let Some(due) = state.settings.next_run(now) else {
            changed.await;
            continue;
        };
        let wait = Duration::from_secs(due.unix().saturating_sub(now.unix()).max(0) as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = changed => continue,
        }
        // Wait out up to a second of clock granularity so the id is the due second or later.
        while Timestamp::now() < due {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fire(&engine, due).await;
    }
}

/// Starts the due backup, waiting while an operation or another backup runs.
async fn fire(engine: &Arc<Engine>, due: Timestamp) {
    loop {
        match start_backup(engine, BackupKind::Scheduled, "schedule") {
            Ok(id) => {
                tracing::info!("scheduled backup {id} (due {due}) started");
                engine.backups.set_last_scheduled_run(due);
                return;
            }
            Err(BackupRequestError::Engine(EngineError::Busy(what))) => {
                tracing::info!("scheduled backup due {due} waits: {what}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Settings changed while it waited: a run no longer wanted is dropped.
                let settings = engine.backups.settings().settings;
                if !settings.enable_regular_backups {
                    tracing::info!("scheduled backup due {due} dropped: regular backups were disabled meanwhile");
                    engine.backups.set_last_scheduled_run(due);
                    return;
                }
            }
            Err(BackupRequestError::SameSecond(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!("scheduled backup due {due} not taken: {e}");
                engine.agent.record(
                    "schedule",
                    "backup",
                    None,
                    "skipped",
                    Some(e.code()),
                    Some(format!("scheduled backup due {due}: {e}")),
                );
                engine.backups.set_last_scheduled_run(due);
                return;
            }
        }
    }
}

/// Logs and audits a scheduled run that fell while the agent was down.
fn report_missed(engine: &Engine) {
    let state = engine.backups.settings();
    let now = Timestamp::now();
    if let Some(last) = state.last_scheduled_run
        && let Some(missed) = settings::missed_run(&state.settings, last, now)
    {
        let note = format!("the scheduled backup due {missed} was missed while the agent was down; it is skipped");
        tracing::warn!("{note}");
        engine
            .agent
            .record("schedule", "backup", None, "skipped", Some("missed"), Some(note));
    }
    engine.backups.set_last_scheduled_run(now);
}
