//! The write side of [`Guarded`]: responses coalesced in a buffer the connection holds only
//! while it answers, writes refused once the guard ended the stream, and the guard's own
//! refusal answers.
//!
//! Pingora's listener write buffer (one MSS, 1,460 B) stays allocated for a connection's whole
//! life, idle or not: a third of what an idle keep-alive connection costs. The listeners run
//! without it (`serve.rs`), and [`OutBuf`] coalesces instead with the same rule as tokio's
//! `BufWriter` under Pingora's HTTP/1 writer — what fits is copied and goes out at the next
//! flush (a response's head and small body in one `send`), a larger write goes straight
//! through — and lets its buffer go while the connection waits for its next request.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

use super::guard::Guarded;

/// The most a response keeps back before writing: Pingora's listener buffer size.
const CAPACITY: usize = 1460;

/// Bytes written but not yet sent.
#[derive(Debug, Default)]
pub(super) struct OutBuf {
    buf: Vec<u8>,
    sent: usize,
}

impl OutBuf {
    /// Sends everything buffered to `inner`.
    fn poll_drain<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            match ready!(Pin::new(&mut *inner).poll_write(cx, &self.buf[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `total` more bytes, sending what is buffered when they would not fit:
    /// `true` when they go into the buffer, `false` when they are too large for it.
    fn poll_room<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        total: usize,
    ) -> Poll<io::Result<bool>> {
        if self.buf.len() + total > CAPACITY {
            ready!(self.poll_drain(inner, cx))?;
        }
        if total >= CAPACITY {
            return Poll::Ready(Ok(false));
        }
        if self.buf.capacity() == 0 && total > 0 {
            self.buf.reserve_exact(CAPACITY); // once per response
        }
        Poll::Ready(Ok(true))
    }

    /// Nothing waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Lets the buffer go when nothing waits in it (the connection is idle).
    pub(super) fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }
}

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
        ready!(self.out.poll_drain(&mut self.inner, cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Writes what is left of a refusal's response (after anything still buffered), then
    /// flushes.
    pub(super) fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if ready!(self.out.poll_drain(&mut self.inner, cx)).is_err() {
            self.refusing = None;
        }
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
}

/// The guard's own answer to a refused request.
pub(super) fn error_response(status: u16, reason: &str) -> Vec<u8> {
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

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write()?;
        if ready!(this.out.poll_room(&mut this.inner, cx, buf.len()))? {
            this.out.buf.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write()?;
        let total = bufs.iter().map(|b| b.len()).sum();
        if ready!(this.out.poll_room(&mut this.inner, cx, total))? {
            for b in bufs {
                this.out.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.out.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.out.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// A socket stand-in recording each write it is given.
    #[derive(Default)]
    struct Sends(Vec<Vec<u8>>);

    impl AsyncWrite for Sends {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().0.push(b.to_vec());
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn write(out: &mut OutBuf, sink: &mut Sends, data: &[u8]) {
        if poll_fn(|cx| out.poll_room(sink, cx, data.len()))
            .await
            .unwrap()
        {
            out.buf.extend_from_slice(data);
        } else {
            sink.0.push(data.to_vec());
        }
    }

    #[tokio::test]
    async fn small_writes_go_out_as_one_send_at_the_flush_and_large_ones_straight_through() {
        let (mut out, mut sink) = (OutBuf::default(), Sends::default());
        write(
            &mut out,
            &mut sink,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
        )
        .await;
        write(&mut out, &mut sink, b"ok\n").await;
        assert!(sink.0.is_empty(), "nothing sent before the flush");
        poll_fn(|cx| out.poll_drain(&mut sink, cx)).await.unwrap();
        assert_eq!(
            sink.0,
            [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".to_vec()]
        );

        write(&mut out, &mut sink, b"head").await;
        write(&mut out, &mut sink, &[7; CAPACITY]).await;
        assert_eq!(
            sink.0.len(),
            3,
            "the buffered head first, then the large write"
        );
        assert_eq!(
            (sink.0[1].as_slice(), sink.0[2].len()),
            (&b"head"[..], CAPACITY)
        );

        out.release();
        assert_eq!(out.buf.capacity(), 0, "an idle connection holds no buffer");
    }
}
