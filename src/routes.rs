//! The HTTP surface: `POST /tokens`, `GET /.well-known/jwks.json`,
//! `GET /healthz`, and JSON answers for everything else.
//!
//! Handlers stay thin: validation and claim building live in `mint`, signing
//! in the pool, so the async workers only ever do microseconds of work.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::audit::{self, Caller, Issued, Outcome};
use crate::clients::auth::{AuthFailure, Authenticated};
use crate::clients::jwt::JwtFailure;
use crate::clients::{Client, ClientList};
use crate::error::{ApiError, MAX_BODY_BYTES};
use crate::metrics::{ClientLabels, RouteLabels};
use crate::mint::{Claims, compact_jws, effective_ttl, new_jti, parse_request, signing_input};
use crate::ratelimit::retry_after_seconds;
use crate::state::AppState;

/// Path of the mint endpoint.
pub const TOKENS_PATH: &str = "/tokens";
/// Path of the public key set.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the liveness probe.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the OpenID Connect discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Path of the readiness probe.
pub const READYZ_PATH: &str = "/readyz";
/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

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
    // Tokens are bearer credentials: no cache, proxy or browser may keep one.
    // Only this route reads a body, so only it needs the request timeout.
    let tokens = post(mint)
        .layer::<_, Infallible>(middleware::from_fn_with_state(
            state.clone(),
            limit_duration,
        ))
        .layer::<_, Infallible>(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer::<_, Infallible>(SetResponseHeaderLayer::overriding(
            header::PRAGMA,
            HeaderValue::from_static("no-cache"),
        ));
    let mut app = Router::new()
        .route(TOKENS_PATH, tokens)
        .route(JWKS_PATH, get(jwks))
        .route(DISCOVERY_PATH, get(openid_configuration))
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz));
    if state.config().metrics_addr.is_none() {
        app = app.route(METRICS_PATH, get(metrics));
    }
    // The tracking wraps every route, the timeout included, so a 408 is counted.
    app.method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            // Request traces at debug level only: deliberate 503s (readiness
            // while draining, load shedding) are not errors to log.
            TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

/// A router serving only `/metrics`, for `MACP_AUTH_METRICS_ADDR`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}

#[derive(Serialize)]
struct MintResponse<'a> {
    token: String,
    sender: &'a str,
    expires_in_seconds: u64,
}

/// What is known about a mint request so far, for the audit record of a
/// refusal.
#[derive(Default)]
struct Attempt {
    client: Option<String>,
    subject: Option<String>,
    sender: Option<String>,
    requested_ttl: Option<f64>,
}

async fn mint(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let peer = connect.map(|Extension(ConnectInfo(peer))| peer);
    let mut attempt = Attempt::default();
    match issue(&state, peer, &headers, body, &mut attempt).await {
        Ok(response) => response,
        Err(error) => {
            let outcome = outcome_of(&error);
            let client = attempt.client.as_deref();
            let caller = Caller {
                client,
                subject: attempt.subject.as_deref(),
                peer,
            };
            audit::denied(
                outcome,
                caller,
                attempt.sender.as_deref(),
                attempt.requested_ttl,
                &audit_reason(&error),
                state.clock().now(),
            );
            let metrics = state.metrics();
            metrics.mint(outcome.as_str(), client);
            match outcome {
                Outcome::RateLimited => {
                    metrics
                        .rate_limited
                        .get_or_create(&ClientLabels {
                            client: client.unwrap_or("-").to_owned(),
                        })
                        .inc();
                }
                Outcome::Overloaded => {
                    metrics.shed.inc();
                }
                _ => {}
            }
            error.into_response()
        }
    }
}

fn outcome_of(error: &ApiError) -> Outcome {
    match error {
        ApiError::MissingCredentials
        | ApiError::UnknownCredentials
        | ApiError::InvalidClientToken(_) => Outcome::Unauthenticated,
        ApiError::IssuerUnavailable { .. } => Outcome::Unavailable,
        ApiError::SenderNotAllowed { .. } | ApiError::ScopeCeiling(_) => Outcome::Forbidden,
        ApiError::RateLimited { .. } => Outcome::RateLimited,
        ApiError::Overloaded => Outcome::Overloaded,
        ApiError::Internal(_) => Outcome::Failed,
        _ => Outcome::Invalid,
    }
}

/// The audit record's reason: the error the caller saw, plus the exact
/// reason a workload JWT was refused, which the caller does not see.
fn audit_reason(error: &ApiError) -> String {
    match error {
        ApiError::InvalidClientToken(reason) => format!("{error}: {}", reason.as_str()),
        ApiError::IssuerUnavailable { .. } => format!(
            "{error}: {}",
            JwtFailure::KeysUnavailable { retry_after: 0 }.as_str()
        ),
        _ => error.to_string(),
    }
}

/// The mint decision, in order: credentials (401, or 503 when a workload
/// JWT's issuer is unreachable), rate limit (429), content type (415), body
/// (413, 400), sender policy and scope ceiling (403), then signing.
async fn issue(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    attempt: &mut Attempt,
) -> Result<Response, ApiError> {
    let clients = state.clients().current();
    let caller = authenticate(state, clients.as_ref().as_ref(), headers).await?;
    let client = caller.as_ref().map(|caller| caller.client);
    let subject = caller.as_ref().and_then(|caller| caller.subject.as_deref());
    attempt.client = client.map(|client| client.name().to_owned());
    attempt.subject = subject.map(str::to_owned);

    if let Some(limiter) = state.rate_limiter() {
        let key = match (client, peer) {
            (Some(client), _) => format!("client:{}", client.name()),
            (None, Some(peer)) => format!("peer:{}", peer.ip()),
            (None, None) => "peer:unknown".to_owned(),
        };
        limiter.check(&key).map_err(|wait| ApiError::RateLimited {
            retry_after: retry_after_seconds(wait),
        })?;
    }

    if !is_json_content_type(headers) {
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
    attempt.sender = Some(request.sender.clone());
    attempt.requested_ttl = request.ttl_seconds;

    let config = state.config();
    if let Some(client) = client
        && !client.may_mint_for(&request.sender)
    {
        return Err(ApiError::SenderNotAllowed {
            client: client.name().to_owned(),
            allowed: client.senders().join(", "),
        });
    }
    if let Some(client) = client {
        let known = crate::mint::scopes::known_scopes(&request.scopes)?;
        client.ceiling().check(client.name(), &known)?;
    }
    let max_ttl = client
        .and_then(|client| client.max_ttl_seconds())
        .map_or(config.max_ttl_seconds, |ceiling| {
            ceiling.min(config.max_ttl_seconds)
        });
    let key = state.keys().current().signing.clone();
    let ttl = effective_ttl(request.ttl_seconds, config.default_ttl_seconds, max_ttl);
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

    audit::issued(&Issued {
        caller: Caller {
            client: client.map(Client::name),
            subject,
            peer,
        },
        sender: &request.sender,
        requested_ttl: request.ttl_seconds,
        effective_ttl: ttl,
        kid: key.kid(),
        jti: &jti,
        scopes: &request.scopes,
        iat,
        warning: request.warning.map(|warning| warning.as_str()),
    });
    state
        .metrics()
        .mint(Outcome::Issued.as_str(), client.map(Client::name));
    Ok(Json(MintResponse {
        token,
        sender: &request.sender,
        expires_in_seconds: ttl,
    })
    .into_response())
}

/// The caller the request's credentials name, when a client list is
/// configured (`None` when minting is unauthenticated); every attempt is
/// counted by client and result.
async fn authenticate<'a>(
    state: &AppState,
    clients: Option<&'a ClientList>,
    headers: &HeaderMap,
) -> Result<Option<Authenticated<'a>>, ApiError> {
    let Some(list) = clients else {
        return Ok(None);
    };
    let metrics = state.metrics();
    let Some(credential) = bearer_token(headers) else {
        metrics.client_authentication(None, "missing");
        return Err(ApiError::MissingCredentials);
    };
    match list
        .authenticate_bearer(credential, state.clock().now())
        .await
    {
        Ok(caller) => {
            metrics.client_authentication(Some(caller.client.name()), "ok");
            Ok(Some(caller))
        }
        Err(failure) => {
            metrics.client_authentication(None, failure.as_str());
            tracing::debug!(reason = failure.as_str(), "client authentication failed");
            Err(match failure {
                AuthFailure::UnknownSecret => ApiError::UnknownCredentials,
                AuthFailure::Jwt(JwtFailure::KeysUnavailable { retry_after }) => {
                    ApiError::IssuerUnavailable { retry_after }
                }
                AuthFailure::Jwt(reason) => ApiError::InvalidClientToken(reason),
            })
        }
    }
}

/// The credentials of `Authorization: Bearer <secret>` (scheme
/// case-insensitive, as RFC 9110 says).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
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
    // A Host is a host and an optional port: no user info, a real port.
    let text = authority.as_str();
    if text.contains('@') || authority.host().is_empty() {
        return None;
    }
    let port_ok = match text[authority.host().len()..].strip_prefix(':') {
        None => text.len() == authority.host().len(),
        Some(port) => port.parse::<u16>().is_ok_and(|port| port != 0),
    };
    if !port_ok {
        return None;
    }
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

/// Readiness: 200 while a key signs and shutdown has not begun; 503 once
/// SIGTERM arrives, so load balancers stop sending new work before the
/// listener closes.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "not ready: shutting down"})),
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

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        state.metrics().encode(),
    )
        .into_response()
}

/// Counts requests in flight and records latency per route.
async fn track_requests(
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
async fn limit_duration(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config().request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
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
        for invalid in [
            "evil.com/path?x",
            "x@evil.example",
            "evil.example:99999",
            "evil.example:0",
        ] {
            headers.insert(header::HOST, HeaderValue::from_static(invalid));
            assert_eq!(request_base_url(&headers), None, "{invalid}");
        }
        headers.insert(header::HOST, HeaderValue::from_static("[::1]:8080"));
        assert_eq!(
            request_base_url(&headers).as_deref(),
            Some("https://[::1]:8080")
        );
    }

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

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("abc", None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(bearer_token(&headers), expected, "{value:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
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
