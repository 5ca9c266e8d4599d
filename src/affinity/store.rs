//! The bucket table on disk: `affinity-table.json` beside the config file.
//!
//! ```json
//! {"format": 1, "changes": 3, "pools": ["blue", "green"],
//!  "runs": [[9000, 0, 0, 0], [1000, 1, 0, 2]]}
//! ```
//! `runs` is the table in bucket order, run-length encoded: `[count, owner, previous,
//! moved_at]`, owners as indices into `pools`. A table rarely has more than a few dozen runs.
//! Written atomically (temp file, fsync, rename, directory fsync).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BucketTable, BUCKETS};
use crate::config::persist::{stage, PersistError};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    changes: u32,
    pools: Vec<String>,
    runs: Vec<[u32; 4]>,
}

/// Writes `table` to `path`, replacing what was there.
///
/// # Errors
/// [`PersistError::Write`] naming the file; the old file is then untouched.
pub fn save_table(path: &Path, table: &BucketTable) -> Result<(), PersistError> {
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
    let stored = Stored {
        format: FORMAT,
        changes: table.changes,
        pools: table.pools.clone(),
        runs,
    };
    let mut bytes = serde_json::to_vec(&stored).expect("plain data serialises");
    bytes.push(b'\n');
    stage(path, &bytes)?.commit(None)
}

/// Reads the table at `path`: `Ok(None)` when there is no file.
///
/// # Errors
/// A message naming the file and what is wrong with it (unreadable, not JSON, inconsistent).
pub fn load_table(path: &Path) -> Result<Option<BucketTable>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let stored: Stored =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    decode(stored)
        .map(Some)
        .map_err(|why| format!("{}: {why}", path.display()))
}

fn decode(stored: Stored) -> Result<BucketTable, String> {
    if stored.format != FORMAT {
        return Err(format!("unknown format {}", stored.format));
    }
    let pools = stored.pools.len();
    if pools == 0 || pools > usize::from(u16::MAX) {
        return Err(format!("{pools} pools"));
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
        if !fits || owner as usize >= pools || previous as usize >= pools {
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
        for bad in [
            "not json",
            r#"{"format":2,"changes":0,"pools":["a"],"runs":[[10000,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[9999,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[10000,1,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[10000,0,0,1]]}"#,
            r#"{"format":1,"changes":0,"pools":["a"],"runs":[[4294967295,0,0,0],[1,0,0,0]]}"#,
            r#"{"format":1,"changes":0,"pools":[],"runs":[]}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = load_table(&path).unwrap_err();
            assert!(err.contains("affinity-table.json"), "{err}");
        }
    }
}
