//! The registry images are pushed to, and the `oci-client` connection to it: TLS with an optional
//! extra CA (never skipped), plain HTTP only when configured, basic credentials (exchanged for a
//! bearer token when the registry asks for one).

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use schemas::names::RepositoryPath;
use schemas::{Digest, ImageName};

use super::error::{Action, Cause, PushError};

/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a small request (HEAD, mount, manifest, tag) may take in all.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where images go.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryTarget {
    /// `https://host[:port]`, `host[:port]` (HTTPS), or `http://host[:port]` (needs
    /// `insecure_http`).
    pub url: String,
    /// Prepended to every image's target repository (`prefix/target`).
    pub path_prefix: Option<String>,
    /// Username and password: HTTP basic, or exchanged for a bearer token.
    pub credentials: Option<(String, String)>,
    /// An extra CA certificate (PEM) trusted for the registry's TLS certificate.
    pub ca_pem: Option<PathBuf>,
    /// Allows a plain `http://` URL. TLS is never skipped for an `https://` one.
    pub insecure_http: bool,
}

impl std::fmt::Debug for RegistryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryTarget")
            .field("url", &self.url)
            .field("path_prefix", &self.path_prefix)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "***")))
            .field("ca_pem", &self.ca_pem)
            .field("insecure_http", &self.insecure_http)
            .finish()
    }
}

impl RegistryTarget {
    /// The repository an image's `target` lands in: `path_prefix/target`.
    pub fn repository(&self, image: &ImageName, target: &RepositoryPath) -> Result<String, PushError> {
        let prefix = self.path_prefix.as_deref().map(|p| p.trim_matches('/')).unwrap_or("");
        let repository = if prefix.is_empty() {
            target.to_string()
        } else {
            format!("{prefix}/{target}")
        };
        RepositoryPath::from_str(&repository).map_err(|e| PushError::InvalidRepository {
            image: image.clone(),
            repository: repository.clone(),
            reason: e.reason,
        })?;
        Ok(repository)
    }

    /// `host[:port]` and whether to use plain HTTP.
    fn endpoint(&self) -> Result<(String, bool), PushError> {
        let invalid = |reason| PushError::InvalidUrl {
            url: self.url.clone(),
            reason,
        };
        let url = self.url.trim();
        let (rest, http) = if let Some(rest) = url.strip_prefix("https://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (rest, true)
        } else if url.contains("://") {
            return Err(invalid("the scheme must be https:// or http://"));
        } else {
            (url, false)
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        if host.contains('/') {
            return Err(invalid("a path belongs in the path prefix, not the url"));
        }
        if host.contains(['@', '?', '#']) || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must be host[:port] with an optional scheme"));
        }
        if http && !self.insecure_http {
            return Err(PushError::PlainHttpNotAllowed { url: self.url.clone() });
        }
        Ok((host.to_owned(), http))
    }
}

/// The connection: one client per upload style (their configurations differ), same host and
/// credentials.
pub(crate) struct Registry {
    pub host: String,
    auth: RegistryAuth,
    with_credentials: bool,
    monolithic: Client,
    chunked: Client,
    prefer_chunked: AtomicBool,
}

impl Registry {
    pub async fn connect(target: &RegistryTarget) -> Result<Self, PushError> {
        let (host, http) = target.endpoint()?;
        let mut certs = Vec::new();
        if let Some(path) = &target.ca_pem {
            let data = fs_err::read(path).map_err(|e| PushError::CaCertificate {
                path: path.clone(),
                source: e.into(),
            })?;
            if !data.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(PushError::CaCertificate {
                    path: path.clone(),
                    source: "no PEM certificate in the file".into(),
                });
            }
            if http {
                tracing::warn!(
                    "registry {host} is reached over plain HTTP; the CA certificate {} is not used",
                    path.display()
                );
            }
            certs.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        if http {
            tracing::warn!("pushing to registry {host} over plain HTTP, as configured");
        }
        let client = |monolithic: bool| {
            let config = ClientConfig {
                protocol: if http {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                },
                extra_root_certificates: certs.clone(),
                platform_resolver: None,
                use_monolithic_push: monolithic,
                connect_timeout: Some(CONNECT_TIMEOUT),
                // reqwest's read timeout bounds a whole request until its response headers,
                // uploads included; uploads have their own stall watchdog, the rest a deadline.
                read_timeout: None,
                user_agent: concat!("sealift-agent/", env!("CARGO_PKG_VERSION")),
                ..ClientConfig::default()
            };
            Client::try_from(config).map_err(|source| PushError::Client {
                registry: host.clone(),
                source: Box::new(source),
            })
        };
        let (auth, with_credentials) = match &target.credentials {
            Some((user, password)) => (RegistryAuth::Basic(user.clone(), password.clone()), true),
            None => (RegistryAuth::Anonymous, false),
        };
        let registry = Self {
            monolithic: client(true)?,
            chunked: client(false)?,
            host,
            auth,
            with_credentials,
            prefer_chunked: AtomicBool::new(false),
        };
        if with_credentials {
            // Requests made without a stored login go out anonymously: store it up front.
            for c in [&registry.monolithic, &registry.chunked] {
                c.store_auth_if_needed(&registry.host, &registry.auth).await;
            }
        }
        Ok(registry)
    }

    /// Checks that the registry answers (TLS, reachability, credentials) before any work.
    pub async fn probe(&self, repository: &str) -> Result<(), PushError> {
        let empty = Digest::of(b"");
        let reference = self.blob_ref(repository, &empty);
        self.call(
            Action::Connect {
                repository: repository.to_owned(),
            },
            self.monolithic.blob_exists(&reference, &empty.to_string()),
        )
        .await
        .map(|_| ())
    }

    pub fn blob_ref(&self, repository: &str, digest: &Digest) -> Reference {
        Reference::with_digest(self.host.clone(), repository.to_owned(), digest.to_string())
    }

    pub fn tag_ref(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repository.to_owned(), tag.to_owned())
    }

    /// The client for monolithic uploads (also used for everything but chunked uploads).
    pub fn client(&self) -> &Client {
        &self.monolithic
    }

    pub fn chunked_client(&self) -> &Client {
        &self.chunked
    }

    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    pub fn prefers_chunked(&self) -> bool {
        self.prefer_chunked.load(Ordering::Relaxed)
    }

    pub fn use_chunked_from_now(&self) {
        if !self.prefer_chunked.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "registry {} refused a monolithic blob upload; using chunked uploads from now on",
                self.host
            );
        }
    }

    /// A registry error for `action`.
    pub fn error(&self, action: Action, source: OciDistributionError) -> PushError {
        PushError::Registry {
            cause: Cause::of(&source, self.with_credentials),
            action: Box::new(action),
            registry: self.host.clone(),
            source: Box::new(source),
        }
    }

    /// Runs a small request with [`REQUEST_TIMEOUT`], naming `action` on failure.
    pub async fn call<T>(
        &self,
        action: Action,
        request: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, PushError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(action, e)),
            Err(_) => Err(PushError::TimedOut {
                action: Box::new(action),
                registry: self.host.clone(),
                after: REQUEST_TIMEOUT,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, insecure_http: bool) -> RegistryTarget {
        RegistryTarget {
            url: url.to_owned(),
            path_prefix: None,
            credentials: None,
            ca_pem: None,
            insecure_http,
        }
    }

    #[test]
    fn parses_registry_urls() {
        assert_eq!(
            target("https://reg.example:5000/", false).endpoint().unwrap(),
            ("reg.example:5000".to_owned(), false)
        );
        assert_eq!(
            target("reg.example", false).endpoint().unwrap(),
            ("reg.example".to_owned(), false)
        );
        assert_eq!(
            target("http://127.0.0.1:5000", true).endpoint().unwrap(),
            ("127.0.0.1:5000".to_owned(), true)
        );
        // Insecure HTTP never turns TLS off for an https:// URL.
        assert_eq!(
            target("https://127.0.0.1:5000", true).endpoint().unwrap(),
            ("127.0.0.1:5000".to_owned(), false)
        );
    }

    #[test]
    fn refuses_plain_http_unless_configured() {
        let err = target("http://127.0.0.1:5000", false).endpoint().unwrap_err();
        assert!(matches!(err, PushError::PlainHttpNotAllowed { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "registry http://127.0.0.1:5000 is plain HTTP, which is used only when insecure HTTP is configured"
        );
    }

    #[test]
    fn refuses_malformed_urls() {
        for (url, reason) in [
            ("ftp://reg", "the scheme must be https:// or http://"),
            ("https://", "no host"),
            ("https://reg/acme", "a path belongs in the path prefix, not the url"),
            ("https://user@reg", "must be host[:port] with an optional scheme"),
        ] {
            match target(url, false).endpoint() {
                Err(PushError::InvalidUrl { reason: r, .. }) => assert_eq!(r, reason, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn applies_the_path_prefix() {
        let image: ImageName = "quay.io/acme/app:1.0".parse().unwrap();
        let repo: RepositoryPath = "acme/app".parse().unwrap();
        let mut t = target("reg", false);
        assert_eq!(t.repository(&image, &repo).unwrap(), "acme/app");
        t.path_prefix = Some("/mirror/sealift/".to_owned());
        assert_eq!(t.repository(&image, &repo).unwrap(), "mirror/sealift/acme/app");
        t.path_prefix = Some("Bad Prefix".to_owned());
        assert!(matches!(
            t.repository(&image, &repo),
            Err(PushError::InvalidRepository { .. })
        ));
    }

    #[test]
    fn debug_hides_the_password() {
        let mut t = target("reg", false);
        t.credentials = Some(("user".to_owned(), "s3cret".to_owned()));
        let shown = format!("{t:?}");
        assert!(shown.contains("user") && !shown.contains("s3cret"), "{shown}");
    }
}
