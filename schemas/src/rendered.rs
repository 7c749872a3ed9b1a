//! `sealift/rendered.yaml`: the chart's manifests as Helm rendered them. The bundler reads
//! `helm template` output with [`blocks`] and writes the bundle's copy with [`print`]; the agent
//! reads that copy back with [`blocks`]. One splitter on both sides keeps the document
//! indexes that slots and waves refer to the same.
//!
//! The format is Helm's (v3 and v4 alike): documents separated by `---` lines, each starting
//! with a `# Source: chart/templates/x.yaml` line. Blocks holding nothing but blank lines and
//! comments, and `NOTES.txt`, are not documents and take no index.

use serde_json::Value;

/// One document of rendered output, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Block<'a> {
    /// A Kubernetes object (a YAML mapping), its text as Helm printed it (without the `---`
    /// and `# Source:` lines) and the template it came from.
    Object {
        source: &'a str,
        text: String,
        object: Value,
    },
    /// A document that is not an object.
    Invalid { source: &'a str, error: InvalidDocument },
    /// Text without a `# Source:` line.
    NoSource,
}

/// Why a rendered document is not a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDocument {
    #[error("its YAML does not parse: {0}")]
    Parse(String),
    #[error("it is not a mapping")]
    NotAnObject,
}

/// The documents of rendered output.
pub fn blocks(output: &str) -> Vec<Block<'_>> {
    split(output)
        .into_iter()
        .filter_map(|(source, text)| {
            let Some(source) = source else {
                return (!text.trim().is_empty()).then_some(Block::NoSource);
            };
            let only_comments = text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
            if source.ends_with("NOTES.txt") || only_comments {
                return None;
            }
            Some(match serde_saphyr::from_str::<Value>(&text) {
                Ok(object) if object.is_object() => Block::Object { source, text, object },
                Ok(_) => Block::Invalid {
                    source,
                    error: InvalidDocument::NotAnObject,
                },
                Err(e) => Block::Invalid {
                    source,
                    error: InvalidDocument::Parse(e.to_string()),
                },
            })
        })
        .collect()
}

/// Prints `(source, text)` documents as Helm does.
pub fn print<'a>(documents: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (source, text) in documents {
        out.push_str("---\n# Source: ");
        out.push_str(source);
        out.push('\n');
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Splits on `---` lines; each block's leading `# Source:` line is taken out.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn objects(output: &str) -> Vec<(&str, Value)> {
        blocks(output)
            .into_iter()
            .map(|b| match b {
                Block::Object { source, object, .. } => (source, object),
                other => panic!("not an object: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn comments_and_notes_are_not_documents_and_printing_round_trips() {
        let output = "---\n# Source: app/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# Source: app/templates/empty.yaml\n# only a comment\n\n---\n# Source: app/templates/NOTES.txt\nThank you\n---\n# Source: app/templates/b.yaml\nkind: Pod\n";
        let found = blocks(output);
        assert_eq!(found.len(), 2);
        let texts: Vec<(&str, &str)> = found
            .iter()
            .map(|b| match b {
                Block::Object { source, text, .. } => (*source, text.as_str()),
                other => panic!("not an object: {other:?}"),
            })
            .collect();
        assert_eq!(texts[1], ("app/templates/b.yaml", "kind: Pod\n"));
        assert_eq!(blocks(&print(texts.iter().copied())), found);
    }

    #[test]
    fn helm_v3_and_v4_layouts_read_alike() {
        // Helm v3 and v4.0/4.1: documents back to back. Helm v4.2: a blank line before `---`.
        let v3 = "---\n# Source: c/crds/w.yaml\nkind: CustomResourceDefinition\nmetadata:\n  name: w\n---\n# Source: c/templates/cm.yaml\nkind: ConfigMap\ndata:\n  k: |\n    line\n";
        let v4 = "---\n# Source: c/crds/w.yaml\nkind: CustomResourceDefinition\nmetadata:\n  name: w\n\n---\n# Source: c/templates/cm.yaml\nkind: ConfigMap\ndata:\n  k: |\n    line\n\n";
        assert_eq!(objects(v3), objects(v4));
        assert_eq!(objects(v3)[1].1["data"]["k"], "line\n");
    }

    #[test]
    fn documents_that_are_not_objects_are_named() {
        let found = blocks(
            "---\nkind: ConfigMap\n---\n# Source: c/a.yaml\n- a list\n---\n# Source: c/b.yaml\nkind: [unclosed\n---\n\n",
        );
        assert_eq!(found[0], Block::NoSource);
        assert_eq!(
            found[1],
            Block::Invalid {
                source: "c/a.yaml",
                error: InvalidDocument::NotAnObject
            }
        );
        assert!(matches!(
            &found[2],
            Block::Invalid {
                source: "c/b.yaml",
                error: InvalidDocument::Parse(_)
            }
        ));
        assert_eq!(found.len(), 3, "a blank block is no document");
    }
}
