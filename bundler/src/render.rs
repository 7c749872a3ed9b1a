//! The output of `helm template`: one document per `---` / `# Source:` block.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One rendered object and the template it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `chart/templates/file.yaml` as Helm names it.
    pub source: String,
    /// The document's text exactly as Helm printed it (without the `---` and `# Source:` lines).
    pub text: String,
    /// The parsed object.
    pub object: Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.object.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.object.get("apiVersion").and_then(Value::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.object.get("metadata")?.get("annotations")?.get(key)?.as_str()
    }
    pub fn labels(&self) -> Option<&serde_json::Map<String, Value>> {
        self.object.get("metadata")?.get("labels")?.as_object()
    }
    /// A test hook (`helm.sh/hook: test` or the legacy `test-success`/`test-failure`).
    pub fn is_test_hook(&self) -> bool {
        self.annotation("helm.sh/hook").is_some_and(|h| {
            h.split(',')
                .any(|p| matches!(p.trim(), "test" | "test-success" | "test-failure"))
        })
    }
    /// `kind/name` from `source`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {} (from {})", self.kind(), self.name(), self.source)
    }
}

/// Parses `helm template` output of Helm v3 or v4.
pub fn parse(output: &str) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for (i, block) in split(output).into_iter().enumerate() {
        let (source, text) = block;
        let Some(source) = source else {
            if text.trim().is_empty() {
                continue;
            }
            bail!("document {} of the helm output has no `# Source:` line", i + 1);
        };
        if source.ends_with("NOTES.txt") {
            continue;
        }
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let object: Value = serde_saphyr::from_str(&text)
            .with_context(|| format!("cannot parse the document rendered from {source}"))?;
        if !object.is_object() {
            bail!("the document rendered from {source} is not a Kubernetes object");
        }
        docs.push(Document {
            source: source.to_owned(),
            text,
            object,
        });
    }
    Ok(docs)
}

/// Splits on `---` lines; each block's `# Source:` line is taken out.
fn split(output: &str) -> Vec<(Option<&str>, String)> {
    let mut blocks = Vec::new();
    let mut source = None;
    let mut text = String::new();
    let mut started = false;
    for line in output.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" {
            if started {
                blocks.push((source.take(), std::mem::take(&mut text)));
            }
            started = true;
            continue;
        }
        started = true;
        if source.is_none()
            && text.is_empty()
            && let Some(s) = bare.strip_prefix("# Source: ")
        {
            source = Some(s);
            continue;
        }
        text.push_str(line);
    }
    if started {
        blocks.push((source, text));
    }
    blocks
}

/// Prints documents as Helm does, for the bundle's `sealift/rendered.yaml`.
pub fn print(docs: &[Document]) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n# Source: ");
        out.push_str(&d.source);
        out.push('\n');
        out.push_str(&d.text);
        if !d.text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "---\n# Source: app/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n---\n# Source: app/templates/b.yaml\napiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations:\n    helm.sh/hook: test\n---\n# Source: app/templates/empty.yaml\n# only a comment\n";

    #[test]
    fn parses_helm_output_and_round_trips() {
        let docs = parse(OUTPUT).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].source, "app/templates/a.yaml");
        assert_eq!(docs[0].kind(), "ConfigMap");
        assert!(docs[1].is_test_hook());
        let again = parse(&print(&docs)).unwrap();
        assert_eq!(again, docs);
    }

    #[test]
    fn parses_helm_v3_and_v4_layouts_alike() {
        // Helm v3 and v4.0/4.1: documents back to back. Helm v4.2: a blank line before `---`.
        let v3 = "---\n# Source: c/crds/w.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: w\n---\n# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: |\n    line\n";
        let v4 = "---\n# Source: c/crds/w.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: w\n\n---\n# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: |\n    line\n\n";
        let (a, b) = (parse(v3).unwrap(), parse(v4).unwrap());
        assert_eq!(a.len(), 2);
        let objects = |d: &[Document]| {
            d.iter()
                .map(|x| (x.source.clone(), x.object.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(objects(&a), objects(&b));
        assert_eq!(a[0].source, "c/crds/w.yaml");
    }

    #[test]
    fn refuses_document_without_source() {
        let err = parse("---\napiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(err.to_string().contains("no `# Source:` line"), "{err}");
    }
}
