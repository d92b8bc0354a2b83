//! Private keys as PEM: PKCS#8, PKCS#1 and SEC1 blocks.
//!
//! PEM carries no kid, so a PEM key is known by its RFC 7638 thumbprint.

use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};

use super::alg::SigningAlg;
use super::error::KeyError;
use super::key::{KeyPairKind, KeySource, MIN_RSA_BITS, SigningKey};

impl SigningKey {
    /// Loads one PEM-encoded private key: PKCS#8 (`PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). PEM carries no kid, so
    /// the kid is the RFC 7638 thumbprint.
    pub(crate) fn from_pem(
        alg: SigningAlg,
        pem: &str,
        source: KeySource,
    ) -> Result<Self, KeyError> {
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
}

pub(super) fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(first) => big_endian.len() * 8 - first.leading_zeros() as usize,
    }
}
