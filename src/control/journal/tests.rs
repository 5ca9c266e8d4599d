use super::*;

fn config(split: &str) -> Config {
    crate::config::parse(&format!(
        "[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[pools.green]\nbackends = [\"127.0.0.1:2\"]\n[split]\n{split}\n"
    ))
    .unwrap()
}

/// 100 % blue over blue and green.
fn back_of() -> Split {
    config("blue = 100").split
}

#[test]
fn a_journaled_rollback_wins_only_over_an_older_stored_split() {
    let canary = config("blue = 90\ngreen = 10");
    let back = config("blue = 100").split;
    let unsaved = Unsaved::new(7, &back, &canary.split, Some(3));
    let file = &canary.split;
    assert_eq!(unsaved.wins(&canary, file, None), Ok(back.clone()));
    assert_eq!(unsaved.wins(&canary, file, Some(6)), Ok(back));
    let saved_since = unsaved.wins(&canary, file, Some(7));
    assert!(saved_since.unwrap_err().contains("saved since"));
    let edited = config("blue = 50\ngreen = 50");
    let edit_since = unsaved.wins(&edited, &edited.split, None);
    assert!(edit_since.unwrap_err().contains("edited since"));
    let other = crate::config::parse(
        "[pools.red]\nbackends = [\"127.0.0.1:3\"]\n[pools.green]\nbackends = [\"127.0.0.1:2\"]\n[split]\ngreen = 100\n",
    )
    .unwrap();
    let unfit = Unsaved::new(7, &back_of(), &other.split, None);
    assert!(unfit
        .wins(&other, &other.split, None)
        .unwrap_err()
        .contains("no longer fits"));
}

#[test]
fn the_journal_round_trips_and_an_empty_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_for(&dir.path().join("deployments.jsonl"));
    assert_eq!(path.file_name().unwrap(), "deployments.jsonl.journal");
    assert_eq!(Journal::load(&path).unwrap(), Journal::default());
    let split = config("blue = 100").split;
    let journal = Journal {
        rollouts: Some(Memo {
            last: None,
            next_id: 4,
            active: None,
            last_ended: 3,
        }),
        rollback: Some(Unsaved::new(2, &split, &split, None)),
        ..Journal::default()
    };
    journal.save(&path).unwrap();
    let read = Journal::load(&path).unwrap();
    assert_eq!(
        (read.rollouts, read.rollback),
        (journal.rollouts, journal.rollback)
    );
    Journal::default().save(&path).unwrap();
    assert!(!path.exists());
    std::fs::write(&path, "{").unwrap();
    assert!(Journal::load(&path)
        .unwrap_err()
        .contains("fix or remove it"));
}
