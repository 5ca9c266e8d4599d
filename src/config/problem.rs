//! What can be wrong with a configuration, as data: a [`Problem`] names the TOML key path,
//! the line and column when the parser knows them, and a typed [`ProblemKind`].

use std::fmt;

/// A 1-based position in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// TOML key path, e.g. `pools.blue.backends[1].weight`; empty for whole-file problems.
    pub path: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl Problem {
    /// A problem at `path` with no known location.
    pub fn at(path: impl Into<String>, kind: ProblemKind) -> Self {
        Problem {
            path: path.into(),
            location: None,
            kind,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location {
            write!(f, "line {}, column {}: ", loc.line, loc.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.kind)
    }
}

/// The classes of configuration problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProblemKind {
    /// The file does not exist.
    #[error("the config file does not exist")]
    NotFound,
    /// The file could not be opened or read.
    #[error("cannot read the config file: {0}")]
    Unreadable(String),
    /// The file is not UTF-8.
    #[error("the config file is not valid UTF-8 (byte {0})")]
    NotUtf8(usize),
    /// The file is over the size limit.
    #[error("the config file is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Actual size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// TOML syntax error or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A key switchback does not know.
    #[error("unknown key")]
    UnknownKey,
    /// A value of the wrong type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What was expected.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// An address that is not `host:port`, or that does not resolve.
    #[error("invalid address {value:?}: {reason}")]
    InvalidAddress {
        /// The text given.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An address listed twice.
    #[error("{0} is listed more than once")]
    Duplicate(String),
    /// A list that must not be empty.
    #[error("must list at least one entry")]
    Empty,
    /// A number outside its range.
    #[error("{value} is out of range; expected {min} to {max}")]
    OutOfRange {
        /// The value given.
        value: String,
        /// Smallest allowed.
        min: String,
        /// Largest allowed.
        max: String,
    },
    /// A pool name that is not usable as a label.
    #[error("invalid pool name {0:?}: use 1 to 64 of a-z, 0-9, '-' and '_'")]
    InvalidPoolName(String),
    /// `[split]` names a pool that does not exist.
    #[error("no pool named {name:?} (pools: {known})")]
    UnknownPool {
        /// The name in `[split]`.
        name: String,
        /// The pools that exist.
        known: String,
    },
    /// A percentage that is negative, NaN or infinite.
    #[error("{0} is not a valid percentage; expected a number from 0 to 100")]
    InvalidPercent(String),
    /// A percentage with more than two decimals.
    #[error("{0} has more than two decimals; the split has 0.01 % steps")]
    TooPrecise(String),
    /// The split does not add up to 100.
    #[error("the percentages sum to {0}; they must sum to exactly 100")]
    SplitSum(String),
    /// No pool receives traffic.
    #[error("no pool has a positive share; give at least one pool more than 0 %")]
    NoTraffic,
    /// Two listeners that cannot both be bound: the same port, the same address or a
    /// wildcard of the same family.
    #[error("{value} takes the port of {other_key} {other}: the same port on the same address, or on a wildcard address (which takes it on every address of its family), cannot be bound twice; use another port")]
    AddressClash {
        /// The address given here.
        value: String,
        /// The key of the listener it clashes with.
        other_key: &'static str,
        /// That listener's address.
        other: String,
    },
    /// `[proxy] listen = []` and no `[tls]` listener: nothing would accept a client.
    #[error("empty and there is no [tls] listen: switchback would accept no client connection; list an address here (or leave the key out for the default), or add a [tls] table with listen addresses for a TLS-only front door")]
    NoListener,
    /// `[tls] redirect-http` with no plain listener to answer from.
    #[error("true, but [proxy] listen is empty: there is no plain listener to redirect from; remove the key or add a plain listen address")]
    RedirectWithoutPlain,
    /// A non-loopback admin listener without a token file.
    #[error("required when admin.listen is not a loopback address (anyone who can reach it could move traffic)")]
    TokenRequired,
    /// A key that means something only beside another setting, given without it.
    #[error("only applies with {0}")]
    OnlyWith(&'static str),
    /// One key of a pair given without the other (named here).
    #[error("needs {0} as well: give both or neither")]
    Unpaired(&'static str),
    /// A duration string that cannot be parsed.
    #[error("invalid duration {value:?}: {reason}")]
    InvalidDuration {
        /// The text given.
        value: String,
        /// Why.
        reason: String,
    },
}
