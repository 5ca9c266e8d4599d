//! systemd's readiness protocol (`sd_notify`), spoken directly: one datagram per state change
//! to the Unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). Without `$NOTIFY_SOCKET` (not run by systemd with `Type=notify`) nothing is sent.
//! A small protocol, so no crate: see `sd_notify(3)`.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…`) to systemd, if it is
/// listening. Failures are logged, never fatal.
pub fn notify(state: &str) {
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

/// Sends `READY=1` once `addr` accepts connections (Pingora binds its listeners on a thread of
/// its own), or after `within` with a warning.
pub fn ready_when_listening(addr: SocketAddr, within: Duration) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("switchback-notify".into())
        .spawn(move || {
            let started = Instant::now();
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if started.elapsed() > within {
                    tracing::warn!(%addr, "the proxy listener did not accept in time; telling systemd it is ready anyway");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            notify("READY=1");
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the readiness notifier");
    }
}
