//! `ctl`'s HTTP client: one request to the admin API over plain TCP or TLS (`https://`,
//! verified against the system's roots plus `--ca-file`), and what its answer means: JSON on a
//! 2xx, the server's message on an error, anything else (a redirect, a web page) an error.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::CtlError;

/// One request to the admin API at `base` and its JSON answer.
pub(super) async fn call(
    base: &str,
    ca_file: Option<&std::path::Path>,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, String)],
) -> Result<Value, CtlError> {
    let unreachable = |reason: String| CtlError::Unreachable {
        url: base.to_string(),
        reason,
    };
    let (tls, authority) = match (base.strip_prefix("http://"), base.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err(CtlError::Usage(format!(
                "--admin {base:?}: expected http://host:port or https://host:port"
            )))
        }
    };
    let authority = authority.trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !tls {
        return exchange(stream, base, authority, method, path, body, headers).await;
    }
    let connector = tls_connector(ca_file)?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = pingora::tls::ServerName::try_from(host.to_string())
        .map_err(|e| CtlError::Usage(format!("--admin {base:?}: {e}")))?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
    exchange(stream, base, authority, method, path, body, headers).await
}

/// A TLS client trusting the system's roots and `ca_file`.
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<pingora::tls::TlsConnector, CtlError> {
    use pingora::tls::{ClientConfig, RootCertStore};
    pingora::tls::install_default_crypto_provider();
    let mut roots = RootCertStore::empty();
    let _ = pingora::tls::load_platform_certs_incl_env_into_store(&mut roots);
    if let Some(file) = ca_file {
        pingora::tls::load_ca_file_into_store(file, &mut roots)
            .map_err(|e| CtlError::Usage(format!("--ca-file {}: {e}", file.display())))?;
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(pingora::tls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// One request over `stream` (plain or TLS) and its JSON answer.
async fn exchange<S>(
    stream: S,
    base: &str,
    authority: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, String)],
) -> Result<Value, CtlError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let unreachable = |reason: String| CtlError::Unreachable {
        url: base.to_string(),
        reason,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| CtlError::Usage(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let (location, content_type) = (
        header(http::header::LOCATION),
        header(http::header::CONTENT_TYPE),
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let not_admin = || {
        format!(
            "the answer is not the admin API's JSON (content-type {}); is {base} a switchback admin API?",
            content_type.as_deref().unwrap_or("none")
        )
    };
    match (status, serde_json::from_slice::<Value>(&bytes)) {
        (200..=299, Ok(value)) => Ok(value),
        (300..=399, _) => Err(CtlError::Server {
            status,
            message: format!(
                "a redirect{}; point --admin at the admin API itself",
                location.map(|l| format!(" to {l}")).unwrap_or_default()
            ),
        }),
        (_, Ok(value)) if status >= 400 => Err(CtlError::Server {
            status,
            message: value["error"]
                .as_str()
                .unwrap_or("no error message")
                .to_string(),
        }),
        _ => Err(CtlError::Server {
            status,
            message: not_admin(),
        }),
    }
}
