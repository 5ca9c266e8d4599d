//! switchback's own HTTP/1 data path against upstreams that do awkward but legal things:
//! bodies cut inside their chunk lines, early answers, a 101 nobody asked for, slow answers
//! on a reused connection. Real proxy binary, real sockets.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::raw::{exchange, read_request_head, RecordingUpstream};
use common::{pools_toml, request, Client, TestProxy, Upstream};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PAUSE: Duration = Duration::from_millis(100);

async fn proxy_to(addr: SocketAddr, proxy_keys: &str) -> TestProxy {
    TestProxy::start(proxy_keys, &pools_toml(&[("blue", &[addr])], "blue = 100")).await
}

/// An upstream running `answer` after each request head it reads; `answer` hands the
/// connection back for the next request, or `None` to close it. The heads are kept.
async fn scripted<F, Fut>(answer: F) -> (SocketAddr, Arc<Mutex<Vec<String>>>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<TcpStream>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (seen, answer) = (heads.clone(), Arc::new(answer));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (seen, answer) = (seen.clone(), answer.clone());
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut conn).await {
                    seen.lock().unwrap().push(head);
                    match answer(conn).await {
                        Some(again) => conn = again,
                        None => return,
                    }
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_cut_inside_its_chunk_lines_arrives_whole() {
    let upstream = RecordingUpstream::start().await;
    let proxy = proxy_to(upstream.addr, "").await;
    let parts: [&[u8]; 6] = [
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r",
        b"\nhello",
        b"\r",
        b"\n6\r\n world\r\n0\r",
        b"\n\r\n",
        b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    let reply = exchange(proxy.addr, &parts, PAUSE, Duration::from_secs(2)).await;

    assert_eq!(reply.statuses(), [200, 200]);
    let seen = upstream.seen();
    let requests: Vec<(&str, &[u8])> = seen
        .iter()
        .map(|r| (r.path.as_str(), r.body.as_slice()))
        .collect();
    assert_eq!(requests, [("/c", &b"hello world"[..]), ("/next", &b""[..])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_answer_cut_inside_its_chunk_lines_arrives_whole() {
    let (addr, _) = scripted(|mut conn| async move {
        let pieces: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r",
            b"\nhello\r",
            b"\n0\r",
            b"\n\r\n",
        ];
        for piece in pieces {
            conn.write_all(piece).await.ok()?;
            tokio::time::sleep(PAUSE).await;
        }
        Some(conn)
    })
    .await;
    let proxy = proxy_to(addr, "").await;
    let mut client = Client::connect(proxy.addr).await;

    for _ in 0..2 {
        let reply = client.get("/").await;
        assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_with_a_length_leave_their_upstream_connection_pooled() {
    let upstream = Upstream::start("blue").await;
    let proxy = proxy_to(upstream.addr, "").await;
    let mut client = Client::connect(proxy.addr).await;

    for i in 0..50 {
        let body = Full::new(Bytes::from(vec![b'x'; 1000 + i])).boxed();
        let reply = client.send(request("POST", "/echo", body)).await;
        assert_eq!((reply.status, reply.body.len()), (200, 1000 + i));
    }

    assert_eq!(upstream.requests(), 50);
    assert!(
        upstream.connections() <= 4,
        "opened {} upstream connections for 50 requests",
        upstream.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_reading_the_body_still_has_its_answer_forwarded() {
    // The upstream reads the head only, lets the proxy's writes stall past write-timeout, then
    // answers 413: the answer reaches the client (the rest of the body is dropped).
    let (addr, _) = scripted(|mut conn| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig\n";
        let _ = conn.write_all(answer).await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        None
    })
    .await;
    let proxy = proxy_to(addr, "write-timeout = \"300ms\"").await;
    let body = vec![b'x'; 1 << 20];
    let head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 16777216\r\n\r\n";
    let mut parts: Vec<&[u8]> = vec![head];
    parts.extend(std::iter::repeat_n(&body[..], 16));

    let reply = exchange(proxy.addr, &parts, Duration::ZERO, Duration::from_secs(3)).await;

    assert_eq!(
        reply.statuses(),
        [413],
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    assert!(reply.bytes.ends_with(b"big\n"), "{:?}", reply.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_an_upgrade_that_was_not_forwarded_is_a_502() {
    let (addr, heads) = scripted(|mut conn| async move {
        let answer =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
        let _ = conn.write_all(answer).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        None
    })
    .await;
    let proxy = proxy_to(addr, "").await;
    let asks = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
        Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";

    let reply = exchange(proxy.addr, &[asks], PAUSE, Duration::from_secs(2)).await;

    assert_eq!(reply.statuses(), [502]);
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        !heads[0].to_ascii_lowercase().contains("upgrade"),
        "{heads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_on_a_reused_connection_is_not_asked_again() {
    let upstream = Upstream::start("blue").await;
    let proxy = proxy_to(upstream.addr, "read-timeout = \"1s\"").await;
    let mut client = Client::connect(proxy.addr).await;

    assert_eq!(client.get("/").await.status, 200); // the pool now holds a connection
    let reply = common::get(proxy.addr, "/slow/3000").await;

    assert_eq!(reply.status, 504);
    assert_eq!(
        upstream.connections(),
        1,
        "the slow request took a new connection"
    );
    // Give a retry (there must be none) the time to reach the upstream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream.requests(), 2, "the slow request was sent again");
}

/// A proxy (with `proxy_keys`) in front of an upstream that answers one request, then runs
/// `after` on that connection; the proxy's one request is sent, and `after`'s result returned.
async fn after_one_answer<F, Fut, T>(proxy_keys: &str, after: F) -> T
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = proxy_to(listener.local_addr().unwrap(), proxy_keys).await;
    let upstream = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        read_request_head(&mut conn).await.unwrap();
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        conn.write_all(answer).await.unwrap();
        after(conn).await
    });
    assert_eq!(common::get(proxy.addr, "/").await.status, 200);
    upstream.await.unwrap()
}

/// Whether the peer closes `conn` within 10 s (sending nothing more).
async fn closed_within_10s(mut conn: TcpStream) -> bool {
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest));
    let closed = closed.await.is_ok();
    assert!(rest.is_empty(), "another request came: {rest:?}");
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upstream_connection_is_closed_after_idle_timeout() {
    let idle_for = after_one_answer("idle-timeout = \"1s\"", |conn| async move {
        let answered = std::time::Instant::now();
        assert!(
            closed_within_10s(conn).await,
            "the pooled connection is still open"
        );
        answered.elapsed()
    })
    .await;

    assert!(
        idle_for >= Duration::from_millis(900),
        "closed after {idle_for:?}, before idle-timeout"
    );
    // Swept once a second: closed within about a second after idle-timeout.
    assert!(
        idle_for < Duration::from_secs(4),
        "closed after {idle_for:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_upstream_closes_is_closed_by_the_proxy_too() {
    // idle-timeout is 60 s: a close within 10 s is the proxy noticing the upstream's.
    after_one_answer("", |mut conn| async move {
        // Pooled, not closed: nothing arrives for a while.
        let mut byte = [0u8; 1];
        let quiet = tokio::time::timeout(3 * PAUSE, conn.read(&mut byte)).await;
        assert!(
            quiet.is_err(),
            "the proxy did not keep the connection: {quiet:?}"
        );
        conn.shutdown().await.unwrap(); // our FIN; the socket stays readable
        assert!(
            closed_within_10s(conn).await,
            "the proxy kept a half-closed connection"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_is_not_used_again() {
    // No `Connection: close`: the proxy keeps each connection, and the upstream closes it
    // 100 ms later. A POST with a body is never retried, so one sent on a dead connection
    // would come back as a 502.
    let (addr, heads) = scripted(|mut conn| async move {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        conn.write_all(answer).await.unwrap();
        tokio::time::sleep(PAUSE).await;
        None
    })
    .await;
    let proxy = proxy_to(addr, "").await;
    let mut client = Client::connect(proxy.addr).await;

    for i in 0..5 {
        let body = Full::new(Bytes::from_static(b"data")).boxed();
        let reply = client.send(request("POST", "/", body)).await;
        assert_eq!((i, reply.status, reply.body.as_ref()), (i, 200, &b"ok"[..]));
        tokio::time::sleep(5 * PAUSE).await; // the upstream has closed it by now
    }
    assert_eq!(heads.lock().unwrap().len(), 5);
}
