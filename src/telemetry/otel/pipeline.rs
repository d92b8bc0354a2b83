//! Between a finished span and the collector: a hard bound on what waits,
//! an exact count of what is dropped, and one log line per outage.
//!
//! The SDK's batch processor already exports from its own thread and never
//! blocks `on_end`, but it reports through its internal log events: one
//! warning at the first dropped span, and an error for every failed batch,
//! which under load with the collector down is a line every few
//! milliseconds. Those internal events are compiled out (the crates'
//! `internal-logs` feature is off) and this module reports instead:
//!
//! - [`BoundedProcessor`] counts every span between `on_end` and the end of
//!   its export. At the bound it drops the span, counts it, and logs the
//!   first drop; the SDK's own queue is sized so that it never drops first.
//! - [`ReportingExporter`] wraps the OTLP exporter, gives the in-flight
//!   count back after each batch, and logs when export starts failing and
//!   when it recovers, not every failed batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// What the export pipeline has done since start-up.
#[derive(Debug, Default)]
pub(crate) struct ExportStats {
    /// Spans handed over and not yet through an export attempt.
    in_flight: AtomicUsize,
    /// Spans dropped because `in_flight` was at the bound.
    dropped: AtomicU64,
    /// Spans the collector accepted.
    exported: AtomicU64,
    /// Export requests that failed (after the exporter's own retries).
    failed_batches: AtomicU64,
    /// Whether the last export attempt failed.
    failing: AtomicBool,
}

impl ExportStats {
    /// Spans dropped because the export queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted.
    pub(crate) fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Export requests that failed.
    pub(crate) fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }
}

/// Forwards finished spans to `inner` while fewer than `limit` are waiting
/// or being exported; drops (and counts) the rest.
#[derive(Debug)]
pub(crate) struct BoundedProcessor<P> {
    inner: P,
    stats: Arc<ExportStats>,
    limit: usize,
}

impl<P: SpanProcessor> BoundedProcessor<P> {
    /// Bounds `inner` at `limit` spans. `inner`'s own queue must hold at
    /// least `limit`, so that every drop happens, and is counted, here.
    pub(crate) fn new(inner: P, stats: Arc<ExportStats>, limit: usize) -> Self {
        BoundedProcessor {
            inner,
            stats,
            limit,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for BoundedProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.stats.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
            if self.stats.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    queue = self.limit,
                    "trace export is behind: spans are being dropped; \
                     the total is logged at shutdown"
                );
            }
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter that settles the in-flight count and reports outages once.
#[derive(Debug)]
pub(crate) struct ReportingExporter<E> {
    inner: E,
    stats: Arc<ExportStats>,
}

impl<E: SpanExporter> ReportingExporter<E> {
    pub(crate) fn new(inner: E, stats: Arc<ExportStats>) -> Self {
        ReportingExporter { inner, stats }
    }
}

impl<E: SpanExporter> SpanExporter for ReportingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let outcome = self.inner.export(batch).await;
        self.stats.in_flight.fetch_sub(spans, Ordering::AcqRel);
        let stats = &self.stats;
        match &outcome {
            Ok(()) => {
                stats.exported.fetch_add(spans as u64, Ordering::Relaxed);
                if stats.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        failed_batches = stats.failed_batches(),
                        "trace export recovered"
                    );
                }
            }
            Err(error) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                if !stats.failing.swap(true, Ordering::AcqRel) {
                    // The SDK's error text names the failure class (network,
                    // status code), never headers or the request body.
                    tracing::warn!(
                        %error,
                        "trace export failed; spans are lost until the collector \
                         answers again (logged once per outage)"
                    );
                }
            }
        }
        outcome
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkError;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};
    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};

    use super::*;

    /// Collects the messages of log events.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
            struct Message<'a>(&'a mut String);
            impl tracing::field::Visit for Message<'_> {
                fn record_debug(&mut self, field: &tracing::field::Field, v: &dyn fmt::Debug) {
                    if field.name() == "message" {
                        *self.0 = format!("{v:?}");
                    }
                }
            }
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            self.0.lock().unwrap().push(message);
        }
    }

    use std::fmt;

    /// Records how many spans reach it, exporting nothing.
    #[derive(Debug, Clone, Default)]
    struct Sink(Arc<AtomicUsize>);

    impl SpanProcessor for Sink {
        fn on_start(&self, _: &mut Span, _: &Context) {}
        fn on_end(&self, _: SpanData) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    /// Fails the first `failures` exports, then accepts.
    #[derive(Debug)]
    struct Flaky {
        failures: AtomicUsize,
    }

    impl SpanExporter for Flaky {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            let left = self.failures.load(Ordering::Relaxed);
            if left == 0 {
                return Ok(());
            }
            self.failures.store(left - 1, Ordering::Relaxed);
            Err(OTelSdkError::InternalFailure(
                "HTTP export failed: network error".into(),
            ))
        }
    }

    fn end_spans(provider: &SdkTracerProvider, count: usize) {
        let tracer = provider.tracer("test");
        for _ in 0..count {
            drop(tracer.start("span"));
        }
    }

    #[test]
    fn spans_beyond_the_bound_are_dropped_counted_and_logged_once() {
        let stats = Arc::new(ExportStats::default());
        let sink = Sink::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BoundedProcessor::new(sink.clone(), stats.clone(), 2))
            .build();
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, || end_spans(&provider, 5));
        assert_eq!(sink.0.load(Ordering::Relaxed), 2, "the bound holds");
        assert_eq!(stats.dropped(), 3, "every drop is counted");
        let logs = capture.0.lock().unwrap().clone();
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert!(logs[0].contains("dropped"), "{logs:?}");
    }

    #[test]
    fn an_exported_batch_gives_its_places_back() {
        let stats = Arc::new(ExportStats::default());
        let exporter = ReportingExporter::new(
            Flaky {
                failures: AtomicUsize::new(0),
            },
            stats.clone(),
        );
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BoundedProcessor::new(
                SimpleSpanProcessor::new(exporter),
                stats.clone(),
                1,
            ))
            .build();
        end_spans(&provider, 5);
        assert_eq!(stats.dropped(), 0);
        assert_eq!(stats.exported(), 5);
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_outage_is_logged_when_it_starts_and_when_it_ends_only() {
        let stats = Arc::new(ExportStats::default());
        let exporter = ReportingExporter::new(
            Flaky {
                failures: AtomicUsize::new(3),
            },
            stats.clone(),
        );
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BoundedProcessor::new(
                SimpleSpanProcessor::new(exporter),
                stats.clone(),
                8,
            ))
            .build();
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, || end_spans(&provider, 5));
        assert_eq!(stats.failed_batches(), 3);
        assert_eq!(stats.exported(), 2);
        assert_eq!(
            stats.in_flight.load(Ordering::Relaxed),
            0,
            "failed spans free their places too"
        );
        let logs = capture.0.lock().unwrap().clone();
        assert_eq!(logs.len(), 2, "{logs:?}");
        assert!(logs[0].contains("trace export failed"), "{logs:?}");
        assert!(logs[1].contains("recovered"), "{logs:?}");
    }
}
