//! `agent.yaml` errors name the key and the problem; `serve` refuses an open listener
//! without TLS.

use std::process::Command;

use agent::config::AgentConfig;

fn write(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("root.json"), "{}").unwrap();
    std::fs::write(dir.join("admin.token"), "admin-token-0123456789abcdef").unwrap();
    let p = dir.join("agent.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

const GOOD: &str = "listen: 127.0.0.1:0\nstore: {dir: store, maxBytes: 10Gi}\ntrust: {root: root.json, product: acme}\nregistry: {url: https://registry.example:5000}\ntokens: {admin: [{name: alice, tokenFile: admin.token}]}\n";

fn error_of(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    AgentConfig::load(&write(dir.path(), yaml)).unwrap_err().to_string()
}

#[test]
fn a_good_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AgentConfig::load(&write(dir.path(), GOOD)).unwrap();
    assert_eq!(cfg.store.max_bytes.0, 10 << 30);
    assert_eq!(cfg.skew_seconds(), 3600);
    // Nodes pull from the host the agent pushes to unless pullHost says otherwise.
    assert_eq!(cfg.registry.pull_host(), "registry.example:5000");
    let yaml = GOOD.replace(
        "registry: {url: https://registry.example:5000}",
        "registry: {pushURL: https://push.example:5000, pullHost: pull.example}",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = AgentConfig::load(&write(dir.path(), &yaml)).unwrap();
    assert_eq!(cfg.registry.url, "https://push.example:5000");
    assert_eq!(cfg.registry.pull_host(), "pull.example");
}

#[test]
fn config_errors_name_the_key_and_the_problem() {
    let e = error_of(&GOOD.replace("maxBytes: 10Gi", "maxBytes: 10GB"));
    assert!(e.contains("unknown unit \"GB\""), "{e}");
    let e = error_of(&GOOD.replace("https://registry.example:5000", "http://registry.example:5000"));
    assert!(
        e.contains("registry.url: http://registry.example:5000 is plain HTTP; set registry.insecure: true"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("product: acme", "product: Acme"));
    assert!(e.contains("product name"), "{e}");
    let e = error_of(&GOOD.replace("root: root.json", "root: missing.json"));
    assert!(
        e.contains("trust.root:") && e.contains("missing.json does not exist"),
        "{e}"
    );
    let e = error_of(&format!("{GOOD}colour: blue\n"));
    assert!(e.contains("colour") && e.contains("unknown field"), "{e}");
    let e = error_of(&GOOD.replace(
        "trust: {root: root.json, product: acme}",
        "trust: {root: root.json, product: acme, clockSkew: soon}",
    ));
    assert!(e.contains("trust.clockSkew:"), "{e}");
    let e = error_of(&GOOD.replace("tokenFile: admin.token", "tokenFile: nope.token"));
    assert!(
        e.contains("tokens.alice.tokenFile:") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn serve_refuses_a_non_loopback_listener_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), &GOOD.replace("127.0.0.1:0", "0.0.0.0:0"));
    let out = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen 0.0.0.0:0 is not loopback and no tls is configured"),
        "{err}"
    );
    assert!(err.contains("--insecure-listen"), "{err}");
}

#[test]
fn serve_speaks_tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    tests::registry::make_tls_material(dir.path()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = GOOD.replace("127.0.0.1:0", &format!("0.0.0.0:{port}"))
        + "tls: {certFile: tls/server.crt, keyFile: tls/server.key}\n";
    let cfg = write(dir.path(), &yaml);
    // A real root so the agent starts: any canonical root envelope.
    let key = keys::SigningKey::generate();
    let roots = dir.path().join("roots");
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
    std::fs::copy(roots.join("1.root.json"), dir.path().join("root.json")).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "agent did not listen");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let url = format!("https://127.0.0.1:{port}");
    let ca = dir.path().join("certs/ca.crt");
    let trusted = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .args([
            "versions",
            "--server",
            &url,
            "--token",
            "admin-token-0123456789abcdef",
            "--ca",
        ])
        .arg(&ca)
        .output()
        .unwrap();
    let untrusted = Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .args(["versions", "--server", &url, "--token", "admin-token-0123456789abcdef"])
        .output()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("VERSION"));
    assert_eq!(untrusted.status.code(), Some(1), "a client without the CA connected");
}

#[test]
fn an_agent_in_a_cluster_listening_beyond_loopback_serves_a_self_signed_certificate() {
    use agent::config::TlsConfig;
    use agent::tls_bootstrap::{DEFAULT_SECRET, implied};
    let load = |listen: &str, kubernetes: bool, tls: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = GOOD.replace("127.0.0.1:0", listen);
        if kubernetes {
            yaml.push_str("kubernetes: {namespace: sealift-system}\n");
        }
        yaml.push_str(tls);
        AgentConfig::load(&write(dir.path(), &yaml)).unwrap()
    };
    // In a cluster, no tls, an open listener: a self-signed certificate in the default Secret.
    let cfg = load("0.0.0.0:8443", true, "");
    match implied(&cfg, false) {
        Some(TlsConfig::SelfSigned(s)) => assert_eq!(s.secret, DEFAULT_SECRET),
        other => panic!("{other:?}"),
    }
    // Not implied: with --insecure-listen, on loopback, outside a cluster, or with tls given.
    assert!(implied(&cfg, true).is_none());
    assert!(implied(&load("127.0.0.1:8443", true, ""), false).is_none());
    assert!(implied(&load("0.0.0.0:8443", false, ""), false).is_none());
    let files = "tls: {certFile: root.json, keyFile: root.json}\n";
    assert!(implied(&load("0.0.0.0:8443", true, files), false).is_none());
}
