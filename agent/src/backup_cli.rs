//! `sealift-agent backup …` and `sealift-agent restore …`: the backup API from the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::Remote;
use crate::client::Client;

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Take a backup of the deployed release now.
    Create {
        /// Wait until it ends; exit 1 if it failed.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every backup, newest first.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// One backup (default: the newest).
    Status {
        timestamp: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a backup's data and metadata.
    Delete {
        timestamp: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write a backup as one archive file (for another cluster, or safekeeping).
    Export {
        timestamp: String,
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Import an exported archive (its signing key must be this agent's or trusted).
    Import {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print this agent's archive-signing public key (PEM), for another agent's
    /// `backups.trustedKeys`.
    Key {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show the settings, or change some: `--set enableRegularBackups=true`.
    Config {
        /// `NAME=VALUE` (enableRegularBackups, backupFrequency, backupRetentionCount,
        /// backupBeforeUpgrade); repeatable.
        #[arg(long = "set")]
        set: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup (`YYYY-MM-DDtHH-MM-SS`).
    pub timestamp: String,
    /// The namespace the backup was taken from (default: the backup's record of it).
    #[arg(long)]
    pub source_namespace: Option<String>,
    /// A backup step or wave not to restore; repeatable.
    #[arg(long)]
    pub skip: Vec<String>,
    /// Required: a restore replaces the application's data.
    #[arg(long)]
    pub yes: bool,
    /// Wait until it ends; exit 1 if it failed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub remote: Remote,
}

fn client(remote: &Remote) -> Result<Client> {
    Client::new(&remote.server, &remote.token, remote.ca.as_deref())
}

fn print_backups(list: &[Value]) {
    println!(
        "{:<21} {:<8} {:<11} {:<12} {:>12}  REASON",
        "TIMESTAMP", "STATUS", "KIND", "VERSION", "SIZE"
    );
    for b in list {
        println!(
            "{:<21} {:<8} {:<11} {:<12} {:>12}  {}",
            b["timestamp"].as_str().unwrap_or(""),
            b["status"].as_str().unwrap_or(""),
            b["kind"].as_str().unwrap_or(""),
            b["appVersion"].as_str().unwrap_or(""),
            b["sizeBytes"].to_string(),
            b["reason"].as_str().unwrap_or("")
        );
    }
}

pub async fn backup(command: BackupCommand) -> Result<()> {
    match command {
        BackupCommand::Create { wait, remote } => {
            let c = client(&remote)?;
            let started = c.post("/api/v1/backups", &json!({})).await?;
            let ts = started["timestamp"].as_str().unwrap_or("").to_owned();
            println!("backup {ts} started");
            if wait {
                let done = wait_for(&c, &format!("/api/v1/backups/{ts}")).await?;
                until_released(&c, &format!("backup {ts} ")).await;
                print_backups(std::slice::from_ref(&done));
                if done["status"] != "Success" {
                    bail!("backup {ts} failed: {}", done["reason"].as_str().unwrap_or(""));
                }
            }
            Ok(())
        }
        BackupCommand::List { remote } => {
            let v = client(&remote)?.get("/api/v1/backups").await?;
            print_backups(v["backups"].as_array().map(Vec::as_slice).unwrap_or_default());
            Ok(())
        }
        BackupCommand::Status { timestamp, remote } => {
            let path = match &timestamp {
                Some(ts) => format!("/api/v1/backups/{ts}"),
                None => "/api/v1/backups/latest".into(),
            };
            let v = client(&remote)?.get(&path).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        BackupCommand::Delete { timestamp, remote } => {
            client(&remote)?.delete(&format!("/api/v1/backups/{timestamp}")).await?;
            println!("backup {timestamp} deleted");
            Ok(())
        }
        BackupCommand::Export {
            timestamp,
            output,
            remote,
        } => {
            let n = client(&remote)?
                .download(&format!("/api/v1/backups/{timestamp}/archive"), &output)
                .await?;
            println!("backup {timestamp}: {n} bytes written to {}", output.display());
            Ok(())
        }
        BackupCommand::Import { file, remote } => {
            let v = client(&remote)?
                .post_file("/api/v1/backups/import", &file, "application/x-tar")
                .await?;
            println!(
                "backup {} of {} imported",
                v["timestamp"].as_str().unwrap_or(""),
                v["appVersion"].as_str().unwrap_or("")
            );
            Ok(())
        }
        BackupCommand::Key { remote } => {
            let v = client(&remote)?.get("/api/v1/backups/key").await?;
            print!("{}", v["publicKey"].as_str().unwrap_or(""));
            eprintln!("key id {}", v["keyId"].as_str().unwrap_or(""));
            Ok(())
        }
        BackupCommand::Config { set, remote } => {
            let c = client(&remote)?;
            let mut settings = c.get("/api/v1/backups/config").await?;
            if !set.is_empty() {
                for pair in &set {
                    let Some((name, value)) = pair.split_once('=') else {
                        bail!("--set {pair}: NAME=VALUE expected");
                    };
                    if settings.get(name).is_none() {
                        bail!(
                            "--set {name}: unknown setting; known: enableRegularBackups, backupFrequency, backupRetentionCount, backupBeforeUpgrade"
                        );
                    }
                    settings[name] = match &settings[name] {
                        Value::Bool(_) => json!(
                            value
                                .parse::<bool>()
                                .map_err(|_| anyhow::anyhow!("--set {name}: true or false"))?
                        ),
                        Value::Number(_) => json!(
                            value
                                .parse::<u64>()
                                .map_err(|_| anyhow::anyhow!("--set {name}: a number"))?
                        ),
                        _ => json!(value),
                    };
                }
                settings = c.put("/api/v1/backups/config", &settings).await?;
            }
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(())
        }
    }
}

/// Waits (a minute at most) until the agent no longer runs the operation whose description
/// starts with `what`. A backup's or restore's record is final a moment before the agent lets
/// go of the operation (Lease, status); a command run right after `--wait` must not find the
/// agent still busy with it.
async fn until_released(c: &Client, what: &str) {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        match c.get("/api/v1/release").await {
            Ok(v) if v["running"].as_str().is_some_and(|r| r.starts_with(what)) => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a backup or restore until it is no longer Running.
async fn wait_for(c: &Client, path: &str) -> Result<Value> {
    loop {
        let v = c.get(path).await?;
        if v["status"] != "Running" {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn restore(args: RestoreArgs) -> Result<()> {
    if !args.yes {
        bail!(
            "a restore replaces the application's data with backup {}'s; confirm with --yes",
            args.timestamp
        );
    }
    let c = client(&args.remote)?;
    let svcs: serde_json::Map<String, Value> = args
        .skip
        .iter()
        .map(|name| (name.clone(), json!({"disable": true})))
        .collect();
    let body = json!({
        "timestamp": args.timestamp,
        "sourceNamespace": args.source_namespace,
        "svcs": svcs,
        "confirm": true,
    });
    let answer = c.post("/api/v1/restores", &body).await?;
    let request = answer["request"].clone();
    println!("restore of {} started", args.timestamp);
    if args.wait {
        // The record appears once the controller started the operation.
        let path = format!("/api/v1/restores/{}", args.timestamp);
        let done = loop {
            match c.get(&path).await {
                Ok(v) if v["status"] != "Running" && v["request"] == request => break v,
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        until_released(&c, "restore to ").await;
        println!("{}", serde_json::to_string_pretty(&done)?);
        if done["status"] != "Success" {
            bail!(
                "restore of {} failed: {}",
                args.timestamp,
                done["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
