//! The PostgreSQL [`WebhookStore`]: every node's sender claims from the
//! same outbox with `FOR UPDATE SKIP LOCKED`, so one node sends each
//! attempt. New deliveries are announced with [`Notice::Deliveries`].
//!
//! [`record_ends`] writes the deliveries of task ends in the transaction
//! that ends them (a batch of ends: three statements whatever its size,
//! one when no webhook could want them).

use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::tasks::{cached_execute, cached_query, notify, row_to_task, PgStore, COLUMNS};
use crate::store::task_log::now_ms;
use crate::store::tasks::Owner;
use crate::store::webhooks::{
    end_deliveries, names_from_text, names_to_text, sealed_for, Attempt, Claimed, Delivery,
    DeliveryStatus, Hook, NewDelivery, NewWebhook, Target, Webhook, WebhookStore,
};
use crate::store::Notice;

/// Record, in `tx`, the deliveries of the ends of tasks `ids` (just
/// stored as ended) for the webhooks that want them: the `configured`
/// ones and the stored ones of each task's owner or of all users; the
/// senders of every node are told when some are new (`node` recorded
/// them). Returns how many were new.
pub(super) async fn record_ends(
    tx: &Transaction<'_>,
    configured: &[Hook],
    ids: &[i64],
    node: &str,
) -> anyhow::Result<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let stored = cached_query(
        tx,
        "SELECT id, owner, all_users, events, categories FROM webhooks
          WHERE owner IN (SELECT username FROM tasks WHERE id = ANY($1)) OR all_users",
        &[&ids],
    )
    .await?
    .iter()
    .map(hook_from_row)
    .collect::<anyhow::Result<Vec<_>>>()?;
    if stored.is_empty() && configured.is_empty() {
        return Ok(0);
    }
    let tasks = cached_query(
        tx,
        &format!("SELECT {COLUMNS} FROM tasks WHERE id = ANY($1) ORDER BY id"),
        &[&ids],
    )
    .await?;
    let now = now_ms();
    let mut deliveries = Vec::new();
    for row in &tasks {
        deliveries.extend(end_deliveries(&row_to_task(row)?, configured, &stored, now));
    }
    let new = insert_deliveries(tx, &deliveries).await?;
    if new > 0 {
        notify(
            tx,
            Notice::Deliveries {
                origin: node.to_string(),
            },
        )
        .await?;
    }
    Ok(new)
}

/// Insert `deliveries` in `tx` in one statement, skipping those of a
/// webhook and event id already recorded; how many were new.
async fn insert_deliveries(
    tx: &Transaction<'_>,
    deliveries: &[NewDelivery],
) -> anyhow::Result<usize> {
    if deliveries.is_empty() {
        return Ok(0);
    }
    let hooks: Vec<i64> = deliveries.iter().map(|d| d.webhook).collect();
    let ids: Vec<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    let events: Vec<&str> = deliveries.iter().map(|d| d.event.as_str()).collect();
    let bodies: Vec<&str> = deliveries.iter().map(|d| d.body.as_str()).collect();
    let created: Vec<i64> = deliveries.iter().map(|d| d.created).collect();
    let n = cached_execute(
        tx,
        "INSERT INTO webhook_deliveries (webhook, event_id, event, body, next_attempt, created)
         SELECT u.webhook, u.event_id, u.event, u.body, u.created, u.created
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                AS u(webhook, event_id, event, body, created)
         ON CONFLICT (webhook, event_id) DO NOTHING",
        &[&hooks, &ids, &events, &bodies, &created],
    )
    .await?;
    Ok(n as usize)
}

/// A webhook as matched, from its columns `id, owner, all_users, events,
/// categories`.
fn hook_from_row(r: &Row) -> anyhow::Result<Hook> {
    let categories: Option<String> = r.try_get(4)?;
    Ok(Hook {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        all_users: r.try_get(2)?,
        events: names_from_text(r.try_get(3)?)?,
        categories: categories.map(|c| names_from_text(&c)).transpose()?,
    })
}

/// The columns a [`Webhook`] is read from, in [`webhook_from_row`]'s order.
const HOOK_COLUMNS: &str = "id, owner, all_users, url, events, categories, created";
/// The columns a [`Delivery`] is read from, in [`delivery_from_row`]'s order.
const DELIVERY_COLUMNS: &str = "id, webhook, event_id, event, status, attempts, last_code, \
     last_error, next_attempt, created, delivered";

fn webhook_from_row(r: &Row) -> anyhow::Result<Webhook> {
    let categories: Option<String> = r.try_get(5)?;
    Ok(Webhook {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        all_users: r.try_get(2)?,
        url: r.try_get(3)?,
        events: names_from_text(r.try_get(4)?)?,
        categories: categories.map(|c| names_from_text(&c)).transpose()?,
        created: r.try_get(6)?,
    })
}

fn delivery_from_row(r: &Row) -> anyhow::Result<Delivery> {
    Ok(Delivery {
        id: r.try_get(0)?,
        webhook: r.try_get(1)?,
        event_id: r.try_get(2)?,
        event: r.try_get(3)?,
        status: DeliveryStatus::parse(r.try_get(4)?)?,
        attempts: r.try_get(5)?,
        last_code: r.try_get(6)?,
        last_error: r.try_get(7)?,
        next_attempt: r.try_get(8)?,
        created: r.try_get(9)?,
        delivered: r.try_get(10)?,
    })
}

impl PgStore {
    async fn one_webhook(
        &self,
        client: &impl tokio_postgres::GenericClient,
        id: i64,
    ) -> anyhow::Result<Option<Webhook>> {
        let row = client
            .query_opt(
                &format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    fn configure(&self, hooks: Vec<Hook>) {
        self.configured.set(hooks);
    }

    async fn create_webhook(&self, w: NewWebhook) -> anyhow::Result<Webhook> {
        self.check_open()?;
        let mut client = self.database().client().await?;
        let tx = client.transaction().await?;
        let categories = w.categories.as_deref().map(names_to_text);
        // The secret is sealed to the row's id, known after the insert.
        let id: i64 = tx
            .query_one(
                "INSERT INTO webhooks (owner, all_users, url, events, categories, sealed, created)
                 VALUES ($1, $2, $3, $4, $5, ''::bytea, $6) RETURNING id",
                &[
                    &w.owner,
                    &w.all_users,
                    &w.url,
                    &names_to_text(&w.events),
                    &categories,
                    &w.created,
                ],
            )
            .await?
            .get(0);
        let sealed = self
            .secrets
            .seal_bound(&sealed_for(id), w.secret.as_bytes())?;
        tx.execute(
            "UPDATE webhooks SET sealed = $2 WHERE id = $1",
            &[&id, &sealed],
        )
        .await?;
        let made = self
            .one_webhook(&*tx, id)
            .await?
            .context("the webhook was not stored")?;
        tx.commit().await?;
        Ok(made)
    }

    async fn webhooks(&self, owner: Owner<'_>) -> anyhow::Result<Vec<Webhook>> {
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u),
        };
        let client = self.database().client().await?;
        client
            .query(
                &format!(
                    "SELECT {HOOK_COLUMNS} FROM webhooks
                      WHERE $1::text IS NULL OR owner = $1 ORDER BY id"
                ),
                &[&user],
            )
            .await?
            .iter()
            .map(webhook_from_row)
            .collect()
    }

    async fn webhook(&self, id: i64) -> anyhow::Result<Option<Webhook>> {
        let client = self.database().client().await?;
        self.one_webhook(&**client, id).await
    }

    async fn delete_webhook(&self, id: i64) -> anyhow::Result<bool> {
        self.check_open()?;
        let mut client = self.database().client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM webhook_deliveries WHERE webhook = $1", &[&id])
            .await?;
        let n = tx
            .execute("DELETE FROM webhooks WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> anyhow::Result<usize> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        self.check_open()?;
        let mut client = self.database().client().await?;
        let tx = client.transaction().await?;
        let st = tx
            .prepare_cached(
                "INSERT INTO webhook_deliveries (webhook, event_id, event, body, next_attempt, created)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (webhook, event_id) DO NOTHING",
            )
            .await?;
        let mut new = 0;
        for d in &deliveries {
            new += tx
                .execute(
                    &st,
                    &[&d.webhook, &d.event_id, &d.event, &d.body, &d.created],
                )
                .await? as usize;
        }
        if new > 0 {
            notify(
                &tx,
                Notice::Deliveries {
                    origin: self.database().node().to_string(),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn claim_deliveries(
        &self,
        node: &str,
        now: i64,
        until: i64,
        max: usize,
    ) -> anyhow::Result<Vec<Claimed>> {
        self.check_open()?;
        let columns = DELIVERY_COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // The due rows are locked with SKIP LOCKED, so nodes claiming at
        // once take different rows; the stored webhook's target comes with
        // them (none for a configured one, negative ids).
        let client = self.database().client().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE webhook_deliveries AS d
                        SET claimed_by = $1, claimed_until = $3, attempts = d.attempts + 1
                       FROM (SELECT id, webhook FROM webhook_deliveries
                              WHERE status = 'pending' AND next_attempt <= $2
                                AND (claimed_until IS NULL OR claimed_until < $2)
                              ORDER BY next_attempt, id LIMIT $4
                              FOR UPDATE SKIP LOCKED) AS due
                       LEFT JOIN webhooks AS w ON w.id = due.webhook
                      WHERE d.id = due.id
                  RETURNING {columns}, d.body, w.url, w.sealed"
                ),
                &[&node, &now, &until, &(max as i64)],
            )
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let delivery = delivery_from_row(r)?;
            let body: String = r.try_get(11)?;
            let target = match (
                r.try_get::<_, Option<String>>(12)?,
                r.try_get::<_, Option<Vec<u8>>>(13)?,
            ) {
                (Some(url), Some(sealed)) if delivery.webhook > 0 => Some(Target {
                    url,
                    secret: String::from_utf8(
                        self.secrets
                            .open_bound(&sealed_for(delivery.webhook), &sealed)?,
                    )
                    .context("a webhook secret is not UTF-8")?,
                }),
                _ => None,
            };
            claimed.push(Claimed {
                delivery,
                body,
                target,
            });
        }
        claimed.sort_by_key(|d| (d.delivery.next_attempt, d.delivery.id));
        Ok(claimed)
    }

    async fn record_attempt(&self, id: i64, attempt: Attempt) -> anyhow::Result<()> {
        self.check_open()?;
        let (status, code, error, next, delivered) = match attempt {
            Attempt::Delivered { at, code } => ("delivered", Some(code), None, None, Some(at)),
            Attempt::Retry { next, code, error } => {
                ("pending", code, Some(error), Some(next), None)
            }
            Attempt::Failed { code, error } => ("failed", code, Some(error), None, None),
        };
        let client = self.database().client().await?;
        client
            .execute(
                "UPDATE webhook_deliveries
                    SET status = $2, last_code = $3, last_error = $4, next_attempt = $5,
                        delivered = $6, claimed_by = NULL, claimed_until = NULL
                  WHERE id = $1",
                &[&id, &status, &code, &error, &next, &delivered],
            )
            .await?;
        Ok(())
    }

    async fn release_claims(&self, node: &str) -> anyhow::Result<()> {
        self.check_open()?;
        let client = self.database().client().await?;
        client
            .execute(
                "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL
                  WHERE claimed_by = $1",
                &[&node],
            )
            .await?;
        Ok(())
    }

    async fn deliveries(&self, webhook: i64, limit: usize) -> anyhow::Result<Vec<Delivery>> {
        let client = self.database().client().await?;
        client
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                      WHERE webhook = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&webhook, &(limit as i64)],
            )
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn next_delivery(&self) -> anyhow::Result<Option<i64>> {
        let client = self.database().client().await?;
        Ok(client
            .query_one(
                "SELECT min(greatest(next_attempt, coalesce(claimed_until, 0)))
                   FROM webhook_deliveries WHERE status = 'pending'",
                &[],
            )
            .await?
            .get(0))
    }
}
