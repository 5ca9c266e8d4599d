//! `[state] etcd…` and `[log] shared-keep`: control state shared by several replicas on an
//! etcd cluster.
//!
//! ```text
//! [state] etcd = ["https://10.0.0.1:2379", …]  ─┐
//!         etcd-prefix, replica                   │
//!         etcd-ca-file, etcd-cert + etcd-key     ├──▶ SharedState
//!         etcd-user + etcd-password-file         │
//! [log]   shared-keep                           ─┘
//! ```
//!
//! Only shapes are checked here: the URLs, the prefix and replica name, and that paired keys
//! come in pairs. The files are read, the cluster reached and the replica name's uniqueness
//! under the prefix enforced at start-up, by the control plane. Without `etcd` every other key
//! above is an error, except `shared-keep`, which is then checked but unused.

use std::path::PathBuf;

use super::defaults;
use super::problem::{Problem, ProblemKind};
use super::raw::{RawConfig, RawState};
use super::rules::out_of_range;

/// Longest `etcd-prefix`, in bytes.
const MAX_PREFIX: usize = 200;
/// Longest `replica` name, in bytes.
const MAX_REPLICA: usize = 63;
/// Smallest `[log] shared-keep`.
const MIN_KEEP: i64 = 100;
/// Largest `[log] shared-keep`.
const MAX_KEEP: i64 = 1_000_000;
/// What an endpoint must look like.
const ENDPOINT_SHAPE: &str = "expected http://host:port or https://host:port";

/// `[state] etcd…`: control state shared by several replicas on an etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedState {
    /// The cluster's endpoints (at least one, no duplicates), each `scheme://host:port` without
    /// a trailing '/', all with the same scheme.
    pub endpoints: Vec<String>,
    /// Every key of this deployment's state lives under this prefix: it starts with '/', has no
    /// trailing '/', and is at most 200 visible ASCII characters (`"/switchback"` by default).
    pub prefix: String,
    /// This replica's name: 1 to 63 of `A-Z a-z 0-9 . _ -`, unique under `prefix` (this host's
    /// name by default).
    pub replica: String,
    /// PEM CA bundle trusted for the `https` endpoints, as written (relative to the config
    /// file's directory); `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and its key for mTLS, `(cert, key)`, as written; `https` only.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// etcd authentication, `(user, password file)`, the file as written.
    pub auth: Option<(String, PathBuf)>,
    /// Deployment-log entries kept in etcd (`[log] shared-keep`, 100 to 1,000,000; 10,000 by
    /// default); older ones are deleted.
    pub keep: usize,
}

/// Validates the shared-state keys: `Some` when `[state] etcd` is given and every key is
/// valid. `host_name` gives the default replica name; it is called only when needed.
pub(super) fn shared(
    raw: &RawConfig,
    host_name: impl FnOnce() -> String,
    problems: &mut Vec<Problem>,
) -> Option<SharedState> {
    let before = problems.len();
    let keep = shared_keep(raw.log.shared_keep, problems);
    let state = &raw.state;
    let Some(list) = &state.etcd else {
        for key in given_keys(state) {
            problems.push(Problem::at(
                format!("state.{key}"),
                ProblemKind::OnlyWith("[state] etcd"),
            ));
        }
        return None;
    };
    let (endpoints, scheme) = endpoints(list, problems);
    let prefix = prefix(state.etcd_prefix.as_deref(), problems);
    let replica = replica(state.replica.as_deref(), host_name, problems);
    let ca_file = file("etcd-ca-file", state.etcd_ca_file.as_deref(), problems);
    let cert = file("etcd-cert", state.etcd_cert.as_deref(), problems);
    let key = file("etcd-key", state.etcd_key.as_deref(), problems);
    let password = file(
        "etcd-password-file",
        state.etcd_password_file.as_deref(),
        problems,
    );
    let user = user(state.etcd_user.as_deref(), problems);
    paired(
        ("etcd-cert", state.etcd_cert.is_some()),
        ("etcd-key", state.etcd_key.is_some()),
        problems,
    );
    paired(
        ("etcd-user", state.etcd_user.is_some()),
        ("etcd-password-file", state.etcd_password_file.is_some()),
        problems,
    );
    if scheme == Some("http") {
        for (key, given) in tls_keys(state) {
            if given {
                problems.push(Problem::at(
                    format!("state.{key}"),
                    ProblemKind::OnlyWith("https:// endpoints in [state] etcd"),
                ));
            }
        }
    }
    (problems.len() == before).then(|| SharedState {
        endpoints,
        prefix,
        replica,
        ca_file,
        client_cert: cert.zip(key),
        auth: user.zip(password),
        keep,
    })
}

fn shared_keep(value: Option<i64>, problems: &mut Vec<Problem>) -> usize {
    match value {
        None => defaults::SHARED_KEEP,
        Some(n) if (MIN_KEEP..=MAX_KEEP).contains(&n) => n as usize,
        Some(n) => {
            problems.push(out_of_range("log.shared-keep", n, MIN_KEEP, MAX_KEEP));
            defaults::SHARED_KEEP
        }
    }
}

/// The TLS keys, each with whether it is given.
fn tls_keys(state: &RawState) -> [(&'static str, bool); 3] {
    [
        ("etcd-ca-file", state.etcd_ca_file.is_some()),
        ("etcd-cert", state.etcd_cert.is_some()),
        ("etcd-key", state.etcd_key.is_some()),
    ]
}

/// The keys given that need `etcd`, in file-reference order.
fn given_keys(state: &RawState) -> Vec<&'static str> {
    let mut keys = vec![
        ("etcd-prefix", state.etcd_prefix.is_some()),
        ("replica", state.replica.is_some()),
    ];
    keys.extend(tls_keys(state));
    keys.push(("etcd-user", state.etcd_user.is_some()));
    keys.push(("etcd-password-file", state.etcd_password_file.is_some()));
    keys.into_iter()
        .filter_map(|(key, given)| given.then_some(key))
        .collect()
}

/// The valid endpoints, and their common scheme (`None` when there is none or they mix).
fn endpoints(list: &[String], problems: &mut Vec<Problem>) -> (Vec<String>, Option<&'static str>) {
    if list.is_empty() {
        problems.push(Problem::at("state.etcd", ProblemKind::Empty));
        return (Vec::new(), None);
    }
    let mut out: Vec<String> = Vec::new();
    let mut first: Option<(&'static str, &str)> = None;
    let mut mixed = false;
    for (i, text) in list.iter().enumerate() {
        let path = format!("state.etcd[{i}]");
        let (scheme, url) = match endpoint(text) {
            Ok(parsed) => parsed,
            Err(kind) => {
                problems.push(Problem::at(path, kind));
                continue;
            }
        };
        match first {
            None => first = Some((scheme, text)),
            Some((expected, other)) if expected != scheme => {
                mixed = true;
                problems.push(Problem::at(
                    path,
                    ProblemKind::Syntax(format!(
                        "{text:?} is {scheme} but {other:?} is {expected}: every endpoint must use the same scheme"
                    )),
                ));
                continue;
            }
            Some(_) => {}
        }
        if out.contains(&url) {
            problems.push(Problem::at(path, ProblemKind::Duplicate(text.clone())));
            continue;
        }
        out.push(url);
    }
    let scheme = first.filter(|_| !mixed).map(|(scheme, _)| scheme);
    (out, scheme)
}

/// `http://host:port` or `https://host:port`, an empty path or "/": `(scheme, "scheme://host:port")`.
fn endpoint(text: &str) -> Result<(&'static str, String), ProblemKind> {
    let bad = |reason: &str| ProblemKind::InvalidAddress {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let uri: http::Uri = text.parse().map_err(|_| bad(ENDPOINT_SHAPE))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => return Err(bad(ENDPOINT_SHAPE)),
    };
    let Some(authority) = uri.authority() else {
        return Err(bad(ENDPOINT_SHAPE));
    };
    if authority.as_str().contains('@') {
        return Err(bad(
            "no user in the URL: use etcd-user and etcd-password-file",
        ));
    }
    if authority.host().is_empty() {
        return Err(bad("a host is required"));
    }
    if !matches!(authority.port_u16(), Some(1..)) {
        return Err(bad("a port from 1 to 65535 is required, e.g. :2379"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("no path or query: an endpoint is a host and port"));
    }
    Ok((scheme, format!("{scheme}://{authority}")))
}

fn prefix(given: Option<&str>, problems: &mut Vec<Problem>) -> String {
    let Some(text) = given else {
        return defaults::ETCD_PREFIX.to_string();
    };
    let ok = text.starts_with('/')
        && !text.ends_with('/')
        && text.len() <= MAX_PREFIX
        && text.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        problems.push(Problem::at(
            "state.etcd-prefix",
            ProblemKind::Syntax(format!(
                "{text:?} is not a key prefix: start with '/', no trailing '/', at most {MAX_PREFIX} visible ASCII characters (no spaces)"
            )),
        ));
    }
    text.to_string()
}

fn replica(
    given: Option<&str>,
    host_name: impl FnOnce() -> String,
    problems: &mut Vec<Problem>,
) -> String {
    const RULE: &str = "1 to 63 of A-Z, a-z, 0-9, '.', '_' and '-'";
    let valid = |name: &str| {
        (1..=MAX_REPLICA).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let (name, why) = match given {
        Some(name) => (
            name.to_string(),
            format!("{name:?} is not a replica name: {RULE}"),
        ),
        None => {
            let name = host_name();
            let why = format!(
                "this host's name {name:?} is not a replica name ({RULE}): set [state] replica"
            );
            (name, why)
        }
    };
    if !valid(&name) {
        problems.push(Problem::at("state.replica", ProblemKind::Syntax(why)));
    }
    name
}

fn file(key: &str, given: Option<&str>, problems: &mut Vec<Problem>) -> Option<PathBuf> {
    match given? {
        "" => {
            problems.push(Problem::at(
                format!("state.{key}"),
                ProblemKind::Syntax("must name a file (leave the key out for none)".into()),
            ));
            None
        }
        path => Some(PathBuf::from(path)),
    }
}

fn user(given: Option<&str>, problems: &mut Vec<Problem>) -> Option<String> {
    let name = given?;
    if name.is_empty() || name.chars().any(char::is_control) {
        problems.push(Problem::at(
            "state.etcd-user",
            ProblemKind::Syntax(format!("{name:?} is not a user name")),
        ));
        return None;
    }
    Some(name.to_string())
}

/// Two keys that come both or neither, each with whether it is given.
fn paired(a: (&'static str, bool), b: (&'static str, bool), problems: &mut Vec<Problem>) {
    let missing = match (a, b) {
        ((key, true), (other, false)) | ((other, false), (key, true)) => (key, other),
        _ => return,
    };
    problems.push(Problem::at(
        format!("state.{}", missing.0),
        ProblemKind::Unpaired(missing.1),
    ));
}

#[cfg(test)]
mod tests;
