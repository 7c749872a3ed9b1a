//! Layer 5: simulated controllers with real image pulls from a loopback registry, failure
//! injection, Jobs that run local commands, access reviews and snapshots.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kubesim::{AccessRule, RegistryConfig, SimConfig};
use serde_json::{Value, json};

use crate::registry::{Registry, RegistryAuth, RegistryOptions, push_image, start_registry, start_registry_with};
use crate::start_with;

fn config(registry: &Registry) -> SimConfig {
    SimConfig {
        registry: Some(RegistryConfig::plain(&registry.addr())),
        ..SimConfig::default()
    }
}

fn deployment(name: &str, image: &str, annotations: Value, progress_deadline: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    })
}

fn condition(d: &Deployment, kind: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn wait_for<K, F>(api: Api<K>, name: &str, what: &str, cond: F) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(&K) -> bool,
{
    let found = tokio::time::timeout(
        Duration::from_secs(20),
        await_condition(api.clone(), name, move |o: Option<&K>| o.is_some_and(&cond)),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {name} to be {what}"))
    .expect("watch");
    found.unwrap_or_else(|| panic!("{name} disappeared while waiting for {what}"))
}

fn available_and_observed(d: &Deployment) -> bool {
    d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
        && condition(d, "Available").is_some_and(|(s, _)| s == "True")
        && condition(d, "Progressing").is_some_and(|(_, r)| r == "NewReplicaSetAvailable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_become_available_and_roll_out_new_templates() {
    let registry = start_registry();
    let v1 = push_image(&registry, "acme/web", "1");
    let v2 = push_image(&registry, "acme/web", "2");
    let (_sim, client) = start_with(config(&registry)).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("sealift");
    deploys
        .patch("web", &pp, &Patch::Apply(deployment("web", &v1, json!({}), 600)))
        .await
        .expect("apply");
    let d = wait_for(deploys.clone(), "web", "available", available_and_observed).await;
    let status = d.status.expect("status");
    assert_eq!(
        (status.replicas, status.ready_replicas, status.updated_replicas),
        (Some(2), Some(2), Some(2))
    );
    let listed = pods.list(&ListParams::default().labels("app=web")).await.expect("pods");
    assert_eq!(listed.items.len(), 2);
    for p in &listed.items {
        let s = p.status.clone().expect("pod status");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(
            s.conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
    }

    deploys
        .patch("web", &pp, &Patch::Apply(deployment("web", &v2, json!({}), 600)))
        .await
        .expect("roll out v2");
    let d = wait_for(deploys.clone(), "web", "rolled out", |d: &Deployment| {
        d.metadata.generation == Some(2)
            && available_and_observed(d)
            && d.status.as_ref().and_then(|s| s.replicas) == Some(2)
    })
    .await;
    assert_eq!(d.status.and_then(|s| s.updated_replicas), Some(2));
    let images: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.spec.expect("spec").containers[0].image.clone().unwrap_or_default())
        .collect();
    assert_eq!(images, [v2.clone(), v2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_foreign_images_fail_with_err_image_pull_and_the_deadline_passes() {
    let registry = start_registry();
    let (_sim, client) = start_with(config(&registry)).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("sealift");
    let missing = format!("{}/acme/absent:9", registry.addr());
    deploys
        .patch(
            "missing",
            &pp,
            &Patch::Apply(deployment("missing", &missing, json!({}), 2)),
        )
        .await
        .expect("apply");
    deploys
        .patch(
            "foreign",
            &pp,
            &Patch::Apply(deployment("foreign", "registry.example.com/acme/web:1", json!({}), 600)),
        )
        .await
        .expect("apply");

    let d = wait_for(deploys.clone(), "missing", "past its deadline", |d: &Deployment| {
        condition(d, "Progressing").is_some_and(|(_, r)| r == "ProgressDeadlineExceeded")
    })
    .await;
    assert_eq!(condition(&d, "Available").map(|(s, _)| s), Some("False".to_string()));

    for (app, expected) in [
        ("missing", "failed to pull image"),
        ("foreign", "registry not configured in simulator: registry.example.com"),
    ] {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .expect("pods");
        assert_eq!(list.items.len(), 2);
        for p in list.items {
            let status = p.status.expect("status");
            assert_eq!(status.phase.as_deref(), Some("Pending"));
            let waiting = status.container_statuses.expect("container statuses")[0]
                .state
                .clone()
                .expect("state")
                .waiting
                .expect("waiting");
            assert!(
                matches!(waiting.reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff")),
                "{waiting:?}"
            );
            assert!(
                waiting.message.clone().unwrap_or_default().contains(expected),
                "{app}: {waiting:?}"
            );
            let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(pods.clone().into_client(), "default");
            let pod_name = p.metadata.name.clone().expect("name");
            let list = events
                .list(&ListParams::default().fields(&format!("involvedObject.name={pod_name}")))
                .await
                .expect("events");
            assert!(
                list.items.iter().any(|e| e.reason.as_deref() == Some("Failed")
                    && e.message.as_deref().is_some_and(|m| m.contains(expected))),
                "pull failure event for {pod_name}: {:?}",
                list.items
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_injection_annotations_shape_pod_status() {
    let registry = start_registry();
    let image = push_image(&registry, "acme/web", "1");
    let (_sim, client) = start_with(config(&registry)).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("sealift");
    deploys
        .patch(
            "crash",
            &pp,
            &Patch::Apply(deployment(
                "crash",
                &image,
                json!({"sim.sealift.dev/crash-loop": "panic: database unreachable"}),
                600,
            )),
        )
        .await
        .expect("apply");
    deploys
        .patch(
            "stuck",
            &pp,
            &Patch::Apply(deployment(
                "stuck",
                &image,
                json!({"sim.sealift.dev/never-ready": "true"}),
                600,
            )),
        )
        .await
        .expect("apply");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let crash = pods
            .list(&ListParams::default().labels("app=crash"))
            .await
            .expect("pods")
            .items;
        let restarted = crash.len() == 2
            && crash.iter().all(|p| {
                let cs = p.status.clone().and_then(|s| s.container_statuses).unwrap_or_default();
                cs.first().is_some_and(|c| {
                    c.restart_count >= 1
                        && c.state
                            .clone()
                            .and_then(|s| s.waiting)
                            .and_then(|w| w.reason)
                            .as_deref()
                            == Some("CrashLoopBackOff")
                })
            });
        if restarted {
            let name = crash[0].metadata.name.clone().expect("name");
            let log = pods.logs(&name, &LogParams::default()).await.expect("log");
            assert_eq!(log, "panic: database unreachable\n");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "crash loop not visible: {crash:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stuck = pods
        .list(&ListParams::default().labels("app=stuck"))
        .await
        .expect("pods")
        .items;
    for p in stuck {
        let s = p.status.expect("status");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(
            s.conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        );
    }
    let d = deploys.get("stuck").await.expect("deploy");
    assert_eq!(condition(&d, "Available").map(|(s, _)| s), Some("False".to_string()));
}

fn job(name: &str, image: &str, annotations: Value, env: Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"annotations": annotations},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "step", "image": image, "env": env}]}}}
    })
}

fn job_condition(j: &Job) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.clone())
}

async fn job_log(client: &kube::Client, job_name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
        .await
        .expect("pods");
    let name = list.items[0].metadata.name.clone().expect("pod name");
    pods.logs(&name, &LogParams::default()).await.expect("log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_fail_with_injected_exit_codes_and_run_local_commands() {
    let registry = start_registry();
    let image = push_image(&registry, "acme/migrate", "1");
    let (_sim, client) = start_with(config(&registry)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::apply("sealift");
    jobs.patch("ok", &pp, &Patch::Apply(job("ok", &image, json!({}), json!([]))))
        .await
        .expect("apply");
    jobs.patch(
        "boom",
        &pp,
        &Patch::Apply(job(
            "boom",
            &image,
            json!({"sim.sealift.dev/job-fail": "3: migration 0042 failed: column exists"}),
            json!([]),
        )),
    )
    .await
    .expect("apply");
    jobs.patch(
        "exec",
        &pp,
        &Patch::Apply(job(
            "exec",
            &image,
            json!({"sim.sealift.dev/exec": "echo \"copied $ROWS rows\""}),
            json!([{"name": "ROWS", "value": "42"}]),
        )),
    )
    .await
    .expect("apply");
    jobs.patch(
        "exec-fail",
        &pp,
        &Patch::Apply(job(
            "exec-fail",
            &image,
            json!({"sim.sealift.dev/exec": "echo disk full >&2; exit 4"}),
            json!([]),
        )),
    )
    .await
    .expect("apply");

    let done = |j: &Job| job_condition(j).is_some();
    let ok = wait_for(jobs.clone(), "ok", "finished", done).await;
    assert_eq!(job_condition(&ok).as_deref(), Some("Complete"));
    assert_eq!(ok.status.expect("status").succeeded, Some(1));

    let boom = wait_for(jobs.clone(), "boom", "finished", done).await;
    assert_eq!(job_condition(&boom).as_deref(), Some("Failed"));
    assert_eq!(boom.status.expect("status").failed, Some(1));
    assert_eq!(job_log(&client, "boom").await, "migration 0042 failed: column exists\n");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let failed_pod = pods
        .list(&ListParams::default().labels("job-name=boom"))
        .await
        .expect("pods")
        .items
        .remove(0);
    let terminated = failed_pod.status.expect("status").container_statuses.expect("cs")[0]
        .state
        .clone()
        .expect("state")
        .terminated
        .expect("terminated");
    assert_eq!(terminated.exit_code, 3);

    let exec = wait_for(jobs.clone(), "exec", "finished", done).await;
    assert_eq!(job_condition(&exec).as_deref(), Some("Complete"));
    assert_eq!(job_log(&client, "exec").await, "copied 42 rows\n");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let boom_events = events
        .list(&ListParams::default().fields("involvedObject.name=boom"))
        .await
        .expect("events");
    assert!(
        boom_events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("BackoffLimitExceeded") && e.type_.as_deref() == Some("Warning")),
        "{:?}",
        boom_events.items
    );
    let failed = wait_for(jobs.clone(), "exec-fail", "finished", done).await;
    assert_eq!(job_condition(&failed).as_deref(), Some("Failed"));
    assert_eq!(job_log(&client, "exec-fail").await, "disk full\n");

    let err = jobs
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "step", "image": "other"}]}}}}),
            ),
        )
        .await
        .expect_err("job template is immutable");
    assert_eq!(crate::code_of(&err), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_start_ordinals_in_order_with_bound_claims() {
    let registry = start_registry();
    let image = push_image(&registry, "acme/db", "1");
    let (_sim, client) = start_with(config(&registry)).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": image}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
    });
    sets.patch("db", &PatchParams::apply("sealift"), &Patch::Apply(sts))
        .await
        .expect("apply");
    let s = wait_for(sets.clone(), "db", "ready", |s: &StatefulSet| {
        s.status
            .as_ref()
            .is_some_and(|st| st.ready_replicas == Some(2) && st.current_revision == st.update_revision)
    })
    .await;
    assert_eq!(s.status.and_then(|st| st.observed_generation), Some(1));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for i in 0..2 {
        let pvc = claims.get(&format!("data-db-{i}")).await.expect("claim");
        assert_eq!(pvc.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.get("db-0").await.expect("db-0");
    pods.get("db-1").await.expect("db-1");

    let daemons: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client, "default");
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": image}]}}}
    });
    daemons
        .patch("agent", &PatchParams::apply("sealift"), &Patch::Apply(ds))
        .await
        .expect("apply");
    let d = wait_for(
        daemons,
        "agent",
        "ready on the one node",
        |d: &k8s_openapi::api::apps::v1::DaemonSet| {
            d.status.as_ref().is_some_and(|s| {
                s.number_ready == 1 && s.desired_number_scheduled == 1 && s.updated_number_scheduled == Some(1)
            })
        },
    )
    .await;
    assert_eq!(d.status.and_then(|s| s.observed_generation), Some(1));
}

#[tokio::test]
async fn access_reviews_answer_from_the_configured_rules() {
    let rules = vec![AccessRule {
        verbs: vec!["get".into(), "list".into(), "patch".into()],
        groups: vec!["apps".into()],
        resources: vec!["deployments".into()],
        namespaces: vec!["default".into()],
    }];
    let (sim, client) = start_with(SimConfig {
        access_rules: rules,
        ..SimConfig::default()
    })
    .await;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let ask = |verb: &str, resource: &str| -> SelfSubjectAccessReview {
        serde_json::from_value(json!({"spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "group": if resource == "deployments" { "apps" } else { "" }, "resource": resource}}})).expect("review")
    };
    let allowed = reviews
        .create(&PostParams::default(), &ask("patch", "deployments"))
        .await
        .expect("review");
    assert!(allowed.status.expect("status").allowed);
    let denied = reviews
        .create(&PostParams::default(), &ask("delete", "deployments"))
        .await
        .expect("review");
    assert!(!denied.status.expect("status").allowed);
    let denied = reviews
        .create(&PostParams::default(), &ask("get", "secrets"))
        .await
        .expect("review");
    assert!(!denied.status.expect("status").allowed);

    let rules_reviews: Api<SelfSubjectRulesReview> = Api::all(client.clone());
    let r = rules_reviews
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"spec": {"namespace": "default"}})).expect("rr"),
        )
        .await
        .expect("rules");
    let status = r.status.expect("status");
    assert_eq!(status.resource_rules.len(), 1);
    assert_eq!(
        status.resource_rules[0].resources.clone().unwrap_or_default(),
        ["deployments"]
    );

    sim.set_access_rules(vec![AccessRule::allow_all()]);
    let now_allowed = reviews
        .create(&PostParams::default(), &ask("delete", "deployments"))
        .await
        .expect("review");
    assert!(now_allowed.status.expect("status").allowed);
}

#[tokio::test]
async fn snapshot_diff_reports_exactly_what_changed() {
    let (sim, client) = start_with(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "keep"}})).expect("cm"),
    )
    .await
    .expect("create");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "change"}})).expect("cm"),
    )
    .await
    .expect("create");
    let before = sim.snapshot();
    assert!(before.diff(&sim.snapshot()).is_empty(), "nothing changed");
    // A no-op apply and a dry run change nothing.
    cms.patch(
        "keep",
        &PatchParams::apply("x").dry_run(),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"a": "b"}}),
        ),
    )
    .await
    .expect("dry run");
    assert!(before.diff(&sim.snapshot()).is_empty(), "dry run changed nothing");
    cms.patch(
        "change",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .expect("patch");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "new"}})).expect("cm"),
    )
    .await
    .expect("create");
    let diff = before.diff(&sim.snapshot());
    assert_eq!(
        diff.to_string(),
        "+ configmaps/default/new\n~ configmaps/default/change\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_use_the_registry_ca_and_credentials() {
    let registry = start_registry_with(RegistryOptions {
        auth: RegistryAuth::Htpasswd {
            user: "sealift".into(),
            password: "s3cret".into(),
        },
        tls: true,
    });
    let image = push_image(&registry, "acme/web", "1");
    let ca = registry.ca_pem_path().expect("a TLS registry has a CA");
    let secure = RegistryConfig::plain(&registry.addr()).with_tls(&ca);

    let (_sim, client) = start_with(SimConfig {
        registry: Some(secure.clone().with_basic_auth("sealift", "s3cret")),
        ..SimConfig::default()
    })
    .await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    deploys
        .patch(
            "web",
            &PatchParams::apply("sealift"),
            &Patch::Apply(deployment("web", &image, json!({}), 600)),
        )
        .await
        .expect("apply");
    wait_for(deploys, "web", "available over TLS with auth", available_and_observed).await;

    let unauthenticated = kubesim::images::pull(Some(&secure), &image)
        .await
        .expect_err("no credentials");
    assert!(
        unauthenticated.to_string().contains("401 Unauthorized"),
        "{unauthenticated}"
    );
    let wrong_ca = kubesim::images::pull(
        Some(
            &RegistryConfig::plain(&registry.addr())
                .with_tls(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"))
                .with_basic_auth("sealift", "s3cret"),
        ),
        &image,
    )
    .await
    .expect_err("unknown CA");
    assert!(wrong_ca.to_string().contains("TLS handshake"), "{wrong_ca}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_follow_the_configured_time_scale() {
    let registry = start_registry();
    let image = push_image(&registry, "acme/migrate", "1");
    let (_sim, client) = start_with(SimConfig {
        time_scale: 0.005,
        ..config(&registry)
    })
    .await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let missing = format!("{}/acme/absent:1", registry.addr());
    // 600 simulated seconds pass in 3 real ones.
    deploys
        .patch(
            "late",
            &PatchParams::apply("sealift"),
            &Patch::Apply(deployment("late", &missing, json!({}), 600)),
        )
        .await
        .expect("apply");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut slow = job("slow", &image, json!({"sim.sealift.dev/exec": "sleep 30"}), json!([]));
    slow["spec"]["activeDeadlineSeconds"] = json!(200);
    jobs.patch("slow", &PatchParams::apply("sealift"), &Patch::Apply(slow))
        .await
        .expect("apply");

    let j = wait_for(jobs, "slow", "past its active deadline", |j: &Job| {
        job_condition(j).is_some()
    })
    .await;
    let failed = j
        .status
        .expect("status")
        .conditions
        .expect("conditions")
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    let d = wait_for(deploys, "late", "past its progress deadline", |d: &Deployment| {
        condition(d, "Progressing").is_some_and(|(_, r)| r == "ProgressDeadlineExceeded")
    })
    .await;
    assert_eq!(condition(&d, "Progressing").map(|(s, _)| s), Some("False".to_string()));
}
