//! Small checks every section validator uses: out-of-range and wrong-type problems, duration
//! keys, listen addresses (and which of them clash), pool names. A leaf: the section
//! validators depend on it, and `validate.rs` only composes them.

use std::net::SocketAddr;
use std::time::Duration;

use super::duration;
use super::problem::{Problem, ProblemKind};

/// A listen address must be a literal `ip:port`, so that binding never depends on DNS.
pub(super) fn listen_addr(text: &str) -> Result<SocketAddr, ProblemKind> {
    text.parse().map_err(|_| ProblemKind::InvalidAddress {
        value: text.into(),
        reason: "expected ip:port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"".into(),
    })
}

/// Whether `a` and `b` cannot both be bound: the same port (port 0 is any free port, so it
/// never clashes), on the same address or with a wildcard address on either side. An IPv4-mapped
/// IPv6 address is its IPv4 address; the IPv6 wildcard `[::]` covers IPv4 too (the listeners
/// are dual-stack: neither Pingora's nor the admin listener sets `IPV6_V6ONLY`), while the
/// IPv4 wildcard covers IPv4 only.
pub(super) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |w: std::net::IpAddr, o: std::net::IpAddr| {
        w.is_unspecified() && (w.is_ipv6() || o.is_ipv4())
    };
    a.port() != 0 && a.port() == b.port() && (x == y || covers(x, y) || covers(y, x))
}

/// The problem when `addr` (written `text`) clashes with one of `others`' addresses, named
/// by `other_key`.
pub(super) fn clash_with(
    text: &str,
    addr: SocketAddr,
    other_key: &'static str,
    others: &[SocketAddr],
) -> Option<ProblemKind> {
    let other = others.iter().find(|o| clash(addr, **o))?;
    Some(ProblemKind::AddressClash {
        value: text.to_string(),
        other_key,
        other: other.to_string(),
    })
}

pub(super) fn valid_pool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(super) fn out_of_range(path: &str, value: i64, min: i64, max: i64) -> Problem {
    Problem::at(
        path,
        ProblemKind::OutOfRange {
            value: value.to_string(),
            min: min.to_string(),
            max: max.to_string(),
        },
    )
}

pub(super) fn wrong_type(path: &str, expected: &'static str, found: &toml::Value) -> Problem {
    Problem::at(
        path,
        ProblemKind::WrongType {
            expected,
            found: type_name(found),
        },
    )
}

fn type_name(value: &toml::Value) -> String {
    value.type_str().to_string()
}

/// A duration key; zero is allowed only where `zero_ok` (it means "off" there).
pub(super) fn duration_key(
    path: &str,
    value: Option<&str>,
    default: Duration,
    zero_ok: bool,
    problems: &mut Vec<Problem>,
) -> Duration {
    let Some(text) = value else { return default };
    let reason = match duration::parse(text) {
        Ok(d) if d.is_zero() && !zero_ok => "must be more than 0".to_string(),
        Ok(d) => return d,
        Err(reason) => reason,
    };
    problems.push(Problem::at(
        path,
        ProblemKind::InvalidDuration {
            value: text.into(),
            reason,
        },
    ));
    default
}
