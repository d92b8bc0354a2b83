//! Prometheus metrics, served as OpenMetrics text on `GET /metrics` (or on
//! `MACP_AUTH_METRICS_ADDR` alone).
//!
//! Counters and histograms are updated where things happen; values that
//! already live elsewhere (the active key, the published set, reload counts)
//! are read at scrape time, so they can never drift. This module is a leaf:
//! it knows nothing of the key ring or the client list. Whoever builds the
//! metrics hands in a closure that returns those values as a plain [`Live`]
//! snapshot, and the signing pool hands in its own histogram. Label values
//! are bounded: client names come from configuration, routes from the
//! router, never from peer addresses or senders.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// HTTP latency buckets from 100 µs to about 15 s (the signing pool's
/// histogram uses the same bounds, defined by the pool).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

/// The values read at scrape time, supplied by whoever owns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Live {
    /// The kid of the key signing new tokens.
    pub(crate) signing_kid: String,
    /// Seconds since that key became active (or since startup).
    pub(crate) signing_key_age_seconds: u64,
    /// Keys in the JWKS.
    pub(crate) published_keys: usize,
    /// Keys in the configured ring, published or retired.
    pub(crate) ring_keys: usize,
    /// Reload attempts of each reloadable source, in exposition order.
    pub(crate) reloads: Vec<Reloads>,
}

/// Reload attempts of one source, by result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reloads {
    /// The `source` label: `keys` or `clients`.
    pub(crate) source: &'static str,
    /// Reloads that swapped in new content.
    pub(crate) swapped: u64,
    /// Reloads that found the source unchanged.
    pub(crate) unchanged: u64,
    /// Reloads that failed and kept what was in force.
    pub(crate) failed: u64,
    /// Reloads whose file read did not finish in time (a hung mount); what
    /// was in force stays.
    pub(crate) timed_out: u64,
}

/// Labels of a mint decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MintLabels {
    /// `issued`, `unauthenticated`, `forbidden`, `rate_limited`, `invalid`,
    /// `unavailable`, `overloaded`, `backend_unavailable`, `failed` or
    /// `timed_out`.
    pub(crate) outcome: &'static str,
    /// The client's name, or `-` when unauthenticated.
    pub(crate) client: String,
}

/// Labels of a rate-limit rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClientLabels {
    /// The client's name, or `-` when unauthenticated.
    pub(crate) client: String,
}

/// Labels of a client authentication.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthLabels {
    /// The client's name, or `-` when none was identified.
    pub(crate) client: String,
    /// `ok`, `unknown_secret`, or a workload-JWT failure reason.
    pub(crate) result: &'static str,
}

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    /// The route's path.
    pub(crate) route: &'static str,
    /// The HTTP method, or `other`.
    pub(crate) method: &'static str,
    /// The response status code.
    pub(crate) status: u16,
}

/// Labels of one signature through an external key store.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BackendCallLabels {
    /// `pkcs11` or `aws_kms`.
    pub(crate) backend: &'static str,
    /// `ok`, `error` or `timeout`.
    pub(crate) outcome: &'static str,
}

/// The store label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BackendLabels {
    /// `pkcs11` or `aws_kms`.
    pub(crate) backend: &'static str,
}

/// Signatures through external key stores, by store: updated by the
/// signing pool, registered here. Clones share the same series.
#[derive(Clone, Debug)]
pub(crate) struct BackendMetrics {
    /// Signatures by store and outcome.
    pub(crate) calls: Family<BackendCallLabels, Counter>,
    /// Latency of each signature (queueing included), by store.
    pub(crate) durations: Family<BackendLabels, Histogram, fn() -> Histogram>,
}

impl Default for BackendMetrics {
    fn default() -> Self {
        BackendMetrics {
            calls: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// The service's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Mint decisions by outcome and client.
    pub(crate) mint_requests: Family<MintLabels, Counter>,
    /// Rate-limit rejections by client.
    pub(crate) rate_limited: Family<ClientLabels, Counter>,
    /// Client authentications by client and result.
    pub(crate) client_authentications: Family<AuthLabels, Counter>,
    /// Mints shed because the signing queue was full.
    pub(crate) shed: Counter,
    /// Request latency by route, method and status.
    pub(crate) request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Requests being served right now.
    pub(crate) in_flight: Gauge,
}

impl Metrics {
    /// Registers every metric; `signing` is the signing pool's histogram,
    /// `live` reads the values that live elsewhere, at each scrape.
    pub(crate) fn new(
        signing: Histogram,
        backends: BackendMetrics,
        live: impl Fn() -> Live + Send + Sync + 'static,
    ) -> Self {
        let mut registry = Registry::with_prefix("macp_auth");
        let mint_requests = Family::<MintLabels, Counter>::default();
        registry.register(
            "mint_requests",
            "Mint requests by outcome and client",
            mint_requests.clone(),
        );
        let rate_limited = Family::<ClientLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Mint requests refused by the rate limit, by client",
            rate_limited.clone(),
        );
        let client_authentications = Family::<AuthLabels, Counter>::default();
        registry.register(
            "client_authentications",
            "Client authentications on POST /tokens, by client and result",
            client_authentications.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "load_shed",
            "Mint requests refused at once because the signing queue was full",
            shed.clone(),
        );
        registry.register(
            "signing_duration_seconds",
            "Time spent computing one signature",
            signing,
        );
        registry.register(
            "backend_signatures",
            "Signatures through an external key store (pkcs11, aws_kms), by store and outcome (ok, error, timeout)",
            backends.calls,
        );
        registry.register(
            "backend_signing_duration_seconds",
            "Time for one signature through an external key store, by store",
            backends.durations,
        );
        let request_duration: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            request_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            in_flight.clone(),
        );
        registry.register_collector(Box::new(LiveCollector(Box::new(live))));
        Metrics {
            registry,
            mint_requests,
            rate_limited,
            client_authentications,
            shed,
            request_duration,
            in_flight,
        }
    }

    /// Counts one mint decision.
    pub(crate) fn mint(&self, outcome: &'static str, client: Option<&str>) {
        self.mint_requests
            .get_or_create(&MintLabels {
                outcome,
                client: label_value(client.unwrap_or("-")),
            })
            .inc();
    }

    /// Counts one rate-limit rejection.
    pub(crate) fn rate_limited(&self, client: Option<&str>) {
        self.rate_limited
            .get_or_create(&ClientLabels {
                client: label_value(client.unwrap_or("-")),
            })
            .inc();
    }

    /// Counts one client authentication.
    pub(crate) fn client_authentication(&self, client: Option<&str>, result: &'static str) {
        self.client_authentications
            .get_or_create(&AuthLabels {
                client: client.unwrap_or("-").to_owned(),
                result,
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// A label value as the exposition may carry it. The encoder escapes only
/// `\`, `"` and line feeds. Operators' names are validated as printable at
/// load; anything that could still end a line or mislead a reader (a control
/// character such as a carriage return, a line separator, a bidirectional
/// override) is escaped here as `\u{…}`, so no value breaks the exposition.
pub(crate) fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let unsafe_char = c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{200E}' | '\u{200F}'
            )
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if unsafe_char {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads the live values at scrape time.
struct LiveCollector(Box<dyn Fn() -> Live + Send + Sync>);

impl fmt::Debug for LiveCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LiveCollector").finish_non_exhaustive()
    }
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let live = (self.0)();
        let mut active = encoder.encode_descriptor(
            "signing_key_info",
            "The key signing new tokens (always 1), labelled by kid",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64)
            .encode(active.encode_family(&vec![("kid", label_value(&live.signing_kid))])?)?;
        let gauges = [
            (
                "signing_key_age_seconds",
                "Seconds since the signing key became active (or since startup, for a key without activate_at)",
                live.signing_key_age_seconds as i64,
            ),
            (
                "published_keys",
                "Keys in the JWKS",
                live.published_keys as i64,
            ),
            (
                "ring_keys",
                "Keys in the configured ring, published or retired",
                live.ring_keys as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(gauge)?;
        }
        let mut reloads = encoder.encode_descriptor(
            "reloads",
            "Reloads of the key ring and the client list, by source and result",
            None,
            MetricType::Counter,
        )?;
        for counts in &live.reloads {
            for (result, value) in [
                ("swapped", counts.swapped),
                ("unchanged", counts.unchanged),
                ("failed", counts.failed),
                ("timed_out", counts.timed_out),
            ] {
                ConstCounter::new(value).encode(
                    reloads.encode_family(&vec![("source", counts.source), ("result", result)])?,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_carry_a_line_break_or_a_bidi_override() {
        let cases = [
            ("control-plane", "control-plane"),
            ("ünïcödé", "ünïcödé"),
            ("a\rb", "a\\u{d}b"),
            ("a\nb", "a\\u{a}b"),
            ("a\u{2028}b", "a\\u{2028}b"),
            ("a\u{85}b", "a\\u{85}b"),
            ("a\u{202E}b", "a\\u{202e}b"),
        ];
        for (value, expected) in cases {
            assert_eq!(label_value(value), expected, "{value:?}");
        }
        let metrics = Metrics::new(Histogram::new([1.0]), BackendMetrics::default(), || Live {
            signing_kid: "kid\r".into(),
            signing_key_age_seconds: 0,
            published_keys: 1,
            ring_keys: 1,
            reloads: Vec::new(),
        });
        metrics.mint("issued", Some("evil\r\"name"));
        let text = metrics.encode();
        assert!(!text.contains('\r'), "{text:?}");
        assert!(text.contains(r#"client="evil\\u{d}\"name""#), "{text}");
        assert!(text.contains(r#"kid="kid\\u{d}""#), "{text}");
    }
}
