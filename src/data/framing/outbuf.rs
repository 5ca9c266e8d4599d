//! The buffer a guarded connection writes its responses into, and the guard's own refusal
//! answers: what both the guard (`guard.rs`) and its write side (`write.rs`) use.
//!
//! [`OutBuf`] coalesces with the same rule as tokio's `BufWriter` under Pingora's HTTP/1
//! writer — what fits is copied and goes out at the next flush, a larger write goes straight
//! through — and lets its buffer go while the connection waits for its next request.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

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
    pub(super) fn poll_drain<W: AsyncWrite + Unpin + ?Sized>(
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
    pub(super) fn poll_room<W: AsyncWrite + Unpin + ?Sized>(
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

    /// Adds `data` (after [`Self::poll_room`] said it fits).
    pub(super) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
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
