//! `[proxy] client-write-timeout`: a write towards a client that makes no progress for that
//! long fails with `TimedOut`, and the connection ends.
//!
//! Pingora's `read-timeout`/`write-timeout` bound the upstream side only; a client that asks
//! for a large body and stops reading would otherwise pin the response's upstream connection,
//! the in-flight counts and a drained backend until it closed. [`Stall`] watches the result of
//! every write poll on a client stream (HTTP/1 behind the guard, tunnels and TLS alike; the
//! HTTP/2 connection's socket): progress clears it, a pending write starts it, and a write
//! still pending at the limit fails. Only a pending write costs anything (a timer, armed once).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Watches one client stream's writes for a stall.
#[derive(Debug, Default)]
pub(super) struct Stall {
    /// When the current run of pending writes began.
    since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Stall {
    /// Passes `polled` (a write, flush or shutdown of the stream) through: `Ready` is progress;
    /// `Pending` for `limit` since the last progress becomes a `TimedOut` error.
    pub(super) fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        limit: Duration,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.since = None;
            return polled;
        }
        let at = *self.since.get_or_insert_with(Instant::now) + limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.since = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took no response bytes within client-write-timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[tokio::test(start_paused = true)]
    async fn a_pending_write_fails_at_the_limit_and_progress_restarts_the_clock() {
        let limit = Duration::from_secs(5);
        let mut stall = Stall::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut pending = || stall.watch::<()>(&mut cx, limit, Poll::Pending);
        assert!(pending().is_pending());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(pending().is_pending());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(stall.watch(&mut cx, limit, Poll::Ready(Ok(1))).is_ready());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(stall
            .watch::<()>(&mut cx, limit, Poll::Pending)
            .is_pending());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(stall
            .watch::<()>(&mut cx, limit, Poll::Pending)
            .is_pending());
        tokio::time::advance(Duration::from_secs(2)).await;
        match stall.watch::<()>(&mut cx, limit, Poll::Pending) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("not timed out: {other:?}"),
        }
    }
}
