//! `agent.yaml`: the agent's configuration, checked before anything starts. Every error
//! names the key and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConfig {
    /// Address to listen on (`127.0.0.1:8443`).
    pub listen: SocketAddr,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    pub store: StoreConfig,
    pub trust: TrustConfig,
    pub registry: RegistryConfig,
    pub tokens: TokensConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The cluster the release engine manages. Absent: the agent only imports bundles.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// Backups of the application (used with `kubernetes`).
    #[serde(default)]
    pub backups: BackupsConfig,
}

/// `backups:` — where archives are kept, how they are signed and encrypted, and the first
/// settings (afterwards kept in the agent's state and changed through the API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupsConfig {
    /// Directory of the archives; default `<store.dir>/backups` (on the agent's volume).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Initial `enableRegularBackups`.
    #[serde(default)]
    pub enable_regular_backups: bool,
    /// Initial `backupFrequency`: 6-field cron, seconds first, UTC.
    #[serde(default = "default_backup_frequency")]
    pub backup_frequency: String,
    /// Initial `backupRetentionCount`.
    #[serde(default = "default_backup_retention")]
    pub backup_retention_count: u32,
    /// Initial `backupBeforeUpgrade`.
    #[serde(default = "default_true")]
    pub backup_before_upgrade: bool,
    /// Secret in `kubernetes.namespace` holding the agent's archive-signing key (created at
    /// first start).
    #[serde(default = "default_backup_key_secret")]
    pub key_secret: String,
    /// Encryption at rest with an age identity kept in a Secret.
    #[serde(default)]
    pub encryption: Option<BackupEncryptionConfig>,
    /// Public keys (PEM) of other agents whose archives this agent accepts.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
}

impl Default for BackupsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            enable_regular_backups: false,
            backup_frequency: default_backup_frequency(),
            backup_retention_count: default_backup_retention(),
            backup_before_upgrade: true,
            key_secret: default_backup_key_secret(),
            encryption: None,
            trusted_keys: vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupEncryptionConfig {
    /// Secret in `kubernetes.namespace`.
    pub secret: String,
    /// Key of the Secret holding an `AGE-SECRET-KEY-1…` identity; default `age.key`.
    #[serde(default = "default_age_key")]
    pub key: String,
}

fn default_backup_frequency() -> String {
    "0 0 0 * * *".to_owned()
}
fn default_backup_retention() -> u32 {
    30
}
fn default_true() -> bool {
    true
}
fn default_backup_key_secret() -> String {
    "sealift-agent-backup-key".to_owned()
}
fn default_age_key() -> String {
    "age.key".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesConfig {
    /// Namespace of the agent: its `SealiftRelease`, its Lease and the Secrets variables
    /// refer to.
    pub namespace: String,
    /// A kubeconfig file; default: in-cluster service account, else `KUBECONFIG`.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Overrides the bundle's namespace for the application.
    #[serde(default)]
    pub app_namespace: Option<String>,
    /// How long a dead agent's operation lease blocks a new agent (`15s`); default 30s.
    #[serde(default = "default_lease")]
    pub lease_duration: String,
    /// Longest wait for one wave to become ready; default 10m.
    #[serde(default = "default_wave_timeout")]
    pub wave_timeout: String,
    /// Interval between readiness checks; default 1s.
    #[serde(default = "default_poll")]
    pub poll_interval: String,
    /// A wave in which nothing changed for this long fails as stalled; default 5m.
    #[serde(default = "default_stall")]
    pub stall_timeout: String,
    /// Longest time for an operation's steps in all (`1h`); then the failure policy runs.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout: String,
    /// URL step Jobs reach the agent at (`SEALIFT_AGENT_URL`).
    #[serde(default)]
    pub agent_url: Option<String>,
}

fn default_lease() -> String {
    "30s".to_owned()
}
fn default_wave_timeout() -> String {
    "10m".to_owned()
}
fn default_poll() -> String {
    "1s".to_owned()
}
fn default_stall() -> String {
    "5m".to_owned()
}
fn default_operation_timeout() -> String {
    "1h".to_owned()
}

/// Where the listener's certificate comes from: files (`{certFile, keyFile}`), or a Secret
/// the agent fills with a self-signed CA and server certificate at first start
/// (`{selfSigned: {secret: NAME}}`, needs `kubernetes`; see `tls_bootstrap`).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTlsConfig")]
pub enum TlsConfig {
    Files {
        /// PEM certificate chain (a mounted Secret's `tls.crt`).
        cert_file: PathBuf,
        /// PEM private key (a mounted Secret's `tls.key`).
        key_file: PathBuf,
    },
    SelfSigned(SelfSignedTls),
}

/// `tls.selfSigned`: the Secret (in `kubernetes.namespace`) holding `tls.crt`, `tls.key` and
/// `ca.crt`; created at first start when missing, reused as it is afterwards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelfSignedTls {
    /// Name of the Secret.
    pub secret: String,
    /// DNS names and IP addresses the server certificate is issued for; default:
    /// `localhost`, `127.0.0.1`, and `sealift-agent` and its `.NAMESPACE`, `.NAMESPACE.svc`
    /// and `.NAMESPACE.svc.cluster.local` forms.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `tls` as written; [`TlsConfig`] is its checked form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTlsConfig {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    self_signed: Option<SelfSignedTls>,
}

impl TryFrom<RawTlsConfig> for TlsConfig {
    type Error = String;

    fn try_from(raw: RawTlsConfig) -> Result<Self, String> {
        match (raw.cert_file, raw.key_file, raw.self_signed) {
            (Some(cert_file), Some(key_file), None) => Ok(Self::Files { cert_file, key_file }),
            (None, None, Some(s)) => Ok(Self::SelfSigned(s)),
            (_, _, Some(_)) => Err("`tls.selfSigned` excludes certFile and keyFile".into()),
            _ => Err("`tls` needs certFile and keyFile together, or selfSigned: {secret: NAME}".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Most bytes the store may hold (`50Gi`, `200G`, or a number of bytes).
    pub max_bytes: Size,
    /// Free space always left on the volume (default 1Gi).
    #[serde(default = "default_reserve")]
    pub reserve_bytes: Size,
}

fn default_reserve() -> Size {
    Size(1 << 30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrustConfig {
    /// The vendor's trusted root (`N.root.json`), the anchor of every root chain.
    pub root: PathBuf,
    /// The product this agent installs; bundles of any other are refused.
    pub product: schemas::ProductName,
    /// Allowed clock skew (`1h`, `10m`); default one hour.
    #[serde(default = "default_skew")]
    pub clock_skew: String,
}

fn default_skew() -> String {
    "1h".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryConfig {
    /// Where the agent pushes: `https://registry.example:5000`; `http://` only with
    /// `insecure: true`. Also accepted as `pushURL`.
    #[serde(alias = "pushURL")]
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Repository path prefix for every image (`vendor/acme`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Allow plain HTTP to the registry.
    #[serde(default)]
    pub insecure: bool,
    /// Host (and port) the cluster's nodes pull from; default: the host of `url`.
    #[serde(default)]
    pub pull_host: Option<String>,
}

impl RegistryConfig {
    /// The host nodes pull images from.
    pub fn pull_host(&self) -> String {
        if let Some(h) = &self.pull_host {
            return h.clone();
        }
        let rest = self.url.split_once("://").map(|(_, r)| r).unwrap_or(&self.url);
        rest.trim_end_matches('/').to_owned()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokensConfig {
    #[serde(default)]
    pub admin: Vec<TokenConfig>,
    #[serde(default)]
    pub viewer: Vec<TokenConfig>,
}

/// A named bearer token, read from a file (a mounted Secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenConfig {
    pub name: String,
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetentionConfig {
    /// Unpinned bundles kept besides the current and previous ones.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { keep: default_keep() }
    }
}

fn default_keep() -> usize {
    3
}

/// A byte count written as a number or with a unit (`Ki`, `Mi`, `Gi`, `Ti`, `K`, `M`, `G`, `T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size like 50Gi"))?;
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use Ki, Mi, Gi, Ti, K, M, G or T)"
            ));
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// A duration (`500ms`, `30s`, `10m`, `1h`) in seconds.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse::<f64>()
            .map(|v| v / 1000.0)
            .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s or 10m"));
    }
    schemas::timestamp::parse_duration(text)
        .map(|s| s as f64)
        .map_err(|e| e.to_string())
}

/// A config error naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

impl AgentConfig {
    /// Reads and checks the file; relative paths are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, problem: String| ConfigError {
            file: file.clone(),
            key: key.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("(file)", e.to_string()))?;
        let mut cfg: AgentConfig = serde_saphyr::from_str(&text).map_err(|e| {
            let msg = e.to_string();
            // serde names the field in its message ("unknown field `x`", "missing field `y`").
            let key = msg.split('`').nth(1).unwrap_or("(document)").to_owned();
            err(&key, msg)
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut cfg.store.dir);
        fix(&mut cfg.trust.root);
        if let Some(TlsConfig::Files { cert_file, key_file }) = cfg.tls.as_mut() {
            fix(cert_file);
            fix(key_file);
        }
        if let Some(p) = cfg.registry.password_file.as_mut() {
            fix(p);
        }
        if let Some(p) = cfg.registry.ca_file.as_mut() {
            fix(p);
        }
        for t in cfg.tokens.admin.iter_mut().chain(cfg.tokens.viewer.iter_mut()) {
            fix(&mut t.token_file);
        }
        schemas::timestamp::parse_duration(&cfg.trust.clock_skew).map_err(|e| err("trust.clockSkew", e.to_string()))?;
        if !cfg.trust.root.is_file() {
            return Err(err(
                "trust.root",
                format!("{} does not exist", cfg.trust.root.display()),
            ));
        }
        let url = &cfg.registry.url;
        match url.split_once("://") {
            Some(("https", _)) => {}
            Some(("http", _)) if cfg.registry.insecure => {}
            Some(("http", _)) => {
                return Err(err(
                    "registry.url",
                    format!("{url} is plain HTTP; set registry.insecure: true to allow it"),
                ));
            }
            _ => {
                return Err(err(
                    "registry.url",
                    format!("{url} must start with https:// (or http:// with insecure)"),
                ));
            }
        }
        if cfg.registry.username.is_some() != cfg.registry.password_file.is_some() {
            return Err(err("registry.username", "username and passwordFile go together".into()));
        }
        if cfg.tokens.admin.is_empty() {
            return Err(err("tokens.admin", "at least one admin token is needed".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in cfg.tokens.admin.iter().chain(&cfg.tokens.viewer).enumerate() {
            if !names.insert(t.name.clone()) {
                return Err(err(&format!("tokens[{i}].name"), format!("{:?} is used twice", t.name)));
            }
            if !t.token_file.is_file() {
                return Err(err(
                    &format!("tokens.{}.tokenFile", t.name),
                    format!("{} does not exist", t.token_file.display()),
                ));
            }
        }
        if let Some(k) = cfg.kubernetes.as_mut() {
            if let Some(p) = k.kubeconfig.as_mut() {
                fix(p);
            }
            for (key, value) in [
                ("kubernetes.leaseDuration", &k.lease_duration),
                ("kubernetes.waveTimeout", &k.wave_timeout),
                ("kubernetes.pollInterval", &k.poll_interval),
                ("kubernetes.stallTimeout", &k.stall_timeout),
                ("kubernetes.operationTimeout", &k.operation_timeout),
            ] {
                parse_seconds(value).map_err(|problem| err(key, problem))?;
            }
            if k.namespace.is_empty() {
                return Err(err("kubernetes.namespace", "must not be empty".into()));
            }
        }
        if let Some(TlsConfig::SelfSigned(s)) = &cfg.tls {
            if cfg.kubernetes.is_none() {
                return Err(err(
                    "tls.selfSigned",
                    "needs the kubernetes section: the certificate is kept in a Secret of kubernetes.namespace".into(),
                ));
            }
            if s.secret.is_empty() {
                return Err(err("tls.selfSigned.secret", "must not be empty".into()));
            }
        }
        if let Some(p) = cfg.backups.dir.as_mut() {
            fix(p);
        }
        for (i, p) in cfg.backups.trusted_keys.iter_mut().enumerate() {
            fix(p);
            keys::PublicKey::load(&*p).map_err(|e| err(&format!("backups.trustedKeys[{i}]"), e.to_string()))?;
        }
        crate::backup::settings::check_frequency(&cfg.backups.backup_frequency)
            .map_err(|problem| err("backups.backupFrequency", problem))?;
        if cfg.backups.backup_retention_count == 0 {
            return Err(err("backups.backupRetentionCount", "must be at least 1".into()));
        }
        if cfg.store.max_bytes.0 == 0 {
            return Err(err("store.maxBytes", "must be more than 0".into()));
        }
        Ok(cfg)
    }

    pub fn skew_seconds(&self) -> i64 {
        schemas::timestamp::parse_duration(&self.trust.clock_skew).unwrap_or(3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50Gi").unwrap(), 50 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("5GB").unwrap_err().contains("unknown unit"));
    }
}
