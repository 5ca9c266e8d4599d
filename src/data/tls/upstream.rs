//! TLS and HTTP/2 to the backends: each pool's `tls` and `protocol` on its Pingora peers, its
//! CA file read (and checked) before a configuration using it is accepted, and a failed
//! verification named in words an operator searches for.

use std::path::Path;
use std::sync::Arc;

use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;

use crate::config::model::{CaBundle, Config, Pool, Protocol};
use crate::config::problem::{Problem, ProblemKind};
use crate::config::resolve_beside;

/// Streams a backend's HTTP/2 connection carries at once before another is opened.
const H2_STREAMS: usize = 100;

/// Reads the `ca-file` of every pool with `tls` into the config (relative to the config file).
///
/// # Errors
/// The first file that does not read or holds something other than PEM certificates, at its
/// key.
pub fn read_ca_files(config_path: &Path, config: &mut Config) -> Result<(), Problem> {
    for (name, pool) in config.pools.iter_mut() {
        let Some(tls) = pool.tls.as_mut() else {
            continue;
        };
        let Some(file) = &tls.ca_file else {
            continue;
        };
        let path = resolve_beside(config_path, file);
        let key = format!("pools.{name}.tls.ca-file");
        let problem = |why: String| Problem::at(&key, ProblemKind::Syntax(why));
        let chain = super::certs::read_chain(&path).map_err(|e| problem(e.to_string()))?;
        let mut ders = Vec::new();
        for cert in chain {
            if let Err(e) = x509_parser::parse_x509_certificate(&cert) {
                let why = format!("{}: not an X.509 certificate: {e}", path.display());
                return Err(problem(why));
            }
            ders.push(cert.to_vec());
        }
        tls.ca = Some(Arc::new(CaBundle(ders)));
    }
    Ok(())
}

/// The CA list Pingora takes, once per pool.
pub fn ca_list(pool: &Pool) -> Option<Arc<[WrappedX509]>> {
    let bundle = pool.tls.as_ref()?.ca.as_ref()?;
    let list: Vec<WrappedX509> = bundle
        .0
        .iter()
        .map(|der| WrappedX509::new(der.clone(), pingora::utils::tls::parse_x509))
        .collect();
    Some(list.into())
}

/// Sets `pool`'s TLS and protocol on `peer`, built for the backend written `name`.
pub fn configure(peer: &mut HttpPeer, pool: &Pool, name: &str, ca: Option<&Arc<[WrappedX509]>>) {
    if let Some(tls) = &pool.tls {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTPS;
        // Never empty: Pingora skips verification for a peer without SNI.
        peer.sni = tls.sni.clone().unwrap_or_else(|| host_of(name));
        peer.options.verify_cert = tls.verify;
        peer.options.verify_hostname = tls.verify;
        peer.options.ca = ca.cloned();
    }
    if pool.protocol == Protocol::H2 {
        // Over TLS: offered by ALPN; in the clear: h2c with prior knowledge.
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = H2_STREAMS;
    }
    // Pingora's connection-pool key covers the address, SNI and verification, not the CA
    // nor the protocol: pools reaching one address differently must not share connections.
    if pool.tls.is_some() || pool.protocol == Protocol::H2 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (pool.protocol == Protocol::H2).hash(&mut hasher);
        pool.tls
            .as_ref()
            .map(|t| (&t.ca_file, &t.ca))
            .hash(&mut hasher);
        peer.group_key = hasher.finish();
    }
}

/// The host of a `host:port` backend name (brackets of an IPv6 literal removed).
fn host_of(name: &str) -> String {
    let host = name.rsplit_once(':').map_or(name, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Why a TLS connection to a backend failed, in the words operators search for. Pingora keeps
/// only the text of the rustls error (its `explain_err` drops the cause), so the text is read.
pub fn failure_reason(e: &pingora::Error) -> String {
    let text = e.to_string();
    let reason = if text.contains("UnknownIssuer") {
        "certificate signed by an unknown authority"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        "name mismatch: the certificate is not valid for the SNI name"
    } else if text.contains("Expired") || text.contains("certificate expired") {
        "certificate expired"
    } else if text.contains("NotValidYet") || text.contains("not valid yet") {
        "certificate not valid yet"
    } else if text.contains("Revoked") {
        "certificate revoked"
    } else {
        return text;
    };
    reason.to_string()
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_default_sni_is_the_backend_host() {
        assert_eq!(host_of("green.internal:8443"), "green.internal");
        assert_eq!(host_of("127.0.0.1:9000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9000"), "::1");
    }
}
