//! What a web page or a rebinding DNS name can send to the admin API, refused before routing.
//!
//! - `Host` must name this listener: the address the client connected to (`ip:port`,
//!   `[v6]:port`), `localhost:port`, or a host in `[admin] allowed-hosts` (any port) → else 421.
//!   A DNS-rebinding page reaches the listener under its own name, which is not on the list.
//! - A request with `Origin` is refused (403) unless the origin is the admin's own
//!   (`http://<Host>`, or `https://<Host>` with `[admin] tls`) or listed in
//!   `[admin] allowed-origins`. Browsers send `Origin` on every
//!   cross-site POST, `no-cors` included; `curl` and `switchback ctl` send none.
//! - A subresource another site's page loads (an `<img>` or `<script>` pointing here, which
//!   carries no `Origin`) is refused (403) when the browser says so in Fetch Metadata
//!   (`Sec-Fetch-Site: cross-site` or `same-site` with a `Sec-Fetch-Mode` other than
//!   `navigate`): such a page cannot read the answer, but could hold event streams. A link
//!   to the dashboard (a navigation) still opens it.
//! - A write with a body needs `Content-Type: application/json` → else 415: the `text/plain`
//!   "simple request" a page may send without a CORS preflight is not parsed.

use std::net::SocketAddr;

use http::request::Parts;
use http::{header, Method, StatusCode};

use crate::config::model::AdminSettings;

/// Why a request was refused: the status and the message for the JSON error body.
pub(super) type Refused = (StatusCode, String);

/// Checks `req`, which arrived on a connection to `local`.
pub(super) fn check(req: &Parts, local: SocketAddr, admin: &AdminSettings) -> Result<(), Refused> {
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| misdirected("a Host header is required"))?;
    if !host_allowed(&host, local, admin) {
        return Err(misdirected(&format!(
            "Host {host:?} is not this admin listener; add it to [admin] allowed-hosts"
        )));
    }
    if let Some(origin) = req.headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        // Its own origin: any name this listener answers to (`localhost` vs `127.0.0.1`), in
        // the scheme it serves (`https://` with `[admin] tls`: a page it served itself).
        let scheme = match admin.tls {
            Some(_) => "https://",
            None => "http://",
        };
        let own = origin
            .strip_prefix(scheme)
            .is_some_and(|authority| host_allowed(authority, local, admin));
        if !own && !admin.allowed_origins.contains(&origin) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("requests from origin {origin:?} are refused; list it in [admin] allowed-origins"),
            ));
        }
    }
    let fetch_metadata = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let other_site = matches!(
        fetch_metadata("sec-fetch-site"),
        Some("cross-site" | "same-site")
    );
    // With `Origin` the check above decided (a listed origin's page may call the API).
    let no_origin = !req.headers.contains_key(header::ORIGIN);
    if no_origin && other_site && fetch_metadata("sec-fetch-mode") != Some("navigate") {
        return Err((
            StatusCode::FORBIDDEN,
            "a request another site's page made is refused (Sec-Fetch-Site)".into(),
        ));
    }
    let writes = matches!(
        req.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if writes && has_body(req) && !is_json(req) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a request body must be sent as Content-Type: application/json".into(),
        ));
    }
    Ok(())
}

fn misdirected(message: &str) -> Refused {
    (StatusCode::MISDIRECTED_REQUEST, message.to_string())
}

fn host_allowed(host: &str, local: SocketAddr, admin: &AdminSettings) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => (name, port.parse::<u16>().ok()),
        _ => (host, None),
    };
    if admin.allowed_hosts.iter().any(|h| h == name || h == host) {
        return true;
    }
    // Browsers leave out the default port.
    if port.unwrap_or(80) != local.port() {
        return false;
    }
    let ip = local.ip().to_canonical();
    let loopback_name = ip.is_loopback() && matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    // The configured address too (`0.0.0.0:9900` names a listener as `ctl` is told to reach it).
    let configured = admin.listen.ip();
    [ip, configured]
        .iter()
        .any(|ip| name == ip.to_string() || name == format!("[{ip}]"))
        || loopback_name
}

fn has_body(req: &Parts) -> bool {
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn is_json(req: &Parts) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri("/switch");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn admin(hosts: &[&str], origins: &[&str]) -> AdminSettings {
        AdminSettings {
            listen: "127.0.0.1:9900".parse().unwrap(),
            token_file: None,
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            tls: None,
        }
    }

    fn status(method: &str, headers: &[(&str, &str)], a: &AdminSettings) -> u16 {
        let local = "127.0.0.1:9900".parse().unwrap();
        check(&parts(method, headers), local, a).map_or_else(|(s, _)| s.as_u16(), |()| 200)
    }

    #[test]
    fn host_must_name_the_listener_or_an_allowed_host() {
        let a = admin(&["admin.internal"], &[]);
        for ok in [
            "127.0.0.1:9900",
            "localhost:9900",
            "LOCALHOST:9900",
            "[::1]:9900",
            "admin.internal:1",
            "admin.internal",
        ] {
            assert_eq!(status("GET", &[("host", ok)], &a), 200, "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9900",
            "127.0.0.1:9901",
            "127.0.0.1",
            "localhost",
        ] {
            assert_eq!(status("GET", &[("host", bad)], &a), 421, "{bad}");
        }
        assert_eq!(status("GET", &[], &a), 421);
    }

    #[test]
    fn origin_is_refused_unless_own_or_allowed() {
        let a = admin(&[], &["https://dash.example"]);
        let h = ("host", "127.0.0.1:9900");
        assert_eq!(
            status("GET", &[h, ("origin", "http://evil.example")], &a),
            403
        );
        assert_eq!(status("GET", &[h, ("origin", "null")], &a), 403);
        assert_eq!(
            status("GET", &[h, ("origin", "http://127.0.0.1:9900")], &a),
            200
        );
        assert_eq!(
            status("GET", &[h, ("origin", "https://dash.example")], &a),
            200
        );
        let by_name = [
            ("host", "localhost:9900"),
            ("origin", "http://127.0.0.1:9900"),
        ];
        assert_eq!(
            status("GET", &by_name, &a),
            200,
            "the same listener by another name"
        );
        assert_eq!(
            status("GET", &[h, ("origin", "http://127.0.0.1:9901")], &a),
            403
        );
    }

    #[test]
    fn over_tls_the_own_origin_is_https() {
        let mut a = admin(&[], &[]);
        a.tls = Some(crate::config::model::CertPair {
            cert: "admin.pem".into(),
            key: "admin.key".into(),
        });
        let h = ("host", "127.0.0.1:9900");
        assert_eq!(
            status("GET", &[h, ("origin", "https://127.0.0.1:9900")], &a),
            200
        );
        assert_eq!(
            status("GET", &[h, ("origin", "https://localhost:9900")], &a),
            200
        );
        assert_eq!(
            status("GET", &[h, ("origin", "http://127.0.0.1:9900")], &a),
            403
        );
        assert_eq!(
            status("GET", &[h, ("origin", "https://127.0.0.1:9901")], &a),
            403
        );
        // Without TLS an https origin is another site.
        let plain = admin(&[], &[]);
        assert_eq!(
            status("GET", &[h, ("origin", "https://127.0.0.1:9900")], &plain),
            403
        );
    }

    #[test]
    fn another_sites_subresource_is_refused_but_a_link_opens() {
        let a = admin(&[], &[]);
        let h = ("host", "127.0.0.1:9900");
        let meta = |site, mode| [h, ("sec-fetch-site", site), ("sec-fetch-mode", mode)];
        assert_eq!(status("GET", &meta("cross-site", "no-cors"), &a), 403);
        assert_eq!(status("GET", &meta("same-site", "cors"), &a), 403);
        assert_eq!(status("GET", &meta("cross-site", "navigate"), &a), 200);
        assert_eq!(status("GET", &meta("same-origin", "cors"), &a), 200);
        assert_eq!(status("GET", &meta("none", "navigate"), &a), 200);
        assert_eq!(status("GET", &[h], &a), 200, "curl sends none");
        let listed = admin(&[], &["https://ops.example"]);
        let cors = [
            h,
            ("origin", "https://ops.example"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "cors"),
        ];
        assert_eq!(status("GET", &cors, &listed), 200, "a listed origin's page");
    }

    #[test]
    fn a_write_with_a_body_needs_json() {
        let a = admin(&[], &[]);
        let h = ("host", "127.0.0.1:9900");
        assert_eq!(
            status(
                "POST",
                &[h, ("content-length", "14"), ("content-type", "text/plain")],
                &a
            ),
            415
        );
        assert_eq!(status("POST", &[h, ("content-length", "14")], &a), 415);
        assert_eq!(
            status(
                "POST",
                &[
                    h,
                    ("content-length", "14"),
                    ("content-type", "application/json; charset=utf-8")
                ],
                &a
            ),
            200
        );
        assert_eq!(status("POST", &[h], &a), 200, "bodyless writes stay usable");
        assert_eq!(status("POST", &[h, ("content-length", "0")], &a), 200);
    }
}
