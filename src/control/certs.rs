//! The certificates served on the `[tls]` listeners and on the admin listener (`[admin] tls`):
//! read at start-up, read again on every config reload and SIGHUP, and whenever one of their
//! files changes.
//!
//! The files are checked once a second (their identity, size and modification time, through
//! any symlink) rather than watched with `notify`: they often live in other directories than
//! the config file, and a Kubernetes Secret or a certbot renewal swaps them by a symlink or a
//! rename several levels up, which one stat per file always sees. A pair that no longer reads
//! is rejected (logged every time it is read, and written to the deployment log once per
//! distinct error and version of its files) and the certificate it replaced keeps serving.
//! Each listener has its own store and its own series in the expiry gauge
//! (`listener="proxy"` or `listener="admin"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{resolve_beside, Control, State};
use crate::config::model::{CertPair, FrontTls};
use crate::config::Config;
use crate::data::tls::certs::{self, Certificate};
use crate::data::tls::store::CertStore;
use crate::metrics::Metrics;

/// A certificate this close to its expiry is warned about (by `check`, and daily by `serve`).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// How often the files are checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// How long the files must stay unchanged before they are read.
const SETTLE: Duration = Duration::from_millis(200);

/// The longest a stream of changes postpones reading them.
const SETTLE_AT_MOST: Duration = Duration::from_millis(800);

/// How often `serve` repeats its warning about a certificate close to expiry.
const WARN_EVERY: Duration = Duration::from_secs(24 * 3600);

/// A listener whose certificates come from files and reload: the `[tls]` listeners or the
/// admin API's. Its label names it in the expiry gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    Proxy,
    Admin,
}

impl Listener {
    const ALL: [Listener; 2] = [Listener::Proxy, Listener::Admin];

    fn label(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::Admin => "admin",
        }
    }

    /// The pairs `config` serves on this listener, in order, each with its key path.
    fn pairs(self, config: &Config) -> Vec<(String, CertPair)> {
        match self {
            Listener::Proxy => config.tls.as_ref().map_or(Vec::new(), keyed),
            Listener::Admin => config
                .admin
                .tls
                .iter()
                .map(|p| ("admin.tls".into(), p.clone()))
                .collect(),
        }
    }
}

/// `[tls]`'s pairs with their key paths.
fn keyed(tls: &FrontTls) -> Vec<(String, CertPair)> {
    let key = |i| format!("tls.certificates[{i}]");
    tls.certificates
        .iter()
        .enumerate()
        .map(|(i, p)| (key(i), p.clone()))
        .collect()
}

/// The served certificates of every listener.
pub(super) struct Certs {
    proxy: Served,
    admin: Served,
}

/// One listener's certificates and what is known about their files.
#[derive(Default)]
struct Served {
    store: Arc<CertStore>,
    seen: Mutex<Seen>,
}

/// The files' fingerprints when last read, and for each pair still failing its last error
/// with the fingerprints of the two files that gave it.
#[derive(Default)]
struct Seen {
    fingerprints: Vec<Option<Fingerprint>>,
    errors: BTreeMap<CertPair, (String, [Option<Fingerprint>; 2])>,
}

/// Identity, size and modification time of a file, through symlinks.
type Fingerprint = (PathBuf, u64, u64, i64, i64);

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let real = std::fs::canonicalize(path).ok()?;
    Some((
        real,
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    ))
}

/// The fingerprints of the files of every pair, resolved beside the config file, cert then key.
fn fingerprints(config_path: &Path, pairs: &[(String, CertPair)]) -> Vec<Option<Fingerprint>> {
    pairs
        .iter()
        .flat_map(|(_, pair)| [&pair.cert, &pair.key])
        .map(|p| fingerprint(&resolve_beside(config_path, p)))
        .collect()
}

/// Reads every pair of `tls`: the certificates in order, or every problem, each with its key.
pub fn load_all(config_path: &Path, tls: &FrontTls) -> Result<Vec<Arc<Certificate>>, String> {
    load_pairs(config_path, &keyed(tls))
}

fn load_pairs(
    config_path: &Path,
    pairs: &[(String, CertPair)],
) -> Result<Vec<Arc<Certificate>>, String> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let now = SystemTime::now();
    let mut problems = Vec::new();
    let mut served = Vec::new();
    for (key, pair) in pairs {
        match certs::load(base, pair, now) {
            Ok(cert) => served.push(Arc::new(cert)),
            Err(e) => problems.push(format!("{key}: {e}")),
        }
    }
    match problems.is_empty() {
        true => Ok(served),
        false => Err(problems.join("; ")),
    }
}

impl Certs {
    /// Reads `config`'s certificates, of both listeners; any that does not read stops the start.
    ///
    /// # Errors
    /// Every problem, each with its key.
    pub(super) fn start(
        config_path: &Path,
        config: &Config,
        metrics: &Metrics,
    ) -> Result<Certs, String> {
        let certs = Certs {
            proxy: Served::default(),
            admin: Served::default(),
        };
        for listener in Listener::ALL {
            let pairs = listener.pairs(config);
            let served = certs.of(listener);
            served
                .seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .fingerprints = fingerprints(config_path, &pairs);
            if !pairs.is_empty() {
                let loaded = load_pairs(config_path, &pairs)?;
                metrics.certificates_served(listener.label(), gauged(&loaded));
                served.store.replace(loaded);
            }
        }
        Ok(certs)
    }

    fn of(&self, listener: Listener) -> &Served {
        match listener {
            Listener::Proxy => &self.proxy,
            Listener::Admin => &self.admin,
        }
    }

    /// The store the `[tls]` listeners serve from.
    pub(super) fn store(&self) -> Arc<CertStore> {
        self.proxy.store.clone()
    }

    /// The store the admin listener serves from (`[admin] tls`).
    pub(super) fn admin_store(&self) -> Arc<CertStore> {
        self.admin.store.clone()
    }
}

impl Control {
    /// The certificates served on the `[tls]` listeners now, in configured order.
    pub fn certificates(&self) -> Arc<Vec<Arc<Certificate>>> {
        self.certs.proxy.store.current()
    }

    /// Reads every configured pair of every listener again. Caller holds the lock.
    pub(super) fn reread_certificates(&self, state: &State, actor: &str) {
        for listener in Listener::ALL {
            self.reread(listener, state, actor);
        }
    }

    /// Reads `listener`'s pairs again: each that reads is served from the next handshake on;
    /// each that does not keeps its previous certificate and is rejected by `actor`.
    fn reread(&self, listener: Listener, state: &State, actor: &str) {
        let pairs = listener.pairs(&state.config);
        if pairs.is_empty() {
            return;
        }
        let certs = self.certs.of(listener);
        let base = self.config_path.parent().unwrap_or(Path::new("."));
        let previous = certs.store.current();
        let now = SystemTime::now();
        let mut served = Vec::new();
        let mut seen = certs.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.fingerprints = fingerprints(&self.config_path, &pairs);
        for (i, (key, pair)) in pairs.iter().enumerate() {
            match certs::load(base, pair, now) {
                Ok(cert) => {
                    seen.errors.remove(pair);
                    served.push(Arc::new(cert));
                }
                Err(e) => {
                    // The pair's own previous certificate; when the reload renamed its files,
                    // the one served in its place (so the default certificate stays first).
                    let kept = previous
                        .iter()
                        .find(|c| c.pair == *pair)
                        .or_else(|| previous.get(i));
                    let still = match kept {
                        Some(cert) => {
                            served.push(cert.clone());
                            format!(
                                "still serving the previous certificate for {}",
                                cert.label()
                            )
                        }
                        None => "not served".to_string(),
                    };
                    let message = format!("certificate rejected: {key}: {e}; {still}");
                    // Logged every time; written to the deployment log once per error and
                    // version of the files (a reload for another reason repeats nothing).
                    let files = [&pair.cert, &pair.key]
                        .map(|p| fingerprint(&resolve_beside(&self.config_path, p)));
                    let known = (message, files);
                    if seen.errors.get(pair) == Some(&known) {
                        tracing::warn!(actor, reason = %known.0, "certificate still rejected");
                    } else {
                        self.record_rejection(state, actor, &known.0);
                        seen.errors.insert(pair.clone(), known);
                    }
                }
            }
        }
        seen.errors
            .retain(|pair, _| pairs.iter().any(|(_, p)| p == pair));
        if served.is_empty() {
            // Nothing readable at all: keep serving what was, rather than failing every handshake.
            return;
        }
        let changed = served.len() != previous.len()
            || served
                .iter()
                .zip(previous.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            self.metrics
                .certificates_served(listener.label(), gauged(&served));
            tracing::info!(
                listener = listener.label(),
                certificates = ?served.iter().map(|c| c.label()).collect::<Vec<_>>(),
                "certificates read; new handshakes use them"
            );
            certs.store.replace(served);
        }
    }

    /// The listeners whose certificate or key files changed since they were last read.
    fn changed_certificate_files(&self) -> Vec<Listener> {
        let config = self.live.load().config.clone();
        Listener::ALL
            .into_iter()
            .filter(|l| {
                let now = fingerprints(&self.config_path, &l.pairs(&config));
                let seen = self.certs.of(*l).seen.lock();
                now != seen.unwrap_or_else(|p| p.into_inner()).fingerprints
            })
            .collect()
    }

    /// The fingerprints of every configured certificate and key file now.
    fn all_fingerprints(&self) -> Vec<Option<Fingerprint>> {
        let config = self.live.load().config.clone();
        Listener::ALL
            .into_iter()
            .flat_map(|l| fingerprints(&self.config_path, &l.pairs(&config)))
            .collect()
    }

    fn warn_expiring(&self) {
        let now = SystemTime::now();
        for listener in Listener::ALL {
            for cert in self.certs.of(listener).store.current().iter() {
                let left = cert.expires_in(now);
                if left < EXPIRY_WARNING.as_secs() as i64 {
                    tracing::warn!(
                        listener = listener.label(),
                        certificate = %cert.label(),
                        file = %cert.pair.cert.display(),
                        not_after = %cert.not_after_text(),
                        days_left = left / 86_400,
                        "a certificate served expires within 14 days; renew it"
                    );
                }
            }
        }
    }
}

/// Checks the certificate files once a second and reads a listener's again when they change;
/// warns about certificates close to expiry at start and once a day.
pub async fn watch(control: Arc<Control>) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        ticks.tick().await;
        if control.is_retired() {
            continue;
        }
        let changed = control.changed_certificate_files();
        if !changed.is_empty() {
            // A renewal replaces the certificate and the key one after the other: read them
            // once both have settled, not between (a key that matches no certificate).
            let settle = tokio::time::Instant::now() + SETTLE_AT_MOST;
            let mut last = control.all_fingerprints();
            loop {
                tokio::time::sleep(SETTLE).await;
                let now = control.all_fingerprints();
                if now == last || tokio::time::Instant::now() >= settle {
                    break;
                }
                last = now;
            }
            let state = control.state.lock().await;
            for listener in changed {
                control.reread(listener, &state, "file");
            }
        }
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            control.warn_expiring();
            warned = Some(tokio::time::Instant::now());
        }
    }
}

/// The expiry gauge's view of the certificates served: each one's names (its file's path when
/// it has none) and notAfter, in the order SNI picks them.
fn gauged(served: &[Arc<Certificate>]) -> impl Iterator<Item = (Vec<String>, i64)> + '_ {
    served.iter().map(|cert| {
        let names = match cert.names.is_empty() {
            true => vec![cert.label()],
            false => cert.names.clone(),
        };
        (names, cert.not_after)
    })
}
