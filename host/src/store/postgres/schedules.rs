//! The PostgreSQL [`ScheduleStore`]: every node's scheduler races on the
//! same rows, and the compare-and-set on `next_run` lets exactly one of
//! them fire each occurrence, storing its task in the same transaction.
//! Changes that move the earliest wake-up are announced with
//! [`Notice::Schedules`].

use anyhow::Context;
use async_trait::async_trait;
use tokio_postgres::Row;

use super::tasks::{insert_in, notify, PgStore};
use crate::store::schedules::{
    sealed_for, Due, Fired, Firing, NewSchedule, Schedule, ScheduleStore,
};
use crate::store::tasks::model::JsonText;
use crate::store::tasks::Owner;
use crate::store::Notice;

/// The columns a [`Schedule`] is read from, in [`schedule_from_row`]'s order.
const COLUMNS: &str = "id, owner, name, category, params, cron, timezone, paused, next_run, \
     last_run, last_task, last_error, created";

fn schedule_from_row(r: &Row) -> anyhow::Result<Schedule> {
    Ok(Schedule {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        name: r.try_get(2)?,
        category: r.try_get(3)?,
        params: JsonText::new(r.try_get(4)?).context("stored schedule params")?,
        cron: r.try_get(5)?,
        timezone: r.try_get(6)?,
        paused: r.try_get(7)?,
        next_run: r.try_get(8)?,
        last_run: r.try_get(9)?,
        last_task: r.try_get(10)?,
        last_error: r.try_get(11)?,
        created: r.try_get(12)?,
    })
}

impl PgStore {
    fn schedules_changed(&self) -> Notice {
        Notice::Schedules {
            origin: self.database().node().to_string(),
        }
    }

    async fn one_schedule(
        &self,
        client: &impl tokio_postgres::GenericClient,
        id: i64,
    ) -> anyhow::Result<Option<Schedule>> {
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM schedules WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn create_schedule(&self, s: NewSchedule) -> anyhow::Result<Schedule> {
        self.check_open()?;
        let mut client = self.database().client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO schedules (owner, name, category, params, cron, timezone,
                                        next_run, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &s.owner,
                    &s.name,
                    &s.category,
                    &s.shown_params,
                    &s.cron,
                    &s.timezone,
                    &s.next_run,
                    &s.created,
                ],
            )
            .await?
            .get(0);
        if let Some(full) = &s.full_params {
            let sealed = self.secrets.seal_bound(&sealed_for(id), full.as_bytes())?;
            tx.execute(
                "UPDATE schedules SET sealed = $2 WHERE id = $1",
                &[&id, &sealed],
            )
            .await?;
        }
        let made = self
            .one_schedule(&*tx, id)
            .await?
            .context("the schedule was not stored")?;
        notify(&tx, self.schedules_changed()).await?;
        tx.commit().await?;
        Ok(made)
    }

    async fn schedules(&self, owner: Owner<'_>) -> anyhow::Result<Vec<Schedule>> {
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u),
        };
        let client = self.database().client().await?;
        client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM schedules
                      WHERE $1::text IS NULL OR owner = $1 ORDER BY id"
                ),
                &[&user],
            )
            .await?
            .iter()
            .map(schedule_from_row)
            .collect()
    }

    async fn schedule(&self, id: i64) -> anyhow::Result<Option<Schedule>> {
        let client = self.database().client().await?;
        self.one_schedule(&**client, id).await
    }

    async fn set_paused(
        &self,
        id: i64,
        paused: bool,
        next_run: Option<i64>,
    ) -> anyhow::Result<Option<Schedule>> {
        self.check_open()?;
        let mut client = self.database().client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE schedules SET paused = $2, next_run = coalesce($3, next_run) WHERE id = $1",
            &[&id, &paused, &next_run],
        )
        .await?;
        let now = self.one_schedule(&*tx, id).await?;
        notify(&tx, self.schedules_changed()).await?;
        tx.commit().await?;
        Ok(now)
    }

    async fn delete_schedule(&self, id: i64) -> anyhow::Result<bool> {
        self.check_open()?;
        let mut client = self.database().client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("DELETE FROM schedules WHERE id = $1", &[&id])
            .await?;
        notify(&tx, self.schedules_changed()).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn due_schedules(&self, now: i64) -> anyhow::Result<Vec<Due>> {
        let client = self.database().client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS}, sealed FROM schedules
                      WHERE NOT paused AND next_run <= $1 ORDER BY next_run, id"
                ),
                &[&now],
            )
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for r in &rows {
            let schedule = schedule_from_row(r)?;
            let sealed: Option<Vec<u8>> = r.try_get(13)?;
            let full_params = match sealed {
                Some(s) => {
                    String::from_utf8(self.secrets.open_bound(&sealed_for(schedule.id), &s)?)?
                }
                None => schedule.params.get().to_string(),
            };
            due.push(Due {
                schedule,
                full_params,
            });
        }
        Ok(due)
    }

    async fn next_due(&self) -> anyhow::Result<Option<i64>> {
        let client = self.database().client().await?;
        Ok(client
            .query_one("SELECT min(next_run) FROM schedules WHERE NOT paused", &[])
            .await?
            .get(0))
    }

    async fn fire(&self, firing: Firing) -> anyhow::Result<Fired> {
        self.check_open()?;
        let Firing {
            id,
            due,
            occurrence,
            next,
            outcome,
            on_stored,
        } = firing;
        let mut client = self.database().client().await?;
        let tx = client.transaction().await?;
        // The row lock this takes makes a racing node's update wait, then
        // find `next_run` moved on and change nothing.
        let hit = tx
            .execute(
                "UPDATE schedules SET next_run = $3, last_run = $4
                  WHERE id = $1 AND next_run = $2 AND NOT paused",
                &[&id, &due, &next, &occurrence],
            )
            .await?;
        if hit == 0 {
            return Ok(Fired::Lost);
        }
        let task = match outcome {
            Ok(task) => {
                let task = insert_in(&tx, self.database(), &self.secrets, task).await?;
                tx.execute(
                    "UPDATE schedules SET last_task = $2, last_error = NULL WHERE id = $1",
                    &[&id, &task.id],
                )
                .await?;
                Some(task)
            }
            Err(error) => {
                tx.execute(
                    "UPDATE schedules SET last_error = $2 WHERE id = $1",
                    &[&id, &error],
                )
                .await?;
                None
            }
        };
        tx.commit().await?;
        if let (Some(task), Some(told)) = (&task, on_stored) {
            told(task);
        }
        Ok(Fired::Won(task))
    }
}
