//! Middleware shared by the routes: request metrics, the server span of a
//! trace and a debug line per request, the single-`Host` rule, and the JSON
//! 404 and 405 answers.
//!
//! Everything a request passes through before its handler is one layer
//! ([`track_requests`]): each `from_fn` layer boxes the route and its future
//! again on every request, which is measurable beside a 16 µs signature.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use tracing::field::Empty;

use crate::http::error::ApiError;
use crate::http::routes::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH, ROUTES, TOKENS_PATH};
use crate::http::state::AppState;
use crate::http::tokens::no_store;
use crate::metrics::RouteLabels;
use crate::telemetry::{TRACE_TARGET, continue_trace};

/// Refuses a request with more than one `Host` header (RFC 9112 3.2): which
/// one names the service is ambiguous, and discovery builds URLs from it;
/// that `400` is counted like any other answer. Counts requests in flight and records latency per route (`other`
/// for unmatched paths); opens the request's server span (a no-op unless
/// tracing is on), continuing the caller's trace when the request carries a
/// W3C `traceparent`; and logs one debug line per request. The span's
/// attributes and the line are the matched route, the method, the status
/// and the latency only: never a header, a credential or anything from the
/// body.
pub(crate) async fn track_requests(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    // Labels are static strings: no allocation per request.
    let route = matched
        .and_then(|path| {
            ROUTES
                .iter()
                .map(|(_, route)| *route)
                .find(|route| *route == path.as_str())
        })
        .unwrap_or(OTHER_ROUTE);
    let method = method_label(request.method());
    let metrics = state.metrics();
    metrics.in_flight.inc();
    // Decrements even if the client goes away and the future is dropped.
    let _in_flight = InFlight(&metrics.in_flight);
    let span = server_span(route, method);
    if !span.is_disabled() {
        span.record("otel.name", format!("{method} {route}"));
        continue_trace(&span, request.headers());
    }
    let started = Instant::now();
    let response = if request.headers().get_all(header::HOST).iter().count() > 1 {
        let mut refused = ApiError::AmbiguousHost.into_response();
        if route == TOKENS_PATH {
            // Every answer of the mint route stays out of caches.
            no_store(&mut refused);
        }
        refused
    } else {
        next.run(request).instrument(span.clone()).await
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics
        .request_duration
        .get_or_create(&RouteLabels {
            route,
            method,
            status,
        })
        .observe(elapsed.as_secs_f64());
    tracing::debug!(
        route,
        method,
        status,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
    span.record("http.response.status_code", i64::from(status));
    // Server spans are errors for 5xx only: a 4xx is the caller's mistake.
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// The request's server span, or none for the probes and `/metrics` (the
/// kubelet and Prometheus would otherwise start a trace every few seconds,
/// and no caller's trace ever includes them) and for unknown paths (scanner
/// traffic is not a route to trace).
fn server_span(route: &'static str, method: &'static str) -> tracing::Span {
    if matches!(
        route,
        HEALTHZ_PATH | READYZ_PATH | METRICS_PATH | OTHER_ROUTE
    ) {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: TRACE_TARGET,
        "request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
    )
}

/// The standard methods by name; anything else (clients may send any
/// token as a method) as `other`, so label values stay bounded.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The `route` label of a request that matched no route.
const OTHER_ROUTE: &str = "other";

struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_metric_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"FOOBAR123").unwrap()),
            "other"
        );
        assert_eq!(
            method_label(&Method::from_bytes(b"QUERY").unwrap()),
            "other"
        );
    }
}
