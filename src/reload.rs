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

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a file read may take before it is given up on. A read of a
/// regular file on a healthy disk takes microseconds; one that takes seconds
/// is on a hung network or FUSE mount and would not finish any sooner.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest key or client file read. A ring of eight RSA-4096 keys is about
/// 50 KB and a client list of a thousand clients about 200 KB.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

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

/// Why a configured file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadFailure {
    /// The operating system refused (missing, no permission, ...).
    Io(std::io::ErrorKind),
    /// A FIFO, a device, a socket or a directory: reading it could block
    /// forever or never end.
    NotRegular,
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Not UTF-8 text.
    NotUtf8,
    /// The read did not finish within the timeout (a hung mount).
    TimedOut(Duration),
    /// A read started by an earlier attempt has still not finished.
    StillStuck,
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Io(kind) => write!(f, "{kind}"),
            ReadFailure::NotRegular => f.write_str("not a regular file (after following symlinks)"),
            ReadFailure::TooLarge => write!(f, "larger than {MAX_FILE_BYTES} bytes"),
            ReadFailure::NotUtf8 => f.write_str("not UTF-8 text"),
            ReadFailure::TimedOut(limit) => write!(
                f,
                "the read did not finish within {} s (a hung mount?)",
                limit.as_secs_f64()
            ),
            ReadFailure::StillStuck => {
                f.write_str("an earlier read of it has still not finished (a hung mount?)")
            }
        }
    }
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
    /// Why.
    pub(crate) reason: ReadFailure,
}

impl UnreadableFile {
    /// Whether the read was given up on rather than refused.
    pub(crate) fn timed_out(&self) -> bool {
        matches!(
            self.reason,
            ReadFailure::TimedOut(_) | ReadFailure::StillStuck
        )
    }
}

/// The blocking part of a read: open, check, read.
type ReadFn = dyn Fn(&Path) -> Result<String, ReadFailure> + Send + Sync;

/// Reads configured files off the caller's thread, within a timeout.
///
/// Opening and reading happen on a short-lived thread of their own; the
/// caller waits at most the timeout for it. A read stuck in the kernel (a
/// hung NFS, FUSE or CSI mount) cannot be cancelled, so the thread is left
/// behind, and until it finishes the same source starts no second one.
#[derive(Clone)]
pub(crate) struct FileReader {
    read: Arc<ReadFn>,
    timeout: Duration,
}

impl Default for FileReader {
    fn default() -> Self {
        FileReader {
            read: Arc::new(read_regular_file),
            timeout: READ_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl FileReader {
    /// A reader that reads with `read` (a test hook) within `timeout`.
    #[cfg(test)]
    pub(crate) fn with(
        read: impl Fn(&Path) -> Result<String, ReadFailure> + Send + Sync + 'static,
        timeout: Duration,
    ) -> Self {
        FileReader {
            read: Arc::new(read),
            timeout,
        }
    }

    /// Reads the file `variable` names. `busy` is set while a read is under
    /// way and cleared when it ends, however late.
    fn read(
        &self,
        variable: &'static str,
        path: &Path,
        busy: &Arc<AtomicBool>,
    ) -> Result<String, UnreadableFile> {
        let failure = |reason| UnreadableFile {
            variable,
            path: path.to_owned(),
            reason,
        };
        if busy.swap(true, Ordering::AcqRel) {
            return Err(failure(ReadFailure::StillStuck));
        }
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let (read, owned, done) = (self.read.clone(), path.to_owned(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("macp-read-file".into())
            .spawn(move || {
                let result = read(&owned);
                done.store(false, Ordering::Release);
                let _ = sender.send(result);
            });
        if let Err(err) = spawned {
            busy.store(false, Ordering::Release);
            return Err(failure(ReadFailure::Io(err.kind())));
        }
        match receiver.recv_timeout(self.timeout) {
            Ok(result) => result.map_err(failure),
            Err(_) => Err(failure(ReadFailure::TimedOut(self.timeout))),
        }
    }
}

/// Reads a regular file as UTF-8 text, without a leading byte-order mark.
///
/// The file is opened without blocking (on a FIFO, a blocking open waits for
/// a writer forever) and checked on the open descriptor, so a file swapped
/// for a FIFO between a check and the open cannot slip through. Symlinks are
/// followed: Kubernetes mounts secrets through them.
fn read_regular_file(path: &Path) -> Result<String, ReadFailure> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let io = |err: std::io::Error| ReadFailure::Io(err.kind());
    let file = options.open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(ReadFailure::NotRegular);
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadFailure::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| ReadFailure::NotUtf8)?;
    Ok(match text.strip_prefix('\u{FEFF}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// Reload attempts so far, by result, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReloadTotals {
    pub(crate) swapped: u64,
    pub(crate) unchanged: u64,
    /// The file could not be read or its content was refused.
    pub(crate) failed: u64,
    /// The read did not finish within the timeout.
    pub(crate) timed_out: u64,
}

/// Counts of reload attempts, by result.
#[derive(Debug, Default)]
struct ReloadCounts {
    swapped: AtomicU64,
    unchanged: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
}

impl ReloadCounts {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn totals(&self) -> ReloadTotals {
        ReloadTotals {
            swapped: self.swapped.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }
}

/// The reload state of one source: where it comes from, the file text last
/// swapped in, and the attempts so far.
#[derive(Debug)]
pub(crate) struct Reloader {
    source: Source,
    variable: &'static str,
    reader: FileReader,
    /// Set while a read of the file is under way (or stuck).
    busy: Arc<AtomicBool>,
    loaded_text: Mutex<Option<String>>,
    counts: ReloadCounts,
}

impl Reloader {
    /// The reloader of `source`, whose file (if any) `variable` names and
    /// whose current content was parsed from exactly `loaded_text`.
    pub(crate) fn new(source: Source, variable: &'static str, loaded_text: Option<String>) -> Self {
        Reloader {
            source,
            variable,
            reader: FileReader::default(),
            busy: Arc::new(AtomicBool::new(false)),
            loaded_text: Mutex::new(loaded_text),
            counts: ReloadCounts::default(),
        }
    }

    /// The same reloader, reading through `reader` (a test hook).
    #[cfg(test)]
    pub(crate) fn with_reader(mut self, reader: FileReader) -> Self {
        self.reader = reader;
        self
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
    /// counted; every file attempt is. The read happens within the
    /// reader's timeout; call this off the async workers, since `apply`
    /// parses keys.
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
        let text = match self.reader.read(self.variable, path, &self.busy) {
            Ok(text) => text,
            Err(err) => {
                let counter = if err.timed_out() {
                    &self.counts.timed_out
                } else {
                    &self.counts.failed
                };
                self.counts.count(counter);
                return Err(err.into());
            }
        };
        let result = self.apply_changed(path, text, apply);
        self.counts.count(match &result {
            Ok(ReloadOutcome::Swapped) => &self.counts.swapped,
            Ok(_) => &self.counts.unchanged,
            Err(_) => &self.counts.failed,
        });
        result
    }

    fn apply_changed<E>(
        &self,
        path: &Path,
        text: String,
        apply: impl FnOnce(&Path, &str) -> Result<(), E>,
    ) -> Result<ReloadOutcome, E> {
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

/// Reads the file `variable` names through `reader` (startup), so the text
/// parsed is the text a later reload compares with.
pub(crate) fn read_with(
    reader: &FileReader,
    variable: &'static str,
    path: &Path,
) -> Result<String, UnreadableFile> {
    reader.read(variable, path, &Arc::new(AtomicBool::new(false)))
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
        assert_eq!(err.reason, ReadFailure::Io(std::io::ErrorKind::NotFound));
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
                failed: 3,
                timed_out: 0,
            }
        );
    }

    /// A scratch directory, removed with its value.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("macp-read-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[cfg(unix)]
    fn make_fifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `name` is a valid NUL-terminated path for the call's duration.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read_symlinks_followed_and_a_byte_order_mark_dropped() {
        let scratch = Scratch::new("kinds");
        let dir = &scratch.0;
        std::fs::write(dir.join("plain"), "text").unwrap();
        std::fs::write(dir.join("bom"), "\u{FEFF}{\"keys\": []}").unwrap();
        std::os::unix::fs::symlink(dir.join("plain"), dir.join("link")).unwrap();
        make_fifo(&dir.join("fifo"));
        std::os::unix::fs::symlink(dir.join("fifo"), dir.join("link-to-fifo")).unwrap();
        let big = vec![b'x'; MAX_FILE_BYTES as usize + 1];
        std::fs::write(dir.join("big"), big).unwrap();
        std::fs::write(dir.join("binary"), [0xff, 0xfe, 0x00]).unwrap();
        let cases: [(&str, Result<&str, ReadFailure>); 8] = [
            ("plain", Ok("text")),
            ("link", Ok("text")),
            ("bom", Ok("{\"keys\": []}")),
            ("fifo", Err(ReadFailure::NotRegular)),
            ("link-to-fifo", Err(ReadFailure::NotRegular)),
            (".", Err(ReadFailure::NotRegular)),
            ("big", Err(ReadFailure::TooLarge)),
            ("binary", Err(ReadFailure::NotUtf8)),
        ];
        for (name, expected) in cases {
            let started = std::time::Instant::now();
            let got = read_with(&FileReader::default(), "VAR", &dir.join(name));
            assert_eq!(
                got.as_deref().map_err(|err| err.reason.clone()),
                expected,
                "{name}"
            );
            assert!(
                started.elapsed() < READ_TIMEOUT,
                "{name} is refused without waiting for the timeout"
            );
        }
        let missing = read_with(&FileReader::default(), "VAR", &dir.join("missing"));
        assert_eq!(
            missing.unwrap_err().reason,
            ReadFailure::Io(std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn a_read_that_hangs_is_given_up_on_counted_and_not_started_twice() {
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let hung = Mutex::new(hung);
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let reader = FileReader::with(
            move |_| {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    // The first read hangs until the test releases it.
                    let _ = hung.lock().unwrap().recv();
                }
                Ok("new".to_owned())
            },
            Duration::from_millis(50),
        );
        let reloader = Reloader::new(
            Source::File("/hung/mount/file".into()),
            "VAR",
            Some("old".into()),
        )
        .with_reader(reader);
        let apply = |_: &Path, _: &str| Ok::<(), Failure>(());
        let Err(Failure::Unreadable(err)) = reloader.reload(apply) else {
            panic!("a hung read fails the reload");
        };
        assert_eq!(err.reason, ReadFailure::TimedOut(Duration::from_millis(50)));
        assert_eq!(
            err.to_string(),
            "VAR names \"/hung/mount/file\", which cannot be read: the read did not finish within 0.05 s (a hung mount?)"
        );
        let Err(Failure::Unreadable(err)) = reloader.reload(apply) else {
            panic!("a second attempt fails at once");
        };
        assert_eq!(err.reason, ReadFailure::StillStuck);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no second thread piles up");
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let outcome = loop {
            match reloader.reload(apply) {
                Err(Failure::Unreadable(err)) if err.reason == ReadFailure::StillStuck => {
                    assert!(std::time::Instant::now() < deadline, "the hung read ended");
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other,
            }
        };
        assert_eq!(
            outcome,
            Ok(ReloadOutcome::Swapped),
            "once it ends, reads resume"
        );
        let totals = reloader.totals();
        assert_eq!((totals.swapped, totals.failed), (1, 0));
        assert!(totals.timed_out >= 2, "{totals:?}");
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
