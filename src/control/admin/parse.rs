//! Parsing what a client sent to the write endpoints: `If-Match` and the bodies of
//! `PUT /split`, `POST /switch` and `POST /rollback`.

use std::collections::BTreeMap;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::Value;

use super::{fail, Answer};
use crate::config::percent::{percent_from_f64, PercentError};
use crate::control;

pub(super) fn if_match(req: &Request<Incoming>) -> Result<Option<u64>, Answer> {
    let Some(value) = req.headers().get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| fail(StatusCode::BAD_REQUEST, "If-Match must be a version number"))
}

pub(super) fn parse_request(path: &str, body: &[u8]) -> Result<control::Request, String> {
    let json = |body: &[u8]| -> Result<Value, String> {
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))
    };
    match path {
        "/rollback" => Ok(control::Request::Rollback),
        "/switch" => match json(body)?.get("to") {
            Some(Value::String(to)) => Ok(control::Request::Switch(to.clone())),
            _ => Err("expected {\"to\": \"<pool>\"}".into()),
        },
        _ => {
            let Value::Object(map) = json(body)? else {
                return Err(
                    "expected an object of pool → percent, e.g. {\"blue\": 90, \"green\": 10}"
                        .into(),
                );
            };
            let mut shares = BTreeMap::new();
            for (pool, value) in map {
                let number = value.as_f64().ok_or(format!("{pool}: expected a number"))?;
                let bp = percent_from_f64(number).map_err(|e| match e {
                    PercentError::Invalid => {
                        format!("{pool}: {value} is not a percentage from 0 to 100")
                    }
                    PercentError::TooPrecise => {
                        format!("{pool}: {value} has more than two decimals")
                    }
                })?;
                shares.insert(pool, bp);
            }
            Ok(control::Request::Split(shares))
        }
    }
}

/// Entry points for the fuzz targets (`fuzz/`) and their corpus replay test: the admin
/// API's parsers of untrusted input, without a socket.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses an admin write body for `path` (`/split`, `/switch`, `/rollback`).
    pub fn parse_body(path: &str, body: &[u8]) -> bool {
        super::parse_request(path, body).is_ok()
    }

    /// Parses a drain path (`/backends/{pool}/{addr}/drain|undrain`).
    pub fn parse_drain_path(path: &str) -> bool {
        super::super::drain::parse(path).is_some()
    }
}
