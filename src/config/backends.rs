//! Validating `[pools.<name>] backends`: each entry is `"host:port"` or
//! `{ addr = "host:port", weight = N }`; host names are resolved once, here.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};

use super::defaults;
use super::model::Backend;
use super::problem::{Problem, ProblemKind};
use super::validate::{out_of_range, wrong_type};

static RESOLVE: AtomicBool = AtomicBool::new(true);

/// Turns host-name resolution on or off for this process. Off (fuzzing and its corpus
/// replay), a well-formed name stands for `0.0.0.0:<port>` and no DNS query is sent.
#[doc(hidden)]
pub fn resolve_host_names(on: bool) {
    RESOLVE.store(on, Ordering::Relaxed);
}

/// A backend address is `host:port`; a host name is resolved now.
fn backend_addr(text: &str) -> Result<SocketAddr, ProblemKind> {
    let invalid = |reason: &str| ProblemKind::InvalidAddress {
        value: text.into(),
        reason: reason.into(),
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return match addr.port() {
            0 => Err(invalid("port 0 is not a backend port")),
            _ => Ok(addr),
        };
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected host:port"))?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(invalid("expected host:port"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(invalid("the port must be a number from 1 to 65535")),
    }
    if !RESOLVE.load(Ordering::Relaxed) {
        let port = port.parse().unwrap_or(1);
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    let mut resolved = text
        .to_socket_addrs()
        .map_err(|e| invalid(&format!("cannot resolve: {e}")))?;
    resolved
        .next()
        .ok_or_else(|| invalid("the name resolves to no address"))
}

pub(super) fn backends(
    pool_path: &str,
    raw: &[toml::Value],
    problems: &mut Vec<Problem>,
) -> Vec<Backend> {
    let list_path = format!("{pool_path}.backends");
    if raw.is_empty() {
        problems.push(Problem::at(&list_path, ProblemKind::Empty));
    }
    if raw.len() > defaults::MAX_BACKENDS_PER_POOL {
        problems.push(out_of_range(
            &list_path,
            raw.len() as i64,
            1,
            defaults::MAX_BACKENDS_PER_POOL as i64,
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, value) in raw.iter().enumerate() {
        let path = format!("{list_path}[{i}]");
        let Some(backend) = backend(&path, value, problems) else {
            continue;
        };
        if seen.insert(backend.addr) {
            out.push(backend);
        } else {
            problems.push(Problem::at(path, ProblemKind::Duplicate(backend.name)));
        }
    }
    out
}

fn backend(path: &str, value: &toml::Value, problems: &mut Vec<Problem>) -> Option<Backend> {
    let (name, weight) = match value {
        toml::Value::String(s) => (s.clone(), Some(defaults::BACKEND_WEIGHT)),
        toml::Value::Table(table) => backend_table(path, table, problems)?,
        other => {
            problems.push(wrong_type(
                path,
                "\"host:port\" or { addr = \"host:port\", weight = N }",
                other,
            ));
            return None;
        }
    };
    let addr = match backend_addr(&name) {
        Ok(addr) => Some(addr),
        Err(kind) => {
            problems.push(Problem::at(path, kind));
            None
        }
    };
    Some(Backend {
        name,
        addr: addr?,
        weight: weight?,
    })
}

fn backend_table(
    path: &str,
    table: &toml::Table,
    problems: &mut Vec<Problem>,
) -> Option<(String, Option<u32>)> {
    for key in table
        .keys()
        .filter(|k| !matches!(k.as_str(), "addr" | "weight"))
    {
        problems.push(Problem::at(
            format!("{path}.{key}"),
            ProblemKind::UnknownKey,
        ));
    }
    let name = match table.get("addr") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(other) => {
            problems.push(wrong_type(
                &format!("{path}.addr"),
                "a \"host:port\" string",
                other,
            ));
            return None;
        }
        None => {
            problems.push(Problem::at(
                format!("{path}.addr"),
                ProblemKind::Syntax("missing; every backend needs an addr".into()),
            ));
            return None;
        }
    };
    let max = defaults::MAX_BACKEND_WEIGHT;
    let weight_path = format!("{path}.weight");
    let weight = match table.get("weight") {
        None => Some(defaults::BACKEND_WEIGHT),
        Some(toml::Value::Integer(w)) if (1..=i64::from(max)).contains(w) => Some(*w as u32),
        Some(toml::Value::Integer(w)) => {
            problems.push(out_of_range(&weight_path, *w, 1, i64::from(max)));
            None
        }
        Some(other) => {
            problems.push(wrong_type(&weight_path, "a whole number", other));
            None
        }
    };
    Some((name, weight))
}
