//! Tasks: state machine and scheduler, over the storage layer's
//! [`TaskStore`] ([`crate::store`], which also holds the task model).
//!
//! [`Queue`] is the facade the API uses; [`Queue::start`] opens it over a
//! [`TaskStore`] (by default [`SqliteStore`]) and an [`Executor`] (the plugin
//! host).
//!
//! How a task moves, and what is durable when:
//! - `submit` validates, masks secrets, and returns once the task is stored
//!   (`waiting`); then it is announced and a worker is woken.
//! - one dispatcher claims waiting tasks (FIFO by id, within the total of
//!   workers and the per-category limits) in the store: they are `running` on
//!   disk before they are announced or started, so a task never runs twice.
//! - progress reports update the task in memory and are announced at once;
//!   they are written to the store lazily (coalesced, every
//!   [`PROGRESS_FLUSH_INTERVAL`]).
//! - log lines a run reports are kept in memory per run, bounded, and
//!   written in batches (every [`LOG_FLUSH_INTERVAL`], and the rest with
//!   the end of the run); a run that logs nothing writes nothing.
//! - the end of a run is written before it is announced.
//! - on start, tasks left `running` by a previous process end as `error` /
//!   [`ResultCode::Interrupted`]; `waiting` ones run.
//! - finished tasks are deleted [`QueueConfig::retention`] after their end,
//!   by a sweep every [`RETENTION_INTERVAL`] in batches of
//!   [`RETENTION_BATCH`] (each one short transaction), so the store does not
//!   grow without bound and its writer is never held long.

pub mod config;
mod engine;
pub mod executor;
pub mod mask;
mod nodes;
pub mod testkit;
#[cfg(test)]
mod tests;

// The storage layer's task modules under the paths the queue's users name
// them by (`queue::model`, `queue::store`).
pub use crate::store::tasks as store;
pub use crate::store::tasks::model;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::store::postgres::config::DEFAULT_LEASE;
pub use crate::store::postgres::PgStore;
pub use crate::store::sqlite::SqliteStore;
pub use crate::store::task_log::{LogLimits, LogLine, TaskLog};
pub use executor::{
    CategoryDoc, CategoryInfo, Executor, Finding, LogLevel, Outcome, Relayed, Reporter,
    TaskContext, ValidationError,
};
pub use model::{
    alias_target, task_name, JsonText, ResultCode, Task, TaskEvent, TaskState, CATEGORY_ALIASES,
};
pub use store::{Page, StateCount, TaskFilter, TaskStore};

/// A line a running task logged, as the event stream carries it.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// The task.
    pub id: i64,
    /// Its owner (who may see it).
    pub user: String,
    /// Its category, as submitted.
    pub category: String,
    /// The line, secrets masked.
    pub line: LogLine,
}

/// What a running task found ([`Finding`]), as the event stream carries
/// it: to the task's owner alone.
#[derive(Debug, Clone)]
pub struct FindingEvent {
    /// The task.
    pub id: i64,
    /// Its owner (who alone hears of it).
    pub user: String,
    /// Its category, as submitted.
    pub category: String,
    /// What it found.
    pub finding: Finding,
}

/// How often coalesced progress of running tasks is written to the store.
pub const PROGRESS_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// How often new log lines of running tasks are written to the store
/// (a run's last lines are written with its end).
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How long deleting a running task waits for its run to end after cancelling it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(30);
/// How long [`Queue::shutdown`] waits for cancelled runs to end.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The `detail_state` of a task that was running when the server stopped.
pub const INTERRUPTED_DETAIL: &str = "interrupted: the server stopped while the task ran";
/// How long finished tasks are kept by default ([`QueueConfig::retention`]): 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the retention sweep runs (the first time at start).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(600);
/// Most finished tasks one retention transaction deletes.
pub const RETENTION_BATCH: usize = 500;
/// Capacity of the event channel; slower subscribers see `Lagged`.
pub const EVENT_CAPACITY: usize = 4096;

/// Who is asking: users see their own tasks, admins see all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// User name.
    pub user: String,
    /// Admins see and delete every user's tasks.
    pub is_admin: bool,
}

impl Viewer {
    /// Whose tasks the viewer sees: an admin every user's, a user their own.
    fn owner(&self) -> store::Owner<'_> {
        if self.is_admin {
            store::Owner::Anyone
        } else {
            store::Owner::User(&self.user)
        }
    }
}

/// Which tasks a `DELETE background/...` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteSelector {
    /// `DELETE background/`: every finished task the viewer may see.
    AllFinished,
    /// `DELETE background/{id}`.
    Id(i64),
    /// `DELETE background/{category}`: the finished tasks of that category.
    Category(String),
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Tasks running at once, all categories together.
    pub workers: usize,
    /// Optional per-category limits on tasks running at once (a limit of 0
    /// holds the category's tasks waiting).
    pub per_category: HashMap<String, usize>,
    /// Optional per-user limits on tasks running at once (a user policy's
    /// `limits.running_tasks`); the user's other tasks wait. With several
    /// nodes the limit holds on each node (a node counts its own runs).
    pub per_user: HashMap<String, usize>,
    /// With several nodes: how long a node may stay silent before the
    /// others take it for dead (its running tasks end as interrupted, and
    /// `?node=` refuses it). Nodes heartbeat every third of it.
    pub lease: Duration,
    /// How long a finished (`completed`/`error`) task is kept after its end
    /// before it is deleted; `None`: forever. With several nodes every node
    /// sweeps, harmlessly (they skip the rows another is deleting).
    pub retention: Option<Duration>,
    /// How much of each task's log is kept ([`crate::store::task_log`]).
    pub task_log: LogLimits,
}

impl Default for QueueConfig {
    /// 8 workers, no per-category or per-user limits, the default lease and
    /// retention.
    fn default() -> Self {
        Self {
            workers: 8,
            per_category: HashMap::new(),
            per_user: HashMap::new(),
            lease: DEFAULT_LEASE,
            retention: Some(DEFAULT_RETENTION),
            task_log: LogLimits::default(),
        }
    }
}

/// Why a queue operation was refused. The API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// 404: no such category.
    #[error("unknown category `{0}`")]
    UnknownCategory(String),
    /// 400: params refused by the category's `validate`; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// 400: `?node=` names a node that is unknown or has been silent past the lease.
    #[error("node: no live node `{node}`")]
    UnknownNode {
        /// The node asked for.
        node: String,
    },
    /// 404: no such task (or not visible to the viewer).
    #[error("task {0} not found")]
    NotFound(i64),
    /// 409: e.g. deleting a running task that is not deletable.
    #[error("{0}")]
    Conflict(String),
    /// 503: the plugin failed while validating (trap, budget exceeded).
    #[error("{0}")]
    Plugin(String),
    /// 500: the store failed. Logged, not shown.
    #[error("store: {0}")]
    Store(#[from] anyhow::Error),
}

/// The task queue: submit, list, delete, watch.
pub struct Queue {
    inner: Arc<engine::Inner>,
}

impl Queue {
    /// Open the queue: settle tasks a previous process left `running` (they end
    /// as `error` / [`ResultCode::Interrupted`]), then start the dispatcher and
    /// the workers, which run the `waiting` tasks first. Needs a tokio runtime.
    pub async fn start(
        store: Arc<dyn TaskStore>,
        executor: Arc<dyn Executor>,
        config: QueueConfig,
    ) -> anyhow::Result<Arc<Queue>> {
        let inner = engine::Inner::start(store, executor, config).await?;
        Ok(Arc::new(Queue { inner }))
    }

    /// The category a name stands for: the name itself when a plugin
    /// serves it, else the category it is an alias of ([`CATEGORY_ALIASES`]).
    pub fn canonical<'a>(&self, category: &'a str) -> &'a str {
        if self.inner.category_served(category).is_some() {
            return category;
        }
        alias_target(category)
    }
    /// Every name a category filter `category` stands for: its category and
    /// that category's aliases no plugin serves, the given name first.
    pub fn names_of(&self, category: &str) -> Vec<String> {
        let target = self.canonical(category);
        let mut names = vec![category.to_string()];
        if target != category {
            names.push(target.to_string());
        }
        for (alias, of) in CATEGORY_ALIASES {
            if *of == target && self.inner.category_served(alias).is_none() && *alias != category {
                names.push(alias.to_string());
            }
        }
        names
    }
    /// Submit a task: validate through the executor, mask secrets, store,
    /// wake a worker. An alias is run by its category's plugin; the task
    /// keeps the alias as its category.
    pub async fn submit(
        &self,
        user: &str,
        category: &str,
        params: &serde_json::Value,
    ) -> Result<Task, QueueError> {
        self.submit_to(user, category, params, None).await
    }
    /// [`Queue::submit`] for node `node` (`None`: this node), which must be
    /// alive ([`QueueError::UnknownNode`] otherwise); its node claims it.
    pub async fn submit_to(
        &self,
        user: &str,
        category: &str,
        params: &serde_json::Value,
        node: Option<&str>,
    ) -> Result<Task, QueueError> {
        let submission = engine::Submission {
            user,
            category,
            params,
            node,
        };
        self.inner.submit(submission).await
    }
    /// The task a submit would store, validated by its category's plugin
    /// and with its secrets masked, without storing it (a schedule's
    /// firing stores it in its own transaction). Store it with
    /// [`Queue::on_stored`] as its `OnStored`, then call [`Queue::stored`].
    pub async fn prepare(
        &self,
        user: &str,
        category: &str,
        params: &serde_json::Value,
    ) -> Result<store::NewTask, QueueError> {
        self.inner.prepare(user, category, params).await
    }
    /// What announces a task stored from [`Queue::prepare`] once it is durable.
    pub fn on_stored(&self) -> store::OnStored {
        self.inner.on_stored()
    }
    /// A task from [`Queue::prepare`] was stored: let the dispatcher claim it.
    pub fn stored(&self, task: &Task) {
        tracing::info!(task_id = task.id, category = %task.category, user = %task.user, "task submitted");
        self.inner.wake_dispatcher();
    }
    /// The schedules kept beside the tasks, if the store keeps any.
    pub fn schedules(&self) -> Option<&dyn crate::store::ScheduleStore> {
        self.inner.store().schedules()
    }
    /// The webhooks and their outbox kept beside the tasks, if the store keeps any.
    pub fn webhooks(&self) -> Option<&dyn crate::store::WebhookStore> {
        self.inner.store().webhooks()
    }
    /// Notices of the other nodes (several nodes only).
    pub fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<crate::store::Notice>> {
        self.inner.store().notices()
    }
    /// This node's name when several nodes share the store.
    pub fn node(&self) -> Option<&str> {
        self.inner.store().node()
    }
    /// Tasks visible to `viewer`, newest first, optionally of one category
    /// (an alias lists its category).
    pub async fn list(
        &self,
        viewer: &Viewer,
        category: Option<&str>,
    ) -> Result<Vec<Task>, QueueError> {
        let Some(category) = category else {
            return self.inner.list(viewer, None).await;
        };
        let mut all = Vec::new();
        for name in self.names_of(category) {
            all.extend(self.inner.list(viewer, Some(&name)).await?);
        }
        all.sort_by_key(|t| std::cmp::Reverse(t.id));
        Ok(all)
    }
    /// One page of the tasks visible to `viewer`, newest first, optionally
    /// of one category (an alias lists its category) and of one node; the
    /// next page is `before` the last id of this one. Its cost grows with
    /// `page.limit`, not with the number of tasks stored.
    pub async fn list_page(
        &self,
        viewer: &Viewer,
        category: Option<&str>,
        node: Option<&str>,
        page: Page,
    ) -> Result<Vec<Task>, QueueError> {
        let filter = TaskFilter {
            owner: viewer.owner(),
            category: None,
            node,
        };
        let Some(category) = category else {
            return self.inner.list_page(filter, page).await;
        };
        // Each name's page holds the newest `limit` of its tasks below
        // `before`: the newest `limit` of their union are among them.
        let mut all = Vec::new();
        for name in self.names_of(category) {
            let filter = TaskFilter {
                category: Some(&name),
                ..filter
            };
            all.extend(self.inner.list_page(filter, page).await?);
        }
        all.sort_by_key(|t| std::cmp::Reverse(t.id));
        all.truncate(page.limit);
        Ok(all)
    }
    /// Delete the finished tasks that ended before `ended_before` (epoch
    /// seconds), in batches of [`RETENTION_BATCH`]: what the retention
    /// sweep does. Returns how many were deleted.
    pub async fn expire_finished(&self, ended_before: i64) -> Result<usize, QueueError> {
        Ok(self.inner.expire_finished(ended_before).await?)
    }
    /// One task visible to `viewer` (as `list` shows it), else `NotFound`.
    pub async fn get(&self, viewer: &Viewer, id: i64) -> Result<Task, QueueError> {
        self.inner.get_visible(viewer, id).await
    }
    /// How many tasks there are per category and state (all users), cheaper
    /// than `list` for metrics. Sorted by category, then state.
    pub async fn counts(&self) -> Result<Vec<StateCount>, QueueError> {
        Ok(self.inner.store().counts().await?)
    }
    /// How many of `user`'s tasks are waiting, on every node.
    pub async fn waiting_of(&self, user: &str) -> Result<usize, QueueError> {
        Ok(self.inner.store().waiting_of(user).await?)
    }
    /// Delete per the rules of the API contract; returns the deleted ids.
    pub async fn delete(
        &self,
        viewer: &Viewer,
        selector: DeleteSelector,
    ) -> Result<Vec<i64>, QueueError> {
        let DeleteSelector::Category(c) = selector else {
            return self.inner.delete(viewer, selector).await;
        };
        let names = self.names_of(&c);
        let mut deleted = Vec::new();
        let mut known = false;
        for name in names {
            match self
                .inner
                .delete(viewer, DeleteSelector::Category(name))
                .await
            {
                Ok(ids) => {
                    known = true;
                    deleted.extend(ids);
                }
                Err(QueueError::UnknownCategory(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if !known {
            return Err(QueueError::UnknownCategory(c));
        }
        Ok(deleted)
    }
    /// Every task change from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TaskEvent> {
        self.inner.events.subscribe()
    }
    /// Everything this node's runs find from now on ([`Finding`]).
    pub fn subscribe_findings(&self) -> tokio::sync::broadcast::Receiver<FindingEvent> {
        self.inner.findings.subscribe()
    }
    /// Every log line of this node's runs from now on (lines are copied
    /// for the stream only while someone subscribes).
    pub fn subscribe_logs(&self) -> tokio::sync::broadcast::Receiver<LogEvent> {
        self.inner.logs.subscribe()
    }
    /// The log of one task visible to `viewer` (else `NotFound`): a run of
    /// this node from memory, every line so far; any other task as stored
    /// (another node's run as of its last write, at most
    /// [`LOG_FLUSH_INTERVAL`] behind).
    pub async fn log(&self, viewer: &Viewer, id: i64) -> Result<TaskLog, QueueError> {
        self.inner.log_of(viewer, id).await
    }
    /// The categories that can be submitted.
    pub fn categories(&self) -> Vec<CategoryInfo> {
        self.inner.categories().cloned().collect()
    }
    /// What the API documents of each category (OpenAPI, the dashboard).
    pub fn category_docs(&self) -> Vec<CategoryDoc> {
        self.inner.executor.category_docs()
    }
    /// Stop taking work, cancel running tasks, flush the store.
    ///
    /// Runs cancelled here end as `error` / [`ResultCode::Interrupted`] (unless
    /// they completed anyway); waiting tasks stay waiting for the next start.
    /// Later submissions fail. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

impl Drop for Queue {
    /// Without [`Queue::shutdown`]: stop claiming new work (runs in progress
    /// still end and are recorded), so the store closes once they are done.
    fn drop(&mut self) {
        self.inner.stop_dispatching();
    }
}

#[allow(dead_code)]
fn _assert_send_sync(q: Arc<Queue>) -> Arc<dyn Send + Sync> {
    q
}
