//! Checks on a verified manifest that depend on who asks and when: product, minimum
//! sequence, clock floor, creation time and expiry.

use crate::manifest::Manifest;
use crate::names::ProductName;
use crate::refusal::Refusal;
use crate::timestamp::Timestamp;

/// Default allowed clock skew: one hour.
pub const DEFAULT_SKEW_SECONDS: i64 = 3600;

/// What the caller requires of a bundle beyond its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The product the verifier serves; `None` accepts any (bundler `verify` without `--product`).
    pub product: Option<ProductName>,
    /// Refuse sequences below this (the highest `minSequence` accepted before).
    pub min_sequence: u64,
    /// The clock, or `None` to skip every time check (integrity-only reads for rollback).
    pub now: Option<Timestamp>,
    /// Refuse when `now` is past `expires` (import and install; never rollback or restore).
    pub check_expiry: bool,
    /// The newest time the verifier has seen; the clock may not be further behind it than the skew.
    pub clock_floor: Option<Timestamp>,
    pub skew_seconds: i64,
}

impl Policy {
    /// Every check, at the current clock: what `sealift-bundler verify` and import do.
    pub fn import(now: Timestamp) -> Self {
        Self {
            product: None,
            min_sequence: 0,
            now: Some(now),
            check_expiry: true,
            clock_floor: None,
            skew_seconds: DEFAULT_SKEW_SECONDS,
        }
    }

    /// Integrity and signatures only.
    pub fn integrity_only() -> Self {
        Self {
            product: None,
            min_sequence: 0,
            now: None,
            check_expiry: false,
            clock_floor: None,
            skew_seconds: 0,
        }
    }

    pub fn check(&self, m: &Manifest) -> Result<(), Refusal> {
        if let Some(p) = &self.product
            && *p != m.product
        {
            return Err(Refusal::WrongProduct {
                expected: p.to_string(),
                found: m.product.to_string(),
            });
        }
        if m.sequence < self.min_sequence {
            return Err(Refusal::BelowMinSequence {
                sequence: m.sequence,
                min_sequence: self.min_sequence,
            });
        }
        if let Some(now) = self.now {
            if let Some(floor) = self.clock_floor
                && now.plus(self.skew_seconds) < floor
            {
                return Err(Refusal::ClockBehindFloor {
                    now,
                    floor,
                    skew_seconds: self.skew_seconds,
                });
            }
            if m.created > now.plus(self.skew_seconds) {
                return Err(Refusal::CreatedInFuture {
                    created: m.created,
                    now,
                    skew_seconds: self.skew_seconds,
                });
            }
            if self.check_expiry && now >= m.expires {
                return Err(Refusal::Expired {
                    expires: m.expires,
                    now,
                });
            }
        }
        Ok(())
    }
}
