//! `keys add` and `keys prune`: edit a ring file safely. Every write is
//! validated as a whole ring first (keys in external stores are reached and
//! probed, as a load would) and lands atomically, mode 0600.

use std::io::{Read, Write as _};
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::args::KeysCommand;
use super::{CommandError, fail};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, CustodySettings};
use crate::keys::backend::{describe_reference, named_backend};
use crate::keys::ring::{ACTIVATE_AT, KeyRing, KeyStatus, RingError, ring_document};
use crate::keys::{
    Backends, KeySource, SigningAlg, SigningKey, parse_jwk_object, public_jwk_from_private,
};

/// Adds `new_key` to the ring file at `path` (created if absent) and
/// returns the ring's kids. `new_key` is a private JWK, or a member naming a
/// key in an external store (`pkcs11`, `aws_kms`), which is opened through
/// `backends` first, so a reference that does not reach its store is never
/// written. Refuses a key whose kid, key material or reference is already in
/// the ring, and a result that would not load.
pub fn keys_add(
    path: &Path,
    new_key: &str,
    backends: &Backends,
) -> Result<Vec<String>, CommandError> {
    let new_key = parse_jwk_object(new_key.trim())?;
    let mut keys = match std::fs::read_to_string(path) {
        Ok(text) => ring_document(&text)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(io_error(path, &err)),
    };
    let new_public = match named_backend(&new_key)? {
        None => public_jwk_from_private(&Value::Object(new_key.clone()).to_string())?,
        Some((backend, reference)) => {
            if keys
                .iter()
                .any(|existing| existing.get(backend.as_str()) == new_key.get(backend.as_str()))
            {
                return Err(CommandError::Usage(format!(
                    "the ring already holds the {backend} key {}",
                    describe_reference(backend, reference)
                )));
            }
            let alg = ring_alg(std::slice::from_ref(&new_key)).or_else(|_| ring_alg(&keys))?;
            SigningKey::from_member(alg, &new_key, KeySource::File, backends)?
                .public_jwk()
                .clone()
        }
    };
    let same_material = |existing: &Map<String, Value>| {
        ["n", "e", "x", "y"]
            .iter()
            .filter(|member| new_public.contains_key(**member))
            .all(|member| existing.get(*member) == new_public.get(*member))
    };
    for existing in &keys {
        if existing.get("kid") == new_public.get("kid") {
            return Err(CommandError::Usage(format!(
                "the ring already has a key with kid {}",
                new_public["kid"]
            )));
        }
        if same_material(existing) {
            return Err(CommandError::Usage(format!(
                "the ring already holds this key, under kid {}",
                existing.get("kid").unwrap_or(&Value::Null)
            )));
        }
    }
    if !keys.is_empty() && !new_key.contains_key(ACTIVATE_AT) {
        // Ties go to the first key in the set, so it would never sign.
        return Err(CommandError::Usage(
            "the ring already has a key: give the new one an activation time (keygen --activate-at), or it would never sign".into(),
        ));
    }
    keys.push(new_key);
    let kids = write_ring(path, keys, backends)?;
    Ok(kids)
}

/// Drops from the ring file at `path` every key retired at `now` (every
/// token it signed has expired, given `max_ttl`) and returns the dropped kids.
pub fn keys_prune(
    path: &Path,
    now: u64,
    max_ttl: u64,
    backends: &Backends,
) -> Result<Vec<String>, CommandError> {
    let text = std::fs::read_to_string(path).map_err(|err| io_error(path, &err))?;
    let keys = ring_document(&text)?;
    let alg = ring_alg(&keys)?;
    let ring = KeyRing::parse_with(alg, &text, KeySource::File, Some(backends))?;
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (index, jwk) in keys.into_iter().enumerate() {
        if ring.status(index, now, max_ttl) == KeyStatus::Retired {
            dropped.push(ring.keys()[index].key.kid().to_owned());
        } else {
            kept.push(jwk);
        }
    }
    if !dropped.is_empty() {
        write_ring(path, kept, backends)?;
    }
    Ok(dropped)
}

/// The algorithm of a ring's keys: the first key's `alg`, or its `kty`
/// (a key naming an external store has no `kty`; the next key's counts then).
fn ring_alg(keys: &[Map<String, Value>]) -> Result<SigningAlg, CommandError> {
    if keys.is_empty() {
        return Err(RingError::Empty.into());
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
    keys.iter().find_map(alg_of).ok_or_else(|| {
        CommandError::Usage(
            "the ring's keys name no usable alg or kty: give the key an \"alg\" (RS256 or ES256)"
                .into(),
        )
    })
}

/// Validates `keys` as a ring and writes it atomically, readable by the
/// owner only, as `{"keys": [...]}`.
fn write_ring(
    path: &Path,
    keys: Vec<Map<String, Value>>,
    backends: &Backends,
) -> Result<Vec<String>, CommandError> {
    let alg = ring_alg(&keys)?;
    let document = serde_json::json!({ "keys": keys });
    let text = serde_json::to_string_pretty(&document).expect("JSON values serialise");
    let ring = KeyRing::parse_with(alg, &text, KeySource::File, Some(backends))?;
    let kids = ring
        .keys()
        .iter()
        .map(|entry| entry.key.kid().to_owned())
        .collect();

    let file_name = path
        .file_name()
        .map_or_else(|| "ring".into(), |name| name.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(err) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error(path, &err));
    }
    Ok(kids)
}

fn io_error(path: &Path, err: &std::io::Error) -> CommandError {
    CommandError::Io {
        path: path.display().to_string(),
        reason: err.kind().to_string(),
    }
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
                    "cannot read a private JWK or key reference from standard input: {err}"
                ));
            }
            let backends = match backends_from_env() {
                Ok(backends) => backends,
                Err(code) => return code,
            };
            match keys_add(&ring, &new_key, &backends) {
                Ok(kids) => {
                    let noun = if kids.len() == 1 { "key" } else { "keys" };
                    println!(
                        "{}: {} {noun}: {}",
                        ring.display(),
                        kids.len(),
                        kids.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => fail(format_args!("keys add: {err}")),
            }
        }
        KeysCommand::Prune {
            ring,
            max_ttl_seconds,
        } => {
            let max_ttl = match max_ttl_seconds {
                Some(max_ttl) => max_ttl,
                None => match Config::from_env() {
                    Ok(config) => config.tokens.max_ttl_seconds,
                    Err(err) => return fail(format_args!("invalid configuration: {err}")),
                },
            };
            let backends = match backends_from_env() {
                Ok(backends) => backends,
                Err(code) => return code,
            };
            match keys_prune(&ring, SystemClock.now(), max_ttl, &backends) {
                Ok(dropped) if dropped.is_empty() => {
                    println!("{}: no retired keys", ring.display());
                    ExitCode::SUCCESS
                }
                Ok(dropped) => {
                    println!("{}: dropped {}", ring.display(), dropped.join(", "));
                    ExitCode::SUCCESS
                }
                Err(err) => fail(format_args!("keys prune: {err}")),
            }
        }
    }
}
