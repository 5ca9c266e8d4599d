//! Routing inside a pool: a pure function from a ticket to a backend.
//!
//! ```text
//! key ∈ [0, 10 000) ──bucket table (affinity)──▶ pool ──Schedule::pick(ticket)──▶ backend
//! ```
//! Both tables are built once per snapshot; picking is an index, with no allocation and no
//! lock. Counters come from the caller, so every decision here is reproducible in a unit test.

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
