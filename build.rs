//! Embeds the git commit the binary is built from (`switchback --version`,
//! `switchback_build_info{commit}`); "unknown" outside a git checkout.
//!
//! Cargo reruns a build script whose `rerun-if-changed` path does not exist on every build (and
//! then recompiles the crate), so only paths that exist are watched: HEAD, the ref it points
//! to, refs/heads, and packed-refs where a clone has one, wherever git keeps them (a worktree's
//! `.git` is a file).

use std::path::Path;

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SWITCHBACK_COMMIT={commit}");
    // Ask git where its files are: in a worktree or a submodule `.git` is a file, not a folder.
    let git_path = |name: &str| {
        std::process::Command::new("git")
            .args(["rev-parse", "--git-path", name])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .unwrap_or_else(|| format!(".git/{name}"))
    };
    let head = git_path("HEAD");
    let mut watch = vec![
        head.clone(),
        git_path("packed-refs"),
        git_path("refs/heads"), // a branch's first loose ref after a packed clone
    ];
    if let Ok(text) = std::fs::read_to_string(&head) {
        if let Some(reference) = text.trim().strip_prefix("ref: ") {
            watch.push(git_path(reference));
        }
    }
    for path in watch.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    // Without a single path, Cargo would rerun this on any change in the package: watch this
    // file at least (outside a git checkout the commit is "unknown" anyway).
    println!("cargo:rerun-if-changed=build.rs");
}
