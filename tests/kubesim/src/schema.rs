//! Unknown-field detection: custom resources against their CRD's `openAPIV3Schema`, and
//! tier 1 built-ins against tables of the fields their commonly written parts accept.

use serde_json::Value;

use crate::kinds::{ResourceKind, Tier};

/// One step into a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A field the schema does not declare, e.g. `spec.replica`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownField {
    pub path: String,
    pub segments: Vec<Segment>,
}

const METADATA: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const CONTAINER: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
];

const POD_SPEC: &[&str] = &[
    "volumes",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "nodeSelector",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "securityContext",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "dnsConfig",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "resources",
];

const TEMPLATE: &[&str] = &["metadata", "spec"];

/// The keys a built-in accepts at a path of field names, when the simulator knows them.
fn known_keys(kind: &str, path: &[String]) -> Option<&'static [&'static str]> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let top: &'static [&'static str] = match kind {
        "ConfigMap" => &["apiVersion", "kind", "metadata", "data", "binaryData", "immutable"],
        "Secret" => &[
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "stringData",
            "type",
            "immutable",
        ],
        "ServiceAccount" => &[
            "apiVersion",
            "kind",
            "metadata",
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "Role" => &["apiVersion", "kind", "metadata", "rules"],
        "ClusterRole" => &["apiVersion", "kind", "metadata", "rules", "aggregationRule"],
        "RoleBinding" | "ClusterRoleBinding" => &["apiVersion", "kind", "metadata", "subjects", "roleRef"],
        "Event" => return None,
        _ => &["apiVersion", "kind", "metadata", "spec", "status"],
    };
    let workload_spec: Option<&'static [&'static str]> = match kind {
        "Deployment" => Some(&[
            "replicas",
            "selector",
            "template",
            "strategy",
            "minReadySeconds",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
        ]),
        "ReplicaSet" => Some(&["replicas", "minReadySeconds", "selector", "template"]),
        "StatefulSet" => Some(&[
            "replicas",
            "selector",
            "template",
            "volumeClaimTemplates",
            "serviceName",
            "podManagementPolicy",
            "updateStrategy",
            "revisionHistoryLimit",
            "minReadySeconds",
            "persistentVolumeClaimRetentionPolicy",
            "ordinals",
        ]),
        "DaemonSet" => Some(&[
            "selector",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ]),
        "Job" => Some(&[
            "parallelism",
            "completions",
            "activeDeadlineSeconds",
            "podFailurePolicy",
            "successPolicy",
            "backoffLimit",
            "backoffLimitPerIndex",
            "maxFailedIndexes",
            "selector",
            "manualSelector",
            "template",
            "ttlSecondsAfterFinished",
            "completionMode",
            "suspend",
            "podReplacementPolicy",
            "managedBy",
        ]),
        "Service" => Some(&[
            "ports",
            "selector",
            "clusterIP",
            "clusterIPs",
            "type",
            "externalIPs",
            "sessionAffinity",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "externalName",
            "externalTrafficPolicy",
            "healthCheckNodePort",
            "publishNotReadyAddresses",
            "sessionAffinityConfig",
            "ipFamilies",
            "ipFamilyPolicy",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
            "internalTrafficPolicy",
            "trafficDistribution",
        ]),
        _ => None,
    };
    match p.as_slice() {
        [] => Some(top),
        ["metadata"] => Some(METADATA),
        ["spec"] => workload_spec.or(if kind == "Pod" { Some(POD_SPEC) } else { None }),
        ["spec", "template"] if workload_spec.is_some() => Some(TEMPLATE),
        ["spec", "template", "metadata"] => Some(METADATA),
        ["spec", "template", "spec"] if workload_spec.is_some() => Some(POD_SPEC),
        ["spec", "template", "spec", "containers" | "initContainers"] => Some(CONTAINER),
        ["spec", "containers" | "initContainers"] if kind == "Pod" => Some(CONTAINER),
        ["spec", "jobTemplate"] if kind == "CronJob" => Some(TEMPLATE),
        _ => None,
    }
}

fn walk_builtin(
    kind: &str,
    value: &Value,
    names: &mut Vec<String>,
    segs: &mut Vec<Segment>,
    out: &mut Vec<UnknownField>,
) {
    match value {
        Value::Object(map) => {
            let known = known_keys(kind, names);
            for (k, v) in map {
                segs.push(Segment::Key(k.clone()));
                if known.is_some_and(|ks| !ks.contains(&k.as_str())) {
                    out.push(UnknownField {
                        path: display(segs),
                        segments: segs.clone(),
                    });
                } else if !(matches!(k.as_str(), "labels" | "annotations" | "data" | "stringData")
                    || (names.is_empty() && k == "status"))
                {
                    names.push(k.clone());
                    walk_builtin(kind, v, names, segs, out);
                    names.pop();
                }
                segs.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                segs.push(Segment::Index(i));
                walk_builtin(kind, item, names, segs, out);
                segs.pop();
            }
        }
        _ => {}
    }
}

fn walk_schema(schema: &Value, value: &Value, segs: &mut Vec<Segment>, out: &mut Vec<UnknownField>, root: bool) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true && schema["properties"].is_null() {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let embedded = schema["x-kubernetes-embedded-resource"] == true;
            for (k, v) in map {
                segs.push(Segment::Key(k.clone()));
                if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind") {
                } else if (root || embedded) && k == "metadata" {
                    if let Some(m) = v.as_object() {
                        for mk in m.keys() {
                            if !METADATA.contains(&mk.as_str()) {
                                segs.push(Segment::Key(mk.clone()));
                                out.push(UnknownField {
                                    path: display(segs),
                                    segments: segs.clone(),
                                });
                                segs.pop();
                            }
                        }
                    }
                } else if let Some(sub) = props.and_then(|p| p.get(k)) {
                    walk_schema(sub, v, segs, out, false);
                } else if additional.is_object() {
                    walk_schema(additional, v, segs, out, false);
                } else if additional == true || schema["x-kubernetes-preserve-unknown-fields"] == true {
                } else {
                    out.push(UnknownField {
                        path: display(segs),
                        segments: segs.clone(),
                    });
                }
                segs.pop();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    segs.push(Segment::Index(i));
                    walk_schema(item_schema, item, segs, out, false);
                    segs.pop();
                }
            }
        }
        _ => {}
    }
}

fn display(segs: &[Segment]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Fields of `object` its kind's schema does not declare.
pub fn unknown_fields(kind: &ResourceKind, object: &Value) -> Vec<UnknownField> {
    let mut out = Vec::new();
    match kind.tier {
        Tier::Custom => {
            if let Some(schema) = &kind.schema {
                walk_schema(schema, object, &mut Vec::new(), &mut out, true);
            }
        }
        Tier::One | Tier::Two => {
            if kind.group.is_empty() || kind.tier == Tier::One || kind.kind != "Event" {
                walk_builtin(&kind.kind, object, &mut Vec::new(), &mut Vec::new(), &mut out);
            }
        }
    }
    out
}

/// Removes the value at a path (for pruning unknown fields).
pub fn remove(object: &mut Value, segments: &[Segment]) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut cur = object;
    for s in parents {
        let next = match s {
            Segment::Key(k) => cur.get_mut(k.as_str()),
            Segment::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Segment::Key(k) => {
            if let Some(m) = cur.as_object_mut() {
                m.shift_remove(k);
            }
        }
        Segment::Index(i) => {
            if let Some(a) = cur.as_array_mut()
                && *i < a.len()
            {
                a.remove(*i);
            }
        }
    }
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    if value.is_null() {
        return schema["nullable"] == true;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        return value.is_i64() || value.is_u64() || value.is_string();
    }
    match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_types(schema: &Value, value: &Value, path: &str, out: &mut Vec<crate::status::Cause>) {
    if !type_matches(schema, value) {
        let expected = schema["type"].as_str().unwrap_or("int-or-string");
        out.push(crate::status::Cause {
            kind: "FieldValueTypeInvalid".to_string(),
            message: format!(
                "Invalid value: \"{}\": {path} in body must be of type {expected}: \"{}\"",
                json_type(value),
                json_type(value)
            ),
            field: path.to_string(),
        });
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.push(crate::status::Cause {
            kind: "FieldValueNotSupported".to_string(),
            message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
            field: path.to_string(),
        });
    }
    out.extend(bounds(schema, value, path));
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = schema["properties"].get(k) {
                    check_types(sub, v, &join(k), out);
                } else if schema["additionalProperties"].is_object() {
                    check_types(&schema["additionalProperties"], v, &join(k), out);
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = required.as_str()
                    && !map.contains_key(r)
                {
                    out.push(crate::status::Cause {
                        kind: "FieldValueRequired".to_string(),
                        message: "Required value".to_string(),
                        field: join(r),
                    });
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_types(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// `minimum`/`maximum`, `minLength`/`maxLength`/`pattern` and `minItems`/`maxItems`.
fn bounds(schema: &Value, value: &Value, path: &str) -> Vec<crate::status::Cause> {
    let mut out = Vec::new();
    let mut fail = |message: String| {
        out.push(crate::status::Cause {
            kind: "FieldValueInvalid".to_string(),
            message: format!("Invalid value: {value}: {path} in body {message}"),
            field: path.to_string(),
        });
    };
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64()
            && (n < min || (schema["exclusiveMinimum"] == true && n <= min))
        {
            fail(format!("should be greater than or equal to {min}"));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && (n > max || (schema["exclusiveMaximum"] == true && n >= max))
        {
            fail(format!("should be less than or equal to {max}"));
        }
    }
    if let Some(text) = value.as_str() {
        let len = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|m| len < m) {
            fail(format!("should be at least {} chars long", schema["minLength"]));
        }
        if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
            fail(format!("may not be more than {} bytes", schema["maxLength"]));
        }
        if let Some(pattern) = schema["pattern"].as_str()
            && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(text))
        {
            fail(format!("should match '{pattern}'"));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|m| n < m) {
            fail(format!("should have at least {} items", schema["minItems"]));
        }
        if schema["maxItems"].as_u64().is_some_and(|m| n > m) {
            fail(format!("should have at most {} items", schema["maxItems"]));
        }
    }
    out
}

/// Type, enum and required-field errors of a custom resource against its CRD schema.
pub fn type_errors(schema: &Value, object: &Value) -> Vec<crate::status::Cause> {
    let mut out = Vec::new();
    check_types(schema, object, "", &mut out);
    out
}

/// Applies the schema's `default`s to a custom resource, as the API server does.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(k) {
                        apply_defaults(sub, v);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for v in map.values_mut() {
                    apply_defaults(&schema["additionalProperties"], v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::builtin_kinds;
    use serde_json::json;

    #[test]
    fn finds_typos_in_deployment_containers() {
        let kind = builtin_kinds()
            .into_iter()
            .find(|k| k.kind == "Deployment")
            .expect("deployment");
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replica": 1, "template": {"spec": {"containers": [{"name": "a", "imagee": "x"}]}}}});
        let paths: Vec<String> = unknown_fields(&kind, &obj).into_iter().map(|u| u.path).collect();
        assert_eq!(paths, vec!["spec.replica", "spec.template.spec.containers[0].imagee"]);
    }
}
