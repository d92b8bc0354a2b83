//! Zero-disruption rotation, driven by a manual clock: pre-publication,
//! the switch at activation, retirement after the last token expires,
//! replica agreement, and a verifier that caches the JWKS like the runtime.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use macp_auth_service::clock::{Clock, ManualClock};
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::{AppState, Config};
use serde_json::{Value, json};

use crate::support::{
    self, AppBuilder, TempDir, config, es256_key, mint, now, request, ring_text, send,
    state_with_ring, token_parts, verify_like_runtime,
};

const MAX_TTL: u64 = 3600;
const LEEWAY: u64 = 60;

fn key(kid: &str, activate_at: Option<u64>) -> Value {
    es256_key(kid, activate_at)
}

fn es256() -> Config {
    config(SigningAlg::Es256)
}

async fn jwks_kids(state: &AppState) -> Vec<String> {
    let reply = send(state, Method::GET, "/.well-known/jwks.json", None, "").await;
    support::jwks_kids(&reply.json)
}

async fn signing_kid(state: &AppState) -> String {
    let reply = mint(state, r#"{"sender":"agent://rotation"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    let (header, _, _) = token_parts(reply.json["token"].as_str().unwrap());
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_key_is_published_before_it_signs_and_retired_after_its_last_token_expires() {
    let t0 = now();
    let activation = t0 + 900;
    let clock = ManualClock::at(t0);
    let (old, new) = (key("old", None), key("new", Some(activation)));
    let state = state_with_ring(es256(), &ring_text(&[&old, &new]), Arc::new(clock.clone()));

    assert_eq!(jwks_kids(&state).await, ["old", "new"], "pre-published");
    assert_eq!(signing_kid(&state).await, "old", "not yet active");

    clock.set(activation - 1);
    assert_eq!(signing_kid(&state).await, "old");
    clock.set(activation);
    assert_eq!(
        signing_kid(&state).await,
        "new",
        "switches at the activation instant"
    );
    assert_eq!(
        jwks_kids(&state).await,
        ["old", "new"],
        "old tokens still verify"
    );

    let retirement = activation + MAX_TTL + LEEWAY;
    clock.set(retirement - 1);
    assert_eq!(jwks_kids(&state).await, ["old", "new"]);
    clock.set(retirement);
    assert_eq!(
        jwks_kids(&state).await,
        ["new"],
        "gone once no token it signed can be valid"
    );
}

#[tokio::test]
async fn replicas_sharing_a_ring_publish_identical_jwks_and_sign_with_the_same_kid() {
    let t0 = now();
    let ring = ring_text(&[
        &key("a", None),
        &key("b", Some(t0 + 100)),
        &key("c", Some(t0 + 5000)),
    ]);
    let clock = ManualClock::at(t0);
    let first = state_with_ring(es256(), &ring, Arc::new(clock.clone()));
    let second = state_with_ring(es256(), &ring, Arc::new(clock.clone()));
    for at in [
        t0,
        t0 + 100,
        t0 + 3000,
        t0 + 5000,
        t0 + 100 + MAX_TTL + LEEWAY,
        t0 + 5000 + MAX_TTL + LEEWAY,
    ] {
        clock.set(at);
        let a = send(&first, Method::GET, "/.well-known/jwks.json", None, "").await;
        let b = send(&second, Method::GET, "/.well-known/jwks.json", None, "").await;
        assert_eq!(a.json, b.json, "at +{}", at - t0);
        assert_eq!(a.headers["etag"], b.headers["etag"], "at +{}", at - t0);
        assert_eq!(
            signing_kid(&first).await,
            signing_kid(&second).await,
            "at +{}",
            at - t0
        );
    }
}

/// A verifier like the MACP runtime: it caches the JWKS for `ttl` seconds
/// and never refetches on an unknown kid.
struct CachingVerifier {
    ttl: u64,
    cache: Option<(u64, Vec<u8>)>,
}

impl CachingVerifier {
    fn new(ttl: u64) -> Self {
        CachingVerifier { ttl, cache: None }
    }

    async fn refresh_if_due(&mut self, state: &AppState, now: u64) {
        if self
            .cache
            .as_ref()
            .is_none_or(|(fetched, _)| now >= fetched + self.ttl)
        {
            let reply = send(state, Method::GET, "/.well-known/jwks.json", None, "").await;
            self.cache = Some((now, serde_json::to_vec(&reply.json).unwrap()));
        }
    }

    fn accepts(&self, token: &str) -> bool {
        let (_, jwks) = self.cache.as_ref().expect("refreshed before use");
        verify_like_runtime(token, jwks, "macp-auth-service", "macp-runtime").is_ok()
    }
}

/// A change to the ring file at some instant, followed by a reload.
struct RingChange<'a> {
    at: u64,
    path: &'a std::path::Path,
    text: String,
}

/// Mints a token every 7 s from `t0` to `end` and has a caching verifier
/// check each one when minted, half-way through its life and just before it
/// expires; applies `change` when its time comes. Returns how many checks
/// were rejected, and the kids that signed, in order.
async fn rejections_across(
    state: &AppState,
    clock: &ManualClock,
    t0: u64,
    end: u64,
    mut change: Option<RingChange<'_>>,
) -> (usize, Vec<String>) {
    let mut verifier = CachingVerifier::new(300);
    let mut pending: Vec<(u64, String)> = Vec::new();
    let mut rejected = 0;
    let mut signers: Vec<String> = Vec::new();
    let step = 7;
    let mut at = t0;
    while at <= end {
        clock.set(at);
        if let Some(due) = change.take_if(|change| change.at <= at) {
            std::fs::write(due.path, &due.text).unwrap();
            state.keys().reload().unwrap();
        }
        verifier.refresh_if_due(state, at).await;
        let reply = mint(state, r#"{"sender":"agent://rotation","ttl_seconds":3600}"#).await;
        assert_eq!(reply.status, StatusCode::OK);
        let token = reply.json["token"].as_str().unwrap().to_owned();
        let (header, claims, _) = token_parts(&token);
        let kid = header["kid"].as_str().unwrap().to_owned();
        if signers.last() != Some(&kid) {
            signers.push(kid);
        }
        let exp = claims["exp"].as_u64().unwrap();
        pending.push((at + 1800, token.clone()));
        pending.push((exp - 1, token.clone()));
        if !verifier.accepts(&token) {
            rejected += 1;
        }
        let (due, later): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(check_at, _)| *check_at <= at);
        pending = later;
        for (_, token) in due {
            if !verifier.accepts(&token) {
                rejected += 1;
            }
        }
        at += step;
    }
    (rejected, signers)
}

#[tokio::test]
async fn a_verifier_that_caches_the_jwks_rejects_no_token_across_a_scheduled_rotation() {
    let t0 = now();
    let activation = t0 + 900; // more than the verifier's 300 s cache, as the window advises
    let clock = ManualClock::at(t0);
    let ring = ring_text(&[&key("old", None), &key("new", Some(activation))]);
    let state = state_with_ring(es256(), &ring, Arc::new(clock.clone()));
    let end = activation + MAX_TTL + LEEWAY + 600;
    let (rejected, signers) = rejections_across(&state, &clock, t0, end, None).await;
    assert_eq!(signers, ["old", "new"], "the run spans the switch");
    assert_eq!(jwks_kids(&state).await, ["new"], "and the retirement");
    assert_eq!(rejected, 0, "no verifier-visible failure at any moment");
}

/// A service whose ring lives in a file (in a directory removed on drop), so
/// the test can change it.
fn state_from_file(text: &str, clock: &ManualClock) -> (AppState, TempDir, std::path::PathBuf) {
    let dir = TempDir::new("rotation");
    let path = dir.join("ring.json");
    std::fs::write(&path, text).unwrap();
    let state = AppBuilder::from(es256())
        .key_file(&path, None)
        .clock(Arc::new(clock.clone()))
        .state();
    (state, dir, path)
}

#[tokio::test]
async fn a_key_added_by_reload_with_enough_notice_rotates_without_a_rejection() {
    let t0 = now();
    let clock = ManualClock::at(t0);
    let old = key("old", None);
    let (state, _dir, path) = state_from_file(&ring_text(&[&old]), &clock);
    let added_at = t0 + 100;
    let change = RingChange {
        at: added_at,
        path: &path,
        text: ring_text(&[&old, &key("new", Some(added_at + 600))]),
    };
    let end = added_at + 600 + MAX_TTL + LEEWAY + 300;
    let (rejected, signers) = rejections_across(&state, &clock, t0, end, Some(change)).await;
    assert_eq!(signers, ["old", "new"]);
    assert_eq!(rejected, 0);
}

#[tokio::test]
async fn the_same_verifier_rejects_tokens_when_a_key_signs_without_pre_publication() {
    // The negative control: proves the simulation can see a failure. The
    // new key arrives by reload and signs 30 s later, inside the verifier's
    // 300 s cache of a JWKS that lacks it.
    let t0 = now();
    let clock = ManualClock::at(t0);
    let old = key("old", None);
    let (state, _dir, path) = state_from_file(&ring_text(&[&old]), &clock);
    let change = RingChange {
        at: t0 + 100,
        path: &path,
        text: ring_text(&[&old, &key("new", Some(t0 + 130))]),
    };
    let (rejected, signers) = rejections_across(&state, &clock, t0, t0 + 900, Some(change)).await;
    assert_eq!(signers, ["old", "new"]);
    assert!(
        rejected > 0,
        "tokens from a key the cached JWKS lacks are rejected"
    );
}

#[tokio::test]
async fn the_jwks_carries_a_strong_etag_and_a_bounded_cache_lifetime() {
    let t0 = now();
    let clock = ManualClock::at(t0);
    let ring = ring_text(&[&key("old", None), &key("new", Some(t0))]);
    let state = state_with_ring(es256(), &ring, Arc::new(clock.clone()));

    let reply = send(&state, Method::GET, "/.well-known/jwks.json", None, "").await;
    assert_eq!(reply.headers["cache-control"], "public, max-age=300");
    let etag = reply.headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );

    let retirement = t0 + MAX_TTL + LEEWAY;
    clock.set(retirement - 42);
    let near = send(&state, Method::GET, "/.well-known/jwks.json", None, "").await;
    assert_eq!(
        near.headers["cache-control"], "public, max-age=42",
        "never outlives the retirement"
    );

    let response = request(
        &state,
        Method::GET,
        "/.well-known/jwks.json",
        &[("if-none-match", &etag)],
        "",
    )
    .await;
    assert_eq!(response.status, StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers["etag"], etag.as_str());

    clock.set(retirement);
    let response = request(
        &state,
        Method::GET,
        "/.well-known/jwks.json",
        &[("if-none-match", &etag)],
        "",
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "the set changed, so the old tag is stale"
    );
}

#[tokio::test]
async fn the_jwks_max_age_is_configurable() {
    let t0 = now();
    let state = state_with_ring(
        {
            let mut config = es256();
            config.keys.jwks_max_age_seconds = 30;
            config
        },
        &ring_text(&[&key("only", None)]),
        Arc::new(ManualClock::at(t0)),
    );
    let reply = send(&state, Method::GET, "/.well-known/jwks.json", None, "").await;
    assert_eq!(reply.headers["cache-control"], "public, max-age=30");
}

#[tokio::test]
async fn discovery_points_at_the_jwks_by_public_url_or_host() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(now()));
    let ring = ring_text(&[&key("only", None)]);
    let pinned = AppBuilder::from(es256())
        .public_url("https://auth.example.com")
        .configure(|config| config.tokens.issuer = "https://auth.example.com".into())
        .ring(&ring)
        .clock(clock.clone())
        .state();
    let reply = send(
        &pinned,
        Method::GET,
        "/.well-known/openid-configuration",
        None,
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["issuer"], "https://auth.example.com");
    assert_eq!(
        reply.json["jwks_uri"],
        "https://auth.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        reply.json["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(reply.headers["cache-control"], "public, max-age=300");

    let by_host = state_with_ring(es256(), &ring, clock);
    let response = request(
        &by_host,
        Method::GET,
        "/.well-known/openid-configuration",
        &[("host", "auth.internal:3200")],
        "",
    )
    .await;
    let document: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        response.headers["cache-control"], "private, max-age=300",
        "a Host-derived document is no shared cache's to keep"
    );
    assert_eq!(
        document["jwks_uri"],
        "http://auth.internal:3200/.well-known/jwks.json"
    );

    let response = request(
        &by_host,
        Method::GET,
        "/.well-known/openid-configuration",
        &[("host", "auth.internal:3200"), ("host", "evil.example")],
        "",
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json["error"],
        "invalid request: send exactly one Host header"
    );
}
