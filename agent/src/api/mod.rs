//! The HTTP API under `/api/v1`. Bearer tokens only (never in URLs); viewers read,
//! admins also mutate. Every mutating call and every refusal is audited.
//!
//! Every handler carries a `#[utoipa::path]`; [`openapi::document`] gathers them into the
//! OpenAPI document committed as `agent/openapi.json`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

pub mod backup;
pub mod events;
pub mod observe;
pub mod openapi;
pub mod patches;
pub mod release;
pub mod step;
pub mod variables;

use crate::audit::AuditRecord;
use crate::import::ImportOptions;
use crate::registry::PushSnapshot;
use crate::service::{Agent, Caller, ImportSummary, ServiceError, StoreCheck, UploadStatus};

/// Bytes gathered from a request body before they go through the parser.
const PART_BUFFER: usize = 4 << 20;

/// Everything the agent serves: the import and store API, the page, and — with a release
/// engine — the release, backup and step-Job endpoints; `/readyz` and `/metrics` always.
pub fn app(agent: Arc<Agent>, engine: Option<Arc<crate::release::engine::Engine>>) -> Router {
    let mut app = router(agent.clone()).merge(crate::web::router());
    if let Some(engine) = &engine {
        app = app
            .merge(release::router(agent.clone(), engine.clone()))
            .merge(backup::router(agent.clone(), engine.clone()))
            .merge(step::router(engine.clone()));
    }
    app.merge(observe::router(agent, engine))
}

/// The import and store API, `/api/v1/openapi.json` and `/healthz`. The release endpoints
/// ([`release::router`]) and `/readyz` with `/metrics` ([`observe::router`]) are merged
/// beside it ([`app`]).
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/api/v1/uploads", post(create_upload))
        .route(
            "/api/v1/uploads/{id}",
            put(put_part).get(get_upload).delete(delete_upload),
        )
        .route("/api/v1/uploads/{id}/commit", post(commit_upload))
        .route("/api/v1/imports", post(import_path))
        .route("/api/v1/versions", get(versions))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/status", get(status))
        .route("/api/v1/verify-store", post(verify_store))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/healthz", get(healthz))
        .with_state(agent)
}

/// An API error: status, machine-readable code, message.
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    extra: Box<serde_json::Value>,
}

/// The body of every error answer: a stable code and a message; some codes add fields.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Machine-readable, stable (`forbidden`, `signature_invalid`, `operation_running`, …).
    pub code: String,
    pub message: String,
    /// `wrong_offset`: where the next part must start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_offset: Option<u64>,
    /// `stored_bundle_corrupt`: the bundle, its entry that no longer matches, and the digest
    /// the manifest gives that entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// `invalid_value`: every problem with the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            extra: Box::default(),
        }
    }

    pub(crate) fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Box::new(extra);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let (Some(b), Some(e)) = (body.as_object_mut(), self.extra.as_object()) {
            b.extend(e.clone());
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, extra) = match &e {
            ServiceError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, json!({})),
            ServiceError::WrongOffset { expected, .. } => (StatusCode::CONFLICT, json!({ "expectedOffset": expected })),
            ServiceError::NoSuchUpload(_) => (StatusCode::NOT_FOUND, json!({})),
            ServiceError::Incomplete(_) => (StatusCode::CONFLICT, json!({})),
            ServiceError::StoredCorrupt(c) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "identity": c.identity, "entry": c.entry, "expected": c.expected }),
            ),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, json!({})),
        };
        let message = match &e {
            ServiceError::Refused(r) => r.full_message(),
            other => other.to_string(),
        };
        ApiError {
            status,
            code: e.code().to_owned(),
            message,
            extra: Box::new(extra),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized".into(),
        message: message.into(),
        extra: Box::default(),
    }
}

/// The caller from `Authorization: Bearer …`; mutations need an admin token.
fn caller(agent: &Agent, headers: &HeaderMap, action: &str, mutation: bool) -> Result<Caller, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        if mutation {
            agent.record(
                "-",
                action,
                None,
                "refused",
                Some("unauthorized"),
                Some("no bearer token".into()),
            );
        }
        return Err(unauthorized("an `Authorization: Bearer <token>` header is required"));
    };
    let Some(c) = agent.authenticate(token.trim()) else {
        if mutation {
            agent.record(
                "-",
                action,
                None,
                "refused",
                Some("unauthorized"),
                Some("unknown token".into()),
            );
        }
        return Err(unauthorized("the token is not valid"));
    };
    if mutation && !c.admin {
        agent.record(
            &c.name,
            action,
            None,
            "refused",
            Some("forbidden"),
            Some("viewer token on a mutating call".into()),
        );
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden".into(),
            message: format!("token {} may only read", c.name),
            extra: Box::default(),
        });
    }
    Ok(c)
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "observability", security(()),
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// `POST /api/v1/uploads`: the upload's size (checked against space at once) and options.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUpload {
    /// The bundle's size in bytes, if known.
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, flatten)]
    options: ImportOptions,
}

/// A new upload: send parts from `offset`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadCreated {
    pub id: String,
    pub offset: u64,
}

/// Starts a resumable upload of a bundle.
#[utoipa::path(post, path = "/api/v1/uploads", tag = "import",
    request_body(content = Option<CreateUpload>, content_type = "application/json"),
    responses(
        (status = 201, body = UploadCreated),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "refused: not enough space", body = ErrorBody)))]
async fn create_upload(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    body: Option<Json<CreateUpload>>,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "upload", true)?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let id = agent.create_upload(&c, req.options, req.size)?;
    Ok((StatusCode::CREATED, Json(UploadCreated { id, offset: 0 })).into_response())
}

#[derive(Debug, Deserialize)]
struct PartQuery {
    offset: u64,
}

/// Appends the next bytes of the bundle at `offset`; they are verified as they arrive.
#[utoipa::path(put, path = "/api/v1/uploads/{id}", tag = "import",
    params(("id" = String, Path, description = "the upload"),
        ("offset" = u64, Query, description = "where these bytes start: the upload's length")),
    request_body(description = "the next bytes of the bundle file", content(("application/octet-stream"))),
    responses(
        (status = 200, body = UploadStatus),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "no such upload (or it expired)", body = ErrorBody),
        (status = 409, description = "`offset` is not the upload's length; see `expectedOffset`", body = ErrorBody),
        (status = 422, description = "the bundle is refused; the upload is discarded", body = ErrorBody)))]
async fn put_part(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    Query(q): Query<PartQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "upload", true)?;
    let expected = agent.upload_offset(&id)?;
    if q.offset != expected {
        return Err(ServiceError::WrongOffset {
            given: q.offset,
            expected,
        }
        .into());
    }
    // Receiving and verifying overlap: the body is gathered into PART_BUFFER pieces that a
    // blocking worker hashes and writes while the next piece arrives.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let worker = {
        let (agent, id, c) = (agent.clone(), id.clone(), c.clone());
        tokio::task::spawn_blocking(move || -> Result<u64, ServiceError> {
            let mut offset = expected;
            while let Some(data) = rx.blocking_recv() {
                offset = agent.put_part(&c, &id, offset, &data)?;
            }
            Ok(offset)
        })
    };
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(PART_BUFFER);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => buf.extend_from_slice(&bytes),
            // The client went away: keep what was verified; it resumes from the offset.
            Err(e) => {
                tracing::info!("upload {id}: body ended early: {e}");
                break;
            }
        }
        if buf.len() >= PART_BUFFER
            && tx
                .send(std::mem::replace(&mut buf, Vec::with_capacity(PART_BUFFER)))
                .await
                .is_err()
        {
            break; // the worker stopped on a refusal; its result says why
        }
    }
    if !buf.is_empty() {
        let _ = tx.send(buf).await;
    }
    drop(tx);
    worker
        .await
        .map_err(|e| ApiError::from(ServiceError::Internal(e.to_string())))??;
    Ok(Json(agent.upload_status(&id)?).into_response())
}

/// Where an upload stands.
#[utoipa::path(get, path = "/api/v1/uploads/{id}", tag = "import",
    params(("id" = String, Path, description = "the upload")),
    responses((status = 200, body = UploadStatus), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_upload(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller(&agent, &headers, "upload", false)?;
    Ok(Json(agent.upload_status(&id)?).into_response())
}

/// Discards an upload.
#[utoipa::path(delete, path = "/api/v1/uploads/{id}", tag = "import",
    params(("id" = String, Path, description = "the upload")),
    responses((status = 204, description = "discarded"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_upload(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "upload-delete", true)?;
    agent.session(&id)?;
    agent.expire_uploads();
    agent.record(&c.name, "upload-delete", None, "ok", None, Some(id.clone()));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Commits an upload whose archive ended (or whose head names a bundle stored intact):
/// stored, trust state moved forward, images staged.
#[utoipa::path(post, path = "/api/v1/uploads/{id}/commit", tag = "import",
    params(("id" = String, Path, description = "the upload")),
    responses((status = 200, body = ImportSummary), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the archive has not ended", body = ErrorBody),
        (status = 422, description = "refused, or the stored copy is corrupt", body = ErrorBody)))]
async fn commit_upload(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "import", true)?;
    let summary = agent.commit_upload(&c, &id).await?;
    Ok(Json(summary).into_response())
}

/// `POST /api/v1/imports`: a bundle file on the agent's volume.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportPath {
    #[schema(value_type = String)]
    path: PathBuf,
    #[serde(default, flatten)]
    options: ImportOptions,
}

/// Imports a bundle file already on the agent's volume.
#[utoipa::path(post, path = "/api/v1/imports", tag = "import", request_body = ImportPath,
    responses((status = 200, body = ImportSummary), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, description = "refused (the reason's code)", body = ErrorBody)))]
async fn import_path(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Json(req): Json<ImportPath>,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "import", true)?;
    let summary = agent.import_path(&c, req.path, req.options).await?;
    Ok(Json(summary).into_response())
}

/// One stored bundle.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionEntry {
    pub version: String,
    pub sequence: u64,
    /// `sha256:` of the manifest payload.
    pub identity: String,
    pub size: u64,
    pub imported_at: String,
    pub created: String,
    pub expires: String,
    pub signers: Vec<String>,
    pub images: Vec<String>,
    pub pinned: bool,
    /// Why it is kept (`current`, `previous`, `backup:<ts>`).
    pub pins: Vec<String>,
    /// Admitted expired, as a restore target only.
    pub restore_only: bool,
    /// Why the stored copy is known to be corrupt, naming the entry; null when intact.
    pub corrupt: Option<String>,
}

/// `GET /api/v1/versions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Versions {
    /// Newest version first.
    pub versions: Vec<VersionEntry>,
}

/// The stored bundles, newest version first.
#[utoipa::path(get, path = "/api/v1/versions", tag = "store",
    responses((status = 200, body = Versions), (status = 401, body = ErrorBody)))]
async fn versions(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Json<Versions>, ApiError> {
    caller(&agent, &headers, "versions", false)?;
    let versions = agent
        .store
        .list()
        .into_iter()
        .map(|b| VersionEntry {
            pinned: !b.pins.is_empty(),
            version: b.version,
            sequence: b.sequence,
            identity: b.identity.to_string(),
            size: b.size,
            imported_at: b.imported_at.to_string(),
            created: b.created.to_string(),
            expires: b.expires.to_string(),
            signers: b.signers,
            images: b.images,
            pins: b.pins.into_iter().collect(),
            restore_only: b.restore_only,
            corrupt: b.corrupt,
        })
        .collect();
    Ok(Json(Versions { versions }))
}

/// `GET /api/v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLogBody {
    /// Oldest first.
    pub records: Vec<AuditRecord>,
}

/// The audit log: every mutating call, refusal and operation step.
#[utoipa::path(get, path = "/api/v1/audit", tag = "store",
    responses((status = 200, body = AuditLogBody), (status = 401, body = ErrorBody)))]
async fn audit(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Json<AuditLogBody>, ApiError> {
    caller(&agent, &headers, "audit", false)?;
    let records = agent
        .audit
        .read()
        .map_err(|e| ApiError::from(ServiceError::Internal(e.to_string())))?;
    Ok(Json(AuditLogBody { records }))
}

/// What the agent trusts now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustSummary {
    /// Version of the newest accepted root.
    pub root_version: Option<u32>,
    pub min_sequence: u64,
    /// The newest time seen (RFC 3339).
    pub clock_floor: String,
}

/// The store's use of its volume.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreUsage {
    pub used_bytes: u64,
    pub max_bytes: u64,
}

/// Who the token in the request belongs to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallerView {
    /// The token's name in `agent.yaml`.
    pub name: String,
    /// `admin` (reads and mutates) or `viewer` (reads only).
    pub role: String,
}

/// `GET /api/v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentStatus {
    pub product: String,
    /// The caller, so a client (the web page) knows whether to offer mutations.
    pub caller: CallerView,
    pub trust: TrustSummary,
    /// The last (or running) image push.
    pub push: PushSnapshot,
    pub store: StoreUsage,
}

/// The agent: product, trust state, image push, store use.
#[utoipa::path(get, path = "/api/v1/status", tag = "store",
    responses((status = 200, body = AgentStatus), (status = 401, body = ErrorBody)))]
async fn status(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Json<AgentStatus>, ApiError> {
    let who = caller(&agent, &headers, "status", false)?;
    let state = agent.trust_state();
    Ok(Json(AgentStatus {
        product: agent.config.trust.product.to_string(),
        caller: CallerView {
            role: if who.admin { "admin" } else { "viewer" }.to_owned(),
            name: who.name,
        },
        trust: TrustSummary {
            root_version: state.roots.last().map(|r| r.0),
            min_sequence: state.min_sequence,
            clock_floor: state.clock_floor.to_string(),
        },
        push: agent.push_progress.snapshot(),
        store: StoreUsage {
            used_bytes: agent.store.used_bytes(),
            max_bytes: agent.config.store.max_bytes.0,
        },
    }))
}

/// Re-hashes every stored bundle end to end against the trusted roots (integrity only:
/// expiry does not matter). A bundle that fails is marked corrupt in the index, naming the
/// entry; the answer lists every bundle. The only full re-hash the agent does.
#[utoipa::path(post, path = "/api/v1/verify-store", tag = "store",
    responses((status = 200, description = "every stored bundle re-hashed", body = StoreCheck),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn verify_store(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Json<StoreCheck>, ApiError> {
    let c = caller(&agent, &headers, "verify-store", true)?;
    Ok(Json(agent.verify_store(&c).await?))
}
