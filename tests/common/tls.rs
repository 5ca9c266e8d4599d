//! TLS for the harness: a test CA issuing certificates (rcgen), TLS and h2 clients, and the
//! upstream's TLS / h2c modes with a gRPC-shaped echo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pingora::tls::{
    CertificateDer, ClientConfig, DigitallySignedStruct, HandshakeSignatureValid, PrivateKeyDer,
    RootCertStore, ServerCertVerified, ServerCertVerifier, ServerConfig, ServerName,
    SignatureScheme, TlsAcceptor, TlsConnector, UnixTime,
};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;

use super::{free_port, pools_toml, TestProxy, Upstream, DEADLINE};

pub type TlsStream = pingora::tls::ClientTlsStream<TcpStream>;

/// A certificate authority for one test.
pub struct Pki {
    key: rcgen::KeyPair,
    ca: rcgen::Certificate,
    pub ca_pem: String,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&key).unwrap();
        let ca_pem = ca.pem();
        Pki { key, ca, ca_pem }
    }

    /// A leaf for `names` (DNS names, or IP addresses), valid from yesterday for `days`.
    pub fn issue(&self, names: &[&str], days: i64) -> Issued {
        let now = time::OffsetDateTime::now_utc();
        self.issue_between(
            names,
            now - time::Duration::days(1),
            now + time::Duration::days(days),
        )
    }

    /// A leaf valid from `from` to `until`.
    pub fn issue_between(
        &self,
        names: &[&str],
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
    ) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].as_str());
        params.not_before = from;
        params.not_after = until;
        let cert = params.signed_by(&key, &self.ca, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn provider() -> Arc<pingora::tls::CryptoProvider> {
    pingora::tls::install_default_crypto_provider();
    pingora::tls::CryptoProvider::get_default().unwrap().clone()
}

/// Accepts any server certificate: for tests that look at which one was presented.
#[derive(Debug)]
struct AcceptAny(Arc<pingora::tls::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, pingora::tls::RusTlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, pingora::tls::RusTlsError> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, pingora::tls::RusTlsError> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client offering `alpn`, trusting `ca_pem` (or anything, with `None`).
pub fn client_config(ca_pem: Option<&str>, alpn: &[&str]) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut config = match ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` with SNI `sni` (none for `None`).
pub async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr).await?;
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_string()).unwrap(),
        // An IP address: rustls sends no SNI.
        None => ServerName::IpAddress(addr.ip().into()),
    };
    TlsConnector::from(config).connect(name, tcp).await
}

/// The DNS names of the certificate the server presented on `stream`.
pub fn presented_names(stream: &TlsStream) -> Vec<String> {
    let (_, conn) = stream.get_ref();
    let leaf = &conn.peer_certificates().unwrap()[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// The ALPN protocol agreed on `stream`.
pub fn alpn(stream: &TlsStream) -> Option<String> {
    let (_, conn) = stream.get_ref();
    conn.alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// An HTTP/1.1 client over `stream`.
pub async fn http1(stream: TlsStream) -> hyper::client::conn::http1::SendRequest<BoxBody> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// An HTTP/2 client over `stream`.
pub async fn http2(stream: TlsStream) -> hyper::client::conn::http2::SendRequest<BoxBody> {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// What an upstream speaks.
#[derive(Clone)]
pub enum Speaks {
    Http1,
    /// HTTP/2 with prior knowledge, in the clear.
    H2c,
    /// TLS with this certificate; HTTP/2 when the client offers `h2`, else HTTP/1.1.
    Tls(Arc<ServerConfig>),
}

impl Speaks {
    /// TLS with `issued`, offering h2 and http/1.1.
    pub fn tls(issued: &Issued) -> Speaks {
        let chain = CertificateDer::pem_slice_iter(issued.cert.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap();
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Speaks::Tls(Arc::new(config))
    }
}

/// Serves one accepted connection with `service` as `speaks` says.
pub async fn serve_connection<S>(stream: TcpStream, speaks: Speaks, service: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<BoxBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    match speaks {
        Speaks::Http1 => {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
        Speaks::H2c => {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Speaks::Tls(config) => {
            let Ok(tls) = TlsAcceptor::from(config).accept(stream).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            if h2 {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            }
        }
    }
}

/// A gRPC-shaped echo: every request body frame is sent back as it arrives, then trailers
/// `grpc-status: 0`, `grpc-message: ok` and `x-served-by: <name>`.
pub fn grpc_echo(req: Request<Incoming>, name: &str) -> Response<BoxBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let mut body = req.into_body();
    let name = name.to_string();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(Ok(Frame::data(data))).await.is_err() {
                    return;
                }
            }
        }
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("grpc-message", "ok".parse().unwrap());
        trailers.insert("x-served-by", name.parse().unwrap());
        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}

/// A front door with a TLS listener, for the TLS tests.
pub struct Front {
    pub blue: Upstream,
    pub green: Upstream,
    pub proxy: TestProxy,
    pub tls: SocketAddr,
}

/// Blue and green split `split` behind a proxy with a TLS listener serving `certs` (name
/// stem → certificate), in that order, plus `tls_keys` in `[tls]` and `proxy_keys` in `[proxy]`.
pub async fn front(
    split: &str,
    certs: &[(&str, &Issued)],
    tls_keys: &str,
    proxy_keys: &str,
) -> Front {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut files = Vec::new();
    let mut pairs = Vec::new();
    for (stem, issued) in certs {
        files.push((format!("{stem}.pem"), issued.cert.clone()));
        files.push((format!("{stem}.key"), issued.key.clone()));
        pairs.push(format!("{{ cert = \"{stem}.pem\", key = \"{stem}.key\" }}"));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let pools = pools_toml(&[("blue", &[blue.addr]), ("green", &[green.addr])], split);
    let rest = format!(
        "[tls]\nlisten = [\"{tls}\"]\ncertificates = [{}]\n{tls_keys}\n{pools}",
        pairs.join(", ")
    );
    let proxy = TestProxy::start_with_files(proxy_keys, &rest, &files).await;
    Front {
        blue,
        green,
        proxy,
        tls,
    }
}

/// The names on the certificate served to a handshake with `sni`.
pub async fn served_names(addr: SocketAddr, sni: Option<&str>) -> Vec<String> {
    let stream = connect(addr, sni, client_config(None, &["http/1.1"]))
        .await
        .expect("TLS handshake");
    presented_names(&stream)
}

pub async fn get1(
    sender: &mut hyper::client::conn::http1::SendRequest<BoxBody>,
    path: &str,
) -> (u16, Option<String>) {
    sender.ready().await.unwrap();
    let req = hyper::Request::get(path)
        .header("host", "a.test")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = resp.status().as_u16();
    let upstream = resp
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string());
    let _ = resp.into_body().collect().await;
    (status, upstream)
}
