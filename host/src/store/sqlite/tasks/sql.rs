//! The statements of the SQLite task store: each write the writer applies
//! and each read, and how a row becomes a task.

use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::schema::Ids;
use super::webhooks::record_ends;
use crate::store::durable::Durable;
use crate::store::secret::SecretBox;
use crate::store::task_log::{LogBatch, LogLevel, LogLine, TaskLog};
use crate::store::tasks::model::{JsonText, Task, TaskState};
use crate::store::tasks::row::{row_columns, task_from_row, TaskRow, COLUMNS};
use crate::store::tasks::{
    ClaimRequest, Claimed, Finish, Interruption, NewTask, Page, ProgressUpdate,
};
use crate::store::webhooks::Hook;

/// A task row of SQLite, read as [`crate::store::tasks::row`] maps it.
pub(super) struct SqliteRow<'a, 'r>(&'a Row<'r>);

impl TaskRow for SqliteRow<'_, '_> {
    type Error = rusqlite::Error;
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.0.get(i)
    }
    fn int32(&self, i: usize) -> rusqlite::Result<i32> {
        self.0.get(i)
    }
    fn maybe_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.0.get(i)
    }
    fn flag(&self, i: usize) -> rusqlite::Result<bool> {
        self.0.get(i)
    }
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.0.get(i)
    }
    fn json(&self, i: usize) -> rusqlite::Result<JsonText> {
        self.0.get(i)
    }
    fn state(&self, i: usize) -> rusqlite::Result<TaskState> {
        parse_state(self.0, i)
    }
    fn node(&self) -> rusqlite::Result<Option<String>> {
        Ok(None)
    }
}

/// The [`TaskState`] in column `i`.
pub(super) fn parse_state(r: &Row<'_>, i: usize) -> rusqlite::Result<TaskState> {
    r.get_ref(i)?.as_str()?.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn row_to_task(r: &Row<'_>) -> rusqlite::Result<Task> {
    task_from_row(&SqliteRow(r))
}

pub(super) fn states_json(states: &[TaskState]) -> String {
    serde_json::to_string(&states.iter().map(|s| s.as_str()).collect::<Vec<_>>()).unwrap()
}

/// Store a new task.
pub(super) const INSERT_SQL: &str = "INSERT INTO tasks (id, category, state, detail_state, progress, result, deletable, username, params, init, name)
     VALUES (?7, ?1, 'waiting', '', 0, 0, ?2, ?3, ?4, ?5, ?6)";

/// End a running task.
pub(super) const FINISH_SQL: &str =
    "UPDATE tasks SET state = ?2, result = ?3, detail_state = ?4, progress = ?5, ended = ?6
     WHERE id = ?1 AND state = 'running'";

/// Store `t`: one statement, two when it has sealed params (run those in a
/// savepoint). Nothing can fail after the first statement but the second.
pub(super) fn insert(
    conn: &Connection,
    secrets: &SecretBox,
    ids: &mut Ids,
    t: NewTask,
) -> anyhow::Result<Task> {
    let params = JsonText::new(t.shown_params).context("the shown params are not JSON")?;
    let id = ids.next;
    let mut st = conn.prepare_cached(INSERT_SQL)?;
    st.execute(params![
        t.category,
        t.deletable,
        t.user,
        params.get(),
        t.init,
        t.name,
        id
    ])?;
    // Given even if the transaction is later undone: a gap, never a repeat.
    ids.next += 1;
    if let Some(full) = &t.full_params {
        let sealed = secrets.seal(id, full.as_bytes())?;
        conn.prepare_cached("INSERT INTO task_secrets (task_id, sealed) VALUES (?1, ?2)")?
            .execute(params![id, sealed])?;
    }
    Ok(Task {
        id,
        category: t.category,
        state: TaskState::Waiting,
        detail_state: String::new(),
        progress: 0,
        result: None,
        deletable: t.deletable,
        user: t.user,
        name: t.name,
        params,
        init: t.init,
        start: None,
        end: None,
        node: None,
    })
}

/// Claim the oldest waiting tasks the request admits.
///
/// The waiting tasks are read in id order from `tasks_waiting` and admitted
/// one by one in Rust ([`ClaimRequest::admits`]), then each is moved to
/// `running` by its id. One statement that filtered by category and user
/// (two `json_each` lists) and returned the rows (`RETURNING`) cost about
/// four times as much: SQLite builds a temporary b-tree for each list and
/// for the returned rows on every execution, and claims mostly take one or
/// two tasks (one per slot freed).
pub(super) fn claim(
    conn: &Connection,
    secrets: &SecretBox,
    mut req: ClaimRequest,
    durable: &Durable,
) -> anyhow::Result<Vec<Claimed>> {
    let mut chosen = Vec::new();
    {
        let mut waiting = conn.prepare_cached(WAITING_SQL)?;
        let mut rows = waiting.query([])?;
        while chosen.len() < req.max && req.prune() {
            let Some(row) = rows.next()? else { break };
            let admitted = req.admits(
                row.get_ref(CATEGORY_COLUMN)?.as_str()?,
                row.get_ref(USER_COLUMN)?.as_str()?,
            );
            if admitted {
                let task = row_to_task(row)?;
                req.take(&task);
                chosen.push(task);
            }
        }
    }
    let mut start = conn.prepare_cached(START_SQL)?;
    // A run has its params in memory from now on, and a run that is
    // interrupted never runs again: the sealed copy goes with the claim (and
    // comes back with it if the claim is rolled back).
    let mut sealed_st =
        conn.prepare_cached("SELECT sealed FROM task_secrets WHERE task_id = ?1")?;
    let mut unseal = conn.prepare_cached("DELETE FROM task_secrets WHERE task_id = ?1")?;
    let mut out = Vec::with_capacity(chosen.len());
    for mut task in chosen {
        if start.execute(params![task.id, req.now])? != 1 {
            bail!("task {} was read waiting and is not", task.id);
        }
        task.state = TaskState::Running;
        task.start = Some(req.now);
        task.progress = 0;
        task.detail_state.clear();
        let sealed: Option<Vec<u8>> = sealed_st.query_row([task.id], |r| r.get(0)).optional()?;
        if sealed.is_some() {
            unseal.execute([task.id])?;
        }
        out.push(Claimed::open(
            task,
            sealed.as_deref(),
            secrets,
            durable.clone(),
        )?);
    }
    Ok(out)
}

/// The waiting tasks, oldest first. It must read `tasks_waiting` in id
/// order (the claim stops reading once it has what it may take): no other
/// index, no sort, so a claim does not cost more with every task stored.
pub(super) const WAITING_SQL: &str = concat!(
    "SELECT ",
    row_columns!(),
    "\n       FROM tasks WHERE state = 'waiting' ORDER BY id"
);

/// Positions of `category` and `username` in [`WAITING_SQL`] (as in [`COLUMNS`]).
pub(super) const CATEGORY_COLUMN: usize = 1;
pub(super) const USER_COLUMN: usize = 7;

/// Move one claimed task to `running`.
pub(super) const START_SQL: &str =
    "UPDATE tasks SET state = 'running', started = ?2, progress = 0, detail_state = ''
     WHERE id = ?1 AND state = 'waiting'";

pub(super) fn save_progress(conn: &Connection, updates: &[ProgressUpdate]) -> anyhow::Result<()> {
    let mut st = conn.prepare_cached(
        "UPDATE tasks SET progress = ?2, detail_state = ?3 WHERE id = ?1 AND state = 'running'",
    )?;
    for u in updates {
        st.execute(params![u.id, u.progress, u.detail])?;
    }
    Ok(())
}

/// Record the end of a run, the deliveries of its webhooks (`configured`
/// and stored) and its last log lines when it has some. Run it in a
/// savepoint: two statements or more.
pub(super) fn finish(conn: &Connection, configured: &[Hook], f: &Finish) -> anyhow::Result<bool> {
    let n = conn.prepare_cached(FINISH_SQL)?.execute(params![
        f.id,
        f.state.as_str(),
        f.result,
        f.detail,
        f.progress,
        f.end
    ])?;
    if n == 1 {
        record_ends(conn, configured, &[f.id])?;
    }
    if let Some(batch) = &f.log {
        save_logs(conn, std::slice::from_ref(batch))?;
    }
    Ok(n == 1)
}

/// Add each batch's lines (of tasks that still exist) and delete the lines
/// it no longer keeps.
pub(super) fn save_logs(conn: &Connection, batches: &[LogBatch]) -> anyhow::Result<()> {
    let mut exists = conn.prepare_cached("SELECT 1 FROM tasks WHERE id = ?1")?;
    let mut add = conn.prepare_cached(
        "INSERT OR IGNORE INTO task_log (task_id, seq, ts, level, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut drop_old =
        conn.prepare_cached("DELETE FROM task_log WHERE task_id = ?1 AND seq < ?2")?;
    for b in batches {
        if !exists.exists([b.id])? {
            continue;
        }
        for (seq, l) in &b.lines {
            add.execute(params![b.id, seq, l.ts, l.level.as_str(), l.message])?;
        }
        if b.keep_from > 0 {
            drop_old.execute(params![b.id, b.keep_from])?;
        }
    }
    Ok(())
}

/// The stored log of task `id`.
pub(super) fn read_log(conn: &Connection, id: i64) -> anyhow::Result<TaskLog> {
    let mut st = conn.prepare_cached(
        "SELECT seq, ts, level, message FROM task_log WHERE task_id = ?1 ORDER BY seq",
    )?;
    let mut first = None;
    let lines = st
        .query_map([id], |r| {
            let seq: i64 = r.get(0)?;
            Ok((
                seq,
                LogLine {
                    ts: r.get(1)?,
                    level: LogLevel::parse(r.get_ref(2)?.as_str()?),
                    message: r.get(3)?,
                },
            ))
        })?
        .map(|r| {
            r.map(|(seq, line)| {
                first.get_or_insert(seq);
                line
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TaskLog {
        lines,
        truncated: first.is_some_and(|f| f > 0),
    })
}

/// End every running task as `end` says, with the deliveries of its
/// webhooks (`configured` and stored). Run it in a savepoint.
pub(super) fn interrupt_running(
    conn: &Connection,
    configured: &[Hook],
    end: &Interruption,
) -> anyhow::Result<Vec<i64>> {
    let mut st = conn.prepare_cached(
        "UPDATE tasks SET state = 'error', result = ?1, detail_state = ?2, ended = ?3
          WHERE state = 'running' RETURNING id",
    )?;
    let mut ids = st
        .query_map(params![end.result, end.detail, end.now], |r| {
            r.get::<_, i64>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    let mut del = conn.prepare_cached("DELETE FROM task_secrets WHERE task_id = ?1")?;
    for id in &ids {
        del.execute([id])?;
    }
    record_ends(conn, configured, &ids)?;
    Ok(ids)
}

pub(super) fn delete_if(conn: &Connection, id: i64, states: &[TaskState]) -> anyhow::Result<bool> {
    let n = conn
        .prepare_cached(
            "DELETE FROM tasks WHERE id = ?1 AND state IN (SELECT value FROM json_each(?2))",
        )?
        .execute(params![id, states_json(states)])?;
    Ok(n == 1)
}

pub(super) fn delete_finished(
    conn: &Connection,
    user: Option<&str>,
    category: Option<&str>,
) -> anyhow::Result<Vec<Task>> {
    let mut st = conn.prepare_cached(DELETE_FINISHED_SQL)?;
    let mut gone = st
        .query_map(params![user, category], row_to_task)?
        .collect::<Result<Vec<_>, _>>()?;
    gone.sort_unstable_by_key(|t| t.id);
    Ok(gone)
}

pub(super) const DELETE_FINISHED_SQL: &str = concat!(
    "DELETE FROM tasks WHERE state IN ('completed', 'error')
        AND (?1 IS NULL OR username = ?1) AND (?2 IS NULL OR category = ?2)
     RETURNING ",
    row_columns!()
);

/// Retention: one batch of at most `max` finished tasks ended before
/// `ended_before`, oldest end first (the `tasks_ended` index, no sort).
pub(super) fn delete_ended_before(
    conn: &Connection,
    ended_before: i64,
    max: usize,
) -> anyhow::Result<Vec<Task>> {
    let mut st = conn.prepare_cached(DELETE_ENDED_SQL)?;
    let mut gone = st
        .query_map(params![ended_before, max as i64], row_to_task)?
        .collect::<Result<Vec<_>, _>>()?;
    gone.sort_unstable_by_key(|t| t.id);
    Ok(gone)
}

pub(super) const DELETE_ENDED_SQL: &str = concat!(
    "DELETE FROM tasks WHERE id IN
    (SELECT id FROM tasks WHERE ended < ?1 AND state IN ('completed', 'error')
      ORDER BY ended LIMIT ?2)
 RETURNING ",
    row_columns!()
);

/// The statement of a listing and its arguments: newest first, as Container
/// Station lists. The text depends on the filters given, so each shape is
/// its own cached statement and reads its index: the primary key, or
/// `tasks_user` / `tasks_category` (`(…, id)`: already in id order, and a
/// page stops after `limit` rows).
pub(super) fn list_sql(
    user: Option<&str>,
    category: Option<&str>,
    page: Option<Page>,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut filters = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(u) = user {
        args.push(Value::Text(u.to_string()));
        filters.push(format!("username = ?{}", args.len()));
    }
    if let Some(c) = category {
        args.push(Value::Text(c.to_string()));
        filters.push(format!("category = ?{}", args.len()));
    }
    if let Some(before) = page.and_then(|p| p.before) {
        args.push(Value::Integer(before));
        filters.push(format!("id < ?{}", args.len()));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let limit = match page {
        Some(p) => {
            args.push(Value::Integer(i64::try_from(p.limit).unwrap_or(i64::MAX)));
            format!(" LIMIT ?{}", args.len())
        }
        None => String::new(),
    };
    (
        format!("SELECT {COLUMNS} FROM tasks {filter} ORDER BY id DESC{limit}"),
        args,
    )
}

pub(super) fn list(
    conn: &Connection,
    user: Option<&str>,
    category: Option<&str>,
    page: Option<Page>,
) -> anyhow::Result<Vec<Task>> {
    let (sql, args) = list_sql(user, category, page);
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st
        .query_map(rusqlite::params_from_iter(args), row_to_task)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
