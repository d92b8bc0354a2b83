//! Log output: `tracing` events on standard output, as text for people or
//! JSON lines for pipelines (`MACP_AUTH_LOG_FORMAT`).
//!
//! The filter comes from `RUST_LOG` (validated by the config module, default
//! `info`). Audit records go to the `audit` target. Nothing logged anywhere
//! in the service carries a token or key material; the mint record names
//! the sender, TTL, kid and jti only.
//!
//! Lines are written by a dedicated thread, so a slow or blocked stdout
//! never holds up an async worker mid-request. The hand-off is not lossy:
//! when the thread falls behind, callers wait rather than drop an audit
//! record, and the returned guard flushes everything on exit.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub(crate) mod otel;

/// Installs the global subscriber with `filter`, writing text or JSON lines.
/// Keep the guard until the process ends: dropping it flushes the log.
pub fn init(filter: &str, format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("macp-log-writer")
        .finish(std::io::stdout());
    // The config module has already refused filters that do not parse, so
    // the fallback is unreachable from the binary.
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
                .with_target(false)
                // Colour codes only help a person at a terminal; in a log
                // pipeline they are noise that breaks grep and parsers.
                .with_ansi(std::io::stdout().is_terminal())
                .try_init();
        }
        LogFormat::Json => {
            // One object per line; event fields flattened beside `target`,
            // so audit records (`"target":"audit"`) are easy to route.
            let _ = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_env_filter(filter)
                .with_writer(writer)
                .try_init();
        }
    }
    guard
}
