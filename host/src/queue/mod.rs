//! Tasks: model, state machine, durable store and scheduler.
//!
//! [`Queue`] is the facade the API uses. OWNER: queue helper (fill in the `todo!()`s).

pub mod executor;
pub mod model;

use std::collections::HashMap;
use std::sync::Arc;

pub use executor::{CategoryInfo, Executor, LogLevel, Outcome, Reporter, TaskContext, ValidationError};
pub use model::{ResultCode, Task, TaskEvent, TaskState};

/// Who is asking: users see their own tasks, admins see all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// User name.
    pub user: String,
    /// Admins see and delete every user's tasks.
    pub is_admin: bool,
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
    /// Optional per-category limits on tasks running at once.
    pub per_category: HashMap<String, usize>,
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
    _private: (),
}

impl Queue {
    /// Submit a task: validate through the executor, mask secrets, store, wake a worker.
    pub async fn submit(&self, _user: &str, _category: &str, _params: &serde_json::Value) -> Result<Task, QueueError> {
        todo!()
    }
    /// Tasks visible to `viewer`, ordered by id, optionally of one category.
    pub async fn list(&self, _viewer: &Viewer, _category: Option<&str>) -> Result<Vec<Task>, QueueError> {
        todo!()
    }
    /// Delete per the rules of the API contract; returns the deleted ids.
    pub async fn delete(&self, _viewer: &Viewer, _selector: DeleteSelector) -> Result<Vec<i64>, QueueError> {
        todo!()
    }
    /// Every task change from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TaskEvent> {
        todo!()
    }
    /// The categories that can be submitted.
    pub fn categories(&self) -> Vec<CategoryInfo> {
        todo!()
    }
    /// Stop taking work, cancel running tasks, flush the store.
    pub async fn shutdown(&self) {
        todo!()
    }
}

#[allow(dead_code)]
fn _assert_send_sync(q: Arc<Queue>) -> Arc<dyn Send + Sync> {
    q
}
