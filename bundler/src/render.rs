//! The output of `helm template`: one document per `---` / `# Source:` block.

use anyhow::{Result, bail};
use schemas::rendered::{self, Block};
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

/// Parses `helm template` output of Helm v3 or v4 (see [`schemas::rendered`]).
pub fn parse(output: &str) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for (i, block) in rendered::blocks(output).into_iter().enumerate() {
        match block {
            Block::Object { source, text, object } => docs.push(Document {
                source: source.to_owned(),
                text,
                object,
            }),
            Block::Invalid { source, error } => {
                bail!("the document rendered from {source} is not a Kubernetes object: {error}")
            }
            Block::NoSource => bail!("document {} of the helm output has no `# Source:` line", i + 1),
        }
    }
    Ok(docs)
}

/// Prints documents as Helm does, for the bundle's `sealift/rendered.yaml`.
pub fn print(docs: &[Document]) -> String {
    rendered::print(docs.iter().map(|d| (d.source.as_str(), d.text.as_str())))
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
    fn refuses_document_without_source() {
        let err = parse("---\napiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(err.to_string().contains("no `# Source:` line"), "{err}");
    }
}
