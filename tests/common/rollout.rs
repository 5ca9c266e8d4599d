//! Helpers for rollout tests: the quick plan, and reading and steering the current rollout.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::BlueGreen;

/// A plan holding 10 / 50 / 100 % for 2 s each, 50 target requests per step, and the
/// advance gate widened (`detect-ratio` 100: a gate of 1/3) so that 50 clean requests are
/// enough to advance.
pub const QUICK: &str = r#"
[plans.quick]
steps = [
  { weight = 10, hold = "2s", min-requests = 50 },
  { weight = 50, hold = "2s", min-requests = 50 },
  { weight = 100, hold = "2s", min-requests = 50 },
]
[plans.quick.analysis]
detect-ratio = 100
"#;

/// `GET /rollouts/current`, asserting a 200.
pub async fn current(bg: &BlueGreen) -> Value {
    let reply = bg.proxy.admin("GET", "/rollouts/current", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// `POST /rollouts` with `body`, asserting a 201.
pub async fn start(bg: &BlueGreen, body: &str) -> Value {
    let reply = bg.proxy.admin("POST", "/rollouts", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// Polls until the rollout is in one of `states` (panics after `within`, with the proxy's log).
pub async fn until(bg: &BlueGreen, states: &[&str], within: Duration) -> Value {
    let began = Instant::now();
    loop {
        let now = current(bg).await;
        if states.iter().any(|s| now["state"] == *s) {
            return now;
        }
        assert!(
            began.elapsed() < within,
            "rollout never reached {states:?}: {now}\n{}",
            bg.proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the rollout has ended (promoted, rolled back or aborted).
pub async fn until_ended(bg: &BlueGreen, within: Duration) -> Value {
    until(bg, &["promoted", "rolled-back", "aborted"], within).await
}
