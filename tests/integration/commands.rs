//! The operator subcommands, run as the binary: keygen, check-config and
//! healthcheck, plus key interchange with Node's crypto (what the reference
//! service's jose library uses), so keys move both ways between the two.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::keys::{KeySource, SigningKey};
use serde_json::Value;

use crate::helpers::{TestServer, state};

fn binary(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_macp-auth-service"));
    command.env_clear().args(args);
    command
}

pub(crate) fn run_with_stdin(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
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
    let server = TestServer::start(state()).await;
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
    let down = binary(&[
        "healthcheck",
        "--url",
        &format!("http://127.0.0.1:{closed}/healthz"),
    ])
    .output()
    .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
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
    let dir = std::env::temp_dir().join(format!("macp-keys-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
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
