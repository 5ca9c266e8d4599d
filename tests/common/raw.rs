//! Raw sockets for framing tests: an upstream that records every byte it receives and parses
//! requests leniently (httparse, as the backends request smuggling exploits do), and a client
//! that sends exact bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the lenient upstream understood it.
#[derive(Debug, Clone)]
pub struct RawSeen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawSeen {
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// An upstream on `127.0.0.1:0` answering every request it parses with `200 ok`.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<RawSeen>>>,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl RecordingUpstream {
    pub async fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, bytes) = (Arc::default(), Arc::default());
        let (s, b) = (Arc::clone(&seen), Arc::clone(&bytes));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, Arc::clone(&s), Arc::clone(&b)));
            }
        });
        RecordingUpstream { addr, seen, bytes }
    }

    /// Every request parsed so far, in order.
    pub fn seen(&self) -> Vec<RawSeen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every byte received so far, all connections appended.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

async fn serve(mut conn: TcpStream, seen: Arc<Mutex<Vec<RawSeen>>>, all: Arc<Mutex<Vec<u8>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some((request, used)) = parse(&buf) {
            buf.drain(..used);
            seen.lock().unwrap().push(request);
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if conn.write_all(reply).await.is_err() {
                return;
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                all.lock().unwrap().extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// A complete request at the start of `buf` and its length, as a lenient server reads it.
fn parse(buf: &[u8]) -> Option<(RawSeen, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let mut seen = RawSeen {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        headers: headers.clone(),
        body: Vec::new(),
    };
    let mut at = head;
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let (start, size) = match httparse::parse_chunk_size(&buf[at..]) {
                Ok(httparse::Status::Complete((n, size))) => (at + n, size as usize),
                _ => return None,
            };
            if size == 0 {
                let end = buf[start..].windows(2).position(|w| w == b"\r\n")?;
                return Some((seen, start + end + 2));
            }
            if buf.len() < start + size + 2 {
                return None;
            }
            seen.body.extend_from_slice(&buf[start..start + size]);
            at = start + size + 2;
        }
    }
    let len: usize = find("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < at + len {
        return None;
    }
    seen.body = buf[at..at + len].to_vec();
    Some((seen, at + len))
}

/// What a raw client got back.
#[derive(Debug)]
pub struct RawReply {
    /// Every byte the proxy sent.
    pub bytes: Vec<u8>,
    /// The proxy closed the connection (end-of-file) before the read deadline.
    pub closed: bool,
}

impl RawReply {
    /// Status codes of every response status line received.
    pub fn statuses(&self) -> Vec<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        text.match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
            .collect()
    }
}

/// Sends `parts` (with `pause` between them) on one connection, then reads until the proxy
/// closes or `wait` passes without a byte.
pub async fn exchange(
    addr: SocketAddr,
    parts: &[&[u8]],
    pause: Duration,
    wait: Duration,
) -> RawReply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if conn.write_all(part).await.is_err() {
            break;
        }
    }
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(wait, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    RawReply { bytes, closed }
}

/// Reads one request head (through the blank line) byte by byte, so nothing after it is taken
/// from the socket; `None` at end of stream.
pub async fn read_request_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match conn.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
