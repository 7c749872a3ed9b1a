//! The agent's counters for `/metrics`, and the Prometheus text exposition format (0.0.4).
//!
//! Counters move where the agent audits ([`crate::service::Agent::record`]) and where it
//! pushes images; gauges (store, release) are read when scraped. Counters start at zero with
//! each process, as Prometheus expects of counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Import outcomes counted, each exposed from zero.
const IMPORT_OUTCOMES: [&str; 3] = ["ok", "refused", "failed"];
/// Operation kinds and outcomes as the release engine audits them.
const OPERATION_KINDS: [&str; 4] = ["install", "upgrade", "rollback", "uninstall"];
const OPERATION_OUTCOMES: [&str; 3] = ["started", "ok", "failed"];

/// Counters moved by the agent's audit records and image pushes.
#[derive(Debug, Default)]
pub struct Metrics {
    imports: Mutex<BTreeMap<String, u64>>,
    refusals: Mutex<BTreeMap<String, u64>>,
    operations: Mutex<BTreeMap<(String, String), u64>>,
    image_bytes_pushed: AtomicU64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert(0) += 1;
}

impl Metrics {
    /// Counts one audit record: imports by outcome, refusals by code, and the release
    /// engine's operations by kind and outcome (`started`, then `ok` or `failed`; a request
    /// the API or the controller accepted is not an operation yet).
    pub fn observe(&self, action: &str, outcome: &str, code: Option<&str>) {
        if action == "import" && IMPORT_OUTCOMES.contains(&outcome) {
            bump(&self.imports, outcome.to_owned());
        }
        if outcome == "refused" {
            bump(&self.refusals, code.unwrap_or("unknown").to_owned());
        }
        if OPERATION_KINDS.contains(&action) && OPERATION_OUTCOMES.contains(&outcome) {
            bump(&self.operations, (action.to_owned(), outcome.to_owned()));
        }
    }

    /// Adds bytes sent to the registry.
    pub fn add_image_bytes_pushed(&self, bytes: u64) {
        self.image_bytes_pushed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Writes the counters' families.
    pub fn write(&self, out: &mut Exposition) {
        out.family(
            "sealift_imports_total",
            "counter",
            "Bundle imports by outcome (ok, refused, failed).",
        );
        let imports = self.imports.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for outcome in IMPORT_OUTCOMES {
            let n = imports.get(outcome).copied().unwrap_or(0);
            out.sample("sealift_imports_total", &[("outcome", outcome)], n as f64);
        }
        out.family(
            "sealift_refusals_total",
            "counter",
            "Refused requests and imports by refusal code, as audited.",
        );
        let refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (code, n) in &refusals {
            out.sample("sealift_refusals_total", &[("code", code)], *n as f64);
        }
        out.family(
            "sealift_operations_total",
            "counter",
            "Release operations by kind and outcome (started, ok, failed), as audited.",
        );
        let operations = self.operations.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for kind in OPERATION_KINDS {
            for outcome in OPERATION_OUTCOMES {
                let n = operations
                    .get(&(kind.to_owned(), outcome.to_owned()))
                    .copied()
                    .unwrap_or(0);
                out.sample(
                    "sealift_operations_total",
                    &[("kind", kind), ("outcome", outcome)],
                    n as f64,
                );
            }
        }
        out.family(
            "sealift_image_bytes_pushed_total",
            "counter",
            "Image bytes sent to the cluster registry (blobs already there are not sent).",
        );
        out.sample(
            "sealift_image_bytes_pushed_total",
            &[],
            self.image_bytes_pushed.load(Ordering::Relaxed) as f64,
        );
    }
}

/// A Prometheus text exposition being written: `# HELP` and `# TYPE` once per family, then
/// its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_imports_refusals_and_operations_from_audit_records() {
        let m = Metrics::default();
        m.observe("import", "ok", None);
        m.observe("import", "refused", Some("signature_invalid"));
        m.observe("import", "warning", Some("allow_older"));
        m.observe("upload", "refused", Some("forbidden"));
        m.observe("upgrade", "accepted", None);
        m.observe("upgrade", "started", None);
        m.observe("upgrade", "failed", Some("upgrade_failed"));
        m.observe("rollback", "ok", None);
        m.add_image_bytes_pushed(1234);
        let mut out = Exposition::default();
        m.write(&mut out);
        let text = out.finish();
        for line in [
            "sealift_imports_total{outcome=\"ok\"} 1",
            "sealift_imports_total{outcome=\"refused\"} 1",
            "sealift_imports_total{outcome=\"failed\"} 0",
            "sealift_refusals_total{code=\"forbidden\"} 1",
            "sealift_refusals_total{code=\"signature_invalid\"} 1",
            "sealift_operations_total{kind=\"upgrade\",outcome=\"started\"} 1",
            "sealift_operations_total{kind=\"upgrade\",outcome=\"failed\"} 1",
            "sealift_operations_total{kind=\"upgrade\",outcome=\"ok\"} 0",
            "sealift_operations_total{kind=\"rollback\",outcome=\"ok\"} 1",
            "sealift_image_bytes_pushed_total 1234",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn escapes_label_values_and_help() {
        let mut out = Exposition::default();
        out.family("x_info", "gauge", "a \\ help\nline");
        out.sample("x_info", &[("v", "a\"b\\c\nd")], 1.0);
        assert_eq!(
            out.finish(),
            "# HELP x_info a \\\\ help\\nline\n# TYPE x_info gauge\nx_info{v=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }
}
