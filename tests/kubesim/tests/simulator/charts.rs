//! Rendered charts through kubectl: applying the same render twice changes nothing, a
//! changed version removes what it dropped and keeps server defaults, and images outside
//! the test registry fail as ErrImagePull.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use crate::kubectl::{kubectl_ok, write};
use crate::start;

/// `helm template demo testdata/charts/scaffold --kube-version v1.33.0` (see
/// `tests/fixtures/README.md`); hooks are applied by the agent separately, so they are left out.
fn scaffold_render() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scaffold-render.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading the golden render {path}: {e}"));
    text.split("\n---")
        .filter(|doc| doc.contains("kind:") && !doc.contains("helm.sh/hook"))
        .map(|doc| format!("---{}\n", doc.trim_start_matches("---")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_chart_applies_twice_without_changes_then_upgrades_cleanly() {
    let (sim, client) = start().await;
    let v1 = write(&sim, "v1.yaml", &scaffold_render());
    let first = kubectl_ok(&sim, &["apply", "--server-side", "--field-manager=sealift", "-f", &v1]);
    assert_eq!(
        first.trim(),
        "serviceaccount/demo-scaffold serverside-applied\nservice/demo-scaffold serverside-applied\ndeployment.apps/demo-scaffold serverside-applied"
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let cluster_ip = services
        .get("demo-scaffold")
        .await
        .expect("service")
        .spec
        .expect("spec")
        .cluster_ip
        .expect("clusterIP");

    // Let the controllers settle (the Deployment unchanged over 600 ms), then the same render
    // again must change nothing.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let settled = std::time::Instant::now();
    let mut seen = Vec::new();
    let rv_before = loop {
        let rv = deploys
            .get("demo-scaffold")
            .await
            .expect("deploy")
            .metadata
            .resource_version;
        seen.push(rv.clone());
        if seen.len() >= 3 && seen[seen.len() - 3..].iter().all(|r| *r == rv) {
            break rv;
        }
        assert!(
            settled.elapsed() < std::time::Duration::from_secs(30),
            "the Deployment never settled: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let before = sim.snapshot();
    kubectl_ok(&sim, &["apply", "--server-side", "--field-manager=sealift", "-f", &v1]);
    let changed: Vec<_> = before
        .diff(&sim.snapshot())
        .changed
        .into_iter()
        .filter(|k| k.resource != "pods" && k.resource != "replicasets" && k.resource != "deployments")
        .collect();
    assert!(changed.is_empty(), "re-applying the same render changed {changed:?}");
    assert_eq!(
        deploys
            .get("demo-scaffold")
            .await
            .expect("deploy")
            .metadata
            .resource_version,
        rv_before,
        "no spurious Deployment write"
    );

    // Version 2: new appVersion, one label dropped everywhere, two replicas.
    let v2_text = scaffold_render()
        .replace("1.16.0", "1.17.0")
        .replace("replicas: 1", "replicas: 2")
        .lines()
        .filter(|l| !l.contains("helm.sh/chart"))
        .collect::<Vec<_>>()
        .join("\n");
    let v2 = write(&sim, "v2.yaml", &v2_text);
    let second = kubectl_ok(&sim, &["apply", "--server-side", "--field-manager=sealift", "-f", &v2]);
    assert!(!second.contains("conflict"), "{second}");
    let d = deploys.get("demo-scaffold").await.expect("deploy");
    let labels = d.metadata.labels.clone().unwrap_or_default();
    assert!(
        !labels.contains_key("helm.sh/chart"),
        "dropped label removed: {labels:?}"
    );
    assert_eq!(
        labels.get("app.kubernetes.io/version").map(String::as_str),
        Some("1.17.0")
    );
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.progress_deadline_seconds, Some(600), "server default kept");
    assert!(
        !spec
            .template
            .metadata
            .expect("template meta")
            .labels
            .unwrap_or_default()
            .contains_key("helm.sh/chart")
    );
    let svc = services.get("demo-scaffold").await.expect("service");
    assert_eq!(
        svc.spec.expect("spec").cluster_ip.as_deref(),
        Some(cluster_ip.as_str()),
        "clusterIP kept"
    );
    assert!(!svc.metadata.labels.unwrap_or_default().contains_key("helm.sh/chart"));

    // nginx lives on docker.io, which the simulator never contacts.
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
            .await
            .expect("pods");
        let messages: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| {
                p.status
                    .clone()?
                    .container_statuses?
                    .first()?
                    .state
                    .clone()?
                    .waiting?
                    .message
            })
            .collect();
        if !messages.is_empty()
            && messages
                .iter()
                .all(|m| m == "registry not configured in simulator: docker.io")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods did not fail with ErrImagePull: {messages:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
