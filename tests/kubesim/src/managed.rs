//! `metadata.managedFields`: who owns which field, recorded on every write.

use serde_json::{Map, Value, json};

use crate::fields::{FieldSet, MergeSchema, fields_of, from_fields_v1, get_path, to_fields_v1};

#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: String,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

/// Reads `metadata.managedFields`.
pub fn read(object: &Value) -> Vec<ManagedEntry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["manager"].is_string())
                .map(|e| ManagedEntry {
                    manager: e["manager"].as_str().unwrap_or_default().to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                    time: e["time"].as_str().unwrap_or_default().to_string(),
                    subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn write(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = object["metadata"].as_object_mut() {
        if list.is_empty() {
            meta.shift_remove("managedFields");
        } else {
            meta.insert("managedFields".to_string(), Value::Array(list));
        }
    }
}

/// The part of an object whose fields are owned: no apiVersion/kind, only the user-settable
/// metadata, and either everything but status or only status.
pub fn ownable(object: &Value, subresource: &str) -> Value {
    let mut out = Map::new();
    let Some(map) = object.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if subresource.is_empty() {
                    let mut meta = Map::new();
                    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(x) = v.get(field) {
                            meta.insert(field.to_string(), x.clone());
                        }
                    }
                    if !meta.is_empty() {
                        out.insert(k.clone(), Value::Object(meta));
                    }
                }
            }
            "status" => {
                if subresource == "status" {
                    out.insert(k.clone(), v.clone());
                }
            }
            _ => {
                if subresource.is_empty() {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

/// Records a non-apply write: the manager takes the fields it changed from everyone else;
/// fields no longer in the object leave every set.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    mut entries: Vec<ManagedEntry>,
    manager: &str,
    api_version: &str,
    subresource: &str,
    time: &str,
    schema: &dyn MergeSchema,
) {
    let new_view = ownable(new, subresource);
    let old_view = old.map(|o| ownable(o, subresource));
    let changed: FieldSet = fields_of(&new_view, schema)
        .into_iter()
        .filter(|p| {
            let before = old_view.as_ref().and_then(|o| get_path(o, p, schema));
            before != get_path(&new_view, p, schema)
        })
        .collect();
    if !changed.is_empty() {
        for e in entries.iter_mut() {
            e.fields.retain(|p| !changed.contains(p));
        }
        match entries
            .iter_mut()
            .find(|e| e.same_owner(manager, "Update", subresource))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = time.to_string();
                e.api_version = api_version.to_string();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".to_string(),
                api_version: api_version.to_string(),
                time: time.to_string(),
                subresource: subresource.to_string(),
                fields: changed,
            }),
        }
    }
    prune_missing(new, &mut entries, schema);
    write(new, &entries);
}

/// Drops owned paths that no longer exist in the object.
pub fn prune_missing(object: &Value, entries: &mut [ManagedEntry], schema: &dyn MergeSchema) {
    for e in entries.iter_mut() {
        let view = ownable(object, &e.subresource);
        e.fields.retain(|p| get_path(&view, p, schema).is_some());
    }
}
