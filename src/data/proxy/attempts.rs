//! After an attempt: its outcome feeds passive ejection, a failed connect plans the one retry,
//! and an upgraded connection to a drained backend is ended in time.

use pingora::{Error, ErrorType, Result};

use super::RequestCtx;

/// Feeds a request's outcome on its backend into passive ejection.
pub(super) fn record_outcome(ctx: &RequestCtx, ok: bool) {
    let (Some(snapshot), Some((p, b))) = (&ctx.snapshot, ctx.route) else {
        return;
    };
    let pool = &snapshot.pools[p];
    if ok {
        pool.backends[b].health.record_success(&pool.policy.outlier);
        return;
    }
    if let Some(length) = pool.record_failure(b) {
        if let Some(m) = &pool.backends[b].metrics {
            m.ejections.inc();
        }
        tracing::warn!(pool = %pool.name, backend = %pool.backends[b].name, ejected_for = ?length, "backend ejected after consecutive failures");
    }
}

/// Chooses the backend for the retry after the last attempt failed: another of the same
/// pool, else another pool with a share. `None` leaves `upstream_peer` to route afresh.
/// `connect_failed`: the attempt could not connect (not a reused connection found dead), so it
/// counts as a failure of its pool in the rollout analysis when the retry goes elsewhere.
pub(super) fn plan_retry(ctx: &mut RequestCtx, connect_failed: bool) {
    if let (Some(snapshot), Some(failed)) = (&ctx.snapshot, ctx.route) {
        let retry = match ctx.override_pool {
            Some(_) => snapshot.route_in_pool(failed.0, Some(failed.1)),
            None => snapshot.route_retry(ctx.key, failed),
        };
        ctx.retry_to = retry.map(|r| (r.pool_index, r.backend_index));
        if connect_failed
            && ctx.override_pool.is_none()
            && ctx.retry_to.is_some_and(|(p, _)| p != failed.0)
        {
            // The answer will be counted for the other pool: the failed attempt counts here,
            // so that a canary's connect failures are never hidden by a retry on the baseline.
            snapshot.pools[failed.0].tally.record(true, None);
        }
        if let (Some(_), Some(m)) = (ctx.retry_to, &snapshot.pools[failed.0].metrics) {
            m.retries.inc();
        }
    }
}

/// Ends an upgraded connection whose backend has been drained for longer than
/// `[shutdown] drain-timeout`. Checked as data flows; an idle one ends at `read-timeout`.
pub(super) fn close_if_drained_too_long(ctx: &RequestCtx) -> Result<()> {
    let (Some(snapshot), Some((p, b))) = (&ctx.snapshot, ctx.route) else {
        return Ok(());
    };
    let backend = &snapshot.pools[p].backends[b];
    if backend
        .health
        .drained_for(snapshot.config.shutdown.drain_timeout)
    {
        tracing::info!(backend = %backend.name, "closing an upgraded connection: its backend was drained");
        return Error::e_explain(
            ErrorType::ConnectionClosed,
            "backend drained longer than drain-timeout",
        );
    }
    Ok(())
}
