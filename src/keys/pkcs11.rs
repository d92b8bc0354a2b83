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
//!
//! RS256 uses `CKM_SHA256_RSA_PKCS` over the signing input. ES256 hashes the
//! input with SHA-256 (AWS-LC) and signs the digest with `CKM_ECDSA`, whose
//! output is already the JOSE `r || s`.

mod uri;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;

use crate::config::SigningAlg;
use crate::keys::custody::{
    BackendError, P256_OID_DER, PROBE, PublicKey, ec_point_attribute, sha256,
};

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

/// A loaded, initialised module. Kept for the life of the process.
struct Module {
    path: PathBuf,
    context: Pkcs11,
}

static MODULES: Mutex<Vec<Arc<Module>>> = Mutex::new(Vec::new());

impl Module {
    fn load(path: &Path) -> Result<Arc<Module>, BackendError> {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let mut modules = lock(&MODULES);
        if let Some(module) = modules.iter().find(|module| module.path == path) {
            return Ok(module.clone());
        }
        let failed = |reason: String| BackendError::Module {
            path: path.display().to_string(),
            reason,
        };
        let context = Pkcs11::new(&path).map_err(|err| failed(err.to_string()))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(err) => return Err(failed(format!("C_Initialize failed ({})", rv_name(&err)))),
        }
        let module = Arc::new(Module { path, context });
        modules.push(module.clone());
        Ok(module)
    }

    /// The one slot whose token matches the URI's token attributes.
    fn find_slot(&self, uri: &Pkcs11Uri) -> Result<Slot, BackendError> {
        let slots = self
            .context
            .get_slots_with_token()
            .map_err(|err| ck_error("C_GetSlotList", &err))?;
        let mut matching = Vec::new();
        for slot in slots {
            if uri.slot_id.is_some_and(|id| id != slot.id()) {
                continue;
            }
            let info = self
                .context
                .get_slot_info(slot)
                .map_err(|err| ck_error("C_GetSlotInfo", &err))?;
            let token = self
                .context
                .get_token_info(slot)
                .map_err(|err| ck_error("C_GetTokenInfo", &err))?;
            let wanted = [
                (&uri.token, token.label()),
                (&uri.manufacturer, token.manufacturer_id()),
                (&uri.serial, token.serial_number()),
                (&uri.model, token.model()),
                (&uri.slot_description, info.slot_description()),
                (&uri.slot_manufacturer, info.manufacturer_id()),
            ];
            if wanted
                .iter()
                .all(|(want, have)| want.as_deref().is_none_or(|want| want == *have))
            {
                matching.push(slot);
            }
        }
        match matching.as_slice() {
            [slot] => Ok(*slot),
            [] => Err(BackendError::NotFound(format!(
                "no token matches {}",
                uri.describe()
            ))),
            several => Err(BackendError::BadReference(format!(
                "{} tokens match {}; add token=, serial= or slot-id= to pick one",
                several.len(),
                uri.describe()
            ))),
        }
    }
}

/// A token in use: its login state and the anchor session that keeps it.
/// Shared by every key on the token; dropped (closing the anchor, which
/// logs out) when the last of them goes.
struct Token {
    module: Arc<Module>,
    slot: Slot,
    login_required: bool,
    pin: Mutex<Option<AuthPin>>,
    anchor: Mutex<Option<Session>>,
}

static TOKENS: Mutex<Vec<Weak<Token>>> = Mutex::new(Vec::new());

impl Token {
    /// The token in `slot`, logged in: the one already open, or a new one.
    /// A PIN given now replaces the remembered one for later re-logins.
    fn get(
        module: Arc<Module>,
        slot: Slot,
        pin: Option<AuthPin>,
    ) -> Result<Arc<Token>, BackendError> {
        let mut tokens = lock(&TOKENS);
        tokens.retain(|token| token.strong_count() > 0);
        let existing = tokens
            .iter()
            .filter_map(Weak::upgrade)
            .find(|token| Arc::ptr_eq(&token.module, &module) && token.slot.id() == slot.id());
        let token = match existing {
            Some(token) => token,
            None => {
                let info = module
                    .context
                    .get_token_info(slot)
                    .map_err(|err| ck_error("C_GetTokenInfo", &err))?;
                Arc::new(Token {
                    module,
                    slot,
                    login_required: info.login_required(),
                    pin: Mutex::new(None),
                    anchor: Mutex::new(None),
                })
            }
        };
        if let Some(pin) = pin {
            *lock(&token.pin) = Some(pin);
        }
        token.login()?;
        if !tokens
            .iter()
            .any(|known| known.as_ptr() == Arc::as_ptr(&token))
        {
            tokens.push(Arc::downgrade(&token));
        }
        Ok(token)
    }

    fn open_session(&self) -> Result<Session, BackendError> {
        self.module
            .context
            .open_ro_session(self.slot)
            .map_err(|err| ck_error("C_OpenSession", &err))
    }

    /// Logs the application in (a no-op when it already is), opening the
    /// anchor session first if there is none.
    fn login(&self) -> Result<(), BackendError> {
        if !self.login_required {
            return Ok(());
        }
        let mut anchor = lock(&self.anchor);
        if anchor.is_none() {
            *anchor = Some(self.open_session()?);
        }
        let pin = lock(&self.pin);
        let pin = pin.as_ref().ok_or(BackendError::NoPin)?;
        let session = anchor.as_ref().expect("the anchor was opened above");
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(err) => Err(ck_error("C_Login", &err)),
        }
    }

    /// Starts over after the token lost its sessions: a new anchor, a new login.
    fn reset(&self) -> Result<(), BackendError> {
        lock(&self.anchor).take();
        self.login()
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

/// Maps a cryptoki error to what it means to an operator.
fn ck_error(function: &str, err: &CkError) -> BackendError {
    let CkError::Pkcs11(rv, _) = err else {
        return BackendError::Failed(format!("{function} failed ({err})"));
    };
    let code = rv_name(err);
    match rv {
        RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => {
            BackendError::WrongPin
        }
        RvError::PinLocked => BackendError::PinLocked,
        RvError::UserNotLoggedIn | RvError::UserPinNotInitialized => {
            BackendError::AccessDenied(format!("{function}: the token is not logged in ({code})"))
        }
        RvError::KeyFunctionNotPermitted => {
            BackendError::WrongKey(format!("the key may not sign ({code})"))
        }
        RvError::MechanismInvalid | RvError::KeyTypeInconsistent => BackendError::WrongKey(
            format!("the token cannot sign with this key and mechanism ({code})"),
        ),
        RvError::DeviceError
        | RvError::DeviceRemoved
        | RvError::DeviceMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SessionHandleInvalid
        | RvError::SessionClosed => {
            BackendError::Unreachable(format!("{function} failed ({code})"))
        }
        _ => BackendError::Failed(format!("{function} failed ({code})")),
    }
}

/// `CKR_PIN_INCORRECT` from `RvError::PinIncorrect`.
fn rv_name(err: &CkError) -> String {
    let CkError::Pkcs11(rv, _) = err else {
        return err.to_string();
    };
    let debug = format!("{rv:?}");
    if !debug.chars().all(|c| c.is_ascii_alphanumeric()) {
        return debug;
    }
    let mut name = String::from("CKR");
    for c in debug.chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Locks a mutex, carrying on after a panic elsewhere: the guarded data
/// (sessions, a handle, a PIN) stays consistent at every await-free step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_are_named_as_in_the_standard() {
        let cases = [
            (RvError::PinIncorrect, "CKR_PIN_INCORRECT"),
            (RvError::UserNotLoggedIn, "CKR_USER_NOT_LOGGED_IN"),
            (RvError::SessionHandleInvalid, "CKR_SESSION_HANDLE_INVALID"),
        ];
        for (rv, name) in cases {
            let err = CkError::Pkcs11(rv, cryptoki::context::Function::Sign);
            assert_eq!(rv_name(&err), name);
        }
    }

    #[test]
    fn token_errors_read_as_what_the_operator_must_fix() {
        let sign = cryptoki::context::Function::Sign;
        let cases = [
            (RvError::PinIncorrect, "wrong PIN (the token refused it)"),
            (
                RvError::PinLocked,
                "PIN locked: the token refuses further login attempts",
            ),
            (
                RvError::DeviceRemoved,
                "unreachable: C_Sign failed (CKR_DEVICE_REMOVED)",
            ),
            (
                RvError::KeyFunctionNotPermitted,
                "the key may not sign (CKR_KEY_FUNCTION_NOT_PERMITTED)",
            ),
            (RvError::GeneralError, "C_Sign failed (CKR_GENERAL_ERROR)"),
        ];
        for (rv, message) in cases {
            assert_eq!(
                ck_error("C_Sign", &CkError::Pkcs11(rv, sign)).to_string(),
                message
            );
        }
    }

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
