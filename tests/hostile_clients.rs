//! Clients that misbehave on the own HTTP/1 path (issue 24): one that stops reading (its
//! writes time out, on HTTP/1, in a tunnel and on an HTTP/2 stream), one that half-closes after
//! its request (answered), upgrades asked without the `upgrade` option or with early data,
//! HTTP/1.0 clients, and a folded override cookie. Real binary, real sockets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::raw::{exchange, RecordingUpstream};
use common::{poll_until, pools_toml, TestProxy, Upstream, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WRITE_TIMEOUT: &str = "client-write-timeout = \"1s\"\n";

async fn proxy_to(addr: SocketAddr, proxy_keys: &str) -> TestProxy {
    TestProxy::start(proxy_keys, &pools_toml(&[("blue", &[addr])], "blue = 100")).await
}

/// The first backend of pool blue's requests in flight, as the status says.
async fn blue_in_flight(proxy: &TestProxy) -> i64 {
    proxy.status().await["pools"]["blue"]["backends"][0]["inflight"]
        .as_i64()
        .unwrap_or(-1)
}

/// Waits until blue has one request in flight, then until it has none (the stalled client's
/// connection was closed): the in-flight count stays pinned without a client write timeout.
async fn released_after_the_stall(proxy: &TestProxy) {
    poll_until("the request in flight", DEADLINE, || async {
        blue_in_flight(proxy).await == 1
    })
    .await;
    poll_until("the stalled request released", DEADLINE, || async {
        blue_in_flight(proxy).await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_after_the_client_write_timeout() {
    let blue = Upstream::start("blue").await;
    let proxy = proxy_to(blue.addr, WRITE_TIMEOUT).await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"GET /bulk/268435456 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    released_after_the_stall(&proxy).await;
    // The connection was closed: reading what was buffered ends (EOF or reset), not hangs.
    let mut sink = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(DEADLINE, async {
        while let Ok(n) = conn.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    assert!(
        drained.await.is_ok(),
        "the stalled connection is still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_whose_client_stops_reading_is_closed_after_the_client_write_timeout() {
    // An upstream that switches to a tunnel and floods it, reporting when its writes fail.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head).await;
        let switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        conn.write_all(switch).await.unwrap();
        let chunk = vec![0u8; 1 << 16];
        for _ in 0..16_384 {
            if conn.write_all(&chunk).await.is_err() {
                let _ = closed_tx.send(());
                return;
            }
        }
    });
    let proxy = proxy_to(addr, WRITE_TIMEOUT).await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    // Reads nothing more: the 101 and the flood stay in the socket buffers.
    let ended = tokio::time::timeout(DEADLINE, closed).await;
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the proxy kept the tunnel of a client that reads nothing"
    );
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_whose_data_the_client_never_takes_is_reset() {
    let blue = Upstream::start("blue").await;
    let proxy = proxy_to(blue.addr, &format!("h2c = true\n{WRITE_TIMEOUT}")).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let empty = http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::new()));
    let req = common::request("GET", "/bulk/67108864", empty);
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The body is never read: the stream's window stays full and the proxy cannot send.
    released_after_the_stall(&proxy).await;
    let body = http_body_util::BodyExt::collect(resp.into_body());
    let read = tokio::time::timeout(DEADLINE, body).await;
    assert!(
        matches!(read, Ok(Err(_))),
        "the stream was not reset: {read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_a_complete_request_is_answered() {
    let blue = Upstream::start("blue").await;
    blue.delay(200); // the half-close arrives before the answer
    let proxy = proxy_to(blue.addr, "").await;
    for request in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(DEADLINE, conn.read_to_end(&mut reply))
            .await
            .expect("no answer and no close")
            .unwrap();
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    }
    // Clients that leave entirely before their answer: the failed writes log no line each.
    for _ in 0..20 {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        drop(conn);
    }
    poll_until("all 20 requests reached blue", DEADLINE, || async {
        blue.requests() >= 22
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // their answers fail meanwhile
    let stderr = proxy.stderr();
    let lines = stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("client left"));
    assert!(lines.count() <= 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_header_without_the_upgrade_connection_option_is_a_plain_request() {
    let blue = Upstream::start("blue").await;
    let proxy = proxy_to(blue.addr, "").await;
    let reply = exchange(
        proxy.addr,
        &[b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 4\r\n\r\nbody"],
        Duration::ZERO,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(
        reply.statuses(),
        [200],
        "{:?}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let seen = blue.seen();
    assert!(
        !seen[0].headers.contains_key("upgrade"),
        "{:?}",
        seen[0].headers
    );
    assert_eq!(seen[0].body, "body");
}

/// A WebSocket text frame whose payload holds a line end, as a client may send it right after
/// its upgrade request (masked with a zero key, which is legal, so the CRLF shows): read as
/// HTTP/1, its first line is no request line.
fn early_frame() -> Vec<u8> {
    let payload = b"line\r\nnext";
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

const ASK_WEBSOCKET: &[u8] = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_with_an_upgrade_request_reach_the_tunnel() {
    let blue = Upstream::start("blue").await; // echoes WebSocket frames
    let proxy = proxy_to(blue.addr, "").await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let mut first = ASK_WEBSOCKET.to_vec();
    first.extend(early_frame()); // in the same packet, before any 101
    conn.write_all(&first).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    let mut echoed = vec![0u8; early_frame().len()];
    let read = tokio::time::timeout(DEADLINE, conn.read_exact(&mut echoed)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the early frame never reached the tunnel"
    );
    assert_eq!(echoed, early_frame());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_declined_upgrade_are_checked_as_the_next_request() {
    let upstream = RecordingUpstream::start().await; // answers 200, never switches
    let proxy = proxy_to(upstream.addr, "").await;
    let mut next = ASK_WEBSOCKET.to_vec();
    next.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let reply = exchange(
        proxy.addr,
        &[&next],
        Duration::ZERO,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reply.statuses(), [200, 200]);
    let paths: Vec<String> = upstream.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/ws", "/next"]);

    let mut frame = ASK_WEBSOCKET.to_vec();
    frame.extend(early_frame());
    let reply = exchange(proxy.addr, &[&frame], Duration::ZERO, DEADLINE).await;
    assert_eq!(reply.statuses(), [200, 400], "refused after the answer");
    assert!(reply.closed);
    assert_eq!(upstream.seen().len(), 3, "the frame reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_gets_a_close_delimited_body() {
    // An upstream answering without a length: its body ends with its connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\n\r\nhello, old client")
                .await;
        }
    });
    let proxy = proxy_to(addr, "").await;
    let reply = exchange(
        proxy.addr,
        &[b"GET / HTTP/1.0\r\n\r\n"],
        Duration::ZERO,
        DEADLINE,
    )
    .await;
    let text = String::from_utf8_lossy(&reply.bytes).to_ascii_lowercase();
    assert!(reply.closed, "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello, old client"), "{text}");
    // An HTTP/1.1 client still gets it chunked, on a connection kept open.
    let reply = exchange(
        proxy.addr,
        &[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"],
        Duration::ZERO,
        Duration::from_millis(500),
    )
    .await;
    let text = String::from_utf8_lossy(&reply.bytes).to_ascii_lowercase();
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(!reply.closed);
}

/// The two HTTP/1 data paths: switchback's own, and Pingora's `ProxyHttp`, which serves every
/// HTTP/1 client while some pool speaks h2 to its backends (here an idle one).
const PATHS: [&str; 2] = [
    "",
    "[pools.spare]\nbackends = [\"127.0.0.1:9\"]\nprotocol = \"h2\"\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_drop_an_upgrade_without_the_option_and_never_send_chunked_to_http10() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut head = vec![0u8; 8192];
            let n = conn.read(&mut head).await.unwrap_or(0);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head[..n]).into_owned());
            let chunked =
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                            5\r\nhello\r\n0\r\n\r\n";
            let _ = conn.write_all(chunked).await;
        }
    });
    for extra in PATHS {
        let rest = format!("{}{extra}", pools_toml(&[("blue", &[addr])], "blue = 100"));
        let proxy = TestProxy::start("", &rest).await;
        let old = exchange(
            proxy.addr,
            &[b"GET / HTTP/1.0\r\n\r\n"],
            Duration::ZERO,
            DEADLINE,
        )
        .await;
        let text = String::from_utf8_lossy(&old.bytes).to_ascii_lowercase();
        assert!(old.closed, "{extra}: {text}");
        assert!(!text.contains("chunked"), "{extra}: {text}");
        assert!(text.ends_with("\r\n\r\nhello"), "{extra}: {text}");

        heads.lock().unwrap().clear();
        let plain = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n";
        let reply = exchange(proxy.addr, &[plain], Duration::ZERO, DEADLINE).await;
        assert_eq!(reply.statuses(), [200], "{extra}");
        let forwarded = heads.lock().unwrap().join("").to_ascii_lowercase();
        assert!(!forwarded.contains("upgrade"), "{extra}: {forwarded}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_cookie_in_a_comma_folded_cookie_line_never_reaches_the_upstream() {
    let upstream = RecordingUpstream::start().await;
    let proxy = proxy_to(upstream.addr, "").await;
    let reply = exchange(
        proxy.addr,
        &[b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1, switchback-override=green:secret-token, b=2\r\n\r\n"],
        Duration::ZERO,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reply.statuses(), [200]);
    let seen = upstream.seen();
    assert_eq!(seen[0].header("cookie"), ["a=1; b=2"]);
    assert!(!String::from_utf8_lossy(&upstream.bytes()).contains("secret-token"));
}
