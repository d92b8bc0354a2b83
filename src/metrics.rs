//! Prometheus metrics, served as OpenMetrics text on `GET /metrics` (or on
//! `MACP_AUTH_METRICS_ADDR` alone).
//!
//! Counters and histograms are updated where things happen; values that
//! already live elsewhere (the active key, the published set, reload counts)
//! are read at scrape time by a collector, so they can never drift. Label
//! values are bounded: client names come from configuration, routes from
//! the router, never from peer addresses or senders.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::clients::ClientStore;
use crate::clock::Clock;
use crate::keystore::{KeyStore, ReloadCounts};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets from 100 µs to about 15 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.5, 14)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Labels of a mint decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MintLabels {
    /// `issued`, `unauthenticated`, `forbidden`, `rate_limited`, `invalid`,
    /// `overloaded` or `failed`.
    pub outcome: &'static str,
    /// The client's name, or `-` when unauthenticated.
    pub client: String,
}

/// Labels of a rate-limit rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// The client's name, or `-` when unauthenticated.
    pub client: String,
}

/// Labels of a client authentication.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// The client's name, or `-` when none was identified.
    pub client: String,
    /// `ok`, `unknown_secret`, or a workload-JWT failure reason.
    pub result: &'static str,
}

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's path.
    pub route: &'static str,
    /// The HTTP method, or `other`.
    pub method: &'static str,
    /// The response status code.
    pub status: u16,
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Mint decisions by outcome and client.
    pub mint_requests: Family<MintLabels, Counter>,
    /// Rate-limit rejections by client.
    pub rate_limited: Family<ClientLabels, Counter>,
    /// Client authentications by client and result.
    pub client_authentications: Family<AuthLabels, Counter>,
    /// Mints shed because the signing queue was full.
    pub shed: Counter,
    /// Request latency by route, method and status.
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Requests being served right now.
    pub in_flight: Gauge,
}

impl Metrics {
    /// Registers every metric; `signing` is the signing pool's histogram.
    pub fn new(
        signing: Histogram,
        keys: Arc<KeyStore>,
        clients: Arc<ClientStore>,
        clock: Arc<dyn Clock>,
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
        let started = clock.now();
        registry.register_collector(Box::new(StateCollector {
            keys,
            clients,
            clock,
            started,
        }));
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
    pub fn mint(&self, outcome: &'static str, client: Option<&str>) {
        self.mint_requests
            .get_or_create(&MintLabels {
                outcome,
                client: client.unwrap_or("-").to_owned(),
            })
            .inc();
    }

    /// Counts one client authentication.
    pub fn client_authentication(&self, client: Option<&str>, result: &'static str) {
        self.client_authentications
            .get_or_create(&AuthLabels {
                client: client.unwrap_or("-").to_owned(),
                result,
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Reads the live state at scrape time.
#[derive(Debug)]
struct StateCollector {
    keys: Arc<KeyStore>,
    clients: Arc<ClientStore>,
    clock: Arc<dyn Clock>,
    started: u64,
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.clock.now();
        let snapshot = self.keys.current();
        let kid = snapshot.signing.kid().to_owned();

        let mut active = encoder.encode_descriptor(
            "signing_key_info",
            "The key signing new tokens (always 1), labelled by kid",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(active.encode_family(&vec![("kid", kid.clone())])?)?;

        let ring = self.keys.ring();
        let activated = ring
            .keys()
            .iter()
            .find(|entry| entry.key.kid() == kid)
            .and_then(|entry| entry.activate_at)
            .unwrap_or(self.started)
            .max(self.started.min(now));
        let age = encoder.encode_descriptor(
            "signing_key_age_seconds",
            "Seconds since the signing key became active (or since startup, for a key without activate_at)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(now.saturating_sub(activated) as i64).encode(age)?;

        let published = encoder.encode_descriptor(
            "published_keys",
            "Keys in the JWKS",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(snapshot.published_kids.len() as i64).encode(published)?;

        let ring_keys = encoder.encode_descriptor(
            "ring_keys",
            "Keys in the configured ring, published or retired",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(ring.keys().len() as i64).encode(ring_keys)?;

        let mut reloads = encoder.encode_descriptor(
            "reloads",
            "Reloads of the key ring and the client list, by source and result",
            None,
            MetricType::Counter,
        )?;
        for (source, counts) in [
            ("keys", self.keys.reloads()),
            ("clients", self.clients.reloads()),
        ] {
            for (result, value) in reload_values(counts) {
                ConstCounter::new(value).encode(
                    reloads.encode_family(&vec![("source", source), ("result", result)])?,
                )?;
            }
        }
        Ok(())
    }
}

fn reload_values(counts: &ReloadCounts) -> [(&'static str, u64); 3] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        ("swapped", counts.swapped.load(Relaxed)),
        ("unchanged", counts.unchanged.load(Relaxed)),
        ("failed", counts.failed.load(Relaxed)),
    ]
}
