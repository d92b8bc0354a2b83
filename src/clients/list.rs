//! The client list as operators write it: parsing, validation, and
//! authentication of a presented secret against the stored digests.
//!
//! Only SHA-256 digests of secrets are ever held, and a presented secret is
//! compared with every digest in constant time, so neither the list nor the
//! timing of a refusal tells an attacker anything about a secret.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConstantTimeEq};

use super::patterns::{Pattern, PatternError};
use crate::text::{PRINTABLE_RULE, is_printable};

/// One entry of the client list, as operators write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientEntry {
    /// Name in logs, metrics and audit records.
    pub(crate) name: String,
    /// Lower-case hex SHA-256 of the client's secret.
    pub(crate) secret_sha256: String,
    /// Patterns of the senders it may mint for (see [`super::patterns`]).
    pub(crate) senders: Vec<String>,
    /// Its own ceiling on token lifetime, below the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_ttl_seconds: Option<u64>,
}

/// A validated client.
#[derive(Clone)]
pub struct Client {
    name: String,
    digest: [u8; 32],
    senders: Vec<String>,
    patterns: Vec<Pattern>,
    max_ttl_seconds: Option<u64>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("senders", &self.senders)
            .field("max_ttl_seconds", &self.max_ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its sender patterns.
    pub(crate) fn senders(&self) -> &[String] {
        &self.senders
    }

    /// Its TTL ceiling, if it has one.
    pub(crate) fn max_ttl_seconds(&self) -> Option<u64> {
        self.max_ttl_seconds
    }

    /// Whether it may mint for `sender`.
    pub(crate) fn may_mint_for(&self, sender: &str) -> bool {
        self.patterns.iter().any(|pattern| pattern.matches(sender))
    }
}

/// The configured clients. An empty list is valid and lets no one mint: it
/// is how an operator revokes every client at once without turning
/// authentication off.
#[derive(Debug, Clone, Default)]
pub struct ClientList {
    clients: Vec<Client>,
}

/// A client list that cannot be used. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientsError {
    /// Not JSON of the expected shape. Only the position is reported:
    /// serde's own message quotes the offending value, which may be a
    /// secret pasted in the wrong place.
    #[error(
        "must be a JSON array of {{\"name\", \"secret_sha256\", \"senders\", \"max_ttl_seconds\"?}} objects (invalid at line {line}, column {column})"
    )]
    Shape {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// One entry is unusable.
    #[error("client {position} ({name:?}): {problem}")]
    Entry {
        /// 1-based position.
        position: usize,
        /// Its name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
    /// Two clients share a name or a secret.
    #[error("has two clients with the same {0}")]
    Duplicate(&'static str),
}

impl ClientList {
    /// Parses and validates a JSON client list.
    pub fn parse(text: &str) -> Result<Self, ClientsError> {
        let entries: Vec<ClientEntry> =
            serde_json::from_str(text).map_err(|err| ClientsError::Shape {
                line: err.line(),
                column: err.column(),
            })?;
        let mut clients: Vec<Client> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let client = validate(index + 1, entry)?;
            if clients.iter().any(|c| c.name == client.name) {
                return Err(ClientsError::Duplicate("name"));
            }
            if clients.iter().any(|c| c.digest == client.digest) {
                return Err(ClientsError::Duplicate("secret"));
            }
            clients.push(client);
        }
        Ok(ClientList { clients })
    }

    /// The client whose secret is `secret`, if any. Every configured digest
    /// is compared, in constant time, whichever matches.
    pub fn authenticate(&self, secret: &str) -> Option<&Client> {
        let presented = sha256(secret.as_bytes());
        let mut found: Option<&Client> = None;
        for client in &self.clients {
            if bool::from(digests_match(&presented, &client.digest)) {
                found = Some(client);
            }
        }
        found
    }

    /// The clients, in configured order.
    pub(crate) fn clients(&self) -> &[Client] {
        &self.clients
    }
}

/// One entry, checked on its own; `position` is 1-based.
fn validate(position: usize, entry: ClientEntry) -> Result<Client, ClientsError> {
    let problem = |problem: String| ClientsError::Entry {
        position,
        name: entry.name.clone(),
        problem,
    };
    if entry.name.trim().is_empty() {
        return Err(problem("\"name\" must be a non-empty string".into()));
    }
    if !is_printable(&entry.name) {
        return Err(problem(format!("\"name\" {PRINTABLE_RULE}")));
    }
    let digest = parse_digest(&entry.secret_sha256)
        .ok_or_else(|| problem("\"secret_sha256\" must be 64 hex digits".into()))?;
    if entry.senders.is_empty() {
        return Err(problem(
            "\"senders\" must list at least one non-empty pattern".into(),
        ));
    }
    let patterns = entry
        .senders
        .iter()
        .map(|text| Pattern::parse(text))
        .collect::<Result<Vec<_>, PatternError>>()
        .map_err(|err| problem(format!("\"senders\": {err}")))?;
    if entry.max_ttl_seconds == Some(0) {
        return Err(problem(
            "\"max_ttl_seconds\" must be a positive integer".into(),
        ));
    }
    Ok(Client {
        name: entry.name,
        digest,
        senders: entry.senders,
        patterns,
        max_ttl_seconds: entry.max_ttl_seconds,
    })
}

/// Constant-time equality of two digests: the time taken does not depend on
/// where, or whether, they differ.
fn digests_match(a: &[u8; 32], b: &[u8; 32]) -> Choice {
    a.ct_eq(b)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, pair) in hex.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[index] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex SHA-256 of a secret, as `secret_sha256` wants it.
pub fn secret_digest_hex(secret: &str) -> String {
    sha256(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A new client: a fresh 256-bit secret (shown once) and its list entry.
pub(crate) fn new_client(
    name: &str,
    senders: Vec<String>,
    max_ttl_seconds: Option<u64>,
) -> Result<(String, ClientEntry), ClientsError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ClientsError::Rng)?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let entry = ClientEntry {
        name: name.to_owned(),
        secret_sha256: secret_digest_hex(&secret),
        senders,
        max_ttl_seconds,
    };
    // Validate it as the service would.
    ClientList::parse(&serde_json::to_string(&[&entry]).expect("entries serialise"))?;
    Ok((secret, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(entries: serde_json::Value) -> Result<ClientList, String> {
        ClientList::parse(&entries.to_string()).map_err(|err| err.to_string())
    }

    #[test]
    fn secrets_authenticate_by_their_digest() {
        let clients = list(json!([
            {"name": "cp", "secret_sha256": secret_digest_hex("s3cret"), "senders": ["agent://*"]},
            {"name": "ex", "secret_sha256": secret_digest_hex("other").to_uppercase(), "senders": ["x"], "max_ttl_seconds": 60}
        ]))
        .unwrap();
        assert_eq!(clients.authenticate("s3cret").map(Client::name), Some("cp"));
        assert_eq!(clients.authenticate("other").map(Client::name), Some("ex"));
        assert!(clients.authenticate("s3cret ").is_none());
        assert!(clients.authenticate("").is_none());
        assert_eq!(clients.clients()[1].max_ttl_seconds(), Some(60));
    }

    #[test]
    fn digests_are_compared_with_a_constant_time_primitive() {
        let a = sha256(b"a");
        let mut b = a;
        assert!(bool::from(digests_match(&a, &b)));
        b[31] ^= 1;
        assert!(!bool::from(digests_match(&a, &b)));
        b = a;
        b[0] ^= 1;
        assert!(!bool::from(digests_match(&a, &b)));
    }

    #[test]
    fn bad_client_lists_are_refused() {
        let digest = secret_digest_hex("x");
        let cases = [
            (json!({}), "must be a JSON array"),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": ["*"], "extra": 1}]),
                "must be a JSON array",
            ),
            (
                json!([{"name": "", "secret_sha256": digest, "senders": ["*"]}]),
                "client 1 (\"\"): \"name\" must be",
            ),
            (
                json!([{"name": "a", "secret_sha256": "abc", "senders": ["*"]}]),
                "client 1 (\"a\"): \"secret_sha256\" must be 64 hex digits",
            ),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": []}]),
                "client 1 (\"a\"): \"senders\" must list",
            ),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": [""]}]),
                "client 1 (\"a\"): \"senders\": a pattern must not be empty",
            ),
            (
                json!([{"name": "a\nINFO forged startup line", "secret_sha256": digest, "senders": ["*"]}]),
                "client 1 (\"a\\nINFO forged startup line\"): \"name\" must not contain control characters",
            ),
            (
                json!([{"name": "a\u{202E}b", "secret_sha256": digest, "senders": ["*"]}]),
                "client 1 (\"a\\u{202e}b\"): \"name\" must not contain control characters",
            ),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": ["*"], "max_ttl_seconds": 0}]),
                "client 1 (\"a\"): \"max_ttl_seconds\" must be a positive integer",
            ),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": ["*"]}, {"name": "a", "secret_sha256": secret_digest_hex("y"), "senders": ["*"]}]),
                "has two clients with the same name",
            ),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": ["*"]}, {"name": "b", "secret_sha256": digest, "senders": ["*"]}]),
                "has two clients with the same secret",
            ),
        ];
        for (entries, expected) in cases {
            let err = list(entries.clone()).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{entries}: {err:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn an_empty_list_is_valid_and_authenticates_no_one() {
        let clients = ClientList::parse("[]").unwrap();
        assert!(clients.clients().is_empty());
        assert!(clients.authenticate("").is_none());
        assert!(clients.authenticate("anything").is_none());
    }

    #[test]
    fn a_shape_error_reports_where_it_is_and_never_the_value() {
        let secret = "hunter2-the-actual-secret";
        let cases = [
            (
                format!(r#"[{{"name": "a", "secret_sha256": "{secret}", "senders": "{secret}"}}]"#),
                "(invalid at line 1, column ",
            ),
            (
                format!("[\n  {{\"name\": \"a\",\n   \"{secret}\": 1}}]"),
                "(invalid at line 3, column ",
            ),
            (format!("[\"{secret}\"]"), "(invalid at line 1, column "),
            (secret.to_owned(), "(invalid at line 1, column 1)"),
        ];
        for (text, position) in cases {
            let err = ClientList::parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("must be a JSON array of"), "{err}");
            assert!(err.contains(position), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{text}: {err}");
        }
    }

    #[test]
    fn a_new_client_gets_a_256_bit_secret_matching_its_entry() {
        let (secret, entry) = new_client("cp", vec!["agent://team-a/*".into()], Some(600)).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
        assert_eq!(entry.secret_sha256, secret_digest_hex(&secret));
        let clients = ClientList::parse(&serde_json::to_string(&[&entry]).unwrap()).unwrap();
        let client = clients.authenticate(&secret).unwrap();
        assert!(client.may_mint_for("agent://team-a/risk"));
        assert!(!client.may_mint_for("agent://team-b/risk"));
        let (other, _) = new_client("cp", vec!["**".into()], None).unwrap();
        assert_ne!(secret, other);
        assert!(new_client("", vec!["**".into()], None).is_err());
    }
}
