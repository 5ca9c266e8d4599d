//! `switchback demo`: two built-in upstreams (blue and green) and the proxy at 50/50, all on
//! loopback, with a list of commands to try.
//!
//! The demo config goes through the same parser and validator as a real file. It has a short
//! rollout plan, the demo sends its own steady traffic (about 100 requests a second) so that a
//! rollout has something to judge, and green can be told to fail a share of its requests
//! (`/_demo/fail?percent=N`, asked of green directly) to watch a rollout roll back by itself.

mod traffic;
mod upstreams;

use std::net::{SocketAddr, TcpListener};

use crate::config;
use crate::process::serve::{self, ServeError};

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
         [split]\nblue = 50\ngreen = 50\n\n\
         # A short rollout plan for the tour: 10 %, 50 %, 100 %, 5 s each. detect-ratio 10\n\
         # (production plans keep 3) lets a step advance on ~110 clean target requests.\n\
         [plans.default]\nsteps = [\n  \
         {{ weight = 10, hold = \"5s\", min-requests = 50 }},\n  \
         {{ weight = 50, hold = \"5s\", min-requests = 50 }},\n  \
         {{ weight = 100, hold = \"5s\", min-requests = 50 }},\n]\n\
         [plans.default.analysis]\ndetect-ratio = 10\n",
        ports.proxy, ports.admin
    );
    config::parse(&text).map_err(DemoError::Config)?;
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], ports.proxy));
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], ports.admin));
    serve::ensure_bindable(&[proxy_addr])?;
    serve::ensure_bindable(&[admin_addr]).map_err(|e| DemoError::AdminBind(Box::new(e)))?;
    // A fresh private directory: nobody else can plant a link where the demo writes.
    let dir = config::exclusive::create_dir(&std::env::temp_dir(), "switchback-demo")
        .map_err(DemoError::Io)?;
    let path = dir.join("switchback.toml");
    config::exclusive::open_new(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
        .map_err(DemoError::Io)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(DemoError::Io)?;
    for (colour, listener) in [("blue", blue), ("green", green)] {
        runtime.spawn(upstreams::serve_colour(colour, listener));
    }
    runtime.spawn(traffic::steady(proxy_addr));
    print_tour(ports, &path, green_addr);
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

fn print_tour(ports: DemoPorts, config: &std::path::Path, green: SocketAddr) {
    let url = format!("http://127.0.0.1:{}", ports.proxy);
    let ctl = format!("switchback ctl --admin http://127.0.0.1:{}", ports.admin);
    println!(
        "\nswitchback demo: blue and green upstreams behind the proxy at {url}, split 50/50\n\
         config file: {}\n\
         dashboard: http://127.0.0.1:{}/ui   (open it in a browser: everything below shows there live)\n\n\
         Try, in another terminal (cargo run -q -- ctl ... works too):\n  \
         for i in $(seq 20); do curl -s {url}/; done | sort | uniq -c   # about 10 each\n  \
         {ctl} status\n  \
         {ctl} switch green          # every new request now goes to green\n  \
         curl -s {url}/\n  \
         {ctl} rollback              # instant switchback to 50/50\n  \
         {ctl} split blue=90 green=10\n  \
         {ctl} history               # the deployment log, newest first\n  \
         edit the [split] in the config file and save: it is live within a second\n\n\
         Automated rollouts (the demo sends ~100 requests/s of its own):\n  \
         {ctl} switch blue\n  \
         {ctl} rollout start green   # 10 % -> 50 % -> 100 %, 5 s each, judged against blue\n  \
         {ctl} rollout status --watch   # promoted after about 20 s\n  \
         {ctl} switch blue\n  \
         curl -s 'http://{green}/_demo/fail?percent=20'   # green now fails 1 request in 5\n  \
         {ctl} rollout start green\n  \
         {ctl} rollout status --watch   # rolled back by itself, with the counts\n  \
         curl -s 'http://{green}/_demo/fail?percent=0'    # green healthy again\n\n\
         Stop with Ctrl-C.\n",
        config.display(),
        ports.admin
    );
}
