//! The certificates served on the `[tls]` listeners: read at start-up, read again on every
//! config reload and SIGHUP, and whenever one of their files changes.
//!
//! The files are checked once a second (their identity, size and modification time, through
//! any symlink) rather than watched with `notify`: they often live in other directories than
//! the config file, and a Kubernetes Secret or a certbot renewal swaps them by a symlink or a
//! rename several levels up, which one stat per file always sees. A pair that no longer reads
//! is rejected (logged every time it is read, and written to the deployment log once per
//! distinct error and version of its files) and the certificate it replaced keeps serving.

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

/// The served certificates and what is known about their files.
pub(super) struct Certs {
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

/// The files of every pair, resolved beside the config file, cert then key.
fn files(config_path: &Path, tls: Option<&FrontTls>) -> Vec<PathBuf> {
    tls.into_iter()
        .flat_map(|t| &t.certificates)
        .flat_map(|pair| [&pair.cert, &pair.key])
        .map(|p| resolve_beside(config_path, p))
        .collect()
}

/// Reads every pair of `tls`: the certificates in order, or every problem, each with its key.
pub fn load_all(config_path: &Path, tls: &FrontTls) -> Result<Vec<Arc<Certificate>>, String> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let now = SystemTime::now();
    let mut problems = Vec::new();
    let mut served = Vec::new();
    for (i, pair) in tls.certificates.iter().enumerate() {
        match certs::load(base, pair, now) {
            Ok(cert) => served.push(Arc::new(cert)),
            Err(e) => problems.push(format!("tls.certificates[{i}]: {e}")),
        }
    }
    match problems.is_empty() {
        true => Ok(served),
        false => Err(problems.join("; ")),
    }
}

impl Certs {
    /// Reads `config`'s certificates; any that does not read stops the start.
    ///
    /// # Errors
    /// Every problem, each with its key.
    pub(super) fn start(
        config_path: &Path,
        config: &Config,
        metrics: &Metrics,
    ) -> Result<Certs, String> {
        let store = CertStore::new();
        let fingerprints = files(config_path, config.tls.as_ref())
            .iter()
            .map(|f| fingerprint(f))
            .collect();
        if let Some(tls) = &config.tls {
            let served = load_all(config_path, tls)?;
            metrics.certificates_served(gauged(&served));
            store.replace(served);
        }
        let seen = Seen {
            fingerprints,
            errors: BTreeMap::new(),
        };
        Ok(Certs {
            store,
            seen: Mutex::new(seen),
        })
    }

    /// The store the TLS listeners serve from.
    pub(super) fn store(&self) -> Arc<CertStore> {
        self.store.clone()
    }
}

impl Control {
    /// The certificates served now, in configured order.
    pub fn certificates(&self) -> Arc<Vec<Arc<Certificate>>> {
        self.certs.store.current()
    }

    /// Reads every configured pair again: each that reads is served from the next handshake
    /// on; each that does not keeps its previous certificate and is rejected by `actor`.
    /// Caller holds the lock.
    pub(super) fn reread_certificates(&self, state: &State, actor: &str) {
        let Some(tls) = &state.config.tls else {
            return;
        };
        let base = self.config_path.parent().unwrap_or(Path::new("."));
        let previous = self.certs.store.current();
        let now = SystemTime::now();
        let mut served = Vec::new();
        let mut seen = self.certs.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.fingerprints = files(&self.config_path, Some(tls))
            .iter()
            .map(|f| fingerprint(f))
            .collect();
        for (i, pair) in tls.certificates.iter().enumerate() {
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
                    let message =
                        format!("certificate rejected: tls.certificates[{i}]: {e}; {still}");
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
            .retain(|pair, _| tls.certificates.contains(pair));
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
            self.metrics.certificates_served(gauged(&served));
            tracing::info!(
                certificates = ?served.iter().map(|c| c.label()).collect::<Vec<_>>(),
                "certificates read; new handshakes use them"
            );
            self.certs.store.replace(served);
        }
    }

    /// The fingerprints of the configured certificate and key files now.
    fn fingerprints(&self) -> Vec<Option<Fingerprint>> {
        let config = self.live.load().config.clone();
        files(&self.config_path, config.tls.as_ref())
            .iter()
            .map(|f| fingerprint(f))
            .collect()
    }

    /// Whether any certificate or key file changed since it was last read.
    fn certificate_files_changed(&self) -> bool {
        let now = self.fingerprints();
        let seen = self.certs.seen.lock().unwrap_or_else(|p| p.into_inner());
        now != seen.fingerprints
    }

    fn warn_expiring(&self) {
        let now = SystemTime::now();
        for cert in self.certificates().iter() {
            let left = cert.expires_in(now);
            if left < EXPIRY_WARNING.as_secs() as i64 {
                tracing::warn!(
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

/// Checks the certificate files once a second and reads them again when they change; warns
/// about certificates close to expiry at start and once a day.
pub async fn watch(control: Arc<Control>) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        ticks.tick().await;
        if control.is_retired() {
            continue;
        }
        if control.certificate_files_changed() {
            // A renewal replaces the certificate and the key one after the other: read them
            // once both have settled, not between (a key that matches no certificate).
            let settle = tokio::time::Instant::now() + SETTLE_AT_MOST;
            let mut last = control.fingerprints();
            loop {
                tokio::time::sleep(SETTLE).await;
                let now = control.fingerprints();
                if now == last || tokio::time::Instant::now() >= settle {
                    break;
                }
                last = now;
            }
            let state = control.state.lock().await;
            control.reread_certificates(&state, "file");
        }
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            control.warn_expiring();
            warned = Some(tokio::time::Instant::now());
        }
    }
}

/// The expiry gauge's view of the certificates served: each one's names (its file's path when
/// it has none) and notAfter, in the order SNI picks them.
fn gauged(
    served: &[Arc<crate::data::tls::certs::Certificate>],
) -> impl Iterator<Item = (Vec<String>, i64)> + '_ {
    served.iter().map(|cert| {
        let names = match cert.names.is_empty() {
            true => vec![cert.label()],
            false => cert.names.clone(),
        };
        (names, cert.not_after)
    })
}
