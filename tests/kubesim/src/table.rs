//! Server-side `Table` output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) so
//! `kubectl get` prints columns, including CRD `additionalPrinterColumns`.

use serde_json::{Value, json};

use crate::kinds::ResourceKind;

/// `includeObject` of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

struct Column {
    name: &'static str,
    kind: &'static str,
    priority: i64,
    cell: fn(&Value) -> Value,
}

fn col(name: &'static str, kind: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        kind,
        priority: 0,
        cell,
    }
}

fn wide(name: &'static str, kind: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        kind,
        priority: 1,
        cell,
    }
}

/// Human age, as kubectl prints it (`45s`, `3m20s`, `2h`, `5d`).
pub fn human_age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".to_string();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 { format!("{m}m") } else { format!("{m}m{s}s") }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 { format!("{h}h") } else { format!("{h}h{mm}m") }
    } else if h < 48 {
        format!("{h}h")
    } else {
        format!("{d}d")
    }
}

fn age(o: &Value) -> Value {
    json!(human_age(
        o["metadata"]["creationTimestamp"].as_str().unwrap_or_default()
    ))
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn text(v: &Value, default: &str) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| default.to_string())
}

fn pod_status(o: &Value) -> Value {
    if !o["metadata"]["deletionTimestamp"].is_null() {
        return json!("Terminating");
    }
    for c in o["status"]["containerStatuses"].as_array().into_iter().flatten() {
        if let Some(reason) = c["state"]["waiting"]["reason"].as_str() {
            return json!(reason);
        }
        if let Some(reason) = c["state"]["terminated"]["reason"].as_str()
            && o["status"]["phase"] != "Succeeded"
        {
            return json!(reason);
        }
    }
    if o["status"]["phase"] == "Succeeded" {
        return json!("Completed");
    }
    json!(text(&o["status"]["phase"], "Pending"))
}

fn columns(kind: &ResourceKind) -> Vec<Column> {
    let name = col("Name", "string", |o| o["metadata"]["name"].clone());
    let mut cols = vec![name];
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => {
            cols.push(col("Ready", "string", |o| {
                let cs = o["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
                let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
                let ready = cs.iter().filter(|c| c["ready"] == true).count();
                json!(format!("{ready}/{total}"))
            }));
            cols.push(col("Status", "string", pod_status));
            cols.push(col("Restarts", "string", |o| {
                let n: i64 = o["status"]["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| int(&c["restartCount"]))
                    .sum();
                json!(n.to_string())
            }));
            cols.push(col("Age", "string", age));
            cols.push(wide("IP", "string", |o| json!(text(&o["status"]["podIP"], "<none>"))));
            cols.push(wide("Node", "string", |o| {
                json!(text(&o["spec"]["nodeName"], "<none>"))
            }));
        }
        ("apps", "Deployment") => {
            cols.push(col("Ready", "string", |o| {
                json!(format!(
                    "{}/{}",
                    int(&o["status"]["readyReplicas"]),
                    int(&o["spec"]["replicas"])
                ))
            }));
            cols.push(col("Up-to-date", "integer", |o| {
                json!(int(&o["status"]["updatedReplicas"]))
            }));
            cols.push(col("Available", "integer", |o| {
                json!(int(&o["status"]["availableReplicas"]))
            }));
            cols.push(col("Age", "string", age));
        }
        ("apps", "ReplicaSet") => {
            cols.push(col("Desired", "integer", |o| json!(int(&o["spec"]["replicas"]))));
            cols.push(col("Current", "integer", |o| json!(int(&o["status"]["replicas"]))));
            cols.push(col("Ready", "integer", |o| json!(int(&o["status"]["readyReplicas"]))));
            cols.push(col("Age", "string", age));
        }
        ("apps", "StatefulSet") => {
            cols.push(col("Ready", "string", |o| {
                json!(format!(
                    "{}/{}",
                    int(&o["status"]["readyReplicas"]),
                    int(&o["spec"]["replicas"])
                ))
            }));
            cols.push(col("Age", "string", age));
        }
        ("apps", "DaemonSet") => {
            cols.push(col("Desired", "integer", |o| {
                json!(int(&o["status"]["desiredNumberScheduled"]))
            }));
            cols.push(col("Current", "integer", |o| {
                json!(int(&o["status"]["currentNumberScheduled"]))
            }));
            cols.push(col("Ready", "integer", |o| json!(int(&o["status"]["numberReady"]))));
            cols.push(col("Up-to-date", "integer", |o| {
                json!(int(&o["status"]["updatedNumberScheduled"]))
            }));
            cols.push(col("Available", "integer", |o| {
                json!(int(&o["status"]["numberAvailable"]))
            }));
            cols.push(col("Age", "string", age));
        }
        ("batch", "Job") => {
            cols.push(col("Status", "string", |o| {
                let conds = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
                let has = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
                json!(if has("Complete") {
                    "Complete"
                } else if has("Failed") {
                    "Failed"
                } else {
                    "Running"
                })
            }));
            cols.push(col("Completions", "string", |o| {
                json!(format!(
                    "{}/{}",
                    int(&o["status"]["succeeded"]),
                    int(&o["spec"]["completions"])
                ))
            }));
            cols.push(col("Age", "string", age));
        }
        ("", "Service") => {
            cols.push(col("Type", "string", |o| o["spec"]["type"].clone()));
            cols.push(col("Cluster-IP", "string", |o| {
                json!(text(&o["spec"]["clusterIP"], "<none>"))
            }));
            cols.push(col("External-IP", "string", |o| {
                let ips: Vec<String> = o["spec"]["externalIPs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                json!(if ips.is_empty() {
                    if o["spec"]["type"] == "LoadBalancer" {
                        "<pending>".to_string()
                    } else {
                        "<none>".to_string()
                    }
                } else {
                    ips.join(",")
                })
            }));
            cols.push(col("Port(s)", "string", |o| {
                let ports: Vec<String> = o["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}/{}", int(&p["port"]), text(&p["protocol"], "TCP")))
                    .collect();
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                })
            }));
            cols.push(col("Age", "string", age));
        }
        ("", "ConfigMap") => {
            cols.push(col("Data", "integer", |o| {
                json!(o["data"].as_object().map_or(0, |m| m.len()) + o["binaryData"].as_object().map_or(0, |m| m.len()))
            }));
            cols.push(col("Age", "string", age));
        }
        ("", "Secret") => {
            cols.push(col("Type", "string", |o| o["type"].clone()));
            cols.push(col("Data", "integer", |o| {
                json!(o["data"].as_object().map_or(0, |m| m.len()))
            }));
            cols.push(col("Age", "string", age));
        }
        ("", "Namespace") => {
            cols.push(col("Status", "string", |o| o["status"]["phase"].clone()));
            cols.push(col("Age", "string", age));
        }
        ("", "PersistentVolumeClaim") => {
            cols.push(col("Status", "string", |o| o["status"]["phase"].clone()));
            cols.push(col("Volume", "string", |o| json!(text(&o["spec"]["volumeName"], ""))));
            cols.push(col("Capacity", "string", |o| {
                json!(text(&o["status"]["capacity"]["storage"], ""))
            }));
            cols.push(col("Age", "string", age));
        }
        ("", "Event") => {
            cols.clear();
            cols.push(col("Last Seen", "string", |o| {
                let t = o["lastTimestamp"]
                    .as_str()
                    .or(o["eventTime"].as_str())
                    .unwrap_or_default();
                json!(human_age(t))
            }));
            cols.push(col("Type", "string", |o| o["type"].clone()));
            cols.push(col("Reason", "string", |o| o["reason"].clone()));
            cols.push(col("Object", "string", |o| {
                let kind = o["involvedObject"]["kind"].as_str().unwrap_or_default().to_lowercase();
                json!(format!(
                    "{kind}/{}",
                    o["involvedObject"]["name"].as_str().unwrap_or_default()
                ))
            }));
            cols.push(col("Message", "string", |o| o["message"].clone()));
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            cols.push(col("Created At", "date", |o| {
                o["metadata"]["creationTimestamp"].clone()
            }));
        }
        _ => cols.push(col("Age", "string", age)),
    }
    cols
}

/// Evaluates the small JSONPath subset printer columns use:
/// `.a.b`, `.a[0].b`, `.a[*].b` and `.a[?(@.type=="Ready")].status`.
pub fn json_path(object: &Value, path: &str) -> Vec<Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current = vec![object.clone()];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            current = current.iter().filter_map(|v| v.get(field).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            let items: Vec<Value> = current.iter().filter_map(|v| v.as_array().cloned()).flatten().collect();
            current = if inner == "*" {
                items
            } else if let Ok(i) = inner.parse::<usize>() {
                current.iter().filter_map(|v| v.get(i).cloned()).collect()
            } else if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, want) = filter.split_once("==").unwrap_or((filter, ""));
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                items
                    .into_iter()
                    .filter(|it| {
                        let mut v = it.clone();
                        for f in field.trim().split('.') {
                            v = v[f].clone();
                        }
                        match &v {
                            Value::String(s) => s == want,
                            other => *other == want,
                        }
                    })
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    current
}

fn printer_cell(object: &Value, path: &str, kind: &str) -> Value {
    let values = json_path(object, path);
    let Some(first) = values.first() else {
        return Value::Null;
    };
    match kind {
        "date" => json!(human_age(first.as_str().unwrap_or_default())),
        "integer" | "number" | "boolean" => first.clone(),
        _ => match first {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

fn row_object(object: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
        }
        IncludeObject::Object => object.clone(),
    }
}

/// A `Table` of objects of one kind.
pub fn table(kind: &ResourceKind, objects: &[Value], list_metadata: Value, include: IncludeObject) -> Value {
    let (definitions, rows): (Vec<Value>, Vec<Value>) = if kind.printer_columns.is_empty() {
        let cols = columns(kind);
        let defs = cols
            .iter()
            .map(|c| json!({"name": c.name, "type": c.kind, "format": if c.name == "Name" { "name" } else { "" }, "description": c.name, "priority": c.priority}))
            .collect();
        let rows = objects
            .iter()
            .map(|o| json!({"cells": cols.iter().map(|c| (c.cell)(o)).collect::<Vec<_>>(), "object": row_object(o, include)}))
            .collect();
        (defs, rows)
    } else {
        let mut defs = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        ];
        defs.extend(kind.printer_columns.iter().map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority})));
        let rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![o["metadata"]["name"].clone()];
                cells.extend(
                    kind.printer_columns
                        .iter()
                        .map(|c| printer_cell(o, &c.json_path, &c.kind)),
                );
                json!({"cells": cells, "object": row_object(o, include)})
            })
            .collect();
        (defs, rows)
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_filters_conditions() {
        let o =
            json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(json_path(&o, ".status.conditions[0].type"), vec![json!("A")]);
        assert!(json_path(&o, ".spec.x").is_empty());
    }
}
