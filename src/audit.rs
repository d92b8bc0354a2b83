//! Audit records: one structured event per mint decision, on the `audit`
//! tracing target, so a log pipeline can route them apart from operational
//! logs (with `MACP_AUTH_LOG_FORMAT=json` every field is a JSON member).
//!
//! A record names the outcome, the client (or `-` when minting is
//! unauthenticated), the `sub` of a workload-JWT caller, the peer address,
//! the sender, the requested and effective TTL, the kid, the jti, the scopes
//! and any warning about them. It never carries the token, the caller's JWT
//! or a client secret: the jti identifies the token without revealing it.
//!
//! Callers shape the sender and the scopes, so every string field is
//! recorded as a string value: the text format prints it quoted, with
//! quotes, backslashes and control characters escaped (`sender="a\"b"`), and
//! the JSON format as a JSON string. A sender holding ` outcome=forbidden`
//! or a line feed stays inside its own quoted field, on its own line. The
//! log writer ([`crate::telemetry`]) further escapes the Unicode line
//! separators, which JSON leaves raw.

use std::net::SocketAddr;

use serde_json::{Map, Value};

use crate::clock::rfc3339;

/// The tracing target of audit records.
pub(crate) const TARGET: &str = "audit";

/// What was decided about one mint request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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
    /// The request ran out of time, typically a body that never finished (408).
    TimedOut,
}

impl Outcome {
    /// The label used in audit records and metrics.
    pub(crate) fn as_str(self) -> &'static str {
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
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// Who asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    /// The authenticated client's name, if minting is authenticated.
    pub(crate) client: Option<&'a str>,
    /// The `sub` of the caller's workload JWT, when it used one.
    pub(crate) subject: Option<&'a str>,
    /// The peer address, when known.
    pub(crate) peer: Option<SocketAddr>,
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
pub(crate) struct Issued<'a> {
    /// Who asked.
    pub(crate) caller: Caller<'a>,
    /// The token's subject.
    pub(crate) sender: &'a str,
    /// `ttl_seconds` as requested, if given.
    pub(crate) requested_ttl: Option<f64>,
    /// The lifetime granted.
    pub(crate) effective_ttl: u64,
    /// The signing key.
    pub(crate) kid: &'a str,
    /// The token's id.
    pub(crate) jti: &'a str,
    /// The `macp_scopes` claim.
    pub(crate) scopes: &'a Map<String, Value>,
    /// Issued at, Unix seconds.
    pub(crate) iat: u64,
    /// A warning about the scopes (`allowed_modes_empty`), if any.
    pub(crate) warning: Option<&'static str>,
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

/// Records an issued token. Every string field is a quoted string value.
/// (Formatting the time, peer and scopes up front costs a few microseconds
/// per mint, noise beside a signature; `tracing::enabled!` would skip it but
/// caches its answer per callsite, which misleads per-thread subscribers.)
pub(crate) fn issued(record: &Issued<'_>) {
    let time = rfc3339(record.iat);
    let peer = record.caller.peer();
    let scopes = serde_json::to_string(record.scopes).unwrap_or_default();
    audit_event!(
        record.requested_ttl,
        outcome = Outcome::Issued.as_str(),
        time = time.as_str(),
        client = record.caller.client(),
        caller_sub = record.caller.subject,
        peer = peer.as_str(),
        sender = record.sender,
        ttl = record.effective_ttl,
        kid = record.kid,
        jti = record.jti,
        scopes = scopes.as_str(),
        warning = record.warning,
        "minted token"
    );
}

/// Records a refused mint.
pub(crate) fn denied(
    outcome: Outcome,
    caller: Caller<'_>,
    sender: Option<&str>,
    requested_ttl: Option<f64>,
    reason: &str,
    now: u64,
) {
    let time = rfc3339(now);
    let peer = caller.peer();
    audit_event!(
        requested_ttl,
        outcome = outcome.as_str(),
        time = time.as_str(),
        client = caller.client(),
        caller_sub = caller.subject,
        peer = peer.as_str(),
        sender = sender.unwrap_or("-"),
        reason,
        "mint refused"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::memory::MemoryLog;

    /// The `key=value` pairs of a logfmt line, as a logfmt parser reads
    /// them: a value is either quoted (with backslash escapes) or runs to
    /// the next space.
    fn logfmt_pairs(line: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut rest = line;
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].rsplit(' ').next().unwrap_or("").to_owned();
            let after = &rest[eq + 1..];
            let (value, consumed) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((index, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = index + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, 1 + end)
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_owned(), end)
            };
            pairs.push((key, value));
            rest = &after[consumed..];
        }
        pairs
    }

    #[test]
    fn text_records_quote_every_string_field_so_callers_cannot_add_fields() {
        let buffer = MemoryLog::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Interest is cached per callsite across threads; recompute it now
        // that this thread's subscriber exists.
        tracing::callsite::rebuild_interest_cache();
        let sender = "agent://x outcome=forbidden jti=forged\" kid=\"evil\nINFO next";
        let scopes: Map<String, Value> =
            serde_json::from_str(r#"{"a b":"c=d \" e","f":"line\nbreak"}"#).unwrap();
        issued(&Issued {
            caller: Caller {
                client: Some("control-plane"),
                subject: None,
                peer: None,
            },
            sender,
            requested_ttl: None,
            effective_ttl: 60,
            kid: "k1",
            jti: "the-jti",
            scopes: &scopes,
            iat: 0,
            warning: None,
        });
        denied(
            Outcome::Forbidden,
            Caller {
                client: None,
                subject: Some("system:serviceaccount:macp:evil\" outcome=\"issued"),
                peer: None,
            },
            Some(sender),
            Some(5.0),
            "sender not allowed",
            0,
        );
        let text = buffer.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let issued_pairs = logfmt_pairs(lines[0]);
        let keys: Vec<&str> = issued_pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "outcome", "time", "client", "peer", "sender", "ttl", "kid", "jti", "scopes"
            ],
            "{}",
            lines[0]
        );
        let value = |pairs: &[(String, String)], key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(value(&issued_pairs, "outcome"), "issued");
        assert_eq!(value(&issued_pairs, "jti"), "the-jti");
        assert_eq!(value(&issued_pairs, "kid"), "k1");
        // Escapes are read back as the character after the backslash.
        assert_eq!(
            value(&issued_pairs, "sender"),
            sender.replace('\n', "n"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("outcome=\"issued\" time=\""),
            "{}",
            lines[0]
        );
        let denied_pairs = logfmt_pairs(lines[1]);
        let keys: Vec<&str> = denied_pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "requested_ttl",
                "outcome",
                "time",
                "client",
                "caller_sub",
                "peer",
                "sender",
                "reason"
            ],
            "{}",
            lines[1]
        );
        assert_eq!(value(&denied_pairs, "outcome"), "forbidden");
    }
}
