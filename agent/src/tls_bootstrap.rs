//! The listener's certificate.
//!
//! `tls: {certFile, keyFile}` reads two PEM files. `tls: {selfSigned: {secret: NAME}}` keeps
//! the certificate in the Secret `NAME` of `kubernetes.namespace`: at first start, when the
//! Secret does not exist, the agent issues a self-signed CA (ECDSA P-256) and a server
//! certificate signed by it, stores `tls.crt`, `tls.key` and `ca.crt` in the Secret (type
//! `kubernetes.io/tls`) and forgets the CA's private key, so nothing can issue a second
//! certificate under that CA. Every later start reuses the Secret as it is, so clients that
//! trust its `ca.crt` keep working across restarts and rescheduling; deleting the Secret makes
//! the next start issue a new CA. A Secret written by someone else (cert-manager, an admin's
//! `kubectl create secret tls`) is served as it is. Either way the server certificate's
//! SHA-256 fingerprint is logged at start, for comparing out of band.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;

use crate::config::{AgentConfig, SelfSignedTls, TlsConfig};

/// Secret keys, as `kubernetes.io/tls` Secrets name them (`ca.crt` as cert-manager does).
pub const CERT_KEY: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";
pub const CA_KEY: &str = "ca.crt";

/// Annotation recording the hosts a certificate the agent issued is valid for.
pub const HOSTS_ANNOTATION: &str = "sealift.dev/tls-hosts";

/// How long an issued certificate is valid: clusters without internet often run for years
/// without anyone looking at their certificates.
const VALID_YEARS: i16 = 10;

/// The listener's certificate chain and key.
pub struct ServerTls {
    /// PEM certificate chain, the server certificate first.
    pub cert_pem: Vec<u8>,
    /// PEM private key.
    pub key_pem: Vec<u8>,
    /// PEM CA certificate of a `selfSigned` Secret (`ca.crt`), when it has one.
    pub ca_pem: Option<Vec<u8>>,
    /// SHA-256 of the server certificate's DER, upper-case hex pairs joined by `:` (the form
    /// `openssl x509 -noout -fingerprint -sha256` prints).
    pub fingerprint: String,
    /// Where it came from, for the log (`file …`, `Secret ns/name`).
    pub origin: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("origin", &self.origin)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    fn parse(cert_pem: Vec<u8>, key_pem: Vec<u8>, ca_pem: Option<Vec<u8>>, origin: String) -> Result<Self> {
        let first = CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .with_context(|| format!("{origin}: the certificate holds no PEM CERTIFICATE"))?
            .with_context(|| format!("{origin}: the certificate is not valid PEM"))?;
        PrivateKeyDer::from_pem_slice(&key_pem)
            .with_context(|| format!("{origin}: the private key is not a PEM private key"))?;
        let fingerprint = fingerprint(&first);
        Ok(Self {
            cert_pem,
            key_pem,
            ca_pem,
            fingerprint,
            origin,
        })
    }

    /// The rustls configuration of the listener.
    pub async fn rustls(&self) -> Result<axum_server::tls_rustls::RustlsConfig> {
        axum_server::tls_rustls::RustlsConfig::from_pem(self.cert_pem.clone(), self.key_pem.clone())
            .await
            .with_context(|| format!("cannot use the certificate and key of {}", self.origin))
    }
}

/// SHA-256 of a certificate's DER as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The Secret a self-signed certificate lives in when `tls` is not configured.
pub const DEFAULT_SECRET: &str = "sealift-agent-tls";

/// The `tls` an agent in a cluster uses when none is configured: listening beyond loopback
/// with a `kubernetes` section, it issues (once) and serves a self-signed certificate kept in
/// [`DEFAULT_SECRET`]. `--insecure-listen` keeps plain HTTP; loopback stays plain.
pub fn implied(cfg: &AgentConfig, insecure_listen: bool) -> Option<TlsConfig> {
    (cfg.tls.is_none() && cfg.kubernetes.is_some() && !cfg.listen.ip().is_loopback() && !insecure_listen).then(|| {
        TlsConfig::SelfSigned(crate::config::SelfSignedTls {
            secret: DEFAULT_SECRET.to_owned(),
            hosts: vec![],
        })
    })
}

/// The listener's certificate as `tls` configures it (reading, or creating, the Secret of
/// `selfSigned`); `None` without `tls`. Logs where it came from and its fingerprint.
pub async fn load(cfg: &AgentConfig) -> Result<Option<ServerTls>> {
    let tls = match &cfg.tls {
        None => return Ok(None),
        Some(TlsConfig::Files { cert_file, key_file }) => {
            let cert = fs_err::read(cert_file).context("tls.certFile")?;
            let key = fs_err::read(key_file).context("tls.keyFile")?;
            ServerTls::parse(
                cert,
                key,
                None,
                format!(
                    "tls.certFile {} / tls.keyFile {}",
                    cert_file.display(),
                    key_file.display()
                ),
            )?
        }
        Some(TlsConfig::SelfSigned(s)) => {
            let k = cfg
                .kubernetes
                .as_ref()
                .context("tls.selfSigned needs the kubernetes section")?;
            let client = crate::release::kube_client(k).await?;
            let (tls, outcome) = ensure_secret(&client, &k.namespace, s).await?;
            match outcome {
                Outcome::Created => tracing::info!(
                    "issued a self-signed CA and server certificate for {} into {}",
                    hosts(s, &k.namespace).join(", "),
                    tls.origin
                ),
                Outcome::Reused => tracing::info!("reusing the certificate in {}", tls.origin),
            }
            tls
        }
    };
    tracing::info!("TLS certificate SHA-256 fingerprint {}", tls.fingerprint);
    if let Some(ca) = tls.ca_pem.as_deref()
        && let Some(Ok(der)) = CertificateDer::pem_slice_iter(ca).next()
    {
        tracing::info!("TLS CA certificate (ca.crt) SHA-256 fingerprint {}", fingerprint(&der));
    }
    Ok(Some(tls))
}

/// Whether [`ensure_secret`] issued a new certificate or found one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Reused,
}

/// The hosts a `selfSigned` certificate is issued for.
pub fn hosts(s: &SelfSignedTls, namespace: &str) -> Vec<String> {
    if !s.hosts.is_empty() {
        return s.hosts.clone();
    }
    vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "sealift-agent".to_owned(),
        format!("sealift-agent.{namespace}"),
        format!("sealift-agent.{namespace}.svc"),
        format!("sealift-agent.{namespace}.svc.cluster.local"),
    ]
}

/// Reads the Secret of `selfSigned`, creating it with a newly issued certificate when it does
/// not exist. Two agents racing at first start both end up serving the one that was created.
pub async fn ensure_secret(client: &kube::Client, namespace: &str, s: &SelfSignedTls) -> Result<(ServerTls, Outcome)> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = &s.secret;
    let origin = format!("Secret {namespace}/{name}");
    let wanted = hosts(s, namespace);
    let get = async || {
        tokio::time::timeout(Duration::from_secs(30), api.get_opt(name))
            .await
            .with_context(|| format!("reading {origin}: no answer from the API server in 30 s"))?
            .with_context(|| format!("reading {origin}"))
    };
    if let Some(found) = get().await? {
        return Ok((from_secret(&found, &origin, &wanted)?, Outcome::Reused));
    }
    let issued =
        issue(&wanted, jiff::Timestamp::now()).with_context(|| format!("issuing the certificate for {origin}"))?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some([("app.kubernetes.io/managed-by".to_owned(), "sealift-agent".to_owned())].into()),
            annotations: Some([(HOSTS_ANNOTATION.to_owned(), wanted.join(","))].into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            [
                (CERT_KEY.to_owned(), ByteString(issued.cert_pem.clone().into_bytes())),
                (KEY_KEY.to_owned(), ByteString(issued.key_pem.clone().into_bytes())),
                (CA_KEY.to_owned(), ByteString(issued.ca_pem.clone().into_bytes())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let created = tokio::time::timeout(Duration::from_secs(30), api.create(&PostParams::default(), &secret))
        .await
        .with_context(|| format!("creating {origin}: no answer from the API server in 30 s"))?;
    match created {
        Ok(_) => {
            let tls = ServerTls::parse(
                issued.cert_pem.into_bytes(),
                issued.key_pem.into_bytes(),
                Some(issued.ca_pem.into_bytes()),
                origin,
            )?;
            Ok((tls, Outcome::Created))
        }
        // Another agent created it between our read and our write: serve that one.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let found = get()
                .await?
                .with_context(|| format!("{origin} vanished right after it was created"))?;
            Ok((from_secret(&found, &origin, &wanted)?, Outcome::Reused))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "creating {origin}\nhint: the agent's ServiceAccount needs get and create on secrets in {namespace}"
            )
        }),
    }
}

fn from_secret(secret: &Secret, origin: &str, wanted: &[String]) -> Result<ServerTls> {
    let data = secret.data.clone().unwrap_or_default();
    let field = |key: &str| -> Result<Vec<u8>> {
        match data.get(key) {
            Some(v) if !v.0.is_empty() => Ok(v.0.clone()),
            _ => bail!(
                "{origin} has no {key}\nhint: delete the Secret and restart the agent to issue a new self-signed certificate"
            ),
        }
    };
    let cert = field(CERT_KEY)?;
    let key = field(KEY_KEY)?;
    let ca = data.get(CA_KEY).map(|v| v.0.clone()).filter(|v| !v.is_empty());
    let tls = ServerTls::parse(cert, key, ca, origin.to_owned()).map_err(|e| {
        e.context("hint: delete the Secret and restart the agent to issue a new self-signed certificate")
    })?;
    let issued_for = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOSTS_ANNOTATION));
    if let Some(issued_for) = issued_for
        && *issued_for != wanted.join(",")
    {
        tracing::warn!(
            "the certificate in {origin} was issued for {issued_for}, not for the configured {}; \
             delete the Secret and restart to issue a new one (clients must then trust its new ca.crt)",
            wanted.join(",")
        );
    }
    Ok(tls)
}

/// A CA and the server certificate it signed, PEM.
#[derive(Clone)]
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Issues a self-signed CA (path length 0) and a server certificate for `hosts` (DNS names or
/// IP addresses), both ECDSA P-256, valid from a day before `now` for ten years. The CA's
/// key is dropped here.
pub fn issue(hosts: &[String], now: jiff::Timestamp) -> Result<Issued> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    if hosts.is_empty() {
        bail!("no hosts to issue the certificate for");
    }
    if let Some(bad) = hosts
        .iter()
        .find(|h| h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == ','))
    {
        bail!("host {bad:?} is neither a DNS name nor an IP address");
    }
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let from = today.yesterday().context("the clock is at the start of time")?;
    let until = today
        .checked_add(jiff::Span::new().years(VALID_YEARS))
        .context("the clock is at the end of time")?;
    let date = |d: jiff::civil::Date| -> Result<_> {
        let month = u8::try_from(d.month()).context("month")?;
        let day = u8::try_from(d.day()).context("day")?;
        Ok(rcgen::date_time_ymd(i32::from(d.year()), month, day))
    };

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::OrganizationName, "Sealift");
    // A distinct name per CA, so a client that trusted an earlier one never mixes them up.
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("sealift-agent self-signed CA {today} {:08x}", rand::random::<u32>()),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = date(from)?;
    ca.not_after = date(until)?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut server =
        CertificateParams::new(hosts.to_vec()).map_err(|e| anyhow::anyhow!("hosts {}: {e}", hosts.join(", ")))?;
    server.distinguished_name = DistinguishedName::new();
    server.distinguished_name.push(DnType::OrganizationName, "Sealift");
    server.distinguished_name.push(DnType::CommonName, "sealift-agent");
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = date(from)?;
    server.not_after = date(until)?;
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::new(ca, ca_key);
    let server_cert = server.signed_by(&server_key, &issuer)?;
    Ok(Issued {
        ca_pem: ca_cert.pem(),
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
    })
}

/// A client for `kubernetes` (the kubeconfig it names, else in-cluster, else `KUBECONFIG`).
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    fn names() -> Vec<String> {
        let s = SelfSignedTls {
            secret: "t".into(),
            hosts: vec![],
        };
        hosts(&s, "sealift-system")
    }

    #[test]
    fn issued_certificate_verifies_under_its_ca_for_every_host() {
        let now = jiff::Timestamp::now();
        let issued = issue(&names(), now).unwrap();
        let ca = CertificateDer::from_pem_slice(issued.ca_pem.as_bytes()).unwrap();
        let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let at = UnixTime::since_unix_epoch(Duration::from_secs(now.as_second().unsigned_abs()));
        for host in names() {
            let name = ServerName::try_from(host.clone()).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &name, &[], at)
                .unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        let other = ServerName::try_from("elsewhere.example").unwrap();
        let err = verifier.verify_server_cert(&leaf, &[], &other, &[], at).unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
        // Nine years on it still verifies: air-gapped clusters run long.
        let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_second().unsigned_abs() + 9 * 366 * 86_400));
        let name = ServerName::try_from("localhost").unwrap();
        verifier.verify_server_cert(&leaf, &[], &name, &[], later).unwrap();
    }

    #[test]
    fn refuses_a_host_that_is_no_name() {
        let err = issue(&["a b".to_owned()], jiff::Timestamp::now()).unwrap_err();
        assert_eq!(err.to_string(), "host \"a b\" is neither a DNS name nor an IP address");
    }

    #[test]
    fn fingerprint_is_openssl_style() {
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn default_hosts_name_the_service_in_its_namespace() {
        assert_eq!(
            names(),
            [
                "localhost",
                "127.0.0.1",
                "sealift-agent",
                "sealift-agent.sealift-system",
                "sealift-agent.sealift-system.svc",
                "sealift-agent.sealift-system.svc.cluster.local"
            ]
        );
    }
}
