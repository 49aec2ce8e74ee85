//! `background/...`: submit, list, delete, and the SSE stream of task events.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::session::CurrentUser;
use super::{body_error, path_error, query_error, AppError, AppState};
use crate::queue::{DeleteSelector, QueueError, Task, Viewer};

/// `?category=` and `?node=` of `GET background/` and `GET background/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CategoryQuery {
    /// Only tasks of this category (empty means all).
    pub category: Option<String>,
    /// Only tasks of this node (empty means all), when several nodes share the store.
    pub node: Option<String>,
}

impl CategoryQuery {
    fn category(&self) -> Option<&str> {
        self.category.as_deref().filter(|c| !c.is_empty())
    }
    fn node(&self) -> Option<&str> {
        self.node.as_deref().filter(|n| !n.is_empty())
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
    let ok = !category.is_empty()
        && category.len() <= 64
        && category
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
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
        (status = 503, description = "The plugin failed while validating", body = super::error::ErrorBody),
    ))]
pub async fn submit(
    State(state): State<AppState>,
    user: CurrentUser,
    category: Result<Path<String>, PathRejection>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Task>, AppError> {
    let Path(category) = category.map_err(path_error)?;
    check_category(&category)?;
    let Query(query) = query.map_err(query_error)?;
    let body = body.map_err(body_error)?;
    let params = parse_params(&body)?;
    admit(&state, &user, &category, &params)?;
    let node = query.node.as_deref().filter(|n| !n.is_empty());
    let task = state
        .queue
        .submit_to(&user.0.username, &category, &params, node)
        .await?;
    crate::metrics::task_submitted(&task.category);
    Ok(Json(task))
}

/// The policy checks that can be made at submit time, for an early 403
/// naming the rule: the category, and the `privileged` and
/// `resource.device` asks of container specs (`create`, `container_import`).
/// The runtime guard checks every call again while the task runs.
fn admit(
    state: &AppState,
    user: &CurrentUser,
    category: &str,
    params: &serde_json::Value,
) -> Result<(), AppError> {
    let policy = state.policies.of(&user.0.username);
    let forbidden =
        |r: crate::policy::Refused| AppError::new(StatusCode::FORBIDDEN, "denied", r.message);
    policy
        .allows_category(state.queue.canonical(category))
        .map_err(forbidden)?;
    if params
        .get("privileged")
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        policy.allows_privileged(true).map_err(forbidden)?;
    }
    let asks_devices = params
        .pointer("/resource/device")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|d| !d.is_empty());
    if asks_devices && policy.devices.is_empty() {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "denied",
            format!("devices are not allowed for user {}", policy.user),
        ));
    }
    Ok(())
}

/// `GET background/` (optional `?category=`).
#[utoipa::path(get, path = "/background/", tag = "tasks",
    summary = "The caller's tasks (an admin's: everyone's), newest first",
    params(CategoryQuery),
    responses(
        (status = 200, description = "Tasks, newest first", body = Vec<Task>),
        (status = 400, description = "The query does not parse", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    query: Result<Query<CategoryQuery>, QueryRejection>,
) -> Result<Json<Vec<Task>>, AppError> {
    let Query(query) = query.map_err(query_error)?;
    let mut tasks = state.queue.list(&user.viewer(), query.category()).await?;
    tasks.retain(|t| on_node(t, query.node(), &state.queue));
    Ok(Json(tasks))
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
    target: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<i64>>, AppError> {
    let Path(target) = target.map_err(path_error)?;
    let selector = selector_of(&target)?;
    let viewer = user.viewer();
    match state.queue.delete(&viewer, selector).await {
        Ok(ids) => Ok(Json(ids)),
        // Another user's task: 403 (the contract's "not yours"), not 404.
        Err(QueueError::NotFound(id)) if !viewer.is_admin => {
            let admin = Viewer {
                user: String::new(),
                is_admin: true,
            };
            match state.queue.get(&admin, id).await {
                Ok(_) => Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    "not_yours",
                    format!("task {id} belongs to another user"),
                )),
                Err(_) => Err(QueueError::NotFound(id).into()),
            }
        }
        Err(e) => Err(e.into()),
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
/// see, optionally of one category. Ends when the server shuts down.
#[utoipa::path(get, path = "/background/events", tag = "tasks",
    summary = "Server-Sent Events: one `task` event per change of a task the caller may see",
    description = "`event: task`, `id:` the task id, `data:` the task object as JSON; `event: lagged` (`{\"missed\": n}`) when the client fell behind. The stream stays open.",
    params(CategoryQuery),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    query: Result<Query<CategoryQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let Query(query) = query.map_err(query_error)?;
    let category = query
        .category()
        .map(|c| state.queue.canonical(c).to_string());
    let viewer = user.viewer();
    let node = query.node().map(str::to_string);
    let queue = state.queue.clone();
    let rx = state.queue.subscribe();
    let shutdown = state.shutdown.clone();
    let stream = BroadcastStream::new(rx)
        .filter_map(move |item| {
            let out = match item {
                Ok(ev) => {
                    let t = &ev.task;
                    let visible = viewer.is_admin || t.user == viewer.user;
                    let wanted = category.as_deref().is_none_or(|c| c == t.category)
                        && on_node(t, node.as_deref(), &queue);
                    if visible && wanted {
                        Event::default()
                            .event("task")
                            .id(t.id.to_string())
                            .json_data(t)
                            .ok()
                    } else {
                        None
                    }
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => Some(
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{n}}}")),
                ),
            };
            std::future::ready(out.map(Ok))
        })
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
