//! The last 30 minutes of every pool's totals, one sample a second: the recent request rate
//! `POST /rollouts` checks a plan against, and the baseline's level before a rollout (the bake's
//! reference also covers the time before the rollout began).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Samples kept per pool: 30 minutes and one.
const SAMPLES: usize = 30 * 60 + 1;

/// Per pool, `(when, requests, errors)` as the counters read then, oldest first.
#[derive(Debug, Default)]
pub(super) struct History(HashMap<String, VecDeque<(Instant, u64, u64)>>);

impl History {
    /// Adds a sample of each pool's totals; a pool no longer sampled is forgotten.
    pub(super) fn push(&mut self, now: Instant, totals: Vec<(String, u64, u64)>) {
        self.0
            .retain(|name, _| totals.iter().any(|(n, _, _)| n == name));
        for (name, requests, errors) in totals {
            let samples = self.0.entry(name).or_default();
            samples.push_back((now, requests, errors));
            while samples.len() > SAMPLES {
                samples.pop_front();
            }
        }
    }

    /// Requests per second and their error rate over the last `span`, all pools together;
    /// `None` before two samples 5 s apart.
    pub(super) fn recent(&self, span: Duration) -> Option<(f64, f64)> {
        let (mut requests, mut errors, mut secs) = (0, 0, 0f64);
        for samples in self.0.values() {
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
        let samples = self.0.get(pool)?;
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
        for s in 0..=10u64 {
            let at = t0 + Duration::from_secs(s);
            h.push(
                at,
                vec![("blue".into(), s * 90, s), ("green".into(), s * 10, 0)],
            );
        }
        let (rate, errors) = h.recent(Duration::from_secs(60)).unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        assert!((errors - 0.01).abs() < 1e-9, "{errors}");
        assert_eq!(h.level("blue"), Some((900, 10)));
        // A pool no longer sampled is forgotten.
        h.push(t0 + Duration::from_secs(11), vec![("blue".into(), 990, 11)]);
        assert_eq!(h.level("green"), None);
    }
}
