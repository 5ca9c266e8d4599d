//! Analysis counters: what the rollout engine reads once a second, per pool.
//!
//! The data path adds each finished request (overridden ones excluded) with three relaxed
//! atomic increments: requests, errors when it failed, and one latency bucket. The counters
//! only grow; the engine keeps the last [`Reading`] and works on differences, so nothing is
//! ever reset under a request's feet. They exist whether or not `[metrics]` is on.
//!
//! Latencies go into log-linear buckets of microseconds, eight per power of two (each about
//! 9 % wide), from 1 µs to about 2 minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// Adds one finished request that took `elapsed`; `error` when it was answered 5xx or got no
    /// upstream answer.
    #[inline]
    pub fn record(&self, error: bool, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub fn read(&self) -> Reading {
        Reading {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
        }
    }
}

/// Every pool's counters by name; a pool keeps its counters across versions, and a removed
/// pool's are dropped by [`Tallies::retain`].
#[derive(Debug, Default)]
pub struct Tallies(std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<PoolTally>>>);

impl Tallies {
    /// The counters of `pool`, created on first use.
    pub fn get(&self, pool: &str) -> std::sync::Arc<PoolTally> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(pool.to_string()).or_default().clone()
    }

    /// Forgets every pool not in `keep`.
    pub fn retain(&self, keep: &[&str]) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, _| keep.contains(&name.as_str()));
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
        self.requests += other.requests;
        self.errors += other.errors;
        for (a, b) in self.latency.iter_mut().zip(other.latency.iter()) {
            *a += b;
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

    /// Requests at or above `threshold_us`, counted by whole buckets whose lower bound is at
    /// or above it (so a request is never called slow for the bucket's width).
    pub fn at_or_above(&self, threshold_us: u64) -> u64 {
        (0..BUCKETS)
            .filter(|&i| lower_bound(i) >= threshold_us)
            .map(|i| self.latency[i])
            .sum()
    }

    /// The 99th percentile in microseconds (the upper bound of its bucket); `None` with no
    /// requests.
    pub fn p99_us(&self) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total - total / 100; // the smallest count covering 99 %
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_bound(i));
            }
        }
        Some(upper_bound(BUCKETS - 1))
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
            tally.record(false, Duration::from_millis(1));
        }
        for _ in 0..10 {
            tally.record(true, Duration::from_millis(200));
        }
        let r = tally.read().since(&Reading::default());
        assert_eq!((r.requests, r.errors), (1000, 10));
        let p99 = r.p99_us().unwrap();
        assert!((1000..1200).contains(&p99), "{p99}");
        assert_eq!(r.at_or_above(10_000), 10);
        assert_eq!(r.at_or_above(0), 1000);
    }
}
