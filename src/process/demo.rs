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
    /// Admin API port.
    pub admin: u16,
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
    /// The admin port is taken.
    #[error("demo admin API: {0} (choose another with --admin-port)")]
    AdminBind(Box<ServeError>),
    /// The generated config was rejected (a bug).
    #[error("demo config rejected: {0:?}")]
    Config(Vec<config::Problem>),
    /// The upstream runtime could not start, or the demo config could not be written.
    #[error("demo: {0}")]
    Io(std::io::Error),
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
        "# switchback demo configuration. Edit the [split] and save: the proxy reloads it.\n\
         [proxy]\nlisten = [\"127.0.0.1:{}\"]\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n\n\
         [pools.blue]\nbackends = [\"{blue_addr}\"]\n\n\
         [pools.green]\nbackends = [\"{green_addr}\"]\n\n\
         [split]\nblue = 50\ngreen = 50\n",
        ports.proxy, ports.admin
    );
    config::parse(&text).map_err(DemoError::Config)?;
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], ports.proxy));
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], ports.admin));
    serve::ensure_bindable(&[proxy_addr])?;
    serve::ensure_bindable(&[admin_addr]).map_err(|e| DemoError::AdminBind(Box::new(e)))?;
    let dir = std::env::temp_dir().join(format!("switchback-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(DemoError::Io)?;
    let path = dir.join("switchback.toml");
    std::fs::write(&path, text).map_err(DemoError::Io)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(DemoError::Io)?;
    for (colour, listener) in [("blue", blue), ("green", green)] {
        runtime.spawn(serve_colour(colour, listener));
    }
    print_tour(ports, &path);
    serve::run(&path, None, false)?;
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

fn print_tour(ports: DemoPorts, config: &std::path::Path) {
    let url = format!("http://127.0.0.1:{}", ports.proxy);
    let ctl = format!("switchback ctl --admin http://127.0.0.1:{}", ports.admin);
    println!(
        "\nswitchback demo: blue and green upstreams behind the proxy at {url}, split 50/50\n\
         config file: {}\n\n\
         Try, in another terminal (cargo run -q -- ctl ... works too):\n  \
         for i in $(seq 20); do curl -s {url}/; done | sort | uniq -c   # about 10 each\n  \
         {ctl} status\n  \
         {ctl} switch green          # every new request now goes to green\n  \
         curl -s {url}/\n  \
         {ctl} rollback              # instant switchback to 50/50\n  \
         {ctl} split blue=90 green=10\n  \
         {ctl} history               # the deployment log, newest first\n  \
         edit the [split] in the config file and save: it is live within a second\n\n\
         Stop with Ctrl-C.\n",
        config.display()
    );
}
