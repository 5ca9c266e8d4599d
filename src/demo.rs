//! `switchback demo`: two built-in upstreams (blue and green) and the proxy at 50/50, all on
//! loopback, with a list of commands to try.
//!
//! The demo config goes through the same parser and validator as a real file.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::config;
use crate::serve::{self, ServeError};

/// Ports for the demo.
#[derive(Debug, Clone, Copy)]
pub struct DemoPorts {
    /// Proxy listener port.
    pub proxy: u16,
    /// Blue upstream port.
    pub blue: u16,
    /// Green upstream port.
    pub green: u16,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// An upstream port is taken.
    #[error("demo {colour} upstream: cannot listen on {addr}: {source} (choose another with --{colour}-port)")]
    UpstreamBind {
        /// Which upstream.
        colour: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The reason.
        source: std::io::Error,
    },
    /// The proxy could not start.
    #[error("demo proxy: {0} (choose another with --proxy-port)")]
    Proxy(#[from] ServeError),
    /// The generated config was rejected (a bug).
    #[error("demo config rejected: {0:?}")]
    Config(Vec<config::Problem>),
    /// The upstream runtime could not start.
    #[error("demo upstreams: {0}")]
    Runtime(std::io::Error),
}

/// Runs the demo until interrupted.
///
/// # Errors
/// [`DemoError`] naming the port that could not be bound.
pub fn run(ports: DemoPorts) -> Result<(), DemoError> {
    let blue = bind_upstream("blue", ports.blue)?;
    let green = bind_upstream("green", ports.green)?;
    let (blue_addr, green_addr) = (local(&blue), local(&green));
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n\n\
         [pools.blue]\nbackends = [\"{blue_addr}\"]\n\n\
         [pools.green]\nbackends = [\"{green_addr}\"]\n\n\
         [split]\nblue = 50\ngreen = 50\n",
        ports.proxy
    );
    let config = config::parse(&text).map_err(DemoError::Config)?;
    serve::ensure_bindable(&config.proxy.listen)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    for (colour, listener) in [("blue", blue), ("green", green)] {
        runtime.spawn(serve_colour(colour, listener));
    }
    print_tour(ports.proxy);
    serve::run(config, None)?;
    runtime.shutdown_background();
    Ok(())
}

fn bind_upstream(colour: &'static str, port: u16) -> Result<TcpListener, DemoError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr).map_err(|source| DemoError::UpstreamBind {
        colour,
        addr,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DemoError::UpstreamBind {
            colour,
            addr,
            source,
        })?;
    Ok(listener)
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// Serves `colour` on `listener`: every request is answered `"<colour> <path>\n"`.
async fn serve_colour(colour: &'static str, listener: TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(colour, error = %e, "demo upstream failed"),
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| async move {
                let body = format!("{colour} {}\n", req.uri().path());
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "text/plain")
                        .header("x-demo-colour", colour)
                        .body(Full::new(Bytes::from(body)))
                        .expect("static response is valid"),
                )
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "demo connection ended");
            }
        });
    }
}

fn print_tour(proxy_port: u16) {
    let url = format!("http://127.0.0.1:{proxy_port}");
    println!(
        "\nswitchback demo: blue and green upstreams behind the proxy at {url}, split 50/50\n\n\
         Try:\n  \
         curl -s {url}/hello                       # answered by blue or green\n  \
         for i in $(seq 20); do curl -s {url}/; done | sort | uniq -c   # about 10 each\n\n\
         Stop with Ctrl-C.\n"
    );
}
