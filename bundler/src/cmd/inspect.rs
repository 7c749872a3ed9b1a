//! `sealift-bundler inspect`: what a bundle holds, from its head and metadata only.

use std::path::PathBuf;

use anyhow::Result;
use schemas::VerifiedHead;
use schemas::inspect::{UnverifiedHead, read_metadata};
use schemas::verified::Metadata;
use serde_json::json;

use super::verify::Format;
use crate::trust::RootDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub file: PathBuf,
    /// Verify the head against this root directory; without it the output is labelled
    /// UNTRUSTED (checked only against the chain the bundle carries).
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> Result<()> {
    let unverified;
    let owned;
    let (head, metadata, trust) = match &args.root_dir {
        Some(dir) => {
            let roots = RootDir::load(dir)?;
            owned = read_metadata(&args.file, roots.trusted()?)?;
            (&owned.0, &owned.1, "trusted")
        }
        None => {
            unverified = UnverifiedHead::read(&args.file)?;
            (
                unverified.untrusted_head(),
                unverified.untrusted_metadata(),
                "UNTRUSTED (no root given)",
            )
        }
    };
    let summary = describe(head, metadata, trust);
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&summary)?)?,
        Format::Text => print_text(&summary)?,
    }
    Ok(())
}

fn describe(head: &VerifiedHead, meta: &Metadata, trust: &str) -> serde_json::Value {
    let m = head.manifest();
    json!({
        "trust": trust,
        "product": m.product,
        "version": m.version.to_string(),
        "identity": head.identity(),
        "sequence": m.sequence,
        "minSequence": m.min_sequence,
        "created": m.created,
        "expires": m.expires,
        "rootVersion": head.root_version(),
        "signers": head.signers(),
        "chart": m.chart,
        "images": m.images.iter().map(|i| json!({
            "name": i.name,
            "target": i.target,
            "tags": i.tags,
            "digest": i.digest,
            "sourceDigest": i.source_digest,
            "mediaType": i.media_type,
            "totalSize": i.total_size,
            "platforms": i.platforms,
        })).collect::<Vec<_>>(),
        "variables": meta.variables.variables.iter().map(|v| json!({
            "name": v.declaration.name,
            "type": v.declaration.ty,
            "description": v.declaration.description,
            "default": if v.declaration.sensitive { None } else { v.declaration.default.clone() },
            "required": v.declaration.required,
            "sensitive": v.declaration.sensitive,
            "generate": v.declaration.generate,
            "pattern": v.declaration.pattern,
            "slots": v.slots.len(),
        })).collect::<Vec<_>>(),
        "namespace": { "default": meta.variables.namespace.default, "slots": meta.variables.namespace.slots.len() },
        "releaseName": meta.variables.release_name,
        "steps": meta.migrations.steps.iter().map(|s| json!({
            "id": s.id, "kind": s.kind, "phase": s.phase, "image": s.image,
            "fromVersions": s.from_versions, "toVersions": s.to_versions, "reversible": s.reversible,
        })).collect::<Vec<_>>(),
        "upgradePolicy": meta.migrations.upgrade_policy,
        "waves": meta.migrations.waves.iter().map(|w| json!({ "name": w.name, "objects": w.documents.len() })).collect::<Vec<_>>(),
    })
}

fn print_text(s: &serde_json::Value) -> Result<()> {
    let get = |k: &str| {
        s.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    outln!("trust      {}", get("trust"))?;
    outln!("product    {}", get("product"))?;
    outln!(
        "version    {} (sequence {}, minSequence {})",
        get("version"),
        get("sequence"),
        get("minSequence")
    )?;
    outln!("identity   {}", get("identity"))?;
    outln!("created    {}  expires {}", get("created"), get("expires"))?;
    outln!("signers    {} (root version {})", get("signers"), get("rootVersion"))?;
    if let Some(c) = s.get("chart") {
        outln!(
            "chart      {} {} (appVersion {}), release {} in namespace {}, rendered by {} for {}",
            c["name"].as_str().unwrap_or(""),
            c["version"].as_str().unwrap_or(""),
            c["appVersion"].as_str().unwrap_or("-"),
            c["releaseName"].as_str().unwrap_or(""),
            c["namespace"].as_str().unwrap_or(""),
            c["helmVersion"].as_str().unwrap_or(""),
            c["kubeVersion"].as_str().unwrap_or("")
        )?;
    }
    outln!("images")?;
    for i in s["images"].as_array().into_iter().flatten() {
        let platforms: Vec<&str> = i["platforms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["platform"].as_str())
            .collect();
        outln!(
            "  {}  {}  {} bytes  {}",
            i["name"].as_str().unwrap_or(""),
            i["digest"].as_str().unwrap_or(""),
            i["totalSize"],
            if platforms.is_empty() {
                "single platform".to_owned()
            } else {
                platforms.join(",")
            }
        )?;
    }
    outln!("variables")?;
    for v in s["variables"].as_array().into_iter().flatten() {
        outln!(
            "  {} ({}){}{}{}  {} slot(s)  {}",
            v["name"].as_str().unwrap_or(""),
            v["type"].as_str().unwrap_or(""),
            if v["required"] == true { ", required" } else { "" },
            if v["sensitive"] == true { ", sensitive" } else { "" },
            if v["generate"].is_null() {
                ""
            } else {
                ", generated per site"
            },
            v["slots"],
            v["description"].as_str().unwrap_or("")
        )?;
    }
    outln!("steps")?;
    for st in s["steps"].as_array().into_iter().flatten() {
        outln!(
            "  {} {} ({}) image {}",
            st["id"].as_str().unwrap_or(""),
            st["kind"].as_str().unwrap_or(""),
            st["phase"].as_str().unwrap_or(""),
            st["image"].as_str().unwrap_or("")
        )?;
    }
    outln!("upgrade    {}", s["upgradePolicy"])?;
    let waves: Vec<String> = s["waves"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| format!("{} ({})", w["name"].as_str().unwrap_or(""), w["objects"]))
        .collect();
    outln!("waves      {}", waves.join(" → "))?;
    Ok(())
}
