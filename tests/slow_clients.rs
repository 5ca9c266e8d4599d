//! Slow and idle clients: a head must arrive within `[proxy] header-timeout`, an idle
//! keep-alive connection is closed after `[proxy] client-idle-timeout`, and dribbling
//! connections do not keep normal clients from being served.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{pools_toml, Client, TestProxy, Upstream};

/// blue (100 %) and green behind a proxy started with `keys` in its `[proxy]` table.
async fn start_with(keys: &str) -> ((Upstream, Upstream), TestProxy) {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let pools = pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100",
    );
    let proxy = TestProxy::start(keys, &pools).await;
    ((blue, green), proxy)
}

/// Waits until the peer closes `conn` (end-of-file or reset), up to `within`; returns when.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbling_connections_are_closed_after_the_header_timeout_while_others_are_served() {
    let (_upstreams, proxy) = start_with("header-timeout = \"2s\"\n").await;
    let addr = proxy.addr;

    // 200 connections, each sending a request head one byte every 100 ms, never finishing.
    let mut dribblers = Vec::new();
    for i in 0..200 {
        dribblers.push(tokio::spawn(async move {
            let opened = Instant::now();
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "GET /slow{i} HTTP/1.1\r\nHost: a\r\nX-Long: {}",
                "a".repeat(200)
            );
            let mut buf = [0u8; 256];
            for byte in head.bytes() {
                if conn.write_all(&[byte]).await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ => {}
                }
                if opened.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            opened.elapsed()
        }));
    }

    // Meanwhile a normal client keeps being served.
    let served_until = Instant::now() + Duration::from_secs(3);
    let mut client = Client::connect(addr).await;
    let mut served = 0;
    while Instant::now() < served_until {
        let reply = client.get("/").await;
        assert_eq!(
            reply.status, 200,
            "a normal request failed beside the dribblers"
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served > 20, "only {served} normal requests in 3 s");

    for d in dribblers {
        let lived = d.await.unwrap();
        assert!(
            lived < Duration::from_secs(3),
            "a dribbling connection lived {lived:?} (header-timeout 2 s)"
        );
        assert!(
            lived >= Duration::from_millis(1900),
            "a dribbling connection was closed early: {lived:?}"
        );
    }
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("switchback_client_closed_total{reason=\"header-timeout\"}"))
        .unwrap();
    assert!(line.ends_with(" 200"), "{line}");
}

#[tokio::test]
async fn a_partial_head_gets_408_and_a_silent_connection_is_closed() {
    let (_upstreams, proxy) = start_with("header-timeout = \"1s\"\n").await;

    let mut partial = TcpStream::connect(proxy.addr).await.unwrap();
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();

    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), partial.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the partial head was not closed within 3 s");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(closed_within(&mut silent, Duration::from_secs(3))
        .await
        .is_some());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_a_slow_body_is_not() {
    let (_upstreams, proxy) =
        start_with("header-timeout = \"1s\"\nclient-idle-timeout = \"1s\"\n").await;

    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut conn, Duration::from_secs(4)).await;
    let closed = closed.expect("the idle keep-alive connection was not closed within 4 s");
    assert!(
        closed >= Duration::from_millis(900),
        "closed after {closed:?}, before the idle timeout"
    );

    // A body that trickles in over 2 s (longer than both timeouts) once the head is complete
    // is not cut: the head timeout covers the head only.
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n")
        .await
        .unwrap();
    for byte in b"slow" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        conn.write_all(&[*byte]).await.unwrap();
    }
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with("slow") {
        let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed mid-request: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

/// Reads responses from `conn` until `n` complete ones (each `Content-Length` framed) arrived
/// or the connection closed; returns their bodies.
async fn read_responses(conn: &mut TcpStream, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut bodies = Vec::new();
    while bodies.len() < n {
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
        let Ok(Ok(k)) = read else { break };
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
        loop {
            let text = String::from_utf8_lossy(&got).to_string();
            let Some(end) = text.find("\r\n\r\n") else {
                break;
            };
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() < end + 4 + len {
                break;
            }
            bodies.push(String::from_utf8_lossy(&got[end + 4..end + 4 + len]).to_string());
            got.drain(..end + 4 + len);
        }
    }
    bodies
}

#[tokio::test]
async fn a_pipelined_slow_request_is_not_cut_by_the_idle_timeout() {
    let (_upstreams, proxy) = start_with("client-idle-timeout = \"1s\"\n").await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(
        b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\nGET /slow/2000 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let bodies = read_responses(&mut conn, 2).await;
    assert_eq!(bodies, ["blue", "blue"], "the slow second response was cut");
}

#[tokio::test]
async fn a_head_that_starts_after_a_long_upload_gets_its_own_header_timeout() {
    let (_upstreams, proxy) = start_with("header-timeout = \"1s\"\n").await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    // An upload that takes 1.5 s (longer than the header timeout) ...
    conn.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ... whose last byte comes with the start of the next head, finished 300 ms later.
    conn.write_all(b"cGET / HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(b"st: a\r\n\r\n").await.unwrap();
    let bodies = read_responses(&mut conn, 2).await;
    assert_eq!(bodies, ["abc", "blue"]);
}
