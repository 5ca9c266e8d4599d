//! JSON bodies of the admin API.

use serde_json::{json, Value};

use crate::audit::split_json;
use crate::control::{Applied, Status};

/// `GET /status`.
pub(super) fn status(status: &Status) -> Value {
    let snapshot = &status.snapshot;
    let pools: serde_json::Map<String, Value> = snapshot
        .config
        .pools
        .iter()
        .map(|(name, pool)| {
            let backends: Vec<Value> = pool
                .backends
                .iter()
                .map(|b| json!({ "addr": b.name, "resolved": b.addr.to_string(), "weight": b.weight }))
                .collect();
            let share = split_json(&snapshot.config.split).remove(name);
            (name.clone(), json!({ "share": share, "backends": backends }))
        })
        .collect();
    json!({
        "version": snapshot.version,
        "split": split_json(&snapshot.config.split),
        "previous_split": status.previous.as_ref().map(split_json),
        "pools": pools,
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
