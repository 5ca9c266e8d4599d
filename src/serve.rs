//! `switchback serve`: wires the validated config into a Pingora server and runs it.
//!
//! Listen addresses are test-bound before Pingora sees them, so a taken port is reported as
//! a clear error naming the address instead of a failure inside a Pingora worker thread.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use pingora::proxy::http_proxy_service;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignalWatch};

use crate::config::Config;
use crate::proxy::SwitchbackProxy;
use crate::snapshot::{self, Snapshot};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Checks that every address in `addrs` can be bound right now.
///
/// # Errors
/// [`ServeError::Bind`] naming the first address that cannot.
pub fn ensure_bindable(addrs: &[SocketAddr]) -> Result<(), ServeError> {
    for addr in addrs {
        TcpListener::bind(addr).map_err(|source| ServeError::Bind {
            addr: *addr,
            source,
        })?;
    }
    Ok(())
}

/// Runs the proxy for `config` until `shutdown` fires (default: SIGTERM, SIGINT, SIGQUIT).
///
/// # Errors
/// [`ServeError`] when a listener cannot be bound; nothing is started then.
pub fn run(
    config: Config,
    shutdown: Option<Box<dyn ShutdownSignalWatch>>,
) -> Result<(), ServeError> {
    ensure_bindable(&config.proxy.listen)?;
    let config = Arc::new(config);
    let live = snapshot::live(Snapshot::build(config.clone(), 1));

    let server_conf = ServerConf {
        threads: config.proxy.threads,
        // Pingora sleeps for the whole grace period on SIGTERM even when nothing is in
        // flight (default 300 s). Until switchback's own drain lands, exit without the sleep.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, SwitchbackProxy::new(live));
    for addr in &config.proxy.listen {
        service.add_tcp(&addr.to_string());
    }
    server.add_service(service);

    tracing::info!(
        listen = ?config.proxy.listen,
        split = %config.split,
        threads = config.proxy.threads,
        "switchback serving"
    );
    let run_args = match shutdown {
        Some(shutdown_signal) => RunArgs { shutdown_signal },
        None => RunArgs::default(),
    };
    server.run(run_args);
    Ok(())
}
