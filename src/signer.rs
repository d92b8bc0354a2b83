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
//! Keys in external stores take two other routes. A PKCS#11 key signs on the
//! same threads (each thread uses a token session of its own), but the
//! request waits at most `MACP_AUTH_SIGNING_TIMEOUT_MS` for it. A KMS key
//! signs asynchronously through its client, which bounds calls in flight
//! and has the same deadline, without occupying a thread. The route is one
//! match on the key; the in-process path is unchanged. Every external
//! signature is counted by store and outcome with its latency, and after
//! [`UNREADY_AFTER_FAILURES`] consecutive failures the pool reports the
//! store unavailable (readiness fails) until the next success.
//!
//! In a trace (when tracing is on), each signature is a `sign` span, child
//! of the mint, from enqueueing to the answer, with the time spent waiting
//! in the queue and the time spent signing as attributes; the signing thread
//! adds a `signature` child span around the private-key operation itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::oneshot;
#[cfg(feature = "aws-kms")]
use tracing::Instrument;
use tracing::field::Empty;

use crate::config::DEFAULT_SIGNING_TIMEOUT;
use crate::keys::{Backend, BackendError, SignError, SigningAlg, SigningKey};
use crate::metrics::{BackendCallLabels, BackendLabels, BackendMetrics};
use crate::telemetry::TRACE_TARGET;

/// Consecutive failed external signatures after which readiness fails: one
/// failure can be a blip, three in a row (a few seconds at the default
/// deadline) mean the store is down for this replica. The next success
/// makes it ready again.
pub(crate) const UNREADY_AFTER_FAILURES: u32 = 3;

/// Jobs allowed to wait per signing thread before requests are shed.
const QUEUE_PER_THREAD: usize = 128;

/// The nice value of signing threads (Linux: per thread). 10 gives the async
/// workers about ten times the CPU weight when both are runnable.
const SIGNER_NICENESS: i32 = 10;

/// The largest nice value Linux accepts.
const MAX_NICENESS: i32 = 19;

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

/// Signing-time buckets from 100 µs to about 15 s: the same bounds as the
/// HTTP latency histograms, so the two compare bucket for bucket.
fn signing_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.5, 14)
}

struct Job {
    key: Arc<SigningKey>,
    message: String,
    reply: oneshot::Sender<(String, Result<Vec<u8>, SignError>)>,
    /// The job's `sign` span (disabled unless tracing is on).
    span: tracing::Span,
    /// When the job was queued, read only when the span is recorded.
    queued: Option<Instant>,
}

/// Handle to the signing threads. Dropping the last handle stops them once
/// the queue is drained.
#[derive(Debug)]
pub struct SigningPool {
    jobs: Sender<Job>,
    signatures: Arc<AtomicU64>,
    durations: Histogram,
    backend_timeout: Duration,
    backends: BackendMetrics,
    consecutive_failures: AtomicU32,
}

impl SigningPool {
    /// Starts `threads` signing threads (at least one) sharing a queue of
    /// `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, receiver) = bounded::<Job>(queue.max(1));
        let signatures = Arc::new(AtomicU64::new(0));
        let durations = Histogram::new(signing_buckets());
        for index in 0..threads {
            let receiver = receiver.clone();
            let signatures = signatures.clone();
            let durations = durations.clone();
            thread::Builder::new()
                .name(format!("macp-signer-{index}"))
                .spawn(move || {
                    lower_priority();
                    work(receiver, &signatures, &durations);
                })?;
        }
        Ok(SigningPool {
            jobs,
            signatures,
            durations,
            backend_timeout: DEFAULT_SIGNING_TIMEOUT,
            backends: BackendMetrics::default(),
            consecutive_failures: AtomicU32::new(0),
        })
    }

    /// The same pool, waiting at most `timeout` for a PKCS#11 signature
    /// (`MACP_AUTH_SIGNING_TIMEOUT_MS`; KMS keys carry their own deadline).
    pub(crate) fn with_backend_timeout(mut self, timeout: Duration) -> Self {
        self.backend_timeout = timeout;
        self
    }

    /// The per-store counters and latencies, for the metrics registry.
    pub(crate) fn backend_metrics(&self) -> BackendMetrics {
        self.backends.clone()
    }

    /// Forgets past failures, once the signing key is no longer in the
    /// store that failed.
    pub(crate) fn clear_backend_failures(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Whether the external store of the signing key answers: false after
    /// [`UNREADY_AFTER_FAILURES`] consecutive failures, until a success.
    pub(crate) fn backend_available(&self) -> bool {
        self.consecutive_failures.load(Ordering::Relaxed) < UNREADY_AFTER_FAILURES
    }

    /// A pool sized to the machine: one thread per available core.
    pub(crate) fn for_this_machine() -> std::io::Result<Self> {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, cores * QUEUE_PER_THREAD)
    }

    /// The distribution of signing times, for the metrics registry.
    pub(crate) fn durations(&self) -> Histogram {
        self.durations.clone()
    }

    /// How many signatures the pool has produced since it started.
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    /// Signs `message` with `key` and hands the message back with its
    /// signature, so the caller can finish the token without a copy: on a
    /// pool thread for in-process and PKCS#11 keys, through the KMS client
    /// for KMS keys.
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
            return self.on_thread(key, message, span).await;
        };
        let started = Instant::now();
        let result = self.through_backend(backend, key, message, span).await;
        self.record(backend, started.elapsed(), &result);
        result
    }

    async fn through_backend(
        &self,
        backend: Backend,
        key: Arc<SigningKey>,
        message: String,
        span: tracing::Span,
    ) -> Result<(String, Vec<u8>), SignerError> {
        #[cfg(feature = "aws-kms")]
        if let Some(kms) = key.kms() {
            let started = Instant::now();
            let signed = kms.sign(message.as_bytes()).instrument(span.clone()).await;
            span.record(
                "macp.signer.signature_us",
                started.elapsed().as_micros() as i64,
            );
            return match signed {
                Ok(signature) => Ok((message, signature)),
                Err(error) => Err(SignerError::Backend { backend, error }),
            };
        }
        match tokio::time::timeout(self.backend_timeout, self.on_thread(key, message, span)).await {
            Ok(result) => result,
            Err(_) => Err(SignerError::Backend {
                backend,
                error: BackendError::Timeout {
                    millis: u64::try_from(self.backend_timeout.as_millis()).unwrap_or(u64::MAX),
                },
            }),
        }
    }

    /// Counts one external signature by outcome, observes its latency, and
    /// tracks consecutive failures for readiness. Pool-level refusals (a
    /// full queue) say nothing about the store and are not counted here.
    fn record(
        &self,
        backend: Backend,
        elapsed: Duration,
        result: &Result<(String, Vec<u8>), SignerError>,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(SignerError::Backend {
                error: BackendError::Timeout { .. },
                ..
            }) => "timeout",
            Err(SignerError::Backend { .. }) => "error",
            Err(_) => return,
        };
        let name = backend.as_str();
        self.backends
            .calls
            .get_or_create(&BackendCallLabels {
                backend: name,
                outcome,
            })
            .inc();
        self.backends
            .durations
            .get_or_create(&BackendLabels { backend: name })
            .observe(elapsed.as_secs_f64());
        if outcome == "ok" {
            let before = self.consecutive_failures.swap(0, Ordering::Relaxed);
            if before >= UNREADY_AFTER_FAILURES {
                tracing::info!(
                    backend = name,
                    "signing backend {name} answers again: ready"
                );
            }
        } else {
            let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures == UNREADY_AFTER_FAILURES {
                tracing::error!(
                    backend = name,
                    "signing backend {name} failed {failures} times in a row: not ready until a signature succeeds"
                );
            }
        }
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
            .in_scope(|| key.sign(message.as_bytes()));
        let took = started.elapsed();
        if !span.is_disabled() {
            span.record("macp.signer.queue_wait_us", 0_i64);
            span.record("macp.signer.signature_us", took.as_micros() as i64);
        }
        self.durations.observe(took.as_secs_f64());
        self.signatures.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(signature) => Ok((message, signature)),
            Err(SignError::Local) => Err(SignerError::Failed),
            Err(SignError::Backend { backend, error }) => {
                Err(SignerError::Backend { backend, error })
            }
        }
    }

    async fn on_thread(
        &self,
        key: Arc<SigningKey>,
        message: String,
        span: tracing::Span,
    ) -> Result<(String, Vec<u8>), SignerError> {
        let queued = (!span.is_disabled()).then(Instant::now);
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                key,
                message,
                reply,
                span,
                queued,
            })
            .map_err(|err| match err {
                TrySendError::Full(_) => SignerError::Overloaded,
                TrySendError::Disconnected(_) => SignerError::Stopped,
            })?;
        match answer.await {
            Ok((message, Ok(signature))) => Ok((message, signature)),
            Ok((_, Err(SignError::Local))) => Err(SignerError::Failed),
            Ok((_, Err(SignError::Backend { backend, error }))) => {
                Err(SignerError::Backend { backend, error })
            }
            Err(_) => Err(SignerError::Dropped),
        }
    }
}

/// Whether `key` signs on the async worker rather than on a signing thread:
/// in-process P-256 keys, whose signature (tens of microseconds) costs less
/// than the hand-off. RSA signatures (most of a millisecond) and every
/// external store stay off the async workers.
fn signs_inline(key: &SigningKey) -> bool {
    key.alg() == SigningAlg::Es256 && key.backend().is_none()
}

/// Lowers the calling thread's scheduling priority, best effort: a failure
/// costs latency under load, never correctness.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // Relative to the thread's own niceness: a service started with
        // `nice` keeps its signing threads below its async workers (an
        // absolute value could even raise them above).
        // SAFETY: gettid, getpriority and setpriority take plain integers and
        // touch no memory; on Linux PRIO_PROCESS with a thread id affects
        // that thread. getpriority may return -1 legitimately; clearing errno
        // is not needed because the value is only clamped and used.
        let outcome = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(
                libc::PRIO_PROCESS,
                tid,
                (current + SIGNER_NICENESS).min(MAX_NICENESS),
            )
        };
        if outcome != 0 {
            tracing::debug!("could not lower the signing thread's priority");
        }
    }
}

/// The nice value of the calling thread (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
fn current_niceness() -> i32 {
    // SAFETY: as in `lower_priority`.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
}

fn work(jobs: Receiver<Job>, signatures: &AtomicU64, durations: &Histogram) {
    while let Ok(job) = jobs.recv() {
        if job.reply.is_closed() {
            continue;
        }
        let Job {
            key,
            message,
            reply,
            span,
            queued,
        } = job;
        let (result, took) = match queued {
            Some(queued) => sign_traced(&key, &message, span, queued),
            None => {
                let started = Instant::now();
                (key.sign(message.as_bytes()), started.elapsed())
            }
        };
        durations.observe(took.as_secs_f64());
        signatures.fetch_add(1, Ordering::Relaxed);
        // The receiver may have gone since the check; nothing to do then.
        let _ = reply.send((message, result));
    }
}

/// Signs inside a `signature` child of `span`, records the queue wait and
/// the signing time on `span`, and lets go of it before the caller hears
/// back, so `span` ends with the caller's await. All of it runs with
/// `span`'s own dispatcher as this thread's default: a subscriber may be
/// scoped to the thread that opened the span, and the registry releases a
/// closed span's parent through the current default.
fn sign_traced(
    key: &SigningKey,
    message: &str,
    span: tracing::Span,
    queued: Instant,
) -> (Result<Vec<u8>, SignError>, Duration) {
    let Some(dispatch) = span.with_subscriber(|(_, dispatch)| dispatch.clone()) else {
        let started = Instant::now();
        return (key.sign(message.as_bytes()), started.elapsed());
    };
    tracing::dispatcher::with_default(&dispatch, move || {
        let started = Instant::now();
        let result = tracing::info_span!(target: TRACE_TARGET, parent: &span, "signature")
            .in_scope(|| key.sign(message.as_bytes()));
        let took = started.elapsed();
        let waited = started.saturating_duration_since(queued);
        // As i64: the trace layer records u64 values as strings.
        span.record("macp.signer.queue_wait_us", waited.as_micros() as i64);
        span.record("macp.signer.signature_us", took.as_micros() as i64);
        drop(span);
        (result, took)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signatures_come_back_with_their_message() {
        let pool = SigningPool::new(2, 4).unwrap();
        let key = Arc::new(SigningKey::generate(SigningAlg::Es256).unwrap());
        let (message, signature) = pool.sign(key, "hello".to_owned()).await.unwrap();
        assert_eq!(message, "hello");
        assert_eq!(signature.len(), 64);
        assert_eq!(pool.signatures(), 1);
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

    /// A pool whose queue the test drains (or not) itself.
    fn pool_without_threads(jobs: Sender<Job>) -> SigningPool {
        SigningPool {
            jobs,
            signatures: Arc::default(),
            durations: Histogram::new(signing_buckets()),
            backend_timeout: DEFAULT_SIGNING_TIMEOUT,
            backends: BackendMetrics::default(),
            consecutive_failures: AtomicU32::new(0),
        }
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        // One thread and one queue place: block the thread with a job whose
        // reply nobody reads yet, fill the place, and the next job is refused.
        let (jobs, receiver) = bounded::<Job>(1);
        let pool = pool_without_threads(jobs);
        let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).unwrap());
        let (reply, _answer) = oneshot::channel();
        pool.jobs
            .try_send(Job {
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
}
