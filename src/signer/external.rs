//! Signatures through an external key store: the route (a PKCS#11 key on the
//! PKCS#11 lane, a KMS key through its client), the deadline, and the count
//! of outcomes that readiness is judged by.
//!
//! The pool runs each such signature on a task of its own, so its outcome
//! is counted even when the request that asked for it is gone.
//!
//! Every refusal here is the store's: a PKCS#11 lane whose queue is full
//! means the token is not keeping up (or has stopped answering), so it
//! answers like a timeout, as the backend's 503, and counts against the
//! store, never as the pool being at capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[cfg(feature = "aws-kms")]
use tracing::Instrument;

use super::{SignerError, UNREADY_AFTER_FAILURES};
use crate::keys::{Backend, BackendError, SigningKey};
use crate::metrics::{BackendCallLabels, BackendLabels, BackendMetrics};

#[cfg(feature = "pkcs11")]
use super::lane::{Lane, LaneError};

/// What a PKCS#11 signature gets when the PKCS#11 queue is full.
#[cfg(feature = "pkcs11")]
const PKCS11_QUEUE_FULL: &str =
    "the token is not keeping up: every PKCS#11 signing thread is busy and their queue is full";

/// How external signatures travel: the PKCS#11 lane and the deadline.
#[derive(Debug, Clone)]
pub(super) struct Route {
    #[cfg(feature = "pkcs11")]
    pub(super) pkcs11: Lane,
    pub(super) timeout: Duration,
}

impl Route {
    /// Signs `message` with `key`, held by `backend`, within the deadline.
    #[cfg_attr(
        not(any(feature = "pkcs11", feature = "aws-kms")),
        allow(unused_variables)
    )]
    pub(super) async fn sign(
        &self,
        backend: Backend,
        key: Arc<SigningKey>,
        message: String,
        span: tracing::Span,
    ) -> Result<(String, Vec<u8>), SignerError> {
        #[cfg(feature = "aws-kms")]
        if let Some(kms) = key.kms() {
            // The KMS client records the wait for its bound on calls in
            // flight, the call's time and its `signature` span.
            let signed = kms
                .sign(message.as_bytes(), &span)
                .instrument(span.clone())
                .await;
            return match signed {
                Ok(signature) => Ok((message, signature)),
                Err(error) => Err(SignerError::Backend { backend, error }),
            };
        }
        #[cfg(feature = "pkcs11")]
        {
            let signed = self.pkcs11.sign(key, message, span);
            let failed = |error| SignerError::Backend { backend, error };
            match tokio::time::timeout(self.timeout, signed).await {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(LaneError::Full)) => {
                    Err(failed(BackendError::Unreachable(PKCS11_QUEUE_FULL.into())))
                }
                Ok(Err(error)) => Err(error.into()),
                Err(_) => Err(failed(BackendError::Timeout {
                    millis: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                })),
            }
        }
        #[cfg(not(feature = "pkcs11"))]
        Err(SignerError::Backend {
            backend,
            error: BackendError::Failed("this build cannot sign with this store".into()),
        })
    }
}

/// External signatures counted by store and outcome, with their latency,
/// and the run of consecutive failures readiness is judged by.
#[derive(Debug, Default)]
pub(super) struct Outcomes {
    pub(super) metrics: BackendMetrics,
    consecutive_failures: AtomicU32,
}

impl Outcomes {
    /// Whether the store answers: false after [`UNREADY_AFTER_FAILURES`]
    /// consecutive failures, until a success.
    pub(super) fn available(&self) -> bool {
        self.consecutive_failures.load(Ordering::Relaxed) < UNREADY_AFTER_FAILURES
    }

    /// Forgets past failures.
    pub(super) fn clear(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts one external signature by outcome, observes its latency, and
    /// tracks consecutive failures for readiness. Refusals that say nothing
    /// about the store (stopped threads) are not counted.
    pub(super) fn record(
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
        self.metrics
            .calls
            .get_or_create(&BackendCallLabels {
                backend: name,
                outcome,
            })
            .inc();
        self.metrics
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
}
