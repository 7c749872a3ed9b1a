//! Paths inside a bundle and the fixed layout of its entries.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::{Digest, NameError};

/// Longest path the ustar `name` field holds; the writer never uses the `prefix` field.
pub const MAX_PATH_LEN: usize = 100;

/// Entry 1: the root chain and the signed release envelope.
pub const HEAD_PATH: &str = "sealift/head.json";
/// The Helm chart as written, packed deterministically (gzip tar, as `helm package` makes).
pub const CHART_PATH: &str = "sealift/chart.tgz";
/// The render by real Helm, exactly as `helm template` printed it (test hooks dropped).
pub const RENDER_PATH: &str = "sealift/rendered.yaml";
/// Site variables with their slots.
pub const VARIABLES_PATH: &str = "sealift/variables.json";
/// Migration, backup and restore steps, upgrade policy and waves.
pub const MIGRATIONS_PATH: &str = "sealift/migrations.json";
/// The OCI image layout marker.
pub const OCI_LAYOUT_PATH: &str = "oci-layout";
/// The OCI image layout index naming each image.
pub const OCI_INDEX_PATH: &str = "index.json";

/// The entries between the head and the blobs, in archive order.
pub const METADATA_PATHS: [&str; 6] = [
    CHART_PATH,
    RENDER_PATH,
    VARIABLES_PATH,
    MIGRATIONS_PATH,
    OCI_LAYOUT_PATH,
    OCI_INDEX_PATH,
];

/// A relative path inside a bundle. It cannot express `..`, `.`, an absolute path, a
/// backslash, an empty component or a character outside `[A-Za-z0-9._-]`, and it fits the
/// ustar name field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryPath(String);

impl EntryPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path of a blob in the OCI layout.
    pub fn blob(digest: &Digest) -> Self {
        Self(format!("blobs/sha256/{}", digest.hex()))
    }

    /// The digest a blob path names, if it is one.
    pub fn blob_digest(&self) -> Option<Digest> {
        let hex = self.0.strip_prefix("blobs/sha256/")?;
        format!("sha256:{hex}").parse().ok()
    }
}

impl FromStr for EntryPath {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |reason| NameError {
            what: "entry path",
            value: s.to_owned(),
            reason,
        };
        if s.is_empty() || s.len() > MAX_PATH_LEN {
            return Err(err("must be 1 to 100 bytes"));
        }
        for part in s.split('/') {
            if part.is_empty() {
                return Err(err("must be relative, without empty components"));
            }
            if part == "." || part == ".." {
                return Err(err("must not contain '.' or '..' components"));
            }
            if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                return Err(err("may hold only A-Z, a-z, 0-9, '.', '_', '-' and '/'"));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EntryPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EntryPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for EntryPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EntryPath".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": MAX_PATH_LEN,
            "pattern": "^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_escapes() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "é",
        ] {
            assert!(bad.parse::<EntryPath>().is_err(), "{bad:?} accepted");
        }
        assert!(EntryPath::from_str(&"a".repeat(101)).is_err());
    }

    proptest! {
        /// No input that parses can escape the bundle root when joined to a directory.
        #[test]
        fn no_parsed_path_escapes(s in "\\PC{0,120}") {
            if let Ok(p) = s.parse::<EntryPath>() {
                let joined = std::path::Path::new("/root").join(p.as_str());
                prop_assert!(joined.starts_with("/root"));
                for c in std::path::Path::new(p.as_str()).components() {
                    prop_assert!(matches!(c, std::path::Component::Normal(_)), "component {c:?}");
                }
            }
        }

        #[test]
        fn round_trips(s in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}){0,3}") {
            let p: EntryPath = s.parse().unwrap();
            prop_assert_eq!(p.to_string(), s);
        }
    }
}
