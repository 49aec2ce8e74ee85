//! The writer thread of the SQLite task store: every write as it arrives in
//! one open transaction, committed once the syncer is idle (group commit),
//! the replies handed to the syncer.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::anyhow;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::failpoint::HoldSlot;
use super::schema::Ids;
use super::sql::{
    claim, delete_ended_before, delete_finished, delete_if, finish, insert, interrupt_running,
    save_logs, save_progress,
};
use crate::store::durable::{Committer, Durable};
use crate::store::secret::SecretBox;
use crate::store::sqlite::wal_sync::{Batch, Marks, Settle};
use crate::store::task_log::LogBatch;
use crate::store::tasks::model::{now, Task, TaskState};
use crate::store::tasks::{
    ClaimPlan, ClaimRequest, Claimed, Finish, Interruption, NewTask, OnStored, ProgressUpdate,
};
use crate::store::webhooks::ConfiguredHooks;

/// Most writes applied in one transaction.
pub(super) const MAX_BATCH: usize = 4096;

/// Where the result of an operation goes.
pub(super) type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

/// What the writer is asked to do.
pub(super) enum Op {
    /// A write, answered once its batch is durable.
    Write(Write, Reply<Done>),
    /// Claims answered before their commit ([`crate::store::TaskStore::claim_early`]).
    ClaimEarly(ClaimPlan, Reply<Vec<Claimed>>),
    /// Commit what was applied, answer once it is durable, and stop.
    Close(Reply<()>),
}

/// A write of the task store, each one operation of
/// [`crate::store::TaskStore`].
pub(super) enum Write {
    /// Store a waiting task; `OnStored` is told once it is durable.
    Insert(NewTask, Option<OnStored>),
    /// Claim waiting tasks.
    Claim(ClaimRequest),
    /// Record progress of running tasks.
    Progress(Vec<ProgressUpdate>),
    /// Record log lines of tasks.
    Logs(Vec<LogBatch>),
    /// Record the end of a run.
    Finish(Finish),
    /// End every running task as interrupted.
    Interrupt(Interruption),
    /// Delete a task in one of `states`.
    DeleteIf { id: i64, states: Vec<TaskState> },
    /// Delete finished tasks of a user (or anyone) and category.
    DeleteFinished {
        user: Option<String>,
        category: Option<String>,
    },
    /// Retention: delete finished tasks that ended before a time.
    DeleteEnded { ended_before: i64, max: usize },
    /// Any other write (the schedules'), run in a savepoint of its own; a
    /// [`Done::Task`] it gives is told to the `OnStored` once durable.
    Run(RunWrite, Option<OnStored>),
}

/// The body of a [`Write::Run`].
pub(super) type RunWrite =
    Box<dyn FnOnce(&Connection, &SecretBox, &mut Ids) -> anyhow::Result<Done> + Send>;

/// What a [`Write`] gave.
pub(super) enum Done {
    Task(Task),
    Claimed(Vec<Claimed>),
    Unit(()),
    Bool(bool),
    Ids(Vec<i64>),
    Tasks(Vec<Task>),
    /// What a [`Write::Run`] gave, of its own type.
    Any(Box<dyn std::any::Any + Send>),
}

/// `Done::<name>()`: the value of the variant a write gives, which is the
/// variant its [`Write`] always answers with.
macro_rules! done_as {
    ($($name:ident: $variant:ident($t:ty)),* $(,)?) => {
        impl Done {
            $(
                pub(super) fn $name(self) -> anyhow::Result<$t> {
                    match self {
                        Done::$variant(v) => Ok(v),
                        _ => Err(anyhow!("the database writer answered another operation")),
                    }
                }
            )*
        }
    };
}
done_as!(task: Task(Task), claimed: Claimed(Vec<Claimed>), unit: Unit(()), bool: Bool(bool),
    ids: Ids(Vec<i64>), tasks: Tasks(Vec<Task>));

/// Whether `op` needs the log on disk before its reply: all but progress
/// updates and task log lines, which are advisory and made durable by the
/// next commit that does (a transaction of those only is answered without
/// an fsync).
pub(super) fn needs_sync(op: &Op) -> bool {
    !matches!(op, Op::Write(Write::Progress(_) | Write::Logs(_), _))
}

/// The writer thread: apply every write as it arrives in one open
/// transaction, commit it (without an fsync) once the syncer
/// ([`crate::store::sqlite::wal_sync`]) is idle, or the transaction is full, and hand the
/// replies to the syncer, which sends them once the log is on disk.
pub(super) fn writer_loop(
    mut conn: Connection,
    (secrets, hooks): (SecretBox, Arc<ConfiguredHooks>),
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
        txn.apply(&conn, (&secrets, &hooks), &mut ids, first);
        let mut applied = 1;
        loop {
            while applied < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => {
                        txn.apply(&conn, (&secrets, &hooks), &mut ids, op);
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
#[allow(
    clippy::large_enum_variant,
    reason = "a write's result is moved along, not boxed: no allocation per write"
)]
pub(super) enum Pending {
    /// A write's result, and whom to tell once it is stored.
    Write(Reply<Done>, anyhow::Result<Done>, Option<OnStored>),
    /// The close of the store.
    Close(Reply<()>),
    /// The claims of the batch answered early ([`crate::store::TaskStore::claim_early`]).
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
            Pending::Write(tx, r, on_stored) => {
                let r = pick(r, commit);
                if let (Ok(Done::Task(task)), Some(f)) = (&r, on_stored) {
                    f(task);
                }
                drop(tx.send(r))
            }
            Pending::Close(tx) => drop(tx.send(pick(Ok(()), commit))),
            Pending::Claims(committer) => committer.settle(commit),
        }
    }
}

/// One open write transaction of the writer: the writes applied so far and
/// their replies, waiting for the commit.
pub(super) struct Txn {
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
    /// answered at once). After a failed `BEGIN` every write is refused.
    fn apply(
        &mut self,
        conn: &Connection,
        (secrets, hooks): (&SecretBox, &ConfiguredHooks),
        ids: &mut Ids,
        op: Op,
    ) {
        self.needs_sync |= needs_sync(&op);
        let refused = self
            .begin
            .as_ref()
            .err()
            .map(|e| format!("cannot begin a transaction: {e}"));
        match op {
            Op::Write(write, reply) => match refused {
                Some(e) => drop(reply.send(Err(anyhow!(e)))),
                None => {
                    let (done, on_stored) = run(conn, secrets, hooks, ids, write);
                    self.pending.push(Pending::Write(reply, done, on_stored));
                }
            },
            Op::ClaimEarly(plan, reply) => {
                // The plan is asked only when the claim can run.
                let claimed = if let Some(e) = refused {
                    Err(anyhow!(e))
                } else if let Some(req) = plan(now()) {
                    let durable = &self.early.get_or_insert_with(Durable::pending).1;
                    let claimed = savepoint(conn, |c| claim(c, secrets, req, durable));
                    self.claimed_early |= claimed.as_ref().is_ok_and(|v| !v.is_empty());
                    claimed
                } else {
                    Ok(Vec::new())
                };
                // Answered now: the runs start while this batch commits.
                drop(reply.send(claimed));
            }
            Op::Close(reply) => {
                self.closing = true;
                self.pending.push(Pending::Close(reply));
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
        let fail_on_purpose = begin.is_ok() && claimed_early && hold.commit_fails();
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

/// Run one write in the open transaction: a write of several statements
/// in a savepoint of its own, so that its failure undoes it alone (SQLite
/// undoes a failed single statement itself).
fn run(
    conn: &Connection,
    secrets: &SecretBox,
    hooks: &ConfiguredHooks,
    ids: &mut Ids,
    write: Write,
) -> (anyhow::Result<Done>, Option<OnStored>) {
    let mut told = None;
    let done = match write {
        Write::Insert(t, on_stored) => {
            told = on_stored;
            if t.full_params.is_some() {
                savepoint(conn, |c| insert(c, secrets, ids, t))
            } else {
                insert(conn, secrets, ids, t)
            }
            .map(Done::Task)
        }
        Write::Claim(req) => {
            savepoint(conn, |c| claim(c, secrets, req, &Durable::ready())).map(Done::Claimed)
        }
        Write::Progress(u) => savepoint(conn, |c| save_progress(c, &u)).map(Done::Unit),
        Write::Logs(b) => savepoint(conn, |c| save_logs(c, &b)).map(Done::Unit),
        Write::Finish(f) => savepoint(conn, |c| finish(c, &hooks.get(), &f)).map(Done::Bool),
        Write::Interrupt(end) => {
            savepoint(conn, |c| interrupt_running(c, &hooks.get(), &end)).map(Done::Ids)
        }
        Write::DeleteIf { id, states } => savepoint(conn, |c| {
            ids.keep(c)?;
            delete_if(c, id, &states)
        })
        .map(Done::Bool),
        Write::DeleteFinished { user, category } => savepoint(conn, |c| {
            ids.keep(c)?;
            delete_finished(c, user.as_deref(), category.as_deref())
        })
        .map(Done::Tasks),
        Write::DeleteEnded { ended_before, max } => savepoint(conn, |c| {
            ids.keep(c)?;
            delete_ended_before(c, ended_before, max)
        })
        .map(Done::Tasks),
        Write::Run(f, on_stored) => {
            told = on_stored;
            savepoint(conn, |c| f(c, secrets, ids))
        }
    };
    (done, told)
}

/// Prepared statements kept per connection.
pub(super) const STATEMENT_CACHE: usize = 64;

/// Run one statement without parameters from the statement cache: the
/// transaction and savepoint statements run several times per batch, and
/// `execute_batch` would parse them every time.
pub(super) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

pub(super) fn savepoint<T>(
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

#[cfg(test)]
mod tests {
    use super::super::schema::migrate;
    use super::*;

    #[test]
    fn a_transaction_of_progress_only_commits_without_its_own_fsync() {
        let progress = || Op::Write(Write::Progress(Vec::new()), oneshot::channel().0);
        let finish = Op::Write(
            Write::Finish(Finish {
                id: 1,
                state: TaskState::Completed,
                result: 0,
                detail: String::new(),
                progress: 100,
                end: 1,
                log: None,
            }),
            oneshot::channel().0,
        );
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let (marks, secrets) = (Marks::new(), SecretBox::from_key(&[7; 32]));
        let mut ids = Ids::load(&conn).unwrap();
        let mut txn = Txn::begin(&conn, &marks);
        let hooks = ConfiguredHooks::default();
        txn.apply(&conn, (&secrets, &hooks), &mut ids, progress());
        txn.apply(&conn, (&secrets, &hooks), &mut ids, progress());
        assert!(!txn.needs_sync);
        txn.apply(&conn, (&secrets, &hooks), &mut ids, finish);
        assert!(txn.needs_sync);
        let (closing, batch) = txn.commit(&mut conn, &HoldSlot::default(), &marks);
        assert!(!closing && batch.needs_sync && batch.commit.is_ok());
        assert_eq!(batch.replies.len(), 3);
    }
}
