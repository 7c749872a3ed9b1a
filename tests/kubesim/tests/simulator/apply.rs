//! Layer 3: server-side apply, merge and JSON patch, strategic merge refused.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::{start, status_of};

fn web(replicas: i64, env: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "127.0.0.1:1/web:1", "env": env,
                    "ports": [{"containerPort": 8080}]}]}}
        }
    })
}

fn managers(d: &Deployment) -> Vec<(String, String)> {
    d.metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.operation.unwrap_or_default()))
        .collect()
}

fn fields_of(d: &Deployment, manager: &str) -> Value {
    let entry = d
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some(manager))
        .expect("manager entry");
    entry.fields_v1.expect("fieldsV1").0
}

#[tokio::test]
async fn apply_creates_records_ownership_and_is_idempotent() {
    let (_sim, client) = start().await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("sealift");
    let first = deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(web(2, json!([{"name": "A", "value": "1"}]), json!({"team": "x"}))),
        )
        .await
        .expect("create on apply");
    assert_eq!(managers(&first), [("sealift".to_string(), "Apply".to_string())]);
    let f = fields_of(&first, "sealift");
    assert_eq!(f["f:spec"]["f:replicas"], json!({}));
    assert_eq!(f["f:metadata"]["f:labels"]["f:team"], json!({}));
    let container = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
    assert_eq!(container["."], json!({}));
    assert_eq!(container["f:env"]["k:{\"name\":\"A\"}"]["f:value"], json!({}));
    assert_eq!(
        container["f:ports"]["k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"]["f:containerPort"],
        json!({})
    );
    assert!(
        f["f:spec"].get("f:progressDeadlineSeconds").is_none(),
        "defaults are not owned"
    );
    let spec = first.spec.clone().expect("spec");
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    assert_eq!(spec.revision_history_limit, Some(10));

    let again = deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(web(2, json!([{"name": "A", "value": "1"}]), json!({"team": "x"}))),
        )
        .await
        .expect("re-apply");
    assert_eq!(fields_of(&again, "sealift"), f, "same ownership after a re-apply");

    // Without controllers writing status (a ConfigMap), a no-op apply is not a write at all.
    let cms: Api<ConfigMap> = Api::namespaced(deploys.clone().into_client(), "default");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let one = cms.patch("c", &pp, &Patch::Apply(cm.clone())).await.expect("apply");
    let two = cms.patch("c", &pp, &Patch::Apply(cm)).await.expect("re-apply");
    assert_eq!(
        two.metadata.resource_version, one.metadata.resource_version,
        "no-op apply changes nothing"
    );
    assert_eq!(again.metadata.generation, Some(1));
}

#[tokio::test]
async fn conflicts_are_409_unless_forced_and_dry_run_changes_nothing() {
    let (_sim, client) = start().await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    deploys
        .patch(
            "web",
            &PatchParams::apply("sealift"),
            &Patch::Apply(web(2, json!([]), json!({}))),
        )
        .await
        .expect("apply");

    let other = PatchParams::apply("operator");
    let conflicting =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let err = deploys
        .patch("web", &other, &Patch::Apply(conflicting.clone()))
        .await
        .expect_err("conflict");
    let status = status_of(err);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"sealift\" using apps/v1: .spec.replicas"
    );
    let causes = status.details.expect("details").causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(
        (causes[0].reason.as_str(), causes[0].field.as_str()),
        ("FieldManagerConflict", ".spec.replicas")
    );

    // Same value: shared ownership, no conflict.
    deploys.patch("web", &other, &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}))).await.expect("shared");

    let dry = deploys
        .patch(
            "web",
            &other.clone().force().dry_run(),
            &Patch::Apply(conflicting.clone()),
        )
        .await
        .expect("dry run");
    assert_eq!(dry.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert_eq!(
        deploys.get("web").await.expect("get").spec.and_then(|s| s.replicas),
        Some(2),
        "dry run stored nothing"
    );

    let forced = deploys
        .patch("web", &other.force(), &Patch::Apply(conflicting))
        .await
        .expect("forced");
    assert_eq!(forced.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert!(
        fields_of(&forced, "sealift")["f:spec"].get("f:replicas").is_none(),
        "ownership moved"
    );
    assert_eq!(fields_of(&forced, "operator")["f:spec"]["f:replicas"], json!({}));
}

#[tokio::test]
async fn fields_a_manager_stops_applying_are_removed_and_list_maps_merge_by_key() {
    let (_sim, client) = start().await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("sealift");
    deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(web(
                2,
                json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
                json!({"team": "x", "tier": "fe"}),
            )),
        )
        .await
        .expect("v1");
    // Another manager adds an env var to the same container.
    deploys
        .patch("web", &PatchParams::apply("sidecar"), &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "EXTRA", "value": "e"}]}]}}}})))
        .await
        .expect("sidecar env");
    let v2 = deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(web(2, json!([{"name": "A", "value": "1"}]), json!({"team": "x"}))),
        )
        .await
        .expect("v2 drops B and tier");
    let labels = v2.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("x"));
    assert!(!labels.contains_key("tier"), "dropped label removed: {labels:?}");
    let env: Vec<String> = v2.spec.clone().expect("spec").template.spec.expect("pod").containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, ["A", "EXTRA"], "B removed, the other manager's EXTRA kept");
    assert_eq!(
        v2.spec.expect("spec").strategy.and_then(|s| s.type_).as_deref(),
        Some("RollingUpdate"),
        "defaults kept across applies"
    );
}

#[tokio::test]
async fn service_cluster_ip_default_survives_reapply_and_is_immutable() {
    let (_sim, client) = start().await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let pp = PatchParams::apply("sealift");
    let first = services
        .patch("web", &pp, &Patch::Apply(svc.clone()))
        .await
        .expect("apply");
    let ip = first
        .spec
        .clone()
        .expect("spec")
        .cluster_ip
        .expect("clusterIP allocated");
    assert!(ip.starts_with("10.96."));
    let second = services.patch("web", &pp, &Patch::Apply(svc)).await.expect("re-apply");
    assert_eq!(second.spec.expect("spec").cluster_ip.as_deref(), Some(ip.as_str()));
    let err = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "10.96.200.200"}})),
        )
        .await
        .expect_err("immutable");
    assert_eq!(status_of(err).code, 422);
}

#[tokio::test]
async fn merge_and_json_patches_apply_and_strategic_merge_is_415() {
    let (_sim, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})).expect("cm"),
    )
    .await
    .expect("create");
    let merged = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .expect("merge");
    assert_eq!(
        merged.data.clone().expect("data").into_iter().collect::<Vec<_>>(),
        [("b".to_string(), "2".to_string()), ("c".to_string(), "3".to_string())]
    );
    let ops: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/data/b", "value": "20"}, {"op": "add", "path": "/data/d", "value": "4"}]),
    )
    .expect("ops");
    let patched = cms
        .patch("c", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .expect("json patch");
    assert_eq!(patched.data.clone().expect("data")["b"], "20");
    assert_eq!(patched.data.expect("data")["d"], "4");
    let err = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"x": "y"}})),
        )
        .await
        .expect_err("strategic");
    let status = status_of(err);
    assert_eq!((status.code, status.reason.as_str()), (415, "UnsupportedMediaType"));
    assert!(
        status
            .message
            .contains("strategic merge patch (application/strategic-merge-patch+json) is not simulated"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn unknown_fields_are_refused_under_strict_validation() {
    let (_sim, client) = start().await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let mut bad = web(1, json!([]), json!({}));
    bad["spec"]["replica"] = json!(3);
    let err = deploys
        .patch(
            "web",
            &PatchParams::apply("sealift").validation_strict(),
            &Patch::Apply(bad.clone()),
        )
        .await
        .expect_err("strict");
    let status = status_of(err);
    assert_eq!(status.code, 400);
    assert!(
        status.message.contains("unknown field \"spec.replica\""),
        "{}",
        status.message
    );
    let mut mistyped = web(1, json!([]), json!({}));
    mistyped["spec"]["replicas"] = json!("two");
    let err = deploys
        .patch("web", &PatchParams::apply("sealift"), &Patch::Apply(mistyped))
        .await
        .expect_err("mistyped");
    let status = status_of(err);
    assert_eq!(status.code, 400);
    assert!(
        status.message.starts_with(
            "Deployment in version \"v1\" cannot be handled as a Deployment: invalid type: string \"two\""
        ),
        "{}",
        status.message
    );
    let created = deploys
        .patch("web", &PatchParams::apply("sealift"), &Patch::Apply(bad))
        .await
        .expect("warn mode prunes");
    assert_eq!(created.spec.and_then(|s| s.replicas), Some(1));
}
