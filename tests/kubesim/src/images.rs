//! Image pulls: the manifest of each container image is fetched from the configured test
//! registry on loopback. Images on any other host are never resolved or contacted.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The registry image pulls go to: on 127.0.0.0/8, plain HTTP or TLS verified against a
/// CA file, anonymous or with basic auth (htpasswd).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    /// `127.0.0.1:PORT` as image references name it.
    pub host: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of the CA that signed the registry's certificate; `Some` means HTTPS.
    pub ca_file: Option<PathBuf>,
}

impl RegistryConfig {
    /// Anonymous plain HTTP.
    pub fn plain(host: &str) -> Self {
        Self {
            host: host.to_string(),
            username: None,
            password: None,
            ca_file: None,
        }
    }

    /// Basic auth (as htpasswd registries want).
    pub fn with_basic_auth(mut self, username: &str, password: &str) -> Self {
        self.username = Some(username.to_string());
        self.password = Some(password.to_string());
        self
    }

    /// HTTPS verified against this CA (never skipped).
    pub fn with_tls(mut self, ca_file: &Path) -> Self {
        self.ca_file = Some(ca_file.to_path_buf());
        self
    }
}

/// Why a pull failed, as the kubelet reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PullError {
    #[error("registry not configured in simulator: {host}")]
    NotConfigured { host: String },
    #[error("failed to pull image \"{image}\": {message}")]
    Failed { image: String, message: String },
}

/// An image reference split into registry host, repository and tag or digest.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    pub host: String,
    pub repository: String,
    pub reference: String,
}

impl ImageRef {
    pub fn parse(image: &str) -> Self {
        let (first, rest) = image.split_once('/').unwrap_or(("", image));
        let (host, path) = if !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost")
        {
            (first.to_string(), rest.to_string())
        } else if first.is_empty() {
            ("docker.io".to_string(), format!("library/{rest}"))
        } else {
            ("docker.io".to_string(), image.to_string())
        };
        let (repository, reference) = if let Some((repo, digest)) = path.split_once('@') {
            (repo.to_string(), digest.to_string())
        } else {
            let last_slash = path.rfind('/').map_or(0, |i| i + 1);
            match path[last_slash..].rfind(':') {
                Some(i) => (
                    path[..last_slash + i].to_string(),
                    path[last_slash + i + 1..].to_string(),
                ),
                None => (path.clone(), "latest".to_string()),
            }
        };
        Self {
            host,
            repository,
            reference,
        }
    }
}

fn loopback(host: &str) -> Option<SocketAddr> {
    let (name, port) = host.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip: IpAddr = if name == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        name.parse().ok()?
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, port))
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

fn tls_connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("reading CA file {}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("parsing CA file {}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("adding CA from {}: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    addr: SocketAddr,
) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| format!("reading from {addr} timed out"))?;
    match read {
        Ok(_) => Ok(response),
        // Servers often close TLS without close_notify after an HTTP/1.0 response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => Ok(response),
        Err(e) => Err(format!("reading from {addr}: {e}")),
    }
}

async fn get(addr: SocketAddr, config: &RegistryConfig, path: &str) -> Result<(u16, Vec<u8>), String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: {ACCEPT}\r\n", config.host);
    if let (Some(u), Some(p)) = (&config.username, &config.password) {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    let response = match &config.ca_file {
        Some(ca) => {
            let connector = tls_connector(ca)?;
            let name = ServerName::IpAddress(addr.ip().into());
            let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, stream))
                .await
                .map_err(|_| format!("TLS handshake with {addr} timed out"))?
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
            exchange(tls, &request, addr).await?
        }
        None => exchange(stream, &request, addr).await?,
    };
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("malformed HTTP response from {addr}"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed status line from {addr}"))?;
    Ok((code, response[split + 4..].to_vec()))
}

/// Fetches the image's manifest (and for an index, its linux/amd64 child) from the
/// configured registry. Never connects anywhere but the configured loopback registry.
pub async fn pull(config: Option<&RegistryConfig>, image: &str) -> Result<(), PullError> {
    let r = ImageRef::parse(image);
    let Some(config) = config.filter(|c| c.host == r.host) else {
        return Err(PullError::NotConfigured { host: r.host });
    };
    let Some(addr) = loopback(&config.host) else {
        return Err(PullError::NotConfigured { host: r.host });
    };
    let failed = |message: String| PullError::Failed {
        image: image.to_string(),
        message,
    };
    let (code, body) = get(addr, config, &format!("/v2/{}/manifests/{}", r.repository, r.reference))
        .await
        .map_err(failed)?;
    if code == 401 {
        return Err(failed(format!(
            "rpc error: code = Unknown desc = failed to authorize: 401 Unauthorized from {}",
            config.host
        )));
    }
    if code != 200 {
        return Err(failed(format!(
            "rpc error: code = NotFound desc = manifest unknown ({code} from {})",
            config.host
        )));
    }
    let manifest: Value = serde_json::from_slice(&body).map_err(|e| failed(format!("manifest is not JSON: {e}")))?;
    if let Some(children) = manifest["manifests"].as_array() {
        let child = children
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| failed("no matching manifest for linux/amd64 in the manifest list entries".to_string()))?;
        let (code, _) = get(addr, config, &format!("/v2/{}/manifests/{child}", r.repository))
            .await
            .map_err(failed)?;
        if code != 200 {
            return Err(failed(format!("manifest {child} for linux/amd64 not found ({code})")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            ImageRef::parse("127.0.0.1:5000/acme/web:1.2"),
            ImageRef {
                host: "127.0.0.1:5000".into(),
                repository: "acme/web".into(),
                reference: "1.2".into()
            }
        );
        assert_eq!(ImageRef::parse("nginx").host, "docker.io");
        assert_eq!(ImageRef::parse("nginx").repository, "library/nginx");
        assert_eq!(ImageRef::parse("quay.io/a/b@sha256:00").reference, "sha256:00");
    }

    #[tokio::test]
    async fn other_hosts_fail_without_a_connection() {
        let err = pull(
            Some(&RegistryConfig::plain("127.0.0.1:1")),
            "registry.example.com/app:1",
        )
        .await
        .expect_err("not configured");
        assert_eq!(
            err.to_string(),
            "registry not configured in simulator: registry.example.com"
        );
    }
}
