use super::*;
use crate::keys::{KeySource, SigningAlg, generate_private_jwk};
use serde_json::{Value, json};

const MAX_TTL: u64 = 3600;

fn jwk(kid: &str, activate_at: Option<Value>) -> Value {
    let mut jwk = generate_private_jwk(SigningAlg::Es256, 0, Some(kid)).unwrap();
    if let Some(at) = activate_at {
        jwk.insert(ACTIVATE_AT.into(), at);
    }
    Value::Object(jwk)
}

fn ring(keys: Vec<Value>) -> KeyRing {
    KeyRing::parse(
        SigningAlg::Es256,
        &json!({ "keys": keys }).to_string(),
        KeySource::Env,
    )
    .unwrap()
}

fn kids(ring: &KeyRing, indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .map(|i| ring.keys()[*i].key.kid().to_owned())
        .collect()
}

#[test]
fn a_single_jwk_is_a_ring_of_one_that_has_always_been_active() {
    let text = jwk("only", None).to_string();
    let ring = KeyRing::parse(SigningAlg::Es256, &text, KeySource::Env).unwrap();
    let schedule = ring.schedule(0, MAX_TTL);
    assert_eq!(schedule.signing, Some(0));
    assert_eq!(schedule.published, vec![0]);
    assert_eq!(schedule.next_change(), None);
}

#[test]
fn the_latest_activated_key_signs_and_ties_go_to_the_first() {
    let ring = ring(vec![
        jwk("a", None),
        jwk("b", Some(json!(100))),
        jwk("c", Some(json!(100))),
        jwk("d", Some(json!(200))),
    ]);
    assert_eq!(ring.schedule(99, MAX_TTL).signing, Some(0));
    assert_eq!(ring.schedule(100, MAX_TTL).signing, Some(1));
    assert_eq!(ring.schedule(199, MAX_TTL).signing, Some(1));
    assert_eq!(ring.schedule(200, MAX_TTL).signing, Some(3));
}

#[test]
fn a_rotation_publishes_first_switches_at_activation_and_retires_after_the_last_token() {
    let ring = ring(vec![jwk("old", None), jwk("new", Some(json!(1000)))]);
    let before = ring.schedule(500, MAX_TTL);
    assert_eq!(kids(&ring, &[before.signing.unwrap()]), ["old"]);
    assert_eq!(
        kids(&ring, &before.published),
        ["old", "new"],
        "pre-published"
    );
    assert_eq!(before.next_activation, Some(1000));
    assert_eq!(ring.status(1, 500, MAX_TTL), KeyStatus::Pending);

    let after = ring.schedule(1000, MAX_TTL);
    assert_eq!(kids(&ring, &[after.signing.unwrap()]), ["new"]);
    assert_eq!(kids(&ring, &after.published), ["old", "new"]);
    let retire_at = 1000 + MAX_TTL + VERIFIER_LEEWAY_SECONDS;
    assert_eq!(after.next_retirement, Some(retire_at));
    assert_eq!(ring.status(0, 1000, MAX_TTL), KeyStatus::Superseded);

    assert_eq!(
        kids(&ring, &ring.schedule(retire_at - 1, MAX_TTL).published),
        ["old", "new"]
    );
    assert_eq!(
        kids(&ring, &ring.schedule(retire_at, MAX_TTL).published),
        ["new"]
    );
    assert_eq!(ring.status(0, retire_at, MAX_TTL), KeyStatus::Retired);
    assert_eq!(ring.schedule(retire_at, MAX_TTL).next_change(), None);
}

#[test]
fn a_key_stays_published_until_the_last_token_this_process_signed_with_it_expires() {
    const LEEWAY: u64 = VERIFIER_LEEWAY_SECONDS;
    // (successor's activation, when this process stopped signing with the
    // old key, when the old key retires)
    let cases = [
        // The successor activated on schedule: the ring's own rule.
        (1_000, None, 1_000 + MAX_TTL + LEEWAY),
        (1_000, Some(1_000), 1_000 + MAX_TTL + LEEWAY),
        // The successor arrived with an activation already 2 hours past:
        // the old key signed until the reload at 10_000.
        (2_800, Some(10_000), 10_000 + MAX_TTL + LEEWAY),
        // An activation in the past can never shorten publication.
        (1, Some(50), 50 + MAX_TTL + LEEWAY),
        // A fact earlier than the schedule changes nothing.
        (5_000, Some(4_000), 5_000 + MAX_TTL + LEEWAY),
    ];
    for (successor, stopped, retire_at) in cases {
        let plain = ring(vec![jwk("old", None), jwk("new", Some(json!(successor)))]);
        let facts: HashMap<String, u64> = stopped
            .map(|at| ("old".to_owned(), at))
            .into_iter()
            .collect();
        let ring = plain.with_stopped_signing(&facts);
        let case = format!("successor at {successor}, stopped at {stopped:?}");
        assert_eq!(ring.retirement(0, MAX_TTL), Some(retire_at), "{case}");
        assert_eq!(
            ring.retirement(1, MAX_TTL),
            None,
            "{case}: the new key signs"
        );
        assert!(
            ring.schedule(retire_at - 1, MAX_TTL).published.contains(&0),
            "{case}"
        );
        assert!(
            !ring.schedule(retire_at, MAX_TTL).published.contains(&0),
            "{case}"
        );
        assert_eq!(
            ring.status(0, retire_at - 1, MAX_TTL),
            KeyStatus::Superseded,
            "{case}"
        );
        assert_eq!(
            ring.status(0, retire_at, MAX_TTL),
            KeyStatus::Retired,
            "{case}"
        );
    }
}

#[test]
fn activation_times_may_be_rfc3339() {
    let ring = ring(vec![
        jwk("a", None),
        jwk("b", Some(json!("2026-11-23T00:00:00Z"))),
    ]);
    assert_eq!(ring.keys()[1].activate_at, Some(1_795_392_000));
}

#[test]
fn bad_rings_are_refused_with_a_reason() {
    let a = jwk("a", None);
    let cases: Vec<(String, &str)> = vec![
        (json!({"keys": []}).to_string(), "holds no keys"),
        (
            json!({"keys": {}}).to_string(),
            "has a \"keys\" member that is not an array",
        ),
        (
            json!({"keys": [a, a]}).to_string(),
            "has two keys with kid \"a\"",
        ),
        (
            json!({"keys": [jwk("x", Some(json!("tomorrow")))]}).to_string(),
            "key 1 (kid \"x\"): \"activate_at\" must be Unix seconds or an RFC 3339 timestamp",
        ),
        (
            json!({"keys": [jwk("x", Some(json!(-5)))]}).to_string(),
            "key 1 (kid \"x\"): \"activate_at\" must be",
        ),
        (
            json!({"keys": [a, {"kty": "EC", "kid": "pub", "crv": "P-256", "x": "AA", "y": "AA"}]})
                .to_string(),
            "key 2 (kid \"pub\"): must be a private JWK",
        ),
        ("not a key".into(), "must be a private JWK, a JWK Set"),
        ("[1]".into(), "must be a JSON object"),
        ("{oops".into(), "is not valid JSON"),
        (json!({"kty": "EC"}).to_string(), "must be a private JWK"),
    ];
    for (text, expected) in cases {
        let err = KeyRing::parse(SigningAlg::Es256, &text, KeySource::Env)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn a_ring_with_nothing_active_or_too_many_keys_is_refused() {
    let future = ring(vec![jwk("later", Some(json!(5000)))]);
    assert_eq!(
        future.validate(100, MAX_TTL).unwrap_err().to_string(),
        "has no active key: every key's activate_at is in the future (the earliest is 1970-01-01T01:23:20Z)"
    );
    let crowded = ring(
        (0..9)
            .map(|i| jwk(&format!("k{i}"), Some(json!(i * 10))))
            .collect(),
    );
    assert_eq!(
        crowded.validate(100, MAX_TTL).unwrap_err(),
        RingError::TooManyKeys(9)
    );
    assert!(
        crowded.validate(100 + 80 + MAX_TTL + 60, MAX_TTL).is_ok(),
        "once most have retired"
    );
}

fn pem(label: &str, der: &[u8]) -> String {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).unwrap()
}

/// One RSA key as PKCS#8 and PKCS#1 DER.
fn rsa_der() -> (Vec<u8>, Vec<u8>) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::RsaKeyPair;
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = rsa.as_der().unwrap().as_ref().to_vec();
    let pkcs1 = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_slice())
        .unwrap()
        .private_key
        .as_bytes()
        .to_vec();
    (pkcs8, pkcs1)
}

#[test]
fn pem_keys_of_every_supported_kind_load_with_thumbprint_kids() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let (pkcs8, pkcs1) = rsa_der();
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ec_pkcs8 = ec.to_pkcs8v1().unwrap();
    let sec1 = ec.private_key().as_der().unwrap();

    let from_pkcs8 = KeyRing::parse(
        SigningAlg::Rs256,
        &pem("PRIVATE KEY", pkcs8.as_ref()),
        KeySource::File,
    )
    .unwrap();
    let from_pkcs1 = KeyRing::parse(
        SigningAlg::Rs256,
        &pem("RSA PRIVATE KEY", &pkcs1),
        KeySource::File,
    )
    .unwrap();
    assert_eq!(from_pkcs8.keys()[0].key.kid().len(), 43, "thumbprint kid");
    assert_eq!(
        from_pkcs8.keys()[0].key.public_jwk(),
        from_pkcs1.keys()[0].key.public_jwk(),
        "PKCS#8 and PKCS#1 of one key are the same key"
    );
    let two_blocks = format!(
        "{}\n{}",
        pem("PRIVATE KEY", pkcs8.as_ref()),
        pem("PRIVATE KEY", &rsa_der().0)
    );
    let ring = KeyRing::parse(SigningAlg::Rs256, &two_blocks, KeySource::File).unwrap();
    assert_eq!(ring.keys().len(), 2, "several PEM blocks make a ring");
    assert!(ring.validate(0, MAX_TTL).is_ok());
    let same_twice = format!(
        "{}\n{}",
        pem("PRIVATE KEY", pkcs8.as_ref()),
        pem("RSA PRIVATE KEY", &pkcs1)
    );
    assert!(matches!(
        KeyRing::parse(SigningAlg::Rs256, &same_twice, KeySource::File),
        Err(RingError::DuplicateKid(_))
    ));

    for text in [
        pem("PRIVATE KEY", ec_pkcs8.as_ref()),
        pem("EC PRIVATE KEY", sec1.as_ref()),
    ] {
        let ring = KeyRing::parse(SigningAlg::Es256, &text, KeySource::File).unwrap();
        assert_eq!(ring.keys()[0].key.public_jwk()["crv"], "P-256");
    }
}

#[test]
fn unusable_pem_blocks_are_refused_with_a_reason() {
    let (pkcs8, pkcs1) = rsa_der();
    let cases = [
        (
            SigningAlg::Es256,
            pem("RSA PRIVATE KEY", &pkcs1),
            "has key type \"RSA\" (PEM), but ES256 needs kty \"EC\"",
        ),
        (
            SigningAlg::Es256,
            pem("PRIVATE KEY", pkcs8.as_ref()),
            "holds a PEM PRIVATE KEY block that is not a usable ES256 private key",
        ),
        (
            SigningAlg::Rs256,
            pem("PUBLIC KEY", &[1, 2, 3]),
            "holds a PEM block labelled \"PUBLIC KEY\"",
        ),
        (
            SigningAlg::Rs256,
            pem("ENCRYPTED PRIVATE KEY", &[1, 2, 3]),
            "holds a PEM block labelled \"ENCRYPTED PRIVATE KEY\"",
        ),
        (
            SigningAlg::Rs256,
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n".into(),
            "holds a PEM (undecodable) block",
        ),
    ];
    for (alg, text, expected) in cases {
        let err = KeyRing::parse(alg, &text, KeySource::File)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn a_ring_document_is_editable_as_a_list_of_jwks() {
    let single = jwk("one", None).to_string();
    assert_eq!(ring_document(&single).unwrap().len(), 1);
    let set = json!({"keys": [jwk("a", None), jwk("b", None)]}).to_string();
    let keys = ring_document(&set).unwrap();
    assert_eq!(keys[1]["kid"], "b");
}

#[test]
fn a_lone_jwk_without_kid_keeps_the_references_kid_and_set_members_get_thumbprints() {
    let without_kid = |kid: &str| {
        let mut key = jwk(kid, None);
        key.as_object_mut().unwrap().remove("kid");
        key
    };
    let lone = KeyRing::parse(
        SigningAlg::Es256,
        &without_kid("x").to_string(),
        KeySource::Env,
    )
    .unwrap();
    assert_eq!(lone.keys()[0].key.kid(), LONE_JWK_KID);
    assert!(lone.kid_defaulted());

    let named = KeyRing::parse(
        SigningAlg::Es256,
        &jwk("k1", None).to_string(),
        KeySource::File,
    )
    .unwrap();
    assert_eq!(named.keys()[0].key.kid(), "k1");
    assert!(!named.kid_defaulted());

    let set = ring(vec![without_kid("a"), without_kid("b")]);
    for entry in set.keys() {
        assert_eq!(entry.key.kid().len(), 43, "RFC 7638 thumbprint");
    }
    assert_ne!(set.keys()[0].key.kid(), set.keys()[1].key.kid());
    assert!(!set.kid_defaulted());
    let set_of_one = ring(vec![without_kid("c")]);
    assert_eq!(set_of_one.keys()[0].key.kid().len(), 43);

    // Editing a lone kid-less key as a set keeps the kid it is served with.
    let document = ring_document(&without_kid("d").to_string()).unwrap();
    assert_eq!(document[0]["kid"], LONE_JWK_KID);
}
