//! Background upkeep while serving: log key activations and retirements as
//! they happen, reload the key ring and client list on SIGHUP and when their
//! files change, and forget idle rate-limit buckets.
//!
//! A failed reload keeps what is in force and logs why (never key material);
//! it never stops the service and never falls back to an ephemeral key.
//!
//! While the external store of the signing key is unavailable (readiness
//! fails after consecutive errors), a probe signature is tried every
//! [`BACKEND_PROBE`], so the replica becomes ready again by itself once the
//! store answers, even when readiness has taken it out of the load balancer
//! and no mint reaches it.
//!
//! Reloads run on Tokio's blocking pool, never on an async worker: parsing a
//! ring costs CPU, opening a key in an external store (PKCS#11 login, KMS
//! calls) can take a few signing deadlines, and reading a file on a hung
//! mount can take forever. The read gives up after
//! [`crate::reload::READ_TIMEOUT`] and opening a key after
//! `keys::backend::OPEN_DEADLINE_FACTOR` (5) signing deadlines, and a
//! reload under way never holds up shutdown: this task stops at once and
//! leaves the reload to finish (or fail) on its own.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::http::state::AppState;
use crate::reload::{ReloadOutcome, Source};

/// How often idle rate-limit buckets are forgotten.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

/// How often an unavailable key store is probed with a signature.
const BACKEND_PROBE: Duration = Duration::from_secs(1);

/// What the recovery probe signs: any input does, as nobody sees it.
const PROBE_INPUT: &str = "macp-auth-service backend probe";

/// Runs the upkeep for `state` until `shutdown`.
///
/// The SIGHUP handler is installed by this call, not when the returned
/// future first runs, so a SIGHUP that arrives once serving has started can
/// never meet the default action (terminating the process). Call it from
/// within the Tokio runtime.
pub(crate) fn maintain<F>(state: AppState, shutdown: F) -> impl Future<Output = ()> + Send
where
    F: Future<Output = ()> + Send,
{
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    async move {
        // Intervals keep their own schedule across loop turns; a fresh sleep
        // per turn would restart whenever another branch fired first.
        let poll = state.config().keys.poll_interval;
        let mut file_check = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
        file_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        file_check.tick().await;
        let mut sweep = tokio::time::interval(LIMITER_SWEEP);
        sweep.tick().await;
        let mut backend_probe = tokio::time::interval(BACKEND_PROBE);
        backend_probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let probing = Arc::new(AtomicBool::new(false));
        tokio::pin!(shutdown);
        loop {
            let keys = state.keys();
            let until_change = keys
                .next_change()
                .map(|at| at.saturating_sub(state.clock().now()))
                .unwrap_or(3600)
                .clamp(1, 3600);
            #[cfg(unix)]
            let hangup = async {
                match hangups.as_mut() {
                    Some(stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(Duration::from_secs(until_change)) => {
                    keys.current();
                }
                _ = file_check.tick(), if poll.is_some() => {
                    if reload_unless_shutdown(&state, "file check", shutdown.as_mut()).await {
                        return;
                    }
                }
                () = hangup => {
                    tracing::info!("received SIGHUP: reloading the key ring and the client list");
                    if reload_unless_shutdown(&state, "SIGHUP", shutdown.as_mut()).await {
                        return;
                    }
                }
                // Only while the store is unavailable: a branch that fires
                // every second would keep restarting the sleep above.
                _ = backend_probe.tick(), if !state.signer().backend_available() => {
                    probe_backend(&state, &probing);
                    keys.current();
                }
                _ = sweep.tick() => {
                    if let Some(limiter) = state.rate_limiter() {
                        limiter.forget_idle();
                    }
                }
            }
        }
    }
}

/// [`reload_off_workers`], or `true` as soon as `shutdown` completes first
/// (the reload then finishes on its own).
async fn reload_unless_shutdown<F: Future<Output = ()>>(
    state: &AppState,
    trigger: &'static str,
    shutdown: std::pin::Pin<&mut F>,
) -> bool {
    tokio::select! {
        () = reload_off_workers(state, trigger) => false,
        () = shutdown => true,
    }
}

/// [`reload`] on the blocking pool.
async fn reload_off_workers(state: &AppState, trigger: &'static str) {
    let state = state.clone();
    if let Err(err) = tokio::task::spawn_blocking(move || reload(&state, trigger)).await {
        tracing::error!("reload ({trigger}) did not complete: {err}");
    }
}

/// While the signing key's store is unavailable, signs one probe in the
/// background (never more than one at a time); its outcome counts like a
/// mint's, so a success makes the replica ready again.
fn probe_backend(state: &AppState, probing: &Arc<AtomicBool>) {
    if state.signer().backend_available() || probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let state = state.clone();
    let probing = probing.clone();
    tokio::spawn(async move {
        let key = state.keys().current().signing.clone();
        if key.backend().is_some() {
            let _ = state.signer().sign(key, PROBE_INPUT.to_owned()).await;
        } else {
            // The failing store no longer holds the signing key.
            state.signer().clear_backend_failures();
        }
        probing.store(false, Ordering::Release);
    });
}

/// Reloads both sources, logging failures; `trigger` names the cause.
pub(crate) fn reload(state: &AppState, trigger: &str) {
    match state.keys().reload() {
        Ok((ReloadOutcome::NotReloadable, _)) if trigger == "SIGHUP" => {
            tracing::info!(
                "the signing key comes from {} and cannot change at runtime; nothing to reload",
                match state.keys().source() {
                    Source::Unset => "an ephemeral key",
                    _ => "MACP_AUTH_SIGNING_KEY_JSON",
                }
            );
        }
        Ok(_) => {}
        Err(err) => {
            tracing::error!("key ring reload ({trigger}) failed, keeping the current ring: {err}");
        }
    }
    if let Err(err) = state.clients().reload() {
        tracing::error!("client list reload ({trigger}) failed, keeping the current list: {err}");
    }
}
