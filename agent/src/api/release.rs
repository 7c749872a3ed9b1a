//! Release endpoints: upgrade, the release's status, its revisions. They write the
//! `SealiftRelease` spec (version and flags in one patch) and let the controller act, so
//! `kubectl patch` and the API lead to the same reconcile. The site's variables
//! ([`super::variables`]) and the progress stream ([`super::events`]) are served beside them.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{ApiError, ErrorBody, caller};
use crate::release::engine::{Engine, EngineError};
use crate::release::history::Revision;
use crate::release::resource::{RevisionSummary, SealiftReleaseStatus};
use crate::service::Agent;

#[derive(Clone)]
pub(crate) struct Release {
    pub(crate) agent: Arc<Agent>,
    pub(crate) engine: Arc<Engine>,
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
        .route("/api/v1/events", get(super::events::events))
        .route("/api/v1/variables", get(super::variables::list))
        .route("/api/v1/variables/{name}", put(super::variables::set))
        .route("/api/v1/patches", get(super::patches::get).put(super::patches::put))
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

/// `POST /api/v1/upgrade`: the version and the flags, written to the `SealiftRelease` in one
/// patch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeRequest {
    /// An imported version.
    version: String,
    /// Leave a failed upgrade as it is for debugging instead of rolling back.
    #[serde(default)]
    disable_rollback: bool,
    /// Allow `version` to be older than the current version.
    #[serde(default)]
    allow_downgrade: bool,
    /// Start although the current release is not healthy.
    #[serde(default)]
    ignore_unhealthy: bool,
    /// Skip the pre-upgrade backup.
    #[serde(default)]
    skip_backup: bool,
}

/// A request written to the `SealiftRelease`; the controller acts on it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The revision a rollback goes to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    pub message: String,
}

/// Moves the application to an imported version (`spec.version` and the flags in one
/// patch). Refused at once when the version is not imported, is older without
/// `allowDowngrade`, or an operation runs.
#[utoipa::path(post, path = "/api/v1/upgrade", tag = "release", request_body = UpgradeRequest,
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`not_imported`: the answer lists the imported versions", body = ErrorBody),
        (status = 409, description = "`operation_running`", body = ErrorBody),
        (status = 422, description = "`downgrade_needs_confirmation`", body = ErrorBody)))]
async fn upgrade(
    State(r): State<Release>,
    headers: HeaderMap,
    Json(req): Json<UpgradeRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
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
    // A request, not yet an operation: the engine audits `started`, then `ok` or `failed`.
    r.agent.record(
        &who.name,
        "upgrade",
        Some(req.version.clone()),
        "accepted",
        None,
        Some("spec.version set".into()),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: format!("upgrade to {} requested", req.version),
            version: Some(req.version),
            revision: None,
        }),
    ))
}

/// The release as `GET /api/v1/release` (and each `status` event of `/api/v1/events`) shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReleaseView {
    /// The `SealiftRelease`'s name: the product.
    pub name: String,
    /// The agent's namespace, where the `SealiftRelease` lives.
    pub namespace: String,
    /// The operation running in this agent, if any (`upgrade to 2.0.0`).
    pub running: Option<String>,
    pub status: SealiftReleaseStatus,
}

impl ReleaseView {
    pub(crate) async fn of(engine: &Engine) -> Self {
        ReleaseView {
            name: engine.product(),
            namespace: engine.cfg.namespace.clone(),
            running: engine.running(),
            status: engine.status().await,
        }
    }
}

/// The release: current and desired version, conditions, progress, the last revisions.
#[utoipa::path(get, path = "/api/v1/release", tag = "release",
    responses((status = 200, body = ReleaseView), (status = 401, body = ErrorBody)))]
async fn release(State(r): State<Release>, headers: HeaderMap) -> Result<Json<ReleaseView>, ApiError> {
    caller(&r.agent, &headers, "release", false)?;
    Ok(Json(ReleaseView::of(&r.engine).await))
}

/// `GET /api/v1/revisions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revisions {
    /// The last ten, newest first.
    pub revisions: Vec<RevisionSummary>,
}

/// The release's revisions, newest first (the last ten).
#[utoipa::path(get, path = "/api/v1/revisions", tag = "release",
    responses((status = 200, body = Revisions), (status = 401, body = ErrorBody)))]
async fn revisions(State(r): State<Release>, headers: HeaderMap) -> Result<Json<Revisions>, ApiError> {
    caller(&r.agent, &headers, "revisions", false)?;
    let revisions = r
        .engine
        .history
        .summaries()
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Json(Revisions { revisions }))
}

/// One revision in full: applied manifests and their differences from the signed render,
/// step logs, what the deletion rule left behind.
#[utoipa::path(get, path = "/api/v1/revisions/{n}", tag = "release",
    params(("n" = u32, Path, description = "the revision number")),
    responses((status = 200, body = Revision), (status = 401, body = ErrorBody),
        (status = 404, description = "`no_such_revision`", body = ErrorBody)))]
async fn revision(
    State(r): State<Release>,
    headers: HeaderMap,
    Path(n): Path<u32>,
) -> Result<Json<Revision>, ApiError> {
    caller(&r.agent, &headers, "revision", false)?;
    match r
        .engine
        .history
        .get(n)
        .map_err(|e| EngineError::Internal(e.to_string()))?
    {
        Some(rev) => Ok(Json(rev.redacted())),
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

/// `POST /api/v1/rollback`: where to go back to (default: the previous version).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackRequest {
    /// A version with a recorded revision.
    #[serde(default)]
    to_version: Option<String>,
    /// A recorded revision number.
    #[serde(default)]
    revision: Option<u32>,
}

/// A manual rollback, offline from the store: `spec.request` and `spec.version` in one patch.
#[utoipa::path(post, path = "/api/v1/rollback", tag = "release", request_body = RollbackRequest,
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`no_revision`: no recorded revision of that version", body = ErrorBody),
        (status = 409, description = "`operation_running`", body = ErrorBody)))]
async fn rollback(
    State(r): State<Release>,
    headers: HeaderMap,
    Json(req): Json<RollbackRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
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
        "accepted",
        None,
        Some(format!("rollback to revision {} requested", target.revision)),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: format!(
                "rollback to {} (revision {}) requested",
                target.version, target.revision
            ),
            version: Some(target.version),
            revision: Some(target.revision),
        }),
    ))
}

/// Runs the failed operation for the typed version again (`spec.request`).
#[utoipa::path(post, path = "/api/v1/retry", tag = "release",
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`operation_running`", body = ErrorBody)))]
async fn retry(State(r): State<Release>, headers: HeaderMap) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let who = caller(&r.agent, &headers, "retry", true)?;
    if let Some(op) = r.engine.running() {
        let e = EngineError::Busy(format!("{op} is running"));
        r.agent
            .record(&who.name, "retry", None, "refused", Some(e.code()), Some(e.to_string()));
        return Err(e.into());
    }
    let spec = json!({"request": {"id": request_id(), "action": "Retry"}});
    r.engine.patch_spec(spec, &who.name).await?;
    r.agent.record(&who.name, "retry", None, "accepted", None, None);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            version: None,
            revision: None,
            message: "retry requested".into(),
        }),
    ))
}

/// `POST /api/v1/uninstall`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UninstallRequest {
    /// Must be true: uninstalling is deliberate.
    confirm: bool,
    /// Delete PersistentVolumeClaims too.
    #[serde(default)]
    delete_data: bool,
}

/// Removes the application under the deletion rule (CRDs, Namespaces and, unless
/// `deleteData`, PVCs are kept and listed).
#[utoipa::path(post, path = "/api/v1/uninstall", tag = "release", request_body = UninstallRequest,
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`operation_running`", body = ErrorBody),
        (status = 422, description = "`confirmation_required`", body = ErrorBody)))]
async fn uninstall(
    State(r): State<Release>,
    headers: HeaderMap,
    Json(req): Json<UninstallRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
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
        "accepted",
        None,
        Some(format!("deleteData: {}", req.delete_data)),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            version: None,
            revision: None,
            message: "uninstall requested".into(),
        }),
    ))
}
