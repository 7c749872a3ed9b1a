//! Threshold verification of envelopes and of root chains.

use std::collections::BTreeSet;

use crate::envelope::Envelope;
use crate::error::TrustError;
use crate::key::KeyId;
use crate::root::{KeySet, MANIFEST_PAYLOAD_TYPE, ROOT_PAYLOAD_TYPE, Role, RootDocument};

/// Verifies `env` against the key sets that govern it.
///
/// The payload type must be `payload_type`; every signature must be by a key of some governing
/// set and verify (strictly) over the PAE bytes; no key id may sign twice; and for each governing
/// set, the number of its distinct keys with a valid signature must reach its threshold.
/// Threshold errors name the role `root` for [`ROOT_PAYLOAD_TYPE`] and `release` otherwise; use
/// [`verify_envelope_with_roles`] to name them yourself.
pub fn verify_envelope(env: &Envelope, payload_type: &str, governing: &[&KeySet]) -> Result<(), TrustError> {
    let role = if payload_type == ROOT_PAYLOAD_TYPE {
        Role::Root
    } else {
        Role::Release
    };
    let governing: Vec<(Role, &KeySet)> = governing.iter().map(|set| (role, *set)).collect();
    verify_envelope_with_roles(env, payload_type, &governing)
}

/// [`verify_envelope`] with the role each governing key set is reported under.
pub fn verify_envelope_with_roles(
    env: &Envelope,
    payload_type: &str,
    governing: &[(Role, &KeySet)],
) -> Result<(), TrustError> {
    if env.payload_type != payload_type {
        return Err(TrustError::WrongPayloadType {
            expected: payload_type.to_owned(),
            found: env.payload_type.clone(),
        });
    }
    if governing.is_empty() {
        return Err(TrustError::NoGoverningKeys);
    }
    let pae = env.pae_bytes();
    let mut signed: BTreeSet<KeyId> = BTreeSet::new();
    for sig in &env.signatures {
        let keyid = sig.keyid;
        if !signed.insert(keyid) {
            return Err(TrustError::DuplicateSignature { keyid });
        }
        let key = governing
            .iter()
            .find_map(|(_, set)| set.get(&keyid))
            .ok_or(TrustError::UnknownKey { keyid })?;
        key.verify(&pae, &sig.sig)
            .map_err(|source| TrustError::BadSignature { keyid, source })?;
    }
    // Key sets hold distinct keys, and a key id is the hash of its key: counting the set's
    // keys whose id signed counts distinct public keys.
    for (role, set) in governing {
        let have = set.keys().iter().filter(|key| signed.contains(&key.key_id())).count();
        if have < set.threshold() as usize {
            return Err(TrustError::ThresholdNotMet {
                role: *role,
                have,
                need: set.threshold(),
            });
        }
    }
    Ok(())
}

/// The roots a verifier already trusts: (version, sha256 of the envelope's canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoots {
    roots: Vec<(u32, [u8; 32])>,
}

impl TrustedRoots {
    /// Trusts these root envelopes (e.g. the files of a `--root-dir`, or a configured anchor).
    /// They are not verified here: they are trusted because they were configured.
    pub fn from_envelopes(envelopes: &[Envelope]) -> Result<TrustedRoots, TrustError> {
        let mut roots = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            let doc = root_document(env)?;
            roots.push((doc.version, env.canonical_sha256()));
        }
        Ok(TrustedRoots::from_hashes(roots))
    }

    /// Trusts roots known by hash (e.g. from persisted state).
    pub fn from_hashes(mut roots: Vec<(u32, [u8; 32])>) -> TrustedRoots {
        roots.sort();
        roots.dedup();
        TrustedRoots { roots }
    }

    /// The newest trusted version, if any.
    pub fn newest(&self) -> Option<u32> {
        self.roots.last().map(|(version, _)| *version)
    }

    /// The trusted (version, hash) pairs, by version.
    pub fn hashes(&self) -> &[(u32, [u8; 32])] {
        &self.roots
    }
}

/// Checks the payload type and parses a root envelope's document (without verifying signatures).
pub fn root_document(env: &Envelope) -> Result<RootDocument, TrustError> {
    if env.payload_type != ROOT_PAYLOAD_TYPE {
        return Err(TrustError::WrongPayloadType {
            expected: ROOT_PAYLOAD_TYPE.to_owned(),
            found: env.payload_type.clone(),
        });
    }
    RootDocument::parse(&env.payload).map_err(|source| TrustError::InvalidRoot { source })
}

/// Verification of a chain of root versions `1..=N`.
#[derive(Debug)]
pub struct RootChain;

impl RootChain {
    /// Verifies root versions 1..=N, in order.
    ///
    /// Root 1 must be signed by a threshold of its own root keys; root k+1 by a threshold of
    /// root k's root keys and a threshold of its own (signatures by keys of either are allowed,
    /// any other key refuses it). The chain must hold every trusted root with identical bytes and
    /// reach at least the newest trusted version: nothing goes back.
    pub fn verify(chain: &[Envelope], trusted: &TrustedRoots) -> Result<VerifiedChain, TrustError> {
        let Some(newest_trusted) = trusted.newest() else {
            return Err(TrustError::NoTrustedRoot);
        };
        let have = u32::try_from(chain.len()).unwrap_or(u32::MAX);
        if have < newest_trusted.max(1) {
            return Err(TrustError::ChainTooShort {
                have,
                need: newest_trusted.max(1),
            });
        }
        if let Some((version, _)) = trusted.roots.iter().find(|(version, _)| *version == 0) {
            // No chain has a version 0.
            return Err(TrustError::RootMismatch { version: *version });
        }

        let mut documents: Vec<RootDocument> = Vec::with_capacity(chain.len());
        let mut hashes = Vec::with_capacity(chain.len());
        for (version, env) in (1u32..).zip(chain) {
            let hash = env.canonical_sha256();
            if trusted.roots.iter().any(|(v, h)| *v == version && *h != hash) {
                return Err(TrustError::RootMismatch { version });
            }
            let link = |source: TrustError| TrustError::RootLink {
                version,
                source: Box::new(source),
            };
            let doc = root_document(env).map_err(link)?;
            if doc.version != version {
                return Err(TrustError::ChainGap {
                    expected: version,
                    found: doc.version,
                });
            }
            let result = match documents.last() {
                None => verify_envelope_with_roles(env, ROOT_PAYLOAD_TYPE, &[(Role::Root, &doc.root_keys)]),
                Some(previous) => verify_envelope_with_roles(
                    env,
                    ROOT_PAYLOAD_TYPE,
                    &[(Role::PreviousRoot, &previous.root_keys), (Role::Root, &doc.root_keys)],
                ),
            };
            result.map_err(link)?;
            documents.push(doc);
            hashes.push((version, hash));
        }
        Ok(VerifiedChain { documents, hashes })
    }
}

/// A root chain that verified from version 1 through every trusted root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// Never empty.
    documents: Vec<RootDocument>,
    hashes: Vec<(u32, [u8; 32])>,
}

impl VerifiedChain {
    /// The newest root: the one that governs releases.
    pub fn current(&self) -> &RootDocument {
        self.documents
            .last()
            .unwrap_or_else(|| unreachable!("a verified chain is never empty"))
    }

    /// Every root document, version 1 first.
    pub fn documents(&self) -> &[RootDocument] {
        &self.documents
    }

    /// (version, sha256 of the canonical envelope) of every root, for the verifier to persist
    /// and pass to [`TrustedRoots::from_hashes`] next time.
    pub fn hashes(&self) -> Vec<(u32, [u8; 32])> {
        self.hashes.clone()
    }

    /// The number of root versions (= the newest version).
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Always false: a verified chain holds at least root version 1.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Verifies a release envelope (payload type [`MANIFEST_PAYLOAD_TYPE`]) against the current
    /// root's release keys.
    pub fn verify_release(&self, env: &Envelope) -> Result<(), TrustError> {
        verify_envelope(env, MANIFEST_PAYLOAD_TYPE, &[&self.current().release_keys])
    }
}
