//! Unit tests of the operator commands.

use std::path::Path;

use super::check_config::check_config;
use super::healthcheck::default_healthcheck_url;
use super::keygen::{DEFAULT_RSA_BITS, keygen};
use super::keys::{keys_add, keys_prune};
use crate::config::Config;
use serde_json::Value;

use super::CommandError;
use super::keygen::public_jwk;
use crate::app::fingerprint::Fingerprint;
use crate::config::KeyMaterial;
use crate::keys::SigningKey;
use crate::keys::ring::{ACTIVATE_AT, KeyRing, ring_document};
use crate::keys::store::{LoadedRing, load_ring};
use crate::keys::{KeySource, SigningAlg};
use crate::reload::Source;

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
    let (source, fingerprint) = check_config(&config).unwrap();
    let report = fingerprint.report();
    assert_eq!(source, Source::Inline);
    assert_eq!(
        report,
        "listen: 0.0.0.0:3200\nissuer: macp-auth-service\naudience: macp-runtime\nkey source: env\nalg: ES256\nkid: ops-key\nkey ops-key: signing\nmax ttl seconds: 3600\ndefault ttl seconds: 300\njwks url: http://localhost:3200/.well-known/jwks.json\nmint url: POST http://localhost:3200/tokens\nmetrics url: http://localhost:3200/metrics\nminting clients: none (minting is unauthenticated)\nerror: minting is unauthenticated and 0.0.0.0 is not a loopback address: anyone who can reach this port can mint a token for any sender; set MACP_AUTH_CLIENTS_FILE or MACP_AUTH_CLIENTS_JSON, or restrict the network path\n"
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
    let LoadedRing { ring, source, .. } = load_ring(&config, 1000).unwrap();
    let report = Fingerprint::new(
        &config,
        &ring,
        &source,
        Fingerprint::clients_line(&Source::Unset, Vec::new()),
        1000,
    )
    .report();
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
