//! The signing-key subsystem: what a key is, where it comes from, which one
//! signs when, and the live ring requests read.
//!
//! - [`alg`]: the two JWS algorithms, a leaf value type.
//! - [`key`]: a private key ready to sign, with its kid and public JWK; the
//!   sign-and-verify probe every key passes before it is used.
//! - [`jwk`] and [`pem`]: one file per input format.
//! - [`ring`]: the pure schedule: for any instant, which key signs and which
//!   are published. No clock, no I/O, so a whole rotation is tested without
//!   sleeping.
//! - [`snapshot`]: what requests read from the ring at one instant (signing
//!   key, JWKS bytes, ETag), computed once per scheduled change.
//! - [`notices`]: the transition notices (activation, supersession,
//!   retirement, short pre-publication, emergency rotation, removal) as
//!   values, worked out by pure functions, with their log wording.
//! - [`store`]: the live ring behind one atomic pointer and its reloads; it
//!   logs the notices each refresh and reload gives rise to and returns them.
//!
//! - [`custody`], [`backend`], and the stores behind Cargo features
//!   (`pkcs11`, `aws_kms`): keys that never enter the process. A ring member
//!   may name one instead of carrying a private key; it is opened, its
//!   public key read and a probe signed through the store at every load.
//!
//! Private-key operations happen only inside AWS-LC or inside an external
//! key store (PKCS#11, AWS KMS); nothing here formats private material, a
//! PIN or a credential into an error, a log line or a `Debug` string.

pub(crate) mod alg;
#[cfg(feature = "aws-kms")]
pub(crate) mod aws_kms;
pub(crate) mod backend;
pub(crate) mod custody;
pub(crate) mod error;
pub(crate) mod jwk;
pub(crate) mod key;
pub(crate) mod notices;
pub(crate) mod pem;
#[cfg(feature = "pkcs11")]
pub(crate) mod pkcs11;
pub mod ring;
pub(crate) mod snapshot;
pub mod store;

pub use alg::SigningAlg;
pub(crate) use backend::Backends;
pub use custody::{Backend, BackendError};
pub(crate) use error::{KeyError, SignError};
pub(crate) use jwk::{default_kid, parse_jwk_object};
pub use jwk::{generate_private_jwk, public_jwk_from_private};
pub(crate) use key::jwks_json;
pub use key::{KeySource, SigningKey};
