//! Smoke checks: before any user request reaches the target pool, every one of its backends is
//! probed `repeat` times in a row through Pingora's HTTP connector with the very peer the proxy
//! uses (same timeouts, same address, later the same TLS), each on a fresh connection.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;

use crate::config::model::Smoke;
use crate::data::snapshot::{BackendEntry, Snapshot};

/// The most of a failing body quoted in the message.
const QUOTED: usize = 512;
/// The most of a body read to look for `expect-body`.
const READ_LIMIT: usize = 64 * 1024;

/// Probes every backend of `pool` in `snapshot`: `Ok` with a summary when all passed,
/// `Err` with the first failure (backend, pass, status, latency, the body's start).
pub async fn run(snapshot: &Snapshot, pool: &str, smoke: &Smoke) -> Result<String, String> {
    let Some(entry) = snapshot.pools.iter().find(|p| p.name == pool) else {
        return Err(format!("pool {pool} is no longer configured"));
    };
    if entry.backends.is_empty() {
        return Err(format!("pool {pool} has no backends to check"));
    }
    let connector = Connector::new(None);
    let mut slowest = Duration::ZERO;
    for backend in &entry.backends {
        for pass in 1..=smoke.repeat {
            let started = Instant::now();
            let outcome =
                tokio::time::timeout(smoke.timeout, probe(&connector, backend, smoke)).await;
            let took = started.elapsed();
            slowest = slowest.max(took);
            let failure = match outcome {
                Err(_) => Some(format!("no answer within {} ms", smoke.timeout.as_millis())),
                Ok(Err(e)) => Some(e),
                Ok(Ok((status, body))) => judge(smoke, status, &body, took),
            };
            if let Some(why) = failure {
                return Err(format!(
                    "smoke check failed on {pool} {} (pass {pass} of {}): GET {}: {why}",
                    backend.name, smoke.repeat, smoke.path
                ));
            }
        }
    }
    Ok(format!(
        "{} backend(s) of {pool} passed GET {} {} times each (slowest {} ms)",
        entry.backends.len(),
        smoke.path,
        smoke.repeat,
        slowest.as_millis()
    ))
}

/// Why a probe's answer fails, or `None` when it passes.
fn judge(smoke: &Smoke, status: u16, body: &[u8], took: Duration) -> Option<String> {
    let (lo, hi) = smoke.expect_status;
    let quoted = || {
        let end = body.len().min(QUOTED);
        String::from_utf8_lossy(&body[..end]).into_owned()
    };
    if !(lo..=hi).contains(&status) {
        return Some(format!(
            "answered {status} in {} ms (expected {lo}-{hi}); body: {:?}",
            took.as_millis(),
            quoted()
        ));
    }
    match &smoke.expect_body {
        Some(needle) if !contains(body, needle.as_bytes()) => Some(format!(
            "answered {status} in {} ms without {needle:?} in the body; body: {:?}",
            took.as_millis(),
            quoted()
        )),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

async fn probe(
    connector: &Connector,
    backend: &BackendEntry,
    smoke: &Smoke,
) -> Result<(u16, Vec<u8>), String> {
    let peer = backend.peer.clone();
    let (mut session, _reused) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| format!("could not connect: {}", e.etype().as_str()))?;
    session.set_read_timeout(Some(smoke.timeout));
    session.set_write_timeout(Some(smoke.timeout));
    let mut req = RequestHeader::build("GET", smoke.path.as_bytes(), None)
        .map_err(|e| format!("bad request: {e}"))?;
    let host = smoke.host.clone().unwrap_or_else(|| backend.name.clone());
    req.insert_header("host", host).map_err(|e| e.to_string())?;
    req.insert_header(
        "user-agent",
        concat!("switchback-smoke/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(|e| e.to_string())?;
    req.insert_header("connection", "close")
        .map_err(|e| e.to_string())?;
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| format!("could not send the request: {}", e.etype().as_str()))?;
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("could not send the request: {}", e.etype().as_str()))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("no valid response: {}", e.etype().as_str()))?;
    let status = session.response_header().map_or(0, |h| h.status.as_u16());
    let mut body = BytesMut::new();
    while body.len() < READ_LIMIT {
        match session.read_response_body().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "answered {status} but the body broke off: {}",
                    e.etype().as_str()
                ))
            }
        }
    }
    session.shutdown().await;
    Ok((status, body.to_vec()))
}
