//! Guarantee 1, live on ack: after a 200 from a write, every request a client starts is
//! routed by the new split.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{request, Client};
use http_body_util::{BodyExt, Full};

struct Served {
    started: Instant,
    finished: Instant,
    pool: Option<String>,
    status: u16,
}

struct Switch {
    sent: Instant,
    acked: Instant,
    target: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_started_after_a_switch_ack_goes_to_the_target_pool() {
    let common::BlueGreen {
        proxy,
        blue: _blue,
        green: _green,
    } = common::blue_green("blue = 100", "").await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(Mutex::new(Vec::new()));

    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served, addr) = (stop.clone(), served.clone(), proxy.addr);
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let reply = client.get("/").await;
                served.lock().unwrap().push(Served {
                    started,
                    finished: Instant::now(),
                    pool: reply.header("x-upstream"),
                    status: reply.status,
                });
            }
        }));
    }
    let mut admin = Client::connect(proxy.admin).await;
    let mut switches = Vec::new();
    for i in 0..200 {
        let target = if i % 2 == 0 { "green" } else { "blue" };
        let body = format!("{{\"to\": \"{target}\"}}");
        let sent = Instant::now();
        let mut switch = request("POST", "/switch", Full::new(body.into()).boxed());
        let headers = switch.headers_mut();
        headers.insert("host", proxy.admin.to_string().parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let reply = admin.send(switch).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let acked = Instant::now();
        switches.push(Switch {
            sent,
            acked,
            target,
        });
        // Let a few requests start and finish under this split before the next switch.
        let deadline = acked + common::DEADLINE;
        while served
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.started >= acked)
            .count()
            < 4
        {
            assert!(Instant::now() < deadline, "clients stalled");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let served = served.lock().unwrap();
    let mut checked = 0;
    for s in served.iter() {
        assert_eq!(s.status, 200, "no request may fail during switches");
        // The last switch acknowledged before this request started. A request still in flight
        // when the next switch was sent may be routed by that newer split, which is allowed;
        // one that finished before it must have been routed by this one.
        let Some(i) = switches.iter().rposition(|w| w.acked <= s.started) else {
            continue;
        };
        if switches
            .get(i + 1)
            .is_some_and(|next| next.sent <= s.finished)
        {
            continue;
        }
        checked += 1;
        assert_eq!(
            s.pool.as_deref(),
            Some(switches[i].target),
            "routed by a split older than the last ack: started {:?} after ack {i}",
            s.started - switches[i].acked
        );
    }
    assert!(
        checked >= 600,
        "only {checked} requests fell cleanly after an ack; the test proves too little"
    );
}
