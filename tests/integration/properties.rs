//! Property tests: whatever key is loaded, the JWKS publishes only its
//! public members; whatever valid request is minted, the token verifies the
//! way the runtime does and carries exactly what was asked; and whatever body
//! arrives, the answer is a 200 or a JSON 4xx, never a 5xx.
//!
//! Each property runs a bounded number of cases (see `CASES_*`) so the module
//! stays quick in a debug build. RSA keys are never generated per case: the
//! RSA cases reuse two keys made once per test binary.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use macp_auth_service::clock::{Clock, SystemClock, rfc3339};
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::keys::{
    KeySource, SigningKey, generate_private_jwk, public_jwk_from_private,
};
use macp_auth_service::{AppState, router};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseResult, TestRunner};
use serde_json::{Map, Number, Value, json};

use crate::support::{
    config, now, oneshot, other_rsa_jwk, private_jwk, send, state_with, state_with_ring,
    token_parts, verify_like_runtime,
};

/// Cases per property. ES256 keys are cheap, so most key cases use them;
/// RSA cases reuse two cached keys.
const CASES_EC_KEYS: u32 = 256;
const CASES_RSA_KEYS: u32 = 64;
const CASES_MINTS: u32 = 512;
const CASES_BODIES: u32 = 2048;

/// Every JWK member that is private (RFC 7518 section 6), `k` included.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Members a JWK loader gives meaning to; generated unknown members avoid them.
const KNOWN_MEMBERS: [&str; 18] = [
    "kty",
    "n",
    "e",
    "d",
    "p",
    "q",
    "dp",
    "dq",
    "qi",
    "oth",
    "k",
    "crv",
    "x",
    "y",
    "kid",
    "alg",
    "use",
    "activate_at",
];

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        // Failures are reported with their minimal input; nothing is written
        // into the source tree.
        failure_persistence: None,
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    })
}

/// Runs a property and turns a failure into a panic naming the minimal input.
fn check<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
{
    if let Err(failure) = runner(cases).run(&strategy, test) {
        panic!("{failure}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Status, headers and raw body of one request through the router.
async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let (status, headers, bytes) = oneshot(app, request.body(Body::from(body)).unwrap()).await;
    (status, headers, bytes.to_vec())
}

// ---------------------------------------------------------------------------
// Property 1: the public JWK and the served JWKS hold public members only.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Activation {
    Absent,
    Null,
    /// Unix seconds this long ago.
    SecondsAgo(u64),
    /// RFC 3339, this long ago.
    Rfc3339Ago(u64),
}

/// What gets sprinkled into a private JWK before it is loaded.
#[derive(Debug, Clone)]
struct Sprinkle {
    /// `None`: no kid (the thumbprint is used); otherwise a non-empty kid.
    kid: Option<String>,
    activation: Activation,
    keep_alg: bool,
    keep_use: bool,
    /// Extra members: private-looking names and names no loader knows.
    extras: Vec<(String, Value)>,
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ]
}

fn small_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,4}", inner), 0..3)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A distinctive secret, so a leak can be found as a substring.
fn secret_value() -> impl Strategy<Value = Value> {
    "[A-Za-z0-9_-]{24}".prop_map(|text| Value::String(format!("SECRET-{text}")))
}

fn extra_member(private_names: &'static [&'static str]) -> impl Strategy<Value = (String, Value)> {
    let unknown_name = prop_oneof![
        prop::sample::select(vec![
            "x5c", "x5t", "x5u", "key_ops", "ext", "exp", "nbf", "iat", "note", "D", "K", "kid ",
            " d", "private", "secret",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z_][A-Za-z0-9_]{0,8}",
        any::<String>(),
    ]
    .prop_filter("not a member a loader knows", |name| {
        !KNOWN_MEMBERS.contains(&name.as_str())
    });
    prop_oneof![
        (prop::sample::select(private_names), secret_value())
            .prop_map(|(name, value)| (name.to_owned(), value)),
        (unknown_name.clone(), secret_value()),
        (unknown_name, small_json()),
    ]
}

fn sprinkle(private_names: &'static [&'static str]) -> impl Strategy<Value = Sprinkle> {
    let kid = prop_oneof![
        Just(None),
        any::<String>()
            .prop_filter("a kid is non-empty", |kid| !kid.is_empty())
            .prop_map(Some),
        prop::sample::select(vec![
            "d",
            "k",
            "dev-key-1",
            "  ",
            "\u{0}",
            "kid with spaces"
        ])
        .prop_map(|kid| Some(kid.to_owned())),
    ];
    let activation = prop_oneof![
        Just(Activation::Absent),
        Just(Activation::Null),
        (0u64..10_000_000).prop_map(Activation::SecondsAgo),
        (0u64..10_000_000).prop_map(Activation::Rfc3339Ago),
    ];
    (
        kid,
        activation,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(extra_member(private_names), 0..5),
    )
        .prop_map(|(kid, activation, keep_alg, keep_use, extras)| Sprinkle {
            kid,
            activation,
            keep_alg,
            keep_use,
            extras,
        })
}

/// The private JWK with the sprinkles applied: its kid replaced (or
/// removed), `alg` and `use` kept or dropped, extras and `activate_at` added.
fn sprinkled(base: &Map<String, Value>, sprinkle: &Sprinkle, now: u64) -> Map<String, Value> {
    let mut jwk = base.clone();
    jwk.remove("kid");
    if !sprinkle.keep_alg {
        jwk.remove("alg");
    }
    if !sprinkle.keep_use {
        jwk.remove("use");
    }
    for (name, value) in &sprinkle.extras {
        jwk.insert(name.clone(), value.clone());
    }
    if let Some(kid) = &sprinkle.kid {
        jwk.insert("kid".into(), kid.clone().into());
    }
    match sprinkle.activation {
        Activation::Absent => {}
        Activation::Null => {
            jwk.insert("activate_at".into(), Value::Null);
        }
        Activation::SecondsAgo(ago) => {
            jwk.insert("activate_at".into(), now.saturating_sub(ago).into());
        }
        Activation::Rfc3339Ago(ago) => {
            jwk.insert(
                "activate_at".into(),
                rfc3339(now.saturating_sub(ago)).into(),
            );
        }
    }
    jwk
}

/// The RFC 7638 thumbprint of a public key, computed here independently.
fn thumbprint(alg: SigningAlg, private: &Map<String, Value>) -> String {
    let member = |name: &str| private[name].as_str().unwrap().to_owned();
    let input = match alg {
        SigningAlg::Rs256 => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e"),
            member("n")
        ),
        SigningAlg::Es256 => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            member("x"),
            member("y")
        ),
    };
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes()).as_ref())
}

fn documented_members(alg: SigningAlg) -> Vec<&'static str> {
    let mut members = match alg {
        SigningAlg::Rs256 => vec!["kty", "n", "e", "kid", "alg", "use"],
        SigningAlg::Es256 => vec!["kty", "crv", "x", "y", "kid", "alg", "use"],
    };
    members.sort_unstable();
    members
}

/// A public JWK holds exactly the documented members, the public values of
/// `private`, and the expected kid.
fn assert_public_jwk(
    alg: SigningAlg,
    public: &Map<String, Value>,
    private: &Map<String, Value>,
    expected_kid: &str,
) -> TestCaseResult {
    for name in PRIVATE_MEMBERS {
        prop_assert!(
            !public.contains_key(name),
            "public JWK has private member {name}: {public:?}"
        );
    }
    let mut members: Vec<&str> = public.keys().map(String::as_str).collect();
    members.sort_unstable();
    prop_assert_eq!(members, documented_members(alg), "members of {:?}", public);
    let public_names: &[&str] = match alg {
        SigningAlg::Rs256 => &["n", "e"],
        SigningAlg::Es256 => &["x", "y"],
    };
    for name in public_names {
        prop_assert_eq!(&public[*name], &private[*name], "member {}", name);
    }
    prop_assert_eq!(public["kty"].as_str(), private["kty"].as_str());
    prop_assert_eq!(public["alg"].as_str(), Some(alg.as_str()));
    prop_assert_eq!(public["use"].as_str(), Some("sig"));
    if alg == SigningAlg::Es256 {
        prop_assert_eq!(public["crv"].as_str(), Some("P-256"));
    }
    prop_assert_eq!(public["kid"].as_str(), Some(expected_kid));
    Ok(())
}

/// Every string that must never be published: the key's private members and
/// the secrets sprinkled under private names.
fn secrets_of(private: &Map<String, Value>) -> Vec<String> {
    let mut secrets = Vec::new();
    for name in PRIVATE_MEMBERS {
        if let Some(Value::String(text)) = private.get(name) {
            secrets.push(text.clone());
        }
    }
    for value in private.values() {
        if let Value::String(text) = value
            && text.starts_with("SECRET-")
        {
            secrets.push(text.clone());
        }
    }
    secrets
}

#[derive(Debug, Clone)]
struct KeyCase {
    /// Which cached RSA key signs (ignored for ES256).
    rsa_base: usize,
    signing: Sprinkle,
    /// A second key, activating in the future: published, not yet signing.
    pending: Option<Sprinkle>,
}

fn key_case(private_names: &'static [&'static str]) -> impl Strategy<Value = KeyCase> {
    (
        0usize..2,
        sprinkle(private_names),
        prop::option::of(sprinkle(private_names)),
    )
        .prop_map(|(rsa_base, signing, pending)| KeyCase {
            rsa_base,
            signing,
            pending,
        })
}

fn base_jwks(alg: SigningAlg, case: &KeyCase) -> (Map<String, Value>, Map<String, Value>) {
    let parse = |text: &str| match serde_json::from_str(text).unwrap() {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    match alg {
        SigningAlg::Rs256 => {
            let keys = [private_jwk(SigningAlg::Rs256), other_rsa_jwk()];
            (parse(keys[case.rsa_base]), parse(keys[1 - case.rsa_base]))
        }
        SigningAlg::Es256 => (
            generate_private_jwk(SigningAlg::Es256, 0, None).unwrap(),
            generate_private_jwk(SigningAlg::Es256, 0, None).unwrap(),
        ),
    }
}

fn check_key_case(alg: SigningAlg, case: KeyCase, rt: &tokio::runtime::Runtime) -> TestCaseResult {
    let now = now();
    let (base, other) = base_jwks(alg, &case);
    let signing = sprinkled(&base, &case.signing, now);
    let signing_kid = case
        .signing
        .kid
        .clone()
        .unwrap_or_else(|| thumbprint(alg, &base));

    // The key on its own, as the service and `keys public` load it.
    let text = Value::Object(signing.clone()).to_string();
    let key = SigningKey::from_jwk_json(alg, &text, KeySource::Env)
        .map_err(|err| TestCaseError::fail(format!("the key did not load: {err}")))?;
    assert_public_jwk(alg, key.public_jwk(), &signing, &signing_kid)?;
    let public = public_jwk_from_private(&text)
        .map_err(|err| TestCaseError::fail(format!("keys public refused the key: {err}")))?;
    assert_public_jwk(alg, &public, &signing, &signing_kid)?;

    // The key in a ring, possibly beside a pending one, as served.
    let mut ring = vec![(Value::Object(signing.clone()), signing_kid.clone(), signing)];
    if let Some(pending) = &case.pending {
        let mut jwk = sprinkled(&other, pending, now);
        jwk.insert("activate_at".into(), (now + 86_400).into());
        let kid = pending
            .kid
            .clone()
            .unwrap_or_else(|| thumbprint(alg, &other));
        if kid == signing_kid {
            // Two keys may not share a kid; that rule has its own tests.
            return Ok(());
        }
        ring.push((Value::Object(jwk.clone()), kid, jwk));
    }
    let members: Vec<Value> = ring.iter().map(|(value, _, _)| value.clone()).collect();
    let ring_text = json!({ "keys": members }).to_string();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = state_with_ring(config(alg), &ring_text, clock);
    let (status, jwks) = rt.block_on(async {
        let reply = send(&state, Method::GET, "/.well-known/jwks.json", None, "").await;
        (reply.status, reply.json)
    });
    prop_assert_eq!(status, StatusCode::OK);
    let served = jwks["keys"].as_array().unwrap();
    prop_assert_eq!(served.len(), ring.len(), "every ring key is published");
    let served_text = jwks.to_string();
    for ((_, kid, private), public) in ring.iter().zip(served) {
        let public = public.as_object().unwrap();
        assert_public_jwk(alg, public, private, kid)?;
        for secret in secrets_of(private) {
            prop_assert!(
                !served_text.contains(&secret),
                "the JWKS contains a private value"
            );
        }
    }
    Ok(())
}

#[test]
fn any_ec_key_with_any_extra_members_publishes_only_its_documented_public_members() {
    let rt = runtime();
    const EC_PRIVATE_NAMES: &[&str] = &["p", "q", "dp", "dq", "qi", "oth", "k"];
    check(CASES_EC_KEYS, key_case(EC_PRIVATE_NAMES), |case| {
        check_key_case(SigningAlg::Es256, case, &rt)
    });
}

#[test]
fn any_rsa_key_with_any_extra_members_publishes_only_its_documented_public_members() {
    let rt = runtime();
    // "oth" makes an RSA key multi-prime, which is refused; it is sprinkled
    // into EC keys instead.
    const RSA_PRIVATE_NAMES: &[&str] = &["k"];
    check(CASES_RSA_KEYS, key_case(RSA_PRIVATE_NAMES), |case| {
        check_key_case(SigningAlg::Rs256, case, &rt)
    });
}

// ---------------------------------------------------------------------------
// Property 2: an accepted request becomes a token the runtime accepts,
// carrying exactly what was asked.
// ---------------------------------------------------------------------------

/// What `String.prototype.trim` removes (ECMA-262 WhiteSpace and
/// LineTerminator): the reference refuses a sender that trims to "".
fn is_js_trim_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'
            | '\u{a}'
            | '\u{b}'
            | '\u{c}'
            | '\u{d}'
            | '\u{20}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

fn is_js_blank(text: &str) -> bool {
    text.chars().all(is_js_trim_space)
}

/// Padding characters: JavaScript white space, and look-alikes it keeps.
const PADDING: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{a0}', '\u{2003}', '\u{2028}', '\u{3000}',
    '\u{feff}', '\u{85}', '\u{200b}', '\u{180e}',
];

fn padding() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PADDING), 0..4)
        .prop_map(|chars| chars.into_iter().collect())
}

fn sender() -> impl Strategy<Value = String> {
    let core = prop_oneof![
        "agent://[a-z][a-z0-9/._-]{0,20}",
        any::<String>(),
        "\\PC{1,12}",
        // Only padding characters: accepted exactly when JavaScript keeps one.
        padding(),
    ];
    (padding(), core, padding())
        .prop_map(|(before, core, after)| format!("{before}{core}{after}"))
        .prop_filter("the reference refuses blank senders", |sender| {
            !is_js_blank(sender)
        })
}

/// Numbers that are integral but written as floats, and their neighbours.
fn integral_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        prop::sample::select(vec![
            0.0,
            -0.0,
            3.0,
            1e15,
            9_007_199_254_740_992.0,
            9_223_372_036_854_775_808.0,
            -9_223_372_036_854_775_808.0,
            1e19,
            18_446_744_073_709_551_616.0,
            1e21,
            1e300,
            -1e300,
        ]),
    ]
}

fn scope_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        integral_float().prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
    ]
}

fn scope_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        scope_number(),
        scope_number(),
        any::<String>().prop_map(Value::String),
        Just(Value::String(String::new())),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..5)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Scope names the runtime reads, with the types it reads them as.
const RUNTIME_SCOPES: [&str; 5] = [
    "can_start_sessions",
    "can_manage_mode_registry",
    "is_observer",
    "allowed_modes",
    "max_open_sessions",
];

fn scopes() -> impl Strategy<Value = Map<String, Value>> {
    let max_open_sessions = (0u32..1_000_000, any::<bool>()).prop_map(|(n, as_float)| {
        if as_float {
            Value::Number(Number::from_f64(f64::from(n)).unwrap())
        } else {
            Value::from(n)
        }
    });
    let runtime = (
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec("macp\\.mode\\.[a-z]{1,8}\\.v1", 0..3)),
        prop::option::of(max_open_sessions),
    );
    let others = prop::collection::vec((any::<String>(), scope_value()), 0..6);
    (runtime, others, any::<bool>()).prop_map(
        |((start, manage, observer, modes, max), others, runtime_first)| {
            let mut runtime = Vec::new();
            let names = RUNTIME_SCOPES;
            let values = [
                start.map(Value::Bool),
                manage.map(Value::Bool),
                observer.map(Value::Bool),
                modes.map(|modes| json!(modes)),
                max,
            ];
            for (name, value) in names.into_iter().zip(values) {
                if let Some(value) = value {
                    runtime.push((name.to_owned(), value));
                }
            }
            let others = others
                .into_iter()
                .filter(|(name, _)| !RUNTIME_SCOPES.contains(&name.as_str()));
            let mut scopes = Map::new();
            if runtime_first {
                scopes.extend(runtime);
                scopes.extend(others);
            } else {
                scopes.extend(others);
                scopes.extend(runtime);
            }
            scopes
        },
    )
}

/// A `ttl_seconds` member: its JSON text (`None`: absent) and its value.
#[derive(Debug, Clone)]
struct Ttl {
    text: Option<String>,
    value: Option<f64>,
}

fn ttl() -> impl Strategy<Value = Ttl> {
    let number = |text: String| {
        let value: f64 = text.parse().unwrap();
        Ttl {
            text: Some(text),
            value: Some(value),
        }
    };
    prop_oneof![
        Just(Ttl {
            text: None,
            value: None
        }),
        Just(Ttl {
            text: Some("null".into()),
            value: None
        }),
        (1u64..=7_200).prop_map(move |n| number(n.to_string())),
        any::<u64>()
            .prop_filter("positive", |n| *n > 0)
            .prop_map(move |n| number(n.to_string())),
        (0.0001f64..7_200.0).prop_map(move |f| number(Value::from(f).to_string())),
        prop::sample::select(vec![
            "0.5",
            "1.0",
            "59.000001",
            "3599.5",
            "3600",
            "3600.0000001",
            "6e2",
            "1E3",
            "0.5e1",
            "1e300",
            "1.7976931348623157e308",
            "2.2250738585072014e-308",
            "5e-324",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890",
        ])
        .prop_map(move |text| number(text.to_owned())),
    ]
}

/// The lifetime the contract promises: the TTL rounded up to whole seconds,
/// or the default, held to the maximum.
fn expected_ttl(requested: Option<f64>, default: u64, max: u64) -> u64 {
    match requested {
        None => default.min(max),
        Some(ttl) if ttl >= max as f64 => max,
        Some(ttl) => (ttl.ceil() as u64).max(1),
    }
}

/// Integral numbers written as integers, as JavaScript writes them; every
/// other value unchanged.
fn normalised(value: &Value) -> Value {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap();
            let integral = float.fract() == 0.0;
            if integral && (-TWO_63..TWO_63).contains(&float) {
                Value::from(float as i64)
            } else if integral && (0.0..TWO_64).contains(&float) {
                Value::from(float as u64)
            } else {
                value.clone()
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(normalised).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(name, value)| (name.clone(), normalised(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[derive(Debug, Clone)]
struct MintCase {
    alg: SigningAlg,
    sender: String,
    /// `None`: the member is omitted.
    scopes: Option<Map<String, Value>>,
    ttl: Ttl,
    /// Members the contract ignores.
    extras: Vec<(String, Value)>,
}

fn mint_case() -> impl Strategy<Value = MintCase> {
    let alg = prop_oneof![3 => Just(SigningAlg::Es256), 1 => Just(SigningAlg::Rs256)];
    let extra = (
        any::<String>().prop_filter("not a contract member", |name| {
            !["sender", "scopes", "ttl_seconds"].contains(&name.as_str())
        }),
        small_json(),
    );
    (
        alg,
        sender(),
        prop::option::of(scopes()),
        ttl(),
        prop::collection::vec(extra, 0..3),
    )
        .prop_map(|(alg, sender, scopes, ttl, extras)| MintCase {
            alg,
            sender,
            scopes,
            ttl,
            extras,
        })
}

fn mint_body(case: &MintCase) -> String {
    let mut members = Vec::new();
    for (name, value) in &case.extras {
        members.push(format!("{}:{}", Value::from(name.clone()), value));
    }
    members.push(format!("\"sender\":{}", Value::from(case.sender.clone())));
    if let Some(scopes) = &case.scopes {
        members.push(format!("\"scopes\":{}", Value::Object(scopes.clone())));
    }
    if let Some(ttl) = &case.ttl.text {
        members.push(format!("\"ttl_seconds\":{ttl}"));
    }
    format!("{{{}}}", members.join(","))
}

#[test]
fn any_accepted_request_mints_a_token_the_runtime_verifies_with_exactly_the_requested_claims() {
    let rt = runtime();
    let es256 = state_with(config(SigningAlg::Es256));
    let rs256 = state_with(config(SigningAlg::Rs256));
    let apps = [
        (SigningAlg::Es256, router(es256.clone())),
        (SigningAlg::Rs256, router(rs256.clone())),
    ];
    check(CASES_MINTS, mint_case(), |case| {
        let (_, app) = apps.iter().find(|(alg, _)| *alg == case.alg).unwrap();
        let body = mint_body(&case);
        rt.block_on(async {
            let json_header = vec![("content-type", HeaderValue::from_static("application/json"))];
            let (status, _, reply) = call(
                app,
                Method::POST,
                "/tokens",
                json_header,
                body.clone().into_bytes(),
            )
            .await;
            let reply: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
            prop_assert_eq!(status, StatusCode::OK, "body {} got {}", body, reply);
            let (_, _, jwks) =
                call(app, Method::GET, "/.well-known/jwks.json", vec![], vec![]).await;

            let token = reply["token"].as_str().unwrap();
            let verified = verify_like_runtime(token, &jwks, "macp-auth-service", "macp-runtime")
                .map_err(|err| TestCaseError::fail(format!("runtime refused: {err}")))?;
            prop_assert_eq!(&verified.claims.sub, &case.sender);
            prop_assert_eq!(reply["sender"].as_str(), Some(case.sender.as_str()));

            let (header, claims, _) = token_parts(token);
            prop_assert_eq!(header["alg"].as_str(), Some(case.alg.as_str()));
            prop_assert_eq!(claims["sub"].as_str(), Some(case.sender.as_str()));
            let iat = claims["iat"].as_u64().unwrap();
            let exp = claims["exp"].as_u64().unwrap();
            let expires_in = reply["expires_in_seconds"].as_u64().unwrap();
            prop_assert_eq!(exp - iat, expires_in);
            prop_assert_eq!(expires_in, expected_ttl(case.ttl.value, 300, 3600));

            let requested = Value::Object(case.scopes.clone().unwrap_or_default());
            let expected = normalised(&requested);
            prop_assert_eq!(&claims["macp_scopes"], &expected);
            prop_assert_eq!(
                claims["macp_scopes"].to_string(),
                expected.to_string(),
                "scopes keep their order"
            );
            if let (Some(runtime), Some(max)) = (
                &verified.claims.macp_scopes,
                expected.get("max_open_sessions"),
            ) {
                prop_assert_eq!(runtime.max_open_sessions, max.as_u64().map(|n| n as usize));
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------
// Property 3: any body gets a 200 or a JSON 4xx, never a 5xx.
// ---------------------------------------------------------------------------

/// Content types the contract accepts, and some it does not.
const JSON_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/json;charset=latin1",
    " application/json ",
    "application/vnd.api+json",
    "application/merge-patch+json; q=1",
];
const OTHER_TYPES: &[&str] = &[
    "text/plain",
    "text/json",
    "application/jsonp",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/",
    "/json",
    "json",
    "application",
    "",
    "application/json+xml",
    "text/html; application/json",
];

#[derive(Debug, Clone)]
enum ContentType {
    Absent,
    Json(&'static str),
    Other(&'static str),
    /// Any header value, including bytes that are not visible ASCII.
    Arbitrary(Vec<u8>),
}

fn content_type() -> impl Strategy<Value = ContentType> {
    let header_byte = prop_oneof![
        8 => 0x20u8..=0x7e,
        1 => 0x80u8..=0xff,
        1 => Just(b'\t'),
    ];
    prop_oneof![
        Just(ContentType::Absent),
        prop::sample::select(JSON_TYPES).prop_map(ContentType::Json),
        prop::sample::select(JSON_TYPES).prop_map(ContentType::Json),
        prop::sample::select(OTHER_TYPES).prop_map(ContentType::Other),
        prop::collection::vec(header_byte, 0..40)
            .prop_filter("a header value has no leading or trailing blank", |bytes| {
                HeaderValue::from_bytes(bytes).is_ok()
            })
            .prop_map(ContentType::Arbitrary),
    ]
}

/// Objects that almost make a valid request.
fn near_miss() -> impl Strategy<Value = String> {
    let sender = prop::sample::select(vec![
        None,
        Some("null"),
        Some("7"),
        Some("true"),
        Some("[\"agent://a\"]"),
        Some("{\"id\":\"a\"}"),
        Some("\"\""),
        Some("\"  \\t\\n\""),
        Some("\"\\ufeff\""),
        Some("\"agent://a\""),
        Some("\"\\ud800\""),
    ]);
    let scopes = prop::sample::select(vec![
        None,
        Some("null"),
        Some("\"all\""),
        Some("1"),
        Some("[]"),
        Some("false"),
        Some("{}"),
        Some("{\"max_open_sessions\":3.0}"),
        Some("{\"a\":1e400}"),
    ]);
    let ttl = prop::sample::select(vec![
        None,
        Some("null"),
        Some("0"),
        Some("-1"),
        Some("-0.0"),
        Some("\"60\""),
        Some("true"),
        Some("[]"),
        Some("{}"),
        Some("1e308"),
        Some("1e309"),
        Some("1.5"),
        Some("600"),
        Some("-1e-320"),
    ]);
    let key = |name: &'static str| {
        prop::sample::select(vec![
            name.to_owned(),
            name.to_uppercase(),
            format!("{name} "),
            format!(" {name}"),
            name[..name.len() - 1].to_owned(),
        ])
    };
    (
        (key("sender"), sender),
        (key("scopes"), scopes),
        (key("ttl_seconds"), ttl),
        any::<bool>(),
    )
        .prop_map(|((sk, sv), (ck, cv), (tk, tv), duplicate)| {
            let mut members: Vec<String> = [(sk, sv), (ck, cv), (tk, tv)]
                .into_iter()
                .filter_map(|(key, value)| value.map(|value| format!("\"{key}\":{value}")))
                .collect();
            if duplicate && let Some(first) = members.first().cloned() {
                members.push(first);
            }
            format!("{{{}}}", members.join(","))
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        small_json().prop_map(|value| value.to_string().into_bytes()),
        scope_value().prop_map(|value| value.to_string().into_bytes()),
        near_miss().prop_map(String::into_bytes),
        // A near miss, cut short or with one byte changed.
        (
            near_miss(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(text, at, byte, cut)| {
                let mut bytes = text.into_bytes();
                let at = at.index(bytes.len());
                if cut {
                    bytes.truncate(at);
                } else {
                    bytes[at] = byte;
                }
                bytes
            }),
        // Over the limit.
        (65_000usize..70_000).prop_map(|size| {
            let mut body = br#"{"sender":"a","scopes":{"pad":""#.to_vec();
            body.resize(size, b'x');
            body.extend_from_slice(br#""}}"#);
            body
        }),
    ]
}

#[test]
fn any_body_with_any_content_type_gets_a_token_or_a_json_4xx_never_a_5xx() {
    let rt = runtime();
    let state: AppState = state_with(config(SigningAlg::Es256));
    let app = router(state);
    check(
        CASES_BODIES,
        (content_type(), body()),
        |(content_type, body)| {
            rt.block_on(async {
                let headers = match &content_type {
                    ContentType::Absent => vec![],
                    ContentType::Json(value) | ContentType::Other(value) => {
                        vec![("content-type", HeaderValue::from_static(value))]
                    }
                    ContentType::Arbitrary(bytes) => {
                        vec![("content-type", HeaderValue::from_bytes(bytes).unwrap())]
                    }
                };
                let (status, headers, reply) =
                    call(&app, Method::POST, "/tokens", headers, body.clone()).await;
                prop_assert!(!status.is_server_error(), "{status} for {content_type:?}");
                prop_assert!(
                    status == StatusCode::OK || status.is_client_error(),
                    "unexpected status {}",
                    status
                );
                prop_assert_eq!(
                    headers.get("content-type").map(HeaderValue::as_bytes),
                    Some(&b"application/json"[..])
                );
                let reply: Value = serde_json::from_slice(&reply)
                    .map_err(|err| TestCaseError::fail(format!("answer is not JSON: {err}")))?;
                if status == StatusCode::OK {
                    prop_assert!(
                        !matches!(content_type, ContentType::Absent | ContentType::Other(_)),
                        "minted for content type {:?}",
                        content_type
                    );
                    prop_assert!(reply["token"].is_string(), "{}", reply);
                } else {
                    let members = reply.as_object().map(Map::len);
                    prop_assert_eq!(members, Some(1), "{}", reply);
                    prop_assert!(reply["error"].is_string(), "{}", reply);
                }

                // What the contract says for the cases this test can classify.
                let parsed = serde_json::from_slice::<Value>(&body);
                match (&content_type, &parsed) {
                    (ContentType::Absent | ContentType::Other(_), _) => {
                        prop_assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
                        prop_assert_eq!(&reply["error"], "content-type must be application/json");
                    }
                    (ContentType::Json(_), _) if body.len() > 64 * 1024 => {
                        prop_assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
                    }
                    (ContentType::Json(_), Err(_)) => {
                        prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                        prop_assert_eq!(&reply["error"], "invalid JSON body");
                    }
                    (ContentType::Json(_), Ok(value)) if !value.is_object() => {
                        prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                        prop_assert_eq!(&reply["error"], "sender is required");
                    }
                    _ => {}
                }
                Ok(())
            })
        },
    );
}
