//! The stream traits of [`Guarded`] and [`PrefaceDeadline`]: Pingora's connection traits,
//! passed through to the socket underneath (Guarded's writes: `write.rs`).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};

use super::guard::Guarded;
use super::preface::PrefaceDeadline;

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

/// Pingora's connection traits (all but reads, writes, peeks and shutdown) for a wrapper
/// around a [`pingora::protocols::Stream`] held in its `inner` field, passed through to it.
macro_rules! pass_connection_traits {
    ($wrapper:ty) => {
        impl UniqueID for $wrapper {
            fn id(&self) -> UniqueIDType {
                self.inner.id()
            }
        }

        impl Ssl for $wrapper {
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

        impl GetTimingDigest for $wrapper {
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

        impl GetProxyDigest for $wrapper {
            fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
                self.inner.get_proxy_digest()
            }
            fn set_proxy_digest(&mut self, digest: ProxyDigest) {
                self.inner.set_proxy_digest(digest);
            }
        }

        impl GetSocketDigest for $wrapper {
            fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
                self.inner.get_socket_digest()
            }
            fn set_socket_digest(&mut self, digest: SocketDigest) {
                self.inner.set_socket_digest(digest);
            }
        }
    };
}

pass_connection_traits!(Guarded);
pass_connection_traits!(PrefaceDeadline);

#[async_trait]
impl Shutdown for Guarded {
    /// Sends what the guard still buffers first.
    async fn shutdown(&mut self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(self).await;
    }
}

#[async_trait]
impl Shutdown for PrefaceDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

/// Pingora peeks for the h2c preface (with `[proxy] h2c`) by reading until it has as many
/// bytes as the preface, with no time limit: an HTTP/1.0 request shorter than that would
/// hang. A guarded stream is one [`super::app::GuardedApp`] already found is not HTTP/2, so
/// its peek answers at once with bytes that are not the preface, and reads nothing.
#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        buf.fill(0);
        Ok(true)
    }
}
