//! Open-loop HTTP/1.1 load at a fixed rate, for `benches/load.py`.
//!
//! `open_loop ADDR RATE SECONDS [CONNECTIONS]` sends `GET /` to `ADDR` (`ip:port`) at `RATE`
//! requests a second for `SECONDS`, spread over `CONNECTIONS` keep-alive connections (default
//! 64), and prints `{"p50": s, "p99": s, "p99.9": s, "requests": n, "errors": n}`.
//!
//! Latency is measured from each request's *intended* send time, not from when it was
//! actually sent: a server that falls behind is charged for the queue it causes
//! (coordinated-omission correction, as `oha --latency-correction` and wrk2 do). Requests not
//! sent by the end of the run are dropped, as `oha -z` does. Built with the benchmark so a
//! fresh machine needs no extra load tool (installing `oha` cost minutes of compiling).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

async fn one(sender: &mut Sender) -> bool {
    let request = Request::get("/")
        .header("host", "bench")
        .body(Empty::new())
        .expect("static request");
    match sender.send_request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// One connection's share: requests `index, index + stride, …` of the schedule.
async fn worker(
    addr: SocketAddr,
    start: Instant,
    interval: Duration,
    index: u64,
    stride: u64,
    total: u64,
) -> (Vec<u32>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut sender = connect(addr).await;
    let mut k = index;
    let end = start + interval.mul_f64(total as f64);
    // Like `oha -z`: what could not be sent by the end of the run is not sent (a saturated
    // server is not given extra time), so the run lasts `SECONDS` plus one response.
    while k < total && Instant::now() < end {
        let intended = start + interval.mul_f64(k as f64);
        // A connection that was free early waits for the intended time; the timer may wake
        // it up to a millisecond late, which is not the server's doing, so its latency counts
        // from the actual send. A connection still busy past the intended time counts from
        // the intended time: the queue the server caused.
        let early = Instant::now() < intended;
        if early {
            tokio::time::sleep_until(intended.into()).await;
        }
        let from = if early { Instant::now() } else { intended };
        let ok = match sender.as_mut() {
            Some(s) => one(s).await,
            None => false,
        };
        if ok {
            let micros = from.elapsed().as_micros().min(u128::from(u32::MAX));
            latencies.push(micros as u32);
        } else {
            errors += 1;
            sender = connect(addr).await;
        }
        k += stride;
    }
    (latencies, errors)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: open_loop ADDR RATE SECONDS [CONNECTIONS]";
    let addr: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let rate: f64 = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let seconds: f64 = args.get(3).and_then(|a| a.parse().ok()).expect(usage);
    let connections: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(64);
    assert!(rate > 0.0 && seconds > 0.0 && connections > 0, "{usage}");
    let total = (rate * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut latencies, errors) = runtime.block_on(async {
        let start = Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..connections)
            .map(|c| tokio::spawn(worker(addr, start, interval, c, connections, total)))
            .collect();
        let mut all = Vec::with_capacity(total as usize);
        let mut errors = 0;
        for task in tasks {
            let (l, e) = task.await.expect("worker");
            all.extend(l);
            errors += e;
        }
        (all, errors)
    });
    latencies.sort_unstable();
    println!(
        "{{\"p50\": {}, \"p99\": {}, \"p99.9\": {}, \"requests\": {}, \"errors\": {}}}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        latencies.len(),
        errors
    );
}
