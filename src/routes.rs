//! The HTTP surface: `POST /tokens`, `GET /.well-known/jwks.json`,
//! `GET /healthz`, and JSON answers for everything else.
//!
//! Handlers stay thin: validation and claim building live in `mint`, signing
//! in the pool, so the async workers only ever do microseconds of work.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, MAX_BODY_BYTES};
use crate::mint::{Claims, compact_jws, effective_ttl, new_jti, parse_request, signing_input};
use crate::state::AppState;

/// Path of the mint endpoint.
pub const TOKENS_PATH: &str = "/tokens";
/// Path of the public key set.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the liveness probe.
pub const HEALTHZ_PATH: &str = "/healthz";

/// Builds the service's router over `state`.
pub fn router(state: AppState) -> Router {
    // Tokens are bearer credentials: no cache, proxy or browser may keep one.
    let tokens = post(mint)
        .layer::<_, Infallible>(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer::<_, Infallible>(SetResponseHeaderLayer::overriding(
            header::PRAGMA,
            HeaderValue::from_static("no-cache"),
        ));
    Router::new()
        .route(TOKENS_PATH, tokens)
        .route(JWKS_PATH, get(jwks))
        .route(HEALTHZ_PATH, get(healthz))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

#[derive(Serialize)]
struct MintResponse<'a> {
    token: String,
    sender: &'a str,
    expires_in_seconds: u64,
}

async fn mint(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !is_json_content_type(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            // The body could not be read in full (the client went away or
            // sent a broken chunked body): it is no valid JSON either.
            ApiError::InvalidJson
        }
    })?;
    let request = parse_request(&body)?;

    let config = state.config();
    let key = state.signing_key();
    let ttl = effective_ttl(
        request.ttl_seconds,
        config.default_ttl_seconds,
        config.max_ttl_seconds,
    );
    let iat = unix_now();
    let jti = new_jti()?;
    let claims = Claims {
        macp_scopes: &request.scopes,
        iat,
        exp: iat + ttl,
        iss: &config.issuer,
        aud: &config.audience,
        sub: &request.sender,
        jti: &jti,
    };
    let input = signing_input(key.header_b64(), &claims)?;
    let (input, signature) = state.signer().sign(key.clone(), input).await?;
    let token = compact_jws(input, &signature);

    // Debug formatting escapes the sender, so a crafted one cannot forge log lines.
    tracing::info!(sender = ?request.sender, ttl, kid = %key.kid(), jti = %jti, "minted token");
    Ok(Json(MintResponse {
        token,
        sender: &request.sender,
        expires_in_seconds: ttl,
    })
    .into_response())
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", "json")) => true,
        Some(("application", subtype)) => subtype.ends_with("+json"),
        _ => false,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.jwks().clone(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from_static(br#"{"ok":true}"#),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        let cases = [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/vnd.api+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("text/json", false),
            ("application/jsonp", false),
            ("", false),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            assert_eq!(is_json_content_type(&headers), expected, "{value:?}");
        }
        assert!(!is_json_content_type(&HeaderMap::new()));
    }
}
