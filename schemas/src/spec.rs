//! The vendor's build spec, `sealift.yaml`: what `sealift-bundler build` packs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{ImageName, ProductName, RepositoryPath};
use crate::release::{Step, UpgradePolicy, VariableSpec, WaveSpec};

/// `sealift.yaml`. Relative paths are relative to the spec file's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildSpec {
    /// Product name; the agent only accepts bundles of its own product.
    pub product: ProductName,
    pub chart: ChartSpec,
    /// Images the render uses, under the names the chart uses.
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    /// Pull images named on a host from a mirror (`quay.io: 127.0.0.1:5000`); the bundle keeps
    /// the original names. `--registry-override` adds to and replaces these.
    #[serde(default)]
    pub registry_overrides: BTreeMap<String, String>,
    /// Registries (host[:port]) that may be reached over plain HTTP besides loopback.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Prefix for every image's target repository path in the customer registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_prefix: Option<String>,
    /// Where else images appear in the render (operator custom resources).
    #[serde(default)]
    pub image_locations: Vec<ImageLocation>,
    #[serde(default)]
    pub variables: Vec<VariableSpec>,
    /// Migration, backup and restore steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub upgrade_policy: UpgradePolicy,
    /// Component waves in order; objects matching none form a final wave.
    #[serde(default)]
    pub waves: Vec<WaveSpec>,
}

/// The Helm chart and how to render it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChartSpec {
    /// Chart directory.
    pub path: PathBuf,
    /// Helm release name, fixed at build time.
    pub release_name: String,
    /// Namespace for the render; the site may choose another at first install.
    pub namespace: String,
    /// Values files, in order (`helm template -f`).
    #[serde(default)]
    pub values: Vec<PathBuf>,
    /// `helm template --kube-version`.
    pub kube_version: String,
    /// `helm template --api-versions`, each.
    #[serde(default)]
    pub api_versions: Vec<String>,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum ImageSource {
    /// Pull from the registry the name points at (after registry overrides).
    Registry {
        /// Pull by this digest instead of the name's tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
    },
    /// An OCI image layout directory and the `org.opencontainers.image.ref.name` to take.
    OciLayout { path: PathBuf, reference: String },
    /// A `docker save` archive and the repo:tag inside it (the only one when absent).
    DockerArchive {
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

/// One image of the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSpec {
    /// The reference as the chart uses it (`quay.io/acme/app:2.4.0`).
    pub name: ImageName,
    /// Defaults to `registry: {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImageSource>,
    /// Repository path in the customer registry; default: the name's path without host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RepositoryPath>,
    /// Keep only these platforms (`linux/amd64`); default: the whole index.
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// Extra places images appear for one kind (operator custom resources).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageLocation {
    /// `group/version` or `v1`; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    /// JSON pointers to string fields holding a full image reference.
    #[serde(default)]
    pub pointers: Vec<String>,
    /// Regular expressions over container args; capture group 1 is an image reference.
    #[serde(default)]
    pub arg_patterns: Vec<String>,
    /// Regular expressions over env values; capture group 1 is an image reference.
    #[serde(default)]
    pub env_patterns: Vec<String>,
}
