//! Kubernetes `Status` bodies: every failure the simulator answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One cause inside a `Status`'s details (`FieldValueInvalid`, `FieldManagerConflict`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub kind: String,
    pub message: String,
    pub field: String,
}

/// A failed API call, rendered as a `meta/v1 Status` with the matching HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str, causes: &[Cause]) -> Self {
        let mut details = json!({ "name": name, "group": group, "kind": kind });
        if group.is_empty()
            && let Some(map) = details.as_object_mut()
        {
            map.remove("group");
        }
        if !causes.is_empty() {
            details["causes"] = causes
                .iter()
                .map(|c| json!({ "reason": c.kind, "message": c.message, "field": c.field }))
                .collect();
        }
        self.details = Some(details);
        self
    }

    /// `deployments.apps "web" not found`
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", group_resource(group, plural)),
        )
        .with_details(group, plural, name, &[])
    }

    pub fn not_found_path(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", group_resource(group, plural)),
        )
        .with_details(group, plural, name, &[])
    }

    /// Optimistic-concurrency failure on a stale `resourceVersion`.
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                group_resource(group, plural)
            ),
        )
        .with_details(group, plural, name, &[])
    }

    /// Server-side apply conflicts, with one `FieldManagerConflict` cause per field.
    pub fn apply_conflict(group: &str, plural: &str, name: &str, message: String, causes: &[Cause]) -> Self {
        Self::new(409, "Conflict", message).with_details(group, plural, name, causes)
    }

    /// 422 Invalid: `Deployment.apps "web" is invalid: spec.selector: Invalid value: …`
    pub fn invalid(group: &str, kind: &str, name: &str, causes: &[Cause]) -> Self {
        let gk = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let text = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>()
            .join(", ");
        let message = if causes.len() > 1 {
            format!("{gk} \"{name}\" is invalid: [{text}]")
        } else {
            format!("{gk} \"{name}\" is invalid: {text}")
        };
        Self::new(422, "Invalid", message).with_details(group, kind, name, causes)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 410 Gone for a watch or continue token whose resourceVersion was compacted.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.to_status().to_string(),
        )
            .into_response()
    }
}

/// `deployments.apps` or `configmaps` for the core group.
pub fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// A `Status` of success, as DELETE returns when an object is gone at once.
pub fn success_status(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({ "name": name, "group": group, "kind": plural, "uid": uid });
    if group.is_empty()
        && let Some(map) = details.as_object_mut()
    {
        map.remove("group");
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
