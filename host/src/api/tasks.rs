//! `background/...`: submit, list, delete, each task's log, and the SSE
//! stream of task events (with `?logs=1`, of log lines too).

use std::convert::Infallible;
use std::time::Duration;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::extract::Api;
use super::session::CurrentUser;
use super::{body_error, query_error, AppError, AppState};
use crate::queue::{
    DeleteSelector, FindingEvent, LogEvent, LogLine, Page, Queue, QueueError, Task, TaskEvent,
    Viewer,
};

/// `?category=`, `?node=` and `?logs=` of `GET background/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CategoryQuery {
    /// Only tasks of this category (empty means all).
    pub category: Option<String>,
    /// Only tasks of this node (empty means all), when several nodes share the store.
    pub node: Option<String>,
    /// `1` (or `true`): also a `log` event per line the caller's running
    /// tasks log (`{id, ts, level, message}`); `0`, `false` or absent: none.
    #[param(value_type = Option<String>, example = "1")]
    pub logs: Option<String>,
}

impl CategoryQuery {
    /// `?logs=`: whether log lines are wanted.
    fn logs(&self) -> Result<bool, AppError> {
        match self.logs.as_deref() {
            None | Some("" | "0" | "false") => Ok(false),
            Some("1" | "true") => Ok(true),
            Some(other) => Err(AppError::bad_request(
                "invalid_query",
                format!("logs: must be 1 or 0 (true or false), got `{other}`"),
            )),
        }
    }
}

/// The answer of `GET background/{id}/log`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskLogAnswer {
    /// The task.
    pub id: i64,
    /// Its log lines, oldest first: what its plugin logged (SDK logging,
    /// WASI stdout as `info` and stderr as `warn`) and the engine progress
    /// the host relayed for it, secrets masked as in its params.
    pub lines: Vec<LogLine>,
    /// Whether older lines were dropped by the bound (`[queue]
    /// task_log_lines`, `task_log_bytes`).
    pub truncated: bool,
}

/// A filter of a query: absent and empty both mean "all".
fn filter(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Most tasks one page of `GET background/` holds (`?limit=`).
pub const MAX_PAGE: usize = 1000;
/// Tasks read from the store at a time while streaming a whole listing.
const STREAM_PAGE: usize = 1000;

/// The query of `GET background/`: the filters, and the page.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks of this category (empty means all).
    pub category: Option<String>,
    /// Only tasks of this node (empty means all), when several nodes share the store.
    pub node: Option<String>,
    /// One page of at most this many tasks (1 to 1000). Absent: every task.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Only tasks with an id below this one: the next page is `before` the
    /// last id of the previous one.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub before: Option<String>,
}

impl ListQuery {
    /// `?limit=`: 1 to [`MAX_PAGE`]; absent or empty: no page (every task).
    fn limit(&self) -> Result<Option<usize>, AppError> {
        match self.limit.as_deref().filter(|l| !l.is_empty()) {
            None => Ok(None),
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    AppError::bad_request(
                        "invalid_query",
                        format!("limit: must be a whole number from 1 to {MAX_PAGE}, got `{l}`"),
                    )
                }),
        }
    }
    /// `?before=`: a task id (1 or more); absent or empty: from the newest.
    fn before(&self) -> Result<Option<i64>, AppError> {
        match self.before.as_deref().filter(|b| !b.is_empty()) {
            None => Ok(None),
            Some(b) => b
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(Some)
                .ok_or_else(|| {
                    AppError::bad_request(
                        "invalid_query",
                        format!("before: must be a task id (a whole number from 1), got `{b}`"),
                    )
                }),
        }
    }
}

/// Whether `task` runs on `node` (a task of a store of one node runs on it).
fn on_node(task: &Task, node: Option<&str>, queue: &crate::queue::Queue) -> bool {
    match node {
        None => true,
        Some(n) => task.node.as_deref().or(queue.node()).is_none_or(|t| t == n),
    }
}

/// `?node=` of `POST background/{category}`.
#[derive(Debug, Default, Deserialize)]
pub struct SubmitQuery {
    /// The node to run the task (default: the node that accepts it).
    pub node: Option<String>,
}

/// Parse a task body: JSON whatever the Content-Type says; an object or an array.
pub fn parse_params(body: &[u8]) -> Result<serde_json::Value, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::bad_request(
            "invalid_json",
            "request body is empty: send the category's parameters as JSON",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        AppError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    match value {
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => Ok(value),
        other => {
            let kind = match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                _ => "a string",
            };
            Err(AppError::bad_request(
                "wrong_type",
                format!("request body: expected a JSON object or array, got {kind}"),
            ))
        }
    }
}

/// Check a category name from the path before it reaches the queue.
fn check_category(category: &str) -> Result<(), AppError> {
    if crate::user_name::is_name(category, 64) {
        Ok(())
    } else {
        Err(AppError::not_found(
            "unknown_category",
            "unknown category: a category name is letters, digits, `_`, `-` or `.`",
        ))
    }
}

/// `POST background/{category}`.
#[utoipa::path(post, path = "/background/{target}", tag = "tasks",
    summary = "Submit a task of any category",
    description = "The category's params as JSON, whatever the Content-Type says. Each loaded category also has an operation of its own, with its params' schema.",
    params(("target" = String, Path, description = "The category")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses(
        (status = 200, description = "The new task, `waiting`", body = Task),
        (status = 400, description = "Bad params; the message names the field", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "The caller's policy refuses it", body = super::error::ErrorBody),
        (status = 404, description = "Unknown category", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 429, description = "The user has the most tasks waiting that their policy allows (`too_many_waiting`, `limits.waiting_tasks`); nothing was stored", body = super::error::ErrorBody),
        (status = 503, description = "The plugin failed while validating", body = super::error::ErrorBody),
    ))]
pub async fn submit(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(category)): Api<Path<String>>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Task>, AppError> {
    check_category(&category)?;
    let Query(query) = query.map_err(query_error)?;
    let body = body.map_err(body_error)?;
    let mut params = parse_params(&body)?;
    add_defaults(state.queue.canonical(&category), &mut params);
    admit(&state, &user, &category, &params)?;
    let cap = state.policies.of(&user.0.username).waiting_tasks;
    // Counted as under way until the task is stored (or refused).
    let _admitted = match cap {
        Some(cap) => Some(
            state
                .submitting
                .admit(&state.queue, &user.0.username, cap)
                .await?,
        ),
        None => None,
    };
    let node = query.node.as_deref().filter(|n| !n.is_empty());
    let task = state
        .queue
        .submit_to(&user.0.username, &category, &params, node)
        .await?;
    crate::metrics::task_submitted(&task.category);
    Ok(Json(task))
}

/// The params keys Container Station adds to a submitted task when they
/// are missing, as its recorded answers show them: `"binding": {}` for
/// `application`.
pub fn add_defaults(category: &str, params: &mut serde_json::Value) {
    if category == "application" {
        if let Some(object) = params.as_object_mut() {
            object
                .entry("binding")
                .or_insert_with(|| serde_json::json!({}));
        }
    }
}

/// The policy checks that can be made at submit time, for an early 403
/// naming the rule: the category, and the `privileged` and
/// `resource.device` asks of container specs (`create`, `container_import`),
/// and the host ports of `network.port`, read where the create body
/// ([`stevedore_contract::create`]) has them.
/// The runtime guard checks every call again while the task runs.
fn admit(
    state: &AppState,
    user: &CurrentUser,
    category: &str,
    params: &serde_json::Value,
) -> Result<(), AppError> {
    admit_user(state, &user.0.username, category, params)
}

/// [`admit`] for user `user` (a schedule firing as its owner checks them too).
pub(crate) fn admit_user(
    state: &AppState,
    user: &str,
    category: &str,
    params: &serde_json::Value,
) -> Result<(), AppError> {
    use stevedore_contract::create::pointers;
    let policy = state.policies.of(user);
    let forbidden =
        |r: crate::policy::Refused| AppError::new(StatusCode::FORBIDDEN, "denied", r.message);
    policy
        .allows_category(state.queue.canonical(category))
        .map_err(forbidden)?;
    if params
        .pointer(pointers::PRIVILEGED)
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        policy.allows_privileged(true).map_err(forbidden)?;
    }
    let asks_devices = params
        .pointer(pointers::DEVICES)
        .and_then(serde_json::Value::as_array)
        .is_some_and(|d| !d.is_empty());
    if asks_devices && policy.devices.is_empty() {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "denied",
            format!("devices are not allowed for user {}", policy.user),
        ));
    }
    // `network.port`: `[[host, container, protocol], ...]`.
    let ports = params
        .pointer(pointers::PORTS)
        .and_then(serde_json::Value::as_array);
    for (i, entry) in ports.into_iter().flatten().enumerate() {
        let host = entry.get(0).and_then(serde_json::Value::as_u64);
        if let Some(port) = host.and_then(|p| u16::try_from(p).ok()) {
            policy.allows_host_port(i, port).map_err(forbidden)?;
        }
    }
    Ok(())
}

/// `GET background/` (`?category=`, `?node=`, `?limit=`, `?before=`).
#[utoipa::path(get, path = "/background/", tag = "tasks",
    summary = "The caller's tasks (an admin's: everyone's), newest first",
    description = "Every task by default, streamed. `?limit=N` answers one page of at most N tasks, `?before=ID` only tasks older than task ID; the next page is `before` the last id of a page, and an empty page is the end.",
    params(ListQuery),
    responses(
        (status = 200, description = "Tasks, newest first", body = Vec<Task>),
        (status = 400, description = "The query does not parse, or `limit` or `before` is out of range; the message names the field", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<ListQuery>>,
) -> Result<Response, AppError> {
    let (limit, before) = (query.limit()?, query.before()?);
    let viewer = user.viewer();
    let (category, node) = (filter(&query.category), filter(&query.node));
    if let Some(limit) = limit {
        let page = Page { before, limit };
        let tasks = state.queue.list_page(&viewer, category, node, page).await?;
        return Ok(Json(tasks).into_response());
    }
    // Every task, streamed a page at a time: memory holds one page, not
    // the whole list and then its JSON. The first page is read before the
    // answer starts, so a failing store is still a JSON error.
    let page = Page {
        before,
        limit: STREAM_PAGE,
    };
    let first = state.queue.list_page(&viewer, category, node, page).await?;
    let listing = Listing {
        queue: state.queue.clone(),
        viewer,
        category: category.map(str::to_string),
        node: node.map(str::to_string),
        next: Next::Page(first),
        started: false,
    };
    let body = Body::from_stream(futures::stream::unfold(listing, Listing::chunk));
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// A whole listing on its way out: the JSON array `Json(Vec<Task>)` would
/// write, one chunk per page read.
struct Listing {
    queue: Arc<Queue>,
    viewer: Viewer,
    category: Option<String>,
    node: Option<String>,
    next: Next,
    /// Whether `[` and a task went out already (the next one needs a `,`).
    started: bool,
}

enum Next {
    /// A page read, to write.
    Page(Vec<Task>),
    /// Read the page before this id.
    Before(i64),
    /// The array is closed.
    End,
}

impl Listing {
    /// The next chunk of the body, and the listing after it.
    async fn chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Listing)> {
        let page = match std::mem::replace(&mut self.next, Next::End) {
            Next::Page(page) => page,
            Next::Before(id) => {
                let page = Page {
                    before: Some(id),
                    limit: STREAM_PAGE,
                };
                match self
                    .queue
                    .list_page(
                        &self.viewer,
                        self.category.as_deref(),
                        self.node.as_deref(),
                        page,
                    )
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        // The status is sent: cut the body short, so the
                        // client sees an error and not a shorter list.
                        tracing::error!(error = %e, "listing tasks failed mid-answer");
                        return Some((Err(std::io::Error::other(e.to_string())), self));
                    }
                }
            }
            Next::End => return None,
        };
        let mut buf = Vec::with_capacity(page.len() * 320 + 2);
        if !self.started {
            buf.push(b'[');
        }
        for task in &page {
            if self.started {
                buf.push(b',');
            }
            self.started = true;
            if let Err(e) = serde_json::to_writer(&mut buf, task) {
                return Some((Err(std::io::Error::other(e)), self));
            }
        }
        match page.last() {
            Some(last) if page.len() == STREAM_PAGE => self.next = Next::Before(last.id),
            // The last page (short, or empty after a full one): close the array.
            _ => buf.push(b']'),
        }
        Some((Ok(Bytes::from(buf)), self))
    }
}

/// `DELETE background/`: every finished task the caller may see.
#[utoipa::path(delete, path = "/background/", tag = "tasks",
    summary = "Delete every finished task the caller may see",
    responses(
        (status = 200, description = "The ids deleted", body = Vec<i64>),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn delete_finished(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<i64>>, AppError> {
    let ids = state
        .queue
        .delete(&user.viewer(), DeleteSelector::AllFinished)
        .await?;
    Ok(Json(ids))
}

/// `DELETE background/{id_or_category}`: a numeric segment is a task id, anything else a category.
#[utoipa::path(delete, path = "/background/{target}", tag = "tasks",
    summary = "Delete one task by id, or the finished tasks of a category",
    description = "A numeric segment is a task id, anything else a category. A waiting task is cancelled; a running one only if `deletable` (else 409).",
    params(("target" = String, Path, description = "A task id, or a category name")),
    responses(
        (status = 200, description = "The ids deleted", body = Vec<i64>),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's task", body = super::error::ErrorBody),
        (status = 404, description = "No such task", body = super::error::ErrorBody),
        (status = 409, description = "The task runs and is not deletable", body = super::error::ErrorBody),
    ))]
pub async fn delete_one(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(target)): Api<Path<String>>,
) -> Result<Json<Vec<i64>>, AppError> {
    let selector = selector_of(&target)?;
    let viewer = user.viewer();
    match state.queue.delete(&viewer, selector).await {
        Ok(ids) => Ok(Json(ids)),
        Err(e) => Err(not_yours_or(&state, &viewer, e).await),
    }
}

/// `error` as the answer, except that another user's task, which the
/// queue calls not found for a user, is 403 `not_yours` (the contract),
/// not 404.
async fn not_yours_or(state: &AppState, viewer: &Viewer, error: QueueError) -> AppError {
    match error {
        QueueError::NotFound(id) if !viewer.is_admin => {
            let admin = Viewer {
                user: String::new(),
                is_admin: true,
            };
            match state.queue.get(&admin, id).await {
                Ok(_) => AppError::new(
                    StatusCode::FORBIDDEN,
                    "not_yours",
                    format!("task {id} belongs to another user"),
                ),
                Err(_) => QueueError::NotFound(id).into(),
            }
        }
        e => e.into(),
    }
}

/// `GET background/{id}/log`: the task's log lines.
#[utoipa::path(get, path = "/background/{target}/log", tag = "tasks",
    summary = "One task's log lines, oldest first",
    description = "What the task's plugin logged (its SDK logging; WASI stdout as `info`, stderr as `warn`) and the engine progress the host relayed for it (a line per new detail: pull layers, compose steps), secrets masked as in its params. Each task keeps its last 1,000 lines or 256 KiB (`[queue] task_log_lines`, `task_log_bytes`); `truncated` says older lines were dropped. A task running on this node shows every line so far; one running on another node, its lines as of that node's last write (at most 250 ms behind). Deleted with the task.",
    params(("target" = i64, Path, description = "The task id")),
    responses(
        (status = 200, description = "The task's log", body = TaskLogAnswer),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's task (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "No such task (`unknown_task`)", body = super::error::ErrorBody),
    ))]
pub async fn log(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(target)): Api<Path<String>>,
) -> Result<Json<TaskLogAnswer>, AppError> {
    let DeleteSelector::Id(id) = selector_of(&target).unwrap_or(DeleteSelector::AllFinished) else {
        return Err(AppError::not_found(
            "unknown_task",
            format!("task {target} not found: a task id is a whole number"),
        ));
    };
    let viewer = user.viewer();
    match state.queue.log(&viewer, id).await {
        Ok(log) => Ok(Json(TaskLogAnswer {
            id,
            lines: log.lines,
            truncated: log.truncated,
        })),
        Err(e) => Err(not_yours_or(&state, &viewer, e).await),
    }
}

/// Map a path segment to a [`DeleteSelector`].
pub fn selector_of(segment: &str) -> Result<DeleteSelector, AppError> {
    if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
        let id: i64 = segment.parse().map_err(|_| {
            AppError::not_found("unknown_task", format!("task {segment} not found"))
        })?;
        Ok(DeleteSelector::Id(id))
    } else {
        check_category(segment)?;
        Ok(DeleteSelector::Category(segment.to_string()))
    }
}

/// `GET background/events`: Server-Sent Events, one `task` event (the task
/// object as JSON, `id:` the task id) per change of a task the caller may
/// see, optionally of one category; with `?logs=1` also one `log` event
/// per line those tasks log. Ends when the server shuts down or the
/// session ends; at most [`super::streams::Streams`]' cap per user.
#[utoipa::path(get, path = "/background/events", tag = "tasks",
    summary = "Server-Sent Events: one `task` event per change of a task the caller may see",
    description = "`event: task`, `id:` the task id, `data:` the task object as JSON; `event: lagged` (`{\"missed\": n}`) when the client fell behind. With `?logs=1`, also `event: log`, `id:` the task id, `data:` `{\"id\", \"ts\", \"level\", \"message\"}` per line a task running on this node logs (secrets masked; the whole log stays at `GET background/{id}/log`). To the task's owner alone, what a task running on this node finds: `event: update_available`, `data:` `{\"id\", \"kind\": \"update_available\", \"image\", \"containers\", \"remote_digest\"}` (`image_check`). The stream stays open until the session ends.",
    params(CategoryQuery),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "`logs` is not 1 or 0 (`invalid_query`)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 429, description = "The user has the most event streams open already (`too_many_streams`)", body = super::error::ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<CategoryQuery>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let with_logs = query.logs()?;
    // An alias and its category are one filter.
    let category = filter(&query.category).map(|c| state.queue.names_of(c));
    let viewer = user.viewer();
    let node = filter(&query.node).map(str::to_string);
    let queue = state.queue.clone();
    let slot = state.streams.open(&user.0.username, &user.0.session_id)?;
    let ended = stream_end(&state, user.0.session_id.clone(), slot);
    // Subscribed before the task events: a line is never missed for a
    // task whose `running` event was seen.
    let logs = with_logs.then(|| {
        let (viewer, category) = (viewer.clone(), category.clone());
        // Lines come from this node's runs only.
        let here = node
            .as_deref()
            .is_none_or(|n| state.queue.node().is_none_or(|me| me == n));
        BroadcastStream::new(state.queue.subscribe_logs()).filter_map(move |item| {
            let out = match item {
                Ok(ev) => {
                    let visible = viewer.is_admin || ev.user == viewer.user;
                    let wanted = here
                        && category
                            .as_ref()
                            .is_none_or(|names| names.contains(&ev.category));
                    (visible && wanted).then(|| log_event(&ev)).flatten()
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => Some(
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{n}}}")),
                ),
            };
            std::future::ready(out.map(Ok::<_, Infallible>))
        })
    });
    // What tasks find goes to their owner alone, whatever the category filter.
    let owner = viewer.user.clone();
    let findings = BroadcastStream::new(state.queue.subscribe_findings()).filter_map(move |item| {
        let out = match item {
            Ok(ev) if ev.user == owner => finding_event(&ev),
            _ => None,
        };
        std::future::ready(out.map(Ok::<_, Infallible>))
    });
    let rx = state.queue.subscribe();
    let stream = BroadcastStream::new(rx).filter_map(move |item| {
        let out = match item {
            Ok(ev) => {
                let t: &Task = &ev.task;
                let visible = viewer.is_admin || t.user == viewer.user;
                let wanted = category
                    .as_ref()
                    .is_none_or(|names| names.contains(&t.category))
                    && on_node(t, node.as_deref(), &queue);
                (visible && wanted).then(|| sse_event(&ev)).flatten()
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(
                Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}")),
            ),
        };
        std::future::ready(out.map(Ok::<_, Infallible>))
    });
    let stream = futures::stream::select(findings, stream);
    let stream = match logs {
        // Lines first: a run's lines are sent before its end is, so its
        // `completed` event never overtakes them.
        Some(logs) => futures::stream::select_with_strategy(logs, stream, |_: &mut ()| {
            futures::stream::PollNext::Left
        })
        .boxed(),
        None => stream.boxed(),
    }
    .take_until(ended);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One event of what a task found (`event: update_available`, `id:` the
/// task id, `data:` `{"id", "kind", ...}` with the finding's fields).
fn finding_event(ev: &FindingEvent) -> Option<Event> {
    #[derive(serde::Serialize)]
    struct Found<'a> {
        id: i64,
        #[serde(flatten)]
        finding: &'a crate::queue::Finding,
    }
    Event::default()
        .id(ev.id.to_string())
        .event(ev.finding.kind())
        .json_data(Found {
            id: ev.id,
            finding: &ev.finding,
        })
        .ok()
}

/// One `log` event of `GET background/events?logs=1`.
fn log_event(ev: &LogEvent) -> Option<Event> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        id: i64,
        #[serde(flatten)]
        line: &'a LogLine,
    }
    Event::default()
        .id(ev.id.to_string())
        .event("log")
        .json_data(Line {
            id: ev.id,
            line: &ev.line,
        })
        .ok()
}

/// How often an open event stream checks that its session still lives
/// (it may have expired, or logged out on another node).
const SESSION_RECHECK: Duration = Duration::from_secs(15);

/// Resolves when an event stream (or a followed container log) must end: the server shuts down, its
/// session logs out here, or its session is found ended at a recheck. It
/// holds the stream's `slot` until then (or until the stream is dropped).
pub(super) fn stream_end(
    state: &AppState,
    session: String,
    slot: super::streams::StreamSlot,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let shutdown = state.shutdown.clone();
    let auth = state.auth.clone();
    async move {
        let mut recheck = tokio::time::interval(SESSION_RECHECK);
        recheck.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = slot.ended().cancelled() => break,
                _ = recheck.tick() => {
                    if !auth.is_live(&session).await {
                        break;
                    }
                }
            }
        }
    }
}

/// One event of `GET background/events`: `task` with the task as it is
/// now, or `deleted` with its id (and category) once it is gone.
fn sse_event(ev: &TaskEvent) -> Option<Event> {
    let t: &Task = &ev.task;
    let event = Event::default().id(t.id.to_string());
    if ev.deleted {
        event
            .event("deleted")
            .json_data(serde_json::json!({ "id": t.id, "category": t.category }))
            .ok()
    } else {
        event.event("task").json_data(t).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_must_be_json_object_or_array() {
        assert!(parse_params(br#"{"a":1}"#).is_ok());
        assert!(parse_params(br#" [ {"id":"x"} ] "#).is_ok());
        assert_eq!(parse_params(b"").unwrap_err().reason, "invalid_json");
        assert_eq!(parse_params(b"{nope").unwrap_err().reason, "invalid_json");
        assert_eq!(parse_params(b"42").unwrap_err().reason, "wrong_type");
        assert_eq!(parse_params(b"\"s\"").unwrap_err().reason, "wrong_type");
    }

    #[test]
    fn application_params_get_an_empty_binding() {
        let mut p = serde_json::json!({"template": "joomla", "name": "joomla"});
        add_defaults("application", &mut p);
        assert_eq!(p["binding"], serde_json::json!({}));
        let mut given = serde_json::json!({"template": "t", "binding": {"a": 1}});
        add_defaults("application", &mut given);
        assert_eq!(given["binding"], serde_json::json!({"a": 1}));
        let mut other = serde_json::json!({"image": "busybox"});
        add_defaults("create", &mut other);
        assert!(other.get("binding").is_none());
    }

    #[test]
    fn numeric_segments_are_ids() {
        assert_eq!(selector_of("12").unwrap(), DeleteSelector::Id(12));
        assert_eq!(
            selector_of("image_remove").unwrap(),
            DeleteSelector::Category("image_remove".into())
        );
        assert_eq!(
            selector_of("-1").unwrap(),
            DeleteSelector::Category("-1".into())
        );
        assert_eq!(selector_of("99999999999999999999").unwrap_err().status, 404);
        assert_eq!(selector_of("a b").unwrap_err().status, 404);
    }
}
