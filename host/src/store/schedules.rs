//! Scheduled tasks: what is stored of a schedule, and the [`ScheduleStore`]
//! that each driver implements beside its tasks, so that firing a schedule
//! (moving its `next_run` on) and storing the task it submits are one
//! transaction: a crash neither loses nor doubles an occurrence.
//!
//! Firing is a compare-and-set on `next_run`, the one write several nodes
//! race on:
//!
//! ```sql
//! UPDATE schedules SET next_run = $next, last_run = $occurrence, ...
//!  WHERE id = $id AND next_run = $due AND NOT paused;
//! -- only the caller whose update changed a row inserts the task,
//! -- in the same transaction
//! ```

use async_trait::async_trait;

use crate::store::tasks::model::{JsonText, Task};
use crate::store::tasks::{NewTask, OnStored, Owner};

/// A schedule to store; the store gives the id.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Whose tasks it submits.
    pub owner: String,
    /// A label (may be empty).
    pub name: String,
    /// The category of its tasks.
    pub category: String,
    /// The params as shown (JSON text), secrets masked.
    pub shown_params: String,
    /// The full params when they differ from the shown ones; stored sealed.
    pub full_params: Option<String>,
    /// The cron expression, as given.
    pub cron: String,
    /// The IANA time zone its cron is read in.
    pub timezone: String,
    /// The first occurrence, epoch seconds.
    pub next_run: i64,
    /// Creation time, epoch seconds.
    pub created: i64,
}

/// A stored schedule (params as shown, secrets masked).
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Id, unique, never reused.
    pub id: i64,
    /// Whose tasks it submits.
    pub owner: String,
    /// A label (may be empty).
    pub name: String,
    /// The category of its tasks.
    pub category: String,
    /// The params as shown.
    pub params: JsonText,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The next occurrence, epoch seconds (while paused: the one it had).
    pub next_run: i64,
    /// The occurrence it last fired for, epoch seconds.
    pub last_run: Option<i64>,
    /// The task its last firing submitted.
    pub last_task: Option<i64>,
    /// Why its last firing submitted nothing (cleared by the next success).
    pub last_error: Option<String>,
    /// Creation time, epoch seconds.
    pub created: i64,
}

/// A schedule whose `next_run` has come, with its full params (secrets
/// included, opened). Never log it.
#[derive(Debug, Clone)]
pub struct Due {
    /// The schedule.
    pub schedule: Schedule,
    /// The full params.
    pub full_params: String,
}

/// One firing of a schedule, to record.
pub struct Firing {
    /// The schedule.
    pub id: i64,
    /// The `next_run` it was read with: the compare of the compare-and-set.
    pub due: i64,
    /// The occurrence fired for (the latest one passed), epoch seconds.
    pub occurrence: i64,
    /// The next occurrence after now, epoch seconds.
    pub next: i64,
    /// The task to store, or why none is (recorded as `last_error`).
    pub outcome: Result<NewTask, String>,
    /// Told the task once it is durable (as [`crate::store::TaskStore::insert_then`]).
    pub on_stored: Option<OnStored>,
}

/// What a [`Firing`] did.
#[derive(Debug)]
pub enum Fired {
    /// Another caller fired this occurrence first, or the schedule was
    /// paused or deleted meanwhile: nothing was written.
    Lost,
    /// Recorded; the task stored, if the outcome was one.
    Won(Option<Task>),
}

/// Schedules, stored beside the tasks.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Store a schedule; returns it with its id.
    async fn create_schedule(&self, schedule: NewSchedule) -> anyhow::Result<Schedule>;

    /// The schedules of `owner`, by id.
    async fn schedules(&self, owner: Owner<'_>) -> anyhow::Result<Vec<Schedule>>;

    /// One schedule.
    async fn schedule(&self, id: i64) -> anyhow::Result<Option<Schedule>>;

    /// How many schedules `user` has (a policy may cap it).
    async fn schedules_of(&self, user: &str) -> anyhow::Result<usize> {
        Ok(self.schedules(Owner::User(user)).await?.len())
    }

    /// Pause (`next_run` None) or resume (with its new `next_run`) schedule
    /// `id`; returns it as it now is, `None` if there is none.
    async fn set_paused(
        &self,
        id: i64,
        paused: bool,
        next_run: Option<i64>,
    ) -> anyhow::Result<Option<Schedule>>;

    /// Delete schedule `id`; whether there was one.
    async fn delete_schedule(&self, id: i64) -> anyhow::Result<bool>;

    /// The schedules not paused whose `next_run` is at or before `now`,
    /// with their full params.
    async fn due_schedules(&self, now: i64) -> anyhow::Result<Vec<Due>>;

    /// The earliest `next_run` of the schedules not paused.
    async fn next_due(&self) -> anyhow::Result<Option<i64>>;

    /// Record `firing` if its schedule's `next_run` is still `firing.due`
    /// and it is not paused, storing its task in the same transaction.
    async fn fire(&self, firing: Firing) -> anyhow::Result<Fired>;
}

/// The associated data a schedule's full params are sealed with (tasks
/// use their id): a sealed blob cannot be moved to another schedule or task.
pub fn sealed_for(id: i64) -> Vec<u8> {
    format!("schedule:{id}").into_bytes()
}
