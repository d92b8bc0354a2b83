//! The binary as operators run it: its startup log, signals and exit codes.

use std::time::{Duration, Instant};

use crate::support::{
    Spawned, TempDir, binary, es256_ring, free_port, jwks_kids, private_jwk, token_parts,
    verify_like_runtime,
};
use macp_auth_service::keys::SigningAlg;

#[test]
fn each_bad_variable_stops_startup_with_one_line_naming_it() {
    let ec_key = private_jwk(SigningAlg::Es256);
    let cases: &[(&str, &str, &str)] = &[
        ("PORT", "abc", "PORT must be an integer from 1 to 65535"),
        ("PORT", "70000", "PORT must be an integer from 1 to 65535"),
        ("HOST", "example.com", "HOST must be an IP address"),
        (
            "MACP_AUTH_ISSUER",
            "",
            "MACP_AUTH_ISSUER must be a non-empty string",
        ),
        (
            "MACP_AUTH_AUDIENCE",
            " ",
            "MACP_AUTH_AUDIENCE must be a non-empty string",
        ),
        (
            "MACP_AUTH_MAX_TTL_SECONDS",
            "0",
            "MACP_AUTH_MAX_TTL_SECONDS must be a positive integer",
        ),
        (
            "MACP_AUTH_DEFAULT_TTL_SECONDS",
            "soon",
            "MACP_AUTH_DEFAULT_TTL_SECONDS must be a positive integer",
        ),
        (
            "MACP_AUTH_SIGNING_ALG",
            "HS256",
            "MACP_AUTH_SIGNING_ALG must be RS256 or ES256",
        ),
        (
            "MACP_AUTH_SIGNING_KEY_JSON",
            "{\"d\": SECRET-MATERIAL",
            "MACP_AUTH_SIGNING_KEY_JSON is not valid JSON",
        ),
        (
            "MACP_AUTH_SIGNING_KEY_JSON",
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
            "MACP_AUTH_SIGNING_KEY_JSON must be a private JWK",
        ),
        (
            "MACP_AUTH_SIGNING_KEY_JSON",
            ec_key,
            "MACP_AUTH_SIGNING_KEY_JSON has key type \"EC\", but RS256 needs kty \"RSA\"",
        ),
        ("RUST_LOG", "info,[=", "RUST_LOG must be a tracing filter"),
    ];
    let ec_secret = serde_json::from_str::<serde_json::Value>(ec_key).unwrap()["d"]
        .as_str()
        .unwrap()
        .to_owned();
    for (variable, value, expected) in cases {
        let output = binary().env(variable, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{variable}={value:?} must stop startup"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{variable}: one line: {stderr:?}"
        );
        assert!(
            stderr.contains(expected),
            "{variable}={value:?}: {stderr:?} should contain {expected:?}"
        );
        assert!(!stderr.contains("SECRET-MATERIAL"), "{stderr}");
        assert!(!stderr.contains(&ec_secret), "{stderr}");
    }
}

#[test]
fn help_describes_the_service() {
    let output = binary().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Usage: macp-auth-service"), "{help}");
    assert!(help.contains("serve"), "{help}");
}

#[tokio::test]
async fn the_service_logs_its_fingerprint_mints_and_exits_cleanly_on_each_signal() {
    for (signal, number) in [("TERM", libc::SIGTERM), ("INT", libc::SIGINT)] {
        let service = Spawned::start(&[]).await;
        let base = service.base();
        let port = service.addr.port().to_string();

        let minted: serde_json::Value = reqwest::Client::new()
            .post(format!("{base}/tokens"))
            .json(&serde_json::json!({"sender": "agent://process"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = minted["token"].as_str().unwrap().to_owned();
        let jwks = reqwest::get(format!("{base}/.well-known/jwks.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        verify_like_runtime(&token, &jwks, "macp-auth-service", "macp-runtime").unwrap();
        let jti = token_parts(&token).1["jti"].as_str().unwrap().to_owned();

        let log = service.stop_with(number).await;
        for expected in [
            format!("listening on port {port} (address 127.0.0.1:{port})"),
            "issuer=macp-auth-service audience=macp-runtime".to_owned(),
            "key source: ephemeral".to_owned(),
            "signing alg=RS256 kid=dev-key-1".to_owned(),
            format!("JWKS: {base}/.well-known/jwks.json"),
            format!("Mint: POST {base}/tokens"),
            "ephemeral signing key: tokens minted now stop verifying when this process restarts"
                .to_owned(),
            "minted token".to_owned(),
            format!("jti={jti}"),
            format!("received SIG{signal}"),
        ] {
            assert!(
                log.contains(&expected),
                "SIG{signal}: log lacks {expected:?}:\n{log}"
            );
        }
        let first = log.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!(" INFO listening on port {port} ")),
            "the reference's phrase comes first, as operators grep for it: {first}"
        );
        assert!(!log.contains(&token), "a token reached the log");
        assert!(
            !log.contains('\u{1b}'),
            "no colour codes when not on a terminal"
        );
    }
}

async fn published_kids(base: &str) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks_kids(&jwks)
}

async fn mint_status(base: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/tokens"))
        .json(&serde_json::json!({"sender": "agent://reload"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A ring file of fresh ES256 keys named `kids`, in a directory removed on drop.
fn ring_file(kids: &[&str]) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("process-ring");
    let path = dir.join("ring.json");
    write_ring(&path, kids);
    (dir, path)
}

fn write_ring(path: &std::path::Path, kids: &[&str]) {
    std::fs::write(path, es256_ring(kids)).unwrap();
}

async fn wait_for_kids(base: &str, expected: &[&str]) {
    let start = Instant::now();
    while published_kids(base).await != expected {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "JWKS never became {expected:?}: {:?}",
            published_kids(base).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_key_file_and_a_broken_file_keeps_the_ring() {
    let (_dir, path) = ring_file(&["first"]);
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_SIGNING_KEY_FILE", path.display().to_string()),
        ("MACP_AUTH_KEY_POLL_SECONDS", "0".into()),
    ])
    .await;
    let base = service.base();
    assert_eq!(published_kids(&base).await, ["first"]);

    write_ring(&path, &["first", "second"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        published_kids(&base).await,
        ["first"],
        "polling is off: only SIGHUP reloads"
    );
    service.signal(libc::SIGHUP);
    wait_for_kids(&base, &["first", "second"]).await;

    std::fs::write(&path, "{ this is not a key").unwrap();
    service.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(published_kids(&base).await, ["first", "second"], "kept");
    assert_eq!(mint_status(&base).await, 200, "minting continues");

    let log = service.stop().await;
    assert!(
        log.contains("received SIGHUP: reloading the key ring"),
        "{log}"
    );
    assert!(log.contains("key ring reloaded from"), "{log}");
    assert!(
        log.contains("key ring reload (SIGHUP) failed, keeping the current ring: MACP_AUTH_SIGNING_KEY_FILE is not valid JSON"),
        "{log}"
    );
}

#[tokio::test]
async fn a_changed_key_file_is_picked_up_by_polling() {
    let (_dir, path) = ring_file(&["first"]);
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_SIGNING_KEY_FILE", path.display().to_string()),
        ("MACP_AUTH_KEY_POLL_SECONDS", "1".into()),
    ])
    .await;
    let base = service.base();
    write_ring(&path, &["first", "second"]);
    wait_for_kids(&base, &["first", "second"]).await;
    let log = service.stop().await;
    assert!(log.contains("key ring reloaded from"), "{log}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_audit_records_apart() {
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_LOG_FORMAT", "json".into()),
    ])
    .await;
    let base = service.base();
    assert_eq!(mint_status(&base).await, 200);
    let log = service.stop().await;
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["message"] == "key source: ephemeral"),
        "{log}"
    );
    let audit: Vec<_> = records.iter().filter(|r| r["target"] == "audit").collect();
    assert_eq!(audit.len(), 1, "{log}");
    assert_eq!(audit[0]["outcome"], "issued");
    assert_eq!(audit[0]["message"], "minted token");
    assert!(audit[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn unauthenticated_minting_is_warned_about_at_startup() {
    let service = Spawned::start(&[("MACP_AUTH_SIGNING_ALG", "ES256".into())]).await;
    let log = service.stop().await;
    assert!(
        log.contains(
            "WARN minting is unauthenticated: any local process can mint a token for any sender"
        ),
        "{log}"
    );
}

#[tokio::test]
async fn metrics_can_move_to_their_own_address() {
    let metrics_port = free_port();
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        (
            "MACP_AUTH_METRICS_ADDR",
            format!("127.0.0.1:{metrics_port}"),
        ),
    ])
    .await;
    let base = service.base();
    assert_eq!(mint_status(&base).await, 200);
    let on_main = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(on_main.status(), 404, "not on the public port");
    let scraped = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scraped.contains(r#"macp_auth_mint_requests_total{outcome="issued",client="-"} 1"#),
        "{scraped}"
    );
    service.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_client_list_too() {
    use macp_auth_service::clients::secret_digest_hex;
    let dir = TempDir::new("process-clients");
    let path = dir.join("clients.json");
    let entry = |name: &str, secret: &str| serde_json::json!({"name": name, "secret_sha256": secret_digest_hex(secret), "senders": ["agent://*"]});
    std::fs::write(
        &path,
        serde_json::json!([entry("first", "one")]).to_string(),
    )
    .unwrap();
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_CLIENTS_FILE", path.display().to_string()),
        ("MACP_AUTH_KEY_POLL_SECONDS", "0".into()),
    ])
    .await;
    let base = service.base();
    let mint_with = |secret: &'static str| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/tokens"))
                .bearer_auth(secret)
                .json(&serde_json::json!({"sender": "agent://x"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(mint_with("one").await, 200);
    assert_eq!(mint_with("two").await, 401);
    std::fs::write(
        &path,
        serde_json::json!([entry("first", "one"), entry("second", "two")]).to_string(),
    )
    .unwrap();
    service.signal(libc::SIGHUP);
    let start = Instant::now();
    while mint_with("two").await != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new client never became valid"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = service.stop().await;
    assert!(
        log.contains("minting requires client credentials (MACP_AUTH_CLIENTS_FILE): first"),
        "{log}"
    );
    assert!(log.contains("client list reloaded from"), "{log}");
    assert!(
        !log.contains("\"one\"") && !log.contains("\"two\""),
        "secrets never logged"
    );
}

#[tokio::test]
async fn on_sigterm_readiness_fails_before_the_listener_closes() {
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_SHUTDOWN_DELAY_SECONDS", "2".into()),
    ])
    .await;
    let base = service.base();
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    service.signal(libc::SIGTERM);
    let start = Instant::now();
    while reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .status()
        != 503
    {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "readiness never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        mint_status(&base).await,
        200,
        "still serving during the delay"
    );
    let mut service = service;
    let status = service
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("exits after the delay");
    assert!(status.success());
}

#[tokio::test]
async fn a_lone_pinned_jwk_without_kid_is_published_as_key_1_and_warned_about() {
    let mut kidless: serde_json::Value =
        serde_json::from_str(private_jwk(SigningAlg::Es256)).unwrap();
    kidless.as_object_mut().unwrap().remove("kid");
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_SIGNING_KEY_JSON", kidless.to_string()),
        ("MACP_AUTH_MAX_TTL", "60".into()),
    ])
    .await;
    assert_eq!(
        published_kids(&service.base()).await,
        ["key-1"],
        "the reference's kid"
    );
    let log = service.stop().await;
    for expected in [
        "signing alg=ES256 kid=key-1",
        "WARN the pinned key has no kid, so it is published as \"key-1\" as the TypeScript reference did",
        "WARN MACP_AUTH_MAX_TTL is set but no setting of this service reads it (did you mean MACP_AUTH_MAX_TTL_SECONDS?)",
    ] {
        assert!(log.contains(expected), "log lacks {expected:?}:\n{log}");
    }

    // In a JWK Set, keys without kid get their RFC 7638 thumbprints.
    let set = serde_json::json!({ "keys": [kidless] }).to_string();
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_SIGNING_KEY_JSON", set),
    ])
    .await;
    let kids = published_kids(&service.base()).await;
    assert_eq!(kids.len(), 1);
    assert_eq!(kids[0].len(), 43, "a thumbprint: {kids:?}");
    let log = service.stop().await;
    assert!(!log.contains("has no kid"), "{log}");
}
