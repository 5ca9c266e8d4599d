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

use prometheus::IntCounter;

use crate::config::model::AccessLogTarget;

/// The sending side, cloned into the proxy. The queue holds `[log] access-buffer` lines
/// (default [`crate::config::defaults::ACCESS_LOG_BUFFER`]).
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    dropped: IntCounter,
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
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.dropped.inc();
        }
    }
}

fn write_loop(rx: Receiver<String>, sink: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, sink);
    while let Ok(line) = rx.recv() {
        let mut ok = writeln!(out, "{line}").is_ok();
        while let Ok(more) = rx.try_recv() {
            ok &= writeln!(out, "{more}").is_ok();
        }
        if !(ok && out.flush().is_ok()) {
            tracing::warn!("access log write failed; lines were lost");
        }
    }
}
