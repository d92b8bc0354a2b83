//! The live key ring: what requests read, what reloads replace, and what
//! logs each activation, supersession and retirement.
//!
//! Requests get an immutable [`Snapshot`] (signing key, JWKS bytes, ETag,
//! cache lifetime) through one atomic load. A snapshot is valid until the
//! ring's next scheduled change; the first request after that instant, or the
//! maintenance task woken for it, computes the next one. A reload swaps in a
//! new ring only after it has been parsed and validated in full, so a broken
//! secret never interrupts minting and never falls back to an ephemeral key.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::http::HeaderValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::{Clock, rfc3339};
use crate::config::{Config, vars};
use crate::keys::ring::{KeyRing, RingError};
use crate::keys::{KeySource, SigningKey, jwks_json};

/// Everything a request needs from the ring at one instant.
#[derive(Debug)]
pub struct Snapshot {
    /// The key that signs new tokens.
    pub signing: Arc<SigningKey>,
    /// The JWKS document, as served.
    pub jwks: Bytes,
    /// Strong ETag of [`Snapshot::jwks`].
    pub etag: HeaderValue,
    /// When the published set next changes, if scheduled.
    pub next_published_change: Option<u64>,
    /// The kids in the JWKS, in order.
    pub published_kids: Vec<String>,
    valid_until: u64,
}

impl Snapshot {
    /// How long a cache may keep this JWKS: never past a scheduled change of
    /// the published set, and never longer than `max_age`.
    pub fn max_age(&self, now: u64, max_age: u64) -> u64 {
        self.next_published_change
            .map_or(max_age, |change| change.saturating_sub(now).min(max_age))
    }
}

/// Where the ring is (re)read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingSource {
    /// Generated at startup; never reloaded.
    Ephemeral,
    /// `MACP_AUTH_SIGNING_KEY_JSON`; fixed for the process's life.
    Env,
    /// `MACP_AUTH_SIGNING_KEY_FILE`; reloaded on SIGHUP and on change.
    File(PathBuf),
}

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
    #[error("MACP_AUTH_SIGNING_KEY_FILE names {path:?}, which cannot be read: {reason}")]
    Unreadable {
        /// The path configured.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// An ephemeral key could not be generated.
    #[error("ephemeral signing key: {0}")]
    Ephemeral(crate::keys::KeyError),
}

/// Reads and validates the ring the configuration names, as of `now`.
pub fn load_ring(config: &Config, now: u64) -> Result<(KeyRing, RingSource), LoadKeyError> {
    let (ring, source, variable) = if let Some(material) = &config.keys.inline {
        (
            KeyRing::parse(config.keys.alg, material.expose(), KeySource::Env),
            RingSource::Env,
            vars::SIGNING_KEY_JSON,
        )
    } else if let Some(path) = &config.keys.file {
        let text = read_key_file(path)?;
        (
            KeyRing::parse(config.keys.alg, &text, KeySource::File),
            RingSource::File(path.clone()),
            vars::SIGNING_KEY_FILE,
        )
    } else {
        let key = SigningKey::generate(config.keys.alg).map_err(LoadKeyError::Ephemeral)?;
        return Ok((KeyRing::single(key), RingSource::Ephemeral));
    };
    let ring = ring
        .and_then(|ring| {
            ring.validate(now, config.tokens.max_ttl_seconds)
                .map(|()| ring)
        })
        .map_err(|source| LoadKeyError::Ring { variable, source })?;
    Ok((ring, source))
}

fn read_key_file(path: &Path) -> Result<String, LoadKeyError> {
    std::fs::read_to_string(path).map_err(|err| LoadKeyError::Unreadable {
        path: path.to_owned(),
        reason: err.kind().to_string(),
    })
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new ring is in place.
    Swapped,
    /// The source is unchanged; nothing to do.
    Unchanged,
    /// The source cannot change at runtime (ephemeral or environment).
    NotReloadable,
}

/// Counts of reload attempts, by result.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    /// Reloads that swapped in a new ring.
    pub swapped: AtomicU64,
    /// Reloads that found the source unchanged.
    pub unchanged: AtomicU64,
    /// Reloads that failed and kept the current ring.
    pub failed: AtomicU64,
}

impl ReloadCounts {
    /// Counts one reload: failed, swapped (as `swapped` judges it) or unchanged.
    pub(crate) fn record<T, E>(&self, result: &Result<T, E>, swapped: impl FnOnce(&T) -> bool) {
        let counter = match result {
            Ok(outcome) if swapped(outcome) => &self.swapped,
            Ok(_) => &self.unchanged,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Settings the store needs from the configuration.
#[derive(Debug, Clone)]
struct Settings {
    alg: crate::keys::SigningAlg,
    max_ttl: u64,
    prepublish: u64,
}

/// The live key ring.
pub struct KeyStore {
    ring: ArcSwap<KeyRing>,
    snapshot: ArcSwap<Snapshot>,
    clock: Arc<dyn Clock>,
    source: RingSource,
    settings: Settings,
    /// When this process first saw each key (by thumbprint of its public
    /// JWK), to judge whether a key was published long enough before it signs.
    first_seen: Mutex<HashMap<String, u64>>,
    /// The file's content at the last load, to skip no-op reloads.
    loaded_text: Mutex<Option<String>>,
    refresh: Mutex<()>,
    reloads: ReloadCounts,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source)
            .field("published", &self.snapshot.load().published_kids)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store over `ring`, read from `source`, judged by `clock`.
    pub fn new(config: &Config, ring: KeyRing, source: RingSource, clock: Arc<dyn Clock>) -> Self {
        let settings = Settings {
            alg: config.keys.alg,
            max_ttl: config.tokens.max_ttl_seconds,
            prepublish: config.keys.prepublish_seconds,
        };
        let now = clock.now();
        let snapshot = build_snapshot(&ring, now, settings.max_ttl)
            .expect("a validated ring has a signing key");
        let loaded_text = match &source {
            RingSource::File(path) => std::fs::read_to_string(path).ok(),
            _ => None,
        };
        let store = KeyStore {
            ring: ArcSwap::from_pointee(ring),
            snapshot: ArcSwap::from_pointee(snapshot),
            clock,
            source,
            settings,
            first_seen: Mutex::new(HashMap::new()),
            loaded_text: Mutex::new(loaded_text),
            refresh: Mutex::new(()),
            reloads: ReloadCounts::default(),
        };
        store.note_new_keys(&store.ring.load(), None, now);
        store
    }

    /// A store over one key that has always been active.
    pub fn single(config: &Config, key: SigningKey, clock: Arc<dyn Clock>) -> Self {
        let source = match key.source() {
            KeySource::Ephemeral => RingSource::Ephemeral,
            _ => RingSource::Env,
        };
        Self::new(config, KeyRing::single(key), source, clock)
    }

    /// The snapshot for the current instant.
    pub fn current(&self) -> Arc<Snapshot> {
        let snapshot = self.snapshot.load_full();
        if self.clock.now() < snapshot.valid_until {
            return snapshot;
        }
        self.refresh()
    }

    /// Recomputes the snapshot for the current instant, logging what changed.
    pub fn refresh(&self) -> Arc<Snapshot> {
        let _guard = self
            .refresh
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let now = self.clock.now();
        let previous = self.snapshot.load_full();
        if now < previous.valid_until {
            // Another caller refreshed while this one waited.
            return previous;
        }
        let ring = self.ring.load_full();
        match build_snapshot(&ring, now, self.settings.max_ttl) {
            Some(next) => {
                log_transitions(&ring, &previous, &next, now);
                let next = Arc::new(next);
                self.snapshot.store(next.clone());
                next
            }
            None => previous,
        }
    }

    /// The ring in force.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// Where the ring comes from.
    pub fn source(&self) -> &RingSource {
        &self.source
    }

    /// The instant the ring next changes what it signs with or publishes.
    pub fn next_change(&self) -> Option<u64> {
        self.ring
            .load()
            .schedule(self.clock.now(), self.settings.max_ttl)
            .next_change()
    }

    /// Reload attempts so far, by result.
    pub fn reloads(&self) -> &ReloadCounts {
        &self.reloads
    }

    /// Re-reads the key file and swaps in its ring if it parses and
    /// validates; otherwise keeps the current ring and reports why.
    pub fn reload(&self) -> Result<ReloadOutcome, LoadKeyError> {
        let RingSource::File(path) = &self.source else {
            return Ok(ReloadOutcome::NotReloadable);
        };
        let result = self.reload_file(path);
        self.reloads
            .record(&result, |outcome| *outcome == ReloadOutcome::Swapped);
        result
    }

    fn reload_file(&self, path: &Path) -> Result<ReloadOutcome, LoadKeyError> {
        let text = read_key_file(path)?;
        let mut loaded = self
            .loaded_text
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if loaded.as_deref() == Some(text.as_str()) {
            return Ok(ReloadOutcome::Unchanged);
        }
        let now = self.clock.now();
        let ring = KeyRing::parse(self.settings.alg, &text, KeySource::File)
            .and_then(|ring| ring.validate(now, self.settings.max_ttl).map(|()| ring))
            .map_err(|source| LoadKeyError::Ring {
                variable: vars::SIGNING_KEY_FILE,
                source,
            })?;
        let previous = self.ring.load_full();
        self.note_new_keys(&ring, Some(&previous), now);
        self.ring.store(Arc::new(ring));
        *loaded = Some(text);
        drop(loaded);
        // Force a recomputation against the new ring.
        let _guard = self
            .refresh
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let before = self.snapshot.load_full();
        if let Some(next) = build_snapshot(&self.ring.load(), now, self.settings.max_ttl) {
            log_transitions(&self.ring.load(), &before, &next, now);
            self.snapshot.store(Arc::new(next));
        }
        tracing::info!(
            keys = %self.snapshot.load().published_kids.join(","),
            "key ring reloaded from {}",
            path.display()
        );
        Ok(ReloadOutcome::Swapped)
    }

    /// Records first sightings and warns when a key will sign sooner after
    /// its publication than the pre-publication window allows.
    fn note_new_keys(&self, ring: &KeyRing, previous: Option<&KeyRing>, now: u64) {
        let mut first_seen = self
            .first_seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let schedule = ring.schedule(now, self.settings.max_ttl);
        for (index, entry) in ring.keys().iter().enumerate() {
            let identity = thumbprint_identity(&entry.key);
            let seen = *first_seen.entry(identity.clone()).or_insert(now);
            let activation = entry.activate_at.unwrap_or(0);
            let kid = entry.key.kid();
            let was_known = previous.is_some_and(|previous| {
                previous
                    .keys()
                    .iter()
                    .any(|old| thumbprint_identity(&old.key) == identity)
            });
            if activation > now && activation < seen.saturating_add(self.settings.prepublish) {
                tracing::warn!(
                    kid,
                    activate_at = %rfc3339(activation),
                    "key {kid} activates {} s after it was first published here, less than the pre-publication window of {} s: verifiers whose JWKS cache predates its publication will reject its tokens until they refresh",
                    activation - seen,
                    self.settings.prepublish
                );
            } else if previous.is_some() && !was_known && schedule.signing == Some(index) {
                tracing::warn!(
                    kid,
                    "emergency rotation: key {kid} signs from now on without having been published in advance; verifiers with a cached JWKS will reject new tokens until they refresh (the MACP runtime refreshes every MACP_AUTH_JWKS_TTL_SECS, 300 s by default)"
                );
            }
        }
        if let Some(previous) = previous {
            let old_schedule = previous.schedule(now, self.settings.max_ttl);
            for index in old_schedule.published {
                let old = &previous.keys()[index];
                let identity = thumbprint_identity(&old.key);
                if !ring
                    .keys()
                    .iter()
                    .any(|entry| thumbprint_identity(&entry.key) == identity)
                {
                    tracing::warn!(
                        kid = old.key.kid(),
                        "key {} was removed from the ring while still published: tokens it signed stop verifying once verifiers refresh their JWKS",
                        old.key.kid()
                    );
                }
            }
        }
    }
}

/// A key's identity independent of its kid: the thumbprint input members.
fn thumbprint_identity(key: &SigningKey) -> String {
    let jwk = key.public_jwk();
    ["n", "e", "x", "y"]
        .iter()
        .filter_map(|member| jwk.get(*member).and_then(|v| v.as_str()))
        .collect::<Vec<_>>()
        .join(".")
}

fn build_snapshot(ring: &KeyRing, now: u64, max_ttl: u64) -> Option<Snapshot> {
    let schedule = ring.schedule(now, max_ttl);
    let signing = ring.keys()[schedule.signing?].key.clone();
    let published: Vec<&SigningKey> = schedule
        .published
        .iter()
        .map(|index| ring.keys()[*index].key.as_ref())
        .collect();
    let jwks = Bytes::from(jwks_json(published.iter().copied()));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &jwks);
    let etag = HeaderValue::from_str(&format!(
        "\"{}\"",
        URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
    ))
    .expect("base64url is a valid header value");
    Some(Snapshot {
        signing,
        jwks,
        etag,
        next_published_change: schedule.next_retirement,
        published_kids: published.iter().map(|key| key.kid().to_owned()).collect(),
        valid_until: schedule.next_change().unwrap_or(u64::MAX),
    })
}

/// Logs what changed between two snapshots of `ring`. A key that left the
/// ring itself (by reload) is reported by the reload, not here: it was
/// neither superseded nor retired on schedule.
fn log_transitions(ring: &KeyRing, previous: &Snapshot, next: &Snapshot, now: u64) {
    let at = rfc3339(now);
    let in_ring = |kid: &str| ring.keys().iter().any(|entry| entry.key.kid() == kid);
    if previous.signing.kid() != next.signing.kid() {
        tracing::info!(
            kid = next.signing.kid(),
            at = %at,
            "key {} activated: it signs new tokens from now on",
            next.signing.kid()
        );
        if in_ring(previous.signing.kid()) {
            tracing::info!(
                kid = previous.signing.kid(),
                at = %at,
                "key {} superseded by {}: it stays published until every token it signed has expired",
                previous.signing.kid(),
                next.signing.kid()
            );
        }
    }
    for kid in &previous.published_kids {
        if !next.published_kids.contains(kid) && in_ring(kid) {
            tracing::info!(
                kid = kid.as_str(),
                at = %at,
                "key {kid} retired: no token it signed can still be valid; removed from the JWKS"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::keys::SigningAlg;
    use crate::keys::generate_private_jwk;
    use serde_json::{Value, json};

    fn jwk(kid: &str, activate_at: Option<u64>) -> Value {
        let mut jwk = generate_private_jwk(SigningAlg::Es256, 0, Some(kid)).unwrap();
        if let Some(at) = activate_at {
            jwk.insert("activate_at".into(), at.into());
        }
        Value::Object(jwk)
    }

    fn config() -> Config {
        {
            let mut config = Config::default();
            config.keys.alg = SigningAlg::Es256;
            config
        }
    }

    fn store(keys: Vec<Value>, clock: &ManualClock) -> KeyStore {
        let text = json!({ "keys": keys }).to_string();
        let ring = KeyRing::parse(SigningAlg::Es256, &text, KeySource::Env).unwrap();
        KeyStore::new(&config(), ring, RingSource::Env, Arc::new(clock.clone()))
    }

    #[test]
    fn snapshots_follow_the_clock_across_a_rotation() {
        let clock = ManualClock::at(1_000);
        let store = store(vec![jwk("old", None), jwk("new", Some(2_000))], &clock);
        let before = store.current();
        assert_eq!(before.signing.kid(), "old");
        assert_eq!(before.published_kids, ["old", "new"]);

        clock.set(2_000);
        let after = store.current();
        assert_eq!(after.signing.kid(), "new");
        assert_eq!(after.jwks, before.jwks, "the published set did not change");
        assert_eq!(after.etag, before.etag);

        clock.set(2_000 + 3_600 + 60);
        let retired = store.current();
        assert_eq!(retired.published_kids, ["new"]);
        assert_ne!(retired.etag, after.etag);
    }

    #[test]
    fn the_cache_lifetime_never_outlives_a_scheduled_change() {
        let clock = ManualClock::at(1_000);
        let store = store(vec![jwk("old", None), jwk("new", Some(1_000))], &clock);
        let snapshot = store.current();
        let retire_at = 1_000 + 3_600 + 60;
        assert_eq!(snapshot.next_published_change, Some(retire_at));
        assert_eq!(snapshot.max_age(1_000, 300), 300);
        assert_eq!(snapshot.max_age(retire_at - 10, 300), 10);
        let steady = KeyStore::single(
            &config(),
            SigningKey::generate(SigningAlg::Es256).unwrap(),
            Arc::new(clock.clone()),
        );
        assert_eq!(steady.current().max_age(1_000, 300), 300);
    }

    #[test]
    fn the_etag_is_strong_and_follows_the_content() {
        let clock = ManualClock::at(1_000);
        let a = store(vec![jwk("a", None)], &clock).current();
        let b = store(vec![jwk("b", None)], &clock).current();
        let tag = a.etag.to_str().unwrap();
        assert!(tag.starts_with('"') && tag.ends_with('"') && !tag.starts_with("W/"));
        assert_ne!(a.etag, b.etag);
    }

    #[test]
    fn reloads_swap_good_files_and_keep_the_ring_on_bad_ones() {
        let dir = std::env::temp_dir().join(format!("macp-keystore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ring.json");
        std::fs::write(&path, json!({"keys": [jwk("first", None)]}).to_string()).unwrap();
        let clock = ManualClock::at(10_000);
        let config = {
            let mut config = config();
            config.keys.file = Some(path.clone());
            config
        };
        let (ring, source) = load_ring(&config, clock.now()).unwrap();
        let store = KeyStore::new(&config, ring, source, Arc::new(clock.clone()));
        assert_eq!(store.reload().unwrap(), ReloadOutcome::Unchanged);

        std::fs::write(
            &path,
            json!({"keys": [jwk("first", None), jwk("second", Some(20_000))]}).to_string(),
        )
        .unwrap();
        assert_eq!(store.reload().unwrap(), ReloadOutcome::Swapped);
        assert_eq!(store.current().published_kids, ["first", "second"]);

        for broken in ["{not json", r#"{"keys": []}"#, ""] {
            std::fs::write(&path, broken).unwrap();
            let err = store.reload().unwrap_err().to_string();
            assert!(err.starts_with("MACP_AUTH_SIGNING_KEY_FILE"), "{err}");
            assert_eq!(store.current().published_kids, ["first", "second"], "kept");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            store.reload(),
            Err(LoadKeyError::Unreadable { .. })
        ));
        assert_eq!(store.current().signing.kid(), "first");
        assert_eq!(store.reloads().swapped.load(Ordering::Relaxed), 1);
        assert_eq!(store.reloads().failed.load(Ordering::Relaxed), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Collects formatted log output while it lives.
    #[derive(Clone, Default)]
    struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Logs;
        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }

    #[test]
    fn a_key_removed_by_reload_is_reported_as_removed_not_as_retired() {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let dir =
            std::env::temp_dir().join(format!("macp-keystore-removed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ring.json");
        let (old, new) = (jwk("old", None), jwk("new", Some(100)));
        std::fs::write(&path, json!({"keys": [old, new.clone()]}).to_string()).unwrap();
        let clock = ManualClock::at(200);
        let config = {
            let mut config = config();
            config.keys.file = Some(path.clone());
            config
        };
        let (ring, source) = load_ring(&config, clock.now()).unwrap();
        let store = KeyStore::new(&config, ring, source, Arc::new(clock.clone()));
        std::fs::write(&path, json!({"keys": [new]}).to_string()).unwrap();
        assert_eq!(store.reload().unwrap(), ReloadOutcome::Swapped);

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("key old was removed from the ring while still published"),
            "{text}"
        );
        assert!(!text.contains("retired"), "{text}");
        assert!(!text.contains("superseded"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    impl Logs {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn each_activation_supersession_and_retirement_is_logged_with_kid_and_time() {
        let (logs, _guard) = capture();
        let clock = ManualClock::at(1_000);
        let store = store(vec![jwk("old", None), jwk("new", Some(2_000))], &clock);
        clock.set(2_000);
        store.current();
        clock.set(2_000 + 3_600 + 60);
        store.current();
        let text = logs.text();
        assert!(
            text.contains("key new activated: it signs new tokens from now on"),
            "{text}"
        );
        assert!(text.contains("key old superseded by new"), "{text}");
        assert!(
            text.contains("key old retired: no token it signed can still be valid"),
            "{text}"
        );
        assert!(text.contains("at=1970-01-01T00:33:20Z"), "{text}");
    }

    #[test]
    fn a_key_published_too_shortly_before_it_signs_is_warned_about() {
        let (logs, _guard) = capture();
        let clock = ManualClock::at(10_000);
        // 300 s of notice, under the 600 s pre-publication window.
        let _store = store(
            vec![jwk("current", None), jwk("soon", Some(10_300))],
            &clock,
        );
        let text = logs.text();
        assert!(
            text.contains("key soon activates 300 s after it was first published here, less than the pre-publication window of 600 s"),
            "{text}"
        );
        let (quiet, _guard) = capture();
        let _store = store(
            vec![jwk("current", None), jwk("later", Some(10_900))],
            &clock,
        );
        assert!(
            !quiet.text().contains("pre-publication window"),
            "900 s is enough notice"
        );
    }

    #[test]
    fn a_reload_that_signs_with_an_unpublished_key_at_once_warns_of_the_emergency() {
        let (logs, _guard) = capture();
        let dir =
            std::env::temp_dir().join(format!("macp-keystore-emergency-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ring.json");
        std::fs::write(&path, json!({"keys": [jwk("old", None)]}).to_string()).unwrap();
        let clock = ManualClock::at(5_000);
        let config = {
            let mut config = config();
            config.keys.file = Some(path.clone());
            config
        };
        let (ring, source) = load_ring(&config, clock.now()).unwrap();
        let store = KeyStore::new(&config, ring, source, Arc::new(clock.clone()));
        std::fs::write(
            &path,
            json!({"keys": [jwk("old", None), jwk("replacement", Some(4_000))]}).to_string(),
        )
        .unwrap();
        store.reload().unwrap();
        assert_eq!(store.current().signing.kid(), "replacement");
        let text = logs.text();
        assert!(
            text.contains("emergency rotation: key replacement signs from now on without having been published in advance; verifiers with a cached JWKS will reject new tokens until they refresh"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn environment_and_ephemeral_rings_are_not_reloadable() {
        let clock = ManualClock::at(1);
        let store = store(vec![jwk("a", None)], &clock);
        assert_eq!(store.reload().unwrap(), ReloadOutcome::NotReloadable);
    }

    #[test]
    fn load_ring_names_the_variable_at_fault() {
        let both_missing = {
            let mut config = config();
            config.keys.file = Some(PathBuf::from("/nonexistent/ring.json"));
            config
        };
        let err = load_ring(&both_missing, 0).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "MACP_AUTH_SIGNING_KEY_FILE names \"/nonexistent/ring.json\", which cannot be read"
            ),
            "{err}"
        );
        let future_only = {
            let mut config = config();
            config.keys.inline = Some(crate::config::KeyMaterial::new(
                json!({"keys": [jwk("later", Some(50))]}).to_string(),
            ));
            config
        };
        let err = load_ring(&future_only, 10).unwrap_err().to_string();
        assert!(
            err.starts_with("MACP_AUTH_SIGNING_KEY_JSON has no active key"),
            "{err}"
        );
    }
}
