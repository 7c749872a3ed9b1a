//! The permissions the agent needs to apply, prune and watch a bundle's objects.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde_json::{Value, json};

use crate::render::Document;

/// Kinds that are cluster-scoped among the built-in ones.
const CLUSTER_KINDS: [&str; 16] = [
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "VolumeSnapshotClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
];

/// Verbs the agent uses on application objects: server-side apply, prune, readiness watch.
const APPLY_VERBS: [&str; 7] = ["get", "list", "watch", "create", "update", "patch", "delete"];

/// The plural resource name of a kind, as the API server names it.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.as_str() {
        "endpoints" => lower,
        _ if lower.ends_with("policy") => format!("{}ies", &lower[..lower.len() - 1]),
        _ if lower.ends_with('s') || lower.ends_with("ch") || lower.ends_with('x') => format!("{lower}es"),
        _ if lower.ends_with('y') && !lower.ends_with("ay") && !lower.ends_with("ey") => {
            format!("{}ies", &lower[..lower.len() - 1])
        }
        _ => format!("{lower}s"),
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// A Role (namespaced objects, plus what operations need: Jobs, Pods, logs, Leases, Events)
/// and a ClusterRole (cluster-scoped objects and the application's CRDs), bound to the
/// agent's ServiceAccount `name` in `agent_namespace`.
pub fn roles(docs: &[Document], name: &str, namespace: &str, agent_namespace: &str) -> Vec<Value> {
    let mut crd_scope: BTreeMap<(String, String), (String, bool)> = BTreeMap::new();
    for d in docs.iter().filter(|d| d.kind() == "CustomResourceDefinition") {
        let o = &d.object;
        let group = o
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = o
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let plural = o
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let cluster = o.pointer("/spec/scope").and_then(Value::as_str) == Some("Cluster");
        crd_scope.insert((group, kind), (plural, cluster));
    }
    let mut namespaced: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut cluster: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in docs {
        let group = group_of(d.api_version()).to_owned();
        let (resource, is_cluster) = match crd_scope.get(&(group.clone(), d.kind().to_owned())) {
            Some((p, c)) => (p.clone(), *c),
            None => (plural(d.kind()), CLUSTER_KINDS.contains(&d.kind())),
        };
        if is_cluster { &mut cluster } else { &mut namespaced }
            .entry(group)
            .or_default()
            .insert(resource);
    }
    // What every operation needs besides the application's own kinds.
    for (g, r) in [
        ("batch", "jobs"),
        ("", "pods"),
        ("", "pods/log"),
        ("coordination.k8s.io", "leases"),
        ("", "events"),
        ("", "secrets"),
        ("", "configmaps"),
        ("", "persistentvolumeclaims"),
    ] {
        namespaced.entry(g.to_owned()).or_default().insert(r.to_owned());
    }
    let rules = |m: &BTreeMap<String, BTreeSet<String>>| -> Vec<Value> {
        m.iter()
            .map(|(g, rs)| json!({ "apiGroups": [g], "resources": rs, "verbs": APPLY_VERBS }))
            .collect()
    };
    let mut role_rules = rules(&namespaced);
    if namespaced.contains_key("rbac.authorization.k8s.io") {
        role_rules.push(json!({ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["bind", "escalate"] }));
    }
    let mut cluster_rules = rules(&cluster);
    cluster_rules.push(json!({ "apiGroups": ["sealift.dev"], "resources": ["sealiftreleases", "sealiftreleases/status"], "verbs": APPLY_VERBS }));
    cluster_rules.push(json!({ "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"] }));
    if cluster.contains_key("rbac.authorization.k8s.io") {
        cluster_rules.push(json!({ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles", "clusterrolebindings"], "verbs": ["bind", "escalate"] }));
    }
    let labels = json!({ "app.kubernetes.io/managed-by": "sealift" });
    vec![
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": name, "namespace": namespace, "labels": labels }, "rules": role_rules }),
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": agent_namespace }] }),
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": { "name": name, "labels": labels }, "rules": cluster_rules }),
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": { "name": name, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": agent_namespace }] }),
    ]
}

/// Prints objects as a YAML stream.
pub fn print(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_match_the_api_server() {
        for (k, p) in [
            ("Deployment", "deployments"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("StorageClass", "storageclasses"),
            ("Endpoints", "endpoints"),
            ("Gateway", "gateways"),
        ] {
            assert_eq!(plural(k), p);
        }
    }
}
