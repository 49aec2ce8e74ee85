//! The SQLite [`WebhookStore`]: the `webhooks` and `webhook_deliveries`
//! tables of the task database. One node owns the file, so a claim only
//! keeps this node's own senders from taking a delivery twice.
//!
//! [`record_ends`] writes the deliveries of task ends in the writer's
//! open transaction, in the savepoint of the write that ends them.

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::sql::row_to_task;
use super::writer::Done;
use super::SqliteStore;
use crate::store::secret::SecretBox;
use crate::store::task_log::now_ms;
use crate::store::tasks::row::COLUMNS;
use crate::store::tasks::Owner;
use crate::store::webhooks::{
    end_deliveries, names_from_text, names_to_text, sealed_for, Attempt, Claimed, Delivery,
    DeliveryStatus, Hook, NewDelivery, NewWebhook, Target, Webhook, WebhookStore,
};

/// Record a delivery; one of a webhook and event id already recorded is
/// skipped. The statement's parameters: webhook, event id, event, body,
/// created (also its first attempt's time).
const ENQUEUE_SQL: &str =
    "INSERT INTO webhook_deliveries (webhook, event_id, event, body, next_attempt, created)
     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
     ON CONFLICT (webhook, event_id) DO NOTHING";

/// Record, in the open transaction, the deliveries of the ends of tasks
/// `ids` (just stored as ended) for the webhooks that want them: the
/// `configured` ones and the stored ones of each task's owner or of all
/// users. Returns how many were new.
pub(super) fn record_ends(
    c: &Connection,
    configured: &[Hook],
    ids: &[i64],
) -> anyhow::Result<usize> {
    let mut candidates = c.prepare_cached(
        "SELECT id, owner, all_users, events, categories FROM webhooks
          WHERE owner = (SELECT username FROM tasks WHERE id = ?1)
         UNION ALL
         SELECT id, owner, all_users, events, categories FROM webhooks
          WHERE all_users <> 0 AND owner <> (SELECT username FROM tasks WHERE id = ?1)",
    )?;
    let mut new = 0;
    for &id in ids {
        let stored = candidates
            .query_map([id], |r| {
                let events: String = r.get(3)?;
                let categories: Option<String> = r.get(4)?;
                Ok(Hook {
                    id: r.get(0)?,
                    owner: r.get(1)?,
                    all_users: r.get(2)?,
                    events: names_from_text(&events).map_err(|e| conversion(3, e))?,
                    categories: categories
                        .map(|c| names_from_text(&c))
                        .transpose()
                        .map_err(|e| conversion(4, e))?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if stored.is_empty() && configured.is_empty() {
            continue;
        }
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
        let Some(task) = c
            .prepare_cached(&sql)?
            .query_row([id], row_to_task)
            .optional()?
        else {
            continue;
        };
        let mut add = c.prepare_cached(ENQUEUE_SQL)?;
        for d in end_deliveries(&task, configured, &stored, now_ms()) {
            new += add.execute(params![d.webhook, d.event_id, d.event, d.body, d.created])?;
        }
    }
    Ok(new)
}

/// The columns a [`Webhook`] is read from, in [`webhook_from_row`]'s order.
const HOOK_COLUMNS: &str = "id, owner, all_users, url, events, categories, created";
/// The columns a [`Delivery`] is read from, in [`delivery_from_row`]'s order.
const DELIVERY_COLUMNS: &str = "id, webhook, event_id, event, status, attempts, last_code, \
     last_error, next_attempt, created, delivered";

fn conversion(i: usize, e: anyhow::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
}

fn webhook_from_row(r: &Row<'_>) -> rusqlite::Result<Webhook> {
    let events: String = r.get(4)?;
    let categories: Option<String> = r.get(5)?;
    Ok(Webhook {
        id: r.get(0)?,
        owner: r.get(1)?,
        all_users: r.get(2)?,
        url: r.get(3)?,
        events: names_from_text(&events).map_err(|e| conversion(4, e))?,
        categories: categories
            .map(|c| names_from_text(&c))
            .transpose()
            .map_err(|e| conversion(5, e))?,
        created: r.get(6)?,
    })
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status: String = r.get(4)?;
    Ok(Delivery {
        id: r.get(0)?,
        webhook: r.get(1)?,
        event_id: r.get(2)?,
        event: r.get(3)?,
        status: DeliveryStatus::parse(&status).map_err(|e| conversion(4, e))?,
        attempts: r.get(5)?,
        last_code: r.get(6)?,
        last_error: r.get(7)?,
        next_attempt: r.get(8)?,
        created: r.get(9)?,
        delivered: r.get(10)?,
    })
}

fn get(c: &Connection, id: i64) -> anyhow::Result<Option<Webhook>> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], webhook_from_row)
        .optional()?)
}

/// The URL and opened secret of stored webhook `id`.
fn target(c: &Connection, secrets: &SecretBox, id: i64) -> anyhow::Result<Option<Target>> {
    let row = c
        .prepare_cached("SELECT url, sealed FROM webhooks WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    let Some((url, sealed)) = row else {
        return Ok(None);
    };
    let secret = String::from_utf8(secrets.open_bound(&sealed_for(id), &sealed)?)
        .context("a webhook secret is not UTF-8")?;
    Ok(Some(Target { url, secret }))
}

#[async_trait]
impl WebhookStore for SqliteStore {
    fn configure(&self, hooks: Vec<Hook>) {
        self.configured.set(hooks);
    }

    async fn create_webhook(&self, w: NewWebhook) -> anyhow::Result<Webhook> {
        self.run_write(Box::new(move |c, secrets, _| {
            // The row's id is known only after the insert, and the secret is
            // sealed to it: an empty blob first, the sealed one in the same
            // transaction.
            c.prepare_cached(
                "INSERT INTO webhooks (owner, all_users, url, events, categories, sealed, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, x'', ?6)",
            )?
            .execute(params![
                w.owner,
                w.all_users,
                w.url,
                names_to_text(&w.events),
                w.categories.as_deref().map(names_to_text),
                w.created
            ])?;
            let id = c.last_insert_rowid();
            let sealed = secrets.seal_bound(&sealed_for(id), w.secret.as_bytes())?;
            c.prepare_cached("UPDATE webhooks SET sealed = ?2 WHERE id = ?1")?
                .execute(params![id, sealed])?;
            let made = get(c, id)?.context("the webhook was not stored")?;
            Ok(Done::Any(Box::new(made)))
        }))
        .await
    }

    async fn webhooks(&self, owner: Owner<'_>) -> anyhow::Result<Vec<Webhook>> {
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u.to_string()),
        };
        self.read(move |c| {
            let sql = format!(
                "SELECT {HOOK_COLUMNS} FROM webhooks WHERE ?1 IS NULL OR owner = ?1 ORDER BY id"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map([user], webhook_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn webhook(&self, id: i64) -> anyhow::Result<Option<Webhook>> {
        self.read(move |c| get(c, id)).await
    }

    async fn delete_webhook(&self, id: i64) -> anyhow::Result<bool> {
        self.run_write(Box::new(move |c, _, _| {
            c.prepare_cached("DELETE FROM webhook_deliveries WHERE webhook = ?1")?
                .execute([id])?;
            let n = c
                .prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
                .execute([id])?;
            Ok(Done::Any(Box::new(n > 0)))
        }))
        .await
    }

    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> anyhow::Result<usize> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        self.run_write(Box::new(move |c, _, _| {
            let mut st = c.prepare_cached(ENQUEUE_SQL)?;
            let mut new = 0;
            for d in deliveries {
                new += st.execute(params![d.webhook, d.event_id, d.event, d.body, d.created])?;
            }
            Ok(Done::Any(Box::new(new)))
        }))
        .await
    }

    async fn claim_deliveries(
        &self,
        node: &str,
        now: i64,
        until: i64,
        max: usize,
    ) -> anyhow::Result<Vec<Claimed>> {
        let node = node.to_string();
        self.run_write(Box::new(move |c, secrets, _| {
            let sql = format!(
                "UPDATE webhook_deliveries
                    SET claimed_by = ?1, claimed_until = ?3, attempts = attempts + 1
                  WHERE id IN (SELECT id FROM webhook_deliveries
                                WHERE status = 'pending' AND next_attempt <= ?2
                                  AND (claimed_until IS NULL OR claimed_until < ?2)
                                ORDER BY next_attempt, id LIMIT ?4)
              RETURNING {DELIVERY_COLUMNS}, body"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![node, now, until, max as i64], |r| {
                Ok((delivery_from_row(r)?, r.get::<_, String>(11)?))
            })?;
            let mut claimed = Vec::new();
            for row in rows {
                let (delivery, body) = row?;
                let target = if delivery.webhook > 0 {
                    target(c, secrets, delivery.webhook)?
                } else {
                    None
                };
                claimed.push(Claimed {
                    delivery,
                    body,
                    target,
                });
            }
            claimed.sort_by_key(|d| (d.delivery.next_attempt, d.delivery.id));
            Ok(Done::Any(Box::new(claimed)))
        }))
        .await
    }

    async fn record_attempt(&self, id: i64, attempt: Attempt) -> anyhow::Result<()> {
        self.run_write(Box::new(move |c, _, _| {
            let (status, code, error, next, delivered) = match attempt {
                Attempt::Delivered { at, code } => ("delivered", Some(code), None, None, Some(at)),
                Attempt::Retry { next, code, error } => {
                    ("pending", code, Some(error), Some(next), None)
                }
                Attempt::Failed { code, error } => ("failed", code, Some(error), None, None),
            };
            c.prepare_cached(
                "UPDATE webhook_deliveries
                    SET status = ?2, last_code = ?3, last_error = ?4, next_attempt = ?5,
                        delivered = ?6, claimed_by = NULL, claimed_until = NULL
                  WHERE id = ?1",
            )?
            .execute(params![id, status, code, error, next, delivered])?;
            Ok(Done::Any(Box::new(())))
        }))
        .await
    }

    async fn release_claims(&self, node: &str) -> anyhow::Result<()> {
        let node = node.to_string();
        self.run_write(Box::new(move |c, _, _| {
            c.prepare_cached(
                "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL
                  WHERE claimed_by = ?1",
            )?
            .execute([node])?;
            Ok(Done::Any(Box::new(())))
        }))
        .await
    }

    async fn deliveries(&self, webhook: i64, limit: usize) -> anyhow::Result<Vec<Delivery>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                  WHERE webhook = ?1 ORDER BY id DESC LIMIT ?2"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![webhook, limit as i64], delivery_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn next_delivery(&self) -> anyhow::Result<Option<i64>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT min(max(next_attempt, coalesce(claimed_until, 0)))
                       FROM webhook_deliveries WHERE status = 'pending'",
            )?
            .query_row([], |r| r.get(0))?)
        })
        .await
    }
}
