//! Audit records: one structured event per mint decision, on the `audit`
//! tracing target, so a log pipeline can route them apart from operational
//! logs (with `MACP_AUTH_LOG_FORMAT=json` every field is a JSON member).
//!
//! A record names the outcome, the client (or `-` when minting is
//! unauthenticated), the `sub` of a workload-JWT caller, the peer address,
//! the sender, the requested and effective TTL, the kid, the jti, the scopes
//! and any warning about them. It never carries the token, the caller's JWT
//! or a client secret: the jti identifies the token without revealing it.

use std::net::SocketAddr;

use serde_json::{Map, Value};

use crate::clock::rfc3339;

/// The tracing target of audit records.
pub const TARGET: &str = "audit";

/// What was decided about one mint request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A token was issued.
    Issued,
    /// No usable credentials (401).
    Unauthenticated,
    /// The client may not mint for this sender (403).
    Forbidden,
    /// The client's rate limit refused it (429).
    RateLimited,
    /// The request was malformed (400, 413, 415).
    Invalid,
    /// A workload JWT's issuer keys could not be fetched (503).
    Unavailable,
    /// The signing queue was full (503).
    Overloaded,
    /// The external key store failed or timed out (503).
    BackendUnavailable,
    /// A server-side failure (500).
    Failed,
}

impl Outcome {
    /// The label used in audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::RateLimited => "rate_limited",
            Outcome::Invalid => "invalid",
            Outcome::Unavailable => "unavailable",
            Outcome::Overloaded => "overloaded",
            Outcome::BackendUnavailable => "backend_unavailable",
            Outcome::Failed => "failed",
        }
    }
}

/// Who asked.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The authenticated client's name, if minting is authenticated.
    pub client: Option<&'a str>,
    /// The `sub` of the caller's workload JWT, when it used one.
    pub subject: Option<&'a str>,
    /// The peer address, when known.
    pub peer: Option<SocketAddr>,
}

impl Caller<'_> {
    fn client(&self) -> &str {
        self.client.unwrap_or("-")
    }

    fn peer(&self) -> String {
        self.peer
            .map_or_else(|| "-".to_owned(), |peer| peer.to_string())
    }
}

/// An issued token's record.
#[derive(Debug, Clone, Copy)]
pub struct Issued<'a> {
    /// Who asked.
    pub caller: Caller<'a>,
    /// The token's subject.
    pub sender: &'a str,
    /// `ttl_seconds` as requested, if given.
    pub requested_ttl: Option<f64>,
    /// The lifetime granted.
    pub effective_ttl: u64,
    /// The signing key.
    pub kid: &'a str,
    /// The token's id.
    pub jti: &'a str,
    /// The `macp_scopes` claim.
    pub scopes: &'a Map<String, Value>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// A warning about the scopes (`allowed_modes_empty`), if any.
    pub warning: Option<&'static str>,
}

/// Emits one audit event; `requested_ttl` becomes a number field when the
/// request named one and is left out otherwise.
macro_rules! audit_event {
    ($requested_ttl:expr, $($field:tt)*) => {
        match $requested_ttl {
            Some(requested_ttl) => tracing::info!(target: TARGET, requested_ttl, $($field)*),
            None => tracing::info!(target: TARGET, $($field)*),
        }
    };
}

/// Writes a JSON object when displayed; field values are only formatted
/// when the event is enabled, so a filtered-out record costs nothing.
struct Json<'a>(&'a Map<String, Value>);

impl std::fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self.0).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

/// Records an issued token. Text fields are escaped (`escape_debug`), so a
/// crafted sender cannot forge log lines, and carry no extra quoting.
pub fn issued(record: &Issued<'_>) {
    audit_event!(
        record.requested_ttl,
        outcome = Outcome::Issued.as_str(),
        time = %rfc3339(record.iat),
        client = record.caller.client(),
        caller_sub = record.caller.subject.map(|sub| display(sub.escape_debug())),
        peer = %record.caller.peer(),
        sender = %record.sender.escape_debug(),
        ttl = record.effective_ttl,
        kid = %record.kid,
        jti = %record.jti,
        scopes = %Json(record.scopes),
        warning = record.warning,
        "minted token"
    );
}

/// Records a refused mint.
pub fn denied(
    outcome: Outcome,
    caller: Caller<'_>,
    sender: Option<&str>,
    requested_ttl: Option<f64>,
    reason: &str,
    now: u64,
) {
    audit_event!(
        requested_ttl,
        outcome = outcome.as_str(),
        time = %rfc3339(now),
        client = caller.client(),
        caller_sub = caller.subject.map(|sub| display(sub.escape_debug())),
        peer = %caller.peer(),
        sender = %sender.unwrap_or("-").escape_debug(),
        reason,
        "mint refused"
    );
}
