//! Raw → validated model. Collects every problem it finds; never panics.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::defaults;
use super::model::{
    AccessLogTarget, AdminSettings, Backend, BasisPoints, Config, Pool, ProxySettings, Split, FULL,
};
use super::problem::{Problem, ProblemKind};
use super::raw::{RawAdmin, RawConfig, RawPool, RawProxy};
use super::{duration, model::format_percent};

/// Validates a parsed file into a [`Config`].
///
/// # Errors
/// Every problem found, each with its key path.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let proxy = proxy(&raw.proxy, &mut problems);
    let admin = admin(&raw.admin, &mut problems);
    let pools = pools(&raw.pools, &mut problems);
    let split = split(&raw.split, &raw.pools, &mut problems);
    let deployment_log = match raw.log.deployments.as_deref() {
        Some("") => {
            problems.push(Problem::at("log.deployments", ProblemKind::Empty));
            PathBuf::new()
        }
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(defaults::DEPLOYMENT_LOG),
    };
    let reload_debounce = timeout_value(
        "reload.debounce",
        raw.reload.debounce.as_deref(),
        defaults::RELOAD_DEBOUNCE,
        &mut problems,
    );
    let access_log = match raw.log.access.as_deref() {
        None => None,
        Some("") => {
            problems.push(Problem::at("log.access", ProblemKind::Empty));
            None
        }
        Some("stdout") => Some(AccessLogTarget::Stdout),
        Some(path) => Some(AccessLogTarget::File(PathBuf::from(path))),
    };
    let metrics_enabled = raw.metrics.enabled.unwrap_or(defaults::METRICS_ENABLED);
    let access_buffer = match raw.log.access_buffer {
        None => defaults::ACCESS_LOG_BUFFER,
        Some(n) if (1..=1_000_000).contains(&n) => n as usize,
        Some(n) => {
            problems.push(out_of_range("log.access-buffer", n, 1, 1_000_000));
            defaults::ACCESS_LOG_BUFFER
        }
    };
    match (proxy, admin, split) {
        (Some(proxy), Some(admin), Some(split)) if problems.is_empty() => Ok(Config {
            proxy,
            admin,
            pools,
            split,
            deployment_log,
            reload_debounce,
            access_log,
            access_buffer,
            metrics_enabled,
        }),
        _ => Err(problems),
    }
}

fn proxy(raw: &RawProxy, problems: &mut Vec<Problem>) -> Option<ProxySettings> {
    let listen = match &raw.listen {
        None => vec![defaults::PROXY_LISTEN.parse().expect("default is valid")],
        Some(list) if list.is_empty() => {
            problems.push(Problem::at("proxy.listen", ProblemKind::Empty));
            vec![]
        }
        Some(list) => listen_list(list, problems),
    };
    let threads = match raw.threads {
        None => defaults::threads(),
        Some(n) if (1..=defaults::MAX_THREADS).contains(&n) => n as usize,
        Some(n) => {
            problems.push(out_of_range("proxy.threads", n, 1, defaults::MAX_THREADS));
            1
        }
    };
    let timeout = |key: &str, value: &Option<String>, default: Duration, p: &mut Vec<Problem>| {
        timeout_value(&format!("proxy.{key}"), value.as_deref(), default, p)
    };
    let pool_header = raw.pool_header.as_deref().and_then(|name| {
        let parsed = http::HeaderName::from_bytes(name.as_bytes()).ok();
        if parsed.is_none() {
            problems.push(Problem::at(
                "proxy.pool-header",
                ProblemKind::Syntax(format!("{name:?} is not a valid header name")),
            ));
        }
        parsed
    });
    Some(ProxySettings {
        listen,
        threads,
        pool_header,
        connect_timeout: timeout(
            "connect-timeout",
            &raw.connect_timeout,
            defaults::CONNECT_TIMEOUT,
            problems,
        ),
        read_timeout: timeout(
            "read-timeout",
            &raw.read_timeout,
            defaults::READ_TIMEOUT,
            problems,
        ),
        write_timeout: timeout(
            "write-timeout",
            &raw.write_timeout,
            defaults::WRITE_TIMEOUT,
            problems,
        ),
        idle_timeout: timeout(
            "idle-timeout",
            &raw.idle_timeout,
            defaults::IDLE_TIMEOUT,
            problems,
        ),
    })
}

fn listen_list(list: &[String], problems: &mut Vec<Problem>) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let path = format!("proxy.listen[{i}]");
        match listen_addr(text) {
            Ok(addr) if !seen.insert(addr) => {
                problems.push(Problem::at(path, ProblemKind::Duplicate(text.clone())));
            }
            Ok(addr) => out.push(addr),
            Err(kind) => problems.push(Problem::at(path, kind)),
        }
    }
    out
}

fn timeout_value(
    path: &str,
    value: Option<&str>,
    default: Duration,
    problems: &mut Vec<Problem>,
) -> Duration {
    let Some(text) = value else { return default };
    match duration::parse(text) {
        Ok(d) if d.is_zero() => {
            problems.push(invalid_duration(path, text, "must be more than 0"));
            default
        }
        Ok(d) => d,
        Err(reason) => {
            problems.push(invalid_duration(path, text, &reason));
            default
        }
    }
}

fn invalid_duration(path: &str, value: &str, reason: &str) -> Problem {
    Problem::at(
        path,
        ProblemKind::InvalidDuration {
            value: value.into(),
            reason: reason.into(),
        },
    )
}

fn admin(raw: &RawAdmin, problems: &mut Vec<Problem>) -> Option<AdminSettings> {
    let text = raw.listen.as_deref().unwrap_or(defaults::ADMIN_LISTEN);
    let listen = match listen_addr(text) {
        Ok(addr) => addr,
        Err(kind) => {
            problems.push(Problem::at("admin.listen", kind));
            return None;
        }
    };
    let token_file = raw.token_file.as_ref().map(PathBuf::from);
    if token_file.is_none() && !listen.ip().is_loopback() {
        problems.push(Problem::at("admin.token-file", ProblemKind::TokenRequired));
        return None;
    }
    Some(AdminSettings { listen, token_file })
}

/// A listen address must be a literal `ip:port`, so that binding never depends on DNS.
fn listen_addr(text: &str) -> Result<SocketAddr, ProblemKind> {
    text.parse().map_err(|_| ProblemKind::InvalidAddress {
        value: text.into(),
        reason: "expected ip:port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"".into(),
    })
}

/// A backend address is `host:port`; a host name is resolved now, once.
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
    let mut resolved = text
        .to_socket_addrs()
        .map_err(|e| invalid(&format!("cannot resolve: {e}")))?;
    resolved
        .next()
        .ok_or_else(|| invalid("the name resolves to no address"))
}

fn pools(raw: &BTreeMap<String, RawPool>, problems: &mut Vec<Problem>) -> BTreeMap<String, Pool> {
    if raw.is_empty() {
        problems.push(Problem::at("pools", ProblemKind::Empty));
    }
    let mut out = BTreeMap::new();
    for (name, pool) in raw {
        let path = format!("pools.{name}");
        if !valid_pool_name(name) {
            problems.push(Problem::at(
                &path,
                ProblemKind::InvalidPoolName(name.clone()),
            ));
        }
        let backends = backends(&path, &pool.backends, problems);
        out.insert(name.clone(), Pool { backends });
    }
    out
}

fn valid_pool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn backends(pool_path: &str, raw: &[toml::Value], problems: &mut Vec<Problem>) -> Vec<Backend> {
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

fn split(
    raw: &BTreeMap<String, toml::Value>,
    pools: &BTreeMap<String, RawPool>,
    problems: &mut Vec<Problem>,
) -> Option<Split> {
    let before = problems.len();
    let mut shares: BTreeMap<String, BasisPoints> = pools.keys().map(|k| (k.clone(), 0)).collect();
    for (name, value) in raw {
        let path = format!("split.{name}");
        let bp = match percent(value) {
            Ok(bp) => bp,
            Err(kind) => {
                problems.push(Problem::at(&path, kind));
                continue;
            }
        };
        match shares.get_mut(name) {
            Some(slot) => *slot = bp,
            None => problems.push(Problem::at(
                &path,
                ProblemKind::UnknownPool {
                    name: name.clone(),
                    known: pools.keys().cloned().collect::<Vec<_>>().join(", "),
                },
            )),
        }
    }
    if problems.len() > before {
        return None;
    }
    match checked_split(shares) {
        Ok(split) => Some(split),
        Err(kind) => {
            problems.push(Problem::at("split", kind));
            None
        }
    }
}

/// A split from per-pool basis points (every pool present), checked to give some pool
/// traffic and to sum to exactly 100 %. Shared by the file and the admin API.
///
/// # Errors
/// [`ProblemKind::NoTraffic`] or [`ProblemKind::SplitSum`].
pub fn checked_split(shares: BTreeMap<String, BasisPoints>) -> Result<Split, ProblemKind> {
    let total: u32 = shares.values().sum();
    if total == 0 {
        return Err(ProblemKind::NoTraffic);
    }
    if total != FULL {
        return Err(ProblemKind::SplitSum(format_percent(total)));
    }
    Ok(Split::new(shares))
}

/// A percentage from 0 to 100 with at most two decimals, as basis points.
pub fn percent(value: &toml::Value) -> Result<BasisPoints, ProblemKind> {
    let (number, text) = match value {
        toml::Value::Integer(i) => (*i as f64, i.to_string()),
        toml::Value::Float(f) => (*f, f.to_string()),
        other => {
            return Err(ProblemKind::WrongType {
                expected: "a percentage (number)",
                found: type_name(other),
            })
        }
    };
    percent_from_f64(number).map_err(|kind| match kind {
        PercentError::Invalid => ProblemKind::InvalidPercent(text),
        PercentError::TooPrecise => ProblemKind::TooPrecise(text),
    })
}

/// Why a number is not a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// Negative, over 100, NaN or infinite.
    Invalid,
    /// More than two decimals.
    TooPrecise,
}

/// A percentage as basis points, for every source of splits (file, admin API).
///
/// # Errors
/// [`PercentError`] when out of 0–100 or finer than 0.01.
pub fn percent_from_f64(number: f64) -> Result<BasisPoints, PercentError> {
    if !number.is_finite() || !(0.0..=100.0).contains(&number) {
        return Err(PercentError::Invalid);
    }
    let scaled = number * 100.0;
    let bp = scaled.round();
    if (scaled - bp).abs() > 1e-6 {
        return Err(PercentError::TooPrecise);
    }
    Ok(bp as BasisPoints)
}

fn out_of_range(path: &str, value: i64, min: i64, max: i64) -> Problem {
    Problem::at(
        path,
        ProblemKind::OutOfRange {
            value: value.to_string(),
            min: min.to_string(),
            max: max.to_string(),
        },
    )
}

fn wrong_type(path: &str, expected: &'static str, found: &toml::Value) -> Problem {
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
