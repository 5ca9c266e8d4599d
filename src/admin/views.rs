//! JSON bodies of the admin API.

use serde_json::{json, Value};

use crate::audit::split_json;
use crate::control::{Applied, Status};

/// `GET /status`: per pool its share and whether any backend is up; per backend its state
/// (`up`, `down`, `ejected`, `drained`), drain flag and requests in flight.
pub(super) fn status(status: &Status) -> Value {
    let snapshot = &status.snapshot;
    let mut shares = split_json(&snapshot.config.split);
    let pools: serde_json::Map<String, Value> = snapshot
        .pools
        .iter()
        .enumerate()
        .map(|(i, pool)| {
            let weights = snapshot.config.pools.get(&pool.name).map(|p| &p.backends);
            let backends: Vec<Value> = pool
                .backends
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    json!({
                        "addr": b.name,
                        "resolved": b.addr.to_string(),
                        "weight": weights.and_then(|w| w.get(j)).map_or(1, |w| w.weight),
                        "state": b.health.state().name(),
                        "drained": b.health.is_drained(),
                        "inflight": b.health.inflight(),
                        "checks": b.health.checks(),
                    })
                })
                .collect();
            let body = json!({
                "share": shares.remove(&pool.name),
                "up": snapshot.pool_up(i),
                "backends": backends,
            });
            (pool.name.clone(), body)
        })
        .collect();
    json!({
        "version": snapshot.version,
        "split": split_json(&snapshot.config.split),
        "previous_split": status.previous.as_ref().map(split_json),
        "pools": pools,
    })
}

/// The answer to a drain or undrain.
pub(super) fn drained(
    pool: &str,
    backend: &str,
    drained: bool,
    changed: bool,
    inflight: i64,
) -> Value {
    json!({
        "pool": pool,
        "backend": backend,
        "drained": drained,
        "changed": changed,
        "inflight": inflight,
    })
}

/// The answer to an accepted write.
pub(super) fn applied(applied: &Applied) -> Value {
    json!({
        "version": applied.version,
        "split": split_json(&applied.split),
        "previous_split": split_json(&applied.before),
    })
}

/// `{"error": "..."}`.
pub(super) fn error(message: &str) -> Value {
    json!({ "error": message })
}
