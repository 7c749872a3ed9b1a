//! Registry credentials from a docker `config.json`, looked up by the host contacted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::{FetchError, Problem};

/// The credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// A loaded docker `config.json`.
#[derive(Debug)]
pub struct DockerConfig {
    path: PathBuf,
    raw: RawConfig,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, when the file exists.
    pub fn default_path() -> Option<PathBuf> {
        let path = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => PathBuf::from(std::env::var_os("HOME")?)
                .join(".docker")
                .join("config.json"),
        };
        path.is_file().then_some(path)
    }

    pub fn load(path: &Path) -> Result<Self, FetchError> {
        let err = |source: super::error::BoxError| FetchError::DockerConfig {
            path: path.to_owned(),
            source,
        };
        let bytes = fs_err::read(path).map_err(|e| err(e.into()))?;
        let raw: RawConfig = serde_json::from_slice(&bytes).map_err(|e| err(e.into()))?;
        Ok(Self {
            path: path.to_owned(),
            raw,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for `host` (`host[:port]`), if any.
    pub fn credentials(&self, host: &str) -> Result<Option<Credentials>, Problem> {
        let wanted = normalize_host(host);
        let Some(entry) = self
            .raw
            .auths
            .iter()
            .find(|(k, _)| normalize_host(k) == wanted)
            .map(|(_, v)| v)
        else {
            if self.raw.cred_helpers.contains_key(host) || self.raw.creds_store.is_some() {
                tracing::warn!(
                    "{} names a credential helper for {host}; helpers are not supported, so {host} is contacted anonymously",
                    self.path.display()
                );
            }
            return Ok(None);
        };
        let bad = || Problem::BadCredentials {
            host: host.to_owned(),
            config: self.path.clone(),
        };
        if let Some(token) = &entry.registrytoken {
            return Ok(Some(Credentials::Bearer(token.clone())));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        if entry.identitytoken.is_some() {
            tracing::warn!(
                "{} holds an identity token for {host}; those are not supported",
                self.path.display()
            );
        }
        Ok(None)
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://127.0.0.1:5000/` → `127.0.0.1:5000`.
fn normalize_host(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_credentials_by_host() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.json");
        fs_err::write(
            &path,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},"https://index.docker.io/v1/":{"username":"u","password":"p"},"bad.example":{"auth":"!!"}}}"#,
        )?;
        let config = DockerConfig::load(&path)?;
        assert_eq!(
            config.credentials("127.0.0.1:5000")?,
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            config.credentials("docker.io")?,
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(config.credentials("127.0.0.1:5001")?, None);
        assert!(matches!(
            config.credentials("bad.example"),
            Err(Problem::BadCredentials { .. })
        ));
        Ok(())
    }
}
