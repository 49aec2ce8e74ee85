//! `apps...`: installed applications (the `application` category's work),
//! synchronous host routes over the application store and the runtime.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET apps` | `{name: {"container": ["<project>_web_1", ...], "creating": bool, "yml": true, "template", "version"}}` |
//! | `GET apps/{name}` | the record (`template`, `version`, `binding`, `virtual_path`, `httpPort`, `autostart`, times) and `containers`: `[{name, id, state}]` |
//! | `PUT apps/{name}/{start,stop,restart}` | the application after the change (start in dependency order, stop in reverse) |
//! | `DELETE apps/{name}` (`?remove_volumes=true`) | `{}`: containers, networks and the folder; named and anonymous volumes only when asked |

use std::collections::BTreeMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::containers::{context, runtime_error};
use super::path_error;
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::policy::APP_OWNER_FILE;
use crate::runtime::apps::valid_name;
use crate::runtime::{CallContext, ContainerSummary, Runtime, RuntimeKind, STOP_TIMEOUT_SECS};

/// The Compose project label on every container, network and volume of an app.
const PROJECT_LABEL: &str = "com.docker.compose.project";

fn record_of(name: &str, text: &str) -> Result<Map<String, Value>, AppError> {
    serde_json::from_str(text).map_err(|e| {
        tracing::warn!(app = name, "unreadable application record: {e}");
        AppError::internal("an application record is unreadable")
    })
}

fn check_name(name: &str) -> Result<(), AppError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "invalid_params",
            "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$",
        ))
    }
}

async fn load(rt: &dyn Runtime, name: &str) -> Result<Map<String, Value>, AppError> {
    check_name(name)?;
    let text = rt
        .app_record(name.to_string())
        .await
        .map_err(runtime_error)?
        .ok_or_else(|| AppError::not_found("unknown_app", format!("no application `{name}`")))?;
    record_of(name, &text)
}

fn text(record: &Map<String, Value>, key: &str) -> String {
    record
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn list_of(record: &Map<String, Value>, key: &str) -> Vec<String> {
    record
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The app's containers, in the record's start order (unknown ones last).
async fn containers_of(
    rt: &dyn Runtime,
    cx: &CallContext,
    record: &Map<String, Value>,
) -> Result<Vec<ContainerSummary>, AppError> {
    let project = text(record, "project");
    let mut found = rt
        .container_list_labelled(cx, RuntimeKind::Docker, PROJECT_LABEL.into(), project)
        .await
        .map_err(runtime_error)?;
    let order = list_of(record, "containers");
    found.sort_by_key(|c| {
        order
            .iter()
            .position(|n| *n == c.name)
            .unwrap_or(usize::MAX)
    });
    Ok(found)
}

async fn describe(
    rt: &dyn Runtime,
    cx: &CallContext,
    name: &str,
    mut record: Map<String, Value>,
) -> Result<Value, AppError> {
    let containers = containers_of(rt, cx, &record).await?;
    let port = record.get("port").cloned().unwrap_or(Value::Null);
    record.insert("httpPort".into(), port);
    record.insert("name".into(), name.into());
    record.insert(
        "containers".into(),
        containers
            .iter()
            .map(|c| {
                json!({"name": c.name, "id": c.id, "image": c.image,
                       "state": if c.running { "running" } else { "stopped" }})
            })
            .collect(),
    );
    Ok(Value::Object(record))
}

/// Whether the caller's policy reaches application `name`: every one, or
/// (a non-admin's default) those their own tasks installed, as the owner
/// file the host wrote at install time says.
async fn reaches(state: &AppState, cx: &CallContext, name: &str) -> bool {
    let policy = state.policies.of(&cx.user);
    if policy.containers == crate::policy::ContainerScope::All {
        return true;
    }
    state
        .runtime
        .app_read_file(cx, name.to_string(), APP_OWNER_FILE.to_string())
        .await
        .is_ok_and(|owner| owner.trim() == cx.user)
}

/// 403 unless the caller's policy reaches application `name`.
async fn check_reach(state: &AppState, cx: &CallContext, name: &str) -> Result<(), AppError> {
    if reaches(state, cx, name).await {
        Ok(())
    } else {
        Err(AppError::new(
            axum::http::StatusCode::FORBIDDEN,
            "denied",
            format!("application {name} was not installed by user {}", cx.user),
        ))
    }
}

/// `GET apps`: every application the caller's policy reaches, by name.
#[utoipa::path(get, path = "/apps", tag = "applications",
    summary = "Every application the caller may see, by name",
    responses(
        (status = 200, description = "By name: `container`, `creating`, `yml`, `template`, `version`", body = Object),
        (status = 400, description = "A path segment or query is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not the caller's (policy `containers`)", body = super::error::ErrorBody),
        (status = 404, description = "No such container or application", body = super::error::ErrorBody),
        (status = 501, description = "This server has no such runtime", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<BTreeMap<String, Value>>, AppError> {
    let records = state.runtime.app_records().await.map_err(runtime_error)?;
    let cx = context(&user);
    let mut out = BTreeMap::new();
    for (name, raw) in records {
        if !reaches(&state, &cx, &name).await {
            continue;
        }
        let record = record_of(&name, &raw)?;
        out.insert(
            name,
            json!({
                "container": list_of(&record, "containers"),
                "creating": text_is(&record, "state", "creating"),
                "yml": true,
                "template": text(&record, "template"),
                "version": text(&record, "version"),
            }),
        );
    }
    Ok(Json(out))
}

fn text_is(record: &Map<String, Value>, key: &str, want: &str) -> bool {
    record.get(key).and_then(Value::as_str) == Some(want)
}

/// `GET apps/{name}`: the record and the state of each container.
#[utoipa::path(get, path = "/apps/{name}", tag = "applications",
    summary = "An application's record and the state of each of its containers",
    params(("name" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "The record and `containers`", body = Object),
        (status = 400, description = "A path segment or query is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not the caller's (policy `containers`)", body = super::error::ErrorBody),
        (status = 404, description = "No such container or application", body = super::error::ErrorBody),
        (status = 501, description = "This server has no such runtime", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, AppError> {
    let Path(name) = path.map_err(path_error)?;
    let record = load(state.runtime.as_ref(), &name).await?;
    let cx = context(&user);
    check_reach(&state, &cx, &name).await?;
    Ok(Json(
        describe(state.runtime.as_ref(), &cx, &name, record).await?,
    ))
}

/// `PUT apps/{name}/{start|stop|restart}`: the application after the change.
#[utoipa::path(put, path = "/apps/{name}/{action}", tag = "applications",
    summary = "Start, stop or restart an application",
    params(("name" = String, Path, description = "Application name"), ("action" = String, Path, description = "`start`, `stop` or `restart`")),
    responses(
        (status = 200, description = "The application after the change", body = Object),
        (status = 400, description = "A path segment or query is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not the caller's (policy `containers`)", body = super::error::ErrorBody),
        (status = 404, description = "No such container or application", body = super::error::ErrorBody),
        (status = 501, description = "This server has no such runtime", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn action(
    State(state): State<AppState>,
    user: CurrentUser,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, AppError> {
    let Path((name, action)) = path.map_err(path_error)?;
    let rt = state.runtime.as_ref();
    let record = load(rt, &name).await?;
    if !matches!(action.as_str(), "start" | "stop" | "restart") {
        return Err(AppError::not_found(
            "unknown_path",
            "unknown application action: start, stop or restart",
        ));
    }
    let cx = context(&user);
    check_reach(&state, &cx, &name).await?;
    let containers = containers_of(rt, &cx, &record).await?;
    if matches!(action.as_str(), "stop" | "restart") {
        for c in containers.iter().rev() {
            rt.container_stop(&cx, RuntimeKind::Docker, c.id.clone(), STOP_TIMEOUT_SECS)
                .await
                .map_err(runtime_error)?;
        }
    }
    if matches!(action.as_str(), "start" | "restart") {
        for c in &containers {
            rt.container_start(&cx, RuntimeKind::Docker, c.id.clone())
                .await
                .map_err(runtime_error)?;
        }
    }
    tracing::info!(user = %user.0.username, app = %name, %action, "application call");
    Ok(Json(describe(rt, &cx, &name, record).await?))
}

/// `?remove_volumes=` of `DELETE apps/{name}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also remove the application's volumes (named and anonymous).
    #[serde(default)]
    pub remove_volumes: bool,
}

/// `DELETE apps/{name}`: `{}`.
#[utoipa::path(delete, path = "/apps/{name}", tag = "applications",
    summary = "Remove an application: containers, networks, folder",
    params(("name" = String, Path, description = "Application name"), DeleteQuery),
    responses(
        (status = 200, description = "An empty object", body = Object),
        (status = 400, description = "A path segment or query is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not the caller's (policy `containers`)", body = super::error::ErrorBody),
        (status = 404, description = "No such container or application", body = super::error::ErrorBody),
        (status = 501, description = "This server has no such runtime", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Path(name) = path.map_err(path_error)?;
    let Query(query) = query.map_err(|e| {
        AppError::bad_request(
            "invalid_params",
            format!("remove_volumes: {}", e.body_text()),
        )
    })?;
    let rt = state.runtime.as_ref();
    // An application still `creating` may be deleted too: its install task
    // (if it still runs) then fails at its next write and removes what it
    // made, and one interrupted by a restart leaves no other way out.
    let record = load(rt, &name).await?;
    let cx = context(&user);
    check_reach(&state, &cx, &name).await?;
    let project = text(&record, "project");
    for c in containers_of(rt, &cx, &record).await?.iter().rev() {
        rt.container_delete(&cx, RuntimeKind::Docker, c.id.clone(), query.remove_volumes)
            .await
            .map_err(runtime_error)?;
    }
    let networks = rt
        .network_list(&cx, PROJECT_LABEL.into(), project.clone())
        .await
        .map_err(runtime_error)?;
    for n in networks {
        rt.network_remove(&cx, n.name)
            .await
            .map_err(runtime_error)?;
    }
    if query.remove_volumes {
        let volumes = rt
            .volume_list(&cx, PROJECT_LABEL.into(), project)
            .await
            .map_err(runtime_error)?;
        for v in volumes {
            rt.volume_remove(&cx, v.name).await.map_err(runtime_error)?;
        }
    }
    rt.app_remove(&cx, name.clone())
        .await
        .map_err(runtime_error)?;
    tracing::info!(user = %user.0.username, app = %name, remove_volumes = query.remove_volumes, "application deleted");
    Ok(Json(json!({})))
}
