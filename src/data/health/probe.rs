//! Active health checks and the health supervisor.
//!
//! The probes are Pingora's (`HttpHealthCheck`, `TcpHealthCheck`). Pingora's own bookkeeping
//! around them (`Backends::run_health_check`) is tied to its `LoadBalancer` selection and
//! cannot feed switchback's split routing, so the thresholds and state live here, in
//! [`BackendHealth`]: one task per checked backend, started, restarted and stopped as
//! snapshots change.
//!
//! The supervisor also watches each pool as a whole: when the last backend of a pool with a
//! share stops taking requests (checks, ejection or drain), that is logged and recorded in the
//! deployment log as `pool-down`, and its return as `pool-up`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck as Probe, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use tokio::task::JoinHandle;

use super::BackendHealth;
use crate::config::model::{HealthCheck, OnPoolDown, ProbeKind};
use crate::data::snapshot::Snapshot;
use crate::metrics::Metrics;

/// How often the supervisor looks at snapshots and pool states.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);

/// What the supervisor needs of its owner (control): the live snapshot, the metrics, and where
/// a pool going down or coming back is recorded (the deployment log). Handed down, so that the
/// data path knows nothing of control.
pub trait Host: Send + Sync + 'static {
    /// The snapshot live now.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// The process's metrics.
    fn metrics(&self) -> &Metrics;
    /// Records that a pool of `snapshot` went down (`down`) or came back, with `message`.
    fn pool_changed(&self, snapshot: &Snapshot, down: bool, message: String);
}

/// The supervisor: runs until its runtime stops.
pub async fn spawn_supervisor<H: Host>(host: Arc<H>) {
    supervise(host).await;
}

struct Running {
    check: HealthCheck,
    addr: SocketAddr,
    /// The reuse hash of the backend's peer: its TLS settings, which the probes share.
    peer: u64,
    health: Arc<BackendHealth>,
    task: JoinHandle<()>,
}

async fn supervise<H: Host>(host: Arc<H>) {
    let mut probes: HashMap<(String, String), Running> = HashMap::new();
    let mut pool_down: HashMap<String, bool> = HashMap::new();
    let mut version = 0;
    let mut backends: Vec<(String, String)> = Vec::new();
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snapshot = host.snapshot();
        if snapshot.version != version {
            version = snapshot.version;
            reconcile(&snapshot, &mut probes);
            let now: Vec<(String, String)> = snapshot
                .pools
                .iter()
                .flat_map(|p| p.backends.iter().map(|b| (p.name.clone(), b.name.clone())))
                .collect();
            for (pool, backend) in backends.iter().filter(|b| !now.contains(b)) {
                host.metrics().forget_backend(pool, backend);
            }
            backends = now;
        }
        for pool in &snapshot.pools {
            for b in &pool.backends {
                host.metrics().set_backend_state(
                    &pool.name,
                    &b.name,
                    b.health.available(),
                    b.health.is_drained(),
                    b.health.inflight(),
                );
            }
        }
        watch_pools(&*host, &snapshot, &mut pool_down);
    }
}

/// Starts probes for newly checked backends, restarts those whose settings changed, and stops
/// those no longer checked (their backends count as passing again).
fn reconcile(snapshot: &Snapshot, probes: &mut HashMap<(String, String), Running>) {
    let mut wanted = HashMap::new();
    for pool in &snapshot.pools {
        let Some(check) = &pool.policy.health_check else {
            continue;
        };
        for b in &pool.backends {
            wanted.insert(
                (pool.name.clone(), b.name.clone()),
                (check, b, pool.policy.slow_start),
            );
        }
    }
    probes.retain(|key, running| {
        let keep = wanted.get(key).is_some_and(|(check, b, _)| {
            **check == running.check
                && b.addr == running.addr
                && b.peer.reuse_hash() == running.peer
                && Arc::ptr_eq(&b.health, &running.health)
        });
        if !keep {
            running.task.abort();
            if !wanted.contains_key(key) && running.health.set_probe_up(true) {
                tracing::info!(pool = %key.0, backend = %key.1, "health checks removed; backend counts as up");
            }
        }
        keep
    });
    for (key, (check, b, slow_start)) in wanted {
        if probes.contains_key(&key) {
            continue;
        }
        let task = tokio::spawn(probe_loop(
            key.0.clone(),
            (b.name.clone(), b.peer.clone()),
            b.addr,
            check.clone(),
            (
                b.health.clone(),
                b.metrics.as_ref().map(|m| m.checks.clone()),
            ),
            slow_start,
        ));
        probes.insert(
            key,
            Running {
                peer: b.peer.reuse_hash(),
                check: check.clone(),
                addr: b.addr,
                health: b.health.clone(),
                task,
            },
        );
    }
}

/// Checks one backend every `interval`. The first verdict sets the state at once; after that
/// the state changes only after `unhealthy-threshold` consecutive failures or
/// `healthy-threshold` consecutive passes, and each change is logged once.
async fn probe_loop(
    pool: String,
    (name, peer): (String, HttpPeer),
    addr: SocketAddr,
    check: HealthCheck,
    (health, counters): (Arc<BackendHealth>, Option<[prometheus::IntCounter; 2]>),
    slow_start: Duration,
) {
    let probe = build_probe(&check, &name, &peer);
    let target = match Backend::new(&addr.to_string()) {
        Ok(target) => target,
        Err(e) => {
            tracing::error!(pool, backend = name, error = %e, "cannot health-check this backend");
            return;
        }
    };
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut streak = 0;
    let mut first = true;
    loop {
        tick.tick().await;
        let verdict = match tokio::time::timeout(check.timeout, probe.check(&target)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: {}", e.etype().as_str(), e.root_cause())),
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        let passed = verdict.is_ok();
        if let Some(counters) = &counters {
            counters[usize::from(!passed)].inc();
        }
        tracing::debug!(pool, backend = name, passed, streak, "health check");
        // Counted once the verdict below is applied, so a reader that sees the count sees it.
        let _counted = CountOnDrop(&health);
        if first {
            first = false;
            if !passed && health.set_probe_up(false) {
                tracing::warn!(pool, backend = name, reason = %verdict.unwrap_err(), "backend is down (first health check failed)");
            }
            continue;
        }
        if passed == health.probe_up() {
            streak = 0;
            continue;
        }
        streak += 1;
        let needed = if passed {
            check.healthy_threshold
        } else {
            check.unhealthy_threshold
        };
        if streak < needed {
            continue;
        }
        streak = 0;
        health.set_probe_up(passed);
        match verdict {
            Ok(()) => {
                health.start_ramp(slow_start);
                tracing::info!(pool, backend = name, passes = needed, "backend is up");
            }
            Err(reason) => {
                tracing::warn!(
                    pool,
                    backend = name,
                    failures = needed,
                    reason,
                    "backend is down"
                );
            }
        }
    }
}

struct CountOnDrop<'a>(&'a BackendHealth);

impl Drop for CountOnDrop<'_> {
    fn drop(&mut self) {
        self.0.count_check();
    }
}

/// A probe of the backend `host` reached as `peer` (the data path's own peer: the same TLS,
/// SNI, CA and protocol).
fn build_probe(check: &HealthCheck, host: &str, peer: &HttpPeer) -> Box<dyn Probe + Send + Sync> {
    match &check.kind {
        ProbeKind::Tcp => {
            // With an SNI set, Pingora's TCP check completes a TLS handshake too.
            let mut probe = if peer.sni.is_empty() {
                TcpHealthCheck::new()
            } else {
                TcpHealthCheck::new_tls(&peer.sni)
            };
            probe.peer_template.options = peer.options.clone();
            probe.peer_template.options.connection_timeout = Some(check.timeout);
            probe
        }
        ProbeKind::Http { path, expect } => {
            let mut probe = HttpHealthCheck::new(host, false);
            probe.peer_template = peer.clone();
            if let Ok(mut req) = RequestHeader::build("GET", path.as_bytes(), None) {
                if req.insert_header("host", host).is_ok() {
                    probe.req = req;
                }
            }
            probe.peer_template.options.connection_timeout = Some(check.timeout);
            probe.peer_template.options.read_timeout = Some(check.timeout);
            let (low, high) = *expect;
            probe.validator = Some(Box::new(move |resp| {
                let status = resp.status.as_u16();
                if (low..=high).contains(&status) {
                    Ok(())
                } else {
                    Error::e_explain(
                        ErrorType::CustomCode("unexpected status", status),
                        format!("health check answered {status}, expected {low}-{high}"),
                    )
                }
            }));
            Box::new(probe)
        }
    }
}

/// Logs and records each pool with a share that goes down (no backend takes requests) or
/// comes back.
fn watch_pools<H: Host>(host: &H, snapshot: &Snapshot, down: &mut HashMap<String, bool>) {
    for (i, pool) in snapshot.pools.iter().enumerate() {
        let is_down = pool.share > 0 && !snapshot.pool_up(i);
        let was_down = down.insert(pool.name.clone(), is_down).unwrap_or(false);
        if is_down == was_down {
            continue;
        }
        let message = if is_down {
            let fate = match pool.policy.on_pool_down {
                OnPoolDown::Failover => "its share fails over to the other pools with a share",
                OnPoolDown::Fail => "its share is answered 503 (on-pool-down = \"fail\")",
            };
            tracing::warn!(pool = %pool.name, "pool is down: {fate}");
            format!("pool {} has no backend up; {fate}", pool.name)
        } else {
            tracing::info!(pool = %pool.name, "pool is up again");
            format!("pool {} has a backend up again", pool.name)
        };
        host.pool_changed(snapshot, is_down, message);
    }
}
