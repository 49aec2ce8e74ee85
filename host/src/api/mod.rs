//! HTTP API: routes, login and sessions, JSON errors.
//!
//! [`app`] builds the whole router; every path exists under both
//! `/containerstation/api/v1/` and `/api/v1/`, plus `GET /metrics`.
//! Every error, including axum's own rejections (unknown path, wrong method,
//! body too large) and a panic in a handler, is answered as JSON by
//! [`AppError`]'s shape.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `POST login` (form fields `username`, `password`; a JSON object also works) | `{"username","isAdmin","anonymous":false,"logintime"}` + cookie `CS_SESS_ID` (HttpOnly, SameSite=Strict); `logintime` in the server's local time |
//! | `GET login_refresh` | the same object; the session's expiry moves forward |
//! | `PUT logout` | `{"username":...}` (`null` without a session); the cookie is cleared (idempotent) |
//! | `GET me` | the caller and their effective policy: `{"username","isAdmin","policy":{...}}` |
//! | `POST background/{category}` (JSON body whatever the Content-Type) | the new task, `waiting` |
//! | `GET background/` (`?category=`, `?node=`) | the caller's tasks (an admin's: all), newest first, streamed; `?limit=N` (1 to 1000) one page, `?before=ID` only older tasks |
//! | `DELETE background/` | ids of the caller's finished tasks, deleted |
//! | `DELETE background/{id}` / `DELETE background/{category}` | ids deleted (a numeric segment is an id) |
//! | `GET background/{id}/log` | `{"id", "lines": [{"ts", "level", "message"}], "truncated"}`: the task's log lines, oldest first (the owner or an admin) |
//! | `GET background/events` (`?category=`, `?logs=1`) | Server-Sent Events: `event: task`, `id: <task id>`, `data: <task JSON>` per change; with `?logs=1` also `event: log`, `data: {"id","ts","level","message"}` per line; `event: lagged` if the client fell behind |
//! | `container...` (see [`containers`]) | the synchronous container calls |
//! | `GET system` / `GET system/resource` (see [`system`]) | the host and its engines; the host's CPU and memory use |
//! | `GET system/port/{protocol}/{port}` (see [`ports`]) | `{"used": bool}`: whether a host port is taken |
//! | `GET system/bridge` (see [`bridge`]), `GET sharefolder/` (see [`sharefolder`]), `GET system/report` (see [`report`]), `GET wizard/workspace[/status]` (see [`workspace`]) | the host's adapters; the caller's share folder; a diagnosis archive (admins); the data folder |
//! | `networks...` (see [`networks`]) | the engine's networks: list, inspect, create, remove, prune, connect, disconnect |
//! | `volumes...` (see [`volumes`]) | the engine's volumes: list, inspect, create, remove, prune |
//! | `image...`, `POST container/docker/{id}/commit` (see [`images`]) | local images, registry searches, inspect, tags, remove, commit |
//! | `container/{type}/{id}/all`, `.../autostart/{on,off}`, `.../network/port(s)`, `.../resource/device(s)`, `.../resource/limit`, `.../volume/host`, `GET resource/device` (see [`resources`]) | a container's settings, and changing them |
//! | `apps...` (see [`apps`]) | installed applications: list, one, start/stop/restart, delete |
//! | `catalog...` (see [`catalog`]) | the repository's entries as the app store lists them, and their icons served from here |
//! | `event...` (see [`events`]) | recent task events; waiting for a container's state |
//! | `log...` (see [`audit`]) | the audit log of every state-changing call: read, export as CSV, empty |
//! | `schedules...` (see [`schedules`]) | scheduled tasks: create (cron in a time zone), list, one, pause, resume, delete |
//! | `webhooks...` (see [`webhooks`]) | webhooks: create, list, one, delete; their deliveries with status |
//! | `registry...` (see [`registries`]) | registries: list, add/edit, remove, push targets, ping |
//! | `preference...`, `tls...`, `lxd_registry...` (see [`preferences`]) | the application repository; the rest answers 501 `not_supported` |
//! | `GET openapi.json` (no session) | the OpenAPI 3.1 document (see [`openapi`]) |
//! | `GET /metrics` (no session) | Prometheus text |
//! | `GET /` (no session) | the dashboard (see [`crate::dashboard`]) |
//!
//! [`routes`] is the table the router is built from: each route says who
//! may call it (`login`, `logout` and `/metrics` are public, and why), and
//! every other one answers 401 without a session before its handler runs.
//!
//! A `POST`, `PUT`, `DELETE` or `PATCH` sent by a page of another origin
//! (its `Origin`, or `Sec-Fetch-Site: cross-site|same-site`) is refused
//! with 403 `cross_site` before anything else (see [`origin`]).
//!
//! Error `reason`s: `cross_site` (403), `login_busy` (429: every password
//! check is in use), `too_many_waiting` and `too_many_streams` (429: a
//! per-user cap), `body_timeout` (408), `invalid_json`, `wrong_type` (body not an object/array),
//! `invalid_params` (the plugin's `validate`; the message names the field),
//! `missing_field`/`invalid_form` (login), `bad_credentials`, `not_logged_in`,
//! `too_many_attempts` (429 with `Retry-After`), `not_yours` (403),
//! `admin_only` (403: `DELETE log`), `wait_timeout` (408: `event/wait`),
//! `too_many_waits` (429: a per-user cap of `event/wait`s),
//! `unknown_task`, `unknown_category`, `unknown_container`, `unknown_app`, `unknown_network`, `unknown_volume`, `unknown_path` (404),
//! `runtime_error` (502: the engine refused or failed), `runtime_unavailable`
//! (501: this server has no such runtime), `not_supported` (501: a documented
//! route this server does not serve), `admin_only` (403), `read_only` (409: a
//! registry of the configuration file), `unknown_registry` (404),
//! `method_not_allowed` (405), `conflict` (409), `body_too_large` (413),
//! `plugin_failed` (503: the plugin trapped or ran out of budget in `validate`),
//! `internal` (500; details only in the log).

pub mod apps;
mod around;
pub mod audit;
mod body_read;
pub mod bridge;
pub mod catalog;
pub mod config;
pub mod container_create;
pub mod containers;
pub mod documented;
mod engine_objects;
mod envelope;
pub mod error;
pub mod events;
pub mod extract;
pub mod images;
pub mod listen;
pub mod networks;
pub mod openapi;
mod origin;
mod ports;
pub mod preferences;
pub mod registries;
pub mod report;
pub mod resources;
pub mod routes;
pub mod schedules;
pub mod session;
pub mod sharefolder;
pub mod streams;
pub mod system;
pub mod tasks;
pub mod volumes;
pub mod waiting;
pub mod webhooks;
pub mod workspace;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use error::AppError;

use crate::auth::Auth;
use crate::queue::Queue;
use crate::runtime::Backends;

/// The path prefixes every API route is served under: Container Station
/// 1.x (the seed), 2.x and later, and our own short one.
pub const PREFIXES: [&str; 3] = [
    "/containerstation/api/v1",
    "/container-station/api/v1",
    "/api/v1",
];

/// What every handler can reach: one shared [`Services`], so the clone
/// each request takes is one reference count (the fields' own clones,
/// the cancellation token's lock among them, are not paid per request).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Share `services` with every handler.
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// The task engine.
    pub queue: Arc<Queue>,
    /// The container runtimes, for the synchronous container routes (the
    /// same object the plugins' host calls reach).
    pub runtime: Backends,
    /// Every user's policy (the runtime enforces it too; the API refuses
    /// early what it can see at submit time).
    pub policies: Arc<crate::policy::Policies>,
    /// Users and sessions.
    pub auth: Arc<Auth>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive whole (then 408, and
    /// the connection closes).
    pub body_timeout: std::time::Duration,
    /// The event streams open per user, and their cap.
    pub streams: streams::Streams,
    /// Submits under way per user, for the cap of waiting tasks.
    pub submitting: waiting::Submitting,
    /// Mark the session cookie `Secure`.
    pub secure_cookies: bool,
    /// The audit log, the ring of recent task events, and the waits.
    pub events: events::Events,
    /// Cancelled when the server shuts down (ends the SSE streams).
    pub shutdown: CancellationToken,
    /// The share root, for listing a caller's share folder.
    pub share: crate::runtime::storage::ShareRoot,
    /// The configuration as the diagnosis report shows it (secrets hidden).
    pub config_text: String,
    /// The data folder (`GET wizard/workspace`).
    pub data_dir: std::path::PathBuf,
    /// The API's registries and preferences, and the repository in use.
    pub registries: registries::RegistryServices,
    /// The port of the applications' reverse proxy ([`crate::proxy`]),
    /// `None` when it is off: the application answers name where it serves them.
    pub proxy_port: Option<u16>,
    /// Wakes the scheduler loop when a schedule is created, resumed or deleted.
    pub schedule_wake: crate::timing::Wake,
    /// The configured webhooks, the allowlist of their hosts, the sender's wake-up.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

/// The whole application, testable without a socket (`tower::ServiceExt::oneshot`).
/// Its routes are [`routes::list`].
///
/// The layers around every request wrap the routed router once, as one
/// service. `Router::layer` would wrap each route on its own, and every
/// request would then clone each route's stack of boxed services (about
/// twenty allocations a request).
pub fn app(state: AppState) -> Router {
    let envelope = envelope::Envelope {
        limit: state.max_body_bytes,
        body_timeout: state.body_timeout,
    };
    let limit = envelope.limit;
    let record = audit::Record(state.events.audit.clone());
    let routed = routes::router(&state)
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state);
    // The audit record sees every answer, the envelope's refusals included
    // (a handler that panics leaves no record: the panic unwinds through it).
    let around = tower::ServiceBuilder::new()
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(around::AroundLayer(record))
        .layer(around::AroundLayer(envelope))
        .layer(DefaultBodyLimit::max(limit))
        .service(routed);
    Router::new().fallback_service(around)
}

async fn unknown_path() -> AppError {
    AppError::not_found("unknown_path", "no such path")
}

async fn wrong_method() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this path",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    AppError::internal("a request handler panicked").into_response()
}

/// A header map holding `pairs` in order, for tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&'static str, &'static str)]) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

/// A path segment that does not parse (e.g. invalid percent-encoding): 400.
pub fn path_error(e: PathRejection) -> AppError {
    AppError::bad_request("invalid_path", e.body_text())
}

/// A query string that does not parse: 400.
pub fn query_error(e: QueryRejection) -> AppError {
    AppError::bad_request("invalid_query", e.body_text())
}

/// Map a body-reading failure to an error: 413 past the limit, else 400.
pub fn body_error(e: BytesRejection) -> AppError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(status, "body_too_large", "request body is too large")
    } else {
        AppError::bad_request("invalid_body", "could not read the request body")
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    summary = "Prometheus metrics: tasks by category and state, HTTP answers, plugin calls",
    security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut stored = crate::metrics::Stored::default();
    for c in state.queue.categories() {
        for s in ["waiting", "running", "completed", "error"] {
            stored.tasks.insert((c.name.clone(), s.to_string()), 0);
        }
    }
    // One grouped count in the store, not a scan of every task.
    match state.queue.counts().await {
        Ok(rows) => {
            let now = crate::queue::model::now();
            for row in rows {
                if row.state == crate::queue::TaskState::Waiting {
                    stored
                        .oldest_waiting_age
                        .insert(row.category.clone(), (now - row.oldest_init).max(0) as f64);
                }
                *stored
                    .tasks
                    .entry((row.category, row.state.as_str().to_string()))
                    .or_default() += row.count;
            }
        }
        Err(e) => tracing::warn!("metrics: counting tasks: {e}"),
    }
    let mut resp = Response::new(Body::from(crate::metrics::render(&stored)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod tests;
