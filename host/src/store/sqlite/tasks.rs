//! The embedded SQLite store: one database file (`<data>/stevedore.db`) in WAL
//! mode, where a write that returned survives a power cut, not only a crash
//! of the process.
//!
//! All writes go through one writer thread that applies every write as it
//! arrives in one open transaction and commits it when the previous commit
//! is durable (group commit), so throughput grows with load instead of being
//! capped by the disk's fsync rate. One failing write does not undo the
//! others of its batch: a write of several statements runs in its own
//! savepoint, and SQLite undoes a failed single statement itself.
//!
//! The fsync is not the writer's: it commits with `synchronous = NORMAL` and
//! hands the replies to a syncer thread, which answers them once one
//! `fdatasync` of the log covers their commit (see [`super::wal_sync`] for
//! why this is as durable as `FULL`). The writer applies the next writes
//! meanwhile, and commits them once the syncer is idle. Batches holding
//! nothing but progress updates need no fsync of their own: progress is advisory, and the next durable batch's
//! fsync covers their frames too (an fsync twice a second per busy server
//! made ext4 commit its journal and stall a concurrent large export by
//! 10-25%). Reads use separate connections from a small pool and never wait
//! for the writer, only (after they ran) for the fsync of what they saw.
//!
//! Claims from the scheduler ([`TaskStore::claim_early`]) are answered as
//! soon as their statements ran, before their batch is durable: the claimed
//! tasks start during the fsync, and their runs hold every effect until
//! then ([`crate::store::durable`]). Each run then waits for one fsync on its path
//! instead of two (its claim's, then its end's).
//!
//! One node: the file is locked to one process, so a task's node
//! ([`NewTask::node`]) is not stored and every waiting task is this
//! process's to claim.
//!
//! Full params (secrets included) live in their own table, `task_secrets`,
//! sealed with the key in `<data>/secret.key` (see [`SecretBox`]), and only
//! while the task waits: the claim that starts it takes them out (a task
//! that was claimed never runs again).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::Mutex;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::oneshot;

use crate::store::durable::{Committer, Durable};
use crate::store::tasks::model::{now, task_name, JsonText, Task, TaskState};
use crate::store::secret::{SecretBox, KEY_FILE};
use crate::store::tasks::{
    ClaimPlan, ClaimRequest, Claimed, Finish, NewTask, OnStored, Owner, Page, ProgressUpdate,
    StateCount, TaskFilter, TaskStore,
};
use super::wal_sync::{self, Batch, Marks, Settle};

/// The columns of `tasks` after `id`, as migrations 4 and 5 rebuild it
/// (macros, so that each migration stays one constant text).
macro_rules! task_columns {
    () => {
        r#"
        category     TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state = 'waiting' OR state = 'running'
                                             OR state = 'completed' OR state = 'error'),
        detail_state TEXT    NOT NULL DEFAULT '',
        progress     INTEGER NOT NULL DEFAULT 0,
        result       INTEGER NOT NULL DEFAULT 0,
        deletable    INTEGER NOT NULL,
        username     TEXT    NOT NULL,
        params       TEXT    NOT NULL,
        init         INTEGER NOT NULL,
        started      INTEGER,
        ended        INTEGER,
        name         TEXT    NOT NULL DEFAULT ''
    );"#
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
const MIGRATIONS: &[&str] = &[
    // 1: tasks and their sealed full params.
    r#"
    CREATE TABLE tasks (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        category     TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('waiting', 'running', 'completed', 'error')),
        detail_state TEXT    NOT NULL DEFAULT '',
        progress     INTEGER NOT NULL DEFAULT 0,
        result       INTEGER NOT NULL DEFAULT 0,
        deletable    INTEGER NOT NULL,
        username     TEXT    NOT NULL,
        params       TEXT    NOT NULL,
        init         INTEGER NOT NULL,
        started      INTEGER,
        ended        INTEGER
    );
    CREATE INDEX tasks_waiting ON tasks (id) WHERE state = 'waiting';
    CREATE INDEX tasks_running ON tasks (id) WHERE state = 'running';
    CREATE INDEX tasks_user ON tasks (username, id);
    CREATE TABLE task_secrets (
        task_id INTEGER PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
        sealed  BLOB    NOT NULL
    );
    "#,
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
];

/// The ids the writer gives: increasing, never the same twice, even after
/// the newest tasks are deleted and the store is opened again.
struct Ids {
    /// The id of the next task stored.
    next: i64,
}

impl Ids {
    /// After every id given so far (kept in `task_ids`) and every row.
    fn load(conn: &Connection) -> rusqlite::Result<Ids> {
        let given: i64 = conn.query_row(
            "SELECT max((SELECT given FROM task_ids), coalesce((SELECT max(id) FROM tasks), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(Ids { next: given + 1 })
    }

    /// Record the highest id given so far: called before a delete, which
    /// could remove the highest row (and with it the only record of it).
    fn keep(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached("UPDATE task_ids SET given = ?1 WHERE given < ?1")?
            .execute([self.next - 1])
            .map(drop)
    }
}

/// The migration after which older rows get their `name` from their params.
const NAME_MIGRATION: usize = 2;

/// The columns `row_to_task` reads, in its order (a macro, so that
/// statements built at compile time can include them).
macro_rules! columns {
    () => {
        "id, category, state, detail_state, progress, result, deletable, username, params, init, started, ended, name"
    };
}
const COLUMNS: &str = columns!();

/// Name of the database file in the data folder.
pub const DB_FILE: &str = "stevedore.db";

/// Most writes applied in one transaction.
const MAX_BATCH: usize = 4096;
/// Idle reader connections kept open.
const MAX_IDLE_READERS: usize = 8;

type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

enum Op {
    Insert(NewTask, Option<OnStored>, Reply<Task>),
    Claim(ClaimRequest, Reply<Vec<Claimed>>),
    /// Answered before the commit ([`TaskStore::claim_early`]).
    ClaimEarly(ClaimPlan, Reply<Vec<Claimed>>),
    Progress(Vec<ProgressUpdate>, Reply<()>),
    Finish(Finish, Reply<bool>),
    Interrupt {
        result: i32,
        detail: String,
        now: i64,
        reply: Reply<Vec<i64>>,
    },
    DeleteIf {
        id: i64,
        states: Vec<TaskState>,
        reply: Reply<bool>,
    },
    DeleteFinished {
        user: Option<String>,
        category: Option<String>,
        reply: Reply<Vec<Task>>,
    },
    DeleteEnded {
        ended_before: i64,
        max: usize,
        reply: Reply<Vec<Task>>,
    },
    Close(Reply<()>),
}

/// The embedded SQLite [`TaskStore`].
pub struct SqliteStore {
    path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// How far the log is durable: reads wait for what they saw.
    marks: Arc<Marks>,
    /// Tests only: a failpoint before the commit of early claims.
    #[cfg_attr(not(test), allow(dead_code, reason = "set by tests only"))]
    hold: HoldSlot,
}

/// Tests hold here the commit of every batch with an early claim, to see
/// what runs before it and to make it fail ([`SqliteStore::hold_early_claims`]).
#[derive(Clone, Default)]
struct HoldSlot(Arc<Mutex<Option<Hold>>>);

struct Hold {
    /// Told when a batch is held (its claims answered, its commit not yet run).
    held: mpsc::Sender<()>,
    /// Then waits here: `true` commits, `false` fails the commit (rolled back).
    release: mpsc::Receiver<bool>,
}

impl HoldSlot {
    /// Whether the held batch may commit (`true` without a hold).
    fn wait(&self) -> bool {
        let slot = self.0.lock();
        let Some(hold) = slot.as_ref() else {
            return true;
        };
        // A test that went away releases everything.
        if hold.held.send(()).is_err() {
            return true;
        }
        hold.release.recv().unwrap_or(true)
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, usually
    /// `<data>/stevedore.db`, applying pending migrations. The key that seals
    /// full params is `secret.key` beside it, created (0600) on first start.
    pub fn open(path: impl AsRef<Path>) -> anyhow::Result<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let secrets = SecretBox::load_or_create(&dir.join(KEY_FILE))?;
        Self::open_with(path, secrets)
    }

    /// Open the database in `data_dir` (`<data_dir>/stevedore.db`).
    pub fn open_in(data_dir: impl AsRef<Path>) -> anyhow::Result<Arc<Self>> {
        Self::open(data_dir.as_ref().join(DB_FILE))
    }

    /// Open with an explicit key instead of the key file.
    ///
    /// One process at a time: an exclusive lock on `<path>.lock`, held until
    /// the store's writer has stopped, refuses a second server on the same
    /// data (it would take the first one's running tasks for interrupted ones).
    pub fn open_with(path: PathBuf, secrets: SecretBox) -> anyhow::Result<Arc<Self>> {
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "{} is in use by another stevedore process (lock {} is held)",
                path.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()))
            }
        }
        super::alloc::install();
        let mut conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("{}: cannot switch to WAL mode (got {mode})", path.display());
        }
        // Foreign keys are enforced from after the migrations on (SQLite as
        // built here enforces them by default): a migration that rebuilds a
        // table drops the old one, which would cascade to the rows that
        // refer to it.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = OFF;",
        )?;
        migrate(&mut conn).with_context(|| format!("migrating {}", path.display()))?;
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
        let ids = Ids::load(&conn).context("reading the ids given so far")?;
        // Every statement the writer runs stays prepared (rusqlite keeps 16
        // by default; the writer has more than that, so some were parsed
        // again and again).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);

        // Commits write the log without an fsync of their own; the syncer
        // makes them durable before they are answered (see `wal_sync`).
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let marks = Marks::new();
        let (syncer, sync_thread) = wal_sync::start(
            PathBuf::from(format!("{}-wal", path.display())),
            marks.clone(),
        )
        .context("starting the database sync thread")?;
        let (tx, rx) = mpsc::channel();
        let hold = HoldSlot::default();
        let writer_hold = hold.clone();
        let writer_marks = marks.clone();
        let writer = std::thread::Builder::new()
            .name("stevedore-db-writer".into())
            .spawn(move || {
                writer_loop(
                    conn,
                    secrets,
                    ids,
                    rx,
                    &writer_hold,
                    &writer_marks,
                    (syncer, sync_thread),
                );
                // The lock goes when the last write is done.
                drop(lock);
            })
            .context("starting the database writer thread")?;
        marks.set_writer(writer.thread().clone());
        Ok(Arc::new(Self {
            path,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            hold,
            marks,
        }))
    }

    /// Tests: hold the commit of every batch with an early claim. Each held
    /// batch (claims answered, commit not yet run) sends on the first
    /// channel, then waits on the second: `true` commits, `false` fails the
    /// commit as a full disk would. Dropping the sender releases them all.
    #[cfg(test)]
    pub(crate) fn hold_early_claims(&self) -> (mpsc::Receiver<()>, mpsc::Sender<bool>) {
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *self.hold.0.lock() = Some(Hold {
            held: held_tx,
            release: release_rx,
        });
        (held_rx, release_tx)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this build migrates to.
    pub fn schema_version() -> usize {
        MIGRATIONS.len()
    }

    async fn write<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.tx.lock();
            let tx = tx
                .as_ref()
                .ok_or_else(|| anyhow!("the task store is closed"))?;
            tx.send(make(reply))
                .map_err(|_| anyhow!("the task store is closed"))?;
        }
        // The writer may be parked holding a transaction open (see
        // `writer_loop`): it applies this write now.
        self.marks.wake_writer();
        rx.await
            .map_err(|_| anyhow!("the database writer stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let marks = self.marks.clone();
        let (out, seen) = tokio::task::spawn_blocking(move || {
            let conn = match readers.lock().pop() {
                Some(c) => c,
                None => match open_reader(&path) {
                    Ok(c) => c,
                    Err(e) => return (Err(e), 0),
                },
            };
            let out = f(&conn);
            // The read is over: it saw no commit after this one.
            let seen = marks.seen_by_read();
            let mut pool = readers.lock();
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
            (out, seen)
        })
        .await
        .map_err(|e| anyhow!("reader task failed: {e}"))?;
        // Show nothing that a power cut could still take back.
        self.marks.wait_durable(seen).await;
        out
    }
}

/// A new connection for reads.
fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let c = Connection::open(path)?;
    // Memory-mapped reads and a larger page cache keep a full `list` of
    // many tasks cheap even right after writes.
    c.execute_batch(
        "PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;
         PRAGMA mmap_size = 268435456; PRAGMA cache_size = -32768;",
    )?;
    Ok(c)
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Dropping the sender lets the writer finish what it has and exit.
        self.tx.lock().take();
    }
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
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
fn backfill_names(conn: &Connection) -> anyhow::Result<()> {
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

fn parse_state(s: &str) -> rusqlite::Result<TaskState> {
    Ok(match s {
        "waiting" => TaskState::Waiting,
        "running" => TaskState::Running,
        "completed" => TaskState::Completed,
        "error" => TaskState::Error,
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown task state `{other}`").into(),
            ))
        }
    })
}

fn row_to_task(r: &Row<'_>) -> rusqlite::Result<Task> {
    let state = parse_state(r.get_ref(2)?.as_str()?)?;
    Ok(Task {
        id: r.get(0)?,
        category: r.get(1)?,
        state,
        detail_state: r.get(3)?,
        progress: r.get(4)?,
        // Container Station shows `result` once the task has ended.
        result: if state.is_finished() {
            Some(r.get(5)?)
        } else {
            None
        },
        deletable: r.get(6)?,
        user: r.get(7)?,
        params: r.get(8)?,
        init: r.get(9)?,
        start: r.get(10)?,
        end: r.get(11)?,
        name: r.get(12)?,
        node: None,
    })
}

fn states_json(states: &[TaskState]) -> String {
    serde_json::to_string(&states.iter().map(|s| s.as_str()).collect::<Vec<_>>()).unwrap()
}

/// Whether `op` needs the log on disk before its reply: all but progress
/// updates, which are advisory and made durable by the next commit that
/// does (a transaction of progress only is answered without an fsync).
fn needs_sync(op: &Op) -> bool {
    !matches!(op, Op::Progress(..))
}

/// The writer thread: apply every write as it arrives in one open
/// transaction, commit it (without an fsync) once the syncer
/// ([`super::wal_sync`]) is idle, or the transaction is full, and hand the
/// replies to the syncer, which sends them once the log is on disk.
fn writer_loop(
    mut conn: Connection,
    secrets: SecretBox,
    mut ids: Ids,
    rx: mpsc::Receiver<Op>,
    hold: &HoldSlot,
    marks: &Arc<Marks>,
    (syncer, sync_thread): (mpsc::Sender<Batch<Pending>>, JoinHandle<()>),
) {
    let mut senders_gone = false;
    while !senders_gone {
        let Ok(first) = rx.recv() else { break };
        let mut txn = Txn::begin(&conn, marks);
        txn.apply(&conn, &secrets, &mut ids, first);
        let mut applied = 1;
        loop {
            while applied < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => {
                        txn.apply(&conn, &secrets, &mut ids, op);
                        applied += 1;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        senders_gone = true;
                        break;
                    }
                }
            }
            if applied >= MAX_BATCH || txn.closing || senders_gone || marks.syncer_idle() {
                break;
            }
            // Woken by the next write (its sender unparks this thread) or
            // by the syncer going idle; a wake-up that came before this
            // park makes it return at once.
            std::thread::park();
        }
        let (closing, committed) = txn.commit(&mut conn, hold, marks);
        marks.handed();
        // The syncer outlives this loop; a send fails only if it panicked,
        // and then the replies are dropped (their callers see the writer gone).
        let _ = syncer.send(committed);
        if closing {
            break;
        }
    }
    // Every reply is sent before the log is folded into the database (and
    // before the caller lets the lock go).
    drop(syncer);
    let _ = sync_thread.join();
    // Fold the WAL into the database on the way out; harmless if it fails.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

/// A reply waiting for its batch to be durable.
enum Pending {
    Task(Reply<Task>, anyhow::Result<Task>, Option<OnStored>),
    Claimed(Reply<Vec<Claimed>>, anyhow::Result<Vec<Claimed>>),
    Unit(Reply<()>, anyhow::Result<()>),
    Bool(Reply<bool>, anyhow::Result<bool>),
    Ids(Reply<Vec<i64>>, anyhow::Result<Vec<i64>>),
    Tasks(Reply<Vec<Task>>, anyhow::Result<Vec<Task>>),
    /// The claims of the batch answered early ([`TaskStore::claim_early`]).
    Claims(Committer),
}

impl Settle for Pending {
    fn settle(self, commit: &Result<(), String>) {
        fn pick<T>(r: anyhow::Result<T>, commit: &Result<(), String>) -> anyhow::Result<T> {
            match commit {
                Ok(()) => r,
                Err(e) => Err(anyhow!("commit failed: {e}")),
            }
        }
        // A dropped receiver (caller gone) is not an error here.
        match self {
            Pending::Task(tx, r, on_stored) => {
                let r = pick(r, commit);
                if let (Ok(task), Some(f)) = (&r, on_stored) {
                    f(task);
                }
                drop(tx.send(r))
            }
            Pending::Claimed(tx, r) => drop(tx.send(pick(r, commit))),
            Pending::Unit(tx, r) => drop(tx.send(pick(r, commit))),
            Pending::Bool(tx, r) => drop(tx.send(pick(r, commit))),
            Pending::Ids(tx, r) => drop(tx.send(pick(r, commit))),
            Pending::Tasks(tx, r) => drop(tx.send(pick(r, commit))),
            Pending::Claims(committer) => committer.settle(commit),
        }
    }
}

/// Refuse `op` with `err` (the batch could not begin).
fn refuse(op: Op, err: impl Fn() -> anyhow::Error, pending: &mut Vec<Pending>) -> bool {
    match op {
        Op::Insert(_, _, r) => drop(r.send(Err(err()))),
        Op::Claim(_, r) => drop(r.send(Err(err()))),
        Op::ClaimEarly(_, r) => drop(r.send(Err(err()))),
        Op::Progress(_, r) => drop(r.send(Err(err()))),
        Op::Finish(_, r) => drop(r.send(Err(err()))),
        Op::Interrupt { reply, .. } => drop(reply.send(Err(err()))),
        Op::DeleteIf { reply, .. } => drop(reply.send(Err(err()))),
        Op::DeleteFinished { reply, .. } => drop(reply.send(Err(err()))),
        Op::DeleteEnded { reply, .. } => drop(reply.send(Err(err()))),
        Op::Close(r) => {
            pending.push(Pending::Unit(r, Ok(())));
            return true;
        }
    }
    false
}

/// One open write transaction of the writer: the writes applied so far and
/// their replies, waiting for the commit.
struct Txn {
    /// How `BEGIN` ended; after a failure every write is refused.
    begin: Result<(), String>,
    pending: Vec<Pending>,
    closing: bool,
    needs_sync: bool,
    /// Told the end of this transaction's commit, for the claims answered early.
    early: Option<(Committer, Durable)>,
    claimed_early: bool,
}

impl Txn {
    fn begin(conn: &Connection, marks: &Marks) -> Txn {
        // After a failed fsync nothing more is written: the log's state is unknown.
        let begin = match marks.failure() {
            Some(failure) => Err(failure),
            None => run_cached(conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string()),
        };
        Txn {
            begin,
            pending: Vec::new(),
            closing: false,
            needs_sync: false,
            early: None,
            claimed_early: false,
        }
    }

    /// Apply one write; its reply waits for the commit (early claims are
    /// answered at once).
    fn apply(&mut self, conn: &Connection, secrets: &SecretBox, ids: &mut Ids, op: Op) {
        self.needs_sync |= needs_sync(&op);
        let pending = &mut self.pending;
        if let Err(e) = &self.begin {
            self.closing |= refuse(op, || anyhow!("cannot begin a transaction: {e}"), pending);
            return;
        }
        match op {
            Op::Insert(t, on_stored, r) => {
                // One statement is undone by SQLite itself if it fails.
                let stored = if t.full_params.is_some() {
                    savepoint(conn, |c| insert(c, secrets, ids, t))
                } else {
                    insert(conn, secrets, ids, t)
                };
                pending.push(Pending::Task(r, stored, on_stored))
            }
            Op::Claim(req, r) => pending.push(Pending::Claimed(
                r,
                savepoint(conn, |c| claim(c, secrets, req, &Durable::ready())),
            )),
            Op::ClaimEarly(plan, r) => {
                let claimed = match plan(now()) {
                    Some(req) => {
                        let durable = &self.early.get_or_insert_with(Durable::pending).1;
                        let claimed = savepoint(conn, |c| claim(c, secrets, req, durable));
                        self.claimed_early |= claimed.as_ref().is_ok_and(|v| !v.is_empty());
                        claimed
                    }
                    None => Ok(Vec::new()),
                };
                // Answered now: the runs start while this batch commits.
                drop(r.send(claimed));
            }
            Op::Progress(u, r) => {
                pending.push(Pending::Unit(r, savepoint(conn, |c| save_progress(c, &u))))
            }
            // One statement: no savepoint needed.
            Op::Finish(f, r) => pending.push(Pending::Bool(r, finish(conn, &f))),
            Op::Interrupt {
                result,
                detail,
                now,
                reply,
            } => pending.push(Pending::Ids(
                reply,
                savepoint(conn, |c| interrupt_running(c, result, &detail, now)),
            )),
            Op::DeleteIf { id, states, reply } => pending.push(Pending::Bool(
                reply,
                savepoint(conn, |c| {
                    ids.keep(c)?;
                    delete_if(c, id, &states)
                }),
            )),
            Op::DeleteFinished {
                user,
                category,
                reply,
            } => pending.push(Pending::Tasks(
                reply,
                savepoint(conn, |c| {
                    ids.keep(c)?;
                    delete_finished(c, user.as_deref(), category.as_deref())
                }),
            )),
            Op::DeleteEnded {
                ended_before,
                max,
                reply,
            } => pending.push(Pending::Tasks(
                reply,
                savepoint(conn, |c| {
                    ids.keep(c)?;
                    delete_ended_before(c, ended_before, max)
                }),
            )),
            Op::Close(r) => {
                self.closing = true;
                pending.push(Pending::Unit(r, Ok(())));
            }
        }
    }

    /// Commit (or, after a failed `BEGIN`, settle the refusals); returns
    /// whether a close was requested, and the batch for the syncer.
    fn commit(
        self,
        conn: &mut Connection,
        hold: &HoldSlot,
        marks: &Marks,
    ) -> (bool, Batch<Pending>) {
        let Txn {
            begin,
            mut pending,
            closing,
            needs_sync,
            early,
            claimed_early,
        } = self;
        let fail_on_purpose = begin.is_ok() && claimed_early && !hold.wait();
        // Numbered right before the commit: a reader that sees it sees the number.
        let seq = marks.next();
        let commit = match begin {
            Ok(()) if fail_on_purpose => {
                let _ = conn.execute_batch("ROLLBACK");
                Err("commit failed on purpose (a test's failpoint)".to_string())
            }
            Ok(()) => run_cached(conn, "COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                e.to_string()
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "task store commit failed");
        }
        if let Some((committer, _)) = early {
            pending.push(Pending::Claims(committer));
        }
        (
            closing,
            Batch {
                seq,
                needs_sync,
                commit,
                replies: pending,
            },
        )
    }
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Run one statement without parameters from the statement cache: the
/// transaction and savepoint statements run several times per batch, and
/// `execute_batch` would parse them every time.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    run_cached(conn, "SAVEPOINT op")?;
    match f(conn) {
        Ok(v) => {
            run_cached(conn, "RELEASE op")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
            Err(e)
        }
    }
}

/// Store a new task.
const INSERT_SQL: &str = "INSERT INTO tasks (id, category, state, detail_state, progress, result, deletable, username, params, init, name)
     VALUES (?7, ?1, 'waiting', '', 0, 0, ?2, ?3, ?4, ?5, ?6)";

/// End a running task.
const FINISH_SQL: &str =
    "UPDATE tasks SET state = ?2, result = ?3, detail_state = ?4, progress = ?5, ended = ?6
     WHERE id = ?1 AND state = 'running'";

/// Store `t`: one statement, two when it has sealed params (run those in a
/// savepoint). Nothing can fail after the first statement but the second.
fn insert(
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
fn claim(
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
const WAITING_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    "\n       FROM tasks WHERE state = 'waiting' ORDER BY id"
);

/// Positions of `category` and `username` in [`WAITING_SQL`] (as in [`COLUMNS`]).
const CATEGORY_COLUMN: usize = 1;
const USER_COLUMN: usize = 7;

/// Move one claimed task to `running`.
const START_SQL: &str =
    "UPDATE tasks SET state = 'running', started = ?2, progress = 0, detail_state = ''
     WHERE id = ?1 AND state = 'waiting'";

fn save_progress(conn: &Connection, updates: &[ProgressUpdate]) -> anyhow::Result<()> {
    let mut st = conn.prepare_cached(
        "UPDATE tasks SET progress = ?2, detail_state = ?3 WHERE id = ?1 AND state = 'running'",
    )?;
    for u in updates {
        st.execute(params![u.id, u.progress, u.detail])?;
    }
    Ok(())
}

fn finish(conn: &Connection, f: &Finish) -> anyhow::Result<bool> {
    let n = conn.prepare_cached(FINISH_SQL)?.execute(params![
        f.id,
        f.state.as_str(),
        f.result,
        f.detail,
        f.progress,
        f.end
    ])?;
    Ok(n == 1)
}

fn interrupt_running(
    conn: &Connection,
    result: i32,
    detail: &str,
    now: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut st = conn.prepare_cached(
        "UPDATE tasks SET state = 'error', result = ?1, detail_state = ?2, ended = ?3
          WHERE state = 'running' RETURNING id",
    )?;
    let mut ids = st
        .query_map(params![result, detail, now], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    let mut del = conn.prepare_cached("DELETE FROM task_secrets WHERE task_id = ?1")?;
    for id in &ids {
        del.execute([id])?;
    }
    Ok(ids)
}

fn delete_if(conn: &Connection, id: i64, states: &[TaskState]) -> anyhow::Result<bool> {
    let n = conn
        .prepare_cached(
            "DELETE FROM tasks WHERE id = ?1 AND state IN (SELECT value FROM json_each(?2))",
        )?
        .execute(params![id, states_json(states)])?;
    Ok(n == 1)
}

fn delete_finished(
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

const DELETE_FINISHED_SQL: &str = concat!(
    "DELETE FROM tasks WHERE state IN ('completed', 'error')
        AND (?1 IS NULL OR username = ?1) AND (?2 IS NULL OR category = ?2)
     RETURNING ",
    columns!()
);

/// Retention: one batch of at most `max` finished tasks ended before
/// `ended_before`, oldest end first (the `tasks_ended` index, no sort).
fn delete_ended_before(
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

const DELETE_ENDED_SQL: &str = concat!(
    "DELETE FROM tasks WHERE id IN
    (SELECT id FROM tasks WHERE ended < ?1 AND state IN ('completed', 'error')
      ORDER BY ended LIMIT ?2)
 RETURNING ",
    columns!()
);

/// The statement of a listing and its arguments: newest first, as Container
/// Station lists. The text depends on the filters given, so each shape is
/// its own cached statement and reads its index: the primary key, or
/// `tasks_user` / `tasks_category` (`(…, id)`: already in id order, and a
/// page stops after `limit` rows).
fn list_sql(
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

fn list(
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

#[async_trait]
impl TaskStore for SqliteStore {
    async fn insert(&self, task: NewTask) -> anyhow::Result<Task> {
        self.write(|r| Op::Insert(task, None, r)).await
    }

    async fn insert_then(&self, task: NewTask, on_stored: OnStored) -> anyhow::Result<Task> {
        self.write(|r| Op::Insert(task, Some(on_stored), r)).await
    }

    async fn claim(&self, req: ClaimRequest) -> anyhow::Result<Vec<Claimed>> {
        if req.max == 0 || req.categories.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|r| Op::Claim(req, r)).await
    }

    async fn claim_early(&self, plan: ClaimPlan) -> anyhow::Result<Vec<Claimed>> {
        self.write(|r| Op::ClaimEarly(plan, r)).await
    }

    async fn save_progress(&self, updates: Vec<ProgressUpdate>) -> anyhow::Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        self.write(|r| Op::Progress(updates, r)).await
    }

    async fn finish(&self, finish: Finish) -> anyhow::Result<bool> {
        self.write(|r| Op::Finish(finish, r)).await
    }

    async fn interrupt_running(
        &self,
        result: i32,
        detail: &str,
        now: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let detail = detail.to_string();
        self.write(|reply| Op::Interrupt {
            result,
            detail,
            now,
            reply,
        })
        .await
    }

    async fn delete_if(&self, id: i64, states: &[TaskState]) -> anyhow::Result<bool> {
        let states = states.to_vec();
        self.write(|reply| Op::DeleteIf { id, states, reply }).await
    }

    async fn delete_finished(
        &self,
        owner: Owner<'_>,
        category: Option<&str>,
    ) -> anyhow::Result<Vec<Task>> {
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u.to_string()),
        };
        let category = category.map(str::to_string);
        self.write(|reply| Op::DeleteFinished {
            user,
            category,
            reply,
        })
        .await
    }

    async fn get(&self, id: i64) -> anyhow::Result<Option<Task>> {
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
            Ok(c.prepare_cached(&sql)?
                .query_row([id], row_to_task)
                .optional()?)
        })
        .await
    }

    async fn list(&self, owner: Owner<'_>, category: Option<&str>) -> anyhow::Result<Vec<Task>> {
        let user = match owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u.to_string()),
        };
        let category = category.map(str::to_string);
        self.read(move |c| list(c, user.as_deref(), category.as_deref(), None))
            .await
    }

    async fn list_page(&self, filter: TaskFilter<'_>, page: Page) -> anyhow::Result<Vec<Task>> {
        // One node: every task is this node's, so `filter.node` selects all.
        let user = match filter.owner {
            Owner::Anyone => None,
            Owner::User(u) => Some(u.to_string()),
        };
        let category = filter.category.map(str::to_string);
        self.read(move |c| list(c, user.as_deref(), category.as_deref(), Some(page)))
            .await
    }

    async fn delete_ended_before(
        &self,
        ended_before: i64,
        max: usize,
    ) -> anyhow::Result<Vec<Task>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // One write among the others of its group commit: a batch of `max`
        // rows holds the writer for a few milliseconds at most.
        self.write(|reply| Op::DeleteEnded {
            ended_before,
            max,
            reply,
        })
        .await
    }

    async fn waiting_of(&self, user: &str) -> anyhow::Result<usize> {
        let user = user.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT count(*) FROM tasks WHERE username = ?1 AND state = 'waiting'",
            )?;
            Ok(st.query_row([&user], |r| r.get::<_, i64>(0))? as usize)
        })
        .await
    }

    async fn counts(&self) -> anyhow::Result<Vec<StateCount>> {
        self.read(|c| {
            // A plain scan: through `tasks_category` (category order) it
            // would look every row up (40% slower at 100,000 tasks).
            let mut st = c.prepare_cached(
                "SELECT category, state, count(*), min(init) FROM tasks NOT INDEXED GROUP BY category, state ORDER BY category, state",
            )?;
            let rows = st.query_map([], |r| {
                Ok(StateCount {
                    category: r.get(0)?,
                    state: parse_state(r.get_ref(1)?.as_str()?)?,
                    count: r.get::<_, i64>(2)? as u64,
                    oldest_init: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn close(&self) -> anyhow::Result<()> {
        let tx = self.tx.lock().take();
        if let Some(tx) = tx {
            let (reply, rx) = oneshot::channel();
            if tx.send(Op::Close(reply)).is_ok() {
                let _ = rx.await;
            }
        }
        let handle = self.writer.lock().take();
        if let Some(h) = handle {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|e| anyhow!("joining the writer: {e}"))?
                .map_err(|_| anyhow!("the database writer panicked"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_of_progress_only_commits_without_its_own_fsync() {
        let progress = || Op::Progress(Vec::new(), oneshot::channel().0);
        let finish = Op::Finish(
            Finish {
                id: 1,
                state: TaskState::Completed,
                result: 0,
                detail: String::new(),
                progress: 100,
                end: 1,
            },
            oneshot::channel().0,
        );
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let (marks, secrets) = (Marks::new(), SecretBox::from_key(&[7; 32]));
        let mut ids = Ids::load(&conn).unwrap();
        let mut txn = Txn::begin(&conn, &marks);
        txn.apply(&conn, &secrets, &mut ids, progress());
        txn.apply(&conn, &secrets, &mut ids, progress());
        assert!(!txn.needs_sync);
        txn.apply(&conn, &secrets, &mut ids, finish);
        assert!(txn.needs_sync);
        let (closing, batch) = txn.commit(&mut conn, &HoldSlot::default(), &marks);
        assert!(!closing && batch.needs_sync && batch.commit.is_ok());
        assert_eq!(batch.replies.len(), 3);
    }

    #[tokio::test]
    async fn tasks_stored_before_names_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            // A database as the previous release left it (schema 1).
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch("PRAGMA user_version = 1").unwrap();
            for params in [
                r#"{"type":"docker","name":"dtest","image":"busybox"}"#,
                r#"[{"image":"busybox","tag":"1.36"}]"#,
            ] {
                conn.execute(
                    "INSERT INTO tasks (category, state, deletable, username, params, init)
                     VALUES ('x', 'completed', 0, 'u', ?1, 1)",
                    [params],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let names: Vec<String> = store
            .list(Owner::Anyone, None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["busybox:1.36", "dtest"]);
        store.close().await.unwrap();
    }

    /// The newest tasks deleted, the store opened again: their ids are
    /// not given again (the writer gives ids; `task_ids` keeps the highest).
    #[tokio::test]
    async fn ids_deleted_from_the_top_are_not_given_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let first = store.insert(new_task("x", "u", None)).await.unwrap();
        let newest = store.insert(new_task("x", "u", None)).await.unwrap();
        assert!(newest.id > first.id);
        assert!(store
            .delete_if(newest.id, &[TaskState::Waiting])
            .await
            .unwrap());
        store.close().await.unwrap();
        drop(store);
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let next = store.insert(new_task("x", "u", None)).await.unwrap();
        assert!(
            next.id > newest.id,
            "id {} was given again (newest was {})",
            next.id,
            newest.id
        );
        store.close().await.unwrap();
    }

    /// A database as release 3 left it, rebuilt by migration 4: every row
    /// and sealed param kept, ids never given twice, the state still checked.
    #[tokio::test]
    async fn the_state_check_rebuild_keeps_rows_secrets_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch("PRAGMA user_version = 3").unwrap();
            for (state, name) in [("completed", "one"), ("waiting", "two"), ("error", "three")] {
                conn.execute(
                    "INSERT INTO tasks (category, state, deletable, username, params, init, name, ended)
                     VALUES ('x', ?1, 1, 'u', '{}', 1, ?2, 9)",
                    [state, name],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO task_secrets (task_id, sealed) VALUES (2, x'00112233')",
                [],
            )
            .unwrap();
            // The newest task was deleted: its id must not come back.
            conn.execute("DELETE FROM tasks WHERE id = 3", []).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let listed: Vec<(i64, TaskState, String)> = store
            .list(Owner::Anyone, None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.state, t.name))
            .collect();
        assert_eq!(
            listed,
            [
                (2, TaskState::Waiting, "two".to_string()),
                (1, TaskState::Completed, "one".to_string())
            ]
        );
        let next = store.insert(new_task("x", "u", None)).await.unwrap();
        assert_eq!(next.id, 4, "an id given before is given again");
        store.close().await.unwrap();

        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        let sealed: Vec<u8> = conn
            .query_row(
                "SELECT sealed FROM task_secrets WHERE task_id = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(sealed, [0x00, 0x11, 0x22, 0x33]);
        let bad = conn.execute("UPDATE tasks SET state = 'lost' WHERE id = 1", []);
        assert!(format!("{bad:?}").contains("CHECK"), "{bad:?}");
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'tasks'
                   AND name LIKE 'tasks_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 5);
        // Foreign keys hold again after the migrations: a sealed param of
        // a deleted task goes with it.
        conn.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM tasks WHERE id = 2")
            .unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM task_secrets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    /// A task's writes (store, claim, finish) build no temporary b-tree of
    /// their own: SQLite builds one for a CHECK of `IN (more than two
    /// values)` on every execution, which cost a quarter of each write.
    #[test]
    fn task_writes_build_no_temporary_tables() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open_in(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let ephemeral = |sql: &str| -> usize {
            // EXPLAIN runs nothing: its parameters may stay unbound.
            let mut st = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let mut rows = st.raw_query();
            let mut n = 0;
            while let Some(row) = rows.next().unwrap() {
                n += usize::from(row.get::<_, String>(1).unwrap() == "OpenEphemeral");
            }
            n
        };
        assert_eq!(ephemeral(INSERT_SQL), 0);
        assert_eq!(ephemeral(FINISH_SQL), 0);
        assert_eq!(ephemeral("UPDATE tasks SET progress = 1 WHERE id = 1"), 0);
        assert_eq!(ephemeral(WAITING_SQL), 0);
        assert_eq!(ephemeral(START_SQL), 0);
        // The claim reads the columns it admits by where it expects them.
        let columns: Vec<&str> = COLUMNS.split(", ").collect();
        assert_eq!(columns[CATEGORY_COLUMN], "category");
        assert_eq!(columns[USER_COLUMN], "username");
        assert!(WAITING_SQL.starts_with(&format!("SELECT {COLUMNS}\n")));
    }

    fn new_task(cat: &str, user: &str, full: Option<&str>) -> NewTask {
        NewTask {
            category: cat.into(),
            user: user.into(),
            deletable: false,
            name: String::new(),
            shown_params: r#"{"password":"******"}"#.into(),
            full_params: full.map(str::to_string),
            init: 1,
            node: None,
        }
    }

    #[tokio::test]
    async fn claim_is_fifo_within_allowances_and_secrets_are_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let a1 = store
            .insert(new_task("a", "u", Some(r#"{"password":"hunter2"}"#)))
            .await
            .unwrap();
        let a2 = store.insert(new_task("a", "u", None)).await.unwrap();
        let b1 = store.insert(new_task("b", "v", None)).await.unwrap();
        let c1 = store.insert(new_task("c", "v", None)).await.unwrap();
        assert!(a1.id < a2.id && a2.id < b1.id && b1.id < c1.id);

        // One of `a` at most, `b` unbounded, `c` not at all.
        let got = store
            .claim(ClaimRequest {
                users: Vec::new(),
                max: 10,
                categories: vec![("a".into(), Some(1)), ("b".into(), None)],
                now: 5,
            })
            .await
            .unwrap();
        let ids: Vec<i64> = got.iter().map(|c| c.task.id).collect();
        assert_eq!(ids, vec![a1.id, b1.id]);
        assert_eq!(got[0].full_params, r#"{"password":"hunter2"}"#);
        assert_eq!(got[0].task.params.get(), r#"{"password":"******"}"#);
        assert_eq!(got[0].task.state, TaskState::Running);
        assert_eq!(got[0].task.start, Some(5));
        // The claim took the sealed params out: the run has them.
        let sealed_rows = || -> i64 {
            Connection::open(dir.path().join(DB_FILE))
                .unwrap()
                .query_row("SELECT count(*) FROM task_secrets", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(sealed_rows(), 0);

        // The secret is not in the database file in clear.
        store.close().await.unwrap();
        let bytes = std::fs::read(dir.path().join(DB_FILE)).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"));

        // Reopen: a2 is next.
        let store = SqliteStore::open_in(dir.path()).unwrap();
        assert_eq!(SqliteStore::schema_version(), 5);
        let got = store
            .claim(ClaimRequest {
                users: Vec::new(),
                max: 1,
                categories: vec![("a".into(), None)],
                now: 6,
            })
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].task.id, a2.id);
        let done = Finish {
            id: a1.id,
            state: TaskState::Completed,
            result: 0,
            detail: "ok".into(),
            progress: 100,
            end: 7,
        };
        assert!(store.finish(done.clone()).await.unwrap());
        assert!(
            !store.finish(done).await.unwrap(),
            "a finished task is not finished twice"
        );
        let t = store.get(a1.id).await.unwrap().unwrap();
        assert_eq!(
            (t.state, t.progress, t.end),
            (TaskState::Completed, 100, Some(7))
        );

        let counts = store.counts().await.unwrap();
        assert!(
            counts
                .iter()
                .any(|c| c.category == "a" && c.state == TaskState::Completed && c.count == 1),
            "{counts:?}"
        );
        assert!(
            counts
                .iter()
                .any(|c| c.category == "a" && c.state == TaskState::Running && c.count == 1),
            "{counts:?}"
        );
        // `c` still waits: the oldest waiting submit time is its `init`.
        assert!(
            counts.iter().any(|c| c.category == "c"
                && c.state == TaskState::Waiting
                && c.count == 1
                && c.oldest_init == c1.init),
            "{counts:?}"
        );

        // Filters.
        assert_eq!(store.list(Owner::User("v"), None).await.unwrap().len(), 2);
        assert_eq!(store.list(Owner::Anyone, Some("a")).await.unwrap().len(), 2);
        assert_eq!(
            store.list(Owner::User("v"), Some("c")).await.unwrap()[0].id,
            c1.id
        );
        assert!(store
            .delete_finished(Owner::User("v"), None)
            .await
            .unwrap()
            .is_empty());
        let gone = store.delete_finished(Owner::User("u"), None).await.unwrap();
        assert_eq!(gone.iter().map(|t| t.id).collect::<Vec<_>>(), [a1.id]);
        assert!(!store.delete_if(c1.id, &[TaskState::Running]).await.unwrap());
        assert!(store.delete_if(c1.id, &[TaskState::Waiting]).await.unwrap());

        // Recovery takes the running ones only.
        let ids = store.interrupt_running(4, "interrupted", 9).await.unwrap();
        assert_eq!(ids, vec![a2.id, b1.id]);

        // Ids are never reused after deletes.
        let max = store
            .list(Owner::Anyone, None)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .max()
            .unwrap();
        let n = store.insert(new_task("a", "u", None)).await.unwrap();
        assert!(n.id > c1.id && n.id > max);
        store.close().await.unwrap();
        assert!(
            store.insert(new_task("a", "u", None)).await.is_err(),
            "closed store refuses writes"
        );
    }

    /// Every shape of a page, and a retention batch, reads an index in
    /// order and stops early: no table scan, no sort of every task.
    #[test]
    fn pages_and_retention_read_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        drop(store);
        // The server never runs ANALYZE: the planner chooses from the
        // schema alone, the same with 10 tasks as with 100,000.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let plan = |sql: &str, args: Vec<rusqlite::types::Value>| -> String {
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = st
                .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            rows.join("; ")
        };
        for (user, category, want) in [
            (None, None, "USING INTEGER PRIMARY KEY (rowid<?)"),
            (
                Some("u"),
                None,
                "USING INDEX tasks_user (username=? AND id<?)",
            ),
            (
                None,
                Some("c"),
                "USING INDEX tasks_category (category=? AND id<?)",
            ),
            (Some("u"), Some("c"), "USING INDEX tasks_"),
        ] {
            let page = Page {
                before: Some(100),
                limit: 100,
            };
            let (sql, args) = list_sql(user, category, Some(page));
            let p = plan(&sql, args);
            assert!(p.contains(want), "{sql}: {p}");
            assert!(
                !p.contains("SCAN") && !p.contains("TEMP B-TREE"),
                "{sql}: {p}"
            );
            // The first page (no `before`) too.
            let (sql, args) = list_sql(
                user,
                category,
                Some(Page {
                    before: None,
                    limit: 100,
                }),
            );
            let p = plan(&sql, args);
            assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
        }
        let p = plan(
            DELETE_ENDED_SQL,
            vec![
                rusqlite::types::Value::Integer(1),
                rusqlite::types::Value::Integer(500),
            ],
        );
        assert!(p.contains("USING INDEX tasks_ended (ended<?)"), "{p}");
        assert!(p.contains("USING INTEGER PRIMARY KEY (rowid=?)"), "{p}");
        assert!(!p.contains("SCAN"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        // The claim keeps to the waiting tasks whatever else is indexed.
        let p = plan(WAITING_SQL, vec![]);
        assert!(p.contains("USING INDEX tasks_waiting"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }

    #[tokio::test]
    async fn one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteStore::open_in(dir.path()).unwrap();
        let err = SqliteStore::open_in(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("in use by another stevedore"),
            "{err:#}"
        );
        first.close().await.unwrap();
        let again = SqliteStore::open_in(dir.path()).unwrap();
        again.close().await.unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(c);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
    }
}
