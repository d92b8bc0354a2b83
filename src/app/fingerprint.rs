//! The startup fingerprint: the facts an operator identifies a deployment by
//! (listen address, issuer, audience, key source, alg, kid, the ring's
//! schedule, TTLs, URLs, clients, rate limit) and every warning serving
//! would give about the configuration.
//!
//! It is computed once, as a value, and rendered two ways: as the startup log
//! lines, and as the `check-config` report. One computation means the two can
//! never disagree about what a configuration does.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::clock::rfc3339;
use crate::config::{Config, RateLimit};
use crate::http::routes::{JWKS_PATH, METRICS_PATH, TOKENS_PATH};
use crate::keys::KeySource;
use crate::keys::SigningAlg;
use crate::keys::ring::{KeyRing, KeyStatus, LONE_JWK_KID};
use crate::reload::Source;

/// How serious a configuration finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Works, but probably not what a shared deployment wants.
    Warning,
    /// Works, and is dangerous: anyone on the network can mint.
    Error,
}

/// What a finding is about; fixes where the startup log places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The signing key is generated at startup.
    EphemeralKey,
    /// No client list: anyone who reaches the port may mint.
    Unauthenticated,
    /// A key activates sooner than the pre-publication window allows. The
    /// key store logs this itself when it loads a ring (with the key's
    /// fields), so [`Fingerprint::log`] leaves it out; `check-config` shows it.
    ShortPrepublication,
    /// Anything else about the configuration.
    Other,
}

/// One finding about the configuration, as serving logs it at startup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

/// One key of the ring as the fingerprint shows it.
#[derive(Clone, Debug)]
pub struct KeyLine {
    /// The key's kid.
    pub kid: String,
    /// What it does now.
    pub status: KeyStatus,
    /// When it starts (or started) signing, if scheduled.
    pub activate_at: Option<u64>,
    /// When it leaves (or left) the JWKS, if superseded.
    pub retire_at: Option<u64>,
}

/// Who may mint, as the fingerprint shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientsLine {
    /// No client list: minting is unauthenticated.
    Off,
    /// A client list from the named variable, with the clients' names.
    List {
        /// `MACP_AUTH_CLIENTS_JSON` or `MACP_AUTH_CLIENTS_FILE`.
        variable: &'static str,
        /// The clients' names, in list order.
        names: Vec<String>,
    },
}

/// Everything the startup lines and `check-config` report.
#[derive(Clone, Debug)]
pub struct Fingerprint {
    listen: SocketAddr,
    port: u16,
    base_url: String,
    issuer: String,
    audience: String,
    source: KeySource,
    alg: SigningAlg,
    kid: Option<String>,
    keys: Vec<KeyLine>,
    max_ttl_seconds: u64,
    default_ttl_seconds: u64,
    clients: ClientsLine,
    rate_limit: Option<RateLimit>,
    metrics: Option<SocketAddr>,
    /// What serving warns about, in the order it logs them.
    pub findings: Vec<Finding>,
}

impl Fingerprint {
    /// The fingerprint of `config` serving `ring` (from `source`) with the
    /// client names `clients` at `now`.
    pub fn new(
        config: &Config,
        ring: &KeyRing,
        source: &Source,
        clients: ClientsLine,
        now: u64,
    ) -> Self {
        let max_ttl = config.tokens.max_ttl_seconds;
        let schedule = ring.schedule(now, max_ttl);
        let keys = ring
            .keys()
            .iter()
            .enumerate()
            .map(|(index, entry)| KeyLine {
                kid: entry.key.kid().to_owned(),
                status: ring.status(index, now, max_ttl),
                activate_at: entry.activate_at,
                retire_at: ring.retirement(index, max_ttl),
            })
            .collect();
        let source = match source {
            Source::Unset => KeySource::Ephemeral,
            Source::Inline => KeySource::Env,
            Source::File(_) => KeySource::File,
        };
        let mut fingerprint = Fingerprint {
            listen: config.listen.addr(),
            port: config.listen.port,
            base_url: config.listen.display_base_url(),
            issuer: config.tokens.issuer.clone(),
            audience: config.tokens.audience.clone(),
            source,
            alg: config.keys.alg,
            kid: schedule
                .signing
                .map(|index| ring.keys()[index].key.kid().to_owned()),
            keys,
            max_ttl_seconds: max_ttl,
            default_ttl_seconds: config.tokens.default_ttl_seconds,
            clients,
            rate_limit: config.clients.rate_limit,
            metrics: config.listen.metrics_addr,
            findings: Vec::new(),
        };
        fingerprint.findings = fingerprint.judge(config, ring, now);
        fingerprint
    }

    /// The same fingerprint with the metrics listener's bound address (port
    /// 0 in the configuration becomes the port the OS picked).
    pub fn with_metrics_addr(mut self, addr: Option<SocketAddr>) -> Self {
        if addr.is_some() {
            self.metrics = addr;
        }
        self
    }

    /// The same fingerprint with one more warning, when there is one.
    pub fn with_warning(mut self, warning: Option<String>) -> Self {
        if let Some(message) = warning {
            self.findings.push(Finding {
                kind: FindingKind::Other,
                severity: Severity::Warning,
                message,
            });
        }
        self
    }

    /// The clients line of a client store's source and current list.
    pub fn clients_line(source: &Source, names: Vec<String>) -> ClientsLine {
        match source {
            Source::Unset => ClientsLine::Off,
            Source::File(_) => ClientsLine::List {
                variable: "MACP_AUTH_CLIENTS_FILE",
                names,
            },
            _ => ClientsLine::List {
                variable: "MACP_AUTH_CLIENTS_JSON",
                names,
            },
        }
    }

    fn judge(&self, config: &Config, ring: &KeyRing, now: u64) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut warn = |kind, severity, message: String| {
            findings.push(Finding {
                kind,
                severity,
                message,
            })
        };
        if self.source == KeySource::Ephemeral {
            warn(
                FindingKind::EphemeralKey,
                Severity::Warning,
                "ephemeral signing key: tokens minted now stop verifying when this process restarts; set MACP_AUTH_SIGNING_KEY_JSON or MACP_AUTH_SIGNING_KEY_FILE in any shared environment".to_owned(),
            );
        }
        if ring.kid_defaulted() {
            warn(
                FindingKind::Other,
                Severity::Warning,
                format!(
                    "the pinned key has no kid, so it is published as {LONE_JWK_KID:?} as the TypeScript reference did; give it an explicit, unique kid (for example with `keygen --kid`) before you rotate, or two keys will share one kid in verifier caches"
                ),
            );
        }
        if let Some((kind, severity, message)) = unauthenticated(config, &self.clients) {
            warn(kind, severity, message);
        }
        for (kid, activate_at) in short_prepublication(config, ring, now) {
            warn(
                FindingKind::ShortPrepublication,
                Severity::Warning,
                format!(
                    "key {kid} activates in {} s ({}), less than MACP_AUTH_KEY_PREPUBLISH_SECONDS ({} s): verifiers whose JWKS cache predates its publication will reject its tokens until they refresh; move its activate_at to {} or later",
                    activate_at - now,
                    rfc3339(activate_at),
                    config.keys.prepublish_seconds,
                    rfc3339(now.saturating_add(config.keys.prepublish_seconds)),
                ),
            );
        }
        if self.default_ttl_seconds > self.max_ttl_seconds {
            warn(
                FindingKind::Other,
                Severity::Warning,
                format!(
                    "MACP_AUTH_DEFAULT_TTL_SECONDS ({}) exceeds MACP_AUTH_MAX_TTL_SECONDS ({}): requests without ttl_seconds get {}; lower the default or raise the maximum",
                    self.default_ttl_seconds, self.max_ttl_seconds, self.max_ttl_seconds
                ),
            );
        }
        if let Some(message) = metrics_clash(config) {
            warn(FindingKind::Other, Severity::Error, message);
        }
        for (name, guess) in &config.unknown_variables {
            let hint = guess.map_or_else(String::new, |known| format!(" (did you mean {known}?)"));
            warn(
                FindingKind::Other,
                Severity::Warning,
                format!(
                    "{name} is set but no setting of this service reads it{hint}; fix its name or unset it (`serve --help` lists every variable)"
                ),
            );
        }
        findings
    }

    /// Logs the startup lines (the reference service's, plus alg, kid, the
    /// ring's schedule, metrics, clients and rate limit), then each finding
    /// but the short pre-publications, which the key store has already
    /// logged while loading the ring.
    pub fn log(&self) {
        // The reference's exact phrase first: operators grep for it.
        tracing::info!("listening on port {} (address {})", self.port, self.listen);
        tracing::info!("issuer={} audience={}", self.issuer, self.audience);
        tracing::info!("key source: {}", self.source);
        tracing::info!(
            "signing alg={} kid={}",
            self.alg,
            self.kid.as_deref().unwrap_or("none")
        );
        if self.keys.len() > 1 {
            for key in &self.keys {
                match key.activate_at {
                    Some(at) => tracing::info!(
                        "key {}: {} (activate_at {})",
                        key.kid,
                        key.status,
                        rfc3339(at)
                    ),
                    None => tracing::info!("key {}: {}", key.kid, key.status),
                }
            }
        }
        tracing::info!("JWKS: {}{JWKS_PATH}", self.base_url);
        tracing::info!("Mint: POST {}{TOKENS_PATH}", self.base_url);
        if let Some(addr) = self.metrics {
            tracing::info!("metrics: http://{addr}{METRICS_PATH}");
        }
        self.log_findings(FindingKind::EphemeralKey);
        match &self.clients {
            ClientsLine::Off => self.log_findings(FindingKind::Unauthenticated),
            ClientsLine::List { variable, names } => tracing::info!(
                "minting requires client credentials ({variable}): {}",
                names.join(", ")
            ),
        }
        if let Some(limit) = self.rate_limit {
            let per = if self.clients == ClientsLine::Off {
                "peer address"
            } else {
                "client"
            };
            tracing::info!(
                "mint rate limit: {} per second, burst {}, per {per}",
                limit.per_second,
                limit.burst
            );
        }
        self.log_findings(FindingKind::Other);
    }

    fn log_findings(&self, kind: FindingKind) {
        for finding in self.findings.iter().filter(|finding| finding.kind == kind) {
            match finding.severity {
                Severity::Warning => tracing::warn!("{}", finding.message),
                Severity::Error => tracing::error!("{}", finding.message),
            }
        }
    }

    /// The `check-config` report: one `name: value` line per fact, then one
    /// `warning:`/`error:` line per finding.
    pub fn report(&self) -> String {
        let mut report = String::new();
        let mut line = |name: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(report, "{name}: {value}");
        };
        line("listen", &self.listen);
        line("issuer", &self.issuer);
        line("audience", &self.audience);
        line("key source", &self.source);
        line("alg", &self.alg);
        if let Some(kid) = &self.kid {
            line("kid", kid);
        }
        for key in &self.keys {
            line(&format!("key {}", key.kid), &key_detail(key));
        }
        line("max ttl seconds", &self.max_ttl_seconds);
        line(
            "default ttl seconds",
            &self.default_ttl_seconds.min(self.max_ttl_seconds),
        );
        line("jwks url", &format_args!("{}{JWKS_PATH}", self.base_url));
        line(
            "mint url",
            &format_args!("POST {}{TOKENS_PATH}", self.base_url),
        );
        match self.metrics {
            Some(addr) => line("metrics url", &format_args!("http://{addr}{METRICS_PATH}")),
            None => line(
                "metrics url",
                &format_args!("{}{METRICS_PATH}", self.base_url),
            ),
        }
        match &self.clients {
            ClientsLine::Off => line("minting clients", &"none (minting is unauthenticated)"),
            ClientsLine::List { names, .. } => line("minting clients", &names.join(", ")),
        }
        if let Some(limit) = self.rate_limit {
            line(
                "rate limit",
                &format_args!("{} per second, burst {}", limit.per_second, limit.burst),
            );
        }
        for finding in &self.findings {
            let label = match finding.severity {
                Severity::Warning => "warning",
                Severity::Error => "error",
            };
            line(label, &finding.message);
        }
        report
    }
}

/// The finding about unauthenticated minting, if minting is: a warning on
/// a loopback bind or when the operator said it is intended, else an error.
/// With a client list, only the opt-in's needlessness is worth saying.
fn unauthenticated(
    config: &Config,
    clients: &ClientsLine,
) -> Option<(FindingKind, Severity, String)> {
    let host = config.listen.host;
    let allowed = config.clients.allow_unauthenticated;
    if *clients != ClientsLine::Off {
        return allowed.then(|| {
            (
                FindingKind::Other,
                Severity::Warning,
                "MACP_AUTH_ALLOW_UNAUTHENTICATED is set, but a client list is configured, so minting is authenticated and it has no effect; unset it".to_owned(),
            )
        });
    }
    let (severity, message) = if host.is_loopback() {
        (
            Severity::Warning,
            "minting is unauthenticated: any local process can mint a token for any sender; set MACP_AUTH_CLIENTS_FILE or MACP_AUTH_CLIENTS_JSON to require client credentials".to_owned(),
        )
    } else if allowed {
        (
            Severity::Warning,
            format!(
                "minting is unauthenticated on {host}, as MACP_AUTH_ALLOW_UNAUTHENTICATED=true says is intended: anyone who can reach this port can mint a token for any sender; keep the network path restricted, or set MACP_AUTH_CLIENTS_FILE or MACP_AUTH_CLIENTS_JSON"
            ),
        )
    } else {
        (
            Severity::Error,
            format!(
                "minting is unauthenticated and {host} is not a loopback address: anyone who can reach this port can mint a token for any sender; set MACP_AUTH_CLIENTS_FILE or MACP_AUTH_CLIENTS_JSON, or restrict the network path and set MACP_AUTH_ALLOW_UNAUTHENTICATED=true to say so"
            ),
        )
    };
    Some((FindingKind::Unauthenticated, severity, message))
}

/// Keys that activate after `now` but sooner than the pre-publication window
/// allows, as (kid, activate_at). Serving judges the same from the moment it
/// loads the ring, which is `now` for a replica starting now.
fn short_prepublication(config: &Config, ring: &KeyRing, now: u64) -> Vec<(String, u64)> {
    let window = config.keys.prepublish_seconds;
    ring.keys()
        .iter()
        .filter_map(|entry| {
            let at = entry.activate_at?;
            (at > now && at - now < window).then(|| (entry.key.kid().to_owned(), at))
        })
        .collect()
}

/// The error about a metrics address that the main listener already takes:
/// serving would stop with "cannot listen on MACP_AUTH_METRICS_ADDR".
fn metrics_clash(config: &Config) -> Option<String> {
    let metrics = config.listen.metrics_addr?;
    let main = config.listen.addr();
    let overlapping =
        metrics.ip() == main.ip() || metrics.ip().is_unspecified() || main.ip().is_unspecified();
    (metrics.port() != 0 && metrics.port() == main.port() && overlapping).then(|| {
        format!(
            "MACP_AUTH_METRICS_ADDR {metrics} uses port {}, which the API already listens on ({main}): serving would fail to bind it; choose another port, such as 9464",
            main.port()
        )
    })
}

fn key_detail(key: &KeyLine) -> String {
    let mut detail = key.status.to_string();
    if let Some(at) = key.activate_at {
        let verb = if key.status == KeyStatus::Pending {
            "activates"
        } else {
            "activated"
        };
        let _ = write!(detail, ", {verb} {}", rfc3339(at));
    }
    if let Some(retire_at) = key.retire_at {
        let verb = if key.status == KeyStatus::Retired {
            "retired"
        } else {
            "retires"
        };
        let _ = write!(detail, ", {verb} {}", rfc3339(retire_at));
    }
    detail
}
