//! The upstream request's head: what switchback adds, replaces or drops on the way.
//!
//! - Header names holding `_` are dropped (nginx's default): some servers fold `_` into `-`,
//!   so `Transfer_Encoding` or `X_Forwarded_For` would mean something we did not check.
//! - An absolute-form target (`GET http://host/x`) is sent in origin-form with `Host` taken
//!   from it (RFC 9112 §3.2.2); an HTTP/1.0 request without `Host` gets the backend's
//!   `host:port` as `Host`.
//! - `X-Forwarded-For`: every line the client sent, joined, plus the client's address
//!   (`append`), or the client's address alone (`replace`). `X-Forwarded-Proto: https` on
//!   the TLS listeners, `http` on the others.
//! - An HTTP/2 request carries its host in `:authority`; an HTTP/1.1 upstream gets it as `Host`.

use std::cell::RefCell;
use std::fmt::Write;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::Result;

use crate::config::model::ForwardedFor;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The names as Pingora's case-preserving keys: handing it a `HeaderName` it has no title case
/// for makes it copy the name on every insert.
const X_FORWARDED_FOR_KEY: Bytes = Bytes::from_static(b"x-forwarded-for");
const X_FORWARDED_PROTO_KEY: Bytes = Bytes::from_static(b"x-forwarded-proto");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

thread_local! {
    /// The last client address formatted on this worker thread: a keep-alive connection's
    /// requests (and most others) skip formatting and validating it again.
    static LAST_CLIENT: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// `ip` as a header value, from the per-thread cache when it is the last one seen.
fn client_value(ip: IpAddr) -> HeaderValue {
    LAST_CLIENT.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((cached, value)) if *cached == ip => value.clone(),
            _ => {
                let value = HeaderValue::from_str(&ip.to_string())
                    .expect("an IP address is a valid header value");
                *last = Some((ip, value.clone()));
                value
            }
        }
    })
}

/// Rewrites `req` for the upstream `backend` (its configured `host:port`, when known).
pub(super) fn prepare(
    req: &mut RequestHeader,
    client: Option<IpAddr>,
    mode: ForwardedFor,
    backend: Option<&str>,
    tls: bool,
) -> Result<()> {
    drop_underscored(req);
    if let Some(absolute) = absolute_form(req) {
        let origin_form = absolute.path_and_query().map_or("/", |p| p.as_str());
        let origin_form = origin_form
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        req.set_uri(origin_form);
        if let Some(authority) = absolute.authority() {
            req.insert_header(HOST, authority.as_str())?;
        }
    } else if !req.headers.contains_key(HOST) {
        match req.uri.authority().map(|a| a.as_str().to_string()) {
            Some(authority) => req.insert_header(HOST, authority)?,
            None => {
                if let Some(backend) = backend {
                    req.insert_header(HOST, backend)?;
                }
            }
        }
    }
    if let Some(ip) = client {
        forwarded_for(req, ip, mode)?;
    }
    req.insert_header(X_FORWARDED_PROTO_KEY, if tls { HTTPS } else { HTTP })
}

/// The target, when the client sent it in absolute-form (rare: a request line not starting
/// with `/` or `*`).
pub(super) fn absolute_form(req: &RequestHeader) -> Option<http::Uri> {
    let raw = req.raw_path();
    if matches!(raw.first(), Some(b'/' | b'*')) {
        return None;
    }
    http::Uri::try_from(raw)
        .ok()
        .filter(|u| u.authority().is_some())
}

fn drop_underscored(req: &mut RequestHeader) {
    let has_underscore = |name: &HeaderName| name.as_str().as_bytes().contains(&b'_');
    if !req.headers.keys().any(has_underscore) {
        return;
    }
    let names: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| has_underscore(n))
        .cloned()
        .collect();
    for name in names {
        req.remove_header(&name);
    }
}

fn forwarded_for(req: &mut RequestHeader, ip: IpAddr, mode: ForwardedFor) -> Result<()> {
    if mode == ForwardedFor::Replace || !req.headers.contains_key(&X_FORWARDED_FOR) {
        return req.insert_header(X_FORWARDED_FOR_KEY, client_value(ip));
    }
    let mut value = String::new();
    {
        for line in req.headers.get_all(&X_FORWARDED_FOR) {
            let line = String::from_utf8_lossy(line.as_bytes());
            let line = line.trim();
            if !line.is_empty() {
                value.push_str(line);
                value.push_str(", ");
            }
        }
    }
    let _ = write!(value, "{ip}");
    req.insert_header(X_FORWARDED_FOR_KEY, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        for (name, value) in lines {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn values(req: &RequestHeader, name: &str) -> Vec<String> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn append_joins_every_forwarded_for_line_and_adds_the_client() {
        let mut req = request(&[
            ("host", "a"),
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
        ]);
        prepare(
            &mut req,
            Some("9.9.9.9".parse().unwrap()),
            ForwardedFor::Append,
            Some("b:1"),
            false,
        )
        .unwrap();
        assert_eq!(
            values(&req, "x-forwarded-for"),
            ["1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9"]
        );
    }

    #[test]
    fn replace_keeps_only_the_client() {
        let mut req = request(&[("host", "a"), ("x-forwarded-for", "6.6.6.6")]);
        prepare(
            &mut req,
            Some("9.9.9.9".parse().unwrap()),
            ForwardedFor::Replace,
            Some("b:1"),
            false,
        )
        .unwrap();
        assert_eq!(values(&req, "x-forwarded-for"), ["9.9.9.9"]);
    }

    #[test]
    fn underscored_names_are_dropped_and_others_kept() {
        let mut req = request(&[
            ("host", "a"),
            ("transfer_encoding", "chunked"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-kept", "1"),
        ]);
        prepare(&mut req, None, ForwardedFor::Append, Some("b:1"), false).unwrap();
        assert!(values(&req, "transfer_encoding").is_empty());
        assert!(values(&req, "x_forwarded_for").is_empty());
        assert_eq!(values(&req, "x-kept"), ["1"]);
    }

    #[test]
    fn a_request_without_host_gets_the_backend_and_absolute_form_becomes_origin_form() {
        let mut req = request(&[]);
        prepare(
            &mut req,
            None,
            ForwardedFor::Append,
            Some("10.0.0.1:80"),
            false,
        )
        .unwrap();
        assert_eq!(values(&req, "host"), ["10.0.0.1:80"]);

        let mut req = RequestHeader::build("GET", b"http://example.com:81/p?q=1", None).unwrap();
        req.append_header("host", "other").unwrap();
        prepare(&mut req, None, ForwardedFor::Append, Some("b:1"), false).unwrap();
        assert_eq!(values(&req, "host"), ["example.com:81"]);
        assert_eq!(req.uri.to_string(), "/p?q=1");
    }
}
