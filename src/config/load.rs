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
    let unreadable = |e: std::io::Error| Problem::at("", ProblemKind::Unreadable(e.to_string()));
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
    Problem {
        path: String::new(),
        location: error.span().map(|s| Location::of_offset(text, s.start)),
        kind: ProblemKind::Syntax(error.message().trim().replace('\n', "; ")),
    }
}
