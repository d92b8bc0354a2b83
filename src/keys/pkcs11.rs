//! Signing with a private key that lives in a PKCS#11 token (an HSM, a
//! YubiHSM, CloudHSM, a cloud KMS's PKCS#11 library, SoftHSM2).
//!
//! The key never enters the process: the service holds an object handle and
//! asks the token to sign. What makes this fast and robust is session and
//! login handling, which PKCS#11 makes easy to get wrong:
//!
//! - A module is loaded and `C_Initialize`d once per process, with
//!   `CKF_OS_LOCKING_OK`, because the signing threads call it concurrently.
//!   It is never finalised: reloads reuse it.
//! - Login state belongs to the application, not the session: one `C_Login`
//!   logs every session of the token in, and `C_Logout` (or closing the
//!   token's last session) logs them all out. So each token keeps one anchor
//!   session open for as long as any key uses it, logs in once on it, and
//!   never logs out; several keys on one token share it.
//! - A session must not be used by two threads at once, so each signing
//!   thread takes a session of its own from the key's idle list and gives it
//!   back after `C_Sign`; the list never holds more sessions than there are
//!   signing threads.
//! - When the token answers `CKR_USER_NOT_LOGGED_IN` (it was reset, or
//!   something logged out), the key logs in again and retries once; when the
//!   session is gone (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`,
//!   device removed) it drops every idle session, reopens, logs in and
//!   retries once; a stale object handle is looked up again.
//! - A PIN the token refused is remembered (as a SHA-256 digest) and never
//!   tried on that token again: the key file is re-read on every change and
//!   every SIGHUP, and real HSMs lock the PIN after a few wrong attempts.
//!
//! RS256 uses `CKM_SHA256_RSA_PKCS` over the signing input. ES256 hashes the
//! input with SHA-256 (AWS-LC) and signs the digest with `CKM_ECDSA`, whose
//! output is already the JOSE `r || s`.
//!
//! [`token`] holds the process-wide part (modules, logged-in tokens); this
//! file the key: finding it, reading its public key, signing.

mod token;
mod uri;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;

use crate::keys::SigningAlg;
use crate::keys::custody::{
    BackendError, P256_OID_DER, PROBE, PublicKey, ec_point_attribute, sha256,
};

use token::{Module, Token, ck_error, lock};
pub(crate) use uri::{PinSpec, Pkcs11Uri};

/// What the environment contributes to every PKCS#11 reference:
/// `MACP_AUTH_PKCS11_MODULE`, and `MACP_AUTH_PKCS11_PIN` or
/// `MACP_AUTH_PKCS11_PIN_FILE`. A URI's own `module-path`, `pin-value` or
/// `pin-source` wins over these.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pkcs11Defaults {
    /// The module's path.
    pub(crate) module: Option<PathBuf>,
    /// The user PIN, or the file holding it.
    pub(crate) pin: Option<PinSpec>,
}

/// A private key in a PKCS#11 token, ready to sign.
pub(crate) struct Pkcs11Key {
    token: Arc<Token>,
    find: Vec<Attribute>,
    alg: SigningAlg,
    public: PublicKey,
    description: String,
    state: Mutex<KeyState>,
}

struct KeyState {
    handle: ObjectHandle,
    idle: Vec<Session>,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("key", &self.description)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Opens the key `reference` names: loads the module, finds the token and
    /// logs in (once per token), finds the private key, reads its public key,
    /// checks it suits `alg`, and has the token sign a probe that must verify
    /// with that public key.
    pub(crate) fn open(
        reference: &str,
        alg: SigningAlg,
        defaults: &Pkcs11Defaults,
    ) -> Result<Self, BackendError> {
        let uri = Pkcs11Uri::parse(reference)?;
        let module_path = uri
            .module_path
            .as_ref()
            .or(defaults.module.as_ref())
            .ok_or(BackendError::NoModule)?;
        let module = Module::load(module_path)?;
        let slot = module.find_slot(&uri)?;
        let pin = match uri.pin.as_ref().or(defaults.pin.as_ref()) {
            Some(spec) => Some(read_pin(spec)?),
            None => None,
        };
        let token = Token::get(module, slot, pin)?;
        let session = token.open_session()?;
        let mut find = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &uri.object {
            find.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            find.push(Attribute::Id(id.clone()));
        }
        let description = uri.describe();
        let handle = find_one(&session, &find, &description)?;
        let public = read_public_key(&session, handle, &find, &description)?;
        public.check_alg(alg)?;
        let key = Pkcs11Key {
            token,
            find,
            alg,
            public,
            description,
            state: Mutex::new(KeyState {
                handle,
                idle: vec![session],
            }),
        };
        let signature = key.sign(PROBE)?;
        key.public.check_probe(alg, &signature)?;
        Ok(key)
    }

    /// The public key read from the token.
    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's token and object attributes, for logs and `check-config`.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// Signs `message` (the JWS signing input): PKCS#1 v1.5 for RS256, `r || s`
    /// for ES256. Blocks on the token; call it from a signing thread.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let digest;
        let (mechanism, data) = match self.alg {
            SigningAlg::Rs256 => (Mechanism::Sha256RsaPkcs, message),
            SigningAlg::Es256 => {
                digest = sha256(message);
                (Mechanism::Ecdsa, &digest[..])
            }
        };
        let mut recovered = false;
        loop {
            let (session, handle) = self.checkout()?;
            match session.sign(&mechanism, handle, data) {
                Ok(signature) => {
                    self.checkin(session);
                    return self.check_length(signature);
                }
                Err(err) => {
                    if recovered || !self.recover(&err, session)? {
                        return Err(ck_error("C_Sign", &err));
                    }
                    recovered = true;
                }
            }
        }
    }

    fn check_length(&self, signature: Vec<u8>) -> Result<Vec<u8>, BackendError> {
        let expected = match (&self.public, self.alg) {
            (PublicKey::Rsa { n, .. }, _) => n.len(),
            (PublicKey::P256 { .. }, _) => 64,
        };
        if signature.len() == expected {
            Ok(signature)
        } else {
            Err(BackendError::Failed(format!(
                "C_Sign returned {} bytes where {expected} were expected",
                signature.len()
            )))
        }
    }

    /// An idle session of this key (or a new one) and the key's handle.
    fn checkout(&self) -> Result<(Session, ObjectHandle), BackendError> {
        let (idle, handle) = {
            let mut state = lock(&self.state);
            (state.idle.pop(), state.handle)
        };
        match idle {
            Some(session) => Ok((session, handle)),
            None => Ok((self.token.open_session()?, handle)),
        }
    }

    fn checkin(&self, session: Session) {
        lock(&self.state).idle.push(session);
    }

    /// Repairs what `err` says is broken, consuming the session it came
    /// from; `Ok(true)` means the operation is worth one retry.
    fn recover(&self, err: &CkError, session: Session) -> Result<bool, BackendError> {
        let CkError::Pkcs11(rv, _) = err else {
            self.checkin(session);
            return Ok(false);
        };
        match rv {
            RvError::UserNotLoggedIn => {
                self.checkin(session);
                self.token.login()?;
                Ok(true)
            }
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent => {
                drop(session);
                lock(&self.state).idle.clear();
                self.token.reset()?;
                Ok(true)
            }
            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => {
                // Private objects are invisible while logged out, which some
                // tokens report this way.
                self.token.login()?;
                let handle = find_one(&session, &self.find, &self.description)?;
                lock(&self.state).handle = handle;
                self.checkin(session);
                Ok(true)
            }
            _ => {
                self.checkin(session);
                Ok(false)
            }
        }
    }
}

/// The one object matching `find`.
fn find_one(
    session: &Session,
    find: &[Attribute],
    description: &str,
) -> Result<ObjectHandle, BackendError> {
    let found = session
        .find_objects(find)
        .map_err(|err| ck_error("C_FindObjects", &err))?;
    match found.as_slice() {
        [handle] => Ok(*handle),
        [] => Err(BackendError::NotFound(format!(
            "no private key matches {description}"
        ))),
        several => Err(BackendError::BadReference(format!(
            "{} private keys match {description}; add id= to pick one",
            several.len()
        ))),
    }
}

/// Reads the key's public half: RSA modulus and exponent from the private
/// key object; an EC point from the matching public key object, since EC
/// private key objects do not carry it.
fn read_public_key(
    session: &Session,
    handle: ObjectHandle,
    find: &[Attribute],
    description: &str,
) -> Result<PublicKey, BackendError> {
    let attributes = session
        .get_attributes(handle, &[AttributeType::KeyType, AttributeType::Sign])
        .map_err(|err| ck_error("C_GetAttributeValue", &err))?;
    let mut key_type = None;
    for attribute in &attributes {
        match attribute {
            Attribute::KeyType(kind) => key_type = Some(*kind),
            Attribute::Sign(false) => {
                return Err(BackendError::WrongKey(
                    "the key may not sign (its CKA_SIGN is false)".into(),
                ));
            }
            _ => {}
        }
    }
    match key_type {
        Some(KeyType::RSA) => {
            let values = read_bytes(
                session,
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            PublicKey::rsa(&values[0], &values[1])
        }
        Some(KeyType::EC) => {
            let params = read_bytes(session, handle, &[AttributeType::EcParams])?;
            if params[0] != P256_OID_DER {
                return Err(BackendError::WrongKey(
                    "the EC key is not on P-256 (ES256 needs P-256)".into(),
                ));
            }
            let mut public_find = find.to_vec();
            public_find[0] = Attribute::Class(ObjectClass::PUBLIC_KEY);
            let public = find_one(session, &public_find, description).map_err(|_| {
                BackendError::NotFound(format!(
                    "no public key object matches {description} (an EC key needs one: it holds the point)"
                ))
            })?;
            ec_point_attribute(&read_bytes(session, public, &[AttributeType::EcPoint])?[0])
        }
        _ => Err(BackendError::WrongKey(
            "the key is neither RSA nor EC; only RS256 and ES256 are supported".into(),
        )),
    }
}

/// The byte values of `types`, in order; a missing one is an error.
fn read_bytes(
    session: &Session,
    handle: ObjectHandle,
    types: &[AttributeType],
) -> Result<Vec<Vec<u8>>, BackendError> {
    let attributes = session
        .get_attributes(handle, types)
        .map_err(|err| ck_error("C_GetAttributeValue", &err))?;
    types
        .iter()
        .map(|wanted| {
            attributes
                .iter()
                .find_map(|attribute| match (wanted, attribute) {
                    (AttributeType::Modulus, Attribute::Modulus(v))
                    | (AttributeType::PublicExponent, Attribute::PublicExponent(v))
                    | (AttributeType::EcParams, Attribute::EcParams(v))
                    | (AttributeType::EcPoint, Attribute::EcPoint(v)) => Some(v.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    BackendError::Failed(format!("the token does not reveal the key's {wanted}"))
                })
        })
        .collect()
}

/// Reads a PIN; a file's contents lose one trailing newline and are never
/// quoted in an error.
fn read_pin(spec: &PinSpec) -> Result<AuthPin, BackendError> {
    match spec {
        PinSpec::Value(pin) => Ok(AuthPin::from(pin.expose_secret().to_owned())),
        PinSpec::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| BackendError::PinFile {
                path: path.display().to_string(),
                reason: err.kind().to_string(),
            })?;
            let pin = text.strip_suffix('\n').unwrap_or(&text);
            let pin = pin.strip_suffix('\r').unwrap_or(pin);
            Ok(AuthPin::from(pin.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_files_lose_one_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("macp-pin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (contents, expected) in [
            ("1234\n", "1234"),
            ("1234\r\n", "1234"),
            (" 12 34 ", " 12 34 "),
        ] {
            let path = dir.join("pin");
            std::fs::write(&path, contents).unwrap();
            let pin = read_pin(&PinSpec::File(path)).unwrap();
            assert_eq!(pin.expose_secret(), expected);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_pin_file_is_named_but_not_quoted() {
        let err = read_pin(&PinSpec::File("/nonexistent/macp-pin".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read the PIN file /nonexistent/macp-pin: entity not found"
        );
    }

    #[test]
    fn a_missing_module_is_reported_with_its_path() {
        let defaults = Pkcs11Defaults {
            module: Some("/nonexistent/libpkcs11.so".into()),
            pin: None,
        };
        let err = Pkcs11Key::open("pkcs11:object=k", SigningAlg::Es256, &defaults).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot load module /nonexistent/libpkcs11.so: "),
            "{err}"
        );
        let err = Pkcs11Key::open(
            "pkcs11:object=k",
            SigningAlg::Es256,
            &Pkcs11Defaults::default(),
        )
        .unwrap_err();
        assert_eq!(err, BackendError::NoModule);
    }
}
