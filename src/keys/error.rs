//! Why a key cannot be loaded or cannot sign.
//!
//! Messages describe the problem and never include key material: only
//! registered JOSE names are ever quoted (see [`describe`]), so text pasted
//! into the wrong member, even a fragment of a private key, never reaches a
//! log.

use serde_json::Value;

use super::alg::SigningAlg;
use super::custody::{Backend, BackendError};
use super::key::MIN_RSA_BITS;

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
    #[error(
        "member \"kid\" must be a non-empty string without control characters, line or paragraph separators, or bidirectional formatting characters when present"
    )]
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
    /// A member names a key in a store this build cannot reach.
    #[error(
        "names a {backend} key, but this build has no {backend} support (build with the Cargo feature of that name)"
    )]
    BackendNotBuilt {
        /// The store named.
        backend: Backend,
    },
    /// A member naming a store where only private keys can be loaded.
    #[error(
        "names a {backend} key; keys in external stores are opened only when the key ring is loaded"
    )]
    ExternalNotOpened {
        /// The store named.
        backend: Backend,
    },
    /// A member names two stores.
    #[error("names both a pkcs11 and an aws_kms key; a member names one key")]
    TwoBackends,
    /// The store reference is not a usable string.
    #[error(
        "member \"{backend}\" must be a non-empty string (a PKCS#11 URI or a KMS key reference)"
    )]
    BadBackendReference {
        /// The store named.
        backend: Backend,
    },
    /// A member naming a store also carries key material.
    #[error(
        "names a {backend} key and also carries member \"{member}\": a key in an external store takes its public key from the store, so the member holds no key material"
    )]
    BackendWithKeyMaterial {
        /// The store named.
        backend: Backend,
        /// The key-material member found.
        member: &'static str,
    },
    /// The store could not open the key, or the key failed its checks.
    #[error("{backend} key {reference}: {error}")]
    Backend {
        /// The store.
        backend: Backend,
        /// The key reference, without any PIN.
        reference: String,
        /// What failed (boxed: it is rare, and keeps every key error small).
        error: Box<BackendError>,
    },
}

/// Why a signature could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// AWS-LC refused; there is no detail to give.
    #[error("the signing operation failed")]
    Local,
    /// The external store failed or did not answer in time.
    #[error("{backend}: {error}")]
    Backend {
        /// The store.
        backend: Backend,
        /// What failed.
        error: BackendError,
    },
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
pub(super) fn describe(value: &Value) -> String {
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
