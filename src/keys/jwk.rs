//! Private keys as JWKs: parsing them for signing, generating them for
//! `keygen`, and deriving the public JWK of one.
//!
//! Every member is checked before AWS-LC sees it (key type against the
//! algorithm, `use`, `alg`, curve, RSA size); AWS-LC then checks the
//! private part against the public part. Errors quote registered JOSE names
//! only, never a member's value.

use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use super::alg::SigningAlg;
use super::backend::{self, Backends};
use super::error::{KeyError, describe};
use super::key::{KeyPairKind, KeySource, MIN_RSA_BITS, P256_COORDINATE_LEN, SigningKey};
use super::pem::bit_length;

/// JWK members are base64url without padding; tolerate padding on input since
/// some tools emit it, but always emit without.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl SigningKey {
    /// Loads a private JWK for `alg`. The kid is the JWK's own, or its RFC 7638
    /// thumbprint when it has none.
    pub fn from_jwk_json(alg: SigningAlg, text: &str, source: KeySource) -> Result<Self, KeyError> {
        Self::from_jwk(alg, &parse_jwk_object(text)?, source)
    }

    /// Loads a ring member: a private JWK, or a member naming a key in an
    /// external store, which is opened through `backends`.
    pub(crate) fn from_member(
        alg: SigningAlg,
        jwk: &Map<String, Value>,
        source: KeySource,
        backends: &Backends,
    ) -> Result<Self, KeyError> {
        match Self::from_backend(alg, jwk, source, backends)? {
            Some(key) => Ok(key),
            None => Self::from_jwk(alg, jwk, source),
        }
    }

    /// Loads a private JWK already parsed into a JSON object. A member
    /// naming an external store is refused here: only ring loads, which
    /// know the store settings, open those ([`SigningKey::from_member`]).
    pub(crate) fn from_jwk(
        alg: SigningAlg,
        jwk: &Map<String, Value>,
        source: KeySource,
    ) -> Result<Self, KeyError> {
        if let Some((backend, _)) = backend::named_backend(jwk)? {
            return Err(KeyError::ExternalNotOpened { backend });
        }
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
        check_declared(alg, jwk)?;
        let kid = declared_kid(jwk)?;
        let pair = match alg {
            SigningAlg::Rs256 => KeyPairKind::Rsa(rsa_from_jwk(jwk)?),
            SigningAlg::Es256 => KeyPairKind::Ec(ec_from_jwk(jwk)?),
        };
        Self::assemble(alg, kid, source, pair)
    }
}

/// Checks the optional `alg` and `use` members against `alg` and signing.
pub(super) fn check_declared(alg: SigningAlg, jwk: &Map<String, Value>) -> Result<(), KeyError> {
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
    Ok(())
}

/// The member's own kid, if it has one; it must be a non-empty string.
pub(super) fn declared_kid(jwk: &Map<String, Value>) -> Result<Option<String>, KeyError> {
    match jwk.get("kid") {
        None => Ok(None),
        Some(Value::String(kid)) if !kid.is_empty() && crate::text::is_printable(kid) => {
            Ok(Some(kid.clone()))
        }
        Some(_) => Err(KeyError::BadKid),
    }
}

/// Parses text as one JSON object. A syntax error reports only where it is:
/// serde_json's own message can quote the input, which may be key material.
pub(crate) fn parse_jwk_object(text: &str) -> Result<Map<String, Value>, KeyError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(jwk)) => Ok(jwk),
        Ok(_) => Err(KeyError::NotAnObject),
        Err(err) => Err(KeyError::InvalidJson {
            line: err.line(),
            column: err.column(),
        }),
    }
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
pub(crate) fn default_kid(alg: SigningAlg, now: std::time::SystemTime) -> Result<String, KeyError> {
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
