//! Steady background load for rollout tests: a few keep-alive connections sending `GET /` at
//! a fixed total rate, counting answers by `x-upstream` and status. Bounded in time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long any load may run.
const LIMIT: Duration = Duration::from_secs(90);
const WORKERS: u32 = 5;

/// Answers seen: `(x-upstream or "-", status)` → count.
pub type Seen = Arc<Mutex<BTreeMap<(String, u16), usize>>>;

/// Running load; stops when dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub seen: Seen,
}

impl Load {
    /// `rate` requests per second in total to `addr`, without cookies (each request is its own
    /// user, so the split decides).
    pub fn start(addr: SocketAddr, rate: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let per_worker = Duration::from_secs_f64(f64::from(WORKERS) / f64::from(rate.max(1)));
        for _ in 0..WORKERS.min(rate.max(1)) {
            let (stop, seen) = (stop.clone(), seen.clone());
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(per_worker);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sender = None;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < LIMIT {
                    tick.tick().await;
                    if sender.is_none() {
                        sender = connect(addr).await;
                    }
                    let Some(s) = sender.as_mut() else { continue };
                    match send(s).await {
                        Some(key) => *seen.lock().unwrap().entry(key).or_default() += 1,
                        None => sender = None,
                    }
                }
            });
        }
        Load { stop, seen }
    }

    /// Requests answered by `upstream` so far.
    pub fn by(&self, upstream: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|((u, _), _)| u == upstream)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

async fn send(sender: &mut Sender) -> Option<(String, u16)> {
    sender.ready().await.ok()?;
    let request = hyper::Request::get("/")
        .header("host", "test.local")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let upstream = response
        .headers()
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    response.into_body().collect().await.ok()?;
    Some((upstream, status))
}
