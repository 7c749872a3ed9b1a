//! The agent's operations behind the HTTP API: uploads, imports, versions, audit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use schemas::{Digest, Timestamp};
use serde::Serialize;

use crate::audit::{AuditLog, AuditRecord};
use crate::config::AgentConfig;
use crate::import::{ImportContext, ImportOptions, Importer, UploadRecord, Verified, open_data};
use crate::persist;
use crate::refusal::ImportRefusal;
use crate::registry::{BlobSource, PushProgress, RegistryTarget, push_images};
use crate::store::{Store, StoredBundle, head_file};
use crate::trust_state::TrustState;

/// Partial uploads older than this are removed.
pub const UPLOAD_TTL_SECONDS: i64 = 24 * 3600;
/// Bytes between persisted upload checkpoints.
const CHECKPOINT_EVERY: u64 = 64 << 20;
/// Parallel blob uploads to the registry.
const PUSH_PARALLELISM: usize = 4;

/// Who is calling, from their bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
}

/// An upload in progress.
pub struct UploadSession {
    pub record: UploadRecord,
    pub importer: Importer,
}

/// What an import produced.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    pub product: String,
    pub version: String,
    pub sequence: u64,
    pub identity: Digest,
    pub signers: Vec<String>,
    pub size: u64,
    pub images: Vec<String>,
    pub already_imported: bool,
    pub restore_only: bool,
    pub pushed: PushSummary,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSummary {
    pub blobs_uploaded: usize,
    pub blobs_skipped: usize,
    pub bytes_uploaded: u64,
    pub manifests_pushed: usize,
    pub tags_pushed: usize,
    /// Wall time of the push.
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An operation's failure as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Refused(#[from] ImportRefusal),
    #[error("upload {0} does not exist or expired")]
    NoSuchUpload(String),
    #[error("part starts at byte {given}, but the upload has {expected} bytes")]
    WrongOffset { given: u64, expected: u64 },
    #[error("upload {0} is not complete: the archive has not ended")]
    Incomplete(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Refused(r) => r.code(),
            ServiceError::NoSuchUpload(_) => "no_such_upload",
            ServiceError::WrongOffset { .. } => "wrong_offset",
            ServiceError::Incomplete(_) => "incomplete",
            ServiceError::Internal(_) => "internal",
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// The agent: configuration, store, trust state, audit log and uploads.
pub struct Agent {
    pub config: AgentConfig,
    pub store: Store,
    pub audit: AuditLog,
    state: Mutex<TrustState>,
    /// One commit at a time: trust state and index change together.
    commit_lock: tokio::sync::Mutex<()>,
    uploads: Mutex<HashMap<String, Arc<Mutex<UploadSession>>>>,
    pub push_progress: Arc<PushProgress>,
    tokens: Vec<(String, Caller)>,
    clock: Box<dyn Fn() -> Timestamp + Send + Sync>,
}

impl Agent {
    /// Opens the store and trust state, seeding the state from the configured root.
    pub fn open(config: AgentConfig) -> anyhow::Result<Self> {
        Self::open_with_clock(config, Box::new(Timestamp::now))
    }

    /// As [`Agent::open`] with an injected clock (tests).
    pub fn open_with_clock(
        config: AgentConfig,
        clock: Box<dyn Fn() -> Timestamp + Send + Sync>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let store = Store::open(
            &config.store.dir,
            config.store.max_bytes.0,
            config.store.reserve_bytes.0,
        )
        .with_context(|| format!("cannot open the store {}", config.store.dir.display()))?;
        let root_bytes = fs_err::read(&config.trust.root)?;
        let root = keys::Envelope::parse_canonical(&root_bytes)
            .with_context(|| format!("trust.root {} is not a root envelope", config.trust.root.display()))?;
        let doc = keys::root_document(&root).with_context(|| format!("trust.root {}", config.trust.root.display()))?;
        let state_path = config.store.dir.join("trust.json");
        let state = match persist::read_json::<TrustState>(&state_path)? {
            Some(s) => s,
            None => {
                let s = TrustState::anchored(&root, doc.version);
                persist::write_json(&state_path, &s)?;
                s
            }
        };
        let mut tokens = Vec::new();
        for (list, admin) in [(&config.tokens.admin, true), (&config.tokens.viewer, false)] {
            for t in list {
                let value = fs_err::read_to_string(&t.token_file)?.trim().to_owned();
                anyhow::ensure!(
                    value.len() >= 16,
                    "token {} in {} is shorter than 16 characters",
                    t.name,
                    t.token_file.display()
                );
                tokens.push((
                    value,
                    Caller {
                        name: t.name.clone(),
                        admin,
                    },
                ));
            }
        }
        let audit = AuditLog::new(&config.store.dir.join("audit.jsonl"));
        let agent = Self {
            config,
            store,
            audit,
            state: Mutex::new(state),
            commit_lock: tokio::sync::Mutex::new(()),
            uploads: Mutex::new(HashMap::new()),
            push_progress: Arc::new(PushProgress::default()),
            tokens,
            clock,
        };
        agent.expire_uploads();
        Ok(agent)
    }

    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    pub fn trust_state(&self) -> TrustState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The caller a bearer token names, compared in constant time.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, c)| c.clone())
    }

    pub fn record(
        &self,
        caller: &str,
        action: &str,
        version: Option<String>,
        outcome: &str,
        code: Option<&str>,
        detail: Option<String>,
    ) {
        let r = AuditRecord {
            time: self.now(),
            token: caller.to_owned(),
            action: action.to_owned(),
            version,
            outcome: outcome.to_owned(),
            code: code.map(str::to_owned),
            detail,
        };
        if let Err(e) = self.audit.append(&r) {
            tracing::error!("cannot write the audit log: {e}");
        }
    }

    fn context(&self, options: ImportOptions) -> ImportContext {
        ImportContext {
            product: self.config.trust.product.clone(),
            skew_seconds: self.config.skew_seconds(),
            now: self.now(),
            state: self.trust_state(),
            options,
        }
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.store.dir().join("uploads").join(id)
    }

    /// Starts an upload. `size`, when given, is checked against space up front.
    pub fn create_upload(
        &self,
        caller: &Caller,
        options: ImportOptions,
        size: Option<u64>,
    ) -> Result<String, ServiceError> {
        if let Some(size) = size
            && let Err(r) = self.store.check_space(size)
        {
            self.record(
                &caller.name,
                "upload",
                None,
                "refused",
                Some(r.code()),
                Some(r.full_message()),
            );
            return Err(r.into());
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let dir = self.upload_dir(&id);
        fs_err::create_dir_all(&dir).map_err(internal)?;
        let record = UploadRecord {
            id: id.clone(),
            created: self.now(),
            token: caller.name.clone(),
            options,
            committed: 0,
            next_entry: None,
            blobs: Default::default(),
        };
        persist::write_json(&dir.join("upload.json"), &record).map_err(internal)?;
        let file = open_data(&dir.join("data"), 0).map_err(internal)?;
        let importer = Importer::new(
            self.context(options),
            dir.join("data"),
            Box::new(crate::import::FileSink(file)),
        );
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), Arc::new(Mutex::new(UploadSession { record, importer })));
        Ok(id)
    }

    /// The session for `id`, restored from disk after a restart (from its last verified
    /// entry boundary).
    pub fn session(&self, id: &str) -> Result<Arc<Mutex<UploadSession>>, ServiceError> {
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.len() != 32 {
            return Err(ServiceError::NoSuchUpload(id.to_owned()));
        }
        if let Some(s) = self.uploads.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(s.clone());
        }
        let dir = self.upload_dir(id);
        let record: UploadRecord = persist::read_json(&dir.join("upload.json"))
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NoSuchUpload(id.to_owned()))?;
        if record.created.plus(UPLOAD_TTL_SECONDS) < self.now() {
            let _ = fs_err::remove_dir_all(&dir);
            return Err(ServiceError::NoSuchUpload(id.to_owned()));
        }
        let ctx = self.context(record.options);
        let (importer, record) = match record.next_entry {
            Some(_) => {
                let head = fs_err::read(dir.join("head")).map_err(internal)?;
                let file = open_data(&dir.join("data"), record.committed).map_err(internal)?;
                let importer = Importer::resume(
                    ctx,
                    dir.join("data"),
                    Box::new(crate::import::FileSink(file)),
                    &head,
                    &record,
                )?;
                (importer, record)
            }
            None => {
                let file = open_data(&dir.join("data"), 0).map_err(internal)?;
                let record = UploadRecord { committed: 0, ..record };
                (
                    Importer::new(ctx, dir.join("data"), Box::new(crate::import::FileSink(file))),
                    record,
                )
            }
        };
        let session = Arc::new(Mutex::new(UploadSession { record, importer }));
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), session.clone());
        Ok(session)
    }

    /// Bytes the upload holds (where the next part starts).
    pub fn upload_offset(&self, id: &str) -> Result<u64, ServiceError> {
        let s = self.session(id)?;
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        Ok(s.importer.offset())
    }

    /// Appends a part at `offset` (must equal the upload's length). Runs the parser; on a
    /// refusal the upload is discarded.
    pub fn put_part(&self, caller: &Caller, id: &str, offset: u64, bytes: &[u8]) -> Result<u64, ServiceError> {
        let session = self.session(id)?;
        let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
        let expected = s.importer.offset();
        if offset != expected {
            return Err(ServiceError::WrongOffset {
                given: offset,
                expected,
            });
        }
        if let Err(r) = s.importer.push(bytes, &self.store) {
            drop(s);
            self.discard(id);
            let version = None;
            self.record(
                &caller.name,
                "import",
                version,
                "refused",
                Some(r.code()),
                Some(r.full_message()),
            );
            return Err(r.into());
        }
        // Persist the last entry boundary so a restart resumes from there: the data up to it
        // is synced first, and at most every CHECKPOINT_EVERY bytes (and at the head and the end).
        if let Some(cp) = s.importer.checkpoint() {
            let first = s.record.next_entry.is_none();
            let due = cp.offset >= s.record.committed + CHECKPOINT_EVERY || s.importer.is_finished();
            if first || (due && cp.offset > s.record.committed) {
                if first && let Some(h) = s.importer.head() {
                    persist::write_atomically(&self.upload_dir(id).join("head"), h.entry()).map_err(internal)?;
                }
                s.importer.sync().map_err(internal)?;
                s.record.committed = cp.offset;
                s.record.next_entry = Some(cp.next_entry);
                s.record.blobs = s.importer.blobs().clone();
                persist::write_json(&self.upload_dir(id).join("upload.json"), &s.record).map_err(internal)?;
            }
        }
        Ok(s.importer.offset())
    }

    fn discard(&self, id: &str) {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let _ = fs_err::remove_dir_all(self.upload_dir(id));
    }

    /// Removes uploads older than a day.
    pub fn expire_uploads(&self) {
        let Ok(entries) = fs_err::read_dir(self.store.dir().join("uploads")) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let record: Option<UploadRecord> = persist::read_json(&e.path().join("upload.json")).ok().flatten();
            let expired = record.is_none_or(|r| r.created.plus(UPLOAD_TTL_SECONDS) < self.now());
            if expired {
                tracing::info!("removing expired upload {id}");
                self.discard(&id);
            }
        }
    }

    /// Completes an upload: the archive must have ended; then it is committed.
    pub async fn commit_upload(&self, caller: &Caller, id: &str) -> Result<ImportSummary, ServiceError> {
        let session = self.session(id)?;
        let (verified, options) = {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            if !s.importer.is_finished() {
                return Err(ServiceError::Incomplete(id.to_owned()));
            }
            let placeholder = Importer::new(
                self.context(s.record.options),
                PathBuf::new(),
                Box::new(std::io::sink()),
            );
            let importer = std::mem::replace(&mut s.importer, placeholder);
            (importer.finish(), s.record.options)
        };
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let result = match verified {
            Ok(v) => self.commit_verified(caller, v, options).await,
            Err(r) => Err(r.into()),
        };
        if let Err(e) = &result {
            self.record(
                &caller.name,
                "import",
                None,
                "refused",
                Some(e.code()),
                Some(e.to_string()),
            );
        }
        let _ = fs_err::remove_dir_all(self.upload_dir(id));
        result
    }

    /// Imports a file already on the agent's volume, copying it into the store while verifying.
    pub async fn import_path(
        &self,
        caller: &Caller,
        path: PathBuf,
        options: ImportOptions,
    ) -> Result<ImportSummary, ServiceError> {
        let id = self.create_upload(caller, options, None)?;
        let session = self.session(&id)?;
        let agent_store = &self.store;
        let result: Result<(), ImportRefusal> = tokio::task::block_in_place(|| {
            use std::io::Read;
            let mut file = std::fs::File::open(&path).map_err(|source| ImportRefusal::Source {
                path: path.display().to_string(),
                source,
            })?;
            let mut buf = vec![0u8; 1 << 20];
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let n = file.read(&mut buf).map_err(|source| ImportRefusal::Source {
                    path: path.display().to_string(),
                    source,
                })?;
                if n == 0 {
                    return Ok(());
                }
                s.importer.push(&buf[..n], agent_store)?;
            }
        });
        if let Err(r) = result {
            self.discard(&id);
            self.record(
                &caller.name,
                "import",
                None,
                "refused",
                Some(r.code()),
                Some(r.full_message()),
            );
            return Err(r.into());
        }
        self.commit_upload(caller, &id).await
    }

    async fn commit_verified(
        &self,
        caller: &Caller,
        v: Verified,
        options: ImportOptions,
    ) -> Result<ImportSummary, ServiceError> {
        let _guard = self.commit_lock.lock().await;
        let ctx = self.context(options);
        ctx.check_replay(&v.head)?;
        let m = v.head.manifest().clone();
        let identity = v.head.identity();
        let version = m.version.to_string();
        let signers: Vec<String> = v.head.signers().iter().map(ToString::to_string).collect();
        let images: Vec<String> = m.images.iter().map(|i| i.name.to_string()).collect();
        let already = self.store.get(&identity).is_some();
        if already {
            let _ = fs_err::remove_file(&v.data);
        } else {
            let bundle = StoredBundle {
                identity,
                product: m.product.to_string(),
                version: version.clone(),
                sequence: m.sequence,
                size: v.size,
                created: m.created,
                expires: m.expires,
                imported_at: self.now(),
                signers: signers.clone(),
                root_version: v.head.root_version(),
                images: images.clone(),
                pins: Default::default(),
                restore_only: options.for_restore && self.now() >= m.expires,
                corrupt: None,
                blobs: v.blobs.clone(),
                head_entry_file: head_file(&identity),
            };
            self.store
                .commit(&v.data, v.head.entry(), bundle)
                .map_err(|source| ImportRefusal::Write { source })?;
        }
        if !options.for_restore {
            let next = {
                let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.accept(&v.head, self.now())
            };
            persist::write_json(&self.store.dir().join("trust.json"), &next).map_err(internal)?;
            *self.state.lock().unwrap_or_else(|p| p.into_inner()) = next;
        }
        let restore_only = self.store.get(&identity).is_some_and(|b| b.restore_only);
        if options.allow_older {
            self.record(
                &caller.name,
                "import",
                Some(version.clone()),
                "warning",
                Some("allow_older"),
                Some("older build admitted with --allow-older".into()),
            );
        }
        if options.for_restore {
            self.record(
                &caller.name,
                "import",
                Some(version.clone()),
                "warning",
                Some("for_restore"),
                Some("admitted as a restore target".into()),
            );
        }
        self.record(
            &caller.name,
            "import",
            Some(version.clone()),
            "ok",
            None,
            Some(format!(
                "{identity} sequence {}{}",
                m.sequence,
                if already { " (already imported)" } else { "" }
            )),
        );
        let started = std::time::Instant::now();
        let mut pushed = self.push(&m, &identity).await;
        pushed.seconds = started.elapsed().as_secs_f64();
        if let Err(e) = self.store.apply_retention(self.config.retention.keep) {
            tracing::warn!("retention failed: {e}");
        }
        Ok(ImportSummary {
            product: m.product.to_string(),
            version,
            sequence: m.sequence,
            identity,
            signers,
            size: v.size,
            images,
            already_imported: already,
            restore_only,
            pushed,
        })
    }

    /// Loads the bundle's images into the configured registry (staging at import).
    async fn push(&self, m: &schemas::Manifest, identity: &Digest) -> PushSummary {
        let Some(stored) = self.store.get(identity) else {
            return PushSummary::default();
        };
        let file = self.store.path_of(identity);
        let blobs = stored
            .blobs
            .iter()
            .map(|(d, loc)| {
                (
                    *d,
                    BlobSource {
                        file: file.clone(),
                        offset: loc.offset,
                        size: loc.size,
                    },
                )
            })
            .collect();
        let target = match self.registry_target() {
            Ok(t) => t,
            Err(e) => {
                return PushSummary {
                    error: Some(e),
                    ..Default::default()
                };
            }
        };
        match push_images(&target, &m.images, &blobs, PUSH_PARALLELISM, self.push_progress.clone()).await {
            Ok(r) => PushSummary {
                blobs_uploaded: r.blobs_uploaded,
                blobs_skipped: r.blobs_skipped,
                bytes_uploaded: r.bytes_uploaded,
                manifests_pushed: r.manifests_pushed,
                tags_pushed: r.tags_pushed,
                seconds: 0.0,
                error: None,
            },
            Err(e) => {
                let msg = crate::error_chain(&e);
                if let Some(entry) = e.corrupt_entry() {
                    let reason = format!("entry {entry} no longer matches its digest");
                    if let Err(io) = self.store.mark_corrupt(identity, reason) {
                        tracing::error!("cannot mark bundle {identity} corrupt: {io}");
                    }
                }
                self.record(
                    "-",
                    "push",
                    Some(m.version.to_string()),
                    "failed",
                    Some("push_failed"),
                    Some(msg.clone()),
                );
                PushSummary {
                    error: Some(msg),
                    ..Default::default()
                }
            }
        }
    }

    fn registry_target(&self) -> Result<RegistryTarget, String> {
        let r = &self.config.registry;
        let credentials = match (&r.username, &r.password_file) {
            (Some(u), Some(p)) => {
                let pw = fs_err::read_to_string(p).map_err(|e| e.to_string())?;
                Some((u.clone(), pw.trim().to_owned()))
            }
            _ => None,
        };
        Ok(RegistryTarget {
            url: r.url.clone(),
            path_prefix: r.path_prefix.clone(),
            credentials,
            ca_pem: r.ca_file.clone(),
            insecure_http: r.insecure,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
