//! Reading a certificate and key pair: PEM parsing, the key matched against the certificate,
//! the names and the expiry. Anything wrong is a [`CertError`] naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CertificateDer, CryptoProvider, PrivateKeyDer};
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

use crate::config::model::CertPair;

/// Largest certificate or key file read: a chain is a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A usable certificate: the chain and key rustls serves, with what operators see.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// The DNS names it is valid for, lower-case (`*.example.com` for a wildcard); the
    /// subject's common name when it has no subject-alternative names.
    pub names: Vec<String>,
    /// Its `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The files, as configured.
    pub pair: CertPair,
}

impl Certificate {
    /// The name it is known by in metrics and logs: its first name, or the file.
    pub fn label(&self) -> String {
        match self.names.first() {
            Some(name) => name.clone(),
            None => self.pair.cert.display().to_string(),
        }
    }

    /// Seconds until it expires (negative once it has).
    pub fn expires_in(&self, now: SystemTime) -> i64 {
        self.not_after - unix(now)
    }

    /// `notAfter` as an RFC 3339 UTC time.
    pub fn not_after_text(&self) -> String {
        let at = UNIX_EPOCH + Duration::from_secs(self.not_after.max(0) as u64);
        humantime::format_rfc3339_seconds(at).to_string()
    }
}

/// Why a pair cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file holds no usable PEM item of the kind expected.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{key} is not the private key of {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate's `notAfter` has passed.
    #[error("{path} expired at {at}")]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// When.
        at: String,
    },
}

/// Reads `pair` (relative to `base`), refusing a certificate expired at `now`.
///
/// # Errors
/// [`CertError`] naming the file at fault.
pub fn load(base: &Path, pair: &CertPair, now: SystemTime) -> Result<Certificate, CertError> {
    let (cert_path, key_path) = (base.join(&pair.cert), base.join(&pair.key));
    let chain = read_chain(&cert_path)?;
    let key = read_key(&key_path)?;
    let (names, not_after) = describe(&cert_path, &chain[0])?;
    let provider = provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        pingora::tls::RusTlsError::InconsistentKeys(_) => CertError::KeyMismatch {
            cert: cert_path.clone(),
            key: key_path.clone(),
        },
        other => invalid(&key_path, format!("unusable private key: {other}")),
    })?;
    let certificate = Certificate {
        key: Arc::new(certified),
        names,
        not_after,
        pair: pair.clone(),
    };
    if certificate.expires_in(now) <= 0 {
        return Err(CertError::Expired {
            path: cert_path,
            at: certificate.not_after_text(),
        });
    }
    Ok(certificate)
}

/// The crypto provider every TLS object here uses: Pingora's (ring).
pub fn provider() -> Arc<CryptoProvider> {
    pingora::tls::install_default_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .expect("a crypto provider was just installed")
}

/// Reads a PEM file of at most [`MAX_PEM_BYTES`].
pub fn read_pem(path: &Path) -> Result<Vec<u8>, CertError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| CertError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(invalid(path, format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(bytes)
}

/// Every certificate in a PEM file, in order; at least one.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read_pem(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(path, "holds no PEM certificate".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            invalid(path, "holds no PEM private key".into())
        }
        other => invalid(path, format!("not a PEM private key file: {other}")),
    })
}

/// The leaf's DNS names and `notAfter`.
fn describe(path: &Path, leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| invalid(path, format!("not an X.509 certificate: {e}")))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        let cn = cert.subject().iter_common_name().next();
        names.extend(
            cn.and_then(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

fn invalid(path: &Path, reason: String) -> CertError {
    CertError::Invalid {
        path: path.to_path_buf(),
        reason,
    }
}

/// Seconds since the Unix epoch.
pub fn unix(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
