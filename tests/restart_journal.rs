//! What a restart may not undo (issue 24): a rollback that went live without being saved is
//! kept in the restart journal and wins over the older stored split at start, its rollout never
//! resumes; and the rollouts' memo (next id, active rollout) survives a deployment log that lost
//! them. Real binary, real files, SIGKILL restarts.

mod common;

use common::rollout::{current, start};
use common::{blue_green_with, poll_until, BlueGreen, DEADLINE};

const HOLD: &str = "[plans.hold]\nsteps = [{ weight = 10, hold = \"20m\" }, { weight = 100 }]\n";

async fn at_ten_percent(bg: &BlueGreen) {
    start(bg, r#"{"to": "green", "plan": "hold"}"#).await;
    poll_until("green at 10 %", DEADLINE, || async {
        bg.proxy.status().await["split"]["green"] == 10
    })
    .await;
}

/// Makes the config file unwritable even for root: it becomes a link to a file whose name
/// leaves no room for a temp file's (the write goes beside the link's target).
fn config_unwritable(bg: &BlueGreen) {
    let path = &bg.proxy.config_path;
    let long = path.with_file_name(format!("{}.toml", "s".repeat(240)));
    std::fs::rename(path, &long).unwrap();
    std::os::unix::fs::symlink(&long, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsaved_rollback_survives_a_restart_and_its_rollout_never_resumes() {
    let mut bg = blue_green_with("", "blue = 100\ngreen = 0", HOLD).await;
    at_ten_percent(&bg).await;
    config_unwritable(&bg);
    // The deployment log cannot take the rollback either: a directory where its file was.
    let log = bg.proxy.dir.path().join("deployments.jsonl");
    let kept = bg.proxy.dir.path().join("deployments.kept");
    std::fs::rename(&log, &kept).unwrap();
    std::fs::create_dir(&log).unwrap();

    let reply = bg.proxy.admin("POST", "/rollback", "").await;
    assert_eq!(reply.status, 200, "never blocked: {}", reply.text());
    assert_eq!(bg.proxy.status().await["split"]["green"], 0);
    let journal = bg.proxy.dir.path().join("deployments.jsonl.journal");
    assert!(journal.exists(), "{}", bg.proxy.stderr());
    // An admin write reads the file first: its [split] (the canary's) must not come back.
    let refused = bg
        .proxy
        .admin("PUT", "/split", r#"{"blue": 50, "green": 50}"#)
        .await;
    assert_ne!(refused.status, 200, "{}", refused.text());
    assert_eq!(bg.proxy.status().await["split"]["green"], 0);

    bg.proxy.kill();
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(&kept, &log).unwrap(); // its last rollout record: active at 10 %
    bg.proxy.relaunch().await;

    let status = bg.proxy.status().await;
    assert_eq!(
        status["split"]["green"], 0,
        "the canary's split came back: {status}"
    );
    let rollout = current(&bg).await;
    assert_eq!(rollout["state"], "rolled-back", "{rollout}");
    // Still journaled: the config file cannot take the split yet.
    assert!(journal.exists());
    let entries = bg.proxy.history().await;
    let start = entries
        .iter()
        .filter(|e| e["action"] == "start")
        .max_by_key(|e| e["version"].as_u64())
        .unwrap();
    assert!(
        start["message"]
            .as_str()
            .unwrap()
            .contains("restart journal"),
        "{start}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_the_split_after_the_journaled_rollback_wins_at_restart() {
    let mut bg = blue_green_with("", "blue = 100\ngreen = 0", HOLD).await;
    at_ten_percent(&bg).await;
    config_unwritable(&bg);
    assert_eq!(bg.proxy.admin("POST", "/rollback", "").await.status, 200);
    bg.proxy.kill();
    // The operator sets the split by hand while switchback is down.
    let text = std::fs::read_to_string(&bg.proxy.config_path).unwrap();
    let edited = text
        .replace("green = 10", "green = 30")
        .replace("blue = 90", "blue = 70");
    assert_ne!(text, edited);
    std::fs::write(&bg.proxy.config_path, edited).unwrap();
    bg.proxy.relaunch().await;
    assert_eq!(bg.proxy.status().await["split"]["green"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_are_recovered_from_the_state_even_when_the_log_kept_none_of_them() {
    let extra = format!(
        "{HOLD}[state]\ndir = \"state\"\n[log]\ndeployments-max-size = \"1KiB\"\ndeployments-keep = 0\n"
    );
    let mut bg = blue_green_with("", "blue = 100\ngreen = 0", &extra).await;
    at_ten_percent(&bg).await;
    assert_eq!(
        bg.proxy
            .admin("POST", "/rollouts/current/pause", "")
            .await
            .status,
        200
    );
    // Later entries push the rollout's out of a log that keeps no old file.
    let backend = bg.blue.addr;
    for _ in 0..6 {
        for action in ["drain", "undrain"] {
            let path = format!("/backends/blue/{backend}/{action}");
            assert_eq!(bg.proxy.admin("POST", &path, "").await.status, 200);
        }
    }
    let log = bg.proxy.dir.path().join("state/deployments.jsonl");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        !log.contains("rollout-start"),
        "the log still holds the rollout: {log}"
    );

    bg.proxy.restart().await;
    let rollout = current(&bg).await;
    assert_eq!(
        (rollout["id"].as_u64(), rollout["state"].as_str()),
        (Some(1), Some("paused")),
        "{rollout}"
    );
    assert_eq!(bg.proxy.status().await["split"]["green"], 10);
    assert_eq!(
        bg.proxy
            .admin("POST", "/rollouts/current/abort", "")
            .await
            .status,
        200
    );
    let next = start(&bg, r#"{"to": "green", "plan": "hold"}"#).await;
    assert_eq!(next["id"], 2, "a rollout id was given out twice: {next}");
}
