pub mod cluster;
pub mod controller;
pub mod crd_schema;
pub mod engine;
pub mod history;
pub mod jobs;
pub mod lease;
pub mod operation;
pub mod patches;
pub mod planner;
pub mod preflight;
pub mod readiness;
pub mod render;
pub mod resource;
pub mod rollout;
pub mod values;

/// Starts the release engine: kube client, CRD, the product's `SealiftRelease`, a resumed
/// operation if the last process left one, and the controller.
pub async fn start(
    agent: std::sync::Arc<crate::service::Agent>,
    k: &crate::config::KubernetesConfig,
    agent_ca: Option<String>,
) -> anyhow::Result<std::sync::Arc<engine::Engine>> {
    use anyhow::Context as _;
    let client = kube_client(k).await?;
    let seconds = |v: &str| crate::config::parse_seconds(v).unwrap_or(1.0);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sealift-agent".into());
    let cfg = engine::EngineConfig {
        namespace: k.namespace.clone(),
        app_namespace: k.app_namespace.clone(),
        identity: format!("{host}-{:08x}", rand::random::<u32>()),
        lease_seconds: seconds(&k.lease_duration).ceil() as i32,
        wave_timeout: std::time::Duration::from_secs_f64(seconds(&k.wave_timeout)),
        job_timeout_floor: std::time::Duration::from_secs(60),
        poll: std::time::Duration::from_secs_f64(seconds(&k.poll_interval)),
        stall_window: std::time::Duration::from_secs_f64(seconds(&k.stall_timeout)),
        operation_timeout: std::time::Duration::from_secs_f64(seconds(&k.operation_timeout)),
        pull_host: agent.config.registry.pull_host(),
        agent_url: k.agent_url.clone(),
        agent_ca,
    };
    controller::install_crd(&client)
        .await
        .context("applying the SealiftRelease CRD")?;
    let backups = crate::backup::catalog::BackupCatalog::open_in_cluster(&agent, &client, &k.namespace)
        .await
        .context("opening the backup storage")?;
    let engine = engine::Engine::new(agent, std::sync::Arc::new(backups), client, cfg)?;
    controller::ensure_release(&engine)
        .await
        .context("creating the SealiftRelease")?;
    crate::backup::sync_pins(&engine);
    engine.resume_if_any()?;
    tokio::spawn(controller::run(engine.clone()));
    tokio::spawn(crate::backup::schedule::run(engine.clone()));
    Ok(engine)
}

/// The kube client `kubernetes` names: its kubeconfig, else the in-cluster service account or
/// `KUBECONFIG`.
pub async fn kube_client(k: &crate::config::KubernetesConfig) -> anyhow::Result<kube::Client> {
    use anyhow::Context as _;
    match &k.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("kubernetes.kubeconfig {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
            Ok(kube::Client::try_from(config)?)
        }
        None => kube::Client::try_default()
            .await
            .context("no Kubernetes configuration: set kubernetes.kubeconfig, or run in a cluster"),
    }
}
