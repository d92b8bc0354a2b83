//! The key ring: several signing keys with activation times, and the pure
//! rules that say, for any instant, which key signs and which are published.
//!
//! Rotation without an outage needs a verifier to hold the next key before
//! any token is signed with it, and the previous key until every token it
//! signed has expired. The ring makes that declarative: each key may carry an
//! `activate_at` (Unix seconds or RFC 3339); the signing key is the activated
//! key with the latest activation (ties: the first in the set); a key waiting
//! for its activation is already published; a superseded key stays published
//! until its successor's activation + the maximum TTL + the verifiers' 60 s
//! leeway, and then leaves the JWKS by itself. Everything here depends only on
//! the ring and the clock, so replicas sharing a secret agree to the second.
//!
//! One fact from outside the ring can only lengthen a key's publication:
//! when this process stopped signing with it ([`KeyRing::with_stopped_signing`],
//! supplied by the store). A successor whose `activate_at` is already in the
//! past when it arrives (a late secret propagation, a typo) would otherwise
//! retire the key that signed a second ago; instead a key stays published
//! until the later of its successor's activation and the moment this process
//! last signed with it, plus the maximum TTL and the leeway.
//!
//! Reading a ring from its source text (JWK, JWK Set, PEM) is in [`parse`].

mod parse;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::clock::rfc3339;
use crate::keys::{KeyError, SigningKey};

pub(crate) use parse::ring_document;

/// Most keys a ring may publish at once.
pub const MAX_PUBLISHED_KEYS: usize = 8;

/// Clock leeway verifiers allow (the MACP runtime's is 60 s): a superseded key
/// stays published this much longer than its last token's lifetime.
pub(crate) const VERIFIER_LEEWAY_SECONDS: u64 = 60;

/// The JWK member holding a key's activation time.
pub(crate) const ACTIVATE_AT: &str = "activate_at";

/// The kid of a lone pinned JWK that has none: the TypeScript reference's, so
/// swapping the image keeps the kid every verifier has cached. Keys of a JWK
/// Set without `kid` get their RFC 7638 thumbprint instead, being several.
pub(crate) const LONE_JWK_KID: &str = "key-1";

/// One key of the ring.
#[derive(Debug, Clone)]
pub struct RingKey {
    /// The key itself.
    pub key: Arc<SigningKey>,
    /// When it starts signing, in Unix seconds; `None` means always.
    pub activate_at: Option<u64>,
    /// When this process stopped signing with it, if it did; supplied by the
    /// store, never read from the source.
    pub(crate) stopped_signing: Option<u64>,
}

impl RingKey {
    fn activation(&self) -> u64 {
        self.activate_at.unwrap_or(0)
    }
}

/// The keys a source holds, in the source's order.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<RingKey>,
    /// The source is one JWK without `kid`, published as [`LONE_JWK_KID`].
    kid_defaulted: bool,
}

/// A ring that cannot be used. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The text is neither JSON nor PEM.
    #[error("must be a private JWK, a JWK Set ({{\"keys\": [...]}}) or PEM")]
    UnknownFormat,
    /// A JWK Set without keys.
    #[error("holds no keys")]
    Empty,
    /// A JWK Set whose `keys` is not an array.
    #[error("has a \"keys\" member that is not an array")]
    KeysNotArray,
    /// The one key of the source is unusable.
    #[error("{0}")]
    Invalid(KeyError),
    /// One key of the set is unusable.
    #[error("key {position}{kid}: {source}")]
    Key {
        /// 1-based position in the set.
        position: usize,
        /// ` (kid "...")` when the key has one, else empty.
        kid: String,
        /// What is wrong with it.
        source: KeyError,
    },
    /// An `activate_at` that is neither Unix seconds nor RFC 3339.
    #[error("key {position}{kid}: \"activate_at\" must be Unix seconds or an RFC 3339 timestamp")]
    BadActivation {
        /// 1-based position in the set.
        position: usize,
        /// ` (kid "...")` when the key has one, else empty.
        kid: String,
    },
    /// Two keys share a kid, which would make verifiers pick the wrong one.
    #[error("has two keys with kid {0:?}; every kid must be unique")]
    DuplicateKid(String),
    /// No key has activated yet, so nothing could sign.
    #[error("has no active key: every key's activate_at is in the future (the earliest is {0})")]
    NothingActive(String),
    /// More keys published at once than verifiers should have to hold.
    #[error(
        "would publish {0} keys at once; at most {MAX_PUBLISHED_KEYS} are allowed (drop retired keys with `macp-auth-service keys prune`)"
    )]
    TooManyKeys(usize),
}

/// Which keys do what at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Index of the signing key, if any key has activated.
    pub signing: Option<usize>,
    /// Indices of the published keys, in ring order.
    pub published: Vec<usize>,
    /// The next instant the signing key changes (an activation), if scheduled.
    pub next_activation: Option<u64>,
    /// The next instant the published set changes (a retirement), if scheduled.
    pub next_retirement: Option<u64>,
}

impl Schedule {
    /// The next instant anything changes.
    pub fn next_change(&self) -> Option<u64> {
        match (self.next_activation, self.next_retirement) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a key is doing at some instant, for logs and `check-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Signs new tokens.
    Signing,
    /// Published, waiting for its activation.
    Pending,
    /// Published so tokens it signed still verify; signs nothing new.
    Superseded,
    /// No longer published: every token it signed has expired.
    Retired,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyStatus::Signing => "signing",
            KeyStatus::Pending => "pending",
            KeyStatus::Superseded => "superseded",
            KeyStatus::Retired => "retired",
        })
    }
}

impl KeyRing {
    /// A ring of one key that has always been active.
    pub(crate) fn single(key: SigningKey) -> Self {
        KeyRing {
            keys: vec![RingKey {
                key: Arc::new(key),
                activate_at: None,
                stopped_signing: None,
            }],
            kid_defaulted: false,
        }
    }

    /// Checks the ring can serve at `now`: some key has activated, and no
    /// more than [`MAX_PUBLISHED_KEYS`] are published.
    pub fn validate(&self, now: u64, max_ttl: u64) -> Result<(), RingError> {
        let schedule = self.schedule(now, max_ttl);
        if schedule.signing.is_none() {
            let earliest = self.keys.iter().map(RingKey::activation).min().unwrap_or(0);
            return Err(RingError::NothingActive(rfc3339(earliest)));
        }
        if schedule.published.len() > MAX_PUBLISHED_KEYS {
            return Err(RingError::TooManyKeys(schedule.published.len()));
        }
        Ok(())
    }

    /// The keys, in source order.
    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// Whether the source is one JWK without `kid`, published as
    /// [`LONE_JWK_KID`] (worth a warning: two such keys would share it).
    pub(crate) fn kid_defaulted(&self) -> bool {
        self.kid_defaulted
    }

    /// The same ring, knowing when this process stopped signing with each
    /// key (by kid). Keys not named keep no such fact.
    pub(crate) fn with_stopped_signing(mut self, stopped: &HashMap<String, u64>) -> Self {
        for entry in &mut self.keys {
            entry.stopped_signing = stopped.get(entry.key.kid()).copied();
        }
        self
    }

    /// When the key at `index` leaves the JWKS: the later of its successor's
    /// activation (the earliest later activation in the ring) and the moment
    /// this process stopped signing with it, + `max_ttl` + leeway. `None`
    /// while it has no successor.
    pub fn retirement(&self, index: usize, max_ttl: u64) -> Option<u64> {
        let entry = &self.keys[index];
        let own = entry.activation();
        let successor = self
            .keys
            .iter()
            .map(RingKey::activation)
            .filter(|activation| *activation > own)
            .min()?;
        let last_signed = entry
            .stopped_signing
            .map_or(successor, |stopped| stopped.max(successor));
        Some(
            last_signed
                .saturating_add(max_ttl)
                .saturating_add(VERIFIER_LEEWAY_SECONDS),
        )
    }

    /// Which key signs and which are published at `now`.
    pub fn schedule(&self, now: u64, max_ttl: u64) -> Schedule {
        let mut signing: Option<usize> = None;
        for (index, key) in self.keys.iter().enumerate() {
            let activation = key.activation();
            if activation <= now
                && signing.is_none_or(|best| activation > self.keys[best].activation())
            {
                signing = Some(index);
            }
        }
        let mut published = Vec::new();
        let mut next_retirement: Option<u64> = None;
        for index in 0..self.keys.len() {
            match self.retirement(index, max_ttl) {
                Some(retire_at) if retire_at <= now => {}
                Some(retire_at) => {
                    published.push(index);
                    next_retirement = Some(next_retirement.map_or(retire_at, |t| t.min(retire_at)));
                }
                None => published.push(index),
            }
        }
        let next_activation = self
            .keys
            .iter()
            .map(RingKey::activation)
            .filter(|activation| *activation > now)
            .min();
        Schedule {
            signing,
            published,
            next_activation,
            next_retirement,
        }
    }

    /// What the key at `index` is doing at `now`.
    pub fn status(&self, index: usize, now: u64, max_ttl: u64) -> KeyStatus {
        let schedule = self.schedule(now, max_ttl);
        if schedule.signing == Some(index) {
            KeyStatus::Signing
        } else if !schedule.published.contains(&index) {
            KeyStatus::Retired
        } else if self.keys[index].activation() > now {
            KeyStatus::Pending
        } else {
            KeyStatus::Superseded
        }
    }
}

#[cfg(test)]
mod tests;
