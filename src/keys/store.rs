//! The live key ring: what requests read, what reloads replace, and what
//! logs each activation, supersession and retirement.
//!
//! Requests get an immutable [`Snapshot`] (signing key, JWKS bytes, ETag,
//! cache lifetime) through one atomic load. A snapshot is valid until the
//! ring's next scheduled change; the first request after that instant, or the
//! maintenance task woken for it, computes the next one. A reload swaps in a
//! new ring only after it has been parsed and validated in full, so a broken
//! secret never interrupts minting and never falls back to an ephemeral key.
//!
//! Every refresh and reload works out its transition [`Notice`]s as values,
//! logs them here (so the log lines keep this module as their target) and
//! returns them, so tests check what happened without reading log text.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::clock::{Clock, rfc3339};
use crate::config::{Config, vars};
use crate::keys::notices::{self, Notice};
use crate::keys::ring::{KeyRing, RingError};
use crate::keys::snapshot::Snapshot;
use crate::keys::{Backends, KeySource, SigningKey};
use crate::reload::{
    FileReader, ReloadOutcome, ReloadTotals, Reloader, Source, UnreadableFile, read_with,
};

#[cfg(test)]
mod tests;

/// A key source that cannot be used: names the variable, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadKeyError {
    /// The pinned key source is unusable.
    #[error("{variable} {source}")]
    Ring {
        /// The variable naming the source.
        variable: &'static str,
        /// What is wrong with it.
        source: RingError,
    },
    /// The key file cannot be read.
    #[error(transparent)]
    Unreadable(#[from] UnreadableFile),
    /// An ephemeral key could not be generated.
    #[error("ephemeral signing key: {0}")]
    Ephemeral(crate::keys::KeyError),
    /// A reload in which a kid of the ring in force names another key: a KMS
    /// alias re-pointed, a PKCS#11 label reused, a file key replaced. A
    /// verifier that cached the kid would reject the new key's tokens.
    #[error(
        "{variable} has kid {kid:?} naming a different key than the ring in force; give the new key a new kid (verifiers cache keys by kid)"
    )]
    KidNamesAnotherKey {
        /// The variable naming the file (`MACP_AUTH_SIGNING_KEY_FILE`).
        variable: &'static str,
        /// The kid.
        kid: String,
    },
}

/// A ring as read from its source, with the exact text it was parsed from
/// (for a file), so the store compares later reads with what it parsed, not
/// with a second read that may already see a newer file.
#[derive(Debug)]
pub struct LoadedRing {
    /// The validated ring.
    pub(crate) ring: KeyRing,
    /// Where it came from.
    pub(crate) source: Source,
    text: Option<String>,
}

impl LoadedRing {
    /// A ring that did not come from a file.
    pub(crate) fn unfiled(ring: KeyRing, source: Source) -> Self {
        LoadedRing {
            ring,
            source,
            text: None,
        }
    }
}

/// Reads and validates the ring the configuration names, as of `now`.
/// Members naming keys in external stores are opened here (reaching the
/// store, reading the public key, signing a probe).
pub fn load_ring(config: &Config, now: u64) -> Result<LoadedRing, LoadKeyError> {
    load_ring_with(config, now, &FileReader::default())
}

/// [`load_ring`], reading a key file through `reader`.
pub(crate) fn load_ring_with(
    config: &Config,
    now: u64,
    reader: &FileReader,
) -> Result<LoadedRing, LoadKeyError> {
    let backends = Backends::from_settings(&config.keys.custody);
    let (ring, source, variable, text) = if let Some(material) = &config.keys.inline {
        (
            KeyRing::parse_with(
                config.keys.alg,
                material.expose(),
                KeySource::Env,
                Some(&backends),
            ),
            Source::Inline,
            vars::SIGNING_KEY_JSON,
            None,
        )
    } else if let Some(path) = &config.keys.file {
        let text = read_with(reader, vars::SIGNING_KEY_FILE, path)?;
        (
            KeyRing::parse_with(config.keys.alg, &text, KeySource::File, Some(&backends)),
            Source::File(path.clone()),
            vars::SIGNING_KEY_FILE,
            Some(text),
        )
    } else {
        let key = SigningKey::generate(config.keys.alg).map_err(LoadKeyError::Ephemeral)?;
        return Ok(LoadedRing::unfiled(KeyRing::single(key), Source::Unset));
    };
    let ring = ring
        .and_then(|ring| {
            ring.validate(now, config.tokens.max_ttl_seconds)
                .map(|()| ring)
        })
        .map_err(|source| LoadKeyError::Ring { variable, source })?;
    Ok(LoadedRing { ring, source, text })
}

/// Settings the store needs from the configuration.
#[derive(Debug, Clone)]
struct Settings {
    alg: crate::keys::SigningAlg,
    max_ttl: u64,
    prepublish: u64,
    backends: Backends,
}

/// The live key ring.
pub struct KeyStore {
    ring: ArcSwap<KeyRing>,
    snapshot: ArcSwap<Snapshot>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    /// When this process first saw each key (by thumbprint of its public
    /// JWK), to judge whether a key was published long enough before it signs.
    first_seen: Mutex<HashMap<String, u64>>,
    /// When this process stopped signing with each key (by kid): a key stays
    /// published until the tokens it signed here have expired.
    stopped_signing: Mutex<HashMap<String, u64>>,
    /// Held by whoever replaces the ring or the snapshot.
    refresh: Mutex<()>,
    reloader: Reloader,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", self.reloader.source())
            .field("published", &self.snapshot.load().published_kids)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store over `ring`, read from `source`, judged by `clock`. For a ring
    /// read from a file use [`KeyStore::loaded`], which remembers the text
    /// it was parsed from; here the first reload re-parses the file.
    pub fn new(config: &Config, ring: KeyRing, source: Source, clock: Arc<dyn Clock>) -> Self {
        Self::open(config, LoadedRing::unfiled(ring, source), clock).0
    }

    /// A store over the ring [`load_ring`] read.
    pub fn loaded(config: &Config, loaded: LoadedRing, clock: Arc<dyn Clock>) -> Self {
        Self::open(config, loaded, clock).0
    }

    /// [`KeyStore::loaded`], with the notices (short pre-publication) that
    /// opening the ring gave rise to, already logged.
    pub(crate) fn open(
        config: &Config,
        loaded: LoadedRing,
        clock: Arc<dyn Clock>,
    ) -> (Self, Vec<Notice>) {
        let LoadedRing { ring, source, text } = loaded;
        let settings = Settings {
            alg: config.keys.alg,
            max_ttl: config.tokens.max_ttl_seconds,
            prepublish: config.keys.prepublish_seconds,
            backends: Backends::from_settings(&config.keys.custody),
        };
        let now = clock.now();
        let snapshot =
            Snapshot::of(&ring, now, settings.max_ttl).expect("a validated ring has a signing key");
        let mut first_seen = HashMap::new();
        let notices = notices::arrivals(
            &ring,
            None,
            &mut first_seen,
            now,
            settings.max_ttl,
            settings.prepublish,
        );
        notices.iter().for_each(log);
        let store = KeyStore {
            ring: ArcSwap::from_pointee(ring),
            snapshot: ArcSwap::from_pointee(snapshot),
            clock,
            settings,
            first_seen: Mutex::new(first_seen),
            stopped_signing: Mutex::new(HashMap::new()),
            refresh: Mutex::new(()),
            reloader: Reloader::new(source, vars::SIGNING_KEY_FILE, text),
        };
        (store, notices)
    }

    /// A store over one key that has always been active.
    pub fn single(config: &Config, key: SigningKey, clock: Arc<dyn Clock>) -> Self {
        let source = match key.source() {
            KeySource::Ephemeral => Source::Unset,
            _ => Source::Inline,
        };
        Self::new(config, KeyRing::single(key), source, clock)
    }

    /// The snapshot for the current instant.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        let snapshot = self.snapshot.load_full();
        if self.clock.now() < snapshot.valid_until {
            return snapshot;
        }
        self.refresh().0
    }

    /// Recomputes the snapshot for the current instant; logs and returns
    /// what changed (nothing when the snapshot is still valid).
    pub(crate) fn refresh(&self) -> (Arc<Snapshot>, Vec<Notice>) {
        let _guard = self
            .refresh
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let now = self.clock.now();
        let previous = self.snapshot.load_full();
        if now < previous.valid_until {
            // Another caller refreshed while this one waited.
            return (previous, Vec::new());
        }
        let ring = self.with_facts(&self.ring.load(), &previous, now);
        match Snapshot::of(&ring, now, self.settings.max_ttl) {
            Some(next) => {
                let notices = notices::transitions(&ring, &previous, &next, now);
                notices.iter().for_each(log);
                let next = Arc::new(next);
                self.ring.store(ring);
                self.snapshot.store(next.clone());
                (next, notices)
            }
            None => (previous, Vec::new()),
        }
    }

    /// `ring` as of `now`, knowing when this process stopped signing with
    /// each key. If `ring` no longer signs with the key `previous` signed
    /// with, that key stopped signing at the latest when `previous` stopped
    /// being valid, and at the latest now. Call with the refresh lock held.
    fn with_facts(&self, ring: &KeyRing, previous: &Snapshot, now: u64) -> Arc<KeyRing> {
        let mut stopped = self
            .stopped_signing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let signing = ring
            .schedule(now, self.settings.max_ttl)
            .signing
            .map(|index| ring.keys()[index].key.kid());
        let before = previous.signing.kid();
        if signing.is_some_and(|kid| kid != before) {
            stopped.insert(before.to_owned(), now.min(previous.valid_until));
        }
        Arc::new(ring.clone().with_stopped_signing(&stopped))
    }

    /// The ring in force.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// Where the ring comes from.
    pub(crate) fn source(&self) -> &Source {
        self.reloader.source()
    }

    /// The instant the ring next changes what it signs with or publishes.
    pub(crate) fn next_change(&self) -> Option<u64> {
        self.ring
            .load()
            .schedule(self.clock.now(), self.settings.max_ttl)
            .next_change()
    }

    /// Reload attempts so far, by result.
    pub(crate) fn reloads(&self) -> ReloadTotals {
        self.reloader.totals()
    }

    /// Re-reads the key file and swaps in its ring if it parses and
    /// validates; otherwise keeps the current ring and reports why. Returns
    /// the notices the swap gave rise to, already logged.
    pub fn reload(&self) -> Result<(ReloadOutcome, Vec<Notice>), LoadKeyError> {
        let mut notices = Vec::new();
        let outcome = self.reloader.reload(|path, text| {
            notices = self.swap_in(path, text)?;
            Ok::<(), LoadKeyError>(())
        })?;
        Ok((outcome, notices))
    }

    fn swap_in(&self, path: &Path, text: &str) -> Result<Vec<Notice>, LoadKeyError> {
        let now = self.clock.now();
        let max_ttl = self.settings.max_ttl;
        let backends = Some(&self.settings.backends);
        let ring = KeyRing::parse_with(self.settings.alg, text, KeySource::File, backends)
            .and_then(|ring| ring.validate(now, max_ttl).map(|()| ring))
            .map_err(|source| LoadKeyError::Ring {
                variable: vars::SIGNING_KEY_FILE,
                source,
            })?;
        let _guard = self
            .refresh
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let previous = self.ring.load_full();
        same_keys_under_same_kids(&previous, &ring)?;
        let before = self.snapshot.load_full();
        let ring = self.with_facts(&ring, &before, now);
        let mut notices = {
            let mut first_seen = self
                .first_seen
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let window = self.settings.prepublish;
            notices::arrivals(
                &ring,
                Some(&previous),
                &mut first_seen,
                now,
                max_ttl,
                window,
            )
        };
        notices.extend(notices::removals(&ring, &previous, now, max_ttl));
        self.ring.store(ring.clone());
        if let Some(next) = Snapshot::of(&ring, now, max_ttl) {
            notices.extend(notices::transitions(&ring, &before, &next, now));
            self.snapshot.store(Arc::new(next));
        }
        notices.iter().for_each(log);
        tracing::info!(
            keys = %self.snapshot.load().published_kids.join(","),
            "key ring reloaded from {}",
            path.display()
        );
        Ok(notices)
    }
}

/// Refuses `next` if a kid of `current` names another public key in it:
/// whatever kind of key it is (a file key replaced, a KMS alias re-pointed,
/// a PKCS#11 label reused), verifiers that cached the kid would reject the
/// new key's tokens, and a kid's key is checked nowhere else.
fn same_keys_under_same_kids(current: &KeyRing, next: &KeyRing) -> Result<(), LoadKeyError> {
    for entry in next.keys() {
        let kid = entry.key.kid();
        let changed = current
            .keys()
            .iter()
            .find(|known| known.key.kid() == kid)
            .is_some_and(|known| known.key.public_jwk() != entry.key.public_jwk());
        if changed {
            return Err(LoadKeyError::KidNamesAnotherKey {
                variable: vars::SIGNING_KEY_FILE,
                kid: kid.to_owned(),
            });
        }
    }
    Ok(())
}

/// Logs one notice with today's wording and fields. Lives here, not in
/// `notices`, so the lines keep `keys::store` as their target.
fn log(notice: &Notice) {
    let kid = notice.kid();
    match notice {
        Notice::Activated { at, .. }
        | Notice::Superseded { at, .. }
        | Notice::Retired { at, .. } => {
            tracing::info!(kid, at = %rfc3339(*at), "{notice}");
        }
        Notice::ShortPrepublication { activate_at, .. } => {
            tracing::warn!(kid, activate_at = %rfc3339(*activate_at), "{notice}");
        }
        Notice::EmergencyRotation { .. } | Notice::RemovedWhilePublished { .. } => {
            tracing::warn!(kid, "{notice}");
        }
    }
}
