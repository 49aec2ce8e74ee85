//! `event...`: the recent task events, and waiting for a container to
//! reach a state.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET event` (`?index=`: from this sequence number; `?offset=`: before this one) | `{"index", "messages": ["background:<user>:<epoch>:<json>", ...], "offset"}`, newest first; without `index` the latest 20 |
//! | `GET event/wait/{type}/{id}/{state}` (`?duration=S`, default 60, at most 300) | the container's entry (as `GET container/{type}/{id}`) once it is `running` or `stopped`; 408 `wait_timeout` after `duration` |
//!
//! The events are the task state changes the queue announces (the same as
//! `GET background/events`: a task's progress is not one), kept in memory
//! in a ring of the latest [`RING_CAPACITY`]; each has a sequence number,
//! counted from 1 at start. A non-admin sees only their own tasks' events.
//!
//! A wait polls the container's entry every [`WAIT_POLL`]; it is checked
//! like `GET container/{type}/{id}` (an unknown container is 404, another
//! user's 403 as the policy says), ends when the client goes away or the
//! server stops, and a user may have [`WAITS_PER_USER`] at once (then 429
//! `too_many_waits`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::audit::Recorder;
use super::containers::{check_container, context, entry_of, runtime_kind};
use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::queue::{Queue, TaskState};
use crate::runtime::{ContainerEntry, ContainerState};

/// Task events kept in memory.
pub const RING_CAPACITY: usize = 1000;
/// Events `GET event` answers without `index`.
const LATEST: usize = 20;
/// Waits a user may have at once.
pub const WAITS_PER_USER: usize = 16;
/// A wait's default duration, as Container Station's (seconds).
pub const DEFAULT_WAIT_SECS: u64 = 60;
/// A wait's longest duration (seconds).
pub const MAX_WAIT_SECS: u64 = 300;
/// How often a wait looks at the container.
pub const WAIT_POLL: Duration = Duration::from_millis(250);

/// The event services of the API: the audit log's recorder, the ring of
/// recent task events, and the waits under way.
pub struct Events {
    /// The audit log (see [`super::audit`]).
    pub audit: Recorder,
    ring: Arc<Mutex<Ring>>,
    waits: Arc<Mutex<HashMap<String, usize>>>,
    feeder: tokio::task::JoinHandle<()>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

/// One kept event.
struct Kept {
    seq: u64,
    user: String,
    message: String,
}

/// The latest task events, and each unfinished task's last state (so that
/// a progress update, which changes no state, is not an event).
#[derive(Default)]
struct Ring {
    next: u64,
    kept: VecDeque<Kept>,
    states: HashMap<i64, TaskState>,
}

impl Ring {
    fn push(&mut self, user: String, message: String) {
        self.next += 1;
        if self.kept.len() == RING_CAPACITY {
            self.kept.pop_front();
        }
        self.kept.push_back(Kept {
            seq: self.next,
            user,
            message,
        });
    }

    /// The `GET event` answer for `viewer`.
    fn read(
        &self,
        viewer: &crate::queue::Viewer,
        index: Option<u64>,
        offset: Option<u64>,
    ) -> EventPage {
        let end = offset.unwrap_or(self.next + 1).min(self.next + 1);
        let visible = self
            .kept
            .iter()
            .rev()
            .filter(|k| k.seq < end && (viewer.is_admin || k.user == viewer.user));
        let picked: Vec<&Kept> = match index {
            Some(from) => visible.take_while(|k| k.seq >= from).collect(),
            None => visible.take(LATEST).collect(),
        };
        let first = match index {
            Some(from) => from.min(end),
            None => picked.last().map_or(end, |k| k.seq),
        };
        EventPage {
            index: first,
            messages: picked.iter().map(|k| k.message.clone()).collect(),
            offset: end,
        }
    }
}

impl Events {
    /// Keep the events of `queue` from now on, and record the audit log
    /// with `audit`.
    pub fn start(queue: &Queue, audit: Recorder) -> Events {
        let ring = Arc::new(Mutex::new(Ring::default()));
        let mut rx = queue.subscribe();
        let feeding = ring.clone();
        let feeder = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => note(&feeding, &ev),
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "the event ring fell behind the queue")
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Events {
            audit,
            ring,
            waits: Arc::default(),
            feeder,
        }
    }

    fn wait_slot(&self, user: &str) -> Result<WaitSlot, AppError> {
        let mut waits = self.waits.lock();
        let n = waits.entry(user.to_string()).or_default();
        if *n >= WAITS_PER_USER {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_waits",
                format!(
                    "user {user} has {WAITS_PER_USER} waits under way already, the most allowed"
                ),
            ));
        }
        *n += 1;
        Ok(WaitSlot {
            waits: self.waits.clone(),
            user: user.to_string(),
        })
    }
}

/// One wait's place; dropping it gives the place back.
struct WaitSlot {
    waits: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut waits = self.waits.lock();
        if let Some(n) = waits.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                waits.remove(&self.user);
            }
        }
    }
}

/// Keep `ev` when it changes its task's state.
fn note(ring: &Mutex<Ring>, ev: &crate::queue::TaskEvent) {
    let t = &ev.task;
    let mut ring = ring.lock();
    if ev.deleted {
        ring.states.remove(&t.id);
        return;
    }
    if ring.states.get(&t.id) == Some(&t.state) {
        return;
    }
    if t.state.is_finished() {
        ring.states.remove(&t.id);
    } else {
        ring.states.insert(t.id, t.state);
    }
    let message = message_of(t, crate::queue::model::now());
    ring.push(t.user.clone(), message);
}

/// Container Station's `Category:User:Timestamp:JSON` line of a task change.
fn message_of(t: &crate::queue::Task, now: i64) -> String {
    let mut json = serde_json::json!({
        "category": t.category,
        "tid": t.id,
        "state": t.state,
        "container": t.name,
    });
    if let Some(r) = t.result {
        json["result"] = r.into();
    }
    format!("background:{}:{now}:{json}", t.user)
}

/// The answer of `GET event`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The sequence number the messages start from.
    pub index: u64,
    /// `Category:User:Timestamp:JSON`, newest first.
    pub messages: Vec<String>,
    /// The sequence number after the newest message: the next `index`.
    pub offset: u64,
}

/// The query of `GET event`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Start from this sequence number (absent: the latest 20).
    #[param(value_type = Option<u64>)]
    pub index: Option<String>,
    /// Only events before this sequence number (absent: up to the newest).
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
}

fn number(field: &str, v: &Option<String>) -> Result<Option<u64>, AppError> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                AppError::bad_request(
                    "invalid_query",
                    format!(
                        "{field}: must be a whole number, got `{}`",
                        s.chars().take(64).collect::<String>()
                    ),
                )
            })
        })
        .transpose()
}

/// `GET event`: the recent task events the caller may see.
#[utoipa::path(get, path = "/event", tag = "events",
    summary = "Recent task events, newest first",
    params(EventQuery),
    responses(
        (status = 200, description = "The events", body = EventPage),
        (status = 400, description = "`index` or `offset` is not a number (`invalid_query`)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn recent(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<EventQuery>>,
) -> Result<Json<EventPage>, AppError> {
    let index = number("index", &query.index)?;
    let offset = number("offset", &query.offset)?;
    let page = state.events.ring.lock().read(&user.viewer(), index, offset);
    Ok(Json(page))
}

/// The query of `GET event/wait/...`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait at most (1 to 300, default 60).
    #[param(value_type = Option<u64>)]
    pub duration: Option<String>,
}

/// The state a wait's path names.
fn wanted_state(segment: &str) -> Result<ContainerState, AppError> {
    match segment {
        "running" => Ok(ContainerState::Running),
        "stopped" => Ok(ContainerState::Stopped),
        other => Err(AppError::bad_request(
            "invalid_params",
            format!(
                "state: must be \"running\" or \"stopped\", got `{}`",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// A wait's duration.
fn duration_of(query: &WaitQuery) -> Result<Duration, AppError> {
    match number("duration", &query.duration) {
        Ok(None) => Ok(Duration::from_secs(DEFAULT_WAIT_SECS)),
        Ok(Some(s)) if (1..=MAX_WAIT_SECS).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(AppError::bad_request(
            "invalid_query",
            format!(
                "duration: must be a whole number of seconds from 1 to {MAX_WAIT_SECS}, got `{}`",
                query
                    .duration
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(64)
                    .collect::<String>()
            ),
        )),
    }
}

/// `GET event/wait/{type}/{id}/{state}`: wait until the container is in
/// `state`, and answer its entry.
#[utoipa::path(get, path = "/event/wait/{type}/{id}/{state}", tag = "events",
    summary = "Wait until a container is running or stopped, and answer its entry",
    params(
        ("type" = String, Path, description = "`docker` or `lxc`"),
        ("id" = String, Path, description = "Container id, 12+ character id prefix, or name"),
        ("state" = String, Path, description = "`running` or `stopped`"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The entry, in the state", body = ContainerEntry),
        (status = 408, description = "Not in the state within `duration` (`wait_timeout`)", body = super::error::ErrorBody),
        (status = 429, description = "The user has the most waits under way (`too_many_waits`)", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn wait(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((kind, id, wanted))): Api<Path<(String, String, String)>>,
    Api(Query(query)): Api<Query<WaitQuery>>,
) -> Result<Json<ContainerEntry>, AppError> {
    let kind = runtime_kind(&kind)?;
    check_container(&id)?;
    let wanted = wanted_state(&wanted)?;
    let duration = duration_of(&query)?;
    let _slot = state.events.wait_slot(&user.0.username)?;
    let deadline = tokio::time::Instant::now() + duration;
    let cx = context(&user);
    loop {
        let entry = entry_of(&state, &cx, kind, id.clone()).await?;
        if entry.state == wanted {
            // The answer of `GET container/{type}/{id}`, with its resource sample.
            let target = super::containers::Target { kind, id };
            return super::containers::get(State(state.clone()), user, target).await;
        }
        let next = tokio::time::Instant::now() + WAIT_POLL;
        if next >= deadline {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = state.shutdown.cancelled() => {}
            }
            return Err(AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                "wait_timeout",
                format!(
                    "the container was not {} within {} s",
                    if wanted == ContainerState::Running {
                        "running"
                    } else {
                        "stopped"
                    },
                    duration.as_secs()
                ),
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = state.shutdown.cancelled() => {
                return Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is stopping"));
            }
        }
    }
}

/// The event routes.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    vec![
        entry(Method::GET, "/event", S, recent),
        entry(Method::GET, "/event/wait/{type}/{id}/{state}", S, wait),
    ]
}

/// The OpenAPI description of the event routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(recent, wait),
    components(schemas(EventPage)),
    tags((name = "events", description = "Recent task events; waiting for a container's state"))
)]
pub(super) struct Doc;

/// [`Doc`]'s document.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    <Doc as utoipa::OpenApi>::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Viewer;

    fn viewer(user: &str, is_admin: bool) -> Viewer {
        Viewer {
            user: user.into(),
            is_admin,
        }
    }

    #[test]
    fn the_ring_pages_by_sequence_and_hides_other_users() {
        let mut ring = Ring::default();
        for i in 0..30 {
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            ring.push(user.into(), format!("m{}", i + 1));
        }
        let admin = ring.read(&viewer("root", true), None, None);
        assert_eq!(admin.messages.len(), LATEST);
        assert_eq!(admin.messages[0], "m30");
        assert_eq!((admin.index, admin.offset), (11, 31));
        let bob = ring.read(&viewer("bob", false), Some(25), None);
        assert_eq!(bob.messages, ["m30", "m28", "m26"]);
        assert_eq!((bob.index, bob.offset), (25, 31));
        let window = ring.read(&viewer("root", true), Some(3), Some(5));
        assert_eq!(window.messages, ["m4", "m3"]);
        let none = ring.read(&viewer("root", true), Some(31), None);
        assert!(none.messages.is_empty());
        assert_eq!((none.index, none.offset), (31, 31));
    }

    #[test]
    fn the_ring_keeps_the_latest() {
        let mut ring = Ring::default();
        for i in 0..(RING_CAPACITY + 5) {
            ring.push("a".into(), i.to_string());
        }
        assert_eq!(ring.kept.len(), RING_CAPACITY);
        assert_eq!(ring.kept.front().unwrap().seq, 6);
    }

    #[test]
    fn waits_name_their_bad_field() {
        assert!(wanted_state("paused")
            .unwrap_err()
            .message
            .starts_with("state:"));
        for bad in ["0", "301", "x", "-1"] {
            let q = WaitQuery {
                duration: Some(bad.into()),
            };
            assert!(
                duration_of(&q)
                    .unwrap_err()
                    .message
                    .starts_with("duration:"),
                "{bad}"
            );
        }
        assert_eq!(
            duration_of(&WaitQuery::default()).unwrap(),
            Duration::from_secs(60)
        );
    }
}
