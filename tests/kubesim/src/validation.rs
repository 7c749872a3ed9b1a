//! Kind-independent and tier 1 validation: names, immutable fields, and structural checks.

use serde_json::Value;

use crate::status::Cause;

fn cause(kind: &str, field: &str, message: String) -> Cause {
    Cause {
        kind: kind.to_string(),
        message,
        field: field.to_string(),
    }
}

/// RFC 1123 label: at most 63 lower-case alphanumerics or '-', alphanumeric at both ends.
pub fn is_dns1123_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns1123_label)
}

/// Checks `metadata.name` for a kind (labels for Namespace and Service, subdomain otherwise).
pub fn check_name(kind: &str, name: &str) -> Vec<Cause> {
    if name.is_empty() {
        return vec![cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required".to_string(),
        )];
    }
    let label_only = matches!(kind, "Namespace" | "Service");
    let ok = if label_only {
        is_dns1123_label(name)
    } else if matches!(kind, "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding") {
        !name.contains('/') && !name.contains('%') && name != "." && name != ".."
    } else {
        is_dns1123_subdomain(name)
    };
    if ok {
        return Vec::new();
    }
    let what = if label_only {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    };
    vec![cause(
        "FieldValueInvalid",
        "metadata.name",
        format!("Invalid value: \"{name}\": {what}"),
    )]
}

fn immutable(old: &Value, new: &Value, path: &[&str], field: &str, out: &mut Vec<Cause>) {
    let get = |v: &Value| {
        let mut cur = v.clone();
        for p in path {
            cur = cur[*p].clone();
        }
        cur
    };
    if get(old) != get(new) {
        out.push(cause(
            "FieldValueInvalid",
            field,
            format!(
                "Invalid value: {}: field is immutable",
                serde_json::to_string(&get(new)).unwrap_or_default()
            ),
        ));
    }
}

/// Immutable-field checks of tier 1 kinds on update.
pub fn check_immutable(kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    match kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            immutable(old, new, &["spec", "selector"], "spec.selector", &mut out)
        }
        "StatefulSet" => {
            immutable(old, new, &["spec", "selector"], "spec.selector", &mut out);
            let old_vct = &old["spec"]["volumeClaimTemplates"];
            let new_vct = &new["spec"]["volumeClaimTemplates"];
            if old_vct != new_vct {
                out.push(cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".to_string(),
                ));
            }
        }
        "Job" => {
            immutable(old, new, &["spec", "selector"], "spec.selector", &mut out);
            immutable(old, new, &["spec", "template"], "spec.template", &mut out);
            immutable(old, new, &["spec", "completions"], "spec.completions", &mut out);
        }
        "Service" => {
            let old_ip = &old["spec"]["clusterIP"];
            let new_ip = &new["spec"]["clusterIP"];
            if !new_ip.is_null() && old_ip != new_ip {
                immutable(old, new, &["spec", "clusterIP"], "spec.clusterIP", &mut out);
            }
        }
        "PersistentVolumeClaim" => {
            let mut o = old["spec"].clone();
            let mut n = new["spec"].clone();
            for v in [&mut o, &mut n] {
                if let Some(m) = v.as_object_mut() {
                    m.shift_remove("resources");
                    m.shift_remove("volumeName");
                }
            }
            if o != n {
                out.push(cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".to_string(),
                ));
            }
        }
        "Secret" | "ConfigMap" if old["immutable"] == true => {
            immutable(old, new, &["data"], "data", &mut out);
        }
        _ => {}
    }
    out
}

/// Structural checks of tier 1 kinds on every write.
pub fn check_object(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let template_checks = |spec: &Value, base: &str, out: &mut Vec<Cause>| {
        let containers = spec["containers"].as_array();
        if containers.is_none_or(|c| c.is_empty()) {
            out.push(cause(
                "FieldValueRequired",
                &format!("{base}.containers"),
                "Required value".to_string(),
            ));
        }
        for (i, c) in containers.into_iter().flatten().enumerate() {
            if c["image"].as_str().is_none_or(str::is_empty) {
                out.push(cause(
                    "FieldValueRequired",
                    &format!("{base}.containers[{i}].image"),
                    "Required value".to_string(),
                ));
            }
            if !c["name"].as_str().is_some_and(is_dns1123_label) {
                out.push(cause(
                    "FieldValueRequired",
                    &format!("{base}.containers[{i}].name"),
                    "Required value".to_string(),
                ));
            }
        }
    };
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            let selector = crate::selectors::LabelSelector::from_spec(&obj["spec"]["selector"]);
            if obj["spec"]["selector"].is_null() {
                out.push(cause(
                    "FieldValueRequired",
                    "spec.selector",
                    "Required value".to_string(),
                ));
            } else if !selector.matches(&obj["spec"]["template"]) {
                out.push(cause(
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        obj["spec"]["template"]["metadata"]["labels"]
                    ),
                ));
            }
            template_checks(&obj["spec"]["template"]["spec"], "spec.template.spec", &mut out);
        }
        "Job" => template_checks(&obj["spec"]["template"]["spec"], "spec.template.spec", &mut out),
        "Pod" => template_checks(&obj["spec"], "spec", &mut out),
        "CustomResourceDefinition" => {
            let spec = &obj["spec"];
            let expected = format!(
                "{}.{}",
                spec["names"]["plural"].as_str().unwrap_or_default(),
                spec["group"].as_str().unwrap_or_default()
            );
            if obj["metadata"]["name"].as_str() != Some(expected.as_str()) {
                out.push(cause(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!(
                        "Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
                        obj["metadata"]["name"]
                    ),
                ));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_names() {
        assert!(is_dns1123_subdomain("web.example-1"));
        assert!(!is_dns1123_subdomain("Web"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label("-a"));
        assert_eq!(check_name("Namespace", "bad_name")[0].field, "metadata.name");
    }
}
