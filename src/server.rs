//! Serving: accept connections within limits, and on shutdown fail
//! readiness, keep serving for the configured delay, then drain in-flight
//! requests within a deadline.
//!
//! The accept loop is hyper's own rather than `axum::serve`, because a
//! production listener needs what that convenience does not expose: a
//! header-read timeout (a client that trickles headers is cut off), a cap on
//! concurrent connections, and graceful shutdown that closes idle keep-alive
//! connections while letting requests in progress finish.
//!
//! `run` takes the listener and the shutdown future from its caller, so the
//! binary passes a bound port and the OS signals while tests pass
//! `127.0.0.1:0` and a channel.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::routes::router;
use crate::state::AppState;

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// In-flight requests were still running when the drain deadline passed.
    #[error("in-flight requests did not finish within {0:?} of the shutdown signal")]
    DrainTimeout(Duration),
    /// The listener failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves `state` on `listener` until `shutdown` completes. Then readiness
/// fails at once, the listener keeps serving for the configured shutdown
/// delay, stops accepting, and in-flight requests finish. If they take longer
/// than the drain timeout, returns [`ServeError::DrainTimeout`].
pub async fn run<F>(listener: TcpListener, state: AppState, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let config = state.config().clone();
    let draining_state = state.clone();
    let delay = config.shutdown_delay;
    let stop_accepting = async move {
        shutdown.await;
        draining_state.start_draining();
        if !delay.is_zero() {
            tracing::info!(
                "readiness now fails; serving for {delay:?} more so load balancers can deregister"
            );
            tokio::time::sleep(delay).await;
        }
    };
    let draining = serve(
        listener,
        router(state),
        config.max_connections,
        config.header_read_timeout,
        stop_accepting,
    )
    .await?;
    tokio::time::timeout(config.drain_timeout, draining.finish())
        .await
        .map_err(|_| ServeError::DrainTimeout(config.drain_timeout))
}

/// Serves `app` on `listener` (for the separate metrics listener, too)
/// until `stop_accepting` completes, and returns a handle that drains.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    header_read_timeout: Duration,
    stop_accepting: F,
) -> Result<Draining, std::io::Error>
where
    F: Future<Output = ()>,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    tokio::pin!(stop_accepting);
    loop {
        // At the connection cap, stop accepting: new connections wait in the
        // kernel's backlog instead of consuming memory and descriptors here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut stop_accepting => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Running out of descriptors is transient: back off, retry.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop_accepting => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request)
            },
        ));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    Ok(Draining(graceful))
}

/// Connections still open after the listener closed.
pub struct Draining(GracefulShutdown);

impl Draining {
    /// Closes idle connections and waits for requests in progress.
    pub async fn finish(self) {
        self.0.shutdown().await;
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), logging which arrived.
///
/// The handlers are installed by this call, not when the future first runs,
/// so a signal arriving while the server starts is never lost to the default
/// action. Call it from within the Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let name = tokio::select! {
                () = wait(terminate) => "SIGTERM",
                () = wait(interrupt) => "SIGINT",
            };
            log_signal(name);
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        log_signal("Ctrl-C");
    }
}

fn log_signal(name: &str) {
    tracing::info!(
        signal = name,
        "received {name}: no longer accepting connections, draining in-flight requests"
    );
}
