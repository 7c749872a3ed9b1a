//! Entry 1 of every bundle: the root chain and the release envelope, as canonical JSON
//! followed by zero bytes reserved for later co-signatures.

use keys::Envelope;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::refusal::Refusal;
use crate::tar_header::BLOCK;

/// Largest head the reader accepts, checked before any byte of it is parsed.
pub const MAX_HEAD_BYTES: u64 = 4 << 20;
/// Zero bytes the writer reserves after the head's JSON so `sign` can add signatures by
/// rewriting only the head (about 80 signatures).
pub const HEAD_RESERVE: usize = 16 * 1024;

/// The root chain (`1.root.json` … `N.root.json`) and the release envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub roots: Vec<Envelope>,
    pub release: Envelope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead<'a> {
    #[serde(borrow)]
    roots: Vec<&'a RawValue>,
    #[serde(borrow)]
    release: &'a RawValue,
}

impl Head {
    /// The canonical JSON: `{"roots":[…],"release":…}` with each envelope canonical.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = b"{\"roots\":[".to_vec();
        for (i, root) in self.roots.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&root.to_canonical_json());
        }
        out.extend_from_slice(b"],\"release\":");
        out.extend_from_slice(&self.release.to_canonical_json());
        out.push(b'}');
        out
    }

    /// The entry content: JSON then zeros, `HEAD_RESERVE` or more, to a block boundary.
    pub fn to_entry(&self) -> Vec<u8> {
        let mut out = self.to_json();
        let size = (out.len() + HEAD_RESERVE).div_ceil(BLOCK) * BLOCK;
        out.resize(size, 0);
        out
    }

    /// The same head re-encoded into an entry of exactly `size` bytes, if it fits.
    pub fn to_entry_of_size(&self, size: usize) -> Option<Vec<u8>> {
        let mut out = self.to_json();
        if out.len() > size {
            return None;
        }
        out.resize(size, 0);
        Some(out)
    }

    /// Parses an entry: canonical JSON, then only zero bytes.
    pub fn from_entry(entry: &[u8]) -> Result<Self, Refusal> {
        let json_len = entry.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let mut stream = serde_json::Deserializer::from_slice(&entry[..json_len]).into_iter::<RawHead<'_>>();
        let raw = match stream.next() {
            Some(Ok(raw)) => raw,
            Some(Err(e)) => return Err(Refusal::HeadMalformed { reason: e.to_string() }),
            None => {
                return Err(Refusal::HeadMalformed {
                    reason: "the head is empty".into(),
                });
            }
        };
        let end = stream.byte_offset();
        if end != json_len {
            let bad = entry[end..json_len].iter().position(|&b| b != 0).unwrap_or(0);
            return Err(Refusal::HeadPadding {
                offset: (end + bad) as u64,
            });
        }
        let parse = |what: String, raw: &RawValue| {
            Envelope::parse_canonical(raw.get().as_bytes()).map_err(|source| Refusal::Envelope { what, source })
        };
        let roots = raw
            .roots
            .iter()
            .enumerate()
            .map(|(i, r)| parse(format!("root {}", i + 1), r))
            .collect::<Result<Vec<_>, _>>()?;
        let release = parse("release".into(), raw.release)?;
        let head = Head { roots, release };
        let canonical = head.to_json();
        if canonical != entry[..json_len] {
            let offset = canonical
                .iter()
                .zip(entry)
                .position(|(a, b)| a != b)
                .unwrap_or(canonical.len().min(json_len));
            return Err(Refusal::HeadNotCanonical { offset: offset as u64 });
        }
        Ok(head)
    }
}
