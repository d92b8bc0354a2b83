use super::*;
use serde_json::json;

fn rsa_jwk(kid: &str) -> Value {
    // A real 2048-bit modulus is not needed to parse a JWK; any base64url
    // big-endian integer is accepted by the parser and rejected only when
    // a signature is checked.
    json!({"kty": "RSA", "kid": kid, "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"})
}

fn ec_jwk(kid: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
}

fn set(kids: &[&str]) -> KeySet {
    let keys: Vec<Value> = kids.iter().map(|kid| rsa_jwk(kid)).collect();
    KeySet::parse(&json!({ "keys": keys })).unwrap()
}

#[test]
fn a_jwks_keeps_only_rs256_and_es256_signature_keys() {
    let jwks = json!({"keys": [
        rsa_jwk("rsa"),
        ec_jwk("ec"),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AAAA", "y": "AAAA"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"nonsense": true}
    ]});
    let keys = KeySet::parse(&jwks).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.candidates(Some("rsa"), Algorithm::RS256).len(), 1);
    assert_eq!(keys.candidates(Some("ec"), Algorithm::ES256).len(), 1);
    assert!(keys.candidates(Some("rsa"), Algorithm::ES256).is_empty());
    assert!(keys.candidates(Some("hmac"), Algorithm::RS256).is_empty());
    assert_eq!(keys.candidates(None, Algorithm::RS256).len(), 1);
}

#[test]
fn a_jwks_without_usable_keys_is_refused() {
    let cases = [
        (json!({}), "has no \"keys\" array"),
        (json!({"keys": {}}), "has no \"keys\" array"),
        (json!({"keys": []}), "has no RS256 or ES256 signature key"),
        (
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
            "has no RS256 or ES256 signature key",
        ),
    ];
    for (jwks, expected) in cases {
        assert_eq!(KeySet::parse(&jwks).unwrap_err(), expected, "{jwks}");
    }
}

fn fetched(now: Instant, kids: &[&str], max_age: Option<u64>) -> CacheState {
    let mut state = CacheState::default();
    state.attempting(now, false);
    state.fetched(set(kids), max_age.map(Duration::from_secs), now);
    state
}

fn plan_name(plan: &Plan) -> String {
    match plan {
        Plan::Use(_) => "use".into(),
        Plan::Fetch { kid: false } => "fetch".into(),
        Plan::Fetch { kid: true } => "refetch for kid".into(),
        Plan::Wait => "wait".into(),
        Plan::Unavailable(wait) => format!("unavailable {}s", wait.as_secs()),
    }
}

/// What the cache holds when a [`CacheCase`] asks it, all relative to `t0`.
#[derive(Clone, Copy)]
enum Start {
    /// Nothing was ever fetched.
    Empty,
    /// The first fetch, at `t0`, failed.
    FailedOnce,
    /// The first fetch started at `t0` and is still running.
    Fetching,
    /// Key `a` was fetched at `t0`, with this `max-age`.
    Fetched(Option<u64>),
    /// Key `a` was fetched at `t0`; a refetch for a kid started at 1 s.
    Refetching,
    /// The same, and that refetch failed.
    Refetched,
}

impl Start {
    fn state(self, t0: Instant) -> CacheState {
        let s = Duration::from_secs;
        match self {
            Start::Empty => CacheState::default(),
            Start::FailedOnce => {
                let mut state = Start::Fetching.state(t0);
                state.failed();
                state
            }
            Start::Fetching => {
                let mut state = CacheState::default();
                state.attempting(t0, false);
                state
            }
            Start::Fetched(max_age) => fetched(t0, &["a"], max_age),
            Start::Refetching => {
                let mut state = fetched(t0, &["a"], None);
                state.attempting(t0 + s(1), true);
                state
            }
            Start::Refetched => {
                let mut state = Start::Refetching.state(t0);
                state.failed();
                state
            }
        }
    }
}

/// One question to the cache: a token with `kid`, `after_seconds` after
/// `t0`, and what the cache plans to do about it.
struct CacheCase {
    name: &'static str,
    start: Start,
    after_seconds: u64,
    kid: Option<&'static str>,
    plan: &'static str,
}

const CACHE_CASES: &[CacheCase] = &[
    CacheCase {
        name: "an empty cache fetches",
        start: Start::Empty,
        after_seconds: 0,
        kid: Some("a"),
        plan: "fetch",
    },
    CacheCase {
        name: "an empty cache whose fetch just failed waits",
        start: Start::FailedOnce,
        after_seconds: 4,
        kid: Some("a"),
        plan: "unavailable 6s",
    },
    CacheCase {
        name: "an empty cache fetches again after 10 s",
        start: Start::FailedOnce,
        after_seconds: 10,
        kid: Some("a"),
        plan: "fetch",
    },
    CacheCase {
        name: "a request during the first fetch waits for it",
        start: Start::Fetching,
        after_seconds: 1,
        kid: Some("a"),
        plan: "wait",
    },
    CacheCase {
        name: "fresh keys with a known kid are used",
        start: Start::Fetched(None),
        after_seconds: 299,
        kid: Some("a"),
        plan: "use",
    },
    CacheCase {
        name: "fresh keys serve a token without kid",
        start: Start::Fetched(None),
        after_seconds: 299,
        kid: None,
        plan: "use",
    },
    CacheCase {
        name: "an unknown kid refetches at once",
        start: Start::Fetched(None),
        after_seconds: 1,
        kid: Some("b"),
        plan: "refetch for kid",
    },
    CacheCase {
        name: "an unknown kid during a refetch waits for it",
        start: Start::Refetching,
        after_seconds: 2,
        kid: Some("b"),
        plan: "wait",
    },
    CacheCase {
        name: "a known kid during a refetch is served",
        start: Start::Refetching,
        after_seconds: 2,
        kid: Some("a"),
        plan: "use",
    },
    CacheCase {
        name: "an unknown kid within 10 s of a refetch uses the keys",
        start: Start::Refetched,
        after_seconds: 10,
        kid: Some("c"),
        plan: "use",
    },
    CacheCase {
        name: "an unknown kid 10 s after a refetch refetches",
        start: Start::Refetched,
        after_seconds: 11,
        kid: Some("c"),
        plan: "refetch for kid",
    },
    CacheCase {
        name: "keys are fresh for 5 min by default",
        start: Start::Fetched(None),
        after_seconds: 300,
        kid: Some("a"),
        plan: "fetch",
    },
    CacheCase {
        name: "max-age below 60 s is raised to 60 s",
        start: Start::Fetched(Some(5)),
        after_seconds: 59,
        kid: Some("a"),
        plan: "use",
    },
    CacheCase {
        name: "max-age of 60 s expires at 60 s",
        start: Start::Fetched(Some(5)),
        after_seconds: 60,
        kid: Some("a"),
        plan: "fetch",
    },
    CacheCase {
        name: "max-age above 1 h is held to 1 h",
        start: Start::Fetched(Some(86_400)),
        after_seconds: 3600,
        kid: Some("a"),
        plan: "fetch",
    },
    CacheCase {
        name: "max-age within bounds is honoured",
        start: Start::Fetched(Some(900)),
        after_seconds: 899,
        kid: Some("a"),
        plan: "use",
    },
];

#[test]
fn the_cache_decides_by_freshness_kid_and_the_refetch_interval() {
    let t0 = Instant::now();
    for case in CACHE_CASES {
        let state = case.start.state(t0);
        let now = t0 + Duration::from_secs(case.after_seconds);
        assert_eq!(
            plan_name(&state.plan(now, case.kid)),
            case.plan,
            "{}",
            case.name
        );
    }
}

#[test]
fn known_keys_survive_failed_refreshes_for_an_hour() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut state = fetched(t0, &["a"], Some(60));
    // Stale at 60 s: a refresh is due, and it fails.
    assert_eq!(plan_name(&state.plan(t0 + s(60), Some("a"))), "fetch");
    state.attempting(t0 + s(60), false);
    assert_eq!(
        plan_name(&state.plan(t0 + s(61), Some("a"))),
        "use",
        "served during the refresh"
    );
    state.failed();
    assert_eq!(plan_name(&state.plan(t0 + s(61), Some("a"))), "use");
    // The next attempt is allowed 10 s later; between attempts, stale keys.
    assert_eq!(plan_name(&state.plan(t0 + s(70), Some("a"))), "fetch");
    state.attempting(t0 + s(3655), false);
    state.failed();
    assert_eq!(plan_name(&state.plan(t0 + s(3659), Some("a"))), "use");
    // An hour past freshness the keys are no longer trusted.
    assert_eq!(
        plan_name(&state.plan(t0 + s(3660), Some("a"))),
        "unavailable 5s"
    );
    // A good fetch restores them.
    state.attempting(t0 + s(3665), false);
    state.fetched(set(&["a"]), None, t0 + s(3666));
    assert_eq!(plan_name(&state.plan(t0 + s(3667), Some("a"))), "use");
}

#[test]
fn a_jwks_file_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("macp-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, json!({"keys": [rsa_jwk("a")]}).to_string()).unwrap();
    assert!(read_jwks_file(&path).unwrap().has_kid("a"));
    std::fs::write(&path, "{").unwrap();
    assert!(read_jwks_file(&path).unwrap_err().ends_with("is not JSON"));
    let missing = read_jwks_file(&dir.join("missing.json")).unwrap_err();
    assert!(missing.contains("cannot be read"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
