//! Webhooks: signed JSON POSTs to a user's URL when their tasks start and
//! end (and, from the image checks, when an update is available).
//!
//! - [`config`]: `[[webhooks]]` (an admin's, every user's events) and
//!   `[webhooks_policy]`;
//! - [`allow`]: which addresses a webhook may reach, checked on the
//!   resolved address when connecting (no SSRF into the host);
//! - [`sign`]: the `X-Stevedore-Signature` scheme (HMAC-SHA256, Stripe's);
//! - [`backoff`]: when a failed delivery is tried again (24 hours);
//! - [`record`]: a task's end is recorded by the store itself, in the
//!   transaction that stores the end ([`crate::store::webhooks`] says how
//!   it matches the webhooks); a task's start becomes deliveries right
//!   after it is stored, from the queue's events;
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
use tokio::sync::Notify;

use crate::store::tasks::Owner;
use crate::store::webhooks::Target;
use crate::store::WebhookStore;

pub use allow::AllowPolicy;
pub use config::{WebhookConfig, WebhooksPolicySection};

pub use crate::store::webhooks::{
    task_event, Event, Hook, TASK_COMPLETED, TASK_ERROR, TASK_STARTED,
};

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

    /// The configured webhooks, as the store matches them at each task end.
    pub fn configured_hooks(&self) -> Vec<Hook> {
        self.configured.iter().map(|c| c.hook.clone()).collect()
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
                .map(Hook::from)
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
        let configured = self.configured.iter().map(|c| &c.hook);
        let deliveries: Vec<_> = events
            .iter()
            .flat_map(|e| e.deliveries(configured.clone().chain(stored.iter())))
            .collect();
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
    use serde_json::{Map, Value};

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
