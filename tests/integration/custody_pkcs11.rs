//! Signing keys in a PKCS#11 token, against a real one: SoftHSM2, with a
//! token the test initialises in a temporary directory and keys generated
//! inside it by `pkcs11-tool`. Tokens minted through it are verified the way
//! the MACP runtime verifies them, the JWKS is compared with the public key
//! the token holds (read back with `pkcs11-tool`, not by the service), and
//! bad PINs and missing objects must stop startup with one clear line.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::Method;
use macp_auth_service::AppState;
use macp_auth_service::clock::ManualClock;
use macp_auth_service::config::KeyMaterial;
use macp_auth_service::keys::SigningAlg;
use serde_json::{Value, json};

use crate::rotation::rejections_across;
use crate::support::jwk::{public_members, same_key, thumbprint};
use crate::support::softhsm::{self, KeyKind, MODULE, PIN, SoftHsm};
use crate::support::{
    AppBuilder, Spawned, TempDir, binary, es256_key, jwks_kids, mint, now, ring_text,
    run_with_stdin, send, token_parts, verify_like_runtime,
};

/// The environment of a service whose ring is `ring`, reaching `hsm` with
/// the module and PIN from the service's own variables.
fn service_env(hsm: &SoftHsm, alg: &str, ring: &Value) -> Vec<(&'static str, String)> {
    let pin_file = pin_file(hsm, PIN);
    let mut env = vec![
        ("MACP_AUTH_SIGNING_ALG", alg.to_owned()),
        ("MACP_AUTH_SIGNING_KEY_JSON", ring.to_string()),
        ("MACP_AUTH_PKCS11_MODULE", MODULE.to_owned()),
        ("MACP_AUTH_PKCS11_PIN_FILE", pin_file.display().to_string()),
    ];
    for (name, value) in hsm.env() {
        env.push((name, value.into_string().unwrap()));
    }
    env
}

fn pin_file(hsm: &SoftHsm, pin: &str) -> PathBuf {
    let path = hsm.dir().join(format!("pin-{}", pin.len()));
    std::fs::write(&path, format!("{pin}\n")).unwrap();
    path
}

#[tokio::test]
async fn tokens_signed_in_the_token_verify_like_the_runtime_and_the_jwks_is_the_token_key() {
    let Some(hsm) = SoftHsm::create("mint") else {
        return;
    };
    let cases = [
        ("RS256", KeyKind::Rsa2048, "rsa-1", "01", Some("hsm-rsa")),
        ("ES256", KeyKind::EcP256, "ec-1", "02", None),
    ];
    for (alg, kind, label, id, kid) in cases {
        let expected = public_members(&hsm.generate(kind, label, id));
        let mut member = json!({"alg": alg, "pkcs11": hsm.uri(label)});
        if let Some(kid) = kid {
            member["kid"] = kid.into();
        }
        let service = Spawned::start(&service_env(&hsm, alg, &member)).await;
        let base = service.base();
        let http = reqwest::Client::new();
        let minted: Value = http
            .post(format!("{base}/tokens"))
            .json(&json!({
                "sender": "agent://hsm",
                "scopes": {"can_start_sessions": true, "allowed_modes": ["debate"], "max_open_sessions": 2}
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = minted["token"].as_str().expect("a token").to_owned();
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
        assert_eq!(verified.claims.sub, "agent://hsm");
        let scopes = verified.claims.macp_scopes.expect("macp_scopes");
        assert!(scopes.can_start_sessions);
        assert_eq!(scopes.allowed_modes, Some(vec!["debate".to_owned()]));
        assert_eq!(scopes.max_open_sessions, Some(2));

        let jwks: Value = serde_json::from_slice(&jwks).unwrap();
        let published = &jwks["keys"][0];
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert!(
            same_key(published, &expected),
            "{alg}: the JWKS publishes {published} but the token holds {expected}"
        );
        let kid = kid.map_or_else(|| thumbprint(&expected), str::to_owned);
        assert_eq!(published["kid"], kid, "{alg}: kid given, or the thumbprint");
        assert_eq!(token_parts(&token).0["kid"], kid);

        let log = service.stop().await;
        let held = format!("key {kid} is held by pkcs11 token=\"macp-mint\" object=\"{label}\"");
        assert!(log.contains(&held), "{alg}: log lacks {held:?}:\n{log}");
        assert!(!log.contains(PIN), "the PIN reached the log");
    }
}

#[test]
fn a_wrong_pin_or_a_missing_object_stops_startup_with_one_line_naming_the_key() {
    let Some(hsm) = SoftHsm::create("refusals") else {
        return;
    };
    hsm.generate(KeyKind::Rsa2048, "rsa-1", "01");
    hsm.generate(KeyKind::EcP256, "ec-alone", "02");
    hsm.delete_public("ec-alone");
    let uri = hsm.uri("rsa-1");
    let cases = [
        (
            "a wrong PIN from the environment",
            json!({"kid": "hsm-1", "pkcs11": uri}),
            Some("0000-wrong-pin"),
            "key 1 (kid \"hsm-1\"): pkcs11 key pkcs11:token=macp-refusals;object=rsa-1: wrong PIN",
        ),
        (
            "a wrong PIN in the URI",
            json!({"kid": "hsm-1", "pkcs11": format!("{uri}?pin-value=0000-wrong-pin")}),
            None,
            "pkcs11 key pkcs11:token=macp-refusals;object=rsa-1: wrong PIN",
        ),
        (
            "a missing object",
            json!({"kid": "hsm-2", "pkcs11": hsm.uri("absent")}),
            None,
            "key 1 (kid \"hsm-2\"): pkcs11 key pkcs11:token=macp-refusals;object=absent: object not found: no private key matches token=\"macp-refusals\" object=\"absent\"",
        ),
        (
            "a missing token",
            json!({"pkcs11": "pkcs11:token=elsewhere;object=rsa-1"}),
            None,
            "object not found: no token matches token=\"elsewhere\" object=\"rsa-1\"",
        ),
        (
            "an RSA key for ES256",
            json!({"alg": "ES256", "pkcs11": uri}),
            None,
            "the key is RSA, but ES256 needs an EC P-256 key",
        ),
        (
            "an EC key without its public key object",
            json!({"alg": "ES256", "pkcs11": hsm.uri("ec-alone")}),
            None,
            "object not found: no public key object matches token=\"macp-refusals\" object=\"ec-alone\"",
        ),
    ];
    for (case, member, env_pin, expected) in cases {
        let alg = member["alg"].as_str().unwrap_or("RS256");
        let mut command = binary();
        command.envs(service_env(&hsm, alg, &member));
        if let Some(pin) = env_pin {
            command
                .env_remove("MACP_AUTH_PKCS11_PIN_FILE")
                .env("MACP_AUTH_PKCS11_PIN", pin);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{case}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: one line: {stderr:?}");
        assert!(
            stderr.contains(expected),
            "{case}: {stderr:?} lacks {expected:?}"
        );
        assert!(
            !stderr.contains("0000-wrong-pin") && !stderr.contains(PIN),
            "{case}: {stderr}"
        );
    }
}

#[test]
fn check_config_and_keys_add_reach_the_token_before_they_answer() {
    let Some(hsm) = SoftHsm::create("commands") else {
        return;
    };
    hsm.generate(KeyKind::EcP256, "next", "03");
    let dir = hsm.dir().join("ring");
    std::fs::create_dir_all(&dir).unwrap();
    let ring = dir.join("ring.json");
    let ring_arg = ring.display().to_string();
    let env = service_env(&hsm, "ES256", &json!({}));
    let keygen = binary()
        .args(["keygen", "--alg", "ES256", "--kid", "old"])
        .output()
        .unwrap();
    let keys_add = |stdin: &str| {
        let mut command = binary();
        command
            .envs(env.clone())
            .args(["keys", "add", "--ring", &ring_arg]);
        run_with_stdin(command, stdin)
    };
    let added = keys_add(&String::from_utf8(keygen.stdout).unwrap());
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let reference = json!({"kid": "hsm-next", "alg": "ES256", "pkcs11": hsm.uri("next"), "activate_at": "2999-01-01T00:00:00Z"});
    let added = keys_add(&reference.to_string());
    let stdout = String::from_utf8_lossy(&added.stdout);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(stdout.contains("2 keys: old, hsm-next"), "{stdout}");

    let before = std::fs::read_to_string(&ring).unwrap();
    let missing = json!({"kid": "hsm-gone", "alg": "ES256", "pkcs11": hsm.uri("gone"), "activate_at": "2999-06-01T00:00:00Z"});
    let refused = keys_add(&missing.to_string());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("object not found"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&ring).unwrap(),
        before,
        "nothing written"
    );

    let stdout = check_config_of_ring(env, &ring_arg);
    assert!(
        stdout.contains("key old: signing, retires 2999-01-01T01:01:00Z, in-process\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "key hsm-next: pending, activates 2999-01-01T00:00:00Z, pkcs11 token=\"macp-commands\" object=\"next\"\n"
        ),
        "{stdout}"
    );
}

/// A service in this process whose ring is `ring`, reaching the shared
/// token with the module and PIN from its configuration.
fn in_process(ring: &str, clock: &ManualClock) -> AppState {
    AppBuilder::new(SigningAlg::Es256)
        .configure(|config| {
            config.keys.inline = Some(KeyMaterial::new(ring.to_owned()));
            config.keys.custody.pkcs11_module = Some(MODULE.into());
            config.keys.custody.pkcs11_pin = Some(KeyMaterial::new(PIN.to_owned()));
        })
        .keys_from_config()
        .clock(Arc::new(clock.clone()))
        .state()
}

async fn jwks(state: &AppState) -> Value {
    send(state, Method::GET, "/.well-known/jwks.json", None, "")
        .await
        .json
}

#[tokio::test]
async fn a_ring_rotating_from_a_file_key_to_an_hsm_key_keeps_a_caching_verifier_happy() {
    let Some(hsm) = softhsm::shared() else {
        return;
    };
    let expected = public_members(&hsm.generate(KeyKind::EcP256, "rotation-next", "a1"));
    let t0 = now();
    let activation = t0 + 900;
    let clock = ManualClock::at(t0);
    let next = json!({"kid": "hsm-next", "alg": "ES256", "pkcs11": hsm.uri("rotation-next"), "activate_at": activation});
    let state = in_process(&ring_text(&[&es256_key("old", None), &next]), &clock);
    let end = activation + 3600 + 60 + 600;
    let (rejected, signers) = rejections_across(&state, &clock, t0, end, None).await;
    assert_eq!(signers, ["old", "hsm-next"], "the run spans the switch");
    assert_eq!(rejected, 0, "no verifier-visible failure at any moment");
    let published = jwks(&state).await;
    assert_eq!(jwks_kids(&published), ["hsm-next"], "and the retirement");
    assert!(same_key(&published["keys"][0], &expected));
}

/// Logs this process out of `hsm`'s token, as a reset token or another
/// library does. PKCS#11 login state belongs to the application: logging
/// out any one session logs out every session of the token, the service's
/// included.
fn log_the_application_out(hsm: &SoftHsm) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let module = Pkcs11::new(MODULE).unwrap();
    let _already = module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = module
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|slot| module.get_token_info(*slot).unwrap().label() == hsm.token)
        .unwrap();
    let session = module.open_ro_session(slot).unwrap();
    // Another test may have logged it out a moment ago.
    let _ = session.logout();
}

#[tokio::test]
async fn after_the_application_is_logged_out_the_key_logs_in_again() {
    let Some(hsm) = softhsm::shared() else {
        return;
    };
    hsm.generate(KeyKind::EcP256, "relogin", "b1");
    let member = json!({"kid": "hsm-relogin", "pkcs11": hsm.uri("relogin")});
    let state = in_process(&member.to_string(), &ManualClock::at(now()));
    let first = mint(&state, r#"{"sender":"agent://relogin"}"#).await;
    assert_eq!(first.status, 200, "{:?}", first.json);

    log_the_application_out(hsm);

    let second = mint(&state, r#"{"sender":"agent://relogin"}"#).await;
    assert_eq!(second.status, 200, "{:?}", second.json);
    let token = second.json["token"].as_str().unwrap();
    let jwks = serde_json::to_vec(&jwks(&state).await).unwrap();
    verify_like_runtime(token, &jwks, "macp-auth-service", "macp-runtime").unwrap();
}

#[tokio::test]
async fn a_reload_with_a_wrong_pin_keeps_the_ring_and_the_live_key_logs_in_again_with_its_own() {
    let Some(hsm) = softhsm::shared() else {
        return;
    };
    hsm.generate(KeyKind::EcP256, "pin-live", "d1");
    hsm.generate(KeyKind::EcP256, "pin-next", "d2");
    let dir = TempDir::new("pin-reload");
    let ring = dir.join("ring.json");
    let live = json!({"kid": "hsm-live", "pkcs11": hsm.uri("pin-live")});
    std::fs::write(&ring, ring_text(&[&live])).unwrap();
    let state = AppBuilder::new(SigningAlg::Es256)
        .key_file(&ring, None)
        .configure(|config| {
            config.keys.custody.pkcs11_module = Some(MODULE.into());
            config.keys.custody.pkcs11_pin = Some(KeyMaterial::new(PIN.to_owned()));
        })
        .state();
    let minted = mint(&state, r#"{"sender":"agent://pin"}"#).await;
    assert_eq!(minted.status, 200, "{:?}", minted.json);

    let wrong_pin = json!({
        "kid": "hsm-next",
        "pkcs11": format!("{}?pin-value=0000-wrong-pin", hsm.uri("pin-next")),
        "activate_at": "2999-01-01T00:00:00Z",
    });
    // Fails before any PIN is offered: no token has this label.
    let absent = json!({"kid": "hsm-gone", "pkcs11": "pkcs11:token=elsewhere;object=pin-next", "activate_at": "2999-06-01T00:00:00Z"});
    let cases = [
        ("a member with a wrong PIN", vec![&live, &wrong_pin]),
        (
            "a member with a wrong PIN beside a member that fails",
            vec![&live, &wrong_pin, &absent],
        ),
    ];
    for (case, members) in cases {
        std::fs::write(&ring, ring_text(&members)).unwrap();
        let err = state.keys().reload().expect_err(case).to_string();
        assert!(!err.contains("0000-wrong-pin"), "{case}: {err}");
        let published = jwks(&state).await;
        assert_eq!(
            jwks_kids(&published),
            ["hsm-live"],
            "{case}: the ring stays"
        );

        log_the_application_out(hsm);
        let minted = mint(&state, r#"{"sender":"agent://pin"}"#).await;
        assert_eq!(
            minted.status, 200,
            "{case}: the live key logs in again with the PIN the token accepted: {:?}",
            minted.json
        );
    }
}

#[test]
fn a_reference_holding_line_breaks_stays_on_the_one_startup_line() {
    let mut cases = vec![(
        json!({"pkcs11": "pkcs11:token=t\nINFO forged line;object=k"}),
        "pkcs11 key pkcs11:token=t\\u{000a}INFO forged line;object=k: no module",
    )];
    if cfg!(feature = "aws-kms") {
        cases.push((
            json!({"aws_kms": "alias/k\r\nERROR forged line"}),
            "aws_kms key alias/k\\u{000d}\\u{000a}ERROR forged line: invalid reference",
        ));
    }
    for (member, expected) in cases {
        let output = binary()
            .env("MACP_AUTH_SIGNING_KEY_JSON", member.to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    }
}

#[test]
fn keys_add_takes_the_algorithm_of_a_reference_without_one_from_the_configuration() {
    let Some(hsm) = SoftHsm::create("add-alg") else {
        return;
    };
    hsm.generate(KeyKind::EcP256, "first", "04");
    let ring = hsm.dir().join("alg-ring.json");
    let ring_arg = ring.display().to_string();
    let reference = json!({"kid": "hsm-first", "pkcs11": hsm.uri("first")}).to_string();
    let keys_add = |alg: &str| {
        let mut command = binary();
        command
            .envs(service_env(&hsm, alg, &json!({})))
            .env_remove("MACP_AUTH_SIGNING_KEY_JSON")
            .args(["keys", "add", "--ring", &ring_arg]);
        run_with_stdin(command, &reference)
    };
    let refused = keys_add("RS256");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("the key is EC P-256, but RS256 needs an RSA key"),
        "{stderr}"
    );
    assert!(!ring.exists(), "nothing written");

    let added = keys_add("ES256");
    let stdout = String::from_utf8_lossy(&added.stdout);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(stdout.contains("1 key: hsm-first"), "{stdout}");
    let stdout = check_config_of_ring(service_env(&hsm, "ES256", &json!({})), &ring_arg);
    assert!(
        stdout.contains("key hsm-first: signing, pkcs11 token=\"macp-add-alg\" object=\"first\""),
        "{stdout}"
    );
}

/// `check-config`'s report (it must succeed) for the ring in file `ring`,
/// with `env` for the rest of the configuration.
fn check_config_of_ring<I, K, V>(env: I, ring: &str) -> String
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let report = binary()
        .envs(env)
        .env_remove("MACP_AUTH_SIGNING_KEY_JSON")
        .env("MACP_AUTH_SIGNING_KEY_FILE", ring)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    String::from_utf8_lossy(&report.stdout).into_owned()
}
