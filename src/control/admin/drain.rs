//! `POST /backends/{pool}/{addr}/drain` and `/undrain`.
//!
//! A drained backend gets no new requests; those in flight finish. Draining is live state,
//! not configuration: it is recorded in the deployment log but not written to the config file,
//! and a restart starts with every backend undrained. With shared state (`[state] etcd`) a drain
//! is a key of its own that every replica applies, and a restarting replica reads it again.

use http::StatusCode;

use super::{fail, views, Answer};
use crate::control::audit::{Action, Entry};
use crate::control::Control;

/// Splits `/backends/{pool}/{addr}/{drain|undrain}`, each segment percent-decoded (a page
/// sends `127.0.0.1%3A8080`); `None` when the path has another shape or a bad escape.
pub(super) fn parse(path: &str) -> Option<(String, String, bool)> {
    let rest = path.strip_prefix("/backends/")?;
    let (rest, verb) = rest.rsplit_once('/')?;
    let (pool, addr) = rest.split_once('/')?;
    let drained = match verb {
        "drain" => true,
        "undrain" => false,
        _ => return None,
    };
    Some((decode(pool)?, decode(addr)?, drained))
}

/// `%XX` escapes to bytes; `None` for a malformed escape, a `/` inside or text not UTF-8.
fn decode(segment: &str) -> Option<String> {
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b'/' => return None,
            b => b,
        });
    }
    String::from_utf8(out).ok().filter(|s| !s.contains('/'))
}

/// Sets the drain flag of `addr` (as written in the config file, or its resolved address) in
/// `pool`, and records a change in the deployment log.
pub(super) async fn set(
    control: &Control,
    actor: &str,
    pool: &str,
    addr: &str,
    drained: bool,
) -> Answer {
    let snapshot = control.live().load_full();
    let Some(entry) = snapshot.pools.iter().find(|p| p.name == pool) else {
        let known: Vec<&str> = snapshot.pools.iter().map(|p| p.name.as_str()).collect();
        return fail(
            StatusCode::NOT_FOUND,
            format!("no pool named {pool:?} (pools: {})", known.join(", ")),
        );
    };
    let Some(backend) = entry
        .backends
        .iter()
        .find(|b| b.name == addr || b.addr.to_string() == addr)
    else {
        let known: Vec<&str> = entry.backends.iter().map(|b| b.name.as_str()).collect();
        return fail(
            StatusCode::NOT_FOUND,
            format!(
                "pool {pool} has no backend {addr:?} (backends: {})",
                known.join(", ")
            ),
        );
    };
    let changed = backend.health.set_drained(drained);
    let inflight = backend.health.inflight();
    if changed {
        let verb = if drained { "drained" } else { "undrained" };
        tracing::info!(actor, pool, backend = %backend.name, inflight, "backend {verb}");
        let split = &snapshot.config.split;
        let action = if drained {
            Action::Drain
        } else {
            Action::Undrain
        };
        let mut record = Entry::now(snapshot.version, actor, action, split, split);
        record.message = format!(
            "backend {} of pool {pool} {verb} ({inflight} in flight)",
            backend.name
        );
        if let Some(shared) = control.shared() {
            // Shared: the drain key and its log entry in one transaction; every replica's
            // watch applies it.
            let key = (pool.to_string(), backend.name.clone(), drained);
            if let Err(e) = shared.append(record.clone(), Some(key)).await {
                backend.health.set_drained(!drained);
                return fail(StatusCode::SERVICE_UNAVAILABLE, format!("not changed: {e}"));
            }
            if let Err(e) = control.audit().append_local(&record) {
                tracing::warn!(error = %e, "this replica's log misses a drain (the shared log has it)");
            }
        } else if let Err(e) = control.audit().append(&record) {
            backend.health.set_drained(!drained);
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("not changed: cannot record it in the deployment log: {e}"),
            );
        }
    }
    Answer(
        StatusCode::OK,
        views::drained(pool, &backend.name, drained, changed, inflight),
    )
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn owned(pool: &str, addr: &str, drained: bool) -> Option<(String, String, bool)> {
        Some((pool.into(), addr.into(), drained))
    }

    #[test]
    fn drain_paths_parse_and_others_do_not() {
        assert_eq!(
            parse("/backends/blue/127.0.0.1:9001/drain"),
            owned("blue", "127.0.0.1:9001", true)
        );
        assert_eq!(
            parse("/backends/blue/app.internal:80/undrain"),
            owned("blue", "app.internal:80", false)
        );
        // As a page sends them: percent-encoded.
        assert_eq!(
            parse("/backends/bl%75e/127.0.0.1%3A9001/drain"),
            owned("blue", "127.0.0.1:9001", true)
        );
        assert_eq!(parse("/backends/blue/a%2Fb/drain"), None, "no / inside");
        assert_eq!(parse("/backends/blue/a%zz/drain"), None);
        assert_eq!(parse("/backends/blue/a%4/drain"), None);
        assert_eq!(parse("/backends/blue/a%+F/drain"), None, "no sign");
        assert_eq!(parse("/backends/blue/%ff/drain"), None, "not UTF-8");
        assert_eq!(parse("/backends/blue/drain"), None);
        assert_eq!(parse("/backends/blue/x/restart"), None);
        assert_eq!(parse("/status"), None);
    }
}
