//! Hot reload: watch the config file's directory and ask [`Control`] to reload.
//!
//! The directory is watched rather than the file, so every way a file gets replaced is seen:
//! editors' and config tools' atomic rename, in-place truncate-and-write, and Kubernetes
//! ConfigMap updates (the `..data` symlink flipped to a new directory). Events are debounced;
//! `Control::reload` compares content, so a spurious or duplicate event costs one read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Control;

/// The longest a stream of events can postpone a reload (unless the debounce is longer).
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Starts watching; reloads run on the current tokio runtime. Keep the returned watcher alive.
///
/// # Errors
/// The watcher could not be created or a directory could not be watched.
pub fn spawn(control: Arc<Control>, debounce: Duration) -> notify::Result<RecommendedWatcher> {
    let (tx, rx) = mpsc::unbounded_channel();
    let names = watched_names(control.config_path());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_relevant(&e, &names)) {
            let _ = tx.send(());
        }
    })?;
    for dir in directories(control.config_path()) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(reload_loop(control, rx, debounce));
    Ok(watcher)
}

/// File names whose changes matter: the config file, its symlink target, and `..`-prefixed
/// entries (Kubernetes' `..data` and its timestamped directories).
fn watched_names(path: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = path
        .file_name()
        .map(ToOwned::to_owned)
        .into_iter()
        .collect();
    if let Some(target) = std::fs::canonicalize(path)
        .ok()
        .and_then(|t| t.file_name().map(ToOwned::to_owned))
    {
        names.push(target);
    }
    names
}

/// Reads (open, close-no-write) are ignored, and so is every file in the directory other
/// than the watched names: a busy neighbour (a log file, say) must not delay a reload.
fn is_relevant(event: &notify::Event, names: &[std::ffi::OsString]) -> bool {
    !event.kind.is_access()
        && event
            .paths
            .iter()
            .filter_map(|p| p.file_name())
            .any(|name| names.iter().any(|n| n == name) || name.to_string_lossy().starts_with(".."))
}

/// The config file's directory, and its symlink target's directory when that differs.
fn directories(path: &Path) -> Vec<PathBuf> {
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    let mut dirs = vec![parent(path)];
    if let Ok(target) = std::fs::canonicalize(path) {
        let target_dir = parent(&target);
        if std::fs::canonicalize(&dirs[0]).ok().as_ref() != Some(&target_dir) {
            dirs.push(target_dir);
        }
    }
    dirs
}

async fn reload_loop(
    control: Arc<Control>,
    mut rx: mpsc::UnboundedReceiver<()>,
    debounce: Duration,
) {
    while rx.recv().await.is_some() {
        // Wait until the file has been quiet for `debounce`, but never past MAX_DELAY.
        let give_up = tokio::time::Instant::now() + MAX_DELAY.max(debounce);
        while tokio::time::Instant::now() < give_up {
            match tokio::time::timeout(debounce, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        control.reload("file").await;
    }
}
