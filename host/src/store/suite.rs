//! One suite of storage tests, run against every driver: tasks
//! ([`TaskStore`]), sessions and remembered credentials, in the embedded
//! SQLite store and in the PostgreSQL store (on a fresh database of
//! the test PostgreSQL, see [`crate::store::postgres::testing`]). Then what only the
//! shared store does: nodes, notifications, liveness, shared sessions.
//!
//! Its fixtures ([`new_task`], [`claim_req`], [`ids_of`]) serve the
//! drivers' own tests too.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use crate::store::credentials::{Credentials, RegistryLogin};
use crate::store::postgres::testing::fresh_database;
use crate::store::postgres::PgStore;
use crate::store::registries::{Edited, NewRegistry, Registries};
use crate::store::schedules::{Fired, Firing, NewSchedule};
use crate::store::secret::SecretBox;
use crate::store::sessions::{Session, Sessions};
use crate::store::sqlite::SqliteStore;
use crate::store::tasks::model::TaskState;
use crate::store::tasks::{
    ClaimRequest, Claimed, Finish, Interruption, NewTask, Notice, Owner, Page, ProgressUpdate,
    TaskFilter, TaskStore,
};
use crate::store::Database;

const DEADLINE: Duration = Duration::from_secs(20);
const KEY: [u8; 32] = [7; 32];

/// The stores of one driver under test, with what keeps them alive.
struct Under {
    store: Arc<dyn TaskStore>,
    /// Another handle on the same data for concurrent claims: for
    /// PostgreSQL another connection set of the same node; for SQLite
    /// (one process per file) the same store.
    twin: Arc<dyn TaskStore>,
    sessions: Arc<dyn Sessions>,
    credentials: Arc<dyn Credentials>,
    registries: Arc<dyn Registries>,
    _dir: TempDir,
}

async fn sqlite() -> Under {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TaskStore> =
        SqliteStore::open_with(dir.path().join("stevedore.db"), SecretBox::from_key(&KEY)).unwrap();
    Under {
        twin: store.clone(),
        store,
        sessions: crate::store::sessions_in_file(&dir.path().join("sessions.db"), 0).unwrap(),
        credentials: crate::store::credentials_in_folder(dir.path()).unwrap(),
        registries: Arc::new(crate::store::sqlite::SqliteRegistries::open_in(dir.path()).unwrap()),
        _dir: dir,
    }
}

async fn pg_node(url: &str, node: &str) -> Arc<PgStore> {
    let db = Database::connect(url, node).await.unwrap();
    PgStore::open(db, SecretBox::from_key(&KEY)).await.unwrap()
}

async fn postgres() -> Under {
    let url = fresh_database("suite").await.unwrap();
    let store = pg_node(&url, "a").await;
    let db = store.database();
    Under {
        sessions: db.sessions(),
        credentials: db.credentials(SecretBox::from_key(&KEY)),
        registries: db.registries(SecretBox::from_key(&KEY)),
        twin: pg_node(&url, "a").await,
        store,
        _dir: tempfile::tempdir().unwrap(),
    }
}

/// Two nodes, `a` and `b`, of a fresh database named after `test`.
async fn two_nodes(test: &str) -> (Arc<PgStore>, Arc<PgStore>) {
    let url = fresh_database(test).await.unwrap();
    (pg_node(&url, "a").await, pg_node(&url, "b").await)
}

/// A waiting task of `cat` by `user`, with sealed full params `full` if any.
pub(super) fn new_task(cat: &str, user: &str, full: Option<&str>) -> NewTask {
    NewTask {
        category: cat.into(),
        user: user.into(),
        deletable: false,
        name: format!("{cat}-task"),
        shown_params: r#"{"password":"******"}"#.into(),
        full_params: full.map(str::to_string),
        init: 1,
        node: None,
    }
}

/// Claim at most `max` tasks of `categories` (each with its allowance) at `now`.
pub(super) fn claim_req(
    max: usize,
    categories: &[(&str, Option<usize>)],
    now: i64,
) -> ClaimRequest {
    ClaimRequest {
        max,
        categories: categories
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect(),
        users: Vec::new(),
        now,
    }
}

/// The end of run `id` as `state` at `end` (result 1 for an error).
fn finish(id: i64, state: TaskState, end: i64) -> Finish {
    Finish {
        id,
        state,
        result: i32::from(state == TaskState::Error),
        detail: "done".into(),
        progress: 100,
        end,
        log: None,
    }
}

/// The ids of claimed tasks, in their order.
fn claimed_ids(claimed: &[Claimed]) -> Vec<i64> {
    claimed.iter().map(|c| c.task.id).collect()
}

/// Insert, claim (FIFO within the allowances, secrets opened), progress,
/// finish once, list, count, delete, recover; ids never reused.
async fn lifecycle(u: Under) {
    let s = &u.store;
    let a1 = s
        .insert(new_task("a", "u", Some(r#"{"password":"hunter2"}"#)))
        .await
        .unwrap();
    let a2 = s.insert(new_task("a", "u", None)).await.unwrap();
    let b1 = s.insert(new_task("b", "v", None)).await.unwrap();
    let c1 = s.insert(new_task("c", "v", None)).await.unwrap();
    assert!(a1.id < a2.id && a2.id < b1.id && b1.id < c1.id);
    assert_eq!(a1.state, TaskState::Waiting);
    assert_eq!(a1.name, "a-task");
    assert_eq!(a1.result, None);

    // One of `a` at most, `b` unbounded, `c` not at all.
    let got = s
        .claim(claim_req(10, &[("a", Some(1)), ("b", None)], 5))
        .await
        .unwrap();
    assert_eq!(claimed_ids(&got), vec![a1.id, b1.id]);
    assert_eq!(got[0].full_params, r#"{"password":"hunter2"}"#);
    assert_eq!(got[0].task.params.get(), r#"{"password":"******"}"#);
    assert_eq!(got[0].task.state, TaskState::Running);
    assert_eq!(got[0].task.start, Some(5));
    assert_eq!(got[1].full_params, got[1].task.params.get());

    // Progress lands on running tasks only.
    s.save_progress(vec![
        ProgressUpdate {
            id: a1.id,
            progress: 40,
            detail: "working".into(),
        },
        ProgressUpdate {
            id: c1.id,
            progress: 90,
            detail: "not running".into(),
        },
    ])
    .await
    .unwrap();
    let t = s.get(a1.id).await.unwrap().unwrap();
    assert_eq!((t.progress, t.detail_state.as_str()), (40, "working"));
    let t = s.get(c1.id).await.unwrap().unwrap();
    assert_eq!((t.progress, t.state), (0, TaskState::Waiting));

    let done = finish(a1.id, TaskState::Completed, 7);
    assert!(s.finish(done.clone()).await.unwrap());
    assert!(
        !s.finish(done).await.unwrap(),
        "a finished task is not finished twice"
    );
    let t = s.get(a1.id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.progress, t.end, t.result),
        (TaskState::Completed, 100, Some(7), Some(0))
    );
    assert!(s.get(999_999).await.unwrap().is_none());

    // One task in each; the oldest waiting submit time is `c`'s `init`.
    let counts = s.counts().await.unwrap();
    for (category, state, oldest_init) in [
        ("a", TaskState::Completed, a1.init),
        ("b", TaskState::Running, b1.init),
        ("c", TaskState::Waiting, c1.init),
    ] {
        assert!(
            counts.iter().any(|c| c.category == category
                && c.state == state
                && c.count == 1
                && c.oldest_init == oldest_init),
            "{counts:?}"
        );
    }

    // Filters; newest first.
    let all = ids_of(s.list(Owner::Anyone, None).await.unwrap());
    assert_eq!(all, vec![c1.id, b1.id, a2.id, a1.id]);
    assert_eq!(s.list(Owner::User("v"), None).await.unwrap().len(), 2);
    assert_eq!(s.list(Owner::Anyone, Some("a")).await.unwrap().len(), 2);
    assert_eq!(
        s.list(Owner::User("v"), Some("c")).await.unwrap()[0].id,
        c1.id
    );

    assert_eq!(
        ids_of(s.delete_finished(Owner::User("v"), None).await.unwrap()),
        Vec::<i64>::new()
    );
    let gone = s
        .delete_finished(Owner::User("u"), Some("a"))
        .await
        .unwrap();
    assert_eq!(ids_of(gone.clone()), vec![a1.id]);
    // As it was: the queue announces it to its owner with it.
    assert_eq!(
        (gone[0].user.as_str(), gone[0].category.as_str()),
        ("u", "a")
    );
    assert!(gone[0].state.is_finished());
    assert!(!s.delete_if(c1.id, &[TaskState::Running]).await.unwrap());
    assert!(s.delete_if(c1.id, &[TaskState::Waiting]).await.unwrap());

    // Recovery takes the running ones only: b1 (a2 is still waiting).
    let ids = s
        .interrupt_running(Interruption::new(4, "interrupted", 9))
        .await
        .unwrap();
    assert_eq!(ids, vec![b1.id]);
    let t = s.get(b1.id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.result, t.end),
        (TaskState::Error, Some(4), Some(9))
    );
    assert_eq!(
        s.get(a2.id).await.unwrap().unwrap().state,
        TaskState::Waiting
    );

    // Ids are never reused after deletes.
    let n = s.insert(new_task("a", "u", None)).await.unwrap();
    assert!(n.id > c1.id);

    s.close().await.unwrap();
    assert!(
        s.insert(new_task("a", "u", None)).await.is_err(),
        "a closed store refuses writes"
    );
}

/// A user with no allowance left keeps their tasks waiting; others go on.
async fn per_user_allowance(u: Under) {
    let s = &u.store;
    let x1 = s.insert(new_task("a", "x", None)).await.unwrap();
    let x2 = s.insert(new_task("a", "x", None)).await.unwrap();
    let y1 = s.insert(new_task("a", "y", None)).await.unwrap();
    let mut req = claim_req(10, &[("a", None)], 1);
    req.users = vec![("x".into(), 1)];
    let got = s.claim(req.clone()).await.unwrap();
    assert_eq!(claimed_ids(&got), vec![x1.id, y1.id]);
    req.users = vec![("x".into(), 0)];
    assert!(s.claim(req).await.unwrap().is_empty());
    assert_eq!(
        s.get(x2.id).await.unwrap().unwrap().state,
        TaskState::Waiting
    );
}

/// A claim takes several tasks per statement (as many as no allowance can
/// be overrun by): it must take exactly what claiming the oldest allowed
/// task one at a time would, in id order, each with its own full params.
async fn a_claim_takes_what_one_at_a_time_would(u: Under) {
    let s = &u.store;
    let (cats, users) = (["a", "b", "c"], ["x", "y", "z"]);
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let (cat, user) = (cats[i * 7 % 3], users[(i * 5 + i / 7) % 3]);
        let secret = (i % 4 == 0).then(|| format!(r#"{{"password":"s{i}"}}"#));
        let t = s
            .insert(new_task(cat, user, secret.as_deref()))
            .await
            .unwrap();
        tasks.push((t.id, cat, user, secret));
    }
    // `c` is not claimable, `a` has 6 left, `b` any; `x` 9 left, `y` none.
    let mut req = claim_req(25, &[("a", Some(6)), ("b", None)], 3);
    req.users = vec![("x".into(), 9), ("y".into(), 0)];
    let (mut a_left, mut x_left, mut want) = (6, 9, Vec::new());
    for (id, cat, user, secret) in &tasks {
        let allowed = match (*cat, *user) {
            ("c", _) | (_, "y") => false,
            ("a", _) if a_left == 0 => false,
            (_, "x") if x_left == 0 => false,
            _ => want.len() < 25,
        };
        if allowed {
            a_left -= usize::from(*cat == "a");
            x_left -= usize::from(*user == "x");
            want.push((*id, secret.clone()));
        }
    }
    let got = s.claim(req).await.unwrap();
    let got: Vec<(i64, Option<String>)> = got
        .iter()
        .map(|c| {
            assert_eq!(c.task.state, TaskState::Running);
            let shown = c.task.params.get();
            (
                c.task.id,
                (c.full_params != shown).then(|| c.full_params.clone()),
            )
        })
        .collect();
    assert_eq!(got, want);
}

/// Claimers racing (on two handles) take every task exactly once.
async fn concurrent_claims_take_each_task_once(u: Under) {
    const N: usize = 120;
    for _ in 0..N {
        u.store.insert(new_task("a", "u", None)).await.unwrap();
    }
    let mut claimers = Vec::new();
    for i in 0..4 {
        let s = if i % 2 == 0 {
            u.store.clone()
        } else {
            u.twin.clone()
        };
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim(claim_req(7, &[("a", None)], 1)).await.unwrap();
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.into_iter().map(|c| c.task.id));
            }
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), N, "claimed {} for {N} tasks", all.len());
    assert_eq!(unique.len(), N, "a task was claimed twice");
}

/// Thousands of writes at once (what a busy server sends a store that
/// groups them into shared transactions): each gets its own answer, a
/// finish of a task that is not running says so inside a batch of good
/// ones, and a deletion of them all is announced in full (on PostgreSQL
/// across several notices, each under the payload limit).
async fn concurrent_writes_each_get_their_answer(u: Under) {
    const N: usize = 2_000;
    let inserts: Vec<_> = (0..N)
        .map(|i| {
            let s = u.store.clone();
            tokio::spawn(async move {
                let secret = format!(r#"{{"password":"pw-{i}"}}"#);
                let t = s
                    .insert(new_task("a", "u", (i % 2 == 0).then_some(&*secret)))
                    .await
                    .unwrap();
                (t.id, (i % 2 == 0).then_some(secret))
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut secrets = std::collections::HashMap::new();
    for h in inserts {
        let (id, secret) = h.await.unwrap();
        ids.push(id);
        if let Some(secret) = secret {
            secrets.insert(id, secret);
        }
    }
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), N, "every insert got its own id");

    let claimed = u
        .store
        .claim(claim_req(N + 10, &[("a", None)], 2))
        .await
        .unwrap();
    assert_eq!(claimed.len(), N);
    assert!(
        claimed.windows(2).all(|w| w[0].task.id < w[1].task.id),
        "oldest first"
    );
    for c in &claimed {
        let want = secrets
            .get(&c.task.id)
            .cloned()
            .unwrap_or_else(|| c.task.params.get().to_string());
        assert_eq!(c.full_params, want, "task {}", c.task.id);
    }
    let waiting = u.store.insert(new_task("a", "u", None)).await.unwrap();

    let finishes: Vec<_> = claimed
        .iter()
        .map(|c| c.task.id)
        .chain([waiting.id])
        .map(|id| {
            let s = u.store.clone();
            tokio::spawn(async move {
                let f = finish(id, TaskState::Completed, 3);
                (id, s.finish(f).await.unwrap())
            })
        })
        .collect();
    for h in finishes {
        let (id, ended) = h.await.unwrap();
        assert_eq!(ended, id != waiting.id, "finish of task {id}");
    }
    assert_eq!(
        u.store.get(waiting.id).await.unwrap().unwrap().state,
        TaskState::Waiting,
        "a finish never ends a waiting task"
    );

    let mut notices = u.store.notices();
    let mut deleted = ids_of(u.store.delete_finished(Owner::Anyone, None).await.unwrap());
    deleted.sort_unstable();
    let mut want: Vec<i64> = claimed.iter().map(|c| c.task.id).collect();
    want.sort_unstable();
    assert_eq!(deleted, want);
    if let Some(rx) = notices.as_mut() {
        let mut announced = HashSet::new();
        while announced.len() < N {
            let notice = tokio::time::timeout(DEADLINE, rx.recv())
                .await
                .expect("the deletion is announced in full")
                .unwrap();
            if let Notice::Changed { ids, .. } = notice {
                announced.extend(ids.into_iter().filter(|id| unique.contains(id)));
            }
        }
    }
}

/// Insert `tasks` concurrently (the store groups them); returns their ids, increasing.
async fn insert_all(s: &Arc<dyn TaskStore>, tasks: Vec<NewTask>) -> Vec<i64> {
    let mut ids: Vec<i64> = futures::future::join_all(tasks.into_iter().map(|t| {
        let s = s.clone();
        async move { s.insert(t).await.unwrap().id }
    }))
    .await;
    ids.sort_unstable();
    ids
}

/// Claim every waiting task of `category` and end each as `state` at `end`.
async fn run_all(s: &Arc<dyn TaskStore>, category: &str, state: TaskState, end: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        let got = s
            .claim(claim_req(4096, &[(category, None)], 1))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        ids.extend(got.iter().map(|c| c.task.id));
    }
    futures::future::join_all(ids.iter().map(|&id| {
        let s = s.clone();
        async move { assert!(s.finish(finish(id, state, end)).await.unwrap()) }
    }))
    .await;
    ids.sort_unstable();
    ids
}

/// Every id of the listing of `filter`, read in pages of `limit` from the
/// newest; checks each page is at most `limit`, newest first.
async fn paged(s: &Arc<dyn TaskStore>, filter: TaskFilter<'_>, limit: usize) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    let mut before = None;
    loop {
        let page = s.list_page(filter, Page { before, limit }).await.unwrap();
        assert!(page.len() <= limit, "{} > {limit}", page.len());
        let ids: Vec<i64> = page.iter().map(|t| t.id).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        if let (Some(prev), Some(first)) = (out.last(), ids.first()) {
            assert!(first < prev, "a page starts below the last one");
        }
        out.extend(&ids);
        match page.last() {
            Some(last) => before = Some(last.id),
            None => break out,
        }
    }
}

/// Pages (`before` the last id, at most `limit`) cover every task exactly
/// once, newest first, with every filter; `before` past the end is empty.
async fn pages_cover_every_task_once(u: Under) {
    let s = &u.store;
    let tasks = (0..53)
        .map(|i| {
            let cat = if i % 3 == 0 { "b" } else { "a" };
            let user = if i % 2 == 0 { "u" } else { "v" };
            new_task(cat, user, None)
        })
        .collect();
    let ids = insert_all(s, tasks).await;
    // Some of them finished: a page is a page whatever the states.
    run_all(s, "b", TaskState::Completed, 3).await;
    let anyone = TaskFilter {
        owner: Owner::Anyone,
        category: None,
        node: None,
    };
    let all = ids_of(s.list(Owner::Anyone, None).await.unwrap());
    assert_eq!(all, ids.iter().rev().copied().collect::<Vec<_>>());
    for limit in [1, 7, 53, 54, 1000] {
        assert_eq!(paged(s, anyone, limit).await, all, "limit {limit}");
    }
    // Filters, alone and together, give the listing's pages.
    for (owner, category) in [
        (Owner::User("v"), None),
        (Owner::Anyone, Some("b")),
        (Owner::User("u"), Some("a")),
        (Owner::User("nobody"), None),
    ] {
        let want = ids_of(s.list(owner, category).await.unwrap());
        let filter = TaskFilter {
            owner,
            category,
            node: None,
        };
        assert_eq!(paged(s, filter, 5).await, want, "{owner:?} {category:?}");
    }
    // A page is the same tasks as the listing shows, not only the same ids.
    let page = s
        .list_page(
            anyone,
            Page {
                before: Some(ids[10]),
                limit: 3,
            },
        )
        .await
        .unwrap();
    let listed = s.list(Owner::Anyone, None).await.unwrap();
    let at = listed.iter().position(|t| t.id == ids[9]).unwrap();
    assert_eq!(page, listed[at..at + 3]);
    // Past the end, and at the very start.
    let oldest = ids[0];
    for before in [Some(oldest), Some(1), Some(i64::MIN)] {
        let p = s
            .list_page(anyone, Page { before, limit: 10 })
            .await
            .unwrap();
        assert!(p.is_empty(), "before {before:?}: {p:?}");
    }
    let above = s
        .list_page(
            anyone,
            Page {
                before: Some(i64::MAX),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(above.iter().map(|t| t.id).collect::<Vec<_>>(), all[..2]);
    assert!(s
        .list_page(
            anyone,
            Page {
                before: None,
                limit: 0
            }
        )
        .await
        .unwrap()
        .is_empty());
    // The node filter: this node has every task; another node none (a
    // store of one node runs every task itself and ignores the filter).
    if let Some(me) = s.node() {
        let mine = TaskFilter {
            node: Some(me),
            ..anyone
        };
        assert_eq!(paged(s, mine, 20).await, all);
        let other = TaskFilter {
            node: Some("elsewhere"),
            ..anyone
        };
        assert!(paged(s, other, 20).await.is_empty());
    } else {
        let any_node = TaskFilter {
            node: Some("elsewhere"),
            ..anyone
        };
        assert_eq!(paged(s, any_node, 20).await, all);
    }
}

/// Retention deletes finished tasks that ended before the cut, in batches
/// of at most `max`, oldest end first; never a waiting or running task,
/// nor one that ended after the cut. Each batch is announced.
async fn retention_deletes_only_old_finished_tasks_in_batches(u: Under) {
    let s = &u.store;
    let old_done = {
        insert_all(s, (0..700).map(|_| new_task("old", "u", None)).collect()).await;
        run_all(s, "old", TaskState::Completed, 100).await
    };
    let old_failed = {
        insert_all(s, (0..405).map(|_| new_task("bad", "v", None)).collect()).await;
        run_all(s, "bad", TaskState::Error, 50).await
    };
    let recent = {
        insert_all(s, (0..3).map(|_| new_task("new", "u", None)).collect()).await;
        run_all(s, "new", TaskState::Completed, 5000).await
    };
    // Old in every sense but state: waiting and running are kept.
    let waiting = insert_all(s, (0..2).map(|_| new_task("wait", "u", None)).collect()).await;
    let running = insert_all(s, vec![new_task("run", "u", None)]).await;
    let claimed = s.claim(claim_req(1, &[("run", None)], 1)).await.unwrap();
    assert_eq!(claimed[0].task.id, running[0]);
    assert!(s.delete_ended_before(1000, 0).await.unwrap().is_empty());

    let mut heard = s.notices();
    let mut batches: Vec<Vec<i64>> = Vec::new();
    loop {
        let ids = ids_of(s.delete_ended_before(1000, 500).await.unwrap());
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing");
        // Announced as any deletion is (to the other nodes), in notices of
        // at most `MAX_NOTICE_IDS` ids.
        if let (Some(rx), false) = (heard.as_mut(), ids.is_empty()) {
            let mut announced = Vec::new();
            while announced.len() < ids.len() {
                let n = next_notice(
                    rx,
                    |n| matches!(n, Notice::Changed { ids: got, .. } if ids.contains(&got[0])),
                )
                .await;
                let Notice::Changed { ids: got, origin } = n else {
                    unreachable!()
                };
                assert_eq!(origin, "a");
                assert!(got.len() <= crate::store::notice::MAX_NOTICE_IDS);
                announced.extend(got);
            }
            assert_eq!(announced, ids);
        }
        let last = ids.len() < 500;
        batches.push(ids);
        if last {
            break;
        }
    }
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![500, 500, 105], "batches of at most 500");
    // Oldest end first: the errors (end 50) went in the first batch.
    assert!(old_failed.iter().all(|id| batches[0].contains(id)));
    let mut deleted = batches.concat();
    deleted.sort_unstable();
    let mut want: Vec<i64> = old_done.iter().chain(&old_failed).copied().collect();
    want.sort_unstable();
    assert_eq!(deleted, want);
    let mut left = ids_of(s.list(Owner::Anyone, None).await.unwrap());
    left.sort_unstable();
    let mut kept: Vec<i64> = recent
        .iter()
        .chain(&waiting)
        .chain(&running)
        .copied()
        .collect();
    kept.sort_unstable();
    assert_eq!(left, kept);
    assert!(s.delete_ended_before(1000, 500).await.unwrap().is_empty());
    // A later cut takes the recent ones too, still not waiting or running.
    assert_eq!(
        ids_of(s.delete_ended_before(i64::MAX, 500).await.unwrap()),
        recent
    );
    assert_eq!(
        s.counts()
            .await
            .unwrap()
            .iter()
            .map(|c| c.count)
            .sum::<u64>(),
        3
    );
}

/// A task's log lines: kept in order, written in batches (with the flush
/// and with the end), the oldest dropped past the bound in lines and in
/// bytes, gone with the task (deleted one by one, by owner, by retention).
async fn task_logs_are_bounded_and_deleted_with_the_task(u: Under) {
    use crate::store::task_log::{LogBuffer, LogLevel, LogLimits, LogLine};
    let s = &u.store;
    let line = |i: usize, size: usize| LogLine {
        ts: 1_000 + i as i64,
        level: if i.is_multiple_of(2) {
            LogLevel::Info
        } else {
            LogLevel::Warn
        },
        message: format!("{i:0size$}"),
    };
    let ids = insert_all(s, (0..3).map(|_| new_task("log", "u", None)).collect()).await;
    let claimed = s.claim(claim_req(3, &[("log", None)], 1)).await.unwrap();
    assert_eq!(claimed_ids(&claimed), ids);
    let (by_lines, by_bytes, quiet) = (ids[0], ids[1], ids[2]);
    assert_eq!(s.log(by_lines).await.unwrap(), Default::default());

    // Bounded by lines: 5 kept of 12, written in three batches, the last
    // with the end of the run.
    let mut buf = LogBuffer::new(LogLimits {
        lines: 5,
        bytes: 1 << 20,
    });
    for i in 0..3 {
        buf.push(line(i, 4));
    }
    s.save_logs(vec![buf.take_batch(by_lines).unwrap()])
        .await
        .unwrap();
    let stored = s.log(by_lines).await.unwrap();
    assert_eq!(stored.lines, (0..3).map(|i| line(i, 4)).collect::<Vec<_>>());
    assert!(!stored.truncated);
    for i in 3..9 {
        buf.push(line(i, 4));
    }
    s.save_logs(vec![buf.take_batch(by_lines).unwrap()])
        .await
        .unwrap();
    for i in 9..12 {
        buf.push(line(i, 4));
    }
    let mut end = finish(by_lines, TaskState::Completed, 10);
    end.log = buf.take_batch(by_lines);
    assert!(s.finish(end).await.unwrap());
    let stored = s.log(by_lines).await.unwrap();
    assert_eq!(
        stored.lines,
        (7..12).map(|i| line(i, 4)).collect::<Vec<_>>()
    );
    assert!(stored.truncated);
    assert_eq!(stored, buf.snapshot());

    // Bounded by bytes: 100-byte lines within 350 bytes keep 3.
    let mut buf = LogBuffer::new(LogLimits {
        lines: 1000,
        bytes: 350,
    });
    for i in 0..10 {
        buf.push(line(i, 100));
        if i % 4 == 3 {
            s.save_logs(vec![buf.take_batch(by_bytes).unwrap()])
                .await
                .unwrap();
        }
    }
    s.save_logs(vec![buf.take_batch(by_bytes).unwrap()])
        .await
        .unwrap();
    let stored = s.log(by_bytes).await.unwrap();
    assert_eq!(
        stored.lines,
        (7..10).map(|i| line(i, 100)).collect::<Vec<_>>()
    );
    assert!(stored.truncated);

    // Lines of a task that is gone are dropped, not an error.
    let mut gone = LogBuffer::new(LogLimits::default());
    gone.push(line(0, 1));
    s.save_logs(vec![gone.take_batch(999_999).unwrap()])
        .await
        .unwrap();
    assert!(s.log(999_999).await.unwrap().lines.is_empty());

    // Deleted with the task, whichever way it goes.
    assert!(s
        .delete_if(by_lines, &[TaskState::Completed])
        .await
        .unwrap());
    assert_eq!(s.log(by_lines).await.unwrap(), Default::default());
    assert!(s
        .finish(finish(by_bytes, TaskState::Error, 10))
        .await
        .unwrap());
    assert_eq!(s.log(by_bytes).await.unwrap().lines.len(), 3);
    assert_eq!(
        ids_of(
            s.delete_finished(Owner::User("u"), Some("log"))
                .await
                .unwrap()
        ),
        vec![by_bytes]
    );
    assert!(s.log(by_bytes).await.unwrap().lines.is_empty());
    let mut last = LogBuffer::new(LogLimits::default());
    last.push(line(0, 8));
    let mut end = finish(quiet, TaskState::Completed, 10);
    end.log = last.take_batch(quiet);
    assert!(s.finish(end).await.unwrap());
    assert_eq!(s.log(quiet).await.unwrap().lines, vec![line(0, 8)]);
    assert_eq!(
        ids_of(s.delete_ended_before(11, 10).await.unwrap()),
        vec![quiet]
    );
    assert!(s.log(quiet).await.unwrap().lines.is_empty());
}

/// `suite!([module: driver, ...] [name, ...])`: each test `name` against
/// each driver, as `module::name`.
macro_rules! suite {
    ([$($module:ident: $driver:ident),* $(,)?] $names:tt) => {
        $( suite!(@one $module $driver $names); )*
    };
    (@one $module:ident $driver:ident [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::$driver().await).await
                }
            )*
        }
    };
}

// ---- sessions and remembered credentials, every driver -----------------------

fn session(user: &str, expires: i64) -> Session {
    Session {
        username: user.into(),
        login_time: 100,
        expires,
        stamp: format!("stamp-{user}"),
    }
}

async fn sessions_are_stored_replaced_extended_and_purged(u: Under) {
    let s = &u.sessions;
    let (k1, k2) = ([1u8; 32], [2u8; 32]);
    assert_eq!(s.get(&k1).await.unwrap(), None);
    s.insert(&k1, &session("alice", 200)).await.unwrap();
    s.insert(&k2, &session("bob", 400)).await.unwrap();
    assert_eq!(s.get(&k1).await.unwrap(), Some(session("alice", 200)));
    // The same key again replaces the session.
    s.insert(&k1, &session("carol", 300)).await.unwrap();
    assert_eq!(s.get(&k1).await.unwrap(), Some(session("carol", 300)));
    s.extend(&k1, 350).await.unwrap();
    assert_eq!(s.get(&k1).await.unwrap().unwrap().expires, 350);
    // A purge drops only what expired by then.
    s.purge(350).await.unwrap();
    assert_eq!(s.get(&k1).await.unwrap(), None);
    assert_eq!(s.get(&k2).await.unwrap(), Some(session("bob", 400)));
    s.remove(&k2).await.unwrap();
    assert_eq!(s.get(&k2).await.unwrap(), None);
}

async fn credentials_are_kept_per_user_and_registry(u: Under) {
    let c = &u.credentials;
    let login = |u: &str, p: &str| RegistryLogin {
        username: u.into(),
        password: p.into(),
    };
    assert_eq!(c.lookup("alice", "r:5000").await.unwrap(), None);
    // A login is alice's alone; remembering again replaces it.
    for (registry, user, password) in [
        ("r:5000", "u", "p+/="),
        ("r:5001", "v", "q"),
        ("r:5000", "w", "z"),
    ] {
        let remembered = login(user, password);
        c.remember("alice", registry, &remembered).await.unwrap();
        assert_eq!(c.lookup("alice", registry).await.unwrap(), Some(remembered));
        assert_eq!(c.lookup("bob", registry).await.unwrap(), None);
    }
    // The other registry keeps its login.
    assert_eq!(
        c.lookup("alice", "r:5001").await.unwrap(),
        Some(login("v", "q"))
    );
}

// ---- the API's registries and preferences, every driver ----------------------

fn registry(name: &str, password: Option<&str>) -> NewRegistry {
    NewRegistry {
        name: name.into(),
        url: format!("https://{name}.example:5000"),
        trust_cert: false,
        version: "v2".into(),
        login: password.map(|p| RegistryLogin {
            username: "bot".into(),
            password: p.into(),
        }),
    }
}

async fn registries_are_added_edited_removed_with_unique_names(u: Under) {
    let r = &u.registries;
    assert!(r.list().await.unwrap().is_empty());
    let a = r.add(&registry("a", Some("pw+/="))).await.unwrap().unwrap();
    let b = r.add(&registry("b", None)).await.unwrap().unwrap();
    assert!(b.id > a.id);
    // A taken name is refused and changes nothing.
    assert_eq!(r.add(&registry("a", None)).await.unwrap(), None);
    assert_eq!(r.list().await.unwrap(), vec![a.clone(), b.clone()]);
    // An edit keeps the id, renames and replaces the login.
    let renamed = registry("c", Some("new"));
    assert_eq!(
        r.edit("a", &renamed).await.unwrap(),
        Edited::Done(crate::store::registries::StoredRegistry {
            id: a.id,
            registry: renamed.clone(),
        })
    );
    assert_eq!(r.edit("a", &renamed).await.unwrap(), Edited::Missing);
    assert_eq!(r.edit("b", &renamed).await.unwrap(), Edited::Taken);
    let listed = r.list().await.unwrap();
    assert_eq!(listed[0].registry, renamed);
    assert_eq!(listed[1], b);
    assert!(r.remove("c").await.unwrap());
    assert!(!r.remove("c").await.unwrap());
    assert_eq!(r.list().await.unwrap(), vec![b]);
    // An id is not reused.
    let d = r.add(&registry("d", None)).await.unwrap().unwrap();
    assert!(d.id > a.id && d.id != a.id);
}

async fn preferences_are_set_replaced_and_removed(u: Under) {
    let r = &u.registries;
    assert_eq!(r.preference("repo").await.unwrap(), None);
    r.set_preference("repo", Some("http://x/")).await.unwrap();
    r.set_preference("repo", Some("http://y/")).await.unwrap();
    assert_eq!(
        r.preference("repo").await.unwrap().as_deref(),
        Some("http://y/")
    );
    assert_eq!(r.preference("other").await.unwrap(), None);
    r.set_preference("repo", None).await.unwrap();
    assert_eq!(r.preference("repo").await.unwrap(), None);
}

suite!(
    [sqlite_backend: sqlite, postgres_backend: postgres]
    [
        lifecycle,
        per_user_allowance,
        a_claim_takes_what_one_at_a_time_would,
        concurrent_claims_take_each_task_once,
        concurrent_writes_each_get_their_answer,
        pages_cover_every_task_once,
        retention_deletes_only_old_finished_tasks_in_batches,
        task_logs_are_bounded_and_deleted_with_the_task,
        sessions_are_stored_replaced_extended_and_purged,
        credentials_are_kept_per_user_and_registry,
        registries_are_added_edited_removed_with_unique_names,
        preferences_are_set_replaced_and_removed,
        schedules_are_created_listed_paused_and_deleted,
        a_firing_stores_its_task_or_its_error_with_next_run,
        racing_firings_of_one_occurrence_store_one_task,
        webhooks_are_created_listed_and_deleted_with_sealed_secrets,
        the_outbox_records_claims_retries_and_completes_deliveries,
        a_tasks_end_records_its_deliveries_with_the_end,
    ]
);

// ---- webhooks, every driver -------------------------------------------------

fn new_webhook(owner: &str, secret: &str) -> crate::store::webhooks::NewWebhook {
    crate::store::webhooks::NewWebhook {
        owner: owner.into(),
        all_users: false,
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["task.completed".into(), "task.error".into()],
        categories: Some(vec!["noop".into()]),
        secret: secret.into(),
        created: 1,
    }
}

fn delivery(webhook: i64, event_id: &str, created: i64) -> crate::store::webhooks::NewDelivery {
    crate::store::webhooks::NewDelivery {
        webhook,
        event_id: event_id.into(),
        event: "task.completed".into(),
        body: format!(r#"{{"id":"{event_id}"}}"#),
        created,
    }
}

async fn webhooks_are_created_listed_and_deleted_with_sealed_secrets(u: Under) {
    let w = u.store.webhooks().expect("the store keeps webhooks");
    let a = w
        .create_webhook(new_webhook("alice", "whsec_alice"))
        .await
        .unwrap();
    let b = w
        .create_webhook(new_webhook("bob", "whsec_bob"))
        .await
        .unwrap();
    assert!(b.id > a.id);
    assert_eq!(a.owner, "alice");
    assert_eq!(a.events, ["task.completed", "task.error"]);
    assert_eq!(a.categories.as_deref(), Some(&["noop".to_string()][..]));
    let ids = |v: Vec<crate::store::webhooks::Webhook>| v.iter().map(|w| w.id).collect::<Vec<_>>();
    assert_eq!(ids(w.webhooks(Owner::Anyone).await.unwrap()), [a.id, b.id]);
    assert_eq!(ids(w.webhooks(Owner::User("bob")).await.unwrap()), [b.id]);
    assert_eq!(w.webhooks_of("alice").await.unwrap(), 1);
    assert_eq!(w.webhook(a.id).await.unwrap(), Some(a.clone()));
    // The secret comes back only with a claimed delivery, opened.
    w.enqueue(vec![delivery(a.id, "e1", 10)]).await.unwrap();
    let claimed = w.claim_deliveries("n", 10, 1000, 5).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let target = claimed[0].target.clone().unwrap();
    assert_eq!(
        (target.url.as_str(), target.secret.as_str()),
        ("http://127.0.0.1:9/hook", "whsec_alice")
    );
    // Deleting drops its deliveries.
    assert!(w.delete_webhook(a.id).await.unwrap());
    assert!(!w.delete_webhook(a.id).await.unwrap());
    assert!(w.webhook(a.id).await.unwrap().is_none());
    assert!(w.deliveries(a.id, 10).await.unwrap().is_empty());
}

async fn the_outbox_records_claims_retries_and_completes_deliveries(u: Under) {
    use crate::store::webhooks::{Attempt, DeliveryStatus};
    let w = u.store.webhooks().unwrap();
    let hook = w.create_webhook(new_webhook("alice", "s")).await.unwrap();
    // A configured webhook's deliveries (negative id) carry no target.
    let new = w
        .enqueue(vec![
            delivery(hook.id, "e1", 100),
            delivery(hook.id, "e2", 200),
            delivery(-1, "e1", 150),
        ])
        .await
        .unwrap();
    assert_eq!(new, 3);
    // The same event again is no new delivery.
    assert_eq!(
        w.enqueue(vec![delivery(hook.id, "e1", 300)]).await.unwrap(),
        0
    );
    assert_eq!(w.next_delivery().await.unwrap(), Some(100));

    // Due ones only, oldest first, within `max`.
    let first = w.claim_deliveries("a", 160, 10_000, 2).await.unwrap();
    let events: Vec<_> = first
        .iter()
        .map(|c| (c.delivery.webhook, c.delivery.event_id.as_str()))
        .collect();
    assert_eq!(events, [(hook.id, "e1"), (-1, "e1")]);
    assert!(first[1].target.is_none());
    assert_eq!(first[0].delivery.attempts, 1);
    assert_eq!(first[0].body, r#"{"id":"e1"}"#);
    // Claimed: another claim does not take them, while the claim lasts.
    let other = u.twin.webhooks().unwrap();
    let second = other.claim_deliveries("b", 500, 10_000, 10).await.unwrap();
    assert_eq!(
        second
            .iter()
            .map(|c| c.delivery.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e2"]
    );
    assert!(w
        .claim_deliveries("a", 600, 10_000, 10)
        .await
        .unwrap()
        .is_empty());

    // A failed attempt waits for its retry; a delivered one is done.
    let e1 = first[0].delivery.id;
    w.record_attempt(
        e1,
        Attempt::Retry {
            next: 5000,
            code: Some(500),
            error: "the receiver answered 500".into(),
        },
    )
    .await
    .unwrap();
    w.record_attempt(
        first[1].delivery.id,
        Attempt::Delivered { at: 700, code: 204 },
    )
    .await
    .unwrap();
    w.record_attempt(
        second[0].delivery.id,
        Attempt::Failed {
            code: None,
            error: "refused".into(),
        },
    )
    .await
    .unwrap();
    assert!(w
        .claim_deliveries("a", 4999, 10_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(w.next_delivery().await.unwrap(), Some(5000));
    let listed = w.deliveries(hook.id, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].event_id, "e2");
    assert_eq!(listed[0].status, DeliveryStatus::Failed);
    assert_eq!(listed[1].status, DeliveryStatus::Pending);
    assert_eq!(
        (listed[1].last_code, listed[1].next_attempt),
        (Some(500), Some(5000))
    );
    let configured = w.deliveries(-1, 10).await.unwrap();
    assert_eq!(
        (configured[0].status, configured[0].delivered),
        (DeliveryStatus::Delivered, Some(700))
    );

    // A claim that lapses (its node died) is taken again; a restarted
    // node drops its own claims at once.
    let again = w.claim_deliveries("a", 5000, 6000, 10).await.unwrap();
    assert_eq!((again.len(), again[0].delivery.attempts), (1, 2));
    assert!(w
        .claim_deliveries("b", 5500, 20_000, 10)
        .await
        .unwrap()
        .is_empty());
    let lapsed = w.claim_deliveries("b", 6001, 20_000, 10).await.unwrap();
    assert_eq!(lapsed.len(), 1);
    w.release_claims("b").await.unwrap();
    let released = w.claim_deliveries("a", 6002, 20_000, 10).await.unwrap();
    assert_eq!((released.len(), released[0].delivery.attempts), (1, 4));
    w.record_attempt(
        released[0].delivery.id,
        Attempt::Delivered {
            at: 6003,
            code: 200,
        },
    )
    .await
    .unwrap();
    assert_eq!(w.next_delivery().await.unwrap(), None);
}

/// The deliveries of webhook `id`, as (event id, event), oldest first.
async fn events_of(w: &dyn crate::store::WebhookStore, id: i64) -> Vec<(String, String)> {
    let mut got: Vec<_> = w
        .deliveries(id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.event_id, d.event))
        .collect();
    got.reverse();
    got
}

/// A task's end (its finish, or its interruption at start) writes the
/// deliveries of the webhooks that want it in the write that stores the
/// end: they are there when the write returns, with nobody else writing
/// them. An end that is refused (the task no longer runs) writes none.
async fn a_tasks_end_records_its_deliveries_with_the_end(u: Under) {
    use crate::store::webhooks::{Hook, NewWebhook};
    let (s, w) = (&u.store, u.store.webhooks().unwrap());
    // The configuration file's: every user's errors.
    w.configure(vec![Hook {
        id: -1,
        owner: String::new(),
        all_users: true,
        events: vec!["task.error".into()],
        categories: None,
    }]);
    let alice = w.create_webhook(new_webhook("alice", "s1")).await.unwrap();
    let bob = w
        .create_webhook(NewWebhook {
            categories: None,
            events: vec![
                "task.started".into(),
                "task.completed".into(),
                "task.error".into(),
            ],
            ..new_webhook("bob", "s2")
        })
        .await
        .unwrap();
    let admin = w
        .create_webhook(NewWebhook {
            all_users: true,
            events: vec!["task.completed".into()],
            categories: None,
            ..new_webhook("root", "s3")
        })
        .await
        .unwrap();
    let other = w
        .create_webhook(NewWebhook {
            categories: Some(vec!["image_remove".into()]),
            ..new_webhook("alice", "s4")
        })
        .await
        .unwrap();

    let ok = s.insert(new_task("noop", "alice", None)).await.unwrap();
    let failed = s.insert(new_task("noop", "alice", None)).await.unwrap();
    let running = s.insert(new_task("noop", "alice", None)).await.unwrap();
    let claimed = s.claim(claim_req(3, &[("noop", None)], 5)).await.unwrap();
    assert_eq!(claimed_ids(&claimed), [ok.id, failed.id, running.id]);

    let done = finish(ok.id, TaskState::Completed, 7);
    assert!(s.finish(done.clone()).await.unwrap());
    let completed = (
        format!("task-{}-completed", ok.id),
        "task.completed".to_string(),
    );
    assert_eq!(events_of(w, alice.id).await, vec![completed.clone()]);
    assert_eq!(events_of(w, admin.id).await, vec![completed.clone()]);
    // Not bob's task, not the other webhook's category, not an error.
    assert!(events_of(w, bob.id).await.is_empty());
    assert!(events_of(w, other.id).await.is_empty());
    assert!(events_of(w, -1).await.is_empty());
    // Refused: it no longer runs. Nothing more is written.
    assert!(!s.finish(done).await.unwrap());
    assert_eq!(events_of(w, alice.id).await, vec![completed.clone()]);
    assert_eq!(events_of(w, admin.id).await, vec![completed.clone()]);

    // The body: the task as stored, ended.
    let sent = w
        .claim_deliveries("n", i64::MAX / 2, i64::MAX, 10)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(
        &sent
            .iter()
            .find(|c| c.delivery.webhook == alice.id)
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(body["id"], completed.0.as_str());
    assert_eq!(body["event"], "task.completed");
    let shown = serde_json::to_value(s.get(ok.id).await.unwrap().unwrap()).unwrap();
    assert_eq!(body["task"], shown);
    assert_eq!(body["task"]["state"], "completed");
    assert_eq!(body["task"]["params"]["password"], "******");

    assert!(s
        .finish(finish(failed.id, TaskState::Error, 8))
        .await
        .unwrap());
    let error = (
        format!("task-{}-error", failed.id),
        "task.error".to_string(),
    );
    assert_eq!(
        events_of(w, alice.id).await,
        [completed.clone(), error.clone()]
    );
    assert_eq!(events_of(w, -1).await, [error]);
    assert_eq!(events_of(w, admin.id).await, [completed]);

    // Interrupted at start: its end, and its deliveries, in one write.
    let interrupted = s
        .interrupt_running(Interruption::new(4, "interrupted by a restart", 9))
        .await
        .unwrap();
    assert_eq!(interrupted, [running.id]);
    let error = (
        format!("task-{}-error", running.id),
        "task.error".to_string(),
    );
    assert_eq!(events_of(w, -1).await.last(), Some(&error));
    assert_eq!(events_of(w, alice.id).await.last(), Some(&error));
    assert_eq!(events_of(w, -1).await.len(), 2);
    assert!(events_of(w, bob.id).await.is_empty());
    // Nothing was running any more: nothing more.
    assert!(s
        .interrupt_running(Interruption::new(4, "interrupted by a restart", 10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(events_of(w, alice.id).await.len(), 3);
    assert_eq!(events_of(w, -1).await.len(), 2);
}

// ---- schedules, every driver ------------------------------------------------

fn new_schedule(owner: &str, full: Option<&str>, next_run: i64) -> NewSchedule {
    NewSchedule {
        owner: owner.into(),
        name: "nightly".into(),
        category: "noop".into(),
        shown_params: r#"{"password":"******"}"#.into(),
        full_params: full.map(str::to_string),
        cron: "0 3 * * *".into(),
        timezone: "UTC".into(),
        next_run,
        created: 1,
    }
}

fn firing(id: i64, due: i64, next: i64, outcome: Result<NewTask, String>) -> Firing {
    Firing {
        id,
        due,
        occurrence: due,
        next,
        outcome,
        on_stored: None,
    }
}

async fn schedules_are_created_listed_paused_and_deleted(u: Under) {
    let s = u.store.schedules().expect("the store keeps schedules");
    let a = s
        .create_schedule(new_schedule(
            "alice",
            Some(r#"{"password":"hunter2"}"#),
            100,
        ))
        .await
        .unwrap();
    let b = s
        .create_schedule(new_schedule("bob", None, 50))
        .await
        .unwrap();
    assert!(b.id > a.id);
    assert_eq!(a.params.get(), r#"{"password":"******"}"#);
    assert_eq!(
        (a.paused, a.next_run, a.last_run, a.last_task),
        (false, 100, None, None)
    );
    let ids =
        |v: Vec<crate::store::schedules::Schedule>| v.iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.schedules(Owner::Anyone).await.unwrap()),
        vec![a.id, b.id]
    );
    assert_eq!(
        ids(s.schedules(Owner::User("bob")).await.unwrap()),
        vec![b.id]
    );
    assert_eq!(s.schedules_of("alice").await.unwrap(), 1);
    assert_eq!(s.next_due().await.unwrap(), Some(50));

    // Due ones come with their full params, opened.
    let due = s.due_schedules(100).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].schedule.id, b.id);
    assert_eq!(due[1].full_params, r#"{"password":"hunter2"}"#);
    assert!(s.due_schedules(49).await.unwrap().is_empty());

    // Paused: not due, not the next wake-up; resumed with a new next_run.
    let paused = s.set_paused(b.id, true, None).await.unwrap().unwrap();
    assert!(paused.paused);
    assert_eq!(s.next_due().await.unwrap(), Some(100));
    assert_eq!(s.due_schedules(1000).await.unwrap().len(), 1);
    let resumed = s.set_paused(b.id, false, Some(500)).await.unwrap().unwrap();
    assert_eq!((resumed.paused, resumed.next_run), (false, 500));
    assert!(s.set_paused(999_999, true, None).await.unwrap().is_none());

    assert!(s.delete_schedule(a.id).await.unwrap());
    assert!(!s.delete_schedule(a.id).await.unwrap());
    assert!(s.schedule(a.id).await.unwrap().is_none());
    assert_eq!(s.next_due().await.unwrap(), Some(500));
}

async fn a_firing_stores_its_task_or_its_error_with_next_run(u: Under) {
    let s = u.store.schedules().unwrap();
    let sch = s
        .create_schedule(new_schedule("alice", None, 100))
        .await
        .unwrap();
    let task = new_task("noop", "alice", Some(r#"{"password":"hunter2"}"#));
    let Fired::Won(Some(t)) = s.fire(firing(sch.id, 100, 200, Ok(task))).await.unwrap() else {
        panic!("the firing stored no task");
    };
    assert_eq!((t.user.as_str(), t.state), ("alice", TaskState::Waiting));
    assert_eq!(u.store.get(t.id).await.unwrap().unwrap().id, t.id);
    let now = s.schedule(sch.id).await.unwrap().unwrap();
    assert_eq!(
        (now.next_run, now.last_run, now.last_task),
        (200, Some(100), Some(t.id))
    );
    // The task runs with its full params.
    let claimed = u
        .store
        .claim(claim_req(10, &[("noop", None)], 5))
        .await
        .unwrap();
    assert_eq!(claimed[0].full_params, r#"{"password":"hunter2"}"#);

    // A refused firing records why, keeps the last task, and moves on.
    let refused = firing(sch.id, 200, 300, Err("category noop is not allowed".into()));
    assert!(matches!(s.fire(refused).await.unwrap(), Fired::Won(None)));
    let now = s.schedule(sch.id).await.unwrap().unwrap();
    assert_eq!(now.next_run, 300);
    assert_eq!(now.last_task, Some(t.id));
    assert_eq!(
        now.last_error.as_deref(),
        Some("category noop is not allowed")
    );
    // A stale firing (next_run moved on) writes nothing.
    let stale = firing(sch.id, 200, 400, Ok(new_task("noop", "alice", None)));
    assert!(matches!(s.fire(stale).await.unwrap(), Fired::Lost));
    // Nor one of a paused schedule.
    s.set_paused(sch.id, true, None).await.unwrap();
    let paused = firing(sch.id, 300, 400, Ok(new_task("noop", "alice", None)));
    assert!(matches!(s.fire(paused).await.unwrap(), Fired::Lost));
    assert_eq!(
        u.store
            .list(Owner::User("alice"), None)
            .await
            .unwrap()
            .len(),
        1
    );
    // The next success clears the error.
    s.set_paused(sch.id, false, Some(300)).await.unwrap();
    let ok = firing(sch.id, 300, 400, Ok(new_task("noop", "alice", None)));
    assert!(matches!(s.fire(ok).await.unwrap(), Fired::Won(Some(_))));
    assert_eq!(s.schedule(sch.id).await.unwrap().unwrap().last_error, None);
}

async fn racing_firings_of_one_occurrence_store_one_task(u: Under) {
    let made = u
        .store
        .schedules()
        .unwrap()
        .create_schedule(new_schedule("alice", None, 100))
        .await
        .unwrap();
    let race = |store: Arc<dyn TaskStore>| async move {
        let s = store.schedules().unwrap();
        s.fire(firing(
            made.id,
            100,
            160,
            Ok(new_task("noop", "alice", None)),
        ))
        .await
        .unwrap()
    };
    let mut racers = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 {
            u.store.clone()
        } else {
            u.twin.clone()
        };
        racers.push(tokio::spawn(race(store)));
    }
    let mut won = 0;
    for r in racers {
        if let Fired::Won(Some(_)) = r.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one racer fires the occurrence");
    assert_eq!(
        u.store
            .list(Owner::User("alice"), None)
            .await
            .unwrap()
            .len(),
        1
    );
}

// ---- what only the shared store does ---------------------------------------

async fn next_notice(
    rx: &mut tokio::sync::broadcast::Receiver<Notice>,
    pred: impl Fn(&Notice) -> bool,
) -> Notice {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let n = rx.recv().await.unwrap();
            if pred(&n) {
                return n;
            }
        }
    })
    .await
    .expect("the notification came within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_claims_only_its_own_tasks_and_is_woken_for_them() {
    let (a, b) = two_nodes("nodes").await;
    let mut b_hears = b.notices().unwrap();
    let for_b = a
        .insert(NewTask {
            node: Some("b".into()),
            ..new_task("x", "u", Some(r#"{"token":"t0k"}"#))
        })
        .await
        .unwrap();
    let for_a = a.insert(new_task("x", "u", None)).await.unwrap();
    assert_eq!(for_b.node.as_deref(), Some("b"));
    assert_eq!(for_a.node.as_deref(), Some("a"));
    let heard = next_notice(&mut b_hears, |n| matches!(n, Notice::Submitted { .. })).await;
    assert_eq!(
        heard,
        Notice::Submitted {
            node: "b".into(),
            ids: vec![for_b.id],
            origin: "a".into()
        }
    );
    let got = a.claim(claim_req(10, &[("x", None)], 1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, for_a.id);
    let got = b.claim(claim_req(10, &[("x", None)], 1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, for_b.id);
    assert_eq!(
        got[0].full_params, r#"{"token":"t0k"}"#,
        "sealed on a, opened on b"
    );
    // The claim is announced to the other nodes.
    let mut a_hears = a.notices().unwrap();
    b.finish(finish(for_b.id, TaskState::Completed, 2))
        .await
        .unwrap();
    let heard = next_notice(&mut a_hears, |n| matches!(n, Notice::Changed { .. })).await;
    assert_eq!(
        heard,
        Notice::Changed {
            ids: vec![for_b.id],
            origin: "b".into()
        }
    );
    // Recovery on restart touches only the node's own runs.
    assert_eq!(
        a.interrupt_running(Interruption::new(4, "x", 3))
            .await
            .unwrap(),
        vec![for_a.id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nodes_runs_are_interrupted_and_its_waiting_tasks_wait() {
    let (a, b) = two_nodes("lease").await;
    let to_b = |n| NewTask {
        node: Some("b".into()),
        ..new_task("x", "u", n)
    };
    let run = a.insert(to_b(None)).await.unwrap();
    b.claim(claim_req(1, &[("x", None)], 1)).await.unwrap();
    let wait = a.insert(to_b(None)).await.unwrap();
    let lease = Duration::from_secs(30);
    assert!(a.node_alive("b", lease).await.unwrap());
    assert!(!a.node_alive("nobody", lease).await.unwrap());
    assert!(
        a.reap_silent_nodes(lease, Interruption::new(4, "lost", 5))
            .await
            .unwrap()
            .is_empty(),
        "b is alive"
    );
    // b falls silent (its heartbeat is an hour old).
    a.database()
        .client()
        .await
        .unwrap()
        .execute(
            "UPDATE nodes SET heartbeat = now() - interval '1 hour' WHERE name = 'b'",
            &[],
        )
        .await
        .unwrap();
    assert!(!a.node_alive("b", lease).await.unwrap());
    assert_eq!(
        a.reap_silent_nodes(lease, Interruption::new(4, "lost", 5))
            .await
            .unwrap(),
        vec![run.id]
    );
    let t = a.get(run.id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.result, t.detail_state.as_str()),
        (TaskState::Error, Some(4), "lost")
    );
    assert_eq!(
        a.get(wait.id).await.unwrap().unwrap().state,
        TaskState::Waiting
    );
    // Its waiting task says why it waits, once.
    let silent_since: String = a
        .database()
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT to_char(heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
               FROM nodes WHERE name = 'b'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(a
        .mark_silent_waiting(Duration::from_secs(7200))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(a.mark_silent_waiting(lease).await.unwrap(), vec![wait.id]);
    assert!(
        a.mark_silent_waiting(lease).await.unwrap().is_empty(),
        "marked once"
    );
    let t = a.get(wait.id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.detail_state),
        (
            TaskState::Waiting,
            format!("waiting: node `b` has not been seen since {silent_since} UTC")
        )
    );
    // b comes back: alive again, its waiting task's detail is cleared, and
    // it is its own to claim.
    let mut a_hears = a.notices().unwrap();
    assert_eq!(b.heartbeat().await.unwrap(), vec![wait.id]);
    assert_eq!(a.get(wait.id).await.unwrap().unwrap().detail_state, "");
    // (a's own notice of the mark may still be on its way.)
    let from_b = Notice::Changed {
        ids: vec![wait.id],
        origin: "b".into(),
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while a_hears.recv().await.unwrap() != from_b {}
    })
    .await
    .expect("a hears b's clearing");
    assert!(b.heartbeat().await.unwrap().is_empty(), "cleared once");
    assert!(a.node_alive("b", lease).await.unwrap());
    let got = b.claim(claim_req(5, &[("x", None)], 6)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, wait.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_unique_across_nodes_and_cancel_requests_reach_the_node() {
    let (a, b) = two_nodes("ids").await;
    let mut b_hears = b.notices().unwrap();
    let mut inserts = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        inserts.push(tokio::spawn(async move {
            s.insert(new_task("x", "u", None)).await.unwrap().id
        }));
    }
    let mut ids = HashSet::new();
    for i in inserts {
        assert!(ids.insert(i.await.unwrap()), "an id was given twice");
    }
    a.request_cancel("b", 17).await.unwrap();
    let heard = next_notice(&mut b_hears, |n| matches!(n, Notice::Cancel { .. })).await;
    assert_eq!(
        heard,
        Notice::Cancel {
            node: "b".into(),
            id: 17
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let url = fresh_database("migrate").await.unwrap();
    let db = Database::connect(&url, "a").await.unwrap();
    // A second node migrates nothing more.
    let _again = Database::connect(&url, "b").await.unwrap();
    let c = db.client().await.unwrap();
    let versions: Vec<i32> = c
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<i32> = (1..=crate::store::postgres::schema_version() as i32).collect();
    assert_eq!(versions, want);
    c.execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
        .await
        .unwrap();
    let err = Database::connect(&url, "c").await.unwrap_err();
    assert!(format!("{err:#}").contains("newer"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_needs_the_same_sealing_key() {
    let url = fresh_database("keys").await.unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Database::connect(&url, "a").await.unwrap();
    let b = Database::connect(&url, "b").await.unwrap();
    a.shared_secrets(&d1.path().join("secret.key"))
        .await
        .unwrap();
    let err = b
        .shared_secrets(&d2.path().join("secret.key"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("copy `secret.key`"), "{err:#}");
    std::fs::copy(d1.path().join("secret.key"), d2.path().join("secret.key")).unwrap();
    b.shared_secrets(&d2.path().join("secret.key"))
        .await
        .unwrap();
}

/// What one node does to a session, the other sees: a login, its
/// extension, a logout, a purge of the expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_shared_between_nodes() {
    let url = fresh_database("sessions").await.unwrap();
    let a = Database::connect(&url, "a").await.unwrap().sessions();
    let b = Database::connect(&url, "b").await.unwrap().sessions();
    let key = [9u8; 32];
    let s = session("alice", 200);
    a.insert(&key, &s).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap(), Some(s.clone()));
    b.extend(&key, 300).await.unwrap();
    assert_eq!(a.get(&key).await.unwrap().unwrap().expires, 300);
    b.remove(&key).await.unwrap();
    assert_eq!(
        a.get(&key).await.unwrap(),
        None,
        "a logout on b ends it on a"
    );
    a.insert(&key, &s).await.unwrap();
    b.purge(200).await.unwrap();
    assert_eq!(a.get(&key).await.unwrap(), None, "expired");
}

/// The ids of `tasks`, in their order.
pub(super) fn ids_of(tasks: Vec<crate::store::tasks::Task>) -> Vec<i64> {
    tasks.into_iter().map(|t| t.id).collect()
}

// ---- the audit log, every driver ----------------------------------------------

fn audit_entry(
    ts: i64,
    level: &str,
    category: &str,
    user: &str,
    message: &str,
) -> crate::store::audit::NewAuditEntry {
    crate::store::audit::NewAuditEntry {
        ts_micros: ts,
        level: level.into(),
        category: category.into(),
        user: user.into(),
        message: message.into(),
    }
}

async fn audit_log_is_appended_filtered_pruned_and_cleared(log: Arc<dyn crate::store::AuditLog>) {
    use crate::store::audit::AuditFilter;
    let messages = |rows: Vec<crate::store::audit::AuditEntry>| -> Vec<String> {
        rows.into_iter().map(|r| r.entry.message).collect()
    };
    log.append(&[
        audit_entry(
            1_000,
            "INFO",
            "image",
            "alice",
            "POST /api/v1/background/image_download: 200",
        ),
        audit_entry(
            2_000,
            "WARN",
            "container",
            "bob",
            "DELETE /api/v1/container/docker/x: 404",
        ),
        audit_entry(3_000, "ERROR", "system", "alice", "PUT /api/v1/x_y%: 500"),
    ])
    .await
    .unwrap();
    log.append(&[]).await.unwrap();
    let all = log.list(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all[0].id > all[1].id && all[1].id > all[2].id,
        "newest first"
    );
    assert_eq!(
        all[2].entry,
        audit_entry(
            1_000,
            "INFO",
            "image",
            "alice",
            "POST /api/v1/background/image_download: 200"
        )
    );
    let pick = |f: AuditFilter| {
        let log = log.clone();
        async move { messages(log.list(&f).await.unwrap()) }
    };
    let alice = pick(AuditFilter {
        user: Some("alice".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(alice.len(), 2);
    let levels = pick(AuditFilter {
        levels: vec!["WARN".into(), "ERROR".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(levels.len(), 2);
    let cats = pick(AuditFilter {
        categories: vec!["image".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(cats, ["POST /api/v1/background/image_download: 200"]);
    let window = pick(AuditFilter {
        start_micros: Some(1_500),
        end_micros: Some(2_500),
        ..Default::default()
    })
    .await;
    assert_eq!(window.len(), 1);
    // The text is matched as written, case-insensitively: `%` and `_` are no wildcards.
    let text = pick(AuditFilter {
        text: Some("X_Y%".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(text, ["PUT /api/v1/x_y%: 500"]);
    assert!(pick(AuditFilter {
        text: Some("x%y".into()),
        ..Default::default()
    })
    .await
    .is_empty());
    let page = pick(AuditFilter {
        limit: Some(1),
        offset: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(page, ["DELETE /api/v1/container/docker/x: 404"]);
    assert_eq!(log.prune(2_000).await.unwrap(), 1);
    assert_eq!(log.list(&AuditFilter::default()).await.unwrap().len(), 2);
    assert_eq!(log.clear().await.unwrap(), 2);
    assert!(log.list(&AuditFilter::default()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let log = crate::store::audit_in_folder(dir.path()).unwrap();
    audit_log_is_appended_filtered_pruned_and_cleared(log).await;
    // It is durable: a second open sees what the first wrote.
    let first = crate::store::audit_in_folder(dir.path()).unwrap();
    first
        .append(&[audit_entry(5, "INFO", "system", "a", "kept")])
        .await
        .unwrap();
    drop(first);
    let again = crate::store::audit_in_folder(dir.path()).unwrap();
    assert_eq!(again.list(&Default::default()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_postgres() {
    let url = fresh_database("audit").await.unwrap();
    let db = Database::connect(&url, "a").await.unwrap();
    audit_log_is_appended_filtered_pruned_and_cleared(db.audit()).await;
}
