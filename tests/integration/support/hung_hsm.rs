//! A PKCS#11 module that stops answering on demand: a small C shim
//! (`hung_pkcs11.c`), compiled by the test with the system C compiler (the
//! one cargo links with), that forwards every call to SoftHSM2 but holds
//! `C_Login`, `C_FindObjectsInit` and `C_Sign` for as long as a file exists.
//! The service loads it as it would any vendor's module, so what a test sees
//! is what a hung HSM does to the real PKCS#11 code path; dropping the
//! module releases every held call.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;
use super::deps::{have, missing};
use super::softhsm::MODULE;

const SOURCE: &str = include_str!("hung_pkcs11.c");

/// A compiled shim and the file that makes it hang. Each has its own path,
/// so in-process tests load each as a module of its own.
pub struct HungModule {
    _dir: TempDir,
    library: PathBuf,
    hang_file: PathBuf,
}

impl HungModule {
    /// Compiles a shim over SoftHSM2, answering until [`HungModule::hang`];
    /// `None` (after printing why) when SoftHSM2 or `cc` is missing outside CI.
    pub fn build(name: &str) -> Option<HungModule> {
        for program in [MODULE, "cc"] {
            if !have(program) {
                return missing(&format!(
                    "{program} is not installed (Debian: softhsm2, gcc)"
                ));
            }
        }
        let dir = TempDir::new(&format!("hung-hsm-{name}"));
        let source = dir.join("hung_pkcs11.c");
        std::fs::write(&source, SOURCE).unwrap();
        let library = dir.join(&format!("libmacp-hung-{name}.so"));
        let hang_file = dir.join("hang");
        let output = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&library)
            .arg(format!("-DREAL_MODULE=\"{MODULE}\""))
            .arg(format!("-DHANG_FILE=\"{}\"", hang_file.display()))
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("cc runs");
        assert!(
            output.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(HungModule {
            _dir: dir,
            library,
            hang_file,
        })
    }

    /// The module's path, for `MACP_AUTH_PKCS11_MODULE` or `module-path`.
    pub fn path(&self) -> &Path {
        &self.library
    }

    /// From now on `C_Login`, `C_FindObjectsInit` and `C_Sign` wait.
    pub fn hang(&self) {
        std::fs::write(&self.hang_file, "").unwrap();
    }

    /// Every waiting and later call goes through again.
    pub fn answer(&self) {
        let _ = std::fs::remove_file(&self.hang_file);
    }
}

impl Drop for HungModule {
    fn drop(&mut self) {
        self.answer();
    }
}
