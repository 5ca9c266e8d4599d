//! Nothing dropped: a slow request in flight survives a switch, a drain and a SIGTERM; the
//! process exits as soon as nothing is in flight; an upgraded (WebSocket) connection works
//! end to end.

mod common;

use std::time::{Duration, Instant};

use common::{blue_green, poll_until, BlueGreen, Client, Reply, TestProxy, Upstream, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts `GET /slow/3000` on its own connection and waits until `upstream` has it.
async fn slow_request_in_flight(
    addr: std::net::SocketAddr,
    upstream: &Upstream,
) -> tokio::task::JoinHandle<Reply> {
    let before = upstream.requests();
    let task = tokio::spawn(async move { common::get(addr, "/slow/3000").await });
    // The upstream counts a request once its body is read, before it sleeps.
    poll_until(
        "the slow request to reach the upstream",
        DEADLINE,
        || async { upstream.requests() > before },
    )
    .await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_survives_a_switch_and_later_requests_go_to_the_new_pool() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    let slow = slow_request_in_flight(bg.proxy.addr, &bg.blue).await;
    bg.proxy.switch("green").await;
    let mut client = Client::connect(bg.proxy.addr).await;
    for _ in 0..20 {
        assert_eq!(client.get("/").await.text(), "green");
    }
    let reply = slow.await.unwrap();
    assert_eq!((reply.status, reply.text()), (200, "blue".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_finishes_its_request_and_gets_no_new_ones() {
    let (b1, b2) = (Upstream::start("b1").await, Upstream::start("b2").await);
    let rest = common::pools_toml(&[("blue", &[b1.addr, b2.addr])], "blue = 100");
    let proxy = TestProxy::start("", &rest).await;
    // Round-robin: the first request goes to b1.
    let slow = slow_request_in_flight(proxy.addr, &b1).await;
    let path = format!("/backends/blue/{}/drain", b1.addr);
    let reply = proxy.admin("POST", &path, "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        (body["drained"].clone(), body["inflight"].clone()),
        (true.into(), 1.into())
    );

    let status = proxy.status().await;
    let entry = &status["pools"]["blue"]["backends"][0];
    assert_eq!(
        (entry["state"].as_str(), entry["inflight"].as_i64()),
        (Some("drained"), Some(1))
    );
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..20 {
        assert_eq!(client.get("/").await.text(), "b2");
    }
    let reply = slow.await.unwrap();
    assert_eq!((reply.status, reply.text()), (200, "b1".to_string()));

    let undrain = format!("/backends/blue/{}/undrain", b1.addr);
    assert_eq!(proxy.admin("POST", &undrain, "").await.status, 200);
    let served: Vec<String> =
        futures_util::future::join_all((0..4).map(|_| common::get(proxy.addr, "/")))
            .await
            .into_iter()
            .map(|r| r.text())
            .collect();
    assert!(
        served.iter().any(|s| s == "b1"),
        "undrained b1 serves again: {served:?}"
    );
    let actions: Vec<String> = proxy
        .history()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &actions[..2],
        ["undrain", "drain"],
        "newest first: {actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_drain_requests_are_refused_and_change_nothing() {
    let bg = blue_green("blue = 50\ngreen = 50", "").await;
    let cases = [
        (
            "POST",
            "/backends/purple/127.0.0.1:1/drain",
            404,
            "no pool named",
        ),
        (
            "POST",
            "/backends/blue/127.0.0.1:1/drain",
            404,
            "has no backend",
        ),
        (
            "GET",
            &format!("/backends/blue/{}/drain", bg.blue.addr),
            405,
            "not allowed",
        ),
        (
            "POST",
            &format!("/backends/blue/{}/restart", bg.blue.addr),
            404,
            "no such endpoint",
        ),
    ];
    for (method, path, code, says) in cases {
        let reply = bg.proxy.admin(method, path, "").await;
        assert_eq!(reply.status, code, "{method} {path}");
        assert!(
            reply.text().contains(says),
            "{method} {path}: {}",
            reply.text()
        );
    }
    let status = bg.proxy.status().await;
    assert_eq!(status["pools"]["blue"]["backends"][0]["state"], "up");
    assert!(bg
        .proxy
        .history()
        .await
        .iter()
        .all(|e| e["action"] != "drain"));
}

/// Blue/green at 100/0 with a 3 s request in flight on blue, then SIGTERM; returns once new
/// connections are refused (the graceful shutdown has begun).
async fn sigterm_with_a_slow_request_in_flight() -> (BlueGreen, tokio::task::JoinHandle<Reply>) {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    let slow = slow_request_in_flight(bg.proxy.addr, &bg.blue).await;
    bg.proxy.signal(libc::SIGTERM);
    let addr = bg.proxy.addr;
    poll_until(
        "new connections to be refused",
        Duration::from_secs(2),
        || async move { TcpStream::connect(addr).await.is_err() },
    )
    .await;
    (bg, slow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_refuses_new_ones_and_exits_promptly() {
    let (mut bg, slow) = sigterm_with_a_slow_request_in_flight().await;
    let reply = slow.await.unwrap();
    let finished = Instant::now();
    assert_eq!((reply.status, reply.text()), (200, "blue".to_string()));
    assert_eq!(reply.header("connection").as_deref(), Some("close"));
    let code = bg.proxy.wait_exit(DEADLINE).await;
    let after = finished.elapsed();
    assert_eq!(code, Some(0), "{}", bg.proxy.stderr());
    assert!(
        after < Duration::from_secs(1),
        "exited {after:?} after the last request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once_without_waiting_for_the_request() {
    let (mut bg, slow) = sigterm_with_a_slow_request_in_flight().await;
    let second = Instant::now();
    bg.proxy.signal(libc::SIGTERM);
    let code = bg.proxy.wait_exit(DEADLINE).await;
    let took = second.elapsed();
    assert_eq!(code, Some(0), "{}", bg.proxy.stderr());
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} after the second signal"
    );
    // The harness's client panics on a cut response: the task's error is the cut.
    assert!(
        slow.await.is_err(),
        "the 3 s request was cut, not completed"
    );
    assert!(bg.proxy.stderr().contains("second signal: exiting now"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_at_once_even_with_idle_clients() {
    let mut bg = blue_green("blue = 100\ngreen = 0", "").await;
    let mut idle = Client::connect(bg.proxy.addr).await;
    assert_eq!(idle.get("/").await.status, 200);
    let signalled = Instant::now();
    bg.proxy.signal(libc::SIGTERM);
    let code = bg.proxy.wait_exit(DEADLINE).await;
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "{}", bg.proxy.stderr());
    assert!(took < Duration::from_secs(1), "took {took:?} to exit");
}

/// Opens `GET /ws` through the proxy and reads the 101 head.
async fn open_websocket(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    stream
}

/// A masked text frame "hello", as a browser sends it.
fn hello_frame() -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Sends a frame and reads its echo; `false` when the connection was closed instead.
async fn echo(stream: &mut TcpStream, frame: &[u8]) -> bool {
    if stream.write_all(frame).await.is_err() {
        return false;
    }
    let mut echoed = vec![0u8; frame.len()];
    match tokio::time::timeout(DEADLINE, stream.read_exact(&mut echoed)).await {
        Ok(Ok(_)) => {
            assert_eq!(echoed, frame);
            true
        }
        Ok(Err(_)) => false,
        Err(_) => panic!("no echo and no close within {DEADLINE:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_passes_through_and_echoes() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    let mut stream = open_websocket(bg.proxy.addr).await;
    for _ in 0..3 {
        assert!(echo(&mut stream, &hello_frame()).await, "echoed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_to_a_drained_backend_is_closed_after_the_drain_timeout() {
    let bg = blue_green(
        "blue = 50\ngreen = 50",
        "[shutdown]\ndrain-timeout = \"1s\"",
    )
    .await;
    // The pool is drawn at random per request: open (at most 100) until one lands on blue.
    let mut on_blue = None;
    for _ in 0..100 {
        let before = bg.blue.requests();
        let stream = open_websocket(bg.proxy.addr).await;
        if bg.blue.requests() > before {
            on_blue = Some(stream);
            break;
        }
    }
    let mut stream = on_blue.expect("a WebSocket on blue");
    assert!(echo(&mut stream, &hello_frame()).await);
    let path = format!("/backends/blue/{}/drain", bg.blue.addr);
    // Stamped before the call, so it is no later than the proxy's own drain time.
    let drained = Instant::now();
    assert_eq!(bg.proxy.admin("POST", &path, "").await.status, 200);
    assert!(
        echo(&mut stream, &hello_frame()).await,
        "still open inside the drain timeout"
    );
    let mut open = true;
    while open && drained.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(50)).await;
        open = echo(&mut stream, &hello_frame()).await;
    }
    assert!(!open, "the upgraded connection was closed");
    let after = drained.elapsed();
    assert!(
        after >= Duration::from_secs(1),
        "closed after {after:?}, before the timeout"
    );
}
