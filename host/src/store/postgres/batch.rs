//! Group commit for the PostgreSQL store: submits, claims and ends of runs
//! are queued to one writer task, which applies everything pending at the
//! time in one transaction with one `NOTIFY` per kind of change.
//!
//! Why not rely on PostgreSQL grouping concurrent commits itself: every
//! write of ours sends a `NOTIFY`, and a transaction that notifies takes a
//! database-wide lock from its pre-commit until its commit is flushed, so
//! notifying transactions commit one after another, an fsync each. One
//! transaction for a batch pays that once.
//!
//! The ends of a batch record their webhook deliveries in its transaction
//! ([`super::webhooks::record_ends`]).
//!
//! A write still returns only once its transaction committed. When a batch
//! fails, each of its writes is retried in a transaction of its own, so one
//! bad write fails alone and every caller gets its own answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use super::tasks::{
    cached_execute, cached_query, claim_in, claim_one, finish_one, insert_one, notify, row_to_task,
    COLUMNS,
};
use super::webhooks::record_ends;
use super::Database;
use crate::store::secret::SecretBox;
use crate::store::tasks::model::Task;
use crate::store::tasks::{ClaimRequest, Claimed, Finish, NewTask, Notice};
use crate::store::webhooks::{ConfiguredHooks, Hook};

/// Most writes applied in one transaction.
const MAX_BATCH: usize = 1024;

type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

/// A write waiting for the next batch.
enum Op {
    Insert(NewTask, Reply<Task>),
    Finish(Finish, Reply<bool>),
    Claim(ClaimRequest, Reply<Vec<Claimed>>),
    /// Answered once every write queued before it is applied.
    Flush(Reply<()>),
}

/// The handle on the writer task; dropping it ends the task once the
/// queued writes are applied.
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Op>,
}

impl Batcher {
    /// Start the writer task of one store.
    pub(super) fn start(
        db: Arc<Database>,
        secrets: Arc<SecretBox>,
        hooks: Arc<ConfiguredHooks>,
    ) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(db, secrets, hooks, rx));
        Batcher { tx }
    }

    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(op(reply))
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))?
    }

    /// Store a waiting task (see [`crate::store::TaskStore::insert`]).
    pub(super) async fn insert(&self, task: NewTask) -> anyhow::Result<Task> {
        self.call(|r| Op::Insert(task, r)).await
    }

    /// Record the end of a run (see [`crate::store::TaskStore::finish`]).
    pub(super) async fn finish(&self, finish: Finish) -> anyhow::Result<bool> {
        self.call(|r| Op::Finish(finish, r)).await
    }

    /// Claim waiting tasks (see [`crate::store::TaskStore::claim`]), after the
    /// submits and ends of the same batch: a task can be submitted and
    /// claimed in one commit.
    pub(super) async fn claim(&self, req: ClaimRequest) -> anyhow::Result<Vec<Claimed>> {
        self.call(|r| Op::Claim(req, r)).await
    }

    /// Wait until every write queued so far is applied.
    pub(super) async fn flush(&self) -> anyhow::Result<()> {
        self.call(Op::Flush).await
    }
}

async fn writer(
    db: Arc<Database>,
    secrets: Arc<SecretBox>,
    hooks: Arc<ConfiguredHooks>,
    mut rx: mpsc::UnboundedReceiver<Op>,
) {
    let mut ops = Vec::new();
    while rx.recv_many(&mut ops, MAX_BATCH).await > 0 {
        apply(&db, &secrets, &hooks.get(), std::mem::take(&mut ops)).await;
    }
}

/// Apply one batch and answer each of its writes; the ends record the
/// deliveries of `hooks` (the configured webhooks) and the stored ones.
async fn apply(db: &Database, secrets: &SecretBox, hooks: &[Hook], ops: Vec<Op>) {
    let mut inserts = Vec::new();
    let mut insert_replies = Vec::new();
    let mut finishes = Vec::new();
    let mut finish_replies = Vec::new();
    let mut claims = Vec::new();
    let mut claim_replies = Vec::new();
    let mut flushes = Vec::new();
    for op in ops {
        match op {
            Op::Insert(t, r) => {
                inserts.push(t);
                insert_replies.push(r);
            }
            Op::Finish(f, r) => {
                finishes.push(f);
                finish_replies.push(r);
            }
            Op::Claim(c, r) => {
                claims.push(c);
                claim_replies.push(r);
            }
            Op::Flush(r) => flushes.push(r),
        }
    }
    if !inserts.is_empty() || !finishes.is_empty() || !claims.is_empty() {
        let t0 = std::time::Instant::now();
        let r = commit(db, secrets, hooks, &inserts, &finishes, &claims).await;
        tracing::trace!(
            inserts = inserts.len(),
            finishes = finishes.len(),
            claims = claims.len(),
            took_us = t0.elapsed().as_micros() as u64,
            "task batch committed"
        );
        match r {
            Ok((tasks, updated, claimed)) => {
                for (reply, task) in insert_replies.into_iter().zip(tasks) {
                    let _ = reply.send(Ok(task));
                }
                for (reply, updated) in finish_replies.into_iter().zip(updated) {
                    let _ = reply.send(Ok(updated));
                }
                for (reply, claimed) in claim_replies.into_iter().zip(claimed) {
                    let _ = reply.send(Ok(claimed));
                }
            }
            Err(e) => {
                let writes = inserts.len() + finishes.len() + claims.len();
                if writes > 1 {
                    tracing::warn!(
                        writes,
                        error = %format!("{e:#}"),
                        "a batch of task writes failed; retrying each on its own"
                    );
                }
                for (reply, task) in insert_replies.into_iter().zip(inserts) {
                    let _ = reply.send(insert_one(db, secrets, task).await);
                }
                for (reply, finish) in finish_replies.into_iter().zip(finishes) {
                    let _ = reply.send(finish_one(db, hooks, &finish).await);
                }
                for (reply, claim) in claim_replies.into_iter().zip(claims) {
                    let _ = reply.send(claim_one(db, secrets, claim).await);
                }
            }
        }
    }
    for reply in flushes {
        let _ = reply.send(Ok(()));
    }
}

/// What one batch's transaction gives back: the inserted tasks (in the
/// order given), per finish whether it ended a running task, per claim the
/// claimed tasks.
type Committed = (Vec<Task>, Vec<bool>, Vec<Vec<Claimed>>);

/// One transaction for the whole batch.
async fn commit(
    db: &Database,
    secrets: &SecretBox,
    hooks: &[Hook],
    inserts: &[NewTask],
    finishes: &[Finish],
    claims: &[ClaimRequest],
) -> anyhow::Result<Committed> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    let me = db.node().to_string();

    let mut tasks = Vec::with_capacity(inserts.len());
    if !inserts.is_empty() {
        // Ids first, in the order the submits arrived, so that the ids given
        // out stay increasing in submit order and each secret can be sealed
        // to its task's id.
        let count = i32::try_from(inserts.len())?;
        let mut ids: Vec<i64> = cached_query(
            &tx,
            "SELECT nextval(pg_get_serial_sequence('tasks', 'id'))
                   FROM generate_series(1, $1::int)",
            &[&count],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        ids.sort_unstable();
        let nodes: Vec<&str> = inserts
            .iter()
            .map(|t| t.node.as_deref().unwrap_or(&me))
            .collect();
        let categories: Vec<&str> = inserts.iter().map(|t| t.category.as_str()).collect();
        let deletable: Vec<bool> = inserts.iter().map(|t| t.deletable).collect();
        let users: Vec<&str> = inserts.iter().map(|t| t.user.as_str()).collect();
        let params: Vec<&str> = inserts.iter().map(|t| t.shown_params.as_str()).collect();
        let inits: Vec<i64> = inserts.iter().map(|t| t.init).collect();
        let names: Vec<&str> = inserts.iter().map(|t| t.name.as_str()).collect();
        let rows = cached_query(
            &tx,
                &format!(
                    "INSERT INTO tasks (id, node, category, state, deletable, username, params, init, name)
                     OVERRIDING SYSTEM VALUE
                     SELECT u.id, u.node, u.category, 'waiting', u.deletable, u.username, u.params, u.init, u.name
                       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::text[],
                                   $6::text[], $7::bigint[], $8::text[])
                            AS u(id, node, category, deletable, username, params, init, name)
                     RETURNING {COLUMNS}"
                ),
                &[&ids, &nodes, &categories, &deletable, &users, &params, &inits, &names],
            )
            .await?;
        let mut stored: HashMap<i64, Task> = rows
            .iter()
            .map(|r| row_to_task(r).map(|t| (t.id, t)))
            .collect::<anyhow::Result<_>>()?;
        for id in &ids {
            tasks.push(
                stored
                    .remove(id)
                    .with_context(|| format!("task {id} was not stored"))?,
            );
        }
        let mut sealed_ids = Vec::new();
        let mut sealed = Vec::new();
        for (id, t) in ids.iter().zip(inserts) {
            if let Some(full) = &t.full_params {
                sealed.push(secrets.seal(*id, full.as_bytes())?);
                sealed_ids.push(*id);
            }
        }
        if !sealed_ids.is_empty() {
            cached_execute(
                &tx,
                "INSERT INTO task_secrets (task_id, sealed)
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&sealed_ids, &sealed],
            )
            .await?;
        }
        let mut per_node: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (id, node) in ids.iter().zip(&nodes) {
            per_node.entry(node).or_default().push(*id);
        }
        for (node, ids) in per_node {
            let notice = Notice::Submitted {
                node: node.to_string(),
                ids,
                origin: me.clone(),
            };
            notify(&tx, notice).await?;
        }
    }

    let mut updated = Vec::with_capacity(finishes.len());
    if !finishes.is_empty() {
        let ids: Vec<i64> = finishes.iter().map(|f| f.id).collect();
        let states: Vec<&str> = finishes.iter().map(|f| f.state.as_str()).collect();
        let results: Vec<i32> = finishes.iter().map(|f| f.result).collect();
        let details: Vec<&str> = finishes.iter().map(|f| f.detail.as_str()).collect();
        let progress: Vec<i32> = finishes.iter().map(|f| f.progress).collect();
        let ends: Vec<i64> = finishes.iter().map(|f| f.end).collect();
        let ended: HashSet<i64> = cached_query(
            &tx,
                "UPDATE tasks
                    SET state = u.state, result = u.result, detail_state = u.detail,
                        progress = u.progress, ended = u.ended
                   FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::int[], $6::bigint[])
                        AS u(id, state, result, detail, progress, ended)
                  WHERE tasks.id = u.id AND tasks.state = 'running'
                 RETURNING tasks.id",
                &[&ids, &states, &results, &details, &progress, &ends],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        cached_execute(
            &tx,
            "DELETE FROM task_secrets WHERE task_id = ANY($1)",
            &[&ids],
        )
        .await?;
        let logs: Vec<_> = finishes.iter().filter_map(|f| f.log.clone()).collect();
        if !logs.is_empty() {
            super::tasks::save_logs_in(&tx, &logs).await?;
        }
        updated.extend(ids.iter().map(|id| ended.contains(id)));
        if !ended.is_empty() {
            let mut changed: Vec<i64> = ended.into_iter().collect();
            changed.sort_unstable();
            record_ends(&tx, hooks, &changed, &me).await?;
            notify(
                &tx,
                Notice::Changed {
                    ids: changed,
                    origin: me.clone(),
                },
            )
            .await?;
        }
    }
    let mut claimed = Vec::with_capacity(claims.len());
    for req in claims {
        claimed.push(claim_in(&tx, db, secrets, req.clone()).await?);
    }
    tx.commit().await?;
    Ok((tasks, updated, claimed))
}
