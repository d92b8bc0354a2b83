//! Ring members that name a key in an external store instead of carrying it:
//! `{"kid": "hsm-1", "alg": "RS256", "pkcs11": "pkcs11:token=macp;object=signing-1"}`
//! or `{"alg": "ES256", "aws_kms": "alias/macp-signing"}`.
//!
//! Such a member carries no key material at all, not even the public key:
//! the public key is read from the store at every load, so the JWKS always
//! publishes what the store will actually sign with. Opening the key (which
//! reaches the store, checks the key suits the algorithm and has it sign a
//! probe that must verify) happens here, once per load; what fails names
//! the backend, the key reference (never a PIN) and what went wrong.
//!
//! Each store is a Cargo feature (`pkcs11`, `aws-kms`, both on by default);
//! a build without one refuses members naming it, plainly.

use std::time::Duration;

use serde_json::{Map, Value};

use super::SigningAlg;
use super::custody::{Backend, BackendError, PublicKey};
use super::error::KeyError;
use crate::config::{CustodySettings, DEFAULT_SIGNING_TIMEOUT};

#[cfg(feature = "aws-kms")]
use super::aws_kms::{KmsClient, KmsKey};
#[cfg(feature = "pkcs11")]
use super::pkcs11::{PinSpec, Pkcs11Defaults, Pkcs11Key};

/// JWK members that hold key material: a member naming a backend has none.
const KEY_MATERIAL: &[&str] = &[
    "kty", "n", "e", "d", "p", "q", "dp", "dq", "qi", "oth", "crv", "x", "y", "k",
];

/// How external keys are reached: the PKCS#11 defaults and the deadline of
/// every store call. Cheap to clone; built from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Backends {
    #[cfg(feature = "pkcs11")]
    pkcs11: Pkcs11Defaults,
    #[cfg_attr(
        not(feature = "aws-kms"),
        allow(dead_code, reason = "only the AWS KMS store reads it")
    )]
    timeout: Duration,
}

impl Default for Backends {
    /// No PKCS#11 module or PIN beyond what a URI says; the default deadline.
    fn default() -> Self {
        Backends {
            #[cfg(feature = "pkcs11")]
            pkcs11: Pkcs11Defaults::default(),
            timeout: DEFAULT_SIGNING_TIMEOUT,
        }
    }
}

impl Backends {
    /// What `settings` (from `MACP_AUTH_PKCS11_*` and
    /// `MACP_AUTH_SIGNING_TIMEOUT_MS`) say.
    pub(crate) fn from_settings(settings: &CustodySettings) -> Self {
        #[cfg(feature = "pkcs11")]
        let pkcs11 = {
            let pin = match (&settings.pkcs11_pin, &settings.pkcs11_pin_file) {
                (Some(pin), _) => Some(PinSpec::Value(pin.expose().to_owned().into())),
                (None, Some(path)) => Some(PinSpec::File(path.clone())),
                (None, None) => None,
            };
            Pkcs11Defaults {
                module: settings.pkcs11_module.clone(),
                pin,
            }
        };
        Backends {
            #[cfg(feature = "pkcs11")]
            pkcs11,
            timeout: settings.signing_timeout,
        }
    }
}

/// A key held by an external store, opened and probed.
pub(crate) enum External {
    /// A PKCS#11 token's private key.
    #[cfg(feature = "pkcs11")]
    Pkcs11(Pkcs11Key),
    /// An AWS KMS asymmetric key.
    #[cfg(feature = "aws-kms")]
    AwsKms(KmsKey),
}

impl External {
    /// Which store holds the key.
    pub(crate) fn backend(&self) -> Backend {
        match *self {
            #[cfg(feature = "pkcs11")]
            External::Pkcs11(_) => Backend::Pkcs11,
            #[cfg(feature = "aws-kms")]
            External::AwsKms(_) => Backend::AwsKms,
        }
    }

    /// The public key the store returned.
    pub(crate) fn public_key(&self) -> &PublicKey {
        match *self {
            #[cfg(feature = "pkcs11")]
            External::Pkcs11(ref key) => key.public_key(),
            #[cfg(feature = "aws-kms")]
            External::AwsKms(ref key) => key.public_key(),
        }
    }

    /// The key's reference, for logs and `check-config` (never a PIN).
    pub(crate) fn description(&self) -> String {
        match *self {
            #[cfg(feature = "pkcs11")]
            External::Pkcs11(ref key) => key.description().to_owned(),
            #[cfg(feature = "aws-kms")]
            External::AwsKms(ref key) => key.description(),
        }
    }

    /// Signs `message`, blocking the calling thread until the store answers
    /// (or the deadline passes). The request path signs KMS keys
    /// asynchronously instead; this serves the signing threads (PKCS#11)
    /// and command-line checks.
    #[cfg_attr(
        not(any(feature = "pkcs11", feature = "aws-kms")),
        allow(unused_variables)
    )]
    pub(crate) fn sign_blocking(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        match *self {
            #[cfg(feature = "pkcs11")]
            External::Pkcs11(ref key) => key.sign(message),
            #[cfg(feature = "aws-kms")]
            External::AwsKms(ref key) => key.sign_blocking(message),
        }
    }
}

/// The backend a ring member names and its reference, or `None` for an
/// ordinary JWK. A member naming a backend may carry `kid`, `alg`, `use`
/// and `activate_at` (and other annotations), but no key material.
pub(crate) fn named_backend(jwk: &Map<String, Value>) -> Result<Option<(Backend, &str)>, KeyError> {
    let mut named = None;
    for backend in [Backend::Pkcs11, Backend::AwsKms] {
        let Some(value) = jwk.get(backend.as_str()) else {
            continue;
        };
        if named.is_some() {
            return Err(KeyError::TwoBackends);
        }
        let reference = value
            .as_str()
            .filter(|reference| !reference.trim().is_empty())
            .ok_or(KeyError::BadBackendReference { backend })?;
        named = Some((backend, reference));
    }
    if let Some((backend, _)) = named
        && let Some(member) = KEY_MATERIAL
            .iter()
            .find(|member| jwk.contains_key(**member))
    {
        return Err(KeyError::BackendWithKeyMaterial { backend, member });
    }
    Ok(named)
}

/// Opens the key `reference` names in `backend` for `alg`.
pub(crate) fn open(
    backends: &Backends,
    backend: Backend,
    reference: &str,
    alg: SigningAlg,
) -> Result<External, KeyError> {
    let failed = |error: BackendError| KeyError::Backend {
        backend,
        reference: describe_reference(backend, reference),
        error: Box::new(error),
    };
    match backend {
        #[cfg(feature = "pkcs11")]
        Backend::Pkcs11 => Pkcs11Key::open(reference, alg, &backends.pkcs11)
            .map(External::Pkcs11)
            .map_err(failed),
        #[cfg(feature = "aws-kms")]
        Backend::AwsKms => KmsClient::shared()
            .and_then(|client| KmsKey::open_blocking(client, reference, alg, backends.timeout))
            .map(External::AwsKms)
            .map_err(failed),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (backends, alg, failed);
            Err(KeyError::BackendNotBuilt { backend })
        }
    }
}

/// A reference as messages may show it: a PKCS#11 URI without its query
/// (which may hold `pin-value`), a KMS reference as it is.
pub(crate) fn describe_reference(backend: Backend, reference: &str) -> String {
    let shown = match backend {
        Backend::Pkcs11 => reference.split('?').next().unwrap_or_default(),
        Backend::AwsKms => reference,
    };
    shown.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn members_naming_a_backend_are_recognised() {
        let jwk = member(json!({"kid": "hsm-1", "alg": "RS256", "pkcs11": "pkcs11:object=k"}));
        assert_eq!(
            named_backend(&jwk),
            Ok(Some((Backend::Pkcs11, "pkcs11:object=k")))
        );
        let jwk = member(json!({"aws_kms": "alias/macp", "activate_at": 5}));
        assert_eq!(
            named_backend(&jwk),
            Ok(Some((Backend::AwsKms, "alias/macp")))
        );
        let jwk = member(json!({"kty": "EC", "d": "x"}));
        assert_eq!(named_backend(&jwk), Ok(None));
    }

    #[test]
    fn a_member_naming_a_backend_carries_no_key_material() {
        let cases = [
            (
                json!({"pkcs11": "pkcs11:object=k", "aws_kms": "alias/k"}),
                "names both",
            ),
            (json!({"pkcs11": 5}), "must be a non-empty string"),
            (json!({"aws_kms": " "}), "must be a non-empty string"),
            (json!({"pkcs11": "pkcs11:object=k", "d": "secret"}), "\"d\""),
            (
                json!({"aws_kms": "alias/k", "kty": "RSA", "n": "AQAB"}),
                "\"kty\"",
            ),
        ];
        for (value, expected) in cases {
            let err = named_backend(&member(value.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{value}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn references_in_messages_drop_the_pkcs11_query() {
        assert_eq!(
            describe_reference(Backend::Pkcs11, "pkcs11:token=t;object=k?pin-value=1234"),
            "pkcs11:token=t;object=k"
        );
        assert_eq!(describe_reference(Backend::AwsKms, "alias/k"), "alias/k");
    }

    #[test]
    fn ring_loads_open_store_keys_and_plain_parsing_never_does() {
        use crate::keys::KeySource;
        use crate::keys::ring::KeyRing;
        let ring = json!({"keys": [{
            "kid": "hsm-1",
            "pkcs11": "pkcs11:object=k?module-path=/nonexistent/libp11.so&pin-value=9999-secret"
        }]})
        .to_string();
        let parsed = KeyRing::parse(SigningAlg::Es256, &ring, KeySource::File);
        let err = parsed.unwrap_err().to_string();
        assert!(
            err.ends_with("keys in external stores are opened only when the key ring is loaded"),
            "{err}"
        );
        let opened = KeyRing::parse_with(
            SigningAlg::Es256,
            &ring,
            KeySource::File,
            Some(&Backends::default()),
        );
        let err = opened.unwrap_err().to_string();
        let expected = if cfg!(feature = "pkcs11") {
            "key 1 (kid \"hsm-1\"): pkcs11 key pkcs11:object=k: cannot load module /nonexistent/libp11.so: "
        } else {
            "key 1 (kid \"hsm-1\"): names a pkcs11 key, but this build has no pkcs11 support"
        };
        assert!(err.starts_with(expected), "{err}");
        assert!(!err.contains("9999-secret"), "{err}");
    }

    #[cfg(not(feature = "pkcs11"))]
    #[test]
    fn a_build_without_pkcs11_refuses_pkcs11_members() {
        let err = open(
            &Backends::default(),
            Backend::Pkcs11,
            "pkcs11:object=k",
            SigningAlg::Rs256,
        );
        assert_eq!(
            err.err(),
            Some(KeyError::BackendNotBuilt {
                backend: Backend::Pkcs11
            })
        );
    }
}
