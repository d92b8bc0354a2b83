//! Log capture that works when the whole suite runs in parallel.
//!
//! Why not `tracing::subscriber::set_default` per test: with thread-local
//! subscribers coming and going on many threads, tracing recomputes its
//! global maximum level and per-callsite interest as each one is registered
//! and dropped; when those recomputations interleave, a callsite can stay
//! cached as uninteresting while a test's subscriber is alive, and the test
//! captures nothing (this made `a_crafted_sender_cannot_forge_an_audit_line`
//! flaky). Instead one global subscriber is installed once for the whole
//! test binary and never changes, so interest is computed once and is always
//! "ask each time"; each event is routed to the capture active on the thread
//! that emits it, and dropped when none is.
//!
//! Routing by thread means the service must run on the test's own thread:
//! the default `#[tokio::test]` current-thread runtime, where `tokio::spawn`
//! (connections, maintenance, the metrics listener) stays on that thread.
//! [`LogCapture::start`] refuses a multi-thread runtime rather than capture
//! half the lines.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::Level;
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::layer::{Context, Filter};

/// How captured lines are formatted, as the binary's two log formats are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain text without colour codes.
    Text,
    /// One JSON object per line, event fields flattened.
    Json,
}

type Buffer = Arc<Mutex<Vec<u8>>>;

thread_local! {
    static ACTIVE: RefCell<Option<(Format, Buffer)>> = const { RefCell::new(None) };
}

fn active_format() -> Option<Format> {
    ACTIVE.with(|active| active.borrow().as_ref().map(|(format, _)| *format))
}

/// Writes to the capture active on the current thread, if any.
struct Routed;

/// The writer for one event.
struct RoutedWriter(Option<Buffer>);

impl Write for RoutedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(buffer) = &self.0 {
            buffer.lock().unwrap().extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Routed {
    type Writer = RoutedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RoutedWriter(ACTIVE.with(|active| active.borrow().as_ref().map(|(_, b)| b.clone())))
    }
}

/// Passes INFO and above to the layer of `format` while a capture in that
/// format is active on the emitting thread. Its answer depends on the
/// thread, so it tells tracing to ask per event and never to cache an
/// answer per callsite (`filter_fn` would cache the answer of the first
/// thread that hits each callsite: exactly the flakiness this avoids).
struct Wants(Format);

impl<S> Filter<S> for Wants {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        *meta.level() <= Level::INFO && active_format() == Some(self.0)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if *meta.level() <= Level::INFO {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }
}

/// Installs the routing subscriber as the global default, once per test
/// binary. Every support entry point calls it, so it is in place before the
/// service logs anything.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let wants = |format: Format| Wants(format);
        let text = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(Routed)
            .with_filter(wants(Format::Text));
        let json = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(Routed)
            .with_filter(wants(Format::Json));
        let subscriber = tracing_subscriber::registry().with(text).with(json);
        tracing::subscriber::set_global_default(subscriber)
            .expect("nothing else in the test binary sets a global subscriber");
    });
}

/// Everything logged on this thread while the capture is alive.
pub struct LogCapture {
    buffer: Buffer,
}

impl LogCapture {
    /// Starts capturing this thread's log lines in `format`.
    pub fn start(format: Format) -> Self {
        install();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            assert_eq!(
                handle.runtime_flavor(),
                tokio::runtime::RuntimeFlavor::CurrentThread,
                "log capture follows the test's thread: use the current-thread runtime"
            );
        }
        let buffer = Buffer::default();
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            assert!(active.is_none(), "one log capture per thread at a time");
            *active = Some((format, buffer.clone()));
        });
        LogCapture { buffer }
    }

    /// Captures plain text lines.
    pub fn text() -> Self {
        Self::start(Format::Text)
    }

    /// Captures JSON lines.
    pub fn json() -> Self {
        Self::start(Format::Json)
    }

    /// What was captured so far.
    pub fn contents(&self) -> String {
        String::from_utf8(self.buffer.lock().unwrap().clone()).unwrap()
    }

    /// What was captured so far, one JSON value per line.
    pub fn records(&self) -> Vec<Value> {
        self.contents()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
            })
            .collect()
    }

    /// Waits (yielding to the service's tasks) until the capture contains
    /// `needle`, and returns everything captured; panics after `limit`.
    pub async fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = self.contents();
            if text.contains(needle) {
                return text;
            }
            assert!(
                start.elapsed() < limit,
                "no log line with {needle:?} within {limit:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        ACTIVE.with(|active| active.borrow_mut().take());
    }
}
