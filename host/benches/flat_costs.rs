//! Costs that stay flat as tasks pile up (issue 13), over HTTP, in one
//! process: two servers side by side, each the real router on a loopback
//! socket with the durable SQLite store (WAL, `synchronous = NORMAL` and
//! its own fsync before every answer) in a folder on a disk
//! (`common::data_dir`) and the default configuration (8 workers):
//! `empty` (a fresh store) and `full` (`BENCH_STORED` finished tasks, 100,000
//! by default, stored before it starts). Both run the no-op category (the
//! `noop` plugin from `target/test-plugins` when built, else the Rust
//! `NoopExecutor`, as `api_throughput` does).
//!
//! 1. Throughput: `BENCH_ROUNDS` rounds of `BENCH_TASKS` submits over
//!    `BENCH_CONCURRENCY` connections (a different body per task unless
//!    `--same-body`), each timed until every task ended and counting the
//!    tasks the store holds `completed` (read back), alternating `empty` and `full` (and which goes first) so
//!    both see the same machine. `empty` deletes its finished tasks after each round; `full`
//!    keeps them. Medians, and their ratio (target: `full` within 10%).
//! 2. Pages on `full`: `BENCH_PAGES` sequential `GET background/?limit=100&
//!    before=ID` at random positions (target p99 <= 10 ms), and with
//!    `&category=noop`.
//! 3. The whole list of `full` (no `limit`), streamed: its time, and the
//!    peak heap the process grew by while it went out, against its size
//!    (a counting allocator; the client drops each chunk as it comes).
//!
//! `BENCH_STORED=0` makes both stores empty: the ratio it prints is the
//! noise floor of the machine (on a busy 2-core one, rounds vary by ±30%
//! and that ratio came out at 0.89).
//!
//! Run: `cargo bench -p stevedore --bench flat_costs`
//! (env: `BENCH_STORED`, `BENCH_ROUNDS`, `BENCH_TASKS`, `BENCH_CONCURRENCY`,
//! `BENCH_PAGES`, `BENCH_WORKERS`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_usize, Server};
use futures::StreamExt;
use rand::Rng;
use stevedore::queue::testkit::latency;
use stevedore::queue::TaskState;
use stevedore::store::tasks::{ClaimRequest, Finish, NewTask, TaskStore};

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to `System` with the caller's layout unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = IN_USE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() -> anyhow::Result<()> {
    common::block_on(run())
}

/// One server, named, with a logged-in client.
struct Named {
    name: &'static str,
    server: Server,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Named {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

/// Store `n` finished no-op tasks (ended now, so retention keeps them).
async fn fill(store: &Arc<dyn TaskStore>, n: usize) -> anyhow::Result<()> {
    let now = stevedore::store::tasks::model::now();
    let mut left = n;
    while left > 0 {
        let chunk = left.min(4096);
        let inserts = (0..chunk).map(|i| {
            store.insert(NewTask {
                category: "noop".into(),
                user: "admin".into(),
                deletable: true,
                name: String::new(),
                shown_params: format!("{{\"count\": {i}}}"),
                full_params: None,
                init: now,
                node: None,
            })
        });
        for r in futures::future::join_all(inserts).await {
            r?;
        }
        let claimed = store
            .claim(ClaimRequest {
                max: chunk,
                categories: vec![("noop".into(), None)],
                users: Vec::new(),
                now,
            })
            .await?;
        let ends = claimed.iter().map(|c| {
            store.finish(Finish {
                id: c.task.id,
                state: TaskState::Completed,
                result: 0,
                detail: "completed".into(),
                progress: 100,
                end: now,
                log: None,
            })
        });
        for r in futures::future::join_all(ends).await {
            r?;
        }
        left -= chunk;
    }
    Ok(())
}

async fn start(name: &'static str, stored: usize, workers: usize) -> anyhow::Result<Named> {
    let dir = common::data_dir(&format!("flat_costs-{name}"))?;
    let prepared = common::prepare(dir.path(), workers, &[]).await?;
    if stored > 0 {
        let t = Instant::now();
        fill(prepared.tasks(), stored).await?;
        println!(
            "{name}: stored {stored} finished tasks in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let server = prepared.serve().await?;
    println!(
        "{name}: executor = {}; {}; {workers} workers; {}",
        server.executor,
        common::SQLITE_LABEL,
        common::body_label()
    );
    let client = server.login(256).await?;
    Ok(Named {
        name,
        server,
        client,
        _dir: dir,
    })
}

/// Numbers every submit's body across rounds and servers.
static SUBMITS: AtomicUsize = AtomicUsize::new(0);

/// Submit `tasks` no-op tasks over `concurrency` connections; the tasks
/// completed (read back from the store) per second from the first submit
/// until the last one ended.
async fn round(s: &Named, tasks: usize, concurrency: usize) -> anyhow::Result<f64> {
    let completed_before = common::completed(&s.queue).await?;
    let mut events = s.queue.subscribe();
    let done = tokio::spawn(async move {
        let mut done = 0;
        while done < tasks {
            match events.recv().await {
                Ok(ev) if !ev.deleted && ev.task.state.is_finished() => done += 1,
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("event stream: {e}")),
            }
        }
        Ok(Instant::now())
    });
    let t0 = Instant::now();
    let per = tasks.div_ceil(concurrency);
    let mut submitters = Vec::new();
    for w in 0..concurrency {
        let (client, url) = (s.client.clone(), format!("{}/background/noop", s.api));
        let n = per.min(tasks.saturating_sub(w * per));
        submitters.push(tokio::spawn(async move {
            for _ in 0..n {
                let r = client
                    .post(&url)
                    .body(common::noop_body(SUBMITS.fetch_add(1, Ordering::Relaxed)))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "submit: {}", r.status());
                r.bytes().await?;
            }
            anyhow::Ok(())
        }));
    }
    for sub in submitters {
        sub.await??;
    }
    let last = tokio::time::timeout(Duration::from_secs(300), done).await???;
    let completed = common::completed(&s.queue).await? - completed_before;
    anyhow::ensure!(completed > 0, "{}: no task completed", s.name);
    Ok(completed as f64 / last.duration_since(t0).as_secs_f64())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

async fn run() -> anyhow::Result<()> {
    let stored = common::size("BENCH_STORED", 100_000, 5_000);
    let rounds = common::size("BENCH_ROUNDS", 8, 1);
    let tasks = common::size("BENCH_TASKS", 3_000, 300);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let pages = common::size("BENCH_PAGES", 1_000, 50);
    let workers = env_usize("BENCH_WORKERS", 8);

    let empty = start("empty", 0, workers).await?;
    let full = start("full", stored, workers).await?;

    // 1. Throughput, alternating.
    let (mut on_empty, mut on_full) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // Which goes first alternates, so a trend in the machine's load
        // (other work on it) falls on both alike.
        let (e, f) = if r % 2 == 0 {
            let e = round(&empty, tasks, concurrency).await?;
            (e, round(&full, tasks, concurrency).await?)
        } else {
            let f = round(&full, tasks, concurrency).await?;
            (round(&empty, tasks, concurrency).await?, f)
        };
        let del = empty
            .client
            .delete(format!("{}/background/", empty.api))
            .send()
            .await?;
        anyhow::ensure!(del.status().is_success(), "delete: {}", del.status());
        println!("round {}: empty {e:.0} tasks/s, full {f:.0} tasks/s", r + 1);
        on_empty.push(e);
        on_full.push(f);
    }
    let (me, mf) = (median(&on_empty), median(&on_full));
    println!(
        "throughput ({rounds} rounds of {tasks} no-op tasks, {concurrency} connections): median empty {me:.0} tasks/s, full ({stored}+ finished stored) {mf:.0} tasks/s => full/empty {:.3} (target >= 0.90)",
        mf / me
    );

    // 2. Pages of 100 at random positions of `full`.
    let newest: Vec<serde_json::Value> = full
        .client
        .get(format!("{}/background/?limit=1", full.api))
        .send()
        .await?
        .json()
        .await?;
    let top = newest[0]["id"].as_i64().unwrap_or(1);
    for query in ["", "&category=noop"] {
        let mut lat = Vec::with_capacity(pages);
        let mut got = 0;
        for _ in 0..pages {
            let before = rand::thread_rng().gen_range(2..=top + 1);
            let url = format!("{}/background/?limit=100&before={before}{query}", full.api);
            let t = Instant::now();
            let r = full.client.get(&url).send().await?;
            anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
            let body = r.bytes().await?;
            lat.push(t.elapsed());
            got += usize::from(body.len() > 2);
        }
        let l = latency(&lat);
        println!(
            "page: GET background/?limit=100&before=<random>{query} on {top} tasks: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {pages} requests ({got} non-empty) (target p99 <= 10 ms)",
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3,
            l.max.as_secs_f64() * 1e3
        );
    }

    // 3. The whole list, streamed.
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let r = full
        .client
        .get(format!("{}/background/", full.api))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "list: {}", r.status());
    let mut body = r.bytes_stream();
    let (mut bytes, mut chunks) = (0usize, 0usize);
    while let Some(chunk) = body.next().await {
        bytes += chunk?.len();
        chunks += 1;
    }
    let took = t.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    println!(
        "whole list: GET background/ of {top} tasks: {:.1} MB in {chunks} chunks, {:.0} ms; peak heap growth while it streamed {:.2} MB ({:.1}% of the body)",
        bytes as f64 / 1e6,
        took.as_secs_f64() * 1e3,
        peak as f64 / 1e6,
        100.0 * peak as f64 / bytes.max(1) as f64
    );

    for s in [empty, full] {
        let name = s.name;
        s.server.stop().await;
        println!("{name}: stopped");
    }
    Ok(())
}
