//! The client list as operators write it: parsing, validation, and
//! authentication of a presented secret against the stored digests.
//!
//! Only SHA-256 digests of secrets are ever held, and a presented secret is
//! compared with every digest in constant time, so neither the list nor the
//! timing of a refusal tells an attacker anything about a secret. An entry
//! may instead (or also) trust a workload identity ([`super::jwt`]), and may
//! cap the scopes it grants ([`super::ceiling`]).

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConstantTimeEq};

use super::ceiling::ScopeCeiling;
use super::jwt::{self, JwtClient, JwtTrust, KeyRegistry};
use super::patterns::{Pattern, PatternError};
use crate::text::{PRINTABLE_RULE, is_printable};

/// One entry of the client list, as operators write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientEntry {
    /// Name in logs, metrics and audit records.
    pub(crate) name: String,
    /// Lower-case hex SHA-256 of the client's secret; optional with `jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_sha256: Option<String>,
    /// The workload identity it may authenticate with instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jwt: Option<JwtTrust>,
    /// Patterns of the senders it may mint for (see [`super::patterns`]).
    pub(crate) senders: Vec<String>,
    /// Its own ceiling on token lifetime, below the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_ttl_seconds: Option<u64>,
    /// Its ceiling on the scopes it may grant.
    #[serde(default, skip_serializing_if = "ScopeCeiling::is_empty")]
    pub(crate) scopes: ScopeCeiling,
}

/// A validated client.
#[derive(Clone)]
pub struct Client {
    name: String,
    digest: Option<[u8; 32]>,
    jwt: Option<JwtClient>,
    senders: Vec<String>,
    patterns: Vec<Pattern>,
    max_ttl_seconds: Option<u64>,
    ceiling: ScopeCeiling,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("jwt", &self.jwt.as_ref().map(|jwt| &jwt.trust))
            .field("senders", &self.senders)
            .field("max_ttl_seconds", &self.max_ttl_seconds)
            .field("ceiling", &self.ceiling)
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

    /// Its scope ceiling (empty when it has none).
    pub(crate) fn ceiling(&self) -> &ScopeCeiling {
        &self.ceiling
    }

    /// Its workload identity, if it may authenticate with one.
    pub(crate) fn jwt(&self) -> Option<&JwtClient> {
        self.jwt.as_ref()
    }

    /// How it authenticates: `secret`, `jwt` or `secret+jwt`.
    pub(crate) fn kind(&self) -> &'static str {
        match (self.digest.is_some(), self.jwt.is_some()) {
            (true, true) => "secret+jwt",
            (false, true) => "jwt",
            _ => "secret",
        }
    }

    /// One line for `check-config`: how it authenticates, its patterns and
    /// ceilings. Never a secret or a digest.
    pub(crate) fn describe(&self) -> String {
        let mut line = format!("client {}: kind={}", self.name, self.kind());
        if let Some(jwt) = &self.jwt {
            let keys = match &jwt.keys {
                jwt::KeyHandle::Static(_) => format!(
                    "file {}",
                    jwt.trust
                        .jwks_file
                        .as_deref()
                        .map_or_else(String::new, |p| p.display().to_string())
                ),
                jwt::KeyHandle::Remote(remote) => remote.describe(),
            };
            line.push_str(&format!(
                " issuer={} audiences={} subjects={} keys={keys}",
                jwt.trust.issuer,
                jwt.trust.audiences.join(","),
                jwt.trust.subjects.join(","),
            ));
        }
        let max_ttl = self
            .max_ttl_seconds
            .map_or_else(|| "-".to_owned(), |ttl| ttl.to_string());
        line.push_str(&format!(
            " senders={} max_ttl_seconds={max_ttl} scopes_ceiling={}",
            self.senders.join(","),
            self.ceiling.describe()
        ));
        line
    }

    /// Whether it may mint for `sender`.
    pub(crate) fn may_mint_for(&self, sender: &str) -> bool {
        self.patterns.iter().any(|pattern| pattern.matches(sender))
    }
}

/// Why one entry is unusable.
enum EntryFailure {
    /// Named by the entry's name and the problem.
    Problem(String, String),
    /// Shares a name or secret with an earlier entry.
    Duplicate(&'static str),
}

impl Client {
    /// Validates one entry against the clients before it.
    fn from_entry(
        entry: ClientEntry,
        registry: &KeyRegistry,
        earlier: &[Client],
    ) -> Result<Client, EntryFailure> {
        let problem = |problem: &str| EntryFailure::Problem(entry.name.clone(), problem.to_owned());
        if entry.name.trim().is_empty() {
            return Err(problem("\"name\" must be a non-empty string"));
        }
        if !is_printable(&entry.name) {
            return Err(problem(&format!("\"name\" {PRINTABLE_RULE}")));
        }
        let digest = match &entry.secret_sha256 {
            Some(hex) => Some(
                parse_digest(hex)
                    .ok_or_else(|| problem("\"secret_sha256\" must be 64 hex digits"))?,
            ),
            None if entry.jwt.is_none() => {
                return Err(problem("needs \"secret_sha256\" or \"jwt\" (or both)"));
            }
            None => None,
        };
        if entry.senders.is_empty() {
            return Err(problem(
                "\"senders\" must list at least one non-empty pattern",
            ));
        }
        let patterns = entry
            .senders
            .iter()
            .map(|text| Pattern::parse(text))
            .collect::<Result<Vec<_>, PatternError>>()
            .map_err(|err| problem(&format!("\"senders\": {err}")))?;
        if entry.max_ttl_seconds == Some(0) {
            return Err(problem("\"max_ttl_seconds\" must be a positive integer"));
        }
        if earlier.iter().any(|c| c.name == entry.name) {
            return Err(EntryFailure::Duplicate("name"));
        }
        if digest.is_some() && earlier.iter().any(|c| c.digest == digest) {
            return Err(EntryFailure::Duplicate("secret"));
        }
        let jwt = match entry.jwt {
            None => None,
            Some(trust) => {
                trust.validate().map_err(problem)?;
                let jwt = JwtClient::new(trust, registry)
                    .map_err(|why| EntryFailure::Problem(entry.name.clone(), why))?;
                let clash = earlier.iter().filter_map(|c| c.jwt.as_ref()).any(|other| {
                    other.trust.issuer == jwt.trust.issuer && !other.same_key_source(&jwt)
                });
                if clash {
                    return Err(problem(
                        "\"jwt\" must name the same \"jwks_uri\", \"jwks_file\" and \"ca_file\" as the other clients of its issuer",
                    ));
                }
                Some(jwt)
            }
        };
        Ok(Client {
            name: entry.name,
            digest,
            jwt,
            senders: entry.senders,
            patterns,
            max_ttl_seconds: entry.max_ttl_seconds,
            ceiling: entry.scopes,
        })
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
        "must be a JSON array of {{\"name\", \"secret_sha256\"?, \"jwt\"?, \"senders\", \"max_ttl_seconds\"?, \"scopes\"?}} objects (invalid at line {line}, column {column})"
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
    /// Parses and validates a JSON client list, with fresh issuer key
    /// caches.
    pub fn parse(text: &str) -> Result<Self, ClientsError> {
        ClientList::parse_with(text, &KeyRegistry::default())
    }

    /// Parses and validates a JSON client list; JWT clients take their
    /// remote key caches from `registry`, so a reload keeps them.
    pub(crate) fn parse_with(text: &str, registry: &KeyRegistry) -> Result<Self, ClientsError> {
        let entries: Vec<ClientEntry> =
            serde_json::from_str(text).map_err(|err| ClientsError::Shape {
                line: err.line(),
                column: err.column(),
            })?;
        let mut clients: Vec<Client> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let client =
                Client::from_entry(entry, registry, &clients).map_err(|failure| match failure {
                    EntryFailure::Problem(name, problem) => ClientsError::Entry {
                        position: index + 1,
                        name,
                        problem,
                    },
                    EntryFailure::Duplicate(what) => ClientsError::Duplicate(what),
                })?;
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
            if let Some(digest) = &client.digest
                && bool::from(digests_match(&presented, digest))
            {
                found = Some(client);
            }
        }
        found
    }

    /// Whether any client may authenticate with a workload JWT.
    pub(crate) fn has_jwt_clients(&self) -> bool {
        self.clients.iter().any(|client| client.jwt.is_some())
    }

    /// The `jwks_file`s the list reads, in list order.
    pub(crate) fn jwks_files(&self) -> Vec<&Path> {
        self.clients
            .iter()
            .filter_map(|client| client.jwt.as_ref()?.trust.jwks_file.as_deref())
            .collect()
    }

    /// The clients, in configured order.
    pub(crate) fn clients(&self) -> &[Client] {
        &self.clients
    }
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

/// What `clients new` asks for.
#[derive(Debug, Clone)]
pub(crate) struct NewClient {
    /// Its name.
    pub(crate) name: String,
    /// Its sender patterns.
    pub(crate) senders: Vec<String>,
    /// Its TTL ceiling.
    pub(crate) max_ttl_seconds: Option<u64>,
    /// Its workload identity; without one, a secret is generated.
    pub(crate) jwt: Option<JwtTrust>,
    /// Its scope ceiling.
    pub(crate) scopes: ScopeCeiling,
}

/// A new list entry, validated as the service would; with a fresh 256-bit
/// secret (to be shown once) unless the client authenticates with a JWT.
pub(crate) fn new_entry(spec: NewClient) -> Result<(Option<String>, ClientEntry), ClientsError> {
    let secret = match spec.jwt {
        Some(_) => None,
        None => {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ClientsError::Rng)?;
            Some(URL_SAFE_NO_PAD.encode(bytes))
        }
    };
    let entry = ClientEntry {
        name: spec.name,
        secret_sha256: secret.as_deref().map(secret_digest_hex),
        jwt: spec.jwt,
        senders: spec.senders,
        max_ttl_seconds: spec.max_ttl_seconds,
        scopes: spec.scopes,
    };
    ClientList::parse(&serde_json::to_string(&[&entry]).expect("entries serialise"))?;
    Ok((secret, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A new secret client, as `clients new` makes it.
    fn new_client(
        name: &str,
        senders: Vec<String>,
        max_ttl_seconds: Option<u64>,
    ) -> Result<(String, ClientEntry), ClientsError> {
        let (secret, entry) = new_entry(NewClient {
            name: name.to_owned(),
            senders,
            max_ttl_seconds,
            jwt: None,
            scopes: ScopeCeiling::default(),
        })?;
        Ok((secret.expect("a client without jwt gets a secret"), entry))
    }

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
        assert_eq!(entry.secret_sha256, Some(secret_digest_hex(&secret)));
        let clients = ClientList::parse(&serde_json::to_string(&[&entry]).unwrap()).unwrap();
        let client = clients.authenticate(&secret).unwrap();
        assert!(client.may_mint_for("agent://team-a/risk"));
        assert!(!client.may_mint_for("agent://team-b/risk"));
        let (other, _) = new_client("cp", vec!["**".into()], None).unwrap();
        assert_ne!(secret, other);
        assert!(new_client("", vec!["**".into()], None).is_err());
    }

    #[test]
    fn jwt_and_ceiling_entries_are_checked_with_their_position() {
        let digest = secret_digest_hex("x");
        let jwt = json!({"issuer": "https://kubernetes.default.svc", "audiences": ["macp-auth-service"], "subjects": ["system:serviceaccount:macp:*"]});
        let cases = [
            (
                json!([{"name": "a", "senders": ["*"]}]),
                "client 1 (\"a\"): needs \"secret_sha256\" or \"jwt\" (or both)",
            ),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": ["*"]}, {"name": "b", "jwt": {"issuer": "https://k", "audiences": [], "subjects": ["*"]}, "senders": ["*"]}]),
                "client 2 (\"b\"): \"jwt.audiences\" must list at least one non-empty audience",
            ),
            (
                json!([{"name": "a", "jwt": jwt, "senders": ["*"]}, {"name": "b", "jwt": {"issuer": "https://kubernetes.default.svc", "audiences": ["x"], "subjects": ["*"], "jwks_uri": "https://kubernetes.default.svc/openid/v1/jwks"}, "senders": ["*"]}]),
                "client 2 (\"b\"): \"jwt\" must name the same",
            ),
            (
                json!([{"name": "a", "jwt": {"issuer": "spiffe://x", "audiences": ["a"], "subjects": ["*"], "jwks_file": "/nonexistent/jwks.json"}, "senders": ["*"]}]),
                "client 1 (\"a\"): \"jwt.jwks_file\" /nonexistent/jwks.json cannot be read",
            ),
            (
                json!([{"name": "a", "jwt": {"issuer": "https://k", "audiences": ["a"], "subjects": ["*"], "extra": 1}, "senders": ["*"]}]),
                "must be a JSON array",
            ),
            (
                json!([{"name": "a", "secret_sha256": digest, "senders": ["*"], "scopes": {"max_open_sessions": -1}}]),
                "must be a JSON array",
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
    fn secret_and_jwt_clients_share_one_list() {
        let clients = list(json!([
            {"name": "cp", "secret_sha256": secret_digest_hex("s3cret"), "senders": ["agent://*"]},
            {"name": "k8s", "jwt": {"issuer": "https://kubernetes.default.svc", "audiences": ["macp-auth-service"], "subjects": ["system:serviceaccount:macp:*"]}, "senders": ["agent://*"], "scopes": {"is_observer": true}},
            {"name": "both", "secret_sha256": secret_digest_hex("other"), "jwt": {"issuer": "https://kubernetes.default.svc", "audiences": ["x"], "subjects": ["*"]}, "senders": ["*"]}
        ]))
        .unwrap();
        assert!(clients.has_jwt_clients());
        let kinds: Vec<&str> = clients.clients().iter().map(Client::kind).collect();
        assert_eq!(kinds, ["secret", "jwt", "secret+jwt"]);
        assert_eq!(clients.authenticate("s3cret").map(Client::name), Some("cp"));
        assert_eq!(
            clients.authenticate("other").map(Client::name),
            Some("both")
        );
        assert_eq!(clients.clients()[1].ceiling().is_observer, Some(true));
        assert!(clients.clients()[0].ceiling().is_empty());
    }

    #[test]
    fn a_jwt_client_entry_round_trips_without_a_secret() {
        let (secret, entry) = new_entry(NewClient {
            name: "k8s".into(),
            senders: vec!["agent://*".into()],
            max_ttl_seconds: Some(900),
            jwt: Some(JwtTrust {
                issuer: "https://kubernetes.default.svc".into(),
                audiences: vec!["macp-auth-service".into()],
                subjects: vec!["system:serviceaccount:macp:*".into()],
                jwks_uri: None,
                jwks_file: None,
                ca_file: None,
            }),
            scopes: ScopeCeiling {
                max_open_sessions: Some(5),
                ..ScopeCeiling::default()
            },
        })
        .unwrap();
        assert_eq!(secret, None);
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            json!({"name": "k8s", "jwt": {"issuer": "https://kubernetes.default.svc", "audiences": ["macp-auth-service"], "subjects": ["system:serviceaccount:macp:*"]}, "senders": ["agent://*"], "max_ttl_seconds": 900, "scopes": {"max_open_sessions": 5}})
        );
    }

    #[test]
    fn a_client_describes_itself_without_its_secret() {
        let digest = secret_digest_hex("s3cret");
        let clients = list(json!([
            {"name": "cp", "secret_sha256": digest, "senders": ["agent://a/*", "agent://b"], "max_ttl_seconds": 600},
            {"name": "k8s", "jwt": {"issuer": "https://kubernetes.default.svc", "audiences": ["macp-auth-service"], "subjects": ["system:serviceaccount:macp:*"]}, "senders": ["agent://*"], "scopes": {"max_open_sessions": 25}}
        ]))
        .unwrap();
        let lines: Vec<String> = clients.clients().iter().map(Client::describe).collect();
        assert_eq!(
            lines,
            [
                "client cp: kind=secret senders=agent://a/*,agent://b max_ttl_seconds=600 scopes_ceiling=none",
                "client k8s: kind=jwt issuer=https://kubernetes.default.svc audiences=macp-auth-service subjects=system:serviceaccount:macp:* keys=https://kubernetes.default.svc/.well-known/openid-configuration senders=agent://* max_ttl_seconds=- scopes_ceiling={\"max_open_sessions\":25}",
            ]
        );
        assert!(!lines.concat().contains(&digest));
    }
}
