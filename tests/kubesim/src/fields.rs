//! Field paths and field sets as server-side apply records them in `managedFields`
//! (`fieldsV1`), plus the list semantics (`atomic`, `set`, `map` with keys) that decide
//! how values merge.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// One step of a field path, as in `fieldsV1` (`f:`, `k:`, `v:`, `i:`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    Field(String),
    /// Canonical JSON of the key fields of a list-map element.
    Key(String),
    /// Canonical JSON of a set element.
    Value(String),
    Index(usize),
}

pub type FieldPath = Vec<PathElement>;

/// A set of owned field paths. A path whose descendants are also present stands for the
/// node itself (`"."` in `fieldsV1`).
pub type FieldSet = BTreeSet<FieldPath>;

/// How a list (or map) merges.
#[derive(Debug, Clone, PartialEq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Schema knowledge needed for structured merge: list types and atomic maps.
pub trait MergeSchema {
    /// The list type at this path of field names (list-map keys stripped).
    fn list_type(&self, fields: &[String]) -> ListType;
    /// Whether the map at this path is atomic (replaced whole, owned as one leaf).
    fn atomic_map(&self, fields: &[String]) -> bool;
}

/// Rules for built-in kinds, keyed on field names as the Kubernetes OpenAPI marks them.
pub struct BuiltinSchema {
    pub kind: String,
}

impl MergeSchema for BuiltinSchema {
    fn list_type(&self, fields: &[String]) -> ListType {
        let last = fields.last().map(String::as_str).unwrap_or_default();
        let parent = if fields.len() >= 2 {
            fields[fields.len() - 2].as_str()
        } else {
            ""
        };
        let keys = |ks: &[&str]| ListType::Map(ks.iter().map(|k| k.to_string()).collect());
        match last {
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims"
            | "schedulingGates"
            | "webhooks" => keys(&["name"]),
            "volumeMounts" => keys(&["mountPath"]),
            "volumeDevices" => keys(&["devicePath"]),
            "conditions" => keys(&["type"]),
            "hostAliases" => keys(&["ip"]),
            "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
            "ports" if matches!(parent, "containers" | "initContainers" | "ephemeralContainers") => {
                keys(&["containerPort", "protocol"])
            }
            "ports" if self.kind == "Service" && fields.len() == 2 => keys(&["port", "protocol"]),
            "ownerReferences" if parent == "metadata" => keys(&["uid"]),
            "finalizers" if parent == "metadata" => ListType::Set,
            "versions" if self.kind == "CustomResourceDefinition" && parent == "spec" => keys(&["name"]),
            _ => ListType::Atomic,
        }
    }

    fn atomic_map(&self, fields: &[String]) -> bool {
        matches!(
            fields.last().map(String::as_str),
            Some("selector" | "nodeSelector" | "matchLabels" | "openAPIV3Schema")
        ) && !(self.kind == "Service" && fields.len() == 2)
    }
}

/// Rules for custom resources, read from the CRD's structural schema
/// (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`).
pub struct CrdSchema<'a> {
    pub schema: Option<&'a Value>,
}

impl CrdSchema<'_> {
    fn node(&self, fields: &[String]) -> Option<&Value> {
        let mut node = self.schema?;
        for f in fields {
            // Step through list items transparently: paths carry field names only.
            while node["type"] == "array" {
                node = node.get("items")?;
            }
            node = node["properties"]
                .get(f)
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?;
        }
        Some(node)
    }
}

impl MergeSchema for CrdSchema<'_> {
    fn list_type(&self, fields: &[String]) -> ListType {
        if fields.len() == 2 && fields[0] == "metadata" {
            return BuiltinSchema { kind: String::new() }.list_type(fields);
        }
        let Some(node) = self.node(fields) else {
            return ListType::Atomic;
        };
        match node["x-kubernetes-list-type"].as_str() {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                node["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|ks| ks.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
            ),
            _ => ListType::Atomic,
        }
    }

    fn atomic_map(&self, fields: &[String]) -> bool {
        self.node(fields)
            .is_some_and(|n| n["x-kubernetes-map-type"] == "atomic")
    }
}

/// Field names along a path, without list keys.
pub fn field_names(path: &[PathElement]) -> Vec<String> {
    path.iter()
        .filter_map(|p| match p {
            PathElement::Field(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// The key of a list-map element, with `protocol` defaulted to TCP as the API server does.
pub fn element_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut key = Map::new();
    for k in keys {
        match item.get(k) {
            Some(v) if !v.is_null() => {
                key.insert(k.clone(), v.clone());
            }
            _ if k == "protocol" => {
                key.insert(k.clone(), json!("TCP"));
            }
            _ => return None,
        }
    }
    Some(Value::Object(key).to_string())
}

/// Every owned path of `value` as an applied configuration sets it.
pub fn fields_of(value: &Value, schema: &dyn MergeSchema) -> FieldSet {
    let mut set = FieldSet::new();
    collect(value, &mut Vec::new(), schema, &mut set);
    set
}

fn collect(value: &Value, path: &mut FieldPath, schema: &dyn MergeSchema, out: &mut FieldSet) {
    let names = field_names(path);
    match value {
        Value::Object(map) if !map.is_empty() && !schema.atomic_map(&names) => {
            for (k, v) in map {
                path.push(PathElement::Field(k.clone()));
                collect(v, path, schema, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match schema.list_type(&names) {
            ListType::Map(keys) => {
                for item in items {
                    let Some(key) = element_key(item, &keys) else {
                        out.insert(path.clone());
                        return;
                    };
                    path.push(PathElement::Key(key));
                    out.insert(path.clone());
                    if let Some(fields) = item.as_object() {
                        for (k, v) in fields {
                            path.push(PathElement::Field(k.clone()));
                            collect(v, path, schema, out);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            ListType::Set => {
                for item in items {
                    path.push(PathElement::Value(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListType::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// The value at a path, if present.
pub fn get_path<'a>(value: &'a Value, path: &[PathElement], schema: &dyn MergeSchema) -> Option<&'a Value> {
    let mut cur = value;
    for (i, step) in path.iter().enumerate() {
        cur = match step {
            PathElement::Field(f) => cur.get(f)?,
            PathElement::Key(k) => {
                let ListType::Map(keys) = schema.list_type(&field_names(&path[..i])) else {
                    return None;
                };
                cur.as_array()?
                    .iter()
                    .find(|item| element_key(item, &keys).as_deref() == Some(k))?
            }
            PathElement::Value(v) => cur.as_array()?.iter().find(|item| item.to_string() == *v)?,
            PathElement::Index(n) => cur.as_array()?.get(*n)?,
        };
    }
    Some(cur)
}

/// Removes the value at a path; returns whether something was removed.
pub fn remove_path(value: &mut Value, path: &[PathElement], schema: &dyn MergeSchema) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for (i, step) in parent_path.iter().enumerate() {
        let next = match step {
            PathElement::Field(f) => cur.get_mut(f),
            PathElement::Key(k) => {
                let ListType::Map(keys) = schema.list_type(&field_names(&path[..i])) else {
                    return false;
                };
                cur.as_array_mut().and_then(|items| {
                    items
                        .iter_mut()
                        .find(|item| element_key(item, &keys).as_deref() == Some(k))
                })
            }
            PathElement::Value(_) | PathElement::Index(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match last {
        PathElement::Field(f) => cur.as_object_mut().is_some_and(|m| m.shift_remove(f).is_some()),
        PathElement::Key(k) => {
            let ListType::Map(keys) = schema.list_type(&field_names(parent_path)) else {
                return false;
            };
            cur.as_array_mut().is_some_and(|items| {
                let before = items.len();
                items.retain(|item| element_key(item, &keys).as_deref() != Some(k));
                items.len() != before
            })
        }
        PathElement::Value(v) => cur.as_array_mut().is_some_and(|items| {
            let before = items.len();
            items.retain(|item| serde_json::to_string(item).ok().as_ref() != Some(v));
            items.len() != before
        }),
        PathElement::Index(_) => false,
    }
}

/// Merges an applied configuration into a live object by structured-merge rules.
pub fn merge(live: &Value, applied: &Value, path: &mut Vec<String>, schema: &dyn MergeSchema) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if !schema.atomic_map(path) => {
            let mut out = l.clone();
            for (k, av) in a {
                path.push(k.clone());
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, av, path, schema),
                    None => av.clone(),
                };
                path.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match schema.list_type(path) {
            ListType::Map(keys) => {
                let mut out = l.clone();
                for item in a {
                    let key = element_key(item, &keys);
                    let pos = key
                        .as_ref()
                        .and_then(|k| out.iter().position(|o| element_key(o, &keys).as_ref() == Some(k)));
                    match pos {
                        Some(p) => {
                            let merged = merge(&out[p], item, path, schema);
                            out[p] = merged;
                        }
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
            ListType::Set => {
                let mut out = l.clone();
                for item in a {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Atomic => applied.clone(),
        },
        _ => applied.clone(),
    }
}

/// `fieldsV1` JSON for a field set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let paths: Vec<&[PathElement]> = set.iter().map(Vec::as_slice).collect();
    let mut root = build_v1(&paths);
    sort_map(&mut root);
    Value::Object(root)
}

fn build_v1(paths: &[&[PathElement]]) -> Map<String, Value> {
    let mut groups: std::collections::BTreeMap<&PathElement, (bool, Vec<&[PathElement]>)> =
        std::collections::BTreeMap::new();
    for p in paths {
        if let Some((first, rest)) = p.split_first() {
            let entry = groups.entry(first).or_default();
            if rest.is_empty() {
                entry.0 = true;
            } else {
                entry.1.push(rest);
            }
        }
    }
    let mut out = Map::new();
    for (step, (owned, children)) in groups {
        let mut node = build_v1(&children);
        if owned && !node.is_empty() {
            node.insert(".".to_string(), json!({}));
        }
        out.insert(encode_element(step), Value::Object(node));
    }
    out
}

fn sort_map(map: &mut Map<String, Value>) {
    map.sort_keys();
    for v in map.values_mut() {
        if let Value::Object(m) = v {
            sort_map(m);
        }
    }
}

fn encode_element(step: &PathElement) -> String {
    match step {
        PathElement::Field(f) => format!("f:{f}"),
        PathElement::Key(k) => format!("k:{k}"),
        PathElement::Value(v) => format!("v:{v}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

/// Parses `fieldsV1` JSON back into a field set.
pub fn from_fields_v1(value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk_v1(value, &mut Vec::new(), &mut set);
    set
}

fn walk_v1(value: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    let Some(map) = value.as_object() else {
        return;
    };
    if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
        out.insert(path.clone());
    }
    for (k, v) in map {
        let step = if let Some(f) = k.strip_prefix("f:") {
            PathElement::Field(f.to_string())
        } else if let Some(key) = k.strip_prefix("k:") {
            // Re-serialise so the key is canonical whatever spacing the client sent.
            PathElement::Key(
                serde_json::from_str::<Value>(key)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| key.to_string()),
            )
        } else if let Some(val) = k.strip_prefix("v:") {
            PathElement::Value(
                serde_json::from_str::<Value>(val)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| val.to_string()),
            )
        } else if let Some(i) = k.strip_prefix("i:") {
            PathElement::Index(i.parse().unwrap_or_default())
        } else {
            continue;
        };
        path.push(step);
        walk_v1(v, path, out);
        path.pop();
    }
}

/// `.spec.template.spec.containers[name="app"].image`, as conflict messages print paths.
pub fn display_path(path: &[PathElement]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy_schema() -> BuiltinSchema {
        BuiltinSchema {
            kind: "Deployment".to_string(),
        }
    }

    #[test]
    fn fields_v1_round_trips_with_list_map_keys_and_self_markers() {
        let obj = json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"app": "a"}},
            "template": {"spec": {"containers": [{"name": "app", "image": "x",
            "ports": [{"containerPort": 80}]}]}}}});
        let set = fields_of(&obj, &deploy_schema());
        let v1 = to_fields_v1(&set);
        let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"],
            json!({})
        );
        assert_eq!(v1["f:spec"]["f:selector"], json!({}));
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn merge_keeps_unrelated_list_map_elements() {
        let live = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let applied = json!({"env": [{"name": "B", "value": "3"}]});
        let schema = deploy_schema();
        let merged = merge(&live, &applied, &mut Vec::new(), &schema);
        assert_eq!(
            merged,
            json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]})
        );
        let mut m = merged;
        assert!(remove_path(
            &mut m,
            &[
                PathElement::Field("env".into()),
                PathElement::Key("{\"name\":\"A\"}".into())
            ],
            &schema
        ));
        assert_eq!(m, json!({"env": [{"name": "B", "value": "3"}]}));
    }
}
