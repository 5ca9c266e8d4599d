//! A request's user key: read from the first source of `[affinity] key` that is present,
//! or minted. Pure: no sockets, no clock; the proxy calls it once per request.

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::config::defaults::MINT_COOKIE_ATTRIBUTES;
use crate::config::model::{Affinity, KeySource};

/// Where a request's routing key came from, as the access log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFrom {
    /// No key: routed at random (no `[affinity]`, or nothing to read and nothing minted).
    None,
    /// A request header.
    Header,
    /// A cookie.
    Cookie,
    /// The client's address.
    Ip,
    /// A fresh id, sent back in the mint cookie.
    Minted,
}

impl KeyFrom {
    /// The access log's name for it.
    pub fn name(self) -> &'static str {
        match self {
            KeyFrom::None => "none",
            KeyFrom::Header => "header",
            KeyFrom::Cookie => "cookie",
            KeyFrom::Ip => "ip",
            KeyFrom::Minted => "minted",
        }
    }
}

/// A user's bucket and where its key came from; `minted` holds the `Set-Cookie` value for a
/// fresh id.
pub struct UserKey {
    /// The bucket in `[0, 10,000)`.
    pub bucket: u32,
    /// Where the key came from.
    pub from: KeyFrom,
    /// `Set-Cookie` value for a minted id.
    pub minted: Option<String>,
}

/// The user key of `req` by the sources of `affinity`, the first present winning; a fresh id
/// when none is present and minting is on; `None` otherwise.
pub fn user_key(
    req: &RequestHeader,
    client: Option<IpAddr>,
    affinity: &Affinity,
) -> Option<UserKey> {
    let found = |bytes: &[u8], from| {
        Some(UserKey {
            bucket: u32::from(affinity.hasher.bucket(bytes)),
            from,
            minted: None,
        })
    };
    for source in &affinity.keys {
        match source {
            KeySource::Header(name) => match req.headers.get(name).map(|v| v.as_bytes()) {
                Some(value) if !value.is_empty() => return found(value, KeyFrom::Header),
                _ => {}
            },
            KeySource::Cookie(name) => match cookie(req, name.as_bytes()) {
                Some(value) if !value.is_empty() => return found(value, KeyFrom::Cookie),
                _ => {}
            },
            KeySource::Ip => match client.map(|ip| ip.to_canonical()) {
                Some(IpAddr::V4(v4)) => return found(&v4.octets(), KeyFrom::Ip),
                Some(IpAddr::V6(v6)) => return found(&v6.octets(), KeyFrom::Ip),
                None => {}
            },
        }
    }
    let name = affinity.mint_cookie.as_deref()?;
    let id = format!("{:032x}", rand::random::<u128>());
    let mut key = found(id.as_bytes(), KeyFrom::Minted)?;
    key.minted = Some(format!("{name}={id}; {MINT_COOKIE_ATTRIBUTES}"));
    Some(key)
}

/// The value of cookie `name` in the request's `Cookie` lines (the first one), surrounding
/// double quotes kept.
pub fn cookie<'a>(req: &'a RequestHeader, name: &[u8]) -> Option<&'a [u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .find(|pair| cookie_name(pair) == name)
        .map(|pair| memchr::memchr(b'=', pair).map_or(&[][..], |i| pair[i + 1..].trim_ascii()))
}

/// The name part of a `name=value` pair (the whole pair when it has no `=`).
pub(crate) fn cookie_name(pair: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'=', pair).unwrap_or(pair.len());
    pair[..end].trim_ascii()
}

/// A request header with `headers`, for unit tests here and in the proxy.
#[cfg(test)]
pub(crate) fn test_request(headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    for (name, value) in headers {
        req.append_header(name.to_string(), *value).unwrap();
    }
    req
}

#[cfg(test)]
mod tests {
    use super::test_request as request;
    use super::*;

    fn affinity(text: &str) -> Affinity {
        let config = crate::config::parse(&format!(
            "[affinity]\n{text}\n[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n"
        ))
        .unwrap();
        config.affinity.unwrap()
    }

    #[test]
    fn the_first_present_source_wins_and_the_same_key_gives_the_same_bucket() {
        let a = affinity("key = [\"header:x-user-id\", \"cookie:sid\", \"ip\"]");
        let ip = Some("10.0.0.7".parse().unwrap());
        let by_header = user_key(
            &request(&[("x-user-id", "u1"), ("cookie", "sid=u1")]),
            ip,
            &a,
        );
        let by_cookie = user_key(&request(&[("cookie", "a=b; sid=u1")]), ip, &a).unwrap();
        let (by_header, by_cookie) = (by_header.unwrap(), by_cookie);
        assert_eq!(
            (by_header.from, by_cookie.from),
            (KeyFrom::Header, KeyFrom::Cookie)
        );
        assert_eq!(by_header.bucket, by_cookie.bucket);
        assert_eq!(by_header.bucket, u32::from(a.hasher.bucket(b"u1")));
        let by_ip = user_key(&request(&[("x-user-id", "")]), ip, &a).unwrap();
        assert_eq!(by_ip.from, KeyFrom::Ip);
        let mapped = Some("::ffff:10.0.0.7".parse().unwrap());
        assert_eq!(
            user_key(&request(&[]), mapped, &a).unwrap().bucket,
            by_ip.bucket
        );
    }

    #[test]
    fn a_keyless_request_gets_a_fresh_id_in_the_mint_cookie_or_nothing() {
        let a = affinity("key = [\"header:x-user-id\"]\nmint-cookie = \"sid\"");
        let minted = user_key(&request(&[]), None, &a).unwrap();
        assert_eq!(minted.from, KeyFrom::Minted);
        let cookie = minted.minted.unwrap();
        let id = cookie
            .strip_prefix("sid=")
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        assert_eq!(id.len(), 32);
        assert!(cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000"));
        assert_eq!(minted.bucket, u32::from(a.hasher.bucket(id.as_bytes())));
        let back = user_key(&request(&[("cookie", &format!("sid={id}"))]), None, &a).unwrap();
        assert_eq!((back.from, back.bucket), (KeyFrom::Cookie, minted.bucket));
        let none = affinity("key = [\"header:x-user-id\"]\nmint-cookie = \"\"");
        assert!(user_key(&request(&[]), None, &none).is_none());
    }
}
