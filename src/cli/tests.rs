//! Unit tests of the operator commands.

use std::path::Path;

use super::args::NewClientArgs;
use super::check_config::check_config;
use super::clients::{clients_add, clients_new as create_client};

/// `clients new` for a secret client, as its flags would build it.
fn clients_new(
    name: &str,
    senders: Vec<String>,
    max_ttl_seconds: Option<u64>,
    secret_file: Option<&Path>,
) -> Result<String, CommandError> {
    create_client(NewClientArgs {
        name: name.to_owned(),
        senders,
        max_ttl_seconds,
        secret_file: secret_file.map(Path::to_path_buf),
        jwt_issuer: None,
        jwt_audience: Vec::new(),
        jwt_subject: Vec::new(),
        jwt_jwks_uri: None,
        jwt_jwks_file: None,
        jwt_ca_file: None,
        ceiling_can_start_sessions: None,
        ceiling_can_manage_mode_registry: None,
        ceiling_is_observer: None,
        ceiling_allowed_modes: None,
        ceiling_max_open_sessions: None,
    })
}
use super::healthcheck::default_healthcheck_url;
use super::keygen::{DEFAULT_RSA_BITS, keygen};
use super::keys::{activation_warning, keys_add, keys_prune};
use crate::config::Config;
use serde_json::Value;

use super::CommandError;
use super::keygen::public_jwk;
use crate::app::fingerprint::{ClientsLine, Finding, Fingerprint, Severity};
use crate::clients::ClientList;
use crate::config::KeyMaterial;
use crate::keys::SigningKey;
use crate::keys::ring::{ACTIVATE_AT, KeyRing, ring_document};
use crate::keys::store::{LoadedRing, load_ring};
use crate::keys::{Backends, KeySource, SigningAlg};
use crate::reload::Source;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("macp-commands-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `keys add` at instant 0 with the default pre-publication window.
fn add(path: &Path, jwk: &str) -> Result<Vec<String>, CommandError> {
    keys_add(path, jwk, 0, 600, &Backends::default(), None).map(|added| added.kids)
}

/// A ring file with key "old" (always active) and "new" activating at `at`.
fn old_and_new_ring(path: &Path, at: &str) {
    add(
        path,
        &keygen(SigningAlg::Es256, Some("old"), 0, None).unwrap(),
    )
    .unwrap();
    add(
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
    let (source, fingerprint, clients) = check_config(&config).unwrap();
    assert!(clients.is_empty());
    let report = fingerprint.report();
    assert_eq!(source, Source::Inline);
    assert_eq!(
        report,
        "listen: 0.0.0.0:3200\nissuer: macp-auth-service\naudience: macp-runtime\nkey source: env\nalg: ES256\nkid: ops-key\nkey ops-key: signing, in-process\nmax ttl seconds: 3600\ndefault ttl seconds: 300\njwks url: http://localhost:3200/.well-known/jwks.json\nmint url: POST http://localhost:3200/tokens\nmetrics url: http://localhost:3200/metrics\nminting clients: none (minting is unauthenticated)\ntraces: off\nerror: minting is unauthenticated and 0.0.0.0 is not a loopback address: anyone who can reach this port can mint a token for any sender; set MACP_AUTH_CLIENTS_FILE or MACP_AUTH_CLIENTS_JSON, or restrict the network path and set MACP_AUTH_ALLOW_UNAUTHENTICATED=true to say so\nwarning: MACP_AUTH_PUBLIC_URL is unset and 0.0.0.0 is not a loopback address: the discovery document builds jwks_uri from each request's Host header (served Cache-Control: private); set MACP_AUTH_PUBLIC_URL to the URL verifiers reach this service by\n"
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
        report.contains("key old: signing, retires 1970-01-01T01:34:20Z, in-process\n"),
        "{report}"
    );
    assert!(
        report.contains("key new: pending, activates 1970-01-01T00:33:20Z, in-process\n"),
        "{report}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_add_builds_a_ring_and_refuses_duplicates() {
    let dir = temp_dir("add");
    let path = dir.join("ring.json");
    let first = keygen(SigningAlg::Es256, Some("a"), 0, None).unwrap();
    assert_eq!(add(&path, &first).unwrap(), ["a"]);
    let second = keygen(SigningAlg::Es256, Some("b"), 0, Some("2000000000")).unwrap();
    assert_eq!(add(&path, &second).unwrap(), ["a", "b"]);
    let again = keygen(SigningAlg::Es256, Some("a"), 0, None).unwrap();
    assert!(matches!(add(&path, &again), Err(CommandError::Usage(_))));
    let rsa = keygen(SigningAlg::Rs256, Some("r"), 2048, None).unwrap();
    assert!(add(&path, &rsa).is_err(), "one algorithm per ring");
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
    let early = keys_prune(&path, 1000 + 3600 + 59, 3600, &Backends::default(), None).unwrap();
    assert!(early.dropped.is_empty(), "still published");
    assert_eq!(
        early.next_retirement,
        Some(("old".to_owned(), 1000 + 3600 + 60)),
        "says when to prune again"
    );
    let pruned = keys_prune(&path, 1000 + 3600 + 60, 3600, &Backends::default(), None).unwrap();
    assert_eq!(pruned.dropped, ["old"]);
    assert_eq!(pruned.next_retirement, None, "the last key never retires");
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

/// A pinned ES256 ring (from `keys`, JWK texts) on a loopback bind with a
/// client list: a configuration serving has nothing to say about.
fn clean_config(keys: &[String]) -> Config {
    let mut config = Config::default();
    config.keys.alg = SigningAlg::Es256;
    let ring = match keys {
        [one] => one.clone(),
        many => {
            let keys: Vec<Value> = many
                .iter()
                .map(|k| serde_json::from_str(k).unwrap())
                .collect();
            serde_json::json!({ "keys": keys }).to_string()
        }
    };
    config.keys.inline = Some(KeyMaterial::new(ring));
    config.listen.host = "127.0.0.1".parse().unwrap();
    config
}

fn findings_of(config: &Config, clients: &ClientsLine, now: u64) -> Vec<Finding> {
    let LoadedRing { ring, source, .. } = load_ring(config, now).unwrap();
    Fingerprint::new(config, &ring, &source, clients.clone(), now).findings
}

/// The instant the finding cases are judged at.
const FINDINGS_NOW: u64 = 1_000_000;

/// The ring of a finding case.
#[derive(Clone, Copy)]
enum CaseRing {
    /// `k1`, always active.
    One,
    /// `k1`, and `k2` activating 120 s after [`FINDINGS_NOW`].
    ActivatingSoon,
    /// `k1`, and `k2` activating 900 s after [`FINDINGS_NOW`].
    ActivatingLater,
    /// `k1` without its kid.
    Kidless,
}

/// One configuration and the one finding (if any) serving has about it.
struct FindingCase {
    name: &'static str,
    ring: CaseRing,
    /// What the case changes in the clean configuration.
    tweak: fn(&mut Config),
    /// Whether minting clients are configured.
    listed: bool,
    expected: Option<(Severity, &'static str)>,
}

const FINDING_CASES: &[FindingCase] = &[
    FindingCase {
        name: "a clean configuration",
        ring: CaseRing::One,
        tweak: |_| {},
        listed: true,
        expected: None,
    },
    FindingCase {
        name: "an ephemeral key",
        ring: CaseRing::One,
        tweak: |c| c.keys.inline = None,
        listed: true,
        expected: Some((
            Severity::Warning,
            "ephemeral signing key: tokens minted now stop verifying",
        )),
    },
    FindingCase {
        name: "unauthenticated minting on a wildcard bind",
        ring: CaseRing::One,
        tweak: |c| {
            c.listen.host = "0.0.0.0".parse().unwrap();
            c.listen.public_url = Some("https://auth.example.com".into());
        },
        listed: false,
        expected: Some((
            Severity::Error,
            "minting is unauthenticated and 0.0.0.0 is not a loopback address",
        )),
    },
    FindingCase {
        name: "unauthenticated minting on a wildcard bind, declared intended",
        ring: CaseRing::One,
        tweak: |c| {
            c.listen.host = "0.0.0.0".parse().unwrap();
            c.listen.public_url = Some("https://auth.example.com".into());
            c.clients.allow_unauthenticated = true;
        },
        listed: false,
        expected: Some((
            Severity::Warning,
            "minting is unauthenticated on 0.0.0.0, as MACP_AUTH_ALLOW_UNAUTHENTICATED=true says is intended",
        )),
    },
    FindingCase {
        name: "discovery following the Host header on a wildcard bind",
        ring: CaseRing::One,
        tweak: |c| c.listen.host = "0.0.0.0".parse().unwrap(),
        listed: true,
        expected: Some((
            Severity::Warning,
            "MACP_AUTH_PUBLIC_URL is unset and 0.0.0.0 is not a loopback address",
        )),
    },
    FindingCase {
        name: "unauthenticated minting on loopback",
        ring: CaseRing::One,
        tweak: |_| {},
        listed: false,
        expected: Some((
            Severity::Warning,
            "minting is unauthenticated: any local process can mint",
        )),
    },
    FindingCase {
        name: "the opt-in beside a client list",
        ring: CaseRing::One,
        tweak: |c| c.clients.allow_unauthenticated = true,
        listed: true,
        expected: Some((
            Severity::Warning,
            "MACP_AUTH_ALLOW_UNAUTHENTICATED is set, but a client list is configured",
        )),
    },
    FindingCase {
        name: "a default TTL above the maximum",
        ring: CaseRing::One,
        tweak: |c| {
            c.tokens.max_ttl_seconds = 300;
            c.tokens.default_ttl_seconds = 600;
        },
        listed: true,
        expected: Some((
            Severity::Warning,
            "MACP_AUTH_DEFAULT_TTL_SECONDS (600) exceeds MACP_AUTH_MAX_TTL_SECONDS (300)",
        )),
    },
    FindingCase {
        name: "a key activating inside the pre-publication window",
        ring: CaseRing::ActivatingSoon,
        tweak: |_| {},
        listed: true,
        expected: Some((
            Severity::Warning,
            "key k2 activates in 120 s (1970-01-12T13:48:40Z), less than MACP_AUTH_KEY_PREPUBLISH_SECONDS (600 s)",
        )),
    },
    FindingCase {
        name: "a key activating after the window",
        ring: CaseRing::ActivatingLater,
        tweak: |_| {},
        listed: true,
        expected: None,
    },
    FindingCase {
        name: "a metrics address on the API's port",
        ring: CaseRing::One,
        tweak: |c| c.listen.metrics_addr = Some("0.0.0.0:3200".parse().unwrap()),
        listed: true,
        expected: Some((
            Severity::Error,
            "MACP_AUTH_METRICS_ADDR 0.0.0.0:3200 uses port 3200, which the API already listens on",
        )),
    },
    FindingCase {
        name: "a metrics address of its own",
        ring: CaseRing::One,
        tweak: |c| c.listen.metrics_addr = Some("0.0.0.0:9464".parse().unwrap()),
        listed: true,
        expected: None,
    },
    FindingCase {
        name: "a misspelt variable",
        ring: CaseRing::One,
        tweak: |c| {
            c.unknown_variables = vec![(
                "MACP_AUTH_MAX_TTL".into(),
                Some("MACP_AUTH_MAX_TTL_SECONDS"),
            )]
        },
        listed: true,
        expected: Some((
            Severity::Warning,
            "MACP_AUTH_MAX_TTL is set but no setting of this service reads it (did you mean MACP_AUTH_MAX_TTL_SECONDS?)",
        )),
    },
    FindingCase {
        name: "a lone pinned key without kid",
        ring: CaseRing::Kidless,
        tweak: |_| {},
        listed: true,
        expected: Some((
            Severity::Warning,
            "the pinned key has no kid, so it is published as \"key-1\"",
        )),
    },
];

/// The JWK texts of each [`CaseRing`], in the order of its variants.
fn case_rings() -> [Vec<String>; 4] {
    let now = FINDINGS_NOW;
    let key = keygen(SigningAlg::Es256, Some("k1"), 0, None).unwrap();
    let next = |activate_at: u64| {
        keygen(
            SigningAlg::Es256,
            Some("k2"),
            0,
            Some(&activate_at.to_string()),
        )
        .unwrap()
    };
    let kidless = {
        let mut jwk: Value = serde_json::from_str(&key).unwrap();
        jwk.as_object_mut().unwrap().remove("kid");
        jwk.to_string()
    };
    [
        vec![key.clone()],
        vec![key.clone(), next(now + 120)],
        vec![key, next(now + 900)],
        vec![kidless],
    ]
}

#[test]
fn every_startup_warning_and_error_is_a_finding_that_check_config_reports() {
    let now = FINDINGS_NOW;
    let rings = case_rings();
    let listed = ClientsLine::List {
        variable: "MACP_AUTH_CLIENTS_JSON",
        names: vec!["control-plane".into()],
    };
    for case in FINDING_CASES {
        let name = case.name;
        let clients = if case.listed {
            &listed
        } else {
            &ClientsLine::Off
        };
        let mut config = clean_config(&rings[case.ring as usize]);
        (case.tweak)(&mut config);
        let findings = findings_of(&config, clients, now);
        match case.expected {
            None => assert!(findings.is_empty(), "{name}: {findings:?}"),
            Some((severity, text)) => {
                assert_eq!(findings.len(), 1, "{name}: {findings:?}");
                assert_eq!(findings[0].severity, severity, "{name}");
                assert!(findings[0].message.contains(text), "{name}: {findings:?}");
                let LoadedRing { ring, source, .. } = load_ring(&config, now).unwrap();
                let report =
                    Fingerprint::new(&config, &ring, &source, clients.clone(), now).report();
                let label = if severity == Severity::Error {
                    "error"
                } else {
                    "warning"
                };
                assert!(
                    report.contains(&format!("\n{label}: {}\n", findings[0].message)),
                    "{name}: {report}"
                );
            }
        }
    }
}

#[test]
fn keys_add_warns_when_a_key_would_sign_before_verifiers_can_have_fetched_it() {
    let cases: &[(u64, Option<&str>)] = &[
        (10_000 + 600, None),
        (
            10_000 + 599,
            Some(
                "key k2 activates in 599 s (1970-01-01T02:56:39Z), less than MACP_AUTH_KEY_PREPUBLISH_SECONDS (600 s)",
            ),
        ),
        (
            10_000,
            Some("key k2 activates at 1970-01-01T02:46:40Z, which has passed"),
        ),
        (
            5,
            Some("which has passed: it signs as soon as a replica loads the ring"),
        ),
    ];
    for (at, expected) in cases {
        let warning = activation_warning("k2", *at, 10_000, 600);
        match (expected, &warning) {
            (None, None) => {}
            (Some(text), Some(warning)) => {
                assert!(warning.contains(text), "{at}: {warning}");
                assert!(
                    warning.contains("MACP_AUTH_KEY_PREPUBLISH_SECONDS"),
                    "{warning}"
                );
            }
            _ => panic!("{at}: {warning:?}"),
        }
    }
    let dir = temp_dir("add-warning");
    let path = dir.join("ring.json");
    let first = keygen(SigningAlg::Es256, Some("k1"), 0, Some("5")).unwrap();
    let added = keys_add(&path, &first, 10_000, 600, &Backends::default(), None).unwrap();
    assert_eq!(
        added.warning, None,
        "a first key has nothing to be published before"
    );
    let next = keygen(SigningAlg::Es256, Some("k2"), 0, Some("10300")).unwrap();
    let added = keys_add(&path, &next, 10_000, 600, &Backends::default(), None).unwrap();
    assert!(
        added
            .warning
            .unwrap()
            .starts_with("key k2 activates in 300 s")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_add_reports_an_algorithm_mismatch_before_anything_else() {
    let dir = temp_dir("mismatch");
    let path = dir.join("ring.json");
    add(
        &path,
        &keygen(SigningAlg::Rs256, Some("r1"), 2048, None).unwrap(),
    )
    .unwrap();
    // No activate_at, and the same kid: both would be refused too.
    let ec = keygen(SigningAlg::Es256, Some("r1"), 0, None).unwrap();
    let err = add(&path, &ec).unwrap_err().to_string();
    assert!(
        err.starts_with("this key is ES256, but the ring holds RS256 keys"),
        "{err}"
    );
    assert!(err.contains("keygen --alg RS256"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_add_keeps_the_kid_a_lone_kidless_key_is_served_with() {
    let dir = temp_dir("lone");
    let path = dir.join("ring.json");
    let mut lone: Value =
        serde_json::from_str(&keygen(SigningAlg::Es256, None, 0, None).unwrap()).unwrap();
    lone.as_object_mut().unwrap().remove("kid");
    std::fs::write(&path, lone.to_string()).unwrap();
    let next = keygen(SigningAlg::Es256, Some("k2"), 0, Some("99999999999")).unwrap();
    assert_eq!(add(&path, &next).unwrap(), ["key-1", "k2"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn clients_new_writes_the_secret_to_a_new_owner_only_file_and_prints_only_the_entry() {
    let dir = temp_dir("secret-file");
    let secret_path = dir.join("control-plane.secret");
    let senders = vec!["agent://*".to_owned()];
    let line = clients_new("control-plane", senders.clone(), None, Some(&secret_path)).unwrap();
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    let secret = secret.trim_end();
    assert_eq!(mode(&secret_path), 0o600);
    assert!(!line.contains(secret), "{line}");
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["name"], "control-plane");
    let list = ClientList::parse(&format!("[{line}]")).unwrap();
    assert_eq!(
        list.authenticate(secret).map(|c| c.name()),
        Some("control-plane")
    );

    let again = clients_new("other", senders.clone(), None, Some(&secret_path)).unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    assert_eq!(
        std::fs::read_to_string(&secret_path).unwrap().trim_end(),
        secret,
        "never overwritten"
    );

    let both: Value =
        serde_json::from_str(&clients_new("x", senders, None, None).unwrap()).unwrap();
    assert!(
        both["secret"].is_string() && both["client"].is_object(),
        "without the flag, as before"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn clients_add_replaces_the_list_atomically_and_refuses_a_duplicate_name() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir("clients-add");
    let list = dir.join("clients.json");
    let entry = |name: &str| {
        clients_new(
            name,
            vec!["agent://*".into()],
            Some(60),
            Some(&dir.join(name)),
        )
        .unwrap()
    };
    assert_eq!(clients_add(&list, &entry("a")).unwrap(), ["a"]);
    assert_eq!(mode(&list), 0o600);
    let inode = std::fs::metadata(&list).unwrap().ino();
    assert_eq!(clients_add(&list, &entry("b")).unwrap(), ["a", "b"]);
    assert_ne!(
        std::fs::metadata(&list).unwrap().ino(),
        inode,
        "replaced by rename"
    );
    assert_eq!(mode(&list), 0o600);

    let before = std::fs::read(&list).unwrap();
    let err = clients_add(&list, &entry("a2").replace("\"a2\"", "\"a\"")).unwrap_err();
    assert!(
        err.to_string().contains("already has a client named \"a\""),
        "{err}"
    );
    let with_secret = clients_new("c", vec!["agent://*".into()], None, None).unwrap();
    let err = clients_add(&list, &with_secret).unwrap_err();
    assert!(err.to_string().contains("holds a client secret"), "{err}");
    assert_eq!(
        std::fs::read(&list).unwrap(),
        before,
        "a refusal writes nothing"
    );
    ClientList::parse(&String::from_utf8(before).unwrap()).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_add_takes_the_configured_algorithm_for_a_member_naming_none_and_holds_keys_to_it() {
    let dir = temp_dir("configured-alg");
    let path = dir.join("ring.json");
    let reference = r#"{"kid": "hsm-1", "pkcs11": "pkcs11:object=k"}"#;
    let backends = Backends::default();
    let err = keys_add(&path, reference, 0, 600, &backends, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the ring holds no keys",
        "no algorithm at all"
    );
    // With MACP_AUTH_SIGNING_ALG the member is opened for it (and fails
    // here only for want of a PKCS#11 module, or of the feature).
    let configured = Some(SigningAlg::Es256);
    let err = keys_add(&path, reference, 0, 600, &backends, configured).unwrap_err();
    let expected = if cfg!(feature = "pkcs11") {
        "no module"
    } else {
        "no pkcs11 support"
    };
    assert!(err.to_string().contains(expected), "{err}");
    let ec = keygen(SigningAlg::Es256, Some("k1"), 0, None).unwrap();
    let err = keys_add(&path, &ec, 0, 600, &backends, Some(SigningAlg::Rs256)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("this key is ES256, but MACP_AUTH_SIGNING_ALG is RS256"),
        "{err}"
    );
    assert!(!path.exists(), "nothing written");
    let added = keys_add(&path, &ec, 0, 600, &backends, configured).unwrap();
    assert_eq!(added.kids, ["k1"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
