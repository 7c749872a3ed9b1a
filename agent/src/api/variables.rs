//! The site's variables: `GET /api/v1/variables` and `PUT /api/v1/variables/{name}`.
//!
//! The declarations come from the stored bundle of the deployed revision (or, before the
//! first install, of the desired version, else the newest imported one; `?version=` picks
//! another imported version). The site's settings live in `release/site.json`
//! ([`planner::load_site`]). A sensitive variable is set only from a Kubernetes Secret and
//! its value is never shown: the list says `<from secret S/K>` or `<generated>`. A value is
//! checked with the same rules as at render time ([`values::resolve_with_rng`]) before it is
//! stored, and audited without the value.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use schemas::names::VariableName;
use schemas::release::{VariableSpec, VariableType, VariableValue, Variables};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::release::Release;
use super::{ApiError, ErrorBody, caller};
use crate::release::engine::{Engine, EngineError};
use crate::release::planner;
use crate::release::values::{self, GeneratedValues, SecretRef, SiteValue, SiteValues, ValueProblem};

/// One `PUT` at a time: each reads, changes and writes `site.json`.
static SITE_WRITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// An imported version whose declarations to use (default: the deployed one, else the
    /// desired one, else the newest imported).
    version: Option<String>,
}

/// Where a variable's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum VariableSource {
    /// A literal the site set.
    Site,
    /// A key of a Kubernetes Secret in the agent's namespace.
    Secret,
    /// Generated once for this site (or at the next install, when not yet).
    Generated,
    /// The release's default.
    Default,
    /// No value: a required one must be set before the next operation.
    Unset,
}

/// A Secret key, as `{"secret": S, "key": K}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKey {
    pub secret: String,
    pub key: String,
}

/// A variable's value as JSON: an integer or a string (how `VariableValue` serializes).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the JSON only
enum Literal {
    Integer(i64),
    String(String),
}

/// One declared variable with where its value comes from. Values of sensitive variables are
/// never included.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariableView {
    pub name: String,
    /// `string` or `integer`.
    #[serde(rename = "type")]
    pub type_: String,
    pub description: String,
    pub required: bool,
    pub sensitive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    /// The release's default; omitted for sensitive variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Literal>)]
    pub default: Option<VariableValue>,
    /// The agent generates it once per site.
    pub generate: bool,
    pub source: VariableSource,
    /// The value, when it is not sensitive and not read from a Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Literal>)]
    pub value: Option<VariableValue>,
    /// The Secret key it is read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretKey>,
    /// What `vars list` prints: the value, `<from secret S/K>`, `<generated>`, `<not set>`.
    pub shown: String,
}

/// `GET /api/v1/variables`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariablesView {
    /// The release whose declarations these are.
    pub version: String,
    pub variables: Vec<VariableView>,
    /// Settings the site keeps for variables this release does not declare (a rollback may
    /// need them).
    pub unused_settings: Vec<String>,
}

/// `PUT /api/v1/variables/{name}`: exactly one of `value` and `fromSecret`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetVariable {
    /// A literal of the declared type (refused for sensitive variables).
    #[serde(default)]
    #[schema(value_type = Option<Literal>)]
    pub value: Option<VariableValue>,
    /// A key of a Secret in the agent's namespace.
    #[serde(default)]
    pub from_secret: Option<SecretKey>,
}

/// The answer to a `PUT`: the variable as listed now.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariableSet {
    pub version: String,
    pub variable: VariableView,
    pub message: String,
}

/// The release's declared variables with their values and where they come from; sensitive
/// ones as `<from secret S/K>` or `<generated>`, never the value.
#[utoipa::path(get, path = "/api/v1/variables", tag = "variables", params(VersionQuery),
    responses((status = 200, body = VariablesView), (status = 401, body = ErrorBody),
        (status = 404, description = "`not_imported`: no such version, or nothing imported", body = ErrorBody)))]
pub(crate) async fn list(
    State(r): State<Release>,
    headers: HeaderMap,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Json<VariablesView>, ApiError> {
    caller(&r.agent, &headers, "variables", false)?;
    let q = version_query(query)?;
    let (version, declared) = declarations(&r.engine, q.version.as_deref()).await?;
    let site = planner::load_site(&r.engine).map_err(|e| EngineError::Internal(e.to_string()))?;
    let variables = declared
        .variables
        .iter()
        .map(|v| view(&v.declaration, &site.values, &site.generated))
        .collect();
    let unused_settings = site
        .values
        .0
        .keys()
        .filter(|n| !declared.variables.iter().any(|v| v.declaration.name == **n))
        .map(ToString::to_string)
        .collect();
    Ok(Json(VariablesView {
        version,
        variables,
        unused_settings,
    }))
}

/// Sets one variable: a literal (`{"value": …}`) or a Secret key (`{"fromSecret": {"secret":
/// S, "key": K}}`). Checked against the declaration (type, pattern, minimum, maximum; a
/// sensitive one only from a Secret, which must hold the key) before it is stored; used by
/// the next operation. Audited without the value.
#[utoipa::path(put, path = "/api/v1/variables/{name}", tag = "variables",
    params(("name" = String, Path, description = "the variable"), VersionQuery),
    request_body = SetVariable,
    responses((status = 200, body = VariableSet), (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`not_declared` or `not_imported`", body = ErrorBody),
        (status = 409, description = "`operation_running`: values change between operations", body = ErrorBody),
        (status = 422, description = "`invalid_value`: every problem listed in `problems`", body = ErrorBody)))]
pub(crate) async fn set(
    State(r): State<Release>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<VersionQuery>, QueryRejection>,
    Json(req): Json<SetVariable>,
) -> Result<Json<VariableSet>, ApiError> {
    let who = caller(&r.agent, &headers, "vars-set", true)?;
    let q = version_query(query)?;
    let refuse = |e: ApiError, detail: String| {
        r.agent
            .record(&who.name, "vars-set", None, "refused", Some(&e.code), Some(detail));
        e
    };
    let value = match (req.value, req.from_secret) {
        (Some(v), None) => SiteValue::Literal(v),
        (None, Some(s)) => SiteValue::FromSecret(SecretRef {
            secret: s.secret,
            key: s.key,
        }),
        _ => {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give exactly one of `value` and `fromSecret`",
            );
            return Err(refuse(e, format!("{name}: neither or both of value and fromSecret")));
        }
    };
    let how = match &value {
        SiteValue::Literal(_) => "a literal".to_owned(),
        SiteValue::FromSecret(s) => format!("Secret {s}"),
    };
    let Ok(var) = name.parse::<VariableName>() else {
        let e = ApiError::new(
            StatusCode::NOT_FOUND,
            "not_declared",
            format!("{name:?} is not a variable name"),
        );
        return Err(refuse(e, format!("{name:?}: not a variable name")));
    };
    let (version, declared) = declarations(&r.engine, q.version.as_deref())
        .await
        .map_err(|e| refuse(e, format!("{name}: no declarations")))?;
    let Some(spec) = declared
        .variables
        .iter()
        .find(|v| v.declaration.name == var)
        .map(|v| v.declaration.clone())
    else {
        let names: Vec<String> = declared
            .variables
            .iter()
            .map(|v| v.declaration.name.to_string())
            .collect();
        let e = ApiError::new(
            StatusCode::NOT_FOUND,
            "not_declared",
            format!(
                "{version} declares no variable {name}; it declares: {}",
                names.join(", ")
            ),
        );
        return Err(refuse(e, format!("{name}: not declared by {version}")));
    };
    let _guard = SITE_WRITE.lock().await;
    if let Some(op) = r.engine.running() {
        let e = ApiError::from(EngineError::Busy(format!(
            "{op} is running; set variables before or after it"
        )));
        return Err(refuse(e, format!("{name}: {op} is running")));
    }
    // The Secret's key is read now, so a missing key or a value the declaration refuses is
    // reported here rather than at the next operation's preflight.
    let secret_value = match &value {
        SiteValue::FromSecret(s) => Some(read_secret(&r.engine, s).await),
        SiteValue::Literal(_) => None,
    };
    let lookup = |_: &str, _: &str| -> Result<Option<String>, String> { secret_value.clone().unwrap_or(Ok(None)) };
    let one = Variables {
        variables: declared
            .variables
            .iter()
            .filter(|v| v.declaration.name == var)
            .cloned()
            .collect(),
        ..declared.clone()
    };
    let mut site_one = SiteValues::default();
    site_one.0.insert(var.clone(), value.clone());
    if let Err(e) = values::resolve_with_rng(
        &one,
        None,
        &site_one,
        &lookup,
        &GeneratedValues::default(),
        &mut rand::rngs::OsRng,
    ) {
        let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        let kinds: Vec<&str> = e.problems.iter().map(problem_code).collect();
        let err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            format!("{name} is not set: {}", problems.join("; ")),
        )
        .with_extra(json!({ "problems": problems }));
        return Err(refuse(err, format!("{name} from {how}: {}", kinds.join(", "))));
    }
    let mut site = planner::load_site(&r.engine).map_err(|e| EngineError::Internal(e.to_string()))?;
    site.values.0.insert(var, value);
    planner::save_site(&r.engine, &site).map_err(|e| EngineError::Internal(e.to_string()))?;
    r.agent.record(
        &who.name,
        "vars-set",
        Some(version.clone()),
        "ok",
        None,
        Some(format!("{name} set from {how}")),
    );
    Ok(Json(VariableSet {
        variable: view(&spec, &site.values, &site.generated),
        message: format!("{name} set from {how}; the next operation uses it"),
        version,
    }))
}

/// The query, checked after the caller: a token offered in the URL is refused as 401 (no
/// header) before its parameter could be reported as unknown.
fn version_query(query: Result<Query<VersionQuery>, QueryRejection>) -> Result<VersionQuery, ApiError> {
    query.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{e}; the only parameter is version (tokens go in the Authorization header)"),
        )
    })
}

/// A stable name for each kind of problem, for the audit log (which never holds a value).
fn problem_code(p: &ValueProblem) -> &'static str {
    match p {
        ValueProblem::Missing { .. } => "missing",
        ValueProblem::SensitiveLiteral { .. } => "sensitive_literal",
        ValueProblem::TypeMismatch { .. } => "type_mismatch",
        ValueProblem::PatternMismatch { .. } => "pattern_mismatch",
        ValueProblem::BelowMinimum { .. } => "below_minimum",
        ValueProblem::AboveMaximum { .. } => "above_maximum",
        ValueProblem::SecretKeyMissing { .. } => "secret_key_missing",
        ValueProblem::SecretUnreadable { .. } => "secret_unreadable",
        ValueProblem::InvalidPattern { .. } => "invalid_pattern",
        ValueProblem::GenerateTooLong { .. } => "generate_too_long",
    }
}

/// A key of a Secret in the agent's namespace: `Ok(None)` when the Secret or key is missing.
async fn read_secret(engine: &Engine, s: &SecretRef) -> Result<Option<String>, String> {
    use k8s_openapi::api::core::v1::Secret;
    let api: kube::Api<Secret> = kube::Api::namespaced(engine.cluster.client().clone(), &engine.cfg.namespace);
    match tokio::time::timeout(std::time::Duration::from_secs(10), api.get_opt(&s.secret)).await {
        Ok(Ok(found)) => Ok(found.and_then(|secret| {
            secret
                .data
                .and_then(|d| d.get(&s.key).map(|b| String::from_utf8_lossy(&b.0).into_owned()))
        })),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the Kubernetes API server did not answer within 10 s".into()),
    }
}

/// The version whose declarations apply, and those declarations (head re-verified).
async fn declarations(engine: &Engine, version: Option<&str>) -> Result<(String, Variables), ApiError> {
    let store = &engine.agent.store;
    let bundle = match version {
        Some(v) => engine.bundle_for(v)?,
        None => {
            let deployed = engine
                .history
                .deployed()
                .map_err(|e| EngineError::Internal(e.to_string()))?
                .and_then(|d| store.get(&d.bundle));
            match deployed {
                Some(b) => b,
                None => match engine.status().await.desired_version {
                    Some(v) => engine.bundle_for(&v)?,
                    None => store.list().into_iter().next().ok_or_else(|| {
                        ApiError::new(
                            StatusCode::NOT_FOUND,
                            "not_imported",
                            "nothing is imported: the variables come from a release's declarations",
                        )
                    })?,
                },
            }
        }
    };
    let path = store.path_of(&bundle.identity);
    let trusted = engine.agent.trust_state().trusted_roots();
    let read = tokio::task::spawn_blocking(move || schemas::inspect::read_metadata(&path, trusted))
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let (_, metadata) = read.map_err(|e| {
        EngineError::Internal(format!(
            "the stored bundle of {} does not verify: {}",
            bundle.version,
            crate::error_chain(&e)
        ))
    })?;
    Ok((bundle.version, metadata.variables))
}

/// How one declared variable stands, in the order the render takes values: the site's
/// setting, the value generated for the site, the default.
fn view(spec: &VariableSpec, site: &SiteValues, generated: &GeneratedValues) -> VariableView {
    let (source, value, secret, shown) = match site.0.get(&spec.name) {
        Some(SiteValue::FromSecret(s)) => (
            VariableSource::Secret,
            None,
            Some(SecretKey {
                secret: s.secret.clone(),
                key: s.key.clone(),
            }),
            format!("<from secret {s}>"),
        ),
        // Refused at render time; never shown.
        Some(SiteValue::Literal(_)) if spec.sensitive => (
            VariableSource::Site,
            None,
            None,
            "<literal, refused: sensitive variables come from a Secret>".to_owned(),
        ),
        Some(SiteValue::Literal(v)) => (VariableSource::Site, Some(v.clone()), None, v.to_text()),
        None => match (&spec.generate, generated.get(&spec.name)) {
            (Some(_), Some(_)) if spec.sensitive => (VariableSource::Generated, None, None, "<generated>".to_owned()),
            (Some(_), Some(text)) => (
                VariableSource::Generated,
                Some(VariableValue::String(text.to_owned())),
                None,
                text.to_owned(),
            ),
            (Some(_), None) => (
                VariableSource::Generated,
                None,
                None,
                "<generated at the next install or upgrade>".to_owned(),
            ),
            (None, _) => match &spec.default {
                Some(_) if spec.sensitive => (VariableSource::Default, None, None, "<default>".to_owned()),
                Some(d) => (VariableSource::Default, Some(d.clone()), None, d.to_text()),
                None => (VariableSource::Unset, None, None, "<not set>".to_owned()),
            },
        },
    };
    VariableView {
        name: spec.name.to_string(),
        type_: match spec.ty {
            VariableType::String => "string",
            VariableType::Integer => "integer",
        }
        .to_owned(),
        description: spec.description.clone(),
        required: spec.required,
        sensitive: spec.sensitive,
        pattern: spec.pattern.clone(),
        minimum: spec.minimum,
        maximum: spec.maximum,
        default: if spec.sensitive { None } else { spec.default.clone() },
        generate: spec.generate.is_some(),
        source,
        value,
        secret,
        shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> VariableSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sensitive_values_are_never_shown() {
        let pw = spec(
            json!({"name": "pw", "type": "string", "valuesPath": "pw", "sensitive": true,
            "generate": {"length": 8, "charset": "hex"}}),
        );
        let token = spec(json!({"name": "token", "type": "string", "valuesPath": "t", "sensitive": true}));
        let host = spec(json!({"name": "host", "type": "string", "valuesPath": "h", "default": "a.example"}));
        let mut site = SiteValues::default();
        site.0.insert(
            "token".parse().unwrap(),
            SiteValue::FromSecret(SecretRef {
                secret: "s".into(),
                key: "k".into(),
            }),
        );
        let mut generated = GeneratedValues::default();
        generated.0.insert("pw".parse().unwrap(), "deadbeef".into());
        let v = view(&pw, &site, &generated);
        assert_eq!(
            (v.source, v.shown.as_str(), v.value.is_none()),
            (VariableSource::Generated, "<generated>", true)
        );
        let v = view(&token, &site, &generated);
        assert_eq!(v.shown, "<from secret s/k>");
        assert_eq!(v.secret.unwrap().key, "k");
        let v = view(&host, &site, &generated);
        assert_eq!((v.source, v.shown.as_str()), (VariableSource::Default, "a.example"));
        site.0.insert(
            "pw".parse().unwrap(),
            SiteValue::Literal(VariableValue::String("hunter2".into())),
        );
        let v = view(&pw, &site, &generated);
        assert!(!serde_json::to_string(&v).unwrap().contains("hunter2"));
    }
}
