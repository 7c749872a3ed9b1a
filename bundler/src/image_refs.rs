//! Which images the render uses, compared with the images the spec lists.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use regex::Regex;
use schemas::spec::{ImageLocation, ImageSpec};
use serde_json::Value;

use crate::render::Document;

/// Where a pod spec sits in each workload kind.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            Some("/spec/template/spec")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// An image reference found in the render.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Use {
    pub image: String,
    pub document: usize,
    pub pointer: String,
    pub source: String,
}

/// What the render references, and which strings anywhere in it name a spec image.
#[derive(Debug, Default)]
pub struct Report {
    /// Image references at known image locations.
    pub uses: Vec<Use>,
    /// Every string scalar equal to or containing a spec image name.
    pub mentions: Vec<Use>,
    /// Referenced images the spec does not list.
    pub missing: BTreeSet<String>,
    /// Spec images the render never mentions.
    pub unused: BTreeSet<String>,
}

/// Resolves `*` segments of a JSON pointer against `value`.
fn expand<'a>(value: &'a Value, pointer: &str) -> Vec<(String, &'a Value)> {
    let mut current = vec![(String::new(), value)];
    for seg in pointer.split('/').skip(1) {
        let mut next = Vec::new();
        for (p, v) in current {
            if seg == "*" {
                match v {
                    Value::Array(a) => next.extend(a.iter().enumerate().map(|(i, x)| (format!("{p}/{i}"), x))),
                    Value::Object(m) => next.extend(m.iter().map(|(k, x)| (format!("{p}/{k}"), x))),
                    _ => {}
                }
            } else {
                let key = seg.replace("~1", "/").replace("~0", "~");
                let child = match v {
                    Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                    Value::Object(m) => m.get(&key),
                    _ => None,
                };
                if let Some(c) = child {
                    next.push((format!("{p}/{seg}"), c));
                }
            }
        }
        current = next;
    }
    current
}

struct Compiled<'a> {
    loc: &'a ImageLocation,
    args: Vec<Regex>,
    env: Vec<Regex>,
}

/// Analyses the render against the spec's images and extra image locations.
pub fn analyse(docs: &[Document], images: &[ImageSpec], locations: &[ImageLocation]) -> Result<Report> {
    let compiled = locations
        .iter()
        .map(|loc| {
            let re =
                |p: &String| Regex::new(p).with_context(|| format!("image location pattern {p:?} for {}", loc.kind));
            Ok(Compiled {
                loc,
                args: loc.arg_patterns.iter().map(re).collect::<Result<_>>()?,
                env: loc.env_patterns.iter().map(re).collect::<Result<_>>()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let names: BTreeSet<&str> = images.iter().map(|i| i.name.as_str()).collect();
    let mut report = Report::default();
    for (i, doc) in docs.iter().enumerate() {
        let mut push = |image: &str, pointer: String| {
            report.uses.push(Use {
                image: image.to_owned(),
                document: i,
                pointer,
                source: doc.source.clone(),
            });
        };
        let matching: Vec<&Compiled<'_>> = compiled
            .iter()
            .filter(|c| c.loc.kind == doc.kind() && c.loc.api_version.as_deref().is_none_or(|a| a == doc.api_version()))
            .collect();
        if let Some(pod) = pod_spec_pointer(doc.kind()) {
            for list in CONTAINER_LISTS {
                for (p, c) in expand(&doc.object, &format!("{pod}/{list}/*")) {
                    if let Some(img) = c.get("image").and_then(Value::as_str) {
                        push(img, format!("{p}/image"));
                    }
                }
            }
        }
        for c in &matching {
            for ptr in &c.loc.pointers {
                for (p, v) in expand(&doc.object, ptr) {
                    if let Some(s) = v.as_str() {
                        push(s, p);
                    }
                }
            }
            if c.args.is_empty() && c.env.is_empty() {
                continue;
            }
            let mut strings = Vec::new();
            collect_strings(&doc.object, String::new(), &mut strings);
            for (p, s) in strings {
                let is_arg = p.contains("/args/") || p.contains("/command/");
                let is_env = p.contains("/env/") && p.ends_with("/value");
                let patterns = if is_arg {
                    &c.args
                } else if is_env {
                    &c.env
                } else {
                    continue;
                };
                for re in patterns {
                    for cap in re.captures_iter(s) {
                        if let Some(m) = cap.get(1) {
                            push(m.as_str(), p.clone());
                        }
                    }
                }
            }
        }
        let mut strings = Vec::new();
        collect_strings(&doc.object, String::new(), &mut strings);
        for (p, s) in strings {
            for name in &names {
                if s.contains(name) {
                    report.mentions.push(Use {
                        image: (*name).to_owned(),
                        document: i,
                        pointer: p.clone(),
                        source: doc.source.clone(),
                    });
                }
            }
        }
    }
    report.uses.sort();
    report.uses.dedup();
    report.missing = report
        .uses
        .iter()
        .map(|u| u.image.clone())
        .filter(|i| !names.contains(i.as_str()))
        .collect();
    let mentioned: BTreeSet<&str> = report.mentions.iter().map(|u| u.image.as_str()).collect();
    report.unused = names
        .iter()
        .filter(|n| !mentioned.contains(*n))
        .map(|n| (*n).to_owned())
        .collect();
    Ok(report)
}

fn collect_strings<'a>(v: &'a Value, pointer: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((pointer, s)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| collect_strings(x, format!("{pointer}/{i}"), out)),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| collect_strings(x, format!("{pointer}/{k}"), out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::parse;

    #[test]
    fn finds_pod_images_custom_locations_and_missing_ones() {
        let out = "---\n# Source: a/templates/d.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: i\n        image: quay.io/x/init:1\n      containers:\n      - name: c\n        image: quay.io/x/app:1\n        args: [\"--sidecar=quay.io/x/side:1\"]\n---\n# Source: a/templates/cr.yaml\napiVersion: x.dev/v1\nkind: Db\nmetadata:\n  name: db\nspec:\n  engines:\n  - image: quay.io/x/db:1\n";
        let docs = parse(out).unwrap();
        let images: Vec<ImageSpec> = ["quay.io/x/app:1", "quay.io/x/db:1", "quay.io/x/unused:1"]
            .iter()
            .map(|n| ImageSpec {
                name: n.parse().unwrap(),
                source: None,
                target: None,
                platforms: vec![],
            })
            .collect();
        let locs = vec![
            ImageLocation {
                api_version: None,
                kind: "Db".into(),
                pointers: vec!["/spec/engines/*/image".into()],
                arg_patterns: vec![],
                env_patterns: vec![],
            },
            ImageLocation {
                api_version: None,
                kind: "Deployment".into(),
                pointers: vec![],
                arg_patterns: vec!["--sidecar=(\\S+)".into()],
                env_patterns: vec![],
            },
        ];
        let r = analyse(&docs, &images, &locs).unwrap();
        let used: BTreeSet<&str> = r.uses.iter().map(|u| u.image.as_str()).collect();
        assert_eq!(
            used,
            BTreeSet::from([
                "quay.io/x/init:1",
                "quay.io/x/app:1",
                "quay.io/x/side:1",
                "quay.io/x/db:1"
            ])
        );
        assert_eq!(
            r.missing,
            BTreeSet::from(["quay.io/x/init:1".to_owned(), "quay.io/x/side:1".to_owned()])
        );
        assert_eq!(r.unused, BTreeSet::from(["quay.io/x/unused:1".to_owned()]));
        assert!(
            r.mentions
                .iter()
                .any(|m| m.image == "quay.io/x/db:1" && m.pointer == "/spec/engines/0/image")
        );
    }
}
