//! Where `[admin] token-file` is read: relative to the config file's directory, like every
//! other path in the file.
//!
//! Until this release it was read relative to the working directory. For one release a
//! relative path that exists only there is still read from there, with a warning naming the
//! path beside the config file it should move to.

use std::path::{Path, PathBuf};

use crate::config::load::resolve_beside_or_cwd;
use crate::config::Config;

/// The admin token file of `config` (read from `config_path`), as it is read; `None` without
/// `[admin] token-file`.
pub fn token_path(config_path: &Path, config: &Config) -> Option<PathBuf> {
    let file = config.admin.token_file.as_ref()?;
    Some(resolve_beside_or_cwd(config_path, file).0)
}

/// The warning for a token file found only from the working directory: where to move it.
pub fn legacy_token_warning(config_path: &Path, config: &Config) -> Option<String> {
    let file = config.admin.token_file.as_ref()?;
    let beside = resolve_beside_or_cwd(config_path, file).1?;
    Some(format!(
        "admin.token-file: {} was found in the working directory, not beside the config file; move it to {} (the working directory will no longer be searched in the next release)",
        file.display(),
        beside.display()
    ))
}
