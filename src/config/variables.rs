//! The one table of variables the service reads: name, default, one line of
//! meaning, and the group the deployment guide files it under.
//!
//! The image ships no README, so `serve --help` is generated from this table,
//! and a test compares the table with the names [`Config::from_lookup`]
//! actually looks up: a variable cannot be read without being documented
//! here, nor documented without being read. The same table (plus the few
//! names other programs read) is what a misspelt `MACP_AUTH_*` variable is
//! judged against.
//!
//! [`Config::from_lookup`]: super::Config::from_lookup

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;

use super::vars;

/// The sections of the deployment guide's variable reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    ListenerAndTokens,
    SigningKeys,
    KeyCustody,
    Clients,
    Operations,
    Traces,
}

impl Group {
    const ALL: [Group; 6] = [
        Group::ListenerAndTokens,
        Group::SigningKeys,
        Group::KeyCustody,
        Group::Clients,
        Group::Operations,
        Group::Traces,
    ];

    fn title(self) -> &'static str {
        match self {
            Group::ListenerAndTokens => "Listener and tokens",
            Group::SigningKeys => "Signing keys",
            Group::KeyCustody => "Keys in an HSM or AWS KMS",
            Group::Clients => "Minting clients and rate limits",
            Group::Operations => "Operations",
            Group::Traces => "Traces (OpenTelemetry)",
        }
    }
}

/// One variable the configuration reads.
#[derive(Debug)]
pub(crate) struct Variable {
    pub(crate) name: &'static str,
    pub(crate) default: &'static str,
    pub(crate) meaning: &'static str,
    pub(crate) group: Group,
}

const fn var(
    name: &'static str,
    default: &'static str,
    meaning: &'static str,
    group: Group,
) -> Variable {
    Variable {
        name,
        default,
        meaning,
        group,
    }
}

use Group::{Clients, KeyCustody, ListenerAndTokens, Operations, SigningKeys, Traces};

/// Every variable [`super::Config`] reads, in the deployment guide's order.
#[rustfmt::skip]
pub(crate) const VARIABLES: &[Variable] = &[
    var(vars::PORT, "3200", "TCP port to listen on (1-65535)", ListenerAndTokens),
    var(vars::HOST, "0.0.0.0", "IP address to bind; 127.0.0.1 keeps minting local", ListenerAndTokens),
    var(vars::ISSUER, "macp-auth-service", "the iss claim; must equal the runtime's MACP_AUTH_ISSUER", ListenerAndTokens),
    var(vars::AUDIENCE, "macp-runtime", "the aud claim; must equal the runtime's MACP_AUTH_AUDIENCE", ListenerAndTokens),
    var(vars::MAX_TTL, "3600", "longest token lifetime in seconds; requests asking more are held to it", ListenerAndTokens),
    var(vars::DEFAULT_TTL, "300", "token lifetime in seconds when a request names none", ListenerAndTokens),
    var(vars::PUBLIC_URL, "unset", "base URL verifiers reach this service at, for discovery's jwks_uri", ListenerAndTokens),
    var(vars::SIGNING_ALG, "RS256", "RS256 or ES256; every key must be of this type", SigningKeys),
    var(vars::SIGNING_KEY_JSON, "unset", "private key(s) inline: a JWK, a JWK Set (key ring) or PEM", SigningKeys),
    var(vars::SIGNING_KEY_FILE, "unset", "file holding the same formats, re-read on SIGHUP and on change; with neither, the key is ephemeral", SigningKeys),
    var(vars::KEY_PREPUBLISH, "600", "seconds a key should be published before it signs; less is warned about", SigningKeys),
    var(vars::KEY_POLL, "10", "seconds between checks of the key and client files; 0 means SIGHUP only", SigningKeys),
    var(vars::JWKS_MAX_AGE, "300", "ceiling in seconds of the JWKS Cache-Control max-age", SigningKeys),
    var(vars::PKCS11_MODULE, "unset", "PKCS#11 module (.so) for pkcs11 ring members whose URI has no module-path", KeyCustody),
    var(vars::PKCS11_PIN, "unset", "the token's user PIN for pkcs11 members (prefer the file)", KeyCustody),
    var(vars::PKCS11_PIN_FILE, "unset", "file holding that PIN, read at every load", KeyCustody),
    var(vars::SIGNING_TIMEOUT_MS, "2000", "deadline in ms of one signature through an HSM or KMS (then 503)", KeyCustody),
    var(vars::CLIENTS_FILE, "unset", "file holding the JSON client list, re-read with the key file", Clients),
    var(vars::CLIENTS_JSON, "unset", "the JSON client list inline; with neither, minting is unauthenticated", Clients),
    var(vars::ALLOW_UNAUTHENTICATED, "false", "true: unauthenticated minting on a non-loopback address is intended (a warning, not an error)", Clients),
    var(vars::RATE_LIMIT_PER_SECOND, "unset", "sustained mints per second per client (or per peer IP); unset means no limit", Clients),
    var(vars::RATE_LIMIT_BURST, "the rate, rounded up", "mints allowed at once after a quiet spell", Clients),
    var(vars::LOG_FORMAT, "text", "text or json (one object per line)", Operations),
    var(vars::METRICS_ADDR, "unset", "IP:port to serve /metrics on instead of the main port", Operations),
    var(vars::SHUTDOWN_DELAY, "0", "seconds to keep serving after SIGTERM with readiness failing", Operations),
    var(vars::REQUEST_TIMEOUT, "10", "longest a request may take in seconds, body included (then 408)", Operations),
    var(vars::HEADER_READ_TIMEOUT, "5", "longest a client may take to send its headers, in seconds", Operations),
    var(vars::MAX_CONNECTIONS, "4096", "connections served at once; more wait in the backlog", Operations),
    var(vars::RUST_LOG, "info", "log filter, e.g. info or macp_auth_service=debug,warn", Operations),
    var(vars::OTEL_ENDPOINT, "unset: no traces", "collector base URL, http:// only; /v1/traces is appended", Traces),
    var(vars::OTEL_TRACES_ENDPOINT, "unset", "full traces URL, used as given; wins over the base URL", Traces),
    var(vars::OTEL_PROTOCOL, "http/protobuf", "only http/protobuf is built in: grpc or http/json stop startup", Traces),
    var(vars::OTEL_TRACES_PROTOCOL, "unset", "the same, for traces only", Traces),
    var(vars::OTEL_HEADERS, "unset", "key=value,... headers sent to the collector (values never logged)", Traces),
    var(vars::OTEL_TRACES_HEADERS, "unset", "the same, for traces only; replaces the general headers", Traces),
    var(vars::OTEL_TIMEOUT, "10000", "milliseconds one export may take, connection included", Traces),
    var(vars::OTEL_TRACES_TIMEOUT, "unset", "the same, for traces only", Traces),
    var(vars::OTEL_COMPRESSION, "none", "only none is built in: gzip stops startup", Traces),
    var(vars::OTEL_TRACES_COMPRESSION, "unset", "the same, for traces only", Traces),
    var(vars::OTEL_SERVICE_NAME, "macp-auth-service", "the service.name resource attribute", Traces),
    var(vars::OTEL_RESOURCE_ATTRIBUTES, "unset", "key=value,... resource attributes, values percent-encoded", Traces),
    var(vars::OTEL_SAMPLER, "parentbased_always_on", "always_on, always_off, traceidratio, or parentbased_ of one", Traces),
    var(vars::OTEL_SAMPLER_ARG, "1.0 with a ratio sampler", "the ratio (0 to 1) of a traceidratio sampler; refused with others", Traces),
    var(vars::OTEL_TRACES_EXPORTER, "otlp", "otlp, or none to turn traces off", Traces),
    var(vars::OTEL_SDK_DISABLED, "false", "true turns traces off", Traces),
    var(vars::OTEL_BSP_MAX_QUEUE_SIZE, "2048", "spans waiting for export at most; more are dropped and counted", Traces),
    var(vars::OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "512", "spans per export request at most (no more than the queue)", Traces),
    var(vars::OTEL_BSP_SCHEDULE_DELAY, "5000", "milliseconds between exports of a partial batch", Traces),
];

/// `MACP_AUTH_*` names other programs read, which may share this service's
/// environment (a ConfigMap shared with the runtime, for instance). They are
/// not misspellings, so they are never warned about.
const READ_ELSEWHERE: &[&str] = &["MACP_AUTH_JWKS_URL", "MACP_AUTH_JWKS_TTL_SECS"];

/// The prefix every variable of this service (but `PORT`, `HOST` and
/// `RUST_LOG`) carries.
const PREFIX: &str = "MACP_AUTH_";

/// The `MACP_AUTH_*` names among `names` that nothing reads, sorted, each
/// with the known name it is probably a misspelling of.
pub(crate) fn unknown_variables(
    names: impl IntoIterator<Item = OsString>,
) -> Vec<(String, Option<&'static str>)> {
    let known: BTreeSet<&str> = VARIABLES
        .iter()
        .map(|variable| variable.name)
        .chain(READ_ELSEWHERE.iter().copied())
        .collect();
    let unknown: BTreeSet<String> = names
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.starts_with(PREFIX) && !known.contains(name.as_str()))
        .collect();
    unknown
        .into_iter()
        .map(|name| {
            let guess = closest(&name, &known);
            (name, guess)
        })
        .collect()
}

/// The known name `name` most likely misspells: one it abbreviates, or one
/// within a few edits of it.
fn closest(name: &str, known: &BTreeSet<&'static str>) -> Option<&'static str> {
    let by_prefix = known
        .iter()
        .filter(|candidate| candidate.starts_with(name) || name.starts_with(**candidate))
        .min_by_key(|candidate| candidate.len().abs_diff(name.len()));
    if let Some(found) = by_prefix {
        return Some(found);
    }
    known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The variable reference for `serve --help`: every variable with its
/// default and meaning, grouped as in the deployment guide.
pub(crate) fn variables_help() -> String {
    let mut help = String::from(
        "Environment variables, read once at startup (a bad value stops startup with one line naming it):\n",
    );
    for group in Group::ALL {
        let _ = write!(help, "\n{}:\n", group.title());
        for variable in VARIABLES.iter().filter(|variable| variable.group == group) {
            let _ = writeln!(
                help,
                "  {} [default: {}]\n      {}",
                variable.name, variable.default, variable.meaning
            );
        }
    }
    help.push_str(
        "\nAny other MACP_AUTH_* variable is reported as a probable misspelling.\n`check-config` shows what a configuration does, without serving.",
    );
    help
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::cell::RefCell;

    fn names_config_reads(set: &[(&str, &str)]) -> BTreeSet<String> {
        let seen = RefCell::new(BTreeSet::new());
        let _ = Config::from_lookup(|name| {
            seen.borrow_mut().insert(name.to_owned());
            set.iter()
                .find(|(set_name, _)| *set_name == name)
                .map(|(_, value)| OsString::from(*value))
        });
        seen.into_inner()
    }

    #[test]
    fn the_table_lists_exactly_the_variables_config_reads() {
        let table: BTreeSet<String> = VARIABLES.iter().map(|v| v.name.to_owned()).collect();
        // Unset, and with the variables that make other ones matter set.
        let mut read = names_config_reads(&[]);
        read.extend(names_config_reads(&[
            (vars::RATE_LIMIT_PER_SECOND, "5"),
            (vars::RATE_LIMIT_BURST, "5"),
            (vars::KEY_POLL, "5"),
            (vars::OTEL_ENDPOINT, "http://127.0.0.1:4318"),
        ]));
        assert_eq!(read, table);
    }

    #[test]
    fn the_help_names_every_variable_once_under_its_group() {
        let help = variables_help();
        for variable in VARIABLES {
            let line = format!("  {} [default: {}]\n", variable.name, variable.default);
            assert_eq!(help.matches(&line).count(), 1, "{line:?} in\n{help}");
            let group_at = help.find(&format!("\n{}:\n", variable.group.title()));
            assert!(group_at.unwrap() < help.find(&line).unwrap(), "{line}");
        }
        assert!(help.lines().all(|line| line.len() <= 104), "{help}");
    }

    #[test]
    fn unknown_macp_auth_names_are_reported_with_a_likely_meaning() {
        let names = [
            "MACP_AUTH_MAX_TTL",
            "MACP_AUTH_ISSUER",
            "MACP_AUTH_ISUER",
            "MACP_AUTH_JWKS_URL",
            "MACP_AUTH_PKCS11_PIN",
            "MACP_AUTH_COLOUR",
            "PATH",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .map(OsString::from);
        assert_eq!(
            unknown_variables(names),
            [
                ("MACP_AUTH_COLOUR".to_owned(), None),
                ("MACP_AUTH_ISUER".to_owned(), Some("MACP_AUTH_ISSUER")),
                (
                    "MACP_AUTH_MAX_TTL".to_owned(),
                    Some("MACP_AUTH_MAX_TTL_SECONDS")
                ),
            ]
        );
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        for (a, b, distance) in [
            ("", "", 0),
            ("abc", "abc", 0),
            ("abc", "abd", 1),
            ("abc", "ab", 1),
            ("ab", "abc", 1),
            ("kitten", "sitting", 3),
        ] {
            assert_eq!(edit_distance(a, b), distance, "{a} {b}");
        }
    }
}
