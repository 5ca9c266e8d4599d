//! Sticky assignment of users to pools: a pure core (no sockets, no clock).
//!
//! ```text
//! user key ──SipHash-2-4(seed)──▶ u64 ──mod 10,000──▶ bucket ──BucketTable──▶ pool
//! ```
//!
//! - [`KeyHasher`]: SipHash-2-4 (Aumasson & Bernstein), keyed by the `[affinity] seed`. Unlike
//!   `std`'s `DefaultHasher` its output is fixed by its specification, so every replica and
//!   every release assigns a key to the same bucket.
//! - [`BucketTable`]: 10,000 buckets (the split's 0.01 % steps); each pool owns exactly its
//!   share in basis points. A change moves buckets only from pools that lost share to pools
//!   that gained it: a losing pool gives up the buckets it got most recently (the highest
//!   numbered first among equals), and a gaining pool
//!   first takes back buckets it gave up, so undoing a change restores the earlier assignment
//!   exactly. Everything else is ordered by bucket number, so the table is a deterministic
//!   function of (previous table, new split).
//! - A fresh table lays the pools out in name order over buckets `0..10,000`: with blue 90 /
//!   green 10, buckets `0..9000` are blue's and `9000..10,000` green's. Growing the last pool
//!   of two step by step keeps the table equal to the fresh layout of the new split.

use std::cmp::Reverse;
use std::collections::BTreeMap;

pub use crate::config::key_hash::{KeyHasher, BUCKETS};

/// Which pool owns each bucket, with the memory a minimal, reversible change needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTable {
    /// Pool names; owners are indices into this list.
    pools: Vec<String>,
    /// The owner of each bucket.
    owner: Vec<u16>,
    /// The owner before the bucket's last move (itself when it never moved).
    previous: Vec<u16>,
    /// When the bucket last moved (a change counter; 0 for the fresh layout).
    moved_at: Vec<u32>,
    /// Changes applied so far.
    changes: u32,
}

impl BucketTable {
    /// The fresh layout of `split` (pool → basis points, summing to [`BUCKETS`]): pools in name
    /// order over buckets `0..BUCKETS`.
    ///
    /// # Panics
    /// When the shares do not sum to [`BUCKETS`] (the split is validated before).
    pub fn fresh(split: &BTreeMap<String, u32>) -> BucketTable {
        assert_eq!(
            split.values().sum::<u32>() as usize,
            BUCKETS,
            "a validated split"
        );
        let pools: Vec<String> = split.keys().cloned().collect();
        let mut owner = Vec::with_capacity(BUCKETS);
        for (i, share) in split.values().enumerate() {
            owner.extend(std::iter::repeat_n(i as u16, *share as usize));
        }
        BucketTable {
            pools,
            previous: owner.clone(),
            owner,
            moved_at: vec![0; BUCKETS],
            changes: 0,
        }
    }

    /// The pool owning `bucket`.
    pub fn pool(&self, bucket: u16) -> &str {
        &self.pools[self.owner[bucket as usize] as usize]
    }

    /// Whether every pool owns exactly its share of `split` (pools missing from `split`
    /// owning nothing).
    pub fn fits(&self, split: &BTreeMap<String, u32>) -> bool {
        let counts = self.counts();
        counts
            .iter()
            .all(|(p, c)| split.get(*p).copied().unwrap_or(0) == *c)
            && split
                .iter()
                .all(|(p, s)| *s == 0 || counts.contains_key(p.as_str()))
    }

    /// The pool names and, per bucket, the index of its owner among them.
    pub fn owners(&self) -> (&[String], &[u16]) {
        (&self.pools, &self.owner)
    }

    /// Buckets owned by each pool.
    pub fn counts(&self) -> BTreeMap<&str, u32> {
        let mut out: BTreeMap<&str, u32> = self.pools.iter().map(|p| (p.as_str(), 0)).collect();
        for &o in &self.owner {
            *out.get_mut(self.pools[o as usize].as_str())
                .expect("known pool") += 1;
        }
        out
    }

    /// The table for `split`, moving as few buckets as possible from this one: only from
    /// pools whose share fell to pools whose share rose. Pools new to the table start empty;
    /// pools missing from `split` give up everything.
    ///
    /// # Panics
    /// When the shares do not sum to [`BUCKETS`].
    pub fn next(&self, split: &BTreeMap<String, u32>) -> BucketTable {
        assert_eq!(
            split.values().sum::<u32>() as usize,
            BUCKETS,
            "a validated split"
        );
        let mut pools = self.pools.clone();
        for name in split.keys() {
            if !pools.contains(name) {
                pools.push(name.clone());
            }
        }
        let want: Vec<u32> = pools
            .iter()
            .map(|p| split.get(p).copied().unwrap_or(0))
            .collect();
        let mut table = BucketTable {
            pools,
            changes: self.changes.saturating_add(1),
            ..self.clone()
        };
        let mut have = vec![0u32; table.pools.len()];
        for &o in &table.owner {
            have[o as usize] += 1;
        }
        // Losing pools give up their most recently moved buckets first.
        let mut released = Vec::new();
        for (p, (&h, &w)) in have.iter().zip(&want).enumerate() {
            if h > w {
                let mut own: Vec<usize> = (0..BUCKETS)
                    .filter(|&b| table.owner[b] as usize == p)
                    .collect();
                own.sort_by_key(|&b| Reverse((table.moved_at[b], b)));
                released.extend_from_slice(&own[..(h - w) as usize]);
            }
        }
        released.sort_unstable();
        let mut taken = vec![false; released.len()];
        let mut need: Vec<u32> = have
            .iter()
            .zip(&want)
            .map(|(h, w)| w.saturating_sub(*h))
            .collect();
        // Gaining pools first take back what they gave up, then the rest in bucket order.
        for take_back in [true, false] {
            for (i, &b) in released.iter().enumerate() {
                if taken[i] {
                    continue;
                }
                let to = match take_back {
                    true => table.previous[b] as usize,
                    false => match need.iter().position(|&n| n > 0) {
                        Some(p) => p,
                        None => break,
                    },
                };
                if need[to] == 0 {
                    continue;
                }
                need[to] -= 1;
                taken[i] = true;
                table.previous[b] = table.owner[b];
                table.owner[b] = to as u16;
                table.moved_at[b] = table.changes;
            }
        }
        table
    }
}

pub mod request;
mod store;

pub use store::{load_table, save_table, table_from_value, table_to_value, TableError};

#[cfg(test)]
mod tests;
