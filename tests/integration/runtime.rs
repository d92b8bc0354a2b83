//! Tokens minted over a real socket and verified as the MACP runtime does.

use macp_auth_service::config::KeyMaterial;
use macp_auth_service::keys::SigningAlg;
use serde_json::{Value, json};

use crate::support::{
    AppBuilder, RuntimeScopes, TestApp, config, private_jwk, state_with, verify_like_runtime,
};

async fn mint_over_http(server: &TestApp, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.url("/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn jwks_over_http(server: &TestApp) -> Vec<u8> {
    let response = reqwest::get(server.url("/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn tokens_from_an_ephemeral_key_verify_like_the_runtime_for_both_algorithms() {
    for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
        let server = TestApp::start(AppBuilder::new(alg).keys_from_config().state()).await;
        let minted = mint_over_http(
            &server,
            json!({
                "sender": "agent://risk",
                "scopes": {
                    "can_start_sessions": true,
                    "can_manage_mode_registry": false,
                    "is_observer": false,
                    "allowed_modes": ["macp.mode.decision.v1"],
                    "max_open_sessions": 3.0
                },
                "ttl_seconds": 600
            }),
        )
        .await;
        let jwks = jwks_over_http(&server).await;
        let token = minted["token"].as_str().unwrap();
        let verified = verify_like_runtime(token, &jwks, "macp-auth-service", "macp-runtime")
            .unwrap_or_else(|err| panic!("{alg}: {err}"));
        assert_eq!(verified.claims.sub, "agent://risk");
        assert_eq!(
            verified.claims.macp_scopes,
            Some(RuntimeScopes {
                can_start_sessions: true,
                can_manage_mode_registry: false,
                is_observer: Some(false),
                allowed_modes: Some(vec!["macp.mode.decision.v1".into()]),
                max_open_sessions: Some(3),
            }),
            "{alg}"
        );
        assert_eq!(verified.header.kid.as_deref(), Some("dev-key-1"));
        assert_eq!(minted["expires_in_seconds"], 600);
    }
}

#[tokio::test]
async fn the_runtime_rejects_tokens_for_another_audience_or_issuer() {
    let server = TestApp::start(crate::support::state()).await;
    let minted = mint_over_http(&server, json!({"sender": "agent://a"})).await;
    let jwks = jwks_over_http(&server).await;
    let token = minted["token"].as_str().unwrap();
    assert!(verify_like_runtime(token, &jwks, "macp-auth-service", "macp-runtime").is_ok());
    assert!(verify_like_runtime(token, &jwks, "macp-auth-service", "other-runtime").is_err());
    assert!(verify_like_runtime(token, &jwks, "someone-else", "macp-runtime").is_err());
    let mut tampered = token.to_owned();
    tampered.truncate(token.len() - 4);
    tampered.push_str("AAAA");
    assert!(verify_like_runtime(&tampered, &jwks, "macp-auth-service", "macp-runtime").is_err());
}

#[tokio::test]
async fn two_instances_sharing_a_pinned_key_verify_each_others_tokens() {
    for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
        let pinned = {
            let mut config = config(alg);
            config.keys.inline = Some(KeyMaterial::new(private_jwk(alg).to_owned()));
            config
        };
        let first = TestApp::start(state_with(pinned.clone())).await;
        let second =
            TestApp::start(AppBuilder::from(pinned.clone()).keys_from_config().state()).await;
        let minted = mint_over_http(&first, json!({"sender": "agent://shared"})).await;
        let first_jwks = jwks_over_http(&first).await;
        let second_jwks = jwks_over_http(&second).await;
        assert_eq!(first_jwks, second_jwks, "{alg}: same key, same JWKS bytes");
        let verified = verify_like_runtime(
            minted["token"].as_str().unwrap(),
            &second_jwks,
            "macp-auth-service",
            "macp-runtime",
        )
        .unwrap_or_else(|err| panic!("{alg}: {err}"));
        assert_eq!(verified.claims.sub, "agent://shared");
    }
}

#[tokio::test]
async fn tokens_from_one_key_do_not_verify_against_another_keys_jwks() {
    let ours = TestApp::start(crate::support::state()).await;
    let other = TestApp::start(
        AppBuilder::new(SigningAlg::Rs256)
            .keys_from_config()
            .state(),
    )
    .await;
    let minted = mint_over_http(&ours, json!({"sender": "agent://a"})).await;
    let err = verify_like_runtime(
        minted["token"].as_str().unwrap(),
        &jwks_over_http(&other).await,
        "macp-auth-service",
        "macp-runtime",
    )
    .unwrap_err();
    assert!(err.contains("unknown kid"), "{err}");
}
