//! Embeds the git commit the binary is built from (`switchback --version`,
//! `switchback_build_info{commit}`); "unknown" outside a git checkout.
//!
//! Cargo reruns a build script whose `rerun-if-changed` path does not exist on every build (and
//! then recompiles the crate), so only paths that exist are watched: `.git/HEAD`, the ref it
//! points to, `.git/refs/heads`, and `.git/packed-refs` where a clone has one.

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
    let mut watch = vec![
        ".git/HEAD".to_string(),
        ".git/packed-refs".to_string(),
        ".git/refs/heads".to_string(), // a branch's first loose ref after a packed clone
    ];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            watch.push(format!(".git/{reference}"));
        }
    }
    for path in watch.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    // Without a single path, Cargo would rerun this on any change in the package: watch this
    // file at least (outside a git checkout the commit is "unknown" anyway).
    println!("cargo:rerun-if-changed=build.rs");
}
