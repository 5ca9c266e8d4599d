//! `GET /events`: the dashboard's live stream (server-sent events).
//!
//! A stream opens with a full `snapshot` (info, status, replicas, recent rollouts, history and
//! the last 15 minutes of the series); then once a second a `point` of the series, and
//! `status`, `replicas`, `rollouts` or `history` with the new value whenever one changed; a
//! heartbeat comment every 15 s. A reconnecting page gets a fresh snapshot, so no event ids
//! are replayed. At most [`MAX_STREAMS`] streams are open at once: the next gets 503.
//!
//! One task per admin listener looks once a second while a stream is open and broadcasts to
//! every stream's forwarder; it keeps what it read, so a new stream's snapshot costs no read
//! of its own. The deployment log (a file, or etcd) is read again only when the version, the
//! rollout's revision or a drain changed, or every 5 s (refused writes change none of those);
//! the replicas every 2 s. A stream that falls behind skips to a fresh snapshot; one that
//! reads nothing for 30 s is ended, freeing its slot.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};

use crate::control::Control;

/// Most event streams open at once.
pub(super) const MAX_STREAMS: usize = 32;
/// Between heartbeat comments.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// A stream that takes nothing for this long is ended.
const STALLED: Duration = Duration::from_secs(30);
/// Entries of the deployment log a snapshot and a `history` event carry.
const HISTORY: usize = 100;
/// Rollouts a snapshot and a `rollouts` event carry, newest first.
const ROLLOUTS: usize = 10;
/// Events broadcast and not yet taken by every stream; a stream further behind resyncs.
const BROADCAST: usize = 64;
/// Frames queued per stream towards its connection.
const QUEUED: usize = 8;
/// The longest the deployment log and the replicas go unread while a stream is open.
const HISTORY_EVERY: Duration = Duration::from_secs(5);
const REPLICAS_EVERY: Duration = Duration::from_secs(2);

/// The event name of each part, in the order of [`Parts`].
const PARTS: [&str; 4] = ["status", "replicas", "rollouts", "history"];

/// Status, replicas, the recent rollouts and the deployment log as JSON texts, and when each
/// was read.
#[derive(Clone)]
struct Parts {
    texts: [String; 4],
    read: [Instant; 4],
    /// What the log is re-read on: the version, the rollout's revision, the drains.
    marks: String,
}

/// The streams of one admin listener.
pub(super) struct Events {
    tx: broadcast::Sender<Bytes>,
    slots: Arc<Semaphore>,
    /// What the tick read last.
    latest: Mutex<Option<Parts>>,
}

impl Events {
    /// Starts the once-a-second task on the current runtime.
    pub(super) fn start(control: Arc<Control>) -> Arc<Events> {
        let (tx, _) = broadcast::channel(BROADCAST);
        let events = Arc::new(Events {
            tx,
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
            latest: Mutex::new(None),
        });
        tokio::spawn(tick(events.clone(), control));
        events
    }

    /// A new stream, or `None` when [`MAX_STREAMS`] are open.
    pub(super) fn open(self: &Arc<Self>, control: Arc<Control>) -> Option<Stream> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let (out, rx) = mpsc::channel(QUEUED);
        // Subscribed before the snapshot is read: nothing after it is missed.
        let updates = self.tx.subscribe();
        tokio::spawn(forward(self.clone(), updates, out, control, slot));
        Some(Stream { rx })
    }

    fn latest(&self) -> Option<Parts> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `parts` the latest and broadcasts each part that differs from the latest before,
    /// in one step: every stream's snapshot is followed by every change after it. Parts read
    /// before the latest were (a slow read finishing after a newer one) are dropped. Returns
    /// the latest parts.
    fn publish(&self, parts: Parts) -> Parts {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(newer) = latest.as_ref().filter(|l| l.read[0] > parts.read[0]) {
            return newer.clone();
        }
        for (i, text) in parts.texts.iter().enumerate() {
            if latest.as_ref().is_none_or(|b| b.texts[i] != *text) {
                let _ = self.tx.send(frame(PARTS[i], text));
            }
        }
        *latest = Some(parts.clone());
        parts
    }
}

/// The response body of one stream: what its forwarder queued.
pub struct Stream {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// One SSE frame.
fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Sends one stream its snapshot, then what the tick broadcasts, until the client leaves or
/// stalls; its slot is freed then.
async fn forward(
    events: Arc<Events>,
    mut updates: broadcast::Receiver<Bytes>,
    out: mpsc::Sender<Bytes>,
    control: Arc<Control>,
    _slot: OwnedSemaphorePermit,
) {
    let mut next = snapshot(&events, &control).await;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        match tokio::time::timeout(STALLED, out.send(next)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return, // the client left
            Err(_) => {
                tracing::debug!("an event stream took nothing for {STALLED:?}; ended");
                return;
            }
        }
        next = tokio::select! {
            received = updates.recv() => match received {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // What it missed is older than what a snapshot says now.
                    updates = updates.resubscribe();
                    snapshot(&events, &control).await
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => Bytes::from_static(b": heartbeat\n\n"),
        };
    }
}

/// Everything the page shows, as one `snapshot` event: the parts last published (read and
/// published now when they are over 2 s old), the series and the uptime.
async fn snapshot(events: &Events, control: &Control) -> Bytes {
    let parts = match events.latest() {
        Some(p) if p.read[0].elapsed() < Duration::from_secs(2) => p,
        _ => events.publish(read(control, None).await),
    };
    let (series, started) = {
        let series = control.metrics().tallies.series.lock();
        let series = series.unwrap_or_else(|e| e.into_inner());
        (series.to_json(), series.started)
    };
    let [status, replicas, rollouts, history] = &parts.texts;
    let body = format!(
        "{{\"info\":{},\"status\":{status},\"replicas\":{replicas},\"rollouts\":{rollouts},\"history\":{history},\"series\":{series}}}",
        info(started)
    );
    frame("snapshot", &body)
}

/// The software version and uptime.
fn info(started: std::time::SystemTime) -> Value {
    json!({
        "software": env!("CARGO_PKG_VERSION"),
        "started": humantime::format_rfc3339_seconds(started).to_string(),
        "uptime_s": uptime(started),
    })
}

fn uptime(started: std::time::SystemTime) -> u64 {
    started.elapsed().map_or(0, |d| d.as_secs())
}

/// Reads the parts as the API answers them; with `before`, the log and the replicas only when
/// due (see the module's doc), else kept.
async fn read(control: &Control, before: Option<&Parts>) -> Parts {
    let now = Instant::now();
    let status = super::views::status(&control.status().await);
    let rollouts = json!(control.rollouts(ROLLOUTS).await);
    let marks = marks(&status, &rollouts);
    let due = |i: usize, every: Duration| match before {
        None => true,
        Some(b) => {
            now.saturating_duration_since(b.read[i]) >= every || (i == 3 && b.marks != marks)
        }
    };
    let mut parts = match before {
        Some(b) => b.clone(),
        None => Parts {
            texts: Default::default(),
            read: [now; 4],
            marks: String::new(),
        },
    };
    if due(1, REPLICAS_EVERY) {
        // While etcd does not answer, the page keeps the replicas it knew (as when polling).
        let super::Answer(status, replicas) = super::replicas::list(control).await;
        if status.is_success() || before.is_none() {
            (parts.texts[1], parts.read[1]) = (replicas.to_string(), now);
        }
    }
    if due(3, HISTORY_EVERY) {
        let query = format!("limit={HISTORY}");
        let super::Answer(_, history) = super::history(Some(&query), control).await;
        (parts.texts[3], parts.read[3]) = (history.to_string(), now);
    }
    (parts.texts[0], parts.read[0]) = (status.to_string(), now);
    (parts.texts[2], parts.read[2]) = (rollouts.to_string(), now);
    parts.marks = marks;
    parts
}

/// What a new deployment-log entry comes with: the version, the newest rollout's revision,
/// which backends are drained.
fn marks(status: &Value, rollouts: &Value) -> String {
    let drained: Vec<&Value> = (status["pools"].as_object().into_iter())
        .flat_map(|pools| pools.values())
        .flat_map(|pool| pool["backends"].as_array().into_iter().flatten())
        .map(|backend| &backend["drained"])
        .collect();
    let rollout = &rollouts[0];
    json!([
        status["version"],
        rollout["id"],
        rollout["revision"],
        drained
    ])
    .to_string()
}

/// Once a second while a stream is open: the series point; and, on a task of its own so a
/// slow read (etcd, a long log) never delays the points, the parts, published when changed.
async fn tick(events: Arc<Events>, control: Arc<Control>) {
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if events.tx.receiver_count() == 0 {
            continue;
        }
        let (point, started) = {
            let series = control.metrics().tallies.series.lock();
            let series = series.unwrap_or_else(|e| e.into_inner());
            (series.last_json(), series.started)
        };
        let mut point = point.unwrap_or_else(|| json!({ "pools": {} }));
        point["uptime_s"] = uptime(started).into();
        let _ = events.tx.send(frame("point", &point.to_string()));
        if reading.swap(true, std::sync::atomic::Ordering::AcqRel) {
            continue; // the last read is still going
        }
        let (events, control, reading) = (events.clone(), control.clone(), reading.clone());
        tokio::spawn(async move {
            let _done = Done(reading);
            let before = events.latest();
            let parts = read(&control, before.as_ref()).await;
            events.publish(parts);
        });
    }
}

/// Clears the tick's "reading" flag when a read ends, however it ends.
struct Done(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}
