//! A SoftHSM2 token of its own for each test: a temporary token directory
//! and `SOFTHSM2_CONF` pointing at it, a user PIN, and keys generated inside
//! the token with `pkcs11-tool`, so the private keys never exist outside it.
//! The public keys are read back with `pkcs11-tool` too, independently of
//! the service's own PKCS#11 code, so a test can compare what the service
//! publishes with what the token holds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;
use super::deps::{have, missing};

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The user PIN of every test token.
pub const PIN: &str = "4321-user";

const SO_PIN: &str = "8765-so";

/// The two key types the service signs with.
#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    /// RSA 2048 (RS256).
    Rsa2048,
    /// EC P-256 (ES256).
    EcP256,
}

/// A token in a temporary directory, deleted on drop.
pub struct SoftHsm {
    dir: PathBuf,
    _owned: Option<TempDir>,
    conf: PathBuf,
    /// The token's label.
    pub token: String,
}

impl SoftHsm {
    /// A fresh, initialised token labelled `macp-<name>`, or `None` (after
    /// printing why) when SoftHSM2 or OpenSC's pkcs11-tool is missing
    /// outside CI.
    pub fn create(name: &str) -> Option<SoftHsm> {
        for program in [MODULE, "softhsm2-util", "pkcs11-tool"] {
            if !have(program) {
                return missing(&format!(
                    "{program} is not installed (Debian: softhsm2, opensc)"
                ));
            }
        }
        let owned = TempDir::new(&format!("softhsm-{name}"));
        let mut hsm = SoftHsm::initialise(owned.join("hsm"), name);
        hsm._owned = Some(owned);
        Some(hsm)
    }

    /// Writes a configuration for `dir` and initialises a token in it.
    fn initialise(dir: PathBuf, name: &str) -> SoftHsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm {
            dir,
            _owned: None,
            conf,
            token: format!("macp-{name}"),
        };
        hsm.run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                &hsm.token,
                "--pin",
                PIN,
                "--so-pin",
                SO_PIN,
            ],
        );
        hsm
    }

    /// The environment a process needs to see this token.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![("SOFTHSM2_CONF", self.conf.clone().into_os_string())]
    }

    /// The temporary directory (for PIN files and the like).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `pkcs11:token=<token>;object=<label>`.
    pub fn uri(&self, label: &str) -> String {
        format!("pkcs11:token={};object={label}", self.token)
    }

    /// Generates a key pair inside the token (label `label`, CKA_ID `id_hex`)
    /// and returns its public key as DER SubjectPublicKeyInfo.
    pub fn generate(&self, kind: KeyKind, label: &str, id_hex: &str) -> Vec<u8> {
        let key_type = match kind {
            KeyKind::Rsa2048 => "rsa:2048",
            KeyKind::EcP256 => "EC:prime256v1",
        };
        self.pkcs11_tool(&[
            "--login",
            "--pin",
            PIN,
            "--keypairgen",
            "--key-type",
            key_type,
            "--label",
            label,
            "--id",
            id_hex,
        ]);
        let out = self.dir.join(format!("{label}.pub.der"));
        self.pkcs11_tool(&[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            label,
            "--output-file",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    }

    /// Deletes the public key object `label` (an EC private key alone cannot
    /// give its point).
    pub fn delete_public(&self, label: &str) {
        self.pkcs11_tool(&[
            "--login",
            "--pin",
            PIN,
            "--delete-object",
            "--type",
            "pubkey",
            "--label",
            label,
        ]);
    }

    fn pkcs11_tool(&self, args: &[&str]) {
        let mut all = vec!["--module", MODULE, "--token-label", &self.token];
        all.extend_from_slice(args);
        self.run("pkcs11-tool", &all);
    }

    fn run(&self, program: &str, args: &[&str]) {
        // One tool at a time per test process: SoftHSM2 rewrites a token's
        // files in place, and a second process reading them meanwhile can
        // find no token at all.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let output = Command::new(program)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap_or_else(|err| panic!("{program}: {err}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The directory of the token every in-process PKCS#11 test shares. A
/// PKCS#11 module reads its configuration once per process, at
/// `C_Initialize`, so in-process tests cannot each have their own; tests
/// that start the binary use [`SoftHsm::create`] instead.
fn shared_dir() -> PathBuf {
    std::env::temp_dir().join(format!("macp-softhsm-shared-{}", std::process::id()))
}

#[ctor::ctor(unsafe)]
fn point_softhsm_at_the_shared_token() {
    // SAFETY: constructors run before main, while the process has a single
    // thread, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("SOFTHSM2_CONF", shared_dir().join("softhsm2.conf")) };
}

/// The token in-process tests share (this process's `SOFTHSM2_CONF` names
/// it), created on first use; `None` (after printing why) when SoftHSM2 is
/// missing outside CI. Each test generates keys under labels of its own.
pub fn shared() -> Option<&'static SoftHsm> {
    static SHARED: std::sync::OnceLock<Option<SoftHsm>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            for program in [MODULE, "softhsm2-util", "pkcs11-tool"] {
                if !have(program) {
                    return missing(&format!(
                        "{program} is not installed (Debian: softhsm2, opensc)"
                    ));
                }
            }
            Some(SoftHsm::initialise(shared_dir(), "shared"))
        })
        .as_ref()
}
