//! TLS settings: `[tls]` (the listeners that terminate TLS), `[admin] tls`, and each pool's
//! `[pools.<name>.tls]` and `protocol`. Their raw shapes live here too, beside the checks.
//!
//! Only names and paths are validated here; the files themselves are read (and their
//! certificates checked) by [`crate::data::tls`], at start-up, on every reload and when they change.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::problem::{Problem, ProblemKind};

/// `[tls]`, raw.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawTls {
    /// Listen addresses, `"ip:port"`.
    pub listen: Option<Vec<String>>,
    /// Certificate and key pairs; the first is the default.
    pub certificates: Option<Vec<RawCertPair>>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: Option<String>,
    /// Protocols offered by ALPN, in preference order.
    pub alpn: Option<Vec<String>>,
    /// Whether the plain listeners answer 308 to the https URL.
    pub redirect_http: Option<bool>,
}

/// `{ cert = "…", key = "…" }`, raw.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawCertPair {
    /// PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// PEM private key.
    pub key: Option<String>,
}

/// `[pools.<name>.tls]`, raw.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawUpstreamTls {
    /// Server name sent and verified.
    pub sni: Option<String>,
    /// PEM file of the CAs trusted instead of the system roots.
    pub ca_file: Option<String>,
    /// Whether the backend's certificate is verified.
    pub verify: Option<bool>,
}

/// `[tls]`: where and how switchback terminates TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontTls {
    /// Listen addresses (at least one, none shared with `[proxy] listen`).
    pub listen: Vec<SocketAddr>,
    /// Certificate files (at least one); the first is served without or to an unknown SNI.
    pub certificates: Vec<CertPair>,
    /// The oldest TLS version accepted.
    pub min_version: TlsVersion,
    /// Protocols offered by ALPN, in preference order (at least one).
    pub alpn: Vec<Alpn>,
    /// The plain listeners answer 308 to `https://<host><target>`.
    pub redirect_http: bool,
}

/// A certificate chain file and its key file, as written (relative to the config file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertPair {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `min-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// A protocol offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`.
    H2,
    /// `http/1.1`.
    Http11,
}

impl Alpn {
    /// The protocol's ALPN identifier.
    pub fn wire(self) -> &'static [u8] {
        match self {
            Alpn::H2 => b"h2",
            Alpn::Http11 => b"http/1.1",
        }
    }
}

/// `[pools.<name>.tls]`: the pool's backends are reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Server name sent and verified; `None`: the backend's host name.
    pub sni: Option<String>,
    /// CAs trusted instead of the system roots, as written (relative to the config file).
    pub ca_file: Option<PathBuf>,
    /// Whether the backend's certificate chain and name are verified.
    pub verify: bool,
    /// The CA certificates of `ca_file` (DER), once read by [`crate::data::tls::upstream`].
    pub ca: Option<std::sync::Arc<CaBundle>>,
}

/// CA certificates read from a `ca-file`, each DER and known to parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaBundle(pub Vec<Vec<u8>>);

/// `[pools.<name>] protocol`: what the pool's backends speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    H1,
    /// HTTP/2 (over TLS when the pool has `tls`, else h2c with prior knowledge).
    H2,
}

/// Validates `[tls]`; `plain` are `[proxy] listen`, whose ports the TLS listeners may not take
/// (`rules::clash`).
pub(super) fn front(
    raw: Option<&RawTls>,
    plain: &[SocketAddr],
    problems: &mut Vec<Problem>,
) -> Option<FrontTls> {
    let raw = raw?;
    let mut listen = Vec::new();
    let mut seen = HashSet::new();
    for (i, text) in raw.listen.iter().flatten().enumerate() {
        let path = format!("tls.listen[{i}]");
        match super::rules::listen_addr(text) {
            Ok(addr) if !seen.insert(addr) => {
                problems.push(Problem::at(path, ProblemKind::Duplicate(text.clone())));
            }
            Ok(addr) => match super::rules::clash_with(text, addr, "proxy.listen", plain) {
                Some(kind) => problems.push(Problem::at(path, kind)),
                None => listen.push(addr),
            },
            Err(kind) => problems.push(Problem::at(path, kind)),
        }
    }
    if raw.listen.as_ref().is_none_or(Vec::is_empty) {
        problems.push(Problem::at("tls.listen", ProblemKind::Empty));
    }
    let mut certificates = Vec::new();
    for (i, pair) in raw.certificates.iter().flatten().enumerate() {
        if let Some(pair) = cert_pair(&format!("tls.certificates[{i}]"), pair, problems) {
            certificates.push(pair);
        }
    }
    if raw.certificates.as_ref().is_none_or(Vec::is_empty) {
        problems.push(Problem::at("tls.certificates", ProblemKind::Empty));
    }
    let min_version = match raw.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            problems.push(invalid(
                "tls.min-version",
                format!("{other:?} is not a TLS version; use \"1.2\" or \"1.3\""),
            ));
            TlsVersion::V1_2
        }
    };
    let alpn = alpn(raw.alpn.as_deref(), problems);
    Some(FrontTls {
        listen,
        certificates,
        min_version,
        alpn,
        redirect_http: raw.redirect_http.unwrap_or(false),
    })
}

fn alpn(raw: Option<&[String]>, problems: &mut Vec<Problem>) -> Vec<Alpn> {
    let Some(raw) = raw else {
        return vec![Alpn::H2, Alpn::Http11];
    };
    let mut out = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let path = format!("tls.alpn[{i}]");
        let proto = match name.as_str() {
            "h2" => Alpn::H2,
            "http/1.1" => Alpn::Http11,
            other => {
                let why = format!("{other:?} is not offered; use \"h2\" and/or \"http/1.1\"");
                problems.push(invalid(&path, why));
                continue;
            }
        };
        if out.contains(&proto) {
            problems.push(Problem::at(path, ProblemKind::Duplicate(name.clone())));
        } else {
            out.push(proto);
        }
    }
    if raw.is_empty() {
        problems.push(Problem::at("tls.alpn", ProblemKind::Empty));
    }
    out
}

/// Validates a `{ cert, key }` pair at `path`.
pub(super) fn cert_pair(
    path: &str,
    raw: &RawCertPair,
    problems: &mut Vec<Problem>,
) -> Option<CertPair> {
    let mut file = |key: &str, value: &Option<String>| match value.as_deref() {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => {
            problems.push(invalid(
                &format!("{path}.{key}"),
                "required: the path of a PEM file".into(),
            ));
            None
        }
    };
    let (cert, key) = (file("cert", &raw.cert), file("key", &raw.key));
    Some(CertPair {
        cert: cert?,
        key: key?,
    })
}

/// Validates `[pools.<name>.tls]` at `path`.
pub(super) fn upstream(
    path: &str,
    raw: Option<&RawUpstreamTls>,
    problems: &mut Vec<Problem>,
) -> Option<UpstreamTls> {
    let raw = raw?;
    let sni = raw.sni.as_ref().and_then(|name| {
        let valid = rustls_pki_types::ServerName::try_from(name.as_str()).is_ok()
            && !name.is_empty()
            && name.parse::<std::net::IpAddr>().is_err();
        if !valid {
            let why = format!("{name:?} is not a DNS name");
            problems.push(invalid(&format!("{path}.tls.sni"), why));
        }
        valid.then(|| name.to_ascii_lowercase())
    });
    let ca_file = match raw.ca_file.as_deref() {
        Some("") => {
            let why = "empty; leave it out to trust the system roots".to_string();
            problems.push(invalid(&format!("{path}.tls.ca-file"), why));
            None
        }
        other => other.map(PathBuf::from),
    };
    Some(UpstreamTls {
        sni,
        ca_file,
        verify: raw.verify.unwrap_or(true),
        ca: None,
    })
}

/// Validates `[pools.<name>] protocol` at `path`.
pub(super) fn protocol(path: &str, raw: Option<&str>, problems: &mut Vec<Problem>) -> Protocol {
    match raw {
        None | Some("h1") => Protocol::H1,
        Some("h2") => Protocol::H2,
        Some(other) => {
            let why = format!("{other:?} is not a protocol; use \"h1\" or \"h2\"");
            problems.push(invalid(&format!("{path}.protocol"), why));
            Protocol::H1
        }
    }
}

fn invalid(path: &str, why: String) -> Problem {
    Problem::at(path, ProblemKind::Syntax(why))
}

#[cfg(test)]
mod tests {
    use crate::config::load::parse;

    const BASE: &str = "[proxy]\nlisten = [\"127.0.0.1:8080\"]\n[pools.blue]\nbackends = [\"127.0.0.1:9001\"]\n[split]\nblue = 100\n";

    fn problems(extra: &str) -> Vec<String> {
        match parse(&format!("{BASE}{extra}")) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_full_tls_table_is_read_with_its_defaults() {
        let text = format!("{BASE}[tls]\nlisten = [\"127.0.0.1:8443\"]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n");
        let tls = parse(&text).unwrap().tls.unwrap();
        assert_eq!(tls.listen, ["127.0.0.1:8443".parse().unwrap()]);
        assert_eq!(tls.certificates[0].cert, std::path::PathBuf::from("a.pem"));
        assert_eq!(tls.min_version, super::TlsVersion::V1_2);
        assert_eq!(tls.alpn, [super::Alpn::H2, super::Alpn::Http11]);
        assert!(!tls.redirect_http);
    }

    #[test]
    fn every_tls_mistake_is_reported_with_its_key() {
        let found = problems(
            "[tls]\nlisten = [\"127.0.0.1:8080\", \"nowhere\"]\ncertificates = [{ cert = \"a.pem\" }]\nmin-version = \"1.1\"\nalpn = [\"h3\"]\n",
        );
        let joined = found.join("\n");
        for needle in [
            "tls.listen[0]",
            "tls.listen[1]",
            "tls.certificates[0].key",
            "tls.min-version",
            "tls.alpn[0]",
        ] {
            assert!(joined.contains(needle), "{needle} missing from {joined}");
        }
    }

    #[test]
    fn pool_tls_and_protocol_are_checked() {
        let found = problems("[pools.blue.tls]\nsni = \"not a name\"\nca-file = \"\"\n").join("\n");
        assert!(found.contains("pools.blue.tls.sni"), "{found}");
        assert!(found.contains("pools.blue.tls.ca-file"), "{found}");
        let found = problems("[pools.blue.tls]\nbogus = 1\n").join("\n");
        assert!(
            found.contains("pools.blue.tls.bogus: unknown key"),
            "{found}"
        );
        let text = BASE.replace(
            "backends",
            "protocol = \"h2\"\ntls = { sni = \"Green.Internal\" }\nbackends",
        );
        let pool = &parse(&text).unwrap().pools["blue"];
        assert_eq!(pool.protocol, super::Protocol::H2);
        assert_eq!(
            pool.tls.as_ref().unwrap().sni.as_deref(),
            Some("green.internal")
        );
        assert!(pool.tls.as_ref().unwrap().verify);
        let text = BASE.replace("backends", "protocol = \"h3\"\nbackends");
        let found = parse(&text).unwrap_err();
        assert_eq!(found[0].path, "pools.blue.protocol", "{found:?}");
    }
}
