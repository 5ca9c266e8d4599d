//! `switchback serve`: loads the config, starts the control plane (admin API, file watch,
//! SIGHUP) on its own small runtime, and runs the Pingora data plane on the main thread.
//!
//! Listen addresses are test-bound before Pingora sees them, so a taken port is reported as
//! a clear error naming the address instead of a failure inside a Pingora worker thread.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use pingora::proxy::http_proxy_service;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignalWatch};

use std::sync::Arc;

use crate::access_log::AccessLog;
use crate::admin::{self, auth};
use crate::audit::AuditError;
use crate::config::{self, load::read_text, ConfigError};
use crate::control::Control;
use crate::metrics::Metrics;
use crate::proxy::SwitchbackProxy;

/// Why the proxy could not start. Nothing is left running in any case.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The admin token file is unusable.
    #[error("{0}")]
    Tokens(#[from] auth::TokenError),
    /// The deployment log is unusable.
    #[error("{0}")]
    Audit(#[from] AuditError),
    /// The control runtime, watcher or signal handler could not start.
    #[error("cannot start the control plane: {0}")]
    ControlPlane(String),
}

/// Checks that every address in `addrs` can be bound right now, and holds them until the
/// returned guards are dropped, so nothing started meanwhile (an admin listener on port 0,
/// say) can be given one of them before Pingora binds it.
///
/// # Errors
/// [`ServeError::Bind`] naming the first address that cannot.
pub fn ensure_bindable(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ServeError> {
    addrs
        .iter()
        .map(|addr| {
            TcpListener::bind(addr).map_err(|source| ServeError::Bind {
                addr: *addr,
                source,
            })
        })
        .collect()
}

/// Runs the proxy for the config file at `path` until `shutdown` fires (default: SIGTERM,
/// SIGINT, SIGQUIT).
///
/// # Errors
/// [`ServeError`] when anything needed at start-up is unusable; nothing is started then.
pub fn run(path: &Path, shutdown: Option<Box<dyn ShutdownSignalWatch>>) -> Result<(), ServeError> {
    let config = config::load(path)?;
    let text = read_text(path).map_err(|p| ConfigError {
        path: path.to_path_buf(),
        problems: vec![p],
    })?;
    let reserved = ensure_bindable(&config.proxy.listen)?;
    if let Some(token_file) = &config.admin.token_file {
        auth::Tokens::load(token_file)?;
        auth::warn_if_exposed(token_file);
    }
    let (proxy_listen, threads, admin_listen) = (
        config.proxy.listen.clone(),
        config.proxy.threads,
        config.admin.listen,
    );
    let debounce = config.reload_debounce;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("switchback-control")
        .enable_all()
        .build()
        .map_err(|e| ServeError::ControlPlane(e.to_string()))?;
    let admin_listener = runtime
        .block_on(tokio::net::TcpListener::bind(admin_listen))
        .map_err(|source| ServeError::Bind {
            addr: admin_listen,
            source,
        })?;
    drop(reserved);
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| ServeError::ControlPlane(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let access_log = match &config.access_log {
        Some(target) => {
            let base = path.parent().unwrap_or(Path::new("."));
            Some(
                AccessLog::start(
                    target,
                    base,
                    config.access_buffer,
                    metrics.access_log_dropped.clone(),
                )
                .map_err(|e| ServeError::ControlPlane(format!("access log: {e}")))?,
            )
        }
        None => None,
    };
    let control = Control::start(path, config, text, metrics)?;
    let _watcher = runtime.block_on(async {
        crate::config::watch::spawn_sighup(control.clone())
            .map_err(|e| ServeError::ControlPlane(format!("SIGHUP handler: {e}")))?;
        crate::config::watch::spawn(control.clone(), debounce)
            .map_err(|e| ServeError::ControlPlane(format!("watching {}: {e}", path.display())))
    })?;
    runtime.spawn(admin::serve(admin_listener, control.clone()));

    let server_conf = ServerConf {
        threads,
        // Pingora sleeps for the whole grace period on SIGTERM even when nothing is in
        // flight (default 300 s). Until switchback's own drain lands, exit without the sleep.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();
    let mut service = http_proxy_service(
        &server.configuration,
        SwitchbackProxy::new(control.live(), access_log),
    );
    for addr in &proxy_listen {
        service.add_tcp(&addr.to_string());
    }
    server.add_service(service);

    tracing::info!(listen = ?proxy_listen, admin = %admin_addr, version = control.live().load().version, "switchback serving");
    tracing::info!("admin API listening on {admin_addr}");
    let run_args = match shutdown {
        Some(shutdown_signal) => RunArgs { shutdown_signal },
        None => RunArgs::default(),
    };
    server.run(run_args);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
