//! Service configuration, read from the environment exactly once at startup.
//!
//! This is the only module that looks at environment variables. Every value is
//! validated here, so the rest of the service works with typed, known-good
//! settings, and a bad value stops startup with one line that names the
//! variable and the form it expects. The signing key's contents are never part
//! of such a line.
//!
//! Settings are nested by subsystem ([`ListenSettings`], [`TokenSettings`],
//! [`KeySettings`], [`ClientSettings`], [`LimitSettings`],
//! [`LoggingSettings`], [`TelemetrySettings`]) and each subsystem takes only
//! its own section. Each
//! section reads itself through one small typed [`reader::Reader`] (integers
//! in a range, URLs, socket addresses, inline-or-file sources), so every
//! variable's rule is one line and every message has the same shape.

mod custody;
mod reader;
mod sections;
mod telemetry;
mod variables;

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

pub(crate) use custody::{CustodySettings, DEFAULT_SIGNING_TIMEOUT};
pub use sections::RateLimit;
pub(crate) use sections::{
    ClientSettings, KeySettings, LimitSettings, ListenSettings, LogFormat, LoggingSettings,
    TokenSettings,
};
pub(crate) use telemetry::{RootSampler, SamplerSetting, TelemetrySettings, TraceSettings};
pub(crate) use variables::variables_help;

/// Variable names, kept together so error messages and docs cannot drift.
pub(crate) mod vars {
    pub(crate) const PORT: &str = "PORT";
    pub(crate) const HOST: &str = "HOST";
    pub(crate) const ISSUER: &str = "MACP_AUTH_ISSUER";
    pub(crate) const AUDIENCE: &str = "MACP_AUTH_AUDIENCE";
    pub(crate) const MAX_TTL: &str = "MACP_AUTH_MAX_TTL_SECONDS";
    pub(crate) const DEFAULT_TTL: &str = "MACP_AUTH_DEFAULT_TTL_SECONDS";
    pub(crate) const SIGNING_ALG: &str = "MACP_AUTH_SIGNING_ALG";
    pub(crate) const SIGNING_KEY_JSON: &str = "MACP_AUTH_SIGNING_KEY_JSON";
    pub(crate) const SIGNING_KEY_FILE: &str = "MACP_AUTH_SIGNING_KEY_FILE";
    pub(crate) const KEY_PREPUBLISH: &str = "MACP_AUTH_KEY_PREPUBLISH_SECONDS";
    pub(crate) const KEY_POLL: &str = "MACP_AUTH_KEY_POLL_SECONDS";
    pub(crate) const JWKS_MAX_AGE: &str = "MACP_AUTH_JWKS_MAX_AGE_SECONDS";
    pub(crate) const PUBLIC_URL: &str = "MACP_AUTH_PUBLIC_URL";
    pub(crate) const CLIENTS_FILE: &str = "MACP_AUTH_CLIENTS_FILE";
    pub(crate) const CLIENTS_JSON: &str = "MACP_AUTH_CLIENTS_JSON";
    pub(crate) const ALLOW_UNAUTHENTICATED: &str = "MACP_AUTH_ALLOW_UNAUTHENTICATED";
    pub(crate) const RATE_LIMIT_PER_SECOND: &str = "MACP_AUTH_RATE_LIMIT_PER_SECOND";
    pub(crate) const RATE_LIMIT_BURST: &str = "MACP_AUTH_RATE_LIMIT_BURST";
    pub(crate) const LOG_FORMAT: &str = "MACP_AUTH_LOG_FORMAT";
    pub(crate) const METRICS_ADDR: &str = "MACP_AUTH_METRICS_ADDR";
    pub(crate) const SHUTDOWN_DELAY: &str = "MACP_AUTH_SHUTDOWN_DELAY_SECONDS";
    pub(crate) const REQUEST_TIMEOUT: &str = "MACP_AUTH_REQUEST_TIMEOUT_SECONDS";
    pub(crate) const HEADER_READ_TIMEOUT: &str = "MACP_AUTH_HEADER_READ_TIMEOUT_SECONDS";
    pub(crate) const MAX_CONNECTIONS: &str = "MACP_AUTH_MAX_CONNECTIONS";
    pub(crate) const RUST_LOG: &str = "RUST_LOG";
    // The standard OpenTelemetry variables this service honours (traces).
    pub(crate) const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    pub(crate) const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
    pub(crate) const OTEL_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub(crate) const OTEL_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    pub(crate) const OTEL_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    pub(crate) const OTEL_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    pub(crate) const OTEL_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    pub(crate) const OTEL_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    pub(crate) const OTEL_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    pub(crate) const OTEL_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    pub(crate) const OTEL_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    pub(crate) const OTEL_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
    pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    pub(crate) const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    pub(crate) const OTEL_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    pub(crate) const OTEL_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    pub(crate) const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
    pub(crate) const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
    pub(crate) const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
    // Keys in external stores (config/custody.rs).
    pub(crate) const PKCS11_MODULE: &str = "MACP_AUTH_PKCS11_MODULE";
    pub(crate) const PKCS11_PIN: &str = "MACP_AUTH_PKCS11_PIN";
    pub(crate) const PKCS11_PIN_FILE: &str = "MACP_AUTH_PKCS11_PIN_FILE";
    pub(crate) const SIGNING_TIMEOUT_MS: &str = "MACP_AUTH_SIGNING_TIMEOUT_MS";
}

/// Largest TTL any setting may name: about 136 years. Anything above it is a
/// typo, and keeping `iat + ttl` far from `u64::MAX` rules out overflow.
pub(crate) const TTL_LIMIT_SECONDS: u64 = u32::MAX as u64;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A string that holds private key material: it never prints its contents.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(String);

impl KeyMaterial {
    /// Wraps key material read from a secret.
    pub fn new(value: String) -> Self {
        KeyMaterial(value)
    }

    /// The material itself, for the key parser only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([redacted])")
    }
}

/// Validated service settings, one section per subsystem.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Where to listen and how this service is reached.
    pub listen: ListenSettings,
    /// What every token says: issuer, audience, lifetimes.
    pub tokens: TokenSettings,
    /// The signing key ring: algorithm, source, rotation timing, JWKS caching.
    pub keys: KeySettings,
    /// The minting-client list and its rate limit.
    pub clients: ClientSettings,
    /// Connection, time and shutdown limits.
    pub limits: LimitSettings,
    /// Log format and filter.
    pub(crate) logging: LoggingSettings,
    /// Trace export (OpenTelemetry), off by default.
    pub(crate) telemetry: TelemetrySettings,
    /// `MACP_AUTH_*` variables in the environment that nothing reads
    /// (probable misspellings), each with the known name it most resembles.
    /// Only [`Config::from_env`] fills this.
    pub(crate) unknown_variables: Vec<(String, Option<&'static str>)>,
}

/// A configuration value that cannot be used. Its message names the variable
/// and the expected form; it never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The variable at fault.
    pub(crate) variable: &'static str,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            variable,
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and validates the process environment, and notes the
    /// `MACP_AUTH_*` variables in it that nothing reads.
    pub(crate) fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::from_lookup(|name| std::env::var_os(name))?;
        config.unknown_variables =
            variables::unknown_variables(std::env::vars_os().map(|(name, _)| name));
        Ok(config)
    }

    /// Reads and validates settings from any source of variables; tests pass
    /// a map here instead of mutating the process environment.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<OsString>,
    {
        let reader = reader::Reader::new(&lookup);
        let mut config = Config {
            listen: ListenSettings::read(&reader)?,
            tokens: TokenSettings::read(&reader)?,
            keys: KeySettings::read(&reader)?,
            clients: ClientSettings::read(&reader)?,
            limits: LimitSettings::read(&reader)?,
            logging: LoggingSettings::read(&reader)?,
            telemetry: TelemetrySettings::read(&reader)?,
            unknown_variables: Vec::new(),
        };
        let signing_timeout_set = reader.raw(vars::SIGNING_TIMEOUT_MS)?.is_some();
        config.fit_deadlines(signing_timeout_set)?;
        Ok(config)
    }

    /// Keeps the signing deadline inside the request deadline: a request
    /// cut short first would end in a `408`, hiding the store's failure
    /// from the caller, the audit trail and readiness. A signing deadline
    /// given explicitly that does not fit is refused; the default is
    /// lowered to half the request deadline instead.
    fn fit_deadlines(&mut self, signing_timeout_set: bool) -> Result<(), ConfigError> {
        let signing = self.keys.custody.signing_timeout;
        let request = self.limits.request_timeout;
        if signing < request {
            return Ok(());
        }
        if !signing_timeout_set {
            self.keys.custody.signing_timeout = request / 2;
            return Ok(());
        }
        Err(ConfigError::new(
            vars::SIGNING_TIMEOUT_MS,
            format!(
                "{} ({} ms) must be shorter than {} ({} s): a mint would time out (408) before a stalled key store could be reported (503)",
                vars::SIGNING_TIMEOUT_MS,
                signing.as_millis(),
                vars::REQUEST_TIMEOUT,
                request.as_secs()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningAlg;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;

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
        assert_eq!(config.listen.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(config.listen.port, 3200);
        assert_eq!(config.tokens.issuer, "macp-auth-service");
        assert_eq!(config.tokens.audience, "macp-runtime");
        assert_eq!(config.tokens.max_ttl_seconds, 3600);
        assert_eq!(config.tokens.default_ttl_seconds, 300);
        assert_eq!(config.keys.alg, SigningAlg::Rs256);
        assert!(config.keys.inline.is_none());
        assert_eq!(config.logging.filter, "info");
        assert_eq!(config.limits.drain_timeout, Duration::from_secs(10));
        assert!(config.keys.file.is_none());
        assert_eq!(config.keys.prepublish_seconds, 600);
        assert_eq!(config.keys.poll_interval, Some(Duration::from_secs(10)));
        assert_eq!(config.keys.jwks_max_age_seconds, 300);
        assert!(config.listen.public_url.is_none());
        assert!(config.clients.inline.is_none() && config.clients.file.is_none());
        assert_eq!(config.clients.rate_limit, None);
        assert_eq!(config.logging.format, LogFormat::Text);
        assert_eq!(config.listen.metrics_addr, None);
        assert!(!config.clients.allow_unauthenticated);
        assert!(config.unknown_variables.is_empty());
        assert_eq!(config.limits.shutdown_delay, Duration::ZERO);
        assert_eq!(config.limits.request_timeout, Duration::from_secs(10));
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.max_connections, 4096);
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
            ("MACP_AUTH_ALLOW_UNAUTHENTICATED", "True"),
        ])
        .unwrap();
        assert!(config.clients.allow_unauthenticated);
        assert_eq!(
            config.clients.inline.as_ref().map(KeyMaterial::expose),
            Some("[]")
        );
        assert_eq!(
            config.clients.rate_limit,
            Some(RateLimit {
                per_second: 2.5,
                burst: 10
            })
        );
        assert_eq!(config.logging.format, LogFormat::Json);
        assert_eq!(
            config.listen.metrics_addr,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(config.limits.shutdown_delay, Duration::from_secs(5));
        assert_eq!(config.limits.request_timeout, Duration::from_secs(20));
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.limits.max_connections, 100);
        assert_eq!(config.keys.prepublish_seconds, 900);
        assert_eq!(config.keys.poll_interval, None);
        assert_eq!(config.keys.jwks_max_age_seconds, 60);
        assert_eq!(
            config.listen.public_url.as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(config.listen.port, 8080);
        assert_eq!(config.listen.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.tokens.issuer, "auth.example.com");
        assert_eq!(config.tokens.audience, "runtime.example.com");
        assert_eq!(config.tokens.max_ttl_seconds, 7200);
        assert_eq!(config.tokens.default_ttl_seconds, 60);
        assert_eq!(config.keys.alg, SigningAlg::Es256);
        assert_eq!(
            config.keys.inline.as_ref().map(KeyMaterial::expose),
            Some("{\"kty\":\"EC\"}")
        );
        assert_eq!(config.logging.filter, "macp_auth_service=debug,warn");
    }

    #[test]
    fn ipv6_hosts_are_accepted_with_or_without_brackets() {
        for raw in ["::", "[::1]", "::1"] {
            let config = load(&[("HOST", raw)]).unwrap();
            assert!(matches!(config.listen.host, IpAddr::V6(_)), "{raw}");
        }
        let config = load(&[("HOST", "::1"), ("PORT", "9000")]).unwrap();
        assert_eq!(config.listen.host, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(config.listen.display_base_url(), "http://[::1]:9000");
    }

    #[test]
    fn a_wildcard_bind_is_shown_as_localhost() {
        assert_eq!(
            load(&[]).unwrap().listen.display_base_url(),
            "http://localhost:3200"
        );
        assert_eq!(
            load(&[("HOST", "10.1.2.3")])
                .unwrap()
                .listen
                .display_base_url(),
            "http://10.1.2.3:3200"
        );
    }

    /// Each invalid value, as (variable, value, the start of its message).
    const INVALID_VALUES: &[(&str, &str, &str)] = &[
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
            "MACP_AUTH_ISSUER",
            "issuer\nINFO forged line",
            "MACP_AUTH_ISSUER must not contain control characters, line or paragraph separators, or bidirectional formatting characters",
        ),
        (
            "MACP_AUTH_AUDIENCE",
            "macp-\u{202E}emitnur",
            "MACP_AUTH_AUDIENCE must not contain control characters",
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
            "MACP_AUTH_SIGNING_ALG must be RS256 or ES256, in capitals (got \"rs256\")",
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
            "MACP_AUTH_ALLOW_UNAUTHENTICATED",
            "yes",
            "MACP_AUTH_ALLOW_UNAUTHENTICATED must be true or false (got \"yes\")",
        ),
        (
            "MACP_AUTH_ALLOW_UNAUTHENTICATED",
            "",
            "MACP_AUTH_ALLOW_UNAUTHENTICATED must be true or false",
        ),
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

    #[test]
    fn a_signing_deadline_the_request_deadline_would_cut_short_is_refused() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "1",
                "2000",
                Some(
                    "MACP_AUTH_SIGNING_TIMEOUT_MS (2000 ms) must be shorter than MACP_AUTH_REQUEST_TIMEOUT_SECONDS (1 s): a mint would time out (408) before a stalled key store could be reported (503)",
                ),
            ),
            (
                "1",
                "1000",
                Some("MACP_AUTH_SIGNING_TIMEOUT_MS (1000 ms) must be shorter"),
            ),
            ("1", "999", None),
            ("2", "", None),
            (
                "60",
                "60000",
                Some("MACP_AUTH_SIGNING_TIMEOUT_MS (60000 ms) must be shorter than"),
            ),
            ("61", "60000", None),
        ];
        for (request, signing, expected) in cases {
            let mut pairs = vec![("MACP_AUTH_REQUEST_TIMEOUT_SECONDS", *request)];
            if !signing.is_empty() {
                pairs.push(("MACP_AUTH_SIGNING_TIMEOUT_MS", *signing));
            }
            let loaded = load(&pairs);
            match expected {
                None => assert!(loaded.is_ok(), "{request} s, {signing} ms"),
                Some(expected) => {
                    let err = loaded.unwrap_err();
                    assert_eq!(err.variable, "MACP_AUTH_SIGNING_TIMEOUT_MS");
                    assert!(err.to_string().starts_with(expected), "{err}");
                }
            }
        }
        let defaulted = |request| {
            let config = load(&[("MACP_AUTH_REQUEST_TIMEOUT_SECONDS", request)]).unwrap();
            config.keys.custody.signing_timeout
        };
        assert_eq!(defaulted("1"), Duration::from_millis(500), "half of 1 s");
        assert_eq!(defaulted("2"), Duration::from_millis(1000), "half of 2 s");
        assert_eq!(defaulted("3"), Duration::from_millis(2000), "the default");
    }

    #[test]
    fn every_invalid_value_is_refused_with_a_message_naming_its_variable() {
        for (variable, value, expected) in INVALID_VALUES {
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
            config.keys.file,
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
            config.clients.rate_limit,
            Some(RateLimit {
                per_second: 2.5,
                burst: 3
            })
        );
        let config = load(&[("MACP_AUTH_RATE_LIMIT_PER_SECOND", "0.1")]).unwrap();
        assert_eq!(config.clients.rate_limit.unwrap().burst, 1);
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
        assert_eq!(config.listen.port, 8080);
        assert_eq!(config.tokens.max_ttl_seconds, 600);
    }

    #[test]
    fn a_default_ttl_above_the_maximum_is_accepted() {
        // Minting holds it to the maximum (`mint::effective_ttl`), and the
        // fingerprint warns about it; reading it is not an error.
        let config = load(&[
            ("MACP_AUTH_MAX_TTL_SECONDS", "100"),
            ("MACP_AUTH_DEFAULT_TTL_SECONDS", "300"),
        ])
        .unwrap();
        assert_eq!(config.tokens.max_ttl_seconds, 100);
        assert_eq!(config.tokens.default_ttl_seconds, 300);
    }

    #[test]
    fn key_material_never_prints_its_contents() {
        let config = load(&[("MACP_AUTH_SIGNING_KEY_JSON", "{\"d\":\"SECRET-VALUE\"}")]).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("SECRET-VALUE"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }
}
