//! The one place that builds and runs the service.
//!
//! [`Service::build`] turns a [`Config`] into everything serving needs, in
//! order: the key ring and client list (validated in full, so a bad secret
//! stops startup before any port opens), the signing threads, the main
//! listener and, when `MACP_AUTH_METRICS_ADDR` is set, the metrics listener.
//! [`Service::run_until`] then owns the shutdown order: the maintenance task
//! (reloads, scheduled key changes) runs beside the server; when the shutdown
//! future completes, readiness fails, the server drains, and only then are
//! maintenance and the metrics listener stopped, so `/metrics` stays
//! scrapeable and keys keep rotating until the last request is answered.
//! Last, the trace pipeline (when tracing is on) exports the spans of those
//! final requests, within a deadline, so a collector that is down cannot
//! hold up the exit.
//!
//! The binary and the in-process tests start the same `Service`, so the
//! wiring the binary relies on is the wiring the tests exercise.

pub(crate) mod fingerprint;
pub(crate) mod maintenance;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::http::routes::metrics_router;
use crate::http::server::{ConnectionLimits, ServeError, fit_to_descriptors, run, serve};
use crate::http::state::{AppState, StartupError};
use crate::telemetry::{SHUTDOWN_FLUSH_TIMEOUT, Tracing};
use fingerprint::Fingerprint;

/// Connections the separate metrics listener serves at once.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration names keys or clients that cannot be used, or the
    /// signing threads could not start.
    #[error(transparent)]
    State(#[from] StartupError),
    /// The main address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// `HOST:PORT`.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The metrics address cannot be bound.
    #[error("cannot listen on MACP_AUTH_METRICS_ADDR {addr}: {source}")]
    MetricsListen {
        /// `MACP_AUTH_METRICS_ADDR`.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}

/// A built service: state, bound listeners, ready to run.
pub struct Service {
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    /// Set when the open-file limit lowered the connection cap.
    descriptor_warning: Option<String>,
    /// The trace pipeline to flush last, when tracing is on.
    traces: Option<Tracing>,
}

impl Service {
    /// Builds the state `config` describes and binds its listeners. The
    /// connection cap is first fitted to the open-file limit.
    pub(crate) async fn build(mut config: Config) -> Result<Self, ServiceError> {
        let (cap, warning) = fit_to_descriptors(config.limits.max_connections);
        config.limits.max_connections = cap;
        let mut service = Self::with_state(AppState::from_config(config)?).await?;
        service.descriptor_warning = warning;
        Ok(service)
    }

    /// Binds the listeners `state`'s configuration names (port 0 picks a free
    /// port, as tests do).
    pub async fn with_state(state: AppState) -> Result<Self, ServiceError> {
        let listen = &state.config().listen;
        let addr = listen.addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServiceError::Listen { addr, source })?;
        let metrics_listener = match listen.metrics_addr {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServiceError::MetricsListen { addr, source })?,
            ),
        };
        Ok(Service {
            state,
            listener,
            metrics_listener,
            descriptor_warning: None,
            traces: None,
        })
    }

    /// The same service, flushing `traces` when it stops.
    pub(crate) fn with_traces(mut self, traces: Option<Tracing>) -> Self {
        self.traces = traces;
        self
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// The address `/metrics` listens on, when it has its own listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|listener| {
            listener
                .local_addr()
                .expect("a bound TCP listener has an address")
        })
    }

    /// The startup fingerprint of this service as it is now.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let state = &self.state;
        let clients = state.clients();
        Fingerprint::new(
            state.config(),
            &state.keys().ring(),
            state.keys().source(),
            Fingerprint::clients_line(clients.source(), clients.names()),
            state.clock().now(),
        )
        .with_metrics_addr(self.metrics_addr())
        .with_warning(self.descriptor_warning.clone())
    }

    /// Serves until `shutdown` completes, then drains: readiness fails, the
    /// shutdown delay passes, in-flight requests finish. Maintenance and the
    /// metrics listener stop after the drain, then queued spans are flushed.
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Service {
            state,
            listener,
            metrics_listener,
            traces,
            ..
        } = self;
        let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
        if let Some(metrics_listener) = metrics_listener {
            let app = metrics_router(state.clone());
            let limits = ConnectionLimits {
                max_connections: METRICS_MAX_CONNECTIONS,
                ..ConnectionLimits::from_config(state.config())
            };
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = metrics_stopped.await;
                };
                let served = serve(metrics_listener, app, limits, stopped);
                if let Ok(draining) = served.await {
                    draining.finish().await;
                }
            });
        }
        let (stop_maintenance, maintenance_stopped) = oneshot::channel::<()>();
        let maintenance = tokio::spawn(maintenance::maintain(state.clone(), async move {
            let _ = maintenance_stopped.await;
        }));
        let served = run(listener, state, shutdown).await;
        let _ = stop_maintenance.send(());
        let _ = stop_metrics.send(());
        let _ = maintenance.await;
        if let Some(traces) = traces {
            traces.shutdown(SHUTDOWN_FLUSH_TIMEOUT).await;
        }
        served
    }
}
