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
//! `fdatasync` of the log covers their commit (see `wal_sync.rs` for
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
//!
//! Its parts: `schema` (migrations, the ids given), `sql` (the statements of
//! each operation and the row mapping), `writer` (the writer thread and its
//! group commit), `failpoint` (tests' hold on a commit) and this file (the
//! [`TaskStore`] the queue sees, its readers and its opening).

mod failpoint;
mod schedules;
mod schema;
mod sql;
#[cfg(test)]
mod tests;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;

use self::failpoint::HoldSlot;
use self::schema::{migrate, Ids, MIGRATIONS};
use self::sql::{list, parse_state, read_log, row_to_task};
use self::writer::{writer_loop, Done, Op, Reply, Write, STATEMENT_CACHE};
use super::wal_sync::{self, Marks};
use crate::store::secret::{SecretBox, KEY_FILE};
use crate::store::tasks::model::{Task, TaskState};
use crate::store::tasks::row::COLUMNS;
use crate::store::tasks::{
    ClaimPlan, ClaimRequest, Claimed, Finish, Interruption, LogBatch, NewTask, OnStored, Owner,
    Page, ProgressUpdate, StateCount, TaskFilter, TaskLog, TaskStore,
};
use crate::store::webhooks::ConfiguredHooks;

/// Name of the database file in the data folder.
pub const DB_FILE: &str = "stevedore.db";
/// Idle reader connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// The embedded SQLite [`TaskStore`].
pub struct SqliteStore {
    path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// How far the log is durable: reads wait for what they saw.
    marks: Arc<Marks>,
    /// The configured webhooks, matched at each task end with the stored ones.
    configured: Arc<ConfiguredHooks>,
    /// A failpoint before the commit of early claims, empty outside tests.
    #[cfg_attr(not(test), allow(dead_code, reason = "set by tests only"))]
    hold: HoldSlot,
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
        let configured = Arc::new(ConfiguredHooks::default());
        let writer_hooks = configured.clone();
        let writer = std::thread::Builder::new()
            .name("stevedore-db-writer".into())
            .spawn(move || {
                writer_loop(
                    conn,
                    (secrets, writer_hooks),
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
            configured,
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
        self.hold.hold()
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

    /// Apply `write` and wait until it is durable.
    async fn apply(&self, write: Write) -> anyhow::Result<Done> {
        self.write(|reply| Op::Write(write, reply)).await
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
#[async_trait]
impl TaskStore for SqliteStore {
    async fn insert(&self, task: NewTask) -> anyhow::Result<Task> {
        self.apply(Write::Insert(task, None)).await?.task()
    }

    async fn insert_then(&self, task: NewTask, on_stored: OnStored) -> anyhow::Result<Task> {
        self.apply(Write::Insert(task, Some(on_stored)))
            .await?
            .task()
    }

    async fn claim(&self, req: ClaimRequest) -> anyhow::Result<Vec<Claimed>> {
        if req.max == 0 || req.categories.is_empty() {
            return Ok(Vec::new());
        }
        self.apply(Write::Claim(req)).await?.claimed()
    }

    async fn claim_early(&self, plan: ClaimPlan) -> anyhow::Result<Vec<Claimed>> {
        self.write(|r| Op::ClaimEarly(plan, r)).await
    }

    async fn save_progress(&self, updates: Vec<ProgressUpdate>) -> anyhow::Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        self.apply(Write::Progress(updates)).await?.unit()
    }

    async fn finish(&self, finish: Finish) -> anyhow::Result<bool> {
        self.apply(Write::Finish(finish)).await?.bool()
    }

    async fn save_logs(&self, batches: Vec<LogBatch>) -> anyhow::Result<()> {
        if batches.is_empty() {
            return Ok(());
        }
        self.apply(Write::Logs(batches)).await?.unit()
    }

    async fn log(&self, id: i64) -> anyhow::Result<TaskLog> {
        self.read(move |c| read_log(c, id)).await
    }

    async fn interrupt_running(&self, end: Interruption) -> anyhow::Result<Vec<i64>> {
        self.apply(Write::Interrupt(end)).await?.ids()
    }

    async fn delete_if(&self, id: i64, states: &[TaskState]) -> anyhow::Result<bool> {
        let states = states.to_vec();
        self.apply(Write::DeleteIf { id, states }).await?.bool()
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
        self.apply(Write::DeleteFinished { user, category })
            .await?
            .tasks()
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
        self.apply(Write::DeleteEnded { ended_before, max })
            .await?
            .tasks()
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
                    state: parse_state(r, 1)?,
                    count: r.get::<_, i64>(2)? as u64,
                    oldest_init: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    fn schedules(&self) -> Option<&dyn crate::store::ScheduleStore> {
        Some(self)
    }

    fn webhooks(&self) -> Option<&dyn crate::store::WebhookStore> {
        Some(self)
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
