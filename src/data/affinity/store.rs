//! The bucket table on disk: `affinity-table.json` beside the config file.
//!
//! ```json
//! {"format": 1, "changes": 3, "pools": ["blue", "green"],
//!  "runs": [[9000, 0, 0, 0], [1000, 1, 0, 2]]}
//! ```
//! `runs` is the table in bucket order, run-length encoded: `[count, owner, previous,
//! moved_at]`, owners as indices into `pools`. A table rarely has more than a few dozen runs.
//! Written atomically (temp file, fsync, rename, directory fsync); a link at its path is
//! replaced, never written through.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BucketTable, BUCKETS};
use crate::config::persist::{stage_own, PersistError};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    changes: u32,
    pools: Vec<String>,
    runs: Vec<[u32; 4]>,
}

/// `table` as the JSON value [`save_table`] writes.
pub fn table_to_value(table: &BucketTable) -> serde_json::Value {
    serde_json::to_value(encode(table)).expect("plain data serialises")
}

/// The table in `value` (as [`table_to_value`] makes it).
///
/// # Errors
/// What is wrong with it.
pub fn table_from_value(value: serde_json::Value) -> Result<BucketTable, String> {
    decode(serde_json::from_value(value).map_err(|e| e.to_string())?)
}

fn encode(table: &BucketTable) -> Stored {
    let mut runs: Vec<[u32; 4]> = Vec::new();
    for b in 0..BUCKETS {
        let cell = [
            u32::from(table.owner[b]),
            u32::from(table.previous[b]),
            table.moved_at[b],
        ];
        match runs.last_mut() {
            Some(run) if run[1..] == cell => run[0] += 1,
            _ => runs.push([1, cell[0], cell[1], cell[2]]),
        }
    }
    Stored {
        format: FORMAT,
        changes: table.changes,
        pools: table.pools.clone(),
        runs,
    }
}

/// Writes `table` to `path`, replacing what was there.
///
/// # Errors
/// [`PersistError::Write`] naming the file; the old file is then untouched.
pub fn save_table(path: &Path, table: &BucketTable) -> Result<(), PersistError> {
    let stored = encode(table);
    let mut bytes = serde_json::to_vec(&stored).expect("plain data serialises");
    bytes.push(b'\n');
    stage_own(path, &bytes)?.commit(None)
}

/// Why the table file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// It could not be read (permissions, I/O): the file may be fine; leave it alone.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// It is not a table file at all (not a JSON object with `"format"`): someone else's
    /// file, never to be moved or written over.
    #[error("{path} is not an affinity table file (another file at that path?): {reason}")]
    Foreign {
        /// The file.
        path: std::path::PathBuf,
        /// What it is not.
        reason: String,
    },
    /// A table file that cannot be used (inconsistent, unknown format, too large).
    #[error("{path} is not a usable affinity table: {reason}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Most pool names a table may hold: every pool ever configured stays in it (a live config
/// has at most 32 at a time).
const MAX_POOL_NAMES: usize = 1024;

/// Largest table file read (a real one is a few KiB).
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the table at `path`: `Ok(None)` when there is no file.
///
/// # Errors
/// [`TableError`]: unreadable, someone else's file, or a corrupt table (inconsistent, over
/// 4 MiB).
pub fn load_table(path: &Path) -> Result<Option<BucketTable>, TableError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| TableError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let corrupt = |reason: String| TableError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let foreign = |reason: String| TableError::Foreign {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() as u64 > MAX_BYTES {
        return Err(foreign(format!("larger than {MAX_BYTES} bytes")));
    }
    // Ours when it opens as this module writes it, or is a JSON object with "format": a
    // damaged table is set aside, anyone else's file is left alone.
    let opens_as_ours = bytes.trim_ascii_start().starts_with(b"{\"format\"");
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) if opens_as_ours => return Err(corrupt(e.to_string())),
        Err(e) => return Err(foreign(e.to_string())),
    };
    if value.get("format").is_none() {
        return Err(foreign("no \"format\" key".into()));
    }
    let stored: Stored = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    decode(stored).map(Some).map_err(corrupt)
}

fn decode(stored: Stored) -> Result<BucketTable, String> {
    if stored.format != FORMAT {
        return Err(format!("unknown format {}", stored.format));
    }
    let pools = stored.pools.len();
    if pools == 0 || pools > MAX_POOL_NAMES {
        return Err(format!("{pools} pools; 1 to {MAX_POOL_NAMES} expected"));
    }
    let mut names = std::collections::HashSet::new();
    if let Some(bad) = stored
        .pools
        .iter()
        .find(|n| n.is_empty() || !names.insert(n.as_str()))
    {
        return Err(format!("pool name {bad:?} is empty or repeated"));
    }
    let mut table = BucketTable {
        pools: stored.pools,
        owner: Vec::with_capacity(BUCKETS),
        previous: Vec::with_capacity(BUCKETS),
        moved_at: Vec::with_capacity(BUCKETS),
        changes: stored.changes,
    };
    for [count, owner, previous, moved_at] in stored.runs {
        let fits = (table.owner.len() as u64 + u64::from(count)) <= BUCKETS as u64;
        if count == 0 || !fits || owner as usize >= pools || previous as usize >= pools {
            return Err("a run does not fit the table".into());
        }
        if moved_at > stored.changes {
            return Err("a bucket moved after the last change".into());
        }
        let count = count as usize;
        table.owner.extend(std::iter::repeat_n(owner as u16, count));
        table
            .previous
            .extend(std::iter::repeat_n(previous as u16, count));
        table.moved_at.extend(std::iter::repeat_n(moved_at, count));
    }
    if table.owner.len() != BUCKETS {
        return Err(format!(
            "{} buckets; a table has {BUCKETS}",
            table.owner.len()
        ));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_table_survives_the_round_trip_and_bad_files_are_named() {
        let split = |g: u32| -> BTreeMap<String, u32> {
            [("blue".into(), 10_000 - g), ("green".into(), g)].into()
        };
        let table = BucketTable::fresh(&split(500))
            .next(&split(2000))
            .next(&split(700));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("affinity-table.json");
        assert_eq!(load_table(&path).unwrap(), None);
        save_table(&path, &table).unwrap();
        assert_eq!(load_table(&path).unwrap(), Some(table));
        assert!(std::fs::metadata(&path).unwrap().len() < 200, "compact");
        for foreign in ["not json", "[proxy]\nlisten = 1\n", r#"{"version": 1}"#] {
            std::fs::write(&path, foreign).unwrap();
            let err = load_table(&path).unwrap_err();
            assert!(
                matches!(err, TableError::Foreign { .. }),
                "{foreign}: {err}"
            );
        }
        let many: Vec<String> = (0..2000).map(|i| format!("p{i}")).collect();
        let too_many = serde_json::json!({"format": 1, "changes": 0, "pools": many, "runs": [[10000, 0, 0, 0]]});
        std::fs::write(&path, too_many.to_string()).unwrap();
        assert!(matches!(load_table(&path), Err(TableError::Corrupt { .. })));
        for bad in [
            r#"{"format":2,"changes":0,"pools":["a"],"runs":[[10000,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[9999,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[10000,1,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[10000,0,0,1]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[4294967295,0,0,0],[1,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":[],"runs":[]}"#,
            r#"{"format":1,"changes":0,"pools":["a","a"],"runs":[[10000,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[0,0,0,0],[10000,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"ru"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = load_table(&path).unwrap_err();
            assert!(matches!(err, TableError::Corrupt { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("affinity-table.json"), "{err}");
        }
    }

    #[test]
    fn a_link_at_the_table_path_is_replaced_never_written_through() {
        let table = BucketTable::fresh(&[("blue".into(), 10_000)].into());
        let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        let path = dir.path().join("affinity-table.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        save_table(&path, &table).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        assert!(!path.symlink_metadata().unwrap().is_symlink());
        assert_eq!(load_table(&path).unwrap(), Some(table));
    }
}
