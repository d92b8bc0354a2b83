//! The HTTP surface: `POST /tokens`, `GET /.well-known/jwks.json`,
//! `GET /healthz`, and JSON answers for everything else.
//!
//! Handlers stay thin: validation and claim building live in `mint`, signing
//! in the pool, so the async workers only ever do microseconds of work.

use std::convert::Infallible;

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
/// Path of the OpenID Connect discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Every route the service serves, with its methods (GET routes answer HEAD
/// too); the OpenAPI document is checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", TOKENS_PATH),
    ("GET", JWKS_PATH),
    ("GET", DISCOVERY_PATH),
    ("GET", HEALTHZ_PATH),
];

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
        .route(DISCOVERY_PATH, get(openid_configuration))
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
    let key = state.keys().current().signing.clone();
    let ttl = effective_ttl(
        request.ttl_seconds,
        config.default_ttl_seconds,
        config.max_ttl_seconds,
    );
    let iat = state.clock().now();
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

/// The JWKS, cacheable until the published set next changes, with a strong
/// ETag so verifiers can revalidate for the price of a 304.
async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = state.keys().current();
    let max_age = snapshot.max_age(state.clock().now(), state.config().jwks_max_age_seconds);
    let cache_control = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .expect("digits are a valid header value");
    if if_none_match(&headers, &snapshot.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, snapshot.etag.clone()),
                (header::CACHE_CONTROL, cache_control),
            ],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, snapshot.etag.clone()),
            (header::CACHE_CONTROL, cache_control),
        ],
        snapshot.jwks.clone(),
    )
        .into_response()
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `W/` is
/// ignored, and `*` matches any current representation.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// Minimal OpenID Connect discovery, so generic JWT verifiers can find the
/// JWKS from the issuer. `jwks_uri` uses `MACP_AUTH_PUBLIC_URL` when set, and
/// otherwise the Host the client used.
async fn openid_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let config = state.config();
    let (base, varies) = match &config.public_url {
        Some(base) => (base.clone(), false),
        None => (
            request_base_url(&headers).unwrap_or_else(|| config.display_base_url()),
            true,
        ),
    };
    let snapshot = state.keys().current();
    let document = serde_json::json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "id_token_signing_alg_values_supported": [snapshot.signing.alg().as_str()],
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["sub", "iss", "aud", "iat", "exp", "jti", "macp_scopes"],
    });
    let mut response = Json(document).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={}", config.jwks_max_age_seconds))
            .expect("digits are a valid header value"),
    );
    if varies {
        headers.insert(
            header::VARY,
            HeaderValue::from_static("host, x-forwarded-proto"),
        );
    }
    response
}

/// `scheme://host` from the request: the Host header (checked to be a valid
/// authority, so it cannot inject anything), https only when a proxy says so.
fn request_base_url(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let authority: axum::http::uri::Authority = host.parse().ok()?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
    {
        Some(proto) if proto.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Some(format!("{scheme}://{authority}"))
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
    fn if_none_match_uses_weak_comparison_over_a_list() {
        let etag = HeaderValue::from_static("\"abc\"");
        let cases = [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            assert_eq!(if_none_match(&headers, &etag), expected, "{value}");
        }
        assert!(!if_none_match(&HeaderMap::new(), &etag));
    }

    #[test]
    fn the_request_base_url_comes_from_a_valid_host_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_base_url(&headers), None);
        headers.insert(header::HOST, HeaderValue::from_static("auth.internal:3200"));
        assert_eq!(
            request_base_url(&headers).as_deref(),
            Some("http://auth.internal:3200")
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(
            request_base_url(&headers).as_deref(),
            Some("https://auth.internal:3200")
        );
        headers.insert(header::HOST, HeaderValue::from_static("evil.com/path?x"));
        assert_eq!(request_base_url(&headers), None);
    }

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
