//! The HTTP/1 keep-alive loop, ours rather than Pingora's.
//!
//! Pingora's loop (`ServerApp for HttpServerApp`) starts the next request's session — the
//! whole boxed proxy state machine and a 4 KiB header buffer — as soon as the previous
//! response is written, so an idle keep-alive connection holds all of that while it waits.
//! This loop first waits, holding only the socket and the [`Guarded`] state, until the client
//! sends the next request's first bytes (or closes, or a limit ends the connection), and only
//! then hands one request to Pingora's `process_new_http`, looping with the stream it hands
//! back. The loop runs as a task of its own, spawned on the accepting thread, so Pingora's
//! large per-connection task ends at once. Graceful shutdown closes connections idle in the
//! wait, as Pingora's `http_cleanup` does for its own.
//!
//! ```text
//! accept ─▶ wait for bytes (socket + Guarded) ─▶ process_new_http (one request) ─┐
//!                ▲                                                               │
//!                └──────────────── reused stream, persistent settings ◀──────────┘
//! ```

use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::ReadBuf;
use tokio::sync::Notify;

use super::guard::{Guarded, Refusal};

/// How much one read between requests takes at most (a request head usually fits).
const FIRST_READ: usize = 4096;

/// The largest buffer an idle connection keeps from its last request head.
const KEPT: usize = 1024;

/// Shards of [`Closing`]'s wake-up: a waiting connection registers on its thread's shard,
/// so worker threads do not share one lock per request (as Pingora's own `ShardedNotify`).
const SHARDS: usize = 16;

/// Set when the service shuts down: connections waiting for a request close.
pub(super) struct Closing {
    closed: AtomicBool,
    shards: Box<[Notify]>,
}

impl Default for Closing {
    fn default() -> Self {
        Closing {
            closed: AtomicBool::new(false),
            shards: (0..SHARDS).map(|_| Notify::new()).collect(),
        }
    }
}

impl Closing {
    /// Closes every connection waiting for its next request, now and from now on.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for shard in self.shards.iter() {
            shard.notify_waiters();
        }
    }

    /// This thread's shard.
    fn local(&self) -> &Notify {
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        &self.shards[SHARD.with(|s| *s)]
    }
}

/// Serves one HTTP/1 request without Pingora's `HttpServerApp` (switchback's own data path),
/// when it [`takes`](OneRequest::takes) the next one.
pub trait OneRequest: Send + Sync + 'static {
    /// Whether it serves the next request (checked before each request is read).
    fn takes(&self) -> bool;

    /// Serves one request, under `process_new_http`'s contract: the stream comes back when
    /// the connection can carry another request.
    fn serve<'a>(
        &'a self,
        session: ServerSession,
        shutdown: &'a ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'a>>;
}

/// The apps serving the requests of a connection: `own` when it takes them, else `app`.
pub(super) struct Apps<'a, A> {
    pub(super) app: &'a Arc<A>,
    pub(super) own: Option<&'a dyn OneRequest>,
}

/// Serves the HTTP/1 connection `guarded` one request at a time with `apps`.
pub(super) async fn serve<A: HttpServerApp + Send + Sync + 'static>(
    apps: Apps<'_, A>,
    mut guarded: Box<Guarded>,
    closing: &Closing,
    shutdown: &ShutdownWatch,
) {
    let mut settings: Option<HttpPersistentSettings> = None;
    let mut first = true;
    loop {
        if !next_request(&mut guarded, closing).await {
            return;
        }
        let request = one_request(&apps, guarded, settings.take(), first, shutdown);
        first = false;
        let Some(reused) = request.await else {
            return;
        };
        let stream: Stream;
        (stream, settings) = reused.consume();
        guarded = match stream.into_any().downcast::<Guarded>() {
            Ok(guarded) => guarded,
            Err(_) => {
                // Pingora hands back the stream it was given; anything else is a bug.
                debug_assert!(false, "Pingora handed back another stream");
                tracing::error!("the reused client stream is not the guarded one; closing it");
                return;
            }
        };
    }
}

/// The future serving one request on `guarded`. Built outside the loop's async body so that
/// the session (several hundred bytes, inline) never takes space in an idle connection's task.
fn one_request<'a, A: HttpServerApp + Send + Sync + 'static>(
    apps: &Apps<'a, A>,
    guarded: Box<Guarded>,
    settings: Option<HttpPersistentSettings>,
    first: bool,
    shutdown: &'a ShutdownWatch,
) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'a>> {
    let mut session = ServerSession::new_http1(guarded);
    // As Pingora's own loop: the first request gets the defaults, later ones what the
    // previous session carried over (keep-alive, reuses left, pipelined bytes).
    if first {
        let keepalive = (!*shutdown.borrow()).then_some(60);
        session.set_keepalive(keepalive);
        session.set_keepalive_reuses_remaining(
            apps.app
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
    } else if let Some(settings) = settings {
        settings.apply_to_session(&mut session);
    }
    match apps.own.filter(|own| own.takes()) {
        Some(own) => own.serve(session, shutdown),
        None => apps.app.process_new_http(session, shutdown),
    }
}

/// Waits for the next request on `guarded`; `false` when the connection is over. What the
/// connection already holds (or reads at once) is served even once the service is closing,
/// as Pingora's own loop does (with `Connection: close`); only a connection that would have
/// to wait is closed.
async fn next_request(guarded: &mut Guarded, closing: &Closing) -> bool {
    // Created before the flag is read, it sees any `close()` after this point, polled or not.
    let notified = closing.local().notified();
    tokio::pin!(notified);
    poll_fn(|cx| match guarded.poll_next_request(cx) {
        Poll::Ready(go) => Poll::Ready(go),
        Poll::Pending if closing.closed.load(Ordering::Acquire) => Poll::Ready(false),
        Poll::Pending => notified.as_mut().poll(cx).map(|()| false),
    })
    .await
}

impl Guarded {
    /// Waits, holding no buffer, until the next request's first bytes are here: `Ready(true)`
    /// when a request (or a refusal to write) follows, `Ready(false)` when the client closed
    /// or a time limit ended the connection quietly. Returns at once when bytes are already
    /// held or a request was handed on and not answered yet (a pipelined one Pingora holds).
    pub(super) fn poll_next_request(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.closed {
            return Poll::Ready(self.refusing.is_some());
        }
        self.follow_upgrade(); // a declined upgrade's held bytes are the next request's
        let waiting = self.held.is_empty() && self.pending.is_none() && self.all_answered();
        if !waiting || self.framing.is_tunnel() {
            return Poll::Ready(true);
        }
        // Still sending (a client not reading): wait for it and for the next request's bytes
        // at once, so the idle deadline armed by the read below still applies.
        if let Poll::Ready(Err(_)) = self.poll_send_buffered(cx) {
            return Poll::Ready(false);
        }
        // A small last head's buffer is kept for the next one (an idle connection holds a
        // request's size at most); a large one goes back.
        if self.held.capacity() > KEPT {
            self.held = Vec::new();
        }
        let mut bytes = [MaybeUninit::<u8>::uninit(); FIRST_READ];
        let mut buf = ReadBuf::uninit(&mut bytes);
        let Poll::Ready(read) = self.poll_inner(cx, &mut buf) else {
            self.out.release(); // nothing to answer until the client speaks again
            return Poll::Pending;
        };
        if read.is_err() {
            return Poll::Ready(false);
        }
        if self.closed || self.pending.is_some() {
            return Poll::Ready(!self.closed || self.refusing.is_some());
        }
        let new = buf.filled();
        if new.is_empty() {
            return Poll::Ready(false);
        }
        self.held.extend_from_slice(new);
        match self.check(new) {
            Ok(partial) => self.ready = self.held.len() - partial,
            Err((reject, prefix)) => {
                let in_head = self.framing.partial_head() > 0 || self.framing.is_idle();
                self.ready = prefix.filter(|_| in_head).unwrap_or(0);
                self.refuse(Refusal::Framing(reject), in_head);
            }
        }
        Poll::Ready(true)
    }
}
