//! `GET /healthz` (liveness) and `GET /readyz` (readiness) for load
//! balancers and Kubernetes. Neither touches the signing path, so they answer
//! in microseconds while minting is saturated.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::state::AppState;

pub(crate) async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from_static(br#"{"ok":true}"#),
    )
        .into_response()
}

/// Readiness: 200 while a key signs and shutdown has not begun; 503 once
/// SIGTERM arrives, so load balancers stop sending new work before the
/// listener closes; 503 too while the external store holding the signing key
/// has failed several signatures in a row (back to 200 on the next success,
/// which the traffic still reaching this replica provides). Reads one atomic
/// counter: a stalled store never makes this probe wait.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "not ready: shutting down"})),
        )
            .into_response();
    }
    if !state.signer().backend_available() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "not ready: signing backend unavailable"})),
        )
            .into_response();
    }
    // A validated ring always has a signing key; asking keeps the check honest.
    let _signing = state.keys().current();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from_static(br#"{"ready":true}"#),
    )
        .into_response()
}
