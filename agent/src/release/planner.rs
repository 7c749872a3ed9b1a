//! Verify and Render: from a stored bundle and the site's values to the plan's objects and
//! Jobs, in memory. Nothing here writes to the cluster.

use std::collections::BTreeMap;

use schemas::Manifest;
use schemas::policy::Policy;
use schemas::release::{StepKind, StepPhase};
use schemas::verified::{Metadata, VerifiedHead};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::persist;
use crate::release::engine::Engine;
use crate::release::history::{AppliedObject, Revision};
use crate::release::jobs::{self, JobContext};
use crate::release::operation::{Operation, OperationKind, Plan, PlannedJob};
use crate::release::render::{self, HookEvent, Stage};
use crate::release::values::{self, GeneratedValues, SiteValues};

/// The wave of Namespaces and CRDs, applied before the bundle's waves.
pub const CLUSTER_WAVE: &str = "cluster";

/// A bundle verified for this operation, with its metadata.
pub struct Verified {
    pub head: VerifiedHead,
    pub metadata: Metadata,
}

/// `release/site.json`: the admin's settings and the values generated for this site.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteState {
    #[serde(default)]
    pub values: SiteValues,
    #[serde(default)]
    pub generated: GeneratedValues,
}

pub fn site_path(engine: &Engine) -> std::path::PathBuf {
    engine.agent.store.dir().join("release").join("site.json")
}

pub fn load_site(engine: &Engine) -> std::io::Result<SiteState> {
    Ok(persist::read_json(&site_path(engine))?.unwrap_or_default())
}

pub fn save_site(engine: &Engine, site: &SiteState) -> std::io::Result<()> {
    persist::write_json(&site_path(engine), site)
}

/// Verifies the stored bundle's head and metadata against the trust state, with the gates of
/// this operation: install window and minimum sequence for install and upgrade, integrity and
/// signatures only for a rollback.
pub fn verify(engine: &Engine, op: &Operation) -> Result<Verified, String> {
    let stored = engine
        .agent
        .store
        .get(&op.bundle)
        .ok_or_else(|| format!("bundle {} of {} is no longer in the store", op.bundle, op.version))?;
    if let Some(c) = &stored.corrupt {
        return Err(format!("the stored bundle of {} is corrupt: {c}", op.version));
    }
    let trust = engine.agent.trust_state();
    let path = engine.agent.store.path_of(&op.bundle);
    let (head, metadata) = schemas::inspect::read_metadata(&path, trust.trusted_roots()).map_err(|e| {
        format!(
            "the stored bundle of {} does not verify: {}",
            op.version,
            crate::error_chain(&e)
        )
    })?;
    if head.identity() != op.bundle {
        return Err(format!("the stored bundle of {} has another identity", op.version));
    }
    let rollback = matches!(op.kind, OperationKind::Rollback | OperationKind::Uninstall);
    if rollback {
        // Expiry and minSequence do not bound a rollback; say so when they would have.
        let strict = Policy {
            product: None,
            min_sequence: trust.min_sequence,
            now: Some(engine.agent.now()),
            check_expiry: true,
            clock_floor: None,
            skew_seconds: engine.agent.config.skew_seconds(),
        };
        if let Err(e) = strict.check(head.manifest()) {
            engine.agent.record(
                &op.requested_by,
                op.kind.as_str(),
                Some(op.version.clone()),
                "warning",
                Some(e.code()),
                Some(format!("{} is used although {}", op.version, crate::error_chain(&e))),
            );
        }
    }
    if stored.restore_only && !rollback {
        return Err(format!(
            "{} was imported only as a restore target (it is expired); it cannot be installed",
            op.version
        ));
    }
    let policy = Policy {
        product: Some(engine.agent.config.trust.product.clone()),
        min_sequence: if rollback { 0 } else { trust.min_sequence },
        now: (!rollback).then(|| engine.agent.now()),
        check_expiry: !rollback,
        clock_floor: None,
        skew_seconds: engine.agent.config.skew_seconds(),
    };
    policy
        .check(head.manifest())
        .map_err(|e| format!("{} cannot be installed: {}", op.version, crate::error_chain(&e)))?;
    Ok(Verified { head, metadata })
}

/// The manifest of the operation's bundle (head re-verified).
pub fn manifest_of(engine: &Engine, op: &Operation) -> Result<Manifest, String> {
    let trust = engine.agent.trust_state();
    let path = engine.agent.store.path_of(&op.bundle);
    let (head, _) = schemas::inspect::read_metadata(&path, trust.trusted_roots()).map_err(|e| {
        format!(
            "the stored bundle of {} does not verify: {}",
            op.version,
            crate::error_chain(&e)
        )
    })?;
    Ok(head.manifest().clone())
}

/// `<pull host>/<prefix>/<target>@sha256:…` for every image the chart names.
pub fn image_map(engine: &Engine, manifest: &Manifest) -> render::ImageMap {
    let prefix = engine
        .agent
        .config
        .registry
        .path_prefix
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .unwrap_or("");
    manifest
        .images
        .iter()
        .map(|i| {
            let repository = if prefix.is_empty() {
                i.target.to_string()
            } else {
                format!("{prefix}/{}", i.target)
            };
            (
                i.name.clone(),
                format!("{}/{repository}@{}", engine.cfg.pull_host, i.digest),
            )
        })
        .collect()
}

fn step_applies(step: &schemas::release::Step, op: &Operation, from: Option<&str>) -> bool {
    let install = op.kind == OperationKind::Install;
    let phase_ok = match step.phase {
        StepPhase::PreInstall | StepPhase::PostInstall => install,
        StepPhase::PreUpgrade | StepPhase::PostUpgrade => !install,
        StepPhase::Backup | StepPhase::Restore => false,
    };
    if step.kind != StepKind::Migration || !phase_ok {
        return false;
    }
    let matches = |range: &Option<String>, version: Option<&str>| match (range, version) {
        (None, _) => true,
        (Some(r), Some(v)) => match (semver::VersionReq::parse(r), semver::Version::parse(v)) {
            (Ok(req), Ok(ver)) => req.matches(&ver),
            _ => false,
        },
        (Some(_), None) => false,
    };
    matches(&step.from_versions, from) && matches(&step.to_versions, Some(&op.version))
}

/// Renders the bundle for this site into the plan (objects by wave, step Jobs, hooks).
pub async fn render(
    engine: &Engine,
    op: &Operation,
    verified: &Verified,
    previous: Option<&Revision>,
) -> Result<Plan, String> {
    let manifest = verified.head.manifest();
    let site = load_site(engine).map_err(|e| e.to_string())?;
    let previous_variables = match previous {
        Some(p) => {
            let path = engine.agent.store.path_of(&p.bundle);
            schemas::inspect::read_metadata(&path, engine.agent.trust_state().trusted_roots())
                .ok()
                .map(|(_, m)| m.variables)
        }
        None => None,
    };
    let secrets = fetch_secrets(engine, &site.values).await;
    let lookup = |secret: &str, key: &str| -> Result<Option<String>, String> {
        match secrets.get(&(secret.to_owned(), key.to_owned())) {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(None),
        }
    };
    let resolved = values::resolve(
        &verified.metadata.variables,
        previous_variables.as_ref(),
        &site.values,
        &lookup,
        &site.generated,
    )
    .map_err(|e| e.to_string())?;
    let namespace = engine
        .cfg
        .app_namespace
        .clone()
        .unwrap_or_else(|| verified.metadata.variables.namespace.default.clone());
    let images = image_map(engine, manifest);
    let rendered = render::render(&verified.metadata, manifest, resolved.values(), &namespace, &images)
        .map_err(|e| e.to_string())?;
    let signed = render::signed_documents(&verified.metadata.render).map_err(|e| e.to_string())?;
    let mut differences = Vec::new();
    for o in &rendered.objects {
        if let Some(original) = signed.get(o.document as usize) {
            let mut paths = Vec::new();
            diff_pointers(&original.object, &o.object, String::new(), &mut paths);
            for p in paths {
                differences.push(format!("{} {}: {p}", o.kind, o.name));
            }
        }
    }

    // Scopes of kinds this bundle's CRDs define (the cluster may not serve them yet).
    let crd_scopes: BTreeMap<String, bool> = rendered
        .objects
        .iter()
        .filter(|o| o.kind == "CustomResourceDefinition")
        .filter_map(|o| {
            let kind = o.object.pointer("/spec/names/kind")?.as_str()?.to_owned();
            let namespaced = o.object.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
            Some((kind, namespaced))
        })
        .collect();
    let mut cluster_wave = Vec::new();
    let mut by_wave: BTreeMap<String, Vec<AppliedObject>> = BTreeMap::new();
    let mut jobs_out = Vec::new();
    let install = op.kind == OperationKind::Install;
    for o in rendered.objects {
        let mut object = o.object.clone();
        set_namespace(engine, &mut object, &namespace, &crd_scopes).await?;
        if let Some(hook) = &o.hook {
            let wanted = if install {
                [HookEvent::PreInstall, HookEvent::PostInstall]
            } else {
                [HookEvent::PreUpgrade, HookEvent::PostUpgrade]
            };
            for (phase, event) in [("pre", wanted[0]), ("post", wanted[1])] {
                if hook.events.contains(&event) {
                    jobs_out.push(PlannedJob {
                        id: format!("{}-{}", o.kind.to_lowercase(), o.name),
                        phase: phase.to_owned(),
                        weight: hook.weight,
                        object: object.clone(),
                        down: None,
                        reversible: false,
                        delete_policies: hook.delete_policies.iter().map(|p| p.as_str().to_owned()).collect(),
                        hook: true,
                    });
                }
            }
            continue;
        }
        if matches!(o.stage, Stage::Namespace | Stage::CustomResourceDefinition) {
            cluster_wave.push(AppliedObject {
                wave: CLUSTER_WAVE.to_owned(),
                object,
            });
        } else {
            by_wave
                .entry(o.wave.clone())
                .or_default()
                .push(AppliedObject { wave: o.wave, object });
        }
    }
    let mut waves = Vec::new();
    let mut objects = Vec::new();
    if !cluster_wave.is_empty() {
        waves.push(CLUSTER_WAVE.to_owned());
        objects.extend(cluster_wave);
    }
    for w in &verified.metadata.migrations.waves {
        if let Some(list) = by_wave.remove(&w.name) {
            waves.push(w.name.clone());
            objects.extend(list);
        }
    }
    for (name, list) in by_wave {
        waves.push(name);
        objects.extend(list);
    }

    let from = previous.map(|p| p.version.clone());
    let mut env = Vec::new();
    if let Some(url) = &engine.cfg.agent_url {
        env.push(schemas::release::EnvVar {
            name: "SEALIFT_AGENT_URL".into(),
            value: url.clone(),
        });
    }
    for step in &verified.metadata.migrations.steps {
        if !step_applies(step, op, from.as_deref()) {
            continue;
        }
        let image = images
            .get(&step.image)
            .cloned()
            .ok_or_else(|| format!("step {}: image {} is not in the bundle", step.id, step.image))?;
        let ctx = JobContext {
            namespace: &namespace,
            release: &verified.metadata.variables.release_name,
            revision: op.revision,
            image,
            env: env.clone(),
        };
        let phase = match step.phase {
            StepPhase::PreInstall | StepPhase::PreUpgrade => "pre",
            _ => "post",
        };
        let object = jobs::migration_job(step, &ctx, false).ok_or("no job")?;
        jobs_out.push(PlannedJob {
            id: step.id.to_string(),
            phase: phase.to_owned(),
            weight: 0,
            object,
            down: if step.reversible {
                jobs::migration_job(step, &ctx, true)
            } else {
                None
            },
            reversible: step.reversible,
            delete_policies: vec![],
            hook: false,
        });
    }
    let generated = resolved
        .new_generated()
        .0
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Ok(Plan {
        namespace,
        objects,
        waves,
        jobs: jobs_out,
        differences,
        generated,
    })
}

/// Fetches every Secret key the site's settings refer to.
async fn fetch_secrets(
    engine: &Engine,
    site: &SiteValues,
) -> BTreeMap<(String, String), Result<Option<String>, String>> {
    use k8s_openapi::api::core::v1::Secret;
    let api: kube::Api<Secret> = kube::Api::namespaced(engine.cluster.client().clone(), &engine.cfg.namespace);
    let mut out = BTreeMap::new();
    for v in site.0.values() {
        if let values::SiteValue::FromSecret(r) = v {
            let value = match api.get_opt(&r.secret).await {
                Ok(Some(s)) => Ok(s
                    .data
                    .and_then(|d| d.get(&r.key).map(|b| String::from_utf8_lossy(&b.0).into_owned()))),
                Ok(None) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            out.insert((r.secret.clone(), r.key.clone()), value);
        }
    }
    out
}

/// Puts a namespaced object without a namespace into the application namespace.
async fn set_namespace(
    engine: &Engine,
    object: &mut Value,
    namespace: &str,
    crd_scopes: &BTreeMap<String, bool>,
) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap_or("").to_owned();
    let kind = object["kind"].as_str().unwrap_or("").to_owned();
    let has_namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).is_some();
    if has_namespace {
        return Ok(());
    }
    let namespaced = engine
        .cluster
        .is_namespaced(&api_version, &kind)
        .await
        .map_err(|e| e.to_string())?
        .or_else(|| crd_scopes.get(&kind).copied())
        .unwrap_or(true);
    if namespaced {
        object["metadata"]["namespace"] = Value::String(namespace.to_owned());
    }
    Ok(())
}

/// JSON pointers where `after` differs from `before` (values are not shown: some are secret).
fn diff_pointers(before: &Value, after: &Value, at: String, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                let next = format!("{at}/{escaped}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_pointers(x, y, next, out),
                    _ => out.push(next),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_pointers(x, y, format!("{at}/{i}"), out);
            }
        }
        (x, y) if x != y => out.push(if at.is_empty() { "/".to_owned() } else { at }),
        _ => {}
    }
}

/// The plan of a rollback (a recorded revision's manifests, offline from the store) or of an
/// uninstall (nothing to apply; the current inventory is pruned).
pub fn from_history(engine: &Engine, op: &Operation, current: Option<&Revision>) -> Result<Plan, String> {
    let namespace_of = |r: &Revision| {
        r.applied
            .iter()
            .find_map(|a| a.object.pointer("/metadata/namespace").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned()
    };
    if op.kind == OperationKind::Uninstall {
        return Ok(Plan {
            namespace: current.map(namespace_of).unwrap_or_default(),
            ..Default::default()
        });
    }
    let n = op.source_revision.ok_or("a rollback without a source revision")?;
    let source = engine
        .history
        .get(n)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("revision {n} is not recorded"))?;
    let mut jobs_out = Vec::new();
    if let Some(cur) = current {
        let irreversible = cur.irreversible_ran();
        if !irreversible.is_empty() {
            return Err(format!(
                "revision {} ran the irreversible migration(s) {}; rolling back needs a restore of the backup taken before it",
                cur.revision,
                irreversible.join(", ")
            ));
        }
        for (id, down) in cur.down_steps() {
            jobs_out.push(PlannedJob {
                id: format!("{id}-down"),
                phase: "pre".into(),
                weight: 0,
                object: down,
                down: None,
                reversible: false,
                delete_policies: vec![],
                hook: false,
            });
        }
    }
    let mut waves: Vec<String> = Vec::new();
    for a in &source.applied {
        if !waves.contains(&a.wave) {
            waves.push(a.wave.clone());
        }
    }
    // Reverse wave order, except that Namespaces and CRDs still come first.
    waves.reverse();
    if let Some(i) = waves.iter().position(|w| w == CLUSTER_WAVE) {
        let w = waves.remove(i);
        waves.insert(0, w);
    }
    Ok(Plan {
        namespace: namespace_of(&source),
        objects: source.applied.clone(),
        waves,
        jobs: jobs_out,
        differences: source.differences.clone(),
        generated: BTreeMap::new(),
    })
}
