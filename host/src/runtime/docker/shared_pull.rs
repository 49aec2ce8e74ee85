//! One engine pull for every task pulling the same image at the same time.
//!
//! The first caller of [`SharedPulls::pull`] for a [`PullKey`] starts a
//! *driver*: a spawned task that makes the engine request and follows its
//! progress stream. Callers that come while it runs join it instead of
//! asking the engine again. Each caller, first or joining, forwards the
//! driver's progress to its own task (a joiner gets the latest figure at
//! once) and waits for the driver's result or its own cancellation.
//!
//! The driver lives as long as someone waits for it: when the last waiter
//! goes (every task pulling the image was cancelled), the driver is aborted,
//! which drops its engine connection, and the engine stops the pull. When a
//! pull ends, its entry is removed, so a later pull asks the engine afresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::runtime::{CallContext, Error, RtResult};

/// What makes two pulls one: the image as the engine is asked for it and
/// the credentials it is asked with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PullKey {
    /// `fromImage`, with its registry (`127.0.0.1:5000/team/app`).
    from: String,
    /// The tag.
    tag: String,
    /// SHA-256 of the `X-Registry-Auth` header. Pulls under different
    /// credentials never share: the registry checks only the credentials of
    /// the request the engine makes, so a user without access to an image
    /// joining another user's authorised pull would get the image without
    /// the registry ever seeing (and refusing) their own credentials. Only
    /// the digest is kept, so the table holds no secrets.
    auth: [u8; 32],
}

impl PullKey {
    /// The key of a pull of `from:tag` sent with `auth_header`.
    pub fn new(from: &str, tag: &str, auth_header: &str) -> PullKey {
        PullKey {
            from: from.to_string(),
            tag: tag.to_string(),
            auth: Sha256::digest(auth_header.as_bytes()).into(),
        }
    }
}

/// The latest state of one shared pull, as every waiter sees it.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    /// The latest `(percent, detail)` the driver reported.
    progress: Option<(i32, String)>,
    /// Set once, when the driver's work ends.
    outcome: Option<RtResult<()>>,
}

/// Where a driver reports its progress: every waiter of the pull reads it.
pub struct PullProgress(Arc<watch::Sender<Snapshot>>);

impl PullProgress {
    /// Publish `percent` (0..=100) and its `detail` to every waiter.
    pub fn report(&self, percent: i32, detail: &str) {
        self.0
            .send_modify(|s| s.progress = Some((percent, detail.to_string())));
    }
}

/// One pull in flight.
struct Run {
    /// Tells this run from a later one of the same key.
    generation: u64,
    /// Callers waiting for it; at 0 the driver is aborted.
    waiters: usize,
    state: watch::Receiver<Snapshot>,
    driver: AbortHandle,
}

#[derive(Default)]
struct Runs {
    by_key: HashMap<PullKey, Run>,
    next_generation: u64,
}

impl Runs {
    /// `key`'s run, if it is still run `generation`.
    fn get_mut(&mut self, key: &PullKey, generation: u64) -> Option<&mut Run> {
        self.by_key
            .get_mut(key)
            .filter(|run| run.generation == generation)
    }

    /// Remove `key`'s run if it is still run `generation`.
    fn remove(&mut self, key: &PullKey, generation: u64) -> Option<Run> {
        self.get_mut(key, generation)?;
        self.by_key.remove(key)
    }
}

/// One run in the table, as its waiters and its driver name it.
struct RunRef {
    runs: Arc<Mutex<Runs>>,
    key: PullKey,
    generation: u64,
}

/// The pulls in flight of one engine.
#[derive(Default)]
pub struct SharedPulls {
    runs: Arc<Mutex<Runs>>,
}

impl SharedPulls {
    /// Run the pull of `key`, or join the one in flight; forward its
    /// progress to `cx.reporter` and return its result. `start` makes the
    /// driver's work from the [`PullProgress`] it reports to; it is called
    /// only when no pull of `key` is in flight, and must not block.
    ///
    /// Returns [`Error::Cancelled`] when `cx.cancel` fires first; dropping
    /// the returned future leaves the pull too. Either way the pull goes on
    /// for the other waiters, and stops when none is left.
    pub async fn pull<F, Fut>(&self, key: PullKey, cx: &CallContext, start: F) -> RtResult<()>
    where
        F: FnOnce(PullProgress) -> Fut,
        Fut: Future<Output = RtResult<()>> + Send + 'static,
    {
        let (generation, mut state) = self.join_or_start(&key, start);
        let _waiter = Waiter(RunRef {
            runs: self.runs.clone(),
            key,
            generation,
        });
        let mut forwarded = None;
        loop {
            let snapshot = state.borrow_and_update().clone();
            if snapshot.progress.is_some() && snapshot.progress != forwarded {
                if let Some((percent, detail)) = &snapshot.progress {
                    cx.reporter.progress(*percent, detail);
                }
                forwarded = snapshot.progress;
            }
            if let Some(outcome) = snapshot.outcome {
                return outcome;
            }
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        // The driver is gone: its outcome, if it sent one, was seen above.
                        return state.borrow().outcome.clone().unwrap_or_else(|| {
                            Err(Error::Runtime("the image pull stopped without a result".into()))
                        });
                    }
                }
                _ = cx.cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
    }

    /// Count one more waiter on `key`'s run, starting it if there is none;
    /// returns the run's generation and its state.
    fn join_or_start<F, Fut>(&self, key: &PullKey, start: F) -> (u64, watch::Receiver<Snapshot>)
    where
        F: FnOnce(PullProgress) -> Fut,
        Fut: Future<Output = RtResult<()>> + Send + 'static,
    {
        let mut runs = self.runs.lock();
        if let Some(run) = runs.by_key.get_mut(key) {
            run.waiters += 1;
            return (run.generation, run.state.clone());
        }
        let generation = runs.next_generation;
        runs.next_generation += 1;
        let (tx, rx) = watch::channel(Snapshot::default());
        let tx = Arc::new(tx);
        let work = start(PullProgress(tx.clone()));
        let ended = Ended(RunRef {
            runs: self.runs.clone(),
            key: key.clone(),
            generation,
        });
        // Spawned under the lock: the driver's `Ended` takes the lock, so
        // even a driver that ends at once finds its entry inserted below.
        let driver = tokio::spawn(async move {
            let outcome = work.await;
            // Leave the table before publishing the outcome: a pull asked
            // for from now on starts afresh instead of joining a finished one.
            drop(ended);
            tx.send_modify(|s| s.outcome = Some(outcome));
        });
        runs.by_key.insert(
            key.clone(),
            Run {
                generation,
                waiters: 1,
                state: rx.clone(),
                driver: driver.abort_handle(),
            },
        );
        (generation, rx)
    }

    /// How many pulls are in flight.
    pub fn in_flight(&self) -> usize {
        self.runs.lock().by_key.len()
    }
}

impl RunRef {
    /// One waiter fewer; the last one aborts the driver (dropping its
    /// engine connection) and removes the run.
    fn leave(&self) {
        let mut runs = self.runs.lock();
        let Some(run) = runs.get_mut(&self.key, self.generation) else {
            return;
        };
        run.waiters -= 1;
        if run.waiters == 0 {
            if let Some(run) = runs.remove(&self.key, self.generation) {
                run.driver.abort();
            }
        }
    }

    /// Remove the run, which has ended.
    fn end(&self) {
        self.runs.lock().remove(&self.key, self.generation);
    }
}

/// Held by one caller of [`SharedPulls::pull`]; the last one to go aborts
/// the driver.
struct Waiter(RunRef);

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Held by a driver: removes its run however it ends (done, aborted, or
/// panicked), so no later pull joins a dead one.
struct Ended(RunRef);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::{oneshot, Notify};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::queue::{LogLevel, Reporter};

    /// Records the progress a caller was given.
    struct Seen(watch::Sender<Vec<(i32, String)>>);

    impl Reporter for Seen {
        fn progress(&self, percent: i32, detail: &str) {
            self.0
                .send_modify(|v| v.push((percent, detail.to_string())));
        }
        fn log(&self, _level: LogLevel, _message: &str) {}
    }

    struct Caller {
        cx: CallContext,
        seen: watch::Receiver<Vec<(i32, String)>>,
    }

    fn caller() -> Caller {
        let (tx, seen) = watch::channel(Vec::new());
        Caller {
            cx: CallContext {
                task_id: 1,
                user: "admin".into(),
                cancel: CancellationToken::new(),
                reporter: Arc::new(Seen(tx)),
            },
            seen,
        }
    }

    impl Caller {
        /// Wait until this caller was given `percent`.
        async fn saw(&mut self, percent: i32) {
            within(self.seen.wait_for(|v| v.iter().any(|(p, _)| *p == percent)))
                .await
                .unwrap();
        }
    }

    async fn within<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("in time")
    }

    /// A fake engine pull: counts its starts, reports 10 %, then ends with
    /// what is sent on `finish`; `dropped` is notified when its work is
    /// dropped before it ended (aborted).
    struct Engine {
        starts: Arc<AtomicUsize>,
        dropped: Arc<Notify>,
    }

    struct OnDrop(Arc<Notify>, bool);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            if !self.1 {
                self.0.notify_one();
            }
        }
    }

    impl Engine {
        fn new() -> Engine {
            Engine {
                starts: Arc::new(AtomicUsize::new(0)),
                dropped: Arc::new(Notify::new()),
            }
        }

        /// A `start` closure for [`SharedPulls::pull`]; `finish` ends its work.
        fn pull(
            &self,
            finish: oneshot::Receiver<RtResult<()>>,
        ) -> impl FnOnce(PullProgress) -> futures::future::BoxFuture<'static, RtResult<()>>
        {
            let starts = self.starts.clone();
            let dropped = self.dropped.clone();
            move |progress| {
                starts.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    let mut guard = OnDrop(dropped, false);
                    progress.report(10, "downloading");
                    let outcome = finish.await.unwrap_or(Err(Error::Other("no end".into())));
                    guard.1 = true;
                    outcome
                })
            }
        }

        fn starts(&self) -> usize {
            self.starts.load(Ordering::SeqCst)
        }
    }

    fn key() -> PullKey {
        PullKey::new("127.0.0.1:5000/app", "1", "e30=")
    }

    /// A call that must never start work (it joins one in flight).
    fn never(_: PullProgress) -> futures::future::BoxFuture<'static, RtResult<()>> {
        panic!("a joining caller started a second pull")
    }

    /// Run a pull of `key` on its own task, as a task's call would.
    fn spawn_pull<F>(
        pulls: &Arc<SharedPulls>,
        key: PullKey,
        cx: &CallContext,
        start: F,
    ) -> tokio::task::JoinHandle<RtResult<()>>
    where
        F: FnOnce(PullProgress) -> futures::future::BoxFuture<'static, RtResult<()>>
            + Send
            + 'static,
    {
        let (pulls, cx) = (pulls.clone(), cx.clone());
        tokio::spawn(async move { pulls.pull(key, &cx, start).await })
    }

    /// Caller `a` started a pull of [`key`], caller `b` joined it, and each
    /// was given its 10 %; `finish` ends the pull's work.
    struct TwoCallers {
        pulls: Arc<SharedPulls>,
        engine: Engine,
        finish: oneshot::Sender<RtResult<()>>,
        a: Caller,
        first: tokio::task::JoinHandle<RtResult<()>>,
        second: tokio::task::JoinHandle<RtResult<()>>,
    }

    async fn two_callers() -> TwoCallers {
        let pulls = Arc::new(SharedPulls::default());
        let engine = Engine::new();
        let (finish, finished) = oneshot::channel();
        let (mut a, mut b) = (caller(), caller());
        let first = spawn_pull(&pulls, key(), &a.cx, engine.pull(finished));
        a.saw(10).await;
        // The joiner is given the current figure at once, not the next one.
        let second = spawn_pull(&pulls, key(), &b.cx, never);
        b.saw(10).await;
        TwoCallers {
            pulls,
            engine,
            finish,
            a,
            first,
            second,
        }
    }

    #[tokio::test]
    async fn two_callers_share_one_run_and_both_see_its_progress_and_result() {
        let t = two_callers().await;
        let failed = Err(Error::Runtime("manifest unknown".into()));
        t.finish.send(failed.clone()).unwrap();
        assert_eq!(within(t.first).await.unwrap(), failed);
        assert_eq!(within(t.second).await.unwrap(), failed);
        assert_eq!(t.engine.starts(), 1);
        assert_eq!(t.pulls.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_caller_leaves_the_pull_running_for_the_other() {
        let t = two_callers().await;
        // The first caller, the one that started the driver, goes.
        t.a.cx.cancel.cancel();
        assert_eq!(within(t.first).await.unwrap(), Err(Error::Cancelled));
        assert_eq!(t.pulls.in_flight(), 1, "the pull goes on");
        t.finish.send(Ok(())).unwrap();
        assert_eq!(within(t.second).await.unwrap(), Ok(()));
        assert_eq!(t.engine.starts(), 1);
    }

    #[tokio::test]
    async fn when_every_caller_is_gone_the_driver_is_aborted() {
        let t = two_callers().await;
        let dropped = t.engine.dropped.notified();
        t.a.cx.cancel.cancel();
        assert_eq!(within(t.first).await.unwrap(), Err(Error::Cancelled));
        // The second caller's future is dropped rather than cancelled, as
        // `runtime_call` drops it.
        t.second.abort();
        assert!(within(t.second).await.unwrap_err().is_cancelled());
        within(dropped).await;
        assert_eq!(t.pulls.in_flight(), 0);
        // The next pull of the same image starts a new run.
        let (finish, finished) = oneshot::channel();
        finish.send(Ok(())).unwrap();
        let c = caller();
        let again = within(t.pulls.pull(key(), &c.cx, t.engine.pull(finished))).await;
        assert_eq!(again, Ok(()));
        assert_eq!(t.engine.starts(), 2);
        drop(t.finish);
    }

    #[tokio::test]
    async fn a_pull_after_one_ended_starts_afresh() {
        let pulls = SharedPulls::default();
        let engine = Engine::new();
        for round in 1..=2 {
            let (finish, finished) = oneshot::channel();
            finish.send(Ok(())).unwrap();
            let c = caller();
            assert_eq!(
                within(pulls.pull(key(), &c.cx, engine.pull(finished))).await,
                Ok(())
            );
            assert_eq!(engine.starts(), round);
            assert_eq!(pulls.in_flight(), 0);
        }
    }

    #[tokio::test]
    async fn other_credentials_or_tags_never_share() {
        let pulls = Arc::new(SharedPulls::default());
        let engine = Engine::new();
        let keys = [
            key(),
            PullKey::new("127.0.0.1:5000/app", "1", "eyJ1c2VybmFtZSI6ImJvYiJ9"),
            PullKey::new("127.0.0.1:5000/app", "2", "e30="),
        ];
        let mut finishes = Vec::new();
        let mut callers = Vec::new();
        for k in keys {
            let (finish, finished) = oneshot::channel();
            finishes.push(finish);
            let mut c = caller();
            callers.push(spawn_pull(&pulls, k, &c.cx, engine.pull(finished)));
            c.saw(10).await;
        }
        assert_eq!(engine.starts(), 3);
        assert_eq!(pulls.in_flight(), 3);
        for finish in finishes {
            finish.send(Ok(())).unwrap();
        }
        for c in callers {
            assert_eq!(within(c).await.unwrap(), Ok(()));
        }
    }
}
