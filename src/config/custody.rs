//! Settings for keys held in external stores (PKCS#11 tokens, AWS KMS): the
//! PKCS#11 module and user PIN a `pkcs11` ring member falls back on, and the
//! deadline of one signature through any store.
//!
//! AWS KMS needs nothing here: region, credentials and endpoint come from
//! the AWS SDK's own standard chain (`AWS_REGION`, the usual credential
//! sources, `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_KMS`), read only when a
//! ring member names `aws_kms`.

use std::path::PathBuf;
use std::time::Duration;

use super::reader::Reader;
use super::{ConfigError, KeyMaterial, vars};

/// The default deadline of one external signature.
pub(crate) const DEFAULT_SIGNING_TIMEOUT: Duration = Duration::from_millis(2000);

/// What external key stores need from the environment.
#[derive(Clone, Debug)]
pub struct CustodySettings {
    /// The PKCS#11 module (`MACP_AUTH_PKCS11_MODULE`), unless a URI names
    /// its own `module-path`.
    pub pkcs11_module: Option<PathBuf>,
    /// The token user PIN (`MACP_AUTH_PKCS11_PIN`); never printed.
    pub pkcs11_pin: Option<KeyMaterial>,
    /// A file holding the PIN (`MACP_AUTH_PKCS11_PIN_FILE`), read when a key
    /// is opened. A token in use keeps the PIN it accepted: a changed PIN
    /// takes effect at the next start (see `keys::pkcs11::token`).
    #[cfg_attr(
        not(feature = "pkcs11"),
        allow(
            dead_code,
            reason = "read and checked without the feature too; only PKCS#11 uses it"
        )
    )]
    pub(crate) pkcs11_pin_file: Option<PathBuf>,
    /// How long one signature (or one KMS call at load) through an external
    /// store may take (`MACP_AUTH_SIGNING_TIMEOUT_MS`); opening a PKCS#11
    /// key may take `keys::backend::OPEN_DEADLINE_FACTOR` times this. Public
    /// for the tests that stall a key store.
    pub signing_timeout: Duration,
}

impl Default for CustodySettings {
    fn default() -> Self {
        CustodySettings {
            pkcs11_module: None,
            pkcs11_pin: None,
            pkcs11_pin_file: None,
            signing_timeout: DEFAULT_SIGNING_TIMEOUT,
        }
    }
}

impl CustodySettings {
    /// Reads only these variables from the process environment, for the
    /// commands that need no other setting.
    pub(crate) fn from_env() -> Result<Self, ConfigError> {
        let lookup = |name: &str| std::env::var_os(name);
        Self::read(&Reader::new(&lookup))
    }

    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let pkcs11_module = match r.raw(vars::PKCS11_MODULE)? {
            None => None,
            Some(raw) if raw.trim().is_empty() => {
                return Err(ConfigError::new(
                    vars::PKCS11_MODULE,
                    "MACP_AUTH_PKCS11_MODULE is set but empty: set it to the path of the PKCS#11 module (a .so library), or unset it",
                ));
            }
            Some(raw) => Some(PathBuf::from(raw)),
        };
        let (pkcs11_pin, pkcs11_pin_file) = r.inline_or_file(
            vars::PKCS11_PIN,
            vars::PKCS11_PIN_FILE,
            "the token's user PIN",
        )?;
        let millis = r.positive(
            vars::SIGNING_TIMEOUT_MS,
            DEFAULT_SIGNING_TIMEOUT.as_millis() as u64,
            60_000,
        )?;
        Ok(CustodySettings {
            pkcs11_module,
            pkcs11_pin,
            pkcs11_pin_file,
            signing_timeout: Duration::from_millis(millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn read(pairs: &[(&str, &str)]) -> Result<CustodySettings, ConfigError> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), OsString::from(*value)))
            .collect();
        let lookup = move |name: &str| map.get(name).cloned();
        CustodySettings::read(&Reader::new(&lookup))
    }

    #[test]
    fn an_empty_environment_gives_the_defaults() {
        let settings = read(&[]).unwrap();
        assert_eq!(settings.signing_timeout, Duration::from_millis(2000));
        assert!(settings.pkcs11_module.is_none() && settings.pkcs11_pin.is_none());
    }

    #[test]
    fn each_custody_variable_is_read_and_checked() {
        let settings = read(&[
            ("MACP_AUTH_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"),
            ("MACP_AUTH_PKCS11_PIN_FILE", "/run/secrets/pin"),
            ("MACP_AUTH_SIGNING_TIMEOUT_MS", "750"),
        ])
        .unwrap();
        assert_eq!(settings.signing_timeout, Duration::from_millis(750));
        assert_eq!(
            settings.pkcs11_pin_file.as_deref(),
            Some(std::path::Path::new("/run/secrets/pin"))
        );
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("MACP_AUTH_SIGNING_TIMEOUT_MS", "0")],
                "MACP_AUTH_SIGNING_TIMEOUT_MS must be a whole number from 1 to 60000",
            ),
            (
                &[
                    ("MACP_AUTH_PKCS11_PIN", "1234"),
                    ("MACP_AUTH_PKCS11_PIN_FILE", "/p"),
                ],
                "MACP_AUTH_PKCS11_PIN_FILE and MACP_AUTH_PKCS11_PIN are both set",
            ),
            (
                &[("MACP_AUTH_PKCS11_PIN", " ")],
                "MACP_AUTH_PKCS11_PIN is set but empty",
            ),
            (
                &[("MACP_AUTH_PKCS11_MODULE", "")],
                "MACP_AUTH_PKCS11_MODULE is set but empty",
            ),
        ];
        for (pairs, expected) in cases {
            let err = read(pairs).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn the_pin_never_appears_in_debug_output() {
        let settings = read(&[("MACP_AUTH_PKCS11_PIN", "s3cret-pin")]).unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
