//! Analysis counters: what the rollout engine reads once a second, per pool.
//!
//! The data path adds each request the upstream answered or failed (overridden ones and those
//! the client broke excluded: see `proxy/record.rs`) with up to three atomic increments:
//! requests, errors when it failed, and one bucket of its upstream response time. The counters
//! only grow; the engine keeps the last [`Reading`] and works on differences, so nothing is
//! ever reset under a request's feet. They exist whether or not `[metrics]` is on.
//!
//! Latencies go into log-linear buckets of microseconds, eight per power of two (each about
//! 9 % wide), from 1 µs to about 2 minutes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod history;
pub mod series;

/// Number of latency buckets.
pub const BUCKETS: usize = 8 * 26;

/// One pool's counters since it was first configured.
#[derive(Debug)]
pub struct PoolTally {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for PoolTally {
    fn default() -> Self {
        PoolTally {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl PoolTally {
    /// Adds one request the upstream answered or failed: `error` when it answered 5xx or failed
    /// it (see the attribution rule in `proxy/record.rs`), `response` its upstream response
    /// time when a response head arrived (an error without one is no latency sample).
    #[inline]
    pub fn record(&self, error: bool, response: Option<Duration>) {
        self.requests.fetch_add(1, Ordering::Release);
        if error {
            self.errors.fetch_add(1, Ordering::Release);
        }
        if let Some(elapsed) = response {
            let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            self.latency[bucket(us)].fetch_add(1, Ordering::Release);
        }
    }

    /// The counters as they are now.
    pub fn read(&self) -> Reading {
        // Requests last: `record` counts a request before its error and its latency, so a
        // reading never holds more errors or samples than requests.
        let errors = self.errors.load(Ordering::Acquire);
        let latency = std::array::from_fn(|i| self.latency[i].load(Ordering::Acquire));
        Reading {
            requests: self.requests.load(Ordering::Acquire),
            errors,
            latency,
        }
    }
}

/// Every pool's counters by name; a pool keeps its counters across versions, and a removed
/// pool's are dropped by [`Tallies::retain`]. Beside them, the last 30 minutes of each pool's
/// totals, sampled once a second ([`history`]).
#[derive(Debug, Default)]
pub struct Tallies {
    pools: Mutex<HashMap<String, Arc<PoolTally>>>,
    history: Mutex<history::History>,
    /// The dashboard's last 15 minutes per pool, from the same samples.
    pub series: Mutex<series::Series>,
}

impl Tallies {
    /// The counters of `pool`, created on first use.
    pub fn get(&self, pool: &str) -> Arc<PoolTally> {
        let mut map = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(pool.to_string()).or_default().clone()
    }

    /// Forgets every pool not in `keep`.
    pub fn retain(&self, keep: &[&str]) {
        let mut map = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, _| keep.contains(&name.as_str()));
    }

    /// Takes a sample of every pool's requests and errors at `now` (called once a second).
    pub fn sample(&self, now: Instant) {
        let readings: Vec<(String, Reading)> = {
            let map = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(name, t)| (name.clone(), t.read()))
                .collect()
        };
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.push(now, std::time::SystemTime::now(), &readings);
        drop(series);
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.push(now, readings);
    }

    /// Requests per second (all pools) and their error rate over the last minute, as far as
    /// sampled; `None` before two samples 5 s apart.
    pub fn recent(&self) -> Option<(f64, f64)> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.recent(std::time::Duration::from_secs(60))
    }

    /// What `pool` did over its last 30 s, latencies included (as far as sampled).
    pub fn last_seconds(&self, pool: &str) -> Option<Reading> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.last_seconds(pool)
    }

    /// `pool`'s `(requests, errors)` over its last 30 minutes (as far as sampled).
    pub fn level(&self, pool: &str) -> Option<(u64, u64)> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.level(pool)
    }
}

/// A copy of a pool's counters; the difference of two is what happened in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Requests.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests per latency bucket.
    pub latency: [u64; BUCKETS],
}

impl Default for Reading {
    fn default() -> Self {
        Reading {
            requests: 0,
            errors: 0,
            latency: [0; BUCKETS],
        }
    }
}

impl Reading {
    /// What was added between `earlier` and `self`.
    pub fn since(&self, earlier: &Reading) -> Reading {
        Reading {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency: std::array::from_fn(|i| self.latency[i].saturating_sub(earlier.latency[i])),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Reading) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        for (a, b) in self.latency.iter_mut().zip(other.latency.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// Takes `other` out of `self` (never below 0).
    pub fn subtract(&mut self, other: &Reading) {
        self.requests = self.requests.saturating_sub(other.requests);
        self.errors = self.errors.saturating_sub(other.errors);
        for (a, b) in self.latency.iter_mut().zip(other.latency.iter()) {
            *a = a.saturating_sub(*b);
        }
    }

    /// Requests at or above `threshold_us`: whole buckets above it, and of the bucket the line
    /// falls in the share above it (requests taken as spread evenly within a bucket), rounded.
    pub fn at_or_above(&self, threshold_us: u64) -> u64 {
        let mut above = 0.0;
        for (i, &n) in self.latency.iter().enumerate() {
            let (lo, hi) = (lower_bound(i), upper_bound(i));
            if lo >= threshold_us {
                above += n as f64;
            } else if hi > threshold_us && n > 0 && hi != u64::MAX {
                above += n as f64 * (hi - threshold_us) as f64 / (hi - lo) as f64;
            }
        }
        above.round() as u64
    }

    /// The 99th percentile in microseconds, interpolated within its bucket; `None` with no
    /// requests.
    pub fn p99_us(&self) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total as f64 * 0.99;
        let mut seen = 0u64;
        for (i, &n) in self.latency.iter().enumerate() {
            if n > 0 && (seen + n) as f64 >= rank {
                let (lo, hi) = (lower_bound(i), upper_bound(i));
                if hi == u64::MAX {
                    return Some(lo);
                }
                let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lo + ((hi - lo) as f64 * within) as u64);
            }
            seen += n;
        }
        Some(lower_bound(BUCKETS - 1))
    }
}

/// The bucket of a latency in microseconds.
pub fn bucket(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let e = 63 - u64::from(us.leading_zeros()); // floor(log2), ≥ 3
    let i = 8 * (e - 2) + ((us >> (e - 3)) - 8);
    (i as usize).min(BUCKETS - 1)
}

/// The smallest latency (µs) in bucket `i`.
pub fn lower_bound(i: usize) -> u64 {
    if i < 8 {
        return i as u64;
    }
    let (e, sub) = ((i / 8 + 2) as u64, (i % 8) as u64);
    (8 + sub) << (e - 3)
}

/// One more than the largest latency (µs) in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i + 1 < BUCKETS {
        lower_bound(i + 1)
    } else {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_each_holds_its_own_bounds() {
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket(lower_bound(i)), i);
            assert_eq!(bucket(upper_bound(i) - 1), i);
            assert!(upper_bound(i) > lower_bound(i));
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert!(lower_bound(BUCKETS - 1) > 100_000_000, "covers 100 s");
    }

    #[test]
    fn p99_and_slow_counts_come_from_the_buckets() {
        let tally = PoolTally::default();
        for _ in 0..990 {
            tally.record(false, Some(Duration::from_millis(1)));
        }
        for _ in 0..10 {
            tally.record(true, Some(Duration::from_millis(200)));
        }
        tally.record(true, None);
        let r = tally.read().since(&Reading::default());
        assert_eq!(
            (r.requests, r.errors),
            (1001, 11),
            "an error without an answer counts"
        );
        let p99 = r.p99_us().unwrap();
        assert!((1000..1200).contains(&p99), "{p99}");
        assert_eq!(r.at_or_above(10_000), 10);
        assert_eq!(
            r.at_or_above(0),
            1000,
            "no latency sample for the unanswered one"
        );
    }

    #[test]
    fn the_slow_line_within_a_bucket_counts_the_share_above_it() {
        let tally = PoolTally::default();
        // 1,000 requests in one bucket [lo, hi): a line halfway counts about half of them.
        let (lo, hi) = (lower_bound(100), upper_bound(100));
        for _ in 0..1000 {
            tally.record(false, Some(Duration::from_micros(lo)));
        }
        let r = tally.read();
        let half = r.at_or_above(lo + (hi - lo) / 2);
        assert!((450..=550).contains(&half), "{half}");
        assert_eq!(r.at_or_above(lo), 1000);
        assert_eq!(r.at_or_above(hi), 0);
        // p99 lies near the top of the one bucket, not at its upper edge.
        let p99 = r.p99_us().unwrap();
        assert!(p99 > lo && p99 < hi, "{lo} < {p99} < {hi}");
    }
}
