//! `[tls] redirect-http`: a request on a plain listener is answered `308` to the same target
//! over https, like nginx's `return 308 https://$host$request_uri`: the host without its
//! port (the https port is the one clients know, 443, whatever port switchback binds
//! behind a load balancer), the target as sent.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;

/// Where `req` goes over https; `None` without a usable host. An absolute-form target names
/// the host itself (RFC 9112 §3.2.2: it wins over `Host`); `OPTIONS *` goes to `/`.
pub(super) fn https_location(req: &RequestHeader) -> Option<String> {
    let absolute = super::forwarding::absolute_form(req);
    let authority = match (&absolute, req.headers.get(http::header::HOST)) {
        (Some(uri), _) => uri.authority()?.clone(),
        (None, Some(host)) => host.to_str().ok()?.parse::<http::uri::Authority>().ok()?,
        (None, None) => req.uri.authority()?.clone(),
    };
    // An authority with user information (`a@b`) is no host a client meant.
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let uri = absolute.as_ref().unwrap_or(&req.uri);
    let target = match uri.path_and_query() {
        Some(p) if p.as_str().starts_with('/') => p.as_str(),
        _ => "/",
    };
    Some(format!("https://{}{target}", authority.host()))
}

/// Answers `308 Permanent Redirect` to the https URL, or 400 when the request names no host.
pub(super) async fn redirect(session: &mut ServerSession, stopping: bool) {
    let Some(location) = https_location(session.req_header()) else {
        let body = Bytes::from_static(b"bad request: no host to redirect to https\n");
        super::respond::respond_plain(session, 400, body, stopping).await;
        return;
    };
    let reusable = session.is_body_empty() && !stopping;
    if !reusable {
        session.set_keepalive(None);
    }
    let written = async {
        let mut resp = ResponseHeader::build(308, Some(4))?;
        resp.insert_header(http::header::LOCATION, &location)?;
        resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
        let connection = if reusable { "keep-alive" } else { "close" };
        resp.insert_header(http::header::CONNECTION, connection)?;
        session.write_response_header(Box::new(resp)).await?;
        session.finish_body().await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, "could not send the https redirect");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, host: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        if let Some(host) = host {
            req.insert_header("host", host).unwrap();
        }
        req
    }

    #[test]
    fn the_location_keeps_the_host_and_target_and_drops_the_port() {
        let req = request("/a/b?c=1&d", Some("Example.com:8080"));
        assert_eq!(
            https_location(&req).as_deref(),
            Some("https://Example.com/a/b?c=1&d")
        );
        let req = request("/", Some("[::1]:80"));
        assert_eq!(https_location(&req).as_deref(), Some("https://[::1]/"));
    }

    #[test]
    fn an_absolute_target_names_the_host_and_an_asterisk_goes_to_the_root() {
        let req = request("http://a.test:8080/x?y", Some("b.test"));
        assert_eq!(https_location(&req).as_deref(), Some("https://a.test/x?y"));
        let req = request("http://a.test", None);
        assert_eq!(https_location(&req).as_deref(), Some("https://a.test/"));
        let mut req = RequestHeader::build("OPTIONS", b"*", None).unwrap();
        req.insert_header("host", "a.test").unwrap();
        assert_eq!(https_location(&req).as_deref(), Some("https://a.test/"));
    }

    #[test]
    fn no_usable_host_means_no_location() {
        assert_eq!(https_location(&request("/", None)), None);
        assert_eq!(https_location(&request("/", Some("a b"))), None);
        assert_eq!(https_location(&request("/", Some("user@evil.test"))), None);
        assert_eq!(https_location(&request("/", Some(""))), None);
    }
}
