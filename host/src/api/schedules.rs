//! `schedules...`: scheduled tasks. A schedule submits a normal task of
//! its category, as its owner, at each occurrence of its cron expression
//! read in its time zone (the rules: [`crate::schedule`]).
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `POST schedules` `{category, params, cron, timezone, name}` | 201, the schedule |
//! | `GET schedules` (`?user=`: an admin's filter) | `[schedule]`, by id: the caller's (an admin's: everyone's) |
//! | `GET schedules/{id}` | the schedule |
//! | `PUT schedules/{id}/pause` | the schedule, `paused: true`: it does not fire |
//! | `PUT schedules/{id}/resume` | the schedule, `paused: false`, `next_run` the first occurrence after now |
//! | `DELETE schedules/{id}` | `{}` |
//!
//! A schedule: `{id, owner, name, category, params, cron, timezone, paused,
//! next_run, last_run, last_task, last_error, created}`: `params` with
//! secrets masked as a task's are; times RFC 3339 in the schedule's zone
//! (`next_run` null when the expression has no later time); `last_task`
//! the id of the task its last firing submitted, `last_error` why that
//! firing submitted none (its owner's policy refused it then, or the
//! category was no longer loaded).
//!
//! Creating one checks what a submit of that task would (the category, the
//! owner's policy, the plugin's `validate` of the params), so a bad schedule
//! is refused at once with the submit's error. `cron`: 5 fields, or 6 with
//! seconds first, or `@hourly`-style; `timezone`: an IANA name, default
//! `UTC`. A non-admin sees and acts on their own schedules only (403
//! `not_yours`); an unknown id is 404 `unknown_schedule`; past the owner's
//! `limits.schedules` (default 20 for non-admins), 429
//! `too_many_schedules`. Without a store that keeps schedules (tests'
//! in-memory queues), 503 `no_schedules`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::extract::Api;
use super::networks::body_object;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::store::schedules::{NewSchedule, Schedule};
use crate::store::tasks::model::JsonText;
use crate::store::ScheduleStore;
use crate::timing::{Timing, TimingError, NEVER};

/// Longest schedule name, in characters.
const MAX_NAME: usize = 100;

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    vec![
        entry(M::POST, "/schedules", S, create),
        entry(M::GET, "/schedules", S, list),
        entry(M::GET, "/schedules/", S, list),
        entry(M::GET, "/schedules/{id}", S, one),
        entry(M::PUT, "/schedules/{id}/pause", S, pause),
        entry(M::PUT, "/schedules/{id}/resume", S, resume),
        entry(M::DELETE, "/schedules/{id}", S, remove),
    ]
}

/// The OpenAPI document of this area.
#[derive(OpenApi)]
#[openapi(
    paths(create, list, one, pause, resume, remove),
    components(schemas(ScheduleView, ScheduleBody)),
    tags((name = "schedules", description = "Scheduled tasks: a cron expression in a time zone submits a task as its owner"))
)]
pub(super) struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The body of `POST schedules`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the schema of a body read as a JSON object")]
pub struct ScheduleBody {
    /// The category of the tasks it submits.
    category: String,
    /// The tasks' params, as `POST background/{category}` takes them (default `{}`).
    #[schema(value_type = Object)]
    params: Option<Value>,
    /// 5 fields (`minute hour day month weekday`), or 6 with seconds first
    /// (`*/5 * * * * *`), or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    cron: String,
    /// IANA time zone the expression is read in (default `UTC`).
    timezone: Option<String>,
    /// A label (up to 100 characters).
    name: Option<String>,
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// Id.
    pub id: i64,
    /// Whose tasks it submits.
    pub owner: String,
    /// Its label (may be empty).
    pub name: String,
    /// The category of its tasks.
    pub category: String,
    /// The tasks' params, secrets masked.
    #[schema(value_type = Object)]
    pub params: JsonText,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// A paused schedule does not fire.
    pub paused: bool,
    /// The next occurrence, RFC 3339 in the schedule's zone; null when
    /// there is none.
    pub next_run: Option<String>,
    /// The occurrence it last fired for.
    pub last_run: Option<String>,
    /// The task its last firing submitted.
    pub last_task: Option<i64>,
    /// Why its last firing submitted no task.
    pub last_error: Option<String>,
    /// When it was created.
    pub created: Option<String>,
}

/// `epoch` in RFC 3339, in `zone` when it is one.
fn rfc3339(epoch: i64, zone: &str) -> Option<String> {
    let utc = DateTime::<Utc>::from_timestamp(epoch, 0)?;
    Some(match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => tz
            .from_utc_datetime(&utc.naive_utc())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Err(_) => utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> ScheduleView {
        let at = |t: i64| rfc3339(t, &s.timezone);
        ScheduleView {
            next_run: (s.next_run < NEVER).then(|| at(s.next_run)).flatten(),
            last_run: s.last_run.and_then(at),
            created: at(s.created),
            id: s.id,
            owner: s.owner,
            name: s.name,
            category: s.category,
            params: s.params,
            cron: s.cron,
            timezone: s.timezone,
            paused: s.paused,
            last_task: s.last_task,
            last_error: s.last_error,
        }
    }
}

/// The store, or 503 when the queue's keeps none.
fn store(state: &AppState) -> Result<&dyn ScheduleStore, AppError> {
    state.queue.schedules().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_schedules",
            "this server's task store keeps no schedules",
        )
    })
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_params", message)
}

fn timing_error(e: TimingError) -> AppError {
    invalid(e.to_string())
}

/// A string field of the body: `None` when absent or null.
fn text<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, AppError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{key}: must be a string"))),
    }
}

/// The schedule `id` names, if the caller may act on it.
async fn owned(state: &AppState, user: &CurrentUser, id: &str) -> Result<Schedule, AppError> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid("id: a schedule id is a positive integer"))?;
    let schedule = store(state)?
        .schedule(id)
        .await
        .map_err(AppError::internal)?
        .ok_or_else(|| {
            AppError::not_found("unknown_schedule", format!("schedule {id} not found"))
        })?;
    if !user.0.is_admin && schedule.owner != user.0.username {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "not_yours",
            format!("schedule {id} is another user's"),
        ));
    }
    Ok(schedule)
}

/// `POST schedules`.
#[utoipa::path(post, path = "/schedules", tag = "schedules",
    summary = "Create a schedule",
    description = "Checks now what a submit of the task would check (category, policy, the plugin's validation of `params`).",
    request_body(content = ScheduleBody, description = "JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "The new schedule", body = ScheduleView),
        (status = 400, description = "Bad body, `cron`, `timezone` or `params`; the message names the field", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "The caller's policy refuses the category or the params", body = super::error::ErrorBody),
        (status = 404, description = "Unknown category", body = super::error::ErrorBody),
        (status = 429, description = "The caller has the most schedules their policy allows (`limits.schedules`)", body = super::error::ErrorBody),
        (status = 503, description = "No schedule store, or the plugin failed while validating", body = super::error::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), AppError> {
    let body = body_object(body, false)?;
    let category =
        text(&body, "category")?.ok_or_else(|| invalid("category: required (a category name)"))?;
    if !crate::user_name::is_name(category, 64) {
        return Err(invalid(
            "category: a category name is letters, digits, `_`, `-` or `.`",
        ));
    }
    let cron = text(&body, "cron")?.ok_or_else(|| invalid("cron: required"))?;
    let timezone = text(&body, "timezone")?.unwrap_or("UTC");
    let name = text(&body, "name")?.unwrap_or("");
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "name: at most {MAX_NAME} characters, none a control character"
        )));
    }
    let mut params = match body.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ (Value::Object(_) | Value::Array(_))) => p.clone(),
        Some(_) => return Err(invalid("params: must be a JSON object or array")),
    };
    let timing = Timing::parse(cron, timezone).map_err(timing_error)?;
    let now = crate::store::tasks::model::now();
    let next_run = timing
        .next_after(now)
        .ok_or_else(|| invalid("cron: the expression has no time after now"))?;
    let store = store(&state)?;
    let username = &user.0.username;
    super::tasks::add_defaults(state.queue.canonical(category), &mut params);
    super::tasks::admit_user(&state, username, category, &params)?;
    if let Some(cap) = state.policies.of(username).schedules {
        let have = store
            .schedules_of(username)
            .await
            .map_err(AppError::internal)?;
        if have >= cap {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_schedules",
                format!("user {username} has {have} schedules, the most their policy allows (limits.schedules = {cap})"),
            ));
        }
    }
    let task = state.queue.prepare(username, category, &params).await?;
    let made = store
        .create_schedule(NewSchedule {
            owner: username.clone(),
            name: name.to_string(),
            category: category.to_string(),
            shown_params: task.shown_params,
            full_params: task.full_params,
            cron: cron.trim().to_string(),
            timezone: timezone.to_string(),
            next_run,
            created: now,
        })
        .await
        .map_err(AppError::internal)?;
    tracing::info!(schedule_id = made.id, user = %username, category = %made.category, "schedule created");
    state.schedule_wake.wake();
    Ok((StatusCode::CREATED, Json(made.into())))
}

/// `?user=` of `GET schedules`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this user's schedules (an admin; anyone else may name only themselves).
    pub user: Option<String>,
}

/// `GET schedules`.
#[utoipa::path(get, path = "/schedules", tag = "schedules",
    summary = "The caller's schedules (an admin's: everyone's), by id",
    params(ListQuery),
    responses(
        (status = 200, description = "Schedules", body = Vec<ScheduleView>),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "A non-admin named another user", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<ListQuery>>,
) -> Result<Json<Vec<ScheduleView>>, AppError> {
    let owner = user.listed_owner(query.user.as_deref(), "schedules")?;
    let all = store(&state)?
        .schedules(owner)
        .await
        .map_err(AppError::internal)?;
    Ok(Json(all.into_iter().map(ScheduleView::from).collect()))
}

/// `GET schedules/{id}`.
#[utoipa::path(get, path = "/schedules/{id}", tag = "schedules",
    summary = "One schedule",
    params(("id" = i64, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 400, description = "The id is not a positive integer", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown schedule", body = super::error::ErrorBody),
    ))]
pub async fn one(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<ScheduleView>, AppError> {
    Ok(Json(owned(&state, &user, &id).await?.into()))
}

/// Pause or resume schedule `id`.
async fn set_paused(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
    paused: bool,
) -> Result<Json<ScheduleView>, AppError> {
    let schedule = owned(state, user, id).await?;
    if schedule.paused == paused {
        // Already so: resuming a running schedule keeps its `next_run`
        // (and with it an occurrence about to fire).
        return Ok(Json(schedule.into()));
    }
    let next_run = if paused {
        None
    } else {
        let timing = Timing::parse(&schedule.cron, &schedule.timezone).map_err(timing_error)?;
        Some(
            timing
                .next_after(crate::store::tasks::model::now())
                .unwrap_or(NEVER),
        )
    };
    let now = store(state)?
        .set_paused(schedule.id, paused, next_run)
        .await
        .map_err(AppError::internal)?
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_schedule",
                format!("schedule {} not found", schedule.id),
            )
        })?;
    tracing::info!(schedule_id = now.id, paused, "schedule paused or resumed");
    state.schedule_wake.wake();
    Ok(Json(now.into()))
}

/// `PUT schedules/{id}/pause`.
#[utoipa::path(put, path = "/schedules/{id}/pause", tag = "schedules",
    summary = "Pause a schedule: it fires no more until resumed",
    params(("id" = i64, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule, paused", body = ScheduleView),
        (status = 400, description = "The id is not a positive integer", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown schedule", body = super::error::ErrorBody),
    ))]
pub async fn pause(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<ScheduleView>, AppError> {
    set_paused(&state, &user, &id, true).await
}

/// `PUT schedules/{id}/resume`.
#[utoipa::path(put, path = "/schedules/{id}/resume", tag = "schedules",
    summary = "Resume a schedule from its first occurrence after now (the ones missed while paused are not run)",
    params(("id" = i64, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule, running", body = ScheduleView),
        (status = 400, description = "The id is not a positive integer", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown schedule", body = super::error::ErrorBody),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<ScheduleView>, AppError> {
    set_paused(&state, &user, &id, false).await
}

/// `DELETE schedules/{id}`.
#[utoipa::path(delete, path = "/schedules/{id}", tag = "schedules",
    summary = "Delete a schedule (the tasks it submitted stay)",
    params(("id" = i64, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "Deleted: `{}`", body = Object),
        (status = 400, description = "The id is not a positive integer", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown schedule", body = super::error::ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    let schedule = owned(&state, &user, &id).await?;
    let gone = store(&state)?
        .delete_schedule(schedule.id)
        .await
        .map_err(AppError::internal)?;
    if !gone {
        return Err(AppError::not_found(
            "unknown_schedule",
            format!("schedule {} not found", schedule.id),
        ));
    }
    tracing::info!(schedule_id = schedule.id, "schedule deleted");
    state.schedule_wake.wake();
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_the_schedules_zone() {
        assert_eq!(
            rfc3339(1_767_139_200, "Europe/Paris").as_deref(),
            Some("2025-12-31T01:00:00+01:00")
        );
        assert_eq!(
            rfc3339(1_767_139_200, "UTC").as_deref(),
            Some("2025-12-31T00:00:00Z")
        );
    }
}
