//! Raw → validated model. Collects every problem it finds; never panics.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::backends::backends;
use super::defaults;
use super::model::{
    AdminSettings, BasisPoints, Config, ForwardedFor, Pool, ProxySettings, ShutdownSettings, Split,
};
use super::percent::{checked_split, percent};
use super::pool_policy::pool_policy;
use super::problem::{Problem, ProblemKind};
use super::raw::{RawAdmin, RawConfig, RawPool, RawProxy};
use super::rules::{duration_key, listen_addr, out_of_range, valid_pool_name};

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
    let mut proxy = proxy;
    let files = super::files::files(&raw, proxy.as_mut(), &mut problems);
    let reload_debounce = duration_key(
        "reload.debounce",
        raw.reload.debounce.as_deref(),
        defaults::RELOAD_DEBOUNCE,
        false,
        &mut problems,
    );
    let affinity = super::sticky::affinity(raw.affinity.as_ref(), &mut problems);
    let overrides = super::sticky::overrides(raw.overrides.as_ref(), &mut problems);
    super::sticky::check_together(affinity.as_ref(), overrides.as_ref(), &mut problems);
    let plans = super::plans::plans(&raw.plans, &mut problems);
    let shared = super::shared::shared(&raw, defaults::replica, &mut problems);
    let plain: &[SocketAddr] = proxy.as_ref().map_or(&[], |p| &p.listen);
    let tls = super::tls::front(raw.tls.as_ref(), plain, &mut problems);
    let secure: &[SocketAddr] = tls.as_ref().map_or(&[], |t| &t.listen);
    let admin_listen = admin.as_ref().map(|a| a.listen);
    super::listeners::check(&raw, plain, secure, admin_listen, &mut problems);
    let metrics_enabled = raw.metrics.enabled.unwrap_or(defaults::METRICS_ENABLED);
    let shutdown = ShutdownSettings {
        grace: duration_key(
            "shutdown.grace",
            raw.shutdown.grace.as_deref(),
            defaults::SHUTDOWN_GRACE,
            true,
            &mut problems,
        ),
        drain_timeout: duration_key(
            "shutdown.drain-timeout",
            raw.shutdown.drain_timeout.as_deref(),
            defaults::DRAIN_TIMEOUT,
            true,
            &mut problems,
        ),
        lb_drain_delay: duration_key(
            "shutdown.lb-drain-delay",
            raw.shutdown.lb_drain_delay.as_deref(),
            std::time::Duration::ZERO,
            true,
            &mut problems,
        ),
    };
    match (proxy, admin, split) {
        (Some(proxy), Some(admin), Some(split)) if problems.is_empty() => Ok(Config {
            proxy,
            admin,
            pools,
            split,
            deployment_log: files.deployment_log,
            deployment_rotation: files.deployment_rotation,
            reload_debounce,
            access_log: files.access_log,
            access_buffer: files.access_buffer,
            metrics_enabled,
            shutdown,
            affinity,
            overrides,
            state_dir: files.state_dir,
            shared,
            plans,
            tls,
        }),
        _ => Err(problems),
    }
}

fn proxy(raw: &RawProxy, problems: &mut Vec<Problem>) -> Option<ProxySettings> {
    let listen = match &raw.listen {
        None => vec![defaults::PROXY_LISTEN.parse().expect("default is valid")],
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
        duration_key(&format!("proxy.{key}"), value.as_deref(), default, false, p)
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
    let upgrade_sock = match raw.upgrade_sock.as_deref() {
        Some("") => {
            problems.push(Problem::at("proxy.upgrade-sock", ProblemKind::Empty));
            PathBuf::new()
        }
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(defaults::UPGRADE_SOCK),
    };
    let forwarded_for = match raw.forwarded_for.as_deref() {
        None | Some("append") => ForwardedFor::Append,
        Some("replace") => ForwardedFor::Replace,
        Some(other) => {
            problems.push(Problem::at(
                "proxy.forwarded-for",
                ProblemKind::Syntax(format!("{other:?} is not \"append\" or \"replace\"")),
            ));
            ForwardedFor::Append
        }
    };
    let health_path = raw.health_path.as_ref().and_then(|path| {
        let ok = path.starts_with('/')
            && path.len() <= 256
            && path.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
        if !ok {
            problems.push(Problem::at(
                "proxy.health-path",
                ProblemKind::Syntax(format!(
                    "{path:?} is not a path: start with '/', at most 256 visible characters, no query"
                )),
            ));
        }
        ok.then(|| path.clone())
    });
    Some(ProxySettings {
        listen,
        threads,
        pool_header,
        health_path,
        h2c: raw.h2c.unwrap_or(false),
        upgrade_sock,
        forwarded_for,
        dns_refresh: duration_key(
            "proxy.dns-refresh",
            raw.dns_refresh.as_deref(),
            defaults::DNS_REFRESH,
            true,
            problems,
        ),
        header_timeout: timeout(
            "header-timeout",
            &raw.header_timeout,
            defaults::HEADER_TIMEOUT,
            problems,
        ),
        client_idle_timeout: timeout(
            "client-idle-timeout",
            &raw.client_idle_timeout,
            defaults::CLIENT_IDLE_TIMEOUT,
            problems,
        ),
        client_write_timeout: timeout(
            "client-write-timeout",
            &raw.client_write_timeout,
            defaults::CLIENT_WRITE_TIMEOUT,
            problems,
        ),
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
    let names = |key: &str, list: &Option<Vec<String>>, problems: &mut Vec<Problem>| {
        let mut out = Vec::new();
        for (i, name) in list.iter().flatten().enumerate() {
            let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
            if ok {
                out.push(name.to_ascii_lowercase());
            } else {
                problems.push(Problem::at(
                    format!("admin.{key}[{i}]"),
                    ProblemKind::Syntax(format!("{name:?} is not a host name or origin")),
                ));
            }
        }
        out
    };
    let allowed_hosts = names("allowed-hosts", &raw.allowed_hosts, problems);
    let allowed_origins = names("allowed-origins", &raw.allowed_origins, problems);
    let tls = raw
        .tls
        .as_ref()
        .and_then(|pair| super::tls::cert_pair("admin.tls", pair, problems));
    Some(AdminSettings {
        listen,
        token_file,
        allowed_hosts,
        allowed_origins,
        tls,
    })
}

fn pools(raw: &BTreeMap<String, RawPool>, problems: &mut Vec<Problem>) -> BTreeMap<String, Pool> {
    if raw.is_empty() {
        problems.push(Problem::at("pools", ProblemKind::Empty));
    }
    if raw.len() > defaults::MAX_POOLS {
        problems.push(out_of_range(
            "pools",
            raw.len() as i64,
            1,
            defaults::MAX_POOLS as i64,
        ));
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
        let policy = pool_policy(&path, pool, problems);
        let tls = super::tls::upstream(&path, pool.tls.as_ref(), problems);
        let protocol = super::tls::protocol(&path, pool.protocol.as_deref(), problems);
        out.insert(
            name.clone(),
            Pool {
                backends,
                policy,
                tls,
                protocol,
            },
        );
    }
    out
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
