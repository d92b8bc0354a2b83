use super::*;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://kubernetes.default.svc";

struct TestKey {
    encoding: EncodingKey,
    jwk: Value,
    alg: Algorithm,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key(kid: &str) -> TestKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = pair.as_der().unwrap();
    let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_ref()).unwrap();
    let der = info.private_key.as_bytes();
    let rsa = pkcs1::RsaPrivateKeyRef::try_from(der).unwrap();
    TestKey {
        encoding: EncodingKey::from_rsa_der(der),
        jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64(rsa.modulus.as_bytes()), "e": b64(rsa.public_exponent.as_bytes())}),
        alg: Algorithm::RS256,
    }
}

fn ec_key(kid: &str) -> TestKey {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..])}),
        alg: Algorithm::ES256,
    }
}

/// Two RSA keys and one EC key, generated once.
fn keys() -> &'static [TestKey; 3] {
    static KEYS: OnceLock<[TestKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| [rsa_key("rsa-1"), rsa_key("rsa-2"), ec_key("ec-1")])
}

fn published() -> KeySet {
    let jwks: Vec<&Value> = keys().iter().map(|key| &key.jwk).collect();
    KeySet::parse(&json!({ "keys": jwks })).unwrap()
}

fn sign(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "system:serviceaccount:macp:control-plane",
        "aud": ["macp-auth-service"], "exp": NOW + 600, "nbf": NOW - 5, "iat": NOW - 5})
}

fn trust(audiences: &[&str], subjects: &[&str]) -> JwtTrust {
    JwtTrust {
        issuer: ISSUER.into(),
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        jwks_uri: None,
        jwks_file: None,
        ca_file: None,
    }
}

/// Verifies against one client "cp" trusting the macp namespace.
fn check(token: &str) -> Result<String, JwtFailure> {
    check_at(token, NOW)
}

fn check_at(token: &str, now: u64) -> Result<String, JwtFailure> {
    let cp = trust(&["macp-auth-service"], &["system:serviceaccount:macp:*"]);
    let unverified = peek(token)?;
    verify(token, &unverified, &published(), &[(&"cp", &cp)], now)
        .map(|(name, caller)| format!("{name} {}", caller.subject))
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

/// The token with one character in the middle of its signature changed.
fn flip_signature(token: &str) -> String {
    let at = token.rfind('.').unwrap() + 10;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_valid_token_names_its_client_and_subject() {
    for (key, kid) in [
        (&keys()[0], Some("rsa-1")),
        (&keys()[2], Some("ec-1")),
        (&keys()[1], None),
    ] {
        assert_eq!(
            check(&sign(key, kid, &claims())),
            Ok("cp system:serviceaccount:macp:control-plane".to_owned()),
            "{kid:?}"
        );
    }
    let single_aud = with(claims(), "aud", json!("macp-auth-service"));
    assert!(check(&sign(&keys()[0], Some("rsa-1"), &single_aud)).is_ok());
}

#[test]
fn a_token_that_is_not_a_compact_jws_is_malformed() {
    let good = sign(&keys()[0], Some("rsa-1"), &claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let cases = [
        ("an empty string is malformed", String::new()),
        ("two parts are malformed", format!("{head}.{payload}")),
        ("four parts are malformed", format!("{good}.x")),
        (
            "a non-JSON header is malformed",
            format!("{}.{payload}.sig", b64(b"nope")),
        ),
    ];
    for (name, token) in cases {
        assert_eq!(check(&token), Err(JwtFailure::Malformed), "{name}");
    }
}

#[test]
fn alg_none_and_hmac_are_not_allowed() {
    let good = sign(&keys()[0], Some("rsa-1"), &claims());
    let payload = good.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"the public modulus, say"),
    )
    .unwrap();
    for (name, token) in [
        ("alg none is not allowed", none),
        ("HS256 is not allowed", hs256),
    ] {
        assert_eq!(
            check(&token),
            Err(JwtFailure::AlgorithmNotAllowed),
            "{name}"
        );
    }
}

#[test]
fn a_signature_that_does_not_verify_or_a_key_not_published_is_refused() {
    let rsa = &keys()[0];
    let good = sign(rsa, Some("rsa-1"), &claims());
    let cases = [
        (
            "another key's signature is bad",
            sign(&keys()[1], Some("rsa-1"), &claims()),
            JwtFailure::BadSignature,
        ),
        (
            "a flipped signature is bad",
            flip_signature(&good),
            JwtFailure::BadSignature,
        ),
        (
            "an unknown kid is unknown",
            sign(rsa, Some("rsa-9"), &claims()),
            JwtFailure::UnknownKey,
        ),
        (
            "an RSA kid with an ES256 header fails",
            sign(&keys()[2], Some("rsa-1"), &claims()),
            JwtFailure::UnknownKey,
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(check(&token), Err(expected), "{name}");
    }
}

/// A claim's value in [`BAD_CLAIMS`].
enum Claim {
    /// The claim is left out.
    Absent,
    Text(&'static str),
    Number(u64),
    List(&'static [&'static str]),
}

impl Claim {
    /// The value [`with`] sets (null removes the claim).
    fn value(&self) -> Value {
        match self {
            Claim::Absent => Value::Null,
            Claim::Text(text) => json!(text),
            Claim::Number(number) => json!(number),
            Claim::List(items) => json!(items),
        }
    }
}

/// One claim changed in an otherwise good token signed by `rsa-1`, as
/// (name, claim, its value, the reason the token is refused).
const BAD_CLAIMS: &[(&str, &str, Claim, JwtFailure)] = &[
    (
        "a missing iss is an unknown issuer",
        "iss",
        Claim::Absent,
        JwtFailure::UnknownIssuer,
    ),
    (
        "a missing exp is refused",
        "exp",
        Claim::Absent,
        JwtFailure::MissingExpiry,
    ),
    (
        "a missing sub is refused",
        "sub",
        Claim::Absent,
        JwtFailure::MissingSubject,
    ),
    (
        "a string exp is malformed",
        "exp",
        Claim::Text("soon"),
        JwtFailure::MalformedClaims,
    ),
    (
        "an expired token is refused",
        "exp",
        Claim::Number(NOW - 31),
        JwtFailure::Expired,
    ),
    (
        "a token not yet valid is refused",
        "nbf",
        Claim::Number(NOW + 31),
        JwtFailure::NotYetValid,
    ),
    (
        "another audience is refused",
        "aud",
        Claim::List(&["kubernetes"]),
        JwtFailure::AudienceNotAllowed,
    ),
    (
        "no audience is refused",
        "aud",
        Claim::Absent,
        JwtFailure::AudienceNotAllowed,
    ),
    (
        "a subject outside the patterns is refused",
        "sub",
        Claim::Text("system:serviceaccount:other:x"),
        JwtFailure::SubjectNotAllowed,
    ),
];

#[test]
fn every_bad_claim_gets_its_reason() {
    for (name, claim, value, expected) in BAD_CLAIMS {
        let token = sign(
            &keys()[0],
            Some("rsa-1"),
            &with(claims(), claim, value.value()),
        );
        assert_eq!(check(&token), Err(*expected), "{name}");
    }
}

#[test]
fn exp_and_nbf_allow_thirty_seconds_of_skew() {
    let rsa = &keys()[0];
    let expiring = sign(rsa, Some("rsa-1"), &with(claims(), "exp", json!(NOW)));
    assert!(check_at(&expiring, NOW + 30).is_ok());
    assert_eq!(check_at(&expiring, NOW + 31), Err(JwtFailure::Expired));
    let early = sign(rsa, Some("rsa-1"), &with(claims(), "nbf", json!(NOW + 30)));
    assert!(check_at(&early, NOW).is_ok());
    assert_eq!(check_at(&early, NOW - 1), Err(JwtFailure::NotYetValid));
}

#[test]
fn the_first_client_accepting_audience_and_subject_wins() {
    let token = sign(&keys()[0], Some("rsa-1"), &claims());
    let unverified = peek(&token).unwrap();
    let other_aud = trust(&["elsewhere"], &["*"]);
    let other_sub = trust(
        &["macp-auth-service"],
        &["system:serviceaccount:kube-system:*"],
    );
    let cp = trust(
        &["x", "macp-auth-service"],
        &["system:serviceaccount:macp:control-plane"],
    );
    let catch_all = trust(&["macp-auth-service"], &["*"]);
    let candidates = [
        (&"a", &other_aud),
        (&"b", &other_sub),
        (&"cp", &cp),
        (&"d", &catch_all),
    ];
    let (name, caller) = verify(&token, &unverified, &published(), &candidates, NOW).unwrap();
    assert_eq!(*name, "cp");
    assert_eq!(caller.subject, "system:serviceaccount:macp:control-plane");
    // With only the near misses, the subject is what failed.
    assert_eq!(
        verify(&token, &unverified, &published(), &candidates[..2], NOW).unwrap_err(),
        JwtFailure::SubjectNotAllowed
    );
}

#[test]
fn trust_entries_are_checked() {
    let base = || trust(&["macp-auth-service"], &["system:serviceaccount:macp:*"]);
    let cases: [(&str, JwtTrust, Result<(), &str>); 8] = [
        ("an https issuer with discovery is fine", base(), Ok(())),
        (
            "an empty issuer is refused",
            JwtTrust {
                issuer: " ".into(),
                ..base()
            },
            Err("\"jwt.issuer\" must be a non-empty string"),
        ),
        (
            "no audience is refused",
            JwtTrust {
                audiences: vec![],
                ..base()
            },
            Err("\"jwt.audiences\" must list at least one non-empty audience"),
        ),
        (
            "an empty subject is refused",
            JwtTrust {
                subjects: vec![String::new()],
                ..base()
            },
            Err("\"jwt.subjects\" must list at least one non-empty pattern"),
        ),
        (
            "an http issuer off loopback cannot be discovered",
            JwtTrust {
                issuer: "http://issuer.example".into(),
                ..base()
            },
            Err(
                "\"jwt.issuer\" must be an https URL (http only to a loopback address) for discovery, or name \"jwks_uri\" or \"jwks_file\"",
            ),
        ),
        (
            "a non-URL issuer is fine with a jwks_file",
            JwtTrust {
                issuer: "spiffe://example.org".into(),
                jwks_file: Some("/etc/jwks.json".into()),
                ..base()
            },
            Ok(()),
        ),
        (
            "an http jwks_uri off loopback is refused",
            JwtTrust {
                jwks_uri: Some("http://10.0.0.1/jwks".into()),
                ..base()
            },
            Err("\"jwt.jwks_uri\" must be an https URL (http only to a loopback address)"),
        ),
        (
            "jwks_uri and jwks_file together are refused",
            JwtTrust {
                jwks_uri: Some("https://x/jwks".into()),
                jwks_file: Some("/j".into()),
                ..base()
            },
            Err("\"jwt\" may name \"jwks_uri\" or \"jwks_file\", not both"),
        ),
    ];
    for (name, entry, expected) in cases {
        assert_eq!(entry.validate(), expected, "{name}");
    }
}

#[test]
fn failure_reasons_have_stable_names() {
    assert_eq!(JwtFailure::UnknownKey.as_str(), "unknown_kid");
    assert_eq!(
        JwtFailure::KeysUnavailable { retry_after: 3 }.as_str(),
        "issuer_keys_unavailable"
    );
}
