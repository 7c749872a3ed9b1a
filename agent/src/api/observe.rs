//! `/readyz` and `/metrics`, without authentication like the Kubernetes components' own:
//! neither says more than a pod's status would.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::metrics::Exposition;
use crate::release::engine::Engine;
use crate::service::Agent;

/// How long `/readyz` waits for the Kubernetes API server.
const API_SERVER_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Observe {
    agent: Arc<Agent>,
    /// The release engine, when `kubernetes` is configured and it started.
    engine: Option<Arc<Engine>>,
}

pub fn router(agent: Arc<Agent>, engine: Option<Arc<Engine>>) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Observe { agent, engine })
}

/// One readiness check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    /// `store`, `engine` or `apiServer`.
    pub name: String,
    pub ok: bool,
    pub message: String,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

/// Ready: the store is open and, with `kubernetes` configured, the release engine started and
/// the API server answers. 503 names what is not.
#[utoipa::path(get, path = "/readyz", tag = "observability", security(()),
    responses((status = 200, body = Readiness), (status = 503, description = "not ready: the failed checks say why", body = Readiness)))]
async fn readyz(State(o): State<Observe>) -> Response {
    let mut checks = Vec::new();
    let dir = o.agent.store.dir().join("bundles");
    checks.push(match std::fs::read_dir(&dir) {
        Ok(_) => Check {
            name: "store".into(),
            ok: true,
            message: format!("{} is open", o.agent.store.dir().display()),
        },
        Err(e) => Check {
            name: "store".into(),
            ok: false,
            message: format!("the store {} cannot be read: {e}", dir.display()),
        },
    });
    if o.agent.config.kubernetes.is_some() {
        match &o.engine {
            None => checks.push(Check {
                name: "engine".into(),
                ok: false,
                message: "the release engine has not started".into(),
            }),
            Some(engine) => {
                checks.push(Check {
                    name: "engine".into(),
                    ok: true,
                    message: "the release engine runs".into(),
                });
                let answer =
                    tokio::time::timeout(API_SERVER_TIMEOUT, engine.cluster.client().apiserver_version()).await;
                checks.push(match answer {
                    Ok(Ok(v)) => Check {
                        name: "apiServer".into(),
                        ok: true,
                        message: format!("the Kubernetes API server answers (v{}.{})", v.major, v.minor),
                    },
                    Ok(Err(e)) => Check {
                        name: "apiServer".into(),
                        ok: false,
                        message: format!("the Kubernetes API server does not answer: {e}"),
                    },
                    Err(_) => Check {
                        name: "apiServer".into(),
                        ok: false,
                        message: format!(
                            "the Kubernetes API server did not answer within {} s",
                            API_SERVER_TIMEOUT.as_secs()
                        ),
                    },
                });
            }
        }
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks })).into_response()
}

/// Prometheus text format: imports by outcome, refusals by code, operations by kind and
/// outcome, image bytes pushed, bundles and bytes in the store, and with a release engine
/// `sealift_release_info{current_version,desired_version,phase}`.
#[utoipa::path(get, path = "/metrics", tag = "observability", security(()),
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(State(o): State<Observe>) -> Response {
    let mut out = Exposition::default();
    o.agent.metrics.write(&mut out);
    let bundles = o.agent.store.list();
    out.family("sealift_store_bundles", "gauge", "Bundles in the store.");
    out.sample("sealift_store_bundles", &[], bundles.len() as f64);
    out.family(
        "sealift_store_corrupt_bundles",
        "gauge",
        "Stored bundles marked corrupt (an entry's bytes no longer match).",
    );
    let corrupt = bundles.iter().filter(|b| b.corrupt.is_some()).count();
    out.sample("sealift_store_corrupt_bundles", &[], corrupt as f64);
    out.family(
        "sealift_store_used_bytes",
        "gauge",
        "Bytes of the bundles in the store.",
    );
    out.sample("sealift_store_used_bytes", &[], o.agent.store.used_bytes() as f64);
    out.family("sealift_store_max_bytes", "gauge", "The store's maxBytes.");
    out.sample("sealift_store_max_bytes", &[], o.agent.config.store.max_bytes.0 as f64);
    if let Some(engine) = &o.engine {
        let status = engine.status().await;
        out.family(
            "sealift_release_info",
            "gauge",
            "The release: current and desired version and phase (always 1).",
        );
        out.sample(
            "sealift_release_info",
            &[
                ("current_version", status.current_version.as_deref().unwrap_or("")),
                ("desired_version", status.desired_version.as_deref().unwrap_or("")),
                ("phase", &status.phase),
            ],
            1.0,
        );
        out.family(
            "sealift_operation_running",
            "gauge",
            "1 while an operation runs in this agent.",
        );
        let running = if engine.running().is_some() { 1.0 } else { 0.0 };
        out.sample("sealift_operation_running", &[], running);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out.finish(),
    )
        .into_response()
}
