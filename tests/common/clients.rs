//! Clients for attribution tests: users the proxy routes to a given pool, uploads that stall,
//! and reading a response head off a raw connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{request, BlueGreen, Client};

/// `n` user ids (`x-user-id`) that the proxy routes to `pool` (asked with a `GET /` each).
pub async fn users_on(bg: &BlueGreen, pool: &str, n: usize) -> Vec<String> {
    let mut client = Client::connect(bg.proxy.addr).await;
    let mut users = Vec::new();
    for i in 0..1000 {
        let user = format!("user-{i}");
        let mut req = request("GET", "/", Full::new(Bytes::new()).boxed());
        req.headers_mut().insert("x-user-id", user.parse().unwrap());
        if client.send(req).await.header("x-upstream").as_deref() == Some(pool) {
            users.push(user);
            if users.len() == n {
                return users;
            }
        }
    }
    panic!("fewer than {n} of 1000 users are on {pool}");
}

/// Reads from `conn` until a whole response head arrived or it closed (at most 5 s).
pub async fn read_head(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A connection that sent a POST promising 10 body bytes, and 5 of them, as user `user`.
pub async fn half_upload(addr: SocketAddr, user: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: test.local\r\nx-user-id: {user}\r\n\
         Content-Length: 10\r\n\r\nhello"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}
