//! `switchback serve`: loads the config, starts the control plane (admin API, file watch,
//! SIGHUP) on its own small runtime, and runs the Pingora data plane on the main thread.
//!
//! Listen addresses are test-bound before Pingora sees them, so a taken port is reported as
//! a clear error naming the address instead of a failure inside a Pingora worker thread.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignalWatch};
use pingora::services::listening::Service;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::config::{load::read_text, Config, ConfigError};
use crate::control::admin;
use crate::control::Control;
use crate::data::access_log::AccessLog;
use crate::data::framing::app::GuardedApp;
use crate::data::framing::guard::{OnRefuse, Refusal};
use crate::data::health::Inflight;
use crate::data::proxy::{H1Proxy, SwitchbackProxy};
use crate::data::tls::accept::{OnHandshakeError, TlsApp};
use crate::metrics::Metrics;
use crate::process::shutdown::{self, Exit};

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
    /// A file or directory `serve` needs is unusable (what `check` refuses too).
    #[error("{0}")]
    Preflight(String),
    /// Control could not start (deployment log, state).
    #[error("{0}")]
    Start(#[from] crate::control::StartError),
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

/// The Pingora server, bootstrapped: in an upgrade this is where the listeners of the running
/// process are received (Pingora exits the process when none arrive within about 5 s).
fn pingora_server(path: &Path, config: &Config, upgrade: bool) -> Result<Server, ServeError> {
    let grace = config.shutdown.grace;
    let sock = super::preflight::upgrade_sock_path(path, &config.proxy.upgrade_sock);
    // sun_path holds 108 bytes on Linux.
    if sock.as_os_str().len() > 100 {
        return Err(ServeError::ControlPlane(format!(
            "the upgrade socket path {} is too long for a Unix socket; set [proxy] upgrade-sock",
            sock.display()
        )));
    }
    let server_conf = ServerConf {
        threads: config.proxy.threads,
        // Pingora sleeps for the whole grace period on SIGTERM even when nothing is in flight;
        // here it is only the upper bound. `shutdown::watch_drain` ends the wait early.
        grace_period_seconds: Some(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: sock.to_string_lossy().into_owned(),
        // One worker: a plain single-threaded runtime, no work-stealing queues. With more,
        // stealing stays on: without it Pingora places every task it spawns (the idle watcher
        // of `ProxyHttp`'s upstream pool among them) on a random thread, and a connection
        // released on one thread and picked up on another loses the hand-over race and is
        // not reused.
        work_stealing: config.proxy.threads > 1,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf);
    if upgrade {
        tracing::info!(socket = %sock.display(), "upgrade: waiting for the running switchback to hand over its listeners; send it SIGQUIT");
    }
    server.bootstrap();
    if upgrade {
        tracing::info!("upgrade: listeners received");
    }
    Ok(server)
}

/// Runs the proxy for the config file at `path` until `shutdown` fires (default:
/// [`shutdown::Signals`]) and the in-flight requests have finished or `[shutdown] grace` ran out.
///
/// # Errors
/// [`ServeError`] when anything needed at start-up is unusable; nothing is started then.
pub fn run(
    path: &Path,
    shutdown: Option<Box<dyn ShutdownSignalWatch + Send>>,
    upgrade: bool,
) -> Result<(), ServeError> {
    let config = super::preflight::load(path)?;
    let text = read_text(path).map_err(|p| ConfigError {
        path: path.to_path_buf(),
        problems: vec![p],
    })?;
    // In an upgrade the running process holds the ports and hands them over.
    let mut every_listener = config.proxy.listen.clone();
    every_listener.extend(config.tls.iter().flat_map(|t| t.listen.iter().copied()));
    let reserved = match upgrade {
        false => ensure_bindable(&every_listener)?,
        true => Vec::new(),
    };
    // Before an upgrade's hand-over: once the listeners are taken over, failing is too late.
    let (override_tokens, warnings) =
        super::preflight::preflight(path, &config).map_err(ServeError::Preflight)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let grace = config.shutdown.grace;
    let upgrade_sock = super::preflight::upgrade_sock_path(path, &config.proxy.upgrade_sock);
    let mut server = pingora_server(path, &config, upgrade)?;
    let (proxy_listen, admin_listen) = (config.proxy.listen.clone(), config.admin.listen);
    let (tls, admin_tls) = (config.tls.clone(), config.admin.tls.is_some());
    let (h2c, client_idle) = (config.proxy.h2c, config.proxy.client_idle_timeout);
    let debounce = config.reload_debounce;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("switchback-control")
        .enable_all()
        .build()
        .map_err(|e| ServeError::ControlPlane(e.to_string()))?;
    // The old process of an upgrade keeps the admin port until it has drained.
    let admin_listener = match upgrade {
        false => Some(
            runtime
                .block_on(tokio::net::TcpListener::bind(admin_listen))
                .map_err(|source| ServeError::Bind {
                    addr: admin_listen,
                    source,
                })?,
        ),
        true => None,
    };
    drop(reserved);
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
    let closed = metrics.client_closed.clone();
    let control = Control::start(path, config, text, override_tokens, metrics)?;
    control
        .follow_shared(runtime.handle())
        .map_err(ServeError::ControlPlane)?;
    let _watcher = runtime.block_on(async {
        super::notify::spawn_sighup(control.clone())
            .map_err(|e| ServeError::ControlPlane(format!("SIGHUP handler: {e}")))?;
        crate::control::watch::spawn(control.clone(), debounce)
            .map_err(|e| ServeError::ControlPlane(format!("watching {}: {e}", path.display())))
    })?;
    match admin_listener {
        Some(listener) => {
            let admin_addr = listener
                .local_addr()
                .map_err(|e| ServeError::ControlPlane(e.to_string()))?;
            tracing::info!("admin API listening on {admin_addr}");
            runtime.spawn(admin::serve(listener, control.clone()));
        }
        None => {
            runtime.spawn(admin::serve_once_free(admin_listen, control.clone()));
        }
    }
    runtime.spawn(crate::data::health::probe::spawn_supervisor(
        control.clone(),
    ));
    runtime.spawn(crate::control::rollout::engine::run(control.clone()));
    runtime.spawn(crate::control::dns::refresh_periodically(control.clone()));
    if tls.is_some() || admin_tls {
        runtime.spawn(crate::control::watch_certificates(control.clone()));
    }

    let inflight = Arc::new(Inflight::default());
    let stopping = shutdown::Stopping::default();
    let mut proxy = http_proxy(
        &server.configuration,
        SwitchbackProxy::new(
            control.live(),
            access_log.clone(),
            inflight.clone(),
            stopping.clone(),
        ),
    );
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    options.h2_idle_timeout = Some(client_idle);
    proxy.server_options = Some(options);
    let on_refuse: OnRefuse = Arc::new(move |why| {
        let reason = match why {
            Refusal::Framing(r) if r.status == 431 => 1,
            Refusal::Framing(_) => 0,
            Refusal::HeaderTimeout => 2,
            Refusal::Idle => 3,
        };
        closed[reason].inc();
    });
    let h1 = H1Proxy::new(
        &server.configuration,
        control.live(),
        access_log.clone(),
        inflight.clone(),
        stopping.clone(),
        runtime.handle(),
    );
    let guarded = Arc::new(
        GuardedApp::new(Arc::new(proxy), control.live(), on_refuse, h2c).with_own(Arc::new(h1)),
    );
    if let Some(tls) = &tls {
        let metrics = control.clone();
        let on_error: OnHandshakeError = Arc::new(move |reason| {
            metrics.metrics().handshake_failed(reason);
        });
        let app = TlsApp::new(
            guarded.clone(),
            control.live(),
            control.certificate_store(),
            tls,
            on_error,
        );
        let mut service = Service::new(
            "switchback tls".to_string(),
            shutdown::Lingering(Arc::new(app)),
        );
        for addr in &tls.listen {
            service.add_listener(unbuffered(addr));
        }
        server.add_service(service);
    }
    // A TLS-only front door (`[proxy] listen = []`) has no plain service at all.
    if !proxy_listen.is_empty() {
        let mut service =
            Service::new("switchback proxy".to_string(), shutdown::Lingering(guarded));
        for addr in &proxy_listen {
            service.add_listener(unbuffered(addr));
        }
        server.add_service(service);
    }

    let (exit_tx, exit_rx) = mpsc::channel();
    shutdown::watch_drain(
        server.watch_execution_phase(),
        inflight.clone(),
        grace,
        exit_tx.clone(),
    )
    .map_err(|e| ServeError::ControlPlane(format!("drain watcher: {e}")))?;
    let tls_listen: Vec<_> = tls.iter().flat_map(|t| t.listen.iter()).collect();
    tracing::info!(listen = ?proxy_listen, tls = ?tls_listen, admin = %admin_listen, version = control.live().load().version, "switchback serving");
    super::notify::ready_when_listening(every_listener, Duration::from_secs(10));
    let shutdown_signal: Box<dyn ShutdownSignalWatch + Send> = match shutdown {
        Some(custom) => custom,
        None => {
            runtime.spawn(shutdown::force_on_second_signal(exit_tx.clone()));
            Box::new(shutdown::Signals {
                stopping,
                upgrade_sock,
                control: control.clone(),
            })
        }
    };
    // Pingora runs on a thread of its own so that this one can return as soon as the drain
    // is over, without waiting out Pingora's grace-period sleep.
    std::thread::Builder::new()
        .name("switchback-pingora".into())
        .spawn(move || {
            let shutdown_signal: Box<dyn ShutdownSignalWatch> = shutdown_signal;
            server.run(RunArgs { shutdown_signal });
            let _ = exit_tx.send(Exit::Stopped);
        })
        .map_err(|e| ServeError::ControlPlane(format!("proxy thread: {e}")))?;
    match exit_rx.recv() {
        Ok(Exit::Drained) => tracing::info!("every in-flight request finished; exiting"),
        Ok(Exit::Forced) => tracing::warn!(
            requests = inflight.get(),
            "second signal: exiting now, cutting the requests still in flight"
        ),
        _ => match inflight.get() {
            0 => tracing::info!("stopped"),
            n => tracing::warn!(
                requests = n,
                "grace period over; requests still in flight were cut"
            ),
        },
    }
    if let Some(log) = &access_log {
        log.flush(Duration::from_secs(1));
    }
    control.leave_shared();
    runtime.shutdown_background();
    Ok(())
}

/// A client listener without Pingora's 64 KiB read buffer per connection (allocated, zeroed,
/// at every accept and held for the connection's life): the framing guard reads a request's
/// bytes in one call anyway. On the TLS listeners rustls keeps its own record buffer and reads
/// at most 4 KiB of ciphertext per call, so a large upload costs a few more reads per 16 KiB
/// record; a buffer under it would cost every idle TLS connection its size. No write buffer
/// either: Pingora's (one MSS) would also be held for the connection's life; the framing
/// guard coalesces a response's writes instead, in a buffer it lets go while the connection
/// is idle (`framing/write.rs`). HTTP/2 connections buffer their frames in the h2 codec.
fn unbuffered(addr: &std::net::SocketAddr) -> ListenerConfig {
    let no_buffers = L4BufferSettings::default().read(0).write(0);
    ListenerConfig::tcp(addr.to_string()).l4_buffer(no_buffers)
}
