//! The client connection as Pingora sees it: the socket behind a [`Framing`] check, a header
//! timeout and an idle timeout.
//!
//! ```text
//! socket ──read──▶ Guarded ──(checked bytes; partial heads held back)──▶ Pingora
//!        ◀─write── Guarded ◀── responses
//! proxy hooks ──▶ response_done(stream) (one per answered request), upgraded(stream) (a 101)
//! ```
//!
//! - Bytes reach Pingora only once [`Framing`] accepted them. A head that has not finished is
//!   held back, so Pingora never sees half a head: a timed-out or refused head closes the
//!   connection quietly, and no byte of a refused request is forwarded.
//! - A refused head (or one past `header-timeout`) is answered `400`/`431`/`408` by the wrapper
//!   itself, once every request before it has been answered: the well-framed requests before
//!   it in the same read are handed on and served first; then reads see end-of-file and writes
//!   fail. A refusal inside a body ends the connection at once (answered `400` when no
//!   response has started).
//! - `header-timeout`: a head must be complete within it, counted from the connection's
//!   accept for the first request and from the first byte for later ones.
//! - `client-idle-timeout`: a connection with every request answered and no byte of the next
//!   one is closed after it.
//! - `client-write-timeout`: a write towards the client that makes no progress for that long
//!   fails, and the connection ends ([`Stall`]).
//! - The proxy, not the bytes, says when a connection became a tunnel ([`upgraded`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::outbuf::{error_response, OutBuf};
use super::stall::Stall;
use super::{Framing, Reject};

/// The client-side time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `[proxy] header-timeout`.
    pub header_timeout: Duration,
    /// `[proxy] client-idle-timeout`.
    pub idle_timeout: Duration,
    /// `[proxy] client-write-timeout`.
    pub write_timeout: Duration,
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

/// How often a refusal waiting for earlier responses looks again.
const RECHECK: Duration = Duration::from_millis(10);

/// A client stream behind the framing check and the timeouts.
pub struct Guarded {
    pub(super) inner: Stream,
    pub(super) framing: Framing,
    pub(super) limits: Limits,
    on_refuse: OnRefuse,
    /// Bytes read but not yet handed on: `[pos..ready]` checked and ready, `[ready..]` a head
    /// still in progress.
    pub(super) held: Vec<u8>,
    pos: usize,
    pub(super) ready: usize,
    /// When the current head started (the accept, for the first one).
    head_started: Instant,
    /// When the connection went idle after its last response.
    idle_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Requests the proxy has finished answering (counted by [`response_done`]).
    responses_done: AtomicU64,
    /// The proxy switched the connection to a tunnel ([`upgraded`]).
    pub(super) upgraded: AtomicBool,
    /// Something was written since the last head completed.
    pub(super) wrote_since_head: bool,
    /// A refusal waiting until this many requests have been answered.
    pub(super) pending: Option<(Refusal, u64)>,
    /// A refusal's response still being written: `(bytes, written)`.
    pub(super) refusing: Option<(Vec<u8>, usize)>,
    /// The stream has ended for Pingora: reads see end-of-file, writes fail.
    pub(super) closed: bool,
    /// Response bytes not sent yet.
    pub(super) out: OutBuf,
    /// Watches writes towards the client for `client-write-timeout`.
    pub(super) stall: Stall,
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
            responses_done: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            wrote_since_head: false,
            pending: None,
            refusing: None,
            closed: false,
            out: OutBuf::default(),
            stall: Stall::default(),
        }
    }

    /// Checks `new` (just read; the stream's bytes up to here came before it). Returns how many
    /// bytes at the end of the data read so far form a head still in progress, or the refusal
    /// with how many of `new`'s bytes precede the refused request (complete requests to hand
    /// on; `None` when the refused request began before `new`).
    pub(super) fn check(&mut self, new: &[u8]) -> Result<usize, (Reject, Option<usize>)> {
        let (partial_before, heads, offset) = (
            self.framing.partial_head(),
            self.framing.heads(),
            self.framing.offset(),
        );
        let result = self.framing.feed(new);
        if self.framing.heads() > heads {
            self.wrote_since_head = false;
            self.idle_since = None;
        }
        if let Err(reject) = result {
            let start = self.framing.request_start();
            let prefix = (start >= offset).then(|| ((start - offset) as usize).min(new.len()));
            return Err((reject, prefix));
        }
        let partial = self.framing.partial_head();
        let started_here = partial_before == 0 || self.framing.heads() > heads;
        if partial > 0 && started_here && self.framing.heads() > 0 {
            self.head_started = Instant::now();
            self.idle_since = None;
        }
        Ok(partial)
    }

    /// Every request handed on so far has been answered.
    pub(super) fn all_answered(&self) -> bool {
        self.responses_done.load(Ordering::Relaxed) >= self.framing.heads()
    }

    /// Ends the connection for `why`. In a head, the answer waits until every earlier request
    /// has been answered; in a body it goes out at once when no response has started.
    pub(super) fn refuse(&mut self, why: Refusal, in_head: bool) {
        self.held.truncate(self.ready);
        if in_head && !matches!(why, Refusal::Idle) {
            self.pending = Some((why, self.framing.heads()));
            return;
        }
        self.end(why, !in_head && !self.wrote_since_head);
    }

    /// Counts the refusal, queues its answer when `answer`, and ends the stream for Pingora.
    fn end(&mut self, why: Refusal, answer: bool) {
        (self.on_refuse)(why);
        let text = match why {
            Refusal::Framing(r) => Some((r.status, r.reason)),
            Refusal::HeaderTimeout => Some((408, "request head not received in time")),
            Refusal::Idle => None,
        };
        self.held.clear();
        (self.pos, self.ready) = (0, 0);
        self.closed = true;
        if let (Some((status, reason)), true) = (text, answer) {
            self.refusing = Some((error_response(status, reason), 0));
        }
    }

    /// A pending refusal goes out once the requests before it are answered; until then the
    /// read stays pending (looked at again every [`RECHECK`]).
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some((why, after)) = self.pending else {
            return Poll::Ready(());
        };
        if self.responses_done.load(Ordering::Relaxed) >= after {
            self.pending = None;
            self.end(why, true);
            return Poll::Ready(());
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(RECHECK)));
        timer.as_mut().reset(Instant::now() + RECHECK);
        let _ = timer.as_mut().poll(cx);
        Poll::Pending
    }

    /// The deadline while waiting for client bytes, if one applies now (none while bytes after
    /// an upgrade request wait for the proxy's decision: the upstream's timeouts bound that).
    fn deadline(&mut self) -> Option<(Instant, bool)> {
        if self.framing.awaits_upgrade() {
            return None;
        }
        let in_head = self.framing.partial_head() > 0;
        if in_head || (self.framing.heads() == 0 && self.framing.is_idle()) {
            return Some((self.head_started + self.limits.header_timeout, true));
        }
        if self.framing.is_idle() && self.all_answered() {
            let since = *self.idle_since.get_or_insert_with(Instant::now);
            return Some((since + self.limits.idle_timeout, false));
        }
        None
    }

    /// Reads from the socket into `buf`, bounded by the current deadline. When the deadline
    /// passes, starts the refusal and returns `Ready(Ok)` with nothing read.
    pub(super) fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_read(cx, buf) {
            return Poll::Ready(r);
        }
        let Some((at, head)) = self.deadline() else {
            return Poll::Pending;
        };
        // The armed timer is only ever moved earlier: re-arming it for every request would
        // cost a timer-wheel update per request. Firing early, it is re-armed to the real
        // deadline once.
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if at < timer.deadline() {
            timer.as_mut().reset(at);
        }
        loop {
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= at {
                break;
            }
            timer.as_mut().reset(at);
        }
        match head {
            true if self.framing.partial_head() > 0 => self.refuse(Refusal::HeaderTimeout, true),
            // The first request never started: close without an answer.
            true => self.end(Refusal::HeaderTimeout, false),
            false => self.end(Refusal::Idle, false),
        }
        Poll::Ready(Ok(()))
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
        if !self.closed && self.pending.is_none() {
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

/// Marks the end of the response to one more request on `stream`, when it is a [`Guarded`]
/// stream: with every request answered the idle timeout starts, and a refused next request
/// can be answered.
pub fn response_done(stream: &Stream) {
    if let Some(guarded) = stream.as_any().downcast_ref::<Guarded>() {
        guarded.responses_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Marks `stream` as switched to a tunnel by the proxy (a `101` to an upgrade request).
pub fn upgraded(stream: &Stream) {
    if let Some(guarded) = stream.as_any().downcast_ref::<Guarded>() {
        guarded.upgraded.store(true, Ordering::Relaxed);
    }
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
            this.follow_upgrade();
            if this.ready > this.pos {
                this.deliver(buf);
                return Poll::Ready(Ok(()));
            }
            if this.pending.is_some() {
                ready!(this.poll_pending(cx));
                continue;
            }
            if !this.held.is_empty() {
                let awaiting = this.framing.awaits_upgrade();
                if awaiting && this.held.len() >= super::MAX_HEAD {
                    // Enough early bytes of an upgrade: no more until the proxy decides (the
                    // tunnel's or the next request's read polls again).
                    return Poll::Pending;
                }
                // A head in progress: read more of it before handing anything on.
                let start = this.held.len();
                let n = ready!(this.poll_hold_more(cx))?;
                if this.closed || this.pending.is_some() {
                    continue;
                }
                if n == 0 {
                    if !awaiting {
                        this.held.clear(); // a half head is no request
                    }
                    return Poll::Ready(Ok(()));
                }
                let new = this.held[start..].to_vec();
                match this.check(&new) {
                    Ok(partial) => this.ready = this.held.len() - partial,
                    Err((r, prefix)) => {
                        // Complete requests before the refused one (the held head finished
                        // in `new`, then another began) go on; the refused one never does.
                        this.ready = prefix.map_or(0, |p| start + p);
                        this.refuse(Refusal::Framing(r), true);
                    }
                }
                continue;
            }
            let before = buf.filled().len();
            ready!(this.poll_inner(cx, buf))?;
            if this.closed || this.pending.is_some() {
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
                Err((r, prefix)) => {
                    let in_head = this.framing.partial_head() > 0 || this.framing.is_idle();
                    let prefix = prefix.filter(|_| in_head).unwrap_or(0);
                    buf.set_filled(before + prefix);
                    this.refuse(Refusal::Framing(r), in_head);
                    if in_head && prefix > 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}
