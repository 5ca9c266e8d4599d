//! `switchback probe URL`: one GET, exit 0 on a 2xx answer. For container health checks and
//! Kubernetes exec probes in images that hold nothing but the binary (no shell, no curl).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// GETs `url` (`http://host:port/path`) within `timeout`.
///
/// # Errors
/// What went wrong: a bad URL, no connection, no answer, or the status when it is not 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: expected http://host:port/path"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("{addr}: no answer: {e}"))?;
    let line = String::from_utf8_lossy(&head).into_owned();
    match line.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)) {
        Some(code) if code.starts_with('2') => Ok(format!("{url}: {code}")),
        Some(code) => Err(format!("{url}: {code}")),
        None => Err(format!("{url}: not an HTTP answer")),
    }
}
