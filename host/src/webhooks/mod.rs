//! Webhooks: signed JSON POSTs to a user's URL when their tasks start and
//! end (and, from the image checks, when an update is available).
//!
//! - [`config`]: `[[webhooks]]` (an admin's, every user's events) and
//!   `[webhooks_policy]`;
//! - [`allow`]: which addresses a webhook may reach, checked on the
//!   resolved address when connecting (no SSRF into the host);
//! - [`sign`]: the `X-Stevedore-Signature` scheme (HMAC-SHA256, Stripe's);
//! - [`backoff`]: when a failed delivery is tried again (24 hours);
//! - [`record`]: task events become deliveries in the store's outbox
//!   ([`crate::store::webhooks`]), right after the task's change is stored;
//! - [`send`]: the sender loop, which claims due deliveries and POSTs them
//!   with bounded concurrency, woken when deliveries are recorded (on this
//!   node, or by another's [`crate::store::Notice::Deliveries`]), never polling.
//!
//! A delivery is recorded once per webhook and event id, and sent until
//! the receiver answers 2xx: at least once, so receivers dedupe on the
//! event id (`Idempotency-Key`).

pub mod allow;
pub mod backoff;
pub mod config;
pub mod record;
pub mod send;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::store::tasks::Owner;
use crate::store::webhooks::{NewDelivery, Target};
use crate::store::WebhookStore;

pub use allow::AllowPolicy;
pub use config::{WebhookConfig, WebhooksPolicySection};

/// A task of the webhook's scope started running.
pub const TASK_STARTED: &str = "task.started";
/// A task completed.
pub const TASK_COMPLETED: &str = "task.completed";
/// A task ended in error (cancelled and interrupted included).
pub const TASK_ERROR: &str = "task.error";
/// An application's image has a newer version (emitted by the image checks).
pub const APP_UPDATE: &str = "app.update_available";
/// An image has a newer version (emitted by the image checks).
pub const IMAGE_UPDATE: &str = "image.update_available";
/// Every event a webhook may ask for.
pub const EVENTS: &[&str] = &[
    TASK_STARTED,
    TASK_COMPLETED,
    TASK_ERROR,
    APP_UPDATE,
    IMAGE_UPDATE,
];

/// How long the webhooks read for matching are reused before they are
/// read again (a change on this node clears them at once; another
/// node's is seen within this).
const HOOKS_TTL: Duration = Duration::from_secs(2);

/// A webhook as matched against events (stored or configured).
#[derive(Debug, Clone)]
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

/// An event to deliver to the webhooks that want it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique id, the receivers' idempotency key: the same event recorded
    /// twice is delivered once per webhook.
    pub id: String,
    /// Its name ([`EVENTS`]).
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
}

/// A configured webhook.
#[derive(Debug, Clone)]
pub struct Configured {
    /// How it is matched.
    pub hook: Hook,
    /// Where it goes and its secret.
    pub target: Target,
}

/// The webhooks of this server: the configured ones, the allowlist, the
/// sender's wake-up and the stored ones as last read.
pub struct Webhooks {
    configured: Vec<Configured>,
    policy: Arc<AllowPolicy>,
    /// Wakes the sender (deliveries recorded on this node, an attempt done).
    pub(crate) wake: Notify,
    stored: Mutex<Option<(Instant, Arc<Vec<Hook>>)>>,
}

impl Default for Webhooks {
    /// No configured webhook; the default allowlist.
    fn default() -> Self {
        Webhooks {
            configured: Vec::new(),
            policy: Arc::new(AllowPolicy::default()),
            wake: Notify::new(),
            stored: Mutex::new(None),
        }
    }
}

/// Check an `events` list; the error is the sentence after `events: `.
pub fn check_events(events: &[String]) -> Result<(), String> {
    if events.is_empty() {
        return Err(format!("name at least one of {}", EVENTS.join(", ")));
    }
    match events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        Some(e) => Err(format!(
            "`{}` is not an event (one of {})",
            e.chars().take(64).collect::<String>(),
            EVENTS.join(", ")
        )),
        None => Ok(()),
    }
}

impl Webhooks {
    /// From the configuration; the error names the key.
    pub fn new(
        configured: &[WebhookConfig],
        policy: &WebhooksPolicySection,
    ) -> Result<Webhooks, String> {
        let policy = AllowPolicy::parse(policy)?;
        let mut hooks = Vec::with_capacity(configured.len());
        for (i, c) in configured.iter().enumerate() {
            allow::parse_url(&c.url).map_err(|e| format!("webhooks[{i}].url: {e}"))?;
            check_events(&c.events).map_err(|e| format!("webhooks[{i}].events: {e}"))?;
            if c.secret.expose().is_empty() {
                return Err(format!("webhooks[{i}].secret: required"));
            }
            hooks.push(Configured {
                hook: Hook {
                    id: -(i as i64) - 1,
                    owner: String::new(),
                    all_users: true,
                    events: c.events.clone(),
                    categories: c.categories.clone(),
                },
                target: Target {
                    url: c.url.clone(),
                    secret: c.secret.expose().to_string(),
                },
            });
        }
        Ok(Webhooks {
            configured: hooks,
            policy: Arc::new(policy),
            ..Webhooks::default()
        })
    }

    /// The allowlist.
    pub fn policy(&self) -> &AllowPolicy {
        &self.policy
    }

    /// The configured webhooks.
    pub fn configured(&self) -> &[Configured] {
        &self.configured
    }

    /// The target of configured webhook `id` (negative).
    pub fn configured_target(&self, id: i64) -> Option<&Target> {
        self.configured
            .iter()
            .find(|c| c.hook.id == id)
            .map(|c| &c.target)
    }

    /// A stored webhook was created or deleted on this node: match against
    /// the store again.
    pub fn changed(&self) {
        *self.stored.lock() = None;
    }

    /// The stored webhooks, as last read (at most [`HOOKS_TTL`] ago).
    async fn stored_hooks(&self, store: &dyn WebhookStore) -> anyhow::Result<Arc<Vec<Hook>>> {
        if let Some((at, hooks)) = &*self.stored.lock() {
            if at.elapsed() < HOOKS_TTL {
                return Ok(hooks.clone());
            }
        }
        let hooks: Arc<Vec<Hook>> = Arc::new(
            store
                .webhooks(Owner::Anyone)
                .await?
                .into_iter()
                .map(|w| Hook {
                    id: w.id,
                    owner: w.owner,
                    all_users: w.all_users,
                    events: w.events,
                    categories: w.categories,
                })
                .collect(),
        );
        *self.stored.lock() = Some((Instant::now(), hooks.clone()));
        Ok(hooks)
    }

    /// Record `events` for every webhook that wants them, in one write,
    /// and wake the sender. Returns how many deliveries were new.
    pub async fn publish(
        &self,
        store: &dyn WebhookStore,
        events: &[Event],
    ) -> anyhow::Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        let stored = self.stored_hooks(store).await?;
        let mut deliveries = Vec::new();
        for event in events {
            let mut body = None;
            let hooks = self.configured.iter().map(|c| &c.hook).chain(stored.iter());
            for hook in hooks {
                if hook.wants(&event.name, &event.owner, event.category.as_deref()) {
                    let body = body.get_or_insert_with(|| event.body()).clone();
                    deliveries.push(NewDelivery {
                        webhook: hook.id,
                        event_id: event.id.clone(),
                        event: event.name.clone(),
                        body,
                        created: event.time,
                    });
                }
            }
        }
        if deliveries.is_empty() {
            return Ok(0);
        }
        let new = store.enqueue(deliveries).await?;
        if new > 0 {
            self.wake.notify_one();
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(owner: &str, all: bool, events: &[&str], cats: Option<&[&str]>) -> Hook {
        Hook {
            id: 1,
            owner: owner.into(),
            all_users: all,
            events: events.iter().map(|s| s.to_string()).collect(),
            categories: cats.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn a_hook_gets_its_owners_events_of_its_kinds_and_categories() {
        let h = hook("alice", false, &[TASK_COMPLETED], Some(&["noop"]));
        assert!(h.wants(TASK_COMPLETED, "alice", Some("noop")));
        assert!(!h.wants(TASK_COMPLETED, "bob", Some("noop")));
        assert!(!h.wants(TASK_ERROR, "alice", Some("noop")));
        assert!(!h.wants(TASK_COMPLETED, "alice", Some("create")));
        assert!(!h.wants(TASK_COMPLETED, "alice", None));
        let admin = hook("root", true, &[TASK_ERROR, IMAGE_UPDATE], None);
        assert!(admin.wants(TASK_ERROR, "bob", Some("create")));
        assert!(admin.wants(IMAGE_UPDATE, "bob", None));
    }

    #[test]
    fn events_are_checked() {
        assert!(check_events(&[]).is_err());
        assert!(check_events(&["task.done".into()]).is_err());
        assert!(check_events(&[TASK_COMPLETED.into(), APP_UPDATE.into()]).is_ok());
    }

    #[test]
    fn the_body_leads_with_id_event_and_time() {
        let mut payload = Map::new();
        payload.insert("task".into(), serde_json::json!({"id": 3}));
        payload.insert("id".into(), Value::String("not this".into()));
        let e = Event {
            id: "evt_1".into(),
            name: TASK_COMPLETED.into(),
            owner: "a".into(),
            category: None,
            time: 1_700_000_000_123,
            payload,
        };
        let v: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["event"], TASK_COMPLETED);
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["task"]["id"], 3);
    }
}
