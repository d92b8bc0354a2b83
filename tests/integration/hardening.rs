//! Production hardening: caller credentials and sender policy, rate limits,
//! audit records, metrics, readiness during shutdown, timeouts, connection
//! limits and load shedding.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use macp_auth_service::AppState;
use macp_auth_service::clients::secret_digest_hex;
use macp_auth_service::keys::SigningAlg;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    LogCapture, Reply, TestApp, config, mint, request, send, state, state_with, token_parts,
};

const SECRET: &str = "control-plane-secret";
const OTHER_SECRET: &str = "examples-secret";

fn clients_json() -> String {
    json!([
        {"name": "control-plane", "secret_sha256": secret_digest_hex(SECRET), "senders": ["agent://team-a/*"], "max_ttl_seconds": 600},
        {"name": "examples", "secret_sha256": secret_digest_hex(OTHER_SECRET), "senders": ["agent://examples/*", "agent://demo"]}
    ])
    .to_string()
}

fn authenticated() -> AppState {
    TestApp::builder(SigningAlg::Es256)
        .clients(clients_json())
        .state()
}

async fn mint_as(state: &AppState, authorization: Option<&str>, body: &str) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    request(state, Method::POST, "/tokens", &headers, body.to_owned()).await
}

#[tokio::test]
async fn without_a_client_list_minting_needs_no_credentials() {
    assert_eq!(
        mint(&state(), r#"{"sender":"agent://anyone"}"#)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn missing_or_unknown_credentials_get_401_with_a_bearer_challenge() {
    let state = authenticated();
    let cases = [
        (
            None,
            "authorization required: send Authorization: Bearer <client secret>",
        ),
        (
            Some("Basic Y3A6c2VjcmV0"),
            "authorization required: send Authorization: Bearer <client secret>",
        ),
        (
            Some("Bearer"),
            "authorization required: send Authorization: Bearer <client secret>",
        ),
        (Some("Bearer wrong-secret"), "unknown client credentials"),
        (
            Some("Bearer control-plane-secret-but-longer"),
            "unknown client credentials",
        ),
    ];
    for (authorization, error) in cases {
        let reply = mint_as(&state, authorization, r#"{"sender":"agent://team-a/risk"}"#).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(
            reply.headers["www-authenticate"], "Bearer",
            "{authorization:?}"
        );
        assert_eq!(reply.json, json!({ "error": error }), "{authorization:?}");
    }
    assert_eq!(state.signer().signatures(), 0, "nothing was signed");
}

#[tokio::test]
async fn credentials_are_checked_before_the_body() {
    let state = authenticated();
    let reply = mint_as(&state, None, "not json").await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "callers learn nothing without credentials"
    );
}

#[tokio::test]
async fn a_client_mints_only_for_its_senders_and_within_its_ttl() {
    let state = authenticated();
    let bearer = format!("Bearer {SECRET}");
    let reply = mint_as(
        &state,
        Some(&bearer),
        r#"{"sender":"agent://team-a/risk","ttl_seconds":3600}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert_eq!(
        reply.json["expires_in_seconds"], 600,
        "held to the client's ceiling"
    );
    let (_, claims, _) = token_parts(reply.json["token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );

    let default = mint_as(&state, Some(&bearer), r#"{"sender":"agent://team-a/risk"}"#).await;
    assert_eq!(default.json["expires_in_seconds"], 300);

    let denied = mint_as(&state, Some(&bearer), r#"{"sender":"agent://team-b/risk"}"#).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.json,
        json!({"error": "client \"control-plane\" may not mint for this sender (allowed senders: agent://team-a/*)"})
    );

    let other = format!("bearer {OTHER_SECRET}");
    let demo = mint_as(
        &state,
        Some(&other),
        r#"{"sender":"agent://demo","ttl_seconds":3600}"#,
    )
    .await;
    assert_eq!(demo.status, StatusCode::OK);
    assert_eq!(
        demo.json["expires_in_seconds"], 3600,
        "no client ceiling: the service's applies"
    );
    let outside = mint_as(&state, Some(&other), r#"{"sender":"agent://team-a/risk"}"#).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
}

fn rate_limited(clients: Option<String>) -> AppState {
    let builder = TestApp::builder(SigningAlg::Es256).rate_limit(0.01, 2);
    match clients {
        Some(clients) => builder.clients(clients),
        None => builder,
    }
    .state()
}

#[tokio::test]
async fn an_empty_bucket_gets_429_with_retry_after_per_client() {
    let state = rate_limited(Some(clients_json()));
    let first = format!("Bearer {SECRET}");
    for _ in 0..2 {
        let reply = mint_as(&state, Some(&first), r#"{"sender":"agent://team-a/x"}"#).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let limited = mint_as(&state, Some(&first), r#"{"sender":"agent://team-a/x"}"#).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100).contains(&retry_after), "{retry_after}");
    assert_eq!(
        limited.json,
        json!({ "error": format!("rate limit exceeded: retry after {retry_after} s") })
    );
    let other = format!("Bearer {OTHER_SECRET}");
    let reply = mint_as(&state, Some(&other), r#"{"sender":"agent://demo"}"#).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another client has its own bucket"
    );
}

#[tokio::test]
async fn unauthenticated_minting_is_limited_per_peer_address() {
    let server = TestApp::start(rate_limited(None)).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .post(server.url("/tokens"))
            .json(&json!({"sender": "agent://a"}))
            .send()
            .await
            .unwrap();
        statuses.push((
            response.status().as_u16(),
            response.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(statuses, [(200, false), (200, false), (429, true)]);
}

#[tokio::test]
async fn each_mint_decision_leaves_one_audit_record_without_the_token_or_secret() {
    let captured = LogCapture::json();

    let state = authenticated();
    let bearer = format!("Bearer {SECRET}");
    let issued = mint_as(
        &state,
        Some(&bearer),
        r#"{"sender":"agent://team-a/risk","scopes":{"can_start_sessions":true},"ttl_seconds":120}"#,
    )
    .await;
    let token = issued.json["token"].as_str().unwrap().to_owned();
    let (_, claims, _) = token_parts(&token);
    mint_as(
        &state,
        Some(&bearer),
        r#"{"sender":"agent://team-b/risk","ttl_seconds":5}"#,
    )
    .await;
    mint_as(
        &state,
        Some("Bearer nope"),
        r#"{"sender":"agent://team-a/risk"}"#,
    )
    .await;

    let audit: Vec<Value> = captured
        .records()
        .into_iter()
        .filter(|record| record["target"] == "audit")
        .collect();
    assert_eq!(audit.len(), 3, "{audit:#?}");

    let record = &audit[0];
    assert_eq!(record["outcome"], "issued");
    assert_eq!(record["client"], "control-plane");
    assert_eq!(record["sender"], "agent://team-a/risk");
    assert_eq!(record["requested_ttl"], 120.0);
    assert_eq!(record["ttl"], 120);
    assert_eq!(record["kid"], "es256-test-key");
    assert_eq!(record["jti"], claims["jti"]);
    assert_eq!(record["scopes"], r#"{"can_start_sessions":true}"#);
    assert!(record["time"].as_str().unwrap().ends_with('Z'));
    assert!(record.get("peer").is_some());

    assert_eq!(audit[1]["outcome"], "forbidden");
    assert_eq!(audit[1]["sender"], "agent://team-b/risk");
    assert_eq!(audit[1]["requested_ttl"], 5.0);
    assert!(
        audit[1]["reason"]
            .as_str()
            .unwrap()
            .contains("may not mint for this sender")
    );
    assert_eq!(audit[2]["outcome"], "unauthenticated");
    assert_eq!(audit[2]["client"], "-");
    assert!(
        audit[2].get("requested_ttl").is_none(),
        "not known before the body is read"
    );

    let everything = captured.contents();
    assert!(!everything.contains(&token), "the token is never logged");
    assert!(
        !everything.contains(token.split('.').nth(2).unwrap()),
        "nor its signature"
    );
    assert!(!everything.contains(SECRET), "nor a client secret");
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_crafted_sender_cannot_forge_an_audit_line() {
    let captured = LogCapture::text();
    let reply = mint(
        &state(),
        r#"{"sender":"agent://x\n2026-01-01T00:00:00Z  INFO minted token sender=admin"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = captured.contents();
    assert_eq!(
        text.lines().count(),
        1,
        "one line, the newline escaped: {text}"
    );
    assert!(text.contains(r#"sender="agent://x\n2026"#), "{text}");
}

#[tokio::test]
async fn metrics_count_mints_requests_and_the_key_ring() {
    let state = authenticated();
    let bearer = format!("Bearer {SECRET}");
    mint_as(&state, Some(&bearer), r#"{"sender":"agent://team-a/risk"}"#).await;
    mint_as(&state, Some(&bearer), r#"{"sender":"agent://team-a/risk"}"#).await;
    mint_as(&state, None, r#"{"sender":"agent://team-a/risk"}"#).await;
    mint_as(&state, Some(&bearer), "{").await;
    send(&state, Method::GET, "/healthz", None, "").await;

    let reply = send(&state, Method::GET, "/metrics", None, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = reply.json.as_str().unwrap().to_owned();
    assert_eq!(
        metric(
            &text,
            r#"macp_auth_mint_requests_total{outcome="issued",client="control-plane"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"macp_auth_mint_requests_total{outcome="unauthenticated",client="-"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"macp_auth_mint_requests_total{outcome="invalid",client="control-plane"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "macp_auth_signing_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"macp_auth_http_request_duration_seconds_count{route="/healthz",method="GET",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, r#"macp_auth_signing_key_info{kid="es256-test-key"}"#),
        1.0
    );
    assert_eq!(metric(&text, "macp_auth_published_keys"), 1.0);
    assert!(
        text.contains(r#"macp_auth_reloads_total{source="keys",result="failed"} 0"#),
        "{text}"
    );
    assert_eq!(
        metric(&text, "macp_auth_http_requests_in_flight"),
        1.0,
        "the scrape itself"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn rate_limit_rejections_are_counted() {
    let state = rate_limited(None);
    for _ in 0..3 {
        mint(&state, r#"{"sender":"agent://a"}"#).await;
    }
    let text = send(&state, Method::GET, "/metrics", None, "")
        .await
        .json
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        metric(&text, r#"macp_auth_rate_limited_total{client="-"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"macp_auth_mint_requests_total{outcome="rate_limited",client="-"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn readiness_fails_at_once_on_shutdown_while_the_listener_still_serves() {
    let mut server = TestApp::start(state_with({
        let mut config = config(SigningAlg::Es256);
        config.limits.shutdown_delay = Duration::from_millis(800);
        config
    }))
    .await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"ready": true}));

    server.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let not_ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert_eq!(
        not_ready.json::<Value>().await.unwrap(),
        json!({"error": "not ready: shutting down"})
    );
    let alive = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(
        alive.status(),
        200,
        "liveness holds and the listener still accepts"
    );
    let minted = reqwest::Client::new()
        .post(server.url("/tokens"))
        .json(&json!({"sender": "agent://late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        minted.status(),
        200,
        "requests are still served during the delay"
    );

    server
        .finished(Duration::from_secs(5))
        .await
        .expect("stops after the delay");
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    let server = TestApp::start(state_with({
        let mut config = config(SigningAlg::Es256);
        config.limits.header_read_timeout = Duration::from_millis(500);
        config
    }))
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"POST /tokens HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the server closed the connection");
    assert!(
        buffer.is_empty() || String::from_utf8_lossy(&buffer).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&buffer)
    );
    let healthy = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(healthy.status(), 200);
}

/// Sends a mint whose body never finishes to a service with a 400 ms
/// request timeout, as `authorization` (if any); returns the raw answer
/// (lower-cased), the metrics scrape and the audit records logged.
async fn stalled_mint(
    clients: Option<String>,
    authorization: Option<&str>,
) -> (String, String, Vec<String>) {
    let captured = LogCapture::text();
    let mut builder = TestApp::builder(SigningAlg::Es256)
        .configure(|config| config.limits.request_timeout = Duration::from_millis(400));
    if let Some(clients) = clients {
        builder = builder.clients(clients);
    }
    let server = builder.start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let credentials =
        authorization.map_or(String::new(), |value| format!("authorization: {value}\r\n"));
    let head = format!(
        "POST /tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{credentials}content-length: 100\r\n\r\n{{\"sender\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("answered")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..read]).to_ascii_lowercase();
    let scraped = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let records = captured
        .contents()
        .lines()
        .filter(|line| line.contains("mint refused"))
        .map(str::to_owned)
        .collect();
    (response, scraped, records)
}

#[tokio::test]
async fn a_request_whose_body_never_finishes_times_out_with_408_and_is_audited() {
    let bearer = format!("Bearer {SECRET}");
    // (client list, credentials, the client named in the record and metric)
    let cases = [
        (None, None, "-"),
        (Some(clients_json()), Some(bearer.as_str()), "control-plane"),
    ];
    for (clients, authorization, client) in cases {
        let (response, scraped, records) = stalled_mint(clients, authorization).await;
        assert!(response.starts_with("http/1.1 408"), "{response}");
        assert!(
            response.contains(r#"{"error":"request timed out"}"#),
            "{response}"
        );
        // Like every answer of the route: no cache may keep it.
        assert!(response.contains("cache-control: no-store"), "{response}");
        assert!(response.contains("pragma: no-cache"), "{response}");
        assert!(
            scraped.contains(r#"route="/tokens",method="POST",status="408""#),
            "a 408 is counted: {scraped}"
        );
        let counted =
            format!(r#"macp_auth_mint_requests_total{{outcome="timed_out",client="{client}"}} 1"#);
        assert!(
            scraped.contains(&counted),
            "a 408 is a mint decision: {scraped}"
        );
        assert_eq!(records.len(), 1, "one audit record: {records:?}");
        let record = &records[0];
        // The client is known once its credentials passed; the sender is
        // not, since the body never arrived.
        for field in [
            r#"outcome="timed_out""#,
            r#"reason="request timed out""#,
            &format!(r#"client="{client}""#),
            r#"sender="-""#,
            r#"peer="127.0.0.1:"#,
        ] {
            assert!(record.contains(field), "{field} in {record}");
        }
        assert!(!record.contains("requested_ttl"), "{record}");
        assert!(!record.contains(SECRET), "{record}");
    }
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_ambiguous_hosts_are_counted_with_bounded_labels() {
    let state = state();
    let unknown = send(&state, Method::GET, "/wp-login.php", None, "").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let wrong_method = send(&state, Method::GET, "/tokens", None, "").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    let ambiguous = request(
        &state,
        Method::POST,
        "/tokens",
        &[
            ("host", "auth.internal"),
            ("host", "evil.example"),
            ("content-type", "application/json"),
        ],
        r#"{"sender":"agent://a"}"#.to_owned(),
    )
    .await;
    assert_eq!(ambiguous.status, StatusCode::BAD_REQUEST);
    // Every answer of the mint route stays out of caches, this one too.
    assert_eq!(ambiguous.headers["cache-control"], "no-store");
    assert_eq!(ambiguous.headers["pragma"], "no-cache");
    let scraped = send(&state, Method::GET, "/metrics", None, "").await;
    let text = String::from_utf8_lossy(&scraped.body);
    for labels in [
        r#"route="other",method="GET",status="404""#,
        r#"route="/tokens",method="GET",status="405""#,
        r#"route="/tokens",method="POST",status="400""#,
    ] {
        let line = format!("macp_auth_http_request_duration_seconds_count{{{labels}}} 1");
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(
        !text.contains("wp-login"),
        "paths never become labels: {text}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = TestApp::start(state_with({
        let mut config = config(SigningAlg::Es256);
        config.limits.max_connections = 2;
        config
    }))
    .await;
    let request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut buffer = [0u8; 256];
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buffer = [0u8; 256];
    let waited = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buffer)).await;
    assert!(waited.is_err(), "not served while two connections are open");
    drop(held.pop());
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buffer))
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn overload_is_shed_with_503_while_healthz_keeps_answering() {
    // One signing thread, one queue place, slow RS256 keys: most of a burst
    // of concurrent mints cannot be queued.
    let state = TestApp::builder(SigningAlg::Rs256).signer(1, 1).state();
    let server = TestApp::start(state.clone()).await;
    let client = reqwest::Client::new();

    let burst: Vec<_> = (0..40)
        .map(|_| {
            let client = client.clone();
            let url = server.url("/tokens");
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({"sender": "agent://load"}))
                    .send()
                    .await
                    .unwrap();
                let retry = response.headers().get("retry-after").cloned();
                (response.status().as_u16(), retry)
            })
        })
        .collect();
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "liveness answers during the burst");
    let jwks = client
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200, "the JWKS is never shed");

    let mut shed = 0;
    let mut issued = 0;
    for task in burst {
        match task.await.unwrap() {
            (200, _) => issued += 1,
            (503, Some(retry)) => {
                assert_eq!(retry, "1");
                shed += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(issued >= 1, "work still gets done");
    assert!(
        shed >= 1,
        "excess is refused at once, not queued without bound"
    );
    let text = send(&state, Method::GET, "/metrics", None, "")
        .await
        .json
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(metric(&text, "macp_auth_load_shed_total"), shed as f64);
}
