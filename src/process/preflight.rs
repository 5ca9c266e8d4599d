//! What `serve` needs beyond a valid file, checked without binding anything: `serve` and
//! `check` both run it, so both refuse the same.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::control::state::Store;
use crate::data::tokens::Tokens;

/// What `serve` needs beyond a valid file, checked without binding anything (`serve` runs it
/// too, so both refuse the same): the admin and override token files, the deployment and
/// access logs writable, the upgrade socket path short enough, and with `[state] dir` a
/// writable state directory and a usable
/// state file. Returns the override tokens, and warnings (an admin token file others can
/// read; the override token file's reader warns itself).
///
/// # Errors
/// The problem, naming the file or directory.
pub fn preflight(
    path: &Path,
    config: &Config,
) -> Result<(Option<Arc<Tokens>>, Vec<String>), String> {
    let mut warnings = Vec::new();
    if let Some(file) = crate::control::admin::token_path(path, config) {
        Tokens::load(&file).map_err(|e| format!("admin.token-file: {e}"))?;
        warnings.extend(crate::control::admin::legacy_token_warning(path, config));
        warnings.extend(exposed(&file, "admin.token-file"));
    }
    let tokens = crate::control::load_override_tokens(path, config)
        .map_err(|e| format!("override.token-file: {e}"))?;
    // The state directory first: the deployment log defaults into it.
    let store = Store::of(path, config);
    if let Store::Dir(file)
    | Store::Etcd {
        cache: Some(file), ..
    } = &store
    {
        writable(file.parent().unwrap_or(Path::new(".")), "state.dir")?;
        store.load_checked()?;
    }
    let log = crate::control::resolve_beside(path, &config.deployment_log);
    appendable(&log, "log.deployments")?;
    if let Some(crate::config::model::AccessLogTarget::File(file)) = &config.access_log {
        appendable(&crate::control::resolve_beside(path, file), "log.access")?;
    }
    warnings.extend(certificates(path, config)?.1);
    for (name, pool) in &config.pools {
        if pool.tls.as_ref().is_some_and(|t| !t.verify) {
            warnings.push(format!(
                "pools.{name}.tls: verify = false: the backends' certificates are not checked, so anyone on the path can pose as them"
            ));
        }
    }
    if !config.admin.listen.ip().is_loopback() && config.admin.tls.is_none() {
        warnings.push(format!(
            "admin.listen {} is not loopback and admin.tls is not set: admin tokens cross the network in the clear",
            config.admin.listen
        ));
    }
    let sock = upgrade_sock_path(path, &config.proxy.upgrade_sock);
    if sock.as_os_str().len() > 100 {
        return Err(format!(
            "proxy.upgrade-sock: {} is too long for a Unix socket (100 bytes); set it shorter",
            sock.display()
        ));
    }
    Ok((tokens, warnings))
}

/// Whether `file` can be appended to: opened (never created) when it exists, else its
/// directory can take it.
fn appendable(file: &Path, key: &str) -> Result<(), String> {
    match std::fs::OpenOptions::new().append(true).open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            writable(file.parent().unwrap_or(Path::new(".")), key)
        }
        Err(e) => Err(format!("{key}: cannot write {}: {e}", file.display())),
    }
}

/// Whether a file can be created in `dir`, or, while it does not exist yet, in its nearest
/// existing ancestor (where `serve` would create it). Nothing is left behind.
fn writable(dir: &Path, key: &str) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .find(|d| d.as_os_str().is_empty() || d.exists())
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::config::exclusive::create(existing, "switchback-check")
        .and_then(|(_, probe)| std::fs::remove_file(probe))
        .map_err(|e| format!("{key}: cannot write in {}: {e}", dir.display()))
}

/// A warning when group or others can read a token file.
fn exposed(file: &Path, key: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{key}: {} is readable by group or others (mode {mode:o}); chmod 600 it",
            file.display()
        )
    })
}

/// Reads the config file at `path` and the files its pools' TLS settings name.
///
/// # Errors
/// Every problem of the file, or the first CA file that does not read.
pub fn load(path: &Path) -> Result<Config, crate::config::ConfigError> {
    let mut config = crate::config::load(path)?;
    crate::data::tls::upstream::read_ca_files(path, &mut config).map_err(|p| {
        crate::config::ConfigError {
            path: path.to_path_buf(),
            problems: vec![p],
        }
    })?;
    Ok(config)
}

/// The certificates `serve` would present: a line per certificate (its names and expiry) and
/// a warning per certificate expiring within 14 days.
///
/// # Errors
/// A certificate or key (`[tls]` or `[admin] tls`) that does not read, with its key.
pub fn certificates(path: &Path, config: &Config) -> Result<(Vec<String>, Vec<String>), String> {
    let mut served = Vec::new();
    if let Some(tls) = &config.tls {
        served.extend(crate::control::load_certificates(path, tls)?);
    }
    if let Some(pair) = &config.admin.tls {
        let base = path.parent().unwrap_or(Path::new("."));
        let cert = crate::data::tls::certs::load(base, pair, std::time::SystemTime::now())
            .map_err(|e| format!("admin.tls: {e}"))?;
        served.push(std::sync::Arc::new(cert));
    }
    let now = std::time::SystemTime::now();
    let (mut lines, mut warnings) = (Vec::new(), Vec::new());
    for cert in &served {
        let days = cert.expires_in(now) / 86_400;
        lines.push(format!(
            "certificate {}: {} expires {} ({days} days)",
            cert.pair.cert.display(),
            cert.names.join(", "),
            cert.not_after_text()
        ));
        if cert.expires_in(now) < crate::control::EXPIRY_WARNING.as_secs() as i64 {
            warnings.push(format!(
                "certificate {} ({}) expires within 14 days, at {}",
                cert.pair.cert.display(),
                cert.names.join(", "),
                cert.not_after_text()
            ));
        }
    }
    Ok((lines, warnings))
}

/// The upgrade socket: `[proxy] upgrade-sock`, relative to the config file's directory, made
/// absolute so that the old and the new process name it the same way whatever their working
/// directories (the SIGQUIT check compares it with what `/proc/net/unix` shows).
pub(crate) fn upgrade_sock_path(config_path: &Path, sock: &Path) -> std::path::PathBuf {
    let joined = config_path.parent().unwrap_or(Path::new(".")).join(sock);
    std::path::absolute(&joined).unwrap_or(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_probe_never_writes_through_a_link_planted_at_its_old_name() {
        let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        let planted = dir
            .path()
            .join(format!(".switchback-check-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        writable(dir.path(), "state.dir").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the probe is gone"
        );
    }
}
