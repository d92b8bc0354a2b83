//! Shared test support for real external dependencies the tests start
//! themselves: SoftHSM2 tokens, moto's KMS server, and the rule for when
//! one is missing (fail under CI, skip with a printed reason locally); and
//! public keys read the way a verifier reads them.

#![cfg(any(feature = "pkcs11", feature = "aws-kms"))]

pub mod deps;
pub mod jwk;
#[cfg(feature = "aws-kms")]
pub mod moto;
#[cfg(feature = "pkcs11")]
pub mod softhsm;
