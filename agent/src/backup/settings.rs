//! The backup settings seed 001 names (`enableRegularBackups`, `backupFrequency`,
//! `backupRetentionCount`) plus `backupBeforeUpgrade`: seeded from `agent.yaml`, then kept in
//! the agent's state and changed through `PUT /api/v1/backups/config`. Also the two rules
//! that read them: when the next scheduled backup is due, and which backups retention removes.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use schemas::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::BackupsConfig;
use crate::persist;

/// What `GET|PUT /api/v1/backups/config` reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupSettings {
    /// Take backups on `backupFrequency`.
    pub enable_regular_backups: bool,
    /// 6-field cron, seconds first, UTC (`0 0 0 * * *`: daily at 00:00:00).
    pub backup_frequency: String,
    /// How many backups are kept; beyond it the oldest are removed (never the newest
    /// successful one; pre-upgrade backups of the current and previous version are extra).
    pub backup_retention_count: u32,
    /// Take a backup at every upgrade's Backup step.
    pub backup_before_upgrade: bool,
}

impl BackupSettings {
    pub fn seeded(cfg: &BackupsConfig) -> Self {
        Self {
            enable_regular_backups: cfg.enable_regular_backups,
            backup_frequency: cfg.backup_frequency.clone(),
            backup_retention_count: cfg.backup_retention_count,
            backup_before_upgrade: cfg.backup_before_upgrade,
        }
    }

    /// Refuses settings the scheduler could not follow, naming the field.
    pub fn check(&self) -> Result<(), String> {
        check_frequency(&self.backup_frequency).map_err(|e| format!("backupFrequency: {e}"))?;
        if self.backup_retention_count == 0 {
            return Err("backupRetentionCount: must be at least 1".into());
        }
        Ok(())
    }

    /// The next scheduled time strictly after `after`.
    pub fn next_run(&self, after: Timestamp) -> Option<Timestamp> {
        let schedule = check_frequency(&self.backup_frequency).ok()?;
        next_after(&schedule, after)
    }
}

/// Parses a 6-field cron expression (seconds, minutes, hours, day of month, month, day of week).
pub fn check_frequency(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "{expr:?} has {fields} fields; a 6-field cron with seconds first is expected (`0 0 0 * * *` is daily at midnight UTC)"
        ));
    }
    cron::Schedule::from_str(expr).map_err(|e| {
        // The parser's message repeats the expression with a caret under the bad field; the
        // reason is its last line. One line reads well in an API answer, a log and the page.
        let text = e.to_string();
        let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid");
        format!("{expr:?}: {}", reason.trim())
    })
}

fn next_after(schedule: &cron::Schedule, after: Timestamp) -> Option<Timestamp> {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(after.unix(), 0)?;
    let next = schedule.after(&at).next()?;
    Timestamp::from_unix(next.timestamp()).ok()
}

/// The settings and the last scheduled run, in `<store>/release/backup-settings.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsState {
    pub settings: BackupSettings,
    /// When the scheduler last fired (or the settings last changed): a scheduled time between
    /// it and the agent's start was missed while the agent was down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_run: Option<Timestamp>,
}

pub struct SettingsFile {
    path: PathBuf,
}

impl SettingsFile {
    pub fn new(release_dir: &Path) -> Self {
        Self {
            path: release_dir.join("backup-settings.json"),
        }
    }

    /// The kept state, or the one seeded from the configuration.
    pub fn load_or_seed(&self, cfg: &BackupsConfig) -> std::io::Result<SettingsState> {
        Ok(persist::read_json(&self.path)?.unwrap_or_else(|| SettingsState {
            settings: BackupSettings::seeded(cfg),
            last_scheduled_run: None,
        }))
    }

    pub fn save(&self, state: &SettingsState) -> std::io::Result<()> {
        persist::write_json(&self.path, state)
    }
}

/// The first scheduled time after `last` that is not later than `now`: a run the agent missed.
pub fn missed_run(settings: &BackupSettings, last: Timestamp, now: Timestamp) -> Option<Timestamp> {
    if !settings.enable_regular_backups {
        return None;
    }
    settings.next_run(last).filter(|t| *t <= now)
}

/// A backup as retention sees it.
#[derive(Debug, Clone)]
pub struct RetentionCandidate<T> {
    pub id: T,
    pub successful: bool,
    /// Running, or a pre-upgrade backup whose revision is current or previous.
    pub protected: bool,
}

/// What retention removes: of the unprotected backups, newest first, those beyond `count` —
/// but never the newest successful backup of all.
pub fn beyond_retention<T: Clone>(newest_first: &[RetentionCandidate<T>], count: u32) -> Vec<T> {
    let newest_successful = newest_first.iter().position(|c| c.successful);
    newest_first
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.protected)
        .skip(count as usize)
        .filter(|(i, _)| Some(*i) != newest_successful)
        .map(|(_, c)| c.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn settings(freq: &str) -> BackupSettings {
        BackupSettings {
            enable_regular_backups: true,
            backup_frequency: freq.into(),
            backup_retention_count: 3,
            backup_before_upgrade: true,
        }
    }

    #[test]
    fn frequency_is_six_fields_seconds_first_utc() {
        assert!(check_frequency("0 0 0 * * *").is_ok());
        assert!(check_frequency("0 0 * * *").unwrap_err().contains("5 fields"));
        assert!(check_frequency("0 0 0 * * * 2030").unwrap_err().contains("7 fields"));
        let bad_hour = check_frequency("0 0 25 * * *").unwrap_err();
        assert!(
            !bad_hour.contains('\n') && bad_hour.starts_with("\"0 0 25 * * *\": "),
            "{bad_hour}"
        );
        assert!(bad_hour.contains("'25'"), "{bad_hour}");
        let daily = settings("0 0 0 * * *");
        assert_eq!(
            daily.next_run(at("2026-11-22T06:00:00Z")),
            Some(at("2026-11-23T00:00:00Z"))
        );
        let every_two_seconds = settings("*/2 * * * * *");
        assert_eq!(
            every_two_seconds.next_run(at("2026-11-22T06:00:01Z")),
            Some(at("2026-11-22T06:00:02Z"))
        );
    }

    #[test]
    fn a_run_missed_while_down_is_found() {
        let daily = settings("0 0 0 * * *");
        let last = at("2026-11-21T00:00:00Z");
        assert_eq!(
            missed_run(&daily, last, at("2026-11-22T06:00:00Z")),
            Some(at("2026-11-22T00:00:00Z"))
        );
        assert_eq!(missed_run(&daily, last, at("2026-11-21T23:59:59Z")), None);
        let off = BackupSettings {
            enable_regular_backups: false,
            ..daily
        };
        assert_eq!(missed_run(&off, last, at("2026-11-25T00:00:00Z")), None);
    }

    #[test]
    fn retention_keeps_the_count_protected_ones_and_the_newest_success() {
        let c = |id: u32, successful: bool, protected: bool| RetentionCandidate {
            id,
            successful,
            protected,
        };
        // Newest first: 6 5 4 3 2 1; 5 is a protected pre-upgrade backup.
        let list = [
            c(6, true, false),
            c(5, true, true),
            c(4, true, false),
            c(3, false, false),
            c(2, true, false),
            c(1, true, false),
        ];
        assert_eq!(beyond_retention(&list, 3), vec![2, 1]);
        assert_eq!(beyond_retention(&list, 1), vec![4, 3, 2, 1]);
        // Only failures are newer than the one success: it is kept whatever the count.
        let failing = [c(3, false, false), c(2, false, false), c(1, true, false)];
        assert_eq!(beyond_retention(&failing, 1), vec![2]);
    }
}
