use super::*;
use crate::config::percent::checked_split;
use crate::control::audit::{Action, Outcome};

fn entry(version: u64, message: &str) -> Entry {
    let split = checked_split([("blue".to_string(), 10_000)].into()).unwrap();
    let mut e = Entry::now(version, "t", Action::Rejected, &split, &split);
    e.outcome = Outcome::Rejected;
    e.message = message.to_string();
    e
}

fn unrotated(path: &Path) -> AuditLog {
    let never = Rotation {
        max_bytes: u64::MAX,
        keep: 0,
    };
    AuditLog::new(path.to_path_buf(), never)
}

fn versions(log: &AuditLog, limit: usize) -> Vec<u64> {
    log.newest(limit)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect()
}

#[test]
fn a_link_planted_at_the_lock_name_is_never_opened() {
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = dir.path().join("d.jsonl");
    let target = elsewhere.path().join("made-through-the-link");
    std::os::unix::fs::symlink(&target, dir.path().join("d.jsonl.lock")).unwrap();
    let log = unrotated(&path);
    log.append(&entry(1, "")).unwrap();
    assert!(!target.exists(), "no file created through the link");
    assert_eq!(versions(&log, 10), [1]);
}

#[test]
fn a_torn_or_invalid_line_never_hides_the_entries_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let log = unrotated(&path);
    log.append(&entry(1, "")).unwrap();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"\xff\xfe not utf-8\n{\"time\":\"2026-11-2")
        .unwrap();
    log.append(&entry(2, "")).unwrap();
    log.append(&entry(3, "")).unwrap();
    assert_eq!(versions(&log, 10), [3, 2, 1]);
    assert_eq!(versions(&log, 2), [3, 2]);
}

#[test]
fn the_log_rotates_by_size_keeps_n_files_and_reads_across_them_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let log = AuditLog::new(
        path.clone(),
        Rotation {
            max_bytes: 2048,
            keep: 2,
        },
    );
    for v in 1..=100 {
        log.append(&entry(v, &"x".repeat(100))).unwrap();
    }
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|f| {
            !f.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".lock")
        })
        .count();
    assert!(
        files <= 3,
        "{files} files: the current one and at most two old ones"
    );
    let all = versions(&log, 1000);
    assert_eq!(all[0], 100);
    assert!(
        all.windows(2).all(|w| w[0] == w[1] + 1),
        "contiguous, newest first: {all:?}"
    );
    assert!(all.len() < 100, "the oldest files were dropped");
    assert_eq!(versions(&log, 5), [100, 99, 98, 97, 96]);
}

#[test]
fn with_no_old_files_kept_the_newest_entry_is_always_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let log = AuditLog::new(
        path,
        Rotation {
            max_bytes: 1024,
            keep: 0,
        },
    );
    for v in 1..=50 {
        log.append(&entry(v, &"x".repeat(100))).unwrap();
        assert_eq!(
            versions(&log, 1),
            [v],
            "the entry just written survives rotation"
        );
    }
}

#[test]
fn a_long_message_is_cut_and_reading_backwards_joins_lines_across_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let log = unrotated(&path);
    log.append(&entry(1, &"é".repeat(40_000))).unwrap();
    let line_len = std::fs::metadata(&path).unwrap().len();
    assert!(line_len < 1024, "a {line_len}-byte line was written");
    for v in 2..=3000 {
        log.append(&entry(v, "padding to cross the 64 KiB read blocks"))
            .unwrap();
    }
    let all = versions(&log, 5000);
    assert_eq!(all.len(), 3000);
    assert!(all.iter().rev().copied().eq(1..=3000));
    assert!(log
        .newest(5000)
        .unwrap()
        .last()
        .unwrap()
        .message
        .ends_with('…'));
}

#[test]
fn entries_are_numbered_one_by_one_across_instances_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let small = Rotation {
        max_bytes: 600,
        keep: 3,
    };
    let seqs = |log: &AuditLog| -> Vec<Option<u64>> {
        log.newest(100).unwrap().iter().map(|e| e.seq).collect()
    };
    let log = AuditLog::new(path.clone(), small);
    for v in 1..=3 {
        log.append(&entry(v, "x")).unwrap();
    }
    assert_eq!(seqs(&log), [Some(3), Some(2), Some(1)]);
    // Another process (a new instance) continues the count, across a rotation.
    let again = AuditLog::new(path.clone(), small);
    for v in 4..=8 {
        again
            .append(&entry(v, "a longer message to make the file rotate"))
            .unwrap();
    }
    assert!(dir.path().join("d.jsonl.1").exists(), "it rotated");
    let all: Vec<u64> = seqs(&again).into_iter().map(Option::unwrap).collect();
    assert_eq!(all, (1..=8).rev().collect::<Vec<_>>());
    // An older binary's entries (no seq) in between: the count goes on past them.
    let mut old = entry(9, "an older switchback's entry");
    old.seq = None;
    let older = AuditLog::new(path.clone(), small);
    older.numbered_by_the_shared_log(); // writes as an unnumbering binary would
    older.append_local(&old).unwrap();
    older.append_local(&old).unwrap();
    // A new process (nothing given yet) finds the newest numbered entry behind them.
    AuditLog::new(path.clone(), small)
        .append(&entry(10, ""))
        .unwrap();
    assert_eq!(seqs(&again)[..3], [Some(9), None, None]);
    // An entry that comes numbered (the shared log's) keeps its number.
    let mut shared = entry(9, "");
    shared.seq = Some(57);
    again.append_local(&shared).unwrap();
    assert_eq!(seqs(&again)[0], Some(57));
}
