//! Per request: a tester's override, else the user key that keeps a user on one pool
//! ([`crate::data::affinity::request`]). Nothing allocates unless a key is minted or an override
//! cookie has to be cut out of what is forwarded.

use std::net::IpAddr;

use pingora::http::RequestHeader;
use pingora::Result;

use crate::config::defaults::{OVERRIDE_COOKIE, OVERRIDE_TOKEN_HEADER};
use crate::data::affinity::request::{cookie, cookie_name, user_key};
use crate::data::snapshot::{NoRoute, Snapshot};
use http::HeaderName;

use super::RequestCtx;

/// The first routing decision, into `ctx`: a tester's valid override goes to its pool and
/// nowhere else; any other request by its user key (or the random one) through the split.
pub(super) fn route_first(
    req: &RequestHeader,
    client: Option<IpAddr>,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
) -> Result<(), NoRoute> {
    ctx.override_pool = override_pool(req, snapshot);
    if let (None, Some(affinity)) = (ctx.override_pool, &snapshot.config.affinity) {
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

/// Removes the override header, the token header and the override cookie from what goes
/// upstream, valid or not, and whether or not overrides are on (a tester's token never reaches
/// the application, even after `[override]` was turned off).
pub(super) fn strip_overrides(req: &mut RequestHeader, header: Option<&HeaderName>) -> Result<()> {
    // Looking first is cheaper than Pingora's remove, which also searches its case map.
    for name in header
        .into_iter()
        .chain([&HeaderName::from_static(OVERRIDE_TOKEN_HEADER)])
    {
        if req.headers.contains_key(name) {
            req.remove_header(name);
        }
    }
    let marked = |line: &http::HeaderValue| {
        memchr::memmem::find(line.as_bytes(), OVERRIDE_COOKIE.as_bytes()).is_some()
    };
    if !req.headers.get_all(http::header::COOKIE).iter().any(marked) {
        return Ok(());
    }
    // A front proxy that folds repeated `Cookie` lines may join them with a comma
    // (`a=1, switchback-override=…`): a `;` part holding the override cookie is split at `,`
    // too, so the token goes all the same; other parts (commas in their values) stay whole.
    let marker = memchr::memmem::Finder::new(OVERRIDE_COOKIE.as_bytes());
    let kept: Vec<&[u8]> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|b| *b == b';'))
        .flat_map(|part| {
            let folded = marker.find(part).is_some();
            part.split(move |b| folded && *b == b',')
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::affinity::request::test_request as request;

    #[test]
    fn the_override_cookie_is_cut_out_and_the_others_kept() {
        let header = HeaderName::from_static("x-switchback-pool");
        let overrides = Some(&header);
        let mut req = request(&[
            ("x-switchback-pool", "green"),
            ("x-switchback-override-token", "t"),
            ("cookie", "a=1; switchback-override=green:t"),
            ("cookie", "b=2"),
        ]);
        strip_overrides(&mut req, overrides).unwrap();
        assert!(req.headers.get("x-switchback-pool").is_none());
        assert!(req.headers.get("x-switchback-override-token").is_none());
        let cookies: Vec<&[u8]> = req
            .headers
            .get_all("cookie")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(cookies, [&b"a=1; b=2"[..]]);
        let mut folded = request(&[
            ("cookie", "a=1, switchback-override=green:t,b=2"),
            ("cookie", "json={\"x\":1,\"y\":2}"),
        ]);
        strip_overrides(&mut folded, overrides).unwrap();
        assert_eq!(folded.headers["cookie"], "a=1; b=2; json={\"x\":1,\"y\":2}");
        let mut only = request(&[("cookie", "switchback-override=x")]);
        strip_overrides(&mut only, overrides).unwrap();
        assert!(only.headers.get("cookie").is_none());
    }
}
