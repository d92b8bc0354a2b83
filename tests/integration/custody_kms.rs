//! Signing keys in AWS KMS, against moto's KMS server started by the test
//! (through `support/moto_server.py`, which makes Sign honour
//! `MessageType: DIGEST` as AWS does). Every service started here gets
//! static test credentials, a region, the moto endpoint and
//! `AWS_EC2_METADATA_DISABLED=true`, and nothing else from the environment.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::jwk::{public_members, same_key};
use crate::support::moto::Moto;
use crate::support::{
    Spawned, TempDir, binary, es256_key, ring_text, token_parts, verify_like_runtime,
};

/// The environment of a service whose ring is `member`, using `moto` as KMS.
fn service_env(moto: &Moto, alg: &str, member: &Value) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("MACP_AUTH_SIGNING_ALG", alg.to_owned()),
        ("MACP_AUTH_SIGNING_KEY_JSON", member.to_string()),
    ];
    env.extend(moto.env());
    env
}

/// The names of the threads of process `pid` (Linux).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn rs256_and_es256_tokens_signed_by_kms_verify_like_the_runtime() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let rsa = moto.create_key("RSA_2048", Some("alias/macp-rsa"));
    let ec = moto.create_key("ECC_NIST_P256", None);
    // A signing input far over KMS's 4096-byte RAW limit: DIGEST has none.
    let modes: Vec<String> = (0..120)
        .map(|i| format!("mode-{i:03}-{}", "x".repeat(40)))
        .collect();
    let cases = [
        ("RS256", "alias/macp-rsa", &rsa, "kms-rsa"),
        ("ES256", ec.arn.as_str(), &ec, "kms-ec"),
    ];
    for (alg, reference, key, kid) in cases {
        let member = json!({"kid": kid, "alg": alg, "aws_kms": reference});
        let service = Spawned::start(&service_env(&moto, alg, &member)).await;
        let base = service.base();
        assert!(
            thread_names(service.pid())
                .iter()
                .any(|name| name == "macp-kms")
        );
        let http = reqwest::Client::new();
        let minted: Value = http
            .post(format!("{base}/tokens"))
            .json(&json!({"sender": "agent://kms", "scopes": {"allowed_modes": modes}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = minted["token"].as_str().expect("a token").to_owned();
        assert!(token.len() > 4096, "the signing input exceeds RAW's limit");
        let jwks = http
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let verified = verify_like_runtime(&token, &jwks, "macp-auth-service", "macp-runtime")
            .unwrap_or_else(|err| panic!("{alg}: {err}"));
        assert_eq!(verified.claims.sub, "agent://kms");
        assert_eq!(
            verified
                .claims
                .macp_scopes
                .unwrap()
                .allowed_modes
                .unwrap()
                .len(),
            120
        );
        assert_eq!(token_parts(&token).0["kid"], kid);
        let jwks: Value = serde_json::from_slice(&jwks).unwrap();
        assert!(
            same_key(&jwks["keys"][0], &public_members(&key.spki)),
            "{alg}: the JWKS holds KMS's public key"
        );
        let log = service.stop().await;
        assert!(
            log.contains(&format!("key {kid} is held by aws_kms {reference}")),
            "{log}"
        );
        assert!(
            !log.contains("testing-secret-key"),
            "credentials reached the log"
        );
    }
}

#[tokio::test]
async fn a_service_with_in_process_keys_builds_no_aws_client() {
    let service = Spawned::start(&[]).await;
    let names = thread_names(service.pid());
    assert!(
        names.iter().any(|name| name.starts_with("macp-signer")),
        "{names:?}"
    );
    assert!(!names.iter().any(|name| name == "macp-kms"), "{names:?}");
    service.stop().await;
}

#[test]
fn kms_keys_that_cannot_sign_stop_startup_with_one_line_naming_the_key() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let rsa = moto.create_key("RSA_2048", None);
    let cases = [
        (
            json!({"kid": "kms-1", "aws_kms": "alias/missing"}),
            "ES256",
            None,
            "key 1 (kid \"kms-1\"): aws_kms key alias/missing: object not found: no KMS key matches alias/missing",
        ),
        (
            json!({"kid": "kms-2", "aws_kms": rsa.key_id}),
            "ES256",
            None,
            "the key is RSA, but ES256 needs an EC P-256 key",
        ),
        (
            json!({"aws_kms": rsa.key_id}),
            "RS256",
            Some("AWS_REGION"),
            "no AWS region: set AWS_REGION",
        ),
        (
            json!({"aws_kms": "not a key"}),
            "RS256",
            None,
            "invalid reference: an aws_kms reference must be a key ID, a key ARN, alias/NAME or an alias ARN",
        ),
    ];
    for (member, alg, unset, expected) in cases {
        let mut command = binary();
        command.envs(service_env(&moto, alg, &member));
        if let Some(name) = unset {
            command.env_remove(name);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{member}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{member}: one line: {stderr:?}");
        assert!(
            stderr.contains(expected),
            "{member}: {stderr:?} lacks {expected:?}"
        );
        assert!(!stderr.contains("testing-secret-key"), "{stderr}");
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn mint(http: &reqwest::Client, base: &str) -> reqwest::Response {
    http.post(format!("{base}/tokens"))
        .json(&json!({"sender": "agent://stall"}))
        .send()
        .await
        .unwrap()
}

/// Three mints against a stalled store: each is answered 503 within the
/// deadline (and a second), while `/healthz` and the JWKS stay quick.
async fn assert_stalled_mints_are_refused_in_time(
    http: &reqwest::Client,
    base: &str,
    deadline: Duration,
) {
    for attempt in 1..=3 {
        let started = Instant::now();
        let response = mint(http, base).await;
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 503, "attempt {attempt}");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": "signing backend unavailable, retry shortly"})
        );
        assert!(
            elapsed < deadline + Duration::from_secs(1),
            "attempt {attempt}: {elapsed:?}"
        );
        // A stalled store never holds up what does not sign.
        let quick = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        assert_eq!(get(&quick, &format!("{base}/healthz")).await.0, 200);
        assert_eq!(
            get(&quick, &format!("{base}/.well-known/jwks.json"))
                .await
                .0,
            200
        );
    }
}

/// `/metrics` counts at least three timeouts and times the store's calls.
async fn assert_timeouts_are_counted(http: &reqwest::Client, base: &str) {
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let timeouts = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                r#"macp_auth_backend_signatures_total{backend="aws_kms",outcome="timeout"} "#,
            )
        })
        .and_then(|value| value.parse::<u64>().ok());
    assert!(timeouts.is_some_and(|count| count >= 3), "{metrics}");
    assert!(
        metrics.contains(r#"macp_auth_backend_signing_duration_seconds_count{backend="aws_kms"}"#)
    );
}

/// The log has one audit record per refused mint, and says when the store
/// failed and when it answered again.
fn assert_outage_is_logged(log: &str) {
    let refusals = log
        .lines()
        .filter(|line| {
            line.contains("mint refused") && line.contains(r#"outcome="backend_unavailable""#)
        })
        .count();
    assert_eq!(refusals, 3, "one audit record per refusal:\n{log}");
    assert!(
        log.contains("signing backend aws_kms failed 3 times in a row"),
        "{log}"
    );
    assert!(
        log.contains("signing backend aws_kms answers again: ready"),
        "{log}"
    );
}

#[tokio::test]
async fn a_stalled_kms_answers_503_within_the_deadline_and_readiness_follows_it_down_and_up() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let key = moto.create_key("ECC_NIST_P256", None);
    let deadline = Duration::from_millis(500);
    let mut env = service_env(
        &moto,
        "ES256",
        &json!({"kid": "kms-1", "aws_kms": key.key_id}),
    );
    env.push((
        "MACP_AUTH_SIGNING_TIMEOUT_MS",
        deadline.as_millis().to_string(),
    ));
    let service = Spawned::start(&env).await;
    let base = service.base();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(mint(&http, &base).await.status(), 200);
    assert_eq!(get(&http, &format!("{base}/readyz")).await.0, 200);

    moto.pause();
    assert_stalled_mints_are_refused_in_time(&http, &base, deadline).await;
    let (status, body) = get(&http, &format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({"error": "not ready: signing backend unavailable"})
    );
    assert_timeouts_are_counted(&http, &base).await;

    moto.resume();
    // Readiness comes back by itself: the service probes the store while
    // it is unavailable, since an unready replica gets no mints.
    let started = Instant::now();
    while get(&http, &format!("{base}/readyz")).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = mint(&http, &base).await;
    assert_eq!(recovered.status(), 200);

    let log = service.stop().await;
    assert_outage_is_logged(&log);
}

#[tokio::test]
async fn an_alias_re_pointed_at_another_key_is_refused_at_reload_under_the_same_kid() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let first = moto.create_key("ECC_NIST_P256", Some("alias/macp-moving"));
    let dir = TempDir::new("kms-moving");
    let ring = dir.join("ring.json");
    let member = json!({"kid": "kms-1", "alg": "ES256", "aws_kms": "alias/macp-moving"});
    std::fs::write(&ring, ring_text(&[&member])).unwrap();
    let mut env = vec![
        ("MACP_AUTH_SIGNING_ALG", "ES256".to_owned()),
        ("MACP_AUTH_SIGNING_KEY_FILE", ring.display().to_string()),
        ("MACP_AUTH_KEY_POLL_SECONDS", "0".to_owned()),
    ];
    env.extend(moto.env());
    let service = Spawned::start(&env).await;

    let second = moto.create_key("ECC_NIST_P256", None);
    moto.point_alias("alias/macp-moving", &second.key_id);
    // Any edit of the ring reloads it, and with it the alias.
    let pending = es256_key("file-next", Some(32_503_680_000));
    std::fs::write(&ring, ring_text(&[&member, &pending])).unwrap();
    service.signal(libc::SIGHUP);
    let refused = "key ring reload (SIGHUP) failed, keeping the current ring: MACP_AUTH_SIGNING_KEY_FILE has kid \"kms-1\" naming a different key than the ring in force; give the new key a new kid";
    let started = Instant::now();
    while !service.log().contains(refused) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no refusal: {}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", service.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    assert!(
        same_key(&jwks["keys"][0], &public_members(&first.spki)),
        "kms-1 still publishes the key it signs with: {jwks}"
    );
    service.stop().await;
}

#[test]
fn an_aws_configuration_that_does_not_load_in_time_stops_startup_with_one_line() {
    // Instance metadata that accepts connections and never answers: the
    // region lookup waits on it, as on a host whose metadata endpoint is
    // firewalled.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let member = json!({"kid": "kms-1", "alg": "ES256", "aws_kms": "alias/macp"});
    let started = Instant::now();
    let output = binary()
        .env("MACP_AUTH_SIGNING_ALG", "ES256")
        .env("MACP_AUTH_SIGNING_KEY_JSON", member.to_string())
        .env("MACP_AUTH_SIGNING_TIMEOUT_MS", "300")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, no panic: {stderr:?}");
    let expected = "aws_kms key alias/macp: unreachable: the AWS configuration (region, credentials providers) did not load within 300 ms";
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
