//! Public keys as a verifier sees them: a key store's DER
//! SubjectPublicKeyInfo turned into JWK members with the RustCrypto DER
//! crates, independently of the service's own parsing, and the RFC 7638
//! thumbprint a kid defaults to.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pkcs8::spki::SubjectPublicKeyInfoRef;
use serde_json::{Value, json};

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// The public JWK members (`kty`, `n`/`e` or `crv`/`x`/`y`) of an RSA or
/// P-256 SubjectPublicKeyInfo.
pub fn public_members(spki_der: &[u8]) -> Value {
    let spki = SubjectPublicKeyInfoRef::try_from(spki_der).expect("a DER SubjectPublicKeyInfo");
    let key = spki.subject_public_key.raw_bytes();
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match spki.algorithm.oid.to_string().as_str() {
        RSA_ENCRYPTION => {
            let rsa = pkcs1::RsaPublicKeyRef::try_from(key).expect("a PKCS#1 RSA public key");
            json!({
                "kty": "RSA",
                "n": b64(rsa.modulus.as_bytes()),
                "e": b64(rsa.public_exponent.as_bytes()),
            })
        }
        EC_PUBLIC_KEY => {
            assert_eq!(key.len(), 65, "an uncompressed P-256 point");
            assert_eq!(key[0], 4);
            json!({"kty": "EC", "crv": "P-256", "x": b64(&key[1..33]), "y": b64(&key[33..])})
        }
        other => panic!("unexpected key algorithm {other}"),
    }
}

/// The RFC 7638 thumbprint of public members: SHA-256 over the required
/// members in lexicographic order, base64url.
pub fn thumbprint(members: &Value) -> String {
    let canonical = match members["kty"].as_str() {
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            members["e"].as_str().unwrap(),
            members["n"].as_str().unwrap()
        ),
        _ => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            members["x"].as_str().unwrap(),
            members["y"].as_str().unwrap()
        ),
    };
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// Whether the JWK `published` carries exactly the public key `expected`.
pub fn same_key(published: &Value, expected: &Value) -> bool {
    ["kty", "n", "e", "crv", "x", "y"]
        .iter()
        .all(|member| published.get(member) == expected.get(member))
}
