//! kubesim: a Kubernetes API server simulator for tests and the demo.
//!
//! It serves the Kubernetes REST API (reporting v1.33) over HTTP on loopback, so kube-rs
//! clients and `kubectl` work unchanged through an ordinary kubeconfig. The API machinery
//! (discovery, CRUD, server-side apply, watch, tables, OpenAPI) is generic for every
//! served kind; tier 1 kinds also get controllers, server defaults and kind-specific
//! validation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kubesim::SimError> {
//! let sim = kubesim::Simulator::start(kubesim::SimConfig::default()).await?;
//! println!("KUBECONFIG={}", sim.kubeconfig_path().display());
//! # Ok(()) }
//! ```

pub mod access;
pub mod apply;
pub mod cluster;
pub mod controllers;
pub mod defaults;
pub mod discovery;
pub mod fields;
pub mod images;
pub mod kinds;
pub mod kubeconfig;
pub mod managed;
pub mod openapi;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod table;
pub mod typed;
pub mod validation;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use access::AccessRule;
pub use cluster::Cluster;
pub use images::RegistryConfig;
pub use snapshot::{Diff, Snapshot};
pub use store::ObjectKey;

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The test registry that image pulls go to; images on other hosts fail with
    /// ErrImagePull without a connection attempt.
    pub registry: Option<RegistryConfig>,
    /// How often the simulated controllers run.
    pub tick: Duration,
    /// Simulated time for a container to start and become ready.
    pub start_delay: Duration,
    /// Extra start time for pods annotated `sim.sealift.dev/slow-start`
    /// (the annotation's own value, in seconds, wins).
    pub slow_start_delay: Duration,
    /// Access rules SelfSubjectAccessReview/RulesReview answer from (allow all by default).
    pub access_rules: Vec<AccessRule>,
    /// How many changes the watch history keeps before older resourceVersions are 410 Gone.
    pub watch_history: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Whether `sim.sealift.dev/exec` Jobs may run local commands.
    pub allow_exec: bool,
    /// Real time per simulated second for deadlines written in objects
    /// (`progressDeadlineSeconds`, Job `activeDeadlineSeconds`, `sim.sealift.dev/slow-start`
    /// seconds): 1.0 is real time, 0.01 makes a 600 s deadline pass in 6 s.
    pub time_scale: f64,
}

impl SimConfig {
    /// Real duration of `seconds` simulated seconds.
    pub fn scaled(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.time_scale).max(0.0))
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            registry: None,
            tick: Duration::from_millis(50),
            start_delay: Duration::from_millis(200),
            slow_start_delay: Duration::from_secs(3),
            access_rules: vec![AccessRule::allow_all()],
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(1),
            allow_exec: true,
            time_scale: 1.0,
        }
    }
}

/// Starting the simulator failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("binding the simulator's listener on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("writing the kubeconfig to {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building a kube client for {url}")]
    Client {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A running simulator. Dropping it stops the server and its controllers.
pub struct Simulator {
    address: SocketAddr,
    url: String,
    cluster: Arc<Mutex<Cluster>>,
    kubeconfig_dir: tempfile::TempDir,
    kubeconfig_path: PathBuf,
    server: tokio::task::JoinHandle<()>,
    controllers: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Binds 127.0.0.1 on an ephemeral port and starts serving.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        // Several rustls crypto providers are compiled into the workspace (ring for kube,
        // aws-lc-rs through reqwest); rustls then needs a process default chosen explicitly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(SimError::Bind)?;
        let address = listener.local_addr().map_err(SimError::Bind)?;
        let url = format!("http://{address}");
        let cluster = Arc::new(Mutex::new(Cluster::new(
            config.watch_history,
            config.access_rules.clone(),
        )));
        let kubeconfig_dir = tempfile::Builder::new()
            .prefix("kubesim-")
            .tempdir()
            .map_err(|source| SimError::Kubeconfig {
                path: std::env::temp_dir(),
                source,
            })?;
        let kubeconfig_path = kubeconfig_dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig::render(&url)).map_err(|source| SimError::Kubeconfig {
            path: kubeconfig_path.clone(),
            source,
        })?;
        let app = server::router(server::AppState {
            cluster: cluster.clone(),
            address: address.to_string(),
            bookmark_interval: config.bookmark_interval,
        });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "kubesim server stopped");
            }
        });
        let controllers = tokio::spawn(controllers::run(cluster.clone(), config));
        Ok(Self {
            address,
            url,
            cluster,
            kubeconfig_dir,
            kubeconfig_path,
            server,
            controllers,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A kubeconfig file pointing at this simulator (removed when it stops).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The directory holding the kubeconfig; tests can use it for kubectl's cache.
    pub fn work_dir(&self) -> &Path {
        self.kubeconfig_dir.path()
    }

    /// A kube-rs client for this simulator, default namespace `default`.
    pub fn kube_client(&self) -> Result<kube::Client, SimError> {
        let cluster_url = self.url.parse().map_err(|e| SimError::Client {
            url: self.url.clone(),
            source: Box::new(e),
        })?;
        let config = kube::Config::new(cluster_url);
        kube::Client::try_from(config).map_err(|e| SimError::Client {
            url: self.url.clone(),
            source: Box::new(e),
        })
    }

    /// Runs `f` with the cluster locked (for inspection and fault injection in tests).
    pub fn with_cluster<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut guard = match self.cluster.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Every object now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self.with_cluster(|c| c.objects()),
        }
    }

    /// Forgets the watch history, as etcd compaction does: watches from an older
    /// resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.with_cluster(|c| c.store.compact());
    }

    /// Replaces the access rules access reviews answer from.
    pub fn set_access_rules(&self, rules: Vec<AccessRule>) {
        self.with_cluster(|c| c.access_rules = rules);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.server.abort();
        self.controllers.abort();
    }
}
