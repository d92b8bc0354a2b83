//! The state every request handler shares: settings, the clock, the live key
//! ring and client list, the rate limiter, the signing pool, the metrics and
//! the draining flag.
//!
//! Built once at startup and cloned cheaply (one `Arc`) into each handler via
//! axum's `State`; nothing here is global, so tests can run many independent
//! instances in one process, each with its own clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clients::{ClientStore, LoadClientsError};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::store::{KeyStore, LoadKeyError, load_ring};
use crate::metrics::{Live, Metrics, Reloads};
use crate::ratelimit::MintRateLimiter;
use crate::reload::ReloadTotals;
use crate::signer::SigningPool;

/// Shared per-process state.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    clock: Arc<dyn Clock>,
    keys: Arc<KeyStore>,
    clients: Arc<ClientStore>,
    limiter: Option<MintRateLimiter>,
    signer: SigningPool,
    metrics: Metrics,
    draining: AtomicBool,
}

/// Why the service could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The signing key source is unusable.
    #[error("invalid configuration: {0}")]
    Keys(#[from] LoadKeyError),
    /// The client list is unusable.
    #[error("invalid configuration: {0}")]
    Clients(#[from] LoadClientsError),
    /// The rate limit cannot be represented by the limiter.
    #[error(
        "invalid configuration: MACP_AUTH_RATE_LIMIT_PER_SECOND and MACP_AUTH_RATE_LIMIT_BURST would take more than 100 years to refill a bucket"
    )]
    RateLimit,
    /// The signing threads could not be started.
    #[error("cannot start the signing threads: {0}")]
    Threads(#[from] std::io::Error),
}

impl AppState {
    /// Everything from `config`: the key ring and client list it names, the
    /// system clock and a signing pool sized to this machine.
    pub(crate) fn from_config(config: Config) -> Result<Self, StartupError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let loaded = load_ring(&config, clock.now())?;
        let keys = Arc::new(KeyStore::loaded(&config, loaded, clock.clone()));
        Self::new(config, keys, clock, SigningPool::for_this_machine()?)
    }

    /// State from its parts; the client list and rate limit come from `config`.
    pub fn new(
        config: Config,
        keys: Arc<KeyStore>,
        clock: Arc<dyn Clock>,
        signer: SigningPool,
    ) -> Result<Self, StartupError> {
        let signer = signer.with_backend_timeout(config.keys.custody.signing_timeout);
        let clients = Arc::new(ClientStore::from_config(&config)?);
        let limiter = match config.clients.rate_limit {
            None => None,
            Some(limit) => Some(MintRateLimiter::new(limit).ok_or(StartupError::RateLimit)?),
        };
        let metrics = {
            let (keys, clients, clock) = (keys.clone(), clients.clone(), clock.clone());
            let started = clock.now();
            Metrics::new(signer.durations(), signer.backend_metrics(), move || {
                live_metrics(&keys, &clients, clock.now(), started)
            })
        };
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                clock,
                keys,
                clients,
                limiter,
                signer,
                metrics,
                draining: AtomicBool::new(false),
            }),
        })
    }

    /// The validated settings.
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The time source every decision uses.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The live key ring.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.inner.keys
    }

    /// The live client list.
    pub(crate) fn clients(&self) -> &Arc<ClientStore> {
        &self.inner.clients
    }

    /// The mint rate limiter, when one is configured.
    pub(crate) fn rate_limiter(&self) -> Option<&MintRateLimiter> {
        self.inner.limiter.as_ref()
    }

    /// The pool that performs every signature.
    pub fn signer(&self) -> &SigningPool {
        &self.inner.signer
    }

    /// The metrics registry.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Marks the service as shutting down: readiness fails from now on.
    pub(crate) fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }
}

/// The metric values that live in the stores, read at scrape time. The
/// signing key's age counts from its activation, or from `started` for a key
/// that has always been active.
fn live_metrics(keys: &KeyStore, clients: &ClientStore, now: u64, started: u64) -> Live {
    let snapshot = keys.current();
    let ring = keys.ring();
    let kid = snapshot.signing.kid();
    let activated = ring
        .keys()
        .iter()
        .find(|entry| entry.key.kid() == kid)
        .and_then(|entry| entry.activate_at)
        .unwrap_or(started)
        .max(started.min(now));
    let reloads = |source, totals: ReloadTotals| Reloads {
        source,
        swapped: totals.swapped,
        unchanged: totals.unchanged,
        failed: totals.failed,
        timed_out: totals.timed_out,
    };
    Live {
        signing_kid: kid.to_owned(),
        signing_key_age_seconds: now.saturating_sub(activated),
        published_keys: snapshot.published_kids.len(),
        ring_keys: ring.keys().len(),
        reloads: vec![
            reloads("keys", keys.reloads()),
            reloads("clients", clients.reloads()),
        ],
    }
}
