//! Queue benchmarks, with a no-op executor and the durable SQLite store
//! (WAL, `synchronous = NORMAL` and its own fsync before every answer) in a
//! folder on a disk (`common::data_dir`).
//!
//! - `throughput`: tasks/s from `submit` to `completed` (as stored and
//!   announced; only `completed` counts), 64 concurrent submitters, a
//!   different body per task unless `--same-body`. Target: ≥ 3000 tasks/s.
//! - `list_10k`: `Queue::list` (admin, all tasks) with 10,000 tasks stored;
//!   p99 over many samples, with and without JSON encoding, and while tasks
//!   stream through the queue. Target: ≤ 50 ms.
//!
//! Run: `cargo bench -p stevedore --bench queue_throughput`
//! (`STEVEDORE_BENCH_WORKERS=4,16,64` picks the worker totals measured;
//! `STEVEDORE_BENCH_WORKERS=none` measures `list` only).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stevedore::queue::testkit::{latency, NoopExecutor, NOOP_CATEGORY};
use stevedore::queue::{Queue, QueueConfig, SqliteStore, TaskState, Viewer};
use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;

const SUBMITTERS: usize = 64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
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

async fn start(dir: &std::path::Path, workers: usize) -> Arc<Queue> {
    let store = SqliteStore::open_in(dir).unwrap();
    let config = QueueConfig {
        workers,
        ..QueueConfig::default()
    };
    Queue::start(store, Arc::new(NoopExecutor), config)
        .await
        .unwrap()
}

/// Numbers the submits' params, so that each differs.
static BODIES: AtomicU64 = AtomicU64::new(0);

/// Submit `n` tasks from [`SUBMITTERS`] concurrent callers and wait until
/// every one is completed. Returns the elapsed time.
async fn submit_and_drain(q: &Arc<Queue>, n: usize) -> Duration {
    submit_and_drain_as(q, n, "user").await
}

/// [`submit_and_drain`] with the submitters named `{prefix}0`, `{prefix}1`, ...
async fn submit_and_drain_as(q: &Arc<Queue>, n: usize, prefix: &str) -> Duration {
    let mut rx = q.subscribe();
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(SUBMITTERS);
    for s in 0..SUBMITTERS {
        let q = q.clone();
        let user = format!("{prefix}{s}");
        let count = n / SUBMITTERS + usize::from(s < n % SUBMITTERS);
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let n = if common::same_body() {
                    0
                } else {
                    BODIES.fetch_add(1, Ordering::Relaxed)
                };
                let params = serde_json::json!(
                    {"image": "busybox", "tag": "latest", "token": "secret", "count": n}
                );
                ids.push(q.submit(&user, NOOP_CATEGORY, &params).await.unwrap().id);
            }
            ids
        }));
    }
    let mut pending: HashSet<i64> = HashSet::with_capacity(n);
    let mut done: HashSet<i64> = HashSet::with_capacity(n);
    let mut submitted = 0;
    let mut handles = futures::future::join_all(handles);
    let mut handles_done = false;
    loop {
        if handles_done && pending.is_empty() {
            break;
        }
        tokio::select! {
            ids = &mut handles, if !handles_done => {
                handles_done = true;
                for id in ids.into_iter().flat_map(|r| r.unwrap()) {
                    submitted += 1;
                    if !done.remove(&id) {
                        pending.insert(id);
                    }
                }
            }
            ev = rx.recv() => match ev {
                Ok(ev) if !ev.deleted && ev.task.state == TaskState::Completed => {
                    if !pending.remove(&ev.task.id) {
                        done.insert(ev.task.id);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Missed events: ask the queue instead.
                    for t in q.list(&admin(), None).await.unwrap() {
                        if t.state == TaskState::Completed && !pending.remove(&t.id) {
                            done.insert(t.id);
                        }
                    }
                }
                Err(RecvError::Closed) => panic!("queue closed"),
            }
        }
    }
    assert_eq!(submitted, n);
    t0.elapsed()
}

/// Worker totals to measure throughput with: `STEVEDORE_BENCH_WORKERS`
/// (comma-separated; `none` skips the throughput runs), default 4,16,64.
fn workers_to_measure() -> Vec<usize> {
    match std::env::var("STEVEDORE_BENCH_WORKERS") {
        Ok(v) => v.split(',').filter_map(|w| w.trim().parse().ok()).collect(),
        Err(_) if common::smoke() => vec![8],
        Err(_) => vec![4, 16, 64],
    }
}

fn throughput(c: &mut Criterion) {
    const BATCH: usize = 2_000;
    let rt = runtime();
    let mut summary = Vec::new();
    println!(
        "queue_throughput: {}; {}",
        common::SQLITE_LABEL,
        common::body_label()
    );
    for workers in workers_to_measure() {
        let dir = common::data_dir("queue_throughput").unwrap();
        let q = rt.block_on(start(dir.path(), workers));
        // Warm up, then one long measured run for the printed number.
        rt.block_on(submit_and_drain(
            &q,
            common::size("BENCH_WARMUP", 1_000, 100),
        ));
        let n = common::size("BENCH_TASKS", 20_000, 500);
        let took = rt.block_on(submit_and_drain(&q, n));
        let rate = n as f64 / took.as_secs_f64();
        println!("queue throughput, {workers} workers: {n} tasks submit→completed in {took:.2?} = {rate:.0} tasks/s");
        summary.push((workers, rate));
        if common::smoke() {
            rt.block_on(q.shutdown());
            continue;
        }

        let mut g = c.benchmark_group("queue_throughput");
        g.sample_size(10)
            .measurement_time(Duration::from_secs(8))
            .throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("submit_to_completed/{workers}_workers"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(submit_and_drain(&q, BATCH));
                }
                total
            })
        });
        g.finish();
        rt.block_on(q.shutdown());
    }
    for (w, r) in summary {
        println!("SUMMARY throughput workers={w}: {r:.0} tasks/s (target ≥ 3000)");
    }
}

fn list_10k(c: &mut Criterion) {
    let tasks_stored = common::size("BENCH_LISTED", 10_000, 1_000);
    let samples = common::size("BENCH_LIST_SAMPLES", 1_000, 20);
    let rt = runtime();
    let dir = common::data_dir("queue_throughput-list").unwrap();
    let q = rt.block_on(start(dir.path(), 16));
    rt.block_on(submit_and_drain(&q, tasks_stored));
    let all = rt.block_on(q.list(&admin(), None)).unwrap();
    assert_eq!(all.len(), tasks_stored);

    let mut plain = Vec::with_capacity(samples);
    let mut json = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = Instant::now();
        let tasks = rt.block_on(q.list(&admin(), None)).unwrap();
        plain.push(t0.elapsed());
        let body = serde_json::to_vec(&tasks).unwrap();
        json.push(t0.elapsed());
        assert_eq!(tasks.len(), tasks_stored);
        assert!(!body.is_empty());
    }
    let user = Viewer {
        user: "user7".into(),
        is_admin: false,
    };
    let mut own = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = Instant::now();
        let tasks = rt.block_on(q.list(&user, None)).unwrap();
        own.push(t0.elapsed());
        assert!(!tasks.is_empty());
    }
    let (p, j, o) = (latency(&plain), latency(&json), latency(&own));
    println!(
        "SUMMARY list {tasks_stored} tasks ({samples} samples): p50 {:.2?} p99 {:.2?} max {:.2?} (target p99 ≤ 50 ms)",
        p.p50, p.p99, p.max
    );
    println!(
        "SUMMARY list {tasks_stored} tasks + JSON encoding: p50 {:.2?} p99 {:.2?} max {:.2?}",
        j.p50, j.p99, j.max
    );
    println!(
        "SUMMARY list as one user (~{} tasks): p50 {:.2?} p99 {:.2?}",
        tasks_stored / SUBMITTERS,
        o.p50,
        o.p99
    );

    // The same while tasks stream through the queue (writes compete with reads).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (q, stop) = (q.clone(), stop.clone());
        rt.spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                submit_and_drain_as(&q, 256, "load").await;
                n += 256;
                // Clients delete what is done: the table stays near its size.
                for s in 0..SUBMITTERS {
                    let v = Viewer {
                        user: format!("load{s}"),
                        is_admin: false,
                    };
                    q.delete(&v, stevedore::queue::DeleteSelector::AllFinished)
                        .await
                        .unwrap();
                }
            }
            n
        })
    };
    let mut loaded = Vec::with_capacity(samples / 2);
    let t_load = Instant::now();
    for _ in 0..samples / 2 {
        let t0 = Instant::now();
        let tasks = rt.block_on(q.list(&admin(), None)).unwrap();
        loaded.push(t0.elapsed());
        assert!(tasks.len() >= tasks_stored && tasks.len() <= tasks_stored + 256);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let streamed = rt.block_on(load).unwrap();
    let l = latency(&loaded);
    println!(
        "SUMMARY list {tasks_stored}(+≤256) tasks while {:.0} tasks/s stream through (submitted, completed, deleted): p50 {:.2?} p99 {:.2?} max {:.2?}",
        streamed as f64 / t_load.elapsed().as_secs_f64(),
        l.p50,
        l.p99,
        l.max
    );

    if common::smoke() {
        rt.block_on(q.shutdown());
        return;
    }
    let mut g = c.benchmark_group("queue_list");
    g.sample_size(50);
    g.bench_function("list_10k_admin", |b| {
        b.iter(|| rt.block_on(q.list(&admin(), None)).unwrap())
    });
    g.finish();
    rt.block_on(q.shutdown());
}

criterion_group!(benches, throughput, list_10k);
criterion_main!(benches);
