//! Serving: accept connections, and on shutdown drain in-flight requests
//! within a deadline.
//!
//! `run` takes the listener and the shutdown future from its caller, so the
//! binary passes a bound port and the OS signals while tests pass
//! `127.0.0.1:0` and a channel.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

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

/// Serves `state` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish, and returns. If they take longer
/// than the configured drain timeout, returns [`ServeError::DrainTimeout`].
pub async fn run<F>(listener: TcpListener, state: AppState, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let drain_timeout = state.config().drain_timeout;
    let (started_draining, draining) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = started_draining.send(());
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let deadline = async move {
        match draining.await {
            Ok(()) => tokio::time::sleep(drain_timeout).await,
            // The server ended on its own: no deadline to enforce.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => Ok(served?),
        () = deadline => Err(ServeError::DrainTimeout(drain_timeout)),
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
