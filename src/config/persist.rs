//! Durable write-back of admin changes into the operator's config file.
//!
//! Only `[split]` is rewritten, with `toml_edit`, so comments and layout elsewhere stay
//! byte-for-byte. The write is atomic: a temp file in the same directory, fsync, rename over
//! the target, fsync of the directory. A symlinked config file is written through to its
//! target, so the link itself survives.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, Value};

use super::model::{format_percent, Split};

/// Why a change could not be persisted.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The current file could not be parsed for editing.
    #[error("cannot edit {path}: {reason}")]
    Edit {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Someone else changed the file while the new text was being written; theirs is kept.
    #[error("{path} changed while this change was being written; the other edit is kept")]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

/// `text` with its `[split]` table set to `split`, everything else untouched.
///
/// Existing keys keep their position and trailing comments; a pool at 0 % that the file did
/// not mention is not added.
///
/// # Errors
/// The parser's message when `text` is not TOML.
pub fn rewrite_split(text: &str, split: &Split) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    if !doc.contains_table("split") {
        doc.insert("split", Item::Table(Table::new()));
    }
    let table = doc["split"]
        .as_table_mut()
        .ok_or("[split] is not a table")?;
    let stale: Vec<String> = table
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !split.shares().contains_key(k))
        .collect();
    for key in stale {
        table.remove(&key);
    }
    for (pool, bp) in split.shares() {
        let mut value = percent_value(*bp);
        match table.get_mut(pool).and_then(Item::as_value_mut) {
            Some(existing) => {
                *value.decor_mut() = existing.decor().clone();
                *existing = value;
            }
            None if *bp == 0 => {}
            None => {
                table.insert(pool, Item::Value(value));
            }
        }
    }
    Ok(doc.to_string())
}

fn percent_value(bp: u32) -> Value {
    if bp.is_multiple_of(100) {
        Value::from(i64::from(bp / 100))
    } else {
        Value::from(
            format_percent(bp)
                .parse::<f64>()
                .expect("formatted percent parses"),
        )
    }
}

/// New file contents written and synced beside the target, not yet in place. Dropping it
/// removes the temp file.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

/// Writes `bytes` to a synced temp file beside the file at `path` (or its symlink target).
///
/// # Errors
/// [`PersistError::Write`] naming the file; nothing on disk changed.
pub fn stage(path: &Path, bytes: &[u8]) -> Result<Staged, PersistError> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map_or("config".into(), |n| n.to_string_lossy().into_owned());
    let staged = Staged {
        temp: dir.join(format!(".{name}.switchback-{}.tmp", std::process::id())),
        target,
    };
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staged.temp)?;
        if let Ok(meta) = std::fs::metadata(&staged.target) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    written.map_err(|source| staged.fail(source))?;
    Ok(staged)
}

impl Staged {
    fn fail(&self, source: std::io::Error) -> PersistError {
        PersistError::Write {
            path: self.target.clone(),
            source,
        }
    }

    /// Renames the new contents over the file, if it still holds `expected` (`None`: whatever
    /// it holds). The check and the rename are microseconds apart, so an operator's save in
    /// the meantime is kept instead of overwritten.
    ///
    /// Once the rename succeeded the change is in place: a failing directory sync is logged,
    /// not returned, so the caller never reports "not applied" for a file that changed.
    ///
    /// # Errors
    /// [`PersistError::Changed`] or [`PersistError::Write`]; the file is then untouched.
    pub fn commit(self, expected: Option<&str>) -> Result<(), PersistError> {
        if let Some(expected) = expected {
            match std::fs::read(&self.target) {
                Ok(current) if current == expected.as_bytes() => {}
                Ok(_) => {
                    return Err(PersistError::Changed {
                        path: self.target.clone(),
                    })
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        std::fs::rename(&self.temp, &self.target).map_err(|e| self.fail(e))?;
        let dir = self.target.parent().unwrap_or(Path::new("."));
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not sync the directory after writing the config file");
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Atomically replaces the file at `path` (or its symlink target) with `bytes`.
///
/// # Errors
/// [`PersistError::Write`] naming the file; the original is then untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    stage(path, bytes)?.commit(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn split(pairs: &[(&str, u32)]) -> Split {
        Split::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn only_the_split_values_change_and_comments_survive() {
        let text = "# top comment\n[proxy]\nlisten = [\"127.0.0.1:8080\"]  # keep me\n\n[split]\n# weights\nblue = 90 # stable\ngreen = 10\n";
        let out = rewrite_split(text, &split(&[("blue", 2550), ("green", 7450)])).unwrap();
        assert_eq!(
            out,
            "# top comment\n[proxy]\nlisten = [\"127.0.0.1:8080\"]  # keep me\n\n[split]\n# weights\nblue = 25.5 # stable\ngreen = 74.5\n"
        );
    }

    #[test]
    fn a_pool_at_zero_is_only_written_when_already_present() {
        let text = "[split]\nblue = 100\n";
        let out = rewrite_split(text, &split(&[("blue", 0), ("green", 10_000)])).unwrap();
        assert_eq!(out, "[split]\nblue = 0\ngreen = 100\n");
        let back = rewrite_split(&out, &split(&[("blue", 10_000), ("green", 0)])).unwrap();
        assert_eq!(back, "[split]\nblue = 100\ngreen = 0\n");
    }

    #[test]
    fn a_commit_keeps_a_file_someone_else_changed_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "ours").unwrap();
        let staged = stage(&path, b"new").unwrap();
        std::fs::write(&path, "operator's save").unwrap();
        assert!(matches!(
            staged.commit(Some("ours")),
            Err(PersistError::Changed { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "operator's save");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        stage(&path, b"new")
            .unwrap()
            .commit(Some("operator's save"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
