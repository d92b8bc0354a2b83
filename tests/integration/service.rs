//! The real `Service` in process: the separate metrics listener, the
//! maintenance task (a key file change picked up by polling, a scheduled
//! activation logged when it happens) and the shutdown order (readiness
//! fails, the server drains, and only then do maintenance and the metrics
//! listener stop), all without spawning the binary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use macp_auth_service::clock::ManualClock;
use macp_auth_service::keys::SigningAlg;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    LogCapture, Reply, TempDir, TestApp, es256_key, es256_ring, jwks_kids, now, ring_text,
    token_parts,
};

/// Kids in the ring the service holds right now.
fn ring_kids(app: &TestApp) -> Vec<String> {
    app.state()
        .keys()
        .ring()
        .keys()
        .iter()
        .map(|entry| entry.key.kid().to_owned())
        .collect()
}

/// Waits until `check` holds, yielding to the service; panics after 5 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_served_on_their_own_listener_leave_the_api_port() {
    let app = TestApp::builder(SigningAlg::Es256)
        .metrics_listener()
        .start()
        .await;
    assert_eq!(app.mint(r#"{"sender":"agent://a"}"#).await.status, 200);
    assert_eq!(
        app.get("/metrics").await.status,
        StatusCode::NOT_FOUND,
        "not on the API port"
    );
    let scraped = app.get(&app.metrics_url("/metrics")).await;
    assert_eq!(scraped.status, StatusCode::OK);
    let text = scraped.json.as_str().unwrap();
    assert!(
        text.contains(r#"macp_auth_mint_requests_total{outcome="issued",client="-"} 1"#),
        "{text}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn maintenance_picks_up_a_changed_key_file_by_polling() {
    let dir = TempDir::new("service-poll");
    let path = dir.join("ring.json");
    std::fs::write(&path, es256_ring(&["first"])).unwrap();
    let app = TestApp::builder(SigningAlg::Es256)
        .key_file(&path, Some(Duration::from_millis(50)))
        .start()
        .await;
    let kids = |reply: Reply| jwks_kids(&reply.json);
    assert_eq!(kids(app.get("/.well-known/jwks.json").await), ["first"]);
    std::fs::write(&path, es256_ring(&["first", "second"])).unwrap();
    eventually("the JWKS shows the new key", async || {
        kids(app.get("/.well-known/jwks.json").await) == ["first", "second"]
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn maintenance_logs_a_scheduled_activation_when_it_happens_without_a_request() {
    let logs = LogCapture::text();
    let t0 = now();
    let clock = ManualClock::at(t0);
    let ring = ring_text(&[&es256_key("old", None), &es256_key("new", Some(t0 + 1))]);
    let app = TestApp::builder(SigningAlg::Es256)
        .ring(&ring)
        .clock(Arc::new(clock.clone()))
        .start()
        .await;
    // Let the maintenance task (on this thread: current-thread runtime) run
    // its first turn and go to sleep until the activation, then reach it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    clock.set(t0 + 1);
    // No request reaches the service until the line is logged: only the
    // maintenance task can have noticed the activation.
    let text = logs
        .wait_for("key new activated", Duration::from_secs(5))
        .await;
    assert!(text.contains("key old superseded by new"), "{text}");
    let minted = app.mint(r#"{"sender":"agent://a"}"#).await;
    let (header, _, _) = token_parts(minted.json["token"].as_str().unwrap());
    assert_eq!(header["kid"], "new");
    app.shutdown().await;
}

#[tokio::test]
async fn on_shutdown_readiness_fails_then_the_drain_runs_and_only_then_maintenance_and_metrics_stop()
 {
    let dir = TempDir::new("service-order");
    let path = dir.join("ring.json");
    std::fs::write(&path, es256_ring(&["first"])).unwrap();
    let mut app = TestApp::builder(SigningAlg::Es256)
        .key_file(&path, Some(Duration::from_millis(50)))
        .metrics_listener()
        .shutdown_delay(Duration::from_millis(200))
        .start()
        .await;
    let metrics_addr = app.metrics_addr().unwrap();
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);

    // A request in flight: the head and part of the body, so the drain
    // cannot finish until the test completes it.
    let body = r#"{"sender":"agent://in-flight"}"#;
    let mut in_flight = app.start_request(body).await;

    app.signal_shutdown();
    let not_ready = app.get("/readyz").await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready.json, json!({"error": "not ready: shutting down"}));

    // Past the shutdown delay the API stops accepting, but the drain holds.
    let start = Instant::now();
    while TcpStream::connect(app.addr).await.is_ok() {
        assert!(start.elapsed() < Duration::from_secs(5), "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!app.is_finished(), "draining the request in flight");
    let scraped = app.get(&app.metrics_url("/metrics")).await;
    assert_eq!(
        scraped.status,
        StatusCode::OK,
        "metrics answer while draining"
    );
    std::fs::write(&path, es256_ring(&["first", "second"])).unwrap();
    eventually("maintenance reloads while draining", async || {
        ring_kids(&app) == ["first", "second"]
    })
    .await;

    in_flight.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut response = String::new();
    in_flight.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    app.finished(Duration::from_secs(5))
        .await
        .expect("the drain completes");

    eventually("the metrics listener closes after the drain", async || {
        TcpStream::connect(metrics_addr).await.is_err()
    })
    .await;
    std::fs::write(&path, es256_ring(&["first", "second", "third"])).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ring_kids(&app),
        ["first", "second"],
        "maintenance stopped with the service: six poll periods, no reload"
    );
}
