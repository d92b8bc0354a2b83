//! moto's KMS server, started by the tests on a free loopback port through
//! `moto_server.py` (which makes Sign honour `MessageType: DIGEST` the way
//! AWS KMS does; see the comment there for why that matters).
//!
//! Keys are created with boto3 against the server, and their public keys
//! read back the same way, independently of the service's own KMS code.
//! Every process pointed at the server gets static test credentials, a
//! region, the endpoint and `AWS_EC2_METADATA_DISABLED=true`, so no AWS SDK
//! ever probes the instance-metadata address (these machines may only talk
//! to loopback), nor reads a developer's own AWS profile.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::deps::{have, have_python_module, missing};

/// How long moto may take to import and start listening.
const START_DEADLINE: Duration = Duration::from_secs(90);

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// A key created in moto.
#[derive(Debug, Clone)]
pub struct MotoKey {
    /// The bare key ID (a UUID).
    pub key_id: String,
    /// The key's ARN.
    pub arn: String,
    /// The public key, DER SubjectPublicKeyInfo, as GetPublicKey returns it.
    pub spki: Vec<u8>,
}

impl Moto {
    /// Starts the server, or returns `None` (after printing why) when
    /// python3 or moto is missing outside CI.
    pub fn start() -> Option<Moto> {
        if !have("python3") || !have_python_module("moto.server") || !have_python_module("boto3") {
            return missing(
                "python3 with moto[server] is not installed (pip install 'moto[server]')",
            );
        }
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/support/moto_server.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(START_DEADLINE).unwrap_or_default();
        let Some(port) = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse::<u16>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("moto_server.py did not report its port within {START_DEADLINE:?}: {line:?}");
        };
        Some(Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// What a process needs to use this server as its KMS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing-access-key".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret-key".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }

    /// Creates a SIGN_VERIFY key of `key_spec` (`RSA_2048`,
    /// `ECC_NIST_P256`, ...), with `alias` (`alias/NAME`) pointing at it
    /// when given.
    pub fn create_key(&self, key_spec: &str, alias: Option<&str>) -> MotoKey {
        const SCRIPT: &str = r#"
import base64, json, os, sys
import boto3
kms = boto3.client("kms", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
meta = kms.create_key(KeySpec=sys.argv[1], KeyUsage="SIGN_VERIFY")["KeyMetadata"]
if len(sys.argv) > 2:
    kms.create_alias(AliasName=sys.argv[2], TargetKeyId=meta["KeyId"])
spki = kms.get_public_key(KeyId=meta["KeyId"])["PublicKey"]
print(json.dumps({"key_id": meta["KeyId"], "arn": meta["Arn"], "spki": base64.b64encode(spki).decode()}))
"#;
        let mut command = Command::new("python3");
        command.args(["-c", SCRIPT, key_spec]).envs(self.env());
        if let Some(alias) = alias {
            command.arg(alias);
        }
        let output = command.output().expect("python3 runs");
        assert!(
            output.status.success(),
            "creating a {key_spec} key in moto failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        MotoKey {
            key_id: value["key_id"].as_str().unwrap().to_owned(),
            arn: value["arn"].as_str().unwrap().to_owned(),
            spki: STANDARD.decode(value["spki"].as_str().unwrap()).unwrap(),
        }
    }

    /// Points `alias` (`alias/NAME`, existing) at the key `key_id`.
    pub fn point_alias(&self, alias: &str, key_id: &str) {
        const SCRIPT: &str = r#"
import os, sys
import boto3
kms = boto3.client("kms", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
kms.update_alias(AliasName=sys.argv[1], TargetKeyId=sys.argv[2])
"#;
        let output = Command::new("python3")
            .args(["-c", SCRIPT, alias, key_id])
            .envs(self.env())
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "re-pointing {alias} in moto failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the server process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill takes plain integers; the pid is our own child, not
        // yet reaped (it is only waited for in drop).
        let outcome = unsafe { libc::kill(pid, signal) };
        assert_eq!(outcome, 0, "kill({pid}, {signal}) failed");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
