//! The SQLite [`ScheduleStore`]: the `schedules` table of the task
//! database, written through the task writer so that a firing and the
//! task it stores share one transaction.

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::sql::insert;
use super::writer::{Done, RunWrite, Write};
use super::SqliteStore;
use crate::store::schedules::{
    sealed_for, Due, Fired, Firing, NewSchedule, Schedule, ScheduleStore,
};
use crate::store::tasks::model::JsonText;
use crate::store::tasks::Owner;

/// The columns a [`Schedule`] is read from, in [`schedule_from_row`]'s order.
const COLUMNS: &str = "id, owner, name, category, params, cron, timezone, paused, next_run, \
     last_run, last_task, last_error, created";

fn schedule_from_row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    let params: String = r.get(4)?;
    let params = JsonText::new(params).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Schedule {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        category: r.get(3)?,
        params,
        cron: r.get(5)?,
        timezone: r.get(6)?,
        paused: r.get(7)?,
        next_run: r.get(8)?,
        last_run: r.get(9)?,
        last_task: r.get(10)?,
        last_error: r.get(11)?,
        created: r.get(12)?,
    })
}

fn get(c: &Connection, id: i64) -> anyhow::Result<Option<Schedule>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], schedule_from_row)
        .optional()?)
}

impl SqliteStore {
    /// Run `f` in the writer's transaction and take its [`Done::Any`] as a `T`.
    pub(super) async fn run_write<T: Send + 'static>(&self, f: RunWrite) -> anyhow::Result<T> {
        match self.apply(Write::Run(f, None)).await? {
            Done::Any(v) => v
                .downcast::<T>()
                .map(|v| *v)
                .map_err(|_| anyhow!("the database writer answered another type")),
            _ => Err(anyhow!("the database writer answered another operation")),
        }
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn create_schedule(&self, s: NewSchedule) -> anyhow::Result<Schedule> {
        self.run_write(Box::new(move |c, secrets, _| {
            c.prepare_cached(
                "INSERT INTO schedules (owner, name, category, params, cron, timezone,
                                        next_run, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                s.owner,
                s.name,
                s.category,
                s.shown_params,
                s.cron,
                s.timezone,
                s.next_run,
                s.created
            ])?;
            let id = c.last_insert_rowid();
            if let Some(full) = &s.full_params {
                let sealed = secrets.seal_bound(&sealed_for(id), full.as_bytes())?;
                c.prepare_cached("UPDATE schedules SET sealed = ?2 WHERE id = ?1")?
                    .execute(params![id, sealed])?;
            }
            let made = get(c, id)?.context("the schedule was not stored")?;
            Ok(Done::Any(Box::new(made)))
        }))
        .await
    }

    async fn schedules(&self, owner: Owner<'_>) -> anyhow::Result<Vec<Schedule>> {
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u.to_string()),
        };
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM schedules WHERE ?1 IS NULL OR owner = ?1 ORDER BY id"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map([user], schedule_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn schedule(&self, id: i64) -> anyhow::Result<Option<Schedule>> {
        self.read(move |c| get(c, id)).await
    }

    async fn set_paused(
        &self,
        id: i64,
        paused: bool,
        next_run: Option<i64>,
    ) -> anyhow::Result<Option<Schedule>> {
        self.run_write(Box::new(move |c, _, _| {
            c.prepare_cached(
                "UPDATE schedules SET paused = ?2, next_run = coalesce(?3, next_run)
                  WHERE id = ?1",
            )?
            .execute(params![id, paused, next_run])?;
            Ok(Done::Any(Box::new(get(c, id)?)))
        }))
        .await
    }

    async fn delete_schedule(&self, id: i64) -> anyhow::Result<bool> {
        self.run_write(Box::new(move |c, _, _| {
            let n = c
                .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
                .execute([id])?;
            Ok(Done::Any(Box::new(n > 0)))
        }))
        .await
    }

    async fn due_schedules(&self, now: i64) -> anyhow::Result<Vec<Due>> {
        // Through the writer, which holds the key that opens the params.
        self.run_write(Box::new(move |c, secrets, _| {
            let sql = format!(
                "SELECT {COLUMNS}, sealed FROM schedules
                  WHERE paused = 0 AND next_run <= ?1 ORDER BY next_run, id"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map([now], |r| {
                Ok((schedule_from_row(r)?, r.get::<_, Option<Vec<u8>>>(13)?))
            })?;
            let mut due = Vec::new();
            for row in rows {
                let (schedule, sealed) = row?;
                let full_params = match sealed {
                    Some(s) => {
                        String::from_utf8(secrets.open_bound(&sealed_for(schedule.id), &s)?)?
                    }
                    None => schedule.params.get().to_string(),
                };
                due.push(Due {
                    schedule,
                    full_params,
                });
            }
            Ok(Done::Any(Box::new(due)))
        }))
        .await
    }

    async fn next_due(&self) -> anyhow::Result<Option<i64>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT min(next_run) FROM schedules WHERE paused = 0")?
                    .query_row([], |r| r.get(0))?,
            )
        })
        .await
    }

    async fn fire(&self, firing: Firing) -> anyhow::Result<Fired> {
        let Firing {
            id,
            due,
            occurrence,
            next,
            outcome,
            on_stored,
        } = firing;
        let run: RunWrite = Box::new(move |c, secrets, ids| {
            let hit = c
                .prepare_cached(
                    "UPDATE schedules SET next_run = ?3, last_run = ?4
                      WHERE id = ?1 AND next_run = ?2 AND paused = 0",
                )?
                .execute(params![id, due, next, occurrence])?;
            if hit == 0 {
                return Ok(Done::Any(Box::new(Fired::Lost)));
            }
            match outcome {
                Ok(task) => {
                    let task = insert(c, secrets, ids, task)?;
                    c.prepare_cached(
                        "UPDATE schedules SET last_task = ?2, last_error = NULL WHERE id = ?1",
                    )?
                    .execute(params![id, task.id])?;
                    Ok(Done::Task(task))
                }
                Err(error) => {
                    c.prepare_cached("UPDATE schedules SET last_error = ?2 WHERE id = ?1")?
                        .execute(params![id, error])?;
                    Ok(Done::Any(Box::new(Fired::Won(None))))
                }
            }
        });
        match self.apply(Write::Run(run, on_stored)).await? {
            Done::Task(task) => Ok(Fired::Won(Some(task))),
            Done::Any(v) => v
                .downcast::<Fired>()
                .map(|v| *v)
                .map_err(|_| anyhow!("the database writer answered another type")),
            _ => Err(anyhow!("the database writer answered another operation")),
        }
    }
}
