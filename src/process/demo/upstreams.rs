//! The demo's blue and green upstreams. Each answers `"<colour> <path>\n"`; `/_demo/fail?percent=N`
//! (asked of the upstream directly) makes it answer 500 to N % of its requests from then on,
//! evenly spread, so a rollout has a faulty canary to catch.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// How an upstream misbehaves: the percent of requests answered 500, and a request counter.
#[derive(Debug, Default)]
struct Faults {
    percent: AtomicU64,
    count: AtomicU64,
}

impl Faults {
    /// Whether the next request fails: exactly `percent` of every 100, evenly spread.
    fn next_fails(&self) -> bool {
        let p = self.percent.load(Ordering::Relaxed);
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        p > 0 && (n + 1) * p / 100 != n * p / 100
    }
}

/// Serves `colour` on `listener` until the runtime stops.
pub(super) async fn serve_colour(colour: &'static str, listener: TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(colour, error = %e, "demo upstream failed"),
    };
    let faults = Arc::new(Faults::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let faults = faults.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let faults = faults.clone();
                async move { Ok::<_, Infallible>(answer(colour, &req, &faults)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "demo connection ended");
            }
        });
    }
}

fn answer(colour: &'static str, req: &Request<Incoming>, faults: &Faults) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let (status, body) = if path == "/_demo/fail" {
        let percent = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("percent="))
            .and_then(|p| p.parse::<u64>().ok())
            .filter(|p| *p <= 100);
        match percent {
            Some(p) => {
                faults.percent.store(p, Ordering::Relaxed);
                (200, format!("{colour} now fails {p} % of its requests\n"))
            }
            None => (
                400,
                "use /_demo/fail?percent=N with N from 0 to 100\n".to_string(),
            ),
        }
    } else if faults.next_fails() {
        (500, format!("{colour} {path}: injected failure\n"))
    } else {
        (200, format!("{colour} {path}\n"))
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .header("x-demo-colour", colour)
        .body(Full::new(Bytes::from(body)))
        .expect("static response is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_percent_fails_exactly_that_share_evenly() {
        let faults = Faults::default();
        faults.percent.store(20, Ordering::Relaxed);
        let fails: Vec<bool> = (0..100).map(|_| faults.next_fails()).collect();
        assert_eq!(fails.iter().filter(|f| **f).count(), 20);
        assert!(fails
            .chunks(5)
            .all(|c| c.iter().filter(|f| **f).count() == 1));
        faults.percent.store(0, Ordering::Relaxed);
        assert!(!(0..100).any(|_| faults.next_fails()));
    }
}
