//! What the operator subcommands do, apart from parsing arguments and
//! printing: `keygen`, `keygen --public`, `check-config` and `healthcheck`.
//!
//! They live in the library, not in `main.rs`, so tests call them directly
//! and the binary stays a thin dispatcher.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::Value;

use crate::config::{Config, SigningAlg};
use crate::keys::{
    KeyError, LoadKeyError, SigningKey, default_kid, generate_private_jwk, load_signing_key,
    public_jwk_from_private,
};
use crate::routes::{JWKS_PATH, TOKENS_PATH};

/// RSA modulus size `keygen` uses when `--bits` is not given.
pub const DEFAULT_RSA_BITS: usize = 2048;

/// A fresh private JWK as one line of JSON, ready for
/// `MACP_AUTH_SIGNING_KEY_JSON`.
pub fn keygen(alg: SigningAlg, kid: Option<&str>, rsa_bits: usize) -> Result<String, KeyError> {
    let kid = match kid {
        Some(kid) => kid.to_owned(),
        None => default_kid(alg, SystemTime::now())?,
    };
    let jwk = generate_private_jwk(alg, rsa_bits, Some(&kid))?;
    Ok(Value::Object(jwk).to_string())
}

/// The public JWK of the private JWK in `private_jwk`, as one line of JSON.
pub fn public_jwk(private_jwk: &str) -> Result<String, KeyError> {
    Ok(Value::Object(public_jwk_from_private(private_jwk.trim())?).to_string())
}

/// The facts operators fingerprint a deployment by, one `name: value` per
/// line: what serving with `config` would use. Loads the key exactly as
/// serving does, so a key that would stop startup fails here too.
pub fn check_config(config: &Config) -> Result<(SigningKey, String), LoadKeyError> {
    let key = load_signing_key(config)?;
    let report = fingerprint(config, &key);
    Ok((key, report))
}

/// The fingerprint of `config` serving with `key`.
pub fn fingerprint(config: &Config, key: &SigningKey) -> String {
    let base = config.display_base_url();
    let mut report = String::new();
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(report, "{name}: {value}");
    };
    line("listen", &config.listen_addr());
    line("issuer", &config.issuer);
    line("audience", &config.audience);
    line("key source", &key.source());
    line("alg", &key.alg());
    line("kid", &key.kid());
    line("max ttl seconds", &config.max_ttl_seconds);
    line("default ttl seconds", &config.effective_default_ttl());
    line("jwks url", &format_args!("{base}{JWKS_PATH}"));
    line("mint url", &format_args!("POST {base}{TOKENS_PATH}"));
    report
}

/// The URL `healthcheck` probes when none is given: `/healthz` on the
/// configured port, over loopback unless the service binds one address only.
pub fn default_healthcheck_url(config: &Config) -> String {
    let host = if config.host.is_unspecified() {
        match config.host {
            std::net::IpAddr::V4(_) => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(_) => "[::1]".to_owned(),
        }
    } else {
        match config.host {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        }
    };
    format!(
        "http://{host}:{}{}",
        config.port,
        crate::routes::HEALTHZ_PATH
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyMaterial;
    use crate::keys::KeySource;

    #[test]
    fn keygen_output_loads_as_a_pinned_key_for_each_algorithm() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            let line = keygen(alg, None, DEFAULT_RSA_BITS).unwrap();
            assert!(!line.contains('\n'));
            let jwk: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
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
    fn keygen_honours_kid_and_bits() {
        let line = keygen(SigningAlg::Rs256, Some("prod-key-7"), 4096).unwrap();
        let public: Value = serde_json::from_str(&public_jwk(&line).unwrap()).unwrap();
        assert_eq!(public["kid"], "prod-key-7");
        // 4096 bits = 512 bytes = 683 base64url characters.
        assert_eq!(public["n"].as_str().unwrap().len(), 683);
        assert!(public.get("d").is_none());
    }

    #[test]
    fn check_config_reports_the_fingerprint_without_private_material() {
        let private = keygen(SigningAlg::Es256, Some("ops-key"), DEFAULT_RSA_BITS).unwrap();
        let d = serde_json::from_str::<Value>(&private).unwrap()["d"]
            .as_str()
            .unwrap()
            .to_owned();
        let config = Config {
            signing_alg: SigningAlg::Es256,
            signing_key_json: Some(KeyMaterial::new(private)),
            ..Config::default()
        };
        let (_, report) = check_config(&config).unwrap();
        assert_eq!(
            report,
            "listen: 0.0.0.0:3200\nissuer: macp-auth-service\naudience: macp-runtime\nkey source: env\nalg: ES256\nkid: ops-key\nmax ttl seconds: 3600\ndefault ttl seconds: 300\njwks url: http://localhost:3200/.well-known/jwks.json\nmint url: POST http://localhost:3200/tokens\n"
        );
        assert!(!report.contains(&d));
    }

    #[test]
    fn the_default_healthcheck_url_follows_host_and_port() {
        let mut config = Config::default();
        assert_eq!(
            default_healthcheck_url(&config),
            "http://127.0.0.1:3200/healthz"
        );
        config.port = 8080;
        config.host = "::".parse().unwrap();
        assert_eq!(
            default_healthcheck_url(&config),
            "http://[::1]:8080/healthz"
        );
        config.host = "10.0.0.5".parse().unwrap();
        assert_eq!(
            default_healthcheck_url(&config),
            "http://10.0.0.5:8080/healthz"
        );
    }
}
