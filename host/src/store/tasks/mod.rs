//! The durable store of tasks, behind a trait so that several back ends fit:
//! the embedded SQLite store ([`crate::store::sqlite::SqliteStore`]) by default, and a
//! PostgreSQL store for several hosts sharing one queue.
//!
//! Every method that changes a task is durable when it returns, but
//! [`TaskStore::claim_early`], whose answer says when it is. State
//! transitions are guarded by the state they leave (`WHERE state = 'running'`
//! and so on), so a late writer never resurrects a task that recovery or a
//! deletion already settled.
//!
//! [`TaskStore::claim`] is the one operation several hosts race on; in SQL it
//! is one statement per [`ClaimRequest::step`] (all the tasks at once unless
//! an allowance is smaller), run in the same transaction:
//!
//! ```sql
//! UPDATE tasks SET state = 'running', start = $now, progress = 0
//!  WHERE id IN (SELECT id FROM tasks
//!                WHERE state = 'waiting' AND category = ANY($categories)
//!                ORDER BY id LIMIT $step
//!                FOR UPDATE SKIP LOCKED)     -- PostgreSQL; SQLite has one writer
//! RETURNING *;
//! ```

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

pub mod model;
pub mod row;

pub use self::model::{Task, TaskState};
pub use crate::store::durable::{Committer, Durable};
pub use crate::store::task_log::{LogBatch, TaskLog};
pub use crate::store::Notice;

/// A task to insert; the store assigns the id.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Category name.
    pub category: String,
    /// Who submitted it.
    pub user: String,
    /// Whether it may be deleted while running.
    pub deletable: bool,
    /// What the task is about ([`model::task_name`]).
    pub name: String,
    /// The params as shown (JSON text), secrets masked.
    pub shown_params: String,
    /// The full params when they differ from the shown ones (something was
    /// masked). Stored apart from the task row, encrypted.
    pub full_params: Option<String>,
    /// Submit time, epoch seconds.
    pub init: i64,
    /// The node that is to run it; `None`: the store's own node. A store of
    /// one node ([`TaskStore::node`] is `None`) ignores it.
    pub node: Option<String>,
}

/// Which waiting tasks a [`TaskStore::claim`] may take.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// At most this many tasks, all categories together.
    pub max: usize,
    /// The categories that may be claimed, each with how many of its tasks may
    /// still be claimed (`None`: bounded only by `max`). Waiting tasks of other
    /// categories stay waiting.
    pub categories: Vec<(String, Option<usize>)>,
    /// Users with a limit, each with how many of their tasks may still be
    /// claimed; other users are bounded only by `max`.
    pub users: Vec<(String, usize)>,
    /// Start time to record, epoch seconds.
    pub now: i64,
}

impl ClaimRequest {
    /// Forget the categories with nothing left; `false` when none is left
    /// (nothing more may be claimed).
    pub fn prune(&mut self) -> bool {
        self.categories.retain(|(_, left)| *left != Some(0));
        !self.categories.is_empty()
    }

    /// How many tasks the next statement may claim, `taken` being claimed
    /// already: as many as no allowance can be overrun by, whichever
    /// categories and users the claimed tasks turn out to have.
    pub fn step(&self, taken: usize) -> usize {
        self.categories
            .iter()
            .filter_map(|(_, left)| *left)
            .chain(self.users.iter().map(|(_, left)| *left).filter(|l| *l > 0))
            .fold(self.max.saturating_sub(taken), usize::min)
    }

    /// The categories that may be claimed.
    pub fn category_names(&self) -> Vec<&str> {
        self.categories.iter().map(|(c, _)| c.as_str()).collect()
    }

    /// The users whose allowance is used up: none of their tasks may be claimed.
    pub fn full_users(&self) -> Vec<&str> {
        self.users
            .iter()
            .filter(|(_, left)| *left == 0)
            .map(|(u, _)| u.as_str())
            .collect()
    }

    /// Whether a waiting task of `category` by `user` may be claimed now:
    /// its category is claimable with some allowance left, and its user's
    /// allowance (if limited) is not used up.
    pub fn admits(&self, category: &str, user: &str) -> bool {
        let category_left = self
            .categories
            .iter()
            .any(|(c, left)| c == category && *left != Some(0));
        category_left && !self.users.iter().any(|(u, left)| u == user && *left == 0)
    }

    /// Count `task` against its category's and its user's allowances (an
    /// alias and its category share one: both entries are counted).
    pub fn take(&mut self, task: &Task) {
        let group = model::alias_target(&task.category);
        for (_, left) in self
            .categories
            .iter_mut()
            .filter(|(c, _)| *c == task.category || model::alias_target(c) == group)
        {
            if let Some(left) = left {
                *left = left.saturating_sub(1);
            }
        }
        if let Some((_, left)) = self.users.iter_mut().find(|(u, _)| *u == task.user) {
            *left = left.saturating_sub(1);
        }
    }
}

/// A task moved from `waiting` to `running`, with what is needed to run it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The task, state `running`.
    pub task: Task,
    /// The full params, secrets included (decrypted). Never log it.
    pub full_params: String,
    /// When the claim is on disk: at once from [`TaskStore::claim`], maybe
    /// later from [`TaskStore::claim_early`].
    pub durable: Durable,
}

impl Claimed {
    /// `task`, just claimed, with its full params: `sealed` opened when the
    /// store had some (something was masked), else the shown params.
    pub fn open(
        task: Task,
        sealed: Option<&[u8]>,
        secrets: &crate::store::secret::SecretBox,
        durable: Durable,
    ) -> anyhow::Result<Claimed> {
        let full_params = match sealed {
            Some(s) => String::from_utf8(secrets.open(task.id, s)?)?,
            None => task.params.get().to_string(),
        };
        Ok(Claimed {
            task,
            full_params,
            durable,
        })
    }
}

/// Told a task once its insert is durable, before the insert answers and
/// before any claim of the task is durable: the queue announces `waiting`
/// here, so that no `running` of the task is ever announced before it.
pub type OnStored = Box<dyn FnOnce(&Task) + Send>;

/// Sizes a claim when the store runs it (not when it is asked for), so that
/// the slots freed by runs that ended in the meantime are filled by the
/// same claim; `None` when nothing may be claimed.
pub type ClaimPlan = Box<dyn FnOnce(i64) -> Option<ClaimRequest> + Send>;

/// How runs nobody will finish end (restart recovery, a silent node): as
/// `error` with `result` and `detail`, ended at `now`.
#[derive(Debug, Clone)]
pub struct Interruption {
    /// Result code.
    pub result: i32,
    /// Final `detail_state`.
    pub detail: String,
    /// End time, epoch seconds.
    pub now: i64,
}

impl Interruption {
    /// Runs that end as `error` with `result` and `detail` at `now`.
    pub fn new(result: i32, detail: &str, now: i64) -> Interruption {
        Interruption {
            result,
            detail: detail.to_string(),
            now,
        }
    }
}

/// The end of a run, to record.
#[derive(Debug, Clone)]
pub struct Finish {
    /// Task id.
    pub id: i64,
    /// `completed` or `error`.
    pub state: TaskState,
    /// Result code (0 on success).
    pub result: i32,
    /// Final `detail_state`.
    pub detail: String,
    /// Final `progress`.
    pub progress: i32,
    /// End time, epoch seconds.
    pub end: i64,
    /// The log lines of the run not written yet, written with its end (in
    /// the same transaction), so that a task stored as ended has its last
    /// lines stored too.
    pub log: Option<LogBatch>,
}

/// A coalesced progress report of a running task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressUpdate {
    /// Task id.
    pub id: i64,
    /// -1 or 0..=100.
    pub progress: i32,
    /// `detail_state`.
    pub detail: String,
}

/// Whose tasks a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// Every user's tasks (an admin).
    Anyone,
    /// Only this user's tasks.
    User(&'a str),
}

/// Which tasks a listing covers: every filter of `GET background/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFilter<'a> {
    /// Whose tasks.
    pub owner: Owner<'a>,
    /// Only this category's tasks, if given.
    pub category: Option<&'a str>,
    /// Only the tasks of this node, if given. A store of one node
    /// ([`TaskStore::node`] is `None`) runs every task itself and ignores it.
    pub node: Option<&'a str>,
}

/// One page of a listing, newest first: keyset paging by id, so no task is
/// in two pages and none that stays is skipped, however the tasks change
/// between pages (newer ones appear only in a read from the newest again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Only tasks with an id below this (`None`: from the newest).
    pub before: Option<i64>,
    /// At most this many tasks.
    pub limit: usize,
}

/// Durable storage of tasks. Implementations must be safe to share between
/// threads; methods that change data return only once the change is durable.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Insert a waiting task; returns it with its new id (unique, increasing, never reused).
    async fn insert(&self, task: NewTask) -> anyhow::Result<Task>;

    /// [`TaskStore::insert`], calling `on_stored` with the task once it is
    /// durable and before any claim of it is ([`OnStored`]). By default
    /// after `insert` returns: right for a store whose claims are durable
    /// when they return.
    async fn insert_then(&self, task: NewTask, on_stored: OnStored) -> anyhow::Result<Task> {
        let t = self.insert(task).await?;
        on_stored(&t);
        Ok(t)
    }

    /// Atomically move up to `req.max` waiting tasks of this node, oldest
    /// first (FIFO by id) within the per-category and per-user allowances, to
    /// `running` and return them. A task is claimed by one caller only, even
    /// across nodes.
    async fn claim(&self, req: ClaimRequest) -> anyhow::Result<Vec<Claimed>>;

    /// Claim as [`TaskStore::claim`] does, with two differences that save a
    /// commit per run: `plan` is called (with the start time to record) when
    /// the claim runs, and the answer may come before the claim is durable,
    /// each task's [`Claimed::durable`] telling when it is. Whoever starts
    /// a claimed task must hold its effects until then. By default: `claim`,
    /// durable on return.
    async fn claim_early(&self, plan: ClaimPlan) -> anyhow::Result<Vec<Claimed>> {
        match plan(model::now()) {
            Some(req) => self.claim(req).await,
            None => Ok(Vec::new()),
        }
    }

    /// Record progress of running tasks (rows no longer `running` are left alone).
    async fn save_progress(&self, updates: Vec<ProgressUpdate>) -> anyhow::Result<()>;

    /// Record the end of a run, only if the task is still `running`; drops its
    /// stored full params. Returns whether the task was updated.
    async fn finish(&self, finish: Finish) -> anyhow::Result<bool>;

    /// Write log lines of tasks ([`crate::store::task_log`]): add each
    /// batch's lines and delete the stored ones it no longer keeps. Lines
    /// of a task that is gone are dropped. Advisory as progress is: durable
    /// with the next durable write, no sync of its own.
    async fn save_logs(&self, batches: Vec<LogBatch>) -> anyhow::Result<()>;

    /// The stored log of task `id`, oldest line first (empty when it
    /// logged nothing or does not exist).
    async fn log(&self, id: i64) -> anyhow::Result<TaskLog>;

    /// Restart recovery: every task left `running` (by this node) ends as
    /// `end` says. Returns their ids.
    async fn interrupt_running(&self, end: Interruption) -> anyhow::Result<Vec<i64>>;

    /// Delete task `id` only if it is in one of `states`. Returns whether it was deleted.
    async fn delete_if(&self, id: i64, states: &[TaskState]) -> anyhow::Result<bool>;

    /// Delete the finished (`completed`/`error`) tasks of `owner`, of `category` if
    /// given. Returns the deleted tasks as they were, in increasing id order
    /// (the queue announces them, to their owners only).
    async fn delete_finished(
        &self,
        owner: Owner<'_>,
        category: Option<&str>,
    ) -> anyhow::Result<Vec<Task>>;

    /// One task.
    async fn get(&self, id: i64) -> anyhow::Result<Option<Task>>;

    /// The tasks among `ids` that exist, in increasing id order.
    async fn get_many(&self, ids: &[i64]) -> anyhow::Result<Vec<Task>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.get(*id).await?);
        }
        out.sort_by_key(|t| t.id);
        Ok(out)
    }

    /// The tasks of `owner`, of `category` if given, newest (highest id) first.
    async fn list(&self, owner: Owner<'_>, category: Option<&str>) -> anyhow::Result<Vec<Task>>;

    /// How many of `user`'s tasks are waiting (the per-user cap of waiting
    /// tasks asks at every submit of a capped user).
    async fn waiting_of(&self, user: &str) -> anyhow::Result<usize> {
        let tasks = self.list(Owner::User(user), None).await?;
        Ok(tasks
            .iter()
            .filter(|t| t.state == TaskState::Waiting)
            .count())
    }

    /// A page of the tasks `filter` selects, newest (highest id) first. Reads
    /// an index in id order and stops after `page.limit` rows, so a page
    /// costs about the same however many tasks are stored. The next page is
    /// `before` the last id of this one.
    async fn list_page(&self, filter: TaskFilter<'_>, page: Page) -> anyhow::Result<Vec<Task>>;

    /// Retention: delete up to `max` finished (`completed`/`error`) tasks
    /// whose `end` is before `ended_before` (epoch seconds), oldest end
    /// first, in one short transaction, and announce them as
    /// [`TaskStore::delete_finished`] does. `waiting` and `running` tasks are
    /// never touched. Returns the deleted tasks as they were, in increasing
    /// id order; fewer than `max` means none is left. Several nodes may run
    /// it at once.
    async fn delete_ended_before(&self, ended_before: i64, max: usize)
        -> anyhow::Result<Vec<Task>>;

    /// How many tasks there are per (category, state), with the oldest
    /// `init` of each group, for metrics. Sorted by category, then state.
    async fn counts(&self) -> anyhow::Result<Vec<StateCount>>;

    /// The schedules stored beside these tasks ([`crate::store::ScheduleStore`]),
    /// if this store keeps any.
    fn schedules(&self) -> Option<&dyn crate::store::ScheduleStore> {
        None
    }

    /// The webhooks and their outbox stored beside these tasks
    /// ([`crate::store::WebhookStore`]), if this store keeps any.
    fn webhooks(&self) -> Option<&dyn crate::store::WebhookStore> {
        None
    }

    /// Wait until every accepted write is durable and stop accepting writes.
    /// Later writes fail. Idempotent.
    async fn close(&self) -> anyhow::Result<()>;

    // ---- several nodes (the defaults are those of a store of one node) ----

    /// This node's name when several nodes share the store; `None` for a
    /// store of one node (tasks then carry no node).
    fn node(&self) -> Option<&str> {
        None
    }

    /// Other nodes' changes, as they are committed; `None` for one node.
    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        None
    }

    /// Record that this node is alive (now). If it had been taken for
    /// silent, the `detail_state` [`TaskStore::mark_silent_waiting`] gave
    /// its waiting tasks is cleared; returns those tasks' ids.
    async fn heartbeat(&self) -> anyhow::Result<Vec<i64>> {
        Ok(Vec::new())
    }

    /// Whether `node` exists and has been heard from within `lease`.
    async fn node_alive(&self, node: &str, _lease: Duration) -> anyhow::Result<bool> {
        Ok(self.node().is_none_or(|me| me == node))
    }

    /// Every node silent for longer than `lease`: its `running` tasks end as
    /// `end` says (its waiting ones wait for it to return). Returns their ids.
    async fn reap_silent_nodes(
        &self,
        _lease: Duration,
        _end: Interruption,
    ) -> anyhow::Result<Vec<i64>> {
        Ok(Vec::new())
    }

    /// Every node silent for longer than `lease` that was not yet marked:
    /// its waiting tasks' `detail_state` names it and its last heartbeat
    /// (``waiting: node `b` has not been seen since 2026-12-07 21:03:11 UTC``),
    /// so that whoever reads them sees why they wait. Returns their ids.
    async fn mark_silent_waiting(&self, _lease: Duration) -> anyhow::Result<Vec<i64>> {
        Ok(Vec::new())
    }

    /// Ask `node` to cancel its running task `id`.
    async fn request_cancel(&self, _node: &str, _id: i64) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The tasks of one (category, state), for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    /// The category.
    pub category: String,
    /// The state.
    pub state: TaskState,
    /// How many tasks.
    pub count: u64,
    /// The earliest `init` (epoch seconds) among them: for `waiting`, when
    /// the task waiting longest was submitted.
    pub oldest_init: i64,
}
