//! An HTTP/2 connection negotiated by ALPN must send its preface within `header-timeout`.
//!
//! Pingora's h2 handshake waits for the client's 24-byte preface with no time limit (and its
//! idle timeout only starts after the handshake), so a client that finished TLS, chose `h2`
//! and then sent nothing would hold its connection forever. [`PrefaceDeadline`] fails reads
//! with `TimedOut` once the deadline passes before the preface's bytes have arrived; after
//! that it only passes bytes through.
//!
//! Its writes are watched for `client-write-timeout` ([`Stall`]): an HTTP/2 connection whose
//! client accepts nothing for that long is closed (a single stream that cannot send is reset
//! by the session's own write timeout, set per request).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{Peek, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::guard::{Limits, OnRefuse, Refusal};
use super::stall::Stall;

/// The length of the HTTP/2 client preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;

/// An HTTP/2 client stream, with a deadline on its first [`PREFACE_LEN`] bytes and a
/// stall limit on its writes.
pub(super) struct PrefaceDeadline {
    pub(super) inner: Stream,
    /// Preface bytes still to arrive; the deadline is off at 0.
    awaited: usize,
    deadline: Pin<Box<Sleep>>,
    on_refuse: OnRefuse,
    write_timeout: Duration,
    stall: Stall,
}

impl PrefaceDeadline {
    /// Wraps `inner`, whose preface must arrive within `limits.header_timeout` from now and
    /// whose writes may make no progress for `limits.write_timeout`.
    pub(super) fn new(inner: Stream, limits: &Limits, on_refuse: OnRefuse) -> Self {
        PrefaceDeadline {
            inner,
            awaited: PREFACE_LEN,
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            on_refuse,
            write_timeout: limits.write_timeout,
            stall: Stall::default(),
        }
    }
}

impl std::fmt::Debug for PrefaceDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefaceDeadline")
            .field("inner", &self.inner)
            .field("awaited", &self.awaited)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for PrefaceDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.awaited == 0 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                this.awaited = this.awaited.saturating_sub(got);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.awaited = 0;
                    (this.on_refuse)(Refusal::HeaderTimeout);
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within header-timeout",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for PrefaceDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.stall.watch(cx, this.write_timeout, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.stall.watch(cx, this.write_timeout, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.stall.watch(cx, this.write_timeout, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.stall.watch(cx, this.write_timeout, polled)
    }
}

/// Peeks through to the stream beneath: Pingora looks for the h2c preface with it on a plain
/// listener (ALPN `h2` connections never need it).
#[async_trait]
impl Peek for PrefaceDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
