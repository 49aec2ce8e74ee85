//! `POST container`: Container Station's synchronous create.
//!
//! The body is the `create` category's (the same as `POST
//! background/create`), and so is the work: the handler submits a `create`
//! task for the caller through [`tasks::submit`] (the same admission, policy
//! checks, waiting-task cap and plugin validation), then waits for the
//! task's end on the queue's event stream and answers as Container Station
//! recorded it: `{"id", "name", "type"}` for Docker, and `{"id", "image",
//! "name", "state", "tcpPort", "type"}` for LXC.
//!
//! A task that fails answers a JSON error whose message is the task's
//! `detail_state` and whose status fits the failure (see [`failure`]).
//!
//! The task stays in the task list, like any other: it is the record of
//! what the create did (its pull progress, its log, who asked), clients
//! watching `background/events` have already seen it appear, and deleting
//! it would hide a failure from them. The answer names it in the
//! `X-Stevedore-Task` header.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::containers::{context, entry_of};
use super::extract::Api;
use super::session::CurrentUser;
use super::tasks::{self, SubmitQuery};
use super::{AppError, AppState};
use crate::queue::{ResultCode, Task, TaskState};
use crate::runtime::{kind_name, ContainerState, RuntimeKind};

/// The header naming the task that did the create.
pub const TASK_HEADER: &str = "x-stevedore-task";

/// `POST container`.
#[utoipa::path(post, path = "/container", tag = "containers",
    summary = "Create and start a container, answering when it exists (Container Station's synchronous create)",
    description = "The body is the `create` category's params (as `POST background/create`). A `create` task does the work and stays in the task list; its id is in the `X-Stevedore-Task` header. Docker answers `{\"id\", \"name\", \"type\"}`; LXC `{\"id\", \"image\", \"name\", \"state\", \"tcpPort\", \"type\"}`. A failed task answers an error with the task's message.",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses(
        (status = 200, description = "The container exists", body = Object),
        (status = 400, description = "Bad params; the message names the field", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "The caller's policy refuses it", body = super::error::ErrorBody),
        (status = 404, description = "The image (or a container the body names) does not exist", body = super::error::ErrorBody),
        (status = 409, description = "The name is taken, or the task was cancelled", body = super::error::ErrorBody),
        (status = 429, description = "The user has the most tasks waiting that their policy allows", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
        (status = 503, description = "The server stopped before the task ended, or the plugin hit its CPU or memory limit", body = super::error::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    // Subscribed before the submit, so the task's end cannot be missed.
    let mut events = state.queue.subscribe();
    let Json(task) = tasks::submit(
        State(state.clone()),
        user.clone(),
        Api(Path("create".to_string())),
        Ok(Query(SubmitQuery { node: None })),
        body,
    )
    .await?;
    let id = task.id;
    let ended = loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = state.shutdown.cancelled() => return Err(stopped(id)),
        };
        match event {
            Ok(e) if e.task.id == id && e.deleted => {
                return Err(AppError::new(
                    StatusCode::CONFLICT,
                    "cancelled",
                    format!("task {id} was deleted before it ended"),
                ))
            }
            Ok(e) if e.task.id == id && e.task.state.is_finished() => break (*e.task).clone(),
            Ok(_) => {}
            // Fell behind the stream: the store knows where the task is.
            Err(RecvError::Lagged(_)) => {
                let now = state
                    .queue
                    .get(&user.viewer(), id)
                    .await
                    .map_err(AppError::from)?;
                if now.state.is_finished() {
                    break now;
                }
            }
            Err(RecvError::Closed) => return Err(stopped(id)),
        }
    };
    let header = (
        HeaderName::from_static(TASK_HEADER),
        HeaderValue::from(ended.id),
    );
    if ended.state != TaskState::Completed {
        let mut response = failure(&ended).into_response();
        response.headers_mut().insert(header.0, header.1);
        return Ok(response);
    }
    let (kind, name) = target(&ended);
    let entry = entry_of(&state, &context(&user), kind, name).await?;
    let answer = match kind {
        RuntimeKind::Docker => json!({"id": entry.id, "name": entry.name, "type": "docker"}),
        RuntimeKind::Lxc => json!({
            "id": entry.id,
            "image": entry.image,
            "name": entry.name,
            "state": match entry.state {
                ContainerState::Running => "running",
                ContainerState::Stopped => "stopped",
            },
            "tcpPort": entry.tcp_port,
            "type": kind_name(kind),
        }),
    };
    Ok(([header], Json(answer)).into_response())
}

fn stopped(id: i64) -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "interrupted",
        format!("the server is stopping; task {id} may still end: see GET background/"),
    )
}

/// The runtime and container name of a `create` task, from its params
/// (checked by the plugin before the task ran: `type` is `docker` unless
/// it says `lxc`).
fn target(task: &Task) -> (RuntimeKind, String) {
    let params: Value = serde_json::from_str(task.params.get()).unwrap_or(Value::Null);
    let kind = match params.get("type").and_then(Value::as_str) {
        Some("lxc") => RuntimeKind::Lxc,
        _ => RuntimeKind::Docker,
    };
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    (kind, name)
}

/// The error of a failed task: its result code and the kind its message
/// starts with (as [`crate::runtime::Error::message`] spells it) pick the
/// status; the message is the task's own.
pub fn failure(task: &Task) -> AppError {
    let message = task.detail_state.clone();
    let code = task.result.unwrap_or(ResultCode::PluginError.code());
    let (status, reason) = if code == ResultCode::InvalidParams.code() {
        (StatusCode::BAD_REQUEST, "invalid_params")
    } else if code == ResultCode::Cancelled.code() {
        (StatusCode::CONFLICT, "cancelled")
    } else if code == ResultCode::Interrupted.code() {
        (StatusCode::SERVICE_UNAVAILABLE, "interrupted")
    } else if code == ResultCode::LimitExceeded.code() {
        // The plugin ran out of the CPU or memory the host lends it: the
        // server could not do it now, which is not a fault of the request.
        (StatusCode::SERVICE_UNAVAILABLE, "limit_exceeded")
    } else if message.starts_with("not found: ") {
        (StatusCode::NOT_FOUND, "not_found")
    } else if message.starts_with("denied: ") {
        (StatusCode::FORBIDDEN, "denied")
    } else if message.starts_with("conflict: ") {
        (StatusCode::CONFLICT, "conflict")
    } else {
        (StatusCode::BAD_GATEWAY, "runtime_error")
    };
    AppError::new(status, reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(result: i32, detail: &str, params: &str) -> Task {
        serde_json::from_value(json!({
            "id": 1, "category": "create", "state": "error", "detail_state": detail,
            "progress": 100, "result": result, "deletable": false, "user": "u", "name": "web",
            "params": serde_json::from_str::<Value>(params).unwrap(), "init": 0
        }))
        .unwrap()
    }

    #[test]
    fn failures_get_the_status_of_their_kind_and_the_tasks_message() {
        let cases = [
            (2, "network.interface: no such host interface `x`", 400),
            (1, "not found: No such image: web:1", 404),
            (1, "denied: container db was not created by user bob", 403),
            (1, "conflict: the name web is taken", 409),
            (1, "container web was created but did not start: boom", 502),
            (3, "cancelled", 409),
            (4, "the server stopped", 503),
        ];
        for (code, detail, status) in cases {
            let e = failure(&task(code, detail, "{}"));
            assert_eq!(e.status.as_u16(), status, "{detail}");
            assert_eq!(e.message, detail);
        }
    }

    #[test]
    fn the_target_comes_from_the_params() {
        let t = task(0, "", r#"{"type": "lxc", "name": "utest"}"#);
        assert_eq!(target(&t), (RuntimeKind::Lxc, "utest".to_string()));
        let t = task(0, "", r#"{"name": "web"}"#);
        assert_eq!(target(&t), (RuntimeKind::Docker, "web".to_string()));
    }
}
