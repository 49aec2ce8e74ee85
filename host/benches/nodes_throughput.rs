//! No-op tasks end to end on the three stores a deployment can have, in one
//! run so that the ratios compare like with like: SQLite (one node, the
//! default), PostgreSQL with one node, and PostgreSQL with two nodes sharing
//! the database (each node accepts half the submits and runs its own).
//!
//! Each round submits `BENCH_TASKS` no-op tasks over `BENCH_CONCURRENCY`
//! HTTP connections (split between the nodes; a different body per task
//! unless `--same-body`) and is timed from the first submit to the last
//! end; the figure counts the tasks the store holds `completed` at the end
//! (read back). The configurations alternate round
//! by round (`BENCH_ROUNDS`, default 5) and each round starts on an empty
//! store (a fresh folder on a disk, `common::data_dir`, or a fresh
//! PostgreSQL database on the test server, durable defaults). SQLite runs
//! WAL with `synchronous = NORMAL` and its own fsync before every answer. Prints the median and spread of each and the ratio of its
//! median to SQLite's.
//!
//! Run (the test PostgreSQL up, `cargo xtask services start`):
//! `eval "$(cargo xtask services env)"; cargo bench -p stevedore --bench nodes_throughput`

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use common::{env_usize, Server};
use stevedore::queue::TaskState;

/// How a round's servers are set up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    Sqlite,
    PgOneNode,
    PgTwoNodes,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Sqlite => "SQLite, one node",
            Setup::PgOneNode => "PostgreSQL, one node",
            Setup::PgTwoNodes => "PostgreSQL, two nodes",
        }
    }
}

fn main() -> anyhow::Result<()> {
    common::block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let tasks = common::size("BENCH_TASKS", 5_000, 300);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let workers = env_usize("BENCH_WORKERS", 8);
    let rounds = common::size("BENCH_ROUNDS", 5, 1);
    let setups = [Setup::Sqlite, Setup::PgOneNode, Setup::PgTwoNodes];
    println!(
        "nodes_throughput: {tasks} no-op tasks per round, {concurrency} connections, \
         {workers} workers per node, {rounds} rounds, 2 runtime threads; {}; SQLite: {}",
        common::body_label(),
        common::SQLITE_LABEL
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for round in 0..rounds {
        for (i, setup) in setups.iter().enumerate() {
            let rate = one_round(*setup, tasks, concurrency, workers).await?;
            println!(
                "round {}: {:<22} {rate:>7.0} tasks/s",
                round + 1,
                setup.name()
            );
            rates[i].push(rate);
        }
    }
    let baseline = median(&rates[0]);
    println!("\n| store | tasks/s (median of {rounds}) | spread (min-max) | vs SQLite |");
    println!("|---|---|---|---|");
    for (setup, r) in setups.iter().zip(&rates) {
        let m = median(r);
        let (lo, hi) = spread(r);
        println!(
            "| {} | {m:.0} | {lo:.0}-{hi:.0} | {:.2}x |",
            setup.name(),
            m / baseline
        );
    }
    Ok(())
}

async fn one_round(
    setup: Setup,
    tasks: usize,
    concurrency: usize,
    workers: usize,
) -> anyhow::Result<f64> {
    let dir = common::data_dir("nodes_throughput")?;
    let mut servers = Vec::new();
    match setup {
        Setup::Sqlite => servers.push((Server::start(dir.path(), workers, &[]).await?, None)),
        Setup::PgOneNode | Setup::PgTwoNodes => {
            let url = stevedore::store::postgres::testing::fresh_database("bench_nodes").await?;
            let nodes: &[&str] = if setup == Setup::PgOneNode {
                &["a"]
            } else {
                &["a", "b"]
            };
            for node in nodes {
                let home = dir.path().join(node);
                if let Some((first, _)) = servers.first() {
                    // Every node seals with the same key.
                    let first: &Server = first;
                    std::fs::create_dir_all(home.join("data"))?;
                    std::fs::copy(
                        first.data.join(stevedore::store::secret::KEY_FILE),
                        home.join("data").join(stevedore::store::secret::KEY_FILE),
                    )?;
                }
                let settings = [
                    ("STEVEDORE_DATABASE_URL", url.clone()),
                    ("STEVEDORE_NODE", node.to_string()),
                ];
                let server = Server::start(&home, workers, &settings).await?;
                servers.push((server, Some(node.to_string())));
            }
        }
    }
    if servers[0].0.executor.contains("Rust") {
        eprintln!("note: tasks run on {}", servers[0].0.executor);
    }

    // Count each node's own tasks as they complete.
    let finished = Arc::new(AtomicUsize::new(0));
    let lagged = Arc::new(AtomicBool::new(false));
    let changed = Arc::new(Notify::new());
    let mut counters = Vec::new();
    for (server, node) in &servers {
        let mut events = server.queue.subscribe();
        let node = node.clone();
        let (finished, lagged, changed) = (finished.clone(), lagged.clone(), changed.clone());
        counters.push(tokio::spawn(async move {
            let mut done = HashSet::new();
            loop {
                match events.recv().await {
                    Ok(ev)
                        if !ev.deleted && ev.task.node == node && ev.task.state.is_finished() =>
                    {
                        if ev.task.state == TaskState::Error {
                            eprintln!("task {} failed: {}", ev.task.id, ev.task.detail_state);
                        }
                        if done.insert(ev.task.id) {
                            finished.fetch_add(1, Ordering::AcqRel);
                            changed.notify_one();
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("the event stream lagged by {n}: counting from the task list");
                        lagged.store(true, Ordering::Release);
                        changed.notify_one();
                        return;
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let mut clients = Vec::new();
    for (server, _) in &servers {
        clients.push((server.login(concurrency).await?, server.api.clone()));
    }

    let t0 = Instant::now();
    let per = tasks.div_ceil(concurrency);
    let mut submitters = Vec::new();
    for w in 0..concurrency {
        let (client, api) = clients[w % clients.len()].clone();
        let url = format!("{api}/background/noop");
        let n = per.min(tasks.saturating_sub(w * per));
        submitters.push(tokio::spawn(async move {
            for i in 0..n {
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(common::noop_body(w * per + i))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "submit: {}", r.status());
                let _ = r.bytes().await;
            }
            anyhow::Ok(())
        }));
    }
    for s in submitters {
        s.await??;
    }
    // Wait for the last completion, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(600);
    let total = loop {
        let done = if lagged.load(Ordering::Acquire) {
            // Every node lists every node's tasks: one list is enough.
            count_finished(&clients[0].0, &clients[0].1).await?
        } else {
            finished.load(Ordering::Acquire)
        };
        if done >= tasks {
            break t0.elapsed();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {tasks} tasks finished in time"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), changed.notified()).await;
    };
    // Every node's store holds every node's tasks: one is enough.
    let completed = common::completed(&servers[0].0.queue).await? as usize;
    anyhow::ensure!(completed > 0, "no task completed");
    if completed != tasks {
        eprintln!("{completed} of {tasks} tasks completed (the rest ended in error)");
    }
    for ((server, _), counter) in servers.into_iter().zip(counters) {
        server.stop().await;
        counter.abort();
    }
    Ok(completed as f64 / total.as_secs_f64())
}

/// How many tasks the node lists as finished.
async fn count_finished(client: &reqwest::Client, api: &str) -> anyhow::Result<usize> {
    let all: Vec<serde_json::Value> = client
        .get(format!("{api}/background/"))
        .send()
        .await?
        .json()
        .await?;
    Ok(all
        .iter()
        .filter(|t| t["state"] == "completed" || t["state"] == "error")
        .count())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}
