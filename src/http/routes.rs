//! The router: every path the service serves, and the layers around them.
//!
//! One file per route group holds the handlers (`tokens`, `jwks`, `probes`,
//! `metrics`); this one only wires them, with request metrics on every
//! route and JSON 404 and 405 answers for everything else. The one route
//! that reads a body applies its request timeout and `no-store` headers
//! itself.

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::http::jwks::{jwks, openid_configuration};
use crate::http::metrics::metrics;
use crate::http::middleware::{method_not_allowed, not_found, track_requests};
use crate::http::probes::{healthz, readyz};
use crate::http::state::AppState;
use crate::http::tokens::mint;

/// Path of the mint endpoint.
pub(crate) const TOKENS_PATH: &str = "/tokens";
/// Path of the public key set.
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the liveness probe.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the OpenID Connect discovery document.
pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Path of the readiness probe.
pub const READYZ_PATH: &str = "/readyz";
/// Path of the Prometheus metrics.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// Every route the service serves, with its methods (GET routes answer HEAD
/// too); the OpenAPI document is checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", TOKENS_PATH),
    ("GET", JWKS_PATH),
    ("GET", DISCOVERY_PATH),
    ("GET", HEALTHZ_PATH),
    ("GET", READYZ_PATH),
    ("GET", METRICS_PATH),
];

/// Builds the service's router over `state`. `/metrics` is on it unless
/// `MACP_AUTH_METRICS_ADDR` moves it to [`metrics_router`].
pub fn router(state: AppState) -> Router {
    // The one route that reads a body sets its own timeout and `no-store`
    // headers (`tokens::mint`).
    let mut app = Router::new()
        .route(TOKENS_PATH, post(mint))
        .route(JWKS_PATH, get(jwks))
        .route(DISCOVERY_PATH, get(openid_configuration))
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz));
    if state.config().listen.metrics_addr.is_none() {
        app = app.route(METRICS_PATH, get(metrics));
    }
    // One layer over every route and the fallbacks: the single-`Host` rule,
    // request metrics, the server span and a debug line per request. It
    // wraps the handlers' own timeout, so a 408 is counted. (No body limit
    // layer: the one route with a body reads it with its own limit.)
    app.method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .with_state(state)
}

/// A router serving only `/metrics`, for `MACP_AUTH_METRICS_ADDR`.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}
