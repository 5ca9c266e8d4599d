//! Admin tokens: a file of `name:token` lines (`#` comments, blank lines ignored).
//!
//! The file is read again on every write request, so a token can be rotated without a
//! restart. Tokens are compared in constant time and never logged; the name is the actor
//! recorded in the deployment log.

use std::path::{Path, PathBuf};

/// Named tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    entries: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

/// Why the token file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Unreadable.
    #[error("token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line that is not `name:token`, or no tokens at all.
    #[error("token file {path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the token itself).
        reason: String,
    },
}

impl Tokens {
    /// Reads and parses the token file.
    ///
    /// # Errors
    /// [`TokenError`] when unreadable, malformed or empty.
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |reason: String| TokenError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((name, token)) if !name.trim().is_empty() && !token.trim().is_empty() => {
                    entries.push((name.trim().to_string(), token.trim().as_bytes().to_vec()));
                }
                _ => return Err(format(format!("line {}: expected name:token", i + 1))),
            }
        }
        if entries.is_empty() {
            return Err(format("no tokens (expected name:token lines)".into()));
        }
        Ok(Tokens { entries })
    }

    /// The name of the token that `presented` matches. Every token is compared, in constant
    /// time per token, whatever matches.
    pub fn identify(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.entries {
            if constant_time_eq(token, presented) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Whether `presented` is one of the tokens named `name`. Every token is compared, in
    /// constant time per token, whatever matches.
    pub fn holds(&self, name: &str, presented: &[u8]) -> bool {
        self.entries.iter().fold(false, |found, (n, token)| {
            constant_time_eq(token, presented) & (n == name) | found
        })
    }

    /// The distinct names, in file order.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.entries {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }

    /// The first token, for `switchback ctl --token-file`.
    pub fn first_token(&self) -> &[u8] {
        &self.entries[0].1
    }
}

/// Equal-length inputs take the same time whatever their content; lengths are not secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Warns when the token file (`what`: "admin token file", say) can be read by group or others.
pub fn warn_if_exposed(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "{what} is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_named_and_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "# ops\nalice: s3cret-one\nbob:s3cret-two\n").unwrap();
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(tokens.identify(b"s3cret-two"), Some("bob"));
        assert_eq!(tokens.identify(b"s3cret-one"), Some("alice"));
        assert_eq!(tokens.identify(b"s3cret-on"), None);
        assert_eq!(tokens.identify(b""), None);
        assert!(tokens.holds("bob", b"s3cret-two") && !tokens.holds("alice", b"s3cret-two"));
        assert_eq!(tokens.names(), ["alice", "bob"]);
        assert!(
            !format!("{tokens:?}").contains("s3cret"),
            "Debug never shows tokens"
        );
    }

    #[test]
    fn malformed_or_empty_token_files_are_refused_without_echoing_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "justatoken\n").unwrap();
        let err = Tokens::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 1: expected name:token") && !err.contains("justatoken"));
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(Tokens::load(&path)
            .unwrap_err()
            .to_string()
            .contains("no tokens"));
    }
}
