//! An in-memory log sink for unit tests: what a subscriber or the log
//! writer wrote, each `write` call kept apart, so tests can read the text
//! and count the calls. One sink for every test that captures log output
//! in process (the integration tests capture a spawned binary's output
//! instead).

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// Clones share one buffer.
#[derive(Clone, Default)]
pub(crate) struct MemoryLog(Arc<Mutex<Vec<Vec<u8>>>>);

impl MemoryLog {
    /// Everything written so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
    }

    /// The length of each `write` call so far.
    pub(crate) fn writes(&self) -> Vec<usize> {
        self.0.lock().unwrap().iter().map(Vec::len).collect()
    }
}

impl Write for MemoryLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(bytes.to_vec());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for MemoryLog {
    type Writer = MemoryLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
