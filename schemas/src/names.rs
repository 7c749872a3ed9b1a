//! Newtypes for every name parsed from text. Each has `FromStr`, `Display` and serde
//! through its string form, so a value that exists is a valid one.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(s).map_err(|reason| NameError { what: $what, value: s.to_owned(), reason })?;
                Ok(Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $what })
            }
        }
    };
}

fn dns_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may hold only a-z, 0-9 and '-'");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

string_newtype!(
    /// A product name: a DNS label (`acme`).
    ProductName,
    "product name",
    dns_label
);

string_newtype!(
    /// A migration, backup or restore step id: a DNS label.
    StepId,
    "step id",
    dns_label
);

string_newtype!(
    /// A site variable name: `[a-zA-Z][a-zA-Z0-9_]*`, at most 63 characters.
    VariableName,
    "variable name",
    |s| {
        let mut bytes = s.bytes();
        match bytes.next() {
            Some(b) if b.is_ascii_alphabetic() => {}
            _ => return Err("must start with a letter"),
        }
        if s.len() > 63 {
            return Err("must be at most 63 characters");
        }
        if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("may hold only letters, digits and '_'");
        }
        Ok(())
    }
);

string_newtype!(
    /// A repository path in a registry, without host: `acme/app`.
    RepositoryPath,
    "repository path",
    |s| {
        if s.is_empty() || s.len() > 255 {
            return Err("must be 1 to 255 characters");
        }
        for part in s.split('/') {
            let ok = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric();
            if !ok {
                return Err("components must be lowercase alphanumerics separated by '.', '_' or '-'");
            }
        }
        Ok(())
    }
);

string_newtype!(
    /// An image reference as a chart uses it: `[host[:port]/]path[:tag][@sha256:…]`.
    ImageName,
    "image reference",
    |s| ImageReference::parse(s).map(|_| ())
);

impl ImageName {
    pub fn reference(&self) -> ImageReference {
        // Checked at construction.
        ImageReference::parse(&self.0).unwrap_or_else(|_| unreachable!("validated image name"))
    }
}

/// The parts of an image reference, normalised as Docker does (`nginx` →
/// `docker.io/library/nginx:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    pub host: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageReference {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() || s.len() > 512 || s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err("must be 1 to 512 printable characters");
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or("digest must be sha256:<64 hex>")?;
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err("digest must be sha256:<64 hex>");
                }
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let (host, remainder) = match rest.split_once('/') {
            Some((h, r)) if h.contains('.') || h.contains(':') || h == "localhost" => (h.to_owned(), r),
            _ => ("docker.io".to_owned(), rest),
        };
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t.to_owned())),
            _ => (remainder, None),
        };
        let path = if host == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        RepositoryPath::from_str(&path).map_err(|e| e.reason)?;
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err("tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}");
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Self {
            host,
            path,
            tag,
            digest,
        })
    }
}

/// A `sha256:<hex>` content digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(data).into())
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Digest {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |reason| NameError {
            what: "digest",
            value: s.to_owned(),
            reason,
        };
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| err("must start with sha256:"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err("must be sha256: and 64 lowercase hex digits"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| err("bad hex"))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^sha256:[0-9a-f]{64}$" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_docker_hub_names() {
        let r = ImageReference::parse("nginx").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("docker.io", "library/nginx", Some("latest"))
        );
        let r = ImageReference::parse("127.0.0.1:5000/acme/app:2.4.0").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "acme/app", Some("2.4.0"))
        );
    }

    #[test]
    fn refuses_bad_names() {
        assert!(ImageReference::parse("quay.io/Acme/app").is_err());
        assert!(ImageReference::parse("quay.io/acme/app@sha256:xyz").is_err());
        assert!("Acme".parse::<ProductName>().is_err());
        assert!("-a".parse::<StepId>().is_err());
        assert!("1abc".parse::<VariableName>().is_err());
    }

    proptest! {
        #[test]
        fn digest_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let d = Digest::from_bytes(bytes);
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }

        #[test]
        fn product_name_round_trips(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            let p: ProductName = s.parse().unwrap();
            prop_assert_eq!(p.to_string(), s);
        }
    }
}
