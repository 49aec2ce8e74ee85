//! Webhooks: what is stored of a user's webhook, and the outbox of their
//! deliveries, behind the [`WebhookStore`] that each task store implements
//! beside its tasks (as [`crate::store::ScheduleStore`]).
//!
//! The outbox is durable: a delivery is a row from the moment its event is
//! recorded until it is delivered or given up, so a restart resumes it.
//! Several nodes share the rows; a node takes a delivery by *claiming* it
//! for a while (`claimed_until`, with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), so one node sends each attempt; a node that dies while
//! sending leaves a claim that lapses, and the delivery is sent again
//! (at least once; the receiver dedupes on the event id).
//!
//! Times here are epoch milliseconds (retries are shorter than a second
//! apart at first).
//!
//! The end of a task writes its deliveries itself, in the transaction that
//! stores the end ([`crate::store::TaskStore::finish`],
//! [`crate::store::TaskStore::interrupt_running`],
//! [`crate::store::TaskStore::reap_silent_nodes`]): an end that is stored has
//! its deliveries stored, whatever happens to the process next, and an end
//! that is refused (the task no longer runs) has none. The store matches
//! the webhooks there, not the caller:
//! - the stored webhooks are read in that transaction (those of the task's
//!   owner and the all-users ones, through the `webhooks_owner` index), so
//!   a webhook created or deleted a moment before, on any node, is matched
//!   as it is then; no cache can be stale, and a task's end needs no
//!   round trip to the queue or to the webhooks above it;
//! - the configured ones (`[[webhooks]]`), which are not rows, are given
//!   to the store once at start ([`WebhookStore::configure`]);
//! - [`end_deliveries`] applies [`Hook::wants`] to both, as one rule for
//!   every driver, and builds each body from the task row as just stored
//!   (what `GET background/{id}` shows).

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::store::tasks::model::{Task, TaskState};
use crate::store::tasks::Owner;

/// A task of the webhook's scope started running.
pub const TASK_STARTED: &str = "task.started";
/// A task completed.
pub const TASK_COMPLETED: &str = "task.completed";
/// A task ended in error (cancelled and interrupted included).
pub const TASK_ERROR: &str = "task.error";

/// A webhook as matched against events (stored or configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Id; negative for a configured one (`-1` the first `[[webhooks]]`).
    pub id: i64,
    /// Whose events it gets when not `all_users`.
    pub owner: String,
    /// Gets every user's events.
    pub all_users: bool,
    /// The events it wants.
    pub events: Vec<String>,
    /// Only these categories; `None`: all.
    pub categories: Option<Vec<String>>,
}

impl Hook {
    /// Whether this webhook gets `event` about `owner`'s object of `category`.
    pub fn wants(&self, event: &str, owner: &str, category: Option<&str>) -> bool {
        (self.all_users || self.owner == owner)
            && self.events.iter().any(|e| e == event)
            && match (&self.categories, category) {
                (None, _) => true,
                (Some(cats), Some(c)) => cats.iter().any(|x| x == c),
                (Some(_), None) => false,
            }
    }
}

impl From<Webhook> for Hook {
    fn from(w: Webhook) -> Hook {
        Hook {
            id: w.id,
            owner: w.owner,
            all_users: w.all_users,
            events: w.events,
            categories: w.categories,
        }
    }
}

/// An event to deliver to the webhooks that want it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique id, the receivers' idempotency key: the same event recorded
    /// twice is delivered once per webhook.
    pub id: String,
    /// Its name (`task.completed`, ...).
    pub name: String,
    /// Whose object it is about.
    pub owner: String,
    /// The task's category (for the category filter), if it is about a task.
    pub category: Option<String>,
    /// When it happened, epoch ms.
    pub time: i64,
    /// The body's other keys (`task`, or the image check's own); secrets masked.
    pub payload: Map<String, Value>,
}

impl Event {
    /// The JSON body of a delivery: `{id, event, time, ...payload}`.
    pub fn body(&self) -> String {
        let mut body = Map::new();
        body.insert("id".into(), Value::String(self.id.clone()));
        body.insert("event".into(), Value::String(self.name.clone()));
        let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.time)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        body.insert("time".into(), Value::String(time));
        for (k, v) in &self.payload {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(body).to_string()
    }

    /// The outbox rows of this event, one per hook of `hooks` that wants it.
    pub fn deliveries<'a>(&self, hooks: impl IntoIterator<Item = &'a Hook>) -> Vec<NewDelivery> {
        let mut body = None;
        hooks
            .into_iter()
            .filter(|h| h.wants(&self.name, &self.owner, self.category.as_deref()))
            .map(|h| NewDelivery {
                webhook: h.id,
                event_id: self.id.clone(),
                event: self.name.clone(),
                body: body.get_or_insert_with(|| self.body()).clone(),
                created: self.time,
            })
            .collect()
    }
}

/// The event of `name` about `task` (its params masked, as `GET
/// background/{id}` shows it). Its id is the task's id and the event
/// (`task-42-completed`): the same change recorded twice is one delivery
/// per webhook.
pub fn task_event(task: &Task, name: &str, time: i64) -> Event {
    let mut payload = Map::new();
    payload.insert(
        "task".into(),
        serde_json::to_value(task).unwrap_or(Value::Null),
    );
    Event {
        id: format!("task-{}-{}", task.id, name.trim_start_matches("task.")),
        name: name.to_string(),
        owner: task.user.clone(),
        category: Some(task.category.clone()),
        time,
        payload,
    }
}

/// The event a task's end is: `task.completed` or `task.error` (cancelled
/// and interrupted included); `None` for a task that has not ended.
pub fn end_event(state: TaskState) -> Option<&'static str> {
    match state {
        TaskState::Completed => Some(TASK_COMPLETED),
        TaskState::Error => Some(TASK_ERROR),
        TaskState::Waiting | TaskState::Running => None,
    }
}

/// The outbox rows of `task`'s end (the row as just stored, at `time`,
/// epoch ms): one per webhook of `configured` and `stored` that wants it.
/// `stored` may hold other users' webhooks: [`Hook::wants`] checks the owner.
pub fn end_deliveries(
    task: &Task,
    configured: &[Hook],
    stored: &[Hook],
    time: i64,
) -> Vec<NewDelivery> {
    let Some(name) = end_event(task.state) else {
        return Vec::new();
    };
    let wanted = |h: &&Hook| h.wants(name, &task.user, Some(&task.category));
    if !configured.iter().chain(stored).any(|h| wanted(&h)) {
        return Vec::new();
    }
    task_event(task, name, time).deliveries(configured.iter().chain(stored))
}

/// The configured webhooks (`[[webhooks]]`) a store matches at each task
/// end beside its stored ones; set once at start, before the queue starts.
#[derive(Debug, Default)]
pub struct ConfiguredHooks(RwLock<Arc<[Hook]>>);

impl ConfiguredHooks {
    /// Match `hooks` from now on.
    pub fn set(&self, hooks: Vec<Hook>) {
        *self.0.write() = hooks.into();
    }

    /// The configured webhooks.
    pub fn get(&self) -> Arc<[Hook]> {
        self.0.read().clone()
    }
}

/// A webhook to store; the store gives the id.
#[derive(Clone)]
pub struct NewWebhook {
    /// Whose it is.
    pub owner: String,
    /// Whether it gets every user's events (made by an admin), not only its owner's.
    pub all_users: bool,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event names it wants (`task.completed`, ...).
    pub events: Vec<String>,
    /// Only tasks of these categories; `None`: every category.
    pub categories: Option<Vec<String>>,
    /// The signing secret; stored sealed, never shown.
    pub secret: String,
    /// Creation time, epoch seconds.
    pub created: i64,
}

impl std::fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebhook")
            .field("owner", &self.owner)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("categories", &self.categories)
            .field("secret", &"******")
            .finish()
    }
}

/// A stored webhook, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Id, unique, never reused.
    pub id: i64,
    /// Whose it is.
    pub owner: String,
    /// Whether it gets every user's events.
    pub all_users: bool,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event names it wants.
    pub events: Vec<String>,
    /// Only tasks of these categories; `None`: every category.
    pub categories: Option<Vec<String>>,
    /// Creation time, epoch seconds.
    pub created: i64,
}

/// Where a delivery goes and what signs it. Never log it.
#[derive(Clone)]
pub struct Target {
    /// The URL.
    pub url: String,
    /// The signing secret, opened.
    pub secret: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("secret", &"******")
            .finish()
    }
}

/// A delivery to record in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The webhook (negative: a webhook of the configuration file).
    pub webhook: i64,
    /// The event id, the receiver's idempotency key; one delivery per
    /// webhook and event id.
    pub event_id: String,
    /// The event name.
    pub event: String,
    /// The JSON body, as sent.
    pub body: String,
    /// When it was recorded, epoch ms (also its first attempt's time).
    pub created: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; tried again at `next_attempt`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up (24 hours of retries passed).
    Failed,
}

impl DeliveryStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> anyhow::Result<DeliveryStatus> {
        Ok(match s {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            other => anyhow::bail!("unknown delivery status `{other}`"),
        })
    }
}

/// A stored delivery, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Id.
    pub id: i64,
    /// The webhook.
    pub webhook: i64,
    /// The event id.
    pub event_id: String,
    /// The event name.
    pub event: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i32,
    /// The last attempt's HTTP status, if it got an answer.
    pub last_code: Option<i32>,
    /// The last attempt's error (connection refused, a refused address,
    /// a non-2xx status).
    pub last_error: Option<String>,
    /// When it is tried next (pending only), epoch ms.
    pub next_attempt: Option<i64>,
    /// When it was recorded, epoch ms.
    pub created: i64,
    /// When the receiver took it, epoch ms.
    pub delivered: Option<i64>,
}

/// A delivery claimed for sending, with its body and, for a stored
/// webhook, its target (a configured webhook's the sender knows).
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery.
    pub delivery: Delivery,
    /// The body to send.
    pub body: String,
    /// The stored webhook's URL and secret; `None` for a configured one,
    /// or when the webhook is gone.
    pub target: Option<Target>,
}

/// What an attempt did, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx at `at` (epoch ms).
    Delivered {
        /// When.
        at: i64,
        /// Its status.
        code: i32,
    },
    /// Not delivered: try again at `next` (epoch ms).
    Retry {
        /// When to try next.
        next: i64,
        /// The status, if it answered.
        code: Option<i32>,
        /// Why it was not delivered.
        error: String,
    },
    /// Not delivered and given up.
    Failed {
        /// The status, if it answered.
        code: Option<i32>,
        /// Why.
        error: String,
    },
}

/// Webhooks and their outbox, stored beside the tasks.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// The configured webhooks (negative ids), which every task end this
    /// store records is matched against beside the stored ones. Called
    /// once at start, before the queue starts (whose first write may end
    /// interrupted tasks).
    fn configure(&self, hooks: Vec<Hook>);

    /// Store a webhook, its secret sealed; returns it with its id.
    async fn create_webhook(&self, webhook: NewWebhook) -> anyhow::Result<Webhook>;

    /// The webhooks of `owner` (every one for [`Owner::Anyone`]), by id.
    async fn webhooks(&self, owner: Owner<'_>) -> anyhow::Result<Vec<Webhook>>;

    /// One webhook.
    async fn webhook(&self, id: i64) -> anyhow::Result<Option<Webhook>>;

    /// How many webhooks `user` has (a policy caps it).
    async fn webhooks_of(&self, user: &str) -> anyhow::Result<usize> {
        Ok(self.webhooks(Owner::User(user)).await?.len())
    }

    /// Delete webhook `id` and its deliveries; whether there was one.
    async fn delete_webhook(&self, id: i64) -> anyhow::Result<bool>;

    /// Record deliveries; one for a webhook and event id already recorded
    /// is skipped. Returns how many were new.
    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> anyhow::Result<usize>;

    /// Claim for `node` up to `max` pending deliveries due at `now`
    /// (epoch ms), oldest due first, until `until`: no other claim takes
    /// them meanwhile. Each is counted as an attempt.
    async fn claim_deliveries(
        &self,
        node: &str,
        now: i64,
        until: i64,
        max: usize,
    ) -> anyhow::Result<Vec<Claimed>>;

    /// Record how the attempt at delivery `id` went, and drop its claim.
    async fn record_attempt(&self, id: i64, attempt: Attempt) -> anyhow::Result<()>;

    /// Drop every claim of `node` (it restarted: nothing of it is in flight).
    async fn release_claims(&self, node: &str) -> anyhow::Result<()>;

    /// The newest `limit` deliveries of webhook `id`, newest first.
    async fn deliveries(&self, webhook: i64, limit: usize) -> anyhow::Result<Vec<Delivery>>;

    /// When the next pending delivery is due (its claim lapsed included), epoch ms.
    async fn next_delivery(&self) -> anyhow::Result<Option<i64>>;
}

/// The associated data a webhook's secret is sealed with: a sealed blob
/// opens for that webhook only.
pub fn sealed_for(id: i64) -> Vec<u8> {
    format!("webhook:{id}").into_bytes()
}

/// A list of names as stored: a JSON array.
pub fn names_to_text(names: &[String]) -> String {
    serde_json::to_string(names).expect("strings serialise")
}

/// A stored JSON array of names.
pub fn names_from_text(text: &str) -> anyhow::Result<Vec<String>> {
    Ok(serde_json::from_str(text)?)
}
