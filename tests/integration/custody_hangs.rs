//! A PKCS#11 token that stops answering: a C shim over SoftHSM2
//! ([`HungModule`]) holds `C_Login`, `C_FindObjectsInit` and `C_Sign` on
//! demand, as a stalled HSM appliance does. What must hold: only PKCS#11
//! work waits for it (probes, the JWKS and in-process keys do not), every
//! PKCS#11 call at load time is bounded, and shutdown never waits for it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::http::Method;
use macp_auth_service::AppState;
use macp_auth_service::config::KeyMaterial;
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::keys::store::load_ring;
use macp_auth_service::reload::ReloadOutcome;
use serde_json::{Value, json};

use crate::support::hung_hsm::HungModule;
use crate::support::softhsm::{self, KeyKind, MODULE, PIN, SoftHsm};
use crate::support::{AppBuilder, TempDir, binary, config, jwks_kids, mint, private_jwk, send};

/// The body every mint sent while the signing key's store fails gets.
fn backend_unavailable() -> Value {
    json!({"error": "signing backend unavailable, retry shortly"})
}

/// A ring member naming `label` on the shared token through `module`.
fn member_through(module: &HungModule, kid: &str, label: &str) -> Value {
    let hsm = softhsm::shared().expect("the shared token exists");
    let uri = format!("{}?module-path={}", hsm.uri(label), module.path().display());
    json!({"kid": kid, "alg": "RS256", "pkcs11": uri})
}

/// What a hung-token test starts from: the shared SoftHSM2 token with an
/// RSA key `label` (CKA_ID `id`) made in it, a shim over the token that
/// hangs on `name`'s trigger, and a temporary directory for the ring file.
/// `None` where SoftHSM2 or a C compiler is missing (never under CI=true).
struct Hung {
    hsm: &'static SoftHsm,
    module: HungModule,
    dir: TempDir,
    ring: std::path::PathBuf,
}

fn hung(name: &str, label: &str, id: &str) -> Option<Hung> {
    let hsm = softhsm::shared()?;
    let module = HungModule::build(name)?;
    hsm.generate(KeyKind::Rsa2048, label, id);
    let dir = TempDir::new(&format!("hung-{name}"));
    let ring = dir.join("ring.json");
    Some(Hung {
        hsm,
        module,
        dir,
        ring,
    })
}

/// State reading its ring from `path`, with the token PIN, a short signing
/// deadline and two signing threads.
fn state_over(path: &std::path::Path, deadline: Duration) -> AppState {
    AppBuilder::new(SigningAlg::Rs256)
        .key_file(path, None)
        .configure(|config| {
            config.keys.custody.pkcs11_pin = Some(KeyMaterial::new(PIN.to_owned()));
            config.keys.custody.signing_timeout = deadline;
        })
        .signer(2, 8)
        .state()
}

async fn get(state: &AppState, path: &str) -> crate::support::Reply {
    send(state, Method::GET, path, None, "").await
}

/// Mints within `limit`, or fails the test instead of hanging it.
async fn mint_within(state: &AppState, limit: Duration) -> crate::support::Reply {
    tokio::time::timeout(limit, mint(state, r#"{"sender":"agent://hung"}"#))
        .await
        .expect("the mint is answered in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_token_leaves_healthz_the_jwks_and_in_process_keys_unaffected() {
    let Some(Hung {
        hsm: _,
        module,
        dir: _dir,
        ring,
    }) = hung("mint", "hung-mint", "c1")
    else {
        return;
    };
    let hsm_member = member_through(&module, "hsm", "hung-mint");
    std::fs::write(&ring, json!({"keys": [hsm_member]}).to_string()).unwrap();
    let state = state_over(&ring, Duration::from_millis(200));
    let second = Duration::from_secs(1);
    assert_eq!(mint_within(&state, second * 5).await.status, 200);

    module.hang();
    // More mints at once than the PKCS#11 threads and their queue hold: the
    // first wait out the deadline, the rest are refused at once, and every
    // one is the backend's 503, never "at capacity".
    let mints: Vec<_> = (0..100)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move { mint_within(&state, Duration::from_secs(5)).await })
        })
        .collect();
    for minted in mints {
        let reply = minted.await.unwrap();
        assert_eq!(reply.status, 503, "{:?}", reply.json);
        assert_eq!(reply.json, backend_unavailable());
        assert_eq!(reply.headers["retry-after"], "1");
    }
    for path in ["/healthz", "/.well-known/jwks.json"] {
        let started = Instant::now();
        assert_eq!(get(&state, path).await.status, 200, "{path}");
        assert!(started.elapsed() < second, "{path} waited for the token");
    }
    let ready = get(&state, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json,
        json!({"error": "not ready: signing backend unavailable"})
    );
    let metrics = get(&state, "/metrics").await.json;
    let errors = r#"macp_auth_backend_signatures_total{backend="pkcs11",outcome="error"} "#;
    assert!(
        metrics.as_str().unwrap().contains(errors),
        "a full PKCS#11 queue counts against the store: {metrics}"
    );

    // The emergency: back to a file key while the token's threads are stuck.
    let mut file_key: Value = serde_json::from_str(private_jwk(SigningAlg::Rs256)).unwrap();
    file_key["kid"] = "file-key".into();
    std::fs::write(&ring, json!({"keys": [file_key]}).to_string()).unwrap();
    let (outcome, _) = state.keys().reload().unwrap();
    assert_eq!(outcome, ReloadOutcome::Swapped);
    for _ in 0..20 {
        let reply = mint_within(&state, second).await;
        assert_eq!(reply.status, 200, "{:?}", reply.json);
    }
    assert_eq!(get(&state, "/healthz").await.status, 200);
    drop(module);
}

/// The count of PKCS#11 signatures with `outcome` in `/metrics`.
async fn pkcs11_outcomes(state: &AppState, outcome: &str) -> u64 {
    let prefix =
        format!(r#"macp_auth_backend_signatures_total{{backend="pkcs11",outcome="{outcome}"}} "#);
    let metrics = get(state, "/metrics").await.json;
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |count| count.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mints_dropped_before_the_token_answers_still_count_against_it() {
    let Some(Hung {
        hsm: _,
        module,
        dir: _dir,
        ring,
    }) = hung("dropped", "hung-dropped", "c2")
    else {
        return;
    };
    let member = member_through(&module, "hsm-dropped", "hung-dropped");
    std::fs::write(&ring, json!({"keys": [member]}).to_string()).unwrap();
    let state = state_over(&ring, Duration::from_millis(300));
    assert_eq!(
        mint_within(&state, Duration::from_secs(5)).await.status,
        200
    );

    module.hang();
    // Each caller gives up before the signing deadline (as a client that
    // disconnects does, or a request deadline that passes first).
    for _ in 0..3 {
        let gone = tokio::time::timeout(
            Duration::from_millis(50),
            mint(&state, r#"{"sender":"agent://gone"}"#),
        )
        .await;
        assert!(gone.is_err(), "the caller left before an answer");
    }
    let started = Instant::now();
    while pkcs11_outcomes(&state, "timeout").await < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the abandoned signatures were never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&state, "/readyz").await.status, 503);
    drop(module);
}

/// The cached RS256 file key under `kid`.
fn file_key(kid: &str) -> Value {
    let mut key: Value = serde_json::from_str(private_jwk(SigningAlg::Rs256)).unwrap();
    key["kid"] = kid.into();
    key
}

#[test]
fn a_token_that_hangs_at_startup_stops_it_within_a_bound_with_one_line() {
    let Some(hsm) = SoftHsm::create("hung-start") else {
        return;
    };
    let Some(module) = HungModule::build("start") else {
        return;
    };
    hsm.generate(KeyKind::Rsa2048, "rsa-1", "01");
    module.hang();
    let member = json!({"kid": "hsm-1", "pkcs11": hsm.uri("rsa-1")});
    let mut command = binary();
    command
        .envs(hsm.env())
        .env("MACP_AUTH_SIGNING_KEY_JSON", member.to_string())
        .env("MACP_AUTH_PKCS11_MODULE", module.path())
        .env("MACP_AUTH_PKCS11_PIN", PIN)
        .env("MACP_AUTH_SIGNING_TIMEOUT_MS", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("startup waited for the hung token");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    let expected = "key 1 (kid \"hsm-1\"): pkcs11 key pkcs11:token=macp-hung-start;object=rsa-1: timed out after 1000 ms";
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    assert!(!stderr.contains(PIN), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_reaches_a_hung_token_gives_up_within_a_bound_and_keeps_the_ring() {
    let Some(Hung {
        hsm: _,
        module,
        dir: _dir,
        ring,
    }) = hung("reload", "hung-reload", "c3")
    else {
        return;
    };
    std::fs::write(&ring, json!({"keys": [file_key("file-key")]}).to_string()).unwrap();
    let state = state_over(&ring, Duration::from_millis(200));

    module.hang();
    let mut hsm_member = member_through(&module, "hsm-next", "hung-reload");
    hsm_member["activate_at"] = "2999-01-01T00:00:00Z".into();
    let text = json!({"keys": [file_key("file-key"), hsm_member]}).to_string();
    std::fs::write(&ring, text).unwrap();
    let started = Instant::now();
    let keys = state.keys().clone();
    let reloaded = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || keys.reload()),
    )
    .await
    .expect("the reload gives up on the hung token")
    .unwrap();
    let err = reloaded.unwrap_err().to_string();
    assert!(err.ends_with("timed out after 1000 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let jwks = get(&state, "/.well-known/jwks.json").await.json;
    assert_eq!(jwks_kids(&jwks), ["file-key"], "the current ring stays");
    assert_eq!(
        mint_within(&state, Duration::from_secs(1)).await.status,
        200
    );
    drop(module);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_stuck_on_a_hung_token_holds_up_neither_other_tokens_nor_shutdown() {
    let Some(Hung {
        hsm,
        module,
        dir: _dir,
        ring,
    }) = hung("shutdown", "hung-shutdown", "c4")
    else {
        return;
    };
    hsm.generate(KeyKind::Rsa2048, "beside-hung", "c5");
    std::fs::write(&ring, json!({"keys": [file_key("file-key")]}).to_string()).unwrap();
    // The default deadline: a reload reaching the hung token waits 10 s.
    let mut app = AppBuilder::new(SigningAlg::Rs256)
        .key_file(&ring, Some(Duration::from_millis(50)))
        .configure(|config| {
            config.keys.custody.pkcs11_pin = Some(KeyMaterial::new(PIN.to_owned()));
        })
        .start()
        .await;

    module.hang();
    let mut hsm_member = member_through(&module, "hsm-next", "hung-shutdown");
    hsm_member["activate_at"] = "2999-01-01T00:00:00Z".into();
    let text = json!({"keys": [file_key("file-key"), hsm_member]}).to_string();
    std::fs::write(&ring, text).unwrap();
    // Let the file check start the reload and reach the hung C_Login.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A key on another module opens meanwhile: nothing process-wide is
    // held across the hung call.
    let mut beside = config(SigningAlg::Rs256);
    beside.keys.inline = Some(KeyMaterial::new(
        json!({"kid": "beside", "pkcs11": hsm.uri("beside-hung")}).to_string(),
    ));
    beside.keys.custody.pkcs11_module = Some(MODULE.into());
    beside.keys.custody.pkcs11_pin = Some(KeyMaterial::new(PIN.to_owned()));
    let opened = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || load_ring(&beside, 0).map(|_| ())),
    )
    .await
    .expect("a key on another token opens while one token hangs")
    .unwrap();
    opened.unwrap();

    let started = Instant::now();
    app.signal_shutdown();
    app.finished(Duration::from_secs(3)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(module);
}
