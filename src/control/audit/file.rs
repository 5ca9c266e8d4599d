//! The deployment log on disk: append with fsync, rotate by size, read newest first.
//!
//! ```text
//! deployments.jsonl      ← appends go here
//! deployments.jsonl.1    ← the previous file, … up to .<keep>
//! ```
//! - A torn last line (a crash mid-write) is ended with a newline before the next append, so
//!   it never swallows the entry after it; unparsable lines (torn, invalid UTF-8) are skipped
//!   by readers and never hide the entries around them.
//! - Readers start at the end of the newest file and read backwards in blocks, so
//!   `GET /history?limit=N` costs what N entries cost, not the whole log.
//! - A message longer than [`MAX_MESSAGE`] bytes is cut, so a hostile admin body cannot
//!   write (and fsync) a 64 KiB line.
//! - The file rotates *before* an append that would take it past the limit, so the newest
//!   entry is always in the current file (with `keep = 0` the file is emptied, never deleted).
//! - An append either lands whole and synced, or is taken back (the file is cut to its earlier
//!   length) and reported: an error never leaves an entry behind. Appends, rotations and reads
//!   are serialised in the process, and across processes (the two of a binary upgrade) by an
//!   advisory lock on `<log>.lock` (never opened through a symlink). Rotation only renames,
//!   which never follows a link.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Entry;

/// Longest `message` kept in an entry, in bytes.
pub const MAX_MESSAGE: usize = 512;

/// Bytes read per step when reading a file backwards.
const BLOCK: u64 = 64 * 1024;

pub use crate::config::model::Rotation;

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("deployment log {path}: {source}")]
pub struct AuditError {
    /// The log file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// The deployment log file and its rotated predecessors.
#[derive(Clone)]
pub struct AuditLog {
    path: PathBuf,
    rotation: Rotation,
    /// Serialises appends, rotations and reads within the process.
    one_at_a_time: Arc<Mutex<()>>,
    /// With shared state: where every entry appended here also goes (the shared log).
    forward: Arc<std::sync::OnceLock<Forward>>,
    /// With shared state the shared log numbers the entries (`seq`), not this file.
    shared_numbers: Arc<std::sync::atomic::AtomicBool>,
    /// The highest `seq` this process gave (0 before the first).
    last_given: Arc<std::sync::atomic::AtomicU64>,
}

/// How far back the numbering looks for a numbered entry past entries without one.
const SEQ_LOOKBACK: usize = 1000;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

/// Hands an entry on to the shared log (without waiting for it).
pub type Forward = Box<dyn Fn(Entry) + Send + Sync>;

impl AuditLog {
    /// The log at `path` (created on first append).
    pub fn new(path: PathBuf, rotation: Rotation) -> Self {
        AuditLog {
            path,
            rotation,
            one_at_a_time: Arc::default(),
            forward: Arc::default(),
            shared_numbers: Arc::default(),
            last_given: Arc::default(),
        }
    }

    /// From now on entries are numbered by the shared log only (call before the first
    /// append, with shared state).
    pub fn numbered_by_the_shared_log(&self) {
        (self.shared_numbers).store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `f` holding the in-process lock and the advisory lock on `<log>.lock` (when that
    /// file can be opened; the in-process lock alone otherwise).
    fn locked<T>(&self, f: impl FnOnce() -> T) -> T {
        let _in_process = self.one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
        // Never through a link someone planted at the lock's name.
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.numbered_name("lock"));
        let _across = lock_file.ok().filter(|f| f.lock().is_ok());
        f()
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, source: std::io::Error) -> AuditError {
        AuditError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `entry` (its message cut to [`MAX_MESSAGE`] bytes) and syncs it to disk, then
    /// rotates when the file grew past the limit.
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be opened, written or synced.
    pub fn append(&self, entry: &Entry) -> Result<(), AuditError> {
        self.append_local(entry)?;
        if let Some(forward) = self.forward.get() {
            forward(entry.clone());
        }
        Ok(())
    }

    /// From now on, every entry [`Self::append`] writes also goes to `forward`.
    pub fn forward_to(&self, forward: Forward) {
        let _ = self.forward.set(forward);
    }

    /// Appends `entry` to this replica's file only (a shared change's entry is already in the
    /// shared log, written in its transaction).
    ///
    /// # Errors
    /// As [`Self::append`].
    ///
    /// Without shared state an entry gets its `seq` here: one more than the newest entry's,
    /// read under the log's lock, so the two processes of a binary upgrade never give one
    /// number twice. (With shared state the shared log numbers them.)
    pub fn append_local(&self, entry: &Entry) -> Result<(), AuditError> {
        let mut entry = entry.clone();
        if entry.message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !entry.message.is_char_boundary(cut) {
                cut -= 1;
            }
            entry.message.truncate(cut);
            entry.message.push('…');
        }
        let shared = self
            .shared_numbers
            .load(std::sync::atomic::Ordering::Relaxed);
        let numbered = entry.seq.is_none() && !shared;
        self.locked(|| {
            if numbered {
                entry.seq = Some(self.last_seq().map_or(1, |seq| seq + 1));
            }
            let mut line = serde_json::to_vec(&entry).expect("entries always serialise");
            line.push(b'\n');
            self.append_line(line)?;
            if let Some(seq) = entry.seq.filter(|_| numbered) {
                self.last_given
                    .fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .map_err(|e| self.fail(e))
    }

    /// The highest `seq` given so far (called under the lock): the newest numbered entry in
    /// the log, looking back past entries without one (an older binary's, during an upgrade's
    /// hand-over or after a downgrade) up to [`SEQ_LOOKBACK`] entries, and never below what
    /// this process gave last. `None` when nothing was ever numbered.
    fn last_seq(&self) -> Option<u64> {
        let in_file = match self.read_newest(1) {
            Ok(newest) if newest.first().is_some_and(|e| e.seq.is_some()) => newest[0].seq,
            Ok(newest) if newest.is_empty() => None,
            Ok(_) => match self.read_newest(SEQ_LOOKBACK) {
                Ok(back) => back.iter().find_map(|e| e.seq),
                Err(_) => None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the deployment log's last sequence number; continuing from this process's");
                None
            }
        };
        let given = self.last_given.load(std::sync::atomic::Ordering::Relaxed);
        in_file.max(Some(given).filter(|&g| g > 0))
    }

    fn append_line(&self, mut line: Vec<u8>) -> std::io::Result<()> {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size > 0 && size + line.len() as u64 > self.rotation.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::warn!(log = %self.path.display(), error = %e, "could not rotate the deployment log; appending to it as it is");
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW) // never through a link planted at its name
            .open(&self.path)?;
        let before = file.metadata()?.len();
        if ends_torn(&mut file)? {
            line.insert(0, b'\n');
        }
        let written = file.write_all(&line).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Take the entry back: the caller reports the change as not applied.
            let _ = file.set_len(before);
            return Err(e);
        }
        Ok(())
    }

    /// `path` → `path.1` → … → `path.keep`; the oldest is dropped. With `keep = 0` the file is
    /// emptied in place.
    fn rotate(&self) -> std::io::Result<()> {
        if self.rotation.keep == 0 {
            return OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)?
                .set_len(0);
        }
        for i in (1..self.rotation.keep).rev() {
            let from = self.numbered(i);
            if from.exists() {
                std::fs::rename(&from, self.numbered(i + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn numbered(&self, i: usize) -> PathBuf {
        self.numbered_name(&i.to_string())
    }

    fn numbered_name(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{suffix}"));
        PathBuf::from(name)
    }

    /// Up to `limit` entries, newest first, across the current and rotated files; lines that
    /// do not parse are skipped.
    ///
    /// # Errors
    /// [`AuditError`] when a file exists but cannot be read.
    pub fn newest(&self, limit: usize) -> Result<Vec<Entry>, AuditError> {
        self.locked(|| self.read_newest(limit))
    }

    fn read_newest(&self, limit: usize) -> Result<Vec<Entry>, AuditError> {
        let mut out = Vec::new();
        let files = std::iter::once(self.path.clone())
            .chain((1..=self.rotation.keep).map(|i| self.numbered(i)));
        for path in files {
            if out.len() >= limit {
                break;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(AuditError { path, source }),
            };
            read_backwards(file, limit - out.len(), &mut out)
                .map_err(|source| AuditError { path, source })?;
        }
        Ok(out)
    }
}

/// Whether a non-empty file does not end in a newline.
fn ends_torn(file: &mut File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Pushes up to `limit` parsable entries of `file` onto `out`, newest first.
fn read_backwards(mut file: File, limit: usize, out: &mut Vec<Entry>) -> std::io::Result<()> {
    let mut end = file.metadata()?.len();
    let mut tail: Vec<u8> = Vec::new();
    let start_len = out.len();
    while end > 0 && out.len() - start_len < limit {
        let start = end.saturating_sub(BLOCK);
        let mut block = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        // Everything after the first newline is made of whole lines (unless start == 0).
        let split = if start == 0 {
            0
        } else {
            match memchr::memchr(b'\n', &block) {
                Some(i) => i + 1,
                None => {
                    tail = block;
                    end = start;
                    continue;
                }
            }
        };
        for line in block[split..].rsplit(|&b| b == b'\n') {
            if out.len() - start_len >= limit {
                break;
            }
            if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
                out.push(entry);
            }
        }
        tail = block[..split].to_vec();
        end = start;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
