//! Release endpoints: upgrade, the release's status, its revisions. They write the
//! `SealiftRelease` spec (version and flags in one patch) and let the controller act, so
//! `kubectl patch` and the API lead to the same reconcile.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, caller};
use crate::release::engine::{Engine, EngineError};
use crate::service::Agent;

#[derive(Clone)]
struct Release {
    agent: Arc<Agent>,
    engine: Arc<Engine>,
}

pub fn router(agent: Arc<Agent>, engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/api/v1/upgrade", post(upgrade))
        .route("/api/v1/release", get(release))
        .route("/api/v1/rollback", post(rollback))
        .route("/api/v1/retry", post(retry))
        .route("/api/v1/uninstall", post(uninstall))
        .route("/api/v1/revisions", get(revisions))
        .route("/api/v1/revisions/{n}", get(revision))
        .with_state(Release { agent, engine })
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::NotImported { .. } | EngineError::NoRevision { .. } => StatusCode::NOT_FOUND,
            EngineError::Downgrade { .. } | EngineError::AlreadyCurrent { .. } | EngineError::NothingInstalled => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            EngineError::Busy(_) => StatusCode::CONFLICT,
            EngineError::Cluster(_) => StatusCode::BAD_GATEWAY,
            EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            code: e.code().to_owned(),
            message: e.to_string(),
            extra: Box::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpgradeRequest {
    version: String,
    #[serde(default)]
    disable_rollback: bool,
    #[serde(default)]
    allow_downgrade: bool,
    #[serde(default)]
    ignore_unhealthy: bool,
    #[serde(default)]
    skip_backup: bool,
}

async fn upgrade(
    State(r): State<Release>,
    headers: HeaderMap,
    Json(req): Json<UpgradeRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = caller(&r.agent, &headers, "upgrade", true)?;
    let refuse = |e: EngineError| {
        r.agent.record(
            &who.name,
            "upgrade",
            Some(req.version.clone()),
            "refused",
            Some(e.code()),
            Some(e.to_string()),
        );
        ApiError::from(e)
    };
    r.engine
        .check_upgrade(&req.version, req.allow_downgrade)
        .map_err(refuse)?;
    let spec = json!({
        "version": req.version,
        "allowDowngradeTo": if req.allow_downgrade { Value::String(req.version.clone()) } else { Value::Null },
        "disableRollback": req.disable_rollback,
        "ignoreCurrentHealth": req.ignore_unhealthy,
        "skipBackup": req.skip_backup,
    });
    r.engine.patch_spec(spec, &who.name).await.map_err(refuse)?;
    r.agent.record(
        &who.name,
        "upgrade",
        Some(req.version.clone()),
        "ok",
        None,
        Some("spec.version set".into()),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "version": req.version, "message": format!("upgrade to {} requested", req.version) })),
    ))
}

async fn release(State(r): State<Release>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    caller(&r.agent, &headers, "release", false)?;
    let status = r.engine.status().await;
    Ok(Json(json!({
        "name": r.engine.product(),
        "namespace": r.engine.cfg.namespace,
        "running": r.engine.running(),
        "status": status,
    })))
}

async fn revisions(State(r): State<Release>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    caller(&r.agent, &headers, "revisions", false)?;
    let all = r
        .engine
        .history
        .summaries()
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Json(json!({ "revisions": all })))
}

async fn revision(State(r): State<Release>, headers: HeaderMap, Path(n): Path<u32>) -> Result<Json<Value>, ApiError> {
    caller(&r.agent, &headers, "revision", false)?;
    match r
        .engine
        .history
        .get(n)
        .map_err(|e| EngineError::Internal(e.to_string()))?
    {
        Some(rev) => Ok(Json(serde_json::to_value(rev).unwrap_or_default())),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "no_such_revision".into(),
            message: format!("there is no revision {n}"),
            extra: Box::default(),
        }),
    }
}

fn request_id() -> String {
    format!("{}-{:08x}", schemas::Timestamp::now().unix(), rand::random::<u32>())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RollbackRequest {
    #[serde(default)]
    to_version: Option<String>,
    #[serde(default)]
    revision: Option<u32>,
}

/// A manual rollback: `spec.request` and `spec.version` in one patch.
async fn rollback(
    State(r): State<Release>,
    headers: HeaderMap,
    Json(req): Json<RollbackRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = caller(&r.agent, &headers, "rollback", true)?;
    let refuse = |e: EngineError| {
        r.agent.record(
            &who.name,
            "rollback",
            req.to_version.clone(),
            "refused",
            Some(e.code()),
            Some(e.to_string()),
        );
        ApiError::from(e)
    };
    if let Some(op) = r.engine.running() {
        return Err(refuse(EngineError::Busy(format!("{op} is running"))));
    }
    let target = r
        .engine
        .rollback_target(req.revision, req.to_version.as_deref())
        .map_err(refuse)?;
    let spec = json!({
        "version": target.version,
        "request": {"id": request_id(), "action": "Rollback", "revision": target.revision},
    });
    r.engine.patch_spec(spec, &who.name).await.map_err(refuse)?;
    r.agent.record(
        &who.name,
        "rollback",
        Some(target.version.clone()),
        "ok",
        None,
        Some(format!("rollback to revision {} requested", target.revision)),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"version": target.version, "revision": target.revision,
            "message": format!("rollback to {} (revision {}) requested", target.version, target.revision)})),
    ))
}

async fn retry(State(r): State<Release>, headers: HeaderMap) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = caller(&r.agent, &headers, "retry", true)?;
    if let Some(op) = r.engine.running() {
        let e = EngineError::Busy(format!("{op} is running"));
        r.agent
            .record(&who.name, "retry", None, "refused", Some(e.code()), Some(e.to_string()));
        return Err(e.into());
    }
    let spec = json!({"request": {"id": request_id(), "action": "Retry"}});
    r.engine.patch_spec(spec, &who.name).await?;
    r.agent.record(&who.name, "retry", None, "ok", None, None);
    Ok((StatusCode::ACCEPTED, Json(json!({"message": "retry requested"}))))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UninstallRequest {
    /// Must be true: uninstalling is deliberate.
    confirm: bool,
    #[serde(default)]
    delete_data: bool,
}

async fn uninstall(
    State(r): State<Release>,
    headers: HeaderMap,
    Json(req): Json<UninstallRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = caller(&r.agent, &headers, "uninstall", true)?;
    if !req.confirm {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "confirmation_required".into(),
            message: "uninstall needs {\"confirm\": true}".into(),
            extra: Box::default(),
        });
    }
    if let Some(op) = r.engine.running() {
        let e = EngineError::Busy(format!("{op} is running"));
        r.agent.record(
            &who.name,
            "uninstall",
            None,
            "refused",
            Some(e.code()),
            Some(e.to_string()),
        );
        return Err(e.into());
    }
    let spec =
        json!({"version": null, "request": {"id": request_id(), "action": "Uninstall", "deleteData": req.delete_data}});
    r.engine.patch_spec(spec, &who.name).await?;
    r.agent.record(
        &who.name,
        "uninstall",
        None,
        "ok",
        None,
        Some(format!("deleteData: {}", req.delete_data)),
    );
    Ok((StatusCode::ACCEPTED, Json(json!({"message": "uninstall requested"}))))
}
