//! An HTTP/2 connection negotiated by ALPN must send its preface within `header-timeout`.
//!
//! Pingora's h2 handshake waits for the client's 24-byte preface with no time limit (and its
//! idle timeout only starts after the handshake), so a client that finished TLS, chose `h2`
//! and then sent nothing would hold its connection forever. [`PrefaceDeadline`] fails reads
//! with `TimedOut` once the deadline passes before the preface's bytes have arrived; after
//! that it only passes bytes through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{Peek, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::guard::{OnRefuse, Refusal};

/// The length of the HTTP/2 client preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;

/// A TLS stream that chose `h2`, with a deadline on its first [`PREFACE_LEN`] bytes.
pub(super) struct PrefaceDeadline {
    pub(super) inner: Stream,
    /// Preface bytes still to arrive; the deadline is off at 0.
    awaited: usize,
    deadline: Pin<Box<Sleep>>,
    on_refuse: OnRefuse,
}

impl PrefaceDeadline {
    /// Wraps `inner`, whose preface must arrive within `timeout` from now.
    pub(super) fn new(inner: Stream, timeout: Duration, on_refuse: OnRefuse) -> Self {
        PrefaceDeadline {
            inner,
            awaited: PREFACE_LEN,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            on_refuse,
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
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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

/// Not peekable: ALPN already said HTTP/2, so Pingora's h2c peek is never needed.
#[async_trait]
impl Peek for PrefaceDeadline {}
