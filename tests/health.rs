//! Backend health over real sockets: active checks take a failing backend out and bring it
//! back, a flapping backend fails no client request, a pool with every backend down fails
//! over (or fails, when told to), failed connects are retried once and only when nothing was
//! sent, and consecutive failures eject a backend.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, poll_until, Client, TestProxy, Upstream, DEADLINE};
use tokio::net::TcpListener;

fn backend_state(status: &serde_json::Value, pool: &str, addr: SocketAddr) -> String {
    status["pools"][pool]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == addr.to_string())
        .map(|b| b["state"].as_str().unwrap().to_string())
        .unwrap()
}

async fn wait_state(proxy: &TestProxy, pool: &str, addr: SocketAddr, want: &str) -> Duration {
    poll_until(&format!("{addr} to be {want}"), DEADLINE, || async {
        backend_state(&proxy.status().await, pool, addr) == want
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_stops_getting_requests_in_time_and_gets_them_back() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let rest = format!(
        "[pools.blue]\nbackends = [\"{}\", \"{}\"]\n\
         [pools.blue.health-check]\npath = \"/healthz\"\ninterval = \"200ms\"\n\
         unhealthy-threshold = 3\nhealthy-threshold = 2\n[split]\nblue = 100\n",
        a.addr, b.addr
    );
    let proxy = TestProxy::start("", &rest).await;
    let mut client = Client::connect(proxy.addr).await;
    // The first check decides at once; the thresholds apply from then on.
    poll_until("a's first check", DEADLINE, || async {
        proxy.status().await["pools"]["blue"]["backends"][0]["checks"] != 0
    })
    .await;

    a.set_healthy(false);
    let detected = wait_state(&proxy, "blue", a.addr, "down").await;
    eprintln!("detection took {detected:?} (interval 200 ms, unhealthy-threshold 3)");
    // Three failed checks 200 ms apart: about 400–600 ms. A bug that flipped on the first
    // failure would show at most ~200 ms, so 300 ms proves the threshold; the bound is
    // interval × threshold + one interval = 800 ms, plus scheduling slack.
    assert!(
        detected >= Duration::from_millis(300),
        "down after {detected:?}: the threshold was not honoured"
    );
    assert!(
        detected < Duration::from_millis(800 + 400),
        "detection took {detected:?}"
    );
    let before = a.requests();
    for _ in 0..40 {
        assert_eq!(client.get("/").await.text(), "b");
    }
    assert_eq!(a.requests(), before, "a down backend got requests");

    a.set_healthy(true);
    wait_state(&proxy, "blue", a.addr, "up").await;
    let mut served_by_a = 0;
    for _ in 0..40 {
        served_by_a += usize::from(client.get("/").await.text() == "a");
    }
    assert_eq!(served_by_a, 20, "a recovered backend gets its share back");
    assert_eq!(
        proxy.stderr().matches("backend is down").count(),
        1,
        "each state change is logged once"
    );
    assert_eq!(proxy.stderr().matches("backend is up").count(), 1);
}

/// Serves `name` on `addr` for `period`, then refuses connections (listener and open
/// connections closed) for `period`, until `stop` is set.
async fn flap(addr: SocketAddr, period: Duration, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let listener = TcpListener::bind(addr)
            .await
            .expect("rebind the flapping port");
        let mut connections = tokio::task::JoinSet::new();
        let until = Instant::now() + period;
        while let Ok(Ok((stream, _))) =
            tokio::time::timeout_at(until.into(), listener.accept()).await
        {
            connections.spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"flappy")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
        drop(listener);
        connections.shutdown().await;
        tokio::time::sleep(period).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_backend_never_fails_a_client_request() {
    let steady = Upstream::start("steady").await;
    let flappy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = tokio::spawn(flap(flappy, Duration::from_secs(1), stop.clone()));
    let rest = format!(
        "[pools.blue]\nbackends = [\"{flappy}\", \"{}\"]\n\
         [pools.blue.health-check]\ntype = \"tcp\"\ninterval = \"200ms\"\n\
         unhealthy-threshold = 2\nhealthy-threshold = 2\n[split]\nblue = 100\n",
        steady.addr
    );
    let proxy = TestProxy::start("", &rest).await;

    let (mut ok, mut failed, mut by_flappy) = (0, 0, 0);
    let mut client = Client::connect(proxy.addr).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) && ok + failed < 20_000 {
        let reply = client.get("/").await;
        if reply.status == 200 {
            ok += 1;
            by_flappy += usize::from(reply.text() == "flappy");
        } else {
            failed += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    flapper.abort();
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(by_flappy > 0, "the flapping backend served while it was up");
    assert!(ok > 100, "only {ok} requests in 5 s");
}

fn blue_green_checked(blue: &[SocketAddr], green: SocketAddr, extra_blue: &str) -> String {
    let list: Vec<String> = blue.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[pools.blue]\nbackends = [{}]\n{extra_blue}\n\
         [pools.blue.health-check]\ntype = \"tcp\"\ninterval = \"100ms\"\nunhealthy-threshold = 1\n\
         [pools.green]\nbackends = [\"{green}\"]\n[split]\nblue = 90\ngreen = 10\n",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_of_blue_down_green_answers_everything_and_the_log_says_so() {
    let (b1, b2) = (Upstream::start("b1").await, Upstream::start("b2").await);
    let green = Upstream::start("green").await;
    let rest = blue_green_checked(&[b1.addr, b2.addr], green.addr, "");
    let proxy = TestProxy::start("", &rest).await;
    drop((b1, b2));
    poll_until("pool blue to be down", DEADLINE, || async {
        proxy.status().await["pools"]["blue"]["up"] == false
    })
    .await;

    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..100 {
        let reply = client.get("/").await;
        assert_eq!((reply.status, reply.text()), (200, "green".to_string()));
    }
    // The entry is written by the health supervisor's tick, after the status flipped.
    let pool_down = || async {
        let history = proxy.history().await;
        history.into_iter().find(|e| e["action"] == "pool-down")
    };
    poll_until("a pool-down entry", DEADLINE, || async {
        pool_down().await.is_some()
    })
    .await;
    let down = pool_down().await.expect("found above");
    assert_eq!(down["actor"], "health");
    assert!(
        down["message"].as_str().unwrap().contains("fails over"),
        "{down}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_pool_down_fail_blues_share_gets_503() {
    let b1 = Upstream::start("b1").await;
    let green = Upstream::start("green").await;
    let rest = blue_green_checked(&[b1.addr], green.addr, "on-pool-down = \"fail\"");
    let proxy = TestProxy::start("", &rest).await;
    drop(b1);
    poll_until("pool blue to be down", DEADLINE, || async {
        proxy.status().await["pools"]["blue"]["up"] == false
    })
    .await;

    let (mut unavailable, mut by_green) = (0, 0);
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..400 {
        let reply = client.get("/").await;
        match reply.status {
            503 => {
                assert!(
                    reply.text().contains("pool blue has no backend up"),
                    "{}",
                    reply.text()
                );
                unavailable += 1;
            }
            200 => {
                assert_eq!(reply.text(), "green");
                by_green += 1;
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    // 90 % of 400 = 360 expected at 503; the key is random, so allow a wide band.
    assert!(
        (300..=400).contains(&unavailable),
        "{unavailable} answered 503"
    );
    assert!(by_green > 0, "green kept its own share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_is_retried_on_another_backend_for_every_method() {
    let live = Upstream::start("live").await;
    let (_reserved, dead) = common::dead_backend();
    let dead = dead.to_string();
    let rest = format!(
        "[pools.blue]\nbackends = [\"{dead}\", \"{}\"]\n[pools.blue.outlier]\nconsecutive-failures = 0\n\
         [split]\nblue = 100\n",
        live.addr
    );
    let proxy = TestProxy::start("", &rest).await;
    let mut client = Client::connect(proxy.addr).await;
    for i in 0..20 {
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let body = http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::from(
            format!("n{i}"),
        )));
        let reply = client.send(common::request(method, "/echo", body)).await;
        assert_eq!(reply.status, 200, "{method} #{i}: {}", reply.text());
        assert_eq!(
            reply.text(),
            format!("n{i}"),
            "the body arrived whole on the retry"
        );
    }
    assert_eq!(live.requests(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_upstream_received_is_never_retried() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let rest = common::pools_toml(&[("blue", &[a.addr, b.addr])], "blue = 100");
    let proxy = TestProxy::start("read-timeout = \"300ms\"", &rest).await;
    let body = http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::new()));
    let reply = Client::connect(proxy.addr)
        .await
        .send(common::request("POST", "/slow/1500", body))
        .await;
    assert_eq!(reply.status, 504);
    assert_eq!(
        a.requests() + b.requests(),
        1,
        "the POST reached exactly one upstream once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_eject_a_backend_but_never_more_than_the_allowed_share() {
    let live = Upstream::start("live").await;
    let (_reserved, dead) = common::dead_backend();
    let dead = dead.to_string();
    let rest = format!(
        "[pools.blue]\nbackends = [\"{dead}\", \"{}\"]\n\
         [pools.blue.outlier]\nconsecutive-failures = 3\nbase-ejection = \"30s\"\nmax-ejected-percent = 50\n\
         [split]\nblue = 100\n",
        live.addr
    );
    let proxy = TestProxy::start("", &rest).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..10 {
        assert_eq!(client.get("/").await.status, 200);
    }
    let status = proxy.status().await;
    assert_eq!(
        backend_state(&status, "blue", dead.parse().unwrap()),
        "ejected"
    );
    assert!(proxy
        .stderr()
        .contains("backend ejected after consecutive failures"));

    // A one-backend pool may not eject its only backend (50 % cap): it keeps trying.
    let (_lone_reserved, lone) = common::dead_backend();
    let lone = lone.to_string();
    let rest = format!(
        "[pools.blue]\nbackends = [\"{lone}\"]\n[pools.blue.outlier]\nconsecutive-failures = 1\n\
         [split]\nblue = 100\n"
    );
    let proxy = TestProxy::start("", &rest).await;
    for _ in 0..5 {
        assert_eq!(common::get(proxy.addr, "/").await.status, 502);
    }
    assert_eq!(
        backend_state(&proxy.status().await, "blue", lone.parse().unwrap()),
        "up"
    );
}
