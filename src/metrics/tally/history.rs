//! The last 30 minutes of every pool's totals, one sample a second: the recent request rate
//! `POST /rollouts` checks a plan against, and the baseline's level before a rollout (the bake's
//! reference also covers the time before the rollout began).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::Reading;

/// Samples kept per pool: 30 minutes and one.
const SAMPLES: usize = 30 * 60 + 1;
/// Whole readings (with latencies) kept per pool: 30 seconds and one.
const READINGS: usize = 31;

/// Per pool, `(when, requests, errors)` as the counters read then, oldest first; and the last
/// 30 s of whole readings.
#[derive(Debug, Default)]
pub(super) struct History {
    totals: HashMap<String, VecDeque<(Instant, u64, u64)>>,
    readings: HashMap<String, VecDeque<Reading>>,
}

impl History {
    /// Adds a sample of each pool's counters; a pool no longer sampled is forgotten.
    pub(super) fn push(&mut self, now: Instant, pools: Vec<(String, Reading)>) {
        self.totals
            .retain(|name, _| pools.iter().any(|(n, _)| n == name));
        self.readings
            .retain(|name, _| pools.iter().any(|(n, _)| n == name));
        for (name, reading) in pools {
            let samples = self.totals.entry(name.clone()).or_default();
            samples.push_back((now, reading.requests, reading.errors));
            while samples.len() > SAMPLES {
                samples.pop_front();
            }
            let readings = self.readings.entry(name).or_default();
            readings.push_back(reading);
            while readings.len() > READINGS {
                readings.pop_front();
            }
        }
    }

    /// What `pool` did over its last 30 s (latencies included).
    pub(super) fn last_seconds(&self, pool: &str) -> Option<Reading> {
        let readings = self.readings.get(pool)?;
        Some(readings.back()?.since(readings.front()?))
    }

    /// Requests per second and their error rate over the last `span`, all pools together;
    /// `None` before two samples 5 s apart.
    pub(super) fn recent(&self, span: Duration) -> Option<(f64, f64)> {
        let (mut requests, mut errors, mut secs) = (0, 0, 0f64);
        for samples in self.totals.values() {
            let last = samples.back()?;
            let first = samples
                .iter()
                .find(|s| last.0.saturating_duration_since(s.0) <= span)?;
            requests += last.1.saturating_sub(first.1);
            errors += last.2.saturating_sub(first.2);
            secs = secs.max(last.0.saturating_duration_since(first.0).as_secs_f64());
        }
        (secs >= 5.0).then(|| {
            let rate = if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            };
            (requests as f64 / secs, rate)
        })
    }

    /// `pool`'s `(requests, errors)` between its oldest and newest sample (up to 30 minutes).
    pub(super) fn level(&self, pool: &str) -> Option<(u64, u64)> {
        let samples = self.totals.get(pool)?;
        let (first, last) = (samples.front()?, samples.back()?);
        let requests = last.1.saturating_sub(first.1);
        Some((requests, last.2.saturating_sub(first.2).min(requests)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_the_level_come_from_the_samples_span() {
        let t0 = Instant::now();
        let mut h = History::default();
        assert_eq!(h.recent(Duration::from_secs(60)), None);
        let reading = |requests, errors| Reading {
            requests,
            errors,
            ..Reading::default()
        };
        for s in 0..=10u64 {
            let pools = vec![
                ("blue".into(), reading(s * 90, s)),
                ("green".into(), reading(s * 10, 0)),
            ];
            h.push(t0 + Duration::from_secs(s), pools);
        }
        let (rate, errors) = h.recent(Duration::from_secs(60)).unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        assert!((errors - 0.01).abs() < 1e-9, "{errors}");
        assert_eq!(h.level("blue"), Some((900, 10)));
        assert_eq!(h.last_seconds("blue").unwrap().requests, 900);
        // A pool no longer sampled is forgotten.
        h.push(
            t0 + Duration::from_secs(11),
            vec![("blue".into(), reading(990, 11))],
        );
        assert_eq!(h.level("green"), None);
    }
}
