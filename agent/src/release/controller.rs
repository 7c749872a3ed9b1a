//! The controller for `SealiftRelease` (kube-runtime): the CRD applied at start, the one
//! resource named after the product kept in existence, and every spec change — from the CLI,
//! the API or `kubectl patch` — turned into the same operations.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{CustomResourceExt, ResourceExt};
use serde_json::json;

use crate::release::engine::Engine;
use crate::release::operation::{Flags, OperationKind};
use crate::release::resource::{
    FIELD_MANAGER, FINALIZER, Reason, RequestAction, SealiftRelease, SealiftReleaseSpec, SealiftReleaseStatus,
};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReconcileError(String);

fn err(e: impl std::fmt::Display) -> ReconcileError {
    ReconcileError(e.to_string())
}

/// Applies the CRD (server-side) and waits until it is Established.
pub async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = SealiftRelease::crd();
    let name = crd.name_any();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
        .await?;
    for _ in 0..100 {
        let live = api.get(&name).await?;
        let established = live
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the CRD {name} did not become Established")
}

/// Creates the product's `SealiftRelease` if it does not exist (spec: the current version).
pub async fn ensure_release(engine: &Engine) -> anyhow::Result<()> {
    let api: Api<SealiftRelease> = Api::namespaced(engine.cluster.client().clone(), &engine.cfg.namespace);
    let name = engine.product();
    if let Some(found) = api.get_opt(&name).await? {
        engine.adopt_status(found.status.clone()).await;
        return Ok(());
    }
    let current = engine.history.deployed()?.map(|r| r.version);
    let mut release = SealiftRelease::new(
        &name,
        SealiftReleaseSpec {
            version: current.clone(),
            ..Default::default()
        },
    );
    release.metadata.namespace = Some(engine.cfg.namespace.clone());
    release.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    api.create(&PostParams::default(), &release).await?;
    engine.adopt_status(None).await;
    let message = match &current {
        Some(v) => format!("{v} is ready"),
        None => "nothing installed; set spec.version".to_owned(),
    };
    let now = schemas::Timestamp::now().to_string();
    engine
        .update_status(|s| {
            s.set_state(Reason::Ready, &message, Some(1), &now);
        })
        .await;
    Ok(())
}

/// Runs the controller until the process ends.
pub async fn run(engine: Arc<Engine>) {
    let api: Api<SealiftRelease> = Api::namespaced(engine.cluster.client().clone(), &engine.cfg.namespace);
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, engine)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
}

fn error_policy(_: Arc<SealiftRelease>, e: &ReconcileError, _: Arc<Engine>) -> Action {
    tracing::warn!("reconcile failed: {e}");
    Action::requeue(Duration::from_secs(2))
}

async fn write_status(api: &Api<SealiftRelease>, name: &str, status: &SealiftReleaseStatus) {
    let body = json!({ "status": status });
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        tracing::warn!("cannot write the status of {name}: {e}");
    }
}

async fn reconcile(release: Arc<SealiftRelease>, engine: Arc<Engine>) -> Result<Action, ReconcileError> {
    let api: Api<SealiftRelease> = Api::namespaced(engine.cluster.client().clone(), &engine.cfg.namespace);
    let name = release.name_any();
    let generation = release.metadata.generation;
    let now = schemas::Timestamp::now().to_string();

    // Exactly one release per agent, named after the product.
    if name != engine.product() {
        let mut status = release.status.clone().unwrap_or_default();
        if status.reason() != Some("Ignored") {
            status.set_state(
                Reason::Ignored,
                &format!(
                    "this agent manages only SealiftRelease {}/{}",
                    engine.cfg.namespace,
                    engine.product()
                ),
                generation,
                &now,
            );
            write_status(&api, &name, &status).await;
        }
        return Ok(Action::await_change());
    }

    // Deleting the resource never uninstalls: let it go, then create it again.
    if release.metadata.deletion_timestamp.is_some() {
        let finalizers: Vec<String> = release
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .map_err(err)?;
        engine.agent.record(
            "kubectl",
            "delete-release",
            release.spec.version.clone(),
            "warning",
            None,
            Some("SealiftRelease deleted; nothing was uninstalled and the resource is created again".into()),
        );
        for _ in 0..50 {
            if api.get_opt(&name).await.map_err(err)?.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure_release(&engine).await.map_err(err)?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if !release.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = release.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .map_err(err)?;
    }

    let spec = &release.spec;
    let status = engine.status().await;

    // One operation at a time: a change made meanwhile waits, and says so.
    if let Some(running) = engine.running() {
        if let Some(v) = &spec.version
            && status.desired_version.as_deref() != Some(v.as_str())
            && status.reason() != Some("Queued")
        {
            let message = format!("{v} is queued: {running} is running");
            engine.set_state(Reason::Queued, &message, generation).await;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // One-shot requests.
    if let Some(request) = &spec.request
        && status.handled_request.as_deref() != Some(request.id.as_str())
    {
        let id = request.id.clone();
        let by = engine.requester(generation);
        engine.agent.record(
            &by,
            &format!("{:?}", request.action).to_lowercase(),
            spec.version.clone(),
            "accepted",
            None,
            Some(format!("request {id}")),
        );
        engine.update_status(|s| s.handled_request = Some(id)).await;
        let flags = flags_of(spec);
        let started = match request.action {
            RequestAction::Retry => match spec.version.as_deref() {
                Some(v) => {
                    let kind = if engine.history.deployed().map_err(err)?.is_some() {
                        OperationKind::Upgrade
                    } else {
                        OperationKind::Install
                    };
                    engine.begin(kind, v, flags, generation, &by)
                }
                None => Ok(()),
            },
            RequestAction::Rollback => match engine.rollback_target(request.revision, None) {
                Ok(target) => engine.begin_rollback(&target, generation, &by),
                Err(e) => Err(e),
            },
            RequestAction::Uninstall => engine.begin_uninstall(request.delete_data, generation, &by),
            RequestAction::Restore => {
                let checked = request
                    .backup
                    .as_deref()
                    .ok_or_else(|| "a Restore request names no backup (spec.request.backup)".to_owned())
                    .and_then(|b| b.parse::<crate::backup::archive::BackupId>().map_err(|e| e.to_string()))
                    .and_then(|id| {
                        crate::backup::restore::check(
                            &engine,
                            &engine.backups,
                            &id,
                            request.source_namespace.clone(),
                            request.skip.clone(),
                            request.id.clone(),
                        )
                        .map_err(|e| e.to_string())
                    });
                match checked {
                    Ok(checked) => {
                        crate::backup::record_restore_start(&engine, &checked, &by);
                        let target = checked.target.clone();
                        let started = engine.begin_restore(checked, generation, &by);
                        if let Err(e) = &started {
                            crate::backup::record_restore_refused(&engine, &target, &e.to_string());
                        }
                        started
                    }
                    Err(msg) => {
                        crate::backup::record_restore_unstarted(
                            &engine,
                            request.backup.as_deref().unwrap_or(""),
                            &request.id,
                            &by,
                            &msg,
                        );
                        engine.update_status(|s| s.failed_generation = generation).await;
                        engine.set_state(Reason::RestoreFailed, &msg, generation).await;
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = started {
            engine
                .set_state(Reason::PreflightFailed, &e.to_string(), generation)
                .await;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let Some(version) = spec.version.clone() else {
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let current = engine.history.deployed().map_err(err)?;
    let current_version = current.as_ref().map(|r| r.version.clone());
    if current_version.as_deref() == Some(version.as_str()) {
        if status.reason() != Some("Ready") && status.failed_generation != generation {
            engine
                .set_state(Reason::Ready, &format!("{version} is ready"), generation)
                .await;
        }
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    // A failed operation is not run again while the generation is unchanged.
    if status.failed_generation.is_some() && status.failed_generation == generation {
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let allow_downgrade = spec.allow_downgrade_to.as_deref() == Some(version.as_str());
    if let Err(e) = engine.check_upgrade(&version, allow_downgrade) {
        engine.agent.record(
            "kubectl",
            "upgrade",
            Some(version.clone()),
            "refused",
            Some(e.code()),
            Some(e.to_string()),
        );
        engine.update_status(|s| s.failed_generation = generation).await;
        engine
            .set_state(Reason::PreflightFailed, &e.to_string(), generation)
            .await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let kind = if current.is_some() {
        OperationKind::Upgrade
    } else {
        OperationKind::Install
    };
    let by = engine.requester(generation);
    let mut flags = flags_of(spec);
    flags.allow_downgrade = allow_downgrade;
    if let Err(e) = engine.begin(kind, &version, flags, generation, &by) {
        tracing::info!("not starting {version}: {e}");
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// The operation flags the spec sets for the typed version.
fn flags_of(spec: &SealiftReleaseSpec) -> Flags {
    Flags {
        disable_rollback: spec.disable_rollback,
        ignore_current_health: spec.ignore_current_health,
        skip_backup: spec.skip_backup,
        allow_downgrade: false,
        delete_data: false,
    }
}
