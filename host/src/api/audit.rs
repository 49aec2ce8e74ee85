//! The audit log: every state-changing call under the API prefixes
//! (`POST`, `PUT`, `DELETE`, `PATCH`, login included) is recorded by one
//! layer around the router ([`Record`]), and read back by the log routes.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET log` (`start`, `end`: epoch seconds, 0 none; `limit` (20), `offset`, `user`, `level` and `category` (comma lists), `text`) | `[{category, id, level, message, ts, user}]`, newest first |
//! | `GET log/export` (the same filters, no default limit) | CSV `Date,Level,Category,User,Message`, `text/csv` |
//! | `DELETE log` (admins only) | `{"records": n}`: how many were deleted |
//!
//! A record says who (the session's user; for a login or logout the user
//! it names, `-` when there is none), what (method and path, never the
//! query string or the body; for a submit or `POST container` the task's
//! id), when, and the outcome
//! (the status; level `INFO` for 1xx to 3xx, `WARN` for 4xx, `ERROR` for
//! 5xx). A non-admin reads only their own records.
//!
//! Records are written by a writer task in batches: the layer hands each
//! one over a bounded channel and never waits. When the channel is full
//! the record is dropped and counted (metric
//! `stevedore_audit_dropped_total`, and a `WARN` record once the writer
//! catches up). Records older than `[queue] retention_days` are pruned as
//! finished tasks are.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tower::Service;

use super::around::Around;
use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState, PREFIXES};
use crate::store::audit::{AuditEntry, AuditFilter, NewAuditEntry};
use crate::store::AuditLog;

/// Records waiting for the writer at most; more are dropped and counted.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Records the writer appends in one transaction at most.
const BATCH: usize = 256;
/// How often records past retention are pruned (the first time at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Longest path a record keeps, in characters.
const MAX_PATH: usize = 256;
/// Largest answer body the layer reads to name a login's user or a
/// submit's task.
const MAX_PEEK: usize = 64 * 1024;

/// The levels a record can have, as Container Station spells them.
pub const LEVELS: [&str; 3] = ["INFO", "WARN", "ERROR"];
/// The categories a record can have, as Container Station names them.
pub const CATEGORIES: [&str; 6] = ["container", "image", "import", "export", "backup", "system"];

/// The audit log of the server: its store, and the channel to its writer.
#[derive(Clone)]
pub struct Recorder {
    store: Arc<dyn AuditLog>,
    tx: mpsc::Sender<NewAuditEntry>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Record into `store`, pruning records older than `retention` (none:
    /// keep them). Starts the writer task, which ends once every clone of
    /// the recorder is gone.
    pub fn start(store: Arc<dyn AuditLog>, retention: Option<Duration>) -> Recorder {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(store.clone(), rx, dropped.clone(), retention));
        Recorder { store, tx, dropped }
    }

    /// The store, for the log routes.
    pub fn store(&self) -> &Arc<dyn AuditLog> {
        &self.store
    }

    /// Hand `entry` to the writer; when it is behind, drop and count it.
    pub fn record(&self, entry: NewAuditEntry) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::audit_dropped();
        }
    }
}

/// Append what arrives, in batches; prune hourly; note the drops.
async fn write_loop(
    store: Arc<dyn AuditLog>,
    mut rx: mpsc::Receiver<NewAuditEntry>,
    dropped: Arc<AtomicU64>,
    retention: Option<Duration>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    batch.push(NewAuditEntry {
                        ts_micros: now_micros(),
                        level: "WARN".into(),
                        category: "system".into(),
                        user: "system".into(),
                        message: format!("{lost} audit records were dropped: the log's writer was behind"),
                    });
                }
                if let Err(e) = store.append(&batch).await {
                    tracing::warn!(error = %format!("{e:#}"), records = batch.len(), "writing the audit log failed");
                }
                batch.clear();
            }
            _ = prune.tick() => {
                if let Some(keep) = retention {
                    let before = now_micros() - keep.as_micros().min(i64::MAX as u128) as i64;
                    match store.prune(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(records = n, "deleted audit records past retention"),
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning the audit log failed"),
                    }
                }
            }
        }
    }
}

/// Microseconds since the epoch.
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The user of a request, once its session is known: the layer puts an
/// empty one in the request's extensions, and the session check fills it.
#[derive(Clone, Default)]
pub struct Who(Arc<Mutex<Option<String>>>);

impl Who {
    /// The request is `user`'s.
    pub fn set(&self, user: &str) {
        *self.0.lock() = Some(user.to_string());
    }
    fn get(&self) -> Option<String> {
        self.0.lock().clone()
    }
}

/// The layer that records every state-changing API call.
#[derive(Clone)]
pub(super) struct Record(pub(super) Recorder);

/// What a call's record needs of its request.
struct Call {
    method: Method,
    /// The path after its API prefix, without the leading `/`.
    rest: String,
    /// The path as called, shortened to [`MAX_PATH`].
    path: String,
}

impl Call {
    fn of(request: &Request) -> Option<Call> {
        let method = request.method();
        if !matches!(
            *method,
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH
        ) {
            return None;
        }
        let path = request.uri().path();
        let rest = PREFIXES
            .iter()
            .find_map(|p| path.strip_prefix(p)?.strip_prefix('/'))?;
        Some(Call {
            method: method.clone(),
            rest: rest.to_string(),
            path: path.chars().take(MAX_PATH).collect(),
        })
    }

    fn is_login(&self) -> bool {
        self.method == Method::POST && self.rest == "login"
    }

    /// `PUT logout` needs no session: its answer names the user it ended.
    fn is_logout(&self) -> bool {
        self.method == Method::PUT && self.rest == "logout"
    }

    fn is_submit(&self) -> bool {
        self.method == Method::POST && self.rest.starts_with("background/")
    }
}

impl Around for Record {
    async fn around<S>(self, mut request: Request, mut inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        let Some(call) = Call::of(&request) else {
            let Ok(answer) = inner.call(request).await;
            return answer;
        };
        let ts_micros = now_micros();
        let who = Who::default();
        request.extensions_mut().insert(who.clone());
        let Ok(answer) = inner.call(request).await;
        let status = answer.status();
        let names_user = call.is_login() || call.is_logout();
        let (answer, peeked) = if status.is_success() && (names_user || call.is_submit()) {
            peek(answer).await
        } else {
            (answer, None)
        };
        let mut user = who.get();
        let mut message = format!("{} {}: {}", call.method, call.path, status.as_u16());
        if let Some(body) = peeked {
            if names_user {
                user = body
                    .get("username")
                    .and_then(|u| u.as_str())
                    .map(str::to_string);
            } else if let Some(ids) = task_ids(&body) {
                message.push_str(&format!(" (task {ids})"));
            }
        }
        // `POST container` names the task that did the work in a header.
        if let Some(task) = answer
            .headers()
            .get(super::container_create::TASK_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
        {
            message.push_str(&format!(" (task {task})"));
        }
        self.0.record(NewAuditEntry {
            ts_micros,
            level: level_of(status).to_string(),
            category: category_of(&call.rest).to_string(),
            user: user.unwrap_or_else(|| "-".to_string()),
            message,
        });
        answer
    }
}

/// Read a small JSON answer to look at it, and give it back whole.
async fn peek(answer: Response) -> (Response, Option<serde_json::Value>) {
    let (parts, body) = answer.into_parts();
    let small = axum::body::HttpBody::size_hint(&body)
        .upper()
        .is_some_and(|n| n as usize <= MAX_PEEK);
    if !small {
        return (Response::from_parts(parts, body), None);
    }
    match axum::body::to_bytes(body, MAX_PEEK).await {
        Ok(bytes) => {
            let value = serde_json::from_slice(&bytes).ok();
            (Response::from_parts(parts, Body::from(bytes)), value)
        }
        Err(_) => (
            AppError::internal("reading an answer to record it").into_response(),
            None,
        ),
    }
}

/// The ids of the task(s) a submit answered with, as `12` or `12, 13`.
fn task_ids(body: &serde_json::Value) -> Option<String> {
    let one = |v: &serde_json::Value| v.get("id").and_then(|i| i.as_i64());
    let ids: Vec<String> = match body {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(one)
            .map(|i| i.to_string())
            .collect(),
        v => one(v).into_iter().map(|i| i.to_string()).collect(),
    };
    (!ids.is_empty()).then(|| ids.join(", "))
}

/// The level of an outcome.
fn level_of(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "ERROR"
    } else if status.is_client_error() {
        "WARN"
    } else {
        "INFO"
    }
}

/// Container Station's category of a call, from its path after the prefix.
fn category_of(rest: &str) -> &'static str {
    let mut parts = rest.split('/');
    let first = parts.next().unwrap_or("");
    match first {
        "background" => {
            let task = parts.next().unwrap_or("");
            if task.contains("export") {
                "export"
            } else if task.contains("import") {
                "import"
            } else if task.contains("backup") {
                "backup"
            } else if task.starts_with("image") {
                "image"
            } else {
                "container"
            }
        }
        f if f.starts_with("container") || f.starts_with("app") || f.starts_with("template") => {
            "container"
        }
        "network" | "networks" | "volume" | "volumes" => "container",
        f if f.starts_with("image") || f.starts_with("registr") => "image",
        "import" => "import",
        "export" => "export",
        "backup" => "backup",
        _ => "system",
    }
}

/// The query of `GET log` and `GET log/export`: each value as sent, checked
/// by [`LogQuery::filter`] so that an error names its field.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only records at or after this time (epoch seconds; 0: no bound).
    #[param(value_type = Option<i64>)]
    pub start: Option<String>,
    /// Only records at or before this time (epoch seconds; 0: no bound).
    #[param(value_type = Option<i64>)]
    pub end: Option<String>,
    /// At most this many records (1 to 1000; `GET log` default 20, export: all).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// Skip this many of the newest matching records.
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
    /// Only this user's records (a non-admin sees only their own anyway).
    pub user: Option<String>,
    /// Only these levels: `INFO`, `WARN`, `ERROR`, comma-separated.
    pub level: Option<String>,
    /// Only these categories (`container`, `image`, `import`, `export`,
    /// `backup`, `system`), comma-separated.
    pub category: Option<String>,
    /// Only records whose message contains this text.
    pub text: Option<String>,
}

/// Most records one read of `GET log` answers.
pub const MAX_LIMIT: u64 = 1000;

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn number(field: &str, v: &Option<String>) -> Result<Option<u64>, AppError> {
    given(v)
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                AppError::bad_request(
                    "invalid_query",
                    format!("{field}: must be a whole number, got `{}`", short(s)),
                )
            })
        })
        .transpose()
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A comma list whose every item is one of `allowed` (case-insensitive),
/// in `allowed`'s spelling.
fn one_of(field: &str, v: &Option<String>, allowed: &[&str]) -> Result<Vec<String>, AppError> {
    let Some(list) = given(v) else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| {
            let item = if item.eq_ignore_ascii_case("warning") {
                "WARN"
            } else {
                item
            };
            allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(item))
                .map(|a| a.to_string())
                .ok_or_else(|| {
                    AppError::bad_request(
                        "invalid_query",
                        format!(
                            "{field}: `{}` is none of {}",
                            short(item),
                            allowed.join(", ")
                        ),
                    )
                })
        })
        .collect()
}

impl LogQuery {
    /// The filter this query asks for, as `user` may see it; `default_limit`
    /// when it names none.
    /// `None` when the caller may see none of what it asks for.
    fn filter(
        &self,
        user: &CurrentUser,
        default_limit: Option<u64>,
    ) -> Result<Option<AuditFilter>, AppError> {
        let seconds = |field: &str, v: &Option<String>| -> Result<Option<i64>, AppError> {
            Ok(number(field, v)?
                .filter(|s| *s > 0)
                .map(|s| (s.min(i64::MAX as u64 / 1_000_000) as i64) * 1_000_000))
        };
        let limit = match number("limit", &self.limit)? {
            None => default_limit,
            Some(l) if (1..=MAX_LIMIT).contains(&l) => Some(l),
            Some(l) => {
                return Err(AppError::bad_request(
                    "invalid_query",
                    format!("limit: must be from 1 to {MAX_LIMIT}, got {l}"),
                ))
            }
        };
        let text = given(&self.text).map(str::to_string);
        if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
            return Err(AppError::bad_request(
                "invalid_query",
                "text: at most 200 characters",
            ));
        }
        let asked = given(&self.user).map(str::to_string);
        let me = &user.0;
        let user_filter = if me.is_admin {
            asked
        } else {
            // A non-admin asking for another user's records gets none.
            if asked.as_ref().is_some_and(|other| *other != me.username) {
                return Ok(None);
            }
            Some(me.username.clone())
        };
        // Seconds to the end of the `end` second, so `end=ts` keeps a record at `ts`.
        let end = seconds("end", &self.end)?.map(|e| e.saturating_add(999_999));
        Ok(Some(AuditFilter {
            start_micros: seconds("start", &self.start)?,
            end_micros: end,
            user: user_filter,
            levels: one_of("level", &self.level, &LEVELS)?,
            categories: one_of("category", &self.category, &CATEGORIES)?,
            text,
            limit,
            offset: number("offset", &self.offset)?.unwrap_or(0),
        }))
    }
}

/// One record as `GET log` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogRecord {
    /// `container`, `image`, `import`, `export`, `backup` or `system`.
    pub category: String,
    /// Increasing id.
    pub id: i64,
    /// `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// What was called and how it ended.
    pub message: String,
    /// When, epoch seconds.
    pub ts: i64,
    /// Who called.
    pub user: String,
}

impl From<AuditEntry> for LogRecord {
    fn from(a: AuditEntry) -> LogRecord {
        LogRecord {
            category: a.entry.category,
            id: a.id,
            level: a.entry.level,
            message: a.entry.message,
            ts: a.entry.ts_micros.div_euclid(1_000_000),
            user: a.entry.user,
        }
    }
}

/// The records `filter` picks (none for `None`).
async fn read(state: &AppState, filter: Option<AuditFilter>) -> Result<Vec<AuditEntry>, AppError> {
    let Some(filter) = filter else {
        return Ok(Vec::new());
    };
    state
        .events
        .audit
        .store()
        .list(&filter)
        .await
        .map_err(|e| AppError::internal(format!("reading the audit log: {e:#}")))
}

/// `GET log`: the records the caller may see, newest first.
#[utoipa::path(get, path = "/log", tag = "log",
    summary = "The audit log of state-changing calls, newest first",
    params(LogQuery),
    responses(
        (status = 200, description = "The records", body = Vec<LogRecord>),
        (status = 400, description = "A query value is not valid (`invalid_query`; the message names it)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<LogQuery>>,
) -> Result<Json<Vec<LogRecord>>, AppError> {
    let rows = read(&state, query.filter(&user, Some(20))?).await?;
    Ok(Json(rows.into_iter().map(LogRecord::from).collect()))
}

/// `GET log/export`: the records the caller may see as CSV, newest first.
#[utoipa::path(get, path = "/log/export", tag = "log",
    summary = "The audit log as CSV: Date,Level,Category,User,Message",
    params(LogQuery),
    responses(
        (status = 200, description = "The records", content_type = "text/csv", body = String),
        (status = 400, description = "A query value is not valid (`invalid_query`; the message names it)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<LogQuery>>,
) -> Result<Response, AppError> {
    let rows = read(&state, query.filter(&user, None)?).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"log.csv\"",
            ),
        ],
        csv(&rows),
    )
        .into_response())
}

/// The recorded CSV: a header line, then one line per record.
fn csv(rows: &[AuditEntry]) -> String {
    let mut out = String::from("Date,Level,Category,User,Message\r\n");
    for r in rows {
        let e = &r.entry;
        let date = format!(
            "{}.{:06}",
            crate::clock::format_local(e.ts_micros.div_euclid(1_000_000)),
            e.ts_micros.rem_euclid(1_000_000)
        );
        let fields = [date.as_str(), &e.level, &e.category, &e.user, &e.message];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
/// line break, its quotes doubled.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

/// The answer of `DELETE log`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cleared {
    /// How many records were deleted.
    pub records: u64,
}

/// `DELETE log`: empty the audit log (admins only).
#[utoipa::path(delete, path = "/log", tag = "log",
    summary = "Empty the audit log (admins only)",
    responses(
        (status = 200, description = "How many records were deleted", body = Cleared),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin (`admin_only`)", body = super::error::ErrorBody),
    ))]
pub async fn clear(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Cleared>, AppError> {
    if !user.0.is_admin {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "admin_only",
            "only an admin may empty the log",
        ));
    }
    let records = state
        .events
        .audit
        .store()
        .clear()
        .await
        .map_err(|e| AppError::internal(format!("emptying the audit log: {e:#}")))?;
    Ok(Json(Cleared { records }))
}

/// The log routes.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    vec![
        entry(Method::GET, "/log", S, list),
        entry(Method::DELETE, "/log", S, clear),
        entry(Method::GET, "/log/export", S, export),
    ]
}

/// The OpenAPI description of the log routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, export, clear),
    components(schemas(LogRecord, Cleared)),
    tags((name = "log", description = "The audit log of state-changing calls"))
)]
pub(super) struct Doc;

/// [`Doc`]'s document.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    <Doc as utoipa::OpenApi>::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_container_station() {
        assert_eq!(category_of("background/image_download"), "image");
        assert_eq!(category_of("background/container_export"), "export");
        assert_eq!(category_of("background/create"), "container");
        assert_eq!(category_of("container/docker/x/start"), "container");
        assert_eq!(category_of("apps/joomla/stop"), "container");
        assert_eq!(category_of("registry/3"), "image");
        assert_eq!(category_of("login"), "system");
        assert_eq!(category_of("log"), "system");
    }

    #[test]
    fn levels_follow_the_status() {
        assert_eq!(level_of(StatusCode::OK), "INFO");
        assert_eq!(level_of(StatusCode::NOT_FOUND), "WARN");
        assert_eq!(level_of(StatusCode::BAD_GATEWAY), "ERROR");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn submits_name_their_tasks() {
        assert_eq!(
            task_ids(&serde_json::json!({"id": 7})).as_deref(),
            Some("7")
        );
        assert_eq!(
            task_ids(&serde_json::json!([{"id": 7}, {"id": 8}])).as_deref(),
            Some("7, 8")
        );
        assert_eq!(task_ids(&serde_json::json!({})), None);
    }

    #[test]
    fn lists_name_their_field() {
        let bad = one_of("level", &Some("INFO,LOUD".into()), &LEVELS).unwrap_err();
        assert!(bad.message.starts_with("level:"), "{}", bad.message);
        assert_eq!(
            one_of("level", &Some("info, warning".into()), &LEVELS).unwrap(),
            ["INFO", "WARN"]
        );
    }
}
