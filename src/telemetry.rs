//! Log output and traces.
//!
//! Logs: `tracing` events on standard output, as text for people or JSON
//! lines for pipelines (`MACP_AUTH_LOG_FORMAT`). The filter comes from
//! `RUST_LOG` (validated by the config module, default `info`). Audit
//! records go to the `audit` target. Nothing logged anywhere in the service
//! carries a token or key material; the mint record names the sender, TTL,
//! kid and jti only.
//!
//! Lines are written by a dedicated thread, so a slow or blocked stdout
//! never holds up an async worker mid-request; the lines queued while it
//! writes or naps go out together in one system call ([`writer`]). The hand-off is not lossy:
//! when the thread falls behind, callers wait rather than drop an audit
//! record, and [`Telemetry`] flushes everything when dropped. Each record
//! is one line to every reader, whatever the values in it ([`escape`]).
//!
//! Traces ([`otel`], off unless an OTLP endpoint is configured): spans
//! opened under [`TRACE_TARGET`] go to the exporter and nowhere else, and
//! nothing else goes to the exporter. The log layer never sees those spans,
//! so log lines read the same with tracing on or off; with tracing off no
//! layer wants them and opening one costs a cached interest check.
//!
//! This module is a leaf, like `metrics`: the http layer and the signer name
//! [`TRACE_TARGET`] and call [`continue_trace`], nothing here calls them.

mod escape;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod otel;
mod writer;

use std::io::IsTerminal;

use tokio::runtime::Handle;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LoggingSettings, TelemetrySettings};
pub(crate) use escape::Escaping;
pub(crate) use otel::StartError;
pub(crate) use otel::{SHUTDOWN_FLUSH_TIMEOUT, Tracing, continue_trace};

/// The `tracing` target of spans meant for traces (the request, the mint,
/// the signing). Only spans with this target are exported; the log output
/// never shows them.
pub(crate) const TRACE_TARGET: &str = "macp_trace";

/// Why logging or tracing could not be installed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    /// The log writer thread could not be started.
    #[error("cannot start the log writer thread: {0}")]
    LogWriter(std::io::Error),
    /// The trace exporter could not be built.
    #[error(transparent)]
    Traces(#[from] StartError),
}

/// Logging and tracing, installed. Keep it until the process ends: dropping
/// it flushes the log. Take the trace pipeline out with
/// [`Telemetry::take_traces`] so the service can flush it at shutdown.
pub(crate) struct Telemetry {
    _log_writer: writer::WriterGuard,
    traces: Option<Tracing>,
}

impl Telemetry {
    /// The trace pipeline, when tracing is on.
    pub(crate) fn take_traces(&mut self) -> Option<Tracing> {
        self.traces.take()
    }
}

/// Installs the global subscriber: log lines as `logging` says, and, when
/// `telemetry` configures traces, the OpenTelemetry layer whose exports run
/// on `runtime`.
pub(crate) fn init(
    logging: &LoggingSettings,
    telemetry: &TelemetrySettings,
    runtime: &Handle,
) -> Result<Telemetry, InitError> {
    let traces = match &telemetry.traces {
        Some(settings) => Some(Tracing::start(settings, runtime.clone())?),
        None => None,
    };
    let (writer, guard) = writer::spawn(std::io::stdout()).map_err(InitError::LogWriter)?;
    // Colour codes only help a person at a terminal; in a log pipeline they
    // are noise that breaks grep and parsers.
    let ansi = logging.format == LogFormat::Text && std::io::stdout().is_terminal();
    let writer = Escaping {
        inner: writer,
        keep_ansi: ansi,
    };
    let _ = subscriber(logging, writer, ansi, traces.as_ref()).try_init();
    Ok(Telemetry {
        _log_writer: guard,
        traces,
    })
}

/// The subscriber [`init`] installs, writing log lines to `writer`.
fn subscriber<W>(
    logging: &LoggingSettings,
    writer: W,
    ansi: bool,
    traces: Option<&Tracing>,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // The config module has already refused filters that do not parse, so
    // the fallback is unreachable from the binary.
    let filter = EnvFilter::try_new(&logging.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = filter.and(filter_fn(|meta| meta.target() != TRACE_TARGET));
    let log: Box<dyn Layer<Registry> + Send + Sync> = match logging.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(false)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        // One object per line; event fields flattened beside `target`, so
        // audit records (`"target":"audit"`) are easy to route.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![log];
    if let Some(traces) = traces {
        layers.push(traces.layer().boxed());
    }
    tracing_subscriber::registry().with(layers)
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::memory::MemoryLog;
    use super::*;

    fn logging(format: LogFormat) -> LoggingSettings {
        LoggingSettings {
            format,
            ..LoggingSettings::default()
        }
    }

    /// Logs one event inside a trace span and an ordinary span, with or
    /// without the trace layer; returns the log output.
    fn log_inside_spans(format: LogFormat, traces: Option<&Tracing>) -> String {
        let lines = MemoryLog::default();
        let subscriber = subscriber(&logging(format), lines.clone(), false, traces);
        tracing::subscriber::with_default(subscriber, || {
            let trace_span = tracing::info_span!(target: TRACE_TARGET, "mint", macp.kid = "k1");
            let _entered = trace_span.enter();
            tracing::info_span!("work", step = 2).in_scope(|| {
                tracing::info!(target: "audit", sender = "agent://a", "minted token");
            });
        });
        lines.text()
    }

    #[test]
    fn log_lines_never_show_trace_spans_whether_tracing_is_on_or_off() {
        let tracing = Tracing::from_provider(SdkTracerProvider::builder().build());
        for format in [LogFormat::Text, LogFormat::Json] {
            for traces in [None, Some(&tracing)] {
                let output = log_inside_spans(format, traces);
                let case = format!("{format:?}, tracing {}", traces.is_some());
                assert_eq!(output.lines().count(), 1, "{case}: {output}");
                assert!(output.contains("minted token"), "{case}: {output}");
                assert!(!output.contains("mint{"), "{case}: {output}");
                assert!(!output.contains("k1"), "{case}: {output}");
                if format == LogFormat::Text {
                    assert!(output.contains("work{step=2}"), "{case}: {output}");
                }
            }
        }
    }

    /// The service's subscriber is the one global dispatcher, so a
    /// callsite's cached interest is this subscriber's answer: `never` makes
    /// opening a trace span a no-op.
    #[test]
    fn trace_spans_are_never_wanted_when_tracing_is_off() {
        use tracing::Subscriber as _;
        let tracing = Tracing::from_provider(SdkTracerProvider::builder().build());
        let on = subscriber(
            &logging(LogFormat::Text),
            MemoryLog::default(),
            false,
            Some(&tracing),
        );
        let span = tracing::subscriber::with_default(
            on,
            || tracing::info_span!(target: TRACE_TARGET, "request"),
        );
        let meta = span.metadata().expect("enabled with tracing on");
        let off = subscriber(&logging(LogFormat::Json), MemoryLog::default(), false, None);
        assert!(off.register_callsite(meta).is_never());
        let on = subscriber(
            &logging(LogFormat::Text),
            MemoryLog::default(),
            false,
            Some(&tracing),
        );
        assert!(!on.register_callsite(meta).is_never());
        assert!(on.enabled(meta));
    }
}
