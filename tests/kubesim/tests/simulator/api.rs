//! Layer 1: discovery, CRUD, selectors, pagination, conflicts, deletion.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_json::json;

use crate::{code_of, start, status_of};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..ConfigMap::default()
    }
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    }))
    .expect("deployment")
}

#[tokio::test]
async fn discovery_reports_v1_33_and_resolves_builtin_kinds() {
    let (_sim, client) = start().await;
    let version = client.apiserver_version().await.expect("version");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "33"));
    assert!(version.git_version.starts_with("v1.33."));

    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    for (group, kind, namespaced) in [
        ("apps", "Deployment", true),
        ("", "Namespace", false),
        ("rbac.authorization.k8s.io", "ClusterRole", false),
        ("coordination.k8s.io", "Lease", true),
        ("networking.k8s.io", "Ingress", true),
        ("apiextensions.k8s.io", "CustomResourceDefinition", false),
    ] {
        let gvk = kube::api::GroupVersionKind::gvk(group, "v1", kind);
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{kind} discovered"));
        assert_eq!(ar.kind, kind);
        assert_eq!(caps.scope == Scope::Namespaced, namespaced, "{kind} scope");
    }
    let plain = Discovery::new(client).run().await.expect("plain discovery");
    assert!(plain.has_group("batch"));
}

#[tokio::test]
async fn crud_with_label_and_field_selectors_and_pagination() {
    let (_sim, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for (name, app, tier) in [
        ("a", "web", "fe"),
        ("b", "api", "be"),
        ("c", "web", "be"),
        ("d", "db", "be"),
    ] {
        let created = cms
            .create(&PostParams::default(), &cm(name, &[("app", app), ("tier", tier)]))
            .await
            .expect("create");
        assert!(created.metadata.uid.is_some());
        assert!(created.metadata.resource_version.is_some());
    }
    let names =
        |l: kube::core::ObjectList<ConfigMap>| l.items.into_iter().filter_map(|c| c.metadata.name).collect::<Vec<_>>();
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app in (web,db),tier!=fe"))
                .await
                .expect("list")
        ),
        ["c", "d"]
    );
    assert_eq!(
        names(cms.list(&ListParams::default().labels("app=web")).await.expect("list")),
        ["a", "c"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .expect("list")
        ),
        ["b"]
    );

    let first = cms.list(&ListParams::default().limit(3)).await.expect("page 1");
    assert_eq!(names(first.clone()).len(), 3);
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(names(second.clone()), ["d"]);
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));

    let err = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .expect_err("duplicate");
    let status = status_of(err);
    assert_eq!((status.code, status.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(status.message, "configmaps \"a\" already exists");

    let mut stale = cms.get("a").await.expect("get");
    let mut fresh = stale.clone();
    fresh.data = Some(BTreeMap::from([("k".to_string(), "new".to_string())]));
    cms.replace("a", &PostParams::default(), &fresh).await.expect("update");
    stale.data = Some(BTreeMap::from([("k".to_string(), "stale".to_string())]));
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .expect_err("stale update");
    let status = status_of(err);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );
    assert_eq!(cms.get("a").await.expect("get").data.expect("data")["k"], "new");

    cms.delete("a", &DeleteParams::default()).await.expect("delete");
    let err = cms.get("a").await.expect_err("gone");
    let status = status_of(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (404, "NotFound", "configmaps \"a\" not found")
    );
}

#[tokio::test]
async fn namespaces_must_exist_and_names_must_be_dns1123() {
    let (_sim, client) = start().await;
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = missing
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .expect_err("no namespace");
    let status = status_of(err);
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let err = cms
        .create(&PostParams::default(), &cm("Bad_Name", &[]))
        .await
        .expect_err("bad name");
    let status = status_of(err);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_only_and_status_is_a_subresource() {
    let (_sim, client) = start().await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let created = deploys
        .create(&PostParams::default(), &deployment("web", "127.0.0.1:1/web:1"))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    // Server defaults.
    let spec = created.spec.expect("spec");
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    assert_eq!(spec.strategy.and_then(|s| s.type_), Some("RollingUpdate".to_string()));

    let labelled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata change keeps generation"
    );

    let status_only = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1, "replicas": 7}, "spec": {"replicas": 9}})),
        )
        .await
        .expect("status");
    assert_eq!(
        status_only.spec.as_ref().and_then(|s| s.replicas),
        Some(2),
        "status writes leave spec alone"
    );
    assert_eq!(status_only.metadata.generation, Some(1));

    let scaled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"replicas": 100}})),
        )
        .await
        .expect("scale");
    assert_eq!(scaled.metadata.generation, Some(2));
    assert_ne!(
        scaled.status.and_then(|s| s.replicas),
        Some(100),
        "spec writes leave status alone"
    );

    let err = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "other"}}, "template": {"metadata": {"labels": {"app": "other"}}}}})))
        .await
        .expect_err("immutable selector");
    let status = status_of(err);
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("spec.selector") && status.message.contains("field is immutable"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn deletion_honours_finalizers_and_propagation_policies() {
    let (_sim, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .expect("owner");
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid, "blockOwnerDeletion": true}]);
    for name in ["dep-bg", "dep-held"] {
        let mut d = cm(name, &[]);
        d.metadata.owner_references = serde_json::from_value(owner_ref.clone()).expect("refs");
        if name == "dep-held" {
            d.metadata.finalizers = Some(vec!["example.com/hold".to_string()]);
        }
        cms.create(&PostParams::default(), &d).await.expect("dependent");
    }

    // Foreground: the owner waits for its dependents.
    let pending = cms.delete("owner", &DeleteParams::foreground()).await.expect("delete");
    let pending = pending.left().expect("owner still present while dependents exist");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        pending
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    assert_eq!(code_of(&cms.get("dep-bg").await.expect_err("dependent deleted")), 404);
    let held = cms.get("dep-held").await.expect("held by its finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.get("owner").await.expect("owner waits");

    cms.patch(
        "dep-held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert_eq!(code_of(&cms.get("dep-held").await.expect_err("gone")), 404);
    assert_eq!(code_of(&cms.get("owner").await.expect_err("owner gone")), 404);

    // Orphan keeps the dependent and drops its owner reference.
    let owner = cms
        .create(&PostParams::default(), &cm("owner2", &[]))
        .await
        .expect("owner2");
    let mut d = cm("orphan", &[]);
    d.metadata.owner_references = serde_json::from_value(
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}]),
    )
    .expect("refs");
    cms.create(&PostParams::default(), &d).await.expect("dependent");
    let gone = cms
        .delete("owner2", &DeleteParams::orphan())
        .await
        .expect("orphan delete");
    assert!(gone.is_right(), "owner deleted at once");
    let orphan = cms.get("orphan").await.expect("orphan kept");
    assert!(orphan.metadata.owner_references.unwrap_or_default().is_empty());

    // Namespace deletion takes its contents.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "scratch"}})).expect("ns"),
        )
        .await
        .expect("ns");
    let scratch: Api<ConfigMap> = Api::namespaced(client, "scratch");
    scratch
        .create(&PostParams::default(), &cm("inside", &[]))
        .await
        .expect("inside");
    namespaces
        .delete("scratch", &DeleteParams::default())
        .await
        .expect("delete ns");
    assert_eq!(code_of(&namespaces.get("scratch").await.expect_err("ns gone")), 404);
    assert_eq!(code_of(&scratch.get("inside").await.expect_err("contents gone")), 404);
}

#[tokio::test]
async fn secret_string_data_is_stored_as_base64_data() {
    let (_sim, client) = start().await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "default");
    let applied = secrets
        .patch(
            "db",
            &PatchParams::apply("sealift"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}})),
        )
        .await
        .expect("apply");
    assert_eq!(applied.type_.as_deref(), Some("Opaque"));
    assert!(applied.string_data.is_none(), "stringData is write-only");
    assert_eq!(applied.data.expect("data")["password"].0, b"hunter2");
}
