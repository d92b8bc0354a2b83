//! A small, bounded pool of threads that do the private-key work.
//!
//! An RS256 signature costs most of a millisecond of CPU. Done on the async
//! workers it would stall every other request on that worker, `/healthz`
//! included, so signing runs on dedicated threads: one per core, fed through a
//! bounded queue. When the queue is full the request is refused at once
//! (503 with `Retry-After`) instead of letting latency and memory grow
//! without bound; a job whose client has gone away is skipped, not signed.
//!
//! The signing threads run at a lower scheduling priority than the async
//! workers: when both want the CPU, the workers win, so `/healthz`, the JWKS
//! and request parsing stay fast while minting is saturated, and signing
//! still gets every cycle the workers leave idle.
//!
//! In-process P-256 keys are the exception: their signature costs about as
//! much CPU as the hand-off to a signing thread and back, so they sign on
//! the async worker that handles the request ([`signs_inline`]).
//!
//! Keys in external stores take two other routes. A PKCS#11 key signs on
//! threads of its own ([`lane`]: each thread uses a token session of its
//! own), never on the AWS-LC threads, so a token that stops answering holds
//! only its own threads and queue; the request waits at most
//! `MACP_AUTH_SIGNING_TIMEOUT_MS` for it, and a full PKCS#11 queue answers
//! as the store being unavailable. A KMS key signs asynchronously through
//! its client, which bounds calls in flight and has the same deadline,
//! without occupying a thread. Every external signature is counted by store
//! and outcome with its latency ([`external`]), and after
//! [`UNREADY_AFTER_FAILURES`] consecutive failures the pool reports the
//! store unavailable (readiness fails) until the next success.
//!
//! In a trace (when tracing is on), each signature is a `sign` span, child
//! of the mint, from enqueueing to the answer, with the time spent waiting
//! in the queue and the time spent signing as attributes; the signing thread
//! adds a `signature` child span around the private-key operation itself.

mod external;
mod lane;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tracing::field::Empty;

use crate::config::DEFAULT_SIGNING_TIMEOUT;
use crate::keys::{Backend, BackendError, SignError, SigningAlg, SigningKey};
use crate::metrics::BackendMetrics;
use crate::telemetry::TRACE_TARGET;
use external::{Outcomes, Route};
use lane::{Lane, LaneError, Stats};

/// Consecutive failed external signatures after which readiness fails: one
/// failure can be a blip, three in a row (a few seconds at the default
/// deadline) mean the store is down for this replica. The next success
/// makes it ready again.
pub(crate) const UNREADY_AFTER_FAILURES: u32 = 3;

/// Jobs allowed to wait per signing thread before requests are shed.
const QUEUE_PER_THREAD: usize = 128;

/// The fewest PKCS#11 signing threads: a token's latency is mostly waiting
/// (on the network, for an HSM appliance), not this machine's CPU.
#[cfg(feature = "pkcs11")]
const PKCS11_MIN_THREADS: usize = 2;

/// PKCS#11 jobs allowed to wait per PKCS#11 thread (each holds one token
/// session per key). Fewer than for in-process keys: a job that waits
/// longer than the deadline is answered 503 anyway.
#[cfg(feature = "pkcs11")]
const PKCS11_QUEUE_PER_THREAD: usize = 32;

/// Why a signature could not be made. Turned into an HTTP answer at the
/// edge (`http::error`), never here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignerError {
    /// Every thread is busy and the queue is full: shed, retry shortly.
    #[error("the signing queue is full")]
    Overloaded,
    /// The signing threads have stopped.
    #[error("signing threads have stopped")]
    Stopped,
    /// AWS-LC refused to sign.
    #[error("AWS-LC failed to sign")]
    Failed,
    /// A signing thread dropped the job without answering.
    #[error("a signing thread dropped its job")]
    Dropped,
    /// The external store holding the key failed or missed the deadline.
    #[error("{backend}: {error}")]
    Backend {
        /// The store.
        backend: Backend,
        /// What failed.
        error: BackendError,
    },
}

impl From<SignError> for SignerError {
    fn from(error: SignError) -> Self {
        match error {
            SignError::Local => SignerError::Failed,
            SignError::Backend { backend, error } => SignerError::Backend { backend, error },
        }
    }
}

impl From<LaneError> for SignerError {
    /// A full queue is the in-process lane's overload; the PKCS#11 route
    /// answers its own full queue before this.
    fn from(error: LaneError) -> Self {
        match error {
            LaneError::Full => SignerError::Overloaded,
            LaneError::Stopped => SignerError::Stopped,
            LaneError::Dropped => SignerError::Dropped,
            LaneError::Sign(error) => error.into(),
        }
    }
}

/// Signing-time buckets from 100 µs to about 15 s: the same bounds as the
/// HTTP latency histograms, so the two compare bucket for bucket.
fn signing_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.5, 14)
}

/// Handle to the signing threads. Dropping the last handle stops them once
/// their queues are drained.
#[derive(Debug)]
pub struct SigningPool {
    local: Lane,
    route: Route,
    stats: Stats,
    outcomes: Arc<Outcomes>,
}

impl SigningPool {
    /// Starts `threads` signing threads (at least one) sharing a queue of
    /// `queue` waiting jobs for in-process keys, and as many (at least
    /// [`PKCS11_MIN_THREADS`]) with a queue of their own for PKCS#11 keys.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let stats = Stats {
            signatures: Arc::new(AtomicU64::new(0)),
            durations: Histogram::new(signing_buckets()),
        };
        let local = Lane::start("macp-signer", threads, queue, &stats)?;
        #[cfg(feature = "pkcs11")]
        let pkcs11 = {
            let threads = threads.max(PKCS11_MIN_THREADS);
            Lane::start(
                "macp-pkcs11",
                threads,
                threads * PKCS11_QUEUE_PER_THREAD,
                &stats,
            )?
        };
        Ok(Self::from_lanes(
            local,
            Route {
                #[cfg(feature = "pkcs11")]
                pkcs11,
                timeout: DEFAULT_SIGNING_TIMEOUT,
            },
            stats,
        ))
    }

    fn from_lanes(local: Lane, route: Route, stats: Stats) -> Self {
        SigningPool {
            local,
            route,
            stats,
            outcomes: Arc::default(),
        }
    }

    /// The same pool, waiting at most `timeout` for a PKCS#11 signature
    /// (`MACP_AUTH_SIGNING_TIMEOUT_MS`; KMS keys carry their own deadline).
    pub(crate) fn with_backend_timeout(mut self, timeout: Duration) -> Self {
        self.route.timeout = timeout;
        self
    }

    /// The per-store counters and latencies, for the metrics registry.
    pub(crate) fn backend_metrics(&self) -> BackendMetrics {
        self.outcomes.metrics.clone()
    }

    /// Forgets past failures, once the signing key is no longer in the
    /// store that failed.
    pub(crate) fn clear_backend_failures(&self) {
        self.outcomes.clear();
    }

    /// Whether the external store of the signing key answers: false after
    /// [`UNREADY_AFTER_FAILURES`] consecutive failures, until a success.
    pub(crate) fn backend_available(&self) -> bool {
        self.outcomes.available()
    }

    /// A pool sized to the machine: one thread per available core.
    pub(crate) fn for_this_machine() -> std::io::Result<Self> {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, cores * QUEUE_PER_THREAD)
    }

    /// The distribution of signing times, for the metrics registry.
    pub(crate) fn durations(&self) -> Histogram {
        self.stats.durations.clone()
    }

    /// How many signatures the pool has produced since it started.
    pub fn signatures(&self) -> u64 {
        self.stats.signatures.load(Ordering::Relaxed)
    }

    /// Signs `message` with `key` and hands the message back with its
    /// signature, so the caller can finish the token without a copy: on the
    /// caller (in-process P-256), on a signing thread (in-process RSA), on a
    /// PKCS#11 thread, or through the KMS client.
    pub(crate) async fn sign(
        &self,
        key: Arc<SigningKey>,
        message: String,
    ) -> Result<(String, Vec<u8>), SignerError> {
        let span = tracing::info_span!(
            target: TRACE_TARGET,
            "sign",
            macp.signer.queue_wait_us = Empty,
            macp.signer.signature_us = Empty,
        );
        let Some(backend) = key.backend() else {
            if signs_inline(&key) {
                return self.inline(&key, message, &span);
            }
            return Ok(self.local.sign(key, message, span).await?);
        };
        self.through_store(backend, key, message, span).await
    }

    /// Signs through the store on a task of its own, which counts the
    /// outcome when the store answers or the deadline passes, even if the
    /// request has gone by then (a client that disconnected, a request
    /// deadline that passed first): readiness judges every signature the
    /// store was asked for, not only those a caller stayed for.
    async fn through_store(
        &self,
        backend: Backend,
        key: Arc<SigningKey>,
        message: String,
        span: tracing::Span,
    ) -> Result<(String, Vec<u8>), SignerError> {
        let (route, outcomes) = (self.route.clone(), self.outcomes.clone());
        let started = Instant::now();
        let signing = async move {
            let result = route.sign(backend, key, message, span).await;
            outcomes.record(backend, started.elapsed(), &result);
            result
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return signing.await;
        };
        runtime.spawn(signing).await.unwrap_or_else(|_| {
            Err(SignerError::Backend {
                backend,
                error: BackendError::Failed("the signing task ended without an answer".into()),
            })
        })
    }

    /// Signs on the calling async worker: for keys whose signature costs
    /// about as much as parsing the request, a hand-off to a signing thread
    /// and back costs more CPU (two wake-ups, two context switches) than the
    /// signature itself. Counted and traced like a pooled signature, with no
    /// queue wait.
    fn inline(
        &self,
        key: &SigningKey,
        message: String,
        span: &tracing::Span,
    ) -> Result<(String, Vec<u8>), SignerError> {
        let started = Instant::now();
        let result = tracing::info_span!(target: TRACE_TARGET, parent: span, "signature")
            .in_scope(|| lane::sign_guarded(SigningKey::sign, key, message.as_bytes()));
        let took = started.elapsed();
        if !span.is_disabled() {
            span.record("macp.signer.queue_wait_us", 0_i64);
            span.record("macp.signer.signature_us", took.as_micros() as i64);
        }
        self.stats.durations.observe(took.as_secs_f64());
        self.stats.signatures.fetch_add(1, Ordering::Relaxed);
        Ok((message, result?))
    }
}

/// Whether `key` signs on the async worker rather than on a signing thread:
/// in-process P-256 keys, whose signature (tens of microseconds) costs less
/// than the hand-off. RSA signatures (most of a millisecond) and every
/// external store stay off the async workers.
fn signs_inline(key: &SigningKey) -> bool {
    key.alg() == SigningAlg::Es256 && key.backend().is_none()
}

#[cfg(test)]
mod tests {
    use super::lane::{
        Job, MAX_NICENESS, SIGNER_NICENESS, current_niceness, lower_priority, panicked,
    };
    use super::*;
    use crossbeam_channel::{Sender, bounded};
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn signatures_come_back_with_their_message() {
        let pool = SigningPool::new(2, 4).unwrap();
        for alg in [SigningAlg::Es256, SigningAlg::Rs256] {
            let key = Arc::new(SigningKey::generate(alg).unwrap());
            let (message, signature) = pool.sign(key.clone(), "hello".to_owned()).await.unwrap();
            assert_eq!(message, "hello");
            assert_eq!(signature.len(), key.signature_len());
        }
        assert_eq!(pool.signatures(), 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn signing_threads_yield_to_the_async_workers() {
        let before = current_niceness();
        let observed = std::thread::spawn(|| {
            lower_priority();
            current_niceness()
        })
        .join()
        .unwrap();
        assert_eq!(observed, (before + SIGNER_NICENESS).min(MAX_NICENESS));
        assert_eq!(
            current_niceness(),
            before,
            "only the signing thread changes"
        );
    }

    /// A pool whose in-process queue the test drains (or not) itself.
    fn pool_without_threads(jobs: Sender<Job>) -> SigningPool {
        let stats = Stats {
            signatures: Arc::default(),
            durations: Histogram::new(signing_buckets()),
        };
        let route = Route {
            #[cfg(feature = "pkcs11")]
            pkcs11: Lane::start("test-pkcs11", 1, 1, &stats).unwrap(),
            timeout: DEFAULT_SIGNING_TIMEOUT,
        };
        SigningPool::from_lanes(Lane::over(jobs), route, stats)
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        // One thread and one queue place: block the thread with a job whose
        // reply nobody reads yet, fill the place, and the next job is refused.
        let (jobs, receiver) = bounded::<Job>(1);
        let pool = pool_without_threads(jobs.clone());
        let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).unwrap());
        let (reply, _answer) = oneshot::channel();
        jobs.try_send(Job {
            key: key.clone(),
            message: String::new(),
            reply,
            span: tracing::Span::none(),
            queued: None,
        })
        .unwrap();
        let err = pool.sign(key, "x".to_owned()).await.unwrap_err();
        assert_eq!(err, SignerError::Overloaded);
        drop(receiver);
    }

    #[tokio::test]
    async fn stopped_threads_are_reported_as_stopped() {
        let (jobs, receiver) = bounded::<Job>(1);
        drop(receiver);
        let pool = pool_without_threads(jobs);
        let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).unwrap());
        let err = pool.sign(key, "x".to_owned()).await.unwrap_err();
        assert_eq!(err, SignerError::Stopped);
    }

    #[tokio::test]
    async fn in_process_p256_keys_sign_on_the_caller_and_rsa_keys_on_the_threads() {
        // No signing thread and a closed queue: only an inline signature works.
        let (jobs, receiver) = bounded::<Job>(1);
        drop(receiver);
        let pool = pool_without_threads(jobs);
        let p256 = Arc::new(SigningKey::generate(SigningAlg::Es256).unwrap());
        let (message, signature) = pool.sign(p256, "x".to_owned()).await.unwrap();
        assert_eq!((message.as_str(), signature.len()), ("x", 64));
        assert_eq!(pool.signatures(), 1, "counted like a pooled signature");
        let rsa = Arc::new(SigningKey::generate(SigningAlg::Rs256).unwrap());
        let err = pool.sign(rsa, "x".to_owned()).await.unwrap_err();
        assert_eq!(err, SignerError::Stopped, "RSA goes to the threads");
    }

    /// Signs like [`SigningKey::sign`], but panics on the message `boom`.
    fn panics_on_boom(key: &SigningKey, message: &[u8]) -> Result<Vec<u8>, SignError> {
        assert_ne!(message, b"boom", "a signature that panics");
        key.sign(message)
    }

    #[tokio::test]
    async fn a_signature_that_panics_fails_alone_and_the_thread_signs_the_next_job() {
        let stats = Stats {
            signatures: Arc::default(),
            durations: Histogram::new(signing_buckets()),
        };
        let lane = Lane::start_with("test-panics", 1, 4, &stats, panics_on_boom).unwrap();
        let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).unwrap());
        for span in [tracing::Span::none(), tracing::info_span!("traced")] {
            let err = lane
                .sign(key.clone(), "boom".to_owned(), span.clone())
                .await
                .unwrap_err();
            assert_eq!(SignerError::from(err), SignerError::Failed);
            let (message, signature) = lane
                .sign(key.clone(), "after".to_owned(), span)
                .await
                .unwrap();
            assert_eq!((message.as_str(), signature.len()), ("after", 256));
        }
    }

    #[test]
    fn a_panicked_signature_of_a_store_key_is_the_stores_failure() {
        // The edge answers it as the backend's 503 (`http::error`).
        assert_eq!(
            SignerError::from(panicked(Some(Backend::Pkcs11))),
            SignerError::Backend {
                backend: Backend::Pkcs11,
                error: BackendError::Failed("the signature panicked".into()),
            }
        );
        assert_eq!(SignerError::from(panicked(None)), SignerError::Failed);
    }
}
