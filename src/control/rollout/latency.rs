//! From latency buckets to slow counts: a request is slow above
//! max(baseline p99 × (1 + margin), baseline p99 + 5 ms), the baseline's p99 taken over its last
//! 30 seconds. Pure: readings in, counts out.

use std::collections::VecDeque;

use super::analysis::{Counts, Second};
use crate::metrics::tally::Reading;

/// Seconds of history behind the p99s.
const RECENT_SECONDS: usize = 30;
/// Fewest baseline requests in the history for its p99 to set the slow line.
const MIN_BASELINE: u64 = 50;
/// The absolute part of the margin.
const MIN_MARGIN_US: u64 = 5_000;

/// The last 30 s of both pools' latencies.
#[derive(Debug)]
pub struct Latency {
    margin: f64,
    recent: [VecDeque<Reading>; 2],
    sums: [Reading; 2],
    slow_above_us: Option<u64>,
}

/// A second turned into counts, with what the latency side saw.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    /// The second's counts.
    pub second: Second,
    /// `[baseline, canary]` p99 over the last 30 s, ms.
    pub p99_ms: [Option<f64>; 2],
    /// The slow line in force, ms.
    pub slow_above_ms: Option<f64>,
}

impl Latency {
    /// Nothing seen yet; `margin` is `latency-margin` as a fraction; `line_ms` the slow line
    /// in force before (kept with the rollout's evidence: after a restart in the bake, where
    /// the baseline has no traffic to set it again).
    pub fn new(margin: f64, line_ms: Option<f64>) -> Self {
        Latency {
            margin,
            recent: Default::default(),
            sums: Default::default(),
            // A real line is at least 5 ms (p99 + 5 ms); a record edited by hand stays sane.
            slow_above_us: line_ms
                .filter(|ms| ms.is_finite())
                .map(|ms| (ms.clamp(5.0, 600_000.0) * 1000.0) as u64),
        }
    }

    /// Starts from the baseline's last 30 s before the rollout (one entry, aged out like any
    /// second), so that a plan that goes straight to 100 % has a slow line from the start.
    pub fn seed(&mut self, baseline: Reading) {
        if self.recent[0].is_empty() && baseline.requests > 0 {
            self.sums[0] = baseline.clone();
            self.recent[0].push_back(baseline);
        }
    }

    /// Counts one second of `[baseline, canary]` readings (differences since the last second).
    /// The slow line comes from the baseline's history before this second; while the baseline
    /// has too little history, the last line stays (none at first: nothing is slow).
    pub fn count(&mut self, baseline: Reading, canary: Reading) -> Counted {
        if self.sums[0].requests >= MIN_BASELINE {
            if let Some(p99) = self.sums[0].p99_us() {
                let relative = (p99 as f64 * (1.0 + self.margin)) as u64;
                self.slow_above_us = Some(relative.max(p99.saturating_add(MIN_MARGIN_US)));
            }
        }
        // Never more errors or slow requests than requests, whatever a reading raced with.
        let counts = |r: &Reading| Counts {
            requests: r.requests,
            errors: r.errors.min(r.requests),
            slow: self
                .slow_above_us
                .map_or(0, |line| r.at_or_above(line))
                .min(r.requests),
        };
        let second = Second {
            baseline: counts(&baseline),
            canary: counts(&canary),
        };
        for (i, reading) in [baseline, canary].into_iter().enumerate() {
            self.sums[i].add(&reading);
            self.recent[i].push_back(reading);
            if self.recent[i].len() > RECENT_SECONDS {
                let old = self.recent[i].pop_front().expect("longer than 1");
                self.sums[i].subtract(&old);
            }
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Counted {
            second,
            p99_ms: [self.sums[0].p99_us().map(ms), self.sums[1].p99_us().map(ms)],
            slow_above_ms: self.slow_above_us.map(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::tally::PoolTally;

    fn reading(n: u64, each: Duration) -> Reading {
        let tally = PoolTally::default();
        for _ in 0..n {
            tally.record(false, Some(each));
        }
        tally.read()
    }

    #[test]
    fn a_canary_200ms_slower_than_a_1ms_baseline_is_all_slow_once_the_baseline_has_history() {
        let mut latency = Latency::new(0.10, None);
        let first = latency.count(
            reading(100, Duration::from_millis(1)),
            reading(10, Duration::from_millis(201)),
        );
        assert_eq!(
            first.second.canary.slow, 0,
            "no line before any baseline history"
        );
        let next = latency.count(
            reading(100, Duration::from_millis(1)),
            reading(10, Duration::from_millis(201)),
        );
        assert_eq!(next.second.canary.slow, 10);
        assert_eq!(next.second.baseline.slow, 0);
        let line = next.slow_above_ms.unwrap();
        assert!((6.0..7.0).contains(&line), "p99 ≈ 1 ms + 5 ms, got {line}");
    }

    #[test]
    fn a_line_seeded_from_the_baselines_last_seconds_judges_a_straight_to_100_plan_at_once() {
        let mut latency = Latency::new(0.10, None);
        latency.seed(reading(200, Duration::from_millis(1)));
        // At 100 % the baseline has no traffic: the seeded history sets the line.
        let first = latency.count(Reading::default(), reading(10, Duration::from_millis(201)));
        assert_eq!(first.second.canary.slow, 10);
    }

    #[test]
    fn a_restored_line_stays_sane() {
        let tiny = Latency::new(0.10, Some(0.001));
        assert_eq!(tiny.slow_above_us, Some(5_000));
        assert_eq!(Latency::new(0.10, Some(f64::NAN)).slow_above_us, None);
    }

    #[test]
    fn an_equally_fast_canary_has_no_slow_requests() {
        let mut latency = Latency::new(0.10, None);
        for _ in 0..5 {
            let c = latency.count(
                reading(100, Duration::from_millis(40)),
                reading(20, Duration::from_millis(40)),
            );
            assert_eq!(c.second.canary.slow, 0);
        }
    }
}
