//! `keys add` and `keys prune`: edit a ring file safely. Every write is
//! validated as a whole ring first (keys in external stores are reached and
//! probed, as a load would) and lands atomically, mode 0600. Both say
//! what the edit means for the schedule: `add` warns when the new key would
//! sign before verifiers can have fetched it, `prune` says when the next key
//! retires.
//!
//! A ring's algorithm is its keys' own (`alg`, or `kty`); a member naming a
//! store may carry neither, so `MACP_AUTH_SIGNING_ALG`, when set, decides
//! for such a ring, and every key added must fit it, as serving requires.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::args::KeysCommand;
use super::files::{io_error, read_if_exists, write_atomically};
use super::{CommandError, fail};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{Config, CustodySettings};
use crate::keys::backend::{describe_reference, named_backend};
use crate::keys::ring::{ACTIVATE_AT, KeyRing, KeyStatus, RingError, ring_document};
use crate::keys::{
    Backends, KeySource, SigningAlg, SigningKey, parse_jwk_object, public_jwk_from_private,
};

/// What `keys add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Added {
    /// The ring's kids, in file order.
    pub(crate) kids: Vec<String>,
    /// Why the new key's activation is risky, if it is.
    pub(crate) warning: Option<String>,
}

/// Adds `new_key` to the ring file at `path` (created if absent): a private
/// JWK, or a member naming a key in an external store (`pkcs11`,
/// `aws_kms`), which is opened through `backends` first, so a reference that
/// does not reach its store is never written. Refuses a key of another
/// algorithm than the ring's or than `configured` (`MACP_AUTH_SIGNING_ALG`,
/// when set, which also gives the algorithm of a member that names none), a
/// kid, key material or reference already in the ring, and a result that
/// would not load. Judges the new key's activation against `now` and the
/// pre-publication window `prepublish` (seconds).
pub(crate) fn keys_add(
    path: &Path,
    new_key: &str,
    now: u64,
    prepublish: u64,
    backends: &Backends,
    configured: Option<SigningAlg>,
) -> Result<Added, CommandError> {
    let new_key = parse_jwk_object(new_key.trim())?;
    let mut keys = match read_if_exists(path)? {
        Some(text) => ring_document(&text)?,
        None => Vec::new(),
    };
    let new_public = new_public_jwk(&new_key, &keys, backends, configured)?;
    let new = new_public["alg"].as_str().unwrap_or_default();
    if let Some(configured) = configured.filter(|alg| alg.as_str() != new) {
        return Err(CommandError::Usage(format!(
            "this key is {new}, but MACP_AUTH_SIGNING_ALG is {configured}: the service would refuse the ring; generate the key with `keygen --alg {configured}`"
        )));
    }
    if !keys.is_empty() {
        let ring = ring_alg(&keys, configured)?;
        if ring.as_str() != new {
            return Err(CommandError::Usage(format!(
                "this key is {new}, but the ring holds {ring} keys: a ring holds keys of one algorithm, the one MACP_AUTH_SIGNING_ALG names; generate the key with `keygen --alg {ring}` (changing the algorithm needs a new ring and a restart, see the runbook)"
            )));
        }
    }
    refuse_duplicates(&keys, &new_public)?;
    let rotating = !keys.is_empty();
    if rotating && !new_key.contains_key(ACTIVATE_AT) {
        // Ties go to the first key in the set, so it would never sign.
        return Err(CommandError::Usage(
            "the ring already has a key: give the new one an activation time (keygen --activate-at), or it would never sign".into(),
        ));
    }
    keys.push(new_key);
    let ring = write_ring(path, keys, backends, configured)?;
    let added = ring.keys().last().expect("the new key is in the ring");
    let warning = match added.activate_at {
        Some(at) if rotating => activation_warning(added.key.kid(), at, now, prepublish),
        _ => None,
    };
    Ok(Added {
        kids: kids(&ring),
        warning,
    })
}

/// The public JWK of the key to add: derived from a private JWK, or read
/// from the store a member names (after the same checks as a load).
fn new_public_jwk(
    new_key: &Map<String, Value>,
    keys: &[Map<String, Value>],
    backends: &Backends,
    configured: Option<SigningAlg>,
) -> Result<Map<String, Value>, CommandError> {
    let Some((backend, reference)) = named_backend(new_key)? else {
        let text = Value::Object(new_key.clone()).to_string();
        return Ok(public_jwk_from_private(&text)?);
    };
    let name = backend.as_str();
    if keys
        .iter()
        .any(|existing| existing.get(name) == new_key.get(name))
    {
        return Err(CommandError::Usage(format!(
            "the ring already holds the {backend} key {}",
            describe_reference(backend, reference)
        )));
    }
    let alg =
        ring_alg(std::slice::from_ref(new_key), None).or_else(|_| ring_alg(keys, configured))?;
    let key = SigningKey::from_member(alg, new_key, KeySource::File, backends)?;
    Ok(key.public_jwk().clone())
}

fn refuse_duplicates(
    keys: &[Map<String, Value>],
    new_public: &Map<String, Value>,
) -> Result<(), CommandError> {
    let same_material = |existing: &Map<String, Value>| {
        ["n", "e", "x", "y"]
            .iter()
            .filter(|member| new_public.contains_key(**member))
            .all(|member| existing.get(*member) == new_public.get(*member))
    };
    for existing in keys {
        if existing.get("kid") == new_public.get("kid") {
            return Err(CommandError::Usage(format!(
                "the ring already has a key with kid {}: give the new key another one (keygen --kid)",
                new_public["kid"]
            )));
        }
        if same_material(existing) {
            return Err(CommandError::Usage(format!(
                "the ring already holds this key, under kid {}: generate a new key with keygen",
                existing.get("kid").unwrap_or(&Value::Null)
            )));
        }
    }
    Ok(())
}

/// The warning for a key added to a ring that already signs, activating at
/// `at`: in the past, or sooner than the pre-publication window.
pub(crate) fn activation_warning(kid: &str, at: u64, now: u64, prepublish: u64) -> Option<String> {
    let advice = format!(
        "to rotate without rejected tokens, give it an activate_at at least MACP_AUTH_KEY_PREPUBLISH_SECONDS ({prepublish} s) after every replica has loaded the ring"
    );
    if at <= now {
        Some(format!(
            "key {kid} activates at {}, which has passed: it signs as soon as a replica loads the ring, before verifiers can have fetched it, and they reject its tokens until they refresh (an emergency rotation); {advice}",
            rfc3339(at)
        ))
    } else if at - now < prepublish {
        Some(format!(
            "key {kid} activates in {} s ({}), less than MACP_AUTH_KEY_PREPUBLISH_SECONDS ({prepublish} s): verifiers that have not refreshed their JWKS by then reject its tokens, and each replica will warn; {advice}",
            at - now,
            rfc3339(at)
        ))
    } else {
        None
    }
}

/// What `keys prune` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// The kids dropped, in file order.
    pub(crate) dropped: Vec<String>,
    /// The next key to retire and when, if any is scheduled to.
    pub(crate) next_retirement: Option<(String, u64)>,
}

/// Drops from the ring file at `path` every key retired at `now` (every
/// token it signed has expired, given `max_ttl`), and says which key retires
/// next.
pub(crate) fn keys_prune(
    path: &Path,
    now: u64,
    max_ttl: u64,
    backends: &Backends,
    configured: Option<SigningAlg>,
) -> Result<Pruned, CommandError> {
    let text = std::fs::read_to_string(path).map_err(|err| io_error(path, &err))?;
    let keys = ring_document(&text)?;
    let alg = ring_alg(&keys, configured)?;
    let ring = KeyRing::parse_with(alg, &text, KeySource::File, Some(backends))?;
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut next_retirement: Option<(String, u64)> = None;
    for (index, jwk) in keys.into_iter().enumerate() {
        let kid = ring.keys()[index].key.kid().to_owned();
        if ring.status(index, now, max_ttl) == KeyStatus::Retired {
            dropped.push(kid);
            continue;
        }
        if let Some(at) = ring.retirement(index, max_ttl)
            && next_retirement.as_ref().is_none_or(|(_, next)| at < *next)
        {
            next_retirement = Some((kid, at));
        }
        kept.push(jwk);
    }
    if !dropped.is_empty() {
        write_ring(path, kept, backends, configured)?;
    }
    Ok(Pruned {
        dropped,
        next_retirement,
    })
}

/// The algorithm of a ring's keys: the first key's `alg`, or its `kty` (a
/// key naming an external store has no `kty`; the next key's counts then),
/// or else `configured` (`MACP_AUTH_SIGNING_ALG`, when set).
fn ring_alg(
    keys: &[Map<String, Value>],
    configured: Option<SigningAlg>,
) -> Result<SigningAlg, CommandError> {
    if keys.is_empty() {
        return configured.ok_or_else(|| RingError::Empty.into());
    }
    let alg_of = |key: &Map<String, Value>| {
        let from_alg = key
            .get("alg")
            .and_then(Value::as_str)
            .and_then(SigningAlg::parse);
        let from_kty = match key.get("kty").and_then(Value::as_str) {
            Some("RSA") => Some(SigningAlg::Rs256),
            Some("EC") => Some(SigningAlg::Es256),
            _ => None,
        };
        from_alg.or(from_kty)
    };
    keys.iter().find_map(alg_of).or(configured).ok_or_else(|| {
        CommandError::Usage(
            "the ring's keys name no usable alg or kty: check the file is a ring of RS256 or ES256 keys, and give a key in an HSM or KMS its \"alg\" (or set MACP_AUTH_SIGNING_ALG)".into(),
        )
    })
}

/// Validates `keys` as a ring and writes it atomically, readable by the
/// owner only, as `{"keys": [...]}`; returns the ring written.
fn write_ring(
    path: &Path,
    keys: Vec<Map<String, Value>>,
    backends: &Backends,
    configured: Option<SigningAlg>,
) -> Result<KeyRing, CommandError> {
    let alg = ring_alg(&keys, configured)?;
    let document = serde_json::json!({ "keys": keys });
    let text = serde_json::to_string_pretty(&document).expect("JSON values serialise");
    let ring = KeyRing::parse_with(alg, &text, KeySource::File, Some(backends))?;
    write_atomically(path, &text)?;
    Ok(ring)
}

fn kids(ring: &KeyRing) -> Vec<String> {
    ring.keys()
        .iter()
        .map(|entry| entry.key.kid().to_owned())
        .collect()
}

/// The pre-publication window from `MACP_AUTH_KEY_PREPUBLISH_SECONDS` (only
/// that variable, with serving's rule), or its default.
fn prepublish_from_env() -> Result<u64, crate::config::ConfigError> {
    let name = crate::config::vars::KEY_PREPUBLISH;
    let config = Config::from_lookup(|wanted| {
        if wanted == name {
            std::env::var_os(name)
        } else {
            None
        }
    })?;
    Ok(config.keys.prepublish_seconds)
}

/// `MACP_AUTH_SIGNING_ALG` when it is set (only that variable, with
/// serving's rule).
fn signing_alg_from_env() -> Result<Option<SigningAlg>, ExitCode> {
    let name = crate::config::vars::SIGNING_ALG;
    if std::env::var_os(name).is_none() {
        return Ok(None);
    }
    Config::from_lookup(|wanted| {
        if wanted == name {
            std::env::var_os(name)
        } else {
            None
        }
    })
    .map(|config| Some(config.keys.alg))
    .map_err(|err| fail(format_args!("invalid configuration: {err}")))
}

/// How keys in external stores are reached, from `MACP_AUTH_PKCS11_*` and
/// `MACP_AUTH_SIGNING_TIMEOUT_MS` alone (the commands need no other setting).
fn backends_from_env() -> Result<Backends, ExitCode> {
    CustodySettings::from_env()
        .map(|settings| Backends::from_settings(&settings))
        .map_err(|err| fail(format_args!("invalid configuration: {err}")))
}

/// Runs `keys add` or `keys prune`.
pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Add { ring } => {
            let mut new_key = String::new();
            if let Err(err) = std::io::stdin().read_to_string(&mut new_key) {
                return fail(format_args!(
                    "cannot read a private JWK or key reference from standard input: {err}; pipe one in, e.g. from `keygen`"
                ));
            }
            let prepublish = match prepublish_from_env() {
                Ok(prepublish) => prepublish,
                Err(err) => return fail(format_args!("invalid configuration: {err}")),
            };
            let (backends, configured) = match (backends_from_env(), signing_alg_from_env()) {
                (Ok(backends), Ok(configured)) => (backends, configured),
                (Err(code), _) | (_, Err(code)) => return code,
            };
            let now = SystemClock.now();
            match keys_add(&ring, &new_key, now, prepublish, &backends, configured) {
                Ok(added) => {
                    let noun = if added.kids.len() == 1 { "key" } else { "keys" };
                    println!(
                        "{}: {} {noun}: {}",
                        ring.display(),
                        added.kids.len(),
                        added.kids.join(", ")
                    );
                    if let Some(warning) = added.warning {
                        eprintln!("macp-auth-service: warning: {warning}");
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => fail(format_args!("keys add: {err}")),
            }
        }
        KeysCommand::Prune {
            ring,
            max_ttl_seconds,
        } => run_prune(&ring, max_ttl_seconds),
    }
}

fn run_prune(ring: &Path, max_ttl_seconds: Option<u64>) -> ExitCode {
    let max_ttl = match max_ttl_seconds {
        Some(max_ttl) => max_ttl,
        None => match Config::from_env() {
            Ok(config) => config.tokens.max_ttl_seconds,
            Err(err) => return fail(format_args!("invalid configuration: {err}")),
        },
    };
    let (backends, configured) = match (backends_from_env(), signing_alg_from_env()) {
        (Ok(backends), Ok(configured)) => (backends, configured),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match keys_prune(ring, SystemClock.now(), max_ttl, &backends, configured) {
        Ok(pruned) => {
            let done = if pruned.dropped.is_empty() {
                "no retired keys".to_owned()
            } else {
                format!("dropped {}", pruned.dropped.join(", "))
            };
            let next = match pruned.next_retirement {
                Some((kid, at)) => format!(
                    "key {kid} retires at {} (prune again after that)",
                    rfc3339(at)
                ),
                None => "no key is scheduled to retire".to_owned(),
            };
            println!("{}: {done}; {next}", ring.display());
            ExitCode::SUCCESS
        }
        Err(err) => fail(format_args!("keys prune: {err}")),
    }
}
