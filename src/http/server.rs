//! Serving: accept connections within limits, and on shutdown fail
//! readiness, keep serving for the configured delay, then drain in-flight
//! requests within a deadline.
//!
//! The accept loop is hyper's own rather than `axum::serve`, because a
//! production listener needs what that convenience does not expose: a
//! header-read timeout (a client that trickles headers is cut off), a cap on
//! concurrent connections, and a drain that loses no request: connections
//! already queued in the kernel are still accepted, requests already sent
//! are answered (with `Connection: close`), and only connections that stay
//! idle through a short grace period are closed. (Closing an idle-looking
//! connection at once would drop a request whose bytes had arrived but were
//! not yet read.)
//!
//! `run` takes the listener and the shutdown future from its caller, so the
//! binary passes a bound port and the OS signals while tests pass
//! `127.0.0.1:0` and a channel.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tower::ServiceExt;

use crate::http::routes::router;
use crate::http::stall::WriteDeadline;
use crate::http::state::AppState;

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
pub(crate) async fn run<F>(
    listener: TcpListener,
    state: AppState,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let config = state.config().clone();
    let draining_state = state.clone();
    let delay = config.limits.shutdown_delay;
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
    let limits = ConnectionLimits::from_config(&config);
    let draining = serve(listener, router(state), limits, stop_accepting).await?;
    tokio::time::timeout(config.limits.drain_timeout, draining.finish())
        .await
        .map_err(|_| ServeError::DrainTimeout(config.limits.drain_timeout))
}

/// How long, once draining starts, a kept-alive connection that has already
/// served a request may stay idle. A request arriving within it is served,
/// with `Connection: close`. A connection that has not sent its first
/// request yet gets the header-read timeout instead: its client is about to
/// send, and closing now would reset a request already on its way.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Once accepting stops, the listener closes when its queue has stayed
/// empty this long (new attempts are refused meanwhile where the platform
/// allows, so only handshakes already under way can still arrive).
const BACKLOG_QUIET: Duration = Duration::from_millis(50);

/// The largest request head (request line and headers) read from a client;
/// a larger one gets `431 Request Header Fields Too Large`. 16 KiB holds any
/// request this API expects, a workload-identity JWT included.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most a connection buffers in either direction. hyper's default is
/// about 400 KB per connection, which lets a few hundred slow clients hold
/// more memory than a 128 MiB container has. Pipelined requests queue in
/// this buffer too, so it also bounds pipelining.
pub(crate) const MAX_BUFFER_BYTES: usize = 16 * 1024;

/// What bounds each listener's connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub(crate) max_connections: usize,
    /// Longest a client may take to send a request head.
    pub(crate) header_read_timeout: Duration,
    /// Longest a write may make no progress before the connection closes.
    pub(crate) write_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits `config` sets for the API listener.
    pub(crate) fn from_config(config: &crate::config::Config) -> Self {
        ConnectionLimits {
            max_connections: config.limits.max_connections,
            header_read_timeout: config.limits.header_read_timeout,
            write_timeout: config.limits.request_timeout,
        }
    }
}

/// Descriptors kept free beside the connection cap: listeners, the metrics
/// listener's connections, key and client files, logs, the signing threads.
pub(crate) const DESCRIPTOR_HEADROOM: u64 = 128;

/// Fits the connection cap to the open-file limit: raises the soft limit
/// towards the hard one if it is short of `max_connections` plus headroom,
/// and if it is still short, lowers the cap to what fits. Returns the cap to
/// use and, when it was lowered, a warning that says what to raise.
#[cfg(unix)]
pub(crate) fn fit_to_descriptors(max_connections: usize) -> (usize, Option<String>) {
    let wanted = max_connections as u64 + DESCRIPTOR_HEADROOM;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (max_connections, None);
        }
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
    }
    if limit.rlim_cur >= wanted {
        return (max_connections, None);
    }
    let fits = limit.rlim_cur.saturating_sub(DESCRIPTOR_HEADROOM).max(1) as usize;
    let warning = format!(
        "the open-file limit ({}) is below MACP_AUTH_MAX_CONNECTIONS ({max_connections}) plus {DESCRIPTOR_HEADROOM} for files and listeners: serving at most {fits} connections; raise the limit (ulimit -n, or the container runtime's nofile) to serve {max_connections}",
        limit.rlim_cur
    );
    (fits, Some(warning))
}

/// Without `getrlimit`, the cap stands as configured.
#[cfg(not(unix))]
pub(crate) fn fit_to_descriptors(max_connections: usize) -> (usize, Option<String>) {
    (max_connections, None)
}

/// Serves `app` on `listener` (the separate metrics listener too) until
/// `stop_accepting` completes, then takes the connections already queued in
/// the kernel and closes the listener. Returns a handle that drains.
pub(crate) async fn serve<F>(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop_accepting: F,
) -> Result<Draining, std::io::Error>
where
    F: Future<Output = ()>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (draining, _) = watch::channel(false);
    let (open, open_connections) = mpsc::channel::<()>(1);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUFFER_BYTES)
        .keep_alive(true);
    let connections = Connections {
        app,
        http,
        draining: draining.clone(),
        open,
        header_read_timeout: limits.header_read_timeout,
        write_timeout: limits.write_timeout,
    };
    tokio::pin!(stop_accepting);
    loop {
        // At the connection cap, stop accepting: new connections wait in the
        // kernel's backlog instead of consuming memory and descriptors here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut stop_accepting => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => connections.spawn(stream, peer, Some(slot)),
                Err(err) => {
                    // Running out of descriptors is transient: back off, retry.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut stop_accepting => break,
        }
    }
    // From here on every response closes its connection.
    draining.send_replace(true);
    // Closing a listener resets every connection still in its accept queue,
    // though those clients have already sent, or are sending, a request.
    // So first make the kernel drop new connection attempts (they end up
    // refused, never half-served), then take everything already queued.
    if !refuse_new_connections(&listener) {
        tracing::debug!(
            "cannot refuse new connections at the socket; closing after a quiet moment"
        );
    }
    let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
    loop {
        let accepted = tokio::select! {
            biased;
            accepted = listener.accept() => accepted,
            // Handshakes already under way may still land in the queue, so
            // close only once it has stayed empty for a moment.
            () = tokio::time::sleep(BACKLOG_QUIET) => break,
            () = tokio::time::sleep_until(deadline) => break,
        };
        if let Ok((stream, peer)) = accepted {
            connections.spawn(stream, peer, None);
        }
    }
    drop(listener);
    Ok(Draining {
        open_connections,
        open: connections.open,
    })
}

/// Makes the kernel drop new connection attempts on `listener` while the
/// connections already in, or entering, its accept queue keep working: a
/// socket filter that drops TCP segments with SYN set and lets the rest pass,
/// so handshakes already under way still complete. Connections already
/// created do not inherit it. The dropped attempts are refused once the
/// listener closes. Returns whether the filter is in place.
#[cfg(target_os = "linux")]
fn refuse_new_connections(listener: &TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    const TCP_FLAGS_OFFSET: u32 = 13;
    const SYN: u32 = 0x02;
    let instruction = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // A TCP socket's filter sees the segment from its TCP header on.
    let program = [
        instruction(
            libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
            0,
            0,
            TCP_FLAGS_OFFSET,
        ),
        instruction(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 0, 1, SYN),
        instruction(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        instruction(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
    ];
    let program = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: the descriptor is a live socket owned by `listener`, and the
    // kernel copies the program before setsockopt returns.
    let outcome = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::from_ref(&program).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    outcome == 0
}

#[cfg(not(target_os = "linux"))]
fn refuse_new_connections(_listener: &TcpListener) -> bool {
    false
}

/// What every connection task needs.
struct Connections {
    app: Router,
    http: hyper::server::conn::http1::Builder,
    draining: watch::Sender<bool>,
    /// Held by every connection task; the receiver sees the channel close
    /// once the last one ends.
    open: mpsc::Sender<()>,
    header_read_timeout: Duration,
    write_timeout: Duration,
}

impl Connections {
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, slot: Option<OwnedSemaphorePermit>) {
        let _ = stream.set_nodelay(true);
        let app = self.app.clone();
        let closing = self.draining.subscribe();
        let served = Arc::new(AtomicBool::new(false));
        let serving = served.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: axum::http::Request<Incoming>| {
                serving.store(true, Ordering::Relaxed);
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                let closing = closing.clone();
                async move {
                    let mut response = app.oneshot(request).await?;
                    if *closing.borrow() {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response)
                }
            },
        ));
        let stream = WriteDeadline::new(stream, self.write_timeout);
        let connection = self.http.serve_connection(TokioIo::new(stream), service);
        let mut draining = self.draining.subscribe();
        let open = self.open.clone();
        let first_request_grace = self.header_read_timeout.max(DRAIN_GRACE);
        tokio::spawn(async move {
            let _open = open;
            let _slot = slot;
            tokio::pin!(connection);
            let grace_over = async {
                let _ = draining.wait_for(|draining| *draining).await;
                let grace = if served.load(Ordering::Relaxed) {
                    DRAIN_GRACE
                } else {
                    first_request_grace
                };
                tokio::time::sleep(grace).await;
            };
            tokio::select! {
                _ = connection.as_mut() => return,
                () = grace_over => {}
            }
            // Finishes a request in progress; closes the connection if idle.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
}

/// Connections still open after the listener closed.
pub(crate) struct Draining {
    open_connections: mpsc::Receiver<()>,
    open: mpsc::Sender<()>,
}

impl Draining {
    /// Waits until every connection has finished its request and closed.
    pub(crate) async fn finish(self) {
        let Draining {
            mut open_connections,
            open,
        } = self;
        drop(open);
        while open_connections.recv().await.is_some() {}
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), logging which arrived.
///
/// The handlers are installed by this call, not when the future first runs,
/// so a signal arriving while the server starts is never lost to the default
/// action. Call it from within the Tokio runtime.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> + Send {
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
        "received {name}: shutting down (readiness fails now; after the shutdown delay the listener closes and in-flight requests drain)"
    );
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_refusing_listener_drops_new_attempts_but_serves_its_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Completed by the kernel, not yet accepted: sits in the queue.
        let mut queued = TcpStream::connect(addr).await.unwrap();
        assert!(refuse_new_connections(&listener));

        let attempt =
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
        assert!(
            attempt.is_err(),
            "a new attempt gets no answer while refusing"
        );

        let (mut accepted, _) = listener.accept().await.unwrap();
        queued.write_all(b"ping").await.unwrap();
        let mut buffer = [0u8; 4];
        accepted.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"ping", "the queued connection still carries data");
        accepted.write_all(b"pong").await.unwrap();
        queued.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"pong");

        drop(listener);
        let refused = TcpStream::connect(addr).await;
        assert!(refused.is_err(), "once closed, attempts are refused");
    }
}
