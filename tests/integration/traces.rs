//! OpenTelemetry traces, end to end: the binary exports OTLP/HTTP protobuf
//! to a receiver served by this test, configured only through the standard
//! `OTEL_*` variables.

use std::time::{Duration, Instant};

use macp_auth_service::clients::secret_digest_hex;

use crate::support::otlp::{Attr, Blackhole, OtlpReceiver, ReceivedSpan, closed_endpoint};
use crate::support::{Spawned, binary};

/// The orchestrator's trace and span, as its `traceparent` names them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const CLIENT_SECRET: &str = "orchestrator-secret-in-the-header";
const COLLECTOR_KEY: &str = "collector-api-key-value";

fn clients_json() -> String {
    serde_json::json!([{
        "name": "orchestrator",
        "secret_sha256": secret_digest_hex(CLIENT_SECRET),
        "senders": ["agent://*"],
    }])
    .to_string()
}

/// Settings for a service exporting to `endpoint` every `delay_ms`.
fn traced_env(endpoint: &str, delay_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_CLIENTS_JSON", clients_json()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", delay_ms.to_string()),
        ("OTEL_SERVICE_NAME", "macp-auth-under-test".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=integration".into(),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("api-key={COLLECTOR_KEY}"),
        ),
    ]
}

/// Mints for `agent://traced`, continuing the trace when `traceparent` is
/// given; returns the status and the token (empty unless 200).
async fn mint(base: &str, traceparent: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/tokens"))
        .header("authorization", format!("Bearer {CLIENT_SECRET}"))
        .json(&serde_json::json!({"sender": "agent://traced"}));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap_or_default().to_owned();
    (status, token)
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span named {name:?} in {spans:#?}"))
}

fn has_mint_trace(spans: &[ReceivedSpan]) -> bool {
    ["POST /tokens", "mint", "sign", "signature"]
        .iter()
        .all(|name| spans.iter().any(|span| span.name == *name))
}

#[tokio::test]
async fn a_callers_traceparent_continues_into_the_server_span_with_the_mint_and_signing_inside() {
    let receiver = OtlpReceiver::start().await;
    let service = Spawned::start(&traced_env(&receiver.endpoint(), 100)).await;
    let base = service.base();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let (status, token) = mint(&base, Some(&traceparent)).await;
    assert_eq!(status, 200);
    let spans = receiver
        .wait_for(Duration::from_secs(10), has_mint_trace)
        .await;

    let server = named(&spans, "POST /tokens");
    assert_eq!(server.trace_id, TRACE_ID, "the caller's trace continues");
    assert_eq!(server.parent_span_id, PARENT_ID, "under the caller's span");
    assert_eq!(server.kind, 2, "a server span");
    assert_eq!(server.str("http.request.method"), Some("POST"));
    assert_eq!(server.str("http.route"), Some("/tokens"));
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.status_code, 0, "a 200 is not an error");

    let mint_span = named(&spans, "mint");
    assert_eq!(mint_span.trace_id, TRACE_ID);
    assert_eq!(mint_span.parent_span_id, server.span_id);
    assert_eq!(mint_span.str("macp.client"), Some("orchestrator"));
    assert_eq!(mint_span.str("macp.signing.alg"), Some("ES256"));
    assert!(mint_span.str("macp.key.kid").is_some(), "{mint_span:?}");
    assert_eq!(mint_span.str("macp.mint.outcome"), Some("issued"));

    let sign = named(&spans, "sign");
    assert_eq!(sign.parent_span_id, mint_span.span_id);
    let waited = sign.int("macp.signer.queue_wait_us").expect("queue wait");
    let signing = sign
        .int("macp.signer.signature_us")
        .expect("signature time");
    assert!(waited >= 0 && signing >= 0, "{sign:?}");
    let signature = named(&spans, "signature");
    assert_eq!(signature.parent_span_id, sign.span_id);
    assert!(signature.duration() <= sign.duration());

    for span in &spans {
        assert_eq!(
            span.resource.get("service.name"),
            Some(&Attr::Str("macp-auth-under-test".into()))
        );
        assert_eq!(
            span.resource.get("deployment.environment.name"),
            Some(&Attr::Str("integration".into()))
        );
        let printed = format!("{span:?}");
        for secret in [CLIENT_SECRET, token.as_str(), "Bearer", COLLECTOR_KEY] {
            assert!(!printed.contains(secret), "{secret:?} in a span: {printed}");
        }
    }
    let requests = receiver.requests();
    assert!(
        requests.iter().all(|r| r.spans.is_some()),
        "only valid OTLP bodies"
    );
    let first = &requests[0].headers;
    assert_eq!(first["content-type"], "application/x-protobuf");
    assert_eq!(
        first["api-key"], COLLECTOR_KEY,
        "OTEL_EXPORTER_OTLP_HEADERS are sent"
    );

    let log = service.stop().await;
    assert!(
        log.contains("traces: OTLP http/protobuf to http://127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("headers api-key"), "{log}");
    assert!(
        !log.contains(COLLECTOR_KEY),
        "a collector credential reached the log"
    );
    assert!(
        !log.contains("mint{"),
        "log lines do not show trace spans: {log}"
    );
}

#[tokio::test]
async fn a_request_without_traceparent_starts_its_own_trace_and_probes_are_not_traced() {
    let receiver = OtlpReceiver::start().await;
    let service = Spawned::start(&traced_env(&receiver.endpoint(), 100)).await;
    let base = service.base();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let probe = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(probe.status(), 200, "{path}");
    }
    assert_eq!(mint(&base, None).await.0, 200);
    let jwks = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            has_mint_trace(spans) && spans.iter().any(|s| s.name.starts_with("GET /.well-known"))
        })
        .await;
    let server = named(&spans, "POST /tokens");
    assert_eq!(server.parent_span_id, "", "a root span");
    assert_ne!(server.trace_id, TRACE_ID);
    assert_eq!(named(&spans, "mint").trace_id, server.trace_id);
    let jwks = named(&spans, "GET /.well-known/jwks.json");
    assert_eq!(jwks.str("http.route"), Some("/.well-known/jwks.json"));
    assert_ne!(jwks.trace_id, server.trace_id, "one trace per request");
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for probe in ["GET /healthz", "GET /readyz", "GET /metrics"] {
        assert!(!names.contains(&probe), "{probe} traced: {names:?}");
    }
    service.stop().await;
}

#[tokio::test]
async fn the_last_spans_are_flushed_when_the_service_stops() {
    let receiver = OtlpReceiver::start().await;
    // Ten minutes between scheduled exports: only shutdown sends these.
    let service = Spawned::start(&traced_env(&receiver.endpoint(), 600_000)).await;
    let base = service.base();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    assert_eq!(mint(&base, Some(&traceparent)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.spans().is_empty(),
        "nothing exported before shutdown"
    );
    service.stop().await;
    let spans = receiver.spans();
    assert!(has_mint_trace(&spans), "{spans:#?}");
    assert_eq!(named(&spans, "POST /tokens").trace_id, TRACE_ID);
}

/// Mints `count` times; every answer must be a 200 within `limit`, however
/// the exporter fares.
async fn mint_promptly(base: &str, count: usize, limit: Duration) {
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    for attempt in 0..count {
        let started = Instant::now();
        let (status, _) = mint(base, Some(&traceparent)).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "mint {attempt}");
        assert!(took < limit, "mint {attempt} took {took:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn minting_answers_promptly_when_the_collector_refuses_connections() {
    let endpoint = closed_endpoint().await;
    let service = Spawned::start(&traced_env(&endpoint, 50)).await;
    let base = service.base();
    mint_promptly(&base, 20, Duration::from_secs(2)).await;
    let started = Instant::now();
    let log = service.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "exit is not held up"
    );
    let warnings = log.matches("trace export failed").count();
    assert_eq!(warnings, 1, "one line per outage, not per batch:\n{log}");
    assert!(
        log.contains("trace export lost spans while running"),
        "{log}"
    );
    assert!(!log.contains(COLLECTOR_KEY), "{log}");
}

#[tokio::test]
async fn minting_answers_promptly_when_the_collector_never_answers() {
    let blackhole = Blackhole::start().await;
    let mut env = traced_env(&blackhole.endpoint(), 50);
    env.push(("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".into()));
    let service = Spawned::start(&env).await;
    let base = service.base();
    mint_promptly(&base, 20, Duration::from_secs(2)).await;
    let started = Instant::now();
    let log = service.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the flush gives up at its deadline: {log}"
    );
    assert!(
        log.contains("trace flush at shutdown did not complete"),
        "{log}"
    );
}

#[tokio::test]
async fn export_resumes_when_the_collector_comes_back() {
    let receiver = OtlpReceiver::start().await;
    let addr = receiver.addr();
    let service = Spawned::start(&traced_env(&receiver.endpoint(), 50)).await;
    let base = service.base();
    mint_promptly(&base, 1, Duration::from_secs(2)).await;
    receiver
        .wait_for(Duration::from_secs(10), has_mint_trace)
        .await;
    receiver.stop().await;

    // Longer than the exporter's retries (about a second): batches fail.
    mint_promptly(&base, 5, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let receiver = OtlpReceiver::start_on(addr).await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(mint(&base, Some(traceparent)).await.0, 200);
    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == "0af7651916cd43dd8448eb211c80319c")
        })
        .await;
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == "0af7651916cd43dd8448eb211c80319c"),
        "{spans:#?}"
    );
    let log = service.stop().await;
    assert_eq!(log.matches("trace export failed").count(), 1, "{log}");
    assert!(log.contains("trace export recovered"), "{log}");
}

/// Variables of one case.
type Env = &'static [(&'static str, &'static str)];

#[test]
fn unusable_trace_settings_stop_startup_with_one_line_naming_the_variable() {
    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let cases: &[(Env, &str)] = &[
        (
            &[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported by this build",
        ),
        (
            &[ENDPOINT, ("OTEL_TRACES_SAMPLER", "jaeger_remote")],
            "OTEL_TRACES_SAMPLER must be one of",
        ),
        (
            &[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector.example:4318",
            )],
            "OTEL_EXPORTER_OTLP_ENDPOINT uses https",
        ),
        (
            &[
                ENDPOINT,
                ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization Bearer hunter2"),
            ],
            "OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not key=value",
        ),
    ];
    for (env, expected) in cases {
        let mut command = binary();
        for (name, value) in *env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} must stop startup");
        assert_eq!(stderr.lines().count(), 1, "{env:?}: one line: {stderr:?}");
        assert!(stderr.contains(expected), "{env:?}: {stderr:?}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn check_config_shows_where_traces_go_without_credentials() {
    let output = binary()
        .arg("check-config")
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://otel:4318/v1/traces?key=hunter2",
        )
        .env("OTEL_EXPORTER_OTLP_HEADERS", "api-key=hunter3")
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0.25")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains(
            "traces: OTLP http/protobuf to http://otel:4318/v1/traces, \
             service.name=macp-auth-service, sampler parentbased_traceidratio 0.25, headers api-key"
        ),
        "{report}"
    );
    assert!(
        !report.contains("hunter2") && !report.contains("hunter3"),
        "{report}"
    );
    let off = binary().arg("check-config").output().unwrap();
    assert!(String::from_utf8_lossy(&off.stdout).contains("traces: off"));
}

/// A traced service signing with an ES256 key in `moto`'s KMS, with a short
/// signing deadline.
#[cfg(feature = "aws-kms")]
async fn kms_traced_service(moto: &crate::support::moto::Moto, endpoint: &str) -> Spawned {
    let key = moto.create_key("ECC_NIST_P256", None);
    let mut env = traced_env(endpoint, 50);
    env.extend(moto.env());
    env.push((
        "MACP_AUTH_SIGNING_KEY_JSON",
        serde_json::json!({"kid": "kms-traced", "aws_kms": key.key_id}).to_string(),
    ));
    env.push(("MACP_AUTH_SIGNING_TIMEOUT_MS", "500".into()));
    Spawned::start(&env).await
}

#[cfg(feature = "aws-kms")]
#[tokio::test]
async fn a_mint_refused_because_the_key_store_failed_is_an_error_span() {
    let Some(moto) = crate::support::moto::Moto::start() else {
        return;
    };
    let receiver = OtlpReceiver::start().await;
    let service = kms_traced_service(&moto, &receiver.endpoint()).await;
    moto.pause();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    assert_eq!(mint(&service.base(), Some(&traceparent)).await.0, 503);
    moto.resume();
    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|span| span.name == "mint")
        })
        .await;
    let mint_span = named(&spans, "mint");
    assert_eq!(
        mint_span.str("macp.mint.outcome"),
        Some("backend_unavailable")
    );
    assert_eq!(mint_span.status_code, 2, "an error: {mint_span:?}");
    service.stop().await;
}

#[cfg(feature = "aws-kms")]
#[tokio::test]
async fn a_kms_signature_is_traced_with_its_queue_wait_and_a_signature_span() {
    let Some(moto) = crate::support::moto::Moto::start() else {
        return;
    };
    let receiver = OtlpReceiver::start().await;
    let service = kms_traced_service(&moto, &receiver.endpoint()).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    assert_eq!(mint(&service.base(), Some(&traceparent)).await.0, 200);
    let spans = receiver
        .wait_for(Duration::from_secs(10), has_mint_trace)
        .await;
    let sign = named(&spans, "sign");
    assert_eq!(sign.parent_span_id, named(&spans, "mint").span_id);
    let waited = sign.int("macp.signer.queue_wait_us").expect("queue wait");
    let signing = sign.int("macp.signer.signature_us").expect("signing time");
    assert!(waited >= 0 && signing > 0, "{sign:?}");
    let signature = named(&spans, "signature");
    assert_eq!(signature.trace_id, TRACE_ID);
    assert_eq!(signature.parent_span_id, sign.span_id);
    assert!(signature.duration() <= sign.duration());
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|name| **name == "signature").count(),
        1,
        "no span for the calls made at load: {names:?}"
    );
    service.stop().await;
}
