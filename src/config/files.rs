//! `[log]` and `[state]`: where switchback writes. With `[state] dir` set, the runtime files
//! (deployment log, upgrade socket) default into it, so the config file's directory may be
//! read-only.

use std::path::PathBuf;

use super::defaults;
use super::model::{AccessLogTarget, ProxySettings};
use super::problem::{Problem, ProblemKind};
use super::raw::RawConfig;
use super::rules::out_of_range;

/// The validated `[log]` and `[state]` keys.
pub(super) struct Files {
    pub(super) state_dir: Option<PathBuf>,
    pub(super) deployment_log: PathBuf,
    pub(super) deployment_rotation: super::model::Rotation,
    pub(super) access_log: Option<AccessLogTarget>,
    pub(super) access_buffer: usize,
}

/// Validates `[log]` and `[state]`, and moves `proxy`'s default upgrade socket into the state
/// directory when there is one.
pub(super) fn files(
    raw: &RawConfig,
    proxy: Option<&mut ProxySettings>,
    problems: &mut Vec<Problem>,
) -> Files {
    let state_dir = match raw.state.dir.as_deref() {
        Some("") => {
            problems.push(Problem::at(
                "state.dir",
                ProblemKind::Syntax("must name a directory (leave it out for none)".into()),
            ));
            None
        }
        dir => dir.map(PathBuf::from),
    };
    let runtime = |name: &str| match &state_dir {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    };
    if let (Some(proxy), None) = (proxy, &raw.proxy.upgrade_sock) {
        proxy.upgrade_sock = runtime(defaults::UPGRADE_SOCK);
    }
    let deployment_log = match raw.log.deployments.as_deref() {
        Some("") => {
            problems.push(Problem::at("log.deployments", ProblemKind::Empty));
            PathBuf::new()
        }
        Some(path) => PathBuf::from(path),
        None => runtime(defaults::DEPLOYMENT_LOG),
    };
    let deployment_rotation = super::model::Rotation {
        max_bytes: match &raw.log.deployments_max_size {
            None => defaults::DEPLOYMENT_LOG_MAX_SIZE,
            Some(value) => super::size::parse(value).unwrap_or_else(|reason| {
                problems.push(Problem::at(
                    "log.deployments-max-size",
                    ProblemKind::Syntax(reason),
                ));
                defaults::DEPLOYMENT_LOG_MAX_SIZE
            }),
        },
        keep: match raw.log.deployments_keep {
            None => defaults::DEPLOYMENT_LOG_KEEP,
            Some(n) if (0..=100).contains(&n) => n as usize,
            Some(n) => {
                problems.push(out_of_range("log.deployments-keep", n, 0, 100));
                defaults::DEPLOYMENT_LOG_KEEP
            }
        },
    };
    let access_log = match raw.log.access.as_deref() {
        None => None,
        Some("") => {
            problems.push(Problem::at("log.access", ProblemKind::Empty));
            None
        }
        Some("stdout") => Some(AccessLogTarget::Stdout),
        Some(path) => Some(AccessLogTarget::File(PathBuf::from(path))),
    };
    let access_buffer = match raw.log.access_buffer {
        None => defaults::ACCESS_LOG_BUFFER,
        Some(n) if (1..=1_000_000).contains(&n) => n as usize,
        Some(n) => {
            problems.push(out_of_range("log.access-buffer", n, 1, 1_000_000));
            defaults::ACCESS_LOG_BUFFER
        }
    };
    Files {
        state_dir,
        deployment_log,
        deployment_rotation,
        access_log,
        access_buffer,
    }
}
