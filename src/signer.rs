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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::oneshot;

use crate::keys::{SignError, SigningKey};

/// Jobs allowed to wait per signing thread before requests are shed.
const QUEUE_PER_THREAD: usize = 128;

/// The nice value of signing threads (Linux: per thread). 10 gives the async
/// workers about ten times the CPU weight when both are runnable.
const SIGNER_NICENESS: i32 = 10;

/// Why a signature could not be made. Turned into an HTTP answer at the
/// edge (`http::error`), never here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
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
}

/// Handle to the signing threads. Dropping the last handle stops them once
/// the queue is drained.
#[derive(Debug)]
pub struct SigningPool {
    jobs: Sender<Job>,
    signatures: Arc<AtomicU64>,
    durations: Histogram,
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
        })
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

    /// Signs `message` with `key` on a pool thread and hands the message back
    /// with its signature, so the caller can finish the token without a copy.
    pub(crate) async fn sign(
        &self,
        key: Arc<SigningKey>,
        message: String,
    ) -> Result<(String, Vec<u8>), SignerError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                key,
                message,
                reply,
            })
            .map_err(|err| match err {
                TrySendError::Full(_) => SignerError::Overloaded,
                TrySendError::Disconnected(_) => SignerError::Stopped,
            })?;
        match answer.await {
            Ok((message, Ok(signature))) => Ok((message, signature)),
            Ok((_, Err(SignError))) => Err(SignerError::Failed),
            Err(_) => Err(SignerError::Dropped),
        }
    }
}

/// Lowers the calling thread's scheduling priority, best effort: a failure
/// costs latency under load, never correctness.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no
        // memory; on Linux PRIO_PROCESS with a thread id affects that thread.
        let outcome = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, SIGNER_NICENESS)
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
        let started = Instant::now();
        let result = job.key.sign(job.message.as_bytes());
        durations.observe(started.elapsed().as_secs_f64());
        signatures.fetch_add(1, Ordering::Relaxed);
        // The receiver may have gone since the check; nothing to do then.
        let _ = job.reply.send((job.message, result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningAlg;

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
        assert_eq!(observed, (before + SIGNER_NICENESS).min(19));
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
        }
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        // One thread and one queue place: block the thread with a job whose
        // reply nobody reads yet, fill the place, and the next job is refused.
        let (jobs, receiver) = bounded::<Job>(1);
        let pool = pool_without_threads(jobs);
        let key = Arc::new(SigningKey::generate(SigningAlg::Es256).unwrap());
        let (reply, _answer) = oneshot::channel();
        pool.jobs
            .try_send(Job {
                key: key.clone(),
                message: String::new(),
                reply,
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
        let key = Arc::new(SigningKey::generate(SigningAlg::Es256).unwrap());
        let err = pool.sign(key, "x".to_owned()).await.unwrap_err();
        assert_eq!(err, SignerError::Stopped);
    }
}
