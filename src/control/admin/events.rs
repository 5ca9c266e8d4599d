//! `GET /events`: the dashboard's live stream (server-sent events).
//!
//! A stream opens with a full `snapshot` (info, status, replicas, recent rollouts, history and
//! the last 15 minutes of the series); then once a second a `point` of the series, and
//! `status`, `replicas`, `rollouts` or `history` with the new value whenever one changed; a
//! heartbeat comment every 15 s. A reconnecting page gets a fresh snapshot, so no event ids
//! are replayed. At most [`MAX_STREAMS`] streams are open at once: the next gets 503.
//!
//! One task per admin listener looks once a second (only while a stream is open does it read
//! anything besides the series) and broadcasts to every stream's forwarder; a stream that
//! falls behind gets a fresh snapshot instead of the events it missed.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};

use crate::control::Control;

/// Most event streams open at once.
pub(super) const MAX_STREAMS: usize = 32;
/// Between heartbeat comments.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Entries of the deployment log a snapshot and a `history` event carry.
const HISTORY: usize = 100;
/// Rollouts a snapshot and a `rollouts` event carry, newest first.
const ROLLOUTS: usize = 10;
/// Events buffered per stream before it counts as behind.
const BACKLOG: usize = 64;

/// The streams of one admin listener.
pub(super) struct Events {
    tx: broadcast::Sender<Bytes>,
    slots: Arc<Semaphore>,
}

/// The event name of each part, in the order [`parts`] returns them.
const PARTS: [&str; 4] = ["status", "replicas", "rollouts", "history"];

impl Events {
    /// Starts the once-a-second task on the current runtime.
    pub(super) fn start(control: Arc<Control>) -> Arc<Events> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let events = Arc::new(Events {
            tx,
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
        });
        tokio::spawn(tick(events.clone(), control));
        events
    }

    /// A new stream, or `None` when [`MAX_STREAMS`] are open.
    pub(super) fn open(&self, control: Arc<Control>) -> Option<Stream> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let (out, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(forward(self.tx.subscribe(), out, control));
        Some(Stream { rx, _slot: slot })
    }
}

/// The response body of one stream; dropping it (the client left) frees its slot.
pub struct Stream {
    rx: mpsc::Receiver<Bytes>,
    _slot: OwnedSemaphorePermit,
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

/// Sends one stream its snapshot, then what the tick broadcasts, until the client leaves.
async fn forward(
    mut rx: broadcast::Receiver<Bytes>,
    out: mpsc::Sender<Bytes>,
    control: Arc<Control>,
) {
    if out.send(snapshot(&control).await).await.is_err() {
        return;
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        let next = tokio::select! {
            received = rx.recv() => match received {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => snapshot(&control).await,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => Bytes::from_static(b": heartbeat\n\n"),
        };
        if out.send(next).await.is_err() {
            return;
        }
    }
}

/// Everything the page shows, as one `snapshot` event.
async fn snapshot(control: &Control) -> Bytes {
    let [status, replicas, rollouts, history] = parts(control).await;
    let tallies = &control.metrics().tallies;
    let (series, started) = {
        let series = tallies.series.lock().unwrap_or_else(|e| e.into_inner());
        (series.to_json(), series.started)
    };
    let body = json!({
        "info": info(started),
        "status": status,
        "replicas": replicas,
        "rollouts": rollouts,
        "history": history,
        "series": series,
    });
    frame("snapshot", &body.to_string())
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

/// Status, replicas, the recent rollouts and the deployment log, as the API answers them.
async fn parts(control: &Control) -> [Value; 4] {
    let status = super::views::status(&control.status().await);
    let super::Answer(_, replicas) = super::replicas::list(control).await;
    let rollouts = json!(control.rollouts(ROLLOUTS).await);
    let query = format!("limit={HISTORY}");
    let super::Answer(_, history) = super::history(Some(&query), control).await;
    [status, replicas, rollouts, history]
}

/// Once a second: the series point, and each part that changed (read only while a stream is
/// open).
async fn tick(events: Arc<Events>, control: Arc<Control>) {
    // The last value of each part sent, to send a part only when it changed.
    let mut seen: [String; 4] = Default::default();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if events.tx.receiver_count() == 0 {
            seen = Default::default();
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
        let values = parts(&control).await;
        for (i, value) in values.iter().enumerate() {
            let text = value.to_string();
            if seen[i] != text {
                let _ = events.tx.send(frame(PARTS[i], &text));
                seen[i] = text;
            }
        }
    }
}
