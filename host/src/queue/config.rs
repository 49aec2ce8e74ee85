//! The `[queue]` section: how many tasks run at once and how long finished
//! ones are kept.
//!
//! ```toml
//! [queue]
//! workers = 8                 # default 8; tasks mostly wait on the engine
//! retention_days = 30         # finished tasks are deleted this long after their end; 0 keeps them
//! task_log_lines = 1000       # each task keeps its last 1,000 log lines; 0 keeps none
//! task_log_bytes = 262144     # and at most 256 KiB of them
//! [queue.limits]
//! image_download = 2
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::{QueueConfig, DEFAULT_RETENTION};
use crate::setting::{env_vars, parse_number, EnvVar};
use crate::store::task_log::{LogLimits, DEFAULT_LOG_BYTES, DEFAULT_LOG_LINES};

/// Default number of tasks running at once.
pub const DEFAULT_WORKERS: usize = 8;

/// `[queue]`: the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSection {
    /// Tasks running at once, all categories together.
    pub workers: usize,
    /// Per-category limits on tasks running at once.
    pub limits: BTreeMap<String, usize>,
    /// Days a finished (`completed`/`error`) task is kept after its end
    /// before it is deleted; 0 keeps finished tasks forever.
    pub retention_days: u64,
    /// Each task keeps the last this many of its log lines; 0 keeps none.
    pub task_log_lines: usize,
    /// Each task keeps at most this many bytes of log messages.
    pub task_log_bytes: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            workers: DEFAULT_WORKERS,
            limits: BTreeMap::new(),
            retention_days: DEFAULT_RETENTION.as_secs() / (24 * 3600),
            task_log_lines: DEFAULT_LOG_LINES,
            task_log_bytes: DEFAULT_LOG_BYTES,
        }
    }
}

/// The environment variables of `[queue]`.
pub const VARS: &[EnvVar<QueueSection>] = env_vars! {
    "STEVEDORE_WORKERS", "queue.workers" => |s, v| s.workers = parse_number(v, "a number")?;
    "STEVEDORE_RETENTION_DAYS", "queue.retention_days" => |s, v| s.retention_days =
        parse_number(v, "a number of days (0 keeps finished tasks)")?;
    "STEVEDORE_TASK_LOG_LINES", "queue.task_log_lines" => |s, v| s.task_log_lines =
        parse_number(v, "a number of lines (0 keeps none)")?;
    "STEVEDORE_TASK_LOG_BYTES", "queue.task_log_bytes" => |s, v| s.task_log_bytes =
        parse_number(v, "a number of bytes")?;
};

impl QueueSection {
    /// Numbers that must be positive.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.workers == 0 {
            bail!("queue.workers: must be at least 1");
        }
        for (cat, n) in &self.limits {
            if *n == 0 {
                bail!("queue.limits.{cat}: must be at least 1");
            }
        }
        Ok(())
    }

    /// The scheduler's settings, with the nodes' liveness `lease` (from
    /// `[database]`); the per-user limits come from the user policies.
    pub fn queue_config(&self, lease: Duration) -> QueueConfig {
        QueueConfig {
            workers: self.workers,
            per_category: self
                .limits
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect::<HashMap<_, _>>(),
            per_user: HashMap::new(),
            lease,
            retention: (self.retention_days > 0)
                .then(|| Duration::from_secs(self.retention_days.saturating_mul(24 * 3600))),
            task_log: LogLimits {
                lines: self.task_log_lines,
                bytes: self.task_log_bytes,
            },
        }
    }
}
