//! One lane of signing threads: a few threads fed through one bounded queue.
//!
//! The pool keeps two lanes apart because their threads block for different
//! reasons. In-process keys sign in AWS-LC, a bounded amount of CPU; a
//! PKCS#11 key signs in the token, which can stop answering altogether. On a
//! shared lane a hung token would hold every thread and fill the queue, and
//! in-process keys (after an emergency reload back to a file key) would wait
//! behind it with no deadline. On separate lanes a hung token holds only its
//! own threads and queue.
//!
//! A full queue is refused at once rather than waited on; a job whose caller
//! has gone away is skipped, not signed. A signature that panics (a bug in a
//! vendor's module, or in ours) fails that one job: the thread catches it and
//! carries on, so a panic can neither answer 500 forever nor shrink the pool.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use crate::keys::{Backend, BackendError, SignError, SigningKey};
use crate::telemetry::TRACE_TARGET;

/// The nice value of signing threads (Linux: per thread). 10 gives the async
/// workers about ten times the CPU weight when both are runnable.
pub(super) const SIGNER_NICENESS: i32 = 10;

/// The largest nice value Linux accepts.
pub(super) const MAX_NICENESS: i32 = 19;

/// How a thread signs: [`SigningKey::sign`], or a stand-in in tests.
pub(super) type SignFn = fn(&SigningKey, &[u8]) -> Result<Vec<u8>, SignError>;

/// The answer a signing thread sends back: the message, handed back so the
/// caller can finish the token without a copy, and the signature.
pub(super) type Answer = (String, Result<Vec<u8>, SignError>);

pub(super) struct Job {
    pub(super) key: Arc<SigningKey>,
    pub(super) message: String,
    pub(super) reply: oneshot::Sender<Answer>,
    /// The job's `sign` span (disabled unless tracing is on).
    pub(super) span: tracing::Span,
    /// When the job was queued, read only when the span is recorded.
    pub(super) queued: Option<Instant>,
}

/// What every lane adds to: signatures made and how long each took.
#[derive(Clone, Debug)]
pub(super) struct Stats {
    pub(super) signatures: Arc<AtomicU64>,
    pub(super) durations: Histogram,
}

/// Why a lane gave no signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LaneError {
    /// Every thread is busy and the queue is full.
    Full,
    /// The lane's threads have stopped.
    Stopped,
    /// A thread dropped the job without answering.
    Dropped,
    /// The key refused to sign.
    Sign(SignError),
}

/// Handle to one lane's threads. Dropping the last handle stops them once
/// the queue is drained.
#[derive(Debug, Clone)]
pub(super) struct Lane {
    jobs: Sender<Job>,
}

impl Lane {
    /// Starts `threads` threads named `name-N` (at least one) sharing a
    /// queue of `queue` waiting jobs (at least one).
    pub(super) fn start(
        name: &str,
        threads: usize,
        queue: usize,
        stats: &Stats,
    ) -> std::io::Result<Self> {
        Self::start_with(name, threads, queue, stats, SigningKey::sign)
    }

    /// [`Lane::start`], the threads signing through `sign`.
    pub(super) fn start_with(
        name: &str,
        threads: usize,
        queue: usize,
        stats: &Stats,
        sign: SignFn,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = bounded::<Job>(queue.max(1));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            let stats = stats.clone();
            thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    lower_priority();
                    work(receiver, &stats, sign);
                })?;
        }
        Ok(Lane { jobs })
    }

    /// A lane over a queue the caller drains (or not) itself.
    #[cfg(test)]
    pub(super) fn over(jobs: Sender<Job>) -> Self {
        Lane { jobs }
    }

    /// Queues `message` for `key` and waits for the answer.
    pub(super) async fn sign(
        &self,
        key: Arc<SigningKey>,
        message: String,
        span: tracing::Span,
    ) -> Result<(String, Vec<u8>), LaneError> {
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
                TrySendError::Full(_) => LaneError::Full,
                TrySendError::Disconnected(_) => LaneError::Stopped,
            })?;
        match answer.await {
            Ok((message, Ok(signature))) => Ok((message, signature)),
            Ok((_, Err(error))) => Err(LaneError::Sign(error)),
            Err(_) => Err(LaneError::Dropped),
        }
    }
}

/// Lowers the calling thread's scheduling priority, best effort: a failure
/// costs latency under load, never correctness.
pub(super) fn lower_priority() {
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
pub(super) fn current_niceness() -> i32 {
    // SAFETY: as in `lower_priority`.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
}

/// Signs `message` with `key` through `sign`, turning a panic into a failed
/// signature: for a key in a store, the store's failure (the backend's
/// 503, counted against it); for an in-process key, AWS-LC's.
pub(super) fn sign_guarded(
    sign: SignFn,
    key: &SigningKey,
    message: &[u8],
) -> Result<Vec<u8>, SignError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| sign(key, message))).unwrap_or_else(|_| {
        tracing::error!("a signature panicked; it fails, and the signing thread carries on");
        Err(panicked(key.backend()))
    })
}

/// The failure a panicked signature with a key held by `backend` gives.
pub(super) fn panicked(backend: Option<Backend>) -> SignError {
    match backend {
        Some(backend) => SignError::Backend {
            backend,
            error: BackendError::Failed("the signature panicked".into()),
        },
        None => SignError::Local,
    }
}

fn work(jobs: Receiver<Job>, stats: &Stats, sign: SignFn) {
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
            Some(queued) => sign_traced(sign, &key, &message, span, queued),
            None => {
                let started = Instant::now();
                let result = sign_guarded(sign, &key, message.as_bytes());
                (result, started.elapsed())
            }
        };
        stats.durations.observe(took.as_secs_f64());
        stats.signatures.fetch_add(1, Ordering::Relaxed);
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
    sign: SignFn,
    key: &SigningKey,
    message: &str,
    span: tracing::Span,
    queued: Instant,
) -> (Result<Vec<u8>, SignError>, Duration) {
    let Some(dispatch) = span.with_subscriber(|(_, dispatch)| dispatch.clone()) else {
        let started = Instant::now();
        return (
            sign_guarded(sign, key, message.as_bytes()),
            started.elapsed(),
        );
    };
    tracing::dispatcher::with_default(&dispatch, move || {
        let started = Instant::now();
        let result = tracing::info_span!(target: TRACE_TARGET, parent: &span, "signature")
            .in_scope(|| sign_guarded(sign, key, message.as_bytes()));
        let took = started.elapsed();
        let waited = started.saturating_duration_since(queued);
        // As i64: the trace layer records u64 values as strings.
        span.record("macp.signer.queue_wait_us", waited.as_micros() as i64);
        span.record("macp.signer.signature_us", took.as_micros() as i64);
        drop(span);
        (result, took)
    })
}
