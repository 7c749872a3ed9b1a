//! Backup and restore endpoints (seed 001's API under `/api/v1`): take, list, inspect, delete,
//! settings, export and import of archives, restores; and the part uploads and downloads of
//! backup and restore step Jobs, authenticated by their one-time step tokens.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{ApiError, ErrorBody, caller};
use crate::backup::archive::BackupKind;
use crate::backup::archive::{ArchiveError, BackupId, BackupStatus};
use crate::backup::catalog::RestoreRecord;
use crate::backup::restore::RestoreRefusal;
use crate::backup::settings::BackupSettings;
use crate::backup::{BackupRequestError, start_backup};
use crate::release::engine::Engine;
use crate::service::Agent;

#[derive(Clone)]
pub(crate) struct Backups {
    agent: Arc<Agent>,
    engine: Arc<Engine>,
}

pub fn router(agent: Arc<Agent>, engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/api/v1/backups", post(create).get(list))
        .route("/api/v1/backups/latest", get(latest))
        .route("/api/v1/backups/config", get(get_config).put(put_config))
        .route("/api/v1/backups/import", post(import))
        .route("/api/v1/backups/key", get(key))
        .route("/api/v1/backups/{ts}", get(show).delete(delete))
        .route("/api/v1/backups/{ts}/archive", get(archive))
        .route("/api/v1/backups/{ts}/parts/{step}", put(put_part).get(get_part))
        .route("/api/v1/restores", post(restore))
        .route("/api/v1/restores/latest", get(restore_latest))
        .route("/api/v1/restores/{ts}", get(restore_status))
        .with_state(Backups { agent, engine })
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        let status = match &e {
            ArchiveError::NotFound { .. } => StatusCode::NOT_FOUND,
            ArchiveError::Exists { .. } | ArchiveError::PartExists { .. } => StatusCode::CONFLICT,
            ArchiveError::IdInvalid { .. } => StatusCode::BAD_REQUEST,
            ArchiveError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<BackupRequestError> for ApiError {
    fn from(e: BackupRequestError) -> Self {
        match e {
            BackupRequestError::Engine(e) => e.into(),
            BackupRequestError::SameSecond(_) => ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()),
            BackupRequestError::NothingInstalled => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
            }
        }
    }
}

impl From<RestoreRefusal> for ApiError {
    fn from(e: RestoreRefusal) -> Self {
        match e {
            RestoreRefusal::Archive(a) => a.into(),
            RestoreRefusal::BundleMissing { .. } => ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()),
            RestoreRefusal::UnknownNames { .. } | RestoreRefusal::NotConfirmed => {
                ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
            }
            RestoreRefusal::Internal(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string()),
        }
    }
}

fn parse_id(ts: &str) -> Result<BackupId, ApiError> {
    ts.parse::<BackupId>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "backup_id_invalid", e.to_string()))
}

/// A backup as listed (never its contents).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupView {
    /// `YYYY-MM-DDtHH-MM-SS`, UTC: the backup's id.
    pub timestamp: String,
    /// `Running`, `Success` or `Failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub size_bytes: u64,
    /// The application version backed up.
    pub app_version: String,
    /// RFC 3339.
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// `manual`, `scheduled` or `preUpgrade`.
    pub kind: String,
    /// The revision a pre-upgrade backup was taken of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    pub encrypted: bool,
}

impl BackupView {
    fn of(id: &BackupId, s: &BackupStatus) -> Self {
        BackupView {
            timestamp: id.to_string(),
            status: s.status.to_string(),
            reason: s.reason.clone(),
            size_bytes: s.size_bytes,
            app_version: s.app_version.clone(),
            created: s.created.to_string(),
            finished: s.finished.map(|f| f.to_string()),
            kind: s.kind.to_string(),
            revision: s.revision,
            encrypted: s.encrypted,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<BackupView>,
}

/// `202` answer of `POST /api/v1/backups` and `POST /api/v1/restores`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    pub timestamp: String,
    /// `Running`.
    pub status: String,
    /// A restore's `spec.request` id (its record in `GET /api/v1/restores/{ts}` carries it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// Takes a backup of the deployed release now, under the operation Lease.
#[utoipa::path(post, path = "/api/v1/backups", tag = "backups",
    responses((status = 202, body = Started), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`operation_running`, or `backup_exists` (one already has this second's timestamp)", body = ErrorBody),
        (status = 422, description = "`nothing_installed`", body = ErrorBody)))]
pub(super) async fn create(
    State(b): State<Backups>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let who = caller(&b.agent, &headers, "backup", true)?;
    let id = start_backup(&b.engine, BackupKind::Manual, &who.name).map_err(|e| {
        b.agent.record(
            &who.name,
            "backup",
            None,
            "refused",
            Some(e.code()),
            Some(e.to_string()),
        );
        ApiError::from(e)
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            timestamp: id.to_string(),
            status: "Running".into(),
            request: None,
        }),
    ))
}

/// Every backup, newest first.
#[utoipa::path(get, path = "/api/v1/backups", tag = "backups",
    responses((status = 200, body = BackupList), (status = 401, body = ErrorBody)))]
pub(super) async fn list(State(b): State<Backups>, headers: HeaderMap) -> Result<Json<BackupList>, ApiError> {
    caller(&b.agent, &headers, "backups", false)?;
    let backups = b
        .engine
        .backups
        .list()
        .iter()
        .map(|(id, s)| BackupView::of(id, s))
        .collect();
    Ok(Json(BackupList { backups }))
}

/// The newest backup (the one running, if any).
#[utoipa::path(get, path = "/api/v1/backups/latest", tag = "backups",
    responses((status = 200, body = BackupView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn latest(State(b): State<Backups>, headers: HeaderMap) -> Result<Json<BackupView>, ApiError> {
    caller(&b.agent, &headers, "backups", false)?;
    b.engine
        .backups
        .list()
        .first()
        .map(|(id, s)| Json(BackupView::of(id, s)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "backup_not_found", "there is no backup yet"))
}

/// One backup's status.
#[utoipa::path(get, path = "/api/v1/backups/{ts}", tag = "backups",
    params(("ts" = String, Path, description = "`YYYY-MM-DDtHH-MM-SS`")),
    responses((status = 200, body = BackupView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(b): State<Backups>,
    headers: HeaderMap,
    Path(ts): Path<String>,
) -> Result<Json<BackupView>, ApiError> {
    caller(&b.agent, &headers, "backups", false)?;
    let id = parse_id(&ts)?;
    let status = b.engine.backups.status(&id)?;
    Ok(Json(BackupView::of(&id, &status)))
}

/// Deletes a backup: its data and its metadata. A running backup cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/backups/{ts}", tag = "backups",
    params(("ts" = String, Path, description = "`YYYY-MM-DDtHH-MM-SS`")),
    responses((status = 200, body = BackupView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`backup_running`", body = ErrorBody)))]
pub(super) async fn delete(
    State(b): State<Backups>,
    headers: HeaderMap,
    Path(ts): Path<String>,
) -> Result<Json<BackupView>, ApiError> {
    let who = caller(&b.agent, &headers, "backup-delete", true)?;
    let id = parse_id(&ts)?;
    let status = b.engine.backups.status(&id)?;
    if status.status == crate::backup::archive::BackupState::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup_running",
            format!("backup {id} is running; it can be deleted when it ends"),
        ));
    }
    b.engine.backups.delete(&id)?;
    crate::backup::sync_pins(&b.engine);
    b.agent.record(
        &who.name,
        "backup-delete",
        Some(status.app_version.clone()),
        "ok",
        None,
        Some(format!("backup {id}")),
    );
    Ok(Json(BackupView::of(&id, &status)))
}

/// This agent's archive-signing public key: another agent lists it in
/// `backups.trustedKeys` to accept this agent's archives.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyView {
    /// SPKI PEM, as `openssl pkey -pubout` writes it.
    pub public_key: String,
    /// SHA-256 of the key's SPKI DER, hex (the id errors name).
    pub key_id: String,
}

/// The agent's archive-signing public key.
#[utoipa::path(get, path = "/api/v1/backups/key", tag = "backups",
    responses((status = 200, body = SigningKeyView), (status = 401, body = ErrorBody)))]
pub(super) async fn key(State(b): State<Backups>, headers: HeaderMap) -> Result<Json<SigningKeyView>, ApiError> {
    caller(&b.agent, &headers, "backups", false)?;
    let public = b.engine.backups.signing_key().public_key();
    Ok(Json(SigningKeyView {
        public_key: public.to_spki_pem(),
        key_id: hex::encode(public.key_id().as_bytes()),
    }))
}

/// The backup settings.
#[utoipa::path(get, path = "/api/v1/backups/config", tag = "backups",
    responses((status = 200, body = BackupSettings), (status = 401, body = ErrorBody)))]
pub(super) async fn get_config(State(b): State<Backups>, headers: HeaderMap) -> Result<Json<BackupSettings>, ApiError> {
    caller(&b.agent, &headers, "backups", false)?;
    Ok(Json(b.engine.backups.settings().settings))
}

/// Replaces the backup settings (all four fields).
#[utoipa::path(put, path = "/api/v1/backups/config", tag = "backups", request_body = BackupSettings,
    responses((status = 200, body = BackupSettings), (status = 400, description = "`invalid_settings`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn put_config(
    State(b): State<Backups>,
    headers: HeaderMap,
    Json(settings): Json<BackupSettings>,
) -> Result<Json<BackupSettings>, ApiError> {
    let who = caller(&b.agent, &headers, "backup-config", true)?;
    b.engine
        .backups
        .set_settings(settings.clone())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_settings", e))?;
    b.agent.record(
        &who.name,
        "backup-config",
        None,
        "ok",
        None,
        Some(serde_json::to_string(&settings).unwrap_or_default()),
    );
    Ok(Json(settings))
}

/// The backup as one archive file (verified first), for another cluster or safekeeping.
#[utoipa::path(get, path = "/api/v1/backups/{ts}/archive", tag = "backups",
    params(("ts" = String, Path, description = "`YYYY-MM-DDtHH-MM-SS`")),
    responses((status = 200, description = "a tar stream", content_type = "application/x-tar"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "the stored backup does not verify", body = ErrorBody)))]
pub(super) async fn archive(
    State(b): State<Backups>,
    headers: HeaderMap,
    Path(ts): Path<String>,
) -> Result<Response, ApiError> {
    // Archives carry Secrets: admin only.
    let who = caller(&b.agent, &headers, "backup-export", true)?;
    let id = parse_id(&ts)?;
    let export = b.engine.backups.export(&id)?;
    let size = export.size()?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let id_log = id;
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx: tx.clone() };
        if let Err(e) = export.write_to(&mut out) {
            tracing::warn!("export of backup {id_log} stopped: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    b.agent.record(
        &who.name,
        "backup-export",
        None,
        "ok",
        None,
        Some(format!("backup {id}")),
    );
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(header::CONTENT_LENGTH, size)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"sealift-backup-{id}.tar\""),
        )
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// A blocking writer feeding a response body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Imports an exported archive (verified completely — signature by this agent's key or a
/// trusted one, every entry — before it is kept).
#[utoipa::path(post, path = "/api/v1/backups/import", tag = "backups",
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 201, body = BackupView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`backup_exists`", body = ErrorBody),
        (status = 422, description = "refused: the reason's code (`untrusted_key`, `entry_digest`, …)", body = ErrorBody)))]
pub(super) async fn import(
    State(b): State<Backups>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BackupView>), ApiError> {
    let who = caller(&b.agent, &headers, "backup-import", true)?;
    let internal = |e: std::io::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string());
    // The body goes to a file beside the store first: import reads it synchronously.
    let spool = tempfile::NamedTempFile::new_in(b.agent.store.dir()).map_err(internal)?;
    let mut file = tokio::fs::File::from_std(spool.reopen().map_err(internal)?);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "upload_failed", e.to_string()))?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(internal)?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(internal)?;
    drop(file);
    let engine = b.engine.clone();
    let result = tokio::task::spawn_blocking(move || {
        let input = std::io::BufReader::new(spool.reopen()?);
        Ok::<_, std::io::Error>(engine.backups.import(input))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(internal)?;
    let id = result.map_err(|e| {
        b.agent.record(
            &who.name,
            "backup-import",
            None,
            "refused",
            Some(e.code()),
            Some(e.to_string()),
        );
        ApiError::from(e)
    })?;
    crate::backup::sync_pins(&b.engine);
    let status = b.engine.backups.status(&id)?;
    b.agent.record(
        &who.name,
        "backup-import",
        Some(status.app_version.clone()),
        "ok",
        None,
        Some(format!("backup {id}")),
    );
    Ok((StatusCode::CREATED, Json(BackupView::of(&id, &status))))
}

fn step_token(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
}

fn step_unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the step token of the running backup or restore step for this part is required",
    )
}

/// For backup step Jobs: uploads the step's dump (`Authorization: Bearer $SEALIFT_STEP_TOKEN`,
/// once; the URL is in `$SEALIFT_BACKUP_URL`).
#[utoipa::path(put, path = "/api/v1/backups/{ts}/parts/{step}", tag = "backups",
    params(("ts" = String, Path), ("step" = String, Path, description = "the backup step's id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, description = "stored"), (status = 401, body = ErrorBody),
        (status = 409, description = "`part_exists`", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`: nothing is kept", body = ErrorBody)))]
pub(super) async fn put_part(
    State(b): State<Backups>,
    headers: HeaderMap,
    Path((ts, step)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&ts)?;
    let token = step_token(&headers).to_owned();
    if !b.engine.backups.granted(&token, &id, &step, true) {
        return Err(step_unauthorized());
    }
    let free = b.engine.backups.free_bytes();
    let full = |need: u64| {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            format!("the part needs {need} bytes; the backups' volume has {free} beyond the store's reserve"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > free) {
        return Err(full(len));
    }
    let mut sink = b.engine.backups.part_sink(&id, &step)?;
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        // A broken upload drops the sink: nothing is committed and the step may send again.
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "upload_failed", e.to_string()))?;
        received += chunk.len() as u64;
        if received > free {
            return Err(full(received));
        }
        std::io::Write::write_all(&mut sink, &chunk)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()))?;
    }
    sink.finish()?;
    b.engine.backups.revoke(&token);
    Ok(StatusCode::CREATED)
}

/// For restore step Jobs: reads the dump of the backup step paired with it.
#[utoipa::path(get, path = "/api/v1/backups/{ts}/parts/{step}", tag = "backups",
    params(("ts" = String, Path), ("step" = String, Path, description = "the backup step's id")),
    responses((status = 200, description = "the dump", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody)))]
pub(super) async fn get_part(
    State(b): State<Backups>,
    headers: HeaderMap,
    Path((ts, step)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&ts)?;
    if !b.engine.backups.granted(step_token(&headers), &id, &step, false) {
        return Err(step_unauthorized());
    }
    let mut reader = b.engine.backups.read_part(&id, &step)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Seed 001's switch for a part: `{"disable": true}` skips it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartSwitch {
    #[serde(default)]
    pub disable: bool,
}

/// `POST /api/v1/restores`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreRequest {
    /// The backup (`YYYY-MM-DDtHH-MM-SS`).
    pub timestamp: String,
    /// The namespace the backup was taken from (default: the backup's own record of it).
    #[serde(default)]
    pub source_namespace: Option<String>,
    /// Backup steps and waves to skip: `{"dump-db": {"disable": true}}`.
    #[serde(default)]
    pub svcs: std::collections::BTreeMap<String, PartSwitch>,
    /// Must be true: a restore replaces the application's data.
    #[serde(default)]
    pub confirm: bool,
}

/// Restores a backup: re-deploys its version from its signed, stored bundle with its values,
/// then restores only its data. Written as the `Restore` request of the `SealiftRelease`.
#[utoipa::path(post, path = "/api/v1/restores", tag = "backups", request_body = RestoreRequest,
    responses((status = 202, body = Started), (status = 400, description = "`confirmation_required`, `unknown_restore_names` (lists the valid names)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`operation_running`, or `bundle_not_imported` (import the version first)", body = ErrorBody),
        (status = 422, description = "the backup does not verify: the reason's code", body = ErrorBody)))]
pub(super) async fn restore(
    State(b): State<Backups>,
    headers: HeaderMap,
    Json(req): Json<RestoreRequest>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let who = caller(&b.agent, &headers, "restore", true)?;
    let refuse = |e: ApiError| {
        b.agent.record(
            &who.name,
            "restore",
            None,
            "refused",
            Some(&e.code),
            Some(e.message.clone()),
        );
        e
    };
    if !req.confirm {
        return Err(refuse(RestoreRefusal::NotConfirmed.into()));
    }
    if let Some(op) = b.engine.running() {
        return Err(refuse(
            crate::release::engine::EngineError::Busy(format!("{op} is running")).into(),
        ));
    }
    let id = parse_id(&req.timestamp).map_err(refuse)?;
    let skip: Vec<String> = req
        .svcs
        .iter()
        .filter(|(_, s)| s.disable)
        .map(|(n, _)| n.clone())
        .collect();
    let request = format!("restore-{id}-{:08x}", rand::random::<u32>());
    let checked = crate::backup::restore::check(
        &b.engine,
        &b.engine.backups,
        &id,
        req.source_namespace.clone(),
        skip,
        request.clone(),
    )
    .map_err(|e| refuse(e.into()))?;
    let spec = json!({
        "version": checked.version,
        "allowDowngradeTo": checked.version,
        "request": {
            "id": request,
            "action": "Restore",
            "backup": id.to_string(),
            "sourceNamespace": checked.target.source_namespace,
            "skip": checked.target.skip,
        },
    });
    b.engine
        .patch_spec(spec, &who.name)
        .await
        .map_err(|e| refuse(e.into()))?;
    b.agent.record(
        &who.name,
        "restore",
        Some(checked.version.clone()),
        "accepted",
        None,
        Some(format!("backup {id}")),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            timestamp: id.to_string(),
            status: "Running".into(),
            request: Some(request),
        }),
    ))
}

/// The newest restore.
#[utoipa::path(get, path = "/api/v1/restores/latest", tag = "backups",
    responses((status = 200, body = RestoreRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn restore_latest(
    State(b): State<Backups>,
    headers: HeaderMap,
) -> Result<Json<RestoreRecord>, ApiError> {
    caller(&b.agent, &headers, "restores", false)?;
    b.engine
        .backups
        .restores()
        .into_iter()
        .next_back()
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "restore_not_found", "there was no restore yet"))
}

/// The newest restore of backup `ts`.
#[utoipa::path(get, path = "/api/v1/restores/{ts}", tag = "backups",
    params(("ts" = String, Path, description = "the backup's `YYYY-MM-DDtHH-MM-SS`")),
    responses((status = 200, body = RestoreRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn restore_status(
    State(b): State<Backups>,
    headers: HeaderMap,
    Path(ts): Path<String>,
) -> Result<Json<RestoreRecord>, ApiError> {
    caller(&b.agent, &headers, "restores", false)?;
    b.engine
        .backups
        .restores()
        .into_iter()
        .rev()
        .find(|r| r.timestamp == ts)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "restore_not_found",
                format!("no restore of {ts}"),
            )
        })
}
