//! `deploy/`: the manifests for a real cluster. The real `kubectl` 1.33 applies the whole
//! directory to the Kubernetes API simulator with `apply --server-side`; every object is
//! then read back. The RBAC in it must equal what `sealift-bundler rbac` computes for the
//! sample app plus the agent's own fixed set, bound to the agent's ServiceAccount; the CRD
//! must be what `sealift-agent crd` prints; the agent.yaml in the ConfigMap must parse and
//! point only into volumes the Deployment mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::Value;

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const AGENT_NS: &str = "sealift-system";
const APP_NS: &str = "sample";
const SA: &str = "sealift-agent";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every document of every `*.yaml` in `deploy/`, in the order `kubectl apply -f` takes them
/// (file names sorted, documents in file order).
fn deploy_documents() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    docs
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/ has no {kind} {name}"))
}

fn kubectl(sim: &kubesim::Simulator, args: &[&str]) -> String {
    assert!(
        Path::new(KUBECTL).exists(),
        "kubectl 1.33 is required at {KUBECTL} (it ships beside the kubectl version dispatcher of the machine image)"
    );
    let out = Command::new(KUBECTL)
        .args(args)
        .arg(format!("--kubeconfig={}", sim.kubeconfig_path().display()))
        .arg(format!("--cache-dir={}", sim.work_dir().join("kube-cache").display()))
        .env("HOME", sim.work_dir())
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deploy_crd_is_what_sealift_agent_crd_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let path = deploy_dir().join("crd.yaml");
    if std::env::var_os("SEALIFT_BLESS").is_some() {
        std::fs::write(&path, &printed).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == printed,
        "deploy/crd.yaml differs from `sealift-agent crd`; regenerate it with\n  \
         SEALIFT_BLESS=1 cargo nextest run -p agent --test it deploy_crd"
    );
    let crd: Value = serde_saphyr::from_str(&printed).unwrap();
    assert_eq!(crd["metadata"]["name"], "sealiftreleases.sealift.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_deploy_to_the_simulator_and_every_object_is_there() {
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default()).await.unwrap();
    let docs = deploy_documents();
    let dir = deploy_dir();
    let dir = dir.to_str().unwrap();

    let applied = kubectl(&sim, &["apply", "--server-side", "-f", dir]);
    let lines: Vec<&str> = applied.lines().collect();
    assert_eq!(lines.len(), docs.len(), "one line per object:\n{applied}");
    for (line, doc) in lines.iter().zip(&docs) {
        let name = str_at(doc, "/metadata/name");
        assert!(
            line.ends_with(&format!("/{name} serverside-applied")),
            "{line} (expected {} {name})",
            doc["kind"]
        );
    }
    // Applying again changes nothing and conflicts with nothing.
    assert_eq!(kubectl(&sim, &["apply", "--server-side", "-f", dir]), applied);

    let client = sim.kube_client().unwrap();
    for doc in &docs {
        let api_version = str_at(doc, "/apiVersion");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, str_at(doc, "/kind"));
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        let namespace = str_at(doc, "/metadata/namespace");
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            assert!(
                !namespace.is_empty(),
                "{gvk:?} {} has no namespace",
                doc["metadata"]["name"]
            );
            Api::namespaced_with(client.clone(), namespace, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        let name = str_at(doc, "/metadata/name");
        let live = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{api_version} {} {name}: {e}", doc["kind"]));
        let live = serde_json::to_value(live).unwrap();
        for (key, value) in doc["metadata"]["labels"].as_object().into_iter().flatten() {
            assert_eq!(&live["metadata"]["labels"][key], value, "{name}: label {key}");
        }
    }

    // What the Deployment promises, as the cluster holds it.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), AGENT_NS);
    let d = serde_json::to_value(deployments.get("sealift-agent").await.unwrap()).unwrap();
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], SA);
    let container = &pod["containers"][0];
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(
        volumes["store"]["persistentVolumeClaim"]["claimName"],
        "sealift-agent-store"
    );
    assert_eq!(volumes["config"]["configMap"]["name"], "sealift-agent-config");
    assert_eq!(volumes["tokens"]["secret"]["secretName"], "sealift-agent-tokens");

    // The Service reaches the Deployment's pods.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), AGENT_NS);
    let s = serde_json::to_value(services.get("sealift-agent").await.unwrap()).unwrap();
    assert_eq!(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], "https");

    // kubectl sees the CRD as a served kind.
    let resources = kubectl(&sim, &["api-resources", "--api-group=sealift.dev", "-o", "name"]);
    assert_eq!(resources.trim(), "sealiftreleases.sealift.dev");
}

#[test]
fn the_config_map_is_a_valid_agent_yaml_reading_only_mounted_paths() {
    let docs = deploy_documents();
    let cm = find(&docs, "ConfigMap", "sealift-agent-config");
    let text = str_at(cm, "/data/agent.yaml");
    let cfg: agent::config::AgentConfig = serde_saphyr::from_str(text).unwrap();
    let k = cfg.kubernetes.as_ref().expect("a kubernetes section");
    assert_eq!(k.namespace, AGENT_NS);
    assert!(k.kubeconfig.is_none(), "in-cluster configuration");
    let agent::config::TlsConfig::SelfSigned(tls) = cfg.tls.as_ref().expect("tls") else {
        panic!("deploy/ uses tls.selfSigned");
    };
    assert_eq!(tls.secret, "sealift-agent-tls");
    assert!(cfg.registry.pull_host.is_some(), "registry.pullHost is set");
    assert!(!cfg.listen.ip().is_loopback());

    let deployment = find(&docs, "Deployment", "sealift-agent");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    let mounted = |p: &Path| mounts.iter().any(|m| p.starts_with(m));
    let config_arg = container["args"].as_array().unwrap().last().unwrap().as_str().unwrap();
    let mut paths = vec![PathBuf::from(config_arg), cfg.store.dir.clone(), cfg.trust.root.clone()];
    paths.extend(
        cfg.tokens
            .admin
            .iter()
            .chain(&cfg.tokens.viewer)
            .map(|t| t.token_file.clone()),
    );
    for p in paths {
        assert!(
            mounted(&p),
            "{} is in no volume the Deployment mounts ({mounts:?})",
            p.display()
        );
    }

    // The token Secret's keys are the files the config reads.
    let tokens = find(&docs, "Secret", "sealift-agent-tokens");
    for t in cfg.tokens.admin.iter().chain(&cfg.tokens.viewer) {
        let key = t.token_file.file_name().unwrap().to_str().unwrap();
        assert!(
            tokens["stringData"][key].is_string(),
            "sealift-agent-tokens has no {key}"
        );
    }
}

/// `(apiGroup, resource, resourceName, verb)`: one permission.
type Grant = (String, String, String, String);
/// `(kind, namespace, name)` of a Role or ClusterRole → its permissions.
type RoleSet = BTreeMap<(String, String, String), BTreeSet<Grant>>;

fn grants(rules: &Value) -> BTreeSet<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        let mut names = strings(&rule["resourceNames"]);
        if names.is_empty() {
            names.push(String::new());
        }
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for n in &names {
                    for v in strings(&rule["verbs"]) {
                        out.insert((g.clone(), r.clone(), n.clone(), v));
                    }
                }
            }
        }
    }
    out
}

fn role_set<'a>(objects: impl IntoIterator<Item = &'a Value>) -> RoleSet {
    objects
        .into_iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .map(|o| {
            let key = (
                str_at(o, "/kind").to_owned(),
                str_at(o, "/metadata/namespace").to_owned(),
                str_at(o, "/metadata/name").to_owned(),
            );
            (key, grants(&o["rules"]))
        })
        .collect()
}

/// What the agent needs for itself, whatever the product (see `deploy/agent-rbac.yaml`).
fn agents_own_roles() -> RoleSet {
    let rules = |list: &[(&str, &str, &str, &[&str])]| -> BTreeSet<Grant> {
        let mut out = BTreeSet::new();
        for (group, resource, name, verbs) in list {
            for v in *verbs {
                out.insert(((*group).into(), (*resource).into(), (*name).into(), (*v).into()));
            }
        }
        out
    };
    let role = rules(&[
        (
            "sealift.dev",
            "sealiftreleases",
            "",
            &["get", "list", "watch", "create", "update", "patch"],
        ),
        ("sealift.dev", "sealiftreleases/status", "", &["get", "update", "patch"]),
        ("sealift.dev", "sealiftreleases/finalizers", "", &["update"]),
        (
            "coordination.k8s.io",
            "leases",
            "",
            &["get", "create", "update", "patch"],
        ),
        ("", "secrets", "", &["get", "list", "watch", "create"]),
        ("", "events", "", &["create", "patch"]),
        ("", "pods/log", "", &["get"]),
    ]);
    let cluster_role = rules(&[
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "sealiftreleases.sealift.dev",
            &["get", "create", "patch"],
        ),
        ("authorization.k8s.io", "selfsubjectaccessreviews", "", &["create"]),
        ("", "namespaces", "", &["get"]),
    ]);
    [
        (("Role".into(), AGENT_NS.into(), SA.into()), role),
        (
            ("ClusterRole".into(), String::new(), "sealift-agent-core".into()),
            cluster_role,
        ),
    ]
    .into()
}

/// What `sealift-bundler rbac` computes for a render.
fn computed_roles(render: &str) -> RoleSet {
    let docs = bundler::render::parse(render).unwrap();
    role_set(&bundler::rbac::roles(&docs, SA, APP_NS, "sealift-system"))
}

#[test]
fn deploy_rbac_is_the_computed_set_for_the_sample_app_plus_the_agents_own() {
    // As `sealift-bundler rbac testdata/format-1/sample-app-1.0.0.sealift --root-dir
    // testdata/format-1/roots --namespace sample` computes it, from the verified bundle.
    let testdata = repo().join("testdata");
    let roots = bundler::trust::RootDir::load(&testdata.join("format-1/roots")).unwrap();
    let (_, metadata) = schemas::inspect::read_metadata(
        &testdata.join("format-1/sample-app-1.0.0.sealift"),
        roots.trusted().unwrap(),
    )
    .unwrap();
    let computed = computed_roles(&metadata.render);
    // The demo's later releases need nothing more (their renders have the same kinds).
    for version in ["1.0.0", "2.0.0", "3.0.0"] {
        let golden = std::fs::read_to_string(testdata.join(format!("golden/sample-app-{version}.yaml"))).unwrap();
        assert_eq!(computed_roles(&golden), computed, "sample app {version}");
    }

    let mut expected = computed;
    for (key, grants) in agents_own_roles() {
        assert!(
            expected.insert(key.clone(), grants).is_none(),
            "{key:?} is computed and fixed"
        );
    }
    let docs = deploy_documents();
    let found = role_set(&docs);
    for (key, want) in &expected {
        let Some(have) = found.get(key) else {
            panic!("deploy/ lacks {key:?}");
        };
        let missing: Vec<_> = want.difference(have).collect();
        let extra: Vec<_> = have.difference(want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{key:?}: missing {missing:?}, beyond the computed set {extra:?}"
        );
    }
    let unexpected: Vec<_> = found.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        unexpected.is_empty(),
        "roles in deploy/ that nothing computes: {unexpected:?}"
    );

    // Each role is bound, under its own name, to the agent's ServiceAccount only.
    assert_eq!(find(&docs, "ServiceAccount", SA)["metadata"]["namespace"], AGENT_NS);
    for (kind, namespace, name) in expected.keys() {
        let binding_kind = format!("{kind}Binding");
        let binding = docs
            .iter()
            .find(|d| {
                d["kind"] == binding_kind.as_str()
                    && d["metadata"]["name"] == name.as_str()
                    && str_at(d, "/metadata/namespace") == namespace
            })
            .unwrap_or_else(|| panic!("{kind} {namespace}/{name} has no {binding_kind}"));
        assert_eq!(binding["roleRef"]["kind"], kind.as_str());
        assert_eq!(binding["roleRef"]["name"], name.as_str());
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": SA, "namespace": AGENT_NS}]),
            "{binding_kind} {namespace}/{name}"
        );
    }
    // Each namespace is created before anything in it (`kubectl apply -f` goes in order).
    for (i, doc) in docs.iter().enumerate() {
        let ns = str_at(doc, "/metadata/namespace");
        if !ns.is_empty() {
            assert!(
                docs[..i]
                    .iter()
                    .any(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == ns),
                "{} {} comes before Namespace {ns}",
                doc["kind"],
                doc["metadata"]["name"]
            );
        }
    }
}
