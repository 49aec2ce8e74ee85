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

use async_trait::async_trait;

use crate::store::tasks::Owner;

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
