//! The one home of test plumbing; tests hold only what they check.
//!
//! - [`app`]: state built as a test needs it ([`AppBuilder`]), requests
//!   through the router alone ([`send`], [`mint`], [`request`],
//!   [`oneshot`]), and the real `Service` on `127.0.0.1:0` ([`TestApp`]).
//! - [`process`]: the binary: one-shot commands and a served instance
//!   ([`Spawned`]) signalled with `libc::kill`, killed on drop.
//! - [`logs`]: log capture that holds up when tests run in parallel.
//! - [`tempdir`]: directories removed on drop, even when a test fails.
//! - [`keys`]: cached RSA keys, cheap ES256 keys, ring texts.
//! - [`verify`]: verifying tokens the way the MACP runtime does.
//! - [`otlp`]: an OTLP/HTTP trace receiver standing in for a collector.
//! - [`softhsm`], [`moto`]: real key stores the custody tests start (a
//!   SoftHSM2 token, moto's KMS server), [`hung_hsm`]: a PKCS#11 module
//!   that stops answering on demand, [`deps`]: when one is missing
//!   (fail under CI, skip with a printed reason locally), [`jwk`]: a store's
//!   public key read the way a verifier reads it.

pub mod app;
#[cfg(any(feature = "pkcs11", feature = "aws-kms"))]
pub mod deps;
#[cfg(feature = "pkcs11")]
pub mod hung_hsm;
pub mod issuer;
#[cfg(any(feature = "pkcs11", feature = "aws-kms"))]
pub mod jwk;
pub mod keys;
pub mod logs;
#[cfg(feature = "aws-kms")]
pub mod moto;
pub mod otlp;
pub mod process;
#[cfg(feature = "pkcs11")]
pub mod softhsm;
pub mod tempdir;
pub mod verify;

pub use app::{
    AppBuilder, Reply, TestApp, config, jwks_kids, mint, oneshot, request, send, state, state_with,
    state_with_ring,
};
pub use keys::{es256_key, es256_ring, other_rsa_jwk, private_jwk, ring_text};
pub use logs::LogCapture;
pub use process::{Spawned, binary, free_port, run_with_stdin};
pub use tempdir::TempDir;
pub use verify::{RuntimeScopes, now, token_parts, verify_like_runtime};
