//! Whole-second UTC timestamps, written as RFC 3339 (`2026-11-21T23:41:06Z`).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::NameError;

/// A point in time with whole-second precision. The text form is canonical: parsing
/// accepts only what `Display` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_unix(seconds: i64) -> Result<Self, NameError> {
        jiff::Timestamp::from_second(seconds).map_err(|_| NameError {
            what: "timestamp",
            value: seconds.to_string(),
            reason: "out of range",
        })?;
        Ok(Self(seconds))
    }

    pub fn now() -> Self {
        Self(jiff::Timestamp::now().as_second())
    }

    pub fn unix(&self) -> i64 {
        self.0
    }

    /// This time plus `seconds` (saturating).
    pub fn plus(&self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }
}

impl FromStr for Timestamp {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |reason| NameError {
            what: "timestamp",
            value: s.to_owned(),
            reason,
        };
        let t: jiff::Timestamp = s
            .parse()
            .map_err(|_| err("must be RFC 3339, e.g. 2026-01-02T03:04:05Z"))?;
        let ts = Self(t.as_second());
        if ts.to_string() != s {
            return Err(err("must be whole seconds in UTC, written YYYY-MM-DDTHH:MM:SSZ"));
        }
        Ok(ts)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_second(self.0) {
            Ok(t) => write!(f, "{}", t.strftime("%Y-%m-%dT%H:%M:%SZ")),
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$" })
    }
}

/// Parses a duration such as `365d`, `12h`, `30m`, `45s` or `2w` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, NameError> {
    let err = |reason| NameError {
        what: "duration",
        value: s.to_owned(),
        reason,
    };
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| err("needs a unit: s, m, h, d or w"))?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| err("must start with a number"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(err("unit must be s, m, h, d or w")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| err("must be positive and not overflow"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_form_is_canonical() {
        let t: Timestamp = "2026-11-21T23:41:06Z".parse().unwrap();
        assert_eq!(t.unix(), 1_795_304_466);
        assert!("2026-11-21T23:41:06.5Z".parse::<Timestamp>().is_err());
        assert!("2026-11-21T23:41:06+00:00".parse::<Timestamp>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("365d").unwrap(), 365 * 86_400);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("5y").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(secs in 0i64..10_000_000_000) {
            let t = Timestamp::from_unix(secs).unwrap();
            prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }
    }
}
