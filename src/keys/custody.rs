//! What the external key stores (PKCS#11 tokens, AWS KMS) have in common: the
//! error they fail with, the public key they give back, and the checks every
//! such key passes before it may sign.
//!
//! A key that never enters the process can only be judged by what the store
//! says about it and by what it signs. So a backend key is accepted only when
//! its public key (read from the store, never from the ring file) fits the
//! configured algorithm, and when a probe the store signs verifies, in
//! AWS-LC, against exactly the public members the JWKS will publish. The
//! small DER reader here is the only parsing of store output; it takes
//! untrusted bytes and answers `None` rather than panicking.
//!
//! Error messages name what failed in the operator's terms (object not
//! found, wrong PIN, access denied, unreachable, timed out) and never carry a
//! PIN, a PIN file's contents or a credential: the backends build them from
//! fixed strings, error codes and the key reference only.

// The store-side helpers (DER reading, digests, alg checks) have no caller
// in a build without either store feature; they stay compiled and tested.
#![cfg_attr(not(any(feature = "pkcs11", feature = "aws-kms")), allow(dead_code))]

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::keys::SigningAlg;

/// The smallest RSA modulus a backend key may have, in bits (as for JWKs).
const MIN_RSA_BITS: usize = 2048;

/// P-256 coordinates and ECDSA scalars are 32 bytes.
const P256_LEN: usize = 32;

/// DER of the named-curve OID prime256v1 (1.2.840.10045.3.1.7).
pub(crate) const P256_OID_DER: &[u8] =
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Content octets of the rsaEncryption OID (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Content octets of the id-ecPublicKey OID (1.2.840.10045.2.1).
const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// What every backend key signs once at load, before it may sign a token.
pub(crate) const PROBE: &[u8] = b"macp-auth-service key check";

/// The external key stores a ring member can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A PKCS#11 token: an HSM, YubiHSM, CloudHSM, SoftHSM2...
    Pkcs11,
    /// AWS KMS.
    AwsKms,
}

impl Backend {
    /// The ring member naming this backend, also its name in logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Backend::Pkcs11 => "pkcs11",
            Backend::AwsKms => "aws_kms",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a backend key cannot be opened or cannot sign. Every message is safe
/// to log: it names the object, the variable or the error code, never a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The reference itself is malformed.
    #[error("invalid reference: {0}")]
    BadReference(String),
    /// No module to load (PKCS#11).
    #[error("no module: set module-path in the URI or MACP_AUTH_PKCS11_MODULE")]
    NoModule,
    /// The module would not load or initialise (PKCS#11).
    #[error("cannot load module {path}: {reason}")]
    Module {
        /// The library's path.
        path: String,
        /// The loader's or the module's reason.
        reason: String,
    },
    /// The token needs a PIN and none was configured (PKCS#11).
    #[error(
        "no PIN: set pin-value or pin-source in the URI, MACP_AUTH_PKCS11_PIN or MACP_AUTH_PKCS11_PIN_FILE"
    )]
    NoPin,
    /// The PIN file could not be read; its contents are never quoted.
    #[error("cannot read the PIN file {path}: {reason}")]
    PinFile {
        /// The file's path.
        path: String,
        /// The I/O error kind.
        reason: String,
    },
    /// The token refused the PIN.
    #[error("wrong PIN (the token refused it)")]
    WrongPin,
    /// The PIN is one the token refused before; not tried again.
    #[error(
        "wrong PIN (the token refused this PIN before; it is not tried again, so that retries cannot lock the token)"
    )]
    PinRefusedBefore,
    /// A PIN other than the one the token is logged in with: PKCS#11 cannot
    /// check it while the token stays logged in, so it is not accepted.
    #[error(
        "this PIN differs from the one the token is logged in with, and PKCS#11 cannot check a PIN while the token stays logged in; to change the PIN, restart the service"
    )]
    PinNotCheckable,
    /// The token locked the PIN after too many wrong attempts.
    #[error("PIN locked: the token refuses further login attempts")]
    PinLocked,
    /// The token, key or KMS key does not exist (or is not visible).
    #[error("object not found: {0}")]
    NotFound(String),
    /// The store refused the operation to these credentials.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The store could not be reached, or answered that it is unavailable.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The store did not answer in time.
    #[error("timed out after {millis} ms")]
    Timeout {
        /// The deadline that passed.
        millis: u64,
    },
    /// The key does not suit the configured algorithm.
    #[error("{0}")]
    WrongKey(String),
    /// The probe the store signed does not verify with the key it published.
    #[error("the probe signature does not verify with the key's public key")]
    ProbeFailed,
    /// Anything else the store reported, by function and error code.
    #[error("{0}")]
    Failed(String),
}

/// A backend key's public half, as read from the store.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The affine coordinates of a P-256 point.
    P256 {
        x: [u8; P256_LEN],
        y: [u8; P256_LEN],
    },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKey::Rsa { n, .. } => write!(f, "PublicKey::Rsa({} bits)", bit_length(n)),
            PublicKey::P256 { .. } => f.write_str("PublicKey::P256"),
        }
    }
}

impl PublicKey {
    /// An RSA key from its big-endian components (leading zeros allowed).
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<Self, BackendError> {
        let (n, e) = (strip_zeros(n), strip_zeros(e));
        if n.is_empty() || e.is_empty() {
            return Err(BackendError::WrongKey(
                "the RSA public key has an empty modulus or exponent".into(),
            ));
        }
        Ok(PublicKey::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    /// A P-256 key from an uncompressed SEC1 point (`04 || x || y`).
    pub(crate) fn p256_point(point: &[u8]) -> Result<Self, BackendError> {
        match point {
            [0x04, coordinates @ ..] if coordinates.len() == 2 * P256_LEN => {
                let mut x = [0; P256_LEN];
                let mut y = [0; P256_LEN];
                x.copy_from_slice(&coordinates[..P256_LEN]);
                y.copy_from_slice(&coordinates[P256_LEN..]);
                Ok(PublicKey::P256 { x, y })
            }
            _ => Err(BackendError::WrongKey(
                "the EC public key is not an uncompressed P-256 point".into(),
            )),
        }
    }

    /// Parses a DER SubjectPublicKeyInfo holding an RSA or P-256 key.
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<Self, BackendError> {
        let unusable = || BackendError::WrongKey("the public key is not RSA or EC P-256".into());
        let (spki, rest) = der_expect(der, TAG_SEQUENCE).ok_or_else(unusable)?;
        if !rest.is_empty() {
            return Err(unusable());
        }
        let (algorithm, spki) = der_expect(spki, TAG_SEQUENCE).ok_or_else(unusable)?;
        let (bits, spki) = der_expect(spki, TAG_BIT_STRING).ok_or_else(unusable)?;
        let (oid, parameters) = der_expect(algorithm, TAG_OID).ok_or_else(unusable)?;
        let ([0, key @ ..], true) = (bits, spki.is_empty()) else {
            return Err(unusable());
        };
        if oid == RSA_ENCRYPTION_OID {
            let (sequence, _) = der_expect(key, TAG_SEQUENCE).ok_or_else(unusable)?;
            let (n, sequence) = der_expect(sequence, TAG_INTEGER).ok_or_else(unusable)?;
            let (e, _) = der_expect(sequence, TAG_INTEGER).ok_or_else(unusable)?;
            Self::rsa(n, e)
        } else if oid == EC_PUBLIC_KEY_OID {
            if parameters != P256_OID_DER {
                return Err(BackendError::WrongKey(
                    "the EC key is not on P-256 (ES256 needs P-256)".into(),
                ));
            }
            Self::p256_point(key)
        } else {
            Err(unusable())
        }
    }

    /// Checks the key suits `alg`: RSA of at least 2048 bits for RS256, P-256
    /// for ES256.
    pub(crate) fn check_alg(&self, alg: SigningAlg) -> Result<(), BackendError> {
        match (self, alg) {
            (PublicKey::Rsa { n, .. }, SigningAlg::Rs256) => {
                let bits = bit_length(n);
                if bits < MIN_RSA_BITS {
                    return Err(BackendError::WrongKey(format!(
                        "the key is {bits}-bit RSA; at least {MIN_RSA_BITS} bits are required"
                    )));
                }
                Ok(())
            }
            (PublicKey::P256 { .. }, SigningAlg::Es256) => Ok(()),
            (PublicKey::Rsa { .. }, SigningAlg::Es256) => Err(BackendError::WrongKey(
                "the key is RSA, but ES256 needs an EC P-256 key".into(),
            )),
            (PublicKey::P256 { .. }, SigningAlg::Rs256) => Err(BackendError::WrongKey(
                "the key is EC P-256, but RS256 needs an RSA key".into(),
            )),
        }
    }

    /// Whether `signature` is a valid `alg` signature of `message` by this key.
    pub(crate) fn verifies(&self, alg: SigningAlg, message: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (PublicKey::Rsa { n, e }, SigningAlg::Rs256) => PublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (PublicKey::P256 { .. }, SigningAlg::Es256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.sec1_point())
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }

    /// Checks a signature of [`PROBE`] the store produced.
    pub(crate) fn check_probe(
        &self,
        alg: SigningAlg,
        signature: &[u8],
    ) -> Result<(), BackendError> {
        if self.verifies(alg, PROBE, signature) {
            Ok(())
        } else {
            Err(BackendError::ProbeFailed)
        }
    }

    /// The public JWK members (`kty` and the key's own) and the RFC 7638
    /// thumbprint of the key, base64url.
    pub(crate) fn jwk(&self) -> (Map<String, Value>, String) {
        let mut jwk = Map::new();
        let canonical = match self {
            PublicKey::Rsa { n, e } => {
                let (n, e) = (URL_SAFE_NO_PAD.encode(n), URL_SAFE_NO_PAD.encode(e));
                let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), n.into());
                jwk.insert("e".into(), e.into());
                canonical
            }
            PublicKey::P256 { x, y } => {
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), "P-256".into());
                jwk.insert("x".into(), x.into());
                jwk.insert("y".into(), y.into());
                canonical
            }
        };
        let thumbprint = URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()));
        (jwk, thumbprint)
    }

    fn sec1_point(&self) -> Vec<u8> {
        match self {
            PublicKey::P256 { x, y } => [&[0x04][..], x, y].concat(),
            PublicKey::Rsa { .. } => Vec::new(),
        }
    }
}

/// SHA-256 of `message`: what RS256 and ES256 sign, and what KMS is sent.
pub(crate) fn sha256(message: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, message).as_ref());
    out
}

/// Converts a DER `ECDSA-Sig-Value` (`SEQUENCE { r INTEGER, s INTEGER }`,
/// what KMS returns) into the JOSE form, `r || s` with 32 bytes each.
pub(crate) fn ecdsa_der_to_jose(der: &[u8]) -> Option<[u8; 2 * P256_LEN]> {
    let (sequence, rest) = der_expect(der, TAG_SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (r, sequence) = der_expect(sequence, TAG_INTEGER)?;
    let (s, sequence) = der_expect(sequence, TAG_INTEGER)?;
    if !sequence.is_empty() {
        return None;
    }
    let mut out = [0; 2 * P256_LEN];
    left_pad(r, &mut out[..P256_LEN])?;
    left_pad(s, &mut out[P256_LEN..])?;
    Some(out)
}

/// Reads a PKCS#11 `CKA_EC_POINT`: DER OCTET STRING around the SEC1 point,
/// as the standard says, or the bare point, as some modules return it.
pub(crate) fn ec_point_attribute(value: &[u8]) -> Result<PublicKey, BackendError> {
    if let Some((point, [])) = der_expect(value, TAG_OCTET_STRING)
        && let Ok(key) = PublicKey::p256_point(point)
    {
        return Ok(key);
    }
    PublicKey::p256_point(value)
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// Reads one DER element with `tag` from the front of `input`: its contents
/// and what follows. Definite, minimal lengths only.
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 3 || rest.len() < count || rest[0] == 0 {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        if len < 0x80 {
            return None;
        }
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (&rest[..len], &rest[len..]))
}

/// Copies a non-negative DER INTEGER's value into `out`, right-aligned.
fn left_pad(integer: &[u8], out: &mut [u8]) -> Option<()> {
    if integer.first().is_none_or(|first| *first & 0x80 != 0) {
        return None;
    }
    let value = strip_zeros(integer);
    let start = out.len().checked_sub(value.len())?;
    out[start..].copy_from_slice(value);
    Some(())
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(big_endian: &[u8]) -> usize {
    let value = strip_zeros(big_endian);
    value
        .first()
        .map_or(0, |first| value.len() * 8 - first.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        RSA_PKCS1_SHA256, RsaKeyPair,
    };

    fn ec_pair() -> EcdsaKeyPair {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap()
    }

    #[test]
    fn der_ecdsa_signatures_become_jose_signatures_that_verify() {
        let pair = ec_pair();
        let public = PublicKey::p256_point(pair.public_key().as_ref()).unwrap();
        // Many signatures, so r or s with a high bit (DER adds a zero byte)
        // and short r or s (DER drops leading zeros) both occur.
        for round in 0..200u32 {
            let message = round.to_be_bytes();
            let der = pair.sign(&SystemRandom::new(), &message).unwrap();
            let jose = ecdsa_der_to_jose(der.as_ref()).expect("valid DER converts");
            assert!(public.verifies(SigningAlg::Es256, &message, &jose));
        }
    }

    #[test]
    fn malformed_der_signatures_are_refused_not_panicked_on() {
        let too_long = [
            &[0x30, 0x25, 0x02, 0x21, 0x01][..],
            &[0xff; 32],
            &[0x02, 0x00],
        ]
        .concat();
        let cases: &[(&str, &[u8])] = &[
            ("empty input", &[]),
            ("a sequence with no integers", &[0x30, 0x00]),
            ("a truncated length", &[0x30, 0x81]),
            ("a length past the end", &[0x30, 0x10, 0x02, 0x01, 0x01]),
            (
                "a negative r",
                &[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01],
            ),
            (
                "trailing bytes",
                &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00],
            ),
            ("an r wider than 32 bytes", &too_long),
            (
                "a non-minimal long length",
                &[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            ),
        ];
        for (case, der) in cases {
            assert_eq!(ecdsa_der_to_jose(der), None, "{case}");
        }
    }

    #[test]
    fn spki_public_keys_of_both_types_parse_to_their_components() {
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let spki = ec.public_key().as_der().unwrap();
        let parsed = PublicKey::from_spki_der(spki.as_ref()).unwrap();
        assert_eq!(
            parsed,
            PublicKey::p256_point(ec.public_key().as_ref()).unwrap()
        );

        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let spki = rsa.public_key().as_der().unwrap();
        let parsed = PublicKey::from_spki_der(spki.as_ref()).unwrap();
        let components = PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        assert_eq!(
            parsed,
            PublicKey::rsa(&components.n, &components.e).unwrap()
        );
        let mut signature = vec![0; rsa.public_modulus_len()];
        rsa.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            PROBE,
            &mut signature,
        )
        .unwrap();
        parsed.check_alg(SigningAlg::Rs256).unwrap();
        parsed.check_probe(SigningAlg::Rs256, &signature).unwrap();
        assert_eq!(
            parsed.check_probe(SigningAlg::Rs256, b"not a signature"),
            Err(BackendError::ProbeFailed)
        );
    }

    #[test]
    fn keys_that_do_not_fit_the_algorithm_are_named_in_the_error() {
        let ec = PublicKey::p256_point(ec_pair().public_key().as_ref()).unwrap();
        let small_rsa = PublicKey::rsa(&[0xc5; 128], &[1, 0, 1]).unwrap();
        let cases = [
            (
                &ec,
                SigningAlg::Rs256,
                "the key is EC P-256, but RS256 needs an RSA key",
            ),
            (
                &small_rsa,
                SigningAlg::Es256,
                "the key is RSA, but ES256 needs an EC P-256 key",
            ),
            (
                &small_rsa,
                SigningAlg::Rs256,
                "the key is 1024-bit RSA; at least 2048 bits are required",
            ),
        ];
        for (key, alg, message) in cases {
            assert_eq!(key.check_alg(alg).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn an_spki_on_another_curve_is_refused() {
        // The P-256 SPKI with its curve OID changed to secp256k1 (1.3.132.0.10).
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let mut spki = ec.public_key().as_der().unwrap().as_ref().to_vec();
        let at = spki
            .windows(P256_OID_DER.len())
            .position(|w| w == P256_OID_DER)
            .unwrap();
        spki.splice(
            at..at + P256_OID_DER.len(),
            [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
        );
        spki[1] -= 3;
        spki[3] -= 3;
        let err = PublicKey::from_spki_der(&spki).unwrap_err();
        assert!(err.to_string().contains("not on P-256"), "{err}");
    }

    #[test]
    fn ec_point_attributes_are_read_wrapped_or_bare() {
        let pair = ec_pair();
        let point = pair.public_key().as_ref();
        let wrapped = [&[0x04, 0x41][..], point].concat();
        assert_eq!(ec_point_attribute(&wrapped), PublicKey::p256_point(point));
        assert_eq!(ec_point_attribute(point), PublicKey::p256_point(point));
        assert!(ec_point_attribute(&point[..40]).is_err());
    }

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 7638 section 3.1's example key and thumbprint.
        let n = URL_SAFE_NO_PAD
            .decode(concat!(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP",
                "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY",
                "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f",
                "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
            ))
            .unwrap();
        let key = PublicKey::rsa(&n, &[1, 0, 1]).unwrap();
        let (jwk, thumbprint) = key.jwk();
        assert_eq!(thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(jwk["e"], "AQAB");
    }

    #[test]
    fn debug_output_shows_the_key_size_not_the_key() {
        let key = PublicKey::rsa(&[0xc5; 256], &[1, 0, 1]).unwrap();
        assert_eq!(format!("{key:?}"), "PublicKey::Rsa(2048 bits)");
    }
}
