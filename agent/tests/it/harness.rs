//! What the agent tests share: the tokens, the agent's directory and `agent.yaml`, and running
//! the `sealift-agent` CLI against an agent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) const ADMIN: &str = "admin-token-0123456789abcdef";
pub(crate) const VIEWER: &str = "viewer-token-0123456789abcdef";

/// What differs between test agents' configurations.
pub(crate) struct AgentYaml<'a> {
    /// `127.0.0.1:0`, or a fixed port when the agent is a separate process.
    pub listen: &'a str,
    pub product: &'a str,
    /// `store.maxBytes`.
    pub max_bytes: &'a str,
    /// `host:port` of the plain-HTTP target registry.
    pub registry: &'a str,
    /// Top-level sections appended as they are (`kubernetes:`, `backups:`, …).
    pub extra: &'a str,
}

/// Writes into `dir` the admin and viewer token files (alice and victor), `root.json` (the
/// first root of `roots`) and `agent.yaml`: a store in `dir/store`, a clock skew of one hour,
/// the target registry, then `cfg.extra`. Returns the configuration's path.
pub(crate) fn write_agent_dir(dir: &Path, roots: &Path, cfg: AgentYaml<'_>) -> PathBuf {
    std::fs::write(dir.join("admin.token"), ADMIN).unwrap();
    std::fs::write(dir.join("viewer.token"), VIEWER).unwrap();
    std::fs::copy(roots.join("1.root.json"), dir.join("root.json")).unwrap();
    let AgentYaml {
        listen,
        product,
        max_bytes,
        registry,
        extra,
    } = cfg;
    let text = format!(
        "listen: {listen}\nstore:\n  dir: store\n  maxBytes: {max_bytes}\n  reserveBytes: 0\n\
         trust:\n  root: root.json\n  product: {product}\n  clockSkew: 1h\n\
         registry:\n  url: http://{registry}\n  insecure: true\n\
         tokens:\n  admin: [{{name: alice, tokenFile: admin.token}}]\n  viewer: [{{name: victor, tokenFile: viewer.token}}]\n\
         {extra}"
    );
    let path = dir.join("agent.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `sealift-agent ARGS` against the agent at `url` with `token` (through the environment, as
/// an admin's shell would have them).
pub(crate) fn cli(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
        .args(args)
        .env("SEALIFT_SERVER", url)
        .env("SEALIFT_TOKEN", token)
        .output()
        .unwrap()
}

/// [`cli`] off the async runtime (the agent under test may be serving on it).
pub(crate) async fn cli_async(url: &str, token: &str, args: &[&str]) -> Output {
    let (url, token) = (url.to_owned(), token.to_owned());
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&url, &token, &args)
    })
    .await
    .unwrap()
}

/// `GET url` with `token`, its body as JSON (whatever the status).
pub(crate) async fn get_json(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A command's exit code and output, for assertion messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
