//! Backend health as the data plane sees it: one [`BackendHealth`] per `(pool, address)`,
//! shared by every snapshot that holds the backend, so a reload or a split change never
//! forgets that a backend is down, ejected or drained.
//!
//! A backend takes new requests only when it passes its active checks, is not ejected and is
//! not drained. Every field is an atomic read on the request path; writers are the probe
//! tasks ([`probe`]), the proxy's outcome reports (ejection) and the admin API (drain).

pub mod probe;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::model::Outlier;

/// Milliseconds since the first call, plus one, so that 0 can mean "never".
pub fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// The live state of one backend.
#[derive(Debug)]
pub struct BackendHealth {
    /// Passes active checks (true until a check says otherwise, or when none are configured).
    probe_up: AtomicBool,
    /// Drained by an operator: no new requests.
    drained: AtomicBool,
    /// When the drain began ([`now_ms`]); 0 when not drained.
    drained_at: AtomicU64,
    /// Ejected until this [`now_ms`] instant; 0 when never ejected.
    ejected_until: AtomicU64,
    /// Ejections so far (the back-off doubles with each); reset after a clean spell.
    ejections: AtomicU32,
    /// Consecutive failed requests (connect failures or 5xx).
    failures: AtomicU32,
    /// Slow start: ramping until this [`now_ms`] instant; 0 when not ramping.
    ramp_until: AtomicU64,
    /// Requests routed here that have not finished.
    inflight: AtomicI64,
    /// Active checks completed, and when the last one did (Unix ms; 0 before the first).
    checks: AtomicU64,
    last_check: AtomicU64,
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth {
            probe_up: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            drained_at: AtomicU64::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ramp_until: AtomicU64::new(0),
            inflight: AtomicI64::new(0),
            checks: AtomicU64::new(0),
            last_check: AtomicU64::new(0),
        }
    }
}

/// Why a backend takes no new requests, for `GET /status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Takes requests.
    Up,
    /// Failing its active checks.
    Down,
    /// Ejected after consecutive failed requests.
    Ejected,
    /// Drained by an operator.
    Drained,
}

impl State {
    /// The name used in the admin API.
    pub fn name(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Ejected => "ejected",
            State::Drained => "drained",
        }
    }
}

impl BackendHealth {
    /// Whether the backend may be given a new request now.
    #[inline]
    pub fn available(&self) -> bool {
        if !self.probe_up.load(Ordering::Relaxed) || self.drained.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= now_ms()
    }

    /// The state shown to operators.
    pub fn state(&self) -> State {
        if self.drained.load(Ordering::Relaxed) {
            State::Drained
        } else if !self.probe_up.load(Ordering::Relaxed) {
            State::Down
        } else if self.ejected_until.load(Ordering::Relaxed) > now_ms() {
            State::Ejected
        } else {
            State::Up
        }
    }

    /// Whether an operator drained it.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Sets the drain flag; returns whether it changed.
    pub fn set_drained(&self, drained: bool) -> bool {
        let changed = self.drained.swap(drained, Ordering::SeqCst) != drained;
        if changed {
            let at = if drained { now_ms() } else { 0 };
            self.drained_at.store(at, Ordering::SeqCst);
        }
        changed
    }

    /// Whether the backend has been drained for at least `timeout`: its upgraded
    /// (WebSocket) connections are closed then.
    pub fn drained_for(&self, timeout: Duration) -> bool {
        let at = self.drained_at.load(Ordering::Relaxed);
        at != 0 && now_ms() >= at + timeout.as_millis() as u64
    }

    /// Requests in flight to this backend.
    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts one more request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// Slow start: the fraction of its weight (1 to 1024, of 1024) the backend takes now.
    #[inline]
    pub fn ramp_share(&self, window: Duration) -> u64 {
        let until = self.ramp_until.load(Ordering::Relaxed);
        if until == 0 {
            return 1024;
        }
        let now = now_ms();
        if now >= until {
            self.ramp_until.store(0, Ordering::Relaxed);
            return 1024;
        }
        let window_ms = (window.as_millis() as u64).max(1);
        let elapsed = window_ms.saturating_sub(until - now);
        // Start at a tenth of full weight, rise linearly to all of it.
        102 + (elapsed * 922) / window_ms
    }

    /// Starts a slow-start ramp of `window` (no-op for a zero window).
    pub fn start_ramp(&self, window: Duration) {
        if !window.is_zero() {
            self.ramp_until
                .store(now_ms() + window.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Ends a slow-start ramp now: full weight from the next request.
    pub fn finish_ramp(&self) {
        self.ramp_until.store(0, Ordering::Relaxed);
    }

    /// Counts one completed active check, now.
    pub fn count_check(&self) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let ms = now.map_or(0, |d| d.as_millis() as u64);
        self.last_check.store(ms, Ordering::Relaxed);
    }

    /// When the last active check completed, Unix milliseconds; `None` before the first.
    pub fn last_check(&self) -> Option<u64> {
        Some(self.last_check.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    /// Active checks completed so far (0 when none are configured).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Records an active check's verdict on the backend's state. Returns `true` when it changed.
    pub fn set_probe_up(&self, up: bool) -> bool {
        self.probe_up.swap(up, Ordering::SeqCst) != up
    }

    /// Whether the active checks say up.
    pub fn probe_up(&self) -> bool {
        self.probe_up.load(Ordering::Relaxed)
    }

    /// A request to this backend succeeded: the failure streak ends, and after a clean spell
    /// as long as the longest ejection the back-off starts from the beginning again.
    #[inline]
    pub fn record_success(&self, outlier: &Outlier) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            let until = self.ejected_until.load(Ordering::Relaxed);
            if now_ms() > until + outlier.max_ejection.as_millis() as u64 {
                self.ejections.store(0, Ordering::Relaxed);
            }
        }
    }

    /// A request failed (connect failure or 5xx). Returns the ejection length when this
    /// failure ejects the backend; `may_eject` says whether the pool can spare it.
    pub fn record_failure(&self, outlier: &Outlier, may_eject: bool) -> Option<Duration> {
        (self.count_failure(outlier) && may_eject).then(|| self.eject(outlier))
    }

    /// Counts a failed request; `true` when the streak has reached `consecutive-failures` and
    /// the backend is taking requests, so it is a candidate for ejection.
    pub fn count_failure(&self, outlier: &Outlier) -> bool {
        if outlier.consecutive_failures == 0 {
            return false;
        }
        let streak = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        streak >= outlier.consecutive_failures && self.available()
    }

    /// Ejects the backend for its next back-off step and returns the length.
    pub fn eject(&self, outlier: &Outlier) -> Duration {
        self.failures.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(20);
        let length = outlier
            .base_ejection
            .saturating_mul(1 << n)
            .min(outlier.max_ejection);
        self.ejected_until
            .store(now_ms() + length.as_millis() as u64, Ordering::SeqCst);
        length
    }

    /// Whether the backend is ejected right now.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms()
    }

    /// Ends an ejection at once (tests).
    #[cfg(test)]
    pub(crate) fn end_ejection(&self) {
        self.ejected_until.store(0, Ordering::SeqCst);
        self.failures.store(0, Ordering::SeqCst);
    }
}

/// Decrements a backend's in-flight count when dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<BackendHealth>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every backend's health, by `(pool, backend as written in the config)`: a host name that
/// resolves to another address keeps its drain, ejection and check state. Consulted when a
/// snapshot is built, never on the request path.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<(String, String), Arc<BackendHealth>>>,
}

impl HealthRegistry {
    /// The health of backend `name` in `pool`, created (up, ramping over `slow_start`) if new.
    pub fn get_or_add(&self, pool: &str, name: &str, slow_start: Duration) -> Arc<BackendHealth> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .entry((pool.to_string(), name.to_string()))
            .or_insert_with(|| {
                let health = BackendHealth::default();
                health.start_ramp(slow_start);
                Arc::new(health)
            })
            .clone()
    }

    /// The health of backend `name` in `pool`, when known.
    pub fn get(&self, pool: &str, name: &str) -> Option<Arc<BackendHealth>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&(pool.to_string(), name.to_string())).cloned()
    }

    /// Forgets backends not in `keep` (they left the configuration).
    pub fn retain(&self, keep: &[(String, String)]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|key, _| keep.contains(key));
    }
}

/// Process-wide count of requests in flight, for graceful shutdown.
#[derive(Debug, Default)]
pub struct Inflight(AtomicI64);

impl Inflight {
    /// Counts a request until the guard drops.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    /// Requests in flight now.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Decrements the process-wide in-flight count when dropped.
#[derive(Debug)]
pub struct RequestGuard(Arc<Inflight>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier(failures: u32) -> Outlier {
        Outlier {
            consecutive_failures: failures,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejection_needs_the_whole_streak_and_backs_off_to_the_cap() {
        let h = BackendHealth::default();
        let o = outlier(3);
        assert_eq!(h.record_failure(&o, true), None);
        assert_eq!(h.record_failure(&o, true), None);
        assert_eq!(h.record_failure(&o, true), Some(Duration::from_secs(10)));
        assert!(!h.available());
        assert_eq!(h.state(), State::Ejected);
        h.ejected_until.store(1, Ordering::SeqCst);
        assert!(h.available());
        for _ in 0..2 {
            h.record_failure(&o, true);
        }
        assert_eq!(h.record_failure(&o, true), Some(Duration::from_secs(20)));
        h.ejected_until.store(1, Ordering::SeqCst);
        for _ in 0..2 {
            h.record_failure(&o, true);
        }
        assert_eq!(h.record_failure(&o, true), Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_success_breaks_the_streak_and_a_full_pool_share_blocks_ejection() {
        let h = BackendHealth::default();
        let o = outlier(2);
        h.record_failure(&o, true);
        h.record_success(&o);
        assert_eq!(h.record_failure(&o, true), None);
        assert_eq!(h.record_failure(&o, false), None, "pool cannot spare it");
        assert!(h.available());
        assert_eq!(outlier(0).consecutive_failures, 0);
        assert_eq!(h.record_failure(&outlier(0), true), None, "0 is off");
    }

    #[test]
    fn slow_start_ramps_from_a_tenth_to_full() {
        let h = BackendHealth::default();
        assert_eq!(h.ramp_share(Duration::from_secs(10)), 1024);
        h.start_ramp(Duration::from_secs(10));
        let share = h.ramp_share(Duration::from_secs(10));
        assert!((102..200).contains(&share), "{share}");
        h.ramp_until.store(1, Ordering::SeqCst);
        assert_eq!(h.ramp_share(Duration::from_secs(10)), 1024);
    }

    #[test]
    fn drained_and_down_backends_are_not_available() {
        let h = Arc::new(BackendHealth::default());
        assert!(h.set_drained(true));
        assert!(!h.set_drained(true));
        assert_eq!(h.state(), State::Drained);
        assert!(!h.available());
        h.set_drained(false);
        h.set_probe_up(false);
        assert_eq!(h.state(), State::Down);
        let guard = h.begin();
        assert_eq!(h.inflight(), 1);
        drop(guard);
        assert_eq!(h.inflight(), 0);
    }
}
