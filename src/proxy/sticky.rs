//! Per request: a tester's override, and the user key that keeps a user on one pool.
//!
//! Both read the client's request header once, in `request_filter`; neither allocates unless
//! a key is minted or an override cookie has to be cut out of what is forwarded.

use std::net::IpAddr;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::config::defaults::{MINT_COOKIE_ATTRIBUTES, OVERRIDE_COOKIE, OVERRIDE_TOKEN_HEADER};
use crate::config::model::{Affinity, KeySource, Overrides};
use crate::snapshot::{NoRoute, Snapshot};

use super::RequestCtx;

/// The first routing decision, into `ctx`: a tester's valid override goes to its pool and
/// nowhere else; any other request by its user key (or the random one) through the split.
pub(super) fn route_first(
    session: &Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
) -> Result<(), NoRoute> {
    let req = session.req_header();
    ctx.override_pool = override_pool(req, snapshot);
    if let (None, Some(affinity)) = (ctx.override_pool, &snapshot.config.affinity) {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(key) = user_key(req, client, affinity) {
            (ctx.key, ctx.key_from, ctx.minted) = (key.bucket, key.from, key.minted);
        }
    }
    let route = match ctx.override_pool {
        Some(p) => snapshot
            .route_in_pool(p, None)
            .ok_or(NoRoute::PoolDown(p))?,
        None => snapshot.route(ctx.key)?,
    };
    ctx.retry_to = Some((route.pool_index, route.backend_index));
    Ok(())
}

/// Where a request's routing key came from, as the access log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyFrom {
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
    pub(super) fn name(self) -> &'static str {
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
pub(super) struct UserKey {
    pub(super) bucket: u32,
    pub(super) from: KeyFrom,
    pub(super) minted: Option<String>,
}

/// The user key of `req` by the sources of `affinity`, the first present winning; a fresh id
/// when none is present and minting is on; `None` otherwise.
pub(super) fn user_key(
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

/// The pool index a valid override asks for: the pool header with its token header, else the
/// `switchback-override=<pool>:<token>` cookie. A missing, wrong or other pool's token is no
/// override.
pub(super) fn override_pool(req: &RequestHeader, snapshot: &Snapshot) -> Option<usize> {
    let (overrides, tokens) = (
        snapshot.config.overrides.as_ref()?,
        snapshot.override_tokens.as_ref()?,
    );
    let by_header = || {
        let pool = req.headers.get(&overrides.header)?.as_bytes();
        let token = req.headers.get(OVERRIDE_TOKEN_HEADER)?.as_bytes();
        Some((pool, token))
    };
    let by_cookie = || {
        let value = cookie(req, OVERRIDE_COOKIE.as_bytes())?;
        let colon = memchr::memchr(b':', value)?;
        Some((&value[..colon], &value[colon + 1..]))
    };
    [by_header(), by_cookie()]
        .into_iter()
        .flatten()
        .find_map(|(pool, token)| {
            let index = snapshot
                .pools
                .iter()
                .position(|p| p.name.as_bytes() == pool)?;
            tokens
                .holds(&snapshot.pools[index].name, token)
                .then_some(index)
        })
}

/// Removes the override header, its token header and the override cookie from what goes
/// upstream, valid or not.
pub(super) fn strip_overrides(req: &mut RequestHeader, overrides: &Overrides) -> Result<()> {
    req.remove_header(&overrides.header);
    req.remove_header(OVERRIDE_TOKEN_HEADER);
    if cookie(req, OVERRIDE_COOKIE.as_bytes()).is_none() {
        return Ok(());
    }
    let kept: Vec<&[u8]> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && cookie_name(pair) != OVERRIDE_COOKIE.as_bytes())
        .collect();
    let joined = kept.join(&b"; "[..]);
    req.remove_header(&http::header::COOKIE);
    if !joined.is_empty() {
        req.insert_header(http::header::COOKIE, joined)?;
    }
    Ok(())
}

/// The value of cookie `name` in the request's `Cookie` lines (the first one), surrounding
/// double quotes kept.
fn cookie<'a>(req: &'a RequestHeader, name: &[u8]) -> Option<&'a [u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .find(|pair| cookie_name(pair) == name)
        .map(|pair| memchr::memchr(b'=', pair).map_or(&[][..], |i| pair[i + 1..].trim_ascii()))
}

/// The name part of a `name=value` pair (the whole pair when it has no `=`).
fn cookie_name(pair: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'=', pair).unwrap_or(pair.len());
    pair[..end].trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

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

    #[test]
    fn the_override_cookie_is_cut_out_and_the_others_kept() {
        let overrides = Overrides {
            header: http::HeaderName::from_static("x-switchback-pool"),
            token_file: "t".into(),
        };
        let mut req = request(&[
            ("x-switchback-pool", "green"),
            ("x-switchback-override-token", "t"),
            ("cookie", "a=1; switchback-override=green:t"),
            ("cookie", "b=2"),
        ]);
        strip_overrides(&mut req, &overrides).unwrap();
        assert!(req.headers.get("x-switchback-pool").is_none());
        assert!(req.headers.get("x-switchback-override-token").is_none());
        let cookies: Vec<&[u8]> = req
            .headers
            .get_all("cookie")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(cookies, [&b"a=1; b=2"[..]]);
        let mut only = request(&[("cookie", "switchback-override=x")]);
        strip_overrides(&mut only, &overrides).unwrap();
        assert!(only.headers.get("cookie").is_none());
    }
}
