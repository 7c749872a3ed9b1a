//! HTTP: parses Kubernetes REST paths and query parameters and dispatches to the cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::cluster::{Cluster, FieldValidation, ListOptions, PatchType, Propagation, Reply, WriteOptions};
use crate::kinds::ResourceKind;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::table::{self, IncludeObject};
use crate::watch::{self, WatchRequest};
use crate::{discovery, openapi};

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub cluster: Arc<Mutex<Cluster>>,
    pub address: String,
    pub bookmark_interval: Duration,
}

impl AppState {
    fn lock(&self) -> Result<MutexGuard<'_, Cluster>, ApiError> {
        self.cluster
            .lock()
            .map_err(|_| ApiError::internal("cluster lock poisoned"))
    }
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) if hex.len() == 2 => {
                        out.push(b);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn json_response(code: u16, body: &Value, content_type: &str, warnings: &[String]) -> Response {
    let mut builder = Response::builder().status(code).header("content-type", content_type);
    for w in warnings {
        builder = builder.header(
            "warning",
            format!("299 - {}", serde_json::to_string(w).unwrap_or_default()),
        );
    }
    builder
        .body(axum::body::Body::from(body.to_string()))
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

fn ok(body: &Value) -> Response {
    json_response(200, body, "application/json", &[])
}

async fn handle(State(state): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let query = parse_query(uri.query());
    let path = uri.path().to_string();
    tracing::debug!(%method, %uri, "request");
    match route(&state, &method, &path, &query, &headers, &body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %uri, code = e.code, message = %e.message, "refused");
            e.into_response()
        }
    }
}

fn accepts(headers: &HeaderMap, needle: &str) -> bool {
    headers
        .get_all("accept")
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains(needle)))
}

fn route(
    state: &AppState,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let aggregated = accepts(headers, "as=APIGroupDiscoveryList");
    match segs.as_slice() {
        ["version"] => return Ok(ok(&discovery::version())),
        ["healthz" | "readyz" | "livez"] => {
            return Ok(Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body("ok".into())
                .unwrap_or_default());
        }
        ["api"] => {
            let c = state.lock()?;
            let kinds: Vec<&ResourceKind> = c.kinds().collect();
            return Ok(if aggregated {
                json_response(
                    200,
                    &discovery::aggregated(&kinds, true),
                    discovery::AGGREGATED_CONTENT_TYPE,
                    &[],
                )
            } else {
                ok(&discovery::api_versions(&state.address))
            });
        }
        ["apis"] => {
            let c = state.lock()?;
            let kinds: Vec<&ResourceKind> = c.kinds().collect();
            return Ok(if aggregated {
                json_response(
                    200,
                    &discovery::aggregated(&kinds, false),
                    discovery::AGGREGATED_CONTENT_TYPE,
                    &[],
                )
            } else {
                ok(&discovery::api_group_list(&kinds))
            });
        }
        ["api", "v1"] | ["apis", _, _] if method == Method::GET => {
            let (g, v) = if segs[0] == "api" {
                ("", "v1")
            } else {
                (segs[1], segs[2])
            };
            let c = state.lock()?;
            let kinds: Vec<&ResourceKind> = c.kinds().collect();
            return discovery::resource_list(&kinds, g, v)
                .map(|l| ok(&l))
                .ok_or_else(|| ApiError::not_found_path(path));
        }
        ["apis", g] if method == Method::GET => {
            let c = state.lock()?;
            let kinds: Vec<&ResourceKind> = c.kinds().collect();
            return discovery::api_group(&kinds, g)
                .map(|l| ok(&l))
                .ok_or_else(|| ApiError::not_found_path(path));
        }
        ["openapi", "v3"] => {
            let c = state.lock()?;
            let kinds: Vec<&ResourceKind> = c.kinds().collect();
            return Ok(ok(&openapi::index(&kinds)));
        }
        ["openapi", "v3", rest @ ..] => {
            let c = state.lock()?;
            let kinds: Vec<&ResourceKind> = c.kinds().collect();
            return openapi::group_version_document(&kinds, &rest.join("/"))
                .map(|d| ok(&d))
                .ok_or_else(|| ApiError::not_found_path(path));
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Err(ApiError::not_found_path(path)),
    };
    let kind_of = |resource: &str| -> Result<Option<ResourceKind>, ApiError> {
        Ok(state.lock()?.kind_by_resource(group, version, resource))
    };
    let (namespace, kind, name, sub) = match rest {
        ["namespaces", ns, resource, tail @ ..] if kind_of(resource)?.is_some_and(|k| k.namespaced) => (
            Some(ns.to_string()),
            kind_of(resource)?,
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        ),
        [resource, tail @ ..] => (
            None,
            kind_of(resource)?,
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        ),
        [] => return Err(ApiError::not_found_path(path)),
    };
    let Some(kind) = kind else {
        return Err(ApiError::not_found_path(path));
    };
    if kind.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::not_found_path(path));
    }
    let sub = sub.unwrap_or_default();
    let sub_served = match sub.as_str() {
        "" => true,
        "status" => kind.status,
        "log" => kind.log,
        "scale" => kind.scale,
        "finalize" => kind.kind == "Namespace",
        _ => false,
    };
    if !sub_served {
        return Err(ApiError::not_found_path(path));
    }
    let ns = namespace.as_deref();
    let list_options = || -> Result<ListOptions, ApiError> {
        Ok(ListOptions {
            labels: LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default())?,
            fields: FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or_default())?,
            limit: query.get("limit").and_then(|l| l.parse().ok()),
            continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
        })
    };
    let write_options = || -> Result<WriteOptions, ApiError> {
        let dry_run = match query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported dry run value {other:?}: only All is supported"
                )));
            }
        };
        let field_validation = match query.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
                )));
            }
        };
        let user_agent = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        let default_manager = user_agent.split('/').next().unwrap_or("unknown").to_string();
        Ok(WriteOptions {
            dry_run,
            field_manager: Some(
                query
                    .get("fieldManager")
                    .cloned()
                    .filter(|m| !m.is_empty())
                    .unwrap_or(default_manager),
            ),
            field_validation,
            force: query.get("force").is_some_and(|f| f == "true"),
        })
    };
    let table_include = if accepts(headers, "as=Table") {
        Some(match query.get("includeObject").map(String::as_str) {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        })
    } else {
        None
    };

    if sub == "scale" {
        let Some(name) = name else {
            return Err(ApiError::not_found_path(path));
        };
        let mut c = state.lock()?;
        let current = c.get(&kind, ns, &name)?;
        let replicas = match *method {
            Method::GET => None,
            Method::PUT => Some(parse_json(body)?["spec"]["replicas"].clone()),
            Method::PATCH => {
                let mut scale = scale_of(&current);
                let patch = parse_json(body)?;
                let media = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if media.starts_with("application/json-patch+json") {
                    let ops: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| ApiError::bad_request(format!("the JSON patch is not valid: {e}")))?;
                    json_patch::patch(&mut scale, &ops).map_err(|e| ApiError::bad_request(e.to_string()))?;
                } else {
                    json_patch::merge(&mut scale, &patch);
                }
                Some(scale["spec"]["replicas"].clone())
            }
            _ => {
                return Err(ApiError::method_not_allowed(format!(
                    "{method} is not allowed on {path}"
                )));
            }
        };
        let result = match replicas {
            None => current,
            Some(r) if r.is_i64() => {
                c.patch(
                    &kind,
                    ns,
                    &name,
                    "",
                    PatchType::Merge,
                    serde_json::json!({"spec": {"replicas": r}}),
                    &write_options()?,
                )?
                .body
            }
            Some(_) => {
                return Err(ApiError::bad_request("spec.replicas of a Scale must be an integer"));
            }
        };
        return Ok(ok(&scale_of(&result)));
    }
    match (method.clone(), name) {
        (Method::GET, None) => {
            let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
            let opts = list_options()?;
            if watching {
                let request = WatchRequest {
                    kind,
                    namespace: namespace.clone(),
                    labels: opts.labels,
                    fields: opts.fields,
                    resource_version: query.get("resourceVersion").cloned(),
                    bookmarks: query.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
                    send_initial_events: query.get("sendInitialEvents").is_some_and(|b| b == "true"),
                    timeout: Duration::from_secs(
                        query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800),
                    ),
                    bookmark_interval: state.bookmark_interval,
                    table: table_include,
                };
                return watch::start(&state.cluster, request);
            }
            let c = state.lock()?;
            let list = c.list(&kind, ns, &opts)?;
            Ok(match table_include {
                Some(include) => {
                    let items = list["items"].as_array().cloned().unwrap_or_default();
                    ok(&table::table(&kind, &items, list["metadata"].clone(), include))
                }
                None => ok(&list),
            })
        }
        (Method::GET, Some(name)) => {
            let c = state.lock()?;
            if sub == "log" {
                c.get(&kind, ns, &name)?;
                let text = c.pod_log(
                    ns.unwrap_or("default"),
                    &name,
                    query.get("container").map(String::as_str),
                );
                return Ok(Response::builder()
                    .status(200)
                    .header("content-type", "text/plain")
                    .body(text.into())
                    .unwrap_or_default());
            }
            let obj = c.get(&kind, ns, &name)?;
            Ok(match table_include {
                Some(include) => ok(&table::table(
                    &kind,
                    std::slice::from_ref(&obj),
                    serde_json::json!({"resourceVersion": obj["metadata"]["resourceVersion"]}),
                    include,
                )),
                None => ok(&obj),
            })
        }
        (Method::POST, None) => {
            let body = parse_json(body)?;
            let opts = write_options()?;
            if kind.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed(format!(
                    "POST to a namespaced resource needs a namespace: {path}"
                )));
            }
            let reply = state.lock()?.create(&kind, ns, body, &opts)?;
            Ok(reply_response(reply))
        }
        (Method::PUT, Some(name)) => {
            let body = parse_json(body)?;
            let opts = write_options()?;
            let sub = if sub == "finalize" { "" } else { sub.as_str() };
            let reply = state.lock()?.update(&kind, ns, &name, sub, body, &opts)?;
            Ok(reply_response(reply))
        }
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let media = content_type.split(';').next().unwrap_or_default().trim();
            let patch_type = match media {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" => PatchType::Apply,
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch and CBOR are not simulated); got {other:?}"
                    )));
                }
            };
            if patch_type == PatchType::Strategic {
                return Err(ApiError::unsupported_media_type(
                    "strategic merge patch (application/strategic-merge-patch+json) is not simulated by kubesim: use server-side apply, a JSON merge patch or a JSON patch",
                ));
            }
            let patch = if patch_type == PatchType::Apply {
                parse_yaml_or_json(body)?
            } else {
                parse_json(body)?
            };
            let opts = write_options()?;
            let reply = state.lock()?.patch(&kind, ns, &name, &sub, patch_type, patch, &opts)?;
            Ok(reply_response(reply))
        }
        (Method::DELETE, name) => {
            let options: Value = if body.is_empty() {
                Value::Null
            } else {
                parse_json(body)?
            };
            let policy = options["propagationPolicy"]
                .as_str()
                .map(str::to_string)
                .or_else(|| query.get("propagationPolicy").cloned())
                .or_else(|| match options["orphanDependents"].as_bool() {
                    Some(true) => Some("Orphan".to_string()),
                    _ => None,
                });
            let propagation = match policy.as_deref() {
                None | Some("Background") => Propagation::Background,
                Some("Foreground") => Propagation::Foreground,
                Some("Orphan") => Propagation::Orphan,
                Some(other) => {
                    return Err(ApiError::bad_request(format!("unknown propagationPolicy {other:?}")));
                }
            };
            let dry_run = query.get("dryRun").is_some_and(|d| d == "All")
                || options["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "All"));
            let mut c = state.lock()?;
            let reply = match name {
                Some(name) => c.delete(
                    &kind,
                    ns,
                    &name,
                    propagation,
                    options["preconditions"]["resourceVersion"].as_str(),
                    dry_run,
                )?,
                None => c.delete_collection(&kind, ns, &list_options()?, propagation)?,
            };
            Ok(reply_response(reply))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {m} {path}"
        ))),
    }
}

/// The `autoscaling/v1 Scale` view of a scalable object.
fn scale_of(object: &Value) -> Value {
    let selector = crate::selectors::labels_of(&object["spec"]["selector"]["matchLabels"])
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let meta = &object["metadata"];
    serde_json::json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

fn reply_response(reply: Reply) -> Response {
    json_response(reply.code, &reply.body, "application/json", &reply.warnings)
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn parse_yaml_or_json(body: &Bytes) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the applied configuration is not UTF-8: {e}")))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}
