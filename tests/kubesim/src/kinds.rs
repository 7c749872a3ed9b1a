//! The catalog of served kinds: built-in tables (tier 1 and tier 2) and kinds that
//! Established CustomResourceDefinitions add.

use serde_json::Value;

/// How much of the real API server's behaviour a kind gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// API machinery plus controllers, server defaults and kind-specific validation.
    One,
    /// API machinery only.
    Two,
    /// Served from an Established CustomResourceDefinition.
    Custom,
}

/// A printer column from a CRD's `additionalPrinterColumns`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
    pub format: String,
}

/// One served resource at one group-version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: bool,
    pub log: bool,
    /// Only `create` is served (access reviews).
    pub create_only: bool,
    pub tier: Tier,
    pub printer_columns: Vec<PrinterColumn>,
    /// The CRD's `openAPIV3Schema` for custom resources.
    pub schema: Option<Value>,
}

impl ResourceKind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    /// "s" status, "c" scale, "l" log, "r" create-only, "a" in category all.
    flags: &'static str,
    tier: Tier,
}

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    flags: &'static str,
    tier: Tier,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        short,
        flags,
        tier,
    }
}

use Tier::{One, Two};

#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    b("", "v1", "Namespace", "namespaces", false, &["ns"], "s", One),
    b("", "v1", "Service", "services", true, &["svc"], "sa", One),
    b("", "v1", "ConfigMap", "configmaps", true, &["cm"], "", One),
    b("", "v1", "Secret", "secrets", true, &[], "", One),
    b("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"], "s", One),
    b("", "v1", "Pod", "pods", true, &["po"], "sla", One),
    b("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], "", One),
    b("", "v1", "Event", "events", true, &["ev"], "", One),
    b("", "v1", "Endpoints", "endpoints", true, &["ep"], "", Two),
    b("", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"], "s", Two),
    b("", "v1", "Node", "nodes", false, &["no"], "s", Two),
    b("", "v1", "ResourceQuota", "resourcequotas", true, &["quota"], "s", Two),
    b("", "v1", "LimitRange", "limitranges", true, &["limits"], "", Two),
    b("", "v1", "ReplicationController", "replicationcontrollers", true, &["rc"], "sca", Two),
    b("", "v1", "PodTemplate", "podtemplates", true, &[], "", Two),
    b("apps", "v1", "Deployment", "deployments", true, &["deploy"], "sca", One),
    b("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], "sca", One),
    b("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"], "sca", One),
    b("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], "sa", One),
    b("apps", "v1", "ControllerRevision", "controllerrevisions", true, &[], "", Two),
    b("batch", "v1", "Job", "jobs", true, &[], "sa", One),
    b("batch", "v1", "CronJob", "cronjobs", true, &["cj"], "sa", One),
    b("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], "", One),
    b("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[], "", One),
    b("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[], "", One),
    b("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, &[], "", One),
    b("coordination.k8s.io", "v1", "Lease", "leases", true, &[], "", One),
    b("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"], "s", One),
    b("events.k8s.io", "v1", "Event", "events", true, &["ev"], "", Two),
    b("networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"], "s", Two),
    b("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, &[], "", Two),
    b("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, &["netpol"], "", Two),
    b("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"], "s", Two),
    b("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, &["hpa"], "sa", Two),
    b("storage.k8s.io", "v1", "StorageClass", "storageclasses", false, &["sc"], "", Two),
    b("storage.k8s.io", "v1", "CSIDriver", "csidrivers", false, &[], "", Two),
    b("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", false, &[], "s", Two),
    b("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, &["pc"], "", Two),
    b("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", false, &[], "", Two),
    b("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", false, &[], "", Two),
    b("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, &[], "", Two),
    b("apiregistration.k8s.io", "v1", "APIService", "apiservices", false, &[], "s", Two),
    b("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", false, &[], "", Two),
    b("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", false, &["csr"], "s", Two),
    b("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false, &[], "r", One),
    b("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", false, &[], "r", One),
];

/// Every built-in kind the simulator serves.
pub fn builtin_kinds() -> Vec<ResourceKind> {
    BUILTINS
        .iter()
        .map(|b| ResourceKind {
            group: b.group.to_string(),
            version: b.version.to_string(),
            kind: b.kind.to_string(),
            plural: b.plural.to_string(),
            singular: b.kind.to_lowercase(),
            namespaced: b.namespaced,
            short_names: b.short.iter().map(|s| s.to_string()).collect(),
            categories: if b.flags.contains('a') {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            status: b.flags.contains('s'),
            scale: b.flags.contains('c'),
            log: b.flags.contains('l'),
            create_only: b.flags.contains('r'),
            tier: b.tier,
            printer_columns: Vec::new(),
            schema: None,
        })
        .collect()
}

/// The kinds an Established CRD serves (one per served version); empty when it is not
/// Established or is being deleted.
pub fn kinds_from_crd(crd: &Value) -> Vec<ResourceKind> {
    let established = crd["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
    if !established || !crd["metadata"]["deletionTimestamp"].is_null() {
        return Vec::new();
    }
    let spec = &crd["spec"];
    let names = &spec["names"];
    let Some(group) = spec["group"].as_str() else {
        return Vec::new();
    };
    let (Some(kind), Some(plural)) = (names["kind"].as_str(), names["plural"].as_str()) else {
        return Vec::new();
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            let printer_columns = v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: c["name"].as_str().unwrap_or_default().to_string(),
                            kind: c["type"].as_str().unwrap_or("string").to_string(),
                            json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                            description: c["description"].as_str().unwrap_or_default().to_string(),
                            priority: c["priority"].as_i64().unwrap_or(0),
                            format: c["format"].as_str().unwrap_or_default().to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(ResourceKind {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: names["singular"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| kind.to_lowercase()),
                namespaced: spec["scope"] != "Cluster",
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status: !v["subresources"]["status"].is_null(),
                scale: !v["subresources"]["scale"].is_null(),
                log: false,
                create_only: false,
                tier: Tier::Custom,
                printer_columns,
                schema: v.get("schema").and_then(|s| s.get("openAPIV3Schema")).cloned(),
            })
        })
        .collect()
}
