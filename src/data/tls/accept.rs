//! The Pingora app wrapper that terminates TLS on the `[tls]` listeners.
//!
//! Pingora's own TLS listener (`TlsSettings`) is not used: it offers TLS 1.2 and 1.3 only
//! together (no `min-version = "1.3"`), panics on a bad certificate file, reports a failed
//! handshake only in its own log (no `reason` for the metric) and gives every handshake a
//! fixed 60 s. Here the listeners are plain TCP, so the binary-upgrade hand-over treats them
//! like the others, and each accepted socket is handed to Pingora's rustls acceptor
//! ([`Acceptor::from_server_config`]) under `[proxy] header-timeout`, with switchback's
//! [`CertStore`] choosing the certificate. The decrypted stream then goes to the same app as
//! the plain listeners.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::tls::{version, ServerConfig};

use super::store::CertStore;
use crate::config::model::{Alpn, FrontTls, TlsVersion};
use crate::data::snapshot::Live;

/// Counts a failed handshake by its reason.
pub type OnHandshakeError = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Terminates TLS, then hands the connection to `app`.
pub struct TlsApp<A> {
    app: Arc<A>,
    live: Live,
    store: Arc<CertStore>,
    built: ArcSwap<Built>,
    on_error: OnHandshakeError,
}

/// An acceptor and the settings it was built with.
struct Built {
    min_version: TlsVersion,
    alpn: Vec<Alpn>,
    acceptor: Acceptor,
}

impl<A> TlsApp<A> {
    /// Serves `store`'s certificates with the `[tls]` settings live at each accept.
    pub fn new(
        app: Arc<A>,
        live: Live,
        store: Arc<CertStore>,
        tls: &FrontTls,
        on_error: OnHandshakeError,
    ) -> Self {
        let built = build(&store, tls.min_version, &tls.alpn);
        TlsApp {
            app,
            live,
            store,
            built: ArcSwap::from_pointee(built),
            on_error,
        }
    }

    /// The acceptor for the settings live now, rebuilt when a reload changed them.
    fn acceptor(&self) -> (Arc<Built>, std::time::Duration) {
        let snapshot = self.live.load();
        let timeout = snapshot.config.proxy.header_timeout;
        let built = self.built.load_full();
        match &snapshot.config.tls {
            Some(tls) if tls.min_version != built.min_version || tls.alpn != built.alpn => {
                let fresh = Arc::new(build(&self.store, tls.min_version, &tls.alpn));
                self.built.store(fresh.clone());
                (fresh, timeout)
            }
            _ => (built, timeout),
        }
    }
}

fn build(store: &Arc<CertStore>, min_version: TlsVersion, alpn: &[Alpn]) -> Built {
    let provider = super::certs::provider();
    let builder = ServerConfig::builder_with_provider(provider);
    let builder = match min_version {
        TlsVersion::V1_2 => builder.with_protocol_versions(&[&version::TLS13, &version::TLS12]),
        TlsVersion::V1_3 => builder.with_protocol_versions(&[&version::TLS13]),
    };
    let mut config = builder
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    config.alpn_protocols = alpn.iter().map(|a| a.wire().to_vec()).collect();
    Built {
        min_version,
        alpn: alpn.to_vec(),
        acceptor: Acceptor::from_server_config(Arc::new(config)),
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (built, timeout) = self.acceptor();
        // The listeners are plain TCP: what arrives is Pingora's TCP stream.
        let tcp = match stream.into_any().downcast::<TcpStream>() {
            Ok(tcp) => *tcp,
            Err(_) => {
                tracing::error!("a TLS listener accepted something other than a TCP stream");
                return None;
            }
        };
        let tls = match tokio::time::timeout(timeout, built.acceptor.tls_handshake(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let reason = reason(&e);
                tracing::debug!(reason, error = %e, "TLS handshake failed");
                (self.on_error)(reason);
                return None;
            }
            Err(_) => {
                (self.on_error)("timeout");
                return None;
            }
        };
        self.app.process_new(Box::new(tls), shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// The `reason` label of a failed handshake. Pingora keeps only the text of the rustls or
/// I/O error (its `explain_err` drops the cause), so the text is what is read.
pub fn reason(e: &pingora::Error) -> &'static str {
    let text = e.to_string().to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&["peer is incompatible"]) {
        "incompatible"
    } else if has(&["doesn't support any known protocol"]) {
        "alpn"
    } else if has(&["received fatal alert"]) {
        "client-alert"
    } else if has(&[
        "corrupt message",
        "unexpected message",
        "peer misbehaved",
        "excess record size",
    ]) {
        "malformed"
    } else if has(&["no server certificate chain resolved"]) {
        "no-certificate"
    } else if has(&["eof", "reset by peer", "broken pipe"]) {
        "client-closed"
    } else {
        "other"
    }
}
