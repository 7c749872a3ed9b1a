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
