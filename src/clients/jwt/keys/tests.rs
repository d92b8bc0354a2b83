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

#[test]
fn the_cache_decides_by_freshness_kid_and_the_refetch_interval() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut failed_once = CacheState::default();
    failed_once.attempting(t0, false);
    failed_once.failed();
    let mut fetching = CacheState::default();
    fetching.attempting(t0, false);
    let mut refetching = fetched(t0, &["a"], None);
    refetching.attempting(t0 + s(1), true);
    let mut refetched = refetching.clone();
    refetched.failed();
    let cases = [
        (
            "an empty cache fetches",
            CacheState::default(),
            t0,
            Some("a"),
            "fetch",
        ),
        (
            "an empty cache whose fetch just failed waits",
            failed_once.clone(),
            t0 + s(4),
            Some("a"),
            "unavailable 6s",
        ),
        (
            "an empty cache fetches again after 10 s",
            failed_once,
            t0 + s(10),
            Some("a"),
            "fetch",
        ),
        (
            "a request during the first fetch waits for it",
            fetching,
            t0 + s(1),
            Some("a"),
            "wait",
        ),
        (
            "fresh keys with a known kid are used",
            fetched(t0, &["a"], None),
            t0 + s(299),
            Some("a"),
            "use",
        ),
        (
            "fresh keys serve a token without kid",
            fetched(t0, &["a"], None),
            t0 + s(299),
            None,
            "use",
        ),
        (
            "an unknown kid refetches at once",
            fetched(t0, &["a"], None),
            t0 + s(1),
            Some("b"),
            "refetch for kid",
        ),
        (
            "an unknown kid during a refetch waits for it",
            refetching.clone(),
            t0 + s(2),
            Some("b"),
            "wait",
        ),
        (
            "a known kid during a refetch is served",
            refetching,
            t0 + s(2),
            Some("a"),
            "use",
        ),
        (
            "an unknown kid within 10 s of a refetch uses the keys",
            refetched.clone(),
            t0 + s(10),
            Some("c"),
            "use",
        ),
        (
            "an unknown kid 10 s after a refetch refetches",
            refetched,
            t0 + s(11),
            Some("c"),
            "refetch for kid",
        ),
        (
            "keys are fresh for 5 min by default",
            fetched(t0, &["a"], None),
            t0 + s(300),
            Some("a"),
            "fetch",
        ),
        (
            "max-age below 60 s is raised to 60 s",
            fetched(t0, &["a"], Some(5)),
            t0 + s(59),
            Some("a"),
            "use",
        ),
        (
            "max-age of 60 s expires at 60 s",
            fetched(t0, &["a"], Some(5)),
            t0 + s(60),
            Some("a"),
            "fetch",
        ),
        (
            "max-age above 1 h is held to 1 h",
            fetched(t0, &["a"], Some(86_400)),
            t0 + s(3600),
            Some("a"),
            "fetch",
        ),
        (
            "max-age within bounds is honoured",
            fetched(t0, &["a"], Some(900)),
            t0 + s(899),
            Some("a"),
            "use",
        ),
    ];
    for (name, state, now, kid, expected) in cases {
        assert_eq!(plan_name(&state.plan(now, kid)), expected, "{name}");
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
