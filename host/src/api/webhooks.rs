//! `webhooks...`: a user's webhooks, signed POSTs to their URL when their
//! tasks start or end (and when an image update is available). How they
//! are sent, signed and retried: [`crate::webhooks`].
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `POST webhooks` `{url, events, categories, secret}` | 201, the webhook |
//! | `GET webhooks` (`?user=`: an admin's filter) | `[webhook]`, by id: the caller's (an admin's: everyone's, the configured ones first) |
//! | `GET webhooks/{id}` | the webhook |
//! | `GET webhooks/{id}/deliveries` (`?limit=`, default 100) | `[delivery]`, newest first |
//! | `DELETE webhooks/{id}` | `{}`; its pending deliveries are dropped |
//!
//! A webhook: `{id, owner, url, events, categories, all_users, configured,
//! created}`; its `secret` is write-only: never answered, logged or put in
//! an event. `events`: some of `task.started`, `task.completed`,
//! `task.error`, `app.update_available`, `image.update_available`;
//! `categories`: only tasks of these (absent or null: all). A non-admin's
//! webhook gets the events of their own tasks and objects; an admin's (and
//! a configured `[[webhooks]]` one, id negative) every user's.
//!
//! A delivery: `{id, event_id, event, status, attempts, last_code,
//! last_error, next_attempt, created, delivered}`, `status` one of
//! `pending`, `delivered`, `failed`, times RFC 3339.
//!
//! `url` must be `http` or `https` without a user or password, and its host
//! must resolve to an address webhooks may reach (`[webhooks_policy]
//! allow_hosts`): else 400 naming `url`. A non-admin sees and acts on their
//! own webhooks only (403 `not_yours`); an unknown id is 404
//! `unknown_webhook`; a configured one cannot be deleted (409
//! `configured_webhook`); past the owner's `limits.webhooks` (default 10
//! for non-admins), 429 `too_many_webhooks`. Without a store that keeps
//! webhooks (tests' in-memory queues), 503 `no_webhooks`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::extract::Api;
use super::networks::body_object;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::store::tasks::Owner;
use crate::store::webhooks::{Delivery, DeliveryStatus, NewWebhook, Webhook};
use crate::store::WebhookStore;
use crate::webhooks::{check_events, Configured};

/// Longest secret, in bytes.
const MAX_SECRET: usize = 256;
/// Most categories in a filter.
const MAX_CATEGORIES: usize = 64;
/// Most deliveries one listing answers.
const MAX_DELIVERIES: usize = 1000;

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    vec![
        entry(M::POST, "/webhooks", S, create),
        entry(M::GET, "/webhooks", S, list),
        entry(M::GET, "/webhooks/", S, list),
        entry(M::GET, "/webhooks/{id}", S, one),
        entry(M::GET, "/webhooks/{id}/deliveries", S, deliveries),
        entry(M::DELETE, "/webhooks/{id}", S, remove),
    ]
}

/// The OpenAPI document of this area.
#[derive(OpenApi)]
#[openapi(
    paths(create, list, one, deliveries, remove),
    components(schemas(WebhookView, WebhookBody, DeliveryView, DeliveryStatus)),
    tags((name = "webhooks", description = "Signed POSTs to a URL when tasks start or end, retried for 24 hours"))
)]
pub(super) struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The body of `POST webhooks`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the schema of a body read as a JSON object")]
pub struct WebhookBody {
    /// Where deliveries are POSTed (`http` or `https`, no user or password).
    url: String,
    /// The events it gets: `task.started`, `task.completed`, `task.error`,
    /// `app.update_available`, `image.update_available`.
    events: Vec<String>,
    /// Only tasks of these categories (absent or null: every category).
    categories: Option<Vec<String>>,
    /// Signs each delivery (HMAC-SHA256); write-only, 1 to 256 bytes.
    secret: String,
}

/// A webhook as the API shows it (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Id; negative for a `[[webhooks]]` of the configuration.
    pub id: i64,
    /// Whose it is (empty for a configured one).
    pub owner: String,
    /// Where deliveries go.
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
    /// Only tasks of these categories; null: all.
    pub categories: Option<Vec<String>>,
    /// It gets every user's events (an admin's or a configured one).
    pub all_users: bool,
    /// It comes from the configuration file (cannot be deleted here).
    pub configured: bool,
    /// When it was created (null for a configured one).
    pub created: Option<String>,
}

/// A delivery as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Id.
    pub id: i64,
    /// The event id (the receiver's idempotency key).
    pub event_id: String,
    /// The event name.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i32,
    /// The last answer's HTTP status.
    pub last_code: Option<i32>,
    /// Why the last attempt did not deliver.
    pub last_error: Option<String>,
    /// When it is tried next (pending only).
    pub next_attempt: Option<String>,
    /// When the event was recorded.
    pub created: Option<String>,
    /// When the receiver took it.
    pub delivered: Option<String>,
}

fn rfc3339_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> WebhookView {
        WebhookView {
            created: rfc3339_ms(w.created.saturating_mul(1000)),
            id: w.id,
            owner: w.owner,
            url: w.url,
            events: w.events,
            categories: w.categories,
            all_users: w.all_users,
            configured: false,
        }
    }
}

impl From<&Configured> for WebhookView {
    fn from(c: &Configured) -> WebhookView {
        WebhookView {
            id: c.hook.id,
            owner: String::new(),
            url: c.target.url.clone(),
            events: c.hook.events.clone(),
            categories: c.hook.categories.clone(),
            all_users: true,
            configured: true,
            created: None,
        }
    }
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> DeliveryView {
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_code: d.last_code,
            last_error: d.last_error,
            next_attempt: d.next_attempt.and_then(rfc3339_ms),
            created: rfc3339_ms(d.created),
            delivered: d.delivered.and_then(rfc3339_ms),
        }
    }
}

/// The store, or 503 when the queue's keeps none.
fn store(state: &AppState) -> Result<&dyn WebhookStore, AppError> {
    state.queue.webhooks().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_webhooks",
            "this server's task store keeps no webhooks",
        )
    })
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_params", message)
}

/// A list of strings of the body: `None` when absent or null.
fn names(body: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, AppError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{key}: every entry must be a string")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid(format!("{key}: must be an array of strings"))),
    }
}

/// What `id` names: a stored webhook, or a configured one (negative).
enum Named {
    Stored(Webhook),
    Configured(WebhookView),
}

/// The webhook `id` names, if the caller may see it.
async fn owned(state: &AppState, user: &CurrentUser, id: &str) -> Result<Named, AppError> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| invalid("id: a webhook id is a non-zero integer"))?;
    let not_found = || AppError::not_found("unknown_webhook", format!("webhook {id} not found"));
    let not_yours = || {
        AppError::new(
            StatusCode::FORBIDDEN,
            "not_yours",
            format!("webhook {id} is another user's"),
        )
    };
    if id < 0 {
        let c = state
            .webhooks
            .configured()
            .iter()
            .find(|c| c.hook.id == id)
            .ok_or_else(not_found)?;
        if !user.0.is_admin {
            return Err(not_yours());
        }
        return Ok(Named::Configured(c.into()));
    }
    let hook = store(state)?
        .webhook(id)
        .await
        .map_err(AppError::internal)?
        .ok_or_else(not_found)?;
    if !user.0.is_admin && hook.owner != user.0.username {
        return Err(not_yours());
    }
    Ok(Named::Stored(hook))
}

/// `POST webhooks`.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    summary = "Create a webhook",
    description = "The URL's host must resolve to an address webhooks may reach (`[webhooks_policy] allow_hosts` beyond the public internet). The secret is never answered.",
    request_body(content = WebhookBody, description = "JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "The new webhook", body = WebhookView),
        (status = 400, description = "Bad body, `url` (refused address included), `events`, `categories` or `secret`; the message names the field", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 429, description = "The caller has the most webhooks their policy allows (`limits.webhooks`)", body = super::error::ErrorBody),
        (status = 503, description = "No webhook store", body = super::error::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<WebhookView>), AppError> {
    let body = body_object(body, false)?;
    let url = match body.get("url") {
        Some(Value::String(s)) => s.trim().to_string(),
        None | Some(Value::Null) => return Err(invalid("url: required")),
        Some(_) => return Err(invalid("url: must be a string")),
    };
    let events = names(&body, "events")?.ok_or_else(|| invalid("events: required"))?;
    check_events(&events).map_err(|e| invalid(format!("events: {e}")))?;
    let mut events_unique = Vec::with_capacity(events.len());
    for e in events {
        if !events_unique.contains(&e) {
            events_unique.push(e);
        }
    }
    let categories = names(&body, "categories")?;
    if let Some(cats) = &categories {
        if cats.len() > MAX_CATEGORIES {
            return Err(invalid(format!(
                "categories: at most {MAX_CATEGORIES} names"
            )));
        }
        if let Some(bad) = cats.iter().find(|c| !crate::user_name::is_name(c, 64)) {
            return Err(invalid(format!(
                "categories: `{}` is not a category name (letters, digits, `_`, `-` or `.`)",
                bad.chars().take(64).collect::<String>()
            )));
        }
    }
    let secret = match body.get("secret") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SECRET => s.clone(),
        Some(Value::String(_)) => return Err(invalid(format!("secret: 1 to {MAX_SECRET} bytes"))),
        None | Some(Value::Null) => {
            return Err(invalid("secret: required (it signs each delivery)"))
        }
        Some(_) => return Err(invalid("secret: must be a string")),
    };
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "url" | "events" | "categories" | "secret"))
    {
        return Err(invalid(format!(
            "{}: unknown field (url, events, categories, secret)",
            key.chars().take(64).collect::<String>()
        )));
    }
    let store = store(&state)?;
    let username = &user.0.username;
    if let Some(cap) = state.policies.of(username).webhooks {
        let have = store
            .webhooks_of(username)
            .await
            .map_err(AppError::internal)?;
        if have >= cap {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_webhooks",
                format!("user {username} has {have} webhooks, the most their policy allows (limits.webhooks = {cap})"),
            ));
        }
    }
    let parsed = state
        .webhooks
        .policy()
        .check_url(&url)
        .await
        .map_err(|e| invalid(format!("url: {e}")))?;
    let made = store
        .create_webhook(NewWebhook {
            owner: username.clone(),
            all_users: user.0.is_admin,
            url: parsed.to_string(),
            events: events_unique,
            categories,
            secret,
            created: crate::store::tasks::model::now(),
        })
        .await
        .map_err(AppError::internal)?;
    state.webhooks.changed();
    tracing::info!(webhook_id = made.id, user = %username, "webhook created");
    Ok((StatusCode::CREATED, Json(made.into())))
}

/// `?user=` of `GET webhooks`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this user's webhooks (an admin; anyone else may name only themselves).
    pub user: Option<String>,
}

/// `GET webhooks`.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    summary = "The caller's webhooks (an admin's: everyone's and the configured ones), by id",
    params(ListQuery),
    responses(
        (status = 200, description = "Webhooks, secrets never shown", body = Vec<WebhookView>),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "A non-admin named another user", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<ListQuery>>,
) -> Result<Json<Vec<WebhookView>>, AppError> {
    let owner = user.listed_owner(query.user.as_deref(), "webhooks")?;
    let mut all: Vec<WebhookView> = Vec::new();
    if matches!(owner, Owner::Anyone) {
        all.extend(state.webhooks.configured().iter().map(WebhookView::from));
    }
    let stored = store(&state)?
        .webhooks(owner)
        .await
        .map_err(AppError::internal)?;
    all.extend(stored.into_iter().map(WebhookView::from));
    Ok(Json(all))
}

/// `GET webhooks/{id}`.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    summary = "One webhook",
    params(("id" = i64, Path, description = "The webhook's id (negative: a configured one)")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 400, description = "The id is not a non-zero integer", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown webhook", body = super::error::ErrorBody),
    ))]
pub async fn one(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<WebhookView>, AppError> {
    Ok(Json(match owned(&state, &user, &id).await? {
        Named::Stored(w) => w.into(),
        Named::Configured(v) => v,
    }))
}

/// `?limit=` of `GET webhooks/{id}/deliveries`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many, newest first (1 to 1000; default 100).
    pub limit: Option<usize>,
}

/// `GET webhooks/{id}/deliveries`.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    summary = "A webhook's deliveries, newest first, with their status",
    params(("id" = i64, Path, description = "The webhook's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "Deliveries", body = Vec<DeliveryView>),
        (status = 400, description = "The id or `limit` is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown webhook", body = super::error::ErrorBody),
    ))]
pub async fn deliveries(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
    Api(Query(query)): Api<Query<DeliveriesQuery>>,
) -> Result<Json<Vec<DeliveryView>>, AppError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_DELIVERIES).contains(&limit) {
        return Err(invalid(format!("limit: 1 to {MAX_DELIVERIES}")));
    }
    let id = match owned(&state, &user, &id).await? {
        Named::Stored(w) => w.id,
        Named::Configured(v) => v.id,
    };
    let list = store(&state)?
        .deliveries(id, limit)
        .await
        .map_err(AppError::internal)?;
    Ok(Json(list.into_iter().map(DeliveryView::from).collect()))
}

/// `DELETE webhooks/{id}`.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    summary = "Delete a webhook and drop its deliveries",
    params(("id" = i64, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "Deleted: `{}`", body = Object),
        (status = 400, description = "The id is not a non-zero integer", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown webhook", body = super::error::ErrorBody),
        (status = 409, description = "A configured webhook (`configured_webhook`)", body = super::error::ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    let hook = match owned(&state, &user, &id).await? {
        Named::Stored(w) => w,
        Named::Configured(v) => {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "configured_webhook",
                format!(
                    "webhook {} comes from the configuration file: remove it there",
                    v.id
                ),
            ))
        }
    };
    let gone = store(&state)?
        .delete_webhook(hook.id)
        .await
        .map_err(AppError::internal)?;
    if !gone {
        return Err(AppError::not_found(
            "unknown_webhook",
            format!("webhook {} not found", hook.id),
        ));
    }
    state.webhooks.changed();
    tracing::info!(webhook_id = hook.id, "webhook deleted");
    Ok(Json(json!({})))
}
