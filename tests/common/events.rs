//! The admin API's event stream (`GET /events`) on a raw connection: the answer's head is
//! read, and the connection stays open for as long as the caller keeps it.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::DEADLINE;

/// Opens `GET /events` on `admin`: the status code, the open connection, and the head (with
/// whatever body bytes came along with it).
pub async fn open_stream(admin: SocketAddr) -> (u16, TcpStream, String) {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let head = format!("GET /events HTTP/1.1\r\nHost: {admin}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let status = text[9..12].parse().unwrap();
    (status, stream, text)
}
