//! Service configuration, read from the environment exactly once at startup.
//!
//! This is the only module that looks at environment variables. Every value is
//! validated here, so the rest of the service works with typed, known-good
//! settings, and a bad value stops startup with one line that names the
//! variable and the form it expects. The signing key's contents are never part
//! of such a line.

use crate::keys::SigningAlg;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Variable names, kept together so error messages and docs cannot drift.
pub(crate) mod vars {
    pub const PORT: &str = "PORT";
    pub const HOST: &str = "HOST";
    pub const ISSUER: &str = "MACP_AUTH_ISSUER";
    pub const AUDIENCE: &str = "MACP_AUTH_AUDIENCE";
    pub const MAX_TTL: &str = "MACP_AUTH_MAX_TTL_SECONDS";
    pub const DEFAULT_TTL: &str = "MACP_AUTH_DEFAULT_TTL_SECONDS";
    pub const SIGNING_ALG: &str = "MACP_AUTH_SIGNING_ALG";
    pub const SIGNING_KEY_JSON: &str = "MACP_AUTH_SIGNING_KEY_JSON";
    pub const SIGNING_KEY_FILE: &str = "MACP_AUTH_SIGNING_KEY_FILE";
    pub const KEY_PREPUBLISH: &str = "MACP_AUTH_KEY_PREPUBLISH_SECONDS";
    pub const KEY_POLL: &str = "MACP_AUTH_KEY_POLL_SECONDS";
    pub const JWKS_MAX_AGE: &str = "MACP_AUTH_JWKS_MAX_AGE_SECONDS";
    pub const PUBLIC_URL: &str = "MACP_AUTH_PUBLIC_URL";
    pub const CLIENTS_FILE: &str = "MACP_AUTH_CLIENTS_FILE";
    pub const CLIENTS_JSON: &str = "MACP_AUTH_CLIENTS_JSON";
    pub const RATE_LIMIT_PER_SECOND: &str = "MACP_AUTH_RATE_LIMIT_PER_SECOND";
    pub const RATE_LIMIT_BURST: &str = "MACP_AUTH_RATE_LIMIT_BURST";
    pub const LOG_FORMAT: &str = "MACP_AUTH_LOG_FORMAT";
    pub const METRICS_ADDR: &str = "MACP_AUTH_METRICS_ADDR";
    pub const SHUTDOWN_DELAY: &str = "MACP_AUTH_SHUTDOWN_DELAY_SECONDS";
    pub const REQUEST_TIMEOUT: &str = "MACP_AUTH_REQUEST_TIMEOUT_SECONDS";
    pub const HEADER_READ_TIMEOUT: &str = "MACP_AUTH_HEADER_READ_TIMEOUT_SECONDS";
    pub const MAX_CONNECTIONS: &str = "MACP_AUTH_MAX_CONNECTIONS";
    pub const RUST_LOG: &str = "RUST_LOG";
}

/// Largest TTL any setting may name: about 136 years. Anything above it is a
/// typo, and keeping `iat + ttl` far from `u64::MAX` rules out overflow.
pub const TTL_LIMIT_SECONDS: u64 = u32::MAX as u64;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// A token bucket per minting client (or peer address when unauthenticated).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained mints per second.
    pub per_second: f64,
    /// Mints allowed at once after a quiet spell.
    pub burst: u32,
}

/// A string that holds private key material: it never prints its contents.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(String);

impl KeyMaterial {
    /// Wraps key material read from a secret.
    pub fn new(value: String) -> Self {
        KeyMaterial(value)
    }

    /// The material itself, for the key parser only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([redacted])")
    }
}

/// Validated service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind (`HOST`).
    pub host: IpAddr,
    /// Port to bind (`PORT`).
    pub port: u16,
    /// The `iss` claim of every token (`MACP_AUTH_ISSUER`).
    pub issuer: String,
    /// The `aud` claim of every token (`MACP_AUTH_AUDIENCE`).
    pub audience: String,
    /// Upper bound on any token's lifetime, in seconds (`MACP_AUTH_MAX_TTL_SECONDS`).
    pub max_ttl_seconds: u64,
    /// Lifetime when a request names none, in seconds (`MACP_AUTH_DEFAULT_TTL_SECONDS`).
    pub default_ttl_seconds: u64,
    /// Signing algorithm (`MACP_AUTH_SIGNING_ALG`).
    pub signing_alg: SigningAlg,
    /// Pinned private key(s) (`MACP_AUTH_SIGNING_KEY_JSON`): a JWK, a JWK
    /// Set or PEM. With no file either, the key is ephemeral.
    pub signing_key_json: Option<KeyMaterial>,
    /// A file holding the same formats (`MACP_AUTH_SIGNING_KEY_FILE`),
    /// reloaded on SIGHUP and when it changes.
    pub signing_key_file: Option<PathBuf>,
    /// How long before its activation a key should be published
    /// (`MACP_AUTH_KEY_PREPUBLISH_SECONDS`); sooner activations are warned about.
    pub key_prepublish_seconds: u64,
    /// How often the key file is checked for changes
    /// (`MACP_AUTH_KEY_POLL_SECONDS`); `None` when set to 0.
    pub key_poll_interval: Option<Duration>,
    /// Upper bound on the JWKS `Cache-Control: max-age`
    /// (`MACP_AUTH_JWKS_MAX_AGE_SECONDS`).
    pub jwks_max_age_seconds: u64,
    /// The base URL verifiers reach this service at (`MACP_AUTH_PUBLIC_URL`),
    /// without a trailing slash; discovery falls back to the request's Host.
    pub public_url: Option<String>,
    /// The minting-client list (`MACP_AUTH_CLIENTS_JSON`); with no file
    /// either, minting is unauthenticated.
    pub clients_json: Option<KeyMaterial>,
    /// A file holding the client list (`MACP_AUTH_CLIENTS_FILE`), reloaded
    /// with the key ring.
    pub clients_file: Option<PathBuf>,
    /// Per-client mint rate limit (`MACP_AUTH_RATE_LIMIT_PER_SECOND`,
    /// `MACP_AUTH_RATE_LIMIT_BURST`); `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// Log format (`MACP_AUTH_LOG_FORMAT`: `text` or `json`).
    pub log_format: LogFormat,
    /// A separate address for `/metrics` (`MACP_AUTH_METRICS_ADDR`); when
    /// unset, `/metrics` is served on the main port.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long the listener keeps serving after SIGTERM with readiness
    /// already failing (`MACP_AUTH_SHUTDOWN_DELAY_SECONDS`), so load balancers
    /// deregister the instance before it stops accepting.
    pub shutdown_delay: Duration,
    /// Longest a request may take, body included (`MACP_AUTH_REQUEST_TIMEOUT_SECONDS`).
    pub request_timeout: Duration,
    /// Longest a client may take to send request headers
    /// (`MACP_AUTH_HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout: Duration,
    /// Most connections served at once (`MACP_AUTH_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// The tracing filter (`RUST_LOG`), already checked to parse.
    pub log_filter: String,
    /// How long shutdown waits for in-flight requests before giving up.
    pub drain_timeout: Duration,
}

impl Default for Config {
    /// The configuration of an empty environment.
    fn default() -> Self {
        Config {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 3200,
            issuer: "macp-auth-service".to_owned(),
            audience: "macp-runtime".to_owned(),
            max_ttl_seconds: 3600,
            default_ttl_seconds: 300,
            signing_alg: SigningAlg::Rs256,
            signing_key_json: None,
            signing_key_file: None,
            key_prepublish_seconds: 600,
            key_poll_interval: Some(Duration::from_secs(10)),
            jwks_max_age_seconds: 300,
            public_url: None,
            clients_json: None,
            clients_file: None,
            rate_limit: None,
            log_format: LogFormat::Text,
            metrics_addr: None,
            shutdown_delay: Duration::ZERO,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(5),
            max_connections: 4096,
            log_filter: "info".to_owned(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// A configuration value that cannot be used. Its message names the variable
/// and the expected form; it never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    message: String,
}

impl ConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            variable,
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads and validates settings from any source of variables; tests pass
    /// a map here instead of mutating the process environment.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<OsString>,
    {
        let get = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(name) {
                None => Ok(None),
                Some(raw) => raw
                    .into_string()
                    .map(Some)
                    .map_err(|_| ConfigError::new(name, format!("{name} is not valid UTF-8"))),
            }
        };
        let defaults = Config::default();

        let port = match get(vars::PORT)? {
            None => defaults.port,
            Some(raw) => raw
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        vars::PORT,
                        format!("PORT must be an integer from 1 to 65535 (got {raw:?})"),
                    )
                })?,
        };

        let host = match get(vars::HOST)? {
            None => defaults.host,
            Some(raw) => parse_host(&raw).ok_or_else(|| {
                ConfigError::new(
                    vars::HOST,
                    format!(
                        "HOST must be an IP address to bind, such as 0.0.0.0, 127.0.0.1 or :: (got {raw:?})"
                    ),
                )
            })?,
        };

        let issuer = non_empty(vars::ISSUER, get(vars::ISSUER)?, defaults.issuer)?;
        let audience = non_empty(vars::AUDIENCE, get(vars::AUDIENCE)?, defaults.audience)?;
        let max_ttl_seconds = ttl(vars::MAX_TTL, get(vars::MAX_TTL)?, defaults.max_ttl_seconds)?;
        let default_ttl_seconds = ttl(
            vars::DEFAULT_TTL,
            get(vars::DEFAULT_TTL)?,
            defaults.default_ttl_seconds,
        )?;

        let signing_alg = match get(vars::SIGNING_ALG)? {
            None => defaults.signing_alg,
            Some(raw) => SigningAlg::parse(raw.trim()).ok_or_else(|| {
                ConfigError::new(
                    vars::SIGNING_ALG,
                    "MACP_AUTH_SIGNING_ALG must be RS256 or ES256",
                )
            })?,
        };

        let (signing_key_json, signing_key_file) = inline_or_file(
            (vars::SIGNING_KEY_JSON, get(vars::SIGNING_KEY_JSON)?),
            (vars::SIGNING_KEY_FILE, get(vars::SIGNING_KEY_FILE)?),
            "a private key (JWK, JWK Set or PEM)",
        )?;
        let key_prepublish_seconds = seconds(
            vars::KEY_PREPUBLISH,
            get(vars::KEY_PREPUBLISH)?,
            defaults.key_prepublish_seconds,
            TTL_LIMIT_SECONDS,
        )?;
        let key_poll_interval = match get(vars::KEY_POLL)? {
            None => defaults.key_poll_interval,
            raw => match seconds(vars::KEY_POLL, raw, 0, 86_400)? {
                0 => None,
                poll => Some(Duration::from_secs(poll)),
            },
        };
        let jwks_max_age_seconds = seconds(
            vars::JWKS_MAX_AGE,
            get(vars::JWKS_MAX_AGE)?,
            defaults.jwks_max_age_seconds,
            86_400,
        )?;
        let public_url = match get(vars::PUBLIC_URL)? {
            None => None,
            Some(raw) => Some(parse_public_url(&raw).ok_or_else(|| {
                ConfigError::new(
                    vars::PUBLIC_URL,
                    format!(
                        "MACP_AUTH_PUBLIC_URL must be an http:// or https:// URL with a host and no query, such as https://auth.example.com (got {raw:?})"
                    ),
                )
            })?),
        };

        let (clients_json, clients_file) = inline_or_file(
            (vars::CLIENTS_JSON, get(vars::CLIENTS_JSON)?),
            (vars::CLIENTS_FILE, get(vars::CLIENTS_FILE)?),
            "a JSON client list",
        )?;
        let rate_limit = match (
            get(vars::RATE_LIMIT_PER_SECOND)?,
            get(vars::RATE_LIMIT_BURST)?,
        ) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    vars::RATE_LIMIT_BURST,
                    "MACP_AUTH_RATE_LIMIT_BURST needs MACP_AUTH_RATE_LIMIT_PER_SECOND to be set too",
                ));
            }
            (Some(rate), burst) => {
                let per_second = rate
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|rate| rate.is_finite() && *rate > 0.0 && *rate <= 1e6)
                    .ok_or_else(|| {
                        ConfigError::new(
                            vars::RATE_LIMIT_PER_SECOND,
                            format!(
                                "MACP_AUTH_RATE_LIMIT_PER_SECOND must be a positive number of mints per second, at most 1000000 (got {rate:?})"
                            ),
                        )
                    })?;
                let burst = match burst {
                    None => (per_second.ceil() as u32).max(1),
                    Some(raw) => raw
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|burst| *burst > 0)
                        .ok_or_else(|| {
                            ConfigError::new(
                                vars::RATE_LIMIT_BURST,
                                format!("MACP_AUTH_RATE_LIMIT_BURST must be a positive integer (got {raw:?})"),
                            )
                        })?,
                };
                Some(RateLimit { per_second, burst })
            }
        };
        let log_format = match get(vars::LOG_FORMAT)?.as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    vars::LOG_FORMAT,
                    format!("MACP_AUTH_LOG_FORMAT must be text or json (got {other:?})"),
                ));
            }
        };
        let metrics_addr = match get(vars::METRICS_ADDR)? {
            None => None,
            Some(raw) => Some(raw.trim().parse().map_err(|_| {
                ConfigError::new(
                    vars::METRICS_ADDR,
                    format!(
                        "MACP_AUTH_METRICS_ADDR must be an IP address and port, such as 0.0.0.0:9464 or [::]:9464 (got {raw:?})"
                    ),
                )
            })?),
        };
        let shutdown_delay = Duration::from_secs(seconds(
            vars::SHUTDOWN_DELAY,
            get(vars::SHUTDOWN_DELAY)?,
            0,
            300,
        )?);
        let request_timeout = Duration::from_secs(positive(
            vars::REQUEST_TIMEOUT,
            get(vars::REQUEST_TIMEOUT)?,
            defaults.request_timeout.as_secs(),
            3600,
        )?);
        let header_read_timeout = Duration::from_secs(positive(
            vars::HEADER_READ_TIMEOUT,
            get(vars::HEADER_READ_TIMEOUT)?,
            defaults.header_read_timeout.as_secs(),
            3600,
        )?);
        let max_connections = positive(
            vars::MAX_CONNECTIONS,
            get(vars::MAX_CONNECTIONS)?,
            defaults.max_connections as u64,
            1_000_000,
        )? as usize;

        let log_filter = match get(vars::RUST_LOG)? {
            None => defaults.log_filter,
            Some(raw) => {
                tracing_subscriber::EnvFilter::builder()
                    .parse(&raw)
                    .map_err(|err| {
                        ConfigError::new(
                            vars::RUST_LOG,
                            format!(
                                "RUST_LOG must be a tracing filter such as info or macp_auth_service=debug ({err})"
                            ),
                        )
                    })?;
                raw
            }
        };

        Ok(Config {
            host,
            port,
            issuer,
            audience,
            max_ttl_seconds,
            default_ttl_seconds,
            signing_alg,
            signing_key_json,
            signing_key_file,
            key_prepublish_seconds,
            key_poll_interval,
            jwks_max_age_seconds,
            public_url,
            clients_json,
            clients_file,
            rate_limit,
            log_format,
            metrics_addr,
            shutdown_delay,
            request_timeout,
            header_read_timeout,
            max_connections,
            log_filter,
            drain_timeout: defaults.drain_timeout,
        })
    }

    /// The lifetime a request without `ttl_seconds` gets: the default, held to
    /// the maximum.
    pub fn effective_default_ttl(&self) -> u64 {
        self.default_ttl_seconds.min(self.max_ttl_seconds)
    }

    /// `host:port` as operators and clients should write it (IPv6 bracketed).
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.host, self.port)
    }

    /// Base URL to print in the startup log: a wildcard bind is shown as
    /// `localhost`, since `0.0.0.0` is not an address a client can reach.
    pub fn display_base_url(&self) -> String {
        let host = if self.host.is_unspecified() {
            "localhost".to_owned()
        } else {
            match self.host {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            }
        };
        format!("http://{host}:{}", self.port)
    }
}

/// A source given inline (`inline`) or as a file path (`file`), never both.
/// Set-but-empty is refused rather than read as unset: an empty secret mount
/// must not silently turn a deployment ephemeral or unauthenticated.
fn inline_or_file(
    inline: (&'static str, Option<String>),
    file: (&'static str, Option<String>),
    what: &str,
) -> Result<(Option<KeyMaterial>, Option<PathBuf>), ConfigError> {
    let (inline_var, inline_value) = inline;
    let (file_var, file_value) = file;
    let empty = |name: &'static str, form: String| {
        ConfigError::new(
            name,
            format!("{name} is set but empty: set it to {form}, or unset it"),
        )
    };
    let inline = match inline_value {
        Some(raw) if raw.trim().is_empty() => return Err(empty(inline_var, what.to_owned())),
        value => value.map(KeyMaterial::new),
    };
    let file = match file_value {
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

fn parse_public_url(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let uri: axum::http::Uri = trimmed.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let has_host = uri.host().is_some_and(|host| !host.is_empty());
    let no_query = uri.query().is_none() && !trimmed.contains('#');
    (scheme_ok && has_host && no_query).then(|| trimmed.to_owned())
}

/// A whole number within `range`, `default` when unset; `expected` phrases
/// the rule for the error message.
fn integer_in(
    name: &'static str,
    value: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    expected: &str,
) -> Result<u64, ConfigError> {
    let Some(raw) = value else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|value| range.contains(value))
        .ok_or_else(|| ConfigError::new(name, format!("{name} must be {expected} (got {raw:?})")))
}

/// A whole number of seconds from 0 to `max`.
fn seconds(
    name: &'static str,
    value: Option<String>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let expected = format!("a whole number of seconds from 0 to {max}");
    integer_in(name, value, default, 0..=max, &expected)
}

/// A whole number from 1 to `max`.
fn positive(
    name: &'static str,
    value: Option<String>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    integer_in(
        name,
        value,
        default,
        1..=max,
        &format!("a whole number from 1 to {max}"),
    )
}

fn parse_host(raw: &str) -> Option<IpAddr> {
    let trimmed = raw.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(trimmed);
    unbracketed.parse().ok()
}

fn non_empty(
    name: &'static str,
    value: Option<String>,
    default: String,
) -> Result<String, ConfigError> {
    match value {
        None => Ok(default),
        Some(raw) if raw.trim().is_empty() => Err(ConfigError::new(
            name,
            format!("{name} must be a non-empty string"),
        )),
        Some(raw) => Ok(raw),
    }
}

fn ttl(name: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    let expected = format!("a positive integer number of seconds, at most {TTL_LIMIT_SECONDS}");
    integer_in(name, value, default, 1..=TTL_LIMIT_SECONDS, &expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(*v)))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let config = load(&[]).unwrap();
        assert_eq!(config.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(config.port, 3200);
        assert_eq!(config.issuer, "macp-auth-service");
        assert_eq!(config.audience, "macp-runtime");
        assert_eq!(config.max_ttl_seconds, 3600);
        assert_eq!(config.default_ttl_seconds, 300);
        assert_eq!(config.signing_alg, SigningAlg::Rs256);
        assert!(config.signing_key_json.is_none());
        assert_eq!(config.log_filter, "info");
        assert_eq!(config.drain_timeout, Duration::from_secs(10));
        assert!(config.signing_key_file.is_none());
        assert_eq!(config.key_prepublish_seconds, 600);
        assert_eq!(config.key_poll_interval, Some(Duration::from_secs(10)));
        assert_eq!(config.jwks_max_age_seconds, 300);
        assert!(config.public_url.is_none());
        assert!(config.clients_json.is_none() && config.clients_file.is_none());
        assert_eq!(config.rate_limit, None);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.metrics_addr, None);
        assert_eq!(config.shutdown_delay, Duration::ZERO);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.max_connections, 4096);
    }

    #[test]
    fn every_variable_overrides_its_default() {
        let config = load(&[
            ("PORT", "8080"),
            ("HOST", "127.0.0.1"),
            ("MACP_AUTH_ISSUER", "auth.example.com"),
            ("MACP_AUTH_AUDIENCE", "runtime.example.com"),
            ("MACP_AUTH_MAX_TTL_SECONDS", "7200"),
            ("MACP_AUTH_DEFAULT_TTL_SECONDS", "60"),
            ("MACP_AUTH_SIGNING_ALG", "ES256"),
            ("MACP_AUTH_SIGNING_KEY_JSON", "{\"kty\":\"EC\"}"),
            ("RUST_LOG", "macp_auth_service=debug,warn"),
            ("MACP_AUTH_KEY_PREPUBLISH_SECONDS", "900"),
            ("MACP_AUTH_KEY_POLL_SECONDS", "0"),
            ("MACP_AUTH_JWKS_MAX_AGE_SECONDS", "60"),
            ("MACP_AUTH_PUBLIC_URL", "https://auth.example.com/"),
            ("MACP_AUTH_CLIENTS_JSON", "[]"),
            ("MACP_AUTH_RATE_LIMIT_PER_SECOND", "2.5"),
            ("MACP_AUTH_RATE_LIMIT_BURST", "10"),
            ("MACP_AUTH_LOG_FORMAT", "json"),
            ("MACP_AUTH_METRICS_ADDR", "127.0.0.1:9464"),
            ("MACP_AUTH_SHUTDOWN_DELAY_SECONDS", "5"),
            ("MACP_AUTH_REQUEST_TIMEOUT_SECONDS", "20"),
            ("MACP_AUTH_HEADER_READ_TIMEOUT_SECONDS", "2"),
            ("MACP_AUTH_MAX_CONNECTIONS", "100"),
        ])
        .unwrap();
        assert_eq!(
            config.clients_json.as_ref().map(KeyMaterial::expose),
            Some("[]")
        );
        assert_eq!(
            config.rate_limit,
            Some(RateLimit {
                per_second: 2.5,
                burst: 10
            })
        );
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.shutdown_delay, Duration::from_secs(5));
        assert_eq!(config.request_timeout, Duration::from_secs(20));
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.max_connections, 100);
        assert_eq!(config.key_prepublish_seconds, 900);
        assert_eq!(config.key_poll_interval, None);
        assert_eq!(config.jwks_max_age_seconds, 60);
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(config.port, 8080);
        assert_eq!(config.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.issuer, "auth.example.com");
        assert_eq!(config.audience, "runtime.example.com");
        assert_eq!(config.max_ttl_seconds, 7200);
        assert_eq!(config.default_ttl_seconds, 60);
        assert_eq!(config.signing_alg, SigningAlg::Es256);
        assert_eq!(
            config.signing_key_json.as_ref().map(KeyMaterial::expose),
            Some("{\"kty\":\"EC\"}")
        );
        assert_eq!(config.log_filter, "macp_auth_service=debug,warn");
    }

    #[test]
    fn ipv6_hosts_are_accepted_with_or_without_brackets() {
        for raw in ["::", "[::1]", "::1"] {
            let config = load(&[("HOST", raw)]).unwrap();
            assert!(matches!(config.host, IpAddr::V6(_)), "{raw}");
        }
        let config = load(&[("HOST", "::1"), ("PORT", "9000")]).unwrap();
        assert_eq!(config.host, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(config.display_base_url(), "http://[::1]:9000");
    }

    #[test]
    fn a_wildcard_bind_is_shown_as_localhost() {
        assert_eq!(
            load(&[]).unwrap().display_base_url(),
            "http://localhost:3200"
        );
        assert_eq!(
            load(&[("HOST", "10.1.2.3")]).unwrap().display_base_url(),
            "http://10.1.2.3:3200"
        );
    }

    #[test]
    fn every_invalid_value_is_refused_with_a_message_naming_its_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("PORT", "abc", "PORT must be an integer from 1 to 65535"),
            ("PORT", "0", "PORT must be an integer from 1 to 65535"),
            ("PORT", "65536", "PORT must be an integer from 1 to 65535"),
            ("PORT", "-1", "PORT must be an integer from 1 to 65535"),
            ("PORT", "80.5", "PORT must be an integer from 1 to 65535"),
            ("PORT", "", "PORT must be an integer from 1 to 65535"),
            ("HOST", "localhost", "HOST must be an IP address"),
            ("HOST", "300.1.1.1", "HOST must be an IP address"),
            ("HOST", "", "HOST must be an IP address"),
            (
                "MACP_AUTH_ISSUER",
                "",
                "MACP_AUTH_ISSUER must be a non-empty string",
            ),
            (
                "MACP_AUTH_ISSUER",
                "   ",
                "MACP_AUTH_ISSUER must be a non-empty string",
            ),
            (
                "MACP_AUTH_AUDIENCE",
                "",
                "MACP_AUTH_AUDIENCE must be a non-empty string",
            ),
            (
                "MACP_AUTH_MAX_TTL_SECONDS",
                "0",
                "MACP_AUTH_MAX_TTL_SECONDS must be a positive integer",
            ),
            (
                "MACP_AUTH_MAX_TTL_SECONDS",
                "-5",
                "MACP_AUTH_MAX_TTL_SECONDS must be a positive integer",
            ),
            (
                "MACP_AUTH_MAX_TTL_SECONDS",
                "1.5",
                "MACP_AUTH_MAX_TTL_SECONDS must be a positive integer",
            ),
            (
                "MACP_AUTH_MAX_TTL_SECONDS",
                "ten",
                "MACP_AUTH_MAX_TTL_SECONDS must be a positive integer",
            ),
            (
                "MACP_AUTH_MAX_TTL_SECONDS",
                "4294967296",
                "MACP_AUTH_MAX_TTL_SECONDS must be a positive integer",
            ),
            (
                "MACP_AUTH_DEFAULT_TTL_SECONDS",
                "0",
                "MACP_AUTH_DEFAULT_TTL_SECONDS must be a positive integer",
            ),
            (
                "MACP_AUTH_DEFAULT_TTL_SECONDS",
                "",
                "MACP_AUTH_DEFAULT_TTL_SECONDS must be a positive integer",
            ),
            (
                "MACP_AUTH_SIGNING_ALG",
                "HS256",
                "MACP_AUTH_SIGNING_ALG must be RS256 or ES256",
            ),
            (
                "MACP_AUTH_SIGNING_ALG",
                "rs256",
                "MACP_AUTH_SIGNING_ALG must be RS256 or ES256",
            ),
            (
                "MACP_AUTH_SIGNING_ALG",
                "",
                "MACP_AUTH_SIGNING_ALG must be RS256 or ES256",
            ),
            (
                "MACP_AUTH_SIGNING_KEY_JSON",
                "",
                "MACP_AUTH_SIGNING_KEY_JSON is set but empty",
            ),
            (
                "MACP_AUTH_SIGNING_KEY_JSON",
                "  \n",
                "MACP_AUTH_SIGNING_KEY_JSON is set but empty",
            ),
            ("RUST_LOG", "info,[=", "RUST_LOG must be a tracing filter"),
            (
                "MACP_AUTH_SIGNING_KEY_FILE",
                "",
                "MACP_AUTH_SIGNING_KEY_FILE is set but empty",
            ),
            (
                "MACP_AUTH_KEY_PREPUBLISH_SECONDS",
                "-1",
                "MACP_AUTH_KEY_PREPUBLISH_SECONDS must be a whole number of seconds",
            ),
            (
                "MACP_AUTH_KEY_POLL_SECONDS",
                "often",
                "MACP_AUTH_KEY_POLL_SECONDS must be a whole number of seconds",
            ),
            (
                "MACP_AUTH_JWKS_MAX_AGE_SECONDS",
                "86401",
                "MACP_AUTH_JWKS_MAX_AGE_SECONDS must be a whole number of seconds from 0 to 86400",
            ),
            (
                "MACP_AUTH_PUBLIC_URL",
                "auth.example.com",
                "MACP_AUTH_PUBLIC_URL must be an http:// or https:// URL",
            ),
            (
                "MACP_AUTH_PUBLIC_URL",
                "ftp://auth.example.com",
                "MACP_AUTH_PUBLIC_URL must be an http:// or https:// URL",
            ),
            (
                "MACP_AUTH_PUBLIC_URL",
                "https://auth.example.com/?x=1",
                "MACP_AUTH_PUBLIC_URL must be an http:// or https:// URL",
            ),
        ];
        for (variable, value, expected) in cases {
            let err = load(&[(variable, value)]).expect_err(&format!("{variable}={value:?}"));
            assert_eq!(&err.variable, variable, "{variable}={value:?}");
            let message = err.to_string();
            assert!(
                message.starts_with(expected),
                "{variable}={value:?}: {message:?} should start with {expected:?}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    #[test]
    fn a_key_file_and_a_key_json_cannot_both_be_set() {
        let config = load(&[("MACP_AUTH_SIGNING_KEY_FILE", "/run/secrets/ring.json")]).unwrap();
        assert_eq!(
            config.signing_key_file,
            Some(PathBuf::from("/run/secrets/ring.json"))
        );
        let err = load(&[
            ("MACP_AUTH_SIGNING_KEY_FILE", "/run/secrets/ring.json"),
            ("MACP_AUTH_SIGNING_KEY_JSON", "{}"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "MACP_AUTH_SIGNING_KEY_FILE");
        assert!(err.to_string().contains("set only one"));
    }

    #[test]
    fn a_rate_without_a_burst_gets_a_burst_of_one_second() {
        let config = load(&[("MACP_AUTH_RATE_LIMIT_PER_SECOND", "2.5")]).unwrap();
        assert_eq!(
            config.rate_limit,
            Some(RateLimit {
                per_second: 2.5,
                burst: 3
            })
        );
        let config = load(&[("MACP_AUTH_RATE_LIMIT_PER_SECOND", "0.1")]).unwrap();
        assert_eq!(config.rate_limit.unwrap().burst, 1);
    }

    #[test]
    fn a_client_file_and_client_json_cannot_both_be_set() {
        let err = load(&[
            ("MACP_AUTH_CLIENTS_FILE", "/run/secrets/clients.json"),
            ("MACP_AUTH_CLIENTS_JSON", "[]"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "MACP_AUTH_CLIENTS_FILE");
    }

    #[test]
    fn non_utf8_values_are_refused() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let bad = OsString::from_vec(vec![0xff, 0xfe]);
            let err = Config::from_lookup(|name| (name == "MACP_AUTH_ISSUER").then(|| bad.clone()))
                .unwrap_err();
            assert_eq!(err.variable, "MACP_AUTH_ISSUER");
            assert_eq!(err.to_string(), "MACP_AUTH_ISSUER is not valid UTF-8");
        }
    }

    #[test]
    fn numbers_may_carry_surrounding_whitespace() {
        let config = load(&[("PORT", " 8080 "), ("MACP_AUTH_MAX_TTL_SECONDS", "600\n")]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.max_ttl_seconds, 600);
    }

    #[test]
    fn a_default_ttl_above_the_maximum_is_held_to_the_maximum() {
        let config = load(&[
            ("MACP_AUTH_MAX_TTL_SECONDS", "100"),
            ("MACP_AUTH_DEFAULT_TTL_SECONDS", "300"),
        ])
        .unwrap();
        assert_eq!(config.effective_default_ttl(), 100);
    }

    #[test]
    fn key_material_never_prints_its_contents() {
        let config = load(&[("MACP_AUTH_SIGNING_KEY_JSON", "{\"d\":\"SECRET-VALUE\"}")]).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("SECRET-VALUE"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }
}
