//! What the analysis remembers of the baseline: the hard-failure window of both pools, and the
//! baseline's level over its last 30 minutes of traffic — what a degraded baseline is measured
//! against, and the reference of the bake.

use std::collections::VecDeque;

use super::{wilson_lower, Counts, Second};

/// The baseline's error rate that counts as degraded, whatever its history (by its 95 % lower
/// bound over the window, so that a few unlucky errors at low traffic never hold a step).
const DEGRADED_RATE: f64 = 0.05;
/// How many times its recent level the baseline's error rate (lower bound) must reach to count
/// as degraded.
const DEGRADED_JUMP: f64 = 5.0;
/// The least recent level assumed, so that a spotless baseline's first errors are no jump.
const LEVEL_FLOOR: f64 = 0.002;
/// Fewest baseline errors in the window that can make it degraded.
const DEGRADED_MIN_ERRORS: u64 = 5;
/// Seconds of baseline traffic (beyond the window) before a jump over its level counts.
const LEVEL_MIN_SECONDS: usize = 60;
/// The baseline's level is measured over this many seconds with traffic (30 min).
const LEVEL_SECONDS: usize = 30 * 60;

#[derive(Debug, Clone, Default)]
pub(super) struct Baseline {
    window: VecDeque<Second>,
    window_sum: Second,
    level: VecDeque<Counts>,
    level_sum: Counts,
    /// The same without the seconds the baseline was degraded: the bake's reference.
    clean: VecDeque<Counts>,
    clean_sum: Counts,
}

impl Baseline {
    /// Adds a second to the hard-failure window of `len` seconds.
    pub(super) fn push_window(&mut self, second: Second, len: usize) {
        self.window.push_back(second);
        self.window_sum.baseline.add(second.baseline);
        self.window_sum.canary.add(second.canary);
        while self.window.len() > len {
            let old = self.window.pop_front().expect("longer than 1");
            self.window_sum.baseline.subtract(old.baseline);
            self.window_sum.canary.subtract(old.canary);
        }
    }

    /// Adds a second of the baseline to its level. Seconds without baseline traffic (the bake)
    /// leave the level as it was: the reference is the level measured just before.
    pub(super) fn push_level(&mut self, counts: Counts, degraded: bool) {
        if counts.requests == 0 {
            return;
        }
        // Outages join the level too: a baseline that stays at a new level becomes its level
        // (and stops counting as degraded, unless over DEGRADED_RATE). Not the clean level: an
        // outage must not make the bake's reference (and so the bake) lenient.
        push(&mut self.level, &mut self.level_sum, counts);
        if !degraded {
            push(&mut self.clean, &mut self.clean_sum, counts);
        }
    }

    /// A level kept from before (the rollout, or a restart), as one entry.
    pub(super) fn restore(&mut self, counts: Counts) {
        if self.level.is_empty() && counts.requests > 0 {
            self.level.push_back(counts);
            self.level_sum = counts;
            self.clean.push_back(counts);
            self.clean_sum = counts;
        }
    }

    pub(super) fn forget_window(&mut self) {
        self.window.clear();
        self.window_sum = Second::default();
    }

    /// `[baseline, canary]` over the window.
    pub(super) fn window(&self) -> [Counts; 2] {
        [self.window_sum.baseline, self.window_sum.canary]
    }

    /// The baseline's counts over its last 30 minutes of traffic.
    pub(super) fn level(&self) -> Counts {
        self.level_sum
    }

    /// The same without its degraded seconds.
    pub(super) fn clean(&self) -> Counts {
        self.clean_sum
    }

    /// The baseline is failing: at least a few errors in the window, and by its 95 % lower
    /// bound above 5 %, or (with a minute of history) above five times its level.
    pub(super) fn degraded(&self) -> bool {
        let b = self.window_sum.baseline;
        if b.errors < DEGRADED_MIN_ERRORS {
            return false;
        }
        let lower = wilson_lower(b.errors, b.requests);
        let level = self.level_sum.error_rate().max(LEVEL_FLOOR);
        let known = self.level.len() >= self.window.len() + LEVEL_MIN_SECONDS;
        lower > DEGRADED_RATE || (known && lower > DEGRADED_JUMP * level)
    }
}

/// Appends `counts` to a 30-minute window and its sum.
fn push(window: &mut VecDeque<Counts>, sum: &mut Counts, counts: Counts) {
    window.push_back(counts);
    sum.add(counts);
    if window.len() > LEVEL_SECONDS {
        let old = window.pop_front().expect("longer than 1");
        sum.subtract(old);
    }
}
