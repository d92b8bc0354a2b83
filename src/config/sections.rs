//! One settings type per subsystem, each reading only its own variables.
//!
//! Defaults live in each section's `Default`, so `Config::default()` is the
//! configuration of an empty environment and tests override single fields.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::custody::CustodySettings;
use super::reader::Reader;
use super::{ConfigError, DEFAULT_DRAIN_TIMEOUT, KeyMaterial, TTL_LIMIT_SECONDS, vars};
use crate::keys::SigningAlg;

/// Where the service listens and how clients reach it.
#[derive(Clone, Debug)]
pub struct ListenSettings {
    /// Address to bind (`HOST`).
    pub host: IpAddr,
    /// Port to bind (`PORT`).
    pub port: u16,
    /// The base URL verifiers reach this service at (`MACP_AUTH_PUBLIC_URL`),
    /// without a trailing slash; discovery falls back to the request's Host.
    pub public_url: Option<String>,
    /// A separate address for `/metrics` (`MACP_AUTH_METRICS_ADDR`); when
    /// unset, `/metrics` is served on the main port.
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for ListenSettings {
    fn default() -> Self {
        ListenSettings {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 3200,
            public_url: None,
            metrics_addr: None,
        }
    }
}

impl ListenSettings {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let port = r.integer_in(
            vars::PORT,
            defaults.port.into(),
            1..=65535,
            "an integer from 1 to 65535",
        )? as u16;
        Ok(ListenSettings {
            host: r.ip(vars::HOST, defaults.host)?,
            port,
            public_url: r.base_url(vars::PUBLIC_URL, "https://auth.example.com")?,
            metrics_addr: r.socket_addr(vars::METRICS_ADDR)?,
        })
    }

    /// `host:port` as operators and clients should write it (IPv6 bracketed).
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// Base URL to print in the startup log: a wildcard bind is shown as
    /// `localhost`, since `0.0.0.0` is not an address a client can reach.
    pub(crate) fn display_base_url(&self) -> String {
        let host = match self.host {
            host if host.is_unspecified() => "localhost".to_owned(),
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!("http://{host}:{}", self.port)
    }
}

/// What every token says.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    /// The `iss` claim of every token (`MACP_AUTH_ISSUER`).
    pub issuer: String,
    /// The `aud` claim of every token (`MACP_AUTH_AUDIENCE`).
    pub audience: String,
    /// Upper bound on any token's lifetime, in seconds (`MACP_AUTH_MAX_TTL_SECONDS`).
    pub max_ttl_seconds: u64,
    /// Lifetime when a request names none, in seconds (`MACP_AUTH_DEFAULT_TTL_SECONDS`).
    pub default_ttl_seconds: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            issuer: "macp-auth-service".to_owned(),
            audience: "macp-runtime".to_owned(),
            max_ttl_seconds: 3600,
            default_ttl_seconds: 300,
        }
    }
}

impl TokenSettings {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let ttl = |name, default| {
            let expected =
                format!("a positive integer number of seconds, at most {TTL_LIMIT_SECONDS}");
            r.integer_in(name, default, 1..=TTL_LIMIT_SECONDS, &expected)
        };
        Ok(TokenSettings {
            issuer: r.non_empty(vars::ISSUER, &defaults.issuer)?,
            audience: r.non_empty(vars::AUDIENCE, &defaults.audience)?,
            max_ttl_seconds: ttl(vars::MAX_TTL, defaults.max_ttl_seconds)?,
            default_ttl_seconds: ttl(vars::DEFAULT_TTL, defaults.default_ttl_seconds)?,
        })
    }
}

/// The signing key ring.
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// Signing algorithm (`MACP_AUTH_SIGNING_ALG`).
    pub alg: SigningAlg,
    /// Pinned private key(s) (`MACP_AUTH_SIGNING_KEY_JSON`): a JWK, a JWK
    /// Set or PEM. With no file either, the key is ephemeral.
    pub inline: Option<KeyMaterial>,
    /// A file holding the same formats (`MACP_AUTH_SIGNING_KEY_FILE`),
    /// reloaded on SIGHUP and when it changes.
    pub file: Option<PathBuf>,
    /// How long before its activation a key should be published
    /// (`MACP_AUTH_KEY_PREPUBLISH_SECONDS`); sooner activations are warned about.
    pub(crate) prepublish_seconds: u64,
    /// How often the key and client files are checked for changes
    /// (`MACP_AUTH_KEY_POLL_SECONDS`); `None` when set to 0.
    pub poll_interval: Option<Duration>,
    /// Upper bound on the JWKS `Cache-Control: max-age`
    /// (`MACP_AUTH_JWKS_MAX_AGE_SECONDS`).
    pub jwks_max_age_seconds: u64,
    /// External key stores: PKCS#11 module and PIN, signing deadline.
    pub custody: CustodySettings,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            alg: SigningAlg::Rs256,
            inline: None,
            file: None,
            prepublish_seconds: 600,
            poll_interval: Some(Duration::from_secs(10)),
            jwks_max_age_seconds: 300,
            custody: CustodySettings::default(),
        }
    }
}

impl KeySettings {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let alg = match r.raw(vars::SIGNING_ALG)? {
            None => defaults.alg,
            Some(raw) => SigningAlg::parse(raw.trim()).ok_or_else(|| {
                ConfigError::new(
                    vars::SIGNING_ALG,
                    format!(
                        "MACP_AUTH_SIGNING_ALG must be RS256 or ES256, in capitals (got {raw:?}): RS256 for RSA keys, ES256 for EC P-256 keys"
                    ),
                )
            })?,
        };
        let (inline, file) = r.inline_or_file(
            vars::SIGNING_KEY_JSON,
            vars::SIGNING_KEY_FILE,
            "a private key (JWK, JWK Set or PEM)",
        )?;
        let poll_interval = match r.raw(vars::KEY_POLL)? {
            None => defaults.poll_interval,
            Some(_) => match r.seconds(vars::KEY_POLL, 0, 86_400)? {
                0 => None,
                poll => Some(Duration::from_secs(poll)),
            },
        };
        Ok(KeySettings {
            alg,
            inline,
            file,
            prepublish_seconds: r.seconds(
                vars::KEY_PREPUBLISH,
                defaults.prepublish_seconds,
                TTL_LIMIT_SECONDS,
            )?,
            poll_interval,
            jwks_max_age_seconds: r.seconds(
                vars::JWKS_MAX_AGE,
                defaults.jwks_max_age_seconds,
                86_400,
            )?,
            custody: CustodySettings::read(r)?,
        })
    }
}

/// A token bucket per minting client (or peer address when unauthenticated).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained mints per second.
    pub per_second: f64,
    /// Mints allowed at once after a quiet spell.
    pub burst: u32,
}

impl RateLimit {
    /// The longest a bucket may take to refill from empty: the limiter's
    /// clock counts nanoseconds in a `u64`, so anything near 584 years wraps.
    pub(crate) const MAX_REFILL_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

    /// Whether refilling the whole burst takes less than
    /// [`Self::MAX_REFILL_SECONDS`], which the limiter can represent.
    pub(crate) fn refill_fits(&self) -> bool {
        f64::from(self.burst) / self.per_second < Self::MAX_REFILL_SECONDS
    }
}

/// Who may mint, and how often.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    /// The minting-client list (`MACP_AUTH_CLIENTS_JSON`); with no file
    /// either, minting is unauthenticated.
    pub inline: Option<KeyMaterial>,
    /// A file holding the client list (`MACP_AUTH_CLIENTS_FILE`), reloaded
    /// with the key ring.
    pub file: Option<PathBuf>,
    /// Per-client mint rate limit (`MACP_AUTH_RATE_LIMIT_PER_SECOND`,
    /// `MACP_AUTH_RATE_LIMIT_BURST`); `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// The operator's explicit statement that unauthenticated minting on a
    /// non-loopback address is intended (`MACP_AUTH_ALLOW_UNAUTHENTICATED`):
    /// the startup error about it becomes a warning. Changes no behaviour.
    pub(crate) allow_unauthenticated: bool,
}

impl ClientSettings {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let (inline, file) =
            r.inline_or_file(vars::CLIENTS_JSON, vars::CLIENTS_FILE, "a JSON client list")?;
        Ok(ClientSettings {
            inline,
            file,
            rate_limit: read_rate_limit(r)?,
            allow_unauthenticated: r.boolean(vars::ALLOW_UNAUTHENTICATED, false)?,
        })
    }
}

fn read_rate_limit(r: &Reader<'_>) -> Result<Option<RateLimit>, ConfigError> {
    let (rate, burst) = match (
        r.raw(vars::RATE_LIMIT_PER_SECOND)?,
        r.raw(vars::RATE_LIMIT_BURST)?,
    ) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(ConfigError::new(
                vars::RATE_LIMIT_BURST,
                "MACP_AUTH_RATE_LIMIT_BURST needs MACP_AUTH_RATE_LIMIT_PER_SECOND to be set too",
            ));
        }
        (Some(rate), burst) => (rate, burst),
    };
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
        Some(_) => r.integer_in(
            vars::RATE_LIMIT_BURST,
            1,
            1..=u32::MAX.into(),
            "a positive integer",
        )? as u32,
    };
    let limit = RateLimit { per_second, burst };
    if !limit.refill_fits() {
        return Err(ConfigError::new(
            vars::RATE_LIMIT_PER_SECOND,
            format!(
                "MACP_AUTH_RATE_LIMIT_PER_SECOND ({per_second}) with a burst of {burst} would take more than 100 years to refill a bucket: raise the rate or lower MACP_AUTH_RATE_LIMIT_BURST"
            ),
        ));
    }
    Ok(Some(limit))
}

/// Connection, time and shutdown limits.
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// Most connections served at once (`MACP_AUTH_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Longest a client may take to send request headers
    /// (`MACP_AUTH_HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout: Duration,
    /// Longest a request may take, body included (`MACP_AUTH_REQUEST_TIMEOUT_SECONDS`).
    pub request_timeout: Duration,
    /// How long the listener keeps serving after SIGTERM with readiness
    /// already failing (`MACP_AUTH_SHUTDOWN_DELAY_SECONDS`), so load balancers
    /// deregister the instance before it stops accepting.
    pub shutdown_delay: Duration,
    /// How long shutdown waits for in-flight requests before giving up.
    pub drain_timeout: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl LimitSettings {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let secs = Duration::from_secs;
        Ok(LimitSettings {
            shutdown_delay: secs(r.seconds(vars::SHUTDOWN_DELAY, 0, 300)?),
            request_timeout: secs(r.positive(
                vars::REQUEST_TIMEOUT,
                defaults.request_timeout.as_secs(),
                3600,
            )?),
            header_read_timeout: secs(r.positive(
                vars::HEADER_READ_TIMEOUT,
                defaults.header_read_timeout.as_secs(),
                3600,
            )?),
            max_connections: r.positive(
                vars::MAX_CONNECTIONS,
                defaults.max_connections as u64,
                1_000_000,
            )? as usize,
            drain_timeout: defaults.drain_timeout,
        })
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// How logs are written.
#[derive(Clone, Debug)]
pub(crate) struct LoggingSettings {
    /// Log format (`MACP_AUTH_LOG_FORMAT`: `text` or `json`).
    pub(crate) format: LogFormat,
    /// The tracing filter (`RUST_LOG`), already checked to parse.
    pub(crate) filter: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

impl LoggingSettings {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let format = match r.raw(vars::LOG_FORMAT)?.as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    vars::LOG_FORMAT,
                    format!("MACP_AUTH_LOG_FORMAT must be text or json (got {other:?})"),
                ));
            }
        };
        let filter = match r.raw(vars::RUST_LOG)? {
            None => Self::default().filter,
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
        Ok(LoggingSettings { format, filter })
    }
}
