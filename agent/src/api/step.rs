//! What a running step Job may ask the agent, authenticated by the one-time token the agent
//! put in its `SEALIFT_STEP_TOKEN` (valid only while that Job runs).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

use super::{ApiError, ErrorBody};
use crate::release::engine::{Engine, StepContext};

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/api/v1/step/context", get(context))
        .with_state(engine)
}

/// The running step Job's context: which operation, step, revision and versions it is part of.
#[utoipa::path(get, path = "/api/v1/step/context", tag = "release",
    description = "For step Jobs only: `Authorization: Bearer $SEALIFT_STEP_TOKEN`, valid while that Job runs.",
    responses((status = 200, body = StepContext), (status = 401, body = ErrorBody)))]
pub(super) async fn context(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
) -> Result<Json<StepContext>, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    engine.step_context(token.trim()).map(Json).ok_or_else(|| ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized".into(),
        message: "a step token of a running step Job is required".into(),
        extra: Box::default(),
    })
}
