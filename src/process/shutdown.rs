//! Graceful shutdown that ends as soon as nothing is in flight.
//!
//! Pingora's graceful terminate closes the listeners, then sleeps for the whole
//! `grace_period_seconds` whether or not requests are in flight, then cancels whatever is
//! left. switchback keeps Pingora's first and last steps and replaces the sleep's meaning:
//! Pingora's sleep is set to `[shutdown] grace` (the upper bound), and a watcher thread
//! ends the process as soon as the in-flight count has been zero for [`SETTLE`] after the
//! listeners closed and [`LINGER`] passed. From the signal on, responses carry
//! `Connection: close` (see `proxy.rs`).
//!
//! [`Lingering`] wraps the proxy app: Pingora drops every connection still waiting for its
//! first request the moment the listeners close, including one accepted a microsecond
//! earlier whose request is on its way; under load that lost a few requests per binary
//! upgrade. The wrapper holds that clean-up back for [`LINGER`].
//!
//! Signals: SIGTERM and SIGINT both shut down gracefully (Pingora treats SIGINT as an
//! immediate stop), after `[shutdown] lb-drain-delay` of serving with the health path at 503;
//! a second SIGTERM or SIGINT during the delay or the drain exits at once. SIGQUIT hands
//! the listeners to a new process started with `--upgrade` and then drains the same way.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use tokio::sync::broadcast;

use crate::data::health::Inflight;

/// How long the in-flight count must stay at zero before the process exits: covers a request
/// whose connection was accepted just before the listeners closed.
pub const SETTLE: Duration = Duration::from_millis(50);

/// How long connections accepted before the listeners closed get to send their first
/// request before idle connections are closed.
pub const LINGER: Duration = Duration::from_millis(250);

pub use crate::data::proxy::Stopping;

/// A Pingora app whose clean-up (closing connections that wait for a request) waits
/// [`LINGER`] after the listeners closed.
pub struct Lingering<A>(pub Arc<A>);

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Lingering<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.0.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.0.cleanup().await;
    }
}

/// Why [`crate::process::serve::run`] stops waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every request finished after a graceful shutdown began.
    Drained,
    /// Pingora's run ended (grace period over, or an immediate stop).
    Stopped,
    /// A second SIGTERM or SIGINT: stop waiting for the requests in flight.
    Forced,
}

/// Sends [`Exit::Forced`] on the second SIGTERM or SIGINT (the first starts the graceful
/// shutdown through [`Signals`]), so an operator is never stuck waiting out the grace period.
pub async fn force_on_second_signal(exit: mpsc::Sender<Exit>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    for seen in 1.. {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if seen == 2 {
            let _ = exit.send(Exit::Forced);
            return;
        }
    }
}

/// SIGTERM / SIGINT → graceful terminate; SIGQUIT → graceful upgrade, but only when a new
/// process (`serve --upgrade`) is waiting on the upgrade socket: Pingora would otherwise stop
/// accepting and exit with nobody to take over. Sets the [`Stopping`] flag first.
pub struct Signals {
    /// Set once the process starts to stop.
    pub stopping: Stopping,
    /// The upgrade socket a successor listens on.
    pub upgrade_sock: std::path::PathBuf,
    /// Control: `[shutdown] lb-drain-delay` is read from its live configuration when the
    /// signal arrives, and it is retired once the listeners are handed over.
    pub control: Arc<crate::control::Control>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        let signal = loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: finishing in-flight requests, then exiting");
                    break ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: finishing in-flight requests, then exiting");
                    break ShutdownSignal::GracefulTerminate;
                }
                _ = quit.recv() => {
                    // The new process logs that it waits a moment before its socket listens.
                    let mut waiting = successor_waiting(&self.upgrade_sock);
                    for _ in 0..20 {
                        if waiting {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        waiting = successor_waiting(&self.upgrade_sock);
                    }
                    if waiting {
                        tracing::info!("SIGQUIT: handing the listeners over, then finishing in-flight requests");
                        break ShutdownSignal::GracefulUpgrade;
                    }
                    tracing::error!(socket = %self.upgrade_sock.display(), "SIGQUIT ignored: no new process is waiting on the upgrade socket (start `switchback serve --upgrade` first); still serving");
                }
            }
        };
        self.stopping.store(true, Ordering::SeqCst);
        super::notify::notify("STOPPING=1");
        if matches!(signal, ShutdownSignal::GracefulUpgrade) {
            self.control.retire();
        }
        let delay = self.control.live().load().config.shutdown.lb_drain_delay;
        if matches!(signal, ShutdownSignal::GracefulTerminate) && !delay.is_zero() {
            // The health path answers 503 from now on; keep serving until the load balancer
            // has noticed, then close the listeners (a second signal still exits at once).
            tracing::info!(
                ?delay,
                "lb-drain-delay: health path answers 503; serving on before closing the listeners"
            );
            tokio::time::sleep(delay).await;
        }
        signal
    }
}

/// Whether a process listens on the Unix socket `sock` (Linux: `/proc/net/unix`, listening
/// sockets carry the `__SO_ACCEPTCON` flag). Checked without connecting, which would take the
/// successor's one hand-over connection.
pub fn successor_waiting(sock: &std::path::Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let wanted = sock.to_string_lossy();
    let canonical = std::fs::canonicalize(sock).ok();
    table.lines().skip(1).any(|line| {
        let Some((fields, path)) = unix_socket_line(line) else {
            return false;
        };
        let listening = u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & 0x10000 != 0);
        // Both processes bind the absolute path (see `serve`), so the names compare exactly;
        // a canonical comparison covers symlinked directories.
        listening
            && path.starts_with('/')
            && (path == wanted
                || canonical.is_some() && std::fs::canonicalize(path).ok() == canonical)
    })
}

/// The seven fixed fields of a `/proc/net/unix` line and its path (which may hold spaces).
fn unix_socket_line(line: &str) -> Option<([&str; 7], &str)> {
    let mut fields = [""; 7];
    let mut rest = line;
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        (*field, rest) = rest.split_at(end);
    }
    Some((fields, rest.trim()))
}

/// Watches Pingora's execution phases from a thread of its own; once the graceful period
/// starts (listeners closed), sends [`Exit::Drained`] as soon as `inflight` has stayed at zero
/// for [`SETTLE`], unless `grace` runs out first.
pub fn watch_drain(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    inflight: Arc<Inflight>,
    grace: Duration,
    exit: mpsc::Sender<Exit>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("switchback-drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(ExecutionPhase::ShutdownRuntimes | ExecutionPhase::Terminated)
                    | Err(broadcast::error::RecvError::Closed) => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                }
            }
            let started = Instant::now();
            let mut quiet_since: Option<Instant> = None;
            while started.elapsed() < grace {
                if inflight.get() > 0 || started.elapsed() < LINGER {
                    quiet_since = None;
                } else if quiet_since.get_or_insert_with(Instant::now).elapsed() >= SETTLE {
                    let _ = exit.send(Exit::Drained);
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::unix_socket_line;

    #[test]
    fn proc_net_unix_lines_keep_paths_with_spaces_and_padded_fields() {
        let line = "0000000000000000: 00000002 00000000 00010000 0001 01  3712345 /srv/my app/switchback.upgrade.sock";
        let (fields, path) = unix_socket_line(line).unwrap();
        assert_eq!(fields[3], "00010000");
        assert_eq!(path, "/srv/my app/switchback.upgrade.sock");
        let unnamed = "0000000000000000: 00000002 00000000 00000000 0001 03    41 ";
        assert_eq!(unix_socket_line(unnamed).unwrap().1, "");
        assert!(unix_socket_line("garbage").is_none());
    }
}
