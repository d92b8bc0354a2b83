//! `POST /tokens`: the mint decision, in order, and its audit record.
//!
//! Credentials (401, or 503 when a workload JWT's issuer is unreachable),
//! rate limit (429), content type (415), body (413, 400), sender policy and
//! scope ceiling (403), then signing. Validation and claim building live in
//! `mint`, the private-key work in the signing pool, so the async worker only
//! does microseconds of work per request.
//!
//! In a trace, the decision is the `mint` span (child of the request's server
//! span) with the client, alg, kid and outcome as attributes; the signing
//! pool adds its own child spans for the queue wait and the signature.

use std::net::SocketAddr;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument;
use tracing::field::Empty;

use crate::audit::{self, Caller, Issued, Outcome};
use crate::clients::auth::{AuthFailure, Authenticated};
use crate::clients::jwt::JwtFailure;
use crate::clients::{Client, ClientList};
use crate::http::error::{ApiError, MAX_BODY_BYTES};
use crate::http::state::AppState;
use crate::mint::scopes::known_scopes;
use crate::mint::{
    Claims, MintRequest, RequestError, compact_jws, effective_ttl, new_jti, parse_request,
    signing_input,
};
use crate::ratelimit::{peer_bucket, retry_after_seconds};
use crate::telemetry::TRACE_TARGET;

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

/// The `POST /tokens` handler: the decision (within the request timeout),
/// and the headers that keep every answer out of caches. Tokens are bearer
/// credentials: no cache, proxy or browser may keep one. Both are done
/// here rather than as router layers, each of which would box the route
/// and its future again on every mint.
pub(crate) async fn mint(State(state): State<AppState>, request: Request) -> Response {
    // Taken apart rather than extracted: the `HeaderMap` and `ConnectInfo`
    // extractors clone what this can move.
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let mut response = decide(state, peer, parts.headers, body).await;
    no_store(&mut response);
    response
}

/// Keeps `response` out of every cache: tokens are bearer credentials.
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The mint decision and its audit record (see the module docs).
async fn decide(
    state: AppState,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut attempt = Attempt::default();
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "mint",
        otel.status_code = Empty,
        macp.client = Empty,
        macp.signing.alg = Empty,
        macp.key.kid = Empty,
        macp.mint.outcome = Empty,
    );
    let limit = state.config().limits.request_timeout;
    let issuing = issue(&state, peer, &headers, body, &mut attempt, &span).instrument(span.clone());
    // A request that runs out of time is a decision too: it is audited with
    // whatever was known about it when the time ran out.
    let issued = tokio::time::timeout(limit, issuing)
        .await
        .unwrap_or(Err(ApiError::RequestTimeout));
    match issued {
        Ok(response) => {
            span.record("macp.mint.outcome", Outcome::Issued.as_str());
            response
        }
        Err(error) => {
            let outcome = outcome_of(&error);
            span.record("macp.mint.outcome", outcome.as_str());
            if matches!(
                outcome,
                Outcome::Failed | Outcome::Overloaded | Outcome::BackendUnavailable
            ) {
                span.record("otel.status_code", "error");
            }
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
                Outcome::RateLimited => metrics.rate_limited(client),
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
        ApiError::BackendUnavailable { .. } => Outcome::BackendUnavailable,
        ApiError::Internal(_) => Outcome::Failed,
        ApiError::RequestTimeout => Outcome::TimedOut,
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
/// `span` (the mint's trace span) gets the client's name and the key.
async fn issue(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: Body,
    attempt: &mut Attempt,
    span: &tracing::Span,
) -> Result<Response, ApiError> {
    let clients = state.clients().current();
    let caller = match clients.as_ref().as_ref() {
        // Boxed: checking a workload JWT may fetch its issuer's keys, a
        // future of several KB that every mint would otherwise carry (and
        // copy) whether or not minting is authenticated.
        Some(list) => Some(Box::pin(authenticate(state, list, headers)).await?),
        None => None,
    };
    let client = caller.as_ref().map(|caller| caller.client);
    let subject = caller.as_ref().and_then(|caller| caller.subject.as_deref());
    attempt.client = client.map(|client| client.name().to_owned());
    attempt.subject = subject.map(str::to_owned);
    if let Some(client) = client {
        span.record("macp.client", client.name());
    }
    check_rate_limit(state, client, peer)?;
    let body = read_body(headers, body).await?;
    let request = parse_request(&body)?;
    attempt.sender = Some(request.sender.clone());
    attempt.requested_ttl = request.ttl_seconds;

    if let Some(client) = client {
        check_policy(client, &request)?;
    }
    let config = state.config();
    let key = state.keys().current().signing.clone();
    let ttl = granted_ttl(state, client, request.ttl_seconds);
    let iat = state.clock().now();
    let jti = new_jti()?;
    let claims = Claims {
        macp_scopes: &request.scopes,
        iat,
        exp: iat + ttl,
        iss: &config.tokens.issuer,
        aud: &config.tokens.audience,
        sub: &request.sender,
        jti: &jti,
    };
    span.record("macp.signing.alg", key.alg().as_str());
    span.record("macp.key.kid", key.kid());
    let input = signing_input(key.header_b64(), &claims, key.signature_len())?;
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

/// The lifetime a token gets: the requested TTL, or the default, clamped to
/// the service's maximum and the client's own ceiling, if it has one.
fn granted_ttl(state: &AppState, client: Option<&Client>, requested: Option<f64>) -> u64 {
    let tokens = &state.config().tokens;
    let max_ttl = client
        .and_then(Client::max_ttl_seconds)
        .map_or(tokens.max_ttl_seconds, |ceiling| {
            ceiling.min(tokens.max_ttl_seconds)
        });
    effective_ttl(requested, tokens.default_ttl_seconds, max_ttl)
}

/// The caller the request's credentials name in the client `list`; every
/// attempt is counted by client and result, and a refused JWT's reason is
/// logged at debug level (never the token).
async fn authenticate<'a>(
    state: &AppState,
    list: &'a ClientList,
    headers: &HeaderMap,
) -> Result<Authenticated<'a>, ApiError> {
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
            Ok(caller)
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

/// What the client may ask for: senders matching its patterns, scopes
/// within its ceiling.
fn check_policy(client: &Client, request: &MintRequest) -> Result<(), ApiError> {
    if !client.may_mint_for(&request.sender) {
        return Err(ApiError::SenderNotAllowed {
            client: client.name().to_owned(),
            allowed: client.senders().join(", "),
        });
    }
    let known = known_scopes(&request.scopes).map_err(RequestError::ScopeType)?;
    client.ceiling().check(client.name(), &known)?;
    Ok(())
}

/// Takes one mint from the caller's bucket: the client's, or the peer
/// address's when minting is unauthenticated.
fn check_rate_limit(
    state: &AppState,
    client: Option<&Client>,
    peer: Option<SocketAddr>,
) -> Result<(), ApiError> {
    let Some(limiter) = state.rate_limiter() else {
        return Ok(());
    };
    let key = match (client, peer) {
        (Some(client), _) => format!("client:{}", client.name()),
        (None, Some(peer)) => format!("peer:{}", peer_bucket(peer.ip())),
        (None, None) => "peer:unknown".to_owned(),
    };
    limiter.check(&key).map_err(|wait| ApiError::RateLimited {
        retry_after: retry_after_seconds(wait),
    })
}

/// The body of a JSON request, read in full within the size limit. Runs
/// only after credentials and the rate limit have passed, so an
/// unauthenticated caller never gets its body read (nor a `100 Continue`),
/// and a declared length over the limit is refused before any byte is read.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    if !is_json_content_type(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if !only_chunked(headers) {
        return Err(ApiError::UnsupportedTransferEncoding);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|err| {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::PayloadTooLarge
            } else {
                // The body could not be read in full (the client went away or
                // sent a broken chunked body): it is no valid JSON either.
                ApiError::BadRequest(RequestError::InvalidJson)
            }
        })
}

/// Whether every `Transfer-Encoding` coding is `chunked` (or there is none).
/// hyper removes `chunked` framing but no compression, so a gzip body would
/// reach the JSON parser still compressed.
fn only_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
