//! Request keys: a fast per-thread pseudo-random source feeding [`crate::data::routing`].
//!
//! Kept apart from routing so routing stays pure; tests pass their own seeded keys.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::model::FULL;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    nanos ^ (std::ptr::addr_of!(local) as u64).rotate_left(32)
}

/// A key uniform in `[0, 10 000)` (splitmix64; the modulo bias is below 10⁻¹⁵).
pub fn next() -> u32 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % u64::from(FULL)) as u32
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_stay_in_range_and_cover_it() {
        let keys: Vec<u32> = (0..100_000).map(|_| super::next()).collect();
        assert!(keys.iter().all(|k| *k < super::FULL));
        let low = keys.iter().filter(|k| **k < 5_000).count();
        assert!(
            (45_000..55_000).contains(&low),
            "halves are balanced: {low}"
        );
    }
}
