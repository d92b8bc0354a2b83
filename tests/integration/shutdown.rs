//! Shutdown: stop accepting, finish what is in flight, respect the deadline.

use std::time::Duration;

use macp_auth_service::ServeError;
use macp_auth_service::keys::SigningAlg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestApp, config, state, state_with};

#[tokio::test]
async fn a_request_in_flight_when_shutdown_is_signalled_completes_with_200() {
    let mut server = TestApp::start(state()).await;
    let body = r#"{"sender":"agent://in-flight"}"#;
    let mut stream = server.start_request(body).await;

    server.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "no new connections are accepted while draining"
    );

    stream.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("the response arrives")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""sender":"agent://in-flight""#),
        "{response}"
    );

    server
        .finished(Duration::from_secs(5))
        .await
        .expect("the server stops once the request is answered");
}

#[tokio::test]
async fn a_server_with_nothing_in_flight_stops_at_once() {
    let mut server = TestApp::start(state()).await;
    let healthy = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(healthy.status(), 200);
    server.signal_shutdown();
    server
        .finished(Duration::from_secs(2))
        .await
        .expect("no drain needed");
}

#[tokio::test]
async fn draining_past_the_deadline_is_reported_as_a_failure() {
    let mut server = TestApp::start(state_with({
        let mut config = config(SigningAlg::Es256);
        config.limits.drain_timeout = Duration::from_millis(300);
        config
    }))
    .await;
    // A client that never finishes its body keeps the drain from completing.
    let _stuck = server.start_request(r#"{"sender":"agent://stuck"}"#).await;
    server.signal_shutdown();
    // `finished` panics unless the deadline ends serving within 5 s.
    match server.finished(Duration::from_secs(5)).await {
        Err(ServeError::DrainTimeout(limit)) => assert_eq!(limit, Duration::from_millis(300)),
        other => panic!("expected a drain timeout, got {other:?}"),
    }
}
