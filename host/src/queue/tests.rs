//! Queue tests, with a plain-Rust test double of the plugin host.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::{broadcast, Semaphore};

use super::store::{Owner, TaskStore};
use super::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// Categories:
/// - `quick`: reports 10, 50, 30, -1, 20 then completes; not deletable;
///   `validate` refuses `{"bad": ..}` (Invalid) and `{"crash": ..}` (Plugin);
/// - `gate`: reports 40 "working", then waits for a gate permit (completes) or
///   its cancel token (fails with Cancelled); deletable;
/// - `stuck`: like `gate` but not deletable;
/// - `fail`: fails at once with PluginError "boom";
/// - `secret`: completes at once; `token` and `api_key` are secret fields;
/// - `image_download`: like `gate` (its alias `image_pull` runs it).
struct TestExec {
    gate: Arc<Semaphore>,
    /// (task id, params it was given), in start order.
    started: Mutex<Vec<(i64, String)>>,
    /// Per category: runs executing now, and the most at once.
    active: Mutex<HashMap<String, (usize, usize)>>,
    /// What [`Executor::holds_effects_until_durable`] answers.
    holds: bool,
}

impl Default for TestExec {
    fn default() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            started: Mutex::new(Vec::new()),
            active: Mutex::new(HashMap::new()),
            holds: false,
        }
    }
}

fn info(name: &str) -> Option<CategoryInfo> {
    let (deletable, secret_fields) = match name {
        "quick" | "stuck" | "fail" => (false, vec![]),
        "gate" | "image_download" => (true, vec![]),
        "secret" => (false, vec!["token".to_string(), "api_key".to_string()]),
        _ => return None,
    };
    Some(CategoryInfo {
        name: name.to_string(),
        deletable,
        secret_fields,
    })
}

#[async_trait]
impl Executor for TestExec {
    fn categories(&self) -> Vec<CategoryInfo> {
        ["fail", "gate", "image_download", "quick", "secret", "stuck"]
            .iter()
            .filter_map(|n| info(n))
            .collect()
    }
    fn category(&self, name: &str) -> Option<CategoryInfo> {
        info(name)
    }
    async fn validate(&self, category: &str, params: &str) -> Result<(), ValidationError> {
        let v: serde_json::Value = serde_json::from_str(params).unwrap();
        if category == "quick" && v.get("bad").is_some() {
            return Err(ValidationError::Invalid("bad: must not be set".into()));
        }
        if v.get("crash").is_some() {
            return Err(ValidationError::Plugin("plugin trapped".into()));
        }
        Ok(())
    }
    fn holds_effects_until_durable(&self) -> bool {
        self.holds
    }
    async fn run(&self, ctx: TaskContext) -> Outcome {
        {
            let mut active = self.active.lock();
            let a = active.entry(ctx.category.clone()).or_default();
            a.0 += 1;
            a.1 = a.1.max(a.0);
        }
        let category = ctx.category.clone();
        let outcome = self.run_inner(ctx).await;
        self.active.lock().get_mut(&category).unwrap().0 -= 1;
        outcome
    }
}

impl TestExec {
    async fn run_inner(&self, ctx: TaskContext) -> Outcome {
        self.started.lock().push((ctx.id, ctx.params.clone()));
        tracing::info!("executor-marker inside run");
        ctx.reporter.log(LogLevel::Info, "reporter-marker");
        match ctx.category.as_str() {
            "quick" => {
                for p in [10, 50, 30, -1, 20] {
                    ctx.reporter.progress(p, &format!("step {p}"));
                }
                Outcome::Completed(Some("all good".into()))
            }
            "gate" | "stuck" | "image_download" => {
                ctx.reporter.progress(40, "working");
                tokio::select! {
                    p = self.gate.acquire() => { p.unwrap().forget(); Outcome::Completed(None) }
                    _ = ctx.cancel.cancelled() => Outcome::Failed { code: ResultCode::Cancelled, message: "cancelled".into() },
                }
            }
            "fail" => Outcome::Failed {
                code: ResultCode::PluginError,
                message: "boom".into(),
            },
            _ => Outcome::Completed(None),
        }
    }
}

impl TestExec {
    /// One that declares it holds its effects until the claim is durable.
    fn holding() -> Arc<TestExec> {
        Arc::new(TestExec {
            holds: true,
            ..TestExec::default()
        })
    }
    fn max_active(&self, category: &str) -> usize {
        self.active.lock().get(category).map_or(0, |a| a.1)
    }
    fn started_ids(&self) -> Vec<i64> {
        self.started.lock().iter().map(|(id, _)| *id).collect()
    }
}

/// The state task `id` is in, as the queue shows it.
async fn state_of(q: &Queue, id: i64) -> TaskState {
    q.get(&admin(), id).await.unwrap().state
}

/// The state task `id` is in, as the store holds it.
async fn stored_state(store: &SqliteStore, id: i64) -> TaskState {
    store.get(id).await.unwrap().unwrap().state
}

/// Delete what `selector` names, as `viewer`: the ids deleted.
async fn delete(q: &Queue, viewer: &Viewer, selector: DeleteSelector) -> Vec<i64> {
    q.delete(viewer, selector).await.unwrap()
}

/// The ids of `tasks`, in their order.
fn ids(tasks: Vec<Task>) -> Vec<i64> {
    tasks.into_iter().map(|t| t.id).collect()
}

/// A runtime of its own for one life of the queue (a crash drops it).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn admin() -> Viewer {
    Viewer {
        user: "admin".into(),
        is_admin: true,
    }
}
fn user(name: &str) -> Viewer {
    Viewer {
        user: name.into(),
        is_admin: false,
    }
}
fn config(workers: usize, limits: &[(&str, usize)]) -> QueueConfig {
    QueueConfig {
        workers,
        per_category: limits
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect::<HashMap<_, _>>(),
        per_user: HashMap::new(),
        lease: DEFAULT_LEASE,
        task_log: Default::default(),
        retention: None,
    }
}

async fn start(
    dir: &std::path::Path,
    exec: Arc<TestExec>,
    cfg: QueueConfig,
) -> (Arc<Queue>, Arc<SqliteStore>) {
    let store = SqliteStore::open_in(dir).unwrap();
    let q = Queue::start(store.clone(), exec, cfg).await.unwrap();
    (q, store)
}

/// A queue under `cfg` over a new store in a temporary folder, run by a
/// default [`TestExec`]: the folder (to keep while the test runs), the
/// executor, the queue and its store.
async fn fixture(cfg: QueueConfig) -> (TempDir, Arc<TestExec>, Arc<Queue>, Arc<SqliteStore>) {
    fixture_with(Arc::new(TestExec::default()), cfg).await
}

/// [`fixture`], run by `exec`.
async fn fixture_with(
    exec: Arc<TestExec>,
    cfg: QueueConfig,
) -> (TempDir, Arc<TestExec>, Arc<Queue>, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let (q, store) = start(dir.path(), exec.clone(), cfg).await;
    (dir, exec, q, store)
}

/// Submit `n` tasks of `category` as `u`, one after another: their ids.
async fn submit_n(q: &Queue, category: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(q.submit("u", category, &json!({})).await.unwrap().id);
    }
    ids
}

/// Submit a task of `category` as `user` and wait until it runs: its id.
async fn running(q: &Queue, user: &str, category: &str) -> i64 {
    let id = q.submit(user, category, &json!({})).await.unwrap().id;
    wait_task(q, id, |t| t.state == TaskState::Running).await;
    id
}

/// Next event matching `pred`, or panic at the deadline.
async fn next_event(rx: &mut broadcast::Receiver<TaskEvent>, pred: impl Fn(&Task) -> bool) -> Task {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let ev = rx.recv().await.expect("event channel");
            if pred(&ev.task) {
                return Arc::unwrap_or_clone(ev.task);
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// Poll `list` until `pred` holds for the task `id`, or panic at the deadline.
async fn wait_task(q: &Queue, id: i64, pred: impl Fn(&Task) -> bool) -> Task {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let t = q.get(&admin(), id).await.unwrap();
        if pred(&t) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting on task {id}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn states_in_order_and_progress_never_goes_back() {
    let (_dir, _, q, _) = fixture(config(2, &[])).await;
    let mut rx = q.subscribe();
    let t = q
        .submit("alice", "quick", &json!({"name": "x"}))
        .await
        .unwrap();
    assert_eq!(
        (t.state, t.progress, t.result, t.start, t.end),
        (TaskState::Waiting, 0, None, None, None)
    );
    assert_eq!(t.params.get(), r#"{"name":"x"}"#);
    assert_eq!(t.name, "x");

    let mut seen = Vec::new();
    loop {
        let e = next_event(&mut rx, |e| e.id == t.id).await;
        let end = e.state.is_finished();
        seen.push(e);
        if end {
            break;
        }
    }
    let states: Vec<TaskState> = seen.iter().map(|e| e.state).collect();
    assert_eq!(states.first(), Some(&TaskState::Waiting));
    assert_eq!(states[1], TaskState::Running);
    assert!(states[1..states.len() - 1]
        .iter()
        .all(|s| *s == TaskState::Running));
    assert_eq!(states.last(), Some(&TaskState::Completed));
    let progress: Vec<i32> = seen[2..seen.len() - 1].iter().map(|e| e.progress).collect();
    assert_eq!(
        progress,
        vec![10, 50, 50, -1, 20],
        "30 after 50 is ignored; -1 resets"
    );
    assert_eq!(seen[4].detail_state, "step 30");

    let done = q.get(&admin(), t.id).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!((done.progress, done.result), (100, Some(0)));
    assert_eq!(done.detail_state, "all good");
    assert!(
        done.start.is_some()
            && done.end.is_some()
            && done.end >= done.start
            && done.start >= Some(done.init)
    );

    // A failing task: error with the plugin's code and message.
    let f = q.submit("alice", "fail", &json!({})).await.unwrap();
    let f = wait_task(&q, f.id, |t| t.state.is_finished()).await;
    assert_eq!(
        (f.state, f.result, f.detail_state.as_str()),
        (TaskState::Error, Some(1), "boom")
    );
    q.shutdown().await;
}

#[tokio::test]
async fn submit_errors() {
    let (_dir, _, q, _) = fixture(config(1, &[])).await;
    assert!(
        matches!(q.submit("a", "nope", &json!({})).await, Err(QueueError::UnknownCategory(c)) if c == "nope")
    );
    match q.submit("a", "quick", &json!({"bad": 1})).await {
        Err(QueueError::Invalid(m)) => assert_eq!(m, "bad: must not be set"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        q.submit("a", "quick", &json!({"crash": 1})).await,
        Err(QueueError::Plugin(_))
    ));
    assert!(
        q.list(&admin(), None).await.unwrap().is_empty(),
        "refused tasks are not stored"
    );
    let names: Vec<String> = q.categories().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["fail", "gate", "image_download", "quick", "secret", "stuck"]
    );
    q.shutdown().await;
    assert!(
        q.submit("a", "quick", &json!({})).await.is_err(),
        "no submissions after shutdown"
    );
    q.shutdown().await; // idempotent
}

#[tokio::test]
async fn per_category_limit_total_workers_and_fifo() {
    let (_dir, exec, q, _) = fixture(config(3, &[("gate", 1)])).await;
    let mut rx = q.subscribe();
    let gates = submit_n(&q, "gate", 4).await;
    // Other categories still run beside the limited one.
    let quick = q.submit("u", "quick", &json!({})).await.unwrap().id;
    wait_task(&q, quick, |t| t.state == TaskState::Completed).await;
    wait_task(&q, gates[0], |t| t.state == TaskState::Running).await;

    // Release the gates one at a time; they must start in id order, one at a time.
    let mut running = std::collections::HashSet::new();
    let mut order = Vec::new();
    let mut completed = 0;
    while completed < gates.len() {
        exec.gate.add_permits(1);
        loop {
            let e = next_event(&mut rx, |e| {
                e.category == "gate"
                    && ((e.state == TaskState::Running && e.progress == 0)
                        || e.state == TaskState::Completed)
            })
            .await;
            if e.state == TaskState::Running {
                assert!(running.insert(e.id), "task {} started twice", e.id);
                order.push(e.id);
            } else {
                assert!(running.remove(&e.id));
                completed += 1;
                break;
            }
        }
        let listed = q.list(&admin(), Some("gate")).await.unwrap();
        assert!(
            listed
                .iter()
                .filter(|t| t.state == TaskState::Running)
                .count()
                <= 1
        );
    }
    assert_eq!(exec.max_active("gate"), 1, "per-category limit");
    assert_eq!(order, gates, "FIFO by id");

    // Total of workers: 3 workers, 4 stuck tasks.
    let stuck = submit_n(&q, "stuck", 4).await;
    for id in &stuck[..3] {
        wait_task(&q, *id, |t| t.state == TaskState::Running).await;
    }
    assert_eq!(state_of(&q, stuck[3]).await, TaskState::Waiting);
    exec.gate.add_permits(1);
    wait_task(&q, stuck[3], |t| t.state == TaskState::Running).await;
    let finished = q
        .list(&admin(), Some("stuck"))
        .await
        .unwrap()
        .iter()
        .filter(|t| t.state.is_finished())
        .count();
    assert_eq!(finished, 1);
    exec.gate.add_permits(3);
    for id in &stuck {
        wait_task(&q, *id, |t| t.state == TaskState::Completed).await;
    }
    assert_eq!(exec.max_active("stuck"), 3, "total of workers");
    q.shutdown().await;
}

/// A task submitted under an alias (`image_pull`) keeps that name, runs as
/// its category, shares its category's limit, and either name filters and
/// deletes both.
#[tokio::test]
async fn an_alias_keeps_its_name_runs_as_its_category_and_shares_its_limit() {
    let (_dir, exec, q, _) = fixture(config(4, &[("image_download", 1)])).await;
    let pulled = q.submit("u", "image_pull", &json!({})).await.unwrap();
    assert_eq!(pulled.category, "image_pull", "the submitted name is kept");
    assert!(pulled.deletable, "the category's own facts");
    let downloaded = q.submit("u", "image_download", &json!({})).await.unwrap();
    // The executor runs `image_download` for it, one at a time across both names.
    wait_task(&q, pulled.id, |t| t.state == TaskState::Running).await;
    assert_eq!(
        state_of(&q, downloaded.id).await,
        TaskState::Waiting,
        "one limit for both names"
    );
    exec.gate.add_permits(1);
    wait_task(&q, downloaded.id, |t| t.state == TaskState::Running).await;
    exec.gate.add_permits(1);
    wait_task(&q, downloaded.id, |t| t.state == TaskState::Completed).await;
    assert_eq!(exec.max_active("image_download"), 1);
    assert_eq!(
        exec.max_active("image_pull"),
        0,
        "never run under the alias"
    );
    let done = q.get(&admin(), pulled.id).await.unwrap();
    assert_eq!(
        (done.category.as_str(), done.state),
        ("image_pull", TaskState::Completed)
    );
    // Either name filters both, newest first, and pages across both.
    for name in ["image_pull", "image_download"] {
        let listed = ids(q.list(&admin(), Some(name)).await.unwrap());
        assert_eq!(listed, [downloaded.id, pulled.id], "{name}");
        let page = q
            .list_page(
                &admin(),
                Some(name),
                None,
                Page {
                    before: None,
                    limit: 1,
                },
            )
            .await
            .unwrap();
        assert_eq!(ids(page), [downloaded.id]);
    }
    // And either name deletes both.
    let mut gone = q
        .delete(&admin(), DeleteSelector::Category("image_pull".into()))
        .await
        .unwrap();
    gone.sort_unstable();
    assert_eq!(gone, [pulled.id, downloaded.id]);
    assert!(q.list(&admin(), None).await.unwrap().is_empty());
    q.shutdown().await;
}

/// A user's running-task limit (a policy's `limits.running_tasks`): their
/// other tasks wait, while other users' tasks run beside them.
#[tokio::test]
async fn per_user_limit_holds_the_users_other_tasks() {
    let mut cfg = config(4, &[]);
    cfg.per_user.insert("bob".into(), 1);
    let (_dir, exec, q, _) = fixture(cfg).await;
    let mut rx = q.subscribe();
    let b1 = q.submit("bob", "gate", &json!({})).await.unwrap().id;
    let b2 = q.submit("bob", "gate", &json!({})).await.unwrap().id;
    let a1 = q.submit("alice", "gate", &json!({})).await.unwrap().id;
    wait_task(&q, b1, |t| t.state == TaskState::Running).await;
    wait_task(&q, a1, |t| t.state == TaskState::Running).await;
    assert_eq!(state_of(&q, b2).await, TaskState::Waiting);
    exec.gate.add_permits(3);
    next_event(&mut rx, |e| e.id == b2 && e.state == TaskState::Running).await;
    assert!(
        state_of(&q, b1).await.is_finished(),
        "bob's second task started only after his first ended"
    );
    for id in [b1, b2, a1] {
        wait_task(&q, id, |t| t.state == TaskState::Completed).await;
    }
    q.shutdown().await;
}

#[tokio::test]
async fn delete_rules() {
    let (_dir, exec, q, store) = fixture(config(2, &[])).await;
    let mut rx = q.subscribe();

    // Running, not deletable: 409, and it keeps running.
    let stuck = running(&q, "u", "stuck").await;
    assert!(matches!(
        q.delete(&admin(), DeleteSelector::Id(stuck)).await,
        Err(QueueError::Conflict(_))
    ));
    assert_eq!(state_of(&q, stuck).await, TaskState::Running);

    // Running, deletable: cancelled, then removed.
    let gate = q.submit("u", "gate", &json!({})).await.unwrap().id;
    wait_task(&q, gate, |t| {
        t.state == TaskState::Running && t.progress == 40
    })
    .await;
    assert_eq!(
        delete(&q, &user("u"), DeleteSelector::Id(gate)).await,
        vec![gate]
    );
    let end = next_event(&mut rx, |t| t.id == gate && t.state.is_finished()).await;
    assert_eq!(
        (end.state, end.result),
        (TaskState::Error, Some(ResultCode::Cancelled.code()))
    );
    assert!(matches!(
        q.get(&admin(), gate).await,
        Err(QueueError::NotFound(_))
    ));

    // Waiting (both workers busy): cancelled and removed, never run.
    let gate2 = running(&q, "u", "gate").await;
    let waiting = q.submit("u", "quick", &json!({})).await.unwrap().id;
    assert_eq!(state_of(&q, waiting).await, TaskState::Waiting);
    assert_eq!(
        delete(&q, &user("u"), DeleteSelector::Id(waiting)).await,
        vec![waiting]
    );
    let ev = next_event(&mut rx, |t| {
        t.id == waiting && t.state != TaskState::Waiting
    })
    .await;
    assert_eq!(
        (ev.state, ev.result),
        (TaskState::Error, Some(ResultCode::Cancelled.code()))
    );
    assert!(store.get(waiting).await.unwrap().is_none());
    assert!(matches!(
        q.delete(&user("u"), DeleteSelector::Id(waiting)).await,
        Err(QueueError::NotFound(_))
    ));

    // Let the two running ones finish, then bulk deletes take finished tasks only.
    exec.gate.add_permits(2);
    wait_task(&q, stuck, |t| t.state == TaskState::Completed).await;
    wait_task(&q, gate2, |t| t.state == TaskState::Completed).await;
    let f1 = q.submit("u", "fail", &json!({})).await.unwrap().id;
    let f2 = q.submit("u", "fail", &json!({})).await.unwrap().id;
    let q1 = q.submit("u", "quick", &json!({})).await.unwrap().id;
    for id in [f1, f2, q1] {
        wait_task(&q, id, |t| t.state.is_finished()).await;
    }
    let held = running(&q, "u", "stuck").await;

    assert_eq!(
        delete(&q, &user("u"), DeleteSelector::Category("fail".into())).await,
        vec![f1, f2]
    );
    assert_eq!(
        delete(&q, &user("u"), DeleteSelector::Category("fail".into())).await,
        Vec::<i64>::new()
    );
    assert!(matches!(
        q.delete(&user("u"), DeleteSelector::Category("nope".into()))
            .await,
        Err(QueueError::UnknownCategory(_))
    ));
    let mut all = q
        .delete(&user("u"), DeleteSelector::AllFinished)
        .await
        .unwrap();
    all.sort();
    assert_eq!(all, vec![stuck, gate2, q1]);
    let left = ids(q.list(&admin(), None).await.unwrap());
    assert_eq!(
        left,
        vec![held],
        "the running task is not touched by bulk deletes"
    );
    assert!(!exec.started_ids().contains(&waiting));
    exec.gate.add_permits(1);
    q.shutdown().await;
}

#[tokio::test]
async fn users_see_and_delete_only_their_own() {
    let (_dir, _, q, _) = fixture(config(2, &[])).await;
    let a = q.submit("alice", "fail", &json!({})).await.unwrap().id;
    let b = q.submit("bob", "fail", &json!({})).await.unwrap().id;
    let b2 = q.submit("bob", "quick", &json!({})).await.unwrap().id;
    for id in [a, b, b2] {
        wait_task(&q, id, |t| t.state.is_finished()).await;
    }
    assert_eq!(ids(q.list(&user("alice"), None).await.unwrap()), vec![a]);
    assert_eq!(ids(q.list(&user("bob"), None).await.unwrap()), vec![b2, b]);
    assert_eq!(
        ids(q.list(&user("bob"), Some("quick")).await.unwrap()),
        vec![b2]
    );
    assert_eq!(
        ids(q.list(&admin(), None).await.unwrap()),
        vec![b2, b, a],
        "newest first"
    );
    assert!(matches!(q.get(&user("alice"), b).await, Err(QueueError::NotFound(id)) if id == b));
    assert!(
        matches!(q.delete(&user("alice"), DeleteSelector::Id(b)).await, Err(QueueError::NotFound(id)) if id == b)
    );
    assert!(matches!(
        q.delete(&user("alice"), DeleteSelector::Id(9999)).await,
        Err(QueueError::NotFound(_))
    ));
    assert_eq!(
        delete(&q, &user("alice"), DeleteSelector::AllFinished).await,
        vec![a]
    );
    assert_eq!(
        delete(&q, &user("alice"), DeleteSelector::Category("fail".into())).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(q.list(&user("bob"), None).await.unwrap()),
        vec![b2, b],
        "bob's tasks untouched"
    );
    assert_eq!(delete(&q, &admin(), DeleteSelector::Id(b)).await, vec![b]);
    assert_eq!(
        delete(&q, &admin(), DeleteSelector::AllFinished).await,
        vec![b2]
    );
    q.shutdown().await;
}

#[tokio::test]
async fn secrets_masked_everywhere_and_full_params_reach_the_executor() {
    let (dir, exec, q, _) = fixture(config(1, &[])).await;
    let params = json!({
        "username": "me",
        "password": "p-top",
        "auth": {"token": "t-nested", "Api_Key": "k-case"},
        "list": [{"password": "p-in-array"}, [{"token": "t-deep"}]],
        "note": "password"
    });
    let t = q.submit("u", "secret", &params).await.unwrap();
    let shown = t.params.to_value();
    assert_eq!(
        shown,
        json!({
            "username": "me",
            "password": "******",
            "auth": {"token": "******", "Api_Key": "******"},
            "list": [{"password": "******"}, [{"token": "******"}]],
            "note": "password"
        })
    );
    wait_task(&q, t.id, |t| t.state == TaskState::Completed).await;
    let listed = q.list(&admin(), None).await.unwrap();
    let text = serde_json::to_string(&listed).unwrap();
    for s in ["p-top", "t-nested", "k-case", "p-in-array", "t-deep"] {
        assert!(!text.contains(s), "{s} shown in {text}");
    }
    let given: serde_json::Value = serde_json::from_str(&exec.started.lock()[0].1).unwrap();
    assert_eq!(given, params, "the executor gets the full params");
    q.shutdown().await;
    let db = std::fs::read(dir.path().join("stevedore.db")).unwrap();
    assert!(!db.windows(5).any(|w| w == b"p-top"));
}

#[tokio::test]
async fn a_schedule_keeps_secrets_masked_and_its_firing_runs_with_them() {
    use crate::store::schedules::{Fired, Firing, NewSchedule};
    let (dir, exec, q, _) = fixture(config(1, &[])).await;
    let params = json!({"username": "me", "token": "t-scheduled"});
    let prepared = q.prepare("u", "secret", &params).await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&prepared.shown_params).unwrap(),
        json!({"username": "me", "token": "******"})
    );
    let schedules = q.schedules().expect("SQLite keeps schedules");
    let made = schedules
        .create_schedule(NewSchedule {
            owner: "u".into(),
            name: String::new(),
            category: "secret".into(),
            shown_params: prepared.shown_params.clone(),
            full_params: prepared.full_params.clone(),
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            next_run: 60,
            created: 1,
        })
        .await
        .unwrap();
    assert!(!made.params.get().contains("t-scheduled"));
    let due = schedules.due_schedules(60).await.unwrap();
    assert_eq!(due.len(), 1);
    let full: serde_json::Value = serde_json::from_str(&due[0].full_params).unwrap();
    assert_eq!(full, params, "the sealed params open whole");
    // Fired as the scheduler does: prepared again from the full params.
    let task = q.prepare("u", "secret", &full).await.unwrap();
    let fired = schedules
        .fire(Firing {
            id: made.id,
            due: 60,
            occurrence: 60,
            next: 120,
            outcome: Ok(task),
            on_stored: Some(q.on_stored()),
        })
        .await
        .unwrap();
    let Fired::Won(Some(t)) = fired else {
        panic!("not fired: {fired:?}")
    };
    q.stored(&t);
    wait_task(&q, t.id, |t| t.state == TaskState::Completed).await;
    let given: serde_json::Value = serde_json::from_str(&exec.started.lock()[0].1).unwrap();
    assert_eq!(given, params, "the run gets the full params");
    q.shutdown().await;
    let db = std::fs::read(dir.path().join("stevedore.db")).unwrap();
    assert!(!db.windows(11).any(|w| w == b"t-scheduled"));
}

#[tokio::test]
async fn progress_is_persisted_lazily() {
    let (_dir, exec, q, store) = fixture(config(1, &[])).await;
    let id = q.submit("u", "gate", &json!({})).await.unwrap().id;
    // In memory at once...
    wait_task(&q, id, |t| t.progress == 40 && t.detail_state == "working").await;
    // ...and in the store after a flush.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let t = store.get(id).await.unwrap().unwrap();
        if t.progress == 40 && t.detail_state == "working" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "progress never stored: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    exec.gate.add_permits(1);
    let t = wait_task(&q, id, |t| t.state.is_finished()).await;
    assert_eq!((t.progress, t.state), (100, TaskState::Completed));
    q.shutdown().await;
}

#[tokio::test]
async fn many_tasks_run_once_each() {
    let (_dir, exec, q, _) = fixture(config(3, &[("quick", 2)])).await;
    let mut rx = q.subscribe();
    let mut handles = Vec::new();
    for i in 0..8 {
        let q = q.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for j in 0..25 {
                let cat = if (i + j) % 2 == 0 { "quick" } else { "secret" };
                ids.push(
                    q.submit(&format!("u{i}"), cat, &json!({"password": "x"}))
                        .await
                        .unwrap()
                        .id,
                );
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await.unwrap());
    }
    let mut done = std::collections::HashSet::new();
    while done.len() < ids.len() {
        let t = next_event(&mut rx, |t| t.state.is_finished()).await;
        assert!(done.insert(t.id), "task {} finished twice", t.id);
    }
    let mut started = exec.started_ids();
    started.sort();
    ids.sort();
    assert_eq!(started, ids, "every task ran exactly once");
    assert!(exec.max_active("quick") <= 2, "per-category limit");
    let total: usize = exec.active.lock().values().map(|a| a.1).max().unwrap();
    assert!(total <= 3);
    q.shutdown().await;
}

/// Restart recovery: the process dies (its runtime is dropped) while a task
/// runs and others wait; on the next start the running one is interrupted and
/// the waiting ones run, with their full params, once.
#[test]
fn restart_recovery_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let secret_params = json!({"image": "a", "password": "s3cret", "auth": [{"token": "tok"}]});

    let exec1 = Arc::new(TestExec::default());
    let rt1 = runtime();
    let (running, waiting_secret, waiting_quick) = rt1.block_on(async {
        let (q, _) = start(dir.path(), exec1.clone(), config(1, &[])).await;
        let r = q.submit("u", "gate", &json!({})).await.unwrap().id;
        wait_task(&q, r, |t| t.state == TaskState::Running && t.progress == 40).await;
        let s = q.submit("u", "secret", &secret_params).await.unwrap().id;
        let w = q.submit("u", "quick", &json!({})).await.unwrap().id;
        (r, s, w)
    });
    // Crash: every task of the process stops where it is, nothing is flushed.
    rt1.shutdown_background();
    assert_eq!(exec1.started_ids(), vec![running]);

    let exec2 = Arc::new(TestExec::default());
    let rt2 = runtime();
    rt2.block_on(async {
        let mut tries = 0;
        let (q, _) = loop {
            // The dead process's writer thread may still hold the database for a moment.
            match SqliteStore::open_in(dir.path()) {
                Ok(store) => {
                    break (
                        Queue::start(store.clone(), exec2.clone(), config(2, &[]))
                            .await
                            .unwrap(),
                        store,
                    )
                }
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("retrying open: {e:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e:#}"),
            }
        };
        let r = q.get(&admin(), running).await.unwrap();
        assert_eq!(
            (r.state, r.result),
            (TaskState::Error, Some(ResultCode::Interrupted.code()))
        );
        assert_eq!(r.detail_state, INTERRUPTED_DETAIL);
        assert!(r.end.is_some());
        for id in [waiting_secret, waiting_quick] {
            wait_task(&q, id, |t| t.state == TaskState::Completed).await;
        }
        let all = q.list(&admin(), None).await.unwrap();
        assert_eq!(
            ids(all.clone()),
            vec![waiting_quick, waiting_secret, running]
        );
        let mut started = exec2.started_ids();
        started.sort();
        assert_eq!(
            started,
            vec![waiting_secret, waiting_quick],
            "nothing runs twice"
        );
        let given = exec2
            .started
            .lock()
            .iter()
            .find(|(id, _)| *id == waiting_secret)
            .unwrap()
            .1
            .clone();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&given).unwrap(),
            secret_params
        );
        let shown = all[1].params.get();
        assert_eq!(all[1].id, waiting_secret);
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok\""),
            "{shown}"
        );
        q.shutdown().await;
    });
}

/// A clean shutdown: the running task ends interrupted, the waiting one waits
/// for the next start.
#[tokio::test]
async fn shutdown_interrupts_running_and_keeps_waiting() {
    let (dir, _, q, _) = fixture(config(1, &[])).await;
    let r = running(&q, "u", "stuck").await;
    let w = q
        .submit("u", "secret", &json!({"password": "pw"}))
        .await
        .unwrap()
        .id;
    q.shutdown().await;
    drop(q);

    let exec2 = Arc::new(TestExec::default());
    let (q, store) = start(dir.path(), exec2.clone(), config(1, &[])).await;
    let t = store.get(r).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.result, t.detail_state.as_str()),
        (TaskState::Error, Some(4), INTERRUPTED_DETAIL)
    );
    wait_task(&q, w, |t| t.state == TaskState::Completed).await;
    assert_eq!(
        exec2.started.lock().clone(),
        vec![(w, r#"{"password":"pw"}"#.to_string())]
    );
    assert_eq!(store.list(Owner::Anyone, None).await.unwrap().len(), 2);
    q.shutdown().await;
}

/// Every tracing event of a run carries the task id.
///
/// tracing caches per-callsite interest process-wide, and a callsite first hit
/// by another test thread at the wrong moment can miss a thread-local
/// subscriber; so the check runs in a child process of this test binary that
/// runs this test alone.
#[test]
fn task_logs_carry_the_task_id() {
    const CHILD: &str = "STEVEDORE_QUEUE_LOG_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return task_logs_check();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "queue::tests::task_logs_carry_the_task_id",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child did not run the check:\n{text}"
    );
    assert!(text.contains("log check done"), "{text}");
}

fn task_logs_check() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = rt.block_on(async {
        let (q, _) = start(dir.path(), Arc::new(TestExec::default()), config(1, &[])).await;
        let id = q.submit("u", "quick", &json!({})).await.unwrap().id;
        wait_task(&q, id, |t| t.state.is_finished()).await;
        q.shutdown().await;
        id
    });
    let out = String::from_utf8(buf.0.lock().clone()).unwrap();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains("marker") || l.contains("task started") || l.contains("task completed")
        })
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    for l in lines {
        assert!(l.contains(&format!("task_id={id}")), "no task id in: {l}");
    }
    println!("log check done");
}

/// Dropping the queue without `shutdown`: runs in progress end and are
/// recorded, nothing new is claimed, and the store is released for the next
/// start, which runs what waited.
#[tokio::test]
async fn dropping_the_queue_mid_run_then_reopening() {
    let (dir, exec, q, store) = fixture(config(1, &[])).await;
    let mut rx = q.subscribe();
    let r = running(&q, "u", "gate").await;
    let w = q.submit("u", "quick", &json!({})).await.unwrap().id;
    drop(q);
    exec.gate.add_permits(1);
    let end = next_event(&mut rx, |t| t.id == r && t.state.is_finished()).await;
    assert_eq!(end.state, TaskState::Completed);
    assert_eq!(stored_state(&store, r).await, TaskState::Completed);
    assert_eq!(stored_state(&store, w).await, TaskState::Waiting);
    drop(store);

    // The old store closes once nothing holds it; then the next start runs `w`.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let store = loop {
        match SqliteStore::open_in(dir.path()) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "store never released: {e:#}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let exec2 = Arc::new(TestExec::default());
    let q = Queue::start(store, exec2.clone(), config(1, &[]))
        .await
        .unwrap();
    wait_task(&q, w, |t| t.state == TaskState::Completed).await;
    assert_eq!(exec.started_ids(), vec![r]);
    assert_eq!(exec2.started_ids(), vec![w]);
    q.shutdown().await;
}

/// The retention sweep runs at start: finished tasks past the retention go,
/// a batch at a time; recent ones and waiting ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_past_retention_are_deleted() {
    use super::store::{ClaimRequest, Finish, NewTask};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let day = 24 * 3600;
    let now = model::now();
    let new = |category: &str| NewTask {
        category: category.into(),
        user: "u".into(),
        deletable: false,
        name: String::new(),
        shown_params: "{}".into(),
        full_params: None,
        init: now - 50 * day,
        node: None,
    };
    // 1,100 tasks that ended 40 days ago (more than two batches), two that
    // ended now, and one waiting for a category nobody serves.
    let n_old = 2 * RETENTION_BATCH + 100;
    let inserted =
        futures::future::join_all((0..n_old + 2).map(|_| store.insert(new("quick")))).await;
    assert!(inserted.iter().all(Result::is_ok));
    let parked = store.insert(new("parked")).await.unwrap();
    let claimed = store
        .claim(ClaimRequest {
            max: n_old + 2,
            categories: vec![("quick".into(), None)],
            users: Vec::new(),
            now: now - 45 * day,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), n_old + 2);
    let ends = futures::future::join_all(claimed.iter().enumerate().map(|(i, c)| {
        store.finish(Finish {
            id: c.task.id,
            state: if i % 2 == 0 {
                TaskState::Completed
            } else {
                TaskState::Error
            },
            result: 0,
            detail: String::new(),
            progress: 100,
            end: if i < n_old { now - 40 * day } else { now },
            log: None,
        })
    }))
    .await;
    assert!(ends.into_iter().all(|r| r.unwrap()));
    let recent: Vec<i64> = claimed[n_old..].iter().map(|c| c.task.id).collect();

    let cfg = QueueConfig {
        retention: Some(Duration::from_secs(30 * day as u64)),
        ..config(1, &[])
    };
    let q = Queue::start(store.clone(), Arc::new(TestExec::default()), cfg)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let left = loop {
        let left = ids(q.list(&admin(), None).await.unwrap());
        if left.len() == 3 {
            break left;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} tasks left",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(left, vec![parked.id, recent[1], recent[0]]);
    // A sweep by hand with a later cut takes the recent ones, never the waiting one.
    assert_eq!(q.expire_finished(now + 1).await.unwrap(), 2);
    assert_eq!(ids(q.list(&admin(), None).await.unwrap()), vec![parked.id]);
    q.shutdown().await;
}

/// Append to `states` those announced for task `id` that `rx` holds now
/// (a repeated state once).
fn announced(rx: &mut broadcast::Receiver<TaskEvent>, id: i64, states: &mut Vec<TaskState>) {
    while let Ok(ev) = rx.try_recv() {
        if ev.task.id == id && states.last() != Some(&ev.task.state) {
            states.push(ev.task.state);
        }
    }
}

/// Append to `states` what is announced for task `id` until it ends.
async fn announced_until_end(
    rx: &mut broadcast::Receiver<TaskEvent>,
    id: i64,
    states: &mut Vec<TaskState>,
) {
    loop {
        let t = next_event(rx, |t| t.id == id).await;
        if states.last() != Some(&t.state) {
            states.push(t.state);
        }
        if t.state.is_finished() {
            return;
        }
    }
}

/// Wait (on a blocking thread) for the store to hold a claim's commit.
async fn held(rx: std::sync::mpsc::Receiver<()>) -> std::sync::mpsc::Receiver<()> {
    tokio::task::spawn_blocking(move || {
        rx.recv_timeout(DEADLINE)
            .expect("no claim reached its commit in time");
        rx
    })
    .await
    .unwrap()
}

/// Poll until `f` holds, or panic at the deadline.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Submit a `quick` task without waiting for the answer: its insert may
/// share the batch (and the held commit) of the claim that takes it.
fn submit_quick(q: &Arc<Queue>) -> tokio::task::JoinHandle<Task> {
    let q = q.clone();
    tokio::spawn(async move { q.submit("admin", "quick", &json!({})).await.unwrap() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_starts_while_its_claim_commits_and_is_announced_after() {
    let (_dir, exec, q, store) = fixture_with(TestExec::holding(), config(4, &[])).await;
    let (held_rx, release) = store.hold_early_claims();
    let mut rx = q.subscribe();
    let submitted = submit_quick(&q);
    let held_rx = held(held_rx).await;
    // The claim is answered and its commit held: the run goes on, but
    // nobody hears of it and the store does not say `running`.
    until("the run starts before its claim is durable", || {
        exec.started_ids().len() == 1
    })
    .await;
    let id = exec.started_ids()[0];
    let mut states = Vec::new();
    announced(&mut rx, id, &mut states);
    assert!(!states.contains(&TaskState::Running), "{states:?}");
    assert_ne!(
        store.get(id).await.unwrap().map(|t| t.state),
        Some(TaskState::Running)
    );
    release.send(true).unwrap();
    assert_eq!(submitted.await.unwrap().id, id);
    announced_until_end(&mut rx, id, &mut states).await;
    let done = wait_task(&q, id, |t| t.state == TaskState::Completed).await;
    assert_eq!(done.detail_state, "all good");
    assert_eq!(
        states,
        vec![TaskState::Waiting, TaskState::Running, TaskState::Completed]
    );
    drop(held_rx);
    q.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_does_not_hold_its_effects_starts_after_the_commit() {
    let (_dir, exec, q, store) = fixture(config(4, &[])).await;
    let (held_rx, release) = store.hold_early_claims();
    let submitted = submit_quick(&q);
    let held_rx = held(held_rx).await;
    // The claim was answered before the hold; give the run every chance
    // to start (it must not).
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(exec.started_ids().is_empty(), "started before the commit");
    release.send(true).unwrap();
    let t = submitted.await.unwrap();
    wait_task(&q, t.id, |t| t.state == TaskState::Completed).await;
    assert_eq!(exec.started_ids(), vec![t.id]);
    drop(held_rx);
    q.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_fails_to_commit_leaves_the_task_waiting_and_it_runs_again() {
    let (_dir, exec, q, store) = fixture_with(TestExec::holding(), config(1, &[])).await;
    // The one slot is taken, so the task below is stored (not claimed)
    // before the failpoint is set; the failed commit is the claim's alone.
    let gate = q.submit("admin", "gate", &json!({})).await.unwrap();
    wait_task(&q, gate.id, |t| t.state == TaskState::Running).await;
    let t = q.submit("admin", "quick", &json!({})).await.unwrap();
    let mut rx = q.subscribe();
    let (held_rx, release) = store.hold_early_claims();
    exec.gate.add_permits(1);
    let runs = || exec.started_ids().iter().filter(|i| **i == t.id).count();
    let held_rx = held(held_rx).await;
    until("the first run", || runs() == 1).await;
    // The disk fails the claim's commit: the run is forgotten, its end
    // changes nothing, the slot is given back, and the task claimed again.
    release.send(false).unwrap();
    let held_rx = held(held_rx).await;
    until("the second run", || runs() == 2).await;
    assert_eq!(stored_state(&store, t.id).await, TaskState::Waiting);
    release.send(true).unwrap();
    let done = wait_task(&q, t.id, |t| t.state == TaskState::Completed).await;
    assert_eq!(done.result, Some(0));
    assert_eq!(runs(), 2);
    // One start and one end announced: the lost run was never shown.
    let mut states = Vec::new();
    announced_until_end(&mut rx, t.id, &mut states).await;
    assert_eq!(states, vec![TaskState::Running, TaskState::Completed]);
    drop(held_rx);
    q.shutdown().await;
}
