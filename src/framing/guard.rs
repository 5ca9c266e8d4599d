//! The client connection as Pingora sees it: the socket behind a [`Framing`] check, a header
//! timeout and an idle timeout.
//!
//! ```text
//! socket ──read──▶ Guarded ──(checked bytes; partial heads held back)──▶ Pingora
//!        ◀─write── Guarded ◀── responses (the first bytes tell an upgrade's 101 apart)
//! ```
//!
//! - Bytes reach Pingora only once [`Framing`] accepted them. A head that has not finished is
//!   held back, so Pingora never sees half a head: a timed-out or refused head closes the
//!   connection quietly, and no byte of a refused request is forwarded.
//! - On a refusal the wrapper writes the `400`/`431` itself (when no other response can be
//!   on the wire) and then ends the stream: reads see end-of-file, writes fail.
//! - `header-timeout`: a head must be complete within it, counted from the connection's
//!   accept for the first request and from the first byte for later ones (`408`, close).
//! - `client-idle-timeout`: a keep-alive connection idle this long after its last response is
//!   closed. The proxy marks the end of each response with [`response_done`].

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{Framing, Reject};

/// The client-side time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `[proxy] header-timeout`.
    pub header_timeout: Duration,
    /// `[proxy] client-idle-timeout`.
    pub idle_timeout: Duration,
}

/// Counts what the guard refused, for metrics. Called once per refused connection.
pub type OnRefuse = Arc<dyn Fn(Refusal) + Send + Sync>;

/// Why a connection was ended by the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Ambiguous or invalid framing.
    Framing(Reject),
    /// The head did not arrive within `header-timeout`.
    HeaderTimeout,
    /// Idle longer than `client-idle-timeout`.
    Idle,
}

/// What the pending timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Head,
    Idle,
}

/// A client stream behind the framing check and the timeouts.
pub struct Guarded {
    inner: Stream,
    framing: Framing,
    limits: Limits,
    on_refuse: OnRefuse,
    /// Bytes read but not yet handed on: `[pos..ready]` checked and ready, `[ready..]` a head
    /// still in progress.
    held: Vec<u8>,
    pos: usize,
    ready: usize,
    /// When the current head started (the accept, for the first one).
    head_started: Instant,
    /// When the connection went idle after its last response.
    idle_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The proxy finished the response to the last head.
    response_done: AtomicBool,
    /// A head was completed and its response has not started.
    awaiting_response: bool,
    /// Something was written since the last head completed.
    wrote_since_head: bool,
    /// A refusal's response still being written: `(bytes, written)`.
    refusing: Option<(Vec<u8>, usize)>,
    /// The stream has ended for Pingora: reads see end-of-file, writes fail.
    closed: bool,
}

impl Guarded {
    /// Wraps a freshly accepted client stream.
    pub fn new(inner: Stream, limits: Limits, on_refuse: OnRefuse) -> Self {
        Guarded {
            inner,
            framing: Framing::default(),
            limits,
            on_refuse,
            held: Vec::new(),
            pos: 0,
            ready: 0,
            head_started: Instant::now(),
            idle_since: None,
            timer: None,
            response_done: AtomicBool::new(false),
            awaiting_response: false,
            wrote_since_head: false,
            refusing: None,
            closed: false,
        }
    }

    /// Checks `new` (just read) and decides what is held back. Returns how many bytes at the
    /// end of the data read so far form a head still in progress.
    fn check(&mut self, new: &[u8]) -> Result<usize, Reject> {
        let (was_idle, heads) = (self.framing.is_idle(), self.framing.heads());
        let result = self.framing.feed(new);
        if self.framing.heads() > heads {
            self.awaiting_response = true;
            self.wrote_since_head = false;
            self.response_done.store(false, Ordering::Relaxed);
            self.idle_since = None;
        }
        result?;
        let partial = self.framing.partial_head();
        if partial > 0 && (was_idle || self.framing.heads() > heads) && heads > 0 {
            self.head_started = Instant::now();
            self.idle_since = None;
        }
        Ok(partial)
    }

    /// Starts ending the connection: writes `status` when no other response can be on the
    /// wire, then reads see end-of-file.
    fn refuse(&mut self, why: Refusal, in_head: bool) {
        (self.on_refuse)(why);
        let answer = match why {
            Refusal::Framing(r) => Some((r.status, r.reason)),
            Refusal::HeaderTimeout => Some((408, "request head not received in time")),
            Refusal::Idle => None,
        };
        let quiet = if in_head {
            self.framing.heads() == 0 || self.response_done.load(Ordering::Relaxed)
        } else {
            !self.wrote_since_head
        };
        self.held.clear();
        self.closed = true;
        if let (Some((status, reason)), true) = (answer, quiet) {
            self.refusing = Some((error_response(status, reason), 0));
        }
    }

    /// Writes what is left of a refusal's response, then flushes.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some((bytes, written)) = &mut self.refusing {
            if *written == bytes.len() {
                let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
                self.refusing = None;
                break;
            }
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                Ok(n) if n > 0 => *written += n,
                _ => self.refusing = None,
            }
        }
        Poll::Ready(())
    }

    /// The deadline while waiting for client bytes, if one applies now.
    fn deadline(&mut self) -> Option<(Instant, Wait)> {
        let in_head = self.framing.partial_head() > 0;
        if in_head || (self.framing.heads() == 0 && self.framing.is_idle()) {
            return Some((self.head_started + self.limits.header_timeout, Wait::Head));
        }
        if self.framing.is_idle() && self.response_done.load(Ordering::Relaxed) {
            let since = *self.idle_since.get_or_insert_with(Instant::now);
            return Some((since + self.limits.idle_timeout, Wait::Idle));
        }
        None
    }

    /// Polls the timer for the current deadline; `Ready` when it passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Wait> {
        let Some((at, wait)) = self.deadline() else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        timer.as_mut().poll(cx).map(|()| wait)
    }

    /// Reads from the socket into `buf`, bounded by the current deadline.
    fn poll_inner(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                let wait = ready!(self.poll_deadline(cx));
                let in_head = self.framing.partial_head() > 0;
                match wait {
                    Wait::Head if in_head => self.refuse(Refusal::HeaderTimeout, true),
                    Wait::Head => {
                        (self.on_refuse)(Refusal::HeaderTimeout);
                        self.closed = true;
                    }
                    Wait::Idle => self.refuse(Refusal::Idle, true),
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Reads more of a held head into `held`.
    fn poll_hold_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        const CHUNK: usize = 4096;
        let mut held = std::mem::take(&mut self.held);
        let len = held.len();
        held.resize(len + CHUNK, 0);
        let mut buf = ReadBuf::new(&mut held[len..]);
        let polled = self.poll_inner(cx, &mut buf);
        let n = buf.filled().len();
        held.truncate(len + n);
        if !self.closed {
            self.held = held;
        }
        polled.map_ok(|()| n)
    }

    /// Hands on held bytes that are ready.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>) {
        let n = (self.ready - self.pos).min(buf.remaining());
        buf.put_slice(&self.held[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.ready {
            self.held.drain(..self.ready);
            (self.pos, self.ready) = (0, 0);
        }
    }
}

/// Marks the end of the response to the last request on `stream`, when it is a [`Guarded`]
/// stream: the idle timeout starts, and a refused next request can be answered.
pub fn response_done(stream: &Stream) {
    if let Some(guarded) = stream.as_any().downcast_ref::<Guarded>() {
        guarded.response_done.store(true, Ordering::Relaxed);
    }
}

fn error_response(status: u16, reason: &str) -> Vec<u8> {
    let text = match status {
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = format!("bad request: {reason}\n");
    format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.refusing.is_some() {
                ready!(this.poll_refusal(cx));
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            if this.ready > this.pos {
                this.deliver(buf);
                return Poll::Ready(Ok(()));
            }
            if !this.held.is_empty() {
                // A head in progress: read more of it before handing anything on.
                let start = this.held.len();
                let n = ready!(this.poll_hold_more(cx))?;
                if this.closed {
                    continue;
                }
                if n == 0 {
                    this.held.clear();
                    return Poll::Ready(Ok(()));
                }
                let new = this.held[start..].to_vec();
                match this.check(&new) {
                    Ok(partial) => this.ready = this.held.len() - partial,
                    Err(r) => this.refuse(Refusal::Framing(r), this.framing.partial_head() > 0),
                }
                continue;
            }
            let before = buf.filled().len();
            ready!(this.poll_inner(cx, buf))?;
            if this.closed {
                buf.set_filled(before);
                continue;
            }
            let after = buf.filled().len();
            if after == before || this.framing.is_tunnel() {
                return Poll::Ready(Ok(()));
            }
            match this.check(&buf.filled()[before..after]) {
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(partial) => {
                    this.held
                        .extend_from_slice(&buf.filled()[after - partial..after]);
                    buf.set_filled(after - partial);
                    if after - partial > before {
                        return Poll::Ready(Ok(()));
                    }
                }
                Err(r) => {
                    buf.set_filled(before);
                    let in_head = this.framing.partial_head() > 0 || this.framing.is_idle();
                    this.refuse(Refusal::Framing(r), in_head);
                }
            }
        }
    }
}

impl Guarded {
    fn before_write(&mut self, first: &[u8]) -> io::Result<()> {
        if self.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if std::mem::take(&mut self.awaiting_response) {
            self.framing.response_started(first);
        }
        self.wrote_since_head = true;
        Ok(())
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write(buf)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        this.before_write(first)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
