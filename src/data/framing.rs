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
//! After a request that asks to upgrade (HTTP/1.1, `Upgrade: websocket` and the `upgrade`
//! connection option: the only upgrade the proxy forwards), what follows is not checked yet:
//! it may be the new protocol's first bytes, sent without waiting for the `101`. The guard
//! holds it until the proxy decides: once the connection became a tunnel,
//! [`Framing::enter_tunnel`] stops the checks (the proxy, not the bytes written, decides);
//! when the upgrade was declined, [`Framing::upgrade_declined`] checks those bytes as the
//! next request's.

#[cfg(test)]
mod tests;

pub mod app;
mod delegate;
pub mod guard;
pub mod keepalive;
mod outbuf;
mod preface;
mod stall;
mod syntax;
mod upgrade;
mod write;

use syntax::{chunk_size, content_length, field, request_line, HOST};

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

pub(super) const fn bad(reason: &'static str) -> Reject {
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
    /// After a request asking to upgrade: the bytes that follow wait for the proxy's decision.
    AwaitUpgrade,
    /// An upgraded connection: nothing is checked any more.
    Tunnel,
}

/// What the current head has said so far.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Head {
    pub(super) http10: bool,
    pub(super) hosts: u8,
    pub(super) content_lengths: u8,
    pub(super) content_length: u64,
    pub(super) transfer_encodings: u8,
    pub(super) chunked: bool,
    /// `Upgrade: websocket` (in its only `Upgrade` line), and `upgrade` among the `Connection`
    /// options.
    pub(super) websocket: bool,
    pub(super) upgrades: u8,
    pub(super) connection_upgrade: bool,
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
    /// The current request asks to upgrade: after it, [`Phase::AwaitUpgrade`].
    upgrade_asked: bool,
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
            upgrade_asked: false,
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
                Phase::AwaitUpgrade => {
                    self.head_len += data.len();
                    data.len()
                }
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
            Phase::Body(_)
            | Phase::ChunkData(_)
            | Phase::ChunkEnd(_)
            | Phase::AwaitUpgrade
            | Phase::Tunnel => Ok(()),
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
            7 if is("upgrade") => {
                head.upgrades = head.upgrades.saturating_add(1);
                head.websocket = head.upgrades == 1 && value.eq_ignore_ascii_case(b"websocket");
            }
            10 if is("connection") => {
                head.connection_upgrade |= value
                    .split(|b| *b == b',')
                    .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
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
        self.upgrade_asked = !head.http10 && head.websocket && head.connection_upgrade;
        self.phase = if head.chunked {
            Phase::ChunkSize
        } else if head.content_lengths == 1 && head.content_length > 0 {
            Phase::Body(head.content_length)
        } else {
            self.request_done()
        };
        Ok(())
    }

    /// The request (head and body) is complete: the next byte starts a new request, or waits
    /// for the proxy's decision after a request asking to upgrade.
    fn request_done(&mut self) -> Phase {
        self.head_len = 0;
        match std::mem::take(&mut self.upgrade_asked) {
            true => Phase::AwaitUpgrade,
            false => Phase::RequestLine,
        }
    }

    /// The proxy answered the request asking to upgrade without switching: the bytes held
    /// since ([`Self::partial_head`] of them) are to be fed again, as the next request's.
    pub fn upgrade_declined(&mut self) {
        if self.phase == Phase::AwaitUpgrade {
            self.offset -= self.head_len as u64;
            self.head_len = 0;
            self.phase = Phase::RequestLine;
        }
    }

    /// Whether the last request asked to upgrade and the proxy has not decided yet.
    pub fn awaits_upgrade(&self) -> bool {
        self.phase == Phase::AwaitUpgrade
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
    /// inside bodies), or held after a request asking to upgrade. These are the last bytes fed.
    pub fn partial_head(&self) -> usize {
        match self.phase {
            Phase::RequestLine | Phase::Fields | Phase::AwaitUpgrade => self.head_len,
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
