//! Rollout analysis that can be trusted (issue 23), through the real binary under real load:
//! only what the upstream did counts against a pool (stalled uploads and clients that leave do
//! not), latency is the upstream's response time (slow readers do not make a canary slow), a
//! failing canary is rolled back even while the baseline is degraded and during the bake, and
//! a service whose normal error rate is 2 % on both pools is promoted.

mod common;

use std::time::{Duration, Instant};

use common::clients::{half_upload, read_head, users_on};
use common::load::Load;
use common::rollout::{current, start, until, until_ended};
use common::{blue_green_with, poll_until, BlueGreen};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// The target holds 10 % for a minute: long enough for every test here to end before it.
const HOLD: &str = "[plans.hold]\nsteps = [{ weight = 10, hold = \"1m\" }, { weight = 100 }]\n";
/// The size of the answer slow readers get: more than the proxy's socket buffers hold.
const BULK: usize = 4 << 20;
/// User keys come from `x-user-id` only; a request without one is routed at random.
const AFFINITY: &str = "[affinity]\nkey = [\"header:x-user-id\"]\nmint-cookie = \"\"\n";

/// Starts the `hold` plan to green and waits until green has its 10 %.
async fn hold_at_ten(bg: &BlueGreen) {
    start(bg, r#"{"to": "green", "plan": "hold"}"#).await;
    poll_until("green at 10 %", Duration::from_secs(10), || async {
        bg.proxy.status().await["split"]["green"] == 10
    })
    .await;
}

/// `pool`'s numbers in the evidence of `rollout` (`requests`, `errors`, `slow`, `p99_ms`).
fn evidence<'a>(rollout: &'a Value, pool: &str) -> &'a Value {
    &rollout["evidence"]["pools"][pool]
}

fn count(rollout: &Value, pool: &str, what: &str) -> u64 {
    evidence(rollout, pool)[what].as_u64().unwrap_or(0)
}

/// The rollout once the analysis has taken in `more` further green requests (so at least one
/// second counted after whatever happened before the call), or once it ended.
async fn after_more_green(bg: &BlueGreen, more: u64) -> Value {
    let base = count(&current(bg).await, "green", "requests");
    let began = Instant::now();
    loop {
        let now = current(bg).await;
        if count(&now, "green", "requests") >= base + more || now["state"] != "running" {
            return now;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "the analysis took in no more green requests: {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_to_either_pool_get_408_and_count_against_no_pool() {
    let bg = blue_green_with(
        "read-timeout = \"1s\"\n",
        "blue = 100\ngreen = 0",
        &format!("{AFFINITY}\n{HOLD}"),
    )
    .await;
    let _load = Load::start(bg.proxy.addr, 150);
    hold_at_ten(&bg).await;
    let mut users = users_on(&bg, "green", 4).await;
    users.extend(users_on(&bg, "blue", 4).await);
    // 24 uploads by both pools' users that stall, and 8 that give up halfway and close.
    let addr = bg.proxy.addr;
    let stalled: Vec<_> = (0..24)
        .map(|i| {
            let user = users[i % 8].clone();
            tokio::spawn(async move { read_head(&mut half_upload(addr, &user).await).await })
        })
        .collect();
    let left: Vec<_> = (0..8)
        .map(|i| {
            let user = users[i % 8].clone();
            tokio::spawn(async move {
                let _conn = half_upload(addr, &user).await;
                tokio::time::sleep(Duration::from_millis(200)).await; // then the client leaves
            })
        })
        .collect();
    for task in left {
        task.await.unwrap();
    }
    for task in stalled {
        let head = task.await.unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408"),
            "a stalled upload got {head:?}"
        );
    }
    let now = after_more_green(&bg, 30).await;
    assert_eq!(
        now["state"], "running",
        "neither rolled back nor held: {now}"
    );
    assert_eq!(now["reason"], Value::Null, "{now}");
    assert_eq!(count(&now, "green", "errors"), 0, "{now}");
    assert_eq!(count(&now, "blue", "errors"), 0, "{now}");
    assert_eq!(
        bg.proxy.status().await["split"],
        json!({"blue": 90, "green": 10})
    );
}

/// One client of `GET /bulk/<len>` that reads the head, stops reading for `pause`, then reads
/// the rest; with a small receive buffer, so that the proxy cannot finish before it reads.
async fn slow_reader(addr: std::net::SocketAddr, user: String, len: usize, pause: Duration) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    let head = format!(
        "GET /bulk/{len} HTTP/1.1\r\nHost: test.local\r\nx-user-id: {user}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = conn.read(&mut buf).await.unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    assert!(first.contains("x-upstream: green"), "{first:?}");
    tokio::time::sleep(pause).await;
    let mut total = n;
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
        match read.expect("the body keeps coming").unwrap() {
            0 => break,
            k => total += k,
        }
    }
    assert!(total > len, "the body was cut at {total} bytes of {len}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reading_a_large_answer_slowly_do_not_make_the_canary_slow() {
    let bg = blue_green_with("", "blue = 100\ngreen = 0", &format!("{AFFINITY}\n{HOLD}")).await;
    let _load = Load::start(bg.proxy.addr, 150);
    hold_at_ten(&bg).await;
    let users = users_on(&bg, "green", 4).await;
    poll_until(
        "the baseline sets a slow line",
        Duration::from_secs(15),
        || async { !current(&bg).await["evidence"]["slow_above_ms"].is_null() },
    )
    .await;
    // 16 readers that each hold the proxy up for 1.5 s: timed end to end, each would be a slow
    // canary request. They come 100 ms apart, so that copying their first megabytes does not
    // itself slow the proxy down for everyone.
    let mut readers = Vec::new();
    for i in 0..16 {
        let (addr, user) = (bg.proxy.addr, users[i % 4].clone());
        let pause = Duration::from_millis(1500);
        readers.push(tokio::spawn(slow_reader(addr, user, BULK, pause)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in readers {
        task.await.unwrap();
    }
    let now = after_more_green(&bg, 30).await;
    assert_eq!(now["state"], "running", "{now}");
    assert_ne!(now["reason"], "latency-regression", "{now}");
    assert!(
        count(&now, "green", "slow") < 8,
        "slow readers counted as slow canary requests: {now}"
    );
    let threshold = now["evidence"]["threshold"].as_f64().unwrap();
    assert!(
        now["evidence"]["latency_ratio"].as_f64().unwrap() < threshold,
        "{now}"
    );
    // Both clocks are exported: end to end took the readers' pauses, the upstream did not.
    let samples = common::metrics::scrape(&bg.proxy).await;
    let sum = |name| common::metrics::value(&samples, name, &[("pool", "green")]);
    let upstream = sum("switchback_upstream_response_seconds_sum");
    let end_to_end = sum("switchback_request_duration_seconds_sum");
    assert!(
        common::metrics::value(
            &samples,
            "switchback_upstream_response_seconds_count",
            &[("pool", "green")]
        ) >= 16.0,
        "no upstream response histogram for green"
    );
    assert!(
        end_to_end - upstream >= 16.0,
        "end to end {end_to_end} s, upstream {upstream} s: the readers were not slow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_while_the_baseline_is_degraded() {
    let bg = blue_green_with("", "blue = 100\ngreen = 0", HOLD).await;
    let _load = Load::start(bg.proxy.addr, 150);
    hold_at_ten(&bg).await;
    bg.blue.fail_every(3); // the baseline fails a third of its requests
    let held = until(&bg, &["paused", "rolled-back"], Duration::from_secs(15)).await;
    assert_eq!(held["state"], "paused", "{held}");
    assert_eq!(held["reason"], "baseline-degraded", "{held}");
    bg.green.fail_every(1); // the canary fails every request
    let ended = until_ended(&bg, Duration::from_secs(20)).await;
    assert_eq!(ended["state"], "rolled-back", "{ended}");
    let reason = ended["reason"].as_str().unwrap_or_default();
    assert!(
        reason == "hard-failure" || reason == "error-regression",
        "rolled back for {reason:?}: {ended}"
    );
    assert_eq!(
        bg.proxy.status().await["split"],
        json!({"blue": 100, "green": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_starts_failing_during_the_bake_is_rolled_back() {
    let plan = r#"
[plans.bake]
steps = [
  { weight = 50, hold = "2s", min-requests = 30 },
  { weight = 100, hold = "10s", min-requests = 30 },
]
"#;
    // Default analysis: the 50 % step advances once its ~400 clean target requests rule out a
    // regression; the bake's reference is blue's level before it (a real one, not a floor).
    let bg = blue_green_with("", "blue = 100\ngreen = 0", plan).await;
    let load = Load::start(bg.proxy.addr, 200);
    start(&bg, r#"{"to": "green", "plan": "bake"}"#).await;
    poll_until("the bake at 100 %", Duration::from_secs(30), || async {
        bg.proxy.status().await["split"]["green"] == 100
    })
    .await;
    bg.green.fail_every(3); // a third of the canary's answers fail from the bake on
    let ended = until_ended(&bg, Duration::from_secs(20)).await;
    assert_eq!(ended["state"], "rolled-back", "{ended}");
    assert_eq!(ended["reason"], "error-regression", "{ended}");
    let message = ended["message"].as_str().unwrap();
    assert!(message.contains("bake"), "{message}");
    assert_eq!(
        bg.proxy.status().await["split"],
        json!({"blue": 100, "green": 0})
    );
    assert!(
        load.seen
            .lock()
            .unwrap()
            .get(&("green".into(), 500))
            .is_some(),
        "the canary never failed: {:?}",
        load.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_failing_two_percent_on_both_pools_is_promoted() {
    // Default analysis settings: no `max-error-rate` stands in the way of a normal error rate.
    let plan = r#"
[plans.steady]
steps = [
  { weight = 50, hold = "3s", min-requests = 100 },
  { weight = 100, hold = "3s", min-requests = 100 },
]
"#;
    let bg = blue_green_with("", "blue = 100\ngreen = 0", plan).await;
    bg.blue.fail_every(50);
    bg.green.fail_every(50);
    let load = Load::start(bg.proxy.addr, 200);
    start(&bg, r#"{"to": "green", "plan": "steady"}"#).await;
    let ended = until_ended(&bg, Duration::from_secs(30)).await;
    assert_eq!(ended["state"], "promoted", "{ended}");
    assert_eq!(ended["reason"], Value::Null, "{ended}");
    assert!(
        ended["message"].as_str().unwrap().starts_with("promoted"),
        "{ended}"
    );
    assert_eq!(
        bg.proxy.status().await["split"],
        json!({"blue": 0, "green": 100})
    );
    let seen = load.seen.lock().unwrap().clone();
    for pool in ["blue", "green"] {
        assert!(
            seen.get(&(pool.into(), 500)).is_some_and(|n| *n > 0),
            "{pool} never failed: {seen:?}"
        );
    }
}
