//! Reading a config file: size and encoding checks, TOML parsing with unknown-key
//! collection, then validation.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::defaults::MAX_FILE_BYTES;
use super::model::Config;
use super::problem::{Location, Problem, ProblemKind};
use super::raw::RawConfig;
use super::validate::validate;

/// A config file that could not be used, with every problem found in it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", render(path, problems))]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, in file order where known.
    pub problems: Vec<Problem>,
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{}: {} problem{}",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.to_string());
    }
    out
}

/// Reads, parses and validates the file at `path`.
///
/// # Errors
/// [`ConfigError`] listing every problem: unreadable, too large, not UTF-8, syntax, unknown
/// keys and every validation failure.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError {
        path: path.to_path_buf(),
        problems,
    };
    let text = read_text(path).map_err(|p| fail(vec![p]))?;
    parse(&text).map_err(fail)
}

/// Reads the file as UTF-8, refusing anything over [`MAX_FILE_BYTES`].
///
/// # Errors
/// A whole-file [`Problem`].
pub fn read_text(path: &Path) -> Result<String, Problem> {
    let unreadable = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => Problem::at("", ProblemKind::NotFound),
        _ => Problem::at("", ProblemKind::Unreadable(e.to_string())),
    };
    let file = File::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes)
        .map_err(|e| Problem::at("", ProblemKind::NotUtf8(e.utf8_error().valid_up_to())))
}

fn too_large(size: u64) -> Problem {
    Problem::at(
        "",
        ProblemKind::TooLarge {
            size,
            limit: MAX_FILE_BYTES,
        },
    )
}

/// Parses and validates config text.
///
/// # Errors
/// Every problem found.
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::new(text);
    let raw: RawConfig = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(path.to_string().replace("?.", ""));
    })
    .map_err(|e| vec![syntax_problem(text, &e)])?;
    let mut problems: Vec<Problem> = unknown
        .into_iter()
        .map(|path| Problem::at(path, ProblemKind::UnknownKey))
        .collect();
    match validate(raw) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

fn syntax_problem(text: &str, error: &toml::de::Error) -> Problem {
    let offset = error.span().map(|s| s.start);
    Problem {
        path: offset.map(|o| key_path_at(text, o)).unwrap_or_default(),
        location: offset.map(|o| Location::of_offset(text, o)),
        kind: ProblemKind::Syntax(error.message().trim().replace('\n', "; ")),
    }
}

/// The dotted key path of the `key = value` line holding byte `offset`, under its nearest
/// `[table]` header; empty when the line holds no key (a header, say). The parser reports
/// type errors by position only, and an operator wants the key.
fn key_path_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let Some((key, _)) = text[line_start..line_end].split_once('=') else {
        return String::new();
    };
    let key = key.trim().trim_matches('"');
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match table {
        Some(table) if !key.starts_with('[') => format!("{table}.{key}"),
        _ => key.to_string(),
    }
}

/// `path` as given when absolute, else relative to the config file's directory.
pub fn resolve_beside(config_path: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    config_path.parent().unwrap_or(Path::new(".")).join(path)
}

/// Where a file named in the config is read, as [`resolve_beside`]; except that a relative
/// `path` found only from the working directory (how `[admin] token-file` was read before)
/// is read there for one more release: `(the path to read, Some(where it should move))`.
pub fn resolve_beside_or_cwd(config_path: &Path, path: &Path) -> (PathBuf, Option<PathBuf>) {
    let beside = resolve_beside(config_path, path);
    if path.is_absolute() || beside.exists() || !path.exists() {
        return (beside, None);
    }
    (path.to_path_buf(), Some(beside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_error_names_its_key_path_and_position() {
        let problems = parse("[proxy]\nthreads = \"two\"\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "proxy.threads");
        assert_eq!(
            problems[0].location,
            Some(Location {
                line: 2,
                column: 11
            })
        );
    }

    #[test]
    fn every_unknown_key_is_reported_together_with_validation_problems() {
        let text = "[proxy]\nlistne = 1\n[pools.blue]\nbackends = [\"127.0.0.1:1\"]\nweight = 2\n[split]\nblue = 99\n";
        let paths: Vec<String> = parse(text)
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["proxy.listne", "pools.blue.weight", "split"]);
    }

    #[test]
    fn a_file_beside_the_config_wins_and_the_working_directory_is_only_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("switchback.toml");
        // The working directory of the test is the crate's: Cargo.toml exists there.
        let old = Path::new("Cargo.toml");
        assert_eq!(
            resolve_beside_or_cwd(&config, old),
            (old.to_path_buf(), Some(dir.path().join("Cargo.toml")))
        );
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(
            resolve_beside_or_cwd(&config, old),
            (dir.path().join("Cargo.toml"), None)
        );
        let absent = Path::new("absent.tokens");
        assert_eq!(
            resolve_beside_or_cwd(&config, absent),
            (dir.path().join("absent.tokens"), None)
        );
    }
}
