//! The site's patches: `GET /api/v1/patches` and `PUT /api/v1/patches` (the whole list).
//! Applied at the next render, after the variables; a patch may not bring an image the bundle
//! does not hold, and touches RBAC objects only with `allowRbacPatches`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::release::Release;
use super::{ApiError, ErrorBody, caller};
use crate::release::engine::EngineError;
use crate::release::patches::SitePatch;
use crate::release::planner;

/// The site's patches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patches {
    /// `{kind, name, patch}`: a JSON merge patch for one rendered object.
    #[schema(value_type = Vec<Object>)]
    pub patches: Vec<SitePatch>,
    /// Allow patches of Roles, ClusterRoles and their bindings.
    #[serde(default)]
    pub allow_rbac_patches: bool,
}

#[utoipa::path(get, path = "/api/v1/patches", tag = "variables",
    responses((status = 200, body = Patches), (status = 401, body = ErrorBody)))]
pub(crate) async fn get(State(r): State<Release>, headers: HeaderMap) -> Result<Json<Patches>, ApiError> {
    caller(&r.agent, &headers, "patches", false)?;
    let site = planner::load_site(&r.engine).map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Json(Patches {
        patches: site.patches,
        allow_rbac_patches: site.allow_rbac_patches,
    }))
}

/// Replaces the site's patches; they take effect at the next operation. Audited.
#[utoipa::path(put, path = "/api/v1/patches", tag = "variables", request_body = Patches,
    responses((status = 200, body = Patches), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`operation_running`", body = ErrorBody)))]
pub(crate) async fn put(
    State(r): State<Release>,
    headers: HeaderMap,
    Json(req): Json<Patches>,
) -> Result<Json<Patches>, ApiError> {
    let who = caller(&r.agent, &headers, "patches-set", true)?;
    if let Some(op) = r.engine.running() {
        let e = ApiError::new(
            StatusCode::CONFLICT,
            "operation_running",
            format!("{op} is running; patches change between operations"),
        );
        r.agent.record(
            &who.name,
            "patches-set",
            None,
            "refused",
            Some("operation_running"),
            None,
        );
        return Err(e);
    }
    let mut site = planner::load_site(&r.engine).map_err(|e| EngineError::Internal(e.to_string()))?;
    site.patches = req.patches.clone();
    site.allow_rbac_patches = req.allow_rbac_patches;
    planner::save_site(&r.engine, &site).map_err(|e| EngineError::Internal(e.to_string()))?;
    let targets: Vec<String> = req.patches.iter().map(|p| format!("{}/{}", p.kind, p.name)).collect();
    r.agent.record(
        &who.name,
        "patches-set",
        None,
        "ok",
        None,
        Some(format!(
            "{} patch(es): {}{}",
            targets.len(),
            targets.join(", "),
            if req.allow_rbac_patches {
                "; RBAC patches allowed"
            } else {
                ""
            }
        )),
    );
    Ok(Json(req))
}
