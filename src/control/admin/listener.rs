//! The admin API's listener: accepting, the connection cap, TLS when `[admin] tls` is set
//! (its certificate reloads without a restart), and HTTP/1.1 with a header timeout.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pingora::tls::{ServerConfig, TlsAcceptor};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{handle, HEADER_TIMEOUT, MAX_CONNECTIONS};
use crate::control::Control;

/// The TLS acceptor for `[admin] tls`, or `None` for plain HTTP. It serves from control's
/// admin certificate store, which reloads like the `[tls]` listeners' (`control::certs`).
fn acceptor(control: &Control) -> Result<Option<TlsAcceptor>, String> {
    if control.live().load().config.admin.tls.is_none() {
        return Ok(None);
    }
    let mut tls = ServerConfig::builder_with_provider(crate::data::tls::certs::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(control.admin_certificate_store());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// HTTP/1.1 on one admin connection.
async fn serve_http<S, F>(io: S, service: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: hyper::service::HttpService<hyper::body::Incoming> + Send,
    F::Future: Send + 'static,
    F::ResBody: Send + 'static,
    <F::ResBody as hyper::body::Body>::Data: Send,
    <F::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, "admin connection ended");
    }
}

/// Serves the admin API on `listener` until the runtime stops.
///
/// At most [`MAX_CONNECTIONS`] connections are served at once; a connection that sends no
/// complete head within [`HEADER_TIMEOUT`] (idle keep-alive included) is closed; a failing
/// accept (say, out of file descriptors) backs off instead of spinning the control runtime.
pub async fn serve(listener: TcpListener, control: Arc<Control>) {
    let tls = match acceptor(&control) {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(error = %e, "admin.tls: cannot serve the admin API over TLS; it is not served");
            return;
        }
    };
    let events = super::events::Events::start(control.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "admin accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("admin API: {MAX_CONNECTIONS} connections open; closing a new one");
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let control = control.clone();
        let events = events.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let control = control.clone();
                let events = events.clone();
                async move { Ok::<_, Infallible>(handle(req, local, &control, &events).await) }
            });
            match tls {
                None => serve_http(stream, service).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_http(stream, service).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "admin TLS handshake failed"),
                        Err(_) => tracing::debug!("admin TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Binds `addr` as soon as it is free (during a binary upgrade the old process holds it until
/// it has drained), then serves the admin API there.
pub async fn serve_once_free(addr: std::net::SocketAddr, control: Arc<Control>) {
    let mut waiting = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!("admin API listening on {addr}");
                return serve(listener, control).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if !waiting {
                    tracing::info!(%addr, "admin address still held by the old process; will bind it once it exits");
                    waiting = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for the admin API");
                return;
            }
        }
    }
}
