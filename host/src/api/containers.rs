//! `container...`: the synchronous container calls that Container Station
//! clients make around background tasks (the seed's examples stop and
//! delete a container before they create it again). They are host routes,
//! not plugins, and go through the same [`crate::runtime::Backends`] as the plugins do.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET container` | every container of every runtime, sorted by name: `[{id, name, image, imageID, state, type, tcpPort, project, projectPath, networkMode, externalIP, ipaddress, cpu, memory, rx, tx}]` (LXC entries have no `imageID`, `project`, `projectPath`, `networkMode`, `externalIP`; stopped ones no `ipaddress`, `cpu`, `memory`, `rx`, `tx`) |
//! | `GET container/docker/getid/{name}` | the bare id as `text/plain` (the shell pastes it into a URL) |
//! | `GET container/{type}/{id}` | the container's entry |
//! | `GET container/{type}/{id}/inspect` | the runtime's inspect JSON |
//! | `GET container/{type}/{id}/logs` (`?tail=N`, default 100) | `{"logs": "...", "tail": N}`: Docker's stdout and stderr, LXC's console log |
//! | `GET container/{type}/{id}/logs?follow=1` (`&tail=N`) | `text/plain`, streamed: the last N lines, then each line as it is written, until the container stops, the client goes away, the session ends or the server stops; at most 8 per user (429 `too_many_followers`) |
//! | `PUT container/{type}/{id}/{start,stop,restart}` | the entry after the change |
//! | `DELETE container/{type}/{id}` (`?remove_volumes=true`) | `{}`; a running container is stopped first |

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::extract::Api;
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::queue::{LogLevel, Reporter};
use crate::runtime::{
    CallContext, ContainerEntry, ContainerLogs, ContainerRef, ContainerState, DeleteContainer,
    Error as RtError, RtResult, RuntimeKind, StopContainer, UsageQuery, STOP_TIMEOUT_SECS,
};

/// Progress of a synchronous call has no task to go to: it is logged.
struct LogReporter;

impl Reporter for LogReporter {
    fn progress(&self, percent: i32, detail: &str) {
        tracing::debug!(percent, detail, "container call");
    }
    fn log(&self, level: LogLevel, message: &str) {
        tracing::debug!(?level, message, "container call");
    }
}

pub(crate) fn context(user: &CurrentUser) -> CallContext {
    CallContext {
        task_id: 0,
        user: user.0.username.clone(),
        cancel: CancellationToken::new(),
        reporter: Arc::new(LogReporter),
    }
}

/// A runtime error as an API error: the variant picks the status, the
/// runtime's message is shown (it names the container, never a secret),
/// except for a failure of the host's own (`other`: a file it could not
/// read or write), which is logged and answered 500.
pub fn runtime_error(e: RtError) -> AppError {
    match e {
        RtError::InvalidParams(m) => AppError::bad_request("invalid_params", m),
        RtError::NotFound(m) => AppError::not_found("unknown_container", m),
        RtError::Conflict(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
        RtError::Denied(m) => AppError::new(StatusCode::FORBIDDEN, "denied", m),
        RtError::Cancelled => AppError::new(StatusCode::CONFLICT, "cancelled", "cancelled"),
        RtError::Runtime(m) => AppError::new(StatusCode::BAD_GATEWAY, "runtime_error", m),
        RtError::Unsupported(m) => {
            AppError::new(StatusCode::NOT_IMPLEMENTED, "runtime_unavailable", m)
        }
        RtError::Other(m) => AppError::internal(m),
    }
}

/// The runtime a `{type}` segment names.
pub fn runtime_kind(segment: &str) -> Result<RuntimeKind, AppError> {
    match segment {
        "docker" => Ok(RuntimeKind::Docker),
        "lxc" => Ok(RuntimeKind::Lxc),
        other => Err(AppError::bad_request(
            "invalid_params",
            format!(
                "type: must be \"docker\" or \"lxc\", got `{}`",
                short(other)
            ),
        )),
    }
}

/// Check a container id or name from the path: what Docker and LXC accept
/// as names, plus hex ids; nothing that could change an engine URL.
pub fn check_container(id: &str) -> Result<(), AppError> {
    let ok = crate::user_name::is_name(id, 128) && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "invalid_params",
            format!(
                "id: `{}` is not a container id or name (letters, digits, `_`, `.`, `-`)",
                short(id)
            ),
        ))
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

fn target(kind: &str, id: &str) -> Result<(RuntimeKind, String), AppError> {
    let kind = runtime_kind(kind)?;
    check_container(id)?;
    Ok((kind, id.to_string()))
}

/// The `{type}/{id}` segments of a container's path, checked: as an
/// extractor it answers 400 for a bad segment, and in `params(...)` it
/// documents both segments.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct Target {
    /// `docker` or `lxc`
    #[param(rename = "type", value_type = String)]
    pub kind: RuntimeKind,
    /// Container id, 12+ character id prefix, or name
    pub id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Api(Path((kind, id))) =
            Api::<Path<(String, String)>>::from_request_parts(parts, state).await?;
        let (kind, id) = target(&kind, &id)?;
        Ok(Target { kind, id })
    }
}

/// The entries of `kind` with one resource sample of each running one.
async fn listed(
    state: &AppState,
    cx: &CallContext,
    kind: RuntimeKind,
) -> RtResult<Vec<ContainerEntry>> {
    let mut entries = state.runtime.containers.container_list(cx, kind).await?;
    with_usage(state, cx, kind, &mut entries).await;
    Ok(entries)
}

/// Fill in the usage of the running ones of `entries` (of runtime `kind`)
/// from one concurrent sample; a sample that failed shows zeros.
async fn with_usage(
    state: &AppState,
    cx: &CallContext,
    kind: RuntimeKind,
    entries: &mut [ContainerEntry],
) {
    let running: Vec<String> = entries
        .iter()
        .filter(|e| e.state == ContainerState::Running)
        .map(|e| e.id.clone())
        .collect();
    if running.is_empty() {
        return;
    }
    let usage = match state
        .runtime
        .containers
        .container_usage(
            cx,
            UsageQuery {
                kind,
                containers: running,
            },
        )
        .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(runtime = crate::runtime::kind_name(kind), error = %e.message(), "sampling containers");
            Default::default()
        }
    };
    for e in entries.iter_mut() {
        e.set_usage(usage.get(&e.id).copied());
    }
}

/// The entry of container `id` (an id, a 12+ character id prefix, or a
/// name) of runtime `kind`.
pub(crate) async fn entry_of(
    state: &AppState,
    cx: &CallContext,
    kind: RuntimeKind,
    id: String,
) -> Result<ContainerEntry, AppError> {
    state
        .runtime
        .containers
        .container_entry(cx, &ContainerRef::new(kind, id))
        .await
        .map_err(runtime_error)
}

/// [`entry_of`], with a resource sample when the container runs.
async fn sampled_entry_of(
    state: &AppState,
    cx: &CallContext,
    kind: RuntimeKind,
    id: String,
) -> Result<ContainerEntry, AppError> {
    let mut entries = [entry_of(state, cx, kind, id).await?];
    with_usage(state, cx, kind, &mut entries).await;
    let [entry] = entries;
    Ok(entry)
}

/// `GET container`: every container of Docker and LXC (asked at once),
/// sorted by name. A runtime that cannot be asked (no `lxc` on this host,
/// no engine) is left out and logged, as long as another one answered.
#[utoipa::path(get, path = "/container", tag = "containers",
    summary = "Every container the caller may see, sorted by name",
    responses(
        (status = 200, description = "The containers", body = Vec<ContainerEntry>),
        super::error::RuntimeErrors,
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<ContainerEntry>>, AppError> {
    let cx = context(&user);
    let (docker, lxc) = tokio::join!(
        listed(&state, &cx, RuntimeKind::Docker),
        listed(&state, &cx, RuntimeKind::Lxc)
    );
    let mut all = Vec::new();
    let mut first_error = None;
    let mut answered = false;
    for (kind, answer) in [(RuntimeKind::Docker, docker), (RuntimeKind::Lxc, lxc)] {
        match answer {
            Ok(entries) => {
                answered = true;
                all.extend(entries);
            }
            Err(e) => {
                tracing::debug!(runtime = crate::runtime::kind_name(kind), error = %e.message(), "listing containers");
                first_error.get_or_insert(e);
            }
        }
    }
    match (answered, first_error) {
        (false, Some(e)) => Err(runtime_error(e)),
        _ => {
            all.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.kind.cmp(b.kind)));
            Ok(Json(all))
        }
    }
}

/// `GET container/docker/getid/{name}`: the bare id, as plain text.
#[utoipa::path(get, path = "/container/docker/getid/{name}", tag = "containers",
    summary = "The bare id of a Docker container, as plain text",
    params(("name" = String, Path, description = "Container name")),
    responses(
        (status = 200, description = "The id", content_type = "text/plain", body = String),
        super::error::RuntimeErrors,
    ))]
pub async fn get_id(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
) -> Result<Response, AppError> {
    check_container(&name)?;
    let entry = entry_of(&state, &context(&user), RuntimeKind::Docker, name).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        entry.id,
    )
        .into_response())
}

/// `GET container/{type}/{id}`: the container's entry.
#[utoipa::path(get, path = "/container/{type}/{id}", tag = "containers",
    summary = "One container's entry",
    params(Target),
    responses(
        (status = 200, description = "The entry", body = ContainerEntry),
        super::error::RuntimeErrors,
    ))]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
) -> Result<Json<ContainerEntry>, AppError> {
    let cx = context(&user);
    Ok(Json(sampled_entry_of(&state, &cx, kind, id).await?))
}

/// `GET container/{type}/{id}/inspect`: the runtime's own inspect JSON.
#[utoipa::path(get, path = "/container/{type}/{id}/inspect", tag = "containers",
    summary = "The runtime's own inspect JSON",
    params(Target),
    responses(
        (status = 200, description = "The inspect data", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn inspect(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
) -> Result<Response, AppError> {
    let text = state
        .runtime
        .containers
        .container_inspect(&context(&user), &ContainerRef::new(kind, id))
        .await
        .map_err(runtime_error)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

/// `PUT container/{type}/{id}/{start|stop|restart}`: the entry after the change.
#[utoipa::path(put, path = "/container/{type}/{id}/{action}", tag = "containers",
    summary = "Start, stop or restart a container",
    params(Target, ("action" = String, Path, description = "`start`, `stop` or `restart`")),
    responses(
        (status = 200, description = "The entry after the change", body = ContainerEntry),
        super::error::RuntimeErrors,
    ))]
pub async fn action(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((kind, id, action))): Api<Path<(String, String, String)>>,
) -> Result<Json<ContainerEntry>, AppError> {
    let (kind, id) = target(&kind, &id)?;
    let cx = context(&user);
    let rt = &state.runtime;
    // Resolve first, so an unknown container is a 404 whatever the action.
    let entry = entry_of(&state, &cx, kind, id).await?;
    let id = entry.id;
    let done = match action.as_str() {
        "start" => {
            rt.containers
                .container_start(&cx, &ContainerRef::new(kind, id.clone()))
                .await
        }
        "stop" => {
            rt.containers
                .container_stop(
                    &cx,
                    StopContainer::new(ContainerRef::new(kind, id.clone()), STOP_TIMEOUT_SECS),
                )
                .await
        }
        "restart" => {
            rt.containers
                .container_restart(
                    &cx,
                    StopContainer::new(ContainerRef::new(kind, id.clone()), STOP_TIMEOUT_SECS),
                )
                .await
        }
        other => {
            return Err(AppError::not_found(
                "unknown_path",
                format!(
                    "unknown container action `{}`: start, stop or restart",
                    short(other)
                ),
            ))
        }
    };
    done.map_err(runtime_error)?;
    tracing::info!(user = %user.0.username, container = %id, action = %action, "container call");
    Ok(Json(sampled_entry_of(&state, &cx, kind, id).await?))
}

/// Lines `GET container/{type}/{id}/logs` answers when `tail` is not given
/// (as Container Station does).
pub const DEFAULT_TAIL: u32 = 100;
/// The most lines one `logs` call answers.
pub const MAX_TAIL: u32 = 10_000;

/// `?tail=&follow=` of `GET container/{type}/{id}/logs`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many of the last lines to answer: 0 to 10000, default 100.
    pub tail: Option<String>,
    /// `1` or `true`: answer `text/plain`, streamed: the last lines, then
    /// each line as the container writes it, until it stops. `0`, `false`
    /// or none: the JSON answer.
    pub follow: Option<String>,
}

/// The `follow` of a logs query: `1`/`true` or `0`/`false`, default false.
pub fn parse_follow(follow: Option<&str>) -> Result<bool, AppError> {
    match follow.map(str::trim) {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(AppError::bad_request(
            "invalid_params",
            format!(
                "follow: must be 1, true, 0 or false, got `{}`",
                short(other)
            ),
        )),
    }
}

/// The `tail` of a logs query: a whole number of lines up to [`MAX_TAIL`].
pub fn parse_tail(tail: Option<&str>) -> Result<u32, AppError> {
    let Some(text) = tail else {
        return Ok(DEFAULT_TAIL);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if n <= MAX_TAIL => Ok(n),
        _ => Err(AppError::bad_request(
            "invalid_params",
            format!(
                "tail: must be a whole number of lines from 0 to {MAX_TAIL}, got `{}`",
                short(text)
            ),
        )),
    }
}

/// What `GET container/{type}/{id}/logs` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Logs {
    /// The last lines, as the container wrote them.
    pub logs: String,
    /// How many lines were asked for.
    pub tail: u32,
}

/// `GET container/{type}/{id}/logs`: the container's last output lines;
/// with `follow`, those lines and then each new one, streamed.
#[utoipa::path(get, path = "/container/{type}/{id}/logs", tag = "containers",
    summary = "The last lines a container wrote (Docker: stdout and stderr; LXC: its console log), or with `follow` those and each new line as it is written",
    description = "With `follow=1` the answer is `text/plain; charset=utf-8`, chunked: \
        the last `tail` lines, then each line as the container writes it, every chunk \
        whole lines ending in `\\n`. It ends cleanly when the container stops or is \
        removed (at once after the last lines for a stopped one), and when the \
        session ends or the server stops; an engine failure after the start \
        breaks it off. A user follows at most 8 containers' logs at once.",
    params(Target, LogsQuery),
    responses(
        (status = 200, description = "The lines: JSON; with `follow`, plain text streamed until the container stops",
            content(
                (Logs = "application/json"),
                (String = "text/plain; charset=utf-8"),
            )),
        super::error::RuntimeErrors,
        // Replaces the shared 400 in place, naming the query's fields.
        (status = 400, description = "A path segment or query is not valid (`tail`, `follow`)", body = super::error::ErrorBody),
        (status = 429, description = "With `follow`: the user follows the most containers' logs already (`too_many_followers`)", body = super::error::ErrorBody),
    ))]
pub async fn logs(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    Api(Query(query)): Api<Query<LogsQuery>>,
) -> Result<Response, AppError> {
    let tail = parse_tail(query.tail.as_deref())?;
    let follow = parse_follow(query.follow.as_deref())?;
    let req = ContainerLogs {
        container: ContainerRef::new(kind, id),
        tail,
    };
    if follow {
        return follow_logs(&state, &user, req).await;
    }
    let logs = state
        .runtime
        .containers
        .container_logs(&context(&user), req)
        .await
        .map_err(runtime_error)?;
    Ok(Json(Logs { logs, tail }).into_response())
}

/// The followed logs of `req`'s container, as a streamed text answer. The
/// place among the user's followers is taken first, so a user at the cap
/// costs the engine nothing; it is given back when the stream ends or is
/// dropped (the client went away). The stream is read as the client
/// reads it: nothing is buffered for a slow one.
async fn follow_logs(
    state: &AppState,
    user: &CurrentUser,
    req: ContainerLogs,
) -> Result<Response, AppError> {
    let slot = state.streams.follow(&user.0.username, &user.0.session_id)?;
    let container = req.container.id.clone();
    let lines = state
        .runtime
        .containers
        .container_follow_logs(&context(user), req)
        .await
        .map_err(runtime_error)?;
    let ended = super::tasks::stream_end(state, user.0.session_id.clone(), slot);
    let body = lines
        .map(move |chunk| {
            chunk.map(Bytes::from).map_err(|e| {
                // The answer has started: the failure breaks the stream off.
                tracing::debug!(container = %container, error = %e.message(), "following logs");
                std::io::Error::other(e.message())
            })
        })
        .take_until(ended);
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `?remove_volumes=` of `DELETE container/{type}/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also remove the container's anonymous volumes.
    #[serde(default)]
    pub remove_volumes: bool,
}

/// `DELETE container/{type}/{id}`: `{}`.
#[utoipa::path(delete, path = "/container/{type}/{id}", tag = "containers",
    summary = "Remove a container (stopped first when running)",
    params(Target, DeleteQuery),
    responses(
        (status = 200, description = "An empty object", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    Api(Query(query)): Api<Query<DeleteQuery>>,
) -> Result<Json<serde_json::Value>, AppError> {
    let cx = context(&user);
    let entry = entry_of(&state, &cx, kind, id).await?;
    state
        .runtime
        .containers
        .container_delete(
            &cx,
            DeleteContainer {
                container: ContainerRef::new(kind, entry.id.clone()),
                remove_volumes: query.remove_volumes,
            },
        )
        .await
        .map_err(runtime_error)?;
    tracing::info!(user = %user.0.username, container = %entry.id, "container deleted");
    Ok(Json(serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unsupported_call_is_501_and_a_host_failure_500() {
        use crate::runtime::{AppFolders, NoAppStore};
        let unsupported = NoAppStore.app_records().await.unwrap_err();
        let e = runtime_error(unsupported);
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(e.reason, "runtime_unavailable");
        assert_eq!(e.message, "this server has no application store");
        let io = RtError::Other("path `a/b`: Permission denied (os error 13)".into());
        let e = runtime_error(io);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.reason, "internal");
    }

    #[test]
    fn container_ids_are_names_or_hex() {
        for ok in ["dtest", "ubuntu-trusty-1", "a_b.c", "0123456789ab"] {
            assert!(check_container(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "a%2fb",
            "x?y",
            &"a".repeat(129),
        ] {
            let e = check_container(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.starts_with("id: "), "{}", e.message);
        }
    }

    #[test]
    fn tail_is_a_bounded_count() {
        assert_eq!(parse_tail(None).unwrap(), DEFAULT_TAIL);
        assert_eq!(parse_tail(Some("5")).unwrap(), 5);
        assert_eq!(parse_tail(Some("0")).unwrap(), 0);
        for bad in ["-1", "x", "10001", "1.5", ""] {
            let e = parse_tail(Some(bad)).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.starts_with("tail: "), "{}", e.message);
        }
    }

    #[test]
    fn follow_is_a_flag() {
        assert!(!parse_follow(None).unwrap());
        for yes in ["1", "true"] {
            assert!(parse_follow(Some(yes)).unwrap(), "{yes}");
        }
        for no in ["0", "false"] {
            assert!(!parse_follow(Some(no)).unwrap(), "{no}");
        }
        for bad in ["", "yes", "2", "TRUE!"] {
            let e = parse_follow(Some(bad)).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.starts_with("follow: "), "{}", e.message);
        }
    }

    #[test]
    fn runtime_types() {
        assert_eq!(runtime_kind("docker").unwrap(), RuntimeKind::Docker);
        assert_eq!(runtime_kind("lxc").unwrap(), RuntimeKind::Lxc);
        assert!(runtime_kind("kvm")
            .unwrap_err()
            .message
            .starts_with("type: "));
    }

    #[test]
    fn runtime_errors_map_to_statuses() {
        assert_eq!(runtime_error(RtError::NotFound("x".into())).status, 404);
        assert_eq!(runtime_error(RtError::Conflict("x".into())).status, 409);
        assert_eq!(runtime_error(RtError::Runtime("x".into())).status, 502);
        assert_eq!(
            runtime_error(RtError::InvalidParams("x".into())).status,
            400
        );
    }
}
