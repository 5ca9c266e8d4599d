//! Validating `[pools.<name>] backends`: each entry is `"host:port"` or
//! `{ addr = "host:port", weight = N }`; host names are resolved once, here.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};

use super::defaults;
use super::model::Backend;
use super::problem::{Problem, ProblemKind};
use super::rules::{out_of_range, wrong_type};

static RESOLVE: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// Addresses the running configuration uses, by backend name, while a reload parses.
    static KNOWN: RefCell<HashMap<String, SocketAddr>> = RefCell::new(HashMap::new());
}

/// Runs `parse` (on this thread) knowing the addresses the running configuration uses: a name
/// keeps its address while that address is still among those it resolves to (round-robin DNS
/// does not move it), and when it does not resolve at all (a DNS hiccup does not reject the
/// file; the failure is logged).
pub fn with_known_addresses<T>(known: HashMap<String, SocketAddr>, parse: impl FnOnce() -> T) -> T {
    KNOWN.with(|k| *k.borrow_mut() = known);
    let out = parse();
    KNOWN.with(|k| k.borrow_mut().clear());
    out
}

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
    let known = KNOWN.with(|k| k.borrow().get(text).copied());
    let resolved: Vec<SocketAddr> = match text.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => match known {
            Some(addr) => {
                tracing::warn!(backend = text, error = %e, address = %addr, "cannot resolve a backend name; keeping its address");
                return Ok(addr);
            }
            None => return Err(invalid(&format!("cannot resolve: {e}"))),
        },
    };
    match known {
        Some(addr) if resolved.contains(&addr) || resolved.is_empty() => Ok(addr),
        _ => resolved
            .first()
            .copied()
            .ok_or_else(|| invalid("the name resolves to no address")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(name: &str, known: &[(&str, &str)]) -> Result<SocketAddr, ProblemKind> {
        let known = known
            .iter()
            .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
            .collect();
        with_known_addresses(known, || backend_addr(name))
    }

    #[test]
    fn a_name_keeps_its_address_while_it_is_still_an_answer() {
        // `localhost` comes from /etc/hosts: no DNS query.
        assert_eq!(
            resolve("localhost:80", &[]).unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        let moved = resolve("localhost:80", &[("localhost:80", "10.9.9.9:80")]).unwrap();
        assert_eq!(
            moved,
            "127.0.0.1:80".parse().unwrap(),
            "no longer an answer: moves"
        );
        let kept = resolve("localhost:80", &[("localhost:80", "127.0.0.1:80")]).unwrap();
        assert_eq!(kept, "127.0.0.1:80".parse().unwrap());
        assert!(
            KNOWN.with(|k| k.borrow().is_empty()),
            "the addresses are forgotten after"
        );
    }
}
