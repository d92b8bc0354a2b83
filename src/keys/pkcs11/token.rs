//! The process-wide PKCS#11 state: modules loaded and initialised once, and
//! one logged-in token per slot shared by every key on it.
//!
//! Login belongs to the application, not to a session, so a token keeps one
//! anchor session open for as long as any key uses it, logs in once on it
//! and never logs out (closing the last session of a token logs out too).
//! A PIN the token refused is remembered (as a SHA-256 digest) and not tried
//! on that token again.
//!
//! Only a PIN the token accepted is kept for later re-logins, so a reload
//! bringing a wrong PIN (refused, or failing for any other reason) can never
//! leave the keys in force with a PIN that fails their next re-login. While
//! the token is logged in, `C_Login` answers `CKR_USER_ALREADY_LOGGED_IN`
//! whatever the PIN, so a PIN other than the accepted one cannot be checked
//! then: it is refused (a PIN change takes effect at the next start). Errors are mapped here to what they mean to an
//! operator, by return-code name, never with a PIN.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;

use super::uri::Pkcs11Uri;
use crate::keys::custody::{BackendError, sha256};

/// A loaded, initialised module. Kept for the life of the process.
pub(super) struct Module {
    path: PathBuf,
    context: Pkcs11,
}

static MODULES: Mutex<Vec<Arc<Module>>> = Mutex::new(Vec::new());

impl Module {
    pub(super) fn load(path: &Path) -> Result<Arc<Module>, BackendError> {
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
    pub(super) fn find_slot(&self, uri: &Pkcs11Uri) -> Result<Slot, BackendError> {
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
pub(super) struct Token {
    module: Arc<Module>,
    slot: Slot,
    login_required: bool,
    pin: Mutex<Option<AuthPin>>,
    anchor: Mutex<Option<Session>>,
}

static TOKENS: Mutex<Vec<Weak<Token>>> = Mutex::new(Vec::new());

/// PINs a token refused, by module, slot and SHA-256 of the PIN.
static REFUSED_PINS: Mutex<Vec<(PathBuf, u64, [u8; 32])>> = Mutex::new(Vec::new());

impl Token {
    /// The token in `slot`, logged in: the one already open, or a new one.
    /// A PIN given now replaces the remembered one for later re-logins only
    /// once the token has accepted it.
    pub(super) fn get(
        module: Arc<Module>,
        slot: Slot,
        pin: Option<AuthPin>,
    ) -> Result<Arc<Token>, BackendError> {
        let token = Self::shared(module, slot)?;
        token.log_in(pin)?;
        Ok(token)
    }

    /// The token in `slot` every key on it shares, made on first use. The
    /// process-wide list is locked only to look up and insert, never across
    /// a call into the module: a token that hangs must not hold up keys on
    /// every other token.
    fn shared(module: Arc<Module>, slot: Slot) -> Result<Arc<Token>, BackendError> {
        let find = |tokens: &mut Vec<Weak<Token>>| {
            tokens.retain(|token| token.strong_count() > 0);
            tokens
                .iter()
                .filter_map(Weak::upgrade)
                .find(|token| Arc::ptr_eq(&token.module, &module) && token.slot.id() == slot.id())
        };
        if let Some(token) = find(&mut lock(&TOKENS)) {
            return Ok(token);
        }
        let info = module
            .context
            .get_token_info(slot)
            .map_err(|err| ck_error("C_GetTokenInfo", &err))?;
        let mut tokens = lock(&TOKENS);
        if let Some(token) = find(&mut tokens) {
            return Ok(token);
        }
        let token = Arc::new(Token {
            module: module.clone(),
            slot,
            login_required: info.login_required(),
            pin: Mutex::new(None),
            anchor: Mutex::new(None),
        });
        tokens.push(Arc::downgrade(&token));
        Ok(token)
    }

    pub(super) fn open_session(&self) -> Result<Session, BackendError> {
        self.module
            .context
            .open_ro_session(self.slot)
            .map_err(|err| ck_error("C_OpenSession", &err))
    }

    /// Logs the application in again with the PIN the token accepted (a
    /// no-op when it already is logged in).
    pub(super) fn login(&self) -> Result<(), BackendError> {
        self.log_in(None)
    }

    /// Logs the application in with `offered`, or with the PIN the token
    /// accepted when none is offered, opening the anchor session first if
    /// there is none. `offered` is kept for later re-logins only once the
    /// token has accepted it; a PIN that differs from the accepted one while
    /// the token is logged in cannot be checked, and is refused.
    fn log_in(&self, offered: Option<AuthPin>) -> Result<(), BackendError> {
        if !self.login_required {
            return Ok(());
        }
        let mut anchor = lock(&self.anchor);
        if anchor.is_none() {
            *anchor = Some(self.open_session()?);
        }
        let mut accepted = lock(&self.pin);
        let digest_of = |pin: &AuthPin| sha256(pin.expose_secret().as_bytes());
        let accepted_digest = accepted.as_ref().map(digest_of);
        let pin = offered
            .as_ref()
            .or(accepted.as_ref())
            .ok_or(BackendError::NoPin)?;
        let digest = digest_of(pin);
        let this_token = (self.module.path.clone(), self.slot.id(), digest);
        if lock(&REFUSED_PINS).contains(&this_token) {
            return Err(BackendError::PinRefusedBefore);
        }
        let session = anchor.as_ref().expect("the anchor was opened above");
        match session.login(UserType::User, Some(pin)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => match accepted_digest {
                Some(known) if known != digest => return Err(BackendError::PinNotCheckable),
                Some(_) => return Ok(()),
                // Logged in by other means (another handle on the same
                // module): the best PIN there is to log in with again.
                None => {}
            },
            Err(err) => {
                if matches!(err, CkError::Pkcs11(RvError::PinIncorrect, _)) {
                    lock(&REFUSED_PINS).push(this_token);
                }
                return Err(ck_error("C_Login", &err));
            }
        }
        if let Some(pin) = offered {
            *accepted = Some(pin);
        }
        Ok(())
    }

    /// Starts over after the token lost its sessions: a new anchor, a new login.
    pub(super) fn reset(&self) -> Result<(), BackendError> {
        lock(&self.anchor).take();
        self.log_in(None)
    }
}

/// Maps a cryptoki error to what it means to an operator.
pub(super) fn ck_error(function: &str, err: &CkError) -> BackendError {
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
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
}
