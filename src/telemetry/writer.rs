//! The log writer thread: records are handed over to it and it writes
//! them to standard output, so a slow or blocked stdout never holds up an
//! async worker mid-request.
//!
//! Design constraints:
//! - **Lossless.** An audit record is never dropped: when the queue is full
//!   (the reader of stdout has stalled), the logging thread waits.
//! - **Few wake-ups.** Waking a parked thread costs a system call and two
//!   context switches, more than formatting the record. After writing a
//!   batch, the thread naps for [`LINGER`] before it looks again, without
//!   registering as a waiter: records logged meanwhile only join the queue,
//!   and go out together in one `write(2)`. Under load that is at most two
//!   hundred wake-ups a second whatever the mint rate; when idle, the
//!   thread parks and a record goes out at once. A record waits at most
//!   that nap before it is written, which no log reader notices.
//! - **Flushed at the end.** Dropping the [`WriterGuard`] closes the queue
//!   and waits for the thread to write everything queued.

use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread naps after a batch before it looks again.
pub(crate) const LINGER: Duration = Duration::from_millis(5);

/// Records allowed to wait before a logging thread has to. With records of
/// a few hundred bytes, a stalled stdout holds at most a few megabytes.
const QUEUE_RECORDS: usize = 16 * 1024;

/// Bytes gathered into one `write(2)`.
const BATCH_BYTES: usize = 64 * 1024;

/// How long dropping the guard waits, in all, for the queue to be written
/// out: a stdout nobody reads must not hold the process forever at exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

enum Message {
    Record(Vec<u8>),
    /// Write what is queued ahead of this, then end.
    Shutdown,
}

/// Hands records to the writer thread: see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct QueuedWriter {
    queue: Sender<Message>,
}

/// Keeps the writer thread; dropping it writes out what is queued.
#[derive(Debug)]
pub(crate) struct WriterGuard {
    queue: Sender<Message>,
    done: Receiver<()>,
}

/// Starts the writer thread over `out`.
pub(crate) fn spawn<W: Write + Send + 'static>(
    out: W,
) -> std::io::Result<(QueuedWriter, WriterGuard)> {
    let (queue, receiver) = bounded(QUEUE_RECORDS);
    let (finished, done) = bounded(1);
    std::thread::Builder::new()
        .name("macp-log-writer".to_owned())
        .spawn(move || {
            write_batches(&receiver, out);
            let _ = finished.send(());
        })?;
    Ok((
        QueuedWriter {
            queue: queue.clone(),
        },
        WriterGuard { queue, done },
    ))
}

/// The writer thread: park until a record comes, write it with everything
/// queued behind it, nap, repeat, until told to shut down. `write_all`
/// retries partial writes and interruptions; a stdout that fails outright
/// (closed, or non-blocking and full) loses that batch, never the thread.
fn write_batches<W: Write>(queue: &Receiver<Message>, mut out: W) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(message) = queue.recv() {
        let mut shutdown = !append(&mut batch, message);
        while !shutdown {
            let Ok(message) = queue.try_recv() else { break };
            if let Message::Record(record) = &message
                && batch.len() + record.len() > BATCH_BYTES
            {
                let _ = out.write_all(&batch);
                batch.clear();
            }
            shutdown = !append(&mut batch, message);
        }
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if shutdown {
            return;
        }
        std::thread::sleep(LINGER);
    }
}

/// Adds a record to the batch; false for the shutdown message.
fn append(batch: &mut Vec<u8>, message: Message) -> bool {
    match message {
        Message::Record(record) => {
            batch.extend_from_slice(&record);
            true
        }
        Message::Shutdown => false,
    }
}

impl Write for QueuedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // Waits for room when the queue is full rather than lose a record;
        // after shutdown there is no one to write it.
        let _ = self.queue.send(Message::Record(bytes.to_vec()));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueuedWriter {
    type Writer = QueuedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        if self
            .queue
            .send_deadline(Message::Shutdown, deadline)
            .is_ok()
        {
            let _ = self.done.recv_deadline(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::memory::MemoryLog;

    #[test]
    fn every_record_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let out = MemoryLog::default();
        let (writer, guard) = spawn(out.clone()).unwrap();
        for n in 0..10_000 {
            writer
                .make_writer()
                .write_all(format!("{n}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let expected: String = (0..10_000).map(|n| format!("{n}\n")).collect();
        assert_eq!(out.text(), expected);
    }

    #[test]
    fn records_queued_together_go_out_in_one_write() {
        let out = MemoryLog::default();
        let (writer, guard) = spawn(out.clone()).unwrap();
        // The first record wakes the thread; the rest queue while it naps.
        writer.make_writer().write_all(b"first\n").unwrap();
        while out.writes().is_empty() {
            std::thread::yield_now();
        }
        for _ in 0..100 {
            writer.make_writer().write_all(b"line\n").unwrap();
        }
        drop(guard);
        let writes = out.writes();
        assert!(
            writes.len() < 10,
            "101 records in {} writes: {writes:?}",
            writes.len()
        );
    }
}
