//! Rollouts never stand in the way of getting back to safety: `POST /rollback` works even with a
//! rejected edit in the config file, a rollback never hands traffic back to a canary, and a
//! rollout whose split was changed while switchback was down does not come back.

mod common;

use std::time::{Duration, Instant};

use common::rollout::{current, start, until};
use common::{blue_green, BlueGreen};

const WAIT: &str = "[plans.wait]\nsteps = [{ weight = 10, hold = \"1m\" }, { weight = 100 }]\n";

async fn started_at_ten(bg: &BlueGreen) {
    start(bg, r#"{"to": "green", "plan": "wait"}"#).await;
    let began = Instant::now();
    while bg.proxy.status().await["split"]["green"] != 10 {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "never reached 10 %"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_works_during_a_rollout_even_with_a_rejected_edit_in_the_file_and_never_returns_to_the_canary(
) {
    let bg = blue_green("blue = 100\ngreen = 0", WAIT).await;
    started_at_ten(&bg).await;
    let text = std::fs::read_to_string(&bg.proxy.config_path).unwrap();
    std::fs::write(&bg.proxy.config_path, format!("{text}\n[proxy.oops]\n")).unwrap();
    let began = Instant::now();
    while !bg
        .proxy
        .history()
        .await
        .iter()
        .any(|e| e["action"] == "rejected")
    {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the bad edit was never rejected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = bg.proxy.admin("POST", "/rollback", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        bg.proxy.status().await["split"],
        serde_json::json!({"blue": 100, "green": 0})
    );
    let ended = current(&bg).await;
    assert_eq!(
        (ended["state"].as_str(), ended["reason"].as_str()),
        (Some("rolled-back"), Some("manual"))
    );
    let tally = common::tally(bg.proxy.addr, 30).await;
    assert_eq!(tally.get("green"), None, "{tally:?}");
    let on_disk = std::fs::read_to_string(&bg.proxy.config_path).unwrap();
    assert!(
        on_disk.contains("[proxy.oops]"),
        "the operator's edit is kept:\n{on_disk}"
    );
    assert!(
        on_disk.contains("blue = 100\ngreen = 0"),
        "the rollback is in the file:\n{on_disk}"
    );
    // The operator fixes the edit; a rollback then goes to the split before the rollout, never
    // to its 10 % step.
    std::fs::write(&bg.proxy.config_path, on_disk.replace("[proxy.oops]\n", "")).unwrap();
    let again = bg.proxy.admin("POST", "/rollback", "").await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        bg.proxy.status().await["split"],
        serde_json::json!({"blue": 100, "green": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_split_was_changed_while_down_ends_superseded_instead_of_resuming() {
    let mut bg = blue_green("blue = 100\ngreen = 0", WAIT).await;
    started_at_ten(&bg).await;
    let text = std::fs::read_to_string(&bg.proxy.config_path).unwrap();
    let edited = text.replace("blue = 90\ngreen = 10", "blue = 100\ngreen = 0");
    assert_ne!(
        edited, text,
        "the rollout wrote its step into [split]:\n{text}"
    );
    bg.proxy.kill();
    std::fs::write(&bg.proxy.config_path, &edited).unwrap();
    bg.proxy.relaunch().await;
    let ended = current(&bg).await;
    assert_eq!(ended["state"], "aborted", "{ended}");
    assert_eq!(ended["reason"], "superseded");
    assert!(
        ended["message"]
            .as_str()
            .unwrap()
            .contains("changed while switchback was down"),
        "{ended}"
    );
    assert_eq!(
        bg.proxy.status().await["split"],
        serde_json::json!({"blue": 100, "green": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_automatic_rollback_and_a_restart_rollback_never_returns_to_the_canary() {
    let plan = "[plans.quick]\nsteps = [{ weight = 10, hold = \"2s\", min-requests = 50 }, { weight = 100 }]\n";
    let mut bg = blue_green("blue = 100\ngreen = 0", plan).await;
    bg.green.fail_every(2);
    let load = common::load::Load::start(bg.proxy.addr, 250);
    start(&bg, r#"{"to": "green", "plan": "quick"}"#).await;
    until(&bg, &["rolled-back"], Duration::from_secs(20)).await;
    drop(load);
    bg.proxy.restart().await;
    let reply = bg.proxy.admin("POST", "/rollback", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        bg.proxy.status().await["split"],
        serde_json::json!({"blue": 100, "green": 0})
    );
}
