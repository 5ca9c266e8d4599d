//! New files that only switchback could have made: every temp file, probe and demo directory
//! switchback writes is created here.
//!
//! A name nobody can guess (`.<stem>.<16 random hex digits>.tmp`), created exclusively
//! (`O_CREAT | O_EXCL`: an existing file or a symlink at that name is an error, never opened)
//! and with `O_NOFOLLOW`, mode 0600. So whoever else can write to the directory cannot plant a
//! link there and have switchback write through it into another file; a name that is taken
//! is skipped for the next one.
//!
//! ```text
//! create(dir, "state.json") ─▶ dir/.state.json.3f9c0a…e1.tmp  (new, 0600, never a link)
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Names tried before giving up: with 64 random bits, only a directory full of someone's
/// planted names (or a broken random source) runs out.
const ATTEMPTS: usize = 16;

/// A new file in `dir`, open for writing: `(file, its path)`.
///
/// # Errors
/// The operating system's error for the last name tried (`AlreadyExists` when every name
/// was taken), or the first other error (`dir` missing, not writable, …).
pub fn create(dir: &Path, stem: &str) -> io::Result<(File, PathBuf)> {
    create_with(dir, stem, rand::random::<u64>)
}

/// [`create`] with the random source given (tests force a collision with it).
pub(super) fn create_with(
    dir: &Path,
    stem: &str,
    mut random: impl FnMut() -> u64,
) -> io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let path = dir.join(format!(".{stem}.{:016x}.tmp", random()));
        match open_new(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// A new directory in `parent`, mode 0700, named `<stem>-<16 random hex digits>`: only
/// switchback can then put files in it (the demo's config in the shared temp directory).
///
/// # Errors
/// As [`create`].
pub fn create_dir(parent: &Path, stem: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let path = parent.join(format!("{stem}-{:016x}", rand::random::<u64>()));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Creates the file at `path`, which must not exist (not even as a symlink), mode 0600.
///
/// # Errors
/// `AlreadyExists` when anything is at `path`; the operating system's error otherwise.
pub fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_taken_name_is_skipped_and_the_link_planted_there_is_left_alone() {
        let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        // Someone guessed the first name: a link there is an error to skip, never opened.
        let guessed = dir.path().join(format!(".c.toml.{:016x}.tmp", 7));
        std::os::unix::fs::symlink(&victim, &guessed).unwrap();
        let mut names = [7u64, 8].into_iter();
        let (mut file, path) = create_with(dir.path(), "c.toml", || names.next().unwrap()).unwrap();
        file.write_all(b"ours").unwrap();
        assert_eq!(path, dir.path().join(format!(".c.toml.{:016x}.tmp", 8)));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ours");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn names_all_taken_is_an_error_not_a_write_through() {
        let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(format!(".x.{:016x}.tmp", 1))).unwrap();
        let err = create_with(dir.path(), "x", || 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(elsewhere.path().join("absent"), &dangling).unwrap();
        assert!(open_new(&dangling).is_err());
        assert!(
            !elsewhere.path().join("absent").exists(),
            "no file made through the link"
        );
    }

    #[test]
    fn random_names_differ_and_a_new_directory_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a) = create(dir.path(), "s").unwrap();
        let (_, b) = create(dir.path(), "s").unwrap();
        assert_ne!(a, b);
        let private = create_dir(dir.path(), "demo").unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_ne!(private, create_dir(dir.path(), "demo").unwrap());
    }
}
