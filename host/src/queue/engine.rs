//! The scheduler behind [`super::Queue`]: one dispatcher that claims waiting
//! tasks from the store, one tokio task per run, live state of running tasks
//! in memory, and a flusher that writes coalesced progress.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use futures::FutureExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::executor::{
    CategoryInfo, Executor, Finding, LogLevel, Outcome, Reporter, TaskContext, ValidationError,
};
use super::mask::{
    has_secrets, marks_anything, mask_pointers, mask_secrets, mask_text, secret_values,
};
use super::model::{task_name, ResultCode, Task, TaskEvent, TaskState};
use super::store::{
    ClaimPlan, ClaimRequest, Claimed, Durable, Finish, Interruption, NewTask, OnStored, Page,
    ProgressUpdate, TaskFilter, TaskStore,
};
use super::{
    DeleteSelector, FindingEvent, LogEvent, QueueConfig, QueueError, TaskLog, Viewer, CANCEL_GRACE,
    EVENT_CAPACITY, INTERRUPTED_DETAIL, LOG_FLUSH_INTERVAL, PROGRESS_FLUSH_INTERVAL,
    RETENTION_BATCH, RETENTION_INTERVAL, SHUTDOWN_GRACE,
};
use crate::store::task_log::{now_ms, LogBatch, LogBuffer, LogLine};

pub(crate) use super::model::now;

/// Why a run's token was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelReason {
    Deleted,
    Shutdown,
}

/// A running task, in memory.
struct Live {
    task: Mutex<Task>,
    cancel: CancellationToken,
    reason: Mutex<Option<CancelReason>>,
    /// Progress changed since the last flush.
    dirty: AtomicBool,
    /// Its claim is durable and `running` was announced: events may follow.
    started: AtomicBool,
    /// Becomes true once the end of the run is stored and announced.
    done: watch::Sender<bool>,
    /// Its log lines, from its first one on (a run that logs nothing has none).
    log: Mutex<Option<LogBuffer>>,
    /// Lines were logged since the last write.
    log_dirty: AtomicBool,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_category: HashMap<String, usize>,
    per_user: HashMap<String, usize>,
}

pub(super) struct Inner {
    store: Arc<dyn TaskStore>,
    pub(super) executor: Arc<dyn Executor>,
    /// The executor's categories by name, read once at start: plugins are
    /// loaded before the queue starts and never change while it runs, and
    /// every submit and claim looks here without copying them.
    categories: BTreeMap<String, CategoryInfo>,
    pub(super) config: QueueConfig,
    pub(super) events: broadcast::Sender<TaskEvent>,
    /// Log lines of this node's runs, for event streams that asked for them.
    pub(super) logs: broadcast::Sender<LogEvent>,
    /// What this node's runs found ([`super::Finding`]), for event streams.
    pub(super) findings: broadcast::Sender<FindingEvent>,
    /// Held while log lines are written: the end of a run takes its last
    /// lines only once no earlier ones are on their way.
    log_flush: tokio::sync::Mutex<()>,
    pub(super) wake: Notify,
    counts: Mutex<Counts>,
    live: Mutex<HashMap<i64, Arc<Live>>>,
    /// Other nodes' tasks as last relayed to the event stream ([`super::nodes`]).
    pub(super) relayed: Mutex<HashMap<i64, Task>>,
    closing: AtomicBool,
    pub(super) stop: CancellationToken,
    background: Mutex<Vec<JoinHandle<()>>>,
    shutdown_done: tokio::sync::Mutex<bool>,
}

/// A task to store: who submits it, its category and params, and the
/// node that is to run it (`None`: this one).
pub(super) struct Submission<'a> {
    pub(super) user: &'a str,
    pub(super) category: &'a str,
    pub(super) params: &'a serde_json::Value,
    pub(super) node: Option<&'a str>,
}

impl Inner {
    pub(super) async fn start(
        store: Arc<dyn TaskStore>,
        executor: Arc<dyn Executor>,
        mut config: QueueConfig,
    ) -> anyhow::Result<Arc<Inner>> {
        config.workers = config.workers.max(1);
        let interrupted = store
            .interrupt_running(Interruption::new(
                ResultCode::Interrupted.code(),
                INTERRUPTED_DETAIL,
                now(),
            ))
            .await?;
        for id in &interrupted {
            tracing::warn!(task_id = id, "{INTERRUPTED_DETAIL}");
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (logs, _) = broadcast::channel(EVENT_CAPACITY);
        let (findings, _) = broadcast::channel(EVENT_CAPACITY);
        let categories = executor
            .categories()
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let inner = Arc::new(Inner {
            store,
            executor,
            categories,
            config,
            events,
            logs,
            findings,
            log_flush: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            counts: Mutex::new(Counts::default()),
            live: Mutex::new(HashMap::new()),
            relayed: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            stop: CancellationToken::new(),
            background: Mutex::new(Vec::new()),
            shutdown_done: tokio::sync::Mutex::new(false),
        });
        let dispatcher = tokio::spawn(dispatch_loop(inner.clone()));
        let flusher = tokio::spawn(flush_loop(inner.clone()));
        inner.background.lock().extend([dispatcher, flusher]);
        if let Some(keep) = inner.config.retention {
            let sweeper = tokio::spawn(retention_loop(inner.clone(), keep));
            inner.background.lock().push(sweeper);
        }
        if let Some(notices) = inner.store.notices() {
            let listener = tokio::spawn(super::nodes::notice_loop(inner.clone(), notices));
            let liveness = tokio::spawn(super::nodes::liveness_loop(inner.clone()));
            inner.background.lock().extend([listener, liveness]);
        }
        inner.wake.notify_one();
        tracing::info!(
            workers = inner.config.workers,
            interrupted = interrupted.len(),
            "task queue started"
        );
        Ok(inner)
    }

    /// Let the dispatcher and the flusher end (and with them their hold on `self`).
    /// Cancel this node's run of task `id`, as a deletion does (a `DELETE`
    /// sent to another node). Returns whether it runs here.
    pub(super) fn cancel_local(&self, id: i64) -> bool {
        let live = self.live.lock().get(&id).cloned();
        match live {
            Some(live) => {
                *live.reason.lock() = Some(CancelReason::Deleted);
                live.cancel.cancel();
                tracing::info!(
                    task_id = id,
                    "cancelling running task for a deletion on another node"
                );
                true
            }
            None => false,
        }
    }

    /// One category, as the executor described it at start; an alias no
    /// plugin serves is its category ([`super::CATEGORY_ALIASES`]).
    pub(super) fn category(&self, name: &str) -> Option<&CategoryInfo> {
        self.categories
            .get(name)
            .or_else(|| self.categories.get(super::alias_target(name)))
    }

    /// One category a plugin serves under exactly this name.
    pub(super) fn category_served(&self, name: &str) -> Option<&CategoryInfo> {
        self.categories.get(name)
    }

    /// The name a category's runs are counted and run under: the served
    /// category of an alias, any other name as it is.
    fn run_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.category(name).map_or(name, |c| c.name.as_str())
    }

    /// Every category, sorted by name.
    pub(super) fn categories(&self) -> impl Iterator<Item = &CategoryInfo> {
        self.categories.values()
    }

    pub(super) fn stop_dispatching(&self) {
        self.stop.cancel();
    }

    pub(super) fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    /// Whether anyone listens to the events (a snapshot to announce is a
    /// copy of the task: none is made for nobody).
    fn listened(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Announce that `gone` were deleted; returns their ids, in order.
    fn announce_deleted(&self, gone: Vec<Task>) -> Vec<i64> {
        let ids = gone.iter().map(|t| t.id).collect();
        if self.listened() {
            for task in gone {
                let _ = self.events.send(TaskEvent::deleted(task));
            }
        }
        ids
    }

    pub(super) fn announce(&self, task: Task) {
        // No subscriber is fine.
        let _ = self.events.send(TaskEvent::changed(task));
    }

    pub(super) async fn submit(&self, submission: Submission<'_>) -> Result<Task, QueueError> {
        let Submission {
            user,
            category,
            params,
            node,
        } = submission;
        if self.closing.load(Ordering::Acquire) {
            return Err(QueueError::Store(anyhow::anyhow!(
                "the queue is shutting down"
            )));
        }
        let node = match node {
            Some(n) if Some(n) == self.store.node() => None,
            Some(n) => {
                if !self.store.node_alive(n, self.config.lease).await? {
                    return Err(QueueError::UnknownNode {
                        node: n.to_string(),
                    });
                }
                Some(n)
            }
            None => None,
        };
        let mut task = self.prepare(user, category, params).await?;
        task.node = node.map(str::to_string);
        let task = self.store.insert_then(task, self.on_stored()).await?;
        tracing::info!(task_id = task.id, category = %task.category, user = %task.user, "task submitted");
        self.wake.notify_one();
        Ok(task)
    }

    /// The task a submit of `params` to `category` by `user` would store
    /// (for this node), once the category's plugin has validated the
    /// params and their secrets are masked; nothing is stored.
    pub(super) async fn prepare(
        &self,
        user: &str,
        category: &str,
        params: &serde_json::Value,
    ) -> Result<NewTask, QueueError> {
        let info = self
            .category(category)
            .ok_or_else(|| QueueError::UnknownCategory(category.to_string()))?;
        let full = serde_json::to_string(params).map_err(|e| QueueError::Invalid(e.to_string()))?;
        let marked = match self.executor.validate_for(user, &info.name, &full).await {
            Ok(marked) => marked,
            Err(ValidationError::Invalid(m)) => return Err(QueueError::Invalid(m)),
            Err(ValidationError::Plugin(m)) => return Err(QueueError::Plugin(m)),
        };
        // Params with secrets are stored twice: masked for showing, and
        // whole, sealed, for the run. Most have none: one text, no copy.
        let secret = has_secrets(params, &info.secret_fields) || marks_anything(params, &marked);
        let (shown, full) = if secret {
            let (mut masked, _) = mask_secrets(params, &info.secret_fields);
            mask_pointers(&mut masked, &marked);
            let shown = serde_json::to_string(&masked).map_err(anyhow::Error::from)?;
            (shown, Some(full))
        } else {
            (full, None)
        };
        Ok(NewTask {
            // The name it was submitted as: an alias stays an alias.
            category: category.to_string(),
            user: user.to_string(),
            deletable: info.deletable,
            name: task_name(params),
            shown_params: shown,
            full_params: full,
            init: now(),
            node: None,
        })
    }

    /// Announces a task once the store has it durably: before any
    /// announcement of its run (see `OnStored`).
    pub(super) fn on_stored(&self) -> OnStored {
        let events = self.events.clone();
        Box::new(move |task: &Task| {
            // A copy only for someone listening.
            if events.receiver_count() > 0 {
                let _ = events.send(TaskEvent::changed(task.clone()));
            }
        })
    }

    /// Wake the dispatcher: a task was stored by someone else than `submit`.
    pub(super) fn wake_dispatcher(&self) {
        self.wake.notify_one();
    }

    /// Show the in-memory progress of running tasks over what the store has.
    fn overlay(&self, tasks: &mut [Task]) {
        let live = self.live.lock();
        if live.is_empty() {
            return;
        }
        for t in tasks.iter_mut().filter(|t| t.state == TaskState::Running) {
            if let Some(l) = live.get(&t.id) {
                let lt = l.task.lock();
                if lt.state == TaskState::Running {
                    t.progress = lt.progress;
                    t.detail_state.clone_from(&lt.detail_state);
                }
            }
        }
    }

    pub(super) async fn list(
        &self,
        viewer: &Viewer,
        category: Option<&str>,
    ) -> Result<Vec<Task>, QueueError> {
        let mut tasks = self.store.list(viewer.owner(), category).await?;
        self.overlay(&mut tasks);
        Ok(tasks)
    }

    pub(super) async fn list_page(
        &self,
        filter: TaskFilter<'_>,
        page: Page,
    ) -> Result<Vec<Task>, QueueError> {
        let mut tasks = self.store.list_page(filter, page).await?;
        self.overlay(&mut tasks);
        Ok(tasks)
    }

    /// Delete the finished tasks that ended before `ended_before`, one
    /// batch of [`RETENTION_BATCH`] per transaction, yielding between
    /// batches so other writes go first. Stops early when the queue stops.
    pub(super) async fn expire_finished(&self, ended_before: i64) -> anyhow::Result<usize> {
        let mut deleted = 0;
        while !self.stop.is_cancelled() {
            let gone = self
                .store
                .delete_ended_before(ended_before, RETENTION_BATCH)
                .await?;
            let n = gone.len();
            deleted += n;
            self.announce_deleted(gone);
            if n < RETENTION_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                ended_before,
                "deleted finished tasks past retention"
            );
        }
        Ok(deleted)
    }

    pub(super) async fn get_visible(&self, viewer: &Viewer, id: i64) -> Result<Task, QueueError> {
        match self.store.get(id).await? {
            Some(t) if viewer.is_admin || t.user == viewer.user => {
                let mut one = [t];
                self.overlay(&mut one);
                let [t] = one;
                Ok(t)
            }
            _ => Err(QueueError::NotFound(id)),
        }
    }

    pub(super) async fn delete(
        &self,
        viewer: &Viewer,
        selector: DeleteSelector,
    ) -> Result<Vec<i64>, QueueError> {
        let owner = viewer.owner();
        match selector {
            DeleteSelector::AllFinished => {
                Ok(self.announce_deleted(self.store.delete_finished(owner, None).await?))
            }
            DeleteSelector::Category(c) => {
                let gone = self.store.delete_finished(owner, Some(&c)).await?;
                if gone.is_empty() && self.category(&c).is_none() {
                    return Err(QueueError::UnknownCategory(c));
                }
                Ok(self.announce_deleted(gone))
            }
            DeleteSelector::Id(id) => self.delete_one(viewer, id).await,
        }
    }

    async fn delete_one(&self, viewer: &Viewer, id: i64) -> Result<Vec<i64>, QueueError> {
        const FINISHED: &[TaskState] = &[TaskState::Completed, TaskState::Error];
        // The state may change under us (claimed, ended); re-read and retry a few times.
        for _ in 0..5 {
            let task = self.get_visible(viewer, id).await?;
            match task.state {
                TaskState::Waiting => {
                    if self.store.delete_if(id, &[TaskState::Waiting]).await? {
                        tracing::info!(task_id = id, "waiting task cancelled and deleted");
                        let cancelled = Task {
                            state: TaskState::Error,
                            result: Some(ResultCode::Cancelled.code()),
                            detail_state: "cancelled".into(),
                            end: Some(now()),
                            ..task
                        };
                        if self.listened() {
                            self.announce(cancelled.clone());
                        }
                        return Ok(self.announce_deleted(vec![cancelled]));
                    }
                }
                TaskState::Running => {
                    if !task.deletable {
                        return Err(QueueError::Conflict(format!(
                            "task {id} is running and its category `{}` does not allow deleting a running task",
                            task.category
                        )));
                    }
                    let live = self.live.lock().get(&id).cloned();
                    let remote = task
                        .node
                        .as_deref()
                        .filter(|n| Some(*n) != self.store.node());
                    if let Some(live) = live {
                        *live.reason.lock() = Some(CancelReason::Deleted);
                        live.cancel.cancel();
                        tracing::info!(task_id = id, "cancelling running task for deletion");
                        let mut done = live.done.subscribe();
                        let ended = tokio::time::timeout(CANCEL_GRACE, done.wait_for(|d| *d)).await;
                        if ended.is_err() {
                            return Err(QueueError::Conflict(format!(
                                "task {id} was cancelled but has not stopped yet; try again"
                            )));
                        }
                    } else if let Some(node) = remote {
                        if !super::nodes::cancel_remote(self, node, id).await? {
                            return Err(QueueError::Conflict(format!(
                                "task {id} was cancelled on node `{node}` but has not stopped yet; try again"
                            )));
                        }
                    }
                    // Without a live run here, the run is ending right now (its end is
                    // stored before it leaves `live`) or belongs to another host.
                    if self.store.delete_if(id, FINISHED).await? {
                        return Ok(self.announce_deleted(vec![task]));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                TaskState::Completed | TaskState::Error => {
                    if self.store.delete_if(id, FINISHED).await? {
                        return Ok(self.announce_deleted(vec![task]));
                    }
                }
            }
        }
        Err(QueueError::Conflict(format!(
            "task {id} is changing state; try again"
        )))
    }

    /// What the free slots allow to claim now, or `None` for nothing.
    fn claim_request(&self, now: i64) -> Option<ClaimRequest> {
        let counts = self.counts.lock();
        let free = self.config.workers.saturating_sub(counts.total);
        if free == 0 {
            return None;
        }
        let categories: Vec<(String, Option<usize>)> = self
            .categories
            .keys()
            .filter_map(|name| {
                let left = self.config.per_category.get(name).map(|limit| {
                    limit.saturating_sub(counts.per_category.get(name).copied().unwrap_or(0))
                });
                (left != Some(0)).then(|| (name.clone(), left))
            })
            .collect();
        // Tasks submitted under an alias wait under its name; they share
        // their category's allowance (`ClaimRequest::take` counts both).
        let mut categories = categories;
        for (alias, target) in super::CATEGORY_ALIASES {
            if self.categories.contains_key(*alias) {
                continue;
            }
            let left = categories
                .iter()
                .find(|(c, _)| c == target)
                .map(|(_, left)| *left);
            if let Some(left) = left {
                categories.push((alias.to_string(), left));
            }
        }
        if categories.is_empty() {
            return None;
        }
        let users = self
            .config
            .per_user
            .iter()
            .map(|(u, limit)| {
                let running = counts.per_user.get(u).copied().unwrap_or(0);
                (u.clone(), limit.saturating_sub(running))
            })
            .collect();
        Some(ClaimRequest {
            max: free,
            categories,
            users,
            now,
        })
    }

    /// Claim what the free slots allow and start it. Returns how many started.
    ///
    /// The claim is sized when the store runs it (runs that ended while it
    /// queued behind other writes have freed their slots by then), and the
    /// claimed tasks start before it is durable: each run holds its effects
    /// and its `running` announcement until then (see [`crate::store::durable`]).
    /// One claim at a time: a claim's tasks are counted (in `launch`)
    /// before the next claim is sized.
    async fn dispatch_once(self: &Arc<Self>) -> anyhow::Result<usize> {
        if self.counts.lock().total >= self.config.workers {
            return Ok(0);
        }
        let me = self.clone();
        let plan: ClaimPlan = Box::new(move |now| me.claim_request(now));
        let claimed = self.store.claim_early(plan).await?;
        let n = claimed.len();
        for c in claimed {
            self.launch(c);
        }
        Ok(n)
    }

    fn launch(self: &Arc<Self>, claimed: Claimed) {
        let Claimed {
            task,
            full_params,
            durable,
        } = claimed;
        let id = task.id;
        {
            let mut counts = self.counts.lock();
            counts.total += 1;
            *counts
                .per_category
                .entry(self.run_name(&task.category).to_string())
                .or_default() += 1;
            *counts.per_user.entry(task.user.clone()).or_default() += 1;
        }
        let span = tracing::info_span!("task", task_id = id, category = %task.category);
        let live = Arc::new(Live {
            task: Mutex::new(task),
            cancel: CancellationToken::new(),
            reason: Mutex::new(None),
            dirty: AtomicBool::new(false),
            started: AtomicBool::new(false),
            done: watch::channel(false).0,
            log: Mutex::new(None),
            log_dirty: AtomicBool::new(false),
        });
        self.live.lock().insert(id, live.clone());
        let inner = self.clone();
        tokio::spawn(async move { inner.run(live, full_params, durable).await }.instrument(span));
    }

    /// Give back the slot of a run of `category` by `user`.
    fn release_slot(&self, category: &str, user: &str) {
        let category = self.run_name(category);
        let mut counts = self.counts.lock();
        counts.total -= 1;
        if let Some(n) = counts.per_category.get_mut(category) {
            *n -= 1;
        }
        if let Some(n) = counts.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                counts.per_user.remove(user);
            }
        }
    }

    /// Announce the run as started once its claim is durable; the error
    /// when the claim was rolled back instead.
    async fn announce_start(&self, live: &Live, durable: &Durable) -> Result<(), String> {
        durable.wait().await?;
        tracing::info!("task started");
        live.started.store(true, Ordering::Release);
        if self.listened() {
            let snapshot = live.task.lock().clone();
            self.announce(snapshot);
        }
        Ok(())
    }

    async fn run(self: Arc<Self>, live: Arc<Live>, full_params: String, durable: Durable) {
        let (id, category, user) = {
            let t = live.task.lock();
            // A task submitted under an alias runs as its category.
            (t.id, self.run_name(&t.category).to_string(), t.user.clone())
        };
        // Run time for the metrics, from a monotonic clock (the stored
        // `start`/`end` are epoch seconds, too coarse and not monotonic).
        let started = std::time::Instant::now();
        // The values the shown params mask are masked in its log lines too.
        let secrets = {
            let t = live.task.lock();
            if t.params.get() == full_params {
                Vec::new()
            } else {
                match (
                    serde_json::from_str(&full_params),
                    serde_json::from_str(t.params.get()),
                ) {
                    (Ok(full), Ok(shown)) => secret_values(&full, &shown),
                    _ => Vec::new(),
                }
            }
        };
        let ctx = TaskContext {
            id,
            category: category.clone(),
            user: user.clone(),
            params: full_params,
            durable: durable.clone(),
            cancel: live.cancel.clone(),
            reporter: Arc::new(TaskReporter {
                id,
                category: category.clone(),
                user: user.clone(),
                live: live.clone(),
                events: self.events.clone(),
                logs: self.logs.clone(),
                findings: self.findings.clone(),
                limits: self.config.task_log,
                secrets,
            }),
        };
        let run = async {
            match AssertUnwindSafe(self.executor.run(ctx))
                .catch_unwind()
                .await
            {
                Ok(o) => o,
                Err(_) => Outcome::Failed {
                    code: ResultCode::PluginError,
                    message: "the executor panicked".into(),
                },
            }
        };
        // An executor that holds its effects until the claim is durable
        // runs meanwhile (what it reports before is in the announcement);
        // any other starts once the run is announced.
        let announce = self.announce_start(&live, &durable);
        tokio::pin!(announce);
        let mut announced: Option<Result<(), String>> = None;
        let outcome = if self.executor.holds_effects_until_durable() {
            tokio::pin!(run);
            loop {
                tokio::select! {
                    biased;
                    r = &mut announce, if announced.is_none() => announced = Some(r),
                    outcome = &mut run => break outcome,
                }
            }
        } else {
            if let Err(error) = (&mut announce).await {
                self.release_slot(&category, &user);
                self.forget_run(&live, &error);
                return;
            }
            announced = Some(Ok(()));
            run.await
        };
        let reason = *live.reason.lock();
        let progress = live.task.lock().progress;
        let (state, result, detail, progress) = match outcome {
            Outcome::Completed(detail) => (
                TaskState::Completed,
                0,
                detail.unwrap_or_else(|| "completed".into()),
                100,
            ),
            Outcome::Failed { code, message } => match reason {
                Some(CancelReason::Deleted) => (
                    TaskState::Error,
                    ResultCode::Cancelled.code(),
                    message,
                    progress,
                ),
                Some(CancelReason::Shutdown) => (
                    TaskState::Error,
                    ResultCode::Interrupted.code(),
                    INTERRUPTED_DETAIL.to_string(),
                    progress,
                ),
                None => (TaskState::Error, code.code(), message, progress),
            },
        };
        let end = now();
        let log = if live.log.lock().is_some() {
            // After any write of earlier lines, so that none lands after the end.
            let _flushing = self.log_flush.lock().await;
            live.log_dirty.store(false, Ordering::Release);
            live.log.lock().as_mut().and_then(|b| b.take_batch(id))
        } else {
            None
        };
        let fin = Finish {
            id,
            state,
            result,
            detail: detail.clone(),
            progress,
            end,
            log,
        };
        // Hand the end to the store first (a store sends its write on the first
        // poll), then free the slot: the next claim is queued behind this write,
        // so the store never shows more running tasks than the limits allow,
        // and the next task starts while this end is being committed (a worker
        // limits runs, not pending writes). The end may be written before
        // the claim is durable: it is written after it, so when the claim
        // is rolled back the end changes nothing.
        let mut stored = self.store.finish(fin);
        let first = futures::poll!(stored.as_mut());
        self.release_slot(&category, &user);
        self.wake.notify_one();
        // The end is announced after the start, so once the claim is durable.
        let claim = match announced {
            Some(claim) => claim,
            None => announce.await,
        };
        let stored = match first {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => stored.await,
        };
        if let Err(error) = claim {
            self.forget_run(&live, &error);
            return;
        }
        match stored {
            Ok(true) => {
                // Counted before it is announced: a client that has seen the
                // end on the event stream finds it in `/metrics`.
                crate::metrics::task_finished(
                    &category,
                    state.as_str(),
                    started.elapsed().as_secs_f64(),
                );
                if state == TaskState::Completed {
                    tracing::info!("task completed");
                } else {
                    tracing::warn!(result, %detail, "task failed");
                }
                let snapshot = {
                    let mut t = live.task.lock();
                    t.state = state;
                    t.result = Some(result);
                    t.detail_state = detail;
                    t.progress = progress;
                    t.end = Some(end);
                    self.listened().then(|| t.clone())
                };
                if let Some(snapshot) = snapshot {
                    self.announce(snapshot);
                }
            }
            Ok(false) => {
                tracing::warn!("task end not recorded: it is no longer running in the store")
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "recording the end of the task failed")
            }
        }
        self.live.lock().remove(&id);
        live.done.send_replace(true);
    }

    /// A run whose claim was rolled back (its slot already given back): its
    /// task is `waiting` again (an end it wrote changed nothing), and the
    /// run, which did nothing outside, is forgotten, never announced.
    fn forget_run(&self, live: &Live, error: &str) {
        tracing::warn!(%error, "the claim of the task was not stored; it waits to run again");
        let id = live.task.lock().id;
        self.live.lock().remove(&id);
        live.done.send_replace(true);
        self.wake.notify_one();
    }

    async fn flush_progress(&self) {
        let updates: Vec<ProgressUpdate> = {
            let live = self.live.lock();
            live.values()
                .filter(|l| l.dirty.swap(false, Ordering::AcqRel))
                .map(|l| {
                    let t = l.task.lock();
                    ProgressUpdate {
                        id: t.id,
                        progress: t.progress,
                        detail: t.detail_state.clone(),
                    }
                })
                .collect()
        };
        if let Err(e) = self.store.save_progress(updates).await {
            tracing::warn!(error = %format!("{e:#}"), "saving task progress failed");
        }
    }

    /// Write the new log lines of running tasks, in one store call.
    async fn flush_logs(&self) {
        let _flushing = self.log_flush.lock().await;
        let batches: Vec<LogBatch> = {
            let live = self.live.lock();
            live.iter()
                .filter(|(_, l)| l.log_dirty.swap(false, Ordering::AcqRel))
                .filter_map(|(id, l)| l.log.lock().as_mut().and_then(|b| b.take_batch(*id)))
                .collect()
        };
        if batches.is_empty() {
            return;
        }
        if let Err(e) = self.store.save_logs(batches).await {
            tracing::warn!(error = %format!("{e:#}"), "saving task log lines failed");
        }
    }

    /// The log of task `id`, if `viewer` may see the task.
    pub(super) async fn log_of(&self, viewer: &Viewer, id: i64) -> Result<TaskLog, QueueError> {
        self.get_visible(viewer, id).await?;
        let live = self.live.lock().get(&id).cloned();
        if let Some(live) = live {
            return Ok(live
                .log
                .lock()
                .as_ref()
                .map(LogBuffer::snapshot)
                .unwrap_or_default());
        }
        Ok(self.store.log(id).await?)
    }

    pub(super) async fn shutdown(&self) {
        let mut done = self.shutdown_done.lock().await;
        if *done {
            return;
        }
        self.closing.store(true, Ordering::Release);
        self.stop.cancel();
        // The dispatcher ends after its current pass: nothing starts after this.
        let handles: Vec<_> = self.background.lock().drain(..).collect();
        for h in handles {
            let _ = h.await;
        }
        let running: Vec<Arc<Live>> = self.live.lock().values().cloned().collect();
        for l in &running {
            *l.reason.lock() = Some(CancelReason::Shutdown);
            l.cancel.cancel();
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for l in &running {
            let mut rx = l.done.subscribe();
            if tokio::time::timeout_at(deadline, rx.wait_for(|d| *d))
                .await
                .is_err()
            {
                tracing::warn!(
                    task_id = l.task.lock().id,
                    "task did not stop in time; it will be marked interrupted on the next start"
                );
            }
        }
        self.flush_progress().await;
        self.flush_logs().await;
        if let Err(e) = self.store.close().await {
            tracing::error!(error = %format!("{e:#}"), "closing the task store failed");
        }
        tracing::info!("task queue stopped");
        *done = true;
    }
}

async fn dispatch_loop(inner: Arc<Inner>) {
    loop {
        if inner.stop.is_cancelled() {
            break;
        }
        if let Err(e) = inner.dispatch_once().await {
            tracing::error!(error = %format!("{e:#}"), "claiming tasks failed");
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = inner.stop.cancelled() => break,
            }
            continue;
        }
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = inner.stop.cancelled() => break,
        }
    }
}

/// Delete finished tasks `keep` after their end: at start, then every
/// [`RETENTION_INTERVAL`].
async fn retention_loop(inner: Arc<Inner>, keep: std::time::Duration) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.stop.cancelled() => break,
        }
        let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
        if let Err(e) = inner.expire_finished(now().saturating_sub(keep)).await {
            tracing::warn!(error = %format!("{e:#}"), "deleting finished tasks past retention failed");
        }
    }
}

async fn flush_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(PROGRESS_FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log_tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
    log_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => inner.flush_progress().await,
            _ = log_tick.tick() => inner.flush_logs().await,
            _ = inner.stop.cancelled() => break,
        }
    }
}

/// The [`Reporter`] handed to the executor for one run.
struct TaskReporter {
    id: i64,
    category: String,
    user: String,
    live: Arc<Live>,
    events: broadcast::Sender<TaskEvent>,
    logs: broadcast::Sender<LogEvent>,
    findings: broadcast::Sender<FindingEvent>,
    limits: super::LogLimits,
    /// The values its params mask, masked in its lines too.
    secrets: Vec<String>,
}

impl TaskReporter {
    /// Keep a line in the task's log (masked) and send it to the event
    /// streams that asked for lines.
    fn record(&self, level: LogLevel, message: &str) {
        if !self.limits.keeps_any() {
            return;
        }
        let line = LogLine {
            ts: now_ms(),
            level,
            message: mask_text(message, &self.secrets).into_owned(),
        };
        if self.logs.receiver_count() > 0 {
            let _ = self.logs.send(LogEvent {
                id: self.id,
                user: self.user.clone(),
                category: self.live.task.lock().category.clone(),
                line: line.clone(),
            });
        }
        self.live
            .log
            .lock()
            .get_or_insert_with(|| LogBuffer::new(self.limits))
            .push(line);
        self.live.log_dirty.store(true, Ordering::Release);
    }
}

impl Reporter for TaskReporter {
    fn progress(&self, percent: i32, detail: &str) {
        // Before its claim is durable, the run is not announced yet; with
        // nobody listening, nothing is copied to announce.
        let announce =
            self.live.started.load(Ordering::Acquire) && self.events.receiver_count() > 0;
        let snapshot = {
            let mut t = self.live.task.lock();
            if t.state != TaskState::Running {
                return;
            }
            let p = percent.min(100);
            t.progress = if p < 0 {
                -1
            } else if t.progress >= 0 {
                // Never backwards within a run, unless reset to unknown first.
                t.progress.max(p)
            } else {
                p
            };
            if t.detail_state != detail {
                t.detail_state = detail.to_string();
            }
            announce.then(|| t.clone())
        };
        self.live.dirty.store(true, Ordering::Release);
        if let Some(snapshot) = snapshot {
            let _ = self.events.send(TaskEvent::changed(snapshot));
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        // Explicit fields as well as the span: the plugin host may call this
        // from a thread outside the task's span. Masked there too.
        let (id, category) = (self.id, self.category.as_str());
        let message = mask_text(message, &self.secrets);
        match level {
            LogLevel::Debug => tracing::debug!(task_id = id, category, "{message}"),
            LogLevel::Info => tracing::info!(task_id = id, category, "{message}"),
            LogLevel::Warn => tracing::warn!(task_id = id, category, "{message}"),
            LogLevel::Error => tracing::error!(task_id = id, category, "{message}"),
        }
        self.record(level, &message);
    }

    /// Logged too, so that the task's log keeps it.
    fn announce(&self, finding: &Finding) {
        let line = serde_json::to_string(finding).unwrap_or_default();
        self.log(LogLevel::Info, &line);
        let _ = self.findings.send(FindingEvent {
            id: self.id,
            user: self.user.clone(),
            category: self.category.clone(),
            finding: finding.clone(),
        });
    }

    fn relay(&self, percent: i32, detail: &str) {
        let changed = self.live.task.lock().detail_state != detail;
        self.progress(percent, detail);
        if changed {
            self.record(LogLevel::Info, detail);
        }
    }
}
