//! Offline checks of custom resources against the structural schema of a CRD the same plan
//! installs: preflight cannot dry-run them (the cluster does not serve the kind yet), so their
//! shape is checked here and the server dry-runs them again at the start of their wave.

use serde_json::Value;

/// The `openAPIV3Schema` of `crd` for `version`, if the CRD serves it.
pub fn schema_for<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)?
        .pointer("/schema/openAPIV3Schema")
}

/// Every way `object` breaks `schema`, as `path: problem`. `metadata`, `apiVersion` and `kind`
/// at the root are the API server's business and not checked.
pub fn problems(schema: &Value, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, object, "", true, &mut out);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, value: &Value, at: &str, root: bool, out: &mut Vec<String>) {
    let here = if at.is_empty() { "." } else { at };
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(type_name(value), "integer" | "string") {
            out.push(format!(
                "{here}: must be an integer or a string, not {}",
                type_name(value)
            ));
        }
        return;
    }
    if let Some(t) = schema["type"].as_str() {
        let actual = type_name(value);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            out.push(format!("{here}: must be {t}, not {actual}"));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        out.push(format!(
            "{here}: {value} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64()
            && n < min
        {
            out.push(format!("{here}: {n} is below the minimum {min}"));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && n > max
        {
            out.push(format!("{here}: {n} is above the maximum {max}"));
        }
    }
    match value {
        Value::Object(map) => {
            for r in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(r) {
                    out.push(format!("{at}.{r}: required"));
                }
            }
            let properties = schema["properties"].as_object();
            let open = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (k, v) in map {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let path = format!("{at}.{k}");
                if let Some(p) = properties.and_then(|p| p.get(k)) {
                    walk(p, v, &path, false, out);
                } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                    walk(extra, v, &path, false, out);
                } else if !open && (properties.is_some() || schema["additionalProperties"] == false) {
                    out.push(format!("{path}: unknown field"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{at}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "required": ["color"], "properties": {
                "color": {"type": "string", "enum": ["blue", "red"]},
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }}}}]}})
    }

    #[test]
    fn a_good_object_passes_and_every_problem_is_named() {
        let crd = crd();
        let schema = schema_for(&crd, "v1").unwrap();
        assert!(schema_for(&crd, "v2").is_none());
        let good = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
            "spec": {"color": "blue", "size": 3, "port": "http", "tags": ["a"], "labels": {"a": "b"}, "free": {"any": 1}}});
        assert!(problems(schema, &good).is_empty(), "{:?}", problems(schema, &good));
        let bad = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
            "spec": {"colour": "blue", "size": 30, "port": 1.5, "tags": [1], "labels": {"a": 2}}, "extra": true});
        let p = problems(schema, &bad);
        for expected in [
            ".spec.color: required",
            ".spec.colour: unknown field",
            ".spec.size: 30 is above the maximum 10",
            ".spec.port: must be an integer or a string, not number",
            ".spec.tags[0]: must be string, not integer",
            ".spec.labels.a: must be string, not integer",
            ".extra: unknown field",
        ] {
            assert!(p.iter().any(|x| x == expected), "{expected} not in {p:?}");
        }
        let wrong_enum = json!({"spec": {"color": "green"}});
        assert_eq!(
            problems(schema, &wrong_enum),
            [".spec.color: \"green\" is not one of [\"blue\",\"red\"]"]
        );
    }
}
