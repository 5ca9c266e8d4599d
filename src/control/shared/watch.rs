//! Following the shared keys: what other replicas write reaches control as [`Event`]s.
//!
//! The watch runs on the client's runtime and continues from the revision of the last full
//! read. When it fails (cluster unreachable, history compacted, a member gone), the whole
//! prefix is read again once the cluster answers, and the watch continues from there. A full
//! read every [`RECHECK`] catches a watch that stopped delivering without failing.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc::UnboundedSender;

use super::kv::drain_of;
use super::{Fetched, Shared};
use crate::control::state::Saved;

/// How often the whole prefix is read again, whatever the watch says.
pub(crate) const RECHECK: Duration = Duration::from_secs(30);
/// Between attempts while the cluster does not answer.
const RETRY: Duration = Duration::from_millis(500);

/// What changed in the shared keys.
#[derive(Debug)]
pub(crate) enum Event {
    /// A new shared state, with its key's revision.
    Control(Box<Saved>, i64),
    /// A backend drained (`true`) or undrained on some replica.
    Drain(String, String, bool),
    /// The whole prefix, read again.
    Full(Box<Fetched>),
}

/// Starts following the prefix after `from` (the revision of the read control started with);
/// events go to `to` until it is dropped.
pub(crate) fn spawn(shared: Arc<Shared>, from: i64, to: UnboundedSender<Event>) {
    let runtime = shared.runtime();
    runtime.spawn(async move {
        let mut after = from;
        loop {
            if to.is_closed() {
                return;
            }
            // Not read yet (the cluster was unreachable at start): read everything first, never
            // replay the key's history from revision 1.
            if after > 0 {
                follow(&shared, after, &to).await;
            }
            // The watch ended: read everything again once the cluster answers.
            loop {
                tokio::time::sleep(RETRY).await;
                if to.is_closed() {
                    return;
                }
                match shared.fetch_async().await {
                    Ok(fetched) => {
                        after = fetched.revision;
                        if to.send(Event::Full(Box::new(fetched))).is_err() {
                            return;
                        }
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "shared state: read again failed"),
                }
            }
        }
    });
}

/// Delivers events after revision `after` until the watch fails or a recheck is due.
async fn follow(shared: &Shared, after: i64, to: &UnboundedSender<Event>) {
    let prefix = shared.key("");
    let control_key = shared.key("control");
    let leader_key = shared.key("leader");
    let drains = shared.key("drains/");
    let Ok(client) = shared.run(|client| async move { Ok(client) }).await else {
        return;
    };
    let mut client = client;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(after + 1);
    let mut stream = match client.watch(prefix.as_str(), Some(options)).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "shared state: cannot watch");
            return;
        }
    };
    let recheck = tokio::time::sleep(RECHECK);
    tokio::pin!(recheck);
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            () = &mut recheck => return,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "shared state: the watch failed");
                return;
            }
        };
        if response.canceled() || response.compact_revision() > 0 {
            tracing::warn!(
                compacted = response.compact_revision(),
                "shared state: the watch ended; reading everything again"
            );
            return;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let put = event.event_type() == EventType::Put;
            if kv.key() == leader_key.as_bytes() && !put {
                shared.vacant.notify_one();
            }
            let sent = if kv.key() == control_key.as_bytes() && put {
                match serde_json::from_slice::<Saved>(kv.value()) {
                    Ok(saved) => to.send(Event::Control(Box::new(saved), kv.mod_revision())),
                    Err(e) => {
                        tracing::error!(error = %e, "shared state: the control key is not usable; the live state stays");
                        Ok(())
                    }
                }
            } else if let Some((pool, backend)) = drain_of(&drains, kv.key()) {
                to.send(Event::Drain(pool, backend, put))
            } else {
                Ok(())
            };
            if sent.is_err() {
                return;
            }
        }
    }
}
