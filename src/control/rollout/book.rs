//! Every rollout control knows: the active one and the most recent ended ones.

use std::collections::VecDeque;

use super::active::Active;
use super::Rollout;

/// Ended rollouts kept in memory for `GET /rollouts`.
const KEPT: usize = 100;

/// Every rollout control knows: the active one and the most recent ended ones.
#[derive(Debug, Default)]
pub struct Book {
    /// The rollout in progress.
    pub active: Option<Active>,
    /// Ended rollouts, oldest first.
    pub ended: VecDeque<Rollout>,
    /// The next rollout's id.
    pub next_id: u64,
}

impl Book {
    pub(super) fn end(&mut self, record: Rollout) {
        self.ended.push_back(record);
        while self.ended.len() > KEPT {
            self.ended.pop_front();
        }
    }

    /// Newest first: the active rollout, then the ended ones.
    pub fn newest(&self, limit: usize) -> Vec<Rollout> {
        let active = self.active.as_ref().map(|a| a.record.clone());
        active
            .into_iter()
            .chain(self.ended.iter().rev().cloned())
            .take(limit)
            .collect()
    }
}
