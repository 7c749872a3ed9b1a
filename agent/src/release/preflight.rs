//! Preflight: every check that can fail before anything changes, writing nothing. Each
//! failure names exactly what is wrong; a missing permission comes with the RBAC to apply.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::release::crd_schema;
use crate::release::engine::Engine;
use crate::release::history::{ObjectKey, Revision};
use crate::release::operation::{Operation, OperationKind, Plan};
use crate::release::planner::Verified;
use crate::release::readiness::Assessment;
use crate::release::rollout;

/// Runs every check; the error lists every problem found.
pub async fn run(
    engine: &Engine,
    op: &Operation,
    verified: &Verified,
    plan: &Plan,
    previous: Option<&Revision>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Err(e) = upgrade_path(engine, op, verified, previous) {
        problems.push(e);
    }
    if let Err(e) = kube_version(engine, verified).await {
        problems.push(e);
    }
    if let Err(e) = served(engine, plan).await {
        problems.push(e);
    }
    if let Err(e) = permissions(engine, plan, previous).await {
        problems.push(e);
    }
    if problems.is_empty()
        && let Err(e) = dry_run(engine, plan, previous).await
    {
        problems.push(e);
    }
    // After a failed attempt left in place (rollback disabled), the cluster holds that
    // attempt: retrying or rolling forward is how it gets healthy, so health is not asked.
    let failed_attempt_in_place = engine
        .history
        .all()
        .map_err(|e| e.to_string())?
        .last()
        .is_some_and(|r| r.outcome == crate::release::history::Outcome::Failed);
    if let Some(prev) = previous
        && !op.flags.ignore_current_health
        && !failed_attempt_in_place
        && matches!(op.kind, OperationKind::Install | OperationKind::Upgrade)
        && let Err(e) = current_health(engine, prev).await
    {
        problems.push(e);
    }
    if let Err(e) = store_space(engine, plan) {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The operation writes its plan and then a revision of about the same size to the store.
fn store_space(engine: &Engine, plan: &Plan) -> Result<(), String> {
    let need = 2 * serde_json::to_vec(plan).map(|b| b.len() as u64).unwrap_or(0) + (1 << 20);
    let have = engine.agent.store.free_beyond_reserve().map_err(|e| e.to_string())?;
    if need > have {
        return Err(format!(
            "not enough space in the store for the plan and its revision: need {need} bytes, have {have} (free space minus the reserve)"
        ));
    }
    Ok(())
}

fn upgrade_path(
    engine: &Engine,
    op: &Operation,
    verified: &Verified,
    previous: Option<&Revision>,
) -> Result<(), String> {
    let Some(prev) = previous else { return Ok(()) };
    if op.kind == OperationKind::Rollback {
        return Ok(());
    }
    let from = semver::Version::parse(&prev.version).map_err(|e| e.to_string())?;
    let to = semver::Version::parse(&op.version).map_err(|e| e.to_string())?;
    if to < from && !op.flags.allow_downgrade {
        return Err(format!(
            "{to} is older than the current version {from}; a downgrade needs --allow-downgrade"
        ));
    }
    let policy = &verified.metadata.migrations.upgrade_policy;
    if to > from {
        if let Some(range) = &policy.upgrade_from {
            let req = semver::VersionReq::parse(range).map_err(|e| format!("upgradeFrom {range:?}: {e}"))?;
            if !req.matches(&from) {
                return Err(format!(
                    "{to} cannot be installed over {from}: it upgrades only from {range}"
                ));
            }
        }
        let installed: BTreeSet<String> = engine
            .history
            .all()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|r| r.outcome != crate::release::history::Outcome::Failed)
            .map(|r| r.version)
            .collect();
        for needed in &policy.required_intermediates {
            if *needed > from && *needed < to && !installed.contains(&needed.to_string()) {
                return Err(format!(
                    "{to} needs the intermediate release {needed} installed first (current: {from})"
                ));
            }
        }
    }
    Ok(())
}

async fn kube_version(engine: &Engine, verified: &Verified) -> Result<(), String> {
    let Some(range) = &verified.metadata.migrations.upgrade_policy.kube_versions else {
        return Ok(());
    };
    let git = engine.cluster.server_version().await.map_err(|e| e.to_string())?;
    let core = git.trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or(core);
    let version = semver::Version::parse(core).map_err(|e| format!("server version {git}: {e}"))?;
    let req = semver::VersionReq::parse(range).map_err(|e| format!("kubeVersions {range:?}: {e}"))?;
    if req.matches(&version) {
        Ok(())
    } else {
        Err(format!(
            "Kubernetes {git} is not supported by this release (supported: {range})"
        ))
    }
}

fn crd_kinds(plan: &Plan) -> BTreeSet<String> {
    plan.objects
        .iter()
        .filter(|o| o.object["kind"] == "CustomResourceDefinition")
        .filter_map(|o| {
            o.object
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

async fn served(engine: &Engine, plan: &Plan) -> Result<(), String> {
    let defined = crd_kinds(plan);
    let mut missing = BTreeSet::new();
    for o in &plan.objects {
        let (Some(av), Some(kind)) = (o.object["apiVersion"].as_str(), o.object["kind"].as_str()) else {
            continue;
        };
        if defined.contains(kind) {
            continue;
        }
        if engine
            .cluster
            .is_namespaced(av, kind)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
        {
            missing.insert(format!("{av} {kind}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the cluster does not serve {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// (group, resource, namespace) → verbs the plan needs.
type Needs = BTreeMap<(String, String, String), BTreeSet<&'static str>>;

async fn permissions(engine: &Engine, plan: &Plan, previous: Option<&Revision>) -> Result<(), String> {
    let mut needs: Needs = BTreeMap::new();
    let defined = crd_kinds(plan);
    let add = async |key: &ObjectKey, verbs: &[&'static str], needs: &mut Needs| {
        let resource = match engine.cluster.plural(&key.api_version, &key.kind).await {
            Some(p) => p,
            None if defined.contains(&key.kind) => return,
            None => format!("{}s", key.kind.to_lowercase()),
        };
        let e = needs
            .entry((key.group().to_owned(), resource, key.namespace.clone()))
            .or_default();
        e.extend(verbs.iter().copied());
    };
    for o in &plan.objects {
        if let Some(k) = ObjectKey::of(&o.object) {
            add(&k, &["get", "create", "patch", "delete"], &mut needs).await;
        }
    }
    for j in &plan.jobs {
        if let Some(k) = ObjectKey::of(&j.object) {
            add(&k, &["get", "create", "delete"], &mut needs).await;
        }
    }
    if let Some(prev) = previous {
        for k in prev.inventory() {
            add(&k, &["get", "delete"], &mut needs).await;
        }
    }
    let pods = ObjectKey {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: plan.namespace.clone(),
        name: String::new(),
    };
    add(&pods, &["list", "get"], &mut needs).await;

    let mut missing: Needs = BTreeMap::new();
    for ((group, resource, namespace), verbs) in &needs {
        for verb in verbs {
            let allowed = engine
                .cluster
                .can_i(verb, group, resource, namespace)
                .await
                .map_err(|e| e.to_string())?;
            if !allowed {
                missing
                    .entry((group.clone(), resource.clone(), namespace.clone()))
                    .or_default()
                    .insert(verb);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|((g, r, ns), verbs)| {
            let what = if g.is_empty() { r.clone() } else { format!("{r}.{g}") };
            let where_ = if ns.is_empty() {
                "cluster-wide".to_owned()
            } else {
                format!("in namespace {ns}")
            };
            format!(
                "{} {what} {where_}",
                verbs.iter().copied().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!(
        "missing permissions: {}. Grant them (RBAC below), then retry:\n{}",
        list.join("; "),
        rbac_snippet(engine, &missing)
    ))
}

/// A ready-to-apply Role/ClusterRole + binding for the missing permissions.
fn rbac_snippet(engine: &Engine, missing: &Needs) -> String {
    let sa = "sealift-agent";
    let name = format!("sealift-{}-missing", engine.product());
    let mut by_ns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((g, r, ns), verbs) in missing {
        let verbs: Vec<String> = verbs.iter().map(|v| format!("\"{v}\"")).collect();
        by_ns.entry(ns.clone()).or_default().push(format!(
            "- apiGroups: [\"{g}\"]\n  resources: [\"{r}\"]\n  verbs: [{}]",
            verbs.join(", ")
        ));
    }
    let mut out = Vec::new();
    for (ns, rules) in by_ns {
        let (kind, binding, meta) = if ns.is_empty() {
            ("ClusterRole", "ClusterRoleBinding", format!("  name: {name}"))
        } else {
            ("Role", "RoleBinding", format!("  name: {name}\n  namespace: {ns}"))
        };
        out.push(format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n{meta}\nrules:\n{}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: {binding}\nmetadata:\n{meta}\nroleRef:\n  \
             apiGroup: rbac.authorization.k8s.io\n  kind: {kind}\n  name: {name}\nsubjects:\n- kind: ServiceAccount\n  \
             name: {sa}\n  namespace: {}",
            rules.join("\n"),
            engine.cfg.namespace
        ));
    }
    out.join("\n---\n")
}

/// Server-side dry-run of every object whose kind is served and whose namespace exists.
async fn dry_run(engine: &Engine, plan: &Plan, previous: Option<&Revision>) -> Result<(), String> {
    let defined = crd_kinds(plan);
    let ours: BTreeSet<ObjectKey> = previous
        .map(|p| p.inventory().into_iter().collect())
        .unwrap_or_default();
    let mut namespaces: BTreeMap<String, bool> = BTreeMap::new();
    let mut errors = Vec::new();
    for o in &plan.objects {
        let Some(key) = ObjectKey::of(&o.object) else { continue };
        if defined.contains(&key.kind) {
            // Not served yet: checked offline against the CRD this plan installs (and dry-run
            // by the server at the start of its wave).
            let version = key
                .api_version
                .rsplit_once('/')
                .map(|(_, v)| v)
                .unwrap_or(&key.api_version);
            let crd = plan.objects.iter().map(|c| &c.object).find(|c| {
                c["kind"] == "CustomResourceDefinition"
                    && c.pointer("/spec/names/kind").and_then(Value::as_str) == Some(key.kind.as_str())
                    && c.pointer("/spec/group").and_then(Value::as_str) == Some(key.group())
            });
            match crd.and_then(|c| crd_schema::schema_for(c, version)) {
                Some(schema) => {
                    for p in crd_schema::problems(schema, &o.object) {
                        errors.push(format!("{key}: {p} (checked against the bundle's CRD)"));
                    }
                }
                None => errors.push(format!("{key}: the bundle's CRD does not serve version {version}")),
            }
            continue;
        }
        if !key.namespace.is_empty() {
            let exists = match namespaces.get(&key.namespace) {
                Some(e) => *e,
                None => {
                    let ns = ObjectKey {
                        api_version: "v1".into(),
                        kind: "Namespace".into(),
                        namespace: String::new(),
                        name: key.namespace.clone(),
                    };
                    let e = engine.cluster.get(&ns).await.map_err(|e| e.to_string())?.is_some();
                    namespaces.insert(key.namespace.clone(), e);
                    e
                }
            };
            if !exists {
                continue;
            }
        }
        if let Err(e) = engine.cluster.apply(&o.object, ours.contains(&key), true).await {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("server-side dry-run refused: {}", errors.join("; ")))
    }
}

async fn current_health(engine: &Engine, prev: &Revision) -> Result<(), String> {
    let mut unhealthy = Vec::new();
    for key in prev.inventory() {
        match rollout::assess_object(&engine.cluster, &key).await {
            Ok(Assessment::Current) => {}
            Ok(Assessment::InProgress { reason }) | Ok(Assessment::Failed { reason }) => {
                unhealthy.push(format!("{key}: {reason}"))
            }
            Err(e) => unhealthy.push(format!("{key}: {e}")),
        }
    }
    if unhealthy.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the current release {} is not healthy ({}); fix it or pass --ignore-unhealthy",
            prev.version,
            unhealthy.join("; ")
        ))
    }
}
