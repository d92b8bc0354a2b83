//! One reload mechanism for every source that may live in a file: the key
//! ring and the client list.
//!
//! Both are configured the same way (nothing, a value inline in a variable,
//! or a file), and both are reloaded the same way on SIGHUP and on the file
//! check: re-read the file, skip it when its text has not changed, otherwise
//! parse and validate it in full and swap it in only then, counting every
//! attempt by result. Keeping that logic here means the two stores cannot
//! drift apart in how they treat an unreadable or unchanged file; each store
//! supplies only how to parse and swap in its own content.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a reloadable source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing configured: the key store generates an ephemeral key, the
    /// client list is off. Never reloaded.
    Unset,
    /// A value inline in a variable (`*_JSON`); fixed for the process's life.
    Inline,
    /// A file (`*_FILE`); reloaded on SIGHUP and when it changes.
    File(PathBuf),
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// New content is in place.
    Swapped,
    /// The file is unchanged; nothing to do.
    Unchanged,
    /// The source cannot change at runtime (unset or inline).
    NotReloadable,
}

/// A configured file that cannot be read. Names the variable and the path,
/// never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} names {path:?}, which cannot be read: {reason}")]
pub struct UnreadableFile {
    /// The variable naming the file.
    pub(crate) variable: &'static str,
    /// The path configured.
    pub(crate) path: PathBuf,
    /// The operating system's reason.
    pub(crate) reason: String,
}

/// Reads the file `variable` names.
pub(crate) fn read_file(variable: &'static str, path: &Path) -> Result<String, UnreadableFile> {
    std::fs::read_to_string(path).map_err(|err| UnreadableFile {
        variable,
        path: path.to_owned(),
        reason: err.kind().to_string(),
    })
}

/// Reload attempts so far, by result, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReloadTotals {
    pub(crate) swapped: u64,
    pub(crate) unchanged: u64,
    pub(crate) failed: u64,
}

/// Counts of reload attempts, by result.
#[derive(Debug, Default)]
struct ReloadCounts {
    swapped: AtomicU64,
    unchanged: AtomicU64,
    failed: AtomicU64,
}

impl ReloadCounts {
    fn record<E>(&self, result: &Result<ReloadOutcome, E>) {
        let counter = match result {
            Ok(ReloadOutcome::Swapped) => &self.swapped,
            Ok(_) => &self.unchanged,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn totals(&self) -> ReloadTotals {
        ReloadTotals {
            swapped: self.swapped.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// The reload state of one source: where it comes from, the file text last
/// swapped in, and the attempts so far.
#[derive(Debug)]
pub(crate) struct Reloader {
    source: Source,
    variable: &'static str,
    loaded_text: Mutex<Option<String>>,
    counts: ReloadCounts,
}

impl Reloader {
    /// The reloader of `source`, whose file (if any) `variable` names and
    /// whose current content was loaded from `loaded_text`.
    pub(crate) fn new(source: Source, variable: &'static str, loaded_text: Option<String>) -> Self {
        Reloader {
            source,
            variable,
            loaded_text: Mutex::new(loaded_text),
            counts: ReloadCounts::default(),
        }
    }

    /// Where the source comes from.
    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    /// Reload attempts so far, by result.
    pub(crate) fn totals(&self) -> ReloadTotals {
        self.counts.totals()
    }

    /// Re-reads the file and, when its text changed, hands it to `apply`,
    /// which parses, validates and swaps it in (or fails and changes
    /// nothing). Sources that are not files are not reloadable and are not
    /// counted; every file attempt is.
    pub(crate) fn reload<E>(
        &self,
        apply: impl FnOnce(&Path, &str) -> Result<(), E>,
    ) -> Result<ReloadOutcome, E>
    where
        E: From<UnreadableFile>,
    {
        let Source::File(path) = &self.source else {
            return Ok(ReloadOutcome::NotReloadable);
        };
        let result = self.reload_file(path, apply);
        self.counts.record(&result);
        result
    }

    fn reload_file<E>(
        &self,
        path: &Path,
        apply: impl FnOnce(&Path, &str) -> Result<(), E>,
    ) -> Result<ReloadOutcome, E>
    where
        E: From<UnreadableFile>,
    {
        let text = read_file(self.variable, path)?;
        let mut loaded = self
            .loaded_text
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if loaded.as_deref() == Some(text.as_str()) {
            return Ok(ReloadOutcome::Unchanged);
        }
        apply(path, &text)?;
        *loaded = Some(text);
        Ok(ReloadOutcome::Swapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Unreadable(UnreadableFile),
        Rejected,
    }

    impl From<UnreadableFile> for Failure {
        fn from(err: UnreadableFile) -> Self {
            Failure::Unreadable(err)
        }
    }

    #[test]
    fn a_file_source_swaps_changed_text_skips_unchanged_text_and_counts_both() {
        let dir = std::env::temp_dir().join(format!("macp-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("source.txt");
        std::fs::write(&path, "one").unwrap();
        let reloader = Reloader::new(Source::File(path.clone()), "VAR", Some("one".into()));
        let mut applied = Vec::new();
        let mut apply = |text: &str| {
            applied.push(text.to_owned());
            if text == "bad" {
                Err(Failure::Rejected)
            } else {
                Ok(())
            }
        };
        assert_eq!(
            reloader.reload(|_, t| apply(t)),
            Ok(ReloadOutcome::Unchanged)
        );
        std::fs::write(&path, "two").unwrap();
        assert_eq!(reloader.reload(|_, t| apply(t)), Ok(ReloadOutcome::Swapped));
        assert_eq!(
            reloader.reload(|_, t| apply(t)),
            Ok(ReloadOutcome::Unchanged)
        );
        std::fs::write(&path, "bad").unwrap();
        assert_eq!(reloader.reload(|_, t| apply(t)), Err(Failure::Rejected));
        assert_eq!(
            reloader.reload(|_, t| apply(t)),
            Err(Failure::Rejected),
            "a rejected text is tried again, not remembered as loaded"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let Err(Failure::Unreadable(err)) = reloader.reload(|_, t| apply(t)) else {
            panic!("a missing file is unreadable");
        };
        assert!(
            err.to_string()
                .starts_with(&format!("VAR names {path:?}, which cannot be read: ")),
            "{err}"
        );
        assert_eq!(applied, ["two", "bad", "bad"]);
        assert_eq!(
            reloader.totals(),
            ReloadTotals {
                swapped: 1,
                unchanged: 2,
                failed: 3
            }
        );
    }

    #[test]
    fn unset_and_inline_sources_are_not_reloadable_and_not_counted() {
        for source in [Source::Unset, Source::Inline] {
            let reloader = Reloader::new(source, "VAR", None);
            let outcome = reloader.reload(|_, _| -> Result<(), Failure> {
                panic!("nothing to apply");
            });
            assert_eq!(outcome, Ok(ReloadOutcome::NotReloadable));
            assert_eq!(reloader.totals(), ReloadTotals::default());
        }
    }
}
