//! Middleware shared by the routes: request metrics, the request timeout,
//! and the JSON 404 and 405 answers.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::http::routes::ROUTES;
use crate::http::state::AppState;
use crate::metrics::RouteLabels;

/// Counts requests in flight and records latency per route.
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
        .unwrap_or("other");
    let method = method_label(request.method());
    let metrics = state.metrics();
    metrics.in_flight.inc();
    // Decrements even if the client goes away and the future is dropped.
    let _in_flight = InFlight(&metrics.in_flight);
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .request_duration
        .get_or_create(&RouteLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
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

struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Ends any request, body included, that runs past the request timeout.
pub(crate) async fn limit_duration(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(state.config().limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// Refuses a request with more than one `Host` header (RFC 9112 3.2): which
/// one names the service is ambiguous, and discovery builds URLs from it.
pub(crate) async fn single_host(request: Request, next: Next) -> Response {
    if request
        .headers()
        .get_all(axum::http::header::HOST)
        .iter()
        .count()
        > 1
    {
        return ApiError::AmbiguousHost.into_response();
    }
    next.run(request).await
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
