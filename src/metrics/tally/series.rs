//! The dashboard's sparklines: every pool's requests per second, error percentage and p99
//! latency, one point a second for the last 15 minutes, computed from the same samples the
//! rollout engine takes (nothing more is counted on the data path).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Reading;

/// Points kept: 15 minutes at one a second.
pub const POINTS: usize = 15 * 60;

/// One pool's second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Requests per second.
    pub rps: f64,
    /// Errors, percent of requests (0 with none).
    pub errors: f64,
    /// The 99th percentile upstream response time, milliseconds; `None` without answers.
    pub p99: Option<f64>,
}

impl Point {
    /// What happened in `delta` over `secs` seconds.
    fn of(delta: &Reading, secs: f64) -> Point {
        let round = |v: f64| (v * 100.0).round() / 100.0;
        let errors = match delta.requests {
            0 => 0.0,
            n => delta.errors as f64 * 100.0 / n as f64,
        };
        Point {
            rps: round(delta.requests as f64 / secs.max(1e-3)),
            errors: round(errors),
            p99: delta.p99_us().map(|us| round(us as f64 / 1000.0)),
        }
    }
}

/// Every pool's points, oldest first, on one clock; a pool that appeared later has `None` for
/// the seconds before it.
#[derive(Debug)]
pub struct Series {
    /// When the process started (the dashboard's uptime).
    pub started: SystemTime,
    times: VecDeque<u64>,
    pools: HashMap<String, VecDeque<Option<Point>>>,
    last: Option<(Instant, HashMap<String, Reading>)>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            started: SystemTime::now(),
            times: VecDeque::new(),
            pools: HashMap::new(),
            last: None,
        }
    }
}

impl Series {
    /// Adds a point per pool from `readings` (the counters at `now`, labelled `wall`) against
    /// the previous call's: the rate over the monotonic time between them.
    pub(super) fn push(&mut self, now: Instant, wall: SystemTime, readings: &[(String, Reading)]) {
        let current: HashMap<String, Reading> = readings.iter().cloned().collect();
        let Some((then, before)) = self.last.replace((now, current)) else {
            return;
        };
        let secs = now.saturating_duration_since(then).as_secs_f64();
        self.times.push_back(unix(wall));
        let len = self.times.len();
        self.pools
            .retain(|name, _| readings.iter().any(|(n, _)| n == name));
        for (name, reading) in readings {
            let point = before.get(name).map(|b| Point::of(&reading.since(b), secs));
            let points = self.pools.entry(name.clone()).or_default();
            while points.len() + 1 < len {
                points.push_back(None);
            }
            points.push_back(point);
        }
        if self.times.len() > POINTS {
            self.times.pop_front();
        }
        for points in self.pools.values_mut() {
            while points.len() > self.times.len() {
                points.pop_front();
            }
        }
    }

    /// The whole series: `{"t": [unix seconds…], "pools": {name: {"rps": […], "errors": […],
    /// "p99": […]}}}`, oldest first.
    pub fn to_json(&self) -> serde_json::Value {
        let pools: serde_json::Map<String, serde_json::Value> = self
            .pools
            .iter()
            .map(|(name, points)| {
                let field = |f: fn(&Point) -> Option<f64>| -> Vec<Option<f64>> {
                    points.iter().map(|p| p.as_ref().and_then(f)).collect()
                };
                let body = serde_json::json!({
                    "rps": field(|p| Some(p.rps)),
                    "errors": field(|p| Some(p.errors)),
                    "p99": field(|p| p.p99),
                });
                (name.clone(), body)
            })
            .collect();
        serde_json::json!({ "t": self.times, "pools": pools })
    }

    /// The newest second: `{"t", "pools": {name: {"rps", "errors", "p99"}}}`; `None` before
    /// two samples.
    pub fn last_json(&self) -> Option<serde_json::Value> {
        let t = *self.times.back()?;
        let pools: serde_json::Map<String, serde_json::Value> = self
            .pools
            .iter()
            .filter_map(|(name, points)| {
                Some((name.clone(), serde_json::json!((*points.back()?)?)))
            })
            .collect();
        Some(serde_json::json!({ "t": t, "pools": pools }))
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(requests: u64, errors: u64, ms: u64) -> Reading {
        let mut r = Reading {
            requests,
            errors,
            ..Reading::default()
        };
        r.latency[super::super::bucket(ms * 1000)] = requests;
        r
    }

    /// Pushes `readings` at second `s` of a clock starting at Unix time 1,000.
    fn at(series: &mut Series, start: Instant, s: u64, readings: &[(String, Reading)]) {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000 + s);
        series.push(start + Duration::from_secs(s), wall, readings);
    }

    #[test]
    fn a_point_is_the_rate_the_error_share_and_the_p99_of_one_second() {
        let t0 = Instant::now();
        let mut s = Series::default();
        at(&mut s, t0, 0, &[("blue".into(), reading(0, 0, 1))]);
        assert_eq!(s.last_json(), None, "one sample is no second yet");
        at(&mut s, t0, 1, &[("blue".into(), reading(200, 0, 1))]);
        // 200 more, 4 of them errors, all answered in 5 ms.
        let mut later = reading(400, 4, 1);
        later.latency[super::super::bucket(1_000)] = 200;
        later.latency[super::super::bucket(5_000)] = 200;
        let green = ("green".into(), reading(10, 0, 5));
        at(&mut s, t0, 2, &[("blue".into(), later), green]);
        let last = s.last_json().unwrap();
        assert_eq!(last["t"], 1_002);
        assert_eq!(last["pools"]["blue"]["rps"], 200.0);
        assert_eq!(last["pools"]["blue"]["errors"], 2.0);
        let p99 = last["pools"]["blue"]["p99"].as_f64().unwrap();
        assert!((4.5..5.5).contains(&p99), "{p99}");
        assert!(
            last["pools"].get("green").is_none(),
            "a new pool has no rate yet"
        );
        let all = s.to_json();
        assert_eq!(all["t"], serde_json::json!([1_001, 1_002]));
        assert_eq!(
            all["pools"]["green"]["rps"],
            serde_json::json!([null, null])
        );
        assert_eq!(
            all["pools"]["blue"]["rps"],
            serde_json::json!([200.0, 200.0])
        );
    }

    #[test]
    fn it_keeps_fifteen_minutes_and_forgets_removed_pools() {
        let t0 = Instant::now();
        let mut s = Series::default();
        for i in 0..(POINTS as u64 + 10) {
            let pools = [("blue".into(), reading(i * 10, 0, 1))];
            at(&mut s, t0, i, &pools);
        }
        let all = s.to_json();
        assert_eq!(all["t"].as_array().unwrap().len(), POINTS);
        assert_eq!(
            all["pools"]["blue"]["rps"].as_array().unwrap().len(),
            POINTS
        );
        at(&mut s, t0, 5_000, &[]);
        assert!(s.to_json()["pools"].as_object().unwrap().is_empty());
    }
}
