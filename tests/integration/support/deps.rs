//! External programs the backend tests start (SoftHSM2, pkcs11-tool, moto):
//! present, or a reason. Under `CI=true` a missing one fails the test, so CI
//! can never pass by skipping; locally the test prints why and returns.

use std::process::{Command, Stdio};

/// Whether `program --help`-style probing finds `program` on PATH (or at
/// the absolute path given).
pub fn have(program: &str) -> bool {
    if program.starts_with('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether `python3 -c "import <module>"` succeeds.
pub fn have_python_module(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A dependency is missing: panics under `CI=true`, else prints the skip
/// reason. Returns `None` so callers can write `return missing(...)`.
pub fn missing<T>(what: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what}; CI=true requires it (scripts/install-test-deps.sh installs it)");
    }
    eprintln!("skipping: {what} (install it with scripts/install-test-deps.sh)");
    None
}
