//! The admin API: HTTP/1.1 + JSON on its own listener.
//!
//! | method and path      | effect                                                        |
//! |----------------------|---------------------------------------------------------------|
//! | `GET /status`        | version, split, previous split, pools and backends            |
//! | `PUT /split`         | body `{"blue": 0, "green": 100}`; optional `If-Match: <ver>`  |
//! | `POST /switch`       | body `{"to": "green"}`: 100 % to that pool                    |
//! | `POST /rollback`     | restore the previous split                                    |
//! | `GET /history`       | the deployment log, newest first; `?limit=N` (default 100)    |
//! | `GET /replicas`      | with shared state: every replica and the version it applied   |
//! | `POST /backends/{pool}/{addr}/drain` | no new requests to that backend; in-flight finish |
//! | `POST /backends/{pool}/{addr}/undrain` | undo a drain                                  |
//! | `GET /healthz`       | the proxy's own liveness                                      |
//! | `GET /metrics`       | Prometheus text format                                        |
//! | `GET /ui`            | the dashboard (`GET /` redirects there)                       |
//! | `GET /events`        | the dashboard's live stream (server-sent events)              |
//!
//! Every response carries `x-switchback-version`. Writes need `Authorization: Bearer <token>`
//! when `[admin] token-file` is set. Errors are `{"error": "..."}` with a 4xx/5xx status.

pub use crate::data::tokens as auth;
mod drain;
mod events;
mod gate;
mod listener;
mod parse;
mod replicas;
mod rollouts;
mod token_file;
mod ui;
mod views;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use crate::config::defaults::{HISTORY_LIMIT, HISTORY_MAX_LIMIT, MAX_ADMIN_BODY};
use crate::config::persist::PersistError;
use crate::control::{Control, ControlError};
use crate::data::tokens::Tokens;
pub use listener::{serve, serve_once_free};
pub use parse::fuzzing;
use parse::{if_match, parse_request};
pub use token_file::{legacy_token_warning, token_path};

/// The header carrying the live version on every admin response.
pub const VERSION_HEADER: &str = "x-switchback-version";

/// Most admin connections open at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 512;

/// Time an admin client has to send a request head, and longest idle keep-alive wait.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// An admin response's body: a whole one, or an event stream.
pub type AdminBody = Either<Full<Bytes>, events::Stream>;

/// An admin answer before the version header is added.
struct Answer(StatusCode, Value);

fn fail(status: StatusCode, message: impl AsRef<str>) -> Answer {
    Answer(status, views::error(message.as_ref()))
}

async fn handle(
    req: Request<Incoming>,
    local: SocketAddr,
    control: &std::sync::Arc<Control>,
    events: &std::sync::Arc<events::Events>,
) -> Response<AdminBody> {
    let endpoint = endpoint_label(req.uri().path());
    let allow = allowed_methods(req.uri().path());
    let (parts, body) = req.into_parts();
    let gate = gate::check(&parts, local, &control.live().load().config.admin);
    let req = Request::from_parts(parts, body);
    let json = |Answer(status, body): Answer| {
        let body = Either::Left(Full::from(body.to_string() + "\n"));
        (status, "application/json", body)
    };
    let get = req.method() == Method::GET;
    let (status, content_type, body) = match (gate, req.uri().path()) {
        (Err((status, message)), _) => json(fail(status, message)),
        (Ok(()), "/metrics") if get => {
            let text = Full::from(control.metrics().render());
            (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                Either::Left(text),
            )
        }
        (Ok(()), "/") if get => (
            StatusCode::FOUND,
            "text/plain",
            Either::Left(Full::default()),
        ),
        (Ok(()), "/events") if get => match events.open(control.clone()) {
            Some(stream) => (StatusCode::OK, "text/event-stream", Either::Right(stream)),
            None => json(fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} event streams are open; try again later",
                    events::MAX_STREAMS
                ),
            )),
        },
        (Ok(()), path) => match ui::file(path).filter(|_| get) {
            Some((content_type, text)) => {
                (StatusCode::OK, content_type, Either::Left(Full::from(text)))
            }
            None => json(route(req, control).await),
        },
    };
    control.metrics().admin_request(endpoint, status.as_u16());
    let version = control.live().load().version;
    let mut response = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header(VERSION_HEADER, version);
    for (name, value) in ui::SECURITY_HEADERS {
        response = response.header(name, value);
    }
    match status {
        StatusCode::METHOD_NOT_ALLOWED => response = response.header("allow", allow), // RFC 9110 §15.5.6
        StatusCode::SERVICE_UNAVAILABLE => response = response.header("retry-after", "1"),
        StatusCode::FOUND => response = response.header("location", "/ui"),
        _ => {}
    }
    if content_type == "text/event-stream" {
        response = response.header("cache-control", "no-store");
    }
    response.body(body).expect("static headers are valid")
}

/// The methods a path answers, for `Allow` on a 405.
fn allowed_methods(path: &str) -> &'static str {
    if let Some(allowed) = rollouts::allowed(path) {
        return allowed;
    }
    match path {
        "/status" | "/history" | "/healthz" | "/metrics" | "/replicas" | "/events" | "/" => "GET",
        p if ui::file(p).is_some() => "GET",
        "/split" => "PUT",
        _ => "POST",
    }
}

/// A bounded label for the admin metrics: known paths, else `other`.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/status" => "/status",
        "/split" => "/split",
        "/switch" => "/switch",
        "/rollback" => "/rollback",
        "/history" => "/history",
        "/replicas" => "/replicas",
        "/healthz" => "/healthz",
        "/metrics" => "/metrics",
        "/events" => "/events",
        "/" => "/",
        p if ui::file(p).is_some() => "/ui",
        "/rollouts" => "/rollouts",
        "/rollouts/current" => "/rollouts/current",
        p if rollouts::action_of(p).is_some() => "/rollouts/current/action",
        p if drain::parse(p).is_some() => "/backends/drain",
        _ => "other",
    }
}

async fn route(req: Request<Incoming>, control: &Control) -> Answer {
    let req = match rollouts::route(req, control).await {
        Ok(answer) => return answer,
        Err(req) => req,
    };
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/healthz") => Answer(StatusCode::OK, serde_json::json!({"status": "ok"})),
        (Method::GET, "/status") => Answer(StatusCode::OK, views::status(&control.status().await)),
        (Method::GET, "/history") => history(req.uri().query(), control).await,
        (Method::GET, "/replicas") => replicas::list(control).await,
        (Method::PUT, "/split") | (Method::POST, "/switch") | (Method::POST, "/rollback") => {
            write(req, control).await
        }
        (
            _,
            "/healthz" | "/status" | "/history" | "/split" | "/switch" | "/rollback" | "/metrics"
            | "/replicas" | "/events" | "/",
        ) => fail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        (_, p) if ui::file(p).is_some() => fail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        (method, p) => match drain::parse(p) {
            Some((pool, addr, drained)) if method == Method::POST => {
                match authorize(&req, control).await {
                    Ok(actor) => drain::set(control, &actor, &pool, &addr, drained).await,
                    Err(answer) => answer,
                }
            }
            Some(_) => fail(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            ),
            None => fail(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
        },
    }
}

async fn history(query: Option<&str>, control: &Control) -> Answer {
    let limit = match query_param(query, "limit").map(str::parse::<usize>) {
        None => HISTORY_LIMIT,
        Some(Ok(n)) if n <= HISTORY_MAX_LIMIT => n,
        Some(_) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("limit must be a whole number from 0 to {HISTORY_MAX_LIMIT}"),
            )
        }
    };
    if let Some(shared) = control.shared().filter(|_| limit > 0) {
        // The shared log holds every replica's entries; this replica's file is the fallback.
        match shared.history(limit).await {
            Ok(newest_first) => return Answer(StatusCode::OK, serde_json::json!(newest_first)),
            Err(e) => tracing::warn!(error = %e, "history from this replica's log only"),
        }
    }
    match control.audit().newest(limit) {
        Ok(newest_first) => Answer(StatusCode::OK, serde_json::json!(newest_first)),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn write(req: Request<Incoming>, control: &Control) -> Answer {
    let actor = match authorize(&req, control).await {
        Ok(actor) => actor,
        Err(answer) => return answer,
    };
    let if_match = match if_match(&req) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let path = req.uri().path().to_string();
    let wait_all = match query_param(req.uri().query(), "wait") {
        None => false,
        Some("all") => true,
        Some(other) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("wait={other:?} is not known; the one value is wait=all"),
            )
        }
    };
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let request = match parse_request(&path, &body) {
        Ok(request) => request,
        Err(message) => {
            control
                .reject(&actor, &format!("{} refused: {message}", &path[1..]))
                .await;
            return fail(StatusCode::BAD_REQUEST, message);
        }
    };
    let applied = match control.change(&actor, request, if_match).await {
        Ok(applied) => applied,
        Err(e) => return fail(status_of(&e), e.to_string()),
    };
    let mut body = views::applied(&applied);
    if applied.local {
        body["local"] = true.into();
        body["message"] = "the shared state is unreachable: the rollback is live on this replica only, and is written to the shared state when it answers again".into();
        return Answer(StatusCode::ACCEPTED, body);
    }
    if !wait_all {
        return Answer(StatusCode::OK, body);
    }
    match replicas::wait_all(control, applied.version).await {
        Ok(applied_on) => {
            body["replicas"] = applied_on.into();
            Answer(StatusCode::OK, body)
        }
        Err(behind) => {
            body["behind"] = behind.into();
            body["message"] = "accepted; some replicas had not applied it within 5 s".into();
            Answer(StatusCode::ACCEPTED, body)
        }
    }
}

/// The body, up to [`MAX_ADMIN_BODY`] bytes.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Answer> {
    match Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_ADMIN_BODY} bytes"),
        )),
    }
}

fn status_of(error: &ControlError) -> StatusCode {
    match error {
        ControlError::Stale { .. } => StatusCode::PRECONDITION_FAILED,
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlError::NoPrevious | ControlError::PendingEdit(_) | ControlError::Conflict(_) => {
            StatusCode::CONFLICT
        }
        ControlError::Retired | ControlError::Unavailable(_) | ControlError::Moved => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ControlError::Persist(PersistError::Changed { .. }) => StatusCode::CONFLICT,
        ControlError::Persist(_) | ControlError::Audit(_) | ControlError::AppliedUnrecorded(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The actor for a write: the token's name, or `admin` when no token file is configured.
async fn authorize(req: &Request<Incoming>, control: &Control) -> Result<String, Answer> {
    let config = control.status().await.snapshot.config.clone();
    let Some(path) = token_path(control.config_path(), &config) else {
        return Ok("admin".into());
    };
    let tokens = Tokens::load(&path).map_err(|e| {
        tracing::error!(error = %e, "admin token file unusable; refusing writes");
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the admin token file is unusable; see the proxy's log",
        )
    })?;
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .ok_or_else(|| {
            fail(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer <token>",
            )
        })?;
    tokens
        .identify(presented)
        .map(str::to_string)
        .ok_or_else(|| fail(StatusCode::UNAUTHORIZED, "invalid token"))
}
