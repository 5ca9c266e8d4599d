//! With shared state: `GET /replicas`, and `?wait=all` on writes (the answer comes once every
//! live replica reports the new version, or after [`WAIT_ALL`] with the ones still behind).

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{json, Value};

use super::{fail, Answer};
use crate::control::shared::Heartbeat;
use crate::control::Control;

/// The longest `?wait=all` waits.
pub(super) const WAIT_ALL: Duration = Duration::from_secs(5);
/// Between looks at the replicas while waiting.
const POLL: Duration = Duration::from_millis(5);

/// `GET /replicas`.
pub(super) async fn list(control: &Control) -> Answer {
    let Some(shared) = control.shared() else {
        return only_replica(control).await;
    };
    let replicas = match shared.replicas().await {
        Ok(replicas) => replicas,
        Err(e) => return unavailable(&e),
    };
    let status = control.status().await;
    let version = status.snapshot.version;
    let shared_split = &status.snapshot.config.split;
    let (connected, since) = shared.connected();
    let rows: Vec<Value> = replicas
        .iter()
        .map(|r| {
            let missing: Vec<&String> = (shared_split.shares().iter())
                .filter(|(pool, bp)| **bp > 0 && !r.pools.contains(pool))
                .map(|(pool, _)| pool)
                .collect();
            json!({
                "replica": r.replica,
                "version": r.version,
                "lag": version.saturating_sub(r.version),
                "leader": r.leader,
                "started": r.started,
                "binary": r.binary,
                "last_heartbeat": r.heartbeat,
                "pools": r.pools,
                "mismatch": (!missing.is_empty()).then(|| format!(
                    "its config has no pool {}, which the shared split names",
                    missing.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                )),
            })
        })
        .collect();
    Answer(
        StatusCode::OK,
        json!({
            "store": {
                "kind": "etcd",
                "prefix": shared.prefix(),
                "connected": connected,
                "since": humantime::format_rfc3339_millis(since).to_string(),
            },
            "replica": shared.replica(),
            "version": version,
            "replicas": rows,
        }),
    )
}

/// Without shared state this switchback is the only replica (named `local`), leading itself.
async fn only_replica(control: &Control) -> Answer {
    let status = control.status().await;
    let version = status.snapshot.version;
    let pools: Vec<&String> = status.snapshot.config.pools.keys().collect();
    Answer(
        StatusCode::OK,
        json!({
            "store": { "kind": status.store.location().0, "connected": true },
            "replica": "local",
            "version": version,
            "replicas": [{
                "replica": "local",
                "version": version,
                "lag": 0,
                "leader": true,
                "pools": pools,
                "binary": env!("CARGO_PKG_VERSION"),
                "mismatch": null,
            }],
        }),
    )
}

/// Waits until every live replica reports `version` or later; `Err` with the ones still behind
/// after [`WAIT_ALL`].
pub(super) async fn wait_all(control: &Control, version: u64) -> Result<Vec<String>, Vec<Value>> {
    let Some(shared) = control.shared() else {
        return Ok(vec!["local".into()]); // the only replica, which applied it
    };
    let deadline = Instant::now() + WAIT_ALL;
    let mut behind: Vec<Heartbeat> = Vec::new();
    loop {
        if let Ok(replicas) = shared.replicas().await {
            let (done, late): (Vec<_>, Vec<_>) =
                replicas.into_iter().partition(|r| r.version >= version);
            if late.is_empty() {
                return Ok(done.into_iter().map(|r| r.replica).collect());
            }
            behind = late;
        }
        if Instant::now() >= deadline {
            return Err(behind
                .iter()
                .map(|r| json!({"replica": r.replica, "version": r.version}))
                .collect());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// 503 for an unreachable shared state.
pub(super) fn unavailable(why: &str) -> Answer {
    fail(StatusCode::SERVICE_UNAVAILABLE, why)
}
