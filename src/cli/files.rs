//! How the operator commands write files that hold secrets or that a running
//! service re-reads: owner-only (0600) always; by rename when replacing, so
//! the service never reads half a ring or client list; exclusively when
//! creating a secret, so a secret is never overwritten.

use std::io::Write as _;
use std::path::Path;

use super::CommandError;

/// Replaces (or creates) `path` with `text` and a final newline: written to
/// a temporary file beside it, synced, then renamed over it.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<(), CommandError> {
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = write_new(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(err) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error(path, &err));
    }
    Ok(())
}

/// Creates `path` with `text` and a final newline; refuses if it exists.
pub(crate) fn create_exclusively(path: &Path, text: &str) -> Result<(), CommandError> {
    write_new(path, text).map_err(|err| match err.kind() {
        std::io::ErrorKind::AlreadyExists => CommandError::Usage(format!(
            "{} already exists, and a secret file is never overwritten: choose a new path, or delete the old file first if its secret is no longer in use",
            path.display()
        )),
        _ => io_error(path, &err),
    })
}

fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Reads `path`, `None` when it does not exist yet.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>, CommandError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error(path, &err)),
    }
}

/// An I/O failure on `path`, with what to check.
pub(crate) fn io_error(path: &Path, err: &std::io::Error) -> CommandError {
    let hint = match err.kind() {
        std::io::ErrorKind::NotFound => "check the path (and that its directory exists)",
        std::io::ErrorKind::PermissionDenied => {
            "check the file's and its directory's owner and mode"
        }
        _ => "check the path, the disk and the permissions",
    };
    CommandError::Io {
        path: path.display().to_string(),
        reason: format!("{}; {hint}", err.kind()),
    }
}
