//! What the operator subcommands do, apart from parsing arguments and
//! printing: `keygen`, `keygen --public`, `check-config`, `keys add`,
//! `keys prune` and the healthcheck URL.
//!
//! They live in the library, not in `main.rs`, so tests call them directly
//! and the binary stays a thin dispatcher.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::clients::{ClientStore, LoadClientsError};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Config;
use crate::http::routes::{HEALTHZ_PATH, JWKS_PATH, TOKENS_PATH};
use crate::keys::SigningAlg;
use crate::keys::ring::{ACTIVATE_AT, KeyRing, KeyStatus, RingError, ring_document};
use crate::keys::store::{LoadKeyError, RingSource, load_ring};
use crate::keys::{
    KeyError, KeySource, default_kid, generate_private_jwk, parse_jwk_object,
    public_jwk_from_private,
};

/// RSA modulus size `keygen` uses when `--bits` is not given.
pub const DEFAULT_RSA_BITS: usize = 2048;

/// A fresh private JWK as one line of JSON, ready for
/// `MACP_AUTH_SIGNING_KEY_JSON` or a ring file. `activate_at` (Unix seconds
/// or RFC 3339) schedules when it starts signing.
pub fn keygen(
    alg: SigningAlg,
    kid: Option<&str>,
    rsa_bits: usize,
    activate_at: Option<&str>,
) -> Result<String, CommandError> {
    let kid = match kid {
        Some(kid) => kid.to_owned(),
        None => default_kid(alg, SystemTime::now())?,
    };
    let mut jwk = generate_private_jwk(alg, rsa_bits, Some(&kid))?;
    if let Some(at) = activate_at {
        let seconds = crate::clock::parse_instant(at).ok_or_else(|| {
            CommandError::Usage(format!(
                "--activate-at must be Unix seconds or an RFC 3339 timestamp (got {at:?})"
            ))
        })?;
        jwk.insert(ACTIVATE_AT.into(), seconds.into());
    }
    Ok(Value::Object(jwk).to_string())
}

/// The public JWK of the private JWK in `private_jwk`, as one line of JSON.
pub fn public_jwk(private_jwk: &str) -> Result<String, KeyError> {
    Ok(Value::Object(public_jwk_from_private(private_jwk.trim())?).to_string())
}

/// Why an operator command failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A key is unusable.
    #[error("the key {0}")]
    Key(#[from] KeyError),
    /// A ring is unusable.
    #[error("the ring {0}")]
    Ring(#[from] RingError),
    /// The configured key source is unusable.
    #[error("invalid configuration: {0}")]
    Load(#[from] LoadKeyError),
    /// The configured client list is unusable.
    #[error("invalid configuration: {0}")]
    Clients(#[from] LoadClientsError),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
}

/// The facts operators fingerprint a deployment by, one `name: value` per
/// line: what serving with `config` would use right now. Loads the keys
/// exactly as serving does, so a key source that would stop startup fails
/// here too.
pub fn check_config(config: &Config) -> Result<(RingSource, String), CommandError> {
    let now = SystemClock.now();
    let (ring, source) = load_ring(config, now)?;
    let clients = ClientStore::from_config(config)?;
    let mut report = fingerprint(config, &ring, &source, now);
    let names: Vec<String> = clients
        .current()
        .as_ref()
        .as_ref()
        .map(|list| {
            list.clients()
                .iter()
                .map(|client| client.name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        report,
        "minting clients: {}",
        if names.is_empty() {
            "none (minting is unauthenticated)".to_owned()
        } else {
            names.join(", ")
        }
    );
    if let Some(limit) = config.clients.rate_limit {
        let _ = writeln!(
            report,
            "rate limit: {} per second, burst {}",
            limit.per_second, limit.burst
        );
    }
    Ok((source, report))
}

/// The fingerprint of `config` serving `ring` at `now`.
pub fn fingerprint(config: &Config, ring: &KeyRing, source: &RingSource, now: u64) -> String {
    let schedule = ring.schedule(now, config.tokens.max_ttl_seconds);
    let base = config.listen.display_base_url();
    let mut report = String::new();
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(report, "{name}: {value}");
    };
    line("listen", &config.listen.addr());
    line("issuer", &config.tokens.issuer);
    line("audience", &config.tokens.audience);
    line(
        "key source",
        &match source {
            RingSource::Ephemeral => KeySource::Ephemeral,
            RingSource::Env => KeySource::Env,
            RingSource::File(_) => KeySource::File,
        },
    );
    line("alg", &config.keys.alg);
    if let Some(signing) = schedule.signing {
        line("kid", &ring.keys()[signing].key.kid());
    }
    for (index, entry) in ring.keys().iter().enumerate() {
        let status = ring.status(index, now, config.tokens.max_ttl_seconds);
        let mut detail = status.to_string();
        if let Some(at) = entry.activate_at {
            let verb = if at > now { "activates" } else { "activated" };
            let _ = write!(detail, ", {verb} {}", rfc3339(at));
        }
        if let Some(retire_at) = ring.retirement(index, config.tokens.max_ttl_seconds) {
            let verb = if status == KeyStatus::Retired {
                "retired"
            } else {
                "retires"
            };
            let _ = write!(detail, ", {verb} {}", rfc3339(retire_at));
        }
        line(&format!("key {}", entry.key.kid()), &detail);
    }
    line("max ttl seconds", &config.tokens.max_ttl_seconds);
    line(
        "default ttl seconds",
        &config.tokens.effective_default_ttl(),
    );
    line("jwks url", &format_args!("{base}{JWKS_PATH}"));
    line("mint url", &format_args!("POST {base}{TOKENS_PATH}"));
    report
}

/// The URL `healthcheck` probes when none is given: `/healthz` on the
/// configured port, over loopback unless the service binds one address only.
pub fn default_healthcheck_url(config: &Config) -> String {
    let host = match config.listen.host {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    format!("http://{host}:{}{HEALTHZ_PATH}", config.listen.port)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyMaterial;
    use crate::keys::SigningKey;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("macp-commands-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A ring file with key "old" (always active) and "new" activating at `at`.
    fn old_and_new_ring(path: &Path, at: &str) {
        keys_add(
            path,
            &keygen(SigningAlg::Es256, Some("old"), 0, None).unwrap(),
        )
        .unwrap();
        keys_add(
            path,
            &keygen(SigningAlg::Es256, Some("new"), 0, Some(at)).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn keygen_output_loads_as_a_pinned_key_for_each_algorithm() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            let line = keygen(alg, None, DEFAULT_RSA_BITS, None).unwrap();
            assert!(!line.contains('\n'));
            let jwk: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
            assert!(jwk.get(ACTIVATE_AT).is_none());
            let kid = jwk["kid"].as_str().unwrap();
            assert!(
                kid.starts_with(&format!("{}-", alg.as_str().to_lowercase())),
                "{kid}"
            );
            let key = SigningKey::from_jwk_json(alg, &line, KeySource::Env).unwrap();
            assert_eq!(key.kid(), kid);
        }
    }

    #[test]
    fn keygen_honours_kid_bits_and_activation() {
        let line = keygen(
            SigningAlg::Rs256,
            Some("prod-key-7"),
            4096,
            Some("2026-12-01T00:00:00Z"),
        )
        .unwrap();
        let private: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(private[ACTIVATE_AT], 1_796_083_200);
        let public: Value = serde_json::from_str(&public_jwk(&line).unwrap()).unwrap();
        assert_eq!(public["kid"], "prod-key-7");
        // 4096 bits = 512 bytes = 683 base64url characters.
        assert_eq!(public["n"].as_str().unwrap().len(), 683);
        assert!(public.get("d").is_none());
        assert!(matches!(
            keygen(SigningAlg::Es256, None, 0, Some("next week")),
            Err(CommandError::Usage(_))
        ));
    }

    #[test]
    fn check_config_reports_the_fingerprint_without_private_material() {
        let private = keygen(SigningAlg::Es256, Some("ops-key"), DEFAULT_RSA_BITS, None).unwrap();
        let d = serde_json::from_str::<Value>(&private).unwrap()["d"]
            .as_str()
            .unwrap()
            .to_owned();
        let config = {
            let mut config = Config::default();
            config.keys.alg = SigningAlg::Es256;
            config.keys.inline = Some(KeyMaterial::new(private));
            config
        };
        let (source, report) = check_config(&config).unwrap();
        assert_eq!(source, RingSource::Env);
        assert_eq!(
            report,
            "listen: 0.0.0.0:3200\nissuer: macp-auth-service\naudience: macp-runtime\nkey source: env\nalg: ES256\nkid: ops-key\nkey ops-key: signing\nmax ttl seconds: 3600\ndefault ttl seconds: 300\njwks url: http://localhost:3200/.well-known/jwks.json\nmint url: POST http://localhost:3200/tokens\nminting clients: none (minting is unauthenticated)\n"
        );
        assert!(!report.contains(&d));
    }

    #[test]
    fn the_fingerprint_lists_each_key_with_its_schedule() {
        let dir = temp_dir("fingerprint");
        let path = dir.join("ring.json");
        old_and_new_ring(&path, "2000");
        let config = {
            let mut config = Config::default();
            config.keys.alg = SigningAlg::Es256;
            config.keys.file = Some(path.clone());
            config
        };
        let (ring, source) = load_ring(&config, 1000).unwrap();
        let report = fingerprint(&config, &ring, &source, 1000);
        assert!(report.contains("key source: file\n"), "{report}");
        assert!(report.contains("kid: old\n"), "{report}");
        assert!(
            report.contains("key old: signing, retires 1970-01-01T01:34:20Z\n"),
            "{report}"
        );
        assert!(
            report.contains("key new: pending, activates 1970-01-01T00:33:20Z\n"),
            "{report}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_add_builds_a_ring_and_refuses_duplicates() {
        let dir = temp_dir("add");
        let path = dir.join("ring.json");
        let first = keygen(SigningAlg::Es256, Some("a"), 0, None).unwrap();
        assert_eq!(keys_add(&path, &first).unwrap(), ["a"]);
        let second = keygen(SigningAlg::Es256, Some("b"), 0, Some("2000000000")).unwrap();
        assert_eq!(keys_add(&path, &second).unwrap(), ["a", "b"]);
        let again = keygen(SigningAlg::Es256, Some("a"), 0, None).unwrap();
        assert!(matches!(
            keys_add(&path, &again),
            Err(CommandError::Usage(_))
        ));
        let rsa = keygen(SigningAlg::Rs256, Some("r"), 2048, None).unwrap();
        assert!(keys_add(&path, &rsa).is_err(), "one algorithm per ring");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "a ring holds private keys");
        }
        let ring = KeyRing::parse(
            SigningAlg::Es256,
            &std::fs::read_to_string(&path).unwrap(),
            KeySource::File,
        )
        .unwrap();
        assert_eq!(ring.keys()[1].activate_at, Some(2_000_000_000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_prune_drops_only_retired_keys() {
        let dir = temp_dir("prune");
        let path = dir.join("ring.json");
        old_and_new_ring(&path, "1000");
        assert!(
            keys_prune(&path, 1000 + 3600 + 59, 3600)
                .unwrap()
                .is_empty(),
            "still published"
        );
        assert_eq!(keys_prune(&path, 1000 + 3600 + 60, 3600).unwrap(), ["old"]);
        let keys = ring_document(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kid"], "new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_healthcheck_url_follows_host_and_port() {
        let mut config = Config::default();
        assert_eq!(
            default_healthcheck_url(&config),
            "http://127.0.0.1:3200/healthz"
        );
        config.listen.port = 8080;
        config.listen.host = "::".parse().unwrap();
        assert_eq!(
            default_healthcheck_url(&config),
            "http://[::1]:8080/healthz"
        );
        config.listen.host = "10.0.0.5".parse().unwrap();
        assert_eq!(
            default_healthcheck_url(&config),
            "http://10.0.0.5:8080/healthz"
        );
    }
}
