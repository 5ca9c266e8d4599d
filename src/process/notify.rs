//! systemd's readiness protocol (`sd_notify`), spoken directly: one datagram per state change
//! to the Unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). Without `$NOTIFY_SOCKET` (not run by systemd with `Type=notify`) nothing is sent.
//! A small protocol, so no crate: see `sd_notify(3)`.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `READY=1` was sent (a reload before it must not announce readiness).
static READY: AtomicBool = AtomicBool::new(false);
/// `STOPPING=1` was sent (a reload after it must not announce readiness again).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Wraps a SIGHUP reload in `RELOADING=1` / `READY=1`, only between readiness and stopping.
pub async fn around_reload<F: std::future::Future>(reload: F) -> F::Output {
    let announce = READY.load(Ordering::SeqCst) && !STOPPING.load(Ordering::SeqCst);
    if announce {
        notify("RELOADING=1");
    }
    let out = reload.await;
    if announce && !STOPPING.load(Ordering::SeqCst) {
        notify("READY=1");
    }
    out
}

/// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…`) to systemd, if it is
/// listening. Failures are logged, never fatal.
pub fn notify(state: &str) {
    match state {
        "READY=1" => READY.store(true, Ordering::SeqCst),
        "STOPPING=1" => STOPPING.store(true, Ordering::SeqCst),
        _ => {}
    }
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let name = target.to_string_lossy();
        match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &*name),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "could not notify systemd");
    }
}

/// Sends `READY=1` once every address in `addrs` accepts connections (Pingora binds each
/// service's listeners on a thread of its own, in no fixed order), or after `within` with a
/// warning naming each that did not; never after `STOPPING=1`. A probe of a TLS listener is a
/// bare TCP connection, counted once among the TLS handshake errors.
pub fn ready_when_listening(addrs: Vec<SocketAddr>, within: Duration) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("switchback-notify".into())
        .spawn(move || {
            let started = Instant::now();
            for addr in addrs {
                while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .is_err()
                {
                    if started.elapsed() > within {
                        tracing::warn!(%addr, "a listener did not accept in time; telling systemd it is ready anyway");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if !STOPPING.load(Ordering::SeqCst) {
                notify("READY=1");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the readiness notifier");
    }
}

/// Reloads on every SIGHUP. The handler is installed before this returns.
///
/// # Errors
/// The signal handler could not be installed.
pub fn spawn_sighup(control: std::sync::Arc<crate::control::Control>) -> std::io::Result<()> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config file");
            around_reload(control.reload("signal")).await;
        }
    });
    Ok(())
}
