//! The HTTP/1 upstream request's head before switchback's own changes: the client's
//! hop-by-hop headers dropped, with the rules of Pingora's default upstream request policy
//! (`HttpUpstreamRequestPolicy::default()`, applied by `ProxyHttp` and not public), so both
//! data paths send the same headers (their order may differ: Pingora's strip swap-removes):
//!
//! - every header the client's `Connection` nominates goes (RFC 9110 §7.6.1); a nomination that
//!   is no token, names a pseudo-header or a header the proxy sets (`Host`,
//!   `X-Forwarded-For/-Host/-Proto`), or the tenth one, makes the request a 400;
//! - the standard hop-by-hop headers go (`Connection`, `Keep-Alive`, `Proxy-Connection`,
//!   `Proxy-Authenticate`, `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`,
//!   `Upgrade`, `HTTP2-Settings`);
//! - a WebSocket upgrade from an HTTP/1.1 client — `Upgrade: websocket` with the `upgrade`
//!   connection option (RFC 9110 §7.8) — is sent on as `Connection: Upgrade`,
//!   `Upgrade: websocket`; no other upgrade is, and an `Upgrade` header alone is dropped (the
//!   request goes on as a plain one).
//!
//! After switchback's changes, [`frame`] gives a request with a body and no length
//! `Transfer-Encoding: chunked` (the client's framing was dropped with the hop-by-hop headers).

use http::{header, HeaderName, Version};
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType::InvalidHTTPHeader, Result};

/// Nominations in `Connection` past which a request is refused (as Pingora's policy).
const MAX_NOMINATIONS: usize = 10;

const HOP_BY_HOP: [HeaderName; 10] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Headers the proxy itself sets: a client cannot have them dropped by nominating them.
const PROTECTED: [&str; 4] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Headers switchback may add to the upstream request (`X-Forwarded-For`, `-Proto`, `Host`,
/// `Transfer-Encoding`, a WebSocket's two): room is made for them up front.
const ADDED: usize = 6;

/// The upstream request's head: the client's, without its hop-by-hop headers, keeping a
/// WebSocket upgrade. `Err` (a 400) for a `Connection` header the policy refuses.
///
/// Built afresh rather than cloned: Pingora sizes a parsed head's header maps to its lines,
/// so a clone grows (re-hashing every line, twice: values and names' case) on the first
/// header added, and every hop-by-hop header removed costs a search of both maps.
pub(super) fn upstream_head(
    client: &RequestHeader,
    client_is_http11: bool,
) -> Result<RequestHeader> {
    let websocket = client_is_http11 && asks_websocket(client);
    let nominated = match client.headers.contains_key(header::CONNECTION) {
        true => nominated(client)?,
        false => std::array::from_fn(|_| None),
    };
    let dropped = |name: &HeaderName| {
        HOP_BY_HOP.contains(name) || nominated.iter().flatten().any(|n| n == name)
    };
    let lines = client.headers.len() + ADDED;
    let mut req = RequestHeader::build(client.method.clone(), client.raw_path(), Some(lines))?;
    if client.has_case() {
        // Pingora keeps the names' case in a second map, in the same order (its own writer
        // zips the two the same way).
        let cased = client.headers.iter().zip(client.case_header_iter());
        for ((name, value), (case, _)) in cased {
            if !dropped(name) {
                req.append_header(case.clone(), value.clone())?;
            }
        }
    } else {
        for (name, value) in &client.headers {
            if !dropped(name) {
                req.append_header(name.clone(), value.clone())?;
            }
        }
    }
    if websocket {
        req.insert_header(header::CONNECTION, "Upgrade")?;
        req.insert_header(header::UPGRADE, "websocket")?;
    }
    req.set_version(Version::HTTP_11);
    Ok(req)
}

/// Whether `req` asks to upgrade to a WebSocket: one `Upgrade` line, `websocket`, and `upgrade`
/// among the `Connection` options (RFC 9110 §7.8). The framing guard holds what follows such a request by
/// the same rule (`Framing::head_field`, its `upgrade` and `connection` arms).
pub(in crate::data::proxy) fn asks_websocket(req: &RequestHeader) -> bool {
    let mut upgrade = req.headers.get_all(header::UPGRADE).iter();
    let only = match (upgrade.next(), upgrade.next()) {
        (Some(value), None) => Some(value),
        _ => None, // none, or repeated: no upgrade (the framing guard reads it the same way)
    };
    only.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && req
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|b| *b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}

/// The headers `Connection` nominates.
fn nominated(req: &RequestHeader) -> Result<[Option<HeaderName>; MAX_NOMINATIONS]> {
    let mut names = std::array::from_fn(|_| None);
    let tokens = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty());
    for (i, token) in tokens.enumerate() {
        if i + 1 >= MAX_NOMINATIONS {
            return Error::e_explain(InvalidHTTPHeader, "too many Connection nominations");
        }
        if !token.iter().all(|&b| is_tchar(b)) {
            return Error::e_explain(InvalidHTTPHeader, "Connection nominates no token");
        }
        let Ok(name) = HeaderName::from_bytes(token) else {
            return Error::e_explain(InvalidHTTPHeader, "Connection nominates no header name");
        };
        if PROTECTED.contains(&name.as_str()) {
            return Error::e_explain(InvalidHTTPHeader, "Connection nominates a protected header");
        }
        names[i] = Some(name);
    }
    Ok(names)
}

/// An HTTP token character (RFC 9110 §5.6.2). A `:` (a pseudo-header's name) is none.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request with a body but neither `Content-Length` nor `Transfer-Encoding` left is sent
/// chunked.
pub(super) fn frame(req: &mut RequestHeader, has_body: bool) -> Result<()> {
    let framed = req.headers.contains_key(header::CONTENT_LENGTH)
        || req.headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && !framed {
        req.insert_header(header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in lines {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn strip_hop_by_hop(req: &mut RequestHeader, client_is_http11: bool) -> Result<()> {
        *req = upstream_head(req, client_is_http11)?;
        Ok(())
    }

    #[test]
    fn nominated_and_standard_hop_by_hop_headers_go_and_the_rest_stays() {
        let mut req = request(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-kept", "2"),
        ]);
        strip_hop_by_hop(&mut req, true).unwrap();
        let names: Vec<&str> = req.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn the_head_keeps_method_target_names_case_order_and_repeated_lines() {
        let mut client = RequestHeader::build("PATCH", b"/a/b?c=1&d=\xff", None).unwrap();
        for (name, value) in [
            ("X-Kept", "1"),
            ("cookie", "a=1"),
            ("connection", "x-secret"),
            ("Cookie", "b=2"),
            ("x-secret", "s"),
            ("HOST", "example.test"),
        ] {
            client.append_header(name.to_string(), value).unwrap();
        }
        let req = upstream_head(&client, true).unwrap();
        assert_eq!(req.method, "PATCH");
        assert_eq!(req.raw_path(), b"/a/b?c=1&d=\xff");
        assert_eq!(req.version, Version::HTTP_11);
        let lines: Vec<(String, String)> = req
            .case_header_iter()
            .map(|(n, v)| {
                let name = String::from_utf8_lossy(n.as_slice()).into_owned();
                (name, v.to_str().unwrap().to_string())
            })
            .collect();
        let want = [
            ("X-Kept", "1"),
            ("cookie", "a=1"),
            ("Cookie", "b=2"),
            ("HOST", "example.test"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn a_websocket_upgrade_is_kept_and_only_from_an_http11_client() {
        let lines = [("connection", "Upgrade"), ("upgrade", "WebSocket")];
        let mut req = request(&lines);
        strip_hop_by_hop(&mut req, true).unwrap();
        assert_eq!(req.headers["upgrade"], "websocket");
        assert_eq!(req.headers["connection"], "Upgrade");
        let mut old = request(&lines);
        strip_hop_by_hop(&mut old, false).unwrap();
        assert!(old.headers.is_empty());
        // No `upgrade` connection option: no upgrade (RFC 9110 §7.8).
        for lines in [
            &[("upgrade", "websocket")][..],
            &[("connection", "keep-alive"), ("upgrade", "websocket")][..],
        ] {
            let mut plain = request(lines);
            strip_hop_by_hop(&mut plain, true).unwrap();
            assert!(plain.headers.is_empty(), "{lines:?}");
        }
        let mut listed = request(&[
            ("connection", "keep-alive , UPGRADE"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut listed, true).unwrap();
        assert_eq!(listed.headers["upgrade"], "websocket");
    }

    #[test]
    fn a_connection_header_the_policy_refuses_is_an_error() {
        for value in [
            "x-forwarded-for",
            "Host",
            "\"x-a\"",
            ":authority",
            "a,b,c,d,e,f,g,h,i,j",
        ] {
            let mut req = request(&[("connection", value)]);
            assert!(strip_hop_by_hop(&mut req, true).is_err(), "{value}");
        }
        let mut req = request(&[("connection", "a,b,c,d,e,f,g,h,i")]);
        assert!(strip_hop_by_hop(&mut req, true).is_ok());
    }

    #[test]
    fn a_body_without_length_is_sent_chunked() {
        let mut req = request(&[]);
        frame(&mut req, true).unwrap();
        assert_eq!(req.headers["transfer-encoding"], "chunked");
        let mut req = request(&[("content-length", "3")]);
        frame(&mut req, true).unwrap();
        assert!(!req.headers.contains_key("transfer-encoding"));
        let mut req = request(&[]);
        frame(&mut req, false).unwrap();
        assert!(req.headers.is_empty());
    }
}
