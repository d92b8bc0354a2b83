//! Issuer keys: parsing a JWKS, and the cache in front of a remote one.
//!
//! The cache answers three pressures at once. Keys must follow the issuer's
//! rotation without a restart, so an unknown `kid` triggers a refetch at
//! once; but a flood of made-up kids must not turn us into a load generator
//! against the issuer, so refetches are at most one per 10 s per issuer and
//! single-flight. And an issuer outage must not lock every client out, so
//! keys fetched before keep working for an hour past their freshness.
//!
//! The decisions are a pure function of the cache state and the time
//! ([`CacheState::plan`]), so they are tested without a network or a sleep.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::fetch::{self, FetchFailure};
use super::{JwtFailure, JwtTrust};

/// Freshness when the issuer sends no usable `Cache-Control: max-age`.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Bounds on the issuer's `max-age`.
pub(crate) const MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// Upper bound on the issuer's `max-age`.
pub(crate) const MAX_MAX_AGE: Duration = Duration::from_secs(3600);
/// At most one fetch per issuer in this interval.
pub(crate) const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long past their freshness known keys keep working while refreshes
/// fail.
pub(crate) const STALE_GRACE: Duration = Duration::from_secs(3600);

/// An issuer's usable verification keys.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
}

impl KeySet {
    /// Parses a JWKS, keeping the RS256 and ES256 (P-256) signature keys and
    /// skipping any other key; a set with none usable is an error.
    pub(crate) fn parse(jwks: &Value) -> Result<KeySet, &'static str> {
        let items = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("has no \"keys\" array")?;
        let keys: Vec<_> = items.iter().filter_map(usable_key).collect();
        if keys.is_empty() {
            return Err("has no RS256 or ES256 signature key");
        }
        Ok(KeySet { keys })
    }

    /// The keys a token with `kid` and `alg` may be verified with: the one
    /// named, or every key of the algorithm when the token names none.
    pub(crate) fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<&DecodingKey> {
        self.keys
            .iter()
            .filter(|(key_kid, key_alg, _)| {
                *key_alg == alg && (kid.is_none() || key_kid.as_deref() == kid)
            })
            .map(|(_, _, key)| key)
            .collect()
    }

    /// Whether a key has this `kid`.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys
            .iter()
            .any(|(key_kid, _, _)| key_kid.as_deref() == Some(kid))
    }

    /// How many keys are usable.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

fn usable_key(value: &Value) -> Option<(Option<String>, Algorithm, DecodingKey)> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if matches!(&jwk.common.public_key_use, Some(usage) if *usage != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    if !declared_ok {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((jwk.common.key_id.clone(), alg, key))
}

/// Reads a `jwks_file` as the client list itself is read: a regular file
/// only, within the read timeout.
pub(crate) fn read_jwks_file(path: &Path) -> Result<KeySet, String> {
    let reader = crate::reload::FileReader::default();
    let text = crate::reload::read_with(&reader, "jwt.jwks_file", path).map_err(|err| {
        format!(
            "\"jwt.jwks_file\" {} cannot be read: {}",
            path.display(),
            err.reason
        )
    })?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|_| format!("\"jwt.jwks_file\" {} is not JSON", path.display()))?;
    KeySet::parse(&value).map_err(|why| format!("\"jwt.jwks_file\" {} {why}", path.display()))
}

/// What a request should do about an issuer's keys.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Use these keys.
    Use(Arc<KeySet>),
    /// Fetch first; `kid` says whether an unknown kid is the reason.
    Fetch {
        /// The refetch is for an unknown kid.
        kid: bool,
    },
    /// A fetch is under way and this request needs its result: wait for it.
    Wait,
    /// No usable keys and no fetch allowed yet; retry after this long.
    Unavailable(Duration),
}

/// The cache of one remote key source.
#[derive(Debug, Default, Clone)]
pub(crate) struct CacheState {
    keys: Option<Arc<KeySet>>,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    last_kid_refetch: Option<Instant>,
    in_flight: bool,
}

impl CacheState {
    /// The decision for a token naming `kid`, at `now`. A request whose
    /// key is at hand never waits: stale keys (within the grace) serve while
    /// a refresh runs, and the refresh is done by the first request that
    /// finds them stale.
    pub(crate) fn plan(&self, now: Instant, kid: Option<&str>) -> Plan {
        let elapsed = |at: Option<Instant>| at.map(|at| now.saturating_duration_since(at));
        let may = |at| elapsed(at).is_none_or(|since| since >= REFETCH_INTERVAL);
        let usable = match (&self.keys, self.fresh_until) {
            (Some(keys), Some(fresh_until)) if now < fresh_until + STALE_GRACE => {
                Some((keys, now < fresh_until))
            }
            _ => None,
        };
        match usable {
            Some((keys, fresh)) if kid.is_none_or(|kid| keys.has_kid(kid)) => {
                if !fresh && !self.in_flight && may(self.last_attempt) {
                    Plan::Fetch { kid: false }
                } else {
                    Plan::Use(keys.clone())
                }
            }
            Some((keys, _)) => {
                if self.in_flight {
                    Plan::Wait
                } else if may(self.last_kid_refetch) {
                    Plan::Fetch { kid: true }
                } else {
                    Plan::Use(keys.clone())
                }
            }
            None if self.in_flight => Plan::Wait,
            None if may(self.last_attempt) => Plan::Fetch { kid: false },
            None => Plan::Unavailable(
                elapsed(self.last_attempt).map_or(REFETCH_INTERVAL, |since| {
                    REFETCH_INTERVAL.saturating_sub(since)
                }),
            ),
        }
    }

    /// Records the start of a fetch (`kid`: for an unknown kid).
    pub(crate) fn attempting(&mut self, now: Instant, kid: bool) {
        self.last_attempt = Some(now);
        if kid {
            self.last_kid_refetch = Some(now);
        }
        self.in_flight = true;
    }

    /// Records the end of a fetch that brought no keys.
    pub(crate) fn failed(&mut self) {
        self.in_flight = false;
    }

    /// Records fetched keys, fresh for `max_age` (clamped).
    pub(crate) fn fetched(&mut self, keys: KeySet, max_age: Option<Duration>, now: Instant) {
        let max_age = max_age
            .unwrap_or(DEFAULT_MAX_AGE)
            .clamp(MIN_MAX_AGE, MAX_MAX_AGE);
        self.keys = Some(Arc::new(keys));
        self.fresh_until = Some(now + max_age);
        self.in_flight = false;
    }
}

/// A remote key source (a `jwks_uri`, or discovery from the issuer) and its
/// cache. One per source, shared by every client and every reload.
#[derive(Debug)]
pub(crate) struct IssuerKeys {
    source: fetch::Source,
    state: Mutex<CacheState>,
    /// Held for the whole of a fetch, so waiting requests queue on it.
    fetching: tokio::sync::Mutex<()>,
}

impl IssuerKeys {
    fn new(source: fetch::Source) -> Self {
        IssuerKeys {
            source,
            state: Mutex::new(CacheState::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The keys to verify a token naming `kid` with, fetching first when
    /// the cache says so. Concurrent callers share one fetch.
    pub(crate) async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<KeySet>, JwtFailure> {
        if let Some(ready) = settle(self.state().plan(Instant::now(), kid)) {
            return ready;
        }
        let _single_flight = self.fetching.lock().await;
        // A fetch may have finished while this request waited: decide again,
        // and claim the fetch in the same breath.
        let now = Instant::now();
        let plan = {
            let mut state = self.state();
            let plan = state.plan(now, kid);
            if let Plan::Fetch { kid } = plan {
                state.attempting(now, kid);
            }
            plan
        };
        let unavailable = JwtFailure::KeysUnavailable {
            retry_after: REFETCH_INTERVAL.as_secs(),
        };
        if !matches!(plan, Plan::Fetch { .. }) {
            // Never `Wait` here: a fetch is only under way while this lock
            // is held.
            return settle(plan).unwrap_or(Err(unavailable));
        }
        self.fetch().await;
        settle(self.state().plan(Instant::now(), kid)).unwrap_or(Err(unavailable))
    }

    /// One fetch, already claimed by [`CacheState::attempting`].
    async fn fetch(&self) {
        let failure = match fetch::fetch_jwks(&self.source).await {
            Ok((value, max_age)) => match KeySet::parse(&value) {
                Ok(keys) => {
                    tracing::debug!(source = %self.source, keys = keys.len(), "issuer keys fetched");
                    self.state().fetched(keys, max_age, Instant::now());
                    return;
                }
                Err(why) => FetchFailure::Jwks(why),
            },
            Err(failure) => failure,
        };
        let has_keys = {
            let mut state = self.state();
            state.failed();
            state.keys.is_some()
        };
        tracing::warn!(source = %self.source, reason = %failure, cached_keys = has_keys, "issuer keys could not be fetched");
    }

    /// The source, for `check-config`.
    pub(crate) fn describe(&self) -> String {
        self.source.to_string()
    }
}

/// The outcome of a plan that needs no fetch by this request; `None` when
/// it must fetch, or wait for the fetch under way.
fn settle(plan: Plan) -> Option<Result<Arc<KeySet>, JwtFailure>> {
    match plan {
        Plan::Use(keys) => Some(Ok(keys)),
        Plan::Fetch { .. } | Plan::Wait => None,
        Plan::Unavailable(wait) => Some(Err(JwtFailure::KeysUnavailable {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        })),
    }
}

/// A remote source's identity: its URL and its trusted CA file.
type SourceKey = (String, Option<PathBuf>);

/// The remote key caches by source, so a reloaded client list keeps them.
#[derive(Debug, Default)]
pub(crate) struct KeyRegistry {
    sources: Mutex<HashMap<SourceKey, Arc<IssuerKeys>>>,
}

impl KeyRegistry {
    /// The cache for `trust`'s remote source, made on first use.
    pub(crate) fn remote(&self, trust: &JwtTrust) -> Result<Arc<IssuerKeys>, String> {
        let source = fetch::Source::for_trust(trust)?;
        let key = (source.to_string(), trust.ca_file.clone());
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(sources
            .entry(key)
            .or_insert_with(|| Arc::new(IssuerKeys::new(source)))
            .clone())
    }
}

#[cfg(test)]
mod tests;
