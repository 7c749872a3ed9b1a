//! What the agent has accepted: the root chain (by hash, never going back), the highest
//! minimum sequence, the clock floor, and each version's accepted build. Only ever raised.

use std::collections::BTreeMap;

use schemas::{Digest, Manifest, Timestamp, VerifiedHead};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedBuild {
    pub sequence: u64,
    pub identity: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustState {
    /// (version, sha256 of the canonical root envelope) of every accepted root.
    pub roots: Vec<(u32, String)>,
    /// The highest `minSequence` any accepted bundle declared.
    pub min_sequence: u64,
    /// The newest time seen: clock readings and accepted bundles' creation times.
    pub clock_floor: Timestamp,
    /// Version → the build accepted for it.
    pub versions: BTreeMap<String, AcceptedBuild>,
}

impl TrustState {
    /// The state of a fresh agent: only the configured anchor root.
    pub fn anchored(root: &keys::Envelope, root_version: u32) -> Self {
        Self {
            roots: vec![(root_version, hex::encode(root.canonical_sha256()))],
            min_sequence: 0,
            clock_floor: Timestamp::from_unix(0).unwrap_or_else(|_| unreachable!("0 is in range")),
            versions: BTreeMap::new(),
        }
    }

    pub fn trusted_roots(&self) -> keys::TrustedRoots {
        keys::TrustedRoots::from_hashes(
            self.roots
                .iter()
                .filter_map(|(v, h)| {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h, &mut out).ok().map(|()| (*v, out))
                })
                .collect(),
        )
    }

    /// This state raised by `other` (a backup's): the longer root chain when it extends this
    /// one, the higher sequence floor and clock floor, and per version the build with the
    /// higher sequence. Nothing goes down.
    pub fn raised_by(&self, other: &TrustState) -> Self {
        let mut next = self.clone();
        if other.roots.len() > next.roots.len() && other.roots.starts_with(&next.roots) {
            next.roots = other.roots.clone();
        }
        next.min_sequence = next.min_sequence.max(other.min_sequence);
        next.clock_floor = next.clock_floor.max(other.clock_floor);
        for (version, build) in &other.versions {
            let entry = next.versions.entry(version.clone()).or_insert_with(|| build.clone());
            if build.sequence > entry.sequence {
                *entry = build.clone();
            }
        }
        next
    }

    /// The state after accepting `head` at `now`: everything only moves forward.
    pub fn accept(&self, head: &VerifiedHead, now: Timestamp) -> Self {
        let m: &Manifest = head.manifest();
        let mut next = self.clone();
        let chain: Vec<(u32, String)> = head.root_hashes().iter().map(|(v, h)| (*v, hex::encode(h))).collect();
        if chain.len() >= next.roots.len() {
            next.roots = chain;
        }
        next.min_sequence = next.min_sequence.max(m.min_sequence);
        next.clock_floor = next.clock_floor.max(now).max(m.created);
        let entry = next.versions.entry(m.version.to_string()).or_insert(AcceptedBuild {
            sequence: 0,
            identity: head.identity(),
        });
        if m.sequence >= entry.sequence {
            *entry = AcceptedBuild {
                sequence: m.sequence,
                identity: head.identity(),
            };
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(roots: &[u32], min_sequence: u64, floor: i64, versions: &[(&str, u64)]) -> TrustState {
        TrustState {
            roots: roots.iter().map(|v| (*v, format!("h{v}"))).collect(),
            min_sequence,
            clock_floor: Timestamp::from_unix(floor).unwrap(),
            versions: versions
                .iter()
                .map(|(v, s)| {
                    (
                        (*v).to_owned(),
                        AcceptedBuild {
                            sequence: *s,
                            identity: Digest::of(v.as_bytes()),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn raising_never_lowers() {
        let current = state(&[1, 2], 5, 2_000, &[("1.0.0", 3)]);
        let older = state(&[1], 1, 1_000, &[("1.0.0", 1), ("0.9.0", 1)]);
        let raised = current.raised_by(&older);
        assert_eq!(raised.roots, current.roots);
        assert_eq!(raised.min_sequence, 5);
        assert_eq!(raised.clock_floor, current.clock_floor);
        assert_eq!(raised.versions["1.0.0"].sequence, 3);
        assert!(raised.versions.contains_key("0.9.0"));
        let newer = state(&[1, 2, 3], 9, 3_000, &[("1.0.0", 4)]);
        let raised = current.raised_by(&newer);
        assert_eq!(raised.roots.len(), 3);
        assert_eq!(raised.min_sequence, 9);
        assert_eq!(raised.clock_floor.unix(), 3_000);
        assert_eq!(raised.versions["1.0.0"].sequence, 4);
        // A chain that does not extend ours is not adopted.
        let forked = state(&[7, 8, 9], 0, 0, &[]);
        assert_eq!(current.raised_by(&forked).roots, current.roots);
    }
}
