//! `[affinity]` and `[override]`: the model and its validation.

use std::fmt;
use std::path::PathBuf;

use http::HeaderName;

use super::defaults;
use super::key_hash::KeyHasher;
use super::problem::{Problem, ProblemKind};
use super::raw::{RawAffinity, RawOverride};

/// `[affinity]`: sticky users.
#[derive(Debug, Clone, PartialEq)]
pub struct Affinity {
    /// Where a request's key comes from, in order; the first present wins. Ends with the
    /// mint cookie when that is not listed, so that a minted id is read back.
    pub keys: Vec<KeySource>,
    /// Cookie set on a keyless request's response; `None` mints nothing.
    pub mint_cookie: Option<String>,
    /// The seed as written.
    pub seed: String,
    /// SipHash-2-4 keyed by the seed.
    pub hasher: KeyHasher,
    /// The bucket table's file, as written (relative to the config file's directory).
    pub table: PathBuf,
}

/// One place a user key can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A request header (lower-case name).
    Header(HeaderName),
    /// A cookie by name.
    Cookie(String),
    /// The client's IP address.
    Ip,
}

impl fmt::Display for KeySource {
    /// The form written in the config file: `header:x-user-id`, `cookie:sid`, `ip`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Header(name) => write!(f, "header:{name}"),
            KeySource::Cookie(name) => write!(f, "cookie:{name}"),
            KeySource::Ip => f.write_str("ip"),
        }
    }
}

/// `[override]`: testers reach a pool on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrides {
    /// Request header naming the pool.
    pub header: HeaderName,
    /// `pool:token` lines, as written (relative to the config file's directory).
    pub token_file: PathBuf,
}

/// Validates `[affinity]`; `None` when absent or invalid (problems say which).
pub(super) fn affinity(raw: Option<&RawAffinity>, problems: &mut Vec<Problem>) -> Option<Affinity> {
    let raw = raw?;
    let before = problems.len();
    let written: Vec<String> = match &raw.key {
        None => vec![defaults::AFFINITY_KEY.to_string()],
        Some(list) if list.is_empty() => {
            problems.push(Problem::at("affinity.key", ProblemKind::Empty));
            vec![]
        }
        Some(list) => list.clone(),
    };
    let mut keys = Vec::new();
    for (i, text) in written.iter().enumerate() {
        match key_source(text) {
            Ok(source) if is_override_carrier(&source) => problems.push(Problem::at(
                format!("affinity.key[{i}]"),
                ProblemKind::Syntax(format!(
                    "{text:?} carries tester overrides, which are never forwarded; use another"
                )),
            )),
            Ok(source) if keys.contains(&source) => problems.push(Problem::at(
                format!("affinity.key[{i}]"),
                ProblemKind::Duplicate(text.clone()),
            )),
            Ok(source) => keys.push(source),
            Err(reason) => problems.push(Problem::at(
                format!("affinity.key[{i}]"),
                ProblemKind::Syntax(reason),
            )),
        }
    }
    let mint_cookie = match raw.mint_cookie.as_deref() {
        None => Some(defaults::MINT_COOKIE.to_string()),
        Some("") => None,
        Some(defaults::OVERRIDE_COOKIE) => {
            problems.push(Problem::at(
                "affinity.mint-cookie",
                ProblemKind::Syntax("\"switchback-override\" carries tester overrides".into()),
            ));
            None
        }
        Some(name) if is_cookie_name(name) => Some(name.to_string()),
        Some(name) => {
            problems.push(Problem::at(
                "affinity.mint-cookie",
                ProblemKind::Syntax(format!(
                    "{name:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"
                )),
            ));
            None
        }
    };
    if let Some(name) = &mint_cookie {
        let read_back = KeySource::Cookie(name.clone());
        if !keys.contains(&read_back) {
            keys.push(read_back);
        }
    }
    let seed = raw
        .seed
        .clone()
        .unwrap_or_else(|| defaults::AFFINITY_SEED.to_string());
    let table = match raw.table.as_deref() {
        Some("") => {
            problems.push(Problem::at("affinity.table", ProblemKind::Empty));
            PathBuf::new()
        }
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(defaults::AFFINITY_TABLE),
    };
    (problems.len() == before).then(|| Affinity {
        keys,
        mint_cookie,
        hasher: KeyHasher::from_seed(&seed),
        seed,
        table,
    })
}

/// The token header and the override cookie: removed from every forwarded request.
fn is_override_carrier(source: &KeySource) -> bool {
    match source {
        KeySource::Header(name) => name.as_str() == defaults::OVERRIDE_TOKEN_HEADER,
        KeySource::Cookie(name) => name == defaults::OVERRIDE_COOKIE,
        KeySource::Ip => false,
    }
}

/// `"header:<name>"`, `"cookie:<name>"` or `"ip"`.
fn key_source(text: &str) -> Result<KeySource, String> {
    let expected = "expected \"header:<name>\", \"cookie:<name>\" or \"ip\"";
    match text.split_once(':') {
        None if text == "ip" => Ok(KeySource::Ip),
        Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
            .map(KeySource::Header)
            .map_err(|_| format!("{name:?} is not a header name")),
        Some(("cookie", name)) if is_cookie_name(name) => Ok(KeySource::Cookie(name.into())),
        Some(("cookie", name)) => Err(format!("{name:?} is not a cookie name")),
        _ => Err(format!("{text:?}: {expected}")),
    }
}

/// An RFC 6265 cookie name: a non-empty HTTP token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers `[override] header` may not name: it is removed from every forwarded request.
const RESERVED: [&str; 16] = [
    defaults::OVERRIDE_TOKEN_HEADER,
    "host",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
    "proxy-authorization",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
];

/// The override header must not hide a user's key from the application.
pub(super) fn check_together(
    affinity: Option<&Affinity>,
    overrides: Option<&Overrides>,
    problems: &mut Vec<Problem>,
) {
    let (Some(a), Some(o)) = (affinity, overrides) else {
        return;
    };
    if a.keys.contains(&KeySource::Header(o.header.clone())) {
        problems.push(Problem::at(
            "override.header",
            ProblemKind::Syntax(format!(
                "{:?} is also an [affinity] key source; the override header is never forwarded",
                o.header.as_str()
            )),
        ));
    }
}

/// Validates `[override]`; `None` when absent or invalid (problems say which).
pub(super) fn overrides(
    raw: Option<&RawOverride>,
    problems: &mut Vec<Problem>,
) -> Option<Overrides> {
    let raw = raw?;
    let header = raw.header.as_deref().unwrap_or(defaults::OVERRIDE_HEADER);
    let header = match HeaderName::from_bytes(header.as_bytes()) {
        Ok(name) if !RESERVED.contains(&name.as_str()) => Some(name),
        Ok(_) => {
            problems.push(Problem::at(
                "override.header",
                ProblemKind::Syntax(format!(
                    "{header:?} is needed for forwarding (or is the token's header); it is removed from every request, so name the pool in a header of its own"
                )),
            ));
            None
        }
        Err(_) => {
            problems.push(Problem::at(
                "override.header",
                ProblemKind::Syntax(format!("{header:?} is not a header name")),
            ));
            None
        }
    };
    let token_file = match raw.token_file.as_deref() {
        None | Some("") => {
            problems.push(Problem::at(
                "override.token-file",
                ProblemKind::Syntax("required: the file of pool:token lines".into()),
            ));
            None
        }
        Some(path) => Some(PathBuf::from(path)),
    };
    Some(Overrides {
        header: header?,
        token_file: token_file?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity_of(toml_text: &str) -> Result<Affinity, Vec<Problem>> {
        let raw: RawAffinity = toml::from_str(toml_text).unwrap();
        let mut problems = Vec::new();
        affinity(Some(&raw), &mut problems).ok_or(problems)
    }

    #[test]
    fn defaults_read_and_mint_one_cookie() {
        let a = affinity_of("").unwrap();
        assert_eq!(a.keys, [KeySource::Cookie("switchback-user".into())]);
        assert_eq!(a.mint_cookie.as_deref(), Some("switchback-user"));
        assert_eq!(a.hasher, KeyHasher::from_seed("switchback"));
    }

    #[test]
    fn the_mint_cookie_is_read_back_after_the_listed_sources() {
        let a = affinity_of("key = [\"header:X-User-Id\", \"ip\"]\nmint-cookie = \"sid\"").unwrap();
        let shown: Vec<String> = a.keys.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["header:x-user-id", "ip", "cookie:sid"]);
        let a = affinity_of("key = [\"header:x-user-id\"]\nmint-cookie = \"\"").unwrap();
        assert_eq!(a.keys.len(), 1);
        assert_eq!(a.mint_cookie, None);
    }

    #[test]
    fn bad_sources_and_cookie_names_are_named() {
        let problems = affinity_of(
            "key = [\"ip\", \"ip\", \"header:bad header\", \"query:x\", \"cookie:a;b\"]\nmint-cookie = \"x y\"",
        )
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "affinity.key[1]",
                "affinity.key[2]",
                "affinity.key[3]",
                "affinity.key[4]",
                "affinity.mint-cookie"
            ]
        );
        assert!(affinity_of("key = []").is_err());
        for carrier in [
            "key = [\"cookie:switchback-override\"]",
            "key = [\"header:X-Switchback-Override-Token\"]",
            "mint-cookie = \"switchback-override\"",
        ] {
            assert!(affinity_of(carrier).is_err(), "{carrier}");
        }
    }

    #[test]
    fn the_override_header_may_not_name_a_header_forwarding_needs_or_an_affinity_key() {
        let parse = |text: &str| {
            crate::config::parse(&format!(
                "{text}\n[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n"
            ))
        };
        for reserved in [
            "Host",
            "cookie",
            "content-length",
            "x-switchback-override-token",
        ] {
            let problems = parse(&format!(
                "[override]\nheader = \"{reserved}\"\ntoken-file = \"t\""
            ))
            .unwrap_err();
            assert_eq!(problems[0].path, "override.header", "{reserved}");
        }
        let problems = parse(
            "[affinity]\nkey = [\"header:x-tester\"]\n[override]\nheader = \"x-tester\"\ntoken-file = \"t\"",
        )
        .unwrap_err();
        assert!(problems[0]
            .to_string()
            .contains("also an [affinity] key source"));
        let config =
            parse("[override]\ntoken-file = \"t\"\n[affinity]\ntable = \"state/t.json\"").unwrap();
        assert_eq!(
            config.affinity.unwrap().table,
            PathBuf::from("state/t.json")
        );
    }
}
