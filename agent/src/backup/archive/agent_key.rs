//! The agent's backup keys, kept in Secrets of its namespace.
//!
//! The signing key (ed25519, PKCS#8 PEM under [`SIGNING_KEY`]) is created at first start
//! and reused for ever after, so every backup this agent made keeps verifying; another
//! agent accepts them once the public key is in its `backups.trustedKeys`. The encryption
//! key is an age X25519 identity the operator provides (it must survive the cluster, so the
//! agent never generates it).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

/// The Secret key holding the signing key.
pub const SIGNING_KEY: &str = "backup.key";

const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's backup signing key from Secret `secret` in `namespace`, generating it and
/// creating the Secret when there is none. Two agents racing at first start both end up
/// with the key that was created.
pub async fn load_or_create(client: &kube::Client, namespace: &str, secret: &str) -> Result<keys::SigningKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let origin = format!("Secret {namespace}/{secret}");
    if let Some(found) = get(&api, secret, &origin).await? {
        return signing_key_of(&found, &origin);
    }
    let key = keys::SigningKey::generate();
    let pem = key.to_pkcs8_pem();
    let new = Secret {
        metadata: ObjectMeta {
            name: Some(secret.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some([("app.kubernetes.io/managed-by".to_owned(), "sealift".to_owned())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some([(SIGNING_KEY.to_owned(), ByteString(pem.as_bytes().to_vec()))].into()),
        ..Default::default()
    };
    let created = tokio::time::timeout(API_TIMEOUT, api.create(&PostParams::default(), &new))
        .await
        .with_context(|| format!("creating {origin}: no answer from the API server in 30 s"))?;
    match created {
        Ok(_) => {
            tracing::info!(
                "created the backup signing key {} in {origin}",
                key.public_key().key_id()
            );
            Ok(key)
        }
        // Another agent created it between our read and our write: use that one.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let found = get(&api, secret, &origin)
                .await?
                .with_context(|| format!("{origin} vanished right after it was created"))?;
            signing_key_of(&found, &origin)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "creating {origin}\nhint: the agent's ServiceAccount needs get and create on secrets in {namespace}"
            )
        }),
    }
}

/// The age identity for backup encryption from key `key` of Secret `secret` (an
/// `AGE-SECRET-KEY-1…` line, as `age-keygen` writes; comment lines are ignored). Backups are
/// encrypted to its `to_public()` recipient.
pub async fn load_identity(
    client: &kube::Client,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<age::x25519::Identity> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let origin = format!("Secret {namespace}/{secret}");
    let found = get(&api, secret, &origin).await?.with_context(|| {
        format!("{origin} does not exist\nhint: create it with the backup encryption key under {key}")
    })?;
    parse_identity(secret_value(&found, key, &origin)?, &format!("{origin} key {key}"))
}

async fn get(api: &Api<Secret>, name: &str, origin: &str) -> Result<Option<Secret>> {
    tokio::time::timeout(API_TIMEOUT, api.get_opt(name))
        .await
        .with_context(|| format!("reading {origin}: no answer from the API server in 30 s"))?
        .with_context(|| format!("reading {origin}"))
}

fn secret_value<'a>(secret: &'a Secret, key: &str, origin: &str) -> Result<&'a [u8]> {
    match secret.data.as_ref().and_then(|d| d.get(key)) {
        Some(v) if !v.0.is_empty() => Ok(&v.0),
        _ => bail!("{origin} has no {key}"),
    }
}

fn signing_key_of(secret: &Secret, origin: &str) -> Result<keys::SigningKey> {
    let pem = std::str::from_utf8(secret_value(secret, SIGNING_KEY, origin)?)
        .with_context(|| format!("{origin} key {SIGNING_KEY} is not PEM text"))?;
    keys::SigningKey::from_pkcs8_pem(pem, None)
        .with_context(|| format!("{origin} key {SIGNING_KEY} is not a PKCS#8 PEM ed25519 private key"))
}

/// An age identity from text holding one `AGE-SECRET-KEY-1…` line.
pub(crate) fn parse_identity(bytes: &[u8], origin: &str) -> Result<age::x25519::Identity> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{origin} is not text"))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let (Some(line), None) = (lines.next(), lines.next()) else {
        bail!("{origin} must hold exactly one AGE-SECRET-KEY-1… line");
    };
    line.parse::<age::x25519::Identity>()
        .map_err(|e| anyhow::anyhow!("{origin} is not an age X25519 identity (AGE-SECRET-KEY-1…): {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use age::secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn parses_age_keygen_output_and_names_the_origin_on_errors() {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let file = format!(
            "# created: 2026-01-01T00:00:00Z\n# public key: {}\n{}\n",
            identity.to_public(),
            secret.expose_secret()
        );
        let parsed = parse_identity(file.as_bytes(), "Secret ns/s key age.key").unwrap();
        assert_eq!(parsed.to_public().to_string(), identity.to_public().to_string());

        let err = parse_identity(b"AGE-SECRET-KEY-1NOPE", "Secret ns/s key age.key")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("Secret ns/s key age.key is not an age X25519 identity"),
            "{err}"
        );
        let err = parse_identity(b"# nothing\n", "Secret ns/s key age.key").err().unwrap();
        assert_eq!(
            err.to_string(),
            "Secret ns/s key age.key must hold exactly one AGE-SECRET-KEY-1… line"
        );
    }
}
