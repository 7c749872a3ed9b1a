//! Pulling from registries with `oci-client`: one client per host contacted, plain HTTP only
//! for loopback and `insecure_registries` (and only when the host does not speak TLS).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::{BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use schemas::Digest;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::auth::{Credentials, DockerConfig};
use super::cache::{BlobCache, BlobWriter, CacheError};
use super::error::{Fail, FetchError, Problem};
use super::oci::ACCEPTED;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections to every registry host contacted, made on first use.
pub(crate) struct Registries {
    insecure: Vec<String>,
    config: Option<DockerConfig>,
    certs: Vec<Certificate>,
    conns: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
}

/// One registry host: its client, scheme and credentials.
pub(crate) struct Connection {
    pub host: String,
    client: Client,
    auth: RegistryAuth,
    credentials_from: Option<PathBuf>,
    config_path: Option<PathBuf>,
}

impl Registries {
    pub fn new(
        insecure: &[String],
        docker_config: Option<&std::path::Path>,
        ca_certs: &[PathBuf],
    ) -> Result<Self, FetchError> {
        let config = match docker_config.map(ToOwned::to_owned).or_else(DockerConfig::default_path) {
            Some(path) => Some(DockerConfig::load(&path)?),
            None => None,
        };
        let certs = ca_certs
            .iter()
            .map(|path| {
                let data = fs_err::read(path).map_err(|e| FetchError::CaCert {
                    path: path.clone(),
                    source: e.into(),
                })?;
                if !data.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(FetchError::CaCert {
                        path: path.clone(),
                        source: "no PEM certificate in the file".into(),
                    });
                }
                Ok(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            insecure: insecure.to_vec(),
            config,
            certs,
            conns: tokio::sync::Mutex::default(),
        })
    }

    /// The connection to `host`, probing its scheme the first time.
    pub async fn connect(&self, host: &str) -> Result<Arc<Connection>, Fail> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(host) {
            return Ok(c.clone());
        }
        let conn = Arc::new(self.open(host).await?);
        conns.insert(host.to_owned(), conn.clone());
        Ok(conn)
    }

    async fn open(&self, host: &str) -> Result<Connection, Fail> {
        let (auth, credentials_from) = match &self.config {
            Some(config) => match config.credentials(host)? {
                Some(Credentials::Basic { username, password }) => {
                    (RegistryAuth::Basic(username, password), Some(config.path().to_owned()))
                }
                Some(Credentials::Bearer(token)) => (RegistryAuth::Bearer(token), Some(config.path().to_owned())),
                None => (RegistryAuth::Anonymous, None),
            },
            None => (RegistryAuth::Anonymous, None),
        };
        let config_path = self.config.as_ref().map(|c| c.path().to_owned());
        let https = self.client(host, ClientProtocol::Https)?;
        let mut conn = Connection {
            host: host.to_owned(),
            client: https,
            auth,
            credentials_from,
            config_path,
        };
        if !self.may_use_http(host) {
            return Ok(conn);
        }
        // Prefer TLS; fall back to plain HTTP only when the host answers the registry API in
        // plain HTTP (a TLS server with an untrusted certificate keeps its TLS error).
        let probe = Reference::with_tag(host.to_owned(), "sealift/probe".to_owned(), "latest".to_owned());
        match conn.client.auth(&probe, &conn.auth, RegistryOperation::Pull).await {
            Ok(_) => Ok(conn),
            Err(OciDistributionError::RequestError(e)) => {
                if speaks_plain_http(host).await {
                    if is_loopback(host) {
                        tracing::info!("registry {host} does not speak TLS; using plain HTTP on loopback");
                    } else {
                        tracing::warn!(
                            "registry {host} does not speak TLS; using plain HTTP as insecure_registries allows"
                        );
                    }
                    conn.client = self.client(host, ClientProtocol::Http)?;
                    Ok(conn)
                } else {
                    Err(conn.classify(OciDistributionError::RequestError(e), None))
                }
            }
            // It answered over TLS; anything else shows up on the first real request.
            Err(_) => Ok(conn),
        }
    }

    fn client(&self, host: &str, protocol: ClientProtocol) -> Result<Client, Fail> {
        let config = ClientConfig {
            protocol,
            extra_root_certificates: self.certs.clone(),
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("sealift-bundler/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Client::try_from(config).map_err(|e| Fail::new(Problem::Tls { host: host.to_owned() }, e))
    }

    fn may_use_http(&self, host: &str) -> bool {
        is_loopback(host) || self.insecure.iter().any(|h| h == host || h == strip_port(host))
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `localhost` or an address in 127.0.0.0/8 or `::1`, with or without a port.
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = strip_port(host);
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `GET /v2/` in plain HTTP gets a registry answer (200 or 401).
async fn speaks_plain_http(host: &str) -> bool {
    let addr = if strip_port(host) == host {
        format!("{host}:80")
    } else {
        host.to_owned()
    };
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 512];
        let mut len = 0;
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await.ok()?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].contains(&b'\n') {
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf[..len]).lines().next()?.to_owned();
        let mut parts = line.split_whitespace();
        let version = parts.next()?;
        let status = parts.next()?;
        Some(version.starts_with("HTTP/1.") && (status == "200" || status == "401"))
    };
    tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

impl Connection {
    /// A reference to `path` on this host by tag or digest.
    pub fn reference(&self, path: &str, tag: Option<&str>, digest: Option<&Digest>) -> Reference {
        match digest {
            Some(d) => Reference::with_digest(self.host.clone(), path.to_owned(), d.to_string()),
            None => Reference::with_tag(self.host.clone(), path.to_owned(), tag.unwrap_or("latest").to_owned()),
        }
    }

    /// The raw bytes of a manifest or index.
    pub async fn manifest(&self, reference: &Reference) -> Result<Vec<u8>, Fail> {
        match self.client.pull_manifest_raw(reference, &self.auth, ACCEPTED).await {
            Ok((bytes, _)) => Ok(bytes.to_vec()),
            Err(e) => Err(self.classify(e, None)),
        }
    }

    /// Streams one blob into the cache, checking digest and size.
    pub async fn blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        cache: &BlobCache,
    ) -> Result<u64, Fail> {
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
        let digest_str = digest.to_string();
        let response = self
            .client
            .pull_blob_stream_partial(reference, digest_str.as_str(), 0, None)
            .await
            .map_err(|e| self.classify(e, Some(digest)))?;
        let mut stream = match response {
            BlobResponse::Full(s) | BlobResponse::Partial(s) => s,
        };
        let writer = cache.writer(Some(size))?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let digest_owned = *digest;
        let sink = tokio::task::spawn_blocking(move || drain(rx, writer, &digest_owned, size));
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if tx.send(bytes).await.is_err() {
                        break; // the writer stopped; its error says why
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = sink.await?;
        if let Some(e) = failure {
            return Err(self.classify(OciDistributionError::IoError(e), Some(digest)));
        }
        written
    }

    /// Maps a client error to what it means for the user.
    pub fn classify(&self, e: OciDistributionError, blob: Option<&Digest>) -> Fail {
        let host = self.host.clone();
        let unauthorized = || match (&self.credentials_from, &self.config_path) {
            (Some(config), _) => Problem::CredentialsRefused {
                host: host.clone(),
                config: config.clone(),
            },
            (None, Some(config)) => Problem::AnonymousRefusedWithConfig {
                host: host.clone(),
                config: config.clone(),
            },
            (None, None) => Problem::AnonymousRefused,
        };
        let problem = match &e {
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.contains(&&OciErrorCode::ManifestUnknown) {
                    Problem::ManifestUnknown
                } else if codes.contains(&&OciErrorCode::NameUnknown) {
                    Problem::RepositoryUnknown
                } else if codes.contains(&&OciErrorCode::BlobUnknown) {
                    match blob {
                        Some(d) => Problem::BlobUnknown(*d),
                        None => Problem::ManifestUnknown,
                    }
                } else if codes.contains(&&OciErrorCode::Unauthorized) {
                    unauthorized()
                } else if codes.contains(&&OciErrorCode::Denied) {
                    Problem::Denied
                } else {
                    Problem::Registry
                }
            }
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                unauthorized()
            }
            OciDistributionError::ServerError { code: 401, .. } => unauthorized(),
            OciDistributionError::ServerError { code: 403, .. } => Problem::Denied,
            OciDistributionError::ServerError { code: 404, .. } => match blob {
                Some(d) => Problem::BlobUnknown(*d),
                None => Problem::ManifestUnknown,
            },
            OciDistributionError::DigestError(_) => Problem::Registry,
            OciDistributionError::RequestError(re) => {
                let chain = error_chain(re);
                if re.is_timeout() {
                    Problem::TimedOut { host }
                } else if chain.contains("certificate") || chain.contains("unknownissuer") {
                    Problem::UntrustedCertificate { host }
                } else if chain.contains("tls") || chain.contains("handshake") || chain.contains("corrupt message") {
                    Problem::Tls { host }
                } else if re.is_connect() {
                    Problem::Unreachable { host }
                } else {
                    Problem::Registry
                }
            }
            OciDistributionError::IoError(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Problem::TimedOut { host }
            }
            _ => Problem::Registry,
        };
        Fail::new(problem, e)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out.to_ascii_lowercase()
}

fn drain<B: AsRef<[u8]>>(
    mut rx: tokio::sync::mpsc::Receiver<B>,
    mut writer: BlobWriter,
    digest: &Digest,
    size: u64,
) -> Result<u64, Fail> {
    while let Some(chunk) = rx.blocking_recv() {
        if let Err(e) = writer.write_all(chunk.as_ref()) {
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                return Err(Problem::TooLarge {
                    digest: *digest,
                    limit: size,
                }
                .into());
            }
            return Err(CacheError::Write {
                path: writer.dir().to_owned(),
                source: e,
            }
            .into());
        }
    }
    Ok(writer.finish(digest, Some(size))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_loopback_hosts() {
        for h in ["127.0.0.1:5000", "127.3.2.1", "localhost:80", "[::1]:5000", "LOCALHOST"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["quay.io", "10.0.0.1:5000", "128.0.0.1", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
