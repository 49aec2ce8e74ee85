//! The seam between the queue and whatever runs a task (the plugin host).

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use crate::store::task_log::LogLevel;

/// Where a running task reports to. Implemented by the queue; called by the
/// plugin host whenever the plugin (or a host call made for it) reports.
pub trait Reporter: Send + Sync {
    /// `percent` is -1 for unknown, else 0..=100; `detail` becomes `detail_state`.
    fn progress(&self, percent: i32, detail: &str);
    /// Append a line to the task log (also emitted through `tracing` with the task id).
    fn log(&self, level: LogLevel, message: &str);
    /// Progress relayed from the engine (a pull's layers, a compose step):
    /// as [`Reporter::progress`], and a task's reporter also keeps a log
    /// line whenever `detail` changes. By default: `progress`.
    fn relay(&self, percent: i32, detail: &str) {
        self.progress(percent, detail);
    }
    /// Tell the task's owner what the task found (an event beside its
    /// state). By default: nobody hears it.
    fn announce(&self, finding: &Finding) {
        let _ = finding;
    }
}

/// What a task found that its owner should hear of at once, beside its
/// state: the one place such events are made (the event stream sends
/// each as `event: <kind>`; webhooks may send them too).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The registry serves another version of an image in use under the
    /// same tag (`image_check`).
    UpdateAvailable {
        /// The image, `repository:tag`.
        image: String,
        /// The containers using it.
        containers: Vec<String>,
        /// The digest the registry serves now.
        remote_digest: String,
    },
}

impl Finding {
    /// The event's name: `update_available`.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::UpdateAvailable { .. } => "update_available",
        }
    }
}

/// The reporter a host call gets: its progress is the engine's, relayed
/// ([`Reporter::relay`]), so that the task's log shows it.
pub struct Relayed(pub Arc<dyn Reporter>);

impl Reporter for Relayed {
    fn progress(&self, percent: i32, detail: &str) {
        self.0.relay(percent, detail);
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.0.log(level, message);
    }
    fn announce(&self, finding: &Finding) {
        self.0.announce(finding);
    }
    fn relay(&self, percent: i32, detail: &str) {
        self.0.relay(percent, detail);
    }
}

/// Everything an executor needs to run one task.
#[derive(Clone)]
pub struct TaskContext {
    /// Task id.
    pub id: i64,
    /// Category name.
    pub category: String,
    /// Who submitted the task.
    pub user: String,
    /// The full params JSON text, secrets included. Never log it.
    pub params: String,
    /// When the task's claim is on disk. An executor that says it
    /// [holds its effects](Executor::holds_effects_until_durable) awaits it
    /// before changing anything outside the run; the others are started
    /// only once it is.
    pub durable: crate::queue::store::Durable,
    /// Cancelled when the task is deleted while running or the server shuts down.
    pub cancel: CancellationToken,
    /// Progress and log sink.
    pub reporter: Arc<dyn Reporter>,
}

/// How a run ended, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success; the text, if any, becomes the final `detail_state`.
    Completed(Option<String>),
    /// Failure with a documented `result` code (see [`crate::queue::ResultCode`]) and a message for `detail_state`.
    Failed {
        /// Result code.
        code: crate::queue::ResultCode,
        /// Human-readable reason, free of secrets.
        message: String,
    },
}

/// Facts the queue needs about a category at submit time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryInfo {
    /// Category name.
    pub name: String,
    /// Whether a running task may be deleted (cancelled).
    pub deletable: bool,
    /// Params fields to mask in the shown params, besides `password`.
    pub secret_fields: Vec<String>,
}

/// What the API documents of a category: its OpenAPI operation and the
/// dashboard's submit form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryDoc {
    /// Category name.
    pub name: String,
    /// One line saying what it does (empty when unknown).
    pub summary: String,
    /// Whether a running task may be deleted (cancelled).
    pub deletable: bool,
    /// The JSON Schema of its params (JSON text), when the plugin gives one.
    pub params_schema: Option<String>,
}

/// Why submitted params were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Bad input: the message names the field (`name: must match ...`). HTTP 400.
    #[error("{0}")]
    Invalid(String),
    /// The plugin failed while validating (trap, budget): the server, not
    /// the input, is at fault, so it answers 503 and names the plugin.
    #[error("{0}")]
    Plugin(String),
}

/// Runs tasks of the categories it knows. Implemented by the plugin host;
/// tests may implement it with a plain Rust closure-based executor.
#[async_trait]
pub trait Executor: Send + Sync {
    /// The categories this executor serves, sorted by name.
    fn categories(&self) -> Vec<CategoryInfo>;
    /// Look up one category.
    fn category(&self, name: &str) -> Option<CategoryInfo>;
    /// What the API documents of each category, sorted by name; by
    /// default the names alone, without a summary or a params schema.
    fn category_docs(&self) -> Vec<CategoryDoc> {
        self.categories()
            .into_iter()
            .map(|c| CategoryDoc {
                name: c.name,
                summary: String::new(),
                deletable: c.deletable,
                params_schema: None,
            })
            .collect()
    }
    /// Check params synchronously at submit time.
    async fn validate(&self, category: &str, params: &str) -> Result<(), ValidationError>;
    /// Check params that `user` submits, as [`Executor::validate`] does,
    /// and say which of their values are secret beyond the category's
    /// fields (JSON Pointers, e.g. `/binding/admin_password`). By default:
    /// `validate`, nothing marked.
    async fn validate_for(
        &self,
        user: &str,
        category: &str,
        params: &str,
    ) -> Result<Vec<String>, ValidationError> {
        let _ = user;
        self.validate(category, params).await.map(|()| Vec::new())
    }
    /// Run a task to its end. Must return promptly after `ctx.cancel` fires.
    async fn run(&self, ctx: TaskContext) -> Outcome;
    /// Whether [`Executor::run`] awaits [`TaskContext::durable`] before its
    /// first effect outside the run (a container, a file, a pull), so that
    /// the queue may start it while the claim commits. A run whose claim is
    /// then lost must have changed nothing: its task runs again. By default
    /// `false`: the run starts once the claim is durable.
    fn holds_effects_until_durable(&self) -> bool {
        false
    }
}
