//! Manifest and index parsing, platform matching and the deterministic index rewrite.

use std::fmt;
use std::str::FromStr;

use schemas::Digest;
use serde::Deserialize;

use super::error::Problem;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The manifest media types asked for when pulling.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// Manifests larger than this are refused (registries cap them at 4 MiB).
pub const MAX_MANIFEST: u64 = 16 << 20;

/// `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Whether `self`, as requested, selects `entry`: a requested variant must match (`arm64`
    /// without a variant is `v8`); no requested variant accepts any.
    pub fn selects(&self, entry: &Platform) -> bool {
        if self.os != entry.os || self.architecture != entry.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(v) => {
                normalize_variant(&self.architecture, Some(v))
                    == normalize_variant(&entry.architecture, entry.variant.as_deref())
            }
        }
    }
}

fn normalize_variant<'a>(arch: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (arch, variant) {
        ("arm64", None) => Some("v8"),
        (_, v) => v,
    }
}

impl FromStr for Platform {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor from a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub enum Parsed {
    Index {
        media_type: String,
        entries: Vec<Descriptor>,
    },
    Manifest {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Parsed {
    pub fn media_type(&self) -> &str {
        match self {
            Parsed::Index { media_type, .. } | Parsed::Manifest { media_type, .. } => media_type,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<Vec<RawDescriptor>>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: u64,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// Parses manifest or index bytes stored under `digest`. `hint` is the media type the
/// referring descriptor gave, used when the document has none.
pub fn parse(digest: &Digest, bytes: &[u8], hint: Option<&str>) -> Result<Parsed, Problem> {
    let invalid = |reason: String| Problem::InvalidManifest {
        digest: *digest,
        reason,
    };
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if raw.schema_version != Some(2) {
        return Err(invalid(format!("schemaVersion {:?} is not 2", raw.schema_version)));
    }
    let media_type = match raw.media_type.or_else(|| hint.map(str::to_owned)) {
        Some(m) => m,
        None if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        None if raw.config.is_some() => OCI_MANIFEST.to_owned(),
        None => return Err(invalid("neither an index nor a manifest".to_owned())),
    };
    let descriptor = |d: RawDescriptor| -> Result<Descriptor, Problem> {
        let dg: Digest = d
            .digest
            .parse()
            .map_err(|e: schemas::names::NameError| invalid(e.to_string()))?;
        Ok(Descriptor {
            media_type: d.media_type.unwrap_or_default(),
            digest: dg,
            size: d.size,
            platform: d.platform.map(|p| Platform {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant.filter(|v| !v.is_empty()),
            }),
        })
    };
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let entries = raw
                .manifests
                .ok_or_else(|| invalid("an index without `manifests`".to_owned()))?;
            let entries = entries.into_iter().map(descriptor).collect::<Result<_, _>>()?;
            Ok(Parsed::Index { media_type, entries })
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = raw
                .config
                .ok_or_else(|| invalid("a manifest without `config`".to_owned()))?;
            let layers = raw.layers.unwrap_or_default();
            Ok(Parsed::Manifest {
                media_type,
                config: descriptor(config)?,
                layers: layers.into_iter().map(descriptor).collect::<Result<_, _>>()?,
            })
        }
        _ => Err(Problem::UnsupportedMediaType {
            digest: *digest,
            media_type,
        }),
    }
}

/// The index bytes with only the `manifests` entries at `keep` (ascending), every other key
/// and value in its original order.
pub fn filter_index(digest: &Digest, bytes: &[u8], keep: &[usize]) -> Result<Vec<u8>, Problem> {
    let invalid = |reason: String| Problem::InvalidManifest {
        digest: *digest,
        reason,
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let manifests = value
        .get_mut("manifests")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| invalid("an index without `manifests`".to_owned()))?;
    let kept: Vec<serde_json::Value> = std::mem::take(manifests)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, v)| v)
        .collect();
    *manifests = kept;
    serde_json::to_vec(&value).map_err(|e| invalid(e.to_string()))
}

/// The platform of an image config, if it names one.
pub fn config_platform(bytes: &[u8]) -> Option<Platform> {
    #[derive(Deserialize)]
    struct Config {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    let c: Config = serde_json::from_slice(bytes).ok()?;
    Some(Platform {
        os: c.os?,
        architecture: c.architecture?,
        variant: c.variant.filter(|v| !v.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap_or_else(|()| panic!("bad platform {s}"))
    }

    #[test]
    fn matches_platforms_with_default_arm64_variant() {
        assert!(p("linux/amd64").selects(&p("linux/amd64")));
        assert!(!p("linux/amd64").selects(&p("linux/arm64")));
        assert!(p("linux/arm64").selects(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").selects(&p("linux/arm64")));
        assert!(p("linux/arm").selects(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").selects(&p("linux/arm/v7")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v1/x".parse::<Platform>().is_err());
    }

    #[test]
    fn filters_index_keeping_key_order() -> Result<(), Problem> {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"m","digest":"a","size":1,"platform":{"os":"linux","architecture":"amd64"}},{"digest":"b","size":2}],"annotations":{"z":"1","a":"2"}}"#;
        let d = Digest::of(bytes);
        let out = filter_index(&d, bytes, &[1])?;
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"b","size":2}],"annotations":{"z":"1","a":"2"}}"#
        );
        Ok(())
    }
}
