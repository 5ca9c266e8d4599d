//! JSON bodies of the admin API.

use serde_json::{json, Value};

use crate::config::defaults::{OVERRIDE_COOKIE, OVERRIDE_TOKEN_HEADER};
use crate::control::audit::split_json;
use crate::control::{Applied, Status};
use crate::data::snapshot::Snapshot;

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
                        "last_check": b.health.last_check().map(|ms| {
                            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                            humantime::format_rfc3339_millis(at).to_string()
                        }),
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
        "affinity": affinity(snapshot),
        "override": overrides(snapshot),
        "state": state(status),
        "rollout": status.rollout.as_ref().map(|r| json!({
            "id": r.id,
            "to": r.to,
            "state": r.state,
            "weight": r.weight,
            "step": r.step,
        })),
        "tls": tls(status),
    })
}

/// `{"store", "path"}`, and with shared state `connected`, `since`, `replica` (and `mismatch`
/// while the shared split is not live here).
fn state(status: &Status) -> Value {
    let (store, path) = status.store.location();
    let mut state = json!({ "store": store, "path": path.display().to_string() });
    if let Some(shared) = &status.shared {
        state["connected"] = shared.connected.into();
        state["since"] = humantime::format_rfc3339_millis(shared.since)
            .to_string()
            .into();
        state["replica"] = shared.replica.clone().into();
        if let Some(mismatch) = &shared.mismatch {
            state["mismatch"] = mismatch.clone().into();
        }
    }
    state
}

/// `{"enabled", "listen", "certificates": [{"names", "not_after", "expires_in_seconds",
/// "cert", "key"}]}`: the TLS listeners and the certificates served now, default first.
fn tls(status: &Status) -> Value {
    let Some(tls) = &status.snapshot.config.tls else {
        return json!({ "enabled": false });
    };
    let now = std::time::SystemTime::now();
    let certificates: Vec<Value> = status
        .certificates
        .iter()
        .map(|c| {
            json!({
                "names": c.names,
                "not_after": c.not_after_text(),
                "expires_in_seconds": c.expires_in(now),
                "cert": c.pair.cert.display().to_string(),
                "key": c.pair.key.display().to_string(),
            })
        })
        .collect();
    json!({
        "enabled": true,
        "listen": tls.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "certificates": certificates,
    })
}

/// `{"enabled", "key": ["header:x-user-id", …], "mint_cookie"}`: where user keys come from.
fn affinity(snapshot: &Snapshot) -> Value {
    match &snapshot.config.affinity {
        None => json!({ "enabled": false }),
        Some(a) => json!({
            "enabled": true,
            "key": a.keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mint_cookie": a.mint_cookie,
        }),
    }
}

/// `{"enabled", "header", "token_header", "cookie", "pools"}`: how a tester reaches a pool,
/// and the pools that have tokens.
fn overrides(snapshot: &Snapshot) -> Value {
    let (Some(o), Some(tokens)) = (&snapshot.config.overrides, &snapshot.override_tokens) else {
        return json!({ "enabled": false });
    };
    json!({
        "enabled": true,
        "header": o.header.as_str(),
        "token_header": OVERRIDE_TOKEN_HEADER,
        "cookie": OVERRIDE_COOKIE,
        "pools": tokens.names(),
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
