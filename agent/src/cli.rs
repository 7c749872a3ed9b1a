//! The command line: `serve` runs the agent; the other commands talk to a running agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::config::AgentConfig;
use crate::import::ImportOptions;
use crate::service::Agent;

/// Verifies bundles, loads their images into the cluster's registry, and keeps what it accepted.
#[derive(Debug, Parser)]
#[command(name = "sealift-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach a running agent.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The agent's URL.
    #[arg(long, env = "SEALIFT_SERVER", default_value = "http://127.0.0.1:8443")]
    pub server: String,
    /// An admin or viewer token.
    #[arg(long, env = "SEALIFT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// CA certificate (PEM) of the agent's TLS certificate.
    #[arg(long, env = "SEALIFT_CA")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Listen on a non-loopback address without TLS (tokens cross the network in clear).
        #[arg(long)]
        insecure_listen: bool,
    },
    /// Import a bundle: upload FILE (resumable), or take one on the agent's volume.
    Import {
        /// The bundle file to upload.
        file: Option<PathBuf>,
        /// A bundle file already on the agent's volume.
        #[arg(long, conflicts_with = "file")]
        from_path: Option<PathBuf>,
        /// Accept an older build than the one accepted for its version (audited).
        #[arg(long)]
        allow_older: bool,
        /// Admit an expired bundle as a restore target only (audited).
        #[arg(long)]
        for_restore: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List imported versions, newest first.
    Versions {
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the audit log.
    Audit {
        #[command(flatten)]
        remote: Remote,
    },
    /// Move the application to VERSION (an imported one); rolls back by itself on failure.
    Upgrade {
        version: String,
        /// Leave a failed upgrade as it is for debugging instead of rolling back.
        #[arg(long)]
        disable_rollback: bool,
        /// Allow VERSION to be older than the current version.
        #[arg(long)]
        allow_downgrade: bool,
        /// Start although the current release is not healthy.
        #[arg(long)]
        ignore_unhealthy: bool,
        /// Skip the pre-upgrade backup (recorded in the revision).
        #[arg(long)]
        no_backup: bool,
        /// Wait until the operation ends; exit 1 if it did not reach VERSION.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Backups: `create`, `list`, `status`, `delete`, `export`, `import`, `key`, `config`.
    Backup {
        #[command(subcommand)]
        command: crate::backup_cli::BackupCommand,
    },
    /// Restore backup TIMESTAMP: re-deploys its version, then restores only its data.
    Restore(crate::backup_cli::RestoreArgs),
    /// Run the failed operation for the typed version again.
    Retry {
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Go back to the previous version (or `--to VERSION`, a recorded one), offline from the store.
    Rollback {
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove the application (CRDs, PVCs and Namespaces are kept; `--delete-data` removes PVCs).
    Uninstall {
        /// Required: uninstalling is deliberate.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        delete_data: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// The release: current and desired version, state, progress.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// The release's revisions, newest first; `--details N` shows one in full.
    History {
        #[arg(long)]
        details: Option<u32>,
        #[command(flatten)]
        remote: Remote,
    },
    /// The release's variables: `list`, or `set NAME=VALUE` / `set NAME --from-secret S/K`.
    Vars {
        #[command(subcommand)]
        command: VarsCommand,
    },
    /// Re-hash every stored bundle end to end (the only full re-hash); a corrupt one is
    /// marked in the index, naming the entry. Exit 1 if any is corrupt.
    VerifyStore {
        #[command(flatten)]
        remote: Remote,
    },
    /// The site's patches of rendered objects: print them, or replace them from a JSON file
    /// (`{"patches": [{"kind", "name", "patch"}], "allowRbacPatches": false}`).
    Patches {
        /// Replace the patches with this file's.
        #[arg(long)]
        set: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the `SealiftRelease` CustomResourceDefinition (YAML) the agent applies at start.
    Crd,
}

#[derive(Debug, Subcommand)]
pub enum VarsCommand {
    /// The declared variables with their values and where they come from (sensitive ones
    /// never show a value).
    List {
        /// Use the declarations of this imported version (default: the deployed one).
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Set a variable for the next operation: `NAME=VALUE`, or `NAME --from-secret SECRET/KEY`
    /// (a key of a Secret in the agent's namespace; the only way for sensitive variables).
    Set {
        /// `NAME=VALUE`, or `NAME` with `--from-secret`.
        assignment: String,
        #[arg(long, value_name = "SECRET/KEY")]
        from_secret: Option<String>,
        /// Check against the declarations of this imported version (default: the deployed one).
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Several rustls crypto providers may be compiled in (aws-lc-rs for reqwest, ring for
    // kube); rustls then has no implicit default, so the TLS listener's provider is chosen here.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            config,
            insecure_listen,
        } => serve(&config, insecure_listen).await,
        Command::Import {
            file,
            from_path,
            allow_older,
            for_restore,
            remote,
        } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let options = ImportOptions {
                allow_older,
                for_restore,
            };
            if allow_older {
                eprintln!("warning: --allow-older admits a build older than the accepted one; this is audited");
            }
            let summary = match (file, from_path) {
                (Some(f), None) => client.upload(&f, options).await?,
                (None, Some(p)) => client.import_path(&p, options).await?,
                _ => bail!("give a FILE to upload or --from-path PATH on the agent's volume"),
            };
            print_summary(&summary);
            Ok(())
        }
        Command::Versions { remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let v = client.get("/api/v1/versions").await?;
            println!(
                "{:<16} {:>9} {:<22} {:>12}  PINNED",
                "VERSION", "SEQUENCE", "IMPORTED", "SIZE"
            );
            for b in v["versions"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:>9} {:<22} {:>12}  {}",
                    b["version"].as_str().unwrap_or(""),
                    b["sequence"].to_string(),
                    b["importedAt"].as_str().unwrap_or(""),
                    b["size"].to_string(),
                    if b["pinned"] == true { "pinned" } else { "" }
                );
            }
            Ok(())
        }
        Command::Upgrade {
            version,
            disable_rollback,
            allow_downgrade,
            ignore_unhealthy,
            no_backup,
            wait,
            remote,
        } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let body = serde_json::json!({
                "version": version,
                "disableRollback": disable_rollback,
                "allowDowngrade": allow_downgrade,
                "ignoreUnhealthy": ignore_unhealthy,
                "skipBackup": no_backup,
            });
            if allow_downgrade {
                eprintln!("warning: downgrading to {version}; the application's data may not support it");
            }
            let before = crate::release_view::before(&client, wait).await;
            let answer = client.post("/api/v1/upgrade", &body).await?;
            println!("{}", answer["message"].as_str().unwrap_or("requested"));
            if wait {
                crate::release_view::wait(&client, &version, before.as_ref()).await?;
            }
            Ok(())
        }
        Command::Retry { wait, remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let before = crate::release_view::before(&client, wait).await;
            let answer = client.post("/api/v1/retry", &serde_json::json!({})).await?;
            println!("{}", answer["message"].as_str().unwrap_or("requested"));
            if wait {
                let v = client.get("/api/v1/release").await?;
                let version = v["status"]["desiredVersion"].as_str().unwrap_or("").to_owned();
                crate::release_view::wait(&client, &version, before.as_ref()).await?;
            }
            Ok(())
        }
        Command::Rollback { to, wait, remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let before = crate::release_view::before(&client, wait).await;
            let answer = client
                .post("/api/v1/rollback", &serde_json::json!({ "toVersion": to }))
                .await?;
            println!("{}", answer["message"].as_str().unwrap_or("requested"));
            if wait {
                let version = answer["version"].as_str().unwrap_or("").to_owned();
                crate::release_view::wait(&client, &version, before.as_ref()).await?;
            }
            Ok(())
        }
        Command::Uninstall {
            yes,
            delete_data,
            remote,
        } => {
            if !yes {
                bail!("uninstall removes the application; confirm with --yes");
            }
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let answer = client
                .post(
                    "/api/v1/uninstall",
                    &serde_json::json!({ "confirm": true, "deleteData": delete_data }),
                )
                .await?;
            println!("{}", answer["message"].as_str().unwrap_or("requested"));
            Ok(())
        }
        Command::Status { remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let v = client.get("/api/v1/release").await?;
            crate::release_view::print_status(&v);
            Ok(())
        }
        Command::History { details, remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            match details {
                Some(n) => {
                    let v = client.get(&format!("/api/v1/revisions/{n}")).await?;
                    crate::release_view::print_revision(&v);
                }
                None => {
                    let v = client.get("/api/v1/revisions").await?;
                    crate::release_view::print_history(&v);
                }
            }
            Ok(())
        }
        Command::Vars { command } => vars(command).await,
        Command::Backup { command } => crate::backup_cli::backup(command).await,
        Command::Restore(args) => crate::backup_cli::restore(args).await,
        Command::Patches { set, remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let v = match set {
                Some(file) => {
                    let body: serde_json::Value = serde_json::from_slice(&fs_err::read(&file)?)
                        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
                    client.put("/api/v1/patches", &body).await?
                }
                None => client.get("/api/v1/patches").await?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Command::VerifyStore { remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let v = client
                .post_waiting(
                    "/api/v1/verify-store",
                    &serde_json::json!({}),
                    std::time::Duration::from_secs(24 * 3600),
                )
                .await?;
            println!(
                "{:<16} {:>9}  {:<8} {:>14}  IDENTITY",
                "VERSION", "SEQUENCE", "RESULT", "SIZE"
            );
            for b in v["bundles"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:>9}  {:<8} {:>14}  {}",
                    b["version"].as_str().unwrap_or(""),
                    b["sequence"].to_string(),
                    if b["intact"] == true { "intact" } else { "CORRUPT" },
                    b["size"].to_string(),
                    b["identity"].as_str().unwrap_or("")
                );
                if let Some(p) = b["problem"].as_str() {
                    match b["entry"].as_str() {
                        Some(e) => println!("    entry {e}: {p}"),
                        None => println!("    {p}"),
                    }
                }
            }
            let corrupt = v["corrupt"].as_u64().unwrap_or(0);
            if corrupt > 0 {
                bail!(
                    "{corrupt} stored bundle(s) are corrupt and now marked so\nhint: import the same file again: the agent takes all of it and replaces its corrupt copy"
                );
            }
            println!("{} bundles intact", v["intact"]);
            Ok(())
        }
        Command::Crd => {
            print!(
                "# Generated by `sealift-agent crd`; do not edit. The agent applies the same at start.\n{}",
                crate::release::resource::crd_yaml()
            );
            Ok(())
        }
        Command::Audit { remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let v = client.get("/api/v1/audit").await?;
            for r in v["records"].as_array().into_iter().flatten() {
                println!("{}", serde_json::to_string(r)?);
            }
            Ok(())
        }
    }
}

async fn vars(command: VarsCommand) -> Result<()> {
    match command {
        VarsCommand::List { version, remote } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let v = client.get(&variables_path("", version.as_deref())).await?;
            println!("variables of {}", v["version"].as_str().unwrap_or("?"));
            println!("{:<20} {:<8} {:<10} VALUE", "NAME", "TYPE", "SOURCE");
            for x in v["variables"].as_array().into_iter().flatten() {
                let mut flags = Vec::new();
                if x["required"] == true {
                    flags.push("required");
                }
                if x["sensitive"] == true {
                    flags.push("sensitive");
                }
                println!(
                    "{:<20} {:<8} {:<10} {}{}",
                    x["name"].as_str().unwrap_or(""),
                    x["type"].as_str().unwrap_or(""),
                    x["source"].as_str().unwrap_or(""),
                    x["shown"].as_str().unwrap_or(""),
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", flags.join(", "))
                    }
                );
            }
            let unused: Vec<&str> = v["unusedSettings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str())
                .collect();
            if !unused.is_empty() {
                println!("kept for other releases: {}", unused.join(", "));
            }
            Ok(())
        }
        VarsCommand::Set {
            assignment,
            from_secret,
            version,
            remote,
        } => {
            let client = Client::new(&remote.server, &remote.token, remote.ca.as_deref())?;
            let body = match (assignment.split_once('='), from_secret) {
                (Some(_), Some(_)) => bail!("give NAME=VALUE or NAME --from-secret SECRET/KEY, not both"),
                (None, None) => bail!("give NAME=VALUE, or NAME --from-secret SECRET/KEY"),
                (None, Some(r)) => {
                    let Some((secret, key)) = r.split_once('/').filter(|(s, k)| !s.is_empty() && !k.is_empty()) else {
                        bail!("--from-secret takes SECRET/KEY, got {r:?}");
                    };
                    (
                        assignment.clone(),
                        serde_json::json!({"fromSecret": {"secret": secret, "key": key}}),
                    )
                }
                (Some((name, text)), None) => {
                    // The declared type decides whether VALUE is a number or text.
                    let list = client.get(&variables_path("", version.as_deref())).await?;
                    let integer = list["variables"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| x["name"] == name && x["type"] == "integer");
                    let value = match text.parse::<i64>() {
                        Ok(i) if integer && i.to_string() == text => serde_json::json!(i),
                        _ => serde_json::json!(text),
                    };
                    (name.to_owned(), serde_json::json!({ "value": value }))
                }
            };
            let (name, body) = body;
            let answer = client.put(&variables_path(&name, version.as_deref()), &body).await?;
            println!("{}", answer["message"].as_str().unwrap_or("set"));
            Ok(())
        }
    }
}

/// `/api/v1/variables[/NAME][?version=V]`.
fn variables_path(name: &str, version: Option<&str>) -> String {
    let mut path = "/api/v1/variables".to_owned();
    if !name.is_empty() {
        path.push('/');
        path.push_str(&percent_encode(name));
    }
    if let Some(v) = version {
        path.push_str("?version=");
        path.push_str(&percent_encode(v));
    }
    path
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_summary(s: &serde_json::Value) {
    let already = match (s["alreadyImported"] == true, s["bytesReceived"].as_u64()) {
        (true, Some(n)) if s["size"].as_u64().is_some_and(|size| n < size) => {
            format!(" (already imported; nothing changed; {n} bytes of it sent, the head only)")
        }
        (true, _) => " (already imported; nothing changed)".to_owned(),
        (false, _) => String::new(),
    };
    println!(
        "imported {} {} (sequence {}){already}",
        s["product"].as_str().unwrap_or(""),
        s["version"].as_str().unwrap_or(""),
        s["sequence"]
    );
    println!("  identity {}", s["identity"].as_str().unwrap_or(""));
    println!(
        "  signers  {}",
        s["signers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  size     {} bytes", s["size"]);
    for i in s["images"].as_array().into_iter().flatten() {
        println!("  image    {}", i.as_str().unwrap_or(""));
    }
    let p = &s["pushed"];
    match p["error"].as_str() {
        Some(e) => println!("  registry push FAILED: {e}"),
        None => println!(
            "  registry: {} blobs uploaded ({} bytes), {} already present, {} manifests, {} tags in {:.2} s",
            p["blobsUploaded"],
            p["bytesUploaded"],
            p["blobsSkipped"],
            p["manifestsPushed"],
            p["tagsPushed"],
            p["seconds"].as_f64().unwrap_or(0.0)
        ),
    }
}

/// Runs the HTTP API until SIGTERM or Ctrl-C.
pub async fn serve(config: &std::path::Path, insecure_listen: bool) -> Result<()> {
    let mut cfg = AgentConfig::load(config)?;
    let addr: SocketAddr = cfg.listen;
    if let Some(tls) = crate::tls_bootstrap::implied(&cfg, insecure_listen) {
        tracing::info!(
            "listen {addr} is not loopback and no tls is configured: serving a self-signed certificate kept in Secret {}",
            crate::tls_bootstrap::DEFAULT_SECRET
        );
        cfg.tls = Some(tls);
    }
    if cfg.tls.is_none() && !addr.ip().is_loopback() {
        if !insecure_listen {
            bail!(
                "listen {addr} is not loopback and no tls is configured\nhint: configure tls.certFile/keyFile, or tls.selfSigned.secret (with kubernetes), or pass --insecure-listen"
            );
        }
        tracing::warn!("listening on {addr} without TLS (--insecure-listen): tokens cross the network in clear");
    }
    let tls = crate::tls_bootstrap::load(&cfg).await?;
    let kubernetes = cfg.kubernetes.clone();
    let agent = Arc::new(Agent::open(cfg)?);
    let engine = match kubernetes {
        Some(k) => {
            let ca = tls
                .as_ref()
                .and_then(|t| t.ca_pem.as_ref())
                .map(|pem| String::from_utf8_lossy(pem).into_owned());
            Some(crate::release::start(agent.clone(), &k, ca).await?)
        }
        None => None,
    };
    let app = crate::api::app(agent, engine);
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    tracing::info!(
        "sealift-agent listening on {addr}{}",
        if tls.is_some() { " (TLS)" } else { "" }
    );
    match tls {
        Some(t) => {
            axum_server::bind_rustls(addr, t.rustls().await?)
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
        None => {
            axum_server::bind(addr)
                .handle(handle)
                .serve(app.into_make_service())
                .await?
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
