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

use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value, json};

use crate::config::SigningAlg;

/// The kid of a key generated at startup, as the reference service uses.
pub const EPHEMERAL_KID: &str = "dev-key-1";

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// P-256 field elements and scalars are 32 bytes.
const P256_COORDINATE_LEN: usize = 32;

/// JWK members are base64url without padding; tolerate padding on input since
/// some tools emit it, but always emit without.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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

/// Why a key cannot be used. Messages describe the problem and never include
/// key material; the caller prefixes the name of the variable it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not JSON at all.
    #[error("is not valid JSON (syntax error at line {line}, column {column})")]
    InvalidJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// JSON, but not an object.
    #[error("must be a JSON object holding a private JWK")]
    NotAnObject,
    /// A public JWK where a private one is needed.
    #[error("must be a private JWK: it has no private member \"d\"")]
    NotPrivate,
    /// `kty` does not fit the configured algorithm.
    #[error("has key type {found}, but {alg} needs kty \"{expected}\"")]
    WrongKeyType {
        /// What the JWK says, quoted, or a placeholder when it is not a short name.
        found: String,
        /// The algorithm configured.
        alg: SigningAlg,
        /// The key type that algorithm needs.
        expected: &'static str,
    },
    /// The JWK names a different algorithm than the configured one.
    #[error("declares alg {found}, but the service is configured for {alg}")]
    AlgMismatch {
        /// What the JWK says, quoted, or a placeholder.
        found: String,
        /// The algorithm configured.
        alg: SigningAlg,
    },
    /// The JWK is meant for something other than signatures.
    #[error("declares use {found}; a signing key needs use \"sig\" or no use member")]
    NotForSigning {
        /// What the JWK says, quoted, or a placeholder.
        found: String,
    },
    /// An EC key on a curve other than P-256.
    #[error("has curve {found}, but ES256 needs crv \"P-256\"")]
    WrongCurve {
        /// What the JWK says, quoted, or a placeholder.
        found: String,
    },
    /// A required member is absent, or present in the wrong form.
    #[error("member \"{member}\" {problem}")]
    BadMember {
        /// The JWK member at fault.
        member: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `kid` is present but unusable.
    #[error("member \"kid\" must be a non-empty string when present")]
    BadKid,
    /// Multi-prime RSA is not supported.
    #[error("is a multi-prime RSA key (member \"oth\"), which is not supported")]
    MultiPrime,
    /// An RSA modulus under 2048 bits.
    #[error("is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required")]
    RsaTooShort {
        /// The modulus length found.
        bits: usize,
    },
    /// The private members do not belong to the public ones.
    #[error("has a private part that does not match its public part")]
    Mismatch,
    /// AWS-LC refused the key for another reason.
    #[error("is not a usable {alg} key ({reason})")]
    Rejected {
        /// The algorithm configured.
        alg: SigningAlg,
        /// AWS-LC's reason, a fixed string.
        reason: &'static str,
    },
    /// Key generation failed (entropy or library failure).
    #[error("could not generate a {alg} key")]
    Generation {
        /// The algorithm asked for.
        alg: SigningAlg,
    },
    /// A key type this service cannot sign with.
    #[error("has key type {found}; only RSA (RS256) and EC P-256 (ES256) keys are supported")]
    UnsupportedKeyType {
        /// What the JWK says, quoted, or a placeholder.
        found: String,
    },
    /// A PEM block this service cannot use.
    #[error(
        "holds a PEM block labelled {label:?}; expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY"
    )]
    UnsupportedPem {
        /// The block's label (never its contents).
        label: String,
    },
    /// A PEM block that does not decode, or whose DER is not a key of the
    /// configured algorithm.
    #[error("holds a PEM {label} block that is not a usable {alg} private key")]
    BadPem {
        /// The block's label.
        label: &'static str,
        /// The algorithm configured.
        alg: SigningAlg,
    },
    /// An RSA size other than 2048, 3072 or 4096 bits was asked for.
    #[error("RSA keys can be generated with 2048, 3072 or 4096 bits, not {bits}")]
    UnsupportedRsaSize {
        /// The size asked for.
        bits: usize,
    },
}

/// Signing failed inside AWS-LC; carries no detail because there is none to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signing operation failed")]
pub struct SignError;

enum KeyPairKind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
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
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA-2048 or P-256) with kid `dev-key-1`.
    pub fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
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

    /// Loads a private JWK for `alg`. The kid is the JWK's own, or its RFC 7638
    /// thumbprint when it has none.
    pub fn from_jwk_json(alg: SigningAlg, text: &str, source: KeySource) -> Result<Self, KeyError> {
        Self::from_jwk(alg, &parse_jwk_object(text)?, source)
    }

    /// Loads a private JWK already parsed into a JSON object.
    pub fn from_jwk(
        alg: SigningAlg,
        jwk: &Map<String, Value>,
        source: KeySource,
    ) -> Result<Self, KeyError> {
        let expected_kty = match alg {
            SigningAlg::Rs256 => "RSA",
            SigningAlg::Es256 => "EC",
        };
        match jwk.get("kty") {
            Some(Value::String(kty)) if kty == expected_kty => {}
            Some(other) => {
                return Err(KeyError::WrongKeyType {
                    found: describe(other),
                    alg,
                    expected: expected_kty,
                });
            }
            None => {
                return Err(KeyError::BadMember {
                    member: "kty",
                    problem: "is missing",
                });
            }
        }
        if !jwk.contains_key("d") {
            return Err(KeyError::NotPrivate);
        }
        if let Some(declared) = jwk.get("alg")
            && declared.as_str() != Some(alg.as_str())
        {
            return Err(KeyError::AlgMismatch {
                found: describe(declared),
                alg,
            });
        }
        if let Some(usage) = jwk.get("use")
            && usage.as_str() != Some("sig")
        {
            return Err(KeyError::NotForSigning {
                found: describe(usage),
            });
        }
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) if !kid.is_empty() => Some(kid.clone()),
            Some(_) => return Err(KeyError::BadKid),
        };

        let pair = match alg {
            SigningAlg::Rs256 => KeyPairKind::Rsa(rsa_from_jwk(jwk)?),
            SigningAlg::Es256 => KeyPairKind::Ec(ec_from_jwk(jwk)?),
        };
        Self::assemble(alg, kid, source, pair)
    }

    /// Loads one PEM-encoded private key: PKCS#8 (`PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). PEM carries no kid, so
    /// the kid is the RFC 7638 thumbprint.
    pub fn from_pem(alg: SigningAlg, pem: &str, source: KeySource) -> Result<Self, KeyError> {
        let (label, der) =
            pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|_| KeyError::BadPem {
                label: "(undecodable)",
                alg,
            })?;
        let (label, pair) = match (label, alg) {
            ("PRIVATE KEY", SigningAlg::Rs256) => (
                "PRIVATE KEY",
                RsaKeyPair::from_pkcs8(&der).map(KeyPairKind::Rsa).ok(),
            ),
            ("RSA PRIVATE KEY", SigningAlg::Rs256) => (
                "RSA PRIVATE KEY",
                RsaKeyPair::from_der(&der).map(KeyPairKind::Rsa).ok(),
            ),
            ("PRIVATE KEY", SigningAlg::Es256) => (
                "PRIVATE KEY",
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map(KeyPairKind::Ec)
                    .ok(),
            ),
            ("EC PRIVATE KEY", SigningAlg::Es256) => (
                "EC PRIVATE KEY",
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map(KeyPairKind::Ec)
                    .ok(),
            ),
            ("RSA PRIVATE KEY", SigningAlg::Es256) => {
                return Err(KeyError::WrongKeyType {
                    found: "\"RSA\" (PEM)".into(),
                    alg,
                    expected: "EC",
                });
            }
            ("EC PRIVATE KEY", SigningAlg::Rs256) => {
                return Err(KeyError::WrongKeyType {
                    found: "\"EC\" (PEM)".into(),
                    alg,
                    expected: "RSA",
                });
            }
            (other, _) => {
                return Err(KeyError::UnsupportedPem {
                    label: other.chars().take(40).collect(),
                });
            }
        };
        let pair = pair.ok_or(KeyError::BadPem { label, alg })?;
        if let KeyPairKind::Rsa(rsa) = &pair {
            let bits = bit_length(&PublicKeyComponents::<Vec<u8>>::from(rsa.public_key()).n);
            if bits < MIN_RSA_BITS {
                return Err(KeyError::RsaTooShort { bits });
            }
        }
        Self::assemble(alg, None, source, pair)
    }

    fn assemble(
        alg: SigningAlg,
        kid: Option<String>,
        source: KeySource,
        pair: KeyPairKind,
    ) -> Result<Self, KeyError> {
        let (mut public_jwk, thumbprint_input) = match &pair {
            KeyPairKind::Rsa(rsa) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
                let n = URL_SAFE_NO_PAD.encode(&components.n);
                let e = URL_SAFE_NO_PAD.encode(&components.e);
                let thumbprint_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                let mut jwk = Map::new();
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), n.into());
                jwk.insert("e".into(), e.into());
                (jwk, thumbprint_input)
            }
            KeyPairKind::Ec(ec) => {
                let point = ec.public_key().as_ref();
                // Uncompressed SEC1 point: 0x04 || x || y.
                let x = URL_SAFE_NO_PAD.encode(&point[1..1 + P256_COORDINATE_LEN]);
                let y = URL_SAFE_NO_PAD.encode(&point[1 + P256_COORDINATE_LEN..]);
                let thumbprint_input =
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let mut jwk = Map::new();
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), "P-256".into());
                jwk.insert("x".into(), x.into());
                jwk.insert("y".into(), y.into());
                (jwk, thumbprint_input)
            }
        };
        let kid = kid.unwrap_or_else(|| {
            let digest =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, thumbprint_input.as_bytes());
            URL_SAFE_NO_PAD.encode(digest.as_ref())
        });
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
        key.check_pairwise_consistency()?;
        Ok(key)
    }

    /// Signs a probe with the private key and verifies it with the public
    /// members the JWKS will carry, as every verifier will.
    fn check_pairwise_consistency(&self) -> Result<(), KeyError> {
        const PROBE: &[u8] = b"macp-auth-service key check";
        let signature = self.sign(PROBE).map_err(|_| KeyError::Mismatch)?;
        let verified = match &self.pair {
            KeyPairKind::Rsa(rsa) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
                components.verify(&RSA_PKCS1_2048_8192_SHA256, PROBE, &signature)
            }
            KeyPairKind::Ec(ec) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec.public_key().as_ref())
                    .verify(PROBE, &signature)
            }
        };
        verified.map_err(|_| KeyError::Mismatch)
    }

    /// Signs `message` (the JWS signing input) and returns the raw signature:
    /// PKCS#1 v1.5 for RS256, fixed-width `r || s` for ES256.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            KeyPairKind::Rsa(rsa) => {
                let mut signature = vec![0; rsa.public_modulus_len()];
                // aws-lc-rs ignores the RNG for PKCS#1 v1.5; AWS-LC blinds internally.
                let rng = aws_lc_rs::rand::SystemRandom::new();
                rsa.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| SignError)?;
                Ok(signature)
            }
            KeyPairKind::Ec(ec) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let signature = ec.sign(&rng, message).map_err(|_| SignError)?;
                Ok(signature.as_ref().to_vec())
            }
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

/// Parses text as one JSON object. A syntax error reports only where it is:
/// serde_json's own message can quote the input, which may be key material.
pub fn parse_jwk_object(text: &str) -> Result<Map<String, Value>, KeyError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(jwk)) => Ok(jwk),
        Ok(_) => Err(KeyError::NotAnObject),
        Err(err) => Err(KeyError::InvalidJson {
            line: err.line(),
            column: err.column(),
        }),
    }
}

/// Serialises a JWKS document, `{"keys": [...]}`, from public JWKs only.
pub fn jwks_json<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Vec<u8> {
    let keys: Vec<&Map<String, Value>> = keys.into_iter().map(SigningKey::public_jwk).collect();
    serde_json::to_vec(&json!({ "keys": keys })).expect("a map of strings always serialises")
}

/// Generates a new private JWK (one JSON object, with `alg` and `use: "sig"`,
/// and `kid` when given) that [`SigningKey::from_jwk_json`] and standard JOSE
/// libraries load. `rsa_bits` is 2048, 3072 or 4096 and ignored for ES256.
pub fn generate_private_jwk(
    alg: SigningAlg,
    rsa_bits: usize,
    kid: Option<&str>,
) -> Result<Map<String, Value>, KeyError> {
    let b64 = |bytes: &[u8]| Value::from(URL_SAFE_NO_PAD.encode(bytes));
    let mut jwk = Map::new();
    match alg {
        SigningAlg::Rs256 => {
            let size = match rsa_bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                bits => return Err(KeyError::UnsupportedRsaSize { bits }),
            };
            let pair = RsaKeyPair::generate(size).map_err(|_| KeyError::Generation { alg })?;
            let pkcs8 = pair.as_der().map_err(|_| KeyError::Generation { alg })?;
            let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_ref())
                .map_err(|_| KeyError::Generation { alg })?;
            let rsa = pkcs1::RsaPrivateKeyRef::try_from(info.private_key.as_bytes())
                .map_err(|_| KeyError::Generation { alg })?;
            jwk.insert("kty".into(), "RSA".into());
            jwk.insert("n".into(), b64(rsa.modulus.as_bytes()));
            jwk.insert("e".into(), b64(rsa.public_exponent.as_bytes()));
            jwk.insert("d".into(), b64(rsa.private_exponent.as_bytes()));
            jwk.insert("p".into(), b64(rsa.prime1.as_bytes()));
            jwk.insert("q".into(), b64(rsa.prime2.as_bytes()));
            jwk.insert("dp".into(), b64(rsa.exponent1.as_bytes()));
            jwk.insert("dq".into(), b64(rsa.exponent2.as_bytes()));
            jwk.insert("qi".into(), b64(rsa.coefficient.as_bytes()));
        }
        SigningAlg::Es256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| KeyError::Generation { alg })?;
            let point = pair.public_key().as_ref();
            let scalar = pair
                .private_key()
                .as_be_bytes()
                .map_err(|_| KeyError::Generation { alg })?;
            jwk.insert("kty".into(), "EC".into());
            jwk.insert("crv".into(), "P-256".into());
            jwk.insert("x".into(), b64(&point[1..1 + P256_COORDINATE_LEN]));
            jwk.insert("y".into(), b64(&point[1 + P256_COORDINATE_LEN..]));
            jwk.insert("d".into(), b64(scalar.as_ref()));
        }
    }
    if let Some(kid) = kid {
        jwk.insert("kid".into(), kid.into());
    }
    jwk.insert("alg".into(), alg.as_str().into());
    jwk.insert("use".into(), "sig".into());
    Ok(jwk)
}

/// The kid `keygen` gives a key when none is asked for:
/// `<alg in lower case>-<UTC date YYYYMMDD>-<6 random hex digits>`, sortable
/// by creation date and unique enough never to collide within a ring.
pub fn default_kid(alg: SigningAlg, now: std::time::SystemTime) -> Result<String, KeyError> {
    let date = time::OffsetDateTime::from(now);
    let date = format!(
        "{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    let mut random = [0u8; 3];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| KeyError::Generation { alg })?;
    let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{date}-{suffix}",
        alg.as_str().to_ascii_lowercase()
    ))
}

/// Validates a private JWK completely, as loading it for signing would, and
/// returns its public JWK. The algorithm is the JWK's `alg`, or follows from
/// its `kty` when it has none.
pub fn public_jwk_from_private(text: &str) -> Result<Map<String, Value>, KeyError> {
    let jwk = parse_jwk_object(text)?;
    let alg = match (jwk.get("alg"), jwk.get("kty")) {
        (Some(alg), _) => alg.as_str().and_then(SigningAlg::parse).ok_or_else(|| {
            KeyError::UnsupportedKeyType {
                found: describe(alg),
            }
        })?,
        (None, Some(Value::String(kty))) if kty == "RSA" => SigningAlg::Rs256,
        (None, Some(Value::String(kty))) if kty == "EC" => SigningAlg::Es256,
        (None, Some(other)) => {
            return Err(KeyError::UnsupportedKeyType {
                found: describe(other),
            });
        }
        (None, None) => {
            return Err(KeyError::BadMember {
                member: "kty",
                problem: "is missing",
            });
        }
    };
    let key = SigningKey::from_jwk(alg, &jwk, KeySource::Env)?;
    Ok(key.public_jwk().clone())
}

fn rsa_from_jwk(jwk: &Map<String, Value>) -> Result<RsaKeyPair, KeyError> {
    if jwk.contains_key("oth") {
        return Err(KeyError::MultiPrime);
    }
    // AWS-LC wants the public integers without leading zero bytes.
    let n = strip_leading_zeros(member(jwk, "n")?);
    let e = strip_leading_zeros(member(jwk, "e")?);
    let bits = bit_length(&n);
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooShort { bits });
    }
    let components = KeyPairComponents {
        public_key: PublicKeyComponents { n, e },
        d: member(jwk, "d")?,
        p: member(jwk, "p")?,
        q: member(jwk, "q")?,
        dP: member(jwk, "dp")?,
        dQ: member(jwk, "dq")?,
        qInv: member(jwk, "qi")?,
    };
    RsaKeyPair::from_components(&components).map_err(|rejected| match rejected.description_() {
        "InconsistentComponents" => KeyError::Mismatch,
        reason => KeyError::Rejected {
            alg: SigningAlg::Rs256,
            reason,
        },
    })
}

fn ec_from_jwk(jwk: &Map<String, Value>) -> Result<EcdsaKeyPair, KeyError> {
    match jwk.get("crv") {
        Some(Value::String(crv)) if crv == "P-256" => {}
        Some(other) => {
            return Err(KeyError::WrongCurve {
                found: describe(other),
            });
        }
        None => {
            return Err(KeyError::BadMember {
                member: "crv",
                problem: "is missing",
            });
        }
    }
    let coordinate = |name: &'static str| -> Result<Vec<u8>, KeyError> {
        let bytes = member(jwk, name)?;
        if bytes.len() != P256_COORDINATE_LEN {
            return Err(KeyError::BadMember {
                member: name,
                problem: "must encode exactly 32 bytes for P-256",
            });
        }
        Ok(bytes)
    };
    let (x, y, d) = (coordinate("x")?, coordinate("y")?, coordinate("d")?);
    let mut point = Vec::with_capacity(1 + 2 * P256_COORDINATE_LEN);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &d, &point)
        .map_err(|_| KeyError::Mismatch)
}

/// Decodes a required base64url member.
fn member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    let Some(value) = jwk.get(name) else {
        return Err(KeyError::BadMember {
            member: name,
            problem: "is missing",
        });
    };
    let bytes = value
        .as_str()
        .and_then(|text| B64_LENIENT.decode(text).ok())
        .ok_or(KeyError::BadMember {
            member: name,
            problem: "must be a base64url string",
        })?;
    if bytes.is_empty() {
        return Err(KeyError::BadMember {
            member: name,
            problem: "must not be empty",
        });
    }
    Ok(bytes)
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(first) => big_endian.len() * 8 - first.leading_zeros() as usize,
    }
}

/// Names registered for JOSE (RFC 7518, RFC 8037) that a `kty`, `crv`, `alg`
/// or `use` member can hold: the only strings an error message may quote.
const JOSE_NAMES: &[&str] = &[
    "RSA",
    "EC",
    "oct",
    "OKP",
    "P-256",
    "P-384",
    "P-521",
    "Ed25519",
    "Ed448",
    "X25519",
    "X448",
    "secp256k1",
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "ES256K",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
    "none",
    "sig",
    "enc",
];

/// Describes a JSON value for an error message. Only registered JOSE names
/// are quoted; anything else is described by its JSON type, so text pasted
/// into the wrong member (even a fragment of a private key) never reaches a
/// log.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if JOSE_NAMES.contains(&s.as_str()) => format!("\"{s}\""),
        Value::String(_) => "(an unrecognised string)".to_owned(),
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "(a boolean)".to_owned(),
        Value::Number(_) => "(a number)".to_owned(),
        Value::Array(_) => "(an array)".to_owned(),
        Value::Object(_) => "(an object)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn each_bad_key_is_rejected_with_a_clear_reason() {
        let rsa = rsa_jwk();
        let ec = ec_jwk();
        let mut public_rsa = rsa.clone();
        for member in PRIVATE_MEMBERS {
            public_rsa.remove(member);
        }
        let mismatched_rsa = with(rsa, "d", other_rsa_jwk()["d"].clone());
        let mismatched_modulus = with(rsa, "n", other_rsa_jwk()["n"].clone());
        let mismatched_crt = with(rsa, "qi", other_rsa_jwk()["qi"].clone());
        let mismatched_ec = with(&ec, "d", ec_jwk()["d"].clone());
        let cases: Vec<(&str, SigningAlg, String, &str)> = vec![
            (
                "not JSON",
                SigningAlg::Rs256,
                "{not json".into(),
                "is not valid JSON",
            ),
            (
                "an array",
                SigningAlg::Rs256,
                "[1,2]".into(),
                "must be a JSON object",
            ),
            (
                "public-only RSA",
                SigningAlg::Rs256,
                Value::Object(public_rsa).to_string(),
                "must be a private JWK",
            ),
            (
                "public-only EC",
                SigningAlg::Es256,
                Value::Object(without(&ec, "d")).to_string(),
                "must be a private JWK",
            ),
            (
                "EC key for RS256",
                SigningAlg::Rs256,
                Value::Object(ec.clone()).to_string(),
                "has key type \"EC\", but RS256 needs kty \"RSA\"",
            ),
            (
                "RSA key for ES256",
                SigningAlg::Es256,
                Value::Object(rsa.clone()).to_string(),
                "has key type \"RSA\", but ES256 needs kty \"EC\"",
            ),
            (
                "no kty",
                SigningAlg::Rs256,
                Value::Object(without(rsa, "kty")).to_string(),
                "member \"kty\" is missing",
            ),
            (
                "missing p",
                SigningAlg::Rs256,
                Value::Object(without(rsa, "p")).to_string(),
                "member \"p\" is missing",
            ),
            (
                "missing qi",
                SigningAlg::Rs256,
                Value::Object(without(rsa, "qi")).to_string(),
                "member \"qi\" is missing",
            ),
            (
                "n not base64url",
                SigningAlg::Rs256,
                Value::Object(with(rsa, "n", "***".into())).to_string(),
                "member \"n\" must be a base64url string",
            ),
            (
                "n a number",
                SigningAlg::Rs256,
                Value::Object(with(rsa, "n", 5.into())).to_string(),
                "member \"n\" must be a base64url string",
            ),
            (
                "private exponent from another key",
                SigningAlg::Rs256,
                Value::Object(mismatched_rsa).to_string(),
                "has a private part that does not match its public part",
            ),
            (
                "modulus from another key",
                SigningAlg::Rs256,
                Value::Object(mismatched_modulus).to_string(),
                "has a private part that does not match its public part",
            ),
            (
                "CRT coefficient from another key",
                SigningAlg::Rs256,
                Value::Object(mismatched_crt).to_string(),
                "has a private part that does not match its public part",
            ),
            (
                "EC private scalar from another key",
                SigningAlg::Es256,
                Value::Object(mismatched_ec).to_string(),
                "has a private part that does not match its public part",
            ),
            (
                "P-384 curve",
                SigningAlg::Es256,
                Value::Object(with(&ec, "crv", "P-384".into())).to_string(),
                "has curve \"P-384\", but ES256 needs crv \"P-256\"",
            ),
            (
                "short x",
                SigningAlg::Es256,
                Value::Object(with(&ec, "x", "AQAB".into())).to_string(),
                "member \"x\" must encode exactly 32 bytes",
            ),
            (
                "alg RS512",
                SigningAlg::Rs256,
                Value::Object(with(rsa, "alg", "RS512".into())).to_string(),
                "declares alg \"RS512\", but the service is configured for RS256",
            ),
            (
                "use enc",
                SigningAlg::Rs256,
                Value::Object(with(rsa, "use", "enc".into())).to_string(),
                "declares use \"enc\"",
            ),
            (
                "empty kid",
                SigningAlg::Rs256,
                Value::Object(with(rsa, "kid", "".into())).to_string(),
                "member \"kid\" must be a non-empty string",
            ),
            (
                "multi-prime",
                SigningAlg::Rs256,
                Value::Object(with(rsa, "oth", json!([]))).to_string(),
                "is a multi-prime RSA key",
            ),
        ];
        for (name, alg, text, expected) in cases {
            let err = SigningKey::from_jwk_json(alg, &text, KeySource::Env)
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
