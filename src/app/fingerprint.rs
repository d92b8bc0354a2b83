//! The startup fingerprint: the facts an operator identifies a deployment by
//! (listen address, issuer, audience, key source, alg, kid, the ring's
//! schedule, TTLs, URLs, clients, rate limit, trace export) and every
//! warning serving
//! would give about the configuration.
//!
//! It is computed once, as a value, and rendered two ways: as the startup log
//! lines, and as the `check-config` report. One computation means the two can
//! never disagree about what a configuration does. The warnings themselves
//! are worked out in [`findings`].

mod findings;

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::clock::rfc3339;
use crate::config::{Config, RateLimit, TraceSettings};
use crate::http::routes::{JWKS_PATH, METRICS_PATH, TOKENS_PATH};
use crate::keys::KeySource;
use crate::keys::SigningAlg;
use crate::keys::ring::{KeyRing, KeyStatus};
use crate::reload::Source;

pub(crate) use findings::{Finding, FindingKind, Severity};

/// One key of the ring as the fingerprint shows it.
#[derive(Clone, Debug)]
pub(crate) struct KeyLine {
    /// The key's kid.
    pub(crate) kid: String,
    /// What it does now.
    pub(crate) status: KeyStatus,
    /// When it starts (or started) signing, if scheduled.
    pub(crate) activate_at: Option<u64>,
    /// When it leaves (or left) the JWKS, if superseded.
    pub(crate) retire_at: Option<u64>,
    /// Where its private key lives: `in-process`, or the external store
    /// and the key's reference (never a PIN).
    pub(crate) custody: String,
    /// Whether an external store holds it.
    pub(crate) external: bool,
}

/// Who may mint, as the fingerprint shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientsLine {
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
pub(crate) struct Fingerprint {
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
    /// Where traces go, when tracing is on.
    traces: Option<String>,
    /// What serving warns about, in the order it logs them.
    pub(crate) findings: Vec<Finding>,
}

impl Fingerprint {
    /// The fingerprint of `config` serving `ring` (from `source`) with the
    /// client names `clients` at `now`.
    pub(crate) fn new(
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
                custody: entry.key.custody(),
                external: entry.key.backend().is_some(),
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
            traces: config.telemetry.traces.as_ref().map(trace_line),
            findings: Vec::new(),
        };
        fingerprint.findings = fingerprint.judge(config, ring, now);
        fingerprint
    }

    /// The same fingerprint with the metrics listener's bound address (port
    /// 0 in the configuration becomes the port the OS picked).
    pub(crate) fn with_metrics_addr(mut self, addr: Option<SocketAddr>) -> Self {
        if addr.is_some() {
            self.metrics = addr;
        }
        self
    }

    /// The same fingerprint with one more warning, when there is one.
    pub(crate) fn with_warning(mut self, warning: Option<String>) -> Self {
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
    pub(crate) fn clients_line(source: &Source, names: Vec<String>) -> ClientsLine {
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

    /// Logs the startup lines (the reference service's, plus alg, kid, the
    /// ring's schedule, metrics, clients and rate limit), then each finding
    /// but the short pre-publications, which the key store has already
    /// logged while loading the ring.
    pub(crate) fn log(&self) {
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
        for key in self.keys.iter().filter(|key| key.external) {
            tracing::info!("key {} is held by {}", key.kid, key.custody);
        }
        tracing::info!("JWKS: {}{JWKS_PATH}", self.base_url);
        tracing::info!("Mint: POST {}{TOKENS_PATH}", self.base_url);
        if let Some(addr) = self.metrics {
            tracing::info!("metrics: http://{addr}{METRICS_PATH}");
        }
        if let Some(traces) = &self.traces {
            tracing::info!("traces: {traces}");
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
    pub(crate) fn report(&self) -> String {
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
        line("traces", &self.traces.as_deref().unwrap_or("off"));
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

/// Where and how traces are exported: no query string, no header values.
fn trace_line(traces: &TraceSettings) -> String {
    let mut line = format!(
        "OTLP http/protobuf to {}, service.name={}, sampler {}",
        traces.endpoint_for_display(),
        traces.service_name,
        traces.sampler_name()
    );
    let names = traces.headers.names();
    if !names.is_empty() {
        let _ = write!(line, ", headers {}", names.join(", "));
    }
    line
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
    let _ = write!(detail, ", {}", key.custody);
    detail
}
