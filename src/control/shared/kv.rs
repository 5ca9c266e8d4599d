//! Reads and transactions on the shared keys: the whole state at once, a change with its log
//! entry, a log entry alone, a drain, the newest log entries.

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

use super::Shared;
use crate::control::audit::Entry;
use crate::control::state::Saved;

/// Transactions retried when only the log's counter moved (another replica logged meanwhile).
const SEQ_RETRIES: usize = 20;

/// Everything shared, read at one revision.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    /// The shared state and its key's revision; `None` before any replica wrote it.
    pub(crate) control: Option<(Saved, i64)>,
    /// Drained backends: (pool, backend).
    pub(crate) drains: Vec<(String, String)>,
    /// The store's revision at the read: a watch continues after it.
    pub(crate) revision: i64,
}

/// How a change's transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written: the store's revision (the new `control` key's revision).
    Committed(i64),
    /// `control` moved since it was read: read it again, then decide again.
    Conflict,
    /// The rollout leader's key is no longer this replica's: another replica leads now.
    Fenced,
}

impl Shared {
    /// Reads the shared state and the drains (blocking; see [`Shared::block`]).
    ///
    /// # Errors
    /// Unreachable, or a `control` value that is not a state.
    pub(crate) fn fetch(&self) -> Result<Fetched, String> {
        let prefix = self.key("");
        self.block(move |client| read_all(client, prefix))?
    }

    /// [`Self::fetch`] for async callers.
    ///
    /// # Errors
    /// As [`Self::fetch`].
    pub(crate) async fn fetch_async(&self) -> Result<Fetched, String> {
        let prefix = self.key("");
        self.run(move |client| read_all(client, prefix)).await?
    }

    /// Writes `doc` and `entry` (if any) in one transaction, when `control` is still at
    /// `expected` (0: not written yet) and, with `fence`, while the rollout leader's key is
    /// still the one this replica created (`<prefix>/leader` at that create revision). Each
    /// rollout the memo names is written to `rollouts/<id>` too. Stamps `entry` with its `seq`
    /// and this replica.
    ///
    /// # Errors
    /// Unreachable.
    pub(crate) fn commit(
        &self,
        expected: i64,
        doc: &Saved,
        mut entry: Option<&mut Entry>,
        fence: Option<i64>,
    ) -> Result<Outcome, String> {
        let control_key = self.key("control");
        let leader_key = self.key("leader");
        let value = serde_json::to_vec(doc).expect("plain data serialises");
        let keys = self.log_keys();
        let mut fixed = vec![TxnOp::put(control_key.as_str(), value, None)];
        let memo = doc.rollouts.iter();
        for record in memo.flat_map(|m| m.active.iter().chain(m.last.iter())) {
            let record_json = serde_json::to_vec(record).expect("plain data serialises");
            fixed.push(TxnOp::put(
                self.key(&format!("rollouts/{}", record.id)),
                record_json,
                None,
            ));
        }
        let mut guard = vec![Compare::mod_revision(
            control_key.as_str(),
            CompareOp::Equal,
            expected,
        )];
        if let Some(created) = fence {
            guard.push(Compare::create_revision(
                leader_key.as_str(),
                CompareOp::Equal,
                created,
            ));
        }
        let stamped = entry.as_deref_mut().map(|e| {
            e.replica = Some(self.replica().to_string());
            e.clone()
        });
        let (outcome, seq) = self.block(move |mut client| async move {
            for _ in 0..SEQ_RETRIES {
                let mut when = guard.clone();
                let mut ops = fixed.clone();
                let mut seq = 0;
                if let Some(entry) = &stamped {
                    let (next, free) = keys.next_seq(&mut client).await?;
                    seq = next;
                    when.extend(free);
                    ops.extend(keys.log_ops(seq, entry));
                }
                let keys_only = || Some(GetOptions::new().with_keys_only());
                let txn = Txn::new().when(when).and_then(ops).or_else(vec![
                    TxnOp::get(control_key.as_str(), keys_only()),
                    TxnOp::get(leader_key.as_str(), keys_only()),
                ]);
                let answer = client.txn(txn).await?;
                if answer.succeeded() {
                    let revision = answer.header().map_or(0, |h| h.revision());
                    return Ok((Outcome::Committed(revision), seq));
                }
                let found: Vec<(i64, i64)> = (answer.op_responses().into_iter())
                    .filter_map(|r| match r {
                        TxnOpResponse::Get(get) => Some(
                            get.kvs()
                                .first()
                                .map_or((0, 0), |kv| (kv.mod_revision(), kv.create_revision())),
                        ),
                        _ => None,
                    })
                    .collect();
                let (control_now, leader_created) = match found.as_slice() {
                    [control, leader] => (control.0, leader.1),
                    _ => return Ok((Outcome::Conflict, 0)),
                };
                if fence.is_some_and(|created| created != leader_created) {
                    return Ok((Outcome::Fenced, 0));
                }
                // Only the log's counter moved (another replica logged): try again.
                if control_now != expected {
                    return Ok((Outcome::Conflict, 0));
                }
            }
            Ok((Outcome::Conflict, 0))
        })?;
        if let (Outcome::Committed(_), Some(entry)) = (outcome, entry) {
            entry.seq = Some(seq);
        }
        Ok(outcome)
    }

    /// Appends `entry` (one that changes no version) to the shared log; with `drain`, sets or
    /// clears that backend's drain key in the same transaction. Returns its `seq`.
    ///
    /// # Errors
    /// Unreachable.
    pub(crate) async fn append(
        &self,
        mut entry: Entry,
        drain: Option<(String, String, bool)>,
    ) -> Result<u64, String> {
        entry.replica = Some(self.replica().to_string());
        let keys = self.log_keys();
        let drain_key =
            drain.map(|(pool, backend, on)| (self.key(&format!("drains/{pool}/{backend}")), on));
        self.run(move |mut client| async move {
            for _ in 0..SEQ_RETRIES {
                let (seq, when) = keys.next_seq(&mut client).await?;
                let mut ops = keys.log_ops(seq, &entry);
                match &drain_key {
                    Some((key, true)) => {
                        ops.push(TxnOp::put(key.as_str(), entry.time.as_str(), None))
                    }
                    Some((key, false)) => ops.push(TxnOp::delete(key.as_str(), None)),
                    None => {}
                }
                if client
                    .txn(Txn::new().when(when).and_then(ops))
                    .await?
                    .succeeded()
                {
                    return Ok(seq);
                }
            }
            Err(etcd_client::Error::InvalidArgs(
                "the deployment log's counter kept moving; entry not written".into(),
            ))
        })
        .await
    }

    /// The newest `limit` shared log entries, newest first.
    ///
    /// # Errors
    /// Unreachable.
    pub(crate) async fn history(&self, limit: usize) -> Result<Vec<Entry>, String> {
        let prefix = self.key("log/");
        let values = self
            .run(move |mut client| async move {
                let options = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(limit as i64);
                let answer = client.get(prefix, Some(options)).await?;
                Ok(answer
                    .kvs()
                    .iter()
                    .map(|kv| kv.value().to_vec())
                    .collect::<Vec<_>>())
            })
            .await?;
        Ok(values
            .iter()
            .filter_map(|v| serde_json::from_slice(v).ok())
            .collect())
    }

    fn log_keys(&self) -> LogKeys {
        LogKeys {
            seq: self.key("seq"),
            log: self.key("log/"),
            keep: self.keep() as u64,
        }
    }
}

/// The log's keys, owned, for a transaction on the client's runtime.
struct LogKeys {
    seq: String,
    log: String,
    keep: u64,
}

impl LogKeys {
    /// The next `seq` and the condition that it is still free.
    async fn next_seq(
        &self,
        client: &mut Client,
    ) -> Result<(u64, Vec<Compare>), etcd_client::Error> {
        let answer = client.get(self.seq.as_str(), None).await?;
        let used = answer.kvs().first().map_or(0, |kv| kv.version());
        let when = vec![Compare::version(self.seq.as_str(), CompareOp::Equal, used)];
        Ok((used as u64 + 1, when))
    }

    /// Writes `entry` as `log/<seq>`, counts `seq`, and drops the entry `keep` places back.
    fn log_ops(&self, seq: u64, entry: &Entry) -> Vec<TxnOp> {
        let mut entry = entry.clone();
        entry.seq = Some(seq);
        let line = serde_json::to_vec(&entry).expect("plain data serialises");
        let mut ops = vec![
            TxnOp::put(self.seq.as_str(), seq.to_string(), None),
            TxnOp::put(log_key(&self.log, seq), line, None),
        ];
        if seq > self.keep {
            ops.push(TxnOp::delete(log_key(&self.log, seq - self.keep), None));
        }
        ops
    }
}

fn log_key(log: &str, seq: u64) -> String {
    format!("{log}{seq:020}")
}

async fn read_all(
    mut client: Client,
    prefix: String,
) -> Result<Result<Fetched, String>, etcd_client::Error> {
    let control_key = format!("{prefix}control");
    let drains = format!("{prefix}drains/");
    let answer = client.get(control_key.as_str(), None).await?;
    let revision = answer.header().map_or(0, |h| h.revision());
    let control = match answer.kvs().first() {
        None => None,
        Some(kv) => match serde_json::from_slice::<Saved>(kv.value()) {
            Ok(saved) => Some((saved, kv.mod_revision())),
            Err(e) => {
                return Ok(Err(format!(
                    "the shared state at {control_key} is not usable: {e}"
                )))
            }
        },
    };
    // Drains at the same revision, so a watch from `revision` misses nothing.
    let options = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_revision(revision);
    let listed = client.get(drains.as_str(), Some(options)).await?;
    let drains = listed
        .kvs()
        .iter()
        .filter_map(|kv| drain_of(&drains, kv.key()))
        .collect();
    Ok(Ok(Fetched {
        control,
        drains,
        revision,
    }))
}

/// `(pool, backend)` of a drain key under `drains` (`…/drains/`).
pub(super) fn drain_of(drains: &str, key: &[u8]) -> Option<(String, String)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(drains)?;
    let (pool, backend) = rest.split_once('/')?;
    Some((pool.to_string(), backend.to_string()))
}
