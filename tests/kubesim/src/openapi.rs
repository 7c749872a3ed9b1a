//! `/openapi/v3`: an index and one permissive document per group-version that lists each
//! resource's operations with `x-kubernetes-group-version-kind` and the `dryRun`,
//! `fieldManager`, `fieldValidation` and `force` parameters, which kubectl checks before
//! it sends server-side validation.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::kinds::{ResourceKind, Tier};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The schema name of a kind (`io.k8s.api.apps.v1.Deployment`, `com.example.v1.Widget`).
fn schema_name(k: &ResourceKind) -> String {
    if k.tier == Tier::Custom {
        let reversed: Vec<&str> = k.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), k.version, k.kind)
    } else {
        let g = if k.group.is_empty() {
            "core".to_string()
        } else {
            k.group.trim_end_matches(".k8s.io").replace('.', "_")
        };
        format!("io.k8s.api.{g}.{}.{}", k.version, k.kind)
    }
}

fn query(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "description": name, "schema": {"type": kind, "uniqueItems": true}})
}

fn gvk(k: &ResourceKind) -> Value {
    json!({"group": k.group, "version": k.version, "kind": k.kind})
}

fn document(kinds: &[&ResourceKind], group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for k in kinds.iter().filter(|k| k.group == group && k.version == version) {
        let name = schema_name(k);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let body = json!({"content": {"application/json": {"schema": reference}}});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
        let write_params = vec![
            query("dryRun", "string"),
            query("fieldManager", "string"),
            query("fieldValidation", "string"),
        ];
        let mut patch_params = write_params.clone();
        patch_params.push(query("force", "boolean"));
        let base = format!("/{}", gv_path(group, version));
        let collection = if k.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", k.plural)
        } else {
            format!("{base}/{}", k.plural)
        };
        let ext = gvk(k);
        if k.create_only {
            paths.insert(collection, json!({"post": {"operationId": format!("create{}", k.kind), "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": ext, "parameters": write_params, "requestBody": body, "responses": ok}}));
        } else {
            paths.insert(collection.clone(), json!({
                "get": {"operationId": format!("list{}", k.kind), "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": ext, "responses": {"200": {"description": "OK"}}},
                "post": {"operationId": format!("create{}", k.kind), "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": ext, "parameters": write_params, "requestBody": body, "responses": ok},
            }));
            let item = json!({
                "get": {"operationId": format!("read{}", k.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": ext, "responses": ok},
                "put": {"operationId": format!("replace{}", k.kind), "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": ext, "parameters": write_params, "requestBody": body, "responses": ok},
                "patch": {"operationId": format!("patch{}", k.kind), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": ext, "parameters": patch_params, "requestBody": {"content": {"application/apply-patch+yaml": {"schema": {"type": "object"}}, "application/merge-patch+json": {"schema": {"type": "object"}}, "application/json-patch+json": {"schema": {"type": "object"}}}}, "responses": ok},
                "delete": {"operationId": format!("delete{}", k.kind), "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": ext, "parameters": [query("dryRun", "string"), query("propagationPolicy", "string")], "responses": {"200": {"description": "OK"}}},
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
            });
            paths.insert(format!("{collection}/{{name}}"), item);
            if k.status {
                paths.insert(format!("{collection}/{{name}}/status"), json!({
                    "get": {"operationId": format!("read{}Status", k.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": ext, "responses": ok},
                    "patch": {"operationId": format!("patch{}Status", k.kind), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": ext, "parameters": patch_params, "responses": ok},
                }));
            }
        }
        let mut schema = match (&k.schema, k.tier) {
            (Some(s), Tier::Custom) => s.clone(),
            _ => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        schema["x-kubernetes-group-version-kind"] = json!([ext]);
        schemas.insert(name, schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubesim)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn hash(value: &Value) -> String {
    let mut h = DefaultHasher::new();
    value.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: every served group-version with its document URL and hash.
pub fn index(kinds: &[&ResourceKind]) -> Value {
    let mut gvs: Vec<(String, String)> = Vec::new();
    for k in kinds {
        let gv = (k.group.clone(), k.version.clone());
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    let mut paths = Map::new();
    for (g, v) in gvs {
        let p = gv_path(&g, &v);
        let h = hash(&document(kinds, &g, &v));
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
        );
    }
    json!({"paths": paths})
}

/// The document of one group-version (`api/v1`, `apis/apps/v1`), if served.
pub fn group_version_document(kinds: &[&ResourceKind], path: &str) -> Option<Value> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    if !kinds.iter().any(|k| k.group == group && k.version == version) {
        return None;
    }
    Some(document(kinds, group, version))
}
