//! The JWS algorithms the service signs with.
//!
//! A leaf value type with no dependencies: configuration parses it, every
//! part of the key subsystem and the JWKS speak it.

use std::fmt;

/// The JWS algorithms the service can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over an RSA key of at least 2048 bits.
    Rs256,
    /// ECDSA with SHA-256 over P-256.
    Es256,
}

impl SigningAlg {
    /// The name used in JOSE headers and JWKs.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
        }
    }

    /// Parses the exact JOSE name (`RS256` or `ES256`).
    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "RS256" => Some(SigningAlg::Rs256),
            "ES256" => Some(SigningAlg::Es256),
            _ => None,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
