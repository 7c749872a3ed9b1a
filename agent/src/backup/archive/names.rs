//! The names inside backup storage: [`BackupId`] (a backup) and [`EntryName`] (a data entry).

use std::fmt;
use std::str::FromStr;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use super::error::ArchiveError;

/// A backup's identity: its UTC creation time to the second, written `YYYY-MM-DDtHH-MM-SS`
/// (lowercase `t`, as seed 001 does). Unique per storage, so two backups cannot start in the
/// same second. Orders by time; the text form orders the same way (fixed width).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(DateTime);

impl BackupId {
    /// The id of a backup created at `at` (sub-second precision dropped). Refuses years
    /// outside 0000–9999, which the text form cannot write (no real clock reaches them).
    pub fn from_timestamp(at: jiff::Timestamp) -> Result<BackupId, ArchiveError> {
        let dt = at.to_zoned(TimeZone::UTC).datetime();
        if !(0..=9999).contains(&dt.year()) {
            return Err(ArchiveError::IdInvalid {
                value: at.to_string(),
                reason: "the year is outside 0000-9999".into(),
            });
        }
        Ok(BackupId(dt.with().subsec_nanosecond(0).build().unwrap_or(dt)))
    }

    /// The instant the id names.
    pub fn to_timestamp(&self) -> jiff::Timestamp {
        // A civil time of years 0000-9999 is always a valid UTC instant.
        self.0
            .to_zoned(TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}t{:02}-{:02}-{:02}",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }
}

impl FromStr for BackupId {
    type Err = ArchiveError;

    /// Exactly `YYYY-MM-DDtHH-MM-SS`, all digits, a real date and time of day (no leap
    /// second): one spelling per backup, so a path or URL names it one way.
    fn from_str(s: &str) -> Result<BackupId, ArchiveError> {
        let invalid = |reason: &str| ArchiveError::IdInvalid {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        const SHAPE: &[u8; 19] = b"dddd-dd-ddtdd-dd-dd";
        let bytes = s.as_bytes();
        if bytes.len() != SHAPE.len() {
            return Err(invalid("it must be 19 characters long"));
        }
        for (i, (&b, &want)) in bytes.iter().zip(SHAPE.iter()).enumerate() {
            let ok = if want == b'd' { b.is_ascii_digit() } else { b == want };
            if !ok {
                return Err(invalid(&format!("unexpected character at position {}", i + 1)));
            }
        }
        let num = |range: std::ops::Range<usize>| -> i16 {
            bytes[range].iter().fold(0i16, |acc, b| acc * 10 + i16::from(b - b'0'))
        };
        let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
        let time = |v: i16| i8::try_from(v).map_err(|_| invalid("not a time of day"));
        let dt = DateTime::new(
            num(0..4),
            time(num(5..7))?,
            time(num(8..10))?,
            time(hour)?,
            time(minute)?,
            time(second)?,
            0,
        )
        .map_err(|e| invalid(&format!("not a valid date and time: {e}")))?;
        Ok(BackupId(dt))
    }
}

impl serde::Serialize for BackupId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BackupId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<BackupId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The longest entry path: a file name limit of common filesystems, for the whole path.
pub const MAX_ENTRY_NAME: usize = 255;

/// A data entry's path inside a backup: relative, `/`-separated, each segment non-empty,
/// not `.` or `..`, of `[A-Za-z0-9._-]`, at most [`MAX_ENTRY_NAME`] bytes in all. It cannot
/// name anything outside the backup's `entries/`, on any filesystem or object store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryName(String);

impl EntryName {
    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EntryName {
    type Err = ArchiveError;

    fn from_str(s: &str) -> Result<EntryName, ArchiveError> {
        check_path(s).map_err(|reason| ArchiveError::EntryName {
            value: s.to_owned(),
            reason,
        })?;
        Ok(EntryName(s.to_owned()))
    }
}

impl TryFrom<&str> for EntryName {
    type Error = ArchiveError;
    fn try_from(s: &str) -> Result<EntryName, ArchiveError> {
        s.parse()
    }
}

impl serde::Serialize for EntryName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for EntryName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EntryName, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why `s` is not a safe relative path (shared with the storage's object keys).
pub(crate) fn check_path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > MAX_ENTRY_NAME {
        return Err(format!("it is longer than {MAX_ENTRY_NAME} bytes"));
    }
    if s.starts_with('/') {
        return Err("it is absolute".into());
    }
    for segment in s.split('/') {
        match segment {
            "" => return Err("it has an empty segment".into()),
            "." | ".." => return Err(format!("it has a {segment:?} segment")),
            _ => {}
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "it contains {c:?} (allowed: A-Z a-z 0-9 . _ - and / between segments)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn backup_id_round_trips_and_orders_by_time() {
        let id: BackupId = "2026-11-22t06-00-00".parse().unwrap();
        assert_eq!(id.to_string(), "2026-11-22t06-00-00");
        assert_eq!(id.to_timestamp().to_string(), "2026-11-22T06:00:00Z");
        let at: jiff::Timestamp = "2026-11-22T06:00:00.75Z".parse().unwrap();
        assert_eq!(BackupId::from_timestamp(at).unwrap(), id);
        let later: BackupId = "2026-11-22t06-00-01".parse().unwrap();
        let next_year: BackupId = "2027-01-01t00-00-00".parse().unwrap();
        assert!(id < later && later < next_year);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"2026-11-22t06-00-00\"");
        assert_eq!(serde_json::from_str::<BackupId>("\"2026-11-22t06-00-00\"").unwrap(), id);
    }

    #[test]
    fn backup_id_is_strict() {
        for bad in [
            "",
            "2026-11-22T06-00-00",
            "2026-11-22t06:00:00",
            "2026-11-22t06-00-0",
            "2026-11-22t06-00-000",
            "2026-13-22t06-00-00",
            "2026-02-30t06-00-00",
            "2026-11-22t24-00-00",
            "2026-11-22t06-60-00",
            "2026-11-22t06-00-60",
            "+026-11-22t06-00-00",
            "2026-11-22t06-00-0a",
            " 2026-11-22t06-00-00",
        ] {
            let err = bad.parse::<BackupId>().unwrap_err();
            assert_eq!(err.code(), "backup_id_invalid", "{bad}");
        }
        assert!(serde_json::from_str::<BackupId>("\"2026-11-22 06-00-00\"").is_err());
    }

    #[test]
    fn entry_names_cannot_escape() {
        for good in ["a", "objects/v1.Secret.json", "parts/db-dump", ".hidden/x_y-1.2"] {
            assert_eq!(good.parse::<EntryName>().unwrap().as_str(), good);
        }
        let long = "a".repeat(MAX_ENTRY_NAME + 1);
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/../b", ".", "a/./b", "a\\b", "a b", "é", "a:b", &long,
        ] {
            let err = bad.parse::<EntryName>().unwrap_err();
            assert_eq!(err.code(), "entry_name", "{bad:?}");
        }
    }
}
