//! The sender loop: claims the deliveries that are due and POSTs them,
//! at most [`CONCURRENCY`] at once, each signed ([`super::sign`]) and
//! retried with backoff ([`super::backoff`]) until the receiver answers
//! 2xx or 24 hours passed.
//!
//! It sleeps until the next delivery is due and wakes early when
//! deliveries are recorded (on this node: [`super::Webhooks::publish`], or
//! a task's end that the store recorded, told by [`super::record`]; on
//! another: [`Notice::Deliveries`]) or an attempt ends; it never polls. At
//! start it claims what is due at once: the deliveries of the tasks the
//! start-up ended as interrupted among them.
//! A claim lasts [`CLAIM`]: a node that dies while sending leaves the
//! delivery to be sent again once it lapses; at start a node drops its own
//! claims (nothing of it is in flight).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::allow::{parse_url, AllowPolicy, PinnedResolver, Unreachable};
use super::backoff;
use super::sign::{signature, EVENT_HEADER, SIGNATURE_HEADER};
use super::Webhooks;
use crate::queue::Queue;
use crate::store::task_log::now_ms;
use crate::store::webhooks::{Attempt, Claimed};
use crate::store::Notice;

/// Deliveries sent at once by one node.
pub const CONCURRENCY: usize = 32;
/// How long a claim keeps other senders off a delivery.
pub const CLAIM: Duration = Duration::from_secs(60);
/// How long one attempt may take, answer included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the loop sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How long the loop waits after the store failed.
const RETRY: Duration = Duration::from_secs(5);
/// The node name of a store of one node.
const LOCAL: &str = "local";

/// The HTTP client of the sender: every host resolved through the
/// allowlist, no redirect followed, no proxy from the environment.
pub fn client(policy: Arc<AllowPolicy>) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PinnedResolver(policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("Stevedore-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Send the due deliveries until `stop`. Returns at once when the task
/// store keeps no webhooks.
pub async fn run(queue: Arc<Queue>, hub: Arc<Webhooks>, stop: CancellationToken) {
    let Some(store) = queue.webhooks() else {
        return;
    };
    let node = queue.node().unwrap_or(LOCAL).to_string();
    if let Err(e) = store.release_claims(&node).await {
        tracing::warn!(error = %format!("{e:#}"), "dropping this node's webhook claims failed");
    }
    let client = match client(Arc::new(hub.policy().clone())) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the webhook client could not be built; no webhook is sent");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut notices = queue.notices();
    loop {
        let free = slots.available_permits();
        let now = now_ms();
        let wait = if free == 0 {
            MAX_SLEEP
        } else {
            match store
                .claim_deliveries(&node, now, now + CLAIM.as_millis() as i64, free)
                .await
            {
                Ok(claimed) => {
                    let full = claimed.len() == free;
                    for c in claimed {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let (queue, hub, client) = (queue.clone(), hub.clone(), client.clone());
                        tokio::spawn(async move {
                            attempt(&queue, &hub, &client, c).await;
                            drop(permit);
                            hub.wake.notify_one();
                        });
                    }
                    if full {
                        continue;
                    }
                    match store.next_delivery().await {
                        Ok(Some(at)) => {
                            Duration::from_millis((at - now_ms()).max(0) as u64).min(MAX_SLEEP)
                        }
                        Ok(None) => MAX_SLEEP,
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "reading the next webhook delivery failed");
                            RETRY
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "claiming webhook deliveries failed");
                    RETRY
                }
            }
        };
        let notice = async {
            match notices.as_mut() {
                Some(rx) => loop {
                    match rx.recv().await {
                        Ok(Notice::Deliveries { .. } | Notice::Resync)
                        | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                },
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = hub.wake.notified() => {}
            _ = notice => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// Whether `e` (or what caused it) is the allowlist's refusal.
fn refusal(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Unreachable>() {
            return r.refused.then(|| r.message.clone());
        }
        source = s.source();
    }
    None
}

/// An error's text with its causes, without the URL (it may hold a token).
fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One attempt at delivery `c`, recorded.
async fn attempt(queue: &Queue, hub: &Webhooks, client: &reqwest::Client, c: Claimed) {
    let Some(store) = queue.webhooks() else {
        return;
    };
    let d = &c.delivery;
    let target = c
        .target
        .clone()
        .or_else(|| hub.configured_target(d.webhook).cloned());
    let outcome = match target {
        None => Attempt::Failed {
            code: None,
            error: "the webhook no longer exists".into(),
        },
        Some(target) => send(hub, client, &c, &target).await,
    };
    match &outcome {
        Attempt::Delivered { code, .. } => tracing::info!(
            delivery = d.id, webhook = d.webhook, event = %d.event, event_id = %d.event_id,
            attempts = d.attempts, code, "webhook delivered"
        ),
        Attempt::Retry { error, next, .. } => tracing::warn!(
            delivery = d.id, webhook = d.webhook, event_id = %d.event_id, attempts = d.attempts,
            %error, retry_in_ms = next - now_ms(), "webhook delivery failed; it is tried again"
        ),
        Attempt::Failed { error, .. } => tracing::warn!(
            delivery = d.id, webhook = d.webhook, event_id = %d.event_id, attempts = d.attempts,
            %error, "webhook delivery failed for good"
        ),
    }
    if let Err(e) = store.record_attempt(d.id, outcome).await {
        tracing::error!(delivery = d.id, error = %format!("{e:#}"), "recording a webhook attempt failed");
    }
}

/// POST the delivery to `target`; what happened.
async fn send(
    hub: &Webhooks,
    client: &reqwest::Client,
    c: &Claimed,
    target: &crate::store::webhooks::Target,
) -> Attempt {
    let d = &c.delivery;
    let url = match parse_url(&target.url) {
        Ok(u) => u,
        Err(e) => {
            return Attempt::Failed {
                code: None,
                error: format!("url: {e}"),
            }
        }
    };
    // An address literal never reaches the resolver: checked here.
    if let Some(host) = url.host_str() {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            if let Err(e) = hub.policy().check_ip(ip) {
                return Attempt::Failed {
                    code: None,
                    error: e,
                };
            }
        }
    }
    let timestamp = crate::store::tasks::model::now();
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(&target.secret, timestamp, c.body.as_bytes()),
        )
        .header(EVENT_HEADER, &d.event_id)
        .header("Idempotency-Key", &d.event_id)
        .header("X-Stevedore-Event-Type", &d.event)
        .body(c.body.clone())
        .send()
        .await;
    let now = now_ms();
    let (code, error, asked) = match sent {
        Ok(resp) if resp.status().is_success() => {
            return Attempt::Delivered {
                at: now,
                code: i32::from(resp.status().as_u16()),
            }
        }
        Ok(resp) => {
            let asked = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| backoff::retry_after(v, std::time::SystemTime::now()));
            let status = resp.status();
            (
                Some(i32::from(status.as_u16())),
                format!("the receiver answered {status}"),
                asked,
            )
        }
        Err(e) => {
            if let Some(refused) = refusal(&e) {
                return Attempt::Failed {
                    code: None,
                    error: refused,
                };
            }
            (None, error_text(e), None)
        }
    };
    let jitter: f64 = rand::random();
    match backoff::next_attempt(d.created, now, d.attempts.max(1) as u32, asked, jitter) {
        Some(next) => Attempt::Retry { next, code, error },
        None => Attempt::Failed {
            code,
            error: format!("given up after 24 hours of retries; last: {error}"),
        },
    }
}
