//! The agent's operations behind the HTTP API: uploads, imports, versions, audit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use schemas::{Digest, Timestamp, VerifiedHead};
use serde::Serialize;

use crate::audit::{AuditLog, AuditRecord};
use crate::config::AgentConfig;
use crate::import::{ImportContext, ImportOptions, Importer, UploadRecord, Verified, open_data};
use crate::metrics::Metrics;
use crate::persist;
use crate::refusal::ImportRefusal;
use crate::registry::{BlobSource, PushError, PushProgress, RegistryTarget, push_images};
use crate::store::{Store, StoredBundle, head_file};
use crate::trust_state::TrustState;

/// Partial uploads older than this are removed.
pub const UPLOAD_TTL_SECONDS: i64 = 24 * 3600;
/// Bytes between persisted upload checkpoints.
const CHECKPOINT_EVERY: u64 = 64 << 20;
/// Parallel blob uploads to the registry.
const PUSH_PARALLELISM: usize = 4;

/// What arrived of a bundle whose head verified.
enum Arrived {
    /// The whole archive, verified.
    Whole(Verified),
    /// Only the head (and how many bytes were received): the store holds the identity.
    Head(VerifiedHead, u64),
}

/// Where an upload stands (`GET /api/v1/uploads/{id}`, and the answer to each part).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received: where the next part starts.
    pub offset: u64,
    /// The bundle's identity, once its head verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub identity: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The store already holds this identity intact: commit now, without the rest.
    pub stored: bool,
}

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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    pub product: String,
    pub version: String,
    pub sequence: u64,
    #[schema(value_type = String)]
    pub identity: Digest,
    pub signers: Vec<String>,
    pub size: u64,
    /// Bytes of the bundle this import received: all of them, or only the head when the
    /// store already held the identity.
    pub bytes_received: u64,
    pub images: Vec<String>,
    pub already_imported: bool,
    pub restore_only: bool,
    pub pushed: PushSummary,
}

/// What staging a bundle's images sent to the registry.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
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

/// A stored bundle with an entry whose bytes no longer match the digest the manifest gives
/// it. The bundle is marked corrupt; no manifest or tag of it was pushed.
#[derive(Debug, thiserror::Error)]
#[error(
    "stored bundle {version} ({identity}) is corrupt: entry {entry} (expected {expected}) {problem}; it is marked corrupt and no manifest or tag of it was pushed"
)]
pub struct CorruptCopy {
    pub version: String,
    pub identity: Digest,
    /// `blobs/sha256/<hex>`.
    pub entry: String,
    /// The digest the manifest gives the entry.
    pub expected: Digest,
    /// `hashes to sha256:…` or `cannot be read: …`.
    pub problem: String,
}

/// One stored bundle re-hashed by `verify-store`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleCheck {
    pub version: String,
    pub sequence: u64,
    #[schema(value_type = String)]
    pub identity: Digest,
    /// Bytes of the stored file.
    pub size: u64,
    /// Every byte verified; false: the bundle is now marked corrupt in the index.
    pub intact: bool,
    /// The entry whose bytes do not match (`blobs/sha256/<hex>`), when the failure names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Why the bundle does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Wall time of the re-hash.
    pub seconds: f64,
}

/// The answer of `POST /api/v1/verify-store`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheck {
    pub intact: usize,
    pub corrupt: usize,
    /// Every stored bundle, newest version first.
    pub bundles: Vec<BundleCheck>,
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
    /// Staging the images of a stored bundle found an entry whose bytes no longer match the
    /// digest the manifest gives it.
    #[error(transparent)]
    StoredCorrupt(Box<CorruptCopy>),
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
            ServiceError::StoredCorrupt(_) => "stored_bundle_corrupt",
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
    /// Counters for `/metrics`.
    pub metrics: Metrics,
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
            metrics: Metrics::default(),
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

    /// Appends an audit record and counts it for `/metrics`.
    pub fn record(
        &self,
        caller: &str,
        action: &str,
        version: Option<String>,
        outcome: &str,
        code: Option<&str>,
        detail: Option<String>,
    ) {
        self.metrics.observe(action, outcome, code);
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
            size,
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
            let version = s.importer.version().map(str::to_owned);
            drop(s);
            self.discard(id);
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

    /// Completes an upload. Normally the archive must have ended; an upload that holds only
    /// a verified head completes too when the store already holds that identity intact (the
    /// client asked first and sent no body): its images are staged from the stored copy.
    pub async fn commit_upload(&self, caller: &Caller, id: &str) -> Result<ImportSummary, ServiceError> {
        let session = self.session(id)?;
        let (arrived, options, version) = {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            let options = s.record.options;
            let version = s.importer.version().map(str::to_owned);
            if s.importer.is_finished() {
                let placeholder = Importer::new(self.context(options), PathBuf::new(), Box::new(std::io::sink()));
                let importer = std::mem::replace(&mut s.importer, placeholder);
                (
                    importer.finish().map(Arrived::Whole).map_err(ServiceError::Refused),
                    options,
                    version,
                )
            } else {
                match s.importer.head() {
                    Some(head) if self.holds_intact(&head.identity()) => {
                        let received = s.importer.offset();
                        (Ok(Arrived::Head(head.clone(), received)), options, version)
                    }
                    // Every declared byte arrived and the archive has not ended: truncated.
                    _ if s.record.size == Some(s.importer.offset()) => {
                        let refusal = s
                            .importer
                            .end_of_input()
                            .err()
                            .map_or_else(|| ServiceError::Incomplete(id.to_owned()), ServiceError::Refused);
                        (Err(refusal), options, version)
                    }
                    _ => return Err(ServiceError::Incomplete(id.to_owned())),
                }
            }
        };
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let result = match arrived {
            Ok(a) => self.commit(caller, a, options).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let message = match e {
                ServiceError::Refused(r) => r.full_message(),
                other => other.to_string(),
            };
            self.record(
                &caller.name,
                "import",
                version,
                "refused",
                Some(e.code()),
                Some(message),
            );
        }
        let _ = fs_err::remove_dir_all(self.upload_dir(id));
        result
    }

    /// Where an upload stands: its length, and once its head verified, the identity and
    /// whether the store already holds it intact (then the rest need not be sent).
    pub fn upload_status(&self, id: &str) -> Result<UploadStatus, ServiceError> {
        let s = self.session(id)?;
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        let identity = s.importer.head().map(VerifiedHead::identity);
        Ok(UploadStatus {
            id: id.to_owned(),
            offset: s.importer.offset(),
            identity,
            version: s.importer.version().map(str::to_owned),
            stored: identity.is_some_and(|i| self.holds_intact(&i)),
        })
    }

    /// Whether the store holds `identity` and it was not found corrupt.
    fn holds_intact(&self, identity: &Digest) -> bool {
        self.store.get(identity).is_some_and(|b| b.corrupt.is_none())
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
                    // The whole file is here: it must be the whole archive.
                    return s.importer.end_of_input();
                }
                s.importer.push(&buf[..n], agent_store)?;
            }
        });
        if let Err(r) = result {
            let version = session
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .importer
                .version()
                .map(str::to_owned);
            self.discard(&id);
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
        self.commit_upload(caller, &id).await
    }

    /// Commits what arrived of a bundle whose head verified. A new identity (or one whose
    /// stored copy was found corrupt, which the new copy replaces) is moved into the store, the
    /// trust state accepted, then its images pushed. An identity the store holds intact is not
    /// stored again: its images are staged from the stored copy first, and only then is the
    /// head accepted, so a stored copy found corrupt refuses the import and changes nothing
    /// but its own `corrupt` mark.
    async fn commit(
        &self,
        caller: &Caller,
        arrived: Arrived,
        options: ImportOptions,
    ) -> Result<ImportSummary, ServiceError> {
        let _guard = self.commit_lock.lock().await;
        let ctx = self.context(options);
        let head = match &arrived {
            Arrived::Whole(v) => &v.head,
            Arrived::Head(h, _) => h,
        };
        ctx.check_replay(head)?;
        let identity = head.identity();
        let stored = self.store.get(&identity);
        match (arrived, stored) {
            (arrived, Some(stored)) if stored.corrupt.is_none() => {
                let (head, received) = match arrived {
                    Arrived::Whole(v) => {
                        let _ = fs_err::remove_file(&v.data);
                        (v.head, v.size)
                    }
                    Arrived::Head(h, received) => (h, received),
                };
                self.restage(caller, head, stored, received, options).await
            }
            (Arrived::Whole(v), stored) => self.commit_new(caller, v, stored, options).await,
            (Arrived::Head(..), _) => Err(ServiceError::Internal(format!(
                "bundle {identity} is not stored intact: send the whole bundle"
            ))),
        }
    }

    /// An identity the store holds intact, imported again: stage its images from the stored
    /// copy (idempotent: present blobs are not sent again), then accept the head.
    async fn restage(
        &self,
        caller: &Caller,
        head: VerifiedHead,
        stored: StoredBundle,
        received: u64,
        options: ImportOptions,
    ) -> Result<ImportSummary, ServiceError> {
        let m = head.manifest().clone();
        let identity = head.identity();
        let pushed = self.push(&m, &identity).await?;
        self.accept(&head, options)?;
        self.record_admitted(caller, &m, options);
        self.record(
            &caller.name,
            "import",
            Some(m.version.to_string()),
            "ok",
            None,
            Some(format!(
                "{identity} sequence {} (already imported; {received} of {} bytes received)",
                m.sequence, stored.size
            )),
        );
        Ok(self.summary(&head, stored.size, received, true, pushed))
    }

    /// A verified bundle the store does not hold intact: into the store, trust accepted,
    /// images pushed.
    async fn commit_new(
        &self,
        caller: &Caller,
        v: Verified,
        replaces: Option<StoredBundle>,
        options: ImportOptions,
    ) -> Result<ImportSummary, ServiceError> {
        let m = v.head.manifest().clone();
        let identity = v.head.identity();
        let version = m.version.to_string();
        let bundle = StoredBundle {
            identity,
            product: m.product.to_string(),
            version: version.clone(),
            sequence: m.sequence,
            size: v.size,
            created: m.created,
            expires: m.expires,
            imported_at: self.now(),
            signers: v.head.signers().iter().map(ToString::to_string).collect(),
            root_version: v.head.root_version(),
            images: m.images.iter().map(|i| i.name.to_string()).collect(),
            // A corrupt copy being replaced keeps what it was pinned for.
            pins: replaces.as_ref().map(|b| b.pins.clone()).unwrap_or_default(),
            restore_only: options.for_restore && self.now() >= m.expires,
            corrupt: None,
            blobs: v.blobs.clone(),
            head_entry_file: head_file(&identity),
        };
        self.store
            .commit(&v.data, v.head.entry(), bundle)
            .map_err(|source| ImportRefusal::Write { source })?;
        self.accept(&v.head, options)?;
        self.record_admitted(caller, &m, options);
        if let Some(old) = &replaces {
            self.record(
                &caller.name,
                "import",
                Some(version.clone()),
                "warning",
                Some("repaired"),
                Some(format!(
                    "the stored copy of {identity} was corrupt ({}); replaced by this verified copy",
                    old.corrupt.as_deref().unwrap_or("")
                )),
            );
        }
        self.record(
            &caller.name,
            "import",
            Some(version),
            "ok",
            None,
            Some(format!("{identity} sequence {}", m.sequence)),
        );
        // A copy found corrupt right after its verification (a failing disk) stays stored,
        // marked corrupt; the push failure is reported, the import stands.
        let pushed = match self.push(&m, &identity).await {
            Ok(p) => p,
            Err(e) => {
                self.record(
                    "-",
                    "push",
                    Some(m.version.to_string()),
                    "failed",
                    Some(e.code()),
                    Some(e.to_string()),
                );
                PushSummary {
                    error: Some(e.to_string()),
                    ..Default::default()
                }
            }
        };
        Ok(self.summary(&v.head, v.size, v.size, false, pushed))
    }

    /// Raises the trust state by a backup's (never lowering anything); returns the new state.
    pub fn raise_trust(&self, other: &TrustState) -> std::io::Result<TrustState> {
        let next = self.trust_state().raised_by(other);
        persist::write_json(&self.store.dir().join("trust.json"), &next)?;
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = next.clone();
        Ok(next)
    }

    /// Moves the trust state forward with `head` (not for a restore target).
    fn accept(&self, head: &VerifiedHead, options: ImportOptions) -> Result<(), ServiceError> {
        if options.for_restore {
            return Ok(());
        }
        let next = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.accept(head, self.now())
        };
        persist::write_json(&self.store.dir().join("trust.json"), &next).map_err(internal)?;
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Audits the opt-outs an import was admitted under.
    fn record_admitted(&self, caller: &Caller, m: &schemas::Manifest, options: ImportOptions) {
        let version = m.version.to_string();
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
                Some(version),
                "warning",
                Some("for_restore"),
                Some("admitted as a restore target".into()),
            );
        }
    }

    fn summary(
        &self,
        head: &VerifiedHead,
        size: u64,
        received: u64,
        already: bool,
        pushed: PushSummary,
    ) -> ImportSummary {
        if let Err(e) = self.store.apply_retention(self.config.retention.keep) {
            tracing::warn!("retention failed: {e}");
        }
        let m = head.manifest();
        let identity = head.identity();
        ImportSummary {
            product: m.product.to_string(),
            version: m.version.to_string(),
            sequence: m.sequence,
            identity,
            signers: head.signers().iter().map(ToString::to_string).collect(),
            size,
            bytes_received: received,
            images: m.images.iter().map(|i| i.name.to_string()).collect(),
            already_imported: already,
            restore_only: self.store.get(&identity).is_some_and(|b| b.restore_only),
            pushed,
        }
    }

    /// Loads the bundle's images into the configured registry (staging at import), reading
    /// every blob from the stored copy. A failure of the registry is reported in the summary
    /// (and audited); an entry of the stored copy that no longer matches its digest marks the
    /// bundle corrupt and is returned as [`ServiceError::StoredCorrupt`].
    pub async fn push(&self, m: &schemas::Manifest, identity: &Digest) -> Result<PushSummary, ServiceError> {
        let Some(stored) = self.store.get(identity) else {
            return Ok(PushSummary::default());
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
                return Ok(PushSummary {
                    error: Some(e),
                    ..Default::default()
                });
            }
        };
        let started = std::time::Instant::now();
        let result = push_images(&target, &m.images, &blobs, PUSH_PARALLELISM, self.push_progress.clone()).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(r) => {
                self.metrics.add_image_bytes_pushed(r.bytes_uploaded);
                Ok(PushSummary {
                    blobs_uploaded: r.blobs_uploaded,
                    blobs_skipped: r.blobs_skipped,
                    bytes_uploaded: r.bytes_uploaded,
                    manifests_pushed: r.manifests_pushed,
                    tags_pushed: r.tags_pushed,
                    seconds,
                    error: None,
                })
            }
            Err(e) => {
                if let Some((entry, expected, problem)) = corrupt_entry(&e) {
                    let reason = format!("entry {entry} (expected {expected}) {problem}");
                    if let Err(io) = self.store.mark_corrupt(identity, reason) {
                        tracing::error!("cannot mark bundle {identity} corrupt: {io}");
                    }
                    return Err(ServiceError::StoredCorrupt(Box::new(CorruptCopy {
                        version: m.version.to_string(),
                        identity: *identity,
                        entry,
                        expected,
                        problem,
                    })));
                }
                let msg = crate::error_chain(&e);
                self.record(
                    "-",
                    "push",
                    Some(m.version.to_string()),
                    "failed",
                    Some("push_failed"),
                    Some(msg.clone()),
                );
                Ok(PushSummary {
                    seconds,
                    error: Some(msg),
                    ..Default::default()
                })
            }
        }
    }

    /// Re-hashes every stored bundle end to end (the only full re-hash): head, signatures
    /// against the trusted roots and every entry, integrity only — expiry and minSequence do
    /// not matter for what is already stored. A bundle that fails is marked corrupt in the
    /// index, naming the entry; one marked earlier that now verifies has its mark cleared.
    /// Bundles are checked one at a time, each under the commit lock, so no import replaces
    /// a file while it is read.
    pub async fn verify_store(&self, caller: &Caller) -> Result<StoreCheck, ServiceError> {
        let mut bundles = Vec::new();
        for listed in self.store.list() {
            let _guard = self.commit_lock.lock().await;
            // Retention or a replacing import may have removed it meanwhile.
            let Some(stored) = self.store.get(&listed.identity) else {
                continue;
            };
            let path = self.store.path_of(&stored.identity);
            let trusted = self.trust_state().trusted_roots();
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                schemas::verified::verify_file(&path, trusted, schemas::policy::Policy::integrity_only(), |_| {})
            })
            .await
            .map_err(internal)?;
            let seconds = started.elapsed().as_secs_f64();
            let problem = match result {
                Ok(v) if v.head().identity() == stored.identity => None,
                Ok(v) => Some((
                    None,
                    format!("the file holds bundle {}, not {}", v.head().identity(), stored.identity),
                )),
                Err(schemas::verified::VerifyError::Refused(r)) => Some((refused_entry(&r), r.to_string())),
                Err(e) => Some((None, crate::error_chain(&e))),
            };
            let version = stored.version.clone();
            let check = match problem {
                None => {
                    if let Some(old) = &stored.corrupt {
                        self.store.clear_corrupt(&stored.identity).map_err(internal)?;
                        self.record(
                            &caller.name,
                            "verify-store",
                            Some(version.clone()),
                            "warning",
                            Some("corrupt_mark_cleared"),
                            Some(format!(
                                "{} verifies end to end; its earlier corrupt mark ({old}) is cleared",
                                stored.identity
                            )),
                        );
                    }
                    BundleCheck {
                        version,
                        sequence: stored.sequence,
                        identity: stored.identity,
                        size: stored.size,
                        intact: true,
                        entry: None,
                        problem: None,
                        seconds,
                    }
                }
                Some((entry, problem)) => {
                    // The refusal's message names the entry when it has one.
                    let reason = format!("{problem} (found by verify-store)");
                    self.store
                        .mark_corrupt(&stored.identity, reason.clone())
                        .map_err(internal)?;
                    self.record(
                        &caller.name,
                        "verify-store",
                        Some(version.clone()),
                        "failed",
                        Some("stored_bundle_corrupt"),
                        Some(format!("{}: {reason}", stored.identity)),
                    );
                    BundleCheck {
                        version,
                        sequence: stored.sequence,
                        identity: stored.identity,
                        size: stored.size,
                        intact: false,
                        entry,
                        problem: Some(problem),
                        seconds,
                    }
                }
            };
            bundles.push(check);
        }
        let corrupt = bundles.iter().filter(|b| !b.intact).count();
        let intact = bundles.len() - corrupt;
        self.record(
            &caller.name,
            "verify-store",
            None,
            "ok",
            None,
            Some(format!(
                "{} bundles re-hashed: {intact} intact, {corrupt} corrupt",
                bundles.len()
            )),
        );
        Ok(StoreCheck {
            intact,
            corrupt,
            bundles,
        })
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

/// The archive entry a refusal names, if it names one.
fn refused_entry(r: &schemas::Refusal) -> Option<String> {
    use schemas::Refusal as R;
    match r {
        R::DigestMismatch { path, .. }
        | R::EntrySizeMismatch { path, .. }
        | R::NonCanonicalHeader { path, .. }
        | R::HeaderChecksum { path, .. }
        | R::NonZeroPadding { path, .. }
        | R::MetadataTooLarge { path, .. }
        | R::MetadataInvalid { path, .. } => Some(path.clone()),
        _ => None,
    }
}

/// The stored entry a push found corrupt or unreadable: (entry, the digest the manifest gives
/// it, what is wrong).
fn corrupt_entry(e: &PushError) -> Option<(String, Digest, String)> {
    match e {
        PushError::CorruptEntry {
            entry,
            expected,
            actual,
            ..
        } => Some((entry.clone(), *expected, format!("hashes to {actual}"))),
        PushError::ReadEntry {
            entry,
            offset,
            end,
            source,
            ..
        } => {
            let hex = entry.strip_prefix("blobs/sha256/")?;
            let expected = format!("sha256:{hex}").parse::<Digest>().ok()?;
            Some((
                entry.clone(),
                expected,
                format!("cannot be read (bytes {offset}..{end}): {source}"),
            ))
        }
        _ => None,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
