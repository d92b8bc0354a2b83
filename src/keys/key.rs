//! The signing key: where it comes from, how it signs, and what of it is public.
//!
//! A key is either generated at startup (ephemeral, kid `dev-key-1`) or loaded
//! from a private JWK. Loading checks everything a verifier will later depend
//! on (key type against the algorithm, RSA size, the private part against the
//! public part) and finishes with a sign-and-verify probe against the very
//! public members the JWKS will publish, so a key that would mint unverifiable
//! tokens never reaches the request path.
//!
//! Private-key operations happen only inside AWS-LC (`aws-lc-rs`), whose RSA
//! and ECDSA signing is constant-time; the key is parsed once here and kept in
//! AWS-LC's own form so signing never re-parses it. Nothing in this module
//! formats private material into an error or a `Debug` string.

use std::fmt;

use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::alg::SigningAlg;

/// Bytes of an ES256 signature (JOSE `r || s`).
const ES256_SIGNATURE_LEN: usize = 64;
/// Bytes of the largest RSA signature a key ring accepts (4096-bit).
const MAX_RSA_SIGNATURE_LEN: usize = 512;
#[cfg(feature = "aws-kms")]
use super::aws_kms::KmsKey;
use super::backend::{self, Backends, External};
use super::custody::{Backend, PROBE, PublicKey};
use super::error::{KeyError, SignError};
use super::jwk::{check_declared, declared_kid};

/// The kid of a key generated at startup, as the reference service uses.
pub(crate) const EPHEMERAL_KID: &str = "dev-key-1";

/// The smallest RSA modulus accepted, in bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// P-256 field elements and scalars are 32 bytes.
pub(super) const P256_COORDINATE_LEN: usize = 32;

/// Where the signing key came from, as the startup log reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// Generated at startup; gone at exit.
    Ephemeral,
    /// Loaded from `MACP_AUTH_SIGNING_KEY_JSON`.
    Env,
    /// Loaded from the file named by `MACP_AUTH_SIGNING_KEY_FILE`.
    File,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySource::Ephemeral => "ephemeral",
            KeySource::Env => "env",
            KeySource::File => "file",
        })
    }
}

pub(super) enum KeyPairKind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    /// A key in an external store, opened and probed by [`super::backend`].
    External(External),
}

/// A private key ready to sign, with its kid and the public JWK derived from it.
pub struct SigningKey {
    alg: SigningAlg,
    kid: String,
    source: KeySource,
    pair: KeyPairKind,
    public_jwk: Map<String, Value>,
    header_b64: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("source", &self.source)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA-2048 or P-256) with kid `dev-key-1`.
    pub(crate) fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
        let pair = match alg {
            SigningAlg::Rs256 => KeyPairKind::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generation { alg })?,
            ),
            SigningAlg::Es256 => KeyPairKind::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| KeyError::Generation { alg })?,
            ),
        };
        Self::assemble(
            alg,
            Some(EPHEMERAL_KID.to_owned()),
            KeySource::Ephemeral,
            pair,
        )
    }

    /// Opens the external key a ring member names (`pkcs11` or `aws_kms`)
    /// for `alg`. The kid is the member's own, or the RFC 7638 thumbprint
    /// of the public key the store returns.
    pub(super) fn from_backend(
        alg: SigningAlg,
        jwk: &Map<String, Value>,
        source: KeySource,
        backends: &Backends,
    ) -> Result<Option<Self>, KeyError> {
        let Some((backend, reference)) = backend::named_backend(jwk)? else {
            return Ok(None);
        };
        check_declared(alg, jwk)?;
        let kid = declared_kid(jwk)?;
        let external = backend::open(backends, backend, reference, alg)?;
        Self::assemble(alg, kid, source, KeyPairKind::External(external)).map(Some)
    }

    pub(super) fn assemble(
        alg: SigningAlg,
        kid: Option<String>,
        source: KeySource,
        pair: KeyPairKind,
    ) -> Result<Self, KeyError> {
        let public = match &pair {
            KeyPairKind::Rsa(rsa) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
                PublicKey::rsa(&components.n, &components.e).map_err(|_| KeyError::Mismatch)?
            }
            KeyPairKind::Ec(ec) => {
                PublicKey::p256_point(ec.public_key().as_ref()).map_err(|_| KeyError::Mismatch)?
            }
            KeyPairKind::External(external) => external.public_key().clone(),
        };
        let (mut public_jwk, thumbprint) = public.jwk();
        let kid = kid.unwrap_or(thumbprint);
        public_jwk.insert("kid".into(), kid.clone().into());
        public_jwk.insert("alg".into(), alg.as_str().into());
        public_jwk.insert("use".into(), "sig".into());

        let header = json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());

        let key = SigningKey {
            alg,
            kid,
            source,
            pair,
            public_jwk,
            header_b64,
        };
        // An external key was probed through its store when it was opened.
        if !matches!(key.pair, KeyPairKind::External(_)) {
            let signature = key.sign(PROBE).map_err(|_| KeyError::Mismatch)?;
            public
                .check_probe(alg, &signature)
                .map_err(|_| KeyError::Mismatch)?;
        }
        Ok(key)
    }

    /// Signs `message` (the JWS signing input) and returns the raw signature:
    /// PKCS#1 v1.5 for RS256, fixed-width `r || s` for ES256. An external
    /// key blocks the calling thread until its store answers.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            KeyPairKind::Rsa(rsa) => {
                let mut signature = vec![0; rsa.public_modulus_len()];
                // aws-lc-rs ignores the RNG for PKCS#1 v1.5; AWS-LC blinds internally.
                let rng = aws_lc_rs::rand::SystemRandom::new();
                rsa.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| SignError::Local)?;
                Ok(signature)
            }
            KeyPairKind::Ec(ec) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let signature = ec.sign(&rng, message).map_err(|_| SignError::Local)?;
                Ok(signature.as_ref().to_vec())
            }
            KeyPairKind::External(external) => {
                external
                    .sign_blocking(message)
                    .map_err(|error| SignError::Backend {
                        backend: external.backend(),
                        error,
                    })
            }
        }
    }

    /// The length of this key's signatures in bytes (at most that, for an
    /// RSA key in an external store), so a token's buffer is sized once.
    pub fn signature_len(&self) -> usize {
        match &self.pair {
            KeyPairKind::Rsa(rsa) => rsa.public_modulus_len(),
            KeyPairKind::Ec(_) => ES256_SIGNATURE_LEN,
            KeyPairKind::External(_) => match self.alg() {
                SigningAlg::Es256 => ES256_SIGNATURE_LEN,
                SigningAlg::Rs256 => MAX_RSA_SIGNATURE_LEN,
            },
        }
    }

    /// The store holding the private key, or `None` for a key in this
    /// process (AWS-LC).
    pub(crate) fn backend(&self) -> Option<Backend> {
        match &self.pair {
            KeyPairKind::External(external) => Some(external.backend()),
            _ => None,
        }
    }

    /// Where the private key lives, for logs and `check-config`:
    /// `in-process`, or the store and the key's reference (never a PIN).
    pub(crate) fn custody(&self) -> String {
        match &self.pair {
            KeyPairKind::External(external) => {
                format!("{} {}", external.backend(), external.description())
            }
            _ => "in-process".to_owned(),
        }
    }

    /// The KMS key, for signing asynchronously on the request path.
    #[cfg(feature = "aws-kms")]
    pub(crate) fn kms(&self) -> Option<&KmsKey> {
        match &self.pair {
            KeyPairKind::External(External::AwsKms(key)) => Some(key),
            _ => None,
        }
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The key id in every token header and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Where the key came from.
    pub fn source(&self) -> KeySource {
        self.source
    }

    /// The public JWK: `kty`, the public members, `kid`, `alg`, `use`.
    pub fn public_jwk(&self) -> &Map<String, Value> {
        &self.public_jwk
    }

    /// The base64url-encoded JOSE header, identical for every token this key signs.
    pub fn header_b64(&self) -> &str {
        &self.header_b64
    }
}

/// Serialises a JWKS document, `{"keys": [...]}`, from public JWKs only.
pub(crate) fn jwks_json<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Vec<u8> {
    let keys: Vec<&Map<String, Value>> = keys.into_iter().map(SigningKey::public_jwk).collect();
    serde_json::to_vec(&json!({ "keys": keys })).expect("a map of strings always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::pem::bit_length;
    use crate::keys::{default_kid, generate_private_jwk, public_jwk_from_private};
    use std::sync::OnceLock;

    /// RSA generation is the slow part of this suite: make each key once.
    fn rsa_jwk() -> &'static Map<String, Value> {
        static KEY: OnceLock<Map<String, Value>> = OnceLock::new();
        KEY.get_or_init(|| generate_private_jwk(SigningAlg::Rs256, 2048, Some("rsa-test")).unwrap())
    }

    fn other_rsa_jwk() -> &'static Map<String, Value> {
        static KEY: OnceLock<Map<String, Value>> = OnceLock::new();
        KEY.get_or_init(|| generate_private_jwk(SigningAlg::Rs256, 2048, None).unwrap())
    }

    fn ec_jwk() -> Map<String, Value> {
        generate_private_jwk(SigningAlg::Es256, 0, Some("ec-test")).unwrap()
    }

    fn load(alg: SigningAlg, jwk: &Map<String, Value>) -> Result<SigningKey, KeyError> {
        SigningKey::from_jwk_json(alg, &Value::Object(jwk.clone()).to_string(), KeySource::Env)
    }

    fn with(jwk: &Map<String, Value>, name: &str, value: Value) -> Map<String, Value> {
        let mut jwk = jwk.clone();
        jwk.insert(name.to_owned(), value);
        jwk
    }

    fn without(jwk: &Map<String, Value>, name: &str) -> Map<String, Value> {
        let mut jwk = jwk.clone();
        jwk.remove(name);
        jwk
    }

    const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

    fn assert_public_only(jwk: &Map<String, Value>) {
        for private in PRIVATE_MEMBERS {
            assert!(!jwk.contains_key(private), "JWKS leaks {private}: {jwk:?}");
        }
        assert_eq!(jwk["use"], "sig");
    }

    #[test]
    fn an_ephemeral_rsa_key_is_2048_bits_with_the_dev_kid() {
        let key = SigningKey::generate(SigningAlg::Rs256).unwrap();
        assert_eq!(key.kid(), "dev-key-1");
        assert_eq!(key.source(), KeySource::Ephemeral);
        let jwk = key.public_jwk();
        let keys: Vec<&str> = jwk.keys().map(String::as_str).collect();
        assert_eq!(keys, ["kty", "n", "e", "kid", "alg", "use"]);
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["e"], "AQAB");
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(bit_length(&n), 2048);
        assert_public_only(jwk);
    }

    #[test]
    fn an_ephemeral_ec_key_is_p256_with_the_dev_kid() {
        let key = SigningKey::generate(SigningAlg::Es256).unwrap();
        assert_eq!(key.kid(), "dev-key-1");
        let jwk = key.public_jwk();
        let keys: Vec<&str> = jwk.keys().map(String::as_str).collect();
        assert_eq!(keys, ["kty", "crv", "x", "y", "kid", "alg", "use"]);
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_public_only(jwk);
        let signature = key.sign(b"message").unwrap();
        assert_eq!(signature.len(), 64, "JWS wants fixed-width r||s");
    }

    #[test]
    fn a_pinned_rsa_key_keeps_its_kid_and_public_members() {
        let key = load(SigningAlg::Rs256, rsa_jwk()).unwrap();
        assert_eq!(key.kid(), "rsa-test");
        assert_eq!(key.source(), KeySource::Env);
        assert_eq!(key.public_jwk()["n"], rsa_jwk()["n"]);
        assert_eq!(key.public_jwk()["e"], rsa_jwk()["e"]);
        assert_public_only(key.public_jwk());
    }

    #[test]
    fn a_pinned_ec_key_keeps_its_kid_and_public_members() {
        let jwk = ec_jwk();
        let key = load(SigningAlg::Es256, &jwk).unwrap();
        assert_eq!(key.kid(), "ec-test");
        assert_eq!(key.public_jwk()["x"], jwk["x"]);
        assert_eq!(key.public_jwk()["y"], jwk["y"]);
        assert_public_only(key.public_jwk());
    }

    #[test]
    fn a_key_without_kid_gets_its_rfc7638_thumbprint() {
        // RFC 7638 section 3.1's worked example.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let input = format!(r#"{{"e":"AQAB","kty":"RSA","n":"{n}"}}"#);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(digest.as_ref()),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );

        let rsa = load(SigningAlg::Rs256, &without(rsa_jwk(), "kid")).unwrap();
        let expected = {
            let jwk = rsa.public_jwk();
            let input = format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                jwk["e"].as_str().unwrap(),
                jwk["n"].as_str().unwrap()
            );
            URL_SAFE_NO_PAD.encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes()).as_ref(),
            )
        };
        assert_eq!(rsa.kid(), expected);

        let other = load(SigningAlg::Rs256, other_rsa_jwk()).unwrap();
        assert_ne!(rsa.kid(), other.kid(), "different keys, different kids");

        let ec = load(SigningAlg::Es256, &without(&ec_jwk(), "kid")).unwrap();
        assert_eq!(ec.kid().len(), 43, "base64url of a SHA-256 digest");
    }

    /// The key a [`BadKey`] case spoils.
    #[derive(Clone, Copy)]
    enum Base {
        Rsa,
        Ec,
    }

    /// How a [`BadKey`] case spoils its key.
    enum Spoil {
        /// Not a JWK at all: this text instead.
        Text(&'static str),
        /// The key as it is (offered for the wrong algorithm).
        Unchanged,
        /// The key without these members.
        Without(&'static [&'static str]),
        /// The key with this member set to this JSON value.
        With(&'static str, &'static str),
        /// The key with this member taken from another key of its type.
        FromOther(&'static str),
    }

    /// A key the service refuses, and the start of the reason it gives.
    struct BadKey {
        name: &'static str,
        alg: SigningAlg,
        base: Base,
        spoil: Spoil,
        expected: &'static str,
    }

    const BAD_KEYS: &[BadKey] = &[
        BadKey {
            name: "not JSON",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::Text("{not json"),
            expected: "is not valid JSON",
        },
        BadKey {
            name: "an array",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::Text("[1,2]"),
            expected: "must be a JSON object",
        },
        BadKey {
            name: "public-only RSA",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::Without(&PRIVATE_MEMBERS),
            expected: "must be a private JWK",
        },
        BadKey {
            name: "public-only EC",
            alg: SigningAlg::Es256,
            base: Base::Ec,
            spoil: Spoil::Without(&["d"]),
            expected: "must be a private JWK",
        },
        BadKey {
            name: "EC key for RS256",
            alg: SigningAlg::Rs256,
            base: Base::Ec,
            spoil: Spoil::Unchanged,
            expected: "has key type \"EC\", but RS256 needs kty \"RSA\"",
        },
        BadKey {
            name: "RSA key for ES256",
            alg: SigningAlg::Es256,
            base: Base::Rsa,
            spoil: Spoil::Unchanged,
            expected: "has key type \"RSA\", but ES256 needs kty \"EC\"",
        },
        BadKey {
            name: "no kty",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::Without(&["kty"]),
            expected: "member \"kty\" is missing",
        },
        BadKey {
            name: "missing p",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::Without(&["p"]),
            expected: "member \"p\" is missing",
        },
        BadKey {
            name: "missing qi",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::Without(&["qi"]),
            expected: "member \"qi\" is missing",
        },
        BadKey {
            name: "n not base64url",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("n", r#""***""#),
            expected: "member \"n\" must be a base64url string",
        },
        BadKey {
            name: "n a number",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("n", "5"),
            expected: "member \"n\" must be a base64url string",
        },
        BadKey {
            name: "private exponent from another key",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::FromOther("d"),
            expected: "has a private part that does not match its public part",
        },
        BadKey {
            name: "modulus from another key",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::FromOther("n"),
            expected: "has a private part that does not match its public part",
        },
        BadKey {
            name: "CRT coefficient from another key",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::FromOther("qi"),
            expected: "has a private part that does not match its public part",
        },
        BadKey {
            name: "EC private scalar from another key",
            alg: SigningAlg::Es256,
            base: Base::Ec,
            spoil: Spoil::FromOther("d"),
            expected: "has a private part that does not match its public part",
        },
        BadKey {
            name: "P-384 curve",
            alg: SigningAlg::Es256,
            base: Base::Ec,
            spoil: Spoil::With("crv", r#""P-384""#),
            expected: "has curve \"P-384\", but ES256 needs crv \"P-256\"",
        },
        BadKey {
            name: "short x",
            alg: SigningAlg::Es256,
            base: Base::Ec,
            spoil: Spoil::With("x", r#""AQAB""#),
            expected: "member \"x\" must encode exactly 32 bytes",
        },
        BadKey {
            name: "alg RS512",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("alg", r#""RS512""#),
            expected: "declares alg \"RS512\", but the service is configured for RS256",
        },
        BadKey {
            name: "use enc",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("use", r#""enc""#),
            expected: "declares use \"enc\"",
        },
        BadKey {
            name: "empty kid",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("kid", r#""""#),
            expected: "member \"kid\" must be a non-empty string",
        },
        BadKey {
            name: "kid with a line break",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("kid", r#""k1\nINFO forged""#),
            expected: "member \"kid\" must be a non-empty string without control characters",
        },
        BadKey {
            name: "kid with a carriage return",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("kid", r#""k1\r""#),
            expected: "member \"kid\" must be a non-empty string without control characters",
        },
        BadKey {
            name: "multi-prime",
            alg: SigningAlg::Rs256,
            base: Base::Rsa,
            spoil: Spoil::With("oth", "[]"),
            expected: "is a multi-prime RSA key",
        },
    ];

    /// The JWK text of a [`BadKey`] case.
    fn bad_key_text(case: &BadKey) -> String {
        let key = match case.base {
            Base::Rsa => rsa_jwk().clone(),
            Base::Ec => ec_jwk(),
        };
        let jwk = match case.spoil {
            Spoil::Text(text) => return text.to_owned(),
            Spoil::Unchanged => key,
            Spoil::Without(members) => members
                .iter()
                .fold(key, |jwk, member| without(&jwk, member)),
            Spoil::With(member, value) => with(&key, member, serde_json::from_str(value).unwrap()),
            Spoil::FromOther(member) => {
                let other = match case.base {
                    Base::Rsa => other_rsa_jwk()[member].clone(),
                    Base::Ec => ec_jwk()[member].clone(),
                };
                with(&key, member, other)
            }
        };
        Value::Object(jwk).to_string()
    }

    #[test]
    fn each_bad_key_is_rejected_with_a_clear_reason() {
        for case in BAD_KEYS {
            let (name, expected) = (case.name, case.expected);
            let err = SigningKey::from_jwk_json(case.alg, &bad_key_text(case), KeySource::Env)
                .expect_err(name)
                .to_string();
            assert!(
                err.starts_with(expected),
                "{name}: {err:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn a_short_rsa_key_is_rejected() {
        // A 1024-bit modulus is refused before any other check looks at it.
        let jwk = with(rsa_jwk(), "n", URL_SAFE_NO_PAD.encode([0xc5u8; 128]).into());
        let err = load(SigningAlg::Rs256, &jwk).unwrap_err();
        assert_eq!(err, KeyError::RsaTooShort { bits: 1024 });
        assert_eq!(
            err.to_string(),
            "is a 1024-bit RSA key; at least 2048 bits are required"
        );
    }

    #[test]
    fn errors_quote_registered_names_only() {
        // Found by fuzzing: a 16-character fragment of `d` pasted into kty was
        // quoted back. Nothing but registered JOSE names is quoted now.
        let fragment = &rsa_jwk()["d"].as_str().unwrap()[..16];
        for member in ["kty", "alg", "use"] {
            let err = load(SigningAlg::Rs256, &with(rsa_jwk(), member, fragment.into()))
                .unwrap_err()
                .to_string();
            assert!(!err.contains(fragment), "{member}: {err}");
            assert!(err.contains("(an unrecognised string)"), "{member}: {err}");
        }
        let err = load(SigningAlg::Es256, &with(&ec_jwk(), "crv", fragment.into()))
            .unwrap_err()
            .to_string();
        assert!(!err.contains(fragment), "crv: {err}");
    }

    #[test]
    fn errors_never_echo_key_material() {
        let secret_d = rsa_jwk()["d"].as_str().unwrap();
        let tampered = with(rsa_jwk(), "kty", secret_d.into());
        let err = load(SigningAlg::Rs256, &tampered).unwrap_err().to_string();
        assert!(!err.contains(&secret_d[..16]), "{err}");
        let debug = format!("{:?}", load(SigningAlg::Rs256, rsa_jwk()).unwrap());
        assert!(!debug.contains(&secret_d[..16]), "{debug}");
        let json_err = SigningKey::from_jwk_json(
            SigningAlg::Rs256,
            &format!("{{\"d\": \"{secret_d}\" oops}}"),
            KeySource::Env,
        )
        .unwrap_err()
        .to_string();
        assert!(!json_err.contains(&secret_d[..16]), "{json_err}");
    }

    #[test]
    fn the_jwks_holds_public_members_only() {
        let rsa = load(SigningAlg::Rs256, rsa_jwk()).unwrap();
        let ec = load(SigningAlg::Es256, &ec_jwk()).unwrap();
        let jwks: Value = serde_json::from_slice(&jwks_json([&rsa, &ec])).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for key in keys {
            assert_public_only(key.as_object().unwrap());
            for text in key.as_object().unwrap().values() {
                assert!(!text.as_str().unwrap().contains('='), "no padding");
            }
        }
    }

    #[test]
    fn padded_base64_members_are_accepted() {
        let mut jwk = rsa_jwk().clone();
        jwk.insert("e".into(), "AQAB".into());
        jwk.insert("kid".into(), "padded".into());
        let n = jwk["n"].as_str().unwrap().to_owned();
        let padding = "=".repeat((4 - n.len() % 4) % 4);
        jwk.insert("n".into(), format!("{n}{padding}").into());
        assert!(load(SigningAlg::Rs256, &jwk).is_ok());
    }

    #[test]
    fn generated_jwks_load_with_their_requested_sizes() {
        let jwk = generate_private_jwk(SigningAlg::Rs256, 3072, Some("big")).unwrap();
        let key = load(SigningAlg::Rs256, &jwk).unwrap();
        let n = URL_SAFE_NO_PAD
            .decode(key.public_jwk()["n"].as_str().unwrap())
            .unwrap();
        assert_eq!(bit_length(&n), 3072);
        assert_eq!(
            generate_private_jwk(SigningAlg::Rs256, 1024, None).unwrap_err(),
            KeyError::UnsupportedRsaSize { bits: 1024 }
        );
    }

    #[test]
    fn default_kids_name_the_alg_and_the_utc_date() {
        let moment = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_478_399);
        let kid = default_kid(SigningAlg::Es256, moment).unwrap();
        let (prefix, suffix) = kid.rsplit_once('-').unwrap();
        assert_eq!(prefix, "es256-20261123");
        assert_eq!(suffix.len(), 6);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(kid, default_kid(SigningAlg::Es256, moment).unwrap());
    }

    #[test]
    fn the_public_jwk_of_a_private_one_keeps_kid_and_drops_private_members() {
        let text = Value::Object(rsa_jwk().clone()).to_string();
        let public = public_jwk_from_private(&text).unwrap();
        assert_eq!(public["kid"], "rsa-test");
        assert_eq!(public["n"], rsa_jwk()["n"]);
        assert_public_only(&public);

        let mut ec = ec_jwk();
        ec.remove("alg");
        let public = public_jwk_from_private(&Value::Object(ec).to_string()).unwrap();
        assert_eq!(public["alg"], "ES256", "alg follows from kty");

        let err = public_jwk_from_private(r#"{"kty":"oct","k":"c2VjcmV0"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "has key type \"oct\"; only RSA (RS256) and EC P-256 (ES256) keys are supported"
        );
    }

    #[test]
    fn the_header_names_alg_kid_and_typ() {
        let key = load(SigningAlg::Rs256, rsa_jwk()).unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(key.header_b64()).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "RS256", "kid": "rsa-test", "typ": "JWT"})
        );
    }
}
