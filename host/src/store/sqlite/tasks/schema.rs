//! The schema of the SQLite task store: its migrations, applied in order
//! at open, and the ids the writer gives.

use anyhow::{bail, Context};
use rusqlite::{params, Connection};

use crate::store::tasks::model::task_name;

/// The columns of `tasks` from `detail_state` to `ended`, the same in every
/// version of the table (macros, so that each migration stays one constant
/// text).
macro_rules! run_columns {
    () => {
        r#"detail_state TEXT    NOT NULL DEFAULT '',
        progress     INTEGER NOT NULL DEFAULT 0,
        result       INTEGER NOT NULL DEFAULT 0,
        deletable    INTEGER NOT NULL,
        username     TEXT    NOT NULL,
        params       TEXT    NOT NULL,
        init         INTEGER NOT NULL,
        started      INTEGER,
        ended        INTEGER"#
    };
}

/// The columns of `tasks` after `id`, as migrations 4 and 5 rebuild it.
macro_rules! task_columns {
    () => {
        concat!(
            r#"
        category     TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state = 'waiting' OR state = 'running'
                                             OR state = 'completed' OR state = 'error'),
        "#,
            run_columns!(),
            r#",
        name         TEXT    NOT NULL DEFAULT ''
    );"#
        )
    };
}

/// Copy every row of `tasks` into the rebuilt table.
macro_rules! copy_tasks_into {
    ($table:literal) => {
        concat!(
            "\n    INSERT INTO ",
            $table,
            r#" (id, category, state, detail_state, progress, result, deletable,
                          username, params, init, started, ended, name)
         SELECT id, category, state, detail_state, progress, result, deletable,
                username, params, init, started, ended, name
           FROM tasks;"#
        )
    };
}

/// The indexes of `tasks`, made again after a rebuild.
macro_rules! task_indexes {
    () => {
        r#"
    CREATE INDEX tasks_waiting ON tasks (id) WHERE state = 'waiting';
    CREATE INDEX tasks_running ON tasks (id) WHERE state = 'running';
    CREATE INDEX tasks_user ON tasks (username, id);
    CREATE INDEX tasks_category ON tasks (category, id);
    CREATE INDEX tasks_ended ON tasks (ended) WHERE ended IS NOT NULL;
    "#
    };
}

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
/// Append new ones; never edit a released one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tasks and their sealed full params.
    concat!(
        r#"
    CREATE TABLE tasks (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        category     TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('waiting', 'running', 'completed', 'error')),
        "#,
        run_columns!(),
        r#"
    );
    CREATE INDEX tasks_waiting ON tasks (id) WHERE state = 'waiting';
    CREATE INDEX tasks_running ON tasks (id) WHERE state = 'running';
    CREATE INDEX tasks_user ON tasks (username, id);
    CREATE TABLE task_secrets (
        task_id INTEGER PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
        sealed  BLOB    NOT NULL
    );
    "#
    ),
    // 2: what each task is about (`name`); filled for older rows by
    // `backfill_names` in the same transaction.
    r#"
    ALTER TABLE tasks ADD COLUMN name TEXT NOT NULL DEFAULT '';
    "#,
    // 3: costs that stay flat as tasks pile up: a page of one category
    // (`list_page`), and the finished tasks by end (retention). Only
    // finished tasks have an `ended`, so submits do not touch the second.
    r#"
    CREATE INDEX tasks_category ON tasks (category, id);
    CREATE INDEX tasks_ended ON tasks (ended) WHERE ended IS NOT NULL;
    "#,
    // 4: the same table, with the state check written as comparisons.
    // SQLite evaluates a CHECK of `state IN (four values)` by building a
    // temporary b-tree of the four values on every INSERT and every UPDATE
    // of a task (an IN list of more than two constants is looked up in an
    // index built on the spot): that was a quarter of each write's cost.
    // A CHECK cannot be altered in place, so the table is rebuilt (SQLite's
    // documented procedure; foreign keys are off while migrations run, so
    // dropping the old table keeps every sealed param). The id sequence
    // keeps its high-water mark: an id given once is never given again.
    concat!(
        r#"
    CREATE TABLE tasks_v4 (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,"#,
        task_columns!(),
        copy_tasks_into!("tasks_v4"),
        r#"
    DELETE FROM sqlite_sequence WHERE name = 'tasks_v4';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'tasks_v4', seq FROM sqlite_sequence WHERE name = 'tasks';
    DROP TABLE tasks;
    ALTER TABLE tasks_v4 RENAME TO tasks;"#,
        task_indexes!()
    ),
    // 5: ids given by the writer instead of AUTOINCREMENT, which updated
    // `sqlite_sequence` on every insert (about 2,700 of an insert's 22,000
    // instructions, and one more page in every commit). Ids still are never
    // given twice: the highest id given is kept in `task_ids` before any
    // delete (the only way the highest row can go), and the writer starts
    // after the higher of it and the highest row. The table is rebuilt as
    // for migration 4.
    concat!(
        r#"
    CREATE TABLE tasks_v5 (
        id           INTEGER PRIMARY KEY,"#,
        task_columns!(),
        copy_tasks_into!("tasks_v5"),
        r#"
    CREATE TABLE task_ids (
        one   INTEGER PRIMARY KEY CHECK (one = 1),
        given INTEGER NOT NULL
    );
    INSERT INTO task_ids (one, given)
         SELECT 1, max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0),
                       coalesce((SELECT max(id) FROM tasks), 0));
    DROP TABLE tasks;
    ALTER TABLE tasks_v5 RENAME TO tasks;"#,
        task_indexes!()
    ),
    // 6: each task's log lines (`store::task_log`), numbered from 0 per
    // task, deleted with their task. A rebuild of `tasks` must keep them
    // (foreign keys are off while migrations run).
    r#"
    CREATE TABLE task_log (
        task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,
        ts      INTEGER NOT NULL,
        level   TEXT    NOT NULL,
        message TEXT    NOT NULL,
        PRIMARY KEY (task_id, seq)
    ) WITHOUT ROWID;
    "#,
    // 7: scheduled tasks, beside the tasks they submit so that a firing and
    // its task commit together. The full params are sealed in the row
    // (bound to the schedule's id), only when something was masked.
    r#"
    CREATE TABLE schedules (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        owner      TEXT    NOT NULL,
        name       TEXT    NOT NULL,
        category   TEXT    NOT NULL,
        params     TEXT    NOT NULL,
        sealed     BLOB,
        cron       TEXT    NOT NULL,
        timezone   TEXT    NOT NULL,
        paused     INTEGER NOT NULL DEFAULT 0,
        next_run   INTEGER NOT NULL,
        last_run   INTEGER,
        last_task  INTEGER,
        last_error TEXT,
        created    INTEGER NOT NULL
    );
    CREATE INDEX schedules_owner ON schedules (owner, id);
    CREATE INDEX schedules_next ON schedules (next_run) WHERE paused = 0;
    "#,
    // 8: webhooks (`store::webhooks`), their secret sealed in the row
    // (bound to the webhook's id), and the outbox of their deliveries: one
    // row per webhook and event id, claimed by one sender at a time.
    // A configured webhook's deliveries have a negative `webhook`.
    r#"
    CREATE TABLE webhooks (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        owner      TEXT    NOT NULL,
        all_users  INTEGER NOT NULL DEFAULT 0,
        url        TEXT    NOT NULL,
        events     TEXT    NOT NULL,
        categories TEXT,
        sealed     BLOB    NOT NULL,
        created    INTEGER NOT NULL
    );
    CREATE INDEX webhooks_owner ON webhooks (owner, id);
    CREATE TABLE webhook_deliveries (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook       INTEGER NOT NULL,
        event_id      TEXT    NOT NULL,
        event         TEXT    NOT NULL,
        body          TEXT    NOT NULL,
        status        TEXT    NOT NULL DEFAULT 'pending',
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_code     INTEGER,
        last_error    TEXT,
        next_attempt  INTEGER,
        claimed_by    TEXT,
        claimed_until INTEGER,
        created       INTEGER NOT NULL,
        delivered     INTEGER,
        UNIQUE (webhook, event_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_of ON webhook_deliveries (webhook, id);
    "#,
];

/// The ids the writer gives: increasing, never the same twice, even after
/// the newest tasks are deleted and the store is opened again.
pub(super) struct Ids {
    /// The id of the next task stored.
    pub(super) next: i64,
}

impl Ids {
    /// After every id given so far (kept in `task_ids`) and every row.
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<Ids> {
        let given: i64 = conn.query_row(
            "SELECT max((SELECT given FROM task_ids), coalesce((SELECT max(id) FROM tasks), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(Ids { next: given + 1 })
    }

    /// Record the highest id given so far: called before a delete, which
    /// could remove the highest row (and with it the only record of it).
    pub(super) fn keep(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached("UPDATE task_ids SET given = ?1 WHERE given < ?1")?
            .execute([self.next - 1])
            .map(drop)
    }
}

/// The migration after which older rows get their `name` from their params.
pub(super) const NAME_MIGRATION: usize = 2;

pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        bail!(
            "the database has schema version {current}, newer than this build knows ({})",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("migration {}", i + 1))?;
        if i + 1 == NAME_MIGRATION {
            backfill_names(&tx).context("naming the tasks stored before names")?;
        }
        let broken = tx
            .prepare("PRAGMA foreign_key_check")?
            .query([])?
            .next()?
            .is_some();
        if broken {
            bail!("migration {} left rows that refer to no task", i + 1);
        }
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}

/// Give every task stored before migration 2 its name, from its shown params.
pub(super) fn backfill_names(conn: &Connection) -> anyhow::Result<()> {
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, params FROM tasks")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = conn.prepare("UPDATE tasks SET name = ?2 WHERE id = ?1")?;
    for (id, params) in rows {
        let value: serde_json::Value = serde_json::from_str(&params).unwrap_or_default();
        update.execute(params![id, task_name(&value)])?;
    }
    Ok(())
}
