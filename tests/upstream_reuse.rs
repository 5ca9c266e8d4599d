//! When an upstream connection may carry another request (issue 24): not after an answer whose
//! end cannot be checked (a `HEAD`, 204 or 304 that names a length), not when the answer on a
//! reused connection does not start with its status line, and not once its backend is drained.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::raw::{exchange, read_request_head};
use common::{poll_until, pools_toml, TestProxy, DEADLINE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Connections accepted, and connections the upstream saw closed.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    closed: AtomicUsize,
}

/// An upstream answering each request with `answer(head)`; after a `HEAD` it also sends
/// `late` bytes 300 ms later, unasked.
async fn upstream(
    answer: fn(&str) -> &'static [u8],
    late: &'static [u8],
) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.accepted.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut conn).await {
                    if conn.write_all(answer(&head)).await.is_err() {
                        break;
                    }
                    if head.starts_with("HEAD") && !late.is_empty() {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let _ = conn.write_all(late).await;
                    }
                }
                seen.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

async fn proxy_to(addr: SocketAddr) -> TestProxy {
    TestProxy::start("", &pools_toml(&[("blue", &[addr])], "blue = 100")).await
}

async fn status_of(addr: SocketAddr, request: &[u8]) -> Vec<u16> {
    exchange(addr, &[request], Duration::ZERO, Duration::from_millis(400))
        .await
        .statuses()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_bytes_after_a_head_answer_never_reach_the_next_client() {
    let answer = |head: &str| -> &'static [u8] {
        match head.starts_with("HEAD") {
            true => b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n",
            false => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        }
    };
    let stray = b"HTTP/1.1 418 Stray\r\nContent-Length: 0\r\n\r\n";
    let (addr, counts) = upstream(answer, stray).await;
    let proxy = proxy_to(addr).await;
    let head = exchange(
        proxy.addr,
        &[b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", GET],
        Duration::from_millis(100), // the GET goes before the stray bytes arrive
        Duration::from_millis(600),
    )
    .await;
    assert_eq!(
        head.statuses(),
        [200, 200],
        "{:?}",
        String::from_utf8_lossy(&head.bytes)
    );
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        2,
        "the HEAD's connection was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_answers_that_name_a_length_do_not_go_back_to_the_pool() {
    let answer = |head: &str| -> &'static [u8] {
        match head.split(' ').nth(1) {
            Some("/204") => b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            Some("/304") => b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        }
    };
    let (addr, counts) = upstream(answer, b"").await;
    let proxy = proxy_to(addr).await;
    for path in ["/", "/"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status_of(proxy.addr, req.as_bytes()).await, [200]);
    }
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        1,
        "a plain answer's connection is reused"
    );
    for (path, status) in [("/204", 204), ("/304", 304)] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status_of(proxy.addr, req.as_bytes()).await, [status]);
        assert_eq!(status_of(proxy.addr, GET).await, [200]);
    }
    // Each bodiless answer's connection was closed; the next request opened a new one.
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connections_answer_must_start_with_its_status_line() {
    // Blank lines, then a stray answer, arrive right after the reused connection's request:
    // read leniently (blank lines skipped) the client would get the stray 418.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut served = 0;
                while read_request_head(&mut conn).await.is_some() {
                    let answer: &[u8] = match (n, served) {
                        (0, 1) => b"\r\n\r\nHTTP/1.1 418 Stray\r\nContent-Length: 0\r\n\r\n",
                        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                    };
                    served += 1;
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = proxy_to(addr).await;
    assert_eq!(status_of(proxy.addr, GET).await, [200]);
    // The second request reuses the connection, gets the stray answer, and is sent again.
    assert_eq!(status_of(proxy.addr, GET).await, [200]);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backends_idle_connections_close_at_once() {
    let answer = |_: &str| -> &'static [u8] { b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" };
    let (addr, counts) = upstream(answer, b"").await;
    let proxy = proxy_to(addr).await; // idle-timeout: 60 s by default
    assert_eq!(status_of(proxy.addr, GET).await, [200]);
    assert_eq!(
        counts.closed.load(Ordering::SeqCst),
        0,
        "kept idle in the pool"
    );
    let drain = format!("/backends/blue/{addr}/drain");
    assert_eq!(proxy.admin("POST", &drain, "").await.status, 200);
    poll_until("the idle connection closed", DEADLINE, || async {
        counts.closed.load(Ordering::SeqCst) == 1
    })
    .await;
}
