//! The agent's backups as the API and the engine see them: the archive storage with the
//! agent's signing key, the trusted keys of other agents and the optional encryption key; the
//! settings; the one-time grants of step Jobs uploading or reading parts; and the restore log.

use std::collections::BTreeMap;
use std::sync::Mutex;

use schemas::Timestamp;
use serde::{Deserialize, Serialize};

use crate::backup::archive::{
    self, ArchiveError, BackupId, BackupStatus, BackupTrust, DirStorage, EntrySink, Export, SharedStorage,
    VerifiedBackup,
};
use crate::backup::settings::{BackupSettings, SettingsFile, SettingsState};
use crate::persist;
use crate::release::jobs;

/// What a step Job's token allows: one part of one backup, to upload or to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartGrant {
    pub backup: BackupId,
    pub part: String,
    pub upload: bool,
}

/// One restore, by the timestamp of the backup it restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRecord {
    /// The backup restored (`YYYY-MM-DDtHH-MM-SS`).
    pub timestamp: String,
    /// `Running`, `Success` or `Failed`.
    pub status: String,
    #[schema(value_type = String)]
    pub started: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub finished: Option<Timestamp>,
    /// The version the backup was taken of (and the restore re-deploys).
    pub version: String,
    pub source_namespace: String,
    /// Parts (backup steps) and waves not restored.
    #[serde(default)]
    pub skipped: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub requested_by: String,
    /// The `spec.request` id of the restore.
    #[serde(default)]
    pub request: String,
}

pub struct BackupCatalog {
    pub storage: SharedStorage,
    /// The directory behind `storage`, and the free space to leave on its volume.
    dir: std::path::PathBuf,
    reserve_bytes: u64,
    key: keys::SigningKey,
    trust: BackupTrust,
    identity: Option<age::x25519::Identity>,
    settings_file: SettingsFile,
    state: Mutex<SettingsState>,
    /// Woken when the settings change (the scheduler recomputes its next run).
    pub changed: tokio::sync::Notify,
    grants: Mutex<BTreeMap<String, PartGrant>>,
    restores_path: std::path::PathBuf,
    restores: Mutex<()>,
    /// Restore requests whose backup was verified in full by this process (the API checks a
    /// request before it writes it; the controller then picks it up): the newest few.
    verified_requests: Mutex<std::collections::VecDeque<(String, BackupId)>>,
}

/// How many restore requests [`BackupCatalog::open_for_restore`] remembers.
const VERIFIED_REQUESTS: usize = 8;

impl BackupCatalog {
    pub fn open(
        agent: &crate::service::Agent,
        key: keys::SigningKey,
        identity: Option<age::x25519::Identity>,
    ) -> anyhow::Result<Self> {
        let cfg = &agent.config.backups;
        let dir = cfg.dir.clone().unwrap_or_else(|| agent.store.dir().join("backups"));
        fs_err::create_dir_all(&dir)?;
        let storage: SharedStorage = std::sync::Arc::new(DirStorage::new(&dir)?);
        let recovered = archive::recover_interrupted(storage.as_ref())?;
        for id in recovered {
            tracing::warn!("backup {id} was interrupted when the agent stopped; it is marked Failed");
        }
        let mut trusted = Vec::new();
        for path in &cfg.trusted_keys {
            trusted.push(keys::PublicKey::load(path)?);
        }
        let release_dir = agent.store.dir().join("release");
        fs_err::create_dir_all(&release_dir)?;
        let settings_file = SettingsFile::new(&release_dir);
        let state = settings_file.load_or_seed(cfg)?;
        Ok(Self {
            storage,
            dir,
            reserve_bytes: agent.config.store.reserve_bytes.0,
            trust: BackupTrust {
                own: key.public_key(),
                trusted,
            },
            key,
            identity,
            settings_file,
            state: Mutex::new(state),
            changed: tokio::sync::Notify::new(),
            grants: Mutex::new(BTreeMap::new()),
            restores_path: release_dir.join("restores.json"),
            restores: Mutex::new(()),
            verified_requests: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// Opens the catalog with the agent's signing key (and encryption identity, when
    /// configured) from Secrets of the agent's namespace.
    pub async fn open_in_cluster(
        agent: &crate::service::Agent,
        client: &kube::Client,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let cfg = &agent.config.backups;
        let key = archive::agent_key::load_or_create(client, namespace, &cfg.key_secret).await?;
        let identity = match &cfg.encryption {
            Some(e) => Some(archive::agent_key::load_identity(client, namespace, &e.secret, &e.key).await?),
            None => None,
        };
        Self::open(agent, key, identity)
    }

    /// Bytes a new part may still take on the backups' volume (free space minus the store's
    /// reserve).
    pub fn free_bytes(&self) -> u64 {
        crate::store::free_bytes(&self.dir)
            .map(|f| f.saturating_sub(self.reserve_bytes))
            .unwrap_or(u64::MAX)
    }

    pub fn signing_key(&self) -> &keys::SigningKey {
        &self.key
    }

    /// The recipient new archives are encrypted to, when encryption is configured.
    pub fn recipient(&self) -> Option<age::x25519::Recipient> {
        self.identity.as_ref().map(age::x25519::Identity::to_public)
    }

    pub fn trust(&self) -> &BackupTrust {
        &self.trust
    }

    pub fn identity(&self) -> Option<&age::x25519::Identity> {
        self.identity.as_ref()
    }

    /// Every check before a restore reads anything: signature, every entry, decryptability.
    pub fn open_verified(&self, id: &BackupId) -> Result<VerifiedBackup, ArchiveError> {
        archive::open_verified(self.storage.clone(), id, &self.trust, self.identity.as_ref())
    }

    /// A backup verified in full earlier in the same operation (see
    /// [`archive::reopen_verified`]): no second digest pass; reads still check every byte.
    pub fn reopen_verified(&self, id: &BackupId) -> Result<VerifiedBackup, ArchiveError> {
        archive::reopen_verified(self.storage.clone(), id, &self.trust, self.identity.as_ref())
    }

    /// The check of restore `request`: in full, unless this process already verified this
    /// backup in full for the same request (the API's check, moments before the controller's).
    pub fn open_for_restore(&self, id: &BackupId, request: &str) -> Result<VerifiedBackup, ArchiveError> {
        let key = (request.to_owned(), *id);
        let seen = self
            .verified_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key);
        if seen {
            return self.reopen_verified(id);
        }
        let backup = self.open_verified(id)?;
        let mut verified = self.verified_requests.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() == VERIFIED_REQUESTS {
            verified.pop_front();
        }
        verified.push_back(key);
        Ok(backup)
    }

    /// Whether a backup with this id exists (in any state).
    pub fn contains(&self, id: &BackupId) -> Result<bool, ArchiveError> {
        match archive::read_status(self.storage.as_ref(), id) {
            Ok(_) => Ok(true),
            Err(ArchiveError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn status(&self, id: &BackupId) -> Result<BackupStatus, ArchiveError> {
        archive::read_status(self.storage.as_ref(), id)
    }

    /// Deletes a backup's data and metadata.
    pub fn delete(&self, id: &BackupId) -> Result<(), ArchiveError> {
        archive::delete_backup(self.storage.as_ref(), id)
    }

    /// A verified backup ready to be written as one archive.
    pub fn export(&self, id: &BackupId) -> Result<Export, ArchiveError> {
        Export::prepare(self.storage.clone(), id, &self.trust)
    }

    /// Imports an exported archive, verified completely before it is kept.
    pub fn import(&self, input: impl std::io::Read) -> Result<BackupId, ArchiveError> {
        archive::import(self.storage.as_ref(), input, &self.trust, self.identity.as_ref())
    }

    /// Where a backup step's upload goes (refused once the part is stored).
    pub fn part_sink(&self, id: &BackupId, step: &str) -> Result<EntrySink, ArchiveError> {
        archive::open_part_sink(
            self.storage.clone(),
            id,
            &crate::backup::capture::part_entry(step),
            self.recipient(),
        )
    }

    /// Whether a backup step's upload was stored.
    pub fn part_stored(&self, id: &BackupId, step: &str) -> bool {
        let key = format!(
            "{id}/{}/{}",
            archive::ENTRIES_DIR,
            crate::backup::capture::part_entry(step)
        );
        self.storage.size(&key).is_ok()
    }

    /// A stored part for a restore step. Only a restore's step Jobs hold a read grant, and the
    /// restore verified the backup in full before it started them; the read checks the bytes.
    pub fn read_part(&self, id: &BackupId, step: &str) -> Result<Box<dyn std::io::Read + Send>, ArchiveError> {
        self.reopen_verified(id)?
            .read(&crate::backup::capture::part_entry(step))
    }

    // --- settings -------------------------------------------------------------------------

    pub fn settings(&self) -> SettingsState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_settings(&self, settings: BackupSettings) -> Result<(), String> {
        settings.check()?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = state.clone();
        next.settings = settings;
        // Changing the schedule starts it afresh: nothing counts as missed before now.
        next.last_scheduled_run = Some(Timestamp::now());
        self.settings_file.save(&next).map_err(|e| e.to_string())?;
        *state = next;
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn set_last_scheduled_run(&self, at: Timestamp) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_scheduled_run = Some(at);
        if let Err(e) = self.settings_file.save(&state) {
            tracing::error!("cannot save the backup schedule state: {e}");
        }
    }

    // --- grants of step Jobs ----------------------------------------------------------------

    /// A fresh one-time token allowing `grant`; returns the token (the Job's env gets it).
    pub fn grant(&self, grant: PartGrant) -> String {
        let token = jobs::new_step_token();
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(jobs::token_hash(&token), grant);
        token
    }

    /// The grant of `token` if it allows this access.
    pub fn granted(&self, token: &str, backup: &BackupId, part: &str, upload: bool) -> bool {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&jobs::token_hash(token))
            .is_some_and(|g| &g.backup == backup && g.part == part && g.upload == upload)
    }

    /// Ends a grant (the upload committed, or its Job finished).
    pub fn revoke(&self, token: &str) {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&jobs::token_hash(token));
    }

    // --- listing --------------------------------------------------------------------------

    /// Every backup with its status, newest first.
    pub fn list(&self) -> Vec<(BackupId, BackupStatus)> {
        let mut out: Vec<(BackupId, BackupStatus)> = archive::list_backups(self.storage.as_ref())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| archive::read_status(self.storage.as_ref(), &id).ok().map(|s| (id, s)))
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.0));
        out
    }

    // --- restore log ----------------------------------------------------------------------

    pub fn restores(&self) -> Vec<RestoreRecord> {
        persist::read_json(&self.restores_path)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Adds or replaces (same timestamp and start) a restore record.
    pub fn record_restore(&self, record: RestoreRecord) {
        let _one_writer = self.restores.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.restores();
        all.retain(|r| !(r.timestamp == record.timestamp && r.request == record.request));
        all.push(record);
        if let Err(e) = persist::write_json(&self.restores_path, &all) {
            tracing::error!("cannot record the restore: {e}");
        }
    }
}
