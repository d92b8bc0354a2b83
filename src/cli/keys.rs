//! `keys add` and `keys prune`: edit a ring file safely. Every write is
//! validated as a whole ring first and lands atomically, mode 0600.

use std::io::{Read, Write as _};
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::args::KeysCommand;
use super::{CommandError, fail};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::ring::{ACTIVATE_AT, KeyRing, KeyStatus, RingError, ring_document};
use crate::keys::{KeySource, SigningAlg, parse_jwk_object, public_jwk_from_private};

/// Adds the private JWK `new_key` to the ring file at `path` (created if
/// absent) and returns the ring's kids. Refuses a key whose kid or key
/// material is already in the ring, and a result that would not load.
pub fn keys_add(path: &Path, new_key: &str) -> Result<Vec<String>, CommandError> {
    let new_key = parse_jwk_object(new_key.trim())?;
    let new_public = public_jwk_from_private(&Value::Object(new_key.clone()).to_string())?;
    let mut keys = match std::fs::read_to_string(path) {
        Ok(text) => ring_document(&text)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(io_error(path, &err)),
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
    let kids = write_ring(path, keys)?;
    Ok(kids)
}

/// Drops from the ring file at `path` every key retired at `now` (every
/// token it signed has expired, given `max_ttl`) and returns the dropped kids.
pub fn keys_prune(path: &Path, now: u64, max_ttl: u64) -> Result<Vec<String>, CommandError> {
    let text = std::fs::read_to_string(path).map_err(|err| io_error(path, &err))?;
    let keys = ring_document(&text)?;
    let alg = ring_alg(&keys)?;
    let ring = KeyRing::parse(alg, &text, KeySource::File)?;
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
        write_ring(path, kept)?;
    }
    Ok(dropped)
}

/// The algorithm of a ring's keys: the first key's `alg`, or its `kty`.
fn ring_alg(keys: &[Map<String, Value>]) -> Result<SigningAlg, CommandError> {
    let first = keys.first().ok_or(RingError::Empty)?;
    let from_alg = first
        .get("alg")
        .and_then(Value::as_str)
        .and_then(SigningAlg::parse);
    let from_kty = match first.get("kty").and_then(Value::as_str) {
        Some("RSA") => Some(SigningAlg::Rs256),
        Some("EC") => Some(SigningAlg::Es256),
        _ => None,
    };
    from_alg.or(from_kty).ok_or_else(|| {
        CommandError::Usage("the ring's first key names no usable alg or kty".into())
    })
}

/// Validates `keys` as a ring and writes it atomically, readable by the
/// owner only, as `{"keys": [...]}`.
fn write_ring(path: &Path, keys: Vec<Map<String, Value>>) -> Result<Vec<String>, CommandError> {
    let alg = ring_alg(&keys)?;
    let document = serde_json::json!({ "keys": keys });
    let text = serde_json::to_string_pretty(&document).expect("JSON values serialise");
    let ring = KeyRing::parse(alg, &text, KeySource::File)?;
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

/// Runs `keys add` or `keys prune`.
pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Add { ring } => {
            let mut new_key = String::new();
            if let Err(err) = std::io::stdin().read_to_string(&mut new_key) {
                return fail(format_args!(
                    "cannot read a private JWK from standard input: {err}"
                ));
            }
            match keys_add(&ring, &new_key) {
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
            match keys_prune(&ring, SystemClock.now(), max_ttl) {
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
