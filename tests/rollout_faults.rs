//! Rollouts of faulty canaries through the real binary: errors and slowness are rolled back by
//! themselves with the numbers, a failing smoke check stops the rollout before any user request,
//! and a dry run only reports.

mod common;

use std::time::{Duration, Instant};

use common::blue_green;
use common::load::Load;
use common::rollout::{current, start, until_ended, QUICK};

const SMOKED: &str = r#"
[plans.smoked]
steps = [{ weight = 10, hold = "1s", min-requests = 10 }, { weight = 100, min-requests = 10 }]
[plans.smoked.analysis]
detect-ratio = 100
[plans.smoked.smoke]
path = "/healthz"
repeat = 2
timeout = "1s"
"#;

/// Waits for the first answer from green, returning when it came.
async fn first_green(load: &Load, within: Duration) -> Instant {
    let began = Instant::now();
    while load.by("green") == 0 {
        assert!(began.elapsed() < within, "green never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_one_request_in_five_is_rolled_back_within_ten_seconds_with_its_counts() {
    let bg = blue_green("blue = 100\ngreen = 0", &format!("{QUICK}{SMOKED}")).await;
    bg.green.fail_every(5);
    let load = Load::start(bg.proxy.addr, 250);
    start(&bg, r#"{"to": "green", "plan": "quick"}"#).await;
    let first = first_green(&load, Duration::from_secs(10)).await;
    let ended = until_ended(&bg, Duration::from_secs(20)).await;
    assert!(
        first.elapsed() < Duration::from_secs(10),
        "{:?}",
        first.elapsed()
    );
    assert_eq!(ended["state"], "rolled-back", "{ended}");
    let reason = ended["reason"].as_str().unwrap();
    assert!(
        ["error-regression", "hard-failure"].contains(&reason),
        "{ended}"
    );
    let message = ended["message"].as_str().unwrap();
    assert!(
        message.contains("green") && message.contains("blue") && message.contains('/'),
        "{message}"
    );
    let evidence = &ended["evidence"]["pools"]["green"];
    assert!(evidence["errors"].as_u64().unwrap() > 0, "{ended}");
    // After the rollback no user request reaches green.
    drop(load);
    // A load request routed by the snapshot before the rollback may still be reaching green.
    let mut green_before = bg.green.requests();
    common::poll_until(
        "green's last requests to land",
        Duration::from_secs(10),
        || {
            let now = bg.green.requests();
            let settled = now == green_before;
            green_before = now;
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                settled
            }
        },
    )
    .await;
    let green_before = bg.green.requests();
    let tally = common::tally(bg.proxy.addr, 50).await;
    assert_eq!(tally.get("green"), None, "{tally:?}");
    assert_eq!(bg.green.requests(), green_before);
    let history = bg.proxy.history().await;
    let entry = history
        .iter()
        .find(|e| e["action"] == "rollout-rollback")
        .expect("a rollout-rollback entry");
    assert_eq!(entry["actor"], "rollout");
    assert_eq!(entry["message"], ended["message"]);
    assert_eq!(entry["after"], serde_json::json!({"blue": 100, "green": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_200ms_slower_than_its_baseline_is_rolled_back_for_latency() {
    let bg = blue_green("blue = 100\ngreen = 0", &format!("{QUICK}{SMOKED}")).await;
    bg.green.delay(200);
    let _load = Load::start(bg.proxy.addr, 250);
    start(&bg, r#"{"to": "green", "plan": "quick"}"#).await;
    let ended = until_ended(&bg, Duration::from_secs(30)).await;
    assert_eq!(ended["state"], "rolled-back", "{ended}");
    assert_eq!(ended["reason"], "latency-regression", "{ended}");
    let message = ended["message"].as_str().unwrap();
    assert!(
        message.starts_with("latency regression at 10 %"),
        "{message}"
    );
    assert!(
        ended["evidence"]["pools"]["green"]["slow"]
            .as_u64()
            .unwrap()
            > 0,
        "{ended}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_check_aborts_before_any_user_request_reaches_green() {
    let bg = blue_green("blue = 100\ngreen = 0", &format!("{QUICK}{SMOKED}")).await;
    bg.green.set_healthy(false);
    let load = Load::start(bg.proxy.addr, 100);
    start(&bg, r#"{"to": "green", "plan": "smoked"}"#).await;
    let ended = until_ended(&bg, Duration::from_secs(15)).await;
    assert_eq!(ended["state"], "aborted", "{ended}");
    assert_eq!(ended["reason"], "smoke-failed");
    let message = ended["message"].as_str().unwrap();
    assert!(
        message.contains("answered 503") && message.contains("green"),
        "{message}"
    );
    assert_eq!(bg.green.requests(), 0, "green saw only the probes");
    assert_eq!(load.by("green"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_smoke_check_lets_the_rollout_go_on() {
    let bg = blue_green("blue = 100\ngreen = 0", &format!("{QUICK}{SMOKED}")).await;
    let _load = Load::start(bg.proxy.addr, 100);
    start(&bg, r#"{"to": "green", "plan": "smoked"}"#).await;
    let ended = until_ended(&bg, Duration::from_secs(20)).await;
    assert_eq!(ended["state"], "promoted", "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_logs_what_it_would_roll_back_and_rolls_nothing_back() {
    let bg = blue_green("blue = 100\ngreen = 0", &format!("{QUICK}{SMOKED}")).await;
    bg.green.fail_every(5);
    let _load = Load::start(bg.proxy.addr, 250);
    start(&bg, r#"{"to": "green", "plan": "quick", "dry_run": true}"#).await;
    let began = Instant::now();
    let entry = loop {
        let history = bg.proxy.history().await;
        if let Some(e) = history.iter().find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("would roll back: "))
        }) {
            break e.clone();
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "no would-roll-back entry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry["before"], entry["after"], "nothing moved: {entry}");
    assert_eq!(entry["outcome"], "rejected", "{entry}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reports = bg
        .proxy
        .history()
        .await
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("would roll back: "))
        })
        .count();
    assert!(
        reports <= 2,
        "each reason once per step, not every second: {reports}"
    );
    let now = current(&bg).await;
    assert_ne!(now["state"], "rolled-back", "{now}");
    assert!(bg.proxy.stderr().contains("would roll back"));
    assert!(bg.proxy.status().await["split"]["green"].as_u64().unwrap() > 0);
}
