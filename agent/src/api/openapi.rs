//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! and the types' `ToSchema`. Committed as `agent/openapi.json` (a test checks it equals
//! this; `SEALIFT_BLESS=1` rewrites it) and served at `GET /api/v1/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{ApiError, ErrorBody, caller};
use crate::service::Agent;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sealift agent API",
        description = "Installs a vendor's signed releases into this cluster and moves the application to the \
            version an admin types. Every call but `/healthz`, `/readyz` and `/metrics` takes \
            `Authorization: Bearer <token>` (never a token in the URL): viewer or admin tokens read, \
            only admin tokens change anything (a viewer gets 403). Every change and every refusal is audited.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::healthz,
        super::observe::readyz,
        super::observe::metrics,
        serve,
        super::create_upload,
        super::put_part,
        super::get_upload,
        super::delete_upload,
        super::commit_upload,
        super::import_path,
        super::versions,
        super::audit,
        super::status,
        super::verify_store,
        super::release::upgrade,
        super::release::release,
        super::release::revisions,
        super::release::revision,
        super::release::rollback,
        super::release::retry,
        super::release::uninstall,
        super::events::events,
        super::variables::list,
        super::variables::set,
        super::step::context,
        super::patches::get,
        super::patches::put,
        super::backup::create,
        super::backup::list,
        super::backup::latest,
        super::backup::show,
        super::backup::delete,
        super::backup::get_config,
        super::backup::put_config,
        super::backup::archive,
        super::backup::import,
        super::backup::key,
        super::backup::put_part,
        super::backup::get_part,
        super::backup::restore,
        super::backup::restore_latest,
        super::backup::restore_status,
    ),
    components(schemas(ErrorBody, crate::release::resource::Progress)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "import", description = "Resumable, verified uploads of bundles and imports from the agent's volume"),
        (name = "store", description = "Stored bundles, the audit log, the agent's state, the full re-hash"),
        (name = "release", description = "The SealiftRelease: upgrade, rollback, retry, uninstall, revisions, progress"),
        (name = "variables", description = "The site's values for the release's variables"),
        (name = "backups", description = "Backups on demand, on a schedule and before every upgrade; export, import, restore"),
        (name = "observability", description = "Liveness, readiness, Prometheus metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some("An admin or viewer token from the agent's configuration (`tokens`).".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed: pretty JSON and a final newline.
pub fn json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| unreachable!("the OpenAPI document serializes: {e}"));
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "observability",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 401, body = ErrorBody)))]
pub(crate) async fn serve(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Result<Response, ApiError> {
    caller(&agent, &headers, "openapi", false)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json()).into_response())
}
