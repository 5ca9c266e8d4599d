//! Log lines about requests, at most one per interval: under an outage or a crowd of clients
//! that leave early, a line per request would flood the log (and cost more than the request).
//! The line that goes out says how many like it were left out since the last one.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::data::health::now_ms;

/// How often a kind of line may be logged.
const INTERVAL_MS: u64 = 10_000;

/// One kind of log line, limited to one per [`INTERVAL_MS`].
pub(super) struct Every {
    /// When the last line went out ([`now_ms`]); 0: never.
    last: AtomicU64,
    /// Lines left out since.
    missed: AtomicU64,
}

impl Every {
    pub(super) const fn new() -> Every {
        Every {
            last: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` when a line may go out now, else `None`
    /// (counted as left out).
    pub(super) fn tick(&self) -> Option<u64> {
        self.tick_at(now_ms())
    }

    /// [`Self::tick`] at `now` ([`now_ms`]'s clock).
    fn tick_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= INTERVAL_MS;
        if due
            && self
                .last
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.missed.swap(0, Ordering::Relaxed));
        }
        self.missed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_goes_out_per_interval_and_counts_the_rest() {
        let every = Every::new();
        assert_eq!(every.tick_at(5), Some(0));
        for at in [6, 100, INTERVAL_MS + 4] {
            assert_eq!(every.tick_at(at), None);
        }
        assert_eq!(every.tick_at(INTERVAL_MS + 5), Some(3));
        assert_eq!(every.tick_at(INTERVAL_MS + 6), None);
    }
}
