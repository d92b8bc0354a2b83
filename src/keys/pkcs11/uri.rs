//! RFC 7512 PKCS#11 URIs: which token, which key, and optionally which module
//! and which PIN.
//!
//! The URI is the operator's whole description of an HSM key, so it is read
//! strictly: an attribute this service does not understand is an error, not
//! ignored, because ignoring `tokne=prod` would quietly widen the match to
//! every token of the module. A URI must name the key (`object` and/or `id`);
//! `type`, when given, must be `private`. Values are percent-decoded; `id`
//! is raw bytes, everything else UTF-8.
//!
//! A URI can carry a PIN (`pin-value`) or say where one is (`pin-source`), so
//! its `Debug` form and every message about it leave the PIN out. Both belong
//! in the query: in the path they are refused, and so is a `&` in a path
//! value (`object=k&pin-value=…` is a query typed into the path), each with
//! a message that quotes no value.

use std::fmt;
use std::path::PathBuf;

use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;

use crate::keys::custody::BackendError;

/// The longest URI accepted; real ones are a few hundred bytes.
const MAX_URI_LEN: usize = 4096;

/// Where a token PIN comes from.
pub(crate) enum PinSpec {
    /// The PIN itself (`pin-value`, `MACP_AUTH_PKCS11_PIN`).
    Value(AuthPin),
    /// A file holding it (`pin-source`, `MACP_AUTH_PKCS11_PIN_FILE`).
    File(PathBuf),
}

impl fmt::Debug for PinSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSpec::Value(_) => f.write_str("PinSpec::Value(<redacted>)"),
            PinSpec::File(path) => f.debug_tuple("PinSpec::File").field(path).finish(),
        }
    }
}

impl Clone for PinSpec {
    fn clone(&self) -> Self {
        match self {
            PinSpec::Value(pin) => PinSpec::Value(AuthPin::from(pin.expose_secret().to_owned())),
            PinSpec::File(path) => PinSpec::File(path.clone()),
        }
    }
}

/// A parsed `pkcs11:` URI.
#[derive(Clone, Default)]
pub(crate) struct Pkcs11Uri {
    pub(crate) token: Option<String>,
    pub(crate) manufacturer: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) slot_id: Option<u64>,
    pub(crate) slot_description: Option<String>,
    pub(crate) slot_manufacturer: Option<String>,
    pub(crate) object: Option<String>,
    pub(crate) id: Option<Vec<u8>>,
    pub(crate) module_path: Option<PathBuf>,
    pub(crate) pin: Option<PinSpec>,
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({})", self.describe())?;
        if let Some(pin) = &self.pin {
            write!(f, " {pin:?}")?;
        }
        Ok(())
    }
}

impl Pkcs11Uri {
    /// Parses `text` as an RFC 7512 URI naming one private key.
    pub(crate) fn parse(text: &str) -> Result<Self, BackendError> {
        let bad = |reason: &str| BackendError::BadReference(reason.to_owned());
        if text.len() > MAX_URI_LEN {
            return Err(bad("the PKCS#11 URI is longer than 4096 bytes"));
        }
        let rest = text
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &text[7..])
            .ok_or_else(|| bad("a PKCS#11 reference must start with \"pkcs11:\""))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Pkcs11Uri::default();
        let mut seen = Vec::new();
        for (separator, part) in [(';', path), ('&', query)] {
            for attribute in part
                .split(separator)
                .filter(|attribute| !attribute.is_empty())
            {
                let (name, value) = attribute.split_once('=').ok_or_else(|| {
                    bad("every attribute of the PKCS#11 URI must have the form name=value")
                })?;
                let name = name.to_ascii_lowercase();
                if separator == ';' && value.contains('&') {
                    return Err(BackendError::BadReference(format!(
                        "the value of path attribute {name:?} holds \"&\", which separates query attributes (after \"?\"); write a literal & as %26"
                    )));
                }
                if seen.contains(&name) {
                    return Err(BackendError::BadReference(format!(
                        "the PKCS#11 URI names attribute {name:?} twice"
                    )));
                }
                uri.set(separator == ';', &name, value)?;
                seen.push(name);
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad(
                "the PKCS#11 URI must name the key with object=<label> and/or id=<bytes>",
            ));
        }
        Ok(uri)
    }

    fn set(&mut self, in_path: bool, name: &str, value: &str) -> Result<(), BackendError> {
        let text = || decode_text(name, value);
        match (in_path, name) {
            (true, "token") => self.token = Some(text()?),
            (true, "manufacturer") => self.manufacturer = Some(text()?),
            (true, "serial") => self.serial = Some(text()?),
            (true, "model") => self.model = Some(text()?),
            (true, "slot-description") => self.slot_description = Some(text()?),
            (true, "slot-manufacturer") => self.slot_manufacturer = Some(text()?),
            (true, "object") => self.object = Some(text()?),
            (true, "id") => self.id = Some(percent_decode(name, value)?),
            (true, "slot-id") => {
                self.slot_id = Some(text()?.parse().map_err(|_| {
                    BackendError::BadReference("slot-id must be a decimal number".into())
                })?);
            }
            (true, "type") => {
                if text()? != "private" {
                    return Err(BackendError::BadReference(
                        "type must be \"private\": the service signs with a private key".into(),
                    ));
                }
            }
            (true, "pin-value" | "pin-source") => {
                return Err(BackendError::BadReference(format!(
                    "{name} belongs in the query, after \"?\" (pkcs11:…?{name}=…), not in the path"
                )));
            }
            (false, "module-path") => self.module_path = Some(PathBuf::from(text()?)),
            (false, "pin-value") => {
                let pin = String::from_utf8(percent_decode(name, value)?)
                    .map_err(|_| BackendError::BadReference("pin-value is not UTF-8".into()))?;
                self.set_pin(PinSpec::Value(AuthPin::from(pin)))?;
            }
            (false, "pin-source") => self.set_pin(PinSpec::File(pin_source(&text()?)?))?,
            (false, "module-name") => {
                return Err(BackendError::BadReference(
                    "module-name is not supported; give the library's path in module-path".into(),
                ));
            }
            (_, other) => {
                return Err(BackendError::BadReference(format!(
                    "unsupported {} attribute {:?}",
                    if in_path { "path" } else { "query" },
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
        Ok(())
    }

    fn set_pin(&mut self, pin: PinSpec) -> Result<(), BackendError> {
        if self.pin.is_some() {
            return Err(BackendError::BadReference(
                "give either pin-value or pin-source, not both".into(),
            ));
        }
        self.pin = Some(pin);
        Ok(())
    }

    /// The URI's key and token attributes, for messages: never the PIN.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        let texts = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("model", &self.model),
            ("slot-description", &self.slot_description),
            ("slot-manufacturer", &self.slot_manufacturer),
            ("object", &self.object),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                parts.push(format!("{name}={value:?}"));
            }
        }
        if let Some(slot) = self.slot_id {
            parts.push(format!("slot-id={slot}"));
        }
        if let Some(id) = &self.id {
            let hex: String = id.iter().map(|byte| format!("{byte:02x}")).collect();
            parts.push(format!("id={hex}"));
        }
        parts.join(" ")
    }
}

/// A `pin-source` value: `file:` URIs or plain paths. RFC 7512 leaves the
/// form to the implementation; commands (`|prog`) are refused.
fn pin_source(value: &str) -> Result<PathBuf, BackendError> {
    let path = if let Some(rest) = value.strip_prefix("file://") {
        rest
    } else if let Some(rest) = value.strip_prefix("file:") {
        rest
    } else if value.starts_with('|') || value.contains("://") {
        return Err(BackendError::BadReference(
            "pin-source must be a file path or a file: URI".into(),
        ));
    } else {
        value
    };
    if path.is_empty() {
        return Err(BackendError::BadReference("pin-source is empty".into()));
    }
    Ok(PathBuf::from(path))
}

fn decode_text(name: &str, value: &str) -> Result<String, BackendError> {
    String::from_utf8(percent_decode(name, value)?)
        .map_err(|_| BackendError::BadReference(format!("{name} is not UTF-8 once decoded")))
}

/// Decodes `%XX` escapes; any other `%` is an error naming the attribute
/// (never its value, which may be a PIN).
fn percent_decode(name: &str, value: &str) -> Result<Vec<u8>, BackendError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let byte = bytes
                .get(index + 1..index + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    BackendError::BadReference(format!("{name} has a malformed %-escape"))
                })?;
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_names_token_and_object() {
        let uri = Pkcs11Uri::parse("pkcs11:token=macp;object=signing-1").unwrap();
        assert_eq!(uri.token.as_deref(), Some("macp"));
        assert_eq!(uri.object.as_deref(), Some("signing-1"));
        assert_eq!(uri.id, None);
        assert!(uri.pin.is_none() && uri.module_path.is_none());
    }

    #[test]
    fn every_supported_attribute_is_read_and_decoded() {
        let uri = Pkcs11Uri::parse(concat!(
            "PKCS11:token=My%20Token;manufacturer=SoftHSM%20project;serial=0123;model=SoftHSM%20v2;",
            "slot-id=7;slot-description=d;slot-manufacturer=m;object=k%3b1;id=%01%ff;type=private",
            "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin"
        ))
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("My Token"));
        assert_eq!(uri.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(uri.serial.as_deref(), Some("0123"));
        assert_eq!(uri.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(uri.slot_id, Some(7));
        assert_eq!(uri.slot_description.as_deref(), Some("d"));
        assert_eq!(uri.slot_manufacturer.as_deref(), Some("m"));
        assert_eq!(uri.object.as_deref(), Some("k;1"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xff][..]));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert!(matches!(&uri.pin, Some(PinSpec::File(path)) if path.as_os_str() == "/run/pin"));
    }

    #[test]
    fn pin_sources_are_file_uris_or_paths() {
        let cases = [
            ("pin-source=file:///etc/pin", Some("/etc/pin")),
            ("pin-source=file:/etc/pin", Some("/etc/pin")),
            ("pin-source=/etc/pin", Some("/etc/pin")),
            ("pin-source=relative/pin", Some("relative/pin")),
            ("pin-source=%7Cgetpin", None),
            ("pin-source=https://example.com/pin", None),
            ("pin-source=", None),
        ];
        for (query, expected) in cases {
            let parsed = Pkcs11Uri::parse(&format!("pkcs11:object=k?{query}"));
            match expected {
                Some(path) => assert!(
                    matches!(&parsed.as_ref().unwrap().pin, Some(PinSpec::File(p)) if p.as_os_str() == path),
                    "{query}"
                ),
                None => assert!(parsed.is_err(), "{query}"),
            }
        }
    }

    #[test]
    fn malformed_uris_are_refused_with_a_reason() {
        let cases = [
            ("token=macp;object=k", "must start with \"pkcs11:\""),
            ("pkcs11:token=macp", "must name the key"),
            (
                "pkcs11:object=a;object=b",
                "names attribute \"object\" twice",
            ),
            (
                "pkcs11:object=k;tokne=prod",
                "unsupported path attribute \"tokne\"",
            ),
            (
                "pkcs11:object=k?colour=red",
                "unsupported query attribute \"colour\"",
            ),
            ("pkcs11:object=k;type=public", "type must be \"private\""),
            (
                "pkcs11:object=k;slot-id=x",
                "slot-id must be a decimal number",
            ),
            ("pkcs11:object=k%zz", "object has a malformed %-escape"),
            ("pkcs11:object", "must have the form name=value"),
            (
                "pkcs11:object=k?module-name=softhsm2",
                "module-name is not supported",
            ),
            (
                "pkcs11:object=k?pin-value=1&pin-source=/p",
                "either pin-value or pin-source",
            ),
            (
                "pkcs11:object=k;module-path=/lib/x.so",
                "unsupported path attribute",
            ),
            (
                "pkcs11:token=t;object=k;pin-value=1234",
                "pin-value belongs in the query, after \"?\" (pkcs11:…?pin-value=…), not in the path",
            ),
            (
                "pkcs11:object=k;PIN-SOURCE=/run/1234",
                "pin-source belongs in the query",
            ),
            (
                "pkcs11:object=k&pin-value=1234",
                "the value of path attribute \"object\" holds \"&\", which separates query attributes (after \"?\"); write a literal & as %26",
            ),
        ];
        for (text, expected) in cases {
            let err = Pkcs11Uri::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("1234"), "{text}: {err}");
        }
    }

    #[test]
    fn the_pin_never_appears_in_debug_output_or_descriptions() {
        let uri = Pkcs11Uri::parse("pkcs11:token=t;object=k?pin-value=s3cret-%31234").unwrap();
        let PinSpec::Value(pin) = uri.pin.as_ref().unwrap() else {
            panic!("pin-value is a value");
        };
        assert_eq!(pin.expose_secret(), "s3cret-1234");
        for shown in [
            format!("{uri:?}"),
            uri.describe(),
            format!("{:?}", uri.clone()),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert_eq!(uri.describe(), "token=\"t\" object=\"k\"");
        let err = Pkcs11Uri::parse("pkcs11:object=k?pin-value=s3cret%zz").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
