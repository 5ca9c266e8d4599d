//! Strict HTTP/1 request framing: a pure, incremental check of the bytes a client sends,
//! run before Pingora parses them.
//!
//! ```text
//! client bytes ──▶ Framing::feed ──ok──▶ Pingora (httparse) ──▶ proxy
//!                        └──reject──▶ 400 + close (no byte of the request forwarded)
//! ```
//!
//! httparse (and so Pingora) is lenient where a front door must not be: it accepts any octet
//! in a chunk extension (a bare LF there lets a client smuggle a second request past a front
//! end that ends the line at the LF), bare LF line ends, repeated `Content-Length`, and it
//! rewrites a malformed request line instead of refusing it. This parser follows every
//! request's framing through the byte stream — request line, fields, `Content-Length` or
//! chunked body, trailers — and refuses anything ambiguous (RFC 9112 §2.2, §3, §5, §6, §7):
//! - lines must end in CRLF; a bare CR, a bare LF or any control octet but HTAB is refused;
//! - the request line is `method SP target SP HTTP/1.x`, one space each; the target is
//!   origin-form, absolute-form (`http://` / `https://`), or `*` for `OPTIONS`;
//! - field names are tokens with no space before the colon; no obsolete line folding;
//! - HTTP/1.1 needs exactly one `Host`; at most one `Content-Length` (digits only); a
//!   `Transfer-Encoding` must be exactly `chunked`, once, never with `Content-Length`, never
//!   in HTTP/1.0;
//! - chunk sizes are 1–16 hex digits; extensions hold no control octet but HTAB;
//! - a request head (or trailer section) is at most [`MAX_HEAD`] bytes.
//!
//! Once the proxy has switched a connection to a tunnel (a `101` to an upgrade request),
//! [`Framing::enter_tunnel`] stops the checks: the proxy, not the bytes written, decides.

#[cfg(test)]
mod tests;

pub mod app;
pub mod guard;

/// Largest request head, and largest trailer section, in bytes (431 beyond).
pub const MAX_HEAD: usize = 64 * 1024;

/// Largest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why a request was refused: the status to answer and a short reason for the body and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status: 400, or 431 for an oversized head.
    pub status: u16,
    /// What was wrong, in a few words.
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Reject {
    Reject {
        status: 400,
        reason,
    }
}

/// Where the parser is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before or inside a request line.
    RequestLine,
    /// Inside the header fields.
    Fields,
    /// A `Content-Length` body with this many bytes left.
    Body(u64),
    /// Before or inside a chunk-size line.
    ChunkSize,
    /// Chunk data with this many bytes left.
    ChunkData(u64),
    /// The CRLF after chunk data; `true` once the CR was seen.
    ChunkEnd(bool),
    /// The trailer section after the last chunk.
    Trailers,
    /// An upgraded connection: nothing is checked any more.
    Tunnel,
}

/// What the current head has said so far.
#[derive(Debug, Default, Clone, Copy)]
struct Head {
    http10: bool,
    hosts: u8,
    content_lengths: u8,
    content_length: u64,
    transfer_encodings: u8,
    chunked: bool,
}

/// The framing state of one client connection.
#[derive(Debug)]
pub struct Framing {
    phase: Phase,
    /// The current line, when it spans reads.
    line: Vec<u8>,
    head: Head,
    /// Bytes of the current head (or trailer section) so far, blank lines before it included.
    head_len: usize,
    /// Heads completed on this connection.
    heads: u64,
    /// Bytes accepted so far on this connection.
    offset: u64,
    /// Where the current request (its first byte) starts, as an offset of the stream.
    request_start: u64,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            phase: Phase::RequestLine,
            line: Vec::new(),
            head: Head::default(),
            head_len: 0,
            heads: 0,
            offset: 0,
            request_start: 0,
        }
    }
}

impl Framing {
    /// Checks the next bytes the client sent.
    ///
    /// # Errors
    /// [`Reject`] at the first octet that makes the framing ambiguous or invalid; the
    /// connection must then be answered with `status` and closed.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Reject> {
        while !data.is_empty() {
            if self.phase == Phase::RequestLine && self.head_len == 0 && self.line.is_empty() {
                self.request_start = self.offset;
            }
            let used = match self.phase {
                Phase::Tunnel => data.len(),
                Phase::Body(left) | Phase::ChunkData(left) => {
                    let n = left.min(data.len() as u64);
                    self.phase = match (self.phase, left - n) {
                        (Phase::Body(_), 0) => self.request_done(),
                        (Phase::Body(_), rest) => Phase::Body(rest),
                        (_, 0) => Phase::ChunkEnd(false),
                        (_, rest) => Phase::ChunkData(rest),
                    };
                    n as usize
                }
                Phase::ChunkEnd(seen_cr) => {
                    self.phase = match (seen_cr, data[0]) {
                        (false, b'\r') => Phase::ChunkEnd(true),
                        (true, b'\n') => Phase::ChunkSize,
                        _ => return Err(bad("chunk data not followed by CRLF")),
                    };
                    1
                }
                Phase::RequestLine | Phase::Fields | Phase::ChunkSize | Phase::Trailers => {
                    self.feed_line(data)?
                }
            };
            data = &data[used..];
            self.offset += used as u64;
        }
        Ok(())
    }

    /// Takes bytes up to and including the next LF (or all of `data` when there is none),
    /// and checks the line once it is complete. Returns how many bytes were used.
    fn feed_line(&mut self, data: &[u8]) -> Result<usize, Reject> {
        let limit = match self.phase {
            Phase::ChunkSize => MAX_CHUNK_LINE,
            _ => MAX_HEAD - self.head_len.min(MAX_HEAD),
        };
        let (used, complete) = match memchr::memchr(b'\n', data) {
            Some(i) => (i + 1, true),
            None => (data.len(), false),
        };
        if self.line.len() + used > limit {
            return Err(match self.phase {
                Phase::ChunkSize => bad("chunk-size line too long"),
                _ => Reject {
                    status: 431,
                    reason: "request head too large",
                },
            });
        }
        if !matches!(self.phase, Phase::ChunkSize) {
            self.head_len += used;
        }
        if !complete {
            self.line.extend_from_slice(data);
            return Ok(used);
        }
        if self.line.is_empty() {
            self.line_done(&data[..used])?;
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(&data[..used]);
            let result = self.line_done(&line);
            line.clear();
            self.line = line;
            result?;
        }
        Ok(used)
    }

    /// Checks one complete line (ending in LF) in the current phase.
    fn line_done(&mut self, line: &[u8]) -> Result<(), Reject> {
        let Some(content) = line.strip_suffix(b"\r\n") else {
            return Err(bad("line ends in a bare LF"));
        };
        match self.phase {
            Phase::RequestLine if content.is_empty() => {
                // RFC 9112 §2.2: blank lines before a request line are ignored.
                Ok(())
            }
            Phase::RequestLine => {
                self.head = request_line(content)?;
                self.phase = Phase::Fields;
                Ok(())
            }
            Phase::Fields if content.is_empty() => self.head_done(),
            Phase::Fields => {
                let (name, value) = field(content)?;
                self.head_field(name, value)
            }
            Phase::ChunkSize => {
                let size = chunk_size(content)?;
                self.phase = if size == 0 {
                    self.head_len = 0;
                    Phase::Trailers
                } else {
                    Phase::ChunkData(size)
                };
                Ok(())
            }
            Phase::Trailers if content.is_empty() => {
                self.phase = self.request_done();
                Ok(())
            }
            Phase::Trailers => field(content).map(|_| ()),
            Phase::Body(_) | Phase::ChunkData(_) | Phase::ChunkEnd(_) | Phase::Tunnel => Ok(()),
        }
    }

    /// Records what a header field says about framing.
    fn head_field(&mut self, name: &[u8], value: &[u8]) -> Result<(), Reject> {
        let head = &mut self.head;
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
        match name.len() {
            4 if is("host") => {
                head.hosts = head.hosts.saturating_add(1);
                if !value.iter().all(|&b| HOST[b as usize]) {
                    return Err(bad("invalid Host"));
                }
            }
            14 if is("content-length") => {
                head.content_lengths = head.content_lengths.saturating_add(1);
                head.content_length = content_length(value)?;
            }
            17 if is("transfer-encoding") => {
                head.transfer_encodings = head.transfer_encodings.saturating_add(1);
                head.chunked = value.eq_ignore_ascii_case(b"chunked");
            }
            _ => {}
        }
        Ok(())
    }

    /// The blank line after the fields: decides the body's framing.
    fn head_done(&mut self) -> Result<(), Reject> {
        let head = self.head;
        if head.hosts > 1 {
            return Err(bad("more than one Host"));
        }
        if head.hosts == 0 && !head.http10 {
            return Err(bad("HTTP/1.1 request without Host"));
        }
        if head.content_lengths > 1 {
            return Err(bad("repeated Content-Length"));
        }
        if head.transfer_encodings > 0 {
            if head.content_lengths > 0 {
                return Err(bad("both Transfer-Encoding and Content-Length"));
            }
            if head.http10 {
                return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
            }
            if head.transfer_encodings > 1 || !head.chunked {
                return Err(bad("Transfer-Encoding other than a single chunked"));
            }
        }
        self.heads += 1;
        self.head_len = 0;
        self.phase = if head.chunked {
            Phase::ChunkSize
        } else if head.content_lengths == 1 && head.content_length > 0 {
            Phase::Body(head.content_length)
        } else {
            self.request_done()
        };
        Ok(())
    }

    /// The request (head and body) is complete: the next byte starts a new request.
    fn request_done(&mut self) -> Phase {
        self.head_len = 0;
        Phase::RequestLine
    }

    /// The proxy switched the connection to a tunnel (an upgrade): nothing more is checked.
    pub fn enter_tunnel(&mut self) {
        self.phase = Phase::Tunnel;
        self.line.clear();
        self.head_len = 0;
    }

    /// Bytes accepted so far on this connection.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the current request starts, as an offset of the stream: after a refusal in a
    /// head, everything before it was complete, well-framed requests.
    pub fn request_start(&self) -> u64 {
        self.request_start
    }

    /// Heads completed on this connection so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Bytes of a request head that has started but not finished (0 between requests and
    /// inside bodies). These are the last bytes fed.
    pub fn partial_head(&self) -> usize {
        match self.phase {
            Phase::RequestLine | Phase::Fields => self.head_len,
            _ => 0,
        }
    }

    /// Whether the connection is between requests (no byte of the next one seen yet).
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::RequestLine && self.head_len == 0
    }

    /// Whether the connection has become an upgraded tunnel.
    pub fn is_tunnel(&self) -> bool {
        self.phase == Phase::Tunnel
    }
}

/// `method SP request-target SP HTTP-version`, one space each.
fn request_line(content: &[u8]) -> Result<Head, Reject> {
    let mut parts = content.splitn(3, |&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if method.is_empty() || !method.iter().all(|&b| TCHAR[b as usize]) {
        return Err(bad("invalid method"));
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => {
            return Err(bad(
                "unsupported HTTP version or extra space in request line",
            ))
        }
    };
    if target.is_empty() || !target.iter().all(|&b| TARGET[b as usize]) {
        return Err(bad("invalid request target"));
    }
    let options = method == b"OPTIONS";
    let form_ok = match target[0] {
        b'/' => true,
        b'*' => target.len() == 1 && options,
        _ => absolute_form(target),
    };
    if !form_ok || method == b"CONNECT" {
        return Err(bad("request target is not origin-form, absolute-form or *"));
    }
    Ok(Head {
        http10,
        ..Head::default()
    })
}

/// `http://authority...` or `https://authority...` with a non-empty authority.
fn absolute_form(target: &[u8]) -> bool {
    let rest = if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        &target[7..]
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        &target[8..]
    } else {
        return false;
    };
    !matches!(rest.first(), None | Some(b'/' | b'?' | b'#'))
}

/// `name ":" OWS value OWS`: returns the name and the trimmed value.
fn field(content: &[u8]) -> Result<(&[u8], &[u8]), Reject> {
    if matches!(content[0], b' ' | b'\t') {
        return Err(bad("obsolete line folding"));
    }
    let Some(colon) = memchr::memchr(b':', content) else {
        return Err(bad("header field without a colon"));
    };
    let name = &content[..colon];
    if name.is_empty() || !name.iter().all(|&b| TCHAR[b as usize]) {
        return Err(bad("invalid header field name"));
    }
    let value = trim_ows(&content[colon + 1..]);
    if !value.iter().all(|&b| VALUE[b as usize]) {
        return Err(bad("control character in a header field value"));
    }
    Ok((name, value))
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// `1*DIGIT`, at most 18 digits (no overflow).
fn content_length(value: &[u8]) -> Result<u64, Reject> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad("invalid Content-Length"));
    }
    Ok(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `1*16HEXDIG [BWS] [";" extension]` where extensions hold no control octet but HTAB.
fn chunk_size(content: &[u8]) -> Result<u64, Reject> {
    let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(bad("invalid chunk size"));
    }
    let rest = &content[digits..];
    let ws = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match rest.get(ws) {
        None if ws == 0 => {}
        Some(b';') if rest[ws..].iter().all(|&b| VALUE[b as usize]) => {}
        _ => return Err(bad("invalid chunk extension")),
    }
    Ok(content[..digits].iter().fold(0u64, |n, &d| {
        n << 4 | u64::from((d as char).to_digit(16).unwrap_or(0))
    }))
}

/// Byte classes, as tables so a check costs a load per byte.
macro_rules! table {
    (|$b:ident| $ok:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            t[i] = $ok;
            i += 1;
        }
        t
    }};
}

/// `tchar` (RFC 9110 §5.6.2).
static TCHAR: [bool; 256] = table!(|b| {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
});

/// Field values and chunk extensions: HTAB, SP, visible ASCII, obs-text; no other control.
static VALUE: [bool; 256] = table!(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));

/// Request targets: visible ASCII and obs-text; no space, no control.
static TARGET: [bool; 256] = table!(|b| b > 0x20 && b != 0x7f);

/// `Host`: reg-name, IP literal and port characters (RFC 3986 §3.2.2).
static HOST: [bool; 256] = table!(|b| {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
        )
});
