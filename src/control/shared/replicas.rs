//! `replicas/<id>`: each replica says, under its lease, which version it has applied.
//! A replica that stops renewing disappears with its lease ([`super::LEASE_TTL`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Shared, LEASE_TTL};

/// How often the heartbeat is written again (and the lease renewed) without a change.
const BEAT: Duration = Duration::from_secs(2);
/// A leader whose last renewal is older than this decides nothing (its lease may lapse
/// before a write lands; the fence refuses it after that anyway).
const LEAD_WITHIN: Duration = Duration::from_secs(LEASE_TTL as u64 - 3);

/// What a replica reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    /// The replica's name.
    pub(crate) replica: String,
    /// The shared version it has applied.
    pub(crate) version: u64,
    /// The pools its config file defines.
    pub(crate) pools: Vec<String>,
    /// Whether it runs the rollout engine.
    pub(crate) leader: bool,
    /// When it started (RFC 3339).
    pub(crate) started: String,
    /// Its switchback version.
    pub(crate) binary: String,
    /// When it last wrote this (RFC 3339).
    #[serde(default)]
    pub(crate) heartbeat: String,
    /// The host it runs on (two replicas of one name on different hosts are refused).
    #[serde(default)]
    pub(crate) host: String,
}

impl Shared {
    /// Keeps `replicas/<id>` current: written at once whenever `beats` changes, and every
    /// [`BEAT`], under a lease that expires [`LEASE_TTL`] seconds after the last renewal.
    pub(crate) fn spawn_heartbeat(self: &Arc<Self>, mut beats: watch::Receiver<Heartbeat>) {
        let shared = self.clone();
        self.runtime().spawn(async move {
            let key = shared.key(&format!("replicas/{}", shared.replica()));
            loop {
                if shared.gone() {
                    return;
                }
                let mut beat = beats.borrow_and_update().clone();
                beat.heartbeat =
                    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
                beat.leader = shared.is_leader();
                match shared.beat(&key, &beat).await {
                    Ok(()) if shared.gone() => {
                        // Left while this beat was in flight: its lease goes too.
                        shared.gone.store(false, Ordering::SeqCst);
                        shared.leave();
                        return;
                    }
                    Ok(()) => {
                        let led = beat.leader;
                        shared.campaign().await;
                        if shared.is_leader() != led {
                            continue; // tell the others at once
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "shared state: heartbeat not written");
                        shared.lease.store(0, Ordering::SeqCst);
                        shared.resign("its lease could not be renewed");
                    }
                }
                tokio::select! {
                    changed = beats.changed() => if changed.is_err() { return },
                    () = shared.vacant.notified() => {}
                    () = tokio::time::sleep(BEAT) => {}
                }
            }
        });
    }

    async fn beat(&self, key: &str, beat: &Heartbeat) -> Result<(), String> {
        let value = serde_json::to_vec(beat).expect("plain data serialises");
        let lease = self.lease.load(Ordering::SeqCst);
        let key = key.to_string();
        let lease = self
            .run(move |mut client| async move {
                let mut lease = lease;
                let mut granted = false;
                if lease != 0 {
                    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    let alive = answers.message().await?.is_some_and(|a| a.ttl() > 0);
                    if !alive {
                        lease = 0;
                    }
                }
                if lease == 0 {
                    lease = client.lease_grant(LEASE_TTL, None).await?.id();
                    granted = true;
                }
                client
                    .put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await?;
                Ok((lease, granted))
            })
            .await?;
        let (lease, granted) = lease;
        if granted {
            // A new lease: any lead held under the old one is gone with it.
            self.resign("its lease lapsed");
        }
        self.lease.store(lease, Ordering::SeqCst);
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(())
    }

    /// Takes the rollout leader's key when it is free (under this replica's lease), or finds
    /// it still held by this replica.
    async fn campaign(&self) {
        let lease = self.lease.load(Ordering::SeqCst);
        let (key, me) = (self.key("leader"), self.replica().to_string());
        if !self.eligible.load(Ordering::SeqCst) {
            // Cannot serve the shared split: hands the lead on if it holds it.
            if self.leader.load(Ordering::SeqCst) != 0 {
                let step_down = self
                    .run(move |mut client| async move {
                        let txn = Txn::new()
                            .when(vec![
                                Compare::value(key.as_str(), CompareOp::Equal, me.as_str()),
                                Compare::lease(key.as_str(), CompareOp::Equal, lease),
                            ])
                            .and_then(vec![TxnOp::delete(key.as_str(), None)]);
                        client.txn(txn).await.map(|_| ())
                    })
                    .await;
                if let Err(e) = step_down {
                    tracing::warn!(error = %e, "the leader key was not handed on; it lapses with the lease");
                }
            }
            self.resign("its config lacks a pool the shared split names");
            return;
        }
        let held = self
            .run(move |mut client| async move {
                let txn = Txn::new()
                    .when(vec![Compare::create_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then(vec![TxnOp::put(
                        key.as_str(),
                        me.as_str(),
                        Some(PutOptions::new().with_lease(lease)),
                    )])
                    .or_else(vec![TxnOp::get(key.as_str(), None)]);
                let answer = client.txn(txn).await?;
                if answer.succeeded() {
                    return Ok(answer.header().map_or(0, |h| h.revision()));
                }
                let holder = answer.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                    _ => None,
                });
                Ok(holder
                    .filter(|kv| kv.value() == me.as_bytes() && kv.lease() == lease)
                    .map_or(0, |kv| kv.create_revision()))
            })
            .await;
        match held {
            Ok(0) => self.resign("another replica holds the leader key"),
            Ok(created) => {
                if self.leader.swap(created, Ordering::SeqCst) != created {
                    tracing::info!(
                        replica = self.replica(),
                        "this replica leads the rollout engine"
                    );
                }
            }
            Err(e) => self.resign(&e),
        }
    }

    /// Stops leading (at once: a leader that cannot renew decides nothing more).
    fn resign(&self, why: &str) {
        if self.leader.swap(0, Ordering::SeqCst) != 0 {
            tracing::warn!(
                replica = self.replica(),
                "this replica no longer leads the rollout engine: {why}"
            );
        }
    }

    /// Whether this replica leads the rollout engine now: it holds the leader key and renewed
    /// its lease recently enough that no successor can have taken over.
    pub(crate) fn is_leader(&self) -> bool {
        self.fence().is_some()
    }

    /// The leader key's create revision, which every write of the rollout engine is fenced on;
    /// `None` when this replica does not lead.
    pub(crate) fn fence(&self) -> Option<i64> {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = renewed.is_some_and(|at| at.elapsed() < LEAD_WITHIN) && !self.gone();
        let created = self.leader.load(Ordering::SeqCst);
        (fresh && created != 0).then_some(created)
    }

    /// Refuses this replica's name when a live replica on another host holds it.
    ///
    /// # Errors
    /// The name is taken (unreachable counts as free: the heartbeat claims it later).
    pub(crate) fn claim_name(&self, host: &str) -> Result<(), String> {
        let key = self.key(&format!("replicas/{}", self.replica()));
        let found = self.block(move |mut client| async move {
            let answer = client.get(key, None).await?;
            Ok(answer.kvs().first().map(|kv| kv.value().to_vec()))
        });
        let holder = found
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Heartbeat>(&v).ok());
        match holder {
            Some(other) if !other.host.is_empty() && other.host != host => Err(format!(
                "state.replica: the name {:?} is in use under {} by a replica on host {}; give each replica its own name",
                self.replica(),
                self.prefix(),
                other.host
            )),
            _ => Ok(()),
        }
    }

    /// Gives up this replica's lease (at shutdown): its heartbeat, counts and any lead go at
    /// once, so another replica takes the engine over without waiting for the TTL.
    pub(crate) fn leave(&self) {
        if self.gone.swap(true, Ordering::SeqCst) {
            return;
        }
        let lease = self.lease.swap(0, Ordering::SeqCst);
        self.leader.store(0, Ordering::SeqCst);
        if lease != 0 {
            let revoked =
                self.block(move |mut client| async move { client.lease_revoke(lease).await });
            if let Err(e) = revoked {
                tracing::warn!(error = %e, "the replica's lease was not revoked; it lapses by itself");
            }
        }
    }

    /// Every live replica's heartbeat.
    ///
    /// # Errors
    /// Unreachable.
    pub(crate) async fn replicas(&self) -> Result<Vec<Heartbeat>, String> {
        let prefix = self.key("replicas/");
        let values = self.run(move |client| list(client, prefix)).await?;
        Ok(parse(&values))
    }

    /// [`Self::replicas`] for a caller under control's lock.
    ///
    /// # Errors
    /// Unreachable.
    pub(crate) fn replicas_now(&self) -> Result<Vec<Heartbeat>, String> {
        let prefix = self.key("replicas/");
        let values = self.block(move |client| list(client, prefix))?;
        Ok(parse(&values))
    }
}

async fn list(
    mut client: etcd_client::Client,
    prefix: String,
) -> Result<Vec<Vec<u8>>, etcd_client::Error> {
    let answer = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    Ok(answer.kvs().iter().map(|kv| kv.value().to_vec()).collect())
}

fn parse(values: &[Vec<u8>]) -> Vec<Heartbeat> {
    values
        .iter()
        .filter_map(|v| serde_json::from_slice(v).ok())
        .collect()
}
