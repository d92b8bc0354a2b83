//! Signing keys for tests. RSA key generation is the slowest thing a test
//! can do, so RSA keys are made once per test binary and shared. ES256 keys
//! are made once per kid: a kid names one key, as the service requires of a
//! ring it reloads (a kid that named another key before is refused).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use macp_auth_service::keys::{SigningAlg, generate_private_jwk};
use serde_json::{Value, json};

/// A private JWK for `alg` (kid `rs256-test-key` / `es256-test-key`),
/// generated once per test binary.
pub fn private_jwk(alg: SigningAlg) -> &'static str {
    static RSA: OnceLock<String> = OnceLock::new();
    static EC: OnceLock<String> = OnceLock::new();
    let cell = match alg {
        SigningAlg::Rs256 => &RSA,
        SigningAlg::Es256 => &EC,
    };
    cell.get_or_init(|| {
        let kid = format!("{}-test-key", alg.as_str().to_lowercase());
        Value::Object(generate_private_jwk(alg, 2048, Some(&kid)).unwrap()).to_string()
    })
}

/// A second RSA private JWK (no kid: the thumbprint names it), distinct from
/// [`private_jwk`]'s, generated once per test binary.
pub fn other_rsa_jwk() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        Value::Object(generate_private_jwk(SigningAlg::Rs256, 2048, None).unwrap()).to_string()
    })
}

/// The ES256 private JWK named `kid` (made on first use, the same for every
/// later use in this test binary), activating at `activate_at` (Unix
/// seconds) when given.
pub fn es256_key(kid: &str, activate_at: Option<u64>) -> Value {
    static BY_KID: OnceLock<Mutex<HashMap<String, serde_json::Map<String, Value>>>> =
        OnceLock::new();
    let mut keys = BY_KID
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut jwk = keys
        .entry(kid.to_owned())
        .or_insert_with(|| generate_private_jwk(SigningAlg::Es256, 0, Some(kid)).unwrap())
        .clone();
    if let Some(at) = activate_at {
        jwk.insert("activate_at".into(), at.into());
    }
    Value::Object(jwk)
}

/// A JWK Set holding `keys`, as a key ring file or variable holds it.
pub fn ring_text(keys: &[&Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A ring of the ES256 keys named `kids`, all active now.
pub fn es256_ring(kids: &[&str]) -> String {
    let keys: Vec<Value> = kids.iter().map(|kid| es256_key(kid, None)).collect();
    ring_text(&keys.iter().collect::<Vec<_>>())
}
