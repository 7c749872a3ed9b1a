//! `tls.selfSigned`: the real `sealift-agent serve` against the Kubernetes API simulator
//! issues a self-signed CA and server certificate into a Secret at first start, reuses the
//! Secret on the next start (same fingerprint), and the CLI speaks HTTPS to it with that CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agent::config::AgentConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const ADMIN: &str = "admin-token-0123456789abcdef";
const NS: &str = "sealift-system";
const SECRET: &str = "sealift-agent-tls";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent directory: a root, an admin token, an agent.yaml.
fn site(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let key = keys::SigningKey::generate();
    let roots = dir.join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    keys::root_dir::init(
        &roots,
        std::slice::from_ref(&key),
        vec![],
        None,
        vec![key.public_key()],
        None,
    )
    .unwrap();
    std::fs::copy(roots.join("1.root.json"), dir.join("root.json")).unwrap();
    std::fs::write(dir.join("admin.token"), ADMIN).unwrap();
    let cfg = format!(
        "listen: 127.0.0.1:{port}\nstore: {{dir: store, maxBytes: 1Gi, reserveBytes: 0}}\n\
         trust: {{root: root.json, product: sample-app}}\n\
         registry: {{url: 'http://127.0.0.1:1', insecure: true}}\n\
         tokens: {{admin: [{{name: alice, tokenFile: admin.token}}]}}\n{extra}"
    );
    let path = dir.join("agent.yaml");
    std::fs::write(&path, cfg).unwrap();
    path
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The fingerprint the agent logged at start.
    fn fingerprint(&self) -> String {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("TLS certificate SHA-256 fingerprint "))
            .unwrap_or_else(|| panic!("no fingerprint logged:\n{log}"));
        line.rsplit(' ').next().unwrap().to_owned()
    }
}

/// Starts `serve` with a fresh log and waits until it listens.
fn start(dir: &Path, config: &Path, port: u16, run: u32) -> Running {
    let log = dir.join(format!("agent-{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut running = Running { child, log };
    let started = Instant::now();
    while !running.log().contains("sealift-agent listening on") {
        if let Some(status) = running.child.try_wait().unwrap() {
            panic!("agent exited with {status}:\n{}", running.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "agent did not start:\n{}",
            running.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "agent did not listen:\n{}",
            running.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

fn versions(url: &str, ca: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealift-agent"));
    cmd.args(["versions", "--server", url, "--token", ADMIN]);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    cmd.output().unwrap()
}

fn data(secret: &Secret, key: &str) -> Vec<u8> {
    secret.data.as_ref().unwrap()[key].0.clone()
}

fn fingerprint_of(pem: &[u8]) -> String {
    let der = CertificateDer::pem_slice_iter(pem).next().unwrap().unwrap();
    agent::tls_bootstrap::fingerprint(&der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_is_issued_at_first_start_and_reused_after() {
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default()).await.unwrap();
    let client = sim.kube_client().unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            NS,
            &PatchParams::apply("test"),
            &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    assert!(secrets.get_opt(SECRET).await.unwrap().is_none());

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = site(
        dir.path(),
        port,
        &format!(
            "tls: {{selfSigned: {{secret: {SECRET}}}}}\nkubernetes: {{namespace: {NS}, kubeconfig: {}}}\n",
            sim.kubeconfig_path().display()
        ),
    );

    // First start: the Secret is created with the three keys.
    let first = start(dir.path(), &config, port, 1);
    let secret = secrets.get(SECRET).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let ca_pem = data(&secret, "ca.crt");
    let cert_pem = data(&secret, "tls.crt");
    assert!(String::from_utf8_lossy(&data(&secret, "tls.key")).contains("PRIVATE KEY"));
    assert_ne!(ca_pem, cert_pem);
    let fingerprint = first.fingerprint();
    assert_eq!(
        fingerprint,
        fingerprint_of(&cert_pem),
        "the logged fingerprint is tls.crt's"
    );
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    assert!(
        first.log().contains("issued a self-signed CA and server certificate"),
        "{}",
        first.log()
    );
    assert_eq!(
        secret.metadata.annotations.as_ref().unwrap()[agent::tls_bootstrap::HOSTS_ANNOTATION],
        format!(
            "localhost,127.0.0.1,sealift-agent,sealift-agent.{NS},sealift-agent.{NS}.svc,sealift-agent.{NS}.svc.cluster.local"
        )
    );

    // HTTPS with the CA works, by IP and by name; without it the client refuses the server.
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &ca_pem).unwrap();
    for url in [format!("https://127.0.0.1:{port}"), format!("https://localhost:{port}")] {
        let out = versions(&url, Some(&ca));
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("VERSION"));
    }
    let untrusted = versions(&format!("https://127.0.0.1:{port}"), None);
    assert_eq!(untrusted.status.code(), Some(1), "a client without the CA connected");
    drop(first);

    // Second start: the same Secret, untouched, and the same certificate.
    let second = start(dir.path(), &config, port, 2);
    let again = secrets.get(SECRET).await.unwrap();
    assert_eq!(again.metadata.resource_version, secret.metadata.resource_version);
    assert_eq!(second.fingerprint(), fingerprint);
    assert!(
        second
            .log()
            .contains(&format!("reusing the certificate in Secret {NS}/{SECRET}")),
        "{}",
        second.log()
    );
    let out = versions(&format!("https://127.0.0.1:{port}"), Some(&ca));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_without_a_certificate_is_refused_with_a_hint() {
    let sim = kubesim::Simulator::start(kubesim::SimConfig::default()).await.unwrap();
    let client = sim.kube_client().unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            NS,
            &PatchParams::apply("test"),
            &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .patch(
            SECRET,
            &PatchParams::apply("test"),
            &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": NS}, "stringData": {"other": "x"}})),
        )
        .await
        .unwrap();
    let tls = agent::config::SelfSignedTls {
        secret: SECRET.into(),
        hosts: vec![],
    };
    let err = agent::tls_bootstrap::ensure_secret(&client, NS, &tls)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!("Secret {NS}/{SECRET} has no tls.crt")),
        "{text}"
    );
    assert!(text.contains("hint: delete the Secret and restart the agent"), "{text}");
}

fn load_error(yaml_tail: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path(), 0, yaml_tail);
    AgentConfig::load(&config).unwrap_err().to_string()
}

#[test]
fn tls_config_takes_files_or_self_signed_and_self_signed_needs_kubernetes() {
    let e = load_error("tls: {selfSigned: {secret: sealift-agent-tls}}\n");
    assert!(e.contains("tls.selfSigned: needs the kubernetes section"), "{e}");
    let e =
        load_error("tls: {certFile: a.crt, keyFile: a.key, selfSigned: {secret: s}}\nkubernetes: {namespace: ns}\n");
    assert!(
        e.contains("tls.selfSigned") && e.contains("excludes certFile and keyFile"),
        "{e}"
    );
    let e = load_error("tls: {certFile: a.crt}\n");
    assert!(e.contains("certFile and keyFile together, or selfSigned"), "{e}");
    let e = load_error("tls: {selfSigned: {secret: s, colour: blue}}\nkubernetes: {namespace: ns}\n");
    assert!(e.contains("colour") && e.contains("unknown field"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let config = site(
        dir.path(),
        0,
        "tls: {selfSigned: {secret: s, hosts: [agent.example, 10.1.2.3]}}\nkubernetes: {namespace: ns}\n",
    );
    let cfg = AgentConfig::load(&config).unwrap();
    let Some(agent::config::TlsConfig::SelfSigned(s)) = cfg.tls else {
        panic!("{:?}", cfg.tls)
    };
    assert_eq!(agent::tls_bootstrap::hosts(&s, "ns"), ["agent.example", "10.1.2.3"]);
}
