//! The task object as the API shows it, and its state machine.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

/// A task's state: `waiting → running → completed | error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

/// A stored state that is none of [`TaskState`]'s names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state `{0}`")]
pub struct UnknownState(pub String);

impl std::str::FromStr for TaskState {
    type Err = UnknownState;
    /// The state [`TaskState::as_str`] spells `s`.
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        Ok(match s {
            "waiting" => TaskState::Waiting,
            "running" => TaskState::Running,
            "completed" => TaskState::Completed,
            "error" => TaskState::Error,
            other => return Err(UnknownState(other.to_string())),
        })
    }
}

impl std::fmt::Display for TaskState {
    /// [`TaskState::as_str`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// JSON text kept as it was stored and sent out as JSON, not as a string:
/// a task's params are shown as the posted object (or array) without being
/// parsed again on every `GET background/`.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct JsonText(Box<RawValue>);

impl<'de> Deserialize<'de> for JsonText {
    /// From any deserializer (also `serde_json::from_value`, which cannot
    /// produce a `RawValue` directly).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        serde_json::value::to_raw_value(&value)
            .map(JsonText)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonText {
    /// Wrap JSON text; fails when it is not valid JSON.
    pub fn new(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(JsonText)
    }
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
    /// The text parsed into a value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for JsonText {}

impl rusqlite::types::FromSql for JsonText {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        JsonText::new(text.to_string())
            .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// A task as `GET background/` shows it. A waiting task has exactly the keys
/// a real Container Station answered with (`category, deletable,
/// detail_state, id, init, name, params, state, user`) plus our `progress`;
/// `start`, `result` and `end` appear once they are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// 0 success, else a [`ResultCode`]; absent until the task has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<i32>,
    /// Whether it may be deleted while running.
    pub deletable: bool,
    /// Who submitted it.
    pub user: String,
    /// What the task is about (see [`task_name`]): a container, `image:tag`,
    /// or an application name.
    pub name: String,
    /// The posted params as JSON (an object, or an array for
    /// `image_remove`), secrets masked as `"******"`.
    #[schema(value_type = serde_json::Value)]
    pub params: JsonText,
    /// Submit time, epoch seconds.
    pub init: i64,
    /// Start time, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// End time, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// The node that runs it, when several nodes share a PostgreSQL store
    /// (absent with the embedded SQLite store: there is one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A change of a task, for `GET background/events`.
///
/// The task is shared: every subscriber (each open event stream) gets the
/// same snapshot, not a copy of its strings and params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    /// The task after the change; when [`TaskEvent::deleted`], as it was
    /// when it was deleted.
    pub task: Arc<Task>,
    /// The task was deleted: it is in no list any more.
    pub deleted: bool,
}

impl TaskEvent {
    /// `task` changed; this is it now.
    pub fn changed(task: Task) -> TaskEvent {
        TaskEvent {
            task: Arc::new(task),
            deleted: false,
        }
    }

    /// `task` was deleted.
    pub fn deleted(task: Task) -> TaskEvent {
        TaskEvent {
            task: Arc::new(task),
            deleted: true,
        }
    }
}

/// What a task is about, from its params, the way Container Station names
/// tasks: the first entry of an array (`image_remove`), then the first of
/// `name` (a container or application: `create`, `container_*`,
/// `application*`), `image` with its `tag` (`image:tag`, tag `latest` when
/// absent: `image_*`), `id`; else `""`. The same rule serves every
/// category, so a new plugin's tasks are named without host changes.
pub fn task_name(params: &serde_json::Value) -> String {
    use serde_json::Value;
    let entry = match params {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    };
    let text = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(name) = text("name") {
        return name.to_string();
    }
    if let Some(image) = text("image") {
        let tag = text("tag").unwrap_or("latest");
        return format!("{image}:{tag}");
    }
    text("id").unwrap_or_default().to_string()
}

/// Now, in whole seconds since the Unix epoch: the unit of the stored
/// `init`/`start`/`end` timestamps (never used to measure a duration).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Later names of categories: `(alias, category)`. Container Station's
/// later documentation calls `image_download` `image_pull`; both are
/// accepted and run by the same plugin. A task keeps the name it was
/// submitted as (the 2023 recording answers `"category": "image_pull"`);
/// filters and deletions by category treat both names as one.
pub const CATEGORY_ALIASES: &[(&str, &str)] = &[("image_pull", "image_download")];

/// The category an alias stands for ([`CATEGORY_ALIASES`]); any other
/// name as it is. Where a plugin serves the alias itself, the queue never
/// asks (see `Queue::canonical`).
pub fn alias_target(category: &str) -> &str {
    CATEGORY_ALIASES
        .iter()
        .find(|(alias, _)| *alias == category)
        .map_or(category, |(_, target)| target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_from_its_name() {
        for state in [
            TaskState::Waiting,
            TaskState::Running,
            TaskState::Completed,
            TaskState::Error,
        ] {
            assert_eq!(state.to_string().parse::<TaskState>(), Ok(state));
        }
        assert_eq!(
            "paused".parse::<TaskState>(),
            Err(UnknownState("paused".into()))
        );
    }
    use serde_json::json;

    #[test]
    fn names_follow_container_station() {
        let cases = [
            (
                json!({"type": "docker", "name": "dtest", "image": "busybox"}),
                "dtest",
            ),
            (json!({"image": "busybox", "tag": "1.36"}), "busybox:1.36"),
            (json!({"image": "busybox"}), "busybox:latest"),
            (json!({"image": "busybox", "tag": ""}), "busybox:latest"),
            (json!([{"image": "a", "tag": "1"}, {"image": "b"}]), "a:1"),
            (
                json!([{"type": "docker", "id": "sha256:abc"}]),
                "sha256:abc",
            ),
            (json!({"template": "joomla", "name": "joomla"}), "joomla"),
            (json!({"name": 5, "id": "c1"}), "c1"),
            (json!([]), ""),
            (json!({}), ""),
        ];
        for (params, want) in cases {
            assert_eq!(task_name(&params), want, "{params}");
        }
    }

    #[test]
    fn waiting_task_has_the_recorded_keys() {
        let t = Task {
            id: 1,
            category: "image_download".into(),
            state: TaskState::Waiting,
            detail_state: String::new(),
            progress: 0,
            result: None,
            deletable: false,
            user: "admin".into(),
            name: "busybox:latest".into(),
            params: JsonText::new(r#"{"image":"busybox","password":"******"}"#.into()).unwrap(),
            init: 7,
            start: None,
            end: None,
            node: None,
        };
        let v = serde_json::to_value(&t).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "category",
                "deletable",
                "detail_state",
                "id",
                "init",
                "name",
                "params",
                "progress",
                "state",
                "user"
            ]
        );
        assert_eq!(
            v["params"],
            json!({"image": "busybox", "password": "******"})
        );
        let back: Task = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }
}
