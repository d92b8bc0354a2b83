//! Who may mint what (issue 11): workload-identity clients against a
//! stand-in OIDC issuer served by the test, per-client scope ceilings, and
//! known scope members typed the way the runtime reads them.

use axum::http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use macp_auth_service::AppState;
use macp_auth_service::clients::secret_digest_hex;
use macp_auth_service::config::KeyMaterial;
use macp_auth_service::keys::SigningAlg;
use serde_json::{Value, json};

use crate::support::issuer::{Issuer, IssuerKey};
use crate::support::{Reply, config, request, send, state_with, token_parts, verify_like_runtime};

const AUDIENCE: &str = "macp-auth-service";
const SUBJECT: &str = "system:serviceaccount:macp:control-plane";
const SECRET: &str = "secret-client-secret";

/// A list with a secret client and a JWT client trusting `issuer` by
/// discovery, side by side.
fn clients_for(issuer: &str, extra: &[Value]) -> String {
    let mut list = vec![
        json!({"name": "secret-client", "secret_sha256": secret_digest_hex(SECRET), "senders": ["agent://**"]}),
        json!({"name": "k8s", "jwt": {"issuer": issuer, "audiences": [AUDIENCE], "subjects": ["system:serviceaccount:macp:*"]}, "senders": ["agent://team-a/*"], "max_ttl_seconds": 900}),
    ];
    list.extend(extra.iter().cloned());
    Value::Array(list).to_string()
}

fn service(clients: String) -> AppState {
    state_with({
        let mut config = config(SigningAlg::Es256);
        config.clients.inline = Some(KeyMaterial::new(clients));
        config
    })
}

async fn mint_with(state: &AppState, credential: &str, body: &str) -> Reply {
    let bearer = format!("Bearer {credential}");
    request(
        state,
        Method::POST,
        "/tokens",
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        body.to_owned(),
    )
    .await
}

const BODY: &str = r#"{"sender":"agent://team-a/risk","scopes":{"max_open_sessions":2}}"#;

#[tokio::test]
async fn a_valid_workload_jwt_mints_a_token_the_runtime_accepts() {
    let issuer = Issuer::start().await;
    let state = service(clients_for(issuer.issuer(), &[]));
    let caller = issuer.token(&issuer.claims(SUBJECT, AUDIENCE));
    let reply = mint_with(&state, &caller, BODY).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let token = reply.json["token"].as_str().unwrap();
    let jwks = send(&state, Method::GET, "/.well-known/jwks.json", None, "").await;
    let verified = verify_like_runtime(
        token,
        jwks.json.to_string().as_bytes(),
        "macp-auth-service",
        "macp-runtime",
    )
    .unwrap();
    assert_eq!(verified.claims.sub, "agent://team-a/risk");
    assert_eq!(
        verified.claims.macp_scopes.unwrap().max_open_sessions,
        Some(2)
    );
    // Discovery, then the JWKS: one fetch each.
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));
    // The JWT client's own policy applies: its senders and TTL ceiling.
    let (_, claims, _) = token_parts(token);
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 900);
    let elsewhere = mint_with(&state, &caller, r#"{"sender":"agent://team-b/x"}"#).await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    // The secret client beside it works unchanged.
    let by_secret = mint_with(&state, SECRET, r#"{"sender":"agent://team-b/x"}"#).await;
    assert_eq!(by_secret.status, StatusCode::OK);
    let wrong_secret = mint_with(&state, "nope", BODY).await;
    assert_eq!(wrong_secret.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_secret.headers["www-authenticate"], "Bearer");
    assert_eq!(
        wrong_secret.json,
        json!({"error": "unknown client credentials"})
    );
}

#[tokio::test]
async fn every_bad_workload_jwt_gets_a_generic_401() {
    let issuer = Issuer::start().await;
    let state = service(clients_for(issuer.issuer(), &[]));
    let claims = issuer.claims(SUBJECT, AUDIENCE);
    let with = |key: &str, value: Value| {
        let mut claims = claims.clone();
        claims[key] = value;
        claims
    };
    let now = crate::support::now();
    let stranger = IssuerKey::generate("k1", Algorithm::RS256);
    let payload = token_parts(&issuer.token(&claims)).2;
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let cases = [
        (
            "an expired token",
            issuer.token(&with("exp", json!(now - 60))),
        ),
        (
            "a token for another audience",
            issuer.token(&with("aud", json!(["kubernetes"]))),
        ),
        (
            "a subject outside the patterns",
            issuer.token(&with("sub", json!("system:serviceaccount:default:x"))),
        ),
        (
            "a token signed by another key",
            stranger.sign(Some("k1"), &claims),
        ),
        (
            "an unsigned token (alg none)",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(payload.as_bytes())
            ),
        ),
        (
            "an HS256 token",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"k1"),
            )
            .unwrap(),
        ),
        (
            "a token from an unknown issuer",
            issuer.token(&with("iss", json!("https://elsewhere.example"))),
        ),
    ];
    for (name, token) in cases {
        let reply = mint_with(&state, &token, BODY).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            reply.headers["www-authenticate"], "Bearer error=\"invalid_token\"",
            "{name}"
        );
        assert_eq!(
            reply.json,
            json!({"error": "invalid client token"}),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_rotated_issuer_key_is_accepted_without_a_restart() {
    let issuer = Issuer::start().await;
    let state = service(clients_for(issuer.issuer(), &[]));
    let claims = issuer.claims(SUBJECT, AUDIENCE);
    assert_eq!(
        mint_with(&state, &issuer.token(&claims), BODY).await.status,
        StatusCode::OK
    );
    assert_eq!(issuer.jwks_fetches(), 1);

    issuer.rotate("k2");
    let rotated = issuer.token(&claims);
    assert_eq!(
        mint_with(&state, &rotated, BODY).await.status,
        StatusCode::OK
    );
    assert_eq!(issuer.jwks_fetches(), 2, "the unknown kid refetched once");
    assert_eq!(
        mint_with(&state, &rotated, BODY).await.status,
        StatusCode::OK
    );
    assert_eq!(issuer.jwks_fetches(), 2, "and the new key is cached");

    // Made-up kids within 10 s of that fetch do not reach the issuer.
    let key = issuer.signing_key();
    for kid in ["k7", "k8", "k9"] {
        let reply = mint_with(&state, &key.sign(Some(kid), &claims), BODY).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{kid}");
    }
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    let mut issuer = Issuer::start().await;
    let state = service(clients_for(issuer.issuer(), &[]));
    let caller = issuer.token(&issuer.claims(SUBJECT, AUDIENCE));
    assert_eq!(
        mint_with(&state, &caller, BODY).await.status,
        StatusCode::OK
    );
    issuer.stop().await;
    assert!(
        std::net::TcpStream::connect(issuer.addr).is_err(),
        "the issuer really is down"
    );
    assert_eq!(
        mint_with(&state, &caller, BODY).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_issuer_never_reached_answers_503_with_retry_after() {
    // Bind, learn the port, close it: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("http://127.0.0.1:{port}");
    let state = service(clients_for(&unreachable, &[]));
    let key = IssuerKey::generate("k1", Algorithm::ES256);
    let now = crate::support::now();
    let caller = key.sign(
        Some("k1"),
        &json!({"iss": unreachable, "sub": SUBJECT, "aud": AUDIENCE, "exp": now + 600}),
    );
    for attempt in ["first (fetch fails)", "second (within the 10 s wait)"] {
        let reply = mint_with(&state, &caller, BODY).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{attempt}");
        let retry_after: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=10).contains(&retry_after), "{attempt}: {retry_after}");
        assert_eq!(
            reply.json,
            json!({"error": "client token cannot be verified now: its issuer's keys are unavailable, retry shortly"}),
            "{attempt}"
        );
    }
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let issuer = Issuer::start().await;
    let state = service(clients_for(issuer.issuer(), &[]));
    let caller = issuer.token(&issuer.claims(SUBJECT, AUDIENCE));
    let mut mints = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (state, caller) = (state.clone(), caller.clone());
        mints.spawn(async move { mint_with(&state, &caller, BODY).await.status });
    }
    while let Some(status) = mints.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn a_jwks_file_client_needs_no_issuer_endpoint() {
    let issuer = Issuer::start_with(IssuerKey::generate("spiffe-1", Algorithm::ES256)).await;
    let dir = std::env::temp_dir().join(format!("macp-callers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, issuer.jwks().to_string()).unwrap();
    let client = json!({"name": "spiffe", "jwt": {"issuer": issuer.issuer(), "audiences": [AUDIENCE], "subjects": ["spiffe://example.org/*"], "jwks_file": path}, "senders": ["agent://**"]});
    let state = service(Value::Array(vec![client]).to_string());
    let caller = issuer.token(&issuer.claims("spiffe://example.org/orchestrator", AUDIENCE));
    assert_eq!(
        mint_with(&state, &caller, BODY).await.status,
        StatusCode::OK
    );
    assert_eq!(issuer.jwks_fetches() + issuer.discovery_fetches(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_jwks_uri_client_skips_discovery() {
    let issuer = Issuer::start().await;
    let client = json!({"name": "direct", "jwt": {"issuer": issuer.issuer(), "audiences": [AUDIENCE], "subjects": [SUBJECT], "jwks_uri": issuer.jwks_uri()}, "senders": ["agent://**"]});
    let state = service(Value::Array(vec![client]).to_string());
    let caller = issuer.token(&issuer.claims(SUBJECT, AUDIENCE));
    assert_eq!(
        mint_with(&state, &caller, BODY).await.status,
        StatusCode::OK
    );
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (0, 1));
}

/// Runs the binary with `env` on a free loopback port until healthy.
async fn start_binary(env: &[(&str, String)]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_macp-auth-service"));
    command
        .env_clear()
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while !reqwest::get(format!("{base}/healthz"))
        .await
        .is_ok_and(|response| response.status() == 200)
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the service exited early"
        );
        assert!(started.elapsed().as_secs() < 20, "never became healthy");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    (child, base)
}

/// SIGTERM, a clean exit, and everything the process wrote to stdout.
fn stop_binary(mut child: std::process::Child) -> String {
    use std::io::Read;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    let mut log = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

async fn post_tokens(base: &str, credential: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/tokens"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {credential}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn audit_records_and_metrics_name_the_client_and_its_caller() {
    let issuer = Issuer::start().await;
    let (child, base) = start_binary(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_LOG_FORMAT", "json".into()),
        ("MACP_AUTH_CLIENTS_JSON", clients_for(issuer.issuer(), &[])),
    ])
    .await;
    let claims = issuer.claims(SUBJECT, AUDIENCE);
    let caller = issuer.token(&claims);
    let empty_modes = r#"{"sender":"agent://team-a/risk","scopes":{"allowed_modes":[]}}"#;
    assert_eq!(post_tokens(&base, &caller, empty_modes).await, 200);
    let mut expired_claims = claims.clone();
    expired_claims["exp"] = json!(crate::support::now() - 120);
    let expired = issuer.token(&expired_claims);
    assert_eq!(post_tokens(&base, &expired, BODY).await, 401);
    assert_eq!(post_tokens(&base, SECRET, BODY).await, 200);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log = stop_binary(child);

    let records: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["target"] == "audit")
        .collect();
    assert_eq!(records.len(), 3, "{log}");
    assert_eq!(records[0]["client"], "k8s");
    assert_eq!(records[0]["caller_sub"], SUBJECT);
    assert_eq!(records[0]["warning"], "allowed_modes_empty");
    assert_eq!(records[1]["outcome"], "unauthenticated");
    assert_eq!(records[1]["reason"], "invalid client token: expired");
    assert_eq!(records[2]["client"], "secret-client");
    assert!(records[2].get("caller_sub").is_none() && records[2].get("warning").is_none());
    for token in [&caller, &expired] {
        assert!(
            !log.contains(token.as_str()),
            "the caller's token is never logged"
        );
        assert!(
            !log.contains(token.split('.').nth(2).unwrap()),
            "nor its signature"
        );
    }
    for series in [
        r#"macp_auth_client_authentications_total{client="k8s",result="ok"} 1"#,
        r#"macp_auth_client_authentications_total{client="-",result="expired"} 1"#,
        r#"macp_auth_client_authentications_total{client="secret-client",result="ok"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

/// Scopes against the ceilings of the clients in the test below, as
/// (name, client, scopes, the field refused if any).
const CEILING_RULES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "a start ceiling refuses an absent can_start_sessions",
        "start",
        r#"{}"#,
        Some("can_start_sessions"),
    ),
    (
        "a start ceiling refuses can_start_sessions true",
        "start",
        r#"{"can_start_sessions": true}"#,
        Some("can_start_sessions"),
    ),
    (
        "a start ceiling passes can_start_sessions false",
        "start",
        r#"{"can_start_sessions": false}"#,
        None,
    ),
    (
        "a registry ceiling refuses can_manage_mode_registry true",
        "registry",
        r#"{"can_manage_mode_registry": true}"#,
        Some("can_manage_mode_registry"),
    ),
    (
        "a registry ceiling passes an absent can_manage_mode_registry",
        "registry",
        r#"{}"#,
        None,
    ),
    (
        "an observer ceiling refuses an absent is_observer",
        "observer",
        r#"{}"#,
        Some("is_observer"),
    ),
    (
        "an observer ceiling refuses is_observer false",
        "observer",
        r#"{"is_observer": false}"#,
        Some("is_observer"),
    ),
    (
        "an observer ceiling passes is_observer true",
        "observer",
        r#"{"is_observer": true}"#,
        None,
    ),
    (
        "a mode ceiling refuses an absent mode list",
        "modes",
        r#"{}"#,
        Some("allowed_modes"),
    ),
    (
        "a mode ceiling refuses a mode outside it",
        "modes",
        r#"{"allowed_modes": ["macp.mode.decision.v1", "macp.mode.other.v1"]}"#,
        Some("allowed_modes"),
    ),
    (
        "a mode ceiling passes a subset",
        "modes",
        r#"{"allowed_modes": ["macp.mode.task.v1"]}"#,
        None,
    ),
    (
        "a session ceiling refuses an absent limit",
        "sessions",
        r#"{}"#,
        Some("max_open_sessions"),
    ),
    (
        "a session ceiling refuses a higher limit",
        "sessions",
        r#"{"max_open_sessions": 6}"#,
        Some("max_open_sessions"),
    ),
    (
        "a session ceiling passes its own limit, written as a float",
        "sessions",
        r#"{"max_open_sessions": 5.0}"#,
        None,
    ),
];

#[tokio::test]
async fn every_ceiling_rule_refuses_beyond_it_and_passes_within_it() {
    let clients: Vec<Value> = [
        ("start", json!({"can_start_sessions": false})),
        ("registry", json!({"can_manage_mode_registry": false})),
        ("observer", json!({"is_observer": true})),
        ("modes", json!({"allowed_modes": ["macp.mode.decision.v1", "macp.mode.task.v1"]})),
        ("sessions", json!({"max_open_sessions": 5})),
    ]
    .into_iter()
    .map(|(name, ceiling)| json!({"name": name, "secret_sha256": secret_digest_hex(name), "senders": ["agent://**"], "scopes": ceiling}))
    .collect();
    let state = service(Value::Array(clients).to_string());
    for &(name, client, scopes, refused) in CEILING_RULES {
        let scopes: Value = serde_json::from_str(scopes).unwrap();
        let body = json!({"sender": "agent://x", "scopes": scopes}).to_string();
        let reply = mint_with(&state, client, &body).await;
        match refused {
            Some(field) => {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{name}: {}",
                    reply.json
                );
                let error = reply.json["error"].as_str().unwrap();
                assert!(
                    error.starts_with(&format!(
                        "client \"{client}\" may not grant scopes.{field}: "
                    )),
                    "{name}: {error}"
                );
            }
            None => {
                assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.json);
                let (_, claims, _) = token_parts(reply.json["token"].as_str().unwrap());
                let mut expected = scopes.clone();
                if let Some(max) = expected.get_mut("max_open_sessions") {
                    *max = json!(max.as_f64().unwrap() as u64);
                }
                assert_eq!(claims["macp_scopes"], expected, "{name}: never rewritten");
            }
        }
    }
}

/// Known scope members of each type, as (name, scopes, the error if refused).
const SCOPE_MEMBER_TYPES: &[(&str, &str, Option<&str>)] = &[
    (
        "a string flag is refused",
        r#"{"can_start_sessions": "yes"}"#,
        Some("scopes.can_start_sessions must be a boolean or null"),
    ),
    (
        "a boolean flag passes",
        r#"{"can_start_sessions": false}"#,
        None,
    ),
    (
        "a numeric registry flag is refused",
        r#"{"can_manage_mode_registry": 1}"#,
        Some("scopes.can_manage_mode_registry must be a boolean or null"),
    ),
    (
        "a null registry flag passes",
        r#"{"can_manage_mode_registry": null}"#,
        None,
    ),
    (
        "an array observer flag is refused",
        r#"{"is_observer": [true]}"#,
        Some("scopes.is_observer must be a boolean or null"),
    ),
    (
        "a boolean observer flag passes",
        r#"{"is_observer": true}"#,
        None,
    ),
    (
        "a string mode list is refused",
        r#"{"allowed_modes": "x"}"#,
        Some("scopes.allowed_modes must be an array of strings or null"),
    ),
    (
        "a mode list with a number is refused",
        r#"{"allowed_modes": ["a", 2]}"#,
        Some("scopes.allowed_modes must be an array of strings or null"),
    ),
    (
        "a mode list of strings passes",
        r#"{"allowed_modes": ["macp.mode.decision.v1"]}"#,
        None,
    ),
    (
        "a negative session limit is refused",
        r#"{"max_open_sessions": -1}"#,
        Some("scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null"),
    ),
    (
        "a fractional session limit is refused",
        r#"{"max_open_sessions": 2.5}"#,
        Some("scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null"),
    ),
    (
        "a session limit beyond 2^64-1 is refused",
        r#"{"max_open_sessions": 1e20}"#,
        Some("scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null"),
    ),
    (
        "a string session limit is refused",
        r#"{"max_open_sessions": "3"}"#,
        Some("scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null"),
    ),
    (
        "the largest session limit passes",
        r#"{"max_open_sessions": 18446744073709551615}"#,
        None,
    ),
    (
        "unknown members pass whatever their type",
        r#"{"note": -1, "modes": "x"}"#,
        None,
    ),
];

#[tokio::test]
async fn every_known_scope_member_is_typed_as_the_runtime_reads_it() {
    let state = state_with(config(SigningAlg::Es256));
    for &(name, scopes, refused) in SCOPE_MEMBER_TYPES {
        let scopes: Value = serde_json::from_str(scopes).unwrap();
        let body = json!({"sender": "agent://x", "scopes": scopes}).to_string();
        let reply = crate::support::mint(&state, &body).await;
        match refused {
            Some(error) => {
                assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
                assert_eq!(reply.json, json!({ "error": error }), "{name}");
            }
            None => {
                assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.json);
                let (_, claims, _) = token_parts(reply.json["token"].as_str().unwrap());
                assert_eq!(claims["macp_scopes"], scopes, "{name}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Property: every token minted with arbitrary scopes is one the runtime can
// read, and every scopes object the runtime could read is minted.
// ---------------------------------------------------------------------------

/// The runtime's claim types, mirrored exactly from `macp-auth` 0.13.0
/// (`auth/resolvers/jwt_bearer.rs`): every scope optional, `null` as
/// absent, unknown members ignored, `max_open_sessions` a `usize`.
#[allow(dead_code, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, serde::Deserialize)]
struct MACPClaims {
    sub: String,
    #[serde(default)]
    macp_scopes: Option<MACPScopes>,
}

#[allow(dead_code, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, serde::Deserialize, Default)]
struct MACPScopes {
    #[serde(default)]
    can_start_sessions: Option<bool>,
    #[serde(default)]
    can_manage_mode_registry: Option<bool>,
    #[serde(default)]
    is_observer: Option<bool>,
    #[serde(default)]
    allowed_modes: Option<Vec<String>>,
    #[serde(default)]
    max_open_sessions: Option<usize>,
}

mod property {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
    use serde_json::{Map, Number};

    const KNOWN: [&str; 5] = [
        "can_start_sessions",
        "can_manage_mode_registry",
        "is_observer",
        "allowed_modes",
        "max_open_sessions",
    ];

    /// Any JSON value a caller might send for a scope, weighted towards the
    /// edges of what the runtime reads.
    fn value() -> impl Strategy<Value = Value> {
        let number = prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u32..100).prop_map(|n| Value::Number(Number::from_f64(f64::from(n)).unwrap())),
            any::<f64>()
                .prop_filter_map("finite", Number::from_f64)
                .prop_map(Value::Number),
            Just(json!(18446744073709551615u64)),
            Just(json!(-0.0)),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number,
            "[a-z.]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec("[a-z.]{0,12}".prop_map(Value::String), 0..4)
                    .prop_map(Value::Array),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{1,6}", inner), 0..3)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    fn scopes() -> impl Strategy<Value = Map<String, Value>> {
        (
            prop::collection::vec((0..KNOWN.len(), value()), 0..6),
            prop::collection::vec(("[a-z_]{1,10}", value()), 0..3),
        )
            .prop_map(|(known, others)| {
                let mut map = Map::new();
                for (index, value) in known {
                    map.insert(KNOWN[index].to_owned(), value);
                }
                for (key, value) in others {
                    map.entry(key).or_insert(value);
                }
                map
            })
    }

    /// Verifies as the runtime does and deserialises into its claim types.
    fn runtime_reads(token: &str, jwks: &Value) -> Result<MACPClaims, String> {
        let header = decode_header(token).map_err(|err| err.to_string())?;
        let jwks: JwkSet = serde_json::from_value(jwks.clone()).map_err(|err| err.to_string())?;
        let jwk = jwks
            .find(header.kid.as_deref().unwrap_or(""))
            .ok_or("no such kid")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|err| err.to_string())?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&["macp-auth-service"]);
        validation.set_audience(&["macp-runtime"]);
        decode::<MACPClaims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn every_token_minted_with_arbitrary_scopes_deserialises_in_the_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = state_with(config(SigningAlg::Es256));
        let jwks = runtime
            .block_on(send(
                &state,
                Method::GET,
                "/.well-known/jwks.json",
                None,
                "",
            ))
            .json;
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&scopes(), |scopes| {
                let body = json!({"sender": "agent://p", "scopes": scopes}).to_string();
                let reply = runtime.block_on(crate::support::mint(&state, &body));
                let readable_as_sent =
                    serde_json::from_value::<MACPScopes>(Value::Object(scopes.clone())).is_ok();
                match reply.status {
                    StatusCode::OK => {
                        let token = reply.json["token"].as_str().unwrap();
                        runtime_reads(token, &jwks).map_err(|err| {
                            TestCaseError::fail(format!("the runtime cannot read {body}: {err}"))
                        })?;
                    }
                    StatusCode::BAD_REQUEST => {
                        let error = reply.json["error"].as_str().unwrap_or("");
                        prop_assert!(error.starts_with("scopes."), "{body}: {error}");
                        prop_assert!(
                            !readable_as_sent,
                            "refused scopes the runtime reads as sent: {body}"
                        );
                    }
                    other => prop_assert!(false, "{body}: {other} {}", reply.json),
                }
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn clients_new_makes_jwt_clients_and_check_config_describes_every_client() {
    let bin = env!("CARGO_BIN_EXE_macp-auth-service");
    let output = std::process::Command::new(bin)
        .env_clear()
        .args(["clients", "new", "--name", "k8s", "--senders", "agent://**"])
        .args(["--jwt-issuer", "https://kubernetes.default.svc"])
        .args([
            "--jwt-audience",
            AUDIENCE,
            "--jwt-subject",
            "system:serviceaccount:macp:*",
        ])
        .args([
            "--ceiling-max-open-sessions",
            "25",
            "--ceiling-allowed-modes",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        printed,
        json!({"client": {"name": "k8s", "jwt": {"issuer": "https://kubernetes.default.svc", "audiences": [AUDIENCE], "subjects": ["system:serviceaccount:macp:*"]}, "senders": ["agent://**"], "scopes": {"allowed_modes": [], "max_open_sessions": 25}}})
    );

    let refused = std::process::Command::new(bin)
        .env_clear()
        .args(["clients", "new", "--name", "x", "--senders", "*"])
        .args([
            "--jwt-issuer",
            "http://issuer.example",
            "--jwt-audience",
            "a",
            "--jwt-subject",
            "*",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("\"jwt.issuer\" must be an https URL"),
        "{stderr}"
    );

    let digest = secret_digest_hex(SECRET);
    let list = json!([
        {"name": "secret-client", "secret_sha256": digest, "senders": ["agent://a/*"], "max_ttl_seconds": 600},
        printed["client"],
    ]);
    let checked = std::process::Command::new(bin)
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("MACP_AUTH_SIGNING_ALG", "ES256")
        .env("MACP_AUTH_CLIENTS_JSON", list.to_string())
        .arg("check-config")
        .output()
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");
    let report = String::from_utf8(checked.stdout).unwrap();
    for line in [
        "client secret-client: kind=secret senders=agent://a/* max_ttl_seconds=600 scopes_ceiling=none",
        "client k8s: kind=jwt issuer=https://kubernetes.default.svc audiences=macp-auth-service subjects=system:serviceaccount:macp:* keys=https://kubernetes.default.svc/.well-known/openid-configuration senders=agent://** max_ttl_seconds=- scopes_ceiling={\"allowed_modes\":[],\"max_open_sessions\":25}",
    ] {
        assert!(report.lines().any(|l| l == line), "{line}\nin\n{report}");
    }
    assert!(!report.contains(&digest), "never a digest");
}

#[tokio::test]
async fn an_https_issuer_is_trusted_through_its_ca_file_only() {
    let issuer = Issuer::start_tls().await;
    let dir = std::env::temp_dir().join(format!("macp-callers-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, issuer.ca_pem()).unwrap();
    let trust = |ca: Option<&std::path::Path>| {
        let mut jwt =
            json!({"issuer": issuer.issuer(), "audiences": [AUDIENCE], "subjects": [SUBJECT]});
        if let Some(ca) = ca {
            jwt["ca_file"] = json!(ca);
        }
        json!([{"name": "k8s", "jwt": jwt, "senders": ["agent://**"]}]).to_string()
    };
    let caller = issuer.token(&issuer.claims(SUBJECT, AUDIENCE));

    let with_ca = service(trust(Some(&ca_file)));
    let reply = mint_with(&with_ca, &caller, BODY).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));

    // The system roots do not know the throwaway CA: no keys, so 503.
    let without_ca = service(trust(None));
    let reply = mint_with(&without_ca, &caller, BODY).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.json
    );
    assert_eq!(
        issuer.discovery_fetches(),
        1,
        "the TLS handshake failed first"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
