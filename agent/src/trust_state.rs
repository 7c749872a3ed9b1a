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
