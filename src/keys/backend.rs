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
//! Opening is bounded as a whole. A KMS key's calls carry their own
//! deadlines; a PKCS#11 call cannot be given one (a hung token holds the
//! calling thread in `C_Login`, `C_FindObjects` or `C_Sign` for as long as
//! it likes), so a PKCS#11 key is opened on a thread of its own, and the
//! load waits at most `OPEN_DEADLINE_FACTOR` (5) signing deadlines for it. A
//! thread left behind finishes (or not) on its own; while a few are still
//! stuck, no more are started.
//!
//! Each store is a Cargo feature (`pkcs11`, `aws-kms`, both on by default);
//! a build without one refuses members naming it, plainly.

use std::time::Duration;

#[cfg(feature = "pkcs11")]
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value};

use super::SigningAlg;
use super::custody::{Backend, BackendError, PublicKey};
use super::error::KeyError;
use crate::config::{CustodySettings, DEFAULT_SIGNING_TIMEOUT};

#[cfg(feature = "aws-kms")]
use super::aws_kms::{KmsClient, KmsKey};
#[cfg(feature = "pkcs11")]
use super::pkcs11::{PinSpec, Pkcs11Defaults, Pkcs11Key};

/// How many signing deadlines (`MACP_AUTH_SIGNING_TIMEOUT_MS`) opening one
/// PKCS#11 key may take in all: it makes about ten calls (module, slot,
/// login, lookups, attributes, the probe signature), each normally fast.
#[cfg(feature = "pkcs11")]
pub(crate) const OPEN_DEADLINE_FACTOR: u32 = 5;

/// PKCS#11 openings given up on whose threads are still stuck, past which
/// no new one starts: each reload of a ring naming a hung token would
/// otherwise leave one more thread behind.
#[cfg(feature = "pkcs11")]
const MAX_STUCK_OPENINGS: usize = 4;

/// PKCS#11 opening threads still running.
#[cfg(feature = "pkcs11")]
static OPENING: AtomicUsize = AtomicUsize::new(0);

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
        not(any(feature = "aws-kms", feature = "pkcs11")),
        allow(dead_code, reason = "only the stores read it")
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
        Backend::Pkcs11 => open_pkcs11(reference, alg, backends)
            .map(External::Pkcs11)
            .map_err(failed),
        #[cfg(feature = "aws-kms")]
        Backend::AwsKms => KmsClient::shared(backends.timeout)
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

/// [`Pkcs11Key::open`] on a thread of its own, waited for at most
/// [`OPEN_DEADLINE_FACTOR`] signing deadlines.
#[cfg(feature = "pkcs11")]
fn open_pkcs11(
    reference: &str,
    alg: SigningAlg,
    backends: &Backends,
) -> Result<Pkcs11Key, BackendError> {
    let limit = backends.timeout * OPEN_DEADLINE_FACTOR;
    let stuck = OPENING.fetch_add(1, Ordering::AcqRel);
    if stuck >= MAX_STUCK_OPENINGS {
        OPENING.fetch_sub(1, Ordering::AcqRel);
        return Err(BackendError::Unreachable(format!(
            "{stuck} earlier PKCS#11 key openings have still not finished (a hung token?)"
        )));
    }
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let (owned, defaults) = (reference.to_owned(), backends.pkcs11.clone());
    let spawned = std::thread::Builder::new()
        .name("macp-pkcs11-open".into())
        .spawn(move || {
            let opened = Pkcs11Key::open(&owned, alg, &defaults);
            OPENING.fetch_sub(1, Ordering::AcqRel);
            let _ = sender.send(opened);
        });
    if let Err(err) = spawned {
        OPENING.fetch_sub(1, Ordering::AcqRel);
        return Err(BackendError::Failed(format!(
            "cannot start a thread to open the key: {err}"
        )));
    }
    match receiver.recv_timeout(limit) {
        Ok(opened) => opened,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(BackendError::Timeout {
            millis: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(BackendError::Failed(
            "opening the key ended without an answer".into(),
        )),
    }
}

/// The PKCS#11 path attributes a message may show: every one the service
/// knows, but the PIN's.
const SHOWN_PKCS11_ATTRIBUTES: &[&str] = &[
    "token",
    "manufacturer",
    "serial",
    "model",
    "slot-id",
    "slot-description",
    "slot-manufacturer",
    "object",
    "id",
    "type",
];

/// A reference as messages may show it, on one line (characters that could
/// break it are escaped): a KMS reference as it is; a PKCS#11 URI with
/// nothing that may hold a PIN. Its query (`pin-value`, `pin-source`) is
/// dropped whole, and of its path only the attributes in
/// [`SHOWN_PKCS11_ATTRIBUTES`] are kept, split at `;` and `&` alike, so a
/// PIN misplaced in the path (`;pin-value=…`, `&pin-value=…`, any case) or
/// anything unrecognised is never shown, even when the URI does not parse.
pub(crate) fn describe_reference(backend: Backend, reference: &str) -> String {
    let shown = match backend {
        Backend::Pkcs11 => describe_pkcs11(reference),
        Backend::AwsKms => reference.to_owned(),
    };
    let shown: String = shown.chars().take(200).collect();
    crate::text::escape_unsafe(&shown).into_owned()
}

fn describe_pkcs11(reference: &str) -> String {
    let path = reference.split('?').next().unwrap_or_default();
    let attributes = path
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
        .map_or(path, |_| &path[7..]);
    let kept: Vec<&str> = attributes
        .split([';', '&'])
        .filter(|attribute| {
            attribute.split_once('=').is_some_and(|(name, _)| {
                SHOWN_PKCS11_ATTRIBUTES
                    .iter()
                    .any(|shown| name.trim().eq_ignore_ascii_case(shown))
            })
        })
        .collect();
    format!("pkcs11:{}", kept.join(";"))
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
    fn references_in_messages_never_show_a_pin_and_stay_on_one_line() {
        let cases = [
            (
                Backend::Pkcs11,
                "pkcs11:token=t;object=k?pin-value=1234",
                "pkcs11:token=t;object=k",
            ),
            (
                Backend::Pkcs11,
                "pkcs11:token=t;object=k;pin-value=1234",
                "pkcs11:token=t;object=k",
            ),
            (
                Backend::Pkcs11,
                "pkcs11:object=k&pin-value=1234",
                "pkcs11:object=k",
            ),
            (
                Backend::Pkcs11,
                "PKCS11:object=k;PIN-Value=1234;pin-source=/run/1234",
                "pkcs11:object=k",
            ),
            (
                Backend::Pkcs11,
                "pkcs11:object=k;pin%2dvalue=1234;1234;x=1234",
                "pkcs11:object=k",
            ),
            (
                Backend::Pkcs11,
                "token=t;object=k;pin-value=1234",
                "pkcs11:token=t;object=k",
            ),
            (
                Backend::Pkcs11,
                "pkcs11:object=k\nINFO forged line",
                "pkcs11:object=k\\u{000a}INFO forged line",
            ),
            (Backend::AwsKms, "alias/k", "alias/k"),
            (
                Backend::AwsKms,
                "alias/k\r\nERROR forged",
                "alias/k\\u{000d}\\u{000a}ERROR forged",
            ),
        ];
        for (backend, reference, shown) in cases {
            assert_eq!(
                describe_reference(backend, reference),
                shown,
                "{reference:?}"
            );
        }
    }

    #[test]
    fn a_pin_misplaced_in_a_pkcs11_path_never_reaches_the_error() {
        for reference in [
            "pkcs11:token=t;object=k;pin-value=1234",
            "pkcs11:object=k&pin-value=1234",
            "pkcs11:object=k;PIN-SOURCE=/run/1234",
        ] {
            let err = open(
                &Backends::default(),
                Backend::Pkcs11,
                reference,
                SigningAlg::Es256,
            )
            .err()
            .expect("refused")
            .to_string();
            assert!(!err.contains("1234"), "{reference}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
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
