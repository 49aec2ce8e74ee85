//! The task object as the API shows it, and its state machine.

use serde::{Deserialize, Serialize};

/// A task's state: `waiting → running → completed | error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Stored, not yet picked by a worker.
    Waiting,
    /// A worker runs it.
    Running,
    /// Ended with success.
    Completed,
    /// Ended with failure; `result` says why.
    Error,
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Error)
    }
    /// The state's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Error => "error",
        }
    }
}

/// The documented `result` codes of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i32)]
pub enum ResultCode {
    /// 0: the task completed.
    Success = 0,
    /// 1: the plugin (or the runtime it drove) reported an error.
    PluginError = 1,
    /// 2: the params were refused when the task ran.
    InvalidParams = 2,
    /// 3: the task was cancelled (deleted while waiting or running).
    Cancelled = 3,
    /// 4: the server stopped while the task ran.
    Interrupted = 4,
    /// 5: the plugin exceeded its CPU or memory budget (a trap is a plugin error, 1).
    LimitExceeded = 5,
}

impl ResultCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A task as `GET background/` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Unique, increasing id.
    pub id: i64,
    /// Category name.
    pub category: String,
    /// Current state.
    pub state: TaskState,
    /// Human-readable progress, or the error message at the end.
    pub detail_state: String,
    /// -1 unknown, else 0..=100.
    pub progress: i32,
    /// 0 success, else a [`ResultCode`].
    pub result: i32,
    /// Whether it may be deleted while running.
    pub deletable: bool,
    /// Who submitted it.
    pub user: String,
    /// The request params as a JSON string, secrets masked as `"******"`.
    pub params: String,
    /// Submit time, epoch seconds.
    pub init: i64,
    /// Start time, epoch seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// End time, epoch seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

/// A change of a task, for `GET background/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskEvent {
    /// The task after the change.
    pub task: Task,
}
