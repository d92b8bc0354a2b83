//! Background upkeep while serving: log key activations and retirements as
//! they happen, reload the key ring and client list on SIGHUP and when their
//! files change, and forget idle rate-limit buckets.
//!
//! A failed reload keeps what is in force and logs why (never key material);
//! it never stops the service and never falls back to an ephemeral key.
//!
//! Reloads run on Tokio's blocking pool, never on an async worker: parsing a
//! ring costs CPU, and reading a file on a hung mount can take forever. The
//! read itself gives up after [`crate::reload::READ_TIMEOUT`], so this task
//! (and shutdown, which waits for it) is never held longer than that.

use std::future::Future;
use std::time::Duration;

use crate::http::state::AppState;
use crate::reload::{ReloadOutcome, Source};

/// How often idle rate-limit buckets are forgotten.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

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
                    reload_off_workers(&state, "file check").await;
                }
                () = hangup => {
                    tracing::info!("received SIGHUP: reloading the key ring and the client list");
                    reload_off_workers(&state, "SIGHUP").await;
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

/// [`reload`] on the blocking pool.
async fn reload_off_workers(state: &AppState, trigger: &'static str) {
    let state = state.clone();
    if let Err(err) = tokio::task::spawn_blocking(move || reload(&state, trigger)).await {
        tracing::error!("reload ({trigger}) did not complete: {err}");
    }
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
