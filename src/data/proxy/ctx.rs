//! The state one request carries through the proxy's hooks.

use std::sync::Arc;
use std::time::Instant;

use crate::data::health::{Inflight, InflightGuard, RequestGuard};
use crate::data::snapshot::Snapshot;

/// Per-request state.
pub struct RequestCtx {
    pub(super) started: Instant,
    /// The snapshot this request routes by, loaded once at its first routing decision.
    pub(super) snapshot: Option<Arc<Snapshot>>,
    /// `(pool index, backend index)` of the last routing decision.
    pub(super) route: Option<(usize, usize)>,
    /// The pool whose in-flight gauge counts this request (its first route's pool; a retry
    /// may move the request to another pool).
    pub(super) inflight_pool: Option<usize>,
    /// The request was answered 503 before any backend was chosen: the pool it was for.
    pub(super) unavailable: Option<usize>,
    pub(super) upstream_started: Option<Instant>,
    /// When this attempt's request head, and then its last body byte, went upstream.
    pub(super) head_sent: Option<Instant>,
    pub(super) request_sent: Option<Instant>,
    /// When the last piece of the client's request body arrived (`None`: none yet).
    pub(super) body_at: Option<Instant>,
    /// The upstream failed while the proxy waited on the client for more request body (all it
    /// had sent was forwarded): the client's doing, answered 408 and counted for no pool.
    pub(super) client_blocked: bool,
    pub(super) upstream_header: Option<(u16, Instant)>,
    /// The routing key: the user's bucket, or drawn at random; kept so a retry fails over
    /// the same way.
    pub(super) key: u32,
    /// Where the key came from.
    pub(super) key_from: crate::data::affinity::request::KeyFrom,
    /// `Set-Cookie` for a freshly minted user id, sent with the response.
    pub(super) minted: Option<String>,
    /// A tester's valid override: this pool, whatever the split, with no failover.
    pub(super) override_pool: Option<usize>,
    /// Connection attempts made.
    pub(super) attempts: u8,
    /// The backend `(pool, backend)` chosen for the next connection attempt: by
    /// `request_filter` for the first, by the failure hooks for the retry.
    pub(super) retry_to: Option<(usize, usize)>,
    /// Counts this request against its backend's in-flight number.
    pub(super) backend_inflight: Option<InflightGuard>,
    /// Counts this request against the process's in-flight number.
    pub(super) _request: RequestGuard,
}

impl RequestCtx {
    /// A request just begun, counted in `inflight`, with a random routing key.
    pub(super) fn new(inflight: &Arc<Inflight>) -> Self {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            route: None,
            inflight_pool: None,
            unavailable: None,
            upstream_started: None,
            head_sent: None,
            request_sent: None,
            body_at: None,
            client_blocked: false,
            upstream_header: None,
            key: crate::data::keys::next(),
            key_from: crate::data::affinity::request::KeyFrom::None,
            minted: None,
            override_pool: None,
            attempts: 0,
            retry_to: None,
            backend_inflight: None,
            _request: inflight.begin(),
        }
    }
}
