//! How the CLI shows a release: status, history, one revision, and waiting for an upgrade.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::client::Client;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// `NAME VERSION DESIRED READY PHASE` and the message, like `kubectl get sealiftreleases`.
pub fn print_status(v: &Value) {
    let st = &v["status"];
    let ready = condition(st, "Ready").map(|c| s(&c["status"])).unwrap_or("Unknown");
    println!(
        "{:<16} {:<10} {:<10} {:<7} PHASE",
        "NAME", "VERSION", "DESIRED", "READY"
    );
    println!(
        "{:<16} {:<10} {:<10} {:<7} {}",
        s(&v["name"]),
        st["currentVersion"].as_str().unwrap_or("-"),
        st["desiredVersion"].as_str().unwrap_or("-"),
        ready,
        s(&st["phase"])
    );
    let active = ["Stalled", "Reconciling", "Ready"]
        .into_iter()
        .find_map(|t| condition(st, t).filter(|c| c["status"] == "True" || t == "Ready"));
    if let Some(c) = active
        && !s(&c["message"]).is_empty()
    {
        println!("\n{}: {}", s(&c["reason"]), s(&c["message"]));
    }
    if let Some(p) = st.get("progress").filter(|p| p.is_object()) {
        println!("{}", progress_line(p));
    }
    if let Some(left) = st["leftBehind"].as_array().filter(|l| !l.is_empty()) {
        println!("left behind by the deletion rule:");
        for l in left {
            println!("  {}", s(l));
        }
    }
}

fn progress_line(p: &Value) -> String {
    let mut line = format!("step {}", s(&p["step"]));
    if let Some(w) = p["wave"].as_str() {
        line.push_str(&format!(", wave {w}"));
    }
    if p["total"].as_u64().unwrap_or(0) > 0 {
        line.push_str(&format!(", {}/{} ready", p["ready"], p["total"]));
    }
    if !s(&p["message"]).is_empty() {
        line.push_str(&format!(": {}", s(&p["message"])));
    }
    line
}

pub fn print_history(v: &Value) {
    println!(
        "{:>8}  {:<10} {:>8}  {:<10} {:<12} {:<21} REASON",
        "REVISION", "VERSION", "SEQUENCE", "OPERATION", "OUTCOME", "FINISHED"
    );
    for r in v["revisions"].as_array().into_iter().flatten() {
        println!(
            "{:>8}  {:<10} {:>8}  {:<10} {:<12} {:<21} {}",
            r["revision"].to_string(),
            s(&r["version"]),
            r["sequence"].to_string(),
            s(&r["operation"]),
            s(&r["outcome"]),
            r["finished"].as_str().unwrap_or("-"),
            s(&r["reason"])
        );
    }
}

pub fn print_revision(v: &Value) {
    println!(
        "revision {} — {} {} ({}), {}",
        v["revision"],
        s(&v["operation"]),
        s(&v["version"]),
        s(&v["outcome"]),
        s(&v["reason"])
    );
    println!("bundle {}\napplied {}", s(&v["bundle"]), s(&v["appliedDigest"]));
    println!("objects:");
    for a in v["applied"].as_array().into_iter().flatten() {
        let o = &a["object"];
        println!(
            "  [{}] {} {}/{}",
            s(&a["wave"]),
            s(&o["kind"]),
            o["metadata"]["namespace"].as_str().unwrap_or("-"),
            s(&o["metadata"]["name"])
        );
    }
    if let Some(d) = v["differences"].as_array().filter(|d| !d.is_empty()) {
        println!("differences from the signed render:");
        for x in d {
            println!("  {}", s(x));
        }
    }
    for st in v["steps"].as_array().into_iter().flatten() {
        println!("step {} ({}): {}", s(&st["step"]), s(&st["job"]), s(&st["outcome"]));
        for line in s(&st["log"]).lines() {
            println!("    {line}");
        }
    }
}

/// Follows the release until the operation for `version` ends; fails unless it is current.
pub async fn wait(client: &Client, version: &str) -> Result<()> {
    let mut last = String::new();
    let mut saw_start = false;
    loop {
        let v = client.get("/api/v1/release").await?;
        let st = &v["status"];
        let running = !v["running"].is_null();
        saw_start |= running || st["desiredVersion"] == version;
        let line = match st.get("progress").filter(|p| p.is_object()) {
            Some(p) => progress_line(p),
            None => s(&st["phase"]).to_owned(),
        };
        if line != last {
            eprintln!("  {line}");
            last = line;
        }
        if saw_start && !running {
            let phase = s(&st["phase"]);
            if phase == "Ready" && st["currentVersion"] == version {
                println!("{version} is ready");
                return Ok(());
            }
            if phase.starts_with("Stalled") {
                print_status(&v);
                bail!("the upgrade to {version} did not complete ({phase})");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
