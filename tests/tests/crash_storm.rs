//! Crash storm (issue 10): tasks are submitted without pause while the
//! server is killed with SIGKILL at random moments and started again on the
//! same data. Afterwards every task whose submit was answered 200 is listed,
//! every task ended exactly once (a waiting one ran once after the restart, a
//! running one was marked interrupted, result 4), and no id was handed out
//! twice.
//!
//! The storm is written once, over a [`StoreBackend`], and run against both
//! stores: SQLite (the default) and PostgreSQL (the test services' server,
//! selected by `STEVEDORE_DATABASE_URL`, one fresh database per run).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;
use stevedore_e2e::{Client, Options, Server};

/// How many times the server is killed.
const KILLS: usize = 6;
/// Concurrent submitters.
const SUBMITTERS: usize = 4;
/// Result code of a task interrupted by a restart.
const INTERRUPTED: i64 = 4;

/// Which task store the server under test uses.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// The embedded SQLite store in the server's data folder (the default).
    Sqlite,
    /// A PostgreSQL database (empty, private to this run), by URL.
    Postgres {
        /// `postgres://...`, given to the server as `STEVEDORE_DATABASE_URL`.
        url: String,
    },
}

impl StoreBackend {
    /// `options` with this store selected.
    fn apply(&self, options: Options) -> Options {
        match self {
            StoreBackend::Sqlite => options,
            StoreBackend::Postgres { url } => options.env("STEVEDORE_DATABASE_URL", url),
        }
    }
}

/// What the storm went through, for the test output.
#[derive(Debug)]
pub struct StormReport {
    /// Kills survived (each followed by a restart that answered).
    pub kills: usize,
    /// Tasks checked at the end.
    pub tasks: usize,
    /// Of those, ended as interrupted.
    pub interrupted: usize,
    /// Completed with no start line: ended before their claim's fsync,
    /// which a kill then cut short (see `storm`).
    pub unlogged: usize,
    /// Submits answered 200.
    pub accepted: usize,
    /// Submits that got no answer (the server died under them).
    pub unanswered: usize,
}

/// Submits answered so far, by the submitters.
#[derive(Default)]
struct Ledger {
    accepted: Vec<i64>,
    unanswered: usize,
}

/// Pause between two submits of one submitter, so that the queue the storm
/// builds up drains in seconds once it is over.
const PACE: Duration = Duration::from_millis(40);

/// The body of the `n`th submit: mostly instant tasks, some that run for a
/// second so that a kill finds tasks running as well as waiting.
fn body(n: u64) -> (&'static str, String) {
    if n.is_multiple_of(16) {
        ("sleepy", r#"{"seconds": 1}"#.to_string())
    } else {
        ("noop", format!(r#"{{"count": {}}}"#, n % 1000))
    }
}

/// Submit without pause to whatever address the server has now; record ids
/// answered 200 and count submits that died with the server.
async fn submitter(
    jar: Client,
    api: Arc<Mutex<String>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    first: u64,
) {
    let mut n = first;
    while !stop.load(Ordering::Acquire) {
        n += SUBMITTERS as u64;
        let (category, params) = body(n);
        let url = format!("{}/background/{category}", api.lock());
        let sent = jar
            .http()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(params)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let answer = match sent {
            Ok(r) => Some((r.status().as_u16(), r.json::<Value>().await)),
            Err(_) => None,
        };
        match answer {
            Some((200, Ok(task))) => {
                let id = task["id"].as_i64().expect("a task id");
                assert_eq!(task["state"], "waiting", "{task}");
                ledger.lock().accepted.push(id);
            }
            Some((200, Err(_))) | None => {
                // The connection died (before or after the store took the
                // task): this task may or may not exist.
                ledger.lock().unanswered += 1;
            }
            Some((status, body)) => panic!("submit answered {status}: {body:?}"),
        }
        tokio::time::sleep(PACE).await;
    }
}

/// Task ids of the "task started" lines in the server's log, each with how
/// many times it appears (every start of every run of the server).
fn starts(log: &str) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    for line in log.lines().filter(|l| l.ends_with("task started")) {
        let id = line
            .split("task_id=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("a start line without a task id: {line}"));
        *out.entry(id).or_default() += 1;
    }
    out
}

/// Run the storm against `backend` and check the guarantees; panics on a
/// broken one.
pub async fn storm(backend: StoreBackend) -> StormReport {
    let seed: u64 = std::env::var("STEVEDORE_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash storm on {backend:?}, seed {seed} (STEVEDORE_STORM_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let options = backend.apply(
        Options::with_plugins(&["noop", "sleepy"])
            .env("STEVEDORE_WORKERS", "4")
            .env("RUST_LOG", "info"),
    );
    let mut server = Server::start(options).await;
    let admin = server.admin().await;
    let api = Arc::new(Mutex::new(server.api(false)));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..SUBMITTERS as u64)
        .map(|i| {
            tokio::spawn(submitter(
                admin.clone(),
                api.clone(),
                ledger.clone(),
                stop.clone(),
                i,
            ))
        })
        .collect();

    let mut kills = 0;
    for _ in 0..KILLS {
        // Let the submitters get some tasks in (and some running) first.
        let before = ledger.lock().accepted.len();
        let until = Instant::now() + Duration::from_secs(30);
        while ledger.lock().accepted.len() < before + 5 {
            assert!(Instant::now() < until, "no submit accepted for 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1500))).await;
        server.kill9();
        kills += 1;
        server.restart().await;
        *api.lock() = server.api(false);
    }
    stop.store(true, Ordering::Release);
    for s in submitters {
        s.await.expect("a submitter panicked");
    }

    // Let the last run drain: nothing waiting or running.
    let admin = admin.with_api(server.api(false));
    let until = Instant::now() + Duration::from_secs(120);
    let tasks = loop {
        let tasks = admin.list(None).await;
        if tasks
            .iter()
            .all(|t| t["state"] == "completed" || t["state"] == "error")
        {
            break tasks;
        }
        assert!(Instant::now() < until, "tasks still unfinished after 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let ledger = std::mem::take(&mut *ledger.lock());
    // Ids are never reused: no two accepted submits got the same id, and
    // the list holds each id once.
    let accepted: BTreeSet<i64> = ledger.accepted.iter().copied().collect();
    assert_eq!(
        accepted.len(),
        ledger.accepted.len(),
        "an id was handed out twice"
    );
    let listed: BTreeMap<i64, &Value> = tasks
        .iter()
        .map(|t| (t["id"].as_i64().expect("id"), t))
        .collect();
    assert_eq!(listed.len(), tasks.len(), "an id is listed twice");
    // Every accepted task is listed.
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| !listed.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "accepted but lost: {missing:?}");
    // Every task ended exactly once: completed after one start, or
    // interrupted (started at most once, never run again).
    let started = starts(&server.logs());
    let mut interrupted = 0;
    let mut unlogged = 0;
    for (id, t) in &listed {
        let runs = started.get(id).copied().unwrap_or(0);
        match (t["state"].as_str(), t["result"].as_i64()) {
            (Some("completed"), Some(0)) => {
                // A start is logged once the claim is on disk (fsync), and a
                // short run may end before that: its claim and its end are
                // then committed to the log together. A kill between that
                // commit and the fsync leaves the task completed in the
                // file (the kernel kept the commit; only a power cut loses
                // it) with no start line. It ran once; never twice.
                assert!(runs <= 1, "task {id} completed after {runs} starts: {t}");
                if runs == 0 {
                    unlogged += 1;
                }
            }
            (Some("error"), Some(INTERRUPTED)) => {
                interrupted += 1;
                assert!(runs <= 1, "task {id} interrupted after {runs} starts: {t}");
                assert!(
                    t["detail_state"]
                        .as_str()
                        .is_some_and(|d| d.contains("interrupted")),
                    "{t}"
                );
            }
            _ => panic!("task {id} ended neither completed nor interrupted: {t}"),
        }
        assert!(t["end"].is_i64(), "task {id} has no end: {t}");
    }
    // Nothing started that is not listed (no run of a task that is gone).
    let ghosts: Vec<_> = started
        .keys()
        .filter(|id| !listed.contains_key(id))
        .collect();
    assert!(ghosts.is_empty(), "started but not listed: {ghosts:?}");
    // New ids keep increasing after the storm.
    let next = admin.submit_ok("noop", "{}").await;
    assert!(
        next > *listed.keys().max().expect("tasks"),
        "id {next} reused"
    );

    StormReport {
        kills,
        tasks: listed.len(),
        interrupted,
        unlogged,
        accepted: ledger.accepted.len(),
        unanswered: ledger.unanswered,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_storm_sqlite() {
    let report = storm(StoreBackend::Sqlite).await;
    stevedore_e2e::report!(
        "crash storm (sqlite): kills survived {}, tasks checked {} ({} interrupted, \
         {} completed before their start was logged), submits accepted {}, unanswered {}",
        report.kills,
        report.tasks,
        report.interrupted,
        report.unlogged,
        report.accepted,
        report.unanswered
    );
    assert!(report.kills >= 5);
    assert!(report.interrupted > 0, "no kill found a task running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_storm_postgres() {
    let url = stevedore_e2e::fresh_database("storm");
    let report = storm(StoreBackend::Postgres { url }).await;
    stevedore_e2e::report!(
        "crash storm (postgres): kills survived {}, tasks checked {} ({} interrupted, \
         {} completed before their start was logged), submits accepted {}, unanswered {}",
        report.kills,
        report.tasks,
        report.interrupted,
        report.unlogged,
        report.accepted,
        report.unanswered
    );
    assert!(report.kills >= 5);
    assert!(report.interrupted > 0, "no kill found a task running");
}
