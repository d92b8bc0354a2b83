//! `check-config`: load the configuration, keys and client list exactly as
//! serving would, and report the startup fingerprint and every finding.

use std::process::ExitCode;

use super::{CommandError, fail};
use crate::app::fingerprint::Fingerprint;
use crate::clients::{Client, ClientStore};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::server::fit_to_descriptors;
use crate::keys::store::{LoadedRing, load_ring};
use crate::ratelimit::MintRateLimiter;
use crate::reload::Source;

/// What `check-config` found: the key source, the startup fingerprint, and
/// one line per minting client (its kind, patterns and ceilings; never a
/// secret).
pub(crate) type Checked = (Source, Fingerprint, Vec<String>);

/// The fingerprint of what serving with `config` would use right now. Loads
/// the keys and clients exactly as serving does, so a source that would stop
/// startup fails here too.
pub(crate) fn check_config(config: &Config) -> Result<Checked, CommandError> {
    let now = SystemClock.now();
    let LoadedRing { ring, source, .. } = load_ring(config, now)?;
    let clients = ClientStore::from_config(config)?;
    if let Some(limit) = config.clients.rate_limit {
        // Built as serving builds it, so a limit serving would refuse fails here.
        MintRateLimiter::new(limit).ok_or_else(|| {
            CommandError::Usage(
                "invalid configuration: MACP_AUTH_RATE_LIMIT_PER_SECOND and MACP_AUTH_RATE_LIMIT_BURST cannot be represented by the rate limiter".into(),
            )
        })?;
    }
    let line = Fingerprint::clients_line(clients.source(), clients.names());
    let (_, descriptors) = fit_to_descriptors(config.limits.max_connections);
    let fingerprint = Fingerprint::new(config, &ring, &source, line, now).with_warning(descriptors);
    let client_lines = clients
        .current()
        .as_ref()
        .as_ref()
        .map(|list| list.clients().iter().map(Client::describe).collect())
        .unwrap_or_default();
    Ok((source, fingerprint, client_lines))
}

/// Runs `check-config` on the process environment: prints the report and
/// exits 0, or prints the error and exits 1. With `strict`, any warning or
/// error line in the report also makes it exit 1.
pub fn run(require_pinned_key: bool, strict: bool) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(format_args!("invalid configuration: {err}")),
    };
    let (source, fingerprint, client_lines) = match check_config(&config) {
        Ok(checked) => checked,
        Err(err) => return fail(format_args!("{err}")),
    };
    print!("{}", fingerprint.report());
    for line in client_lines {
        println!("{line}");
    }
    if source == Source::Unset {
        if require_pinned_key {
            return fail(format_args!(
                "no pinned key: neither MACP_AUTH_SIGNING_KEY_JSON nor MACP_AUTH_SIGNING_KEY_FILE is set, so serving would use an ephemeral key"
            ));
        }
        eprintln!(
            "macp-auth-service: warning: no pinned key is configured; serving would use an ephemeral key"
        );
    }
    let findings = fingerprint.findings.len();
    if strict && findings > 0 {
        let noun = if findings == 1 { "finding" } else { "findings" };
        return fail(format_args!(
            "--strict: {findings} {noun} (the warning: and error: lines above); fix them, or drop --strict to accept them"
        ));
    }
    ExitCode::SUCCESS
}
