//! Layer 2: custom resources served from Established CRDs; watch, bookmarks and 410 Gone.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::discovery::Discovery;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::{code_of, start, status_of};

pub fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}
                ],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]},
                        "parts": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}}
                    }},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}}
            }]
        }
    })
}

#[tokio::test]
async fn custom_resources_are_served_while_their_crd_is_established() {
    let (_sim, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(widget_crd()).expect("crd"),
    )
    .await
    .expect("create crd");
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(crds.clone(), "widgets.example.com", conditions::is_crd_established()),
    )
    .await
    .expect("established in time")
    .expect("condition");

    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    let (ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("Widget discovered");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "spec": {"size": 3, "parts": [{"name": "a", "count": 1}]}});
    let applied = widgets
        .patch("w1", &PatchParams::apply("sealift"), &Patch::Apply(w.clone()))
        .await
        .expect("apply CR");
    assert_eq!(applied.data["spec"]["size"], 3);
    assert_eq!(applied.data["spec"]["color"], "blue", "schema default applied");

    let mut mistyped = w.clone();
    mistyped["metadata"]["name"] = json!("w2");
    mistyped["spec"]["size"] = json!("three");
    mistyped["spec"]["color"] = json!("green");
    let err = widgets
        .patch("w2", &PatchParams::apply("sealift"), &Patch::Apply(mistyped))
        .await
        .expect_err("mistyped");
    let status = status_of(err);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.starts_with("Widget.example.com \"w2\" is invalid: [spec.size: Invalid value: \"string\": spec.size in body must be of type integer"),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("spec.color: Unsupported value: \"green\""),
        "{}",
        status.message
    );
    let mut too_small = w.clone();
    too_small["metadata"]["name"] = json!("w3");
    too_small["spec"]["size"] = json!(0);
    let err = widgets
        .patch("w3", &PatchParams::apply("sealift"), &Patch::Apply(too_small))
        .await
        .expect_err("below minimum");
    let status = status_of(err);
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .ends_with("spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"),
        "{}",
        status.message
    );
    let mf = applied.metadata.managed_fields.clone().expect("managed fields");
    assert_eq!(
        mf[0].fields_v1.clone().expect("v1").0["f:spec"]["f:parts"]["k:{\"name\":\"a\"}"]["f:count"],
        json!({})
    );

    // A controller applies status through the status subresource.
    let status = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let with_status = widgets
        .patch_status("w1", &PatchParams::apply("widget-controller"), &Patch::Apply(status))
        .await
        .expect("status apply");
    assert_eq!(with_status.data["status"]["conditions"][0]["status"], "True");
    assert_eq!(with_status.data["spec"]["size"], 3);
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    let entry = with_status
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("widget-controller"))
        .expect("status manager");
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    let reapplied = widgets
        .patch("w1", &PatchParams::apply("sealift"), &Patch::Apply(w.clone()))
        .await
        .expect("re-apply spec");
    assert_eq!(
        reapplied.data["status"]["conditions"][0]["type"], "Ready",
        "spec applies keep status"
    );

    let mut typo = w.clone();
    typo["spec"]["colour"] = json!("red");
    let err = widgets
        .patch(
            "w1",
            &PatchParams::apply("sealift").validation_strict(),
            &Patch::Apply(typo.clone()),
        )
        .await
        .expect_err("strict");
    let status = status_of(err);
    assert_eq!(status.code, 400);
    assert!(
        status.message.contains("unknown field \"spec.colour\""),
        "{}",
        status.message
    );
    let pruned = widgets
        .patch("w1", &PatchParams::apply("sealift"), &Patch::Apply(typo))
        .await
        .expect("pruned");
    assert!(pruned.data["spec"].get("colour").is_none());

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete crd");
    let err = widgets.get("w1").await.expect_err("CR endpoint gone");
    assert_eq!(code_of(&err), 404);
    let discovery = Discovery::new(client).run_aggregated().await.expect("discovery");
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
            .is_none()
    );
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    assert_eq!(ar.plural, "widgets");
}

#[tokio::test]
async fn watcher_sees_changes_in_order() {
    let (_sim, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stream = watcher(cms.clone(), watcher::Config::default().labels("app=w")).applied_objects();
    let mut stream = Box::pin(stream);
    let writer = cms.clone();
    let writes = async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": "one", "labels": {"app": "w"}}, "data": {"v": "1"}}),
                )
                .expect("cm"),
            )
            .await
            .expect("create");
        writer
            .patch(
                "one",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "2"}})),
            )
            .await
            .expect("patch");
    };
    let seen = async {
        let mut values = Vec::new();
        while values.len() < 2 {
            let cm = stream.try_next().await.expect("watch event").expect("stream open");
            values.push(cm.data.unwrap_or_default()["v"].clone());
        }
        values
    };
    let (_, values) = tokio::time::timeout(Duration::from_secs(10), futures_util::future::join(writes, seen))
        .await
        .expect("events in time");
    assert_eq!(values, ["1", "2"]);
}

#[tokio::test]
async fn watch_sends_bookmarks_and_410_for_a_compacted_resource_version() {
    let (sim, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm"),
        )
        .await
        .expect("create");
    let rv = created.metadata.resource_version.expect("rv");

    let mut events = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let bookmark = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.try_next().await.expect("event") {
                Some(WatchEvent::Bookmark(b)) => return b,
                Some(_) => continue,
                None => panic!("watch ended without a bookmark"),
            }
        }
    })
    .await
    .expect("bookmark in time");
    assert!(bookmark.metadata.resource_version.parse::<u64>().expect("numeric rv") >= rv.parse::<u64>().expect("rv"));

    cms.patch("x", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}})))
        .await
        .expect("patch");
    sim.compact();
    let mut events = cms.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    match events.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert!(e.message.starts_with("too old resource version"), "{}", e.message);
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let (_sim, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "m", "labels": {"tier": "a"}}})).expect("cm"),
        )
        .await
        .expect("create");
    let rv = created.metadata.resource_version.expect("rv");
    let mut events = cms
        .watch(&WatchParams::default().labels("tier=b").timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    cms.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "b"}}})),
    )
    .await
    .expect("enter");
    cms.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "c"}}})),
    )
    .await
    .expect("leave");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("event in time")
            .expect("event")
        {
            Some(WatchEvent::Added(o)) => seen.push(("ADDED", o.metadata.labels.unwrap_or_default()["tier"].clone())),
            Some(WatchEvent::Deleted(o)) => {
                seen.push(("DELETED", o.metadata.labels.unwrap_or_default()["tier"].clone()))
            }
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [("ADDED", "b".to_string()), ("DELETED", "c".to_string())]);
}
