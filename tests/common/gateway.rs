//! What the etcd harness speaks: one bounded HTTP/1.1 request to etcd's JSON gateway, and the
//! base64 its `bytes` fields use.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::etcd::REQUEST_TIMEOUT;

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), every step bounded by
/// [`REQUEST_TIMEOUT`]: the status and the (de-chunked) body.
pub(super) fn request(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let err = |e: std::io::Error| format!("{method} {path} on {addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(err)?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(err)?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(err)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .map_err(err)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(err)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = response.parse(&raw) else {
        return Err(format!("{method} {path} on {addr}: malformed response"));
    };
    let chunked = response
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding") && h.value.ends_with(b"chunked"));
    let body = if chunked {
        dechunk(&raw[len..])
    } else {
        raw[len..].to_vec()
    };
    let status = response.code.unwrap_or_default();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The payload of a chunked body (chunk extensions and trailers ignored).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&raw[..eol]);
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).unwrap_or_default();
        let start = eol + 2;
        if size == 0 || start + size > raw.len() {
            break;
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as the gateway wants `bytes` fields.
pub fn base64_encode(text: &str) -> String {
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let Some(v) = BASE64.iter().position(|&b| b == c) else {
            return Err(format!("not base64: {text:?}"));
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
