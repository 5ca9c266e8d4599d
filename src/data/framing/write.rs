//! The write side of [`Guarded`]: responses coalesced in a buffer the connection holds only
//! while it answers, and writes refused once the guard ended the stream.
//!
//! Pingora's listener write buffer (one MSS, 1,460 B) stays allocated for a connection's whole
//! life, idle or not: a third of what an idle keep-alive connection costs. The listeners run
//! without it (`serve.rs`), and [`OutBuf`](super::outbuf::OutBuf) coalesces instead with the same rule as tokio's
//! `BufWriter` under Pingora's HTTP/1 writer — what fits is copied and goes out at the next
//! flush (a response's head and small body in one `send`), a larger write goes straight
//! through — and lets its buffer go while the connection waits for its next request.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

use super::guard::Guarded;

impl Guarded {
    /// Refuses writes once the guard has ended the stream; marks a response as started.
    fn before_write(&mut self) -> io::Result<()> {
        if self.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.wrote_since_head = true;
        Ok(())
    }

    /// Sends and flushes whatever is still buffered: a connection about to wait for its next
    /// request must not sit on part of its last answer (Pingora flushes every response;
    /// this is the guard's own assurance).
    pub(super) fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let polled = self.poll_flush_now(cx);
        self.stalled(cx, polled)
    }

    /// Writes what is left of a refusal's response (after anything still buffered), then
    /// flushes; given up when the client takes nothing for `client-write-timeout`.
    pub(super) fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let drained = self.out.poll_drain(&mut self.inner, cx);
        if ready!(self.stalled(cx, drained)).is_err() {
            self.refusing = None;
        }
        while let Some((bytes, written)) = &mut self.refusing {
            let polled = match *written == bytes.len() {
                true => Pin::new(&mut self.inner).poll_flush(cx).map_ok(|()| 0),
                false => Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]),
            };
            let flushing = matches!(&self.refusing, Some((b, w)) if *w == b.len());
            match ready!(self.stalled(cx, polled)) {
                Ok(_) if flushing => self.refusing = None,
                Ok(n) if n > 0 => {
                    if let Some((_, written)) = &mut self.refusing {
                        *written += n;
                    }
                }
                _ => self.refusing = None,
            }
        }
        Poll::Ready(())
    }
}

impl Guarded {
    fn poll_write_now(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.before_write()?;
        if ready!(self.out.poll_room(&mut self.inner, cx, buf.len()))? {
            self.out.push(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.before_write()?;
        let total = bufs.iter().map(|b| b.len()).sum();
        if ready!(self.out.poll_room(&mut self.inner, cx, total))? {
            for b in bufs {
                self.out.push(b);
            }
            return Poll::Ready(Ok(total));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush_now(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.out.poll_drain(&mut self.inner, cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// `polled` through the [`Stall`](super::stall::Stall) watch: a client that takes
    /// nothing for `client-write-timeout` ends the connection.
    fn stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let polled = self.stall.watch(cx, self.limits.write_timeout, polled);
        if let Poll::Ready(Err(e)) = &polled {
            if e.kind() == io::ErrorKind::TimedOut {
                self.closed = true;
                self.refusing = None;
            }
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = this.poll_write_now(cx, buf);
        this.stalled(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = this.poll_write_vectored_now(cx, bufs);
        this.stalled(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = this.poll_flush_now(cx);
        this.stalled(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match this.poll_flush_now(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        };
        this.stalled(cx, polled)
    }
}
