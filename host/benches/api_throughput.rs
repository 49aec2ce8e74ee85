//! HTTP benchmark of the whole server in one process: the real router on a
//! loopback socket, the durable SQLite store in a temporary folder (or the
//! PostgreSQL one named by `STEVEDORE_DATABASE_URL`), and the
//! no-op category (the `noop` plugin from `target/test-plugins` when built,
//! else the queue's Rust `NoopExecutor`, reported as such).
//!
//! 1. Throughput: `TASKS` submits over `CONCURRENCY` connections
//!    (`POST background/noop`, a different body per task unless
//!    `--same-body`), timed until every task ended; the figure counts the
//!    tasks the store holds `completed` (read back).
//! 2. `GET background/` with at least 10,000 tasks stored: `LIST_SAMPLES`
//!    sequential requests, each timed until its whole body arrived.
//!
//! Run: `cargo bench -p stevedore --bench api_throughput`
//! (env: `BENCH_TASKS`, `BENCH_CONCURRENCY`, `BENCH_LIST_SAMPLES`, `BENCH_WORKERS`).

mod common;

use std::time::{Duration, Instant};

use common::{env_usize, Server};
use stevedore::queue::testkit::latency;
use stevedore::queue::TaskState;

fn main() -> anyhow::Result<()> {
    common::block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let tasks = common::size("BENCH_TASKS", 10_000, 500);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let samples = common::size("BENCH_LIST_SAMPLES", 200, 10);
    let listed = common::size("BENCH_LISTED", 10_000, 1_000);
    let workers = env_usize("BENCH_WORKERS", 32);

    let dir = common::data_dir("api_throughput")?;
    // A PostgreSQL store when given one.
    let settings: Vec<(&str, String)> = ["STEVEDORE_DATABASE_URL", "STEVEDORE_NODE"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .collect();
    let server = Server::start(dir.path(), workers, &settings).await?;
    let exec_name = server.executor.clone();
    let api = server.api.clone();
    let client = server.login(concurrency).await?;

    let store_name = match std::env::var("STEVEDORE_DATABASE_URL") {
        Ok(_) => "PostgreSQL (STEVEDORE_DATABASE_URL)",
        Err(_) => common::SQLITE_LABEL,
    };
    println!(
        "api_throughput: executor = {exec_name}; store = {store_name}; {}",
        common::body_label()
    );
    let completed_before = common::completed(&server.queue).await?;
    println!("api_throughput: {tasks} tasks, {concurrency} connections, {workers} workers, 2 runtime threads");

    // 1. Throughput: submit -> completed.
    let mut events = server.queue.subscribe();
    let done_counter = tokio::spawn(async move {
        let mut done = 0usize;
        let mut last = Instant::now();
        loop {
            match events.recv().await {
                Ok(ev) if !ev.deleted && ev.task.state == TaskState::Completed => {
                    done += 1;
                    last = Instant::now();
                    if done == tasks {
                        break;
                    }
                }
                Ok(ev) if !ev.deleted && ev.task.state == TaskState::Error => {
                    eprintln!("task {} failed: {}", ev.task.id, ev.task.detail_state);
                    done += 1;
                    if done == tasks {
                        break;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!(
                        "event stream lagged by {n}; completion is then counted from the store"
                    );
                    return None;
                }
                Err(_) => return None,
            }
        }
        Some(last)
    });
    let t0 = Instant::now();
    let per = tasks.div_ceil(concurrency);
    let mut submitters = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let url = format!("{api}/background/noop");
        let n = per.min(tasks.saturating_sub(w * per));
        submitters.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let s = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(common::noop_body(w * per + i))
                    .send()
                    .await
                    .expect("submit");
                assert!(r.status().is_success(), "submit: {}", r.status());
                let _ = r.bytes().await;
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut submit_lat = Vec::new();
    for s in submitters {
        submit_lat.extend(s.await?);
    }
    let submitted = t0.elapsed();
    let last_done = match tokio::time::timeout(Duration::from_secs(300), done_counter).await {
        Ok(Ok(Some(t))) => t,
        _ => {
            // Fall back to polling the store until everything completed.
            loop {
                let r: Vec<serde_json::Value> = client
                    .get(format!("{api}/background/"))
                    .send()
                    .await?
                    .json()
                    .await?;
                if r.iter()
                    .filter(|t| t["state"] == "completed" || t["state"] == "error")
                    .count()
                    >= tasks
                {
                    break Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let total = last_done.duration_since(t0);
    let sl = latency(&submit_lat);
    let completed = common::completed(&server.queue).await? - completed_before;
    anyhow::ensure!(completed > 0, "no task completed");
    println!(
        "throughput: {tasks} tasks submitted in {:.2} s ({:.0}/s), {completed} completed (read back from the store) in {:.2} s => {:.0} tasks/s end-to-end (target >= 3000)",
        submitted.as_secs_f64(),
        tasks as f64 / submitted.as_secs_f64(),
        total.as_secs_f64(),
        completed as f64 / total.as_secs_f64()
    );
    println!(
        "submit latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sl.p50.as_secs_f64() * 1e3,
        sl.p99.as_secs_f64() * 1e3,
        sl.max.as_secs_f64() * 1e3
    );

    // 2. GET background/ with >= `listed` tasks stored.
    let stored: Vec<serde_json::Value> = client
        .get(format!("{api}/background/"))
        .send()
        .await?
        .json()
        .await?;
    let mut n_stored = stored.len();
    if n_stored < listed {
        for i in n_stored..listed {
            client
                .post(format!("{api}/background/noop"))
                .body(common::noop_body(tasks + i))
                .send()
                .await?;
        }
        n_stored = listed;
    }
    let mut lat = Vec::with_capacity(samples);
    let mut bytes = 0;
    for _ in 0..samples {
        let s = Instant::now();
        let r = client.get(format!("{api}/background/")).send().await?;
        let body = r.bytes().await?;
        lat.push(s.elapsed());
        bytes = body.len();
    }
    let l = latency(&lat);
    println!(
        "list: GET background/ with {n_stored} tasks ({:.1} MB): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {samples} requests (target p99 <= 50 ms)",
        bytes as f64 / 1e6,
        l.p50.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3,
        l.max.as_secs_f64() * 1e3
    );
    let mut lat = Vec::with_capacity(samples);
    for _ in 0..samples {
        let s = Instant::now();
        let r = client
            .get(format!("{api}/background/?category=noop"))
            .send()
            .await?;
        let _ = r.bytes().await?;
        lat.push(s.elapsed());
    }
    let l = latency(&lat);
    println!(
        "list: GET background/?category=noop: p50 {:.1} ms, p99 {:.1} ms",
        l.p50.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3
    );

    server.stop().await;
    Ok(())
}
