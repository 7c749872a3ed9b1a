//! The sample application's rendered releases through kubectl server-side apply, as the
//! agent applies them: CRDs first, the pre-install/pre-upgrade hook Job, then everything
//! else; the same render twice changes nothing; 2.0.0 changes exactly what it changed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kubesim::{RegistryConfig, SimConfig, Simulator};

use crate::kubectl::{kubectl_ok, write};
use crate::registry::{push, start_registry};
use crate::start_with;

struct Render {
    crds: String,
    hook: String,
    main: String,
}

fn render(version: &str, registry: &str) -> Render {
    let path = format!(
        "{}/tests/fixtures/sample-app-{version}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let text = text.replace("127.0.0.1:5000", registry);
    let mut r = Render {
        crds: String::new(),
        hook: String::new(),
        main: String::new(),
    };
    for doc in text.split("\n---\n").map(|d| d.trim_start_matches("---\n")) {
        if !doc.contains("kind:") {
            continue;
        }
        let target = if doc.contains("kind: CustomResourceDefinition") {
            &mut r.crds
        } else if doc.contains("\"helm.sh/hook\": pre-install") {
            &mut r.hook
        } else if doc.contains("helm.sh/hook") {
            continue;
        } else {
            &mut r.main
        };
        target.push_str("---\n");
        target.push_str(doc);
        target.push('\n');
    }
    r
}

fn install(sim: &Simulator, version: &str, r: &Render) -> String {
    let crds = write(sim, &format!("crds-{version}.yaml"), &r.crds);
    kubectl_ok(sim, &["apply", "--server-side", "--field-manager=sealift", "-f", &crds]);
    kubectl_ok(
        sim,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.sample.sealift.dev",
            "--timeout=20s",
        ],
    );
    let hook = write(sim, &format!("hook-{version}.yaml"), &r.hook);
    kubectl_ok(sim, &["delete", "job", "sample-app-migrate", "--ignore-not-found"]);
    kubectl_ok(sim, &["apply", "--server-side", "--field-manager=sealift", "-f", &hook]);
    kubectl_ok(
        sim,
        &[
            "wait",
            "--for=condition=Complete",
            "job/sample-app-migrate",
            "--timeout=30s",
        ],
    );
    let main = write(sim, &format!("main-{version}.yaml"), &r.main);
    let applied = kubectl_ok(sim, &["apply", "--server-side", "--field-manager=sealift", "-f", &main]);
    kubectl_ok(
        sim,
        &[
            "wait",
            "--for=condition=Available",
            "deployment",
            "--all",
            "--timeout=30s",
        ],
    );
    kubectl_ok(
        sim,
        &["rollout", "status", "statefulset/sample-app-db", "--timeout=30s"],
    );
    applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_app_installs_reapplies_without_changes_and_upgrades() {
    let registry = start_registry();
    for version in ["1.0.0", "2.0.0"] {
        for component in ["api", "web", "db"] {
            push(&registry, &tests::sample::sample_image(component, version));
        }
    }
    let (sim, client) = start_with(SimConfig {
        registry: Some(RegistryConfig::plain(&registry.addr())),
        ..SimConfig::default()
    })
    .await;
    let v1 = render("1.0.0", &registry.addr());
    let applied = install(&sim, "1.0.0", &v1);
    assert_eq!(applied.lines().count(), 11, "{applied}");
    assert!(applied.lines().all(|l| l.ends_with(" serverside-applied")), "{applied}");

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let ips = |list: Vec<Service>| -> BTreeMap<String, String> {
        list.into_iter()
            .map(|s| {
                (
                    s.metadata.name.unwrap_or_default(),
                    s.spec.and_then(|s| s.cluster_ip).unwrap_or_default(),
                )
            })
            .collect()
    };
    let ips_before = ips(services.list(&Default::default()).await.expect("services").items);

    // The same render again: no write anywhere (controllers have settled).
    let before = sim.snapshot();
    let main = write(&sim, "main-again.yaml", &v1.main);
    kubectl_ok(
        &sim,
        &["apply", "--server-side", "--field-manager=sealift", "-f", &main],
    );
    let diff = before.diff(&sim.snapshot());
    let changed: Vec<_> = diff
        .changed
        .iter()
        .chain(&diff.added)
        .chain(&diff.removed)
        .filter(|k| k.resource != "events")
        .collect();
    assert!(changed.is_empty(), "re-applying 1.0.0 changed {changed:?}");

    let v2 = render("2.0.0", &registry.addr());
    install(&sim, "2.0.0", &v2);
    let config: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let data = config
        .get("sample-app-config")
        .await
        .expect("config")
        .data
        .expect("data");
    assert_eq!(data.get("SEARCH_ENABLED").map(String::as_str), Some("true"));
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let api = deploys.get("sample-app-api").await.expect("api");
    let container = api.spec.expect("spec").template.spec.expect("pod").containers[0].clone();
    assert!(
        container
            .image
            .unwrap_or_default()
            .ends_with("/sealift-sample/api:2.0.0")
    );
    assert!(
        container
            .env
            .unwrap_or_default()
            .iter()
            .any(|e| e.name == "CACHE_TTL_SECONDS")
    );
    let labels = api.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/version").map(String::as_str),
        Some("2.0.0")
    );
    assert_eq!(
        ips(services.list(&Default::default()).await.expect("services").items),
        ips_before,
        "clusterIPs kept across the upgrade"
    );

    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("sample.sealift.dev", "v1alpha1", "Widget"),
            "widgets",
        ),
    );
    let widget = widgets.get("sample-app-widget").await.expect("widget");
    assert_eq!(widget.data["spec"]["size"], 5);
    assert_eq!(widget.data["spec"]["color"], "blue");

    // Object pruning is the agent's job: server-side apply leaves the dropped object alone.
    config
        .get("sample-app-legacy")
        .await
        .expect("1.x-only ConfigMap still present until the agent prunes it");
}
