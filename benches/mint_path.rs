//! Micro-benchmarks of the mint path's own parts, so the non-crypto cost of
//! a mint is a measured number rather than an inference from load tests.
//!
//! Run with `cargo bench --bench mint_path` (optionally followed by `--`
//! and substrings that select benchmarks, e.g. `-- sign/`). Each benchmark is
//! timed in several samples of a calibrated number of iterations; the median
//! sample is printed as ns/op of CPU time (the process's, all threads) and of
//! wall time, with the fastest and slowest sample, so the spread is visible.
//! `MINT_BENCH_SECONDS` sets the time per benchmark
//! (default 1). Nothing asserts a timing: this prints figures, and
//! `scripts/bench.py` reads the `sign/*` lines to set the cost of one bare
//! signature beside the service's CPU time per mint.
//!
//! The hand-rolled harness keeps the dependency list short: a statistics
//! crate would add compile time and nothing these figures need.
//!
//! What is covered, in the order a mint does it:
//! - `parse/*`: body JSON parsing and validation (`mint::parse_request`);
//! - `claims/jti`: the random token id;
//! - `claims/signing-input/*`: claims serialisation and base64url;
//! - `sign/*`: one signature through `SigningKey::sign` (AWS-LC);
//! - `jws/compact`: appending the signature;
//! - `router/*`: a whole request through the axum router in process (no
//!   socket, no HTTP wire parsing), signing-pool hand-off and metrics
//!   included, so `router/mint-*` minus `sign/*` is the in-process overhead.
//!   No log subscriber is installed, so the audit record is skipped, except
//!   in `router/mint-ES256+audit-line`, which formats it into a sink.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use macp_auth_service::clock::{Clock, SystemClock};
use macp_auth_service::config::Config;
use macp_auth_service::keys::store::KeyStore;
use macp_auth_service::keys::{KeySource, SigningAlg, SigningKey, generate_private_jwk};
use macp_auth_service::mint::{Claims, compact_jws, new_jti, parse_request, signing_input};
use macp_auth_service::signer::SigningPool;
use macp_auth_service::{AppState, router};
use serde_json::Value;
use tower::ServiceExt;

/// The body `scripts/bench.py` sends under load.
const BENCH_BODY: &str =
    r#"{"sender":"agent://bench","scopes":{"can_start_sessions":true},"ttl_seconds":300}"#;

/// A body with every scope the runtime knows, numbers to normalise included.
const FULL_BODY: &str = r#"{"sender":"agent://orchestrator/planner-7","scopes":{"can_start_sessions":true,"can_manage_mode_registry":false,"is_observer":false,"allowed_modes":["macp.mode.decision.v1","macp.mode.proposal.v1","macp.mode.task.v1"],"max_open_sessions":8.0},"ttl_seconds":600}"#;

/// Samples per benchmark; the median is reported.
const SAMPLES: u32 = 7;

struct Harness {
    filters: Vec<String>,
    budget: Duration,
}

impl Harness {
    fn from_env() -> Self {
        // cargo passes `--bench`; other flags are ignored too, plain words filter.
        let filters = std::env::args()
            .skip(1)
            .filter(|arg| !arg.starts_with('-'))
            .collect();
        let seconds = std::env::var("MINT_BENCH_SECONDS")
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
            .unwrap_or(1.0);
        Harness {
            filters,
            budget: Duration::from_secs_f64(seconds),
        }
    }

    fn selected(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// Times `op`: doubles the batch until one batch takes a tenth of a
    /// sample's share of the budget, then runs `SAMPLES` samples of that batch.
    fn run<T>(&self, name: &str, mut op: impl FnMut() -> T) {
        if !self.selected(name) {
            return;
        }
        let per_sample = self.budget / SAMPLES;
        let mut batch: u64 = 1;
        loop {
            let (elapsed, _) = time_batch(&mut op, batch);
            if elapsed >= per_sample / 10 || batch >= 1 << 40 {
                let scale = per_sample.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
                batch = ((batch as f64 * scale) as u64).max(1);
                break;
            }
            batch *= 2;
        }
        let per_op = |d: Duration| d.as_nanos() as f64 / batch as f64;
        let mut samples: Vec<(f64, f64)> = (0..SAMPLES)
            .map(|_| {
                let (wall, cpu) = time_batch(&mut op, batch);
                (per_op(cpu), per_op(wall))
            })
            .collect();
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (cpu, wall) = samples[samples.len() / 2];
        println!(
            "{name:<32} {cpu:>12.1} ns/op CPU  {wall:>12.1} ns/op wall   \
             (CPU min {:.1}, max {:.1}; {SAMPLES} x {batch} iterations)",
            samples[0].0,
            samples[samples.len() - 1].0,
        );
    }
}

/// Wall time and CPU time (all threads of this process: the router
/// benchmarks sign on a pool thread) of `batch` calls.
fn time_batch<T>(op: &mut impl FnMut() -> T, batch: u64) -> (Duration, Duration) {
    let cpu_started = process_cpu_time();
    let started = Instant::now();
    for _ in 0..batch {
        black_box(op());
    }
    (started.elapsed(), process_cpu_time() - cpu_started)
}

/// CPU time this process has used. On a machine shared with other work the
/// wall time of a batch includes time the benchmark was not running; the
/// CPU time does not, and it is what the service's CPU per mint is
/// compared with.
fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let outcome = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(outcome, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A pinned key for one algorithm: its private JWK text, and the key loaded
/// from it the way the service loads `MACP_AUTH_SIGNING_KEY_JSON`.
struct BenchKey {
    alg: SigningAlg,
    jwk: String,
    key: SigningKey,
}

impl BenchKey {
    fn new(alg: SigningAlg) -> Self {
        let kid = format!("bench-{}", alg.as_str().to_lowercase());
        let jwk = generate_private_jwk(alg, 2048, Some(&kid)).expect("key generation");
        let jwk = Value::Object(jwk).to_string();
        let key = SigningKey::from_jwk_json(alg, &jwk, KeySource::Env).expect("key loads");
        BenchKey { alg, jwk, key }
    }
}

fn bench_parsing(h: &Harness) {
    h.run("parse/bench-body", || {
        parse_request(BENCH_BODY.as_bytes()).expect("valid body")
    });
    h.run("parse/full-scopes", || {
        parse_request(FULL_BODY.as_bytes()).expect("valid body")
    });
    h.run("parse/invalid-json", || {
        parse_request(b"{\"sender\":").is_err()
    });
}

fn bench_claims(h: &Harness, keys: &[BenchKey]) {
    h.run("claims/jti", || new_jti().expect("RNG"));
    let request = parse_request(FULL_BODY.as_bytes()).expect("valid body");
    let config = Config::default();
    for BenchKey { alg, key, .. } in keys {
        let jti = new_jti().expect("RNG");
        let claims = Claims {
            macp_scopes: &request.scopes,
            iat: 1_700_000_000,
            exp: 1_700_000_600,
            iss: &config.tokens.issuer,
            aud: &config.tokens.audience,
            sub: &request.sender,
            jti: &jti,
        };
        h.run(&format!("claims/signing-input/{alg}"), || {
            signing_input(key.header_b64(), &claims, key.signature_len()).expect("serialises")
        });
    }
}

fn bench_signing(h: &Harness, keys: &[BenchKey]) {
    for BenchKey { alg, key, .. } in keys {
        let message = signing_input_for(key);
        h.run(&format!("sign/{alg}"), || {
            key.sign(message.as_bytes()).expect("signs")
        });
        let signature = key.sign(message.as_bytes()).expect("signs");
        h.run(&format!("jws/compact/{alg}"), || {
            compact_jws(message.clone(), &signature)
        });
    }
}

/// A realistic signing input for `key` (the bench body's claims).
fn signing_input_for(key: &SigningKey) -> String {
    let request = parse_request(BENCH_BODY.as_bytes()).expect("valid body");
    let config = Config::default();
    let claims = Claims {
        macp_scopes: &request.scopes,
        iat: 1_700_000_000,
        exp: 1_700_000_300,
        iss: &config.tokens.issuer,
        aud: &config.tokens.audience,
        sub: &request.sender,
        jti: "AAAAAAAAAAAAAAAAAAAAAA",
    };
    signing_input(key.header_b64(), &claims, key.signature_len()).expect("serialises")
}

/// State as the service builds it for a pinned key, with one signing thread
/// so the hand-off is measured on a 2-core machine without oversubscription.
fn state_for(bench: &BenchKey) -> AppState {
    let mut config = Config::default();
    config.keys.alg = bench.alg;
    let key = SigningKey::from_jwk_json(bench.alg, &bench.jwk, KeySource::Env).expect("key loads");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = Arc::new(KeyStore::single(&config, key, clock.clone()));
    let pool = SigningPool::new(1, 64).expect("signing thread");
    AppState::new(config, keys, clock, pool).expect("state")
}

fn bench_router(h: &Harness, keys: &[BenchKey]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for bench in keys {
        let alg = bench.alg;
        let app = router(state_for(bench));
        h.run(&format!("router/mint-{alg}"), || {
            runtime.block_on(send(&app, Method::POST, "/tokens", BENCH_BODY))
        });
        if alg == SigningAlg::Es256 {
            // The same with the service's audit record formatted (text, as
            // the binary's default) into a sink: the cost of logging a mint
            // without the writer thread and the write(2).
            let subscriber = tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .with_target(false)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                h.run("router/mint-ES256+audit-line", || {
                    runtime.block_on(send(&app, Method::POST, "/tokens", BENCH_BODY))
                });
            });
            h.run("router/jwks", || {
                runtime.block_on(send(&app, Method::GET, "/.well-known/jwks.json", ""))
            });
            h.run("router/healthz", || {
                runtime.block_on(send(&app, Method::GET, "/healthz", ""))
            });
        }
    }
}

/// One request through a clone of the router, body read to the end; panics
/// on anything but 200 so a broken setup cannot pass for a fast one.
async fn send(app: &axum::Router, method: Method, uri: &str, body: &'static str) -> usize {
    let mut request = Request::builder().method(method).uri(uri);
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    let bytes = response.into_body().collect().await.expect("body");
    bytes.to_bytes().len()
}

fn main() {
    let h = Harness::from_env();
    println!(
        "mint_path micro-benchmarks: {:.1} s per benchmark, median of {SAMPLES} samples",
        h.budget.as_secs_f64()
    );
    let keys = [
        BenchKey::new(SigningAlg::Rs256),
        BenchKey::new(SigningAlg::Es256),
    ];
    bench_parsing(&h);
    bench_claims(&h, &keys);
    bench_signing(&h, &keys);
    bench_router(&h, &keys);
}
