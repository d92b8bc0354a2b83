//! `GET /.well-known/jwks.json` and OpenID Connect discovery: the public
//! half of the key ring, cacheable until the published set next changes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::routes::JWKS_PATH;
use crate::http::state::AppState;

/// The JWKS, cacheable until the published set next changes, with a strong
/// ETag so verifiers can revalidate for the price of a 304.
pub(crate) async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = state.keys().current();
    let max_age = snapshot.max_age(
        state.clock().now(),
        state.config().keys.jwks_max_age_seconds,
    );
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
pub(crate) async fn openid_configuration(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    let config = state.config();
    let (base, varies) = match &config.listen.public_url {
        Some(base) => (base.clone(), false),
        None => (
            request_base_url(&headers).unwrap_or_else(|| config.listen.display_base_url()),
            true,
        ),
    };
    let snapshot = state.keys().current();
    let document = serde_json::json!({
        "issuer": config.tokens.issuer,
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "id_token_signing_alg_values_supported": [snapshot.signing.alg().as_str()],
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["sub", "iss", "aud", "iat", "exp", "jti", "macp_scopes"],
    });
    let mut response = Json(document).into_response();
    let headers = response.headers_mut();
    // A document built from the request's Host is that client's view only:
    // no shared cache may hand it to another client.
    let visibility = if varies { "private" } else { "public" };
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!(
            "{visibility}, max-age={}",
            config.keys.jwks_max_age_seconds
        ))
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
        // A chain of proxies appends: the first value is the client's.
        Some(proto) if first_value(proto).eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Some(format!("{scheme}://{authority}"))
}

/// The first element of a comma-separated header value, trimmed.
fn first_value(value: &str) -> &str {
    value.split(',').next().unwrap_or("").trim()
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
    fn only_the_first_forwarded_proto_counts() {
        let cases = [
            ("https, http", "https"),
            ("http, https", "http"),
            (" HTTPS ,http", "https"),
            ("", "http"),
        ];
        for (forwarded, scheme) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("auth.internal"));
            headers.insert(
                "x-forwarded-proto",
                HeaderValue::from_str(forwarded).unwrap(),
            );
            assert_eq!(
                request_base_url(&headers).unwrap(),
                format!("{scheme}://auth.internal"),
                "{forwarded:?}"
            );
        }
    }
}
