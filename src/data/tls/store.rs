//! The certificates being served, swapped whole on reload, and the SNI choice among them.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};

use super::certs::Certificate;

/// The certificates served, in configured order: the first is the default.
#[derive(Debug, Default)]
pub struct CertStore {
    served: ArcSwap<Vec<Arc<Certificate>>>,
}

impl CertStore {
    /// An empty store: every handshake fails until [`Self::replace`] fills it.
    pub fn new() -> Arc<Self> {
        Arc::new(CertStore::default())
    }

    /// The certificates served now.
    pub fn current(&self) -> Arc<Vec<Arc<Certificate>>> {
        self.served.load_full()
    }

    /// Serves `certificates` to every handshake from now on; connections already open keep
    /// the certificate they were given.
    pub fn replace(&self, certificates: Vec<Arc<Certificate>>) {
        self.served.store(Arc::new(certificates));
    }

    /// The certificate for `sni`: one naming it exactly, else one whose wildcard covers it,
    /// else the first.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let served = self.served.load();
        let named = sni.and_then(|sni| {
            let exact = served.iter().find(|c| c.names.iter().any(|n| n == sni));
            exact.or_else(|| {
                served
                    .iter()
                    .find(|c| c.names.iter().any(|n| wildcard_covers(n, sni)))
            })
        });
        named.or_else(|| served.first()).map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands the SNI lower-cased, and none for an IP address.
        self.pick(hello.server_name())
    }
}

/// `*.example.com` covers `a.example.com`, not `example.com` nor `a.b.example.com`
/// (RFC 6125 §6.4.3: the wildcard is one whole left-most label).
fn wildcard_covers(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest == suffix,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        assert!(wildcard_covers("*.example.com", "a.example.com"));
        assert!(!wildcard_covers("*.example.com", "example.com"));
        assert!(!wildcard_covers("*.example.com", "a.b.example.com"));
        assert!(!wildcard_covers("*.example.com", ".example.com"));
        assert!(!wildcard_covers("example.com", "example.com"));
    }
}
