//! The operator subcommands, run as the binary: keygen, check-config and
//! healthcheck, plus key interchange with Node's crypto (what the reference
//! service's jose library uses), so keys move both ways between the two.

use std::cell::RefCell;
use std::collections::BTreeSet;

use std::process::{Command, Output};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::keys::{KeySource, SigningKey};
use serde_json::Value;

use crate::support::{self, TempDir, TestApp, private_jwk, run_with_stdin, state};

/// The binary with an empty environment and `args`.
fn binary(args: &[&str]) -> Command {
    let mut command = support::binary();
    command.args(args);
    command
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn keygen_prints_one_jwk_line_that_check_config_accepts() {
    for (args, alg) in [
        (vec!["keygen"], "RS256"),
        (vec!["keygen", "--alg", "ES256", "--kid", "ops-7"], "ES256"),
        (vec!["keygen", "--bits", "3072"], "RS256"),
    ] {
        let line = stdout(&binary(&args).output().unwrap());
        assert_eq!(line.lines().count(), 1, "{args:?}: {line}");
        let jwk: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(jwk["alg"], alg);
        assert_eq!(jwk["use"], "sig");
        let kid = jwk["kid"].as_str().unwrap();

        let report = stdout(
            &binary(&["check-config", "--require-pinned-key"])
                .env("MACP_AUTH_SIGNING_ALG", alg)
                .env("MACP_AUTH_SIGNING_KEY_JSON", line.trim())
                .output()
                .unwrap(),
        );
        assert!(report.contains(&format!("kid: {kid}\n")), "{report}");
        assert!(report.contains("key source: env\n"), "{report}");
        assert!(report.contains(&format!("alg: {alg}\n")), "{report}");
        assert!(
            !report.contains(jwk["d"].as_str().unwrap()),
            "no private material"
        );
    }
    let kid = serde_json::from_str::<Value>(&stdout(
        &binary(&["keygen", "--alg", "ES256", "--kid", "ops-7"])
            .output()
            .unwrap(),
    ))
    .unwrap()["kid"]
        .clone();
    assert_eq!(kid, "ops-7");
}

#[test]
fn keygen_refuses_bits_for_es256_and_unknown_sizes() {
    for args in [
        &["keygen", "--alg", "ES256", "--bits", "4096"][..],
        &["keygen", "--bits", "1024"][..],
        &["keygen", "--alg", "HS256"][..],
    ] {
        let output = binary(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn keygen_public_prints_the_public_half_of_a_private_jwk() {
    let private = stdout(&binary(&["keygen", "--kid", "pub-test"]).output().unwrap());
    let public: Value = serde_json::from_str(&stdout(&run_with_stdin(
        binary(&["keygen", "--public"]),
        &private,
    )))
    .unwrap();
    let private: Value = serde_json::from_str(&private).unwrap();
    assert_eq!(public["kid"], "pub-test");
    assert_eq!(public["n"], private["n"]);
    for member in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(public.get(member).is_none(), "{member} leaked");
    }
    let rejected = run_with_stdin(
        binary(&["keygen", "--public"]),
        r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
    );
    assert!(!rejected.status.success());
    assert!(String::from_utf8_lossy(&rejected.stderr).contains("must be a private JWK"));
}

#[test]
fn check_config_fails_on_bad_settings_and_on_a_missing_pinned_key_when_required() {
    let bad = binary(&["check-config"])
        .env("MACP_AUTH_SIGNING_ALG", "PS256")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("MACP_AUTH_SIGNING_ALG must be RS256 or ES256")
    );

    let ephemeral = binary(&["check-config"]).output().unwrap();
    assert!(stdout(&ephemeral).contains("key source: ephemeral\n"));
    let required = binary(&["check-config", "--require-pinned-key"])
        .output()
        .unwrap();
    assert!(!required.status.success());
    assert!(String::from_utf8_lossy(&required.stderr).contains("no pinned key"));
}

#[tokio::test]
async fn healthcheck_exits_zero_only_when_healthz_answers() {
    let server = TestApp::start(state()).await;
    let url = server.url("/healthz");
    let healthy = tokio::task::spawn_blocking(move || {
        binary(&["healthcheck", "--url", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    let port = server.addr.port().to_string();
    let by_port = tokio::task::spawn_blocking(move || {
        binary(&["healthcheck"]).env("PORT", port).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        by_port.status.success(),
        "default URL uses PORT: {}",
        String::from_utf8_lossy(&by_port.stderr)
    );

    let missing = server.url("/nope");
    let not_found = tokio::task::spawn_blocking(move || {
        binary(&["healthcheck", "--url", &missing])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(not_found.status.code(), Some(1));

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down_url = format!("http://127.0.0.1:{closed}/healthz");
    let down = binary(&["healthcheck", "--url", &down_url])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.starts_with(&format!(
            "macp-auth-service: unhealthy: {down_url}: request failed: "
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches(&down_url).count(),
        1,
        "the URL once: {stderr}"
    );
    assert!(
        stderr.contains("or pass --url"),
        "says what to check: {stderr}"
    );
}

/// Runs a Node.js script, or returns `None` where Node is not installed.
fn node(script: &str, input: &str) -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node is not installed: skipping the Node crypto interchange check");
        return None;
    }
    let output = run_with_stdin(
        {
            let mut command = Command::new("node");
            command.args(["-e", script]);
            command
        },
        input,
    );
    Some(stdout(&output))
}

const NODE_SIGN: &str = r#"
const crypto = require('crypto');
let text = ''; process.stdin.on('data', d => text += d); process.stdin.on('end', () => {
  const jwk = JSON.parse(text);
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  const options = jwk.kty === 'EC' ? { key, dsaEncoding: 'ieee-p1363' } : key;
  const signature = crypto.sign('sha256', Buffer.from('interchange'), options);
  console.log(JSON.stringify({ signature: signature.toString('base64url') }));
});
"#;

#[test]
fn keys_from_keygen_load_and_sign_in_nodes_jose_crypto() {
    for alg in ["RS256", "ES256"] {
        let private = stdout(&binary(&["keygen", "--alg", alg]).output().unwrap());
        let Some(signed) = node(NODE_SIGN, &private) else {
            return;
        };
        let signature: Value = serde_json::from_str(&signed).unwrap();
        let public = stdout(&run_with_stdin(binary(&["keygen", "--public"]), &private));
        let jwk: Jwk = serde_json::from_str(&public).unwrap();
        let algorithm = if alg == "RS256" {
            Algorithm::RS256
        } else {
            Algorithm::ES256
        };
        let valid = jsonwebtoken::crypto::verify(
            signature["signature"].as_str().unwrap(),
            b"interchange",
            &DecodingKey::from_jwk(&jwk).unwrap(),
            algorithm,
        )
        .unwrap();
        assert!(
            valid,
            "{alg}: Node's signature verifies with our public JWK"
        );
    }
}

const NODE_GENERATE: &str = r#"
const crypto = require('crypto');
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
console.log(JSON.stringify({ rsa, ec }));
"#;

#[test]
fn private_jwks_exported_by_node_load_as_pinned_keys() {
    let Some(generated) = node(NODE_GENERATE, "") else {
        return;
    };
    let keys: Value = serde_json::from_str(&generated).unwrap();
    let rsa =
        SigningKey::from_jwk_json(SigningAlg::Rs256, &keys["rsa"].to_string(), KeySource::Env)
            .unwrap();
    assert_eq!(rsa.public_jwk()["n"], keys["rsa"]["n"]);
    assert_eq!(rsa.kid().len(), 43, "no kid given: RFC 7638 thumbprint");
    let ec = SigningKey::from_jwk_json(SigningAlg::Es256, &keys["ec"].to_string(), KeySource::Env)
        .unwrap();
    assert_eq!(ec.public_jwk()["x"], keys["ec"]["x"]);
}

#[test]
fn keys_add_and_prune_manage_a_ring_file_that_serving_accepts() {
    let dir = TempDir::new("keys-cli");
    let ring = dir.join("ring.json");
    let ring_arg = ring.display().to_string();

    let current = stdout(
        &binary(&["keygen", "--alg", "ES256", "--kid", "current"])
            .output()
            .unwrap(),
    );
    let added = stdout(&run_with_stdin(
        binary(&["keys", "add", "--ring", &ring_arg]),
        &current,
    ));
    assert!(added.contains("1 key: current"), "{added}");
    let next = stdout(
        &binary(&[
            "keygen",
            "--alg",
            "ES256",
            "--kid",
            "next",
            "--activate-at",
            "2999-01-01T00:00:00Z",
        ])
        .output()
        .unwrap(),
    );
    let added = stdout(&run_with_stdin(
        binary(&["keys", "add", "--ring", &ring_arg]),
        &next,
    ));
    assert!(added.contains("2 keys: current, next"), "{added}");
    let duplicate = run_with_stdin(binary(&["keys", "add", "--ring", &ring_arg]), &next);
    assert!(!duplicate.status.success(), "a kid is added once");

    let report = stdout(
        &binary(&["check-config"])
            .env("MACP_AUTH_SIGNING_ALG", "ES256")
            .env("MACP_AUTH_SIGNING_KEY_FILE", &ring_arg)
            .output()
            .unwrap(),
    );
    assert!(report.contains("key source: file\n"), "{report}");
    assert!(report.contains("kid: current\n"), "{report}");
    assert!(
        report.contains("key next: pending, activates 2999-01-01T00:00:00Z"),
        "{report}"
    );

    let pruned = stdout(
        &binary(&["keys", "prune", "--ring", &ring_arg])
            .output()
            .unwrap(),
    );
    assert!(pruned.contains("no retired keys"), "{pruned}");
}

#[test]
fn clients_new_prints_a_secret_once_and_an_entry_the_service_accepts() {
    let output = stdout(
        &binary(&[
            "clients",
            "new",
            "--name",
            "control-plane",
            "--senders",
            "agent://team-a/*",
            "agent://ops",
            "--max-ttl-seconds",
            "600",
        ])
        .output()
        .unwrap(),
    );
    let created: Value = serde_json::from_str(&output).unwrap();
    let secret = created["secret"].as_str().unwrap();
    let entry = &created["client"];
    assert_eq!(entry["name"], "control-plane");
    assert_eq!(
        entry["senders"],
        serde_json::json!(["agent://team-a/*", "agent://ops"])
    );
    assert_eq!(entry["max_ttl_seconds"], 600);
    assert!(
        !entry.to_string().contains(secret),
        "the entry holds only the digest"
    );

    let list = serde_json::json!([entry]).to_string();
    let parsed = macp_auth_service::clients::ClientList::parse(&list).unwrap();
    assert_eq!(
        parsed.authenticate(secret).map(|c| c.name()),
        Some("control-plane")
    );

    let report = stdout(
        &binary(&["check-config"])
            .env("MACP_AUTH_CLIENTS_JSON", &list)
            .output()
            .unwrap(),
    );
    assert!(
        report.contains("minting clients: control-plane\n"),
        "{report}"
    );
    assert!(!report.contains(secret));

    let broken = binary(&["check-config"])
        .env("MACP_AUTH_CLIENTS_JSON", "[{}]")
        .output()
        .unwrap();
    assert!(!broken.status.success());
    assert!(
        String::from_utf8_lossy(&broken.stderr)
            .contains("MACP_AUTH_CLIENTS_JSON must be a JSON array")
    );
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The names `Config` looks up, recorded through its lookup function: with
/// nothing set, and with the variables that make others matter set.
fn variables_config_reads() -> BTreeSet<String> {
    let seen = RefCell::new(BTreeSet::new());
    for set in [
        &[][..],
        &[
            ("MACP_AUTH_RATE_LIMIT_PER_SECOND", "5"),
            ("MACP_AUTH_RATE_LIMIT_BURST", "5"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ][..],
    ] {
        let _ = macp_auth_service::Config::from_lookup(|name| {
            seen.borrow_mut().insert(name.to_owned());
            set.iter()
                .find(|(set_name, _)| *set_name == name)
                .map(|(_, value)| (*value).into())
        });
    }
    seen.into_inner()
}

#[test]
fn serve_help_lists_exactly_the_variables_the_configuration_reads_grouped_as_the_deployment_guide()
{
    let help = stdout(&binary(&["serve", "--help"]).output().unwrap());
    let mut listed = BTreeSet::new();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let reference = &help[help
        .find("\nEnvironment variables")
        .expect("a variable reference")..];
    let mut lines = reference.lines().skip(2);
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_suffix(':').filter(|t| !t.starts_with(' ')) {
            groups.push((title.to_owned(), Vec::new()));
        } else if let Some((name, default)) = line
            .strip_prefix("  ")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|rest| rest.split_once(" [default: "))
        {
            let meaning = lines.next().unwrap_or_default();
            assert!(
                meaning.starts_with("      ") && meaning.trim().len() > 10,
                "{name}: one line of meaning, got {meaning:?}"
            );
            assert!(!default.is_empty(), "{name}");
            assert!(listed.insert(name.to_owned()), "{name} listed twice");
            groups
                .last_mut()
                .expect("a group heading first")
                .1
                .push(name.to_owned());
        }
    }
    assert_eq!(
        listed,
        variables_config_reads(),
        "help and configuration disagree"
    );

    // The same groups, in the same order, as the deployment guide's sections.
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deployment.md"))
        .unwrap();
    let reference = &guide[guide.find("## Environment variables").unwrap()..];
    let reference = &reference[..reference[3..].find("\n## ").unwrap()];
    let sections: Vec<&str> = reference.split("\n### ").skip(1).collect();
    let titles: Vec<&str> = sections.iter().map(|s| s.lines().next().unwrap()).collect();
    let help_titles: Vec<&str> = groups.iter().map(|(title, _)| title.as_str()).collect();
    assert_eq!(help_titles, titles);
    for ((title, names), section) in groups.iter().zip(&sections) {
        for name in names {
            assert!(
                section.contains(&format!("\n| `{name}` |")),
                "{name} should be in the guide's {title:?} table"
            );
        }
    }
}

/// A clean configuration's environment: a pinned ES256 key, a client list,
/// a loopback bind.
fn clean_environment() -> Vec<(&'static str, String)> {
    let created: Value = serde_json::from_str(&stdout(
        &binary(&["clients", "new", "--name", "ci", "--senders", "agent://*"])
            .output()
            .unwrap(),
    ))
    .unwrap();
    vec![
        ("HOST", "127.0.0.1".into()),
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        (
            "MACP_AUTH_SIGNING_KEY_JSON",
            private_jwk(SigningAlg::Es256).to_owned(),
        ),
        (
            "MACP_AUTH_CLIENTS_JSON",
            serde_json::json!([created["client"]]).to_string(),
        ),
    ]
}

fn check_config(strict: bool, env: &[(&str, String)]) -> Output {
    let mut command = binary(&["check-config"]);
    if strict {
        command.arg("--strict");
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// `clean` with the variables of `set` added (or replaced) and those of
/// `unset` removed.
fn environment_with(
    clean: &[(&'static str, String)],
    set: &[(&'static str, &str)],
    unset: &[&str],
) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = clean
        .iter()
        .filter(|(name, _)| !unset.contains(name))
        .cloned()
        .collect();
    env.extend(set.iter().map(|(name, value)| (*name, (*value).to_owned())));
    env
}

/// Runs `check-config` on `env` without and with `--strict`: the report has
/// exactly one finding, which contains `expected`; `--strict` prints the
/// same report, counts the finding and exits 1.
fn assert_one_finding_fails_strict(name: &str, env: &[(&str, String)], expected: &str) {
    let relaxed = check_config(false, env);
    let report = stdout(&relaxed);
    assert!(report.contains(expected), "{name}: {report}");
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("warning: ") || l.starts_with("error: "))
            .count(),
        1,
        "{name}: {report}"
    );
    let strict = check_config(true, env);
    assert_eq!(strict.status.code(), Some(1), "{name}");
    assert!(
        stderr(&strict).contains("--strict: 1 finding"),
        "{name}: {}",
        stderr(&strict)
    );
    // The same report; a countdown in a warning may tick between the runs.
    let facts = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.contains(" activates in "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        facts(&String::from_utf8_lossy(&strict.stdout)),
        facts(&report),
        "{name}"
    );
}

/// One change to the clean environment that gives one finding, as (name,
/// variables set, variables unset, the text of the finding).
type StrictCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static str,
);

const STRICT_CASES: &[StrictCase] = &[
    (
        "a misspelt variable",
        &[("MACP_AUTH_MAX_TTL", "60")],
        &[],
        "warning: MACP_AUTH_MAX_TTL is set but no setting of this service reads it (did you mean MACP_AUTH_MAX_TTL_SECONDS?)",
    ),
    (
        "unauthenticated minting on a wildcard bind",
        &[
            ("HOST", "0.0.0.0"),
            ("MACP_AUTH_PUBLIC_URL", "https://auth.example.com"),
        ],
        &["MACP_AUTH_CLIENTS_JSON", "HOST"],
        "error: minting is unauthenticated and 0.0.0.0 is not a loopback address",
    ),
    (
        "the same, declared intended",
        &[
            ("HOST", "0.0.0.0"),
            ("MACP_AUTH_PUBLIC_URL", "https://auth.example.com"),
            ("MACP_AUTH_ALLOW_UNAUTHENTICATED", "true"),
        ],
        &["MACP_AUTH_CLIENTS_JSON", "HOST"],
        "warning: minting is unauthenticated on 0.0.0.0, as MACP_AUTH_ALLOW_UNAUTHENTICATED=true says is intended",
    ),
    (
        "discovery following the Host header on a wildcard bind",
        &[("HOST", "0.0.0.0")],
        &["HOST"],
        "warning: MACP_AUTH_PUBLIC_URL is unset and 0.0.0.0 is not a loopback address",
    ),
    (
        "a default TTL above the maximum",
        &[
            ("MACP_AUTH_MAX_TTL_SECONDS", "60"),
            ("MACP_AUTH_DEFAULT_TTL_SECONDS", "90"),
        ],
        &[],
        "warning: MACP_AUTH_DEFAULT_TTL_SECONDS (90) exceeds MACP_AUTH_MAX_TTL_SECONDS (60)",
    ),
    (
        "an ephemeral key",
        &[],
        &["MACP_AUTH_SIGNING_KEY_JSON", "MACP_AUTH_SIGNING_ALG"],
        "warning: ephemeral signing key",
    ),
    (
        "metrics on the API's port",
        &[("MACP_AUTH_METRICS_ADDR", "127.0.0.1:3200")],
        &[],
        "error: MACP_AUTH_METRICS_ADDR 127.0.0.1:3200 uses port 3200, which the API already listens on",
    ),
];

#[test]
fn check_config_strict_exits_one_on_any_warning_or_error_and_zero_on_a_clean_configuration() {
    let clean = clean_environment();
    let output = check_config(true, &clean);
    let report = stdout(&output);
    assert!(
        !report.contains("warning:") && !report.contains("error:"),
        "{report}"
    );
    for &(name, set, unset, expected) in STRICT_CASES {
        let env = environment_with(&clean, set, unset);
        assert_one_finding_fails_strict(name, &env, expected);
    }
}

#[test]
fn check_config_strict_exits_one_on_a_key_inside_the_pre_publication_window() {
    let now = macp_auth_service::clock::rfc3339(support::now() + 120);
    let pending = stdout(
        &binary(&[
            "keygen",
            "--alg",
            "ES256",
            "--kid",
            "next",
            "--activate-at",
            &now,
        ])
        .output()
        .unwrap(),
    );
    let ring = serde_json::json!({"keys": [
        serde_json::from_str::<Value>(private_jwk(SigningAlg::Es256)).unwrap(),
        serde_json::from_str::<Value>(&pending).unwrap(),
    ]})
    .to_string();
    let env = environment_with(
        &clean_environment(),
        &[("MACP_AUTH_SIGNING_KEY_JSON", &ring)],
        &["MACP_AUTH_SIGNING_KEY_JSON"],
    );
    assert_one_finding_fails_strict(
        "a key inside the pre-publication window",
        &env,
        "less than MACP_AUTH_KEY_PREPUBLISH_SECONDS (600 s)",
    );
}

#[cfg(unix)]
#[test]
fn clients_new_with_a_secret_file_pipes_into_clients_add() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("macp-clients-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("examples.secret");
    let list = dir.join("clients.json");
    let new = |name: &str| {
        binary(&[
            "clients",
            "new",
            "--name",
            name,
            "--senders",
            "agent://examples/*",
        ])
        .arg("--secret-file")
        .arg(&secret_file)
        .output()
        .unwrap()
    };
    let entry = stdout(&new("examples"));
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(entry.lines().count(), 1);
    assert!(!entry.contains(secret.trim()), "only the entry is printed");
    assert!(
        serde_json::from_str::<Value>(&entry)
            .unwrap()
            .get("secret_sha256")
            .is_some()
    );

    let again = new("other");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert!(
        again.stdout.is_empty(),
        "nothing printed when the secret has nowhere to go"
    );
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), secret);

    let list_arg = list.display().to_string();
    let added = stdout(&run_with_stdin(
        binary(&["clients", "add", "--list", &list_arg]),
        &entry,
    ));
    assert_eq!(added.trim(), format!("{list_arg}: 1 client: examples"));
    let mode = std::fs::metadata(&list).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let duplicate = run_with_stdin(binary(&["clients", "add", "--list", &list_arg]), &entry);
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(stderr(&duplicate).contains("already has a client named \"examples\""));

    let report = stdout(
        &binary(&["check-config"])
            .env("MACP_AUTH_CLIENTS_FILE", &list)
            .output()
            .unwrap(),
    );
    assert!(report.contains("minting clients: examples\n"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_add_warns_about_a_short_notice_and_prune_says_when_the_next_key_retires() {
    let dir = std::env::temp_dir().join(format!("macp-keys-notice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ring = dir.join("ring.json").display().to_string();
    let key = |kid: &str, activate_at: Option<u64>| {
        let mut args = vec!["keygen", "--alg", "ES256", "--kid", kid];
        let at = activate_at.map(|at| at.to_string());
        if let Some(at) = &at {
            args.extend(["--activate-at", at.as_str()]);
        }
        stdout(&binary(&args).output().unwrap())
    };
    let add = |jwk: &str, prepublish: Option<&str>| {
        let mut command = binary(&["keys", "add", "--ring", &ring]);
        if let Some(prepublish) = prepublish {
            command.env("MACP_AUTH_KEY_PREPUBLISH_SECONDS", prepublish);
        }
        run_with_stdin(command, jwk)
    };
    let first = add(&key("k1", None), None);
    assert!(stderr(&first).is_empty(), "{}", stderr(&first));
    let now = support::now();
    let soon = add(&key("k2", Some(now + 90)), None);
    assert!(soon.status.success());
    let warning = stderr(&soon);
    assert!(
        warning.starts_with("macp-auth-service: warning: key k2 activates in ")
            && warning.contains("less than MACP_AUTH_KEY_PREPUBLISH_SECONDS (600 s)"),
        "{warning}"
    );
    let enough = add(&key("k3", Some(now + 90)), Some("60"));
    assert!(
        stderr(&enough).is_empty(),
        "90 s of notice is enough for a 60 s window"
    );
    let past = add(&key("k4", Some(now - 10)), Some("60"));
    assert!(
        stderr(&past).contains("which has passed"),
        "{}",
        stderr(&past)
    );

    let pruned = stdout(
        &binary(&["keys", "prune", "--ring", &ring, "--max-ttl-seconds", "60"])
            .output()
            .unwrap(),
    );
    // k4 activated 10 s ago, so k1 retires at k4's activation + 60 + 60.
    let retires = macp_auth_service::clock::rfc3339(now - 10 + 120);
    assert_eq!(
        pruned.trim(),
        format!("{ring}: no retired keys; key k1 retires at {retires} (prune again after that)")
    );

    let rsa_ring = dir.join("rsa.json").display().to_string();
    let rsa = stdout(&binary(&["keygen"]).output().unwrap());
    stdout(&run_with_stdin(
        binary(&["keys", "add", "--ring", &rsa_ring]),
        &rsa,
    ));
    let mismatch = run_with_stdin(
        binary(&["keys", "add", "--ring", &rsa_ring]),
        &key("ec", None),
    );
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(
        stderr(&mismatch).starts_with(
            "macp-auth-service: keys add: this key is ES256, but the ring holds RS256 keys"
        ),
        "{}",
        stderr(&mismatch)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
