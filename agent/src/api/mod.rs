//! The HTTP API under `/api/v1`. Bearer tokens only (never in URLs); viewers read,
//! admins also mutate. Every mutating call and every refusal is audited.

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
use serde::Deserialize;
use serde_json::json;

pub mod release;

use crate::import::ImportOptions;
use crate::service::{Agent, Caller, ServiceError};

/// Bytes gathered from a request body before they go through the parser.
const PART_BUFFER: usize = 4 << 20;

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
        .route("/healthz", get(|| async { "ok" }))
        .with_state(agent)
}

/// An API error: status, machine-readable code, message.
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    extra: Box<serde_json::Value>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateUpload {
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, flatten)]
    options: ImportOptions,
}

async fn create_upload(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    body: Option<Json<CreateUpload>>,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "upload", true)?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let id = agent.create_upload(&c, req.options, req.size)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "offset": 0 }))).into_response())
}

#[derive(Debug, Deserialize)]
struct PartQuery {
    offset: u64,
}

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

async fn get_upload(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller(&agent, &headers, "upload", false)?;
    Ok(Json(agent.upload_status(&id)?).into_response())
}

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

async fn commit_upload(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "import", true)?;
    let summary = agent.commit_upload(&c, &id).await?;
    Ok(Json(summary).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportPath {
    path: PathBuf,
    #[serde(default, flatten)]
    options: ImportOptions,
}

async fn import_path(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Json(req): Json<ImportPath>,
) -> Result<Response, ApiError> {
    let c = caller(&agent, &headers, "import", true)?;
    let summary = agent.import_path(&c, req.path, req.options).await?;
    Ok(Json(summary).into_response())
}

async fn versions(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Response, ApiError> {
    caller(&agent, &headers, "versions", false)?;
    let list: Vec<_> = agent
        .store
        .list()
        .into_iter()
        .map(|b| {
            json!({
                "version": b.version, "sequence": b.sequence, "identity": b.identity, "size": b.size,
                "importedAt": b.imported_at, "created": b.created, "expires": b.expires, "signers": b.signers,
                "images": b.images, "pinned": !b.pins.is_empty(), "pins": b.pins, "restoreOnly": b.restore_only,
                "corrupt": b.corrupt,
            })
        })
        .collect();
    Ok(Json(json!({ "versions": list })).into_response())
}

async fn audit(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Response, ApiError> {
    caller(&agent, &headers, "audit", false)?;
    let records = agent
        .audit
        .read()
        .map_err(|e| ApiError::from(ServiceError::Internal(e.to_string())))?;
    Ok(Json(json!({ "records": records })).into_response())
}

async fn status(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Response, ApiError> {
    caller(&agent, &headers, "status", false)?;
    let state = agent.trust_state();
    Ok(Json(json!({
        "product": agent.config.trust.product,
        "trust": { "rootVersion": state.roots.last().map(|r| r.0), "minSequence": state.min_sequence, "clockFloor": state.clock_floor },
        "push": agent.push_progress.snapshot(),
        "store": { "usedBytes": agent.store.used_bytes(), "maxBytes": agent.config.store.max_bytes.0 },
    }))
    .into_response())
}
