//! Automated rollouts through the real binary under real load: a healthy canary is promoted
//! step by step, gates wait for approval, operators pause, roll back and restart mid-rollout,
//! and every refusal is a clear 4xx that changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::load::Load;
use common::rollout::{current, start, until, QUICK};
use common::{blue_green, poll_until, BlueGreen};
use serde_json::Value;

async fn act(bg: &BlueGreen, action: &str) -> Value {
    let path = format!("/rollouts/current/{action}");
    let reply = bg.proxy.admin("POST", &path, "").await;
    assert_eq!(reply.status, 200, "{action}: {}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

async fn until_state(bg: &BlueGreen, state: &str, within: Duration) -> Value {
    until(bg, &[state], within).await
}

fn actions(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .rev()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("rollout-"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_step_by_step_within_two_seconds_of_its_holds() {
    let bg = blue_green("blue = 100\ngreen = 0", QUICK).await;
    let load = Load::start(bg.proxy.addr, 250);
    let began = Instant::now();
    let started = start(
        &bg,
        r#"{"to": "green", "plan": "quick", "release": {"version": "2.4.1"}}"#,
    )
    .await;
    assert_eq!(started["from"], "blue");
    assert_eq!(started["release"]["version"], "2.4.1");
    let done = until_state(&bg, "promoted", Duration::from_secs(30)).await;
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(8),
        "6 s of holds took {took:?}"
    );
    assert_eq!(done["weight"], 100);
    assert_eq!(done["reason"], Value::Null);
    assert!(
        done["message"].as_str().unwrap().starts_with("promoted"),
        "{done}"
    );
    let status = bg.proxy.status().await;
    assert_eq!(
        status["split"],
        serde_json::json!({"blue": 0, "green": 100})
    );
    let steps = actions(&bg.proxy.history().await);
    assert_eq!(
        steps,
        [
            "rollout-start",
            "rollout-step",
            "rollout-step",
            "rollout-step",
            "rollout-promoted"
        ],
        "one entry per step"
    );
    assert!(load.by("green") > 150, "{:?}", load.seen);
    let samples = common::metrics::scrape(&bg.proxy).await;
    let value = |name, labels: &[(&str, &str)]| common::metrics::value(&samples, name, labels);
    assert_eq!(
        value("switchback_rollout_state", &[("state", "promoted")]),
        1.0
    );
    assert_eq!(
        value("switchback_rollout_state", &[("state", "running")]),
        0.0
    );
    assert_eq!(value("switchback_rollout_weight", &[]), 100.0);
    assert_eq!(value("switchback_rollout_step", &[]), 2.0);
    assert_eq!(
        value("switchback_rollout_evidence", &[("test", "error")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_gate_waits_for_approval_then_goes_on() {
    let plan = r#"
[plans.gated]
steps = [
  { weight = 10, hold = "1s", min-requests = 10 },
  { weight = 100, hold = "1s", min-requests = 10, gate = "manual" },
]
[plans.gated.analysis]
detect-ratio = 100
"#;
    let bg = blue_green("blue = 100\ngreen = 0", plan).await;
    let _load = Load::start(bg.proxy.addr, 200);
    start(&bg, r#"{"to": "green", "plan": "gated"}"#).await;
    let waiting = until_state(&bg, "waiting", Duration::from_secs(20)).await;
    assert_eq!(waiting["weight"], 10, "waits at the step before the gate");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        current(&bg).await["state"],
        "waiting",
        "no approval, no move"
    );
    // `If-Match: <id>.<revision>`: a stale or malformed one is refused and changes nothing.
    let (id, revision) = (&waiting["id"], waiting["revision"].as_u64().unwrap());
    for (tag, status) in [
        (format!("{id}.{}", revision - 1), 412),
        (format!("{}.{revision}", id.as_u64().unwrap() + 1), 412),
        ("seven".to_string(), 400),
    ] {
        let headers = [("if-match", tag.as_str())];
        let reply = (bg.proxy)
            .admin_call("POST", "/rollouts/current/approve", "", &headers)
            .await;
        assert_eq!(reply.status, status, "{tag}: {}", reply.text());
    }
    assert_eq!(current(&bg).await["state"], "waiting");
    let tag = format!("{id}.{revision}");
    let reply = (bg.proxy)
        .admin_call(
            "POST",
            "/rollouts/current/approve",
            "",
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let approved: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        approved["revision"],
        revision + 1,
        "a transition bumps the revision"
    );
    assert_eq!(approved["state"], "running");
    assert_eq!(approved["weight"], 100);
    until_state(&bg, "promoted", Duration::from_secs(20)).await;
    let steps = actions(&bg.proxy.history().await);
    assert!(steps.contains(&"rollout-wait".to_string()), "{steps:?}");
    assert!(steps.contains(&"rollout-approve".to_string()), "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_mid_rollout_puts_every_new_request_on_blue_at_once() {
    let bg = blue_green("blue = 100\ngreen = 0", QUICK).await;
    let load = Load::start(bg.proxy.addr, 200);
    start(&bg, r#"{"to": "green", "plan": "quick"}"#).await;
    poll_until("green gets traffic", Duration::from_secs(20), || async {
        load.by("green") > 5
    })
    .await;
    let reply = bg.proxy.admin("POST", "/rollback", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ended = current(&bg).await;
    assert_eq!(ended["state"], "rolled-back");
    assert_eq!(ended["reason"], "manual");
    drop(load);
    let tally = common::tally(bg.proxy.addr, 50).await;
    assert_eq!(tally.get("green"), None, "{tally:?}");
    assert_eq!(
        bg.proxy.status().await["split"],
        serde_json::json!({"blue": 100, "green": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_rollout_comes_back_paused_at_its_weight_and_resumes_to_promotion() {
    let mut bg = blue_green("blue = 100\ngreen = 0", QUICK).await;
    let load = Load::start(bg.proxy.addr, 250);
    start(&bg, r#"{"to": "green", "plan": "quick"}"#).await;
    poll_until("rollout at 50 %", Duration::from_secs(20), || async {
        bg.proxy.status().await["split"]["green"] == 50
    })
    .await;
    drop(load);
    bg.proxy.restart().await; // SIGKILL, then start again
    let back = current(&bg).await;
    assert_eq!(back["state"], "paused", "{back}");
    assert_eq!(back["reason"], "restart");
    assert_eq!(back["weight"], 50);
    assert_eq!(
        bg.proxy.status().await["split"],
        serde_json::json!({"blue": 50, "green": 50})
    );
    let _load = Load::start(bg.proxy.addr, 250);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        current(&bg).await["state"],
        "paused",
        "nothing moves until resume"
    );
    act(&bg, "resume").await;
    until_state(&bg, "promoted", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_one_request_a_second_a_step_is_inconclusive_and_pauses_never_promoting() {
    let plan = r#"
[plans.slowtraffic]
max-step-time = "5s"
steps = [{ weight = 50, hold = "1s", min-requests = 50 }, { weight = 100, min-requests = 50 }]
"#;
    let bg = blue_green("blue = 100\ngreen = 0", plan).await;
    let _load = Load::start(bg.proxy.addr, 1);
    start(&bg, r#"{"to": "green", "plan": "slowtraffic"}"#).await;
    let paused = until_state(&bg, "paused", Duration::from_secs(20)).await;
    assert_eq!(paused["reason"], "inconclusive");
    assert_eq!(paused["weight"], 50);
    let message = paused["message"].as_str().unwrap();
    assert!(
        message.contains("inconclusive after 5s") && message.contains("of 50 target requests"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_and_invalid_requests_are_refused_and_change_nothing() {
    let gate = r#"
[plans.wait]
steps = [{ weight = 10, hold = "1m" }, { weight = 100 }]
"#;
    let bg = blue_green("blue = 100\ngreen = 0", &format!("{gate}\n{QUICK}")).await;
    let p = &bg.proxy;
    assert_eq!(p.admin("GET", "/rollouts/current", "").await.status, 404);
    for (body, needle) in [
        (
            r#"{"to": "purple", "plan": "wait"}"#,
            "no pool named \"purple\"",
        ),
        (
            r#"{"to": "green", "plan": "nope"}"#,
            "no plan named \"nope\" (plans: quick, wait)",
        ),
        (
            r#"{"to": "blue", "plan": "wait"}"#,
            "blue already has 100 %",
        ),
        (r#"{"to": "green", "colour": 1}"#, "unknown field"),
        ("not json", "expected"),
    ] {
        let reply = p.admin("POST", "/rollouts", body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let error: Value = serde_json::from_slice(&reply.body).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(needle), "{body}: {error}");
    }
    start(&bg, r#"{"to": "green", "plan": "wait"}"#).await;
    poll_until("first step", Duration::from_secs(10), || async {
        p.status().await["split"]["green"] == 10
    })
    .await;
    let second = p
        .admin("POST", "/rollouts", r#"{"to": "green", "plan": "quick"}"#)
        .await;
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(second.text().contains("rollout 1"), "{}", second.text());
    let split = p
        .admin("PUT", "/split", r#"{"blue": 50, "green": 50}"#)
        .await;
    assert_eq!(split.status, 409, "{}", split.text());
    assert!(
        split.text().contains("pause or abort it first"),
        "{}",
        split.text()
    );
    assert_eq!(
        p.admin("POST", "/switch", r#"{"to": "green"}"#)
            .await
            .status,
        409
    );
    let approve = p.admin("POST", "/rollouts/current/approve", "").await;
    assert_eq!(approve.status, 409, "{}", approve.text());
    assert!(
        approve.text().contains("no gate is waiting"),
        "{}",
        approve.text()
    );
    assert_eq!(
        p.admin("POST", "/rollouts/current/resume", "").await.status,
        409
    );
    assert_eq!(
        p.admin("POST", "/rollouts/current/fly", "").await.status,
        404
    );
    assert_eq!(
        p.admin("GET", "/rollouts/current/pause", "").await.status,
        405
    );
    assert_eq!(
        p.status().await["split"],
        serde_json::json!({"blue": 90, "green": 10})
    );
    let aborted = act(&bg, "abort").await;
    assert_eq!(aborted["state"], "rolled-back");
    assert_eq!(aborted["reason"], "manual");
    assert_eq!(
        p.status().await["split"],
        serde_json::json!({"blue": 100, "green": 0})
    );
    let list: Value =
        serde_json::from_slice(&p.admin("GET", "/rollouts?limit=5", "").await.body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_rollout_is_superseded_by_a_manual_split() {
    let plan = "[plans.wait]\nsteps = [{ weight = 10, hold = \"1m\" }, { weight = 100 }]\n";
    let bg = blue_green("blue = 100\ngreen = 0", plan).await;
    start(&bg, r#"{"to": "green", "plan": "wait"}"#).await;
    until_state(&bg, "running", Duration::from_secs(10)).await;
    assert_eq!(act(&bg, "pause").await["state"], "paused");
    let split = bg
        .proxy
        .admin("PUT", "/split", r#"{"blue": 70, "green": 30}"#)
        .await;
    assert_eq!(split.status, 200, "{}", split.text());
    let ended = current(&bg).await;
    assert_eq!(ended["state"], "aborted");
    assert_eq!(ended["reason"], "superseded");
}

/// `switchback ctl --admin <url> <args>` → (exit success, stdout + stderr).
fn ctl(bg: &BlueGreen, args: &[&str]) -> (bool, String) {
    let admin = format!("http://{}", bg.proxy.admin);
    let out = std::process::Command::new(common::binary())
        .args(["ctl", "--admin", &admin])
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_rollout_starts_shows_steers_and_explains_a_rollout() {
    let plan = "[plans.default]\nsteps = [{ weight = 10, hold = \"1m\" }, { weight = 100 }]\n";
    let bg = blue_green("blue = 100\ngreen = 0", plan).await;
    let (ok, out) = ctl(
        &bg,
        &["rollout", "start", "green", "--release-version", "2.4.1"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("rollout 1: blue → green by plan default"),
        "{out}"
    );
    until_state(&bg, "running", Duration::from_secs(10)).await;
    let (ok, out) = ctl(&bg, &["rollout", "status"]);
    assert!(ok, "{out}");
    assert!(out.contains("running at 10 %, step 1 of 2"), "{out}");
    assert!(ctl(&bg, &["rollout", "pause"])
        .1
        .contains("paused (manual) at 10 %"));
    let (ok, out) = ctl(&bg, &["rollout", "approve"]);
    assert!(!ok && out.contains("no gate is waiting"), "{out}");
    assert!(ctl(&bg, &["rollout", "explain"])
        .1
        .contains("rollout 1 is paused: [manual] paused by an operator"));
    let (ok, out) = ctl(&bg, &["rollout", "abort"]);
    assert!(ok, "{out}");
    let (ok, out) = ctl(&bg, &["rollout", "history"]);
    assert!(ok && out.contains("rolled-back"), "{out}");
    let (ok, out) = ctl(&bg, &["rollout", "status", "--watch"]);
    assert!(
        ok && out.contains("rolled-back (manual) at 0 %"),
        "ended rollouts end the watch: {out}"
    );
    assert_eq!(current(&bg).await["release"]["version"], "2.4.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_three_requests_a_second_the_start_says_which_step_cannot_decide_in_time() {
    let plan = r#"
[plans.careful]
steps = [{ weight = 10, hold = "1m" }, { weight = 100, hold = "1m" }]
"#;
    let bg = blue_green("blue = 100\ngreen = 0", plan).await;
    let _load = Load::start(bg.proxy.addr, 3);
    // The recent rate is measured over at least 5 s of the proxy's own samples.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let started = start(&bg, r#"{"to": "green", "plan": "careful"}"#).await;
    let warnings = started["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{started}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("step 1 (10 %) expects about")
            && warning.contains("more than half of max-step-time 30m")
            && warning.starts_with("at ")
            && warning.contains(" req/s in total"),
        "{warning}"
    );
    assert_eq!(act(&bg, "abort").await["state"], "rolled-back");
}
