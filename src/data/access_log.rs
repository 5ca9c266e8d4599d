//! The access log: one JSON line per request, written off the request path.
//!
//! Requests hand lines to a bounded channel with `try_send`; a writer thread drains it into a
//! buffered file (or stdout) and flushes whenever the channel runs dry. When the writer falls
//! behind (a slow disk, a stuck pipe), new lines are dropped and counted in
//! `switchback_access_log_dropped_total`: a request is never delayed by its log line.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use crate::config::model::AccessLogTarget;

/// The sending side, cloned into the proxy. The queue holds `[log] access-buffer` lines
/// (default [`crate::config::defaults::ACCESS_LOG_BUFFER`]).
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Message>,
    dropped: IntCounter,
}

enum Message {
    Line(String),
    /// Answer once everything queued before is written and flushed.
    Flush(mpsc::Sender<()>),
}

impl AccessLog {
    /// Opens `target` (a file is resolved against `base_dir`) and starts the writer thread.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn start(
        target: &AccessLogTarget,
        base_dir: &Path,
        capacity: usize,
        dropped: IntCounter,
    ) -> std::io::Result<AccessLog> {
        let sink: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => {
                let path = base_dir.join(path);
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        let (tx, rx) = mpsc::sync_channel(capacity);
        std::thread::Builder::new()
            .name("switchback-access-log".into())
            .spawn(move || write_loop(rx, sink))?;
        Ok(AccessLog { tx, dropped })
    }

    /// Queues one line (without its newline); drops and counts it when the queue is full.
    pub fn send(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Message::Line(line)) {
            self.dropped.inc();
        }
    }

    /// Waits up to `within` in all for every line queued so far to be written and flushed
    /// (used before the process exits). A stuck sink with a full queue costs `within`, never
    /// more: the flush request itself is not allowed to block.
    pub fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let (done, wait) = mpsc::channel();
        let mut message = Message::Flush(done);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    tracing::warn!("access log not flushed at exit: its writer is stuck");
                    return;
                }
            }
        }
        if wait
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
        {
            tracing::warn!("access log not flushed at exit: its writer is stuck");
        }
    }
}

fn write_loop(rx: Receiver<Message>, sink: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, sink);
    while let Ok(first) = rx.recv() {
        let mut ok = true;
        let mut waiting = Vec::new();
        for message in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match message {
                Message::Line(line) => ok &= writeln!(out, "{line}").is_ok(),
                Message::Flush(done) => waiting.push(done),
            }
        }
        if !(ok && out.flush().is_ok()) {
            tracing::warn!("access log write failed; lines were lost");
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}
