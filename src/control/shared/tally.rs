//! `tally/<replica>`: while a rollout runs, each replica publishes its analysis counters for
//! the rollout's two pools once a second under its lease; the leader sums every replica's
//! increments, so the analysis judges all traffic, not one replica's share of it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use etcd_client::{GetOptions, PutOptions};
use serde::{Deserialize, Serialize};

use super::Shared;
use crate::metrics::tally::{Reading, BUCKETS};

/// One pool's counters as published (the latency buckets as a list: JSON has no fixed arrays).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counts {
    requests: u64,
    errors: u64,
    latency: Vec<u64>,
}

impl Counts {
    fn of(reading: &Reading) -> Counts {
        Counts {
            requests: reading.requests,
            errors: reading.errors,
            latency: reading.latency.to_vec(),
        }
    }

    fn reading(&self) -> Reading {
        let mut latency = [0; BUCKETS];
        for (slot, n) in latency.iter_mut().zip(self.latency.iter().take(BUCKETS)) {
            *slot = *n;
        }
        Reading {
            requests: self.requests,
            errors: self.errors,
            latency,
        }
    }
}

/// What a replica publishes: its counters for one rollout's pools.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    rollout: u64,
    pools: BTreeMap<String, Counts>,
}

/// Every replica's counters, by replica, then by pool.
pub(crate) type Tallies = BTreeMap<String, BTreeMap<String, Reading>>;

impl Shared {
    /// Publishes this replica's cumulative counters for `pools` (nothing before it has a lease).
    ///
    /// # Errors
    /// Unreachable.
    pub(crate) async fn publish_tally(
        &self,
        rollout: u64,
        pools: &[(String, Reading); 2],
    ) -> Result<(), String> {
        let lease = self.lease.load(Ordering::SeqCst);
        if lease == 0 || self.gone() {
            return Ok(());
        }
        let published = Published {
            rollout,
            pools: (pools.iter())
                .map(|(pool, reading)| (pool.clone(), Counts::of(reading)))
                .collect(),
        };
        let value = serde_json::to_vec(&published).expect("plain data serialises");
        let key = self.key(&format!("tally/{}", self.replica()));
        self.run(move |mut client| async move {
            let options = PutOptions::new().with_lease(lease);
            client.put(key, value, Some(options)).await.map(|_| ())
        })
        .await
    }

    /// Every other replica's published counters for `rollout` (others are stale: left from an
    /// earlier rollout).
    ///
    /// # Errors
    /// Unreachable.
    pub(crate) async fn tallies(&self, rollout: u64) -> Result<Tallies, String> {
        let prefix = self.key("tally/");
        let listed = self
            .run(move |mut client| async move {
                let answer = client
                    .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                    .await?;
                Ok(answer
                    .kvs()
                    .iter()
                    .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                    .collect::<Vec<_>>())
            })
            .await?;
        let prefix = self.key("tally/");
        let mut tallies = Tallies::new();
        for (key, value) in listed {
            let Some(replica) = std::str::from_utf8(&key)
                .ok()
                .and_then(|k| k.strip_prefix(&prefix))
            else {
                continue;
            };
            if replica == self.replica() {
                continue;
            }
            match serde_json::from_slice::<Published>(&value) {
                Ok(published) if published.rollout == rollout => {
                    let pools = (published.pools.iter())
                        .map(|(p, c)| (p.clone(), c.reading()))
                        .collect();
                    tallies.insert(replica.to_string(), pools);
                }
                _ => {}
            }
        }
        Ok(tallies)
    }
}

/// The sum of every replica's increments, as one cumulative reading per pool (the engine takes
/// differences of it, as of a single replica's counters). A replica seen for the first time
/// adds from then on; one that restarted (its counters went back) starts again from its new
/// reading; one gone stops adding.
#[derive(Debug, Default)]
pub(crate) struct Aggregate {
    rollout: u64,
    last: BTreeMap<String, [Reading; 2]>,
    sum: [Reading; 2],
}

impl Aggregate {
    /// Adds what each replica counted since its last reading, for rollout `id`.
    pub(crate) fn add(&mut self, id: u64, readings: Vec<(String, [Reading; 2])>) -> [Reading; 2] {
        if id != self.rollout {
            *self = Aggregate {
                rollout: id,
                ..Aggregate::default()
            };
        }
        let mut seen = BTreeMap::new();
        for (replica, now) in readings {
            if let Some(before) = self.last.get(&replica) {
                for (i, sum) in self.sum.iter_mut().enumerate() {
                    sum.add(&now[i].since(&before[i]));
                }
            }
            seen.insert(replica, now);
        }
        self.last = seen;
        self.sum.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(requests: u64, errors: u64) -> Reading {
        Reading {
            requests,
            errors,
            ..Reading::default()
        }
    }

    #[test]
    fn the_sum_adds_each_replicas_increments_and_survives_restarts_and_departures() {
        let mut agg = Aggregate::default();
        let both = |a: (u64, u64), b: (u64, u64)| [reading(a.0, a.1), reading(b.0, b.1)];
        // First sight: baselines only.
        let sum = agg.add(
            1,
            vec![
                ("a".into(), both((10, 1), (5, 0))),
                ("b".into(), both((7, 0), (3, 3))),
            ],
        );
        assert_eq!((sum[0].requests, sum[1].errors), (0, 0));
        let sum = agg.add(
            1,
            vec![
                ("a".into(), both((20, 2), (6, 0))),
                ("b".into(), both((9, 0), (5, 5))),
            ],
        );
        assert_eq!(
            (
                sum[0].requests,
                sum[0].errors,
                sum[1].requests,
                sum[1].errors
            ),
            (12, 1, 3, 2)
        );
        // b restarted (its counters went back), c appeared, a stayed still.
        let sum = agg.add(
            1,
            vec![
                ("a".into(), both((20, 2), (6, 0))),
                ("b".into(), both((1, 0), (1, 1))),
                ("c".into(), both((4, 4), (4, 4))),
            ],
        );
        assert_eq!((sum[0].requests, sum[1].errors), (12, 2));
        let sum = agg.add(
            1,
            vec![
                ("b".into(), both((2, 0), (2, 2))),
                ("c".into(), both((5, 4), (4, 4))),
            ],
        );
        assert_eq!((sum[0].requests, sum[1].errors), (14, 3));
        // A new rollout starts from zero.
        let sum = agg.add(2, vec![("b".into(), both((50, 0), (50, 0)))]);
        assert_eq!(sum[0].requests, 0);
    }
}
