//! The findings of the startup fingerprint: every warning (or error)
//! serving would give about a configuration, worked out once from the
//! configuration, the ring and the fingerprint's own facts.
//!
//! They live apart from the fingerprint's facts and rendering because they
//! are the part that grows: each new foot-gun an operator can set up is one
//! more check here, in the order serving logs them, and `check-config`
//! reports it with no further wiring.

use crate::clients::no_clients;
use crate::clock::rfc3339;
use crate::config::Config;
use crate::keys::KeySource;
use crate::keys::ring::{KeyRing, LONE_JWK_KID};

use super::{ClientsLine, Fingerprint};

/// How serious a configuration finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// Works, but probably not what a shared deployment wants.
    Warning,
    /// Works, and is dangerous: anyone on the network can mint.
    Error,
}

/// What a finding is about; fixes where the startup log places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FindingKind {
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
pub(crate) struct Finding {
    /// What it is about.
    pub(crate) kind: FindingKind,
    /// How serious it is.
    pub(crate) severity: Severity,
    /// What is wrong and what to do.
    pub(crate) message: String,
}

impl Fingerprint {
    /// Every finding about `config` serving `ring` at `now`, in the order
    /// serving logs them.
    pub(super) fn judge(&self, config: &Config, ring: &KeyRing, now: u64) -> Vec<Finding> {
        let mut findings = self.key_findings(ring);
        findings.extend(
            unauthenticated(config, &self.clients)
                .map(|(kind, severity, message)| finding(kind, severity, message)),
        );
        findings.extend(
            short_prepublication(config, ring, now)
                .into_iter()
                .map(|(kid, activate_at)| {
                    finding(
                        FindingKind::ShortPrepublication,
                        Severity::Warning,
                        format!(
                            "key {kid} activates in {} s ({}), less than MACP_AUTH_KEY_PREPUBLISH_SECONDS ({} s): verifiers whose JWKS cache predates its publication will reject its tokens until they refresh; move its activate_at to {} or later",
                            activate_at - now,
                            rfc3339(activate_at),
                            config.keys.prepublish_seconds,
                            rfc3339(now.saturating_add(config.keys.prepublish_seconds)),
                        ),
                    )
                }),
        );
        findings.extend(self.settings_findings(config));
        findings
    }

    /// The findings about where the signing key comes from.
    fn key_findings(&self, ring: &KeyRing) -> Vec<Finding> {
        let mut findings = Vec::new();
        if self.source == KeySource::Ephemeral {
            findings.push(finding(
                FindingKind::EphemeralKey,
                Severity::Warning,
                "ephemeral signing key: tokens minted now stop verifying when this process restarts; set MACP_AUTH_SIGNING_KEY_JSON or MACP_AUTH_SIGNING_KEY_FILE in any shared environment".to_owned(),
            ));
        }
        if ring.kid_defaulted() {
            findings.push(finding(
                FindingKind::Other,
                Severity::Warning,
                format!(
                    "the pinned key has no kid, so it is published as {LONE_JWK_KID:?} as the TypeScript reference did; give it an explicit, unique kid (for example with `keygen --kid`) before you rotate, or two keys will share one kid in verifier caches"
                ),
            ));
        }
        findings
    }

    /// The findings about the other settings: the client list, the TTLs,
    /// the listeners and the variables no setting reads.
    fn settings_findings(&self, config: &Config) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut warn = |kind, severity, message: String| {
            findings.push(finding(kind, severity, message));
        };
        if let ClientsLine::List { variable, names } = &self.clients
            && names.is_empty()
        {
            warn(FindingKind::Other, Severity::Error, no_clients(variable));
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
        if config.listen.public_url.is_none() && !config.listen.host.is_loopback() {
            warn(
                FindingKind::Other,
                Severity::Warning,
                format!(
                    "MACP_AUTH_PUBLIC_URL is unset and {} is not a loopback address: the discovery document builds jwks_uri from each request's Host header (served Cache-Control: private); set MACP_AUTH_PUBLIC_URL to the URL verifiers reach this service by",
                    config.listen.host
                ),
            );
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
}

fn finding(kind: FindingKind, severity: Severity, message: String) -> Finding {
    Finding {
        kind,
        severity,
        message,
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
