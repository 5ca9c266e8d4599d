//! Durable write-back of admin changes into the operator's config file.
//!
//! Only `[split]` is rewritten, with `toml_edit`, so comments and layout elsewhere stay
//! byte-for-byte. The write is atomic: a temp file in the same directory (a new file under a
//! random name, never through a link: `exclusive`), fsync, rename over the target, fsync of
//! the directory. A symlinked config file is written through to its target, so the link itself
//! survives; switchback's own files ([`stage_own`]) replace a link instead.

use std::fs::File;
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

/// Writes `bytes` to a synced temp file beside the operator's file at `path`, or beside its
/// target when `path` is a symlink (the link itself survives the commit).
///
/// # Errors
/// [`PersistError::Write`] naming the file; nothing on disk changed.
pub fn stage(path: &Path, bytes: &[u8]) -> Result<Staged, PersistError> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    stage_at(target, bytes)
}

/// [`stage`] for a file of switchback's own (`state.json`, the affinity table): a symlink at
/// `path` is replaced by the commit, never written through.
///
/// # Errors
/// [`PersistError::Write`] naming the file; nothing on disk changed.
pub fn stage_own(path: &Path, bytes: &[u8]) -> Result<Staged, PersistError> {
    stage_at(path.to_path_buf(), bytes)
}

/// The temp file is new, under a name nobody can guess, never a link ([`super::exclusive`]);
/// it takes the mode of the file it replaces (0600 when there is none, or it is a link).
fn stage_at(target: PathBuf, bytes: &[u8]) -> Result<Staged, PersistError> {
    let dir = dir_of(&target);
    let name = target
        .file_name()
        .map_or("config".into(), |n| n.to_string_lossy().into_owned());
    let fail = |source| PersistError::Write {
        path: target.clone(),
        source,
    };
    let (mut file, temp) = super::exclusive::create(dir, &name).map_err(fail)?;
    let staged = Staged { temp, target };
    let written = (|| {
        match std::fs::symlink_metadata(&staged.target) {
            Ok(meta) if meta.is_file() => file.set_permissions(meta.permissions())?,
            _ => {}
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    written.map_err(|source| staged.fail(source))?;
    Ok(staged)
}

/// The directory holding `path` (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
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
        let dir = dir_of(&self.target);
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

    /// A file outside the directory that a planted link points at; its text afterwards.
    fn victim() -> (tempfile::TempDir, PathBuf) {
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        (elsewhere, victim)
    }

    #[test]
    fn a_link_planted_at_the_old_predictable_temp_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "old").unwrap();
        let (_elsewhere, victim) = victim();
        let planted = dir
            .path()
            .join(format!(".c.toml.switchback-{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&path, b"new").unwrap();
        write_atomic(&path, b"newer").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer");
        assert!(planted.symlink_metadata().unwrap().is_symlink());
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
