//! The PostgreSQL [`TaskStore`]: several nodes share one queue.
//!
//! Submits, claims and ends of runs are grouped: everything pending commits
//! in one transaction (`batch.rs`); other writes are one transaction each
//! on a pooled connection. A node claims only its own tasks, with
//! `FOR UPDATE SKIP LOCKED`, so claims never wait on each other. Every
//! change is announced with `NOTIFY` in the same transaction (delivered on
//! commit): a submit wakes the owning node, and every node's event stream
//! sees every node's changes. Full params are sealed as with SQLite; every
//! node must use the same key ([`Database::shared_secrets`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio::sync::broadcast;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::batch::Batcher;
use super::webhooks::record_ends;
use super::{Database, CHANNEL};
use crate::store::secret::SecretBox;
use crate::store::task_log::{LogBatch, LogLevel, LogLine, TaskLog};
use crate::store::tasks::model::{JsonText, Task, TaskState};
use crate::store::tasks::row::{row_columns, task_from_row, TaskRow, COLUMN_COUNT};
use crate::store::tasks::{
    ClaimRequest, Claimed, Durable, Finish, Interruption, NewTask, Notice, Owner, Page,
    ProgressUpdate, StateCount, TaskFilter, TaskStore,
};
use crate::store::webhooks::{ConfiguredHooks, Hook};

/// The columns a task of several nodes is read from: the shared ones, then
/// its node.
pub(super) const COLUMNS: &str = concat!(row_columns!(), ", node");
/// The position of the column after [`COLUMNS`].
const AFTER_COLUMNS: usize = COLUMN_COUNT + 1;

/// The PostgreSQL [`TaskStore`] of one node.
pub struct PgStore {
    db: Arc<Database>,
    /// Seals and opens full params (the batcher has its own handle).
    pub(super) secrets: Arc<SecretBox>,
    batch: Batcher,
    closed: AtomicBool,
    /// The configured webhooks, matched at each task end with the stored ones.
    pub(super) configured: Arc<ConfiguredHooks>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("node", &self.db.node())
            .finish()
    }
}

impl PgStore {
    /// The task store of node `db.node()`, sealing full params with `secrets`.
    /// Records the node as alive.
    pub async fn open(db: Arc<Database>, secrets: SecretBox) -> anyhow::Result<Arc<PgStore>> {
        let secrets = Arc::new(secrets);
        let configured = Arc::new(ConfiguredHooks::default());
        let store = Arc::new(PgStore {
            batch: Batcher::start(db.clone(), secrets.clone(), configured.clone()),
            secrets,
            db,
            closed: AtomicBool::new(false),
            configured,
        });
        store.heartbeat().await?;
        Ok(store)
    }

    /// The shared database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    pub(super) fn check_open(&self) -> anyhow::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            bail!("the task store is closed");
        }
        Ok(())
    }

    /// End the `running` tasks that `condition` also selects as `end` says,
    /// in a transaction that announces them, records the deliveries of
    /// their webhooks and drops their sealed params (they can no longer
    /// run); the ids in increasing order. `condition`
    /// names its `params` from `$4` on.
    async fn ending(
        &self,
        end: &Interruption,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<i64>> {
        self.check_open()?;
        let sql = format!(
            "UPDATE tasks SET state = 'error', result = $1, detail_state = $2, ended = $3
              WHERE state = 'running' AND {condition} RETURNING id"
        );
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&end.result, &end.detail, &end.now];
        all.extend_from_slice(params);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let mut ids: Vec<i64> = tx
            .query(&sql, &all)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        ids.sort_unstable();
        if !ids.is_empty() {
            tx.execute("DELETE FROM task_secrets WHERE task_id = ANY($1)", &[&ids])
                .await?;
            record_ends(&tx, &self.configured.get(), &ids, self.db.node()).await?;
            notify(&tx, self.changed(ids.clone())).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Run a `DELETE … RETURNING` of whole rows in its own transaction,
    /// tell the other nodes, and return the deleted tasks in id order.
    async fn deleting(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<Task>> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let mut gone = tx
            .query(sql, params)
            .await?
            .iter()
            .map(row_to_task)
            .collect::<anyhow::Result<Vec<_>>>()?;
        gone.sort_unstable_by_key(|t| t.id);
        if !gone.is_empty() {
            notify(&tx, self.changed(gone.iter().map(|t| t.id).collect())).await?;
        }
        tx.commit().await?;
        Ok(gone)
    }

    fn changed(&self, ids: Vec<i64>) -> Notice {
        Notice::Changed {
            ids,
            origin: self.db.node().to_string(),
        }
    }
}

/// Run `sql` through the connection's statement cache: one round trip,
/// where an unprepared statement takes two.
pub(super) async fn cached_query(
    c: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<Vec<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// [`cached_query`] for a statement whose rows are not wanted; returns how
/// many rows it changed.
pub(super) async fn cached_execute(
    c: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<u64> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// Send `notice` when `c` commits (as several notices when it names many tasks).
pub(super) async fn notify(c: &Transaction<'_>, notice: Notice) -> anyhow::Result<()> {
    for notice in notice.split() {
        cached_execute(
            c,
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &notice.payload()],
        )
        .await?;
    }
    Ok(())
}

/// A task row of PostgreSQL, read as [`crate::store::tasks::row`] maps it,
/// with the task's node after the shared columns.
struct PgRow<'a>(&'a Row);

impl TaskRow for PgRow<'_> {
    type Error = anyhow::Error;
    fn int(&self, i: usize) -> anyhow::Result<i64> {
        Ok(self.0.try_get(i)?)
    }
    fn int32(&self, i: usize) -> anyhow::Result<i32> {
        Ok(self.0.try_get(i)?)
    }
    fn maybe_int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.0.try_get(i)?)
    }
    fn flag(&self, i: usize) -> anyhow::Result<bool> {
        Ok(self.0.try_get(i)?)
    }
    fn text(&self, i: usize) -> anyhow::Result<String> {
        Ok(self.0.try_get(i)?)
    }
    fn json(&self, i: usize) -> anyhow::Result<JsonText> {
        JsonText::new(self.0.try_get(i)?).context("stored params are not JSON")
    }
    fn state(&self, i: usize) -> anyhow::Result<TaskState> {
        Ok(self.0.try_get::<_, &str>(i)?.parse()?)
    }
    fn node(&self) -> anyhow::Result<Option<String>> {
        Ok(Some(self.0.try_get(COLUMN_COUNT)?))
    }
}

/// The task a row of [`COLUMNS`] holds.
pub(super) fn row_to_task(r: &Row) -> anyhow::Result<Task> {
    task_from_row(&PgRow(r))
}

fn state_names(states: &[TaskState]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// One submit in a transaction of its own (a failed batch's retry).
pub(super) async fn insert_one(
    db: &Database,
    secrets: &SecretBox,
    t: NewTask,
) -> anyhow::Result<Task> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    let task = insert_in(&tx, db, secrets, t).await?;
    tx.commit().await?;
    Ok(task)
}

/// Insert one waiting task inside transaction `tx`, announcing it when
/// `tx` commits.
pub(super) async fn insert_in(
    tx: &Transaction<'_>,
    db: &Database,
    secrets: &SecretBox,
    t: NewTask,
) -> anyhow::Result<Task> {
    let node = t.node.clone().unwrap_or_else(|| db.node().to_string());
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO tasks (node, category, state, deletable, username, params, init, name)
                 VALUES ($1, $2, 'waiting', $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &node,
                &t.category,
                &t.deletable,
                &t.user,
                &t.shown_params,
                &t.init,
                &t.name,
            ],
        )
        .await?;
    let task = row_to_task(&row)?;
    if let Some(full) = &t.full_params {
        let sealed = secrets.seal(task.id, full.as_bytes())?;
        tx.execute(
            "INSERT INTO task_secrets (task_id, sealed) VALUES ($1, $2)",
            &[&task.id, &sealed],
        )
        .await?;
    }
    let origin = db.node().to_string();
    let ids = vec![task.id];
    notify(tx, Notice::Submitted { node, ids, origin }).await?;
    Ok(task)
}

/// Claim (see [`TaskStore::claim`]) inside transaction `tx`, announcing
/// the claimed tasks when it commits.
pub(super) async fn claim_in(
    tx: &Transaction<'_>,
    db: &Database,
    secrets: &SecretBox,
    mut req: ClaimRequest,
) -> anyhow::Result<Vec<Claimed>> {
    if req.max == 0 || req.categories.is_empty() {
        return Ok(Vec::new());
    }
    let claim = tx.prepare_cached(&claim_sql()).await?;
    let mut out = Vec::new();
    while out.len() < req.max && req.prune() {
        let step = req.step(out.len());
        let rows = tx
            .query(
                &claim,
                &[
                    &req.now,
                    &db.node(),
                    &req.category_names(),
                    &req.full_users(),
                    &(step as i64),
                ],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let task = row_to_task(row)?;
            req.take(&task);
            let sealed: Option<Vec<u8>> = row.get(AFTER_COLUMNS);
            out.push(Claimed::open(
                task,
                sealed.as_deref(),
                secrets,
                Durable::ready(),
            )?);
        }
        if rows.len() < step {
            break;
        }
    }
    if !out.is_empty() {
        let ids = out.iter().map(|c| c.task.id).collect();
        let origin = db.node().to_string();
        notify(tx, Notice::Changed { ids, origin }).await?;
    }
    Ok(out)
}

/// The claim of up to `$5` waiting tasks of this node (`$2`) in the
/// categories `$3`, none of the users `$4`, at time `$1`; their sealed
/// params joined in.
///
/// The ids are picked into an array first (`= ANY(ARRAY(...))`, not `IN
/// (...)`): the plan PostgreSQL caches for a prepared statement knows
/// nothing of `$5`, and for an `IN` it guessed a tenth of the table and
/// joined it by reading every task (26-40 ms with 200,000 stored, against
/// 1 ms by id).
///
/// The ids are read in `tasks_waiting`'s own order, `(node, id)`, with the
/// node as `= ANY(ARRAY[$2])`: only that index gives this order, so no
/// statistics can turn the claim into a `tasks_pkey` walk filtered on the
/// state. (With `node = $2` PostgreSQL drops the node from the order, and
/// after an `ANALYZE` that saw mostly waiting tasks it walked the primary
/// key, reading past every task already done: 28 ms a claim with 19,000
/// done, against 1 ms. An `= ANY` forms no equivalence, so the order
/// stays.)
fn claim_sql() -> String {
    format!(
        "WITH claimed AS (
             UPDATE tasks SET state = 'running', started = $1, progress = 0, detail_state = ''
              WHERE id = ANY(ARRAY(SELECT id FROM tasks
                                    WHERE state = 'waiting' AND node = ANY(ARRAY[$2])
                                      AND category = ANY($3) AND NOT (username = ANY($4))
                                    ORDER BY node, id LIMIT $5
                                    FOR UPDATE SKIP LOCKED))
             RETURNING {COLUMNS})
         SELECT claimed.*, s.sealed FROM claimed
           LEFT JOIN task_secrets s ON s.task_id = claimed.id
          ORDER BY claimed.id"
    )
}

/// A claim in a transaction of its own (a failed batch's retry).
pub(super) async fn claim_one(
    db: &Database,
    secrets: &SecretBox,
    req: ClaimRequest,
) -> anyhow::Result<Vec<Claimed>> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    let out = claim_in(&tx, db, secrets, req).await?;
    tx.commit().await?;
    Ok(out)
}

/// One end of a run in a transaction of its own (a failed batch's retry).
pub(super) async fn finish_one(
    db: &Database,
    configured: &[Hook],
    f: &Finish,
) -> anyhow::Result<bool> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "UPDATE tasks SET state = $2, result = $3, detail_state = $4, progress = $5, ended = $6
              WHERE id = $1 AND state = 'running'",
            &[
                &f.id,
                &f.state.as_str(),
                &f.result,
                &f.detail,
                &f.progress,
                &f.end,
            ],
        )
        .await?;
    tx.execute("DELETE FROM task_secrets WHERE task_id = $1", &[&f.id])
        .await?;
    if let Some(batch) = &f.log {
        save_logs_in(&tx, std::slice::from_ref(batch)).await?;
    }
    if n == 1 {
        record_ends(&tx, configured, &[f.id], db.node()).await?;
        notify(
            &tx,
            Notice::Changed {
                ids: vec![f.id],
                origin: db.node().to_string(),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

/// Add each batch's lines (of tasks that still exist) and delete the lines
/// it no longer keeps, in `tx`: two statements whatever the number of lines.
pub(super) async fn save_logs_in(tx: &Transaction<'_>, batches: &[LogBatch]) -> anyhow::Result<()> {
    let (mut ids, mut seqs, mut ts, mut levels, mut messages) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for b in batches {
        for (seq, l) in &b.lines {
            ids.push(b.id);
            seqs.push(*seq);
            ts.push(l.ts);
            levels.push(l.level.as_str());
            messages.push(l.message.as_str());
        }
    }
    if !ids.is_empty() {
        cached_execute(
            tx,
            "INSERT INTO task_log (task_id, seq, ts, level, message)
             SELECT u.id, u.seq, u.ts, u.level, u.message
               FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
                    AS u(id, seq, ts, level, message)
              WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = u.id)
             ON CONFLICT DO NOTHING",
            &[&ids, &seqs, &ts, &levels, &messages],
        )
        .await?;
    }
    let (kept_ids, keep_from): (Vec<i64>, Vec<i64>) = batches
        .iter()
        .filter(|b| b.keep_from > 0)
        .map(|b| (b.id, b.keep_from))
        .unzip();
    if !kept_ids.is_empty() {
        cached_execute(
            tx,
            "DELETE FROM task_log l USING unnest($1::bigint[], $2::bigint[]) AS k(id, keep)
              WHERE l.task_id = k.id AND l.seq < k.keep",
            &[&kept_ids, &keep_from],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl TaskStore for PgStore {
    async fn insert(&self, t: NewTask) -> anyhow::Result<Task> {
        self.check_open()?;
        self.batch.insert(t).await
    }

    async fn claim(&self, req: ClaimRequest) -> anyhow::Result<Vec<Claimed>> {
        self.check_open()?;
        if req.max == 0 || req.categories.is_empty() {
            return Ok(Vec::new());
        }
        self.batch.claim(req).await
    }

    async fn save_progress(&self, updates: Vec<ProgressUpdate>) -> anyhow::Result<()> {
        self.check_open()?;
        if updates.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = updates.iter().map(|u| u.id).collect();
        let progress: Vec<i32> = updates.iter().map(|u| u.progress).collect();
        let details: Vec<&str> = updates.iter().map(|u| u.detail.as_str()).collect();
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "UPDATE tasks SET progress = u.progress, detail_state = u.detail
                   FROM unnest($1::bigint[], $2::int[], $3::text[]) AS u(id, progress, detail)
                  WHERE tasks.id = u.id AND tasks.state = 'running'
                 RETURNING tasks.id",
                &[&ids, &progress, &details],
            )
            .await?;
        let changed: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if !changed.is_empty() {
            notify(&tx, self.changed(changed)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish(&self, f: Finish) -> anyhow::Result<bool> {
        self.check_open()?;
        self.batch.finish(f).await
    }

    async fn save_logs(&self, batches: Vec<LogBatch>) -> anyhow::Result<()> {
        self.check_open()?;
        if batches.is_empty() {
            return Ok(());
        }
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        save_logs_in(&tx, &batches).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn log(&self, id: i64) -> anyhow::Result<TaskLog> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, ts, level, message FROM task_log WHERE task_id = $1 ORDER BY seq",
            )
            .await?;
        let rows = client.query(&statement, &[&id]).await?;
        let truncated = rows.first().is_some_and(|r| r.get::<_, i64>(0) > 0);
        let lines = rows
            .iter()
            .map(|r| LogLine {
                ts: r.get(1),
                level: LogLevel::parse(r.get(2)),
                message: r.get(3),
            })
            .collect();
        Ok(TaskLog { lines, truncated })
    }

    async fn interrupt_running(&self, end: Interruption) -> anyhow::Result<Vec<i64>> {
        self.ending(&end, "node = $4", &[&self.db.node()]).await
    }

    async fn delete_if(&self, id: i64, states: &[TaskState]) -> anyhow::Result<bool> {
        self.check_open()?;
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM tasks WHERE id = $1 AND state = ANY($2)",
                &[&id, &state_names(states)],
            )
            .await?;
        if n == 1 {
            notify(&tx, self.changed(vec![id])).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn delete_finished(
        &self,
        owner: Owner<'_>,
        category: Option<&str>,
    ) -> anyhow::Result<Vec<Task>> {
        self.check_open()?;
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u),
        };
        self.deleting(
            &format!(
                "DELETE FROM tasks WHERE state IN ('completed', 'error')
                    AND ($1::text IS NULL OR username = $1) AND ($2::text IS NULL OR category = $2)
                 RETURNING {COLUMNS}"
            ),
            &[&user, &category],
        )
        .await
    }

    async fn get(&self, id: i64) -> anyhow::Result<Option<Task>> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"))
            .await?;
        let row = client.query_opt(&statement, &[&id]).await?;
        row.as_ref().map(row_to_task).transpose()
    }

    async fn get_many(&self, ids: &[i64]) -> anyhow::Result<Vec<Task>> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE id = ANY($1) ORDER BY id"
            ))
            .await?;
        let rows = client.query(&statement, &[&ids]).await?;
        rows.iter().map(row_to_task).collect()
    }

    async fn list(&self, owner: Owner<'_>, category: Option<&str>) -> anyhow::Result<Vec<Task>> {
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u),
        };
        let client = self.db.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM tasks
                      WHERE ($1::text IS NULL OR username = $1) AND ($2::text IS NULL OR category = $2)
                      ORDER BY id DESC"
                ),
                &[&user, &category],
            )
            .await?;
        rows.iter().map(row_to_task).collect()
    }

    async fn waiting_of(&self, user: &str) -> anyhow::Result<usize> {
        let client = self.db.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM tasks WHERE username = $1 AND state = 'waiting'",
                &[&user],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as usize)
    }

    async fn counts(&self) -> anyhow::Result<Vec<StateCount>> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT category, state, count(*), min(init) FROM tasks GROUP BY category, state ORDER BY category, state",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StateCount {
                    category: r.get(0),
                    state: r.get::<_, &str>(1).parse()?,
                    count: r.get::<_, i64>(2) as u64,
                    oldest_init: r.get(3),
                })
            })
            .collect()
    }

    fn schedules(&self) -> Option<&dyn crate::store::ScheduleStore> {
        Some(self)
    }

    fn webhooks(&self) -> Option<&dyn crate::store::WebhookStore> {
        Some(self)
    }

    async fn close(&self) -> anyhow::Result<()> {
        self.closed.store(true, Ordering::Release);
        // Writes already queued for a batch still commit.
        self.batch.flush().await
    }

    fn node(&self) -> Option<&str> {
        Some(self.db.node())
    }

    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        Some(self.db.notices())
    }

    async fn heartbeat(&self) -> anyhow::Result<Vec<i64>> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        // The lock orders this against a reaper marking the node: either
        // the reaper sees the fresh heartbeat, or this sees its mark.
        let marked = tx
            .query_opt(
                "SELECT marked_silent FROM nodes WHERE name = $1 FOR UPDATE",
                &[&self.db.node()],
            )
            .await?
            .is_some_and(|r| r.get::<_, bool>(0));
        tx.execute(
            "INSERT INTO nodes (name) VALUES ($1)
             ON CONFLICT (name) DO UPDATE SET heartbeat = now(), marked_silent = false",
            &[&self.db.node()],
        )
        .await?;
        let mut ids = Vec::new();
        if marked {
            ids = tx
                .query(
                    "UPDATE tasks SET detail_state = ''
                      WHERE node = $1 AND state = 'waiting' AND detail_state <> ''
                     RETURNING id",
                    &[&self.db.node()],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            ids.sort_unstable();
            if !ids.is_empty() {
                notify(&tx, self.changed(ids.clone())).await?;
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn mark_silent_waiting(&self, lease: Duration) -> anyhow::Result<Vec<i64>> {
        self.check_open()?;
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        // Each silent node is marked once, so a long backlog of a dead node
        // is written once, not at every check.
        let mut ids: Vec<i64> = tx
            .query(
                "WITH silent AS (
                     UPDATE nodes SET marked_silent = true
                      WHERE heartbeat <= now() - make_interval(secs => $1)
                        AND name <> $2 AND NOT marked_silent
                     RETURNING name, heartbeat)
                 UPDATE tasks t
                    SET detail_state = 'waiting: node `' || s.name
                        || '` has not been seen since '
                        || to_char(s.heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                        || ' UTC'
                   FROM silent s
                  WHERE t.node = s.name AND t.state = 'waiting'
                 RETURNING t.id",
                &[&lease.as_secs_f64(), &self.db.node()],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        ids.sort_unstable();
        if !ids.is_empty() {
            notify(&tx, self.changed(ids.clone())).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn node_alive(&self, node: &str, lease: Duration) -> anyhow::Result<bool> {
        let row = self
            .db
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM nodes WHERE name = $1
                    AND heartbeat > now() - make_interval(secs => $2)",
                &[&node, &lease.as_secs_f64()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn reap_silent_nodes(
        &self,
        lease: Duration,
        end: Interruption,
    ) -> anyhow::Result<Vec<i64>> {
        self.ending(
            &end,
            "node IN (SELECT name FROM nodes
                       WHERE heartbeat <= now() - make_interval(secs => $4) AND name <> $5)",
            &[&lease.as_secs_f64(), &self.db.node()],
        )
        .await
    }

    async fn request_cancel(&self, node: &str, id: i64) -> anyhow::Result<()> {
        let notice = Notice::Cancel {
            node: node.to_string(),
            id,
        };
        self.db
            .client()
            .await?
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice.payload()])
            .await
            .map_err(|e| anyhow!("asking node `{node}` to cancel task {id}: {e}"))?;
        Ok(())
    }

    // ---- flat costs as tasks pile up: pages and retention ----

    async fn list_page(&self, filter: TaskFilter<'_>, page: Page) -> anyhow::Result<Vec<Task>> {
        let (sql, values) = page_sql(filter);
        let before = page.before.unwrap_or(i64::MAX);
        let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
        let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&before, &limit];
        args.extend(
            values
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)),
        );
        let client = self.db.client().await?;
        let st = client.prepare_cached(&sql).await?;
        let rows = client.query(&st, &args).await?;
        rows.iter().map(row_to_task).collect()
    }

    async fn delete_ended_before(
        &self,
        ended_before: i64,
        max: usize,
    ) -> anyhow::Result<Vec<Task>> {
        self.check_open()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        // SKIP LOCKED: nodes sweeping at the same time take different rows
        // instead of waiting on each other (or on a `DELETE` in progress).
        // `= ANY(ARRAY(...))`, not `IN (...)`: the batch's ids are looked up
        // by primary key; with `IN` the planner hash-joined them against a
        // scan of the whole table (11 ms of 20 at 100,000 tasks).
        self.deleting(
            &format!(
                "DELETE FROM tasks WHERE id = ANY(ARRAY(
                    SELECT id FROM tasks WHERE ended < $1 AND state IN ('completed', 'error')
                     ORDER BY ended LIMIT $2 FOR UPDATE SKIP LOCKED))
                 RETURNING {COLUMNS}"
            ),
            &[&ended_before, &max],
        )
        .await
    }
}

/// The statement of [`TaskStore::list_page`] and its filter values: `$1`
/// before, `$2` limit, then one parameter per filter given (user, category,
/// node, in that order). The text depends on the filters given, so each
/// shape gets its own plan: `tasks_user` for a user's tasks, else
/// `tasks_pkey` backwards, both in id order, stopping after `limit` rows.
fn page_sql(filter: TaskFilter<'_>) -> (String, Vec<&str>) {
    let user = match filter.owner {
        Owner::Anyone => None,
        Owner::User(u) => Some(u),
    };
    let mut filters = vec!["id < $1".to_string()];
    let mut values = Vec::new();
    for (column, value) in [
        ("username", user),
        ("category", filter.category),
        ("node", filter.node),
    ] {
        if let Some(v) = value {
            values.push(v);
            filters.push(format!("{column} = ${}", values.len() + 2));
        }
    }
    (
        format!(
            "SELECT {COLUMNS} FROM tasks WHERE {} ORDER BY id DESC LIMIT $2",
            filters.join(" AND ")
        ),
        values,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan PostgreSQL picks for `sql` with `args`, as text.
    async fn plan(
        client: &tokio_postgres::Client,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> String {
        let rows = client
            .query(&format!("EXPLAIN (COSTS OFF) {sql}"), args)
            .await
            .unwrap();
        let lines: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        lines.join("\n")
    }

    /// On a loaded, analysed table (100,000 finished tasks, a category of
    /// 100 among them, and waiting tasks): a page of one category reads
    /// `tasks_category`, and the claim never scans the table, with few
    /// tasks waiting, with a long backlog, and in the generic plan
    /// PostgreSQL may cache for it.
    #[tokio::test]
    async fn pages_and_claims_read_indexes() {
        let url = super::super::testing::fresh_database("plans")
            .await
            .unwrap();
        let db = Database::connect(&url, "a").await.unwrap();
        let client = db.client().await.unwrap();
        let load = |state: &str, from: i64, count: i64| {
            format!(
                "INSERT INTO tasks (node, category, state, deletable, username, params, init)
                 SELECT 'a', CASE WHEN g % 1000 = 0 THEN 'rare' ELSE 'cat' || (g % 7) END,
                        '{state}', true, 'u' || (g % 5), '{{}}', g
                   FROM generate_series({from}, {}) g;
                 ANALYZE tasks;",
                from + count - 1
            )
        };
        client
            .batch_execute(&load("completed", 1, 100_000))
            .await
            .unwrap();
        client
            .batch_execute(&load("waiting", 100_001, 500))
            .await
            .unwrap();

        let (page, values) = page_sql(TaskFilter {
            owner: Owner::Anyone,
            category: Some("rare"),
            node: None,
        });
        assert_eq!(values, ["rare"]);
        let p = plan(&client, &page, &[&i64::MAX, &100i64, &"rare"]).await;
        assert!(p.contains("tasks_category"), "{page}\n{p}");
        assert!(!p.contains("Seq Scan on tasks"), "{page}\n{p}");

        let claim = claim_sql();
        let none: Vec<String> = Vec::new();
        let common = vec!["cat1".to_string(), "cat2".to_string()];
        let rare = vec!["rare".to_string()];
        let p = plan(&client, &claim, &[&1i64, &"a", &common, &none, &8i64]).await;
        assert!(
            p.contains("tasks_waiting"),
            "few waiting, common categories:\n{p}"
        );
        assert!(
            !p.contains("Seq Scan on tasks"),
            "few waiting, common categories:\n{p}"
        );
        let p = plan(&client, &claim, &[&1i64, &"a", &rare, &none, &8i64]).await;
        assert!(
            !p.contains("Seq Scan on tasks"),
            "few waiting, a rare category:\n{p}"
        );

        client
            .batch_execute(&load("waiting", 200_001, 100_000))
            .await
            .unwrap();
        for categories in [&common, &rare] {
            let p = plan(&client, &claim, &[&1i64, &"a", categories, &none, &8i64]).await;
            assert!(
                !p.contains("Seq Scan on tasks"),
                "a backlog, {categories:?}:\n{p}"
            );
        }
        // The plan PostgreSQL may cache for the prepared claim knows no
        // parameter (not even the LIMIT): it still reads the claimed rows by
        // id, not every task to join them.
        client
            .batch_execute(&format!(
                "SET plan_cache_mode = force_generic_plan;
                 PREPARE claim (bigint, text, text[], text[], bigint) AS {claim}"
            ))
            .await
            .unwrap();
        let p = plan(
            &client,
            "EXECUTE claim (1, 'a', ARRAY['cat1', 'cat2'], ARRAY[]::text[], 8)",
            &[],
        )
        .await;
        assert!(p.contains("ARRAY[$2]"), "not a generic plan:\n{p}");
        assert!(
            !p.contains("Seq Scan on tasks"),
            "a backlog, generic plan:\n{p}"
        );
    }

    /// Every plan node of an `EXPLAIN (FORMAT JSON)` answer, depth first.
    fn plan_nodes(plan: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        out.push(plan.clone());
        for child in plan["Plans"].as_array().into_iter().flatten() {
            plan_nodes(child, out);
        }
    }

    /// After an `ANALYZE` that saw 0, 20,000 or 200,000 waiting tasks after
    /// 10,000 done (20,000 and up: the start of a drain, when the
    /// statistics say nearly every task waits), the claim still reads
    /// `tasks_waiting`: never `tasks_pkey` filtered on the state (which
    /// reads past every task done since), nor the whole table. (The done
    /// tasks are there because an empty table's plan reads nothing whatever
    /// it is, and PostgreSQL plans by the table's size at each claim.)
    #[tokio::test]
    async fn the_claim_reads_the_waiting_index_after_analyze() {
        let url = super::super::testing::fresh_database("analyze")
            .await
            .unwrap();
        let db = Database::connect(&url, "a").await.unwrap();
        let client = db.client().await.unwrap();
        client
            .batch_execute(&format!(
                "PREPARE claim (bigint, text, text[], text[], bigint) AS {}",
                claim_sql()
            ))
            .await
            .unwrap();
        for waiting in [0, 20_000, 200_000] {
            client
                .batch_execute(&format!(
                    "TRUNCATE tasks CASCADE;
                     INSERT INTO tasks (node, category, state, deletable, username, params, init)
                     SELECT 'a', 'noop', CASE WHEN g <= 10000 THEN 'completed' ELSE 'waiting' END,
                            true, 'admin', '{{}}', g
                       FROM generate_series(1, 10000 + {waiting}) g;
                     ANALYZE tasks;"
                ))
                .await
                .unwrap();
            // The text protocol: the answer is JSON text (the driver reads
            // no `json` type), and the EXECUTE gets a plan for its values.
            let answer = client
                .simple_query(
                    "EXPLAIN (FORMAT JSON)
                     EXECUTE claim (1, 'a', ARRAY['noop'], ARRAY[]::text[], 8)",
                )
                .await
                .unwrap();
            let text = answer
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .expect("an EXPLAIN answer");
            let explained: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut nodes = Vec::new();
            plan_nodes(&explained[0]["Plan"], &mut nodes);
            let on_tasks: Vec<&serde_json::Value> = nodes
                .iter()
                .filter(|n| n["Relation Name"] == "tasks")
                .collect();
            let shown = serde_json::to_string_pretty(&explained).unwrap();
            assert!(
                on_tasks.iter().any(|n| n["Index Name"] == "tasks_waiting"),
                "{waiting} waiting: the claim does not read tasks_waiting\n{shown}"
            );
            for n in &on_tasks {
                assert_ne!(
                    n["Node Type"], "Seq Scan",
                    "{waiting} waiting: the claim reads the whole table\n{shown}"
                );
                if n["Index Name"] == "tasks_pkey" {
                    // Only the update's look-up of the picked ids.
                    assert!(
                        n["Filter"].is_null() && n["Index Cond"].is_string(),
                        "{waiting} waiting: the claim walks tasks_pkey\n{shown}"
                    );
                }
            }
        }
    }
}
