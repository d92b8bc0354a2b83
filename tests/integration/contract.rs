//! The v1 wire contract, row by row, through the router in process.

use axum::http::{Method, StatusCode};
use macp_auth_service::AppState;
use macp_auth_service::keys::SigningAlg;
use serde_json::json;

use crate::support::{config, mint, now, send, state, state_with, token_parts};

/// Each bad mint request, as (name, content type, body, status, error).
const BAD_MINT_REQUESTS: &[(&str, Option<&str>, &str, StatusCode, &str)] = &[
    (
        "not JSON",
        Some("application/json"),
        "{sender:",
        StatusCode::BAD_REQUEST,
        "invalid JSON body",
    ),
    (
        "empty body",
        Some("application/json"),
        "",
        StatusCode::BAD_REQUEST,
        "invalid JSON body",
    ),
    (
        "trailing garbage",
        Some("application/json"),
        r#"{"sender":"a"} x"#,
        StatusCode::BAD_REQUEST,
        "invalid JSON body",
    ),
    (
        "an array",
        Some("application/json"),
        "[]",
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "a string",
        Some("application/json"),
        "\"agent://a\"",
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "null",
        Some("application/json"),
        "null",
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "no sender",
        Some("application/json"),
        "{}",
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "numeric sender",
        Some("application/json"),
        r#"{"sender":7}"#,
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "null sender",
        Some("application/json"),
        r#"{"sender":null}"#,
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "empty sender",
        Some("application/json"),
        r#"{"sender":""}"#,
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "blank sender",
        Some("application/json"),
        r#"{"sender":" \t\n"}"#,
        StatusCode::BAD_REQUEST,
        "sender is required",
    ),
    (
        "string scopes",
        Some("application/json"),
        r#"{"sender":"a","scopes":"all"}"#,
        StatusCode::BAD_REQUEST,
        "scopes must be an object",
    ),
    (
        "array scopes",
        Some("application/json"),
        r#"{"sender":"a","scopes":["x"]}"#,
        StatusCode::BAD_REQUEST,
        "scopes must be an object",
    ),
    (
        "number scopes",
        Some("application/json"),
        r#"{"sender":"a","scopes":1}"#,
        StatusCode::BAD_REQUEST,
        "scopes must be an object",
    ),
    (
        "bool scopes",
        Some("application/json"),
        r#"{"sender":"a","scopes":false}"#,
        StatusCode::BAD_REQUEST,
        "scopes must be an object",
    ),
    (
        "null scopes",
        Some("application/json"),
        r#"{"sender":"a","scopes":null}"#,
        StatusCode::BAD_REQUEST,
        "scopes must be an object",
    ),
    (
        "zero ttl",
        Some("application/json"),
        r#"{"sender":"a","ttl_seconds":0}"#,
        StatusCode::BAD_REQUEST,
        "ttl_seconds must be a positive number",
    ),
    (
        "negative ttl",
        Some("application/json"),
        r#"{"sender":"a","ttl_seconds":-60}"#,
        StatusCode::BAD_REQUEST,
        "ttl_seconds must be a positive number",
    ),
    (
        "string ttl",
        Some("application/json"),
        r#"{"sender":"a","ttl_seconds":"60"}"#,
        StatusCode::BAD_REQUEST,
        "ttl_seconds must be a positive number",
    ),
    (
        "bool ttl",
        Some("application/json"),
        r#"{"sender":"a","ttl_seconds":true}"#,
        StatusCode::BAD_REQUEST,
        "ttl_seconds must be a positive number",
    ),
    (
        "object ttl",
        Some("application/json"),
        r#"{"sender":"a","ttl_seconds":{}}"#,
        StatusCode::BAD_REQUEST,
        "ttl_seconds must be a positive number",
    ),
    (
        "no content-type",
        None,
        r#"{"sender":"a"}"#,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content-type must be application/json",
    ),
    (
        "text/plain",
        Some("text/plain"),
        r#"{"sender":"a"}"#,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content-type must be application/json",
    ),
    (
        "form",
        Some("application/x-www-form-urlencoded"),
        "sender=a",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content-type must be application/json",
    ),
];

#[tokio::test]
async fn every_bad_mint_request_gets_its_contract_status_and_error() {
    let state = state();
    for (name, content_type, body, status, error) in BAD_MINT_REQUESTS {
        let reply = send(
            &state,
            Method::POST,
            "/tokens",
            *content_type,
            body.to_string(),
        )
        .await;
        assert_eq!(reply.status, *status, "{name}");
        assert_eq!(reply.json, json!({ "error": error }), "{name}");
        assert_eq!(reply.headers["content-type"], "application/json", "{name}");
        assert_eq!(reply.headers["cache-control"], "no-store", "{name}");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413_naming_the_limit() {
    let state = state();
    let padding = "x".repeat(64 * 1024);
    let body = format!(r#"{{"sender":"a","scopes":{{"pad":"{padding}"}}}}"#);
    let reply = mint(&state, &body).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let error = reply.json["error"].as_str().unwrap();
    assert!(error.contains("64 KiB"), "{error}");
}

#[tokio::test]
async fn a_body_of_exactly_64_kib_is_accepted() {
    let state = state();
    let skeleton = r#"{"sender":"a","scopes":{"pad":""}}"#;
    let padding = "x".repeat(64 * 1024 - skeleton.len());
    let body = format!(r#"{{"sender":"a","scopes":{{"pad":"{padding}"}}}}"#);
    assert_eq!(body.len(), 64 * 1024);
    assert_eq!(mint(&state, &body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn validation_finishes_before_any_signing_work() {
    let state = state();
    for body in [
        "nope",
        "{}",
        r#"{"sender":"a","scopes":1}"#,
        r#"{"sender":"a","ttl_seconds":0}"#,
    ] {
        assert_eq!(mint(&state, body).await.status, StatusCode::BAD_REQUEST);
    }
    let reply = send(
        &state,
        Method::POST,
        "/tokens",
        Some("text/plain"),
        "{\"sender\":\"a\"}",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        state.signer().signatures(),
        0,
        "no request above reached the signer"
    );
    assert_eq!(
        mint(&state, r#"{"sender":"a"}"#).await.status,
        StatusCode::OK
    );
    assert_eq!(state.signer().signatures(), 1);
}

#[tokio::test]
async fn a_mint_answers_token_sender_and_ttl_and_forbids_caching() {
    let state = state();
    let reply = mint(&state, r#"{"sender":"agent://risk"}"#).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["pragma"], "no-cache");
    let fields: Vec<&str> = reply
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["token", "sender", "expires_in_seconds"]);
    assert_eq!(reply.json["sender"], "agent://risk");
    assert_eq!(reply.json["expires_in_seconds"], 300);
}

async fn minted_ttl(state: &AppState, ttl: &str) -> (u64, u64) {
    let reply = mint(state, &format!(r#"{{"sender":"a","ttl_seconds":{ttl}}}"#)).await;
    assert_eq!(reply.status, StatusCode::OK, "ttl {ttl}: {:?}", reply.json);
    let (_, claims, _) = token_parts(reply.json["token"].as_str().unwrap());
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    (reply.json["expires_in_seconds"].as_u64().unwrap(), lifetime)
}

#[tokio::test]
async fn ttls_default_round_up_and_clamp_and_always_equal_exp_minus_iat() {
    let state = state();
    let cases = [
        ("null", 300),
        ("600", 600),
        ("1", 1),
        ("1.5", 2),
        ("0.001", 1),
        ("3599.2", 3600),
        ("3600", 3600),
        ("999999", 3600),
        ("1e300", 3600),
    ];
    for (ttl, expected) in cases {
        assert_eq!(
            minted_ttl(&state, ttl).await,
            (expected, expected),
            "ttl {ttl}"
        );
    }
}

#[tokio::test]
async fn configured_ttls_are_honoured() {
    let state = state_with({
        let mut config = config(SigningAlg::Rs256);
        config.tokens.default_ttl_seconds = 42;
        config.tokens.max_ttl_seconds = 100;
        config
    });
    assert_eq!(minted_ttl(&state, "null").await, (42, 42));
    assert_eq!(minted_ttl(&state, "500").await, (100, 100));
}

#[tokio::test]
async fn tokens_carry_the_contract_header_and_claims() {
    let state = state_with({
        let mut config = config(SigningAlg::Rs256);
        config.tokens.issuer = "auth.example.com".into();
        config.tokens.audience = "runtime.example.com".into();
        config
    });
    let before = now();
    let reply = mint(
        &state,
        r#"{"sender":"  agent://Risk ","scopes":{"can_start_sessions":true,"allowed_modes":[],"note":"","max_open_sessions":3.0,"ratio":0.5},"ttl_seconds":120}"#,
    )
    .await;
    let token = reply.json["token"].as_str().unwrap();
    let (header, claims, raw_claims) = token_parts(token);

    let jwks = send(&state, Method::GET, "/.well-known/jwks.json", None, "")
        .await
        .json;
    assert_eq!(
        header,
        json!({"alg": "RS256", "kid": jwks["keys"][0]["kid"], "typ": "JWT"})
    );
    assert_eq!(claims["sub"], "  agent://Risk ", "sender is never trimmed");
    assert_eq!(reply.json["sender"], "  agent://Risk ");
    assert_eq!(claims["iss"], "auth.example.com");
    assert_eq!(
        claims["aud"], "runtime.example.com",
        "aud is a plain string"
    );
    let iat = claims["iat"].as_u64().unwrap();
    assert!((before..=now()).contains(&iat));
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 120);
    assert_eq!(
        claims["macp_scopes"],
        json!({"can_start_sessions": true, "allowed_modes": [], "note": "", "max_open_sessions": 3, "ratio": 0.5})
    );
    assert!(
        raw_claims.contains(r#""macp_scopes":{"can_start_sessions":true,"allowed_modes":[],"note":"","max_open_sessions":3,"ratio":0.5}"#),
        "scopes are copied in order, with 3.0 written as 3: {raw_claims}"
    );
    let claim_names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        claim_names,
        ["macp_scopes", "iat", "exp", "iss", "aud", "sub", "jti"]
    );
}

#[tokio::test]
async fn omitted_scopes_become_an_empty_object() {
    let state = state();
    let reply = mint(&state, r#"{"sender":"a"}"#).await;
    let (_, claims, _) = token_parts(reply.json["token"].as_str().unwrap());
    assert_eq!(claims["macp_scopes"], json!({}));
}

#[tokio::test]
async fn integers_beyond_64_bits_are_signed_as_doubles_and_numbers_beyond_doubles_are_refused() {
    use base64::Engine;
    let state = state();
    let reply = mint(
        &state,
        r#"{"sender":"a","scopes":{"big":18446744073709551616,"max":18446744073709551615}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let payload = reply.json["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims = String::from_utf8(claims).unwrap();
    assert!(
        claims
            .contains(r#""macp_scopes":{"big":1.8446744073709552e+19,"max":18446744073709551615}"#),
        "{claims}"
    );
    for huge in ["1e400", "-1e400"] {
        let reply = mint(
            &state,
            &format!(r#"{{"sender":"a","scopes":{{"a":{huge}}}}}"#),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{huge}");
        assert_eq!(reply.json, json!({"error": "invalid JSON body"}), "{huge}");
    }
}

#[tokio::test]
async fn every_token_gets_a_fresh_128_bit_jti() {
    use base64::Engine;
    let state = state();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let reply = mint(&state, r#"{"sender":"a"}"#).await;
        let (_, claims, _) = token_parts(reply.json["token"].as_str().unwrap());
        let jti = claims["jti"].as_str().unwrap().to_owned();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&jti)
            .unwrap();
        assert!(bytes.len() * 8 >= 128, "{jti}");
        assert!(seen.insert(jti), "jti repeated");
    }
}

#[tokio::test]
async fn the_jwks_is_json_with_public_members_only() {
    for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
        let state = state_with(config(alg));
        let reply = send(&state, Method::GET, "/.well-known/jwks.json", None, "").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "application/json");
        let keys = reply.json["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let jwk = keys[0].as_object().unwrap();
        let mut members: Vec<&str> = jwk.keys().map(String::as_str).collect();
        members.sort_unstable();
        let expected: &[&str] = match alg {
            SigningAlg::Rs256 => &["alg", "e", "kid", "kty", "n", "use"],
            SigningAlg::Es256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
        };
        assert_eq!(members, expected, "{alg}");
        assert_eq!(jwk["alg"], alg.as_str());
        assert_eq!(jwk["use"], "sig");
    }
}

#[tokio::test]
async fn healthz_answers_ok() {
    let reply = send(&state(), Method::GET, "/healthz", None, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.json, json!({"ok": true}));
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let state = state();
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/token"),
        (Method::POST, "/tokens/extra"),
        (Method::GET, "/.well-known/openid"),
    ] {
        let reply = send(&state, method.clone(), path, None, "").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.json, json!({"error": "not found"}), "{method} {path}");
    }
}

#[tokio::test]
async fn wrong_methods_get_a_json_405_with_allow() {
    let state = state();
    for (method, path, allow) in [
        (Method::GET, "/tokens", "POST"),
        (Method::PUT, "/tokens", "POST"),
        (Method::POST, "/healthz", "GET,HEAD"),
        (Method::DELETE, "/.well-known/jwks.json", "GET,HEAD"),
    ] {
        let reply = send(&state, method.clone(), path, None, "").await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            reply.json,
            json!({"error": "method not allowed"}),
            "{method} {path}"
        );
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn es256_tokens_have_the_es256_header() {
    let state = state_with(config(SigningAlg::Es256));
    let reply = mint(&state, r#"{"sender":"a"}"#).await;
    let (header, _, _) = token_parts(reply.json["token"].as_str().unwrap());
    assert_eq!(
        header,
        json!({"alg": "ES256", "kid": "es256-test-key", "typ": "JWT"})
    );
}

#[tokio::test]
async fn json_subtypes_and_charsets_are_accepted() {
    let state = state();
    for content_type in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "APPLICATION/JSON",
    ] {
        let reply = send(
            &state,
            Method::POST,
            "/tokens",
            Some(content_type),
            r#"{"sender":"a"}"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{content_type}");
    }
}
