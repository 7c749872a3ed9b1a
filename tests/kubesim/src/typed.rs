//! Type checks of built-in kinds: each write must decode as the kind's k8s-openapi type, so
//! a mistyped field (`replicas: "two"`) is refused as the API server's decoder refuses it.

use serde_json::Value;

use crate::kinds::ResourceKind;
use crate::status::ApiError;

macro_rules! decode {
    ($object:expr, $t:ty) => {
        serde_json::from_value::<$t>($object.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
}

/// Decodes `object` as its built-in type; unknown kinds pass.
pub fn check(kind: &ResourceKind, object: &Value) -> Result<(), ApiError> {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
        certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, networking::v1 as networking, node::v1 as node,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    let result = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Namespace") => decode!(object, core::Namespace),
        ("", "Service") => decode!(object, core::Service),
        ("", "ConfigMap") => decode!(object, core::ConfigMap),
        ("", "Secret") => decode!(object, core::Secret),
        ("", "PersistentVolumeClaim") => decode!(object, core::PersistentVolumeClaim),
        ("", "Pod") => decode!(object, core::Pod),
        ("", "ServiceAccount") => decode!(object, core::ServiceAccount),
        ("", "Event") => decode!(object, core::Event),
        ("", "Endpoints") => decode!(object, core::Endpoints),
        ("", "PersistentVolume") => decode!(object, core::PersistentVolume),
        ("", "Node") => decode!(object, core::Node),
        ("", "ResourceQuota") => decode!(object, core::ResourceQuota),
        ("", "LimitRange") => decode!(object, core::LimitRange),
        ("", "ReplicationController") => decode!(object, core::ReplicationController),
        ("", "PodTemplate") => decode!(object, core::PodTemplate),
        ("apps", "Deployment") => decode!(object, apps::Deployment),
        ("apps", "ReplicaSet") => decode!(object, apps::ReplicaSet),
        ("apps", "StatefulSet") => decode!(object, apps::StatefulSet),
        ("apps", "DaemonSet") => decode!(object, apps::DaemonSet),
        ("apps", "ControllerRevision") => decode!(object, apps::ControllerRevision),
        ("batch", "Job") => decode!(object, batch::Job),
        ("batch", "CronJob") => decode!(object, batch::CronJob),
        ("rbac.authorization.k8s.io", "Role") => decode!(object, rbac::Role),
        ("rbac.authorization.k8s.io", "RoleBinding") => decode!(object, rbac::RoleBinding),
        ("rbac.authorization.k8s.io", "ClusterRole") => decode!(object, rbac::ClusterRole),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            decode!(object, rbac::ClusterRoleBinding)
        }
        ("coordination.k8s.io", "Lease") => decode!(object, coordination::Lease),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            decode!(object, apiextensions::CustomResourceDefinition)
        }
        ("events.k8s.io", "Event") => decode!(object, events::Event),
        ("networking.k8s.io", "Ingress") => decode!(object, networking::Ingress),
        ("networking.k8s.io", "IngressClass") => decode!(object, networking::IngressClass),
        ("networking.k8s.io", "NetworkPolicy") => decode!(object, networking::NetworkPolicy),
        ("policy", "PodDisruptionBudget") => decode!(object, policy::PodDisruptionBudget),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            decode!(object, autoscaling::HorizontalPodAutoscaler)
        }
        ("storage.k8s.io", "StorageClass") => decode!(object, storage::StorageClass),
        ("storage.k8s.io", "CSIDriver") => decode!(object, storage::CSIDriver),
        ("storage.k8s.io", "VolumeAttachment") => decode!(object, storage::VolumeAttachment),
        ("scheduling.k8s.io", "PriorityClass") => decode!(object, scheduling::PriorityClass),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            decode!(object, admission::ValidatingWebhookConfiguration)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            decode!(object, admission::MutatingWebhookConfiguration)
        }
        ("discovery.k8s.io", "EndpointSlice") => decode!(object, discovery::EndpointSlice),
        ("node.k8s.io", "RuntimeClass") => decode!(object, node::RuntimeClass),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            decode!(object, certificates::CertificateSigningRequest)
        }
        _ => Ok(()),
    };
    result.map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = kind.kind,
            version = kind.version
        ))
    })
}
