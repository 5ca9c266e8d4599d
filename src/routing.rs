//! Routing: pure functions from a request key to a pool, and from a ticket to a backend.
//!
//! ```text
//! key ∈ [0, 10 000) ──SplitTable::pick──▶ pool ──Schedule::pick(ticket)──▶ backend
//! ```
//! Both tables are built once per snapshot; picking is a short scan and an index, with no
//! allocation and no lock. Randomness and counters come from the caller, so every decision
//! here is reproducible in a unit test.

use crate::config::model::{BasisPoints, FULL};

/// Cumulative split over pools with a positive share; pools at 0 % never appear.
#[derive(Debug, Clone)]
pub struct SplitTable {
    /// `(exclusive upper bound in basis points, pool index)`, ascending.
    bounds: Vec<(BasisPoints, usize)>,
}

impl SplitTable {
    /// Builds the table from each pool's share, indexed by position.
    pub fn new(shares: impl IntoIterator<Item = BasisPoints>) -> Self {
        let mut upper = 0;
        let bounds = shares
            .into_iter()
            .enumerate()
            .filter(|(_, bp)| *bp > 0)
            .map(|(index, bp)| {
                upper += bp;
                (upper, index)
            })
            .collect();
        SplitTable { bounds }
    }

    /// The pool for `key` (taken modulo 10 000). `None` only when no pool has a share.
    pub fn pick(&self, key: u32) -> Option<usize> {
        let key = key % FULL;
        self.bounds
            .iter()
            .find(|(upper, _)| key < *upper)
            .or(self.bounds.last())
            .map(|(_, index)| *index)
    }
}

/// A smooth weighted round-robin order (nginx's algorithm), unrolled over one period.
///
/// For weights 5, 1, 1 the period is `a a b a c a a`: the heavy backend is spread out rather
/// than hit five times in a row. Picking is `slots[ticket % period]`.
#[derive(Debug, Clone)]
pub struct Schedule {
    slots: Box<[u32]>,
}

impl Schedule {
    /// Unrolls smooth weighted round-robin for `weights` (each ≥ 1) over one period.
    pub fn smooth_weighted(weights: &[u32]) -> Self {
        let divisor = weights.iter().copied().fold(0, gcd).max(1);
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut slots = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            slots.push(best as u32);
        }
        Schedule {
            slots: slots.into_boxed_slice(),
        }
    }

    /// The backend index for the `ticket`-th request to this pool.
    pub fn pick(&self, ticket: u64) -> usize {
        if self.slots.is_empty() {
            return 0;
        }
        self.slots[(ticket % self.slots.len() as u64) as usize] as usize
    }

    /// Length of one period (sum of weights divided by their gcd).
    pub fn period(&self) -> usize {
        self.slots.len()
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn observed_shares(table: &SplitTable, pools: usize, n: u32, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = vec![0u32; pools];
        for _ in 0..n {
            counts[table.pick(rng.gen_range(0..FULL)).unwrap()] += 1;
        }
        counts
            .iter()
            .map(|c| 100.0 * f64::from(*c) / f64::from(n))
            .collect()
    }

    #[test]
    fn ninety_ten_split_is_within_half_a_point_over_100k_requests() {
        let table = SplitTable::new([9000, 1000]);
        let shares = observed_shares(&table, 2, 100_000, 7);
        assert!((shares[0] - 90.0).abs() < 0.5, "blue got {}", shares[0]);
        assert!((shares[1] - 10.0).abs() < 0.5, "green got {}", shares[1]);
    }

    #[test]
    fn one_hundredth_of_a_percent_is_honoured() {
        let table = SplitTable::new([9999, 1]);
        let hits: Vec<u32> = (0..FULL).filter(|k| table.pick(*k) == Some(1)).collect();
        assert_eq!(
            hits.len(),
            1,
            "exactly one key in 10 000 goes to the 0.01 % pool"
        );
        let shares = observed_shares(&table, 2, 1_000_000, 11);
        assert!(
            shares[1] > 0.0 && shares[1] < 0.03,
            "canary got {}",
            shares[1]
        );
    }

    #[test]
    fn a_pool_at_zero_percent_never_gets_a_key() {
        let table = SplitTable::new([0, 10_000, 0]);
        assert!((0..FULL).all(|k| table.pick(k) == Some(1)));
    }

    #[test]
    fn every_key_maps_exactly_by_basis_points() {
        let table = SplitTable::new([2500, 2500, 5000]);
        let mut counts = [0u32; 3];
        for k in 0..FULL {
            counts[table.pick(k).unwrap()] += 1;
        }
        assert_eq!(counts, [2500, 2500, 5000]);
    }

    #[test]
    fn smooth_weighted_round_robin_spreads_the_heavy_backend() {
        let schedule = Schedule::smooth_weighted(&[5, 1, 1]);
        let order: Vec<usize> = (0..7).map(|t| schedule.pick(t)).collect();
        assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn schedule_honours_weights_exactly_per_period_and_reduces_by_gcd() {
        let schedule = Schedule::smooth_weighted(&[2, 4, 6]);
        assert_eq!(schedule.period(), 6);
        let mut counts = [0; 3];
        for t in 0..600 {
            counts[schedule.pick(t)] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }

    #[test]
    fn equal_weights_alternate() {
        let schedule = Schedule::smooth_weighted(&[1, 1]);
        let order: Vec<usize> = (0..4).map(|t| schedule.pick(t)).collect();
        assert_eq!(order, [0, 1, 0, 1]);
    }
}
