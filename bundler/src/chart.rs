//! The chart as written: its metadata, a deterministic package, and the scan for
//! template functions that make renders differ between runs or sites.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};
use serde::Deserialize;

/// The fields of `Chart.yaml` the bundle records.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMeta {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub app_version: Option<String>,
}

pub fn read_meta(dir: &Path) -> Result<ChartMeta> {
    let path = dir.join("Chart.yaml");
    let text = fs_err::read_to_string(&path)?;
    serde_saphyr::from_str(&text).with_context(|| format!("cannot read {}", path.display()))
}

/// Every regular file of the chart, relative, sorted by path. Symlinks are refused.
fn files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        let ft = entry.file_type();
        if ft.is_symlink() {
            bail!(
                "chart file {} is a symbolic link; charts are packed as written, without links",
                entry.path().display()
            );
        }
        if ft.is_file() {
            let rel = entry.path().strip_prefix(dir).context("walk left the chart")?;
            if rel.components().next().is_some_and(|c| c.as_os_str() == ".git") {
                continue;
            }
            out.push(rel.to_owned());
        }
    }
    Ok(out)
}

/// Packs the chart as `helm package` lays it out (`<name>/…` in a gzip tar), with fixed
/// modes, owners and times, so the same files give the same bytes.
pub fn pack(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for rel in files(dir)? {
        let data = fs_err::read(dir.join(&rel))?;
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        let path = Path::new(name).join(&rel);
        tar.append_data(&mut header, &path, &data[..])
            .with_context(|| format!("cannot pack {}", rel.display()))?;
    }
    let gz = tar.into_inner().context("cannot finish the chart archive")?;
    let mut out = gz.finish().context("cannot finish the chart archive")?;
    out.flush()?;
    Ok(out)
}

/// A call to a function whose result differs between runs or sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub function: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: calls `{}`", self.file, self.line, self.function)
    }
}

/// Functions that read the cluster, the clock or randomness.
fn is_nondeterministic(name: &str) -> bool {
    let upper_after = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase())
    };
    matches!(
        name,
        "lookup" | "now" | "uuidv4" | "randBytes" | "htpasswd" | "shuffle" | "encryptAES" | "bcrypt"
    ) || upper_after("rand")
        || upper_after("gen")
}

/// Scans every template of the chart and its subcharts (`templates/**`, `*.tpl`).
pub fn scan_templates(dir: &Path) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for rel in files(dir)? {
        let in_templates = rel.components().any(|c| c.as_os_str() == "templates");
        let is_tpl = rel.extension().is_some_and(|e| e == "tpl");
        if !in_templates && !is_tpl {
            continue;
        }
        let text = fs_err::read_to_string(dir.join(&rel))?;
        for (line, function) in calls(&text) {
            if is_nondeterministic(&function) {
                findings.push(Finding {
                    file: rel.display().to_string(),
                    line,
                    function,
                });
            }
        }
    }
    Ok(findings)
}

/// Identifiers called as functions inside `{{ … }}` actions, with their line numbers.
/// String literals, comments, fields (`.x`) and variables (`$x`) are skipped.
fn calls(text: &str) -> Vec<(usize, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            line += 1;
        }
        if !(bytes[i] == b'{' && bytes.get(i + 1) == Some(&b'{')) {
            i += 1;
            continue;
        }
        i += 2;
        while i < bytes.len() && !(bytes[i] == b'}' && bytes.get(i + 1) == Some(&b'}')) {
            let b = bytes[i];
            match b {
                b'\n' => {
                    line += 1;
                    i += 1;
                }
                b'"' | b'`' | b'\'' => {
                    let quote = b;
                    i += 1;
                    while i < bytes.len() && bytes[i] != quote {
                        if bytes[i] == b'\\' && quote == b'"' {
                            i += 1;
                        }
                        if bytes.get(i) == Some(&b'\n') {
                            line += 1;
                        }
                        i += 1;
                    }
                    i += 1;
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                        if bytes[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    i += 2;
                }
                b if b.is_ascii_alphabetic() || b == b'_' => {
                    let start = i;
                    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                        i += 1;
                    }
                    let prev = start.checked_sub(1).map(|p| bytes[p]);
                    if !matches!(prev, Some(b'.') | Some(b'$')) {
                        out.push((line, text[start..i].to_owned()));
                    }
                }
                _ => i += 1,
            }
        }
        i += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_calls_with_lines_and_skips_strings_and_fields() {
        let t = "a: {{ .Values.now }}\nb: {{ now | date \"2006\" }}\nc: {{ include \"x.randAlpha\" . }}\n{{- $g := genCA \"x\" 3 -}}\nd: {{ .Values.general }}\n";
        let found: Vec<_> = calls(t).into_iter().filter(|(_, f)| is_nondeterministic(f)).collect();
        assert_eq!(found, vec![(2, "now".to_owned()), (4, "genCA".to_owned())]);
    }

    #[test]
    fn classifies_functions() {
        for f in [
            "lookup",
            "now",
            "randAlphaNum",
            "randBytes",
            "uuidv4",
            "genPrivateKey",
            "genSignedCert",
        ] {
            assert!(is_nondeterministic(f), "{f}");
        }
        for f in ["general", "random", "include", "toYaml", "b64enc", "randomize"] {
            assert!(!is_nondeterministic(f), "{f}");
        }
    }

    #[test]
    fn packing_is_deterministic_and_ignores_mtimes() {
        let a = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("templates")).unwrap();
        std::fs::write(a.path().join("Chart.yaml"), "name: x\nversion: 1.0.0\n").unwrap();
        std::fs::write(a.path().join("templates/cm.yaml"), "kind: ConfigMap\n").unwrap();
        let first = pack(a.path(), "x").unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(a.path().join("Chart.yaml"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345))
            .unwrap();
        assert_eq!(pack(a.path(), "x").unwrap(), first);
    }
}
