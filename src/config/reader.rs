//! A small typed reader over a variable lookup: each method reads one
//! variable, applies one rule, and on failure names the variable and the form
//! it expects (quoting the rejected value, which is never key material: key
//! and client sources go through [`Reader::inline_or_file`], which never
//! quotes).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::{ConfigError, KeyMaterial};

/// Reads variables from a lookup function (the process environment, or a
/// map in tests).
pub(crate) struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<OsString>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<OsString>) -> Self {
        Reader { lookup }
    }

    /// The raw value, `None` when unset; non-UTF-8 is an error.
    pub(crate) fn raw(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match (self.lookup)(name) {
            None => Ok(None),
            Some(raw) => raw
                .into_string()
                .map(Some)
                .map_err(|_| ConfigError::new(name, format!("{name} is not valid UTF-8"))),
        }
    }

    /// A whole number within `range`, `default` when unset; `expected`
    /// phrases the rule for the error message.
    pub(crate) fn integer_in(
        &self,
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
        expected: &str,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.raw(name)? else {
            return Ok(default);
        };
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|value| range.contains(value))
            .ok_or_else(|| {
                ConfigError::new(name, format!("{name} must be {expected} (got {raw:?})"))
            })
    }

    /// A whole number of seconds from 0 to `max`.
    pub(crate) fn seconds(
        &self,
        name: &'static str,
        default: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let expected = format!("a whole number of seconds from 0 to {max}");
        self.integer_in(name, default, 0..=max, &expected)
    }

    /// A whole number from 1 to `max`.
    pub(crate) fn positive(
        &self,
        name: &'static str,
        default: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let expected = format!("a whole number from 1 to {max}");
        self.integer_in(name, default, 1..=max, &expected)
    }

    /// `true` or `false` (any case), `default` when unset; anything else,
    /// blank included, is refused rather than guessed at.
    pub(crate) fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.raw(name)? else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ConfigError::new(
                name,
                format!("{name} must be true or false (got {raw:?}), or unset"),
            )),
        }
    }

    /// A non-blank string, `default` when unset.
    pub(crate) fn non_empty(
        &self,
        name: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        match self.raw(name)? {
            None => Ok(default.to_owned()),
            Some(raw) if raw.trim().is_empty() => Err(ConfigError::new(
                name,
                format!("{name} must be a non-empty string"),
            )),
            Some(raw) => Ok(raw),
        }
    }

    /// An IP address to bind, brackets allowed around IPv6.
    pub(crate) fn ip(&self, name: &'static str, default: IpAddr) -> Result<IpAddr, ConfigError> {
        let Some(raw) = self.raw(name)? else {
            return Ok(default);
        };
        let trimmed = raw.trim();
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(trimmed);
        unbracketed.parse().map_err(|_| {
            ConfigError::new(
                name,
                format!(
                    "{name} must be an IP address to bind, such as 0.0.0.0, 127.0.0.1 or :: (got {raw:?})"
                ),
            )
        })
    }

    /// An `ip:port` socket address, `None` when unset.
    pub(crate) fn socket_addr(
        &self,
        name: &'static str,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(raw) = self.raw(name)? else {
            return Ok(None);
        };
        raw.trim().parse().map(Some).map_err(|_| {
            ConfigError::new(
                name,
                format!(
                    "{name} must be an IP address and port, such as 0.0.0.0:9464 or [::]:9464 (got {raw:?})"
                ),
            )
        })
    }

    /// An `http://` or `https://` base URL with a host and no query, without
    /// its trailing slash; `None` when unset.
    pub(crate) fn base_url(
        &self,
        name: &'static str,
        example: &str,
    ) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.raw(name)? else {
            return Ok(None);
        };
        let trimmed = raw.trim().trim_end_matches('/');
        let valid = trimmed.parse::<axum::http::Uri>().ok().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|host| !host.is_empty())
                && uri.query().is_none()
                && !trimmed.contains('#')
        });
        if valid {
            Ok(Some(trimmed.to_owned()))
        } else {
            Err(ConfigError::new(
                name,
                format!(
                    "{name} must be an http:// or https:// URL with a host and no query, such as {example} (got {raw:?})"
                ),
            ))
        }
    }

    /// A source given inline or as a file path, never both. Set-but-empty is
    /// refused rather than read as unset: an empty secret mount must not
    /// silently turn a deployment ephemeral or unauthenticated. `what`
    /// describes the content for the messages; the content is never quoted.
    pub(crate) fn inline_or_file(
        &self,
        inline_var: &'static str,
        file_var: &'static str,
        what: &str,
    ) -> Result<(Option<KeyMaterial>, Option<PathBuf>), ConfigError> {
        let empty = |name: &'static str, form: String| {
            ConfigError::new(
                name,
                format!("{name} is set but empty: set it to {form}, or unset it"),
            )
        };
        let inline = match self.raw(inline_var)? {
            Some(raw) if raw.trim().is_empty() => return Err(empty(inline_var, what.to_owned())),
            value => value.map(KeyMaterial::new),
        };
        let file = match self.raw(file_var)? {
            Some(raw) if raw.trim().is_empty() => {
                return Err(empty(
                    file_var,
                    format!("the path of a file holding {what}"),
                ));
            }
            Some(_) if inline.is_some() => {
                return Err(ConfigError::new(
                    file_var,
                    format!("{file_var} and {inline_var} are both set: set only one"),
                ));
            }
            value => value.map(PathBuf::from),
        };
        Ok((inline, file))
    }
}
