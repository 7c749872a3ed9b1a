//! How the CLI shows a release: status, history, one revision, and waiting for an upgrade.

use std::time::Duration;

use anyhow::Result;
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

/// The release before a request that `wait` will follow (`None` unless `wait`, or when it
/// cannot be read).
pub async fn before(client: &Client, wait: bool) -> Option<Value> {
    if !wait {
        return None;
    }
    client.get("/api/v1/release").await.ok()
}

/// Follows the release until the operation for `version` ends; fails unless it is current.
/// `before` is the release as it was before the request: its state (a failed earlier attempt
/// at the same version, say) is not taken for the outcome — the operation has begun once an
/// operation runs, the observed generation moved or a revision was added. Reads the agent's
/// event stream (`GET /api/v1/events`); if it cannot be opened or breaks, polls
/// `GET /api/v1/release` instead.
pub async fn wait(client: &Client, version: &str, before: Option<&Value>) -> Result<()> {
    let mut w = Waiter::new(version, before);
    match follow(client, &mut w).await {
        Ok(Some(done)) => return done,
        Ok(None) => eprintln!("  the agent ended its event stream; polling"),
        Err(e) => eprintln!("  no event stream ({e:#}); polling"),
    }
    loop {
        let v = client.get("/api/v1/release").await?;
        w.progress(
            v["status"].get("progress").unwrap_or(&Value::Null),
            s(&v["status"]["phase"]),
        );
        if let Some(done) = w.release(&v) {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Follows the event stream until the operation ends (`Some`) or the stream does (`None`).
async fn follow(client: &Client, w: &mut Waiter) -> Result<Option<Result<()>>> {
    let mut events = client.events().await?;
    while let Some(e) = events.next().await? {
        let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        match e.event.as_str() {
            "progress" => w.progress(&data, ""),
            "status" => {
                w.progress(
                    data["status"].get("progress").unwrap_or(&Value::Null),
                    s(&data["status"]["phase"]),
                );
                if let Some(done) = w.release(&data) {
                    return Ok(Some(done));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// What waiting for `version` has seen.
struct Waiter {
    version: String,
    /// (observed generation, newest revision) before the request.
    before: Option<(Value, Value)>,
    last: String,
    saw_start: bool,
}

impl Waiter {
    fn new(version: &str, before: Option<&Value>) -> Self {
        let st = before.map(|b| &b["status"]);
        // Already there before the request (nothing to do): the first look settles it.
        let done_before = st.is_some_and(|st| {
            before.is_some_and(|b| b["running"].is_null()) && st["phase"] == "Ready" && st["currentVersion"] == version
        });
        Self {
            version: version.to_owned(),
            before: st.map(|st| (st["observedGeneration"].clone(), st["revisions"][0]["revision"].clone())),
            last: String::new(),
            saw_start: done_before,
        }
    }

    /// Prints the progress (or else the phase) when it changed.
    fn progress(&mut self, p: &Value, phase: &str) {
        let line = match p.as_object() {
            Some(_) if !s(&p["step"]).is_empty() => progress_line(p),
            _ if !phase.is_empty() => phase.to_owned(),
            _ => return,
        };
        if line != self.last {
            eprintln!("  {line}");
            self.last = line;
        }
    }

    /// The release as `GET /api/v1/release` shows it: `Some` once the operation ended.
    fn release(&mut self, v: &Value) -> Option<Result<()>> {
        let st = &v["status"];
        let running = !v["running"].is_null();
        self.saw_start |= running
            || match &self.before {
                Some((generation, revision)) => {
                    st["observedGeneration"] != *generation || st["revisions"][0]["revision"] != *revision
                }
                None => st["desiredVersion"] == self.version.as_str(),
            };
        if !self.saw_start || running {
            return None;
        }
        let phase = s(&st["phase"]);
        if phase == "Ready" && st["currentVersion"] == self.version.as_str() {
            println!("{} is ready", self.version);
            return Some(Ok(()));
        }
        if phase.starts_with("Stalled") {
            print_status(v);
            return Some(Err(anyhow::anyhow!(
                "the upgrade to {} did not complete ({phase})",
                self.version
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Waiter;

    fn release(running: Option<&str>, phase: &str, current: &str, generation: i64, newest: u32) -> serde_json::Value {
        json!({"running": running, "status": {"phase": phase, "currentVersion": current, "desiredVersion": "2.0.0",
            "observedGeneration": generation, "revisions": [{"revision": newest}]}})
    }

    #[test]
    fn a_failure_from_before_the_request_is_not_the_outcome() {
        let before = release(None, "Stalled/UpgradeFailed", "1.0.0", 4, 2);
        let mut w = Waiter::new("2.0.0", Some(&before));
        assert!(w.release(&before).is_none(), "the old failure is not this attempt's");
        assert!(
            w.release(&release(
                Some("upgrade to 2.0.0"),
                "Reconciling/Upgrading",
                "1.0.0",
                5,
                3
            ))
            .is_none()
        );
        let done = w.release(&release(None, "Ready", "2.0.0", 5, 3));
        assert!(matches!(done, Some(Ok(()))));
        // Without a baseline, a desired version equal to the target counts as begun.
        let mut w = Waiter::new("2.0.0", None);
        assert!(matches!(
            w.release(&release(None, "Stalled/UpgradeFailed", "1.0.0", 4, 2)),
            Some(Err(_))
        ));
        // Nothing to do: already current and ready.
        let ready = release(None, "Ready", "2.0.0", 4, 2);
        let mut w = Waiter::new("2.0.0", Some(&ready));
        assert!(matches!(w.release(&ready), Some(Ok(()))));
    }
}
