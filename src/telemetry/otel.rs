//! OpenTelemetry traces: an orchestrator's trace shows each mint it asked
//! for, and how long the signature took.
//!
//! Tracing is off unless an OTLP endpoint is configured through the standard
//! variables (`config::TelemetrySettings`). When on, the `tracing` spans this service opens
//! under [`TRACE_TARGET`] (the request, the mint, the signing) become OpenTelemetry
//! spans through `tracing-opentelemetry`; no other span or event reaches
//! the exporter, so log and audit records never end up in a trace, and the
//! log lines keep their shape whether tracing is on or off. When tracing is
//! off, no layer wants those spans and creating them costs one cached
//! interest check.
//!
//! A caller's W3C `traceparent` is continued ([`continue_trace`]), so the
//! server span is a child of the orchestrator's span.
//!
//! Export never holds up a request: finished spans go to a bounded queue
//! drained by the SDK's batch thread, which posts OTLP/HTTP protobuf to the
//! collector ([`client`]); when the queue is full spans are dropped and
//! counted ([`pipeline`]). At shutdown the queue is flushed with a deadline.
//!
//! Span attributes are chosen by the code that opens the span, never copied
//! from a request: no header, credential or token is ever an attribute.

mod client;
mod pipeline;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tokio::runtime::Handle;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use self::client::ExportClient;
use self::pipeline::{BoundedProcessor, ExportStats, ReportingExporter};
use super::TRACE_TARGET;
use crate::config::{RootSampler, SamplerSetting, TraceSettings};

/// The instrumentation scope named in every exported span.
const SCOPE: &str = "macp-auth-service";

/// How long shutdown waits for the last spans to reach the collector.
pub(crate) const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The running trace pipeline. Keep it until shutdown, then call
/// [`Tracing::shutdown`] to flush.
#[derive(Debug)]
pub(crate) struct Tracing {
    provider: SdkTracerProvider,
    stats: Arc<ExportStats>,
}

/// The exporter could not be built (not reachable with settings that parsed).
#[derive(Debug, thiserror::Error)]
#[error("the OTLP trace exporter could not be set up ({0})")]
pub(crate) struct StartError(&'static str);

impl Tracing {
    /// Builds the exporter, the batch thread and the tracer provider. Export
    /// requests run on `runtime`, the service's Tokio runtime.
    pub(crate) fn start(settings: &TraceSettings, runtime: Handle) -> Result<Self, StartError> {
        let stats = Arc::new(ExportStats::default());
        let headers: HashMap<String, String> = settings
            .headers
            .0
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        // The builder's errors quote the endpoint, which may carry a key in
        // its query: only the kind of failure is reported.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(ExportClient::new(runtime, settings.timeout))
            .with_endpoint(settings.endpoint.to_string())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(settings.timeout)
            .with_headers(headers)
            .build()
            .map_err(|err| {
                StartError(match err {
                    opentelemetry_otlp::ExporterBuildError::InvalidConfiguration(_) => {
                        "invalid configuration"
                    }
                    _ => "internal failure",
                })
            })?;
        let batch = BatchSpanProcessor::builder(ReportingExporter::new(exporter, stats.clone()))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(settings.max_queue_size)
                    .with_max_export_batch_size(settings.max_export_batch_size)
                    .with_scheduled_delay(settings.schedule_delay)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BoundedProcessor::new(
                batch,
                stats.clone(),
                settings.max_queue_size,
            ))
            .with_sampler(sampler(settings.sampler))
            .with_resource(resource(settings))
            .build();
        Ok(Tracing { provider, stats })
    }

    /// The `tracing` layer that turns [`TRACE_TARGET`] spans into OpenTelemetry
    /// spans; everything else passes it by.
    pub(crate) fn layer<S>(&self) -> impl Layer<S> + 'static
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        layer_for(&self.provider)
    }

    /// A pipeline over `provider`, for tests that export in memory.
    #[cfg(test)]
    pub(crate) fn from_provider(provider: SdkTracerProvider) -> Self {
        Tracing {
            provider,
            stats: Arc::default(),
        }
    }

    /// Exports what is queued, waiting at most `timeout`, and stops the
    /// batch thread. Runs off the async workers: the flush needs them to
    /// carry the export request.
    pub(crate) async fn shutdown(self, timeout: Duration) {
        let Tracing { provider, stats } = self;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "trace flush at shutdown did not complete")
            }
            Err(_) => tracing::warn!("trace flush at shutdown did not complete"),
        }
        if stats.dropped() > 0 || stats.failed_batches() > 0 {
            tracing::warn!(
                dropped_spans = stats.dropped(),
                failed_batches = stats.failed_batches(),
                exported_spans = stats.exported(),
                "trace export lost spans while running"
            );
        }
    }
}

fn layer_for<S>(provider: &SdkTracerProvider) -> impl Layer<S> + 'static
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE))
        .with_location(false)
        .with_threads(false)
        .with_level(false)
        .with_target(false)
        .with_filter(filter_fn(|meta| meta.target() == TRACE_TARGET))
}

/// Makes `span` a child of the caller's span when the request carries a
/// valid W3C `traceparent`. Must run before `span` is first entered.
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when the OpenTelemetry layer is absent: nothing to continue.
    let _ = span.set_parent(parent);
}

fn sampler(setting: SamplerSetting) -> Sampler {
    let root = match setting.root {
        RootSampler::AlwaysOn => Sampler::AlwaysOn,
        RootSampler::AlwaysOff => Sampler::AlwaysOff,
        RootSampler::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
    };
    if setting.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    }
}

fn resource(settings: &TraceSettings) -> Resource {
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attributes(
            settings
                .resource
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(settings.service_name.clone())
        .build()
}

/// In-memory trace export, for tests across the crate.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{
        Sampler, SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter,
    };
    use tracing_subscriber::layer::SubscriberExt;

    /// Keeps exported spans in memory.
    #[derive(Clone, Debug, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// A tracer provider that exports each span as it ends, into memory.
    pub(crate) struct Recorder {
        provider: SdkTracerProvider,
        collect: Collect,
    }

    impl Recorder {
        pub(crate) fn with_sampler(sampler: Sampler) -> Self {
            let collect = Collect::default();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(SimpleSpanProcessor::new(collect.clone()))
                .with_sampler(sampler)
                .build();
            Recorder { provider, collect }
        }

        /// A subscriber with only the trace layer over this provider.
        pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
            tracing_subscriber::registry().with(super::layer_for(&self.provider))
        }

        /// Every span exported so far, in the order they ended.
        pub(crate) fn spans(&self) -> Vec<SpanData> {
            self.provider.force_flush().unwrap();
            self.collect.0.lock().unwrap().clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use opentelemetry::trace::{SpanId, SpanKind, TraceId};

    use super::*;

    /// Runs `body` under a subscriber with only the trace layer; returns
    /// what was exported.
    fn traced(sampler: Sampler, body: impl FnOnce()) -> Vec<opentelemetry_sdk::trace::SpanData> {
        let recorder = testing::Recorder::with_sampler(sampler);
        tracing::subscriber::with_default(recorder.subscriber(), body);
        recorder.spans()
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn headers(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_str(traceparent).unwrap());
        headers
    }

    #[test]
    fn a_callers_traceparent_becomes_the_parent_of_the_server_span() {
        let spans = traced(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), || {
            let span = tracing::info_span!(target: TRACE_TARGET, "request", otel.kind = "server");
            continue_trace(&span, &headers(&format!("00-{TRACE}-{PARENT}-01")));
            let _entered = span.enter();
            tracing::info_span!(target: TRACE_TARGET, "mint").in_scope(|| {});
        });
        assert_eq!(spans.len(), 2, "{spans:?}");
        let mint = &spans[0];
        let server = &spans[1];
        assert_eq!(server.name, "request");
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(
            server.span_context.trace_id(),
            TraceId::from_hex(TRACE).unwrap()
        );
        assert_eq!(server.parent_span_id, SpanId::from_hex(PARENT).unwrap());
        assert!(server.parent_span_is_remote);
        assert_eq!(mint.span_context.trace_id(), server.span_context.trace_id());
        assert_eq!(mint.parent_span_id, server.span_context.span_id());
    }

    #[test]
    fn a_caller_that_did_not_sample_is_followed_by_the_parent_based_sampler() {
        let spans = traced(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), || {
            let span = tracing::info_span!(target: TRACE_TARGET, "request");
            continue_trace(&span, &headers(&format!("00-{TRACE}-{PARENT}-00")));
            span.in_scope(|| {});
        });
        assert!(spans.is_empty(), "{spans:?}");
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
        for traceparent in [None, Some("00-zz-00f067aa0ba902b7-01"), Some("garbage")] {
            let spans = traced(Sampler::AlwaysOn, || {
                let span = tracing::info_span!(target: TRACE_TARGET, "request");
                if let Some(value) = traceparent {
                    continue_trace(&span, &headers(value));
                }
                span.in_scope(|| {});
            });
            assert_eq!(spans.len(), 1, "{traceparent:?}");
            assert_eq!(spans[0].parent_span_id, SpanId::INVALID, "{traceparent:?}");
            assert_ne!(
                spans[0].span_context.trace_id(),
                TraceId::from_hex(TRACE).unwrap()
            );
        }
    }

    #[test]
    fn only_trace_target_spans_are_exported_and_events_never_are() {
        let spans = traced(Sampler::AlwaysOn, || {
            let span = tracing::info_span!(target: TRACE_TARGET, "request");
            span.in_scope(|| {
                tracing::info!(target: "audit", client = "c1", "mint record");
                tracing::info_span!("internal work").in_scope(|| {});
            });
        });
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(spans[0].name, "request");
        assert!(spans[0].events.is_empty(), "{:?}", spans[0].events);
    }

    #[test]
    fn sampler_settings_map_to_the_sdk_samplers() {
        let cases = [
            (false, RootSampler::AlwaysOff, "AlwaysOff"),
            (
                false,
                RootSampler::TraceIdRatio(0.5),
                "TraceIdRatioBased(0.5)",
            ),
            (true, RootSampler::AlwaysOn, "ParentBased"),
        ];
        for (parent_based, root, expected) in cases {
            let printed = format!("{:?}", sampler(SamplerSetting { parent_based, root }));
            assert!(printed.starts_with(expected), "{printed}");
        }
    }

    #[test]
    fn the_resource_names_the_service_and_keeps_operator_attributes() {
        let config = crate::config::Config::from_lookup(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:4318".into()),
            "OTEL_RESOURCE_ATTRIBUTES" => Some("k8s.pod.name=idp-0,service.name=x".into()),
            "OTEL_SERVICE_NAME" => Some("auth".into()),
            _ => None,
        })
        .unwrap();
        let settings = config.telemetry.traces.unwrap();
        let resource = resource(&settings);
        let get = |key: &'static str| resource.get(&opentelemetry::Key::new(key));
        assert_eq!(get("service.name"), Some("auth".into()));
        assert_eq!(get("k8s.pod.name"), Some("idp-0".into()));
        assert_eq!(
            get("service.version"),
            Some(env!("CARGO_PKG_VERSION").into())
        );
        assert_eq!(get("telemetry.sdk.language"), Some("rust".into()));
    }
}
