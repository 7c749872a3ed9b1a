//! The signed manifest: the payload of the release envelope in the bundle's head.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::entry::EntryPath;
use crate::names::{Digest, ImageName, ProductName, RepositoryPath};
use crate::spec::ImageLocation;
use crate::timestamp::Timestamp;

/// The only manifest schema this reader knows. Any schema change is a new format.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a bundle is, signed as one payload. Its sha256 is the bundle's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub product: ProductName,
    /// The product version (SemVer 2.0), typed by admins; the only version used for ordering.
    #[schemars(with = "String")]
    pub version: semver::Version,
    /// Monotonic build number across the product's releases.
    pub sequence: u64,
    /// Bundles with a lower sequence are refused once this one has been accepted.
    pub min_sequence: u64,
    pub created: Timestamp,
    /// Install-by deadline; never blocks rollback or restore.
    pub expires: Timestamp,
    pub chart: ChartInfo,
    /// Every entry after the head, in archive order.
    pub entries: Vec<EntryRecord>,
    /// Every image, in the order their blobs appear.
    pub images: Vec<ImageRecord>,
    /// Where else images appear in the render (operator custom resources), from the build
    /// spec; the agent rewrites them like pod images. Absent when empty, so bundles without
    /// locations keep the bytes they had before the field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_locations: Vec<ImageLocation>,
}

/// The chart as Helm rendered it; its own versions are recorded, never used for ordering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChartInfo {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    pub release_name: String,
    pub namespace: String,
    pub kube_version: String,
    pub api_versions: Vec<String>,
    /// `helm version --short` of the Helm that rendered it.
    pub helm_version: String,
}

/// One archive entry: where it is, how big, what hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntryRecord {
    pub path: EntryPath,
    pub size: u64,
    pub digest: Digest,
}

/// A platform-specific manifest of an image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformRecord {
    /// `os/architecture[/variant]`.
    pub platform: String,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One image of the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRecord {
    /// The reference the chart uses.
    pub name: ImageName,
    /// Repository path in the customer registry (after any prefix).
    pub target: RepositoryPath,
    /// Tags pushed after every manifest is in place.
    pub tags: Vec<String>,
    /// Digest of the top manifest or index as stored in the bundle.
    pub digest: Digest,
    /// Digest of the source index when `--platform` rewrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    pub media_type: String,
    /// Size of the top manifest or index.
    pub size: u64,
    /// The platform manifests of an index; empty for a single-platform manifest.
    pub platforms: Vec<PlatformRecord>,
    /// Total bytes of every blob the image needs (manifests, configs, layers).
    pub total_size: u64,
    /// Every blob of the image (manifests first, then configs and layers), each once.
    pub blobs: Vec<Digest>,
}

impl Manifest {
    /// Parses manifest bytes strictly: unknown fields, duplicate keys and any schema
    /// version but [`SCHEMA_VERSION`] are refused.
    pub fn parse(payload: &[u8]) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "schemaVersion")]
            schema_version: serde_json::Value,
        }
        let probe: Probe = serde_json::from_slice(payload).map_err(ManifestError::Malformed)?;
        if probe.schema_version != serde_json::json!(SCHEMA_VERSION) {
            return Err(ManifestError::UnknownSchemaVersion(probe.schema_version.to_string()));
        }
        serde_json::from_slice(payload).map_err(ManifestError::Malformed)
    }

    /// The canonical payload bytes the bundler signs.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_else(|_| unreachable!("manifest serializes"));
        out.push(b'\n');
        out
    }

    pub fn entry(&self, path: &str) -> Option<&EntryRecord> {
        self.entries.iter().find(|e| e.path.as_str() == path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("manifest schemaVersion {0} is not supported (this reader knows {SCHEMA_VERSION})")]
    UnknownSchemaVersion(String),
}
