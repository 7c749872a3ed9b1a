//! Server defaults for tier 1 kinds, applied on every write so that a field a manager stops
//! applying falls back to its default as on a real server.

use serde_json::{Value, json};

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut()
        && map.get(key).is_none_or(Value::is_null)
    {
        map.insert(key.to_string(), value);
    }
}

fn container_defaults(container: &mut Value) {
    let image = container["image"].as_str().unwrap_or_default().to_string();
    let tag_latest = {
        let last = image.rsplit('/').next().unwrap_or_default();
        !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
    };
    set_default(
        container,
        "imagePullPolicy",
        json!(if tag_latest { "Always" } else { "IfNotPresent" }),
    );
    set_default(container, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(container, "terminationMessagePolicy", json!("File"));
    if let Some(ports) = container["ports"].as_array_mut() {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// Defaults of a PodSpec.
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            cs.iter_mut().for_each(container_defaults);
        }
    }
}

fn rolling(max_unavailable: Value, max_surge: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": max_surge}})
}

/// Applies the defaults of a kind to a whole object.
pub fn apply(kind: &str, obj: &mut Value, allocate_ip: &mut dyn FnMut() -> String) {
    match kind {
        "Deployment" => {
            let spec = &mut obj["spec"];
            set_default(spec, "replicas", json!(1));
            set_default(spec, "strategy", rolling(json!("25%"), json!("25%")));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            pod_spec(&mut spec["template"]["spec"]);
        }
        "ReplicaSet" => {
            set_default(&mut obj["spec"], "replicas", json!(1));
            pod_spec(&mut obj["spec"]["template"]["spec"]);
        }
        "StatefulSet" => {
            let spec = &mut obj["spec"];
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            pod_spec(&mut spec["template"]["spec"]);
        }
        "DaemonSet" => {
            let spec = &mut obj["spec"];
            set_default(spec, "updateStrategy", rolling(json!(1), json!(0)));
            set_default(spec, "revisionHistoryLimit", json!(10));
            pod_spec(&mut spec["template"]["spec"]);
        }
        "Job" => {
            let spec = &mut obj["spec"];
            set_default(spec, "parallelism", json!(1));
            set_default(spec, "completions", json!(1));
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            set_default(&mut spec["template"]["spec"], "restartPolicy", json!("Never"));
            pod_spec(&mut spec["template"]["spec"]);
        }
        "CronJob" => {
            let spec = &mut obj["spec"];
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
        }
        "Pod" => pod_spec(&mut obj["spec"]),
        "Service" => {
            let name_seed: u64 = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .bytes()
                .fold(0u64, |acc, b| acc.wrapping_mul(31).wrapping_add(u64::from(b)));
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                *spec = json!({});
            }
            set_default(spec, "type", json!("ClusterIP"));
            if spec["type"] != "ExternalName" {
                if spec["clusterIP"].is_null() {
                    spec["clusterIP"] = json!(allocate_ip());
                }
                let ip = spec["clusterIP"].clone();
                set_default(spec, "clusterIPs", json!([ip]));
                set_default(spec, "ipFamilies", json!(["IPv4"]));
                set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            set_default(spec, "sessionAffinity", json!("None"));
            let wants_node_ports = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
            if wants_node_ports {
                set_default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    let port = p["port"].clone();
                    set_default(p, "targetPort", port.clone());
                    if wants_node_ports && p["nodePort"].is_null() {
                        // Deterministic per port, inside the default NodePort range.
                        let n = port.as_u64().unwrap_or(0);
                        p["nodePort"] = json!(30000 + (n * 7919 + name_seed) % 2768);
                    }
                }
            }
            set_default(obj, "status", json!({"loadBalancer": {}}));
        }
        "Namespace" => {
            if let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) {
                if !obj["metadata"]["labels"].is_object() {
                    obj["metadata"]["labels"] = json!({});
                }
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            }
            set_default(obj, "spec", json!({"finalizers": ["kubernetes"]}));
            set_default(obj, "status", json!({"phase": "Active"}));
        }
        "PersistentVolumeClaim" => {
            set_default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
            set_default(obj, "status", json!({"phase": "Pending"}));
        }
        "Secret" => {
            set_default(obj, "type", json!("Opaque"));
            // stringData is write-only: it is merged into data, base64-encoded.
            if let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|m| m.shift_remove("stringData")) {
                use base64::Engine;
                if !obj["data"].is_object() {
                    obj["data"] = json!({});
                }
                for (k, v) in strings {
                    let text = v.as_str().unwrap_or_default().to_string();
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
        }
        _ => {}
    }
}
