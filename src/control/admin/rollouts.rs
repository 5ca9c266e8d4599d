//! `/rollouts`: start a rollout, read them, act on the current one.
//!
//! | method and path                         | effect                                        |
//! |-----------------------------------------|-----------------------------------------------|
//! | `POST /rollouts`                        | start: `{"to", "plan", "from", "dry_run", "release"}` → 201 |
//! | `GET /rollouts?limit=N`                 | newest first (default 20, at most 100)        |
//! | `GET /rollouts/current`                 | the active rollout, else the most recent; 404 if none ever |
//! | `POST /rollouts/current/{action}`       | `pause`, `resume`, `promote` (`{"full": true}`), `approve`, `abort`; optional `If-Match: <id>.<revision>` |

use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper::Request;
use serde::Deserialize;
use serde_json::Value;

use super::{fail, query_param, status_of, Answer};
use crate::control::rollout::{Operator, RolloutError, StartRequest};
use crate::control::Control;

/// Default and largest `?limit=` of `GET /rollouts`.
const LIMIT: (usize, usize) = (20, 100);

/// The plan used when `POST /rollouts` names none.
const DEFAULT_PLAN: &str = "default";

/// The body of `POST /rollouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    to: String,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    release: Option<Value>,
}

/// The body of `POST /rollouts/current/promote`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    #[serde(default)]
    full: bool,
}

/// Parses a `POST /rollouts` body.
///
/// # Errors
/// A sentence saying what is wrong.
pub(super) fn parse_start(body: &[u8]) -> Result<StartRequest, String> {
    let body: StartBody = serde_json::from_slice(body).map_err(|e| {
        format!(
            "expected {{\"to\": \"<pool>\", \"plan\": \"<plan>\", \"from\": \"<pool>\", \"dry_run\": false, \"release\": {{…}}}}: {e}"
        )
    })?;
    Ok(StartRequest {
        to: body.to,
        plan: body.plan.unwrap_or_else(|| DEFAULT_PLAN.into()),
        from: body.from,
        dry_run: body.dry_run,
        release: body.release,
    })
}

/// Parses an action path's last segment and body.
///
/// # Errors
/// A sentence saying what is wrong.
pub(super) fn parse_action(action: &str, body: &[u8]) -> Result<Operator, String> {
    Ok(match action {
        "pause" => Operator::Pause,
        "resume" => Operator::Resume,
        "approve" => Operator::Approve,
        "abort" => Operator::Abort,
        "promote" => {
            let body: PromoteBody = match body.iter().all(u8::is_ascii_whitespace) {
                true => PromoteBody::default(),
                false => serde_json::from_slice(body)
                    .map_err(|e| format!("expected {{\"full\": true}} or no body: {e}"))?,
            };
            Operator::Promote { full: body.full }
        }
        other => {
            return Err(format!(
                "no rollout action {other:?} (pause, resume, promote, approve, abort)"
            ))
        }
    })
}

/// The action named by `/rollouts/current/{action}`.
pub(super) fn action_of(path: &str) -> Option<&str> {
    path.strip_prefix("/rollouts/current/")
        .filter(|a| !a.is_empty() && !a.contains('/'))
}

/// Answers every `/rollouts` path; `None` for other paths.
pub(super) async fn route(
    req: Request<Incoming>,
    control: &Control,
) -> Result<Answer, Request<Incoming>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let action = action_of(&path).map(str::to_string);
    if path != "/rollouts" && path != "/rollouts/current" && action.is_none() {
        return Err(req);
    }
    Ok(match (method, path.as_str(), action) {
        (Method::GET, "/rollouts", _) => list(req.uri().query(), control).await,
        (Method::GET, "/rollouts/current", _) => current(control).await,
        (Method::POST, "/rollouts", _) | (Method::POST, _, Some(_)) => {
            let actor = match super::authorize(&req, control).await {
                Ok(actor) => actor,
                Err(answer) => return Ok(answer),
            };
            let expect = match if_match(&req) {
                _ if action_of(&path).is_none() => None, // starting has no If-Match
                Ok(expect) => expect,
                Err(message) => {
                    let what = format!("rollout-{}", action_of(&path).unwrap_or_default());
                    let status = StatusCode::BAD_REQUEST;
                    return Ok(refuse(control, &actor, status, &what, message).await);
                }
            };
            let body = match super::read_body(req).await {
                Ok(body) => body,
                Err(answer) => return Ok(answer),
            };
            match action_of(&path) {
                Some(action) => act(control, &actor, action, &body, expect).await,
                None => start(control, &actor, &body).await,
            }
        }
        (method, _, _) => fail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
    })
}

/// The methods a `/rollouts` path answers, for `Allow` on a 405.
pub(super) fn allowed(path: &str) -> Option<&'static str> {
    match path {
        "/rollouts" => Some("GET, POST"),
        "/rollouts/current" => Some("GET"),
        p if action_of(p).is_some() => Some("POST"),
        _ => None,
    }
}

/// `GET /rollouts?limit=N`.
pub(super) async fn list(query: Option<&str>, control: &Control) -> Answer {
    let limit = match query_param(query, "limit").map(str::parse::<usize>) {
        None => LIMIT.0,
        Some(Ok(n)) if n <= LIMIT.1 => n,
        Some(_) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("limit must be a whole number from 0 to {}", LIMIT.1),
            )
        }
    };
    Answer(
        StatusCode::OK,
        serde_json::json!(control.rollouts(limit).await),
    )
}

/// `GET /rollouts/current`.
pub(super) async fn current(control: &Control) -> Answer {
    match control.rollout_current().await {
        Some(r) => Answer(StatusCode::OK, serde_json::json!(r)),
        None => fail(StatusCode::NOT_FOUND, "no rollout has been started"),
    }
}

/// `POST /rollouts`.
pub(super) async fn start(control: &Control, actor: &str, body: &[u8]) -> Answer {
    let request = match parse_start(body) {
        Ok(r) => r,
        Err(message) => {
            return refuse(
                control,
                actor,
                StatusCode::BAD_REQUEST,
                "rollout-start",
                message,
            )
            .await
        }
    };
    match control.rollout_start(actor, request).await {
        Ok(r) => Answer(StatusCode::CREATED, serde_json::json!(r)),
        Err(e) => refused(control, actor, "rollout-start", e).await,
    }
}

/// `If-Match: <rollout id>.<revision>` on an action, as `(id, revision)`; `*` is no condition.
fn if_match(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, String> {
    let Some(value) = req.headers().get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("").trim();
    if value == "*" {
        return Ok(None); // any current representation
    }
    Some(value.trim_matches('"'))
        .and_then(|v| v.split_once('.'))
        .and_then(|(id, revision)| Some((id.parse().ok()?, revision.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| "If-Match must be <rollout id>.<revision>, e.g. 3.7".to_string())
}

/// `POST /rollouts/current/{action}`.
pub(super) async fn act(
    control: &Control,
    actor: &str,
    action: &str,
    body: &[u8],
    expect: Option<(u64, u64)>,
) -> Answer {
    let name = format!("rollout-{action}");
    let op = match parse_action(action, body) {
        Ok(op) => op,
        Err(message) => {
            let status = match action {
                "pause" | "resume" | "promote" | "approve" | "abort" => StatusCode::BAD_REQUEST,
                _ => StatusCode::NOT_FOUND,
            };
            return refuse(control, actor, status, &name, message).await;
        }
    };
    match control.rollout_act(actor, op, expect).await {
        Ok(r) => Answer(StatusCode::OK, serde_json::json!(r)),
        Err(e) => refused(control, actor, &name, e).await,
    }
}

async fn refused(control: &Control, actor: &str, what: &str, e: RolloutError) -> Answer {
    let status = match &e {
        RolloutError::Conflict(_) => StatusCode::CONFLICT,
        RolloutError::Invalid(_) => StatusCode::BAD_REQUEST,
        RolloutError::None => StatusCode::NOT_FOUND,
        RolloutError::Stale(_) => StatusCode::PRECONDITION_FAILED,
        RolloutError::Control(c) => status_of(c),
    };
    refuse(control, actor, status, what, e.to_string()).await
}

async fn refuse(
    control: &Control,
    actor: &str,
    status: StatusCode,
    what: &str,
    message: String,
) -> Answer {
    control
        .reject(actor, &format!("{what} refused: {message}"))
        .await;
    fail(status, message)
}
