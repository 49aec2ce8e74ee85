//! No-op tasks end to end, driven from outside the server's process by
//! `wrk` (Debian's package) with a Lua script, against the default
//! configuration (8 workers) and the durable store (SQLite, WAL, every
//! answer after the fsync of its commit), as issue 13 measures it, with a
//! different body per task (`--same-body`: one for all, so that `validate`
//! is remembered), the data on a disk (see `common::data_dir`):
//!
//! 1. Saturation: `wrk` submits `POST background/noop` on `BENCH_CONNECTIONS`
//!    connections (default 64) for `BENCH_SECONDS` (default 10); the figure
//!    is the tasks the store holds `completed` at the end (read back)
//!    divided by the time from the first submit to the last end.
//! 2. Latency at a steady ~1,000 tasks/s (11 connections, each submitting
//!    every 10 ms): from a task's `waiting` event (stored) to its `running`
//!    event (claimed), as the server sees them, median and p99.
//!
//! Run: `cargo xtask bench` (installs wrk), or
//! `cargo bench -p stevedore --bench wrk_throughput` with wrk installed.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::{env_usize, Server};
use parking_lot::Mutex;
use stevedore::queue::testkit::latency;
use stevedore::queue::TaskState;
use tokio::sync::Notify;

fn main() -> anyhow::Result<()> {
    // The allocator as the server binary sets it (before any thread).
    stevedore::server::tune_allocator();
    // `BENCH_LOG=1`: log at `info` as the server binary does (one line per
    // task start and end), into /dev/null instead of stderr.
    if std::env::var_os("BENCH_LOG").is_some() {
        let sink = Arc::new(std::fs::File::create("/dev/null")?);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(sink)
            .init();
    }
    common::block_on(run())
}

/// What the server's event stream tells of the tasks.
#[derive(Default)]
struct Seen {
    /// Record `stored` and `started` (the steady phase only: under
    /// saturation the bookkeeping of 100,000s of tasks would be charged to
    /// the server's CPU).
    timing: bool,
    /// When each task was announced `waiting`, then `running`.
    stored: HashMap<i64, Instant>,
    started: HashMap<i64, Duration>,
    last_end: Option<Instant>,
}

async fn run() -> anyhow::Result<()> {
    let Some(wrk) = which("wrk") else {
        bail!("wrk is not installed: `apt-get install wrk` (cargo xtask bench installs it)");
    };
    let connections = env_usize("BENCH_CONNECTIONS", 64);
    let seconds = common::size("BENCH_SECONDS", 10, 1);
    let workers = env_usize("BENCH_WORKERS", 8);
    let dir = common::data_dir("wrk_throughput")?;
    let server = Server::start(dir.path(), workers, &[]).await?;
    let cookie = login_cookie(&server).await?;
    println!(
        "wrk_throughput: executor = {}; {}; {}; {workers} workers; \
         wrk from {}; logs {}",
        server.executor,
        common::SQLITE_LABEL,
        common::body_label(),
        wrk.display(),
        if std::env::var_os("BENCH_LOG").is_some() {
            "at info to /dev/null (BENCH_LOG)"
        } else {
            "off (BENCH_LOG=1 logs as the server does)"
        }
    );

    let finished = Arc::new(AtomicUsize::new(0));
    let changed = Arc::new(Notify::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = {
        let mut events = server.queue.subscribe();
        let (finished, changed, seen) = (finished.clone(), changed.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) if ev.deleted => {}
                    Ok(ev) => {
                        let now = Instant::now();
                        let mut s = seen.lock();
                        match ev.task.state {
                            TaskState::Waiting if s.timing => {
                                s.stored.insert(ev.task.id, now);
                            }
                            TaskState::Waiting => {}
                            TaskState::Running => {
                                if let Some(at) = s.stored.get(&ev.task.id) {
                                    let took = now - *at;
                                    s.started.entry(ev.task.id).or_insert(took);
                                }
                            }
                            // In the steady phase only its own tasks' ends
                            // count: an end of a saturation submit that wrk
                            // had in flight may be announced after it began.
                            TaskState::Completed | TaskState::Error
                                if !s.timing || s.stored.contains_key(&ev.task.id) =>
                            {
                                s.last_end = Some(now);
                                finished.fetch_add(1, Ordering::AcqRel);
                                changed.notify_one();
                            }
                            TaskState::Completed | TaskState::Error => {}
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("the event stream lagged by {n}: figures are off");
                    }
                    Err(_) => return,
                }
            }
        })
    };

    // 1. Saturation.
    let script = dir.path().join("submit.lua");
    std::fs::write(&script, lua(&cookie, None, 0))?;
    let cpu0 = cpu_time();
    let threads0 = thread_cpu();
    let t0 = Instant::now();
    let summary = wrk_run(
        &wrk,
        &script,
        connections,
        seconds,
        &format!("{}/background/noop", server.api),
    )
    .await?;
    // Where wrk stopped: the rest of the run drains what was queued.
    let (wrk_end, ended_by_then, cpu_by_then) = (
        Instant::now(),
        finished.load(Ordering::Acquire),
        cpu_time() - cpu0,
    );
    let submitted = summary.ok;
    let (done, asked_store) = wait_for(
        &server.queue,
        &finished,
        &changed,
        submitted,
        Duration::from_secs(300),
    )
    .await?;
    // When ends were missed, the last one seen may not be the last one:
    // count to when the store was seen empty (late, never early).
    let last = asked_store
        .or(seen.lock().last_end)
        .unwrap_or_else(Instant::now);
    let cpu = cpu_time() - cpu0;
    let threads = thread_cpu();
    let total = last.duration_since(t0);
    anyhow::ensure!(done >= submitted, "{done} of {submitted} tasks ended");
    // The submits wrk had in flight when it stopped (it does not count
    // them) end too before anything is read back, so that the steady
    // phase starts from a settled store.
    settled(&server.queue, Duration::from_secs(60)).await?;
    // What counts: the tasks the store holds completed, not the ends seen.
    let completed = common::completed(&server.queue).await? as usize;
    anyhow::ensure!(completed > 0, "no task completed");
    if completed < submitted {
        eprintln!("{completed} of {submitted} submitted tasks completed (the rest ended in error)");
    }
    println!(
        "saturation: wrk -c{connections} -d{seconds}s: {} submits answered 200 ({} other), \
         {:.0} submits/s; {completed} completed (read back from the store) in {:.2} s => \
         {:.0} tasks/s end to end (target >= 15000)",
        summary.ok,
        summary.failed,
        summary.ok as f64 / summary.seconds,
        total.as_secs_f64(),
        completed as f64 / total.as_secs_f64()
    );
    // Less swayed by the machine's neighbours than the rate: what each task
    // cost the server process (every thread; wrk apart), in CPU time.
    println!(
        "saturation: server CPU {:.2} s => {:.0} us of CPU per task",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / submitted as f64
    );
    // Where it went, by thread name (the writer's share moves little with
    // the machine's load: it tells store changes apart).
    let per_task = |d: Duration| d.as_secs_f64() * 1e6 / submitted as f64;
    let mut parts: Vec<(String, f64)> = threads
        .iter()
        .map(|(name, t)| {
            let before = threads0.get(name).copied().unwrap_or_default();
            (name.clone(), per_task(t.saturating_sub(before)))
        })
        .filter(|(_, us)| *us >= 0.5)
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let parts: Vec<String> = parts
        .iter()
        .map(|(name, us)| format!("{name} {us:.0}"))
        .collect();
    println!(
        "saturation: us of CPU per task by thread: {}",
        parts.join(", ")
    );
    // Whether the tasks kept up with the submits, and whether the drain
    // after wrk stopped used the two cores (CPU-bound) or waited.
    let drain = last.saturating_duration_since(wrk_end).as_secs_f64();
    let during = wrk_end.duration_since(t0).as_secs_f64();
    let queued = submitted.saturating_sub(ended_by_then);
    println!(
        "saturation: while wrk ran {:.0} ends/s using {:.2} cores; after, {queued} queued tasks \
         drained at {:.0}/s using {:.2} cores",
        ended_by_then as f64 / during,
        cpu_by_then.as_secs_f64() / during,
        queued as f64 / drain.max(1e-3),
        (cpu - cpu_by_then).as_secs_f64() / drain.max(1e-3),
    );

    // 2. Submit -> start at a steady 1,000 tasks/s.
    *seen.lock() = Seen {
        timing: true,
        ..Seen::default()
    };
    finished.store(0, Ordering::Release);
    // Bodies the saturation phase did not send.
    std::fs::write(&script, lua(&cookie, Some(10), 1_000_000_000))?;
    let summary = wrk_run(
        &wrk,
        &script,
        11,
        seconds,
        &format!("{}/background/noop", server.api),
    )
    .await?;
    wait_for(
        &server.queue,
        &finished,
        &changed,
        summary.ok,
        Duration::from_secs(300),
    )
    .await?;
    let steady_completed = common::completed(&server.queue).await? as usize - completed;
    // (wrk does not count the requests still in flight when it stops: the
    // store may hold a few more.)
    anyhow::ensure!(
        steady_completed >= summary.ok,
        "steady phase: {steady_completed} of {} submitted tasks completed",
        summary.ok
    );
    let waits: Vec<Duration> = seen.lock().started.values().copied().collect();
    let l = latency(&waits);
    println!(
        "steady {:.0} tasks/s: stored -> started p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} tasks \
         (target p50 <= 2 ms, p99 <= 10 ms); submit answered (durable) p50 {:.2} ms, p99 {:.2} ms",
        summary.ok as f64 / summary.seconds,
        l.p50.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3,
        l.max.as_secs_f64() * 1e3,
        l.samples,
        summary.answer_p50.as_secs_f64() * 1e3,
        summary.answer_p99.as_secs_f64() * 1e3,
    );
    watcher.abort();
    server.stop().await;
    Ok(())
}

/// User + system CPU time of this process (all its threads) so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of this process's live threads so far, summed by thread name
/// (`/proc/self/task/*/schedstat`, nanoseconds on CPU).
fn thread_cpu() -> HashMap<String, Duration> {
    let mut out: HashMap<String, Duration> = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_default() += Duration::from_nanos(ns);
    }
    out
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// The session cookie (`name=value`) of an admin login.
async fn login_cookie(server: &Server) -> anyhow::Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{}/login", server.api))
        .form(&[("username", "admin"), ("password", common::PASSWORD)])
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "login failed: {}", r.status());
    let set = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .context("login set no cookie")?
        .to_str()?;
    Ok(set.split(';').next().unwrap_or_default().to_string())
}

/// The wrk script: submit a no-op task per request (every `delay_ms` per
/// connection when given), each with a body of its own numbered from
/// `first` (one body for all with `--same-body`), and print the counts wrk
/// keeps at the end.
fn lua(cookie: &str, delay_ms: Option<u32>, first: u64) -> String {
    let delay = delay_ms
        .map(|ms| format!("function delay() return {ms} end\n"))
        .unwrap_or_default();
    let request = if common::same_body() {
        String::new()
    } else {
        // wrk runs one thread here (-t1): one counter numbers every request.
        format!(
            r#"local n = {first}
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, '{{"count": ' .. n .. '}}')
end
"#
        )
    };
    format!(
        r#"wrk.method = "POST"
wrk.body = '{{"count": 1}}'
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "{cookie}"
{delay}{request}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("STEVEDORE %d %d %d %d %d\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"#
    )
}

/// What wrk reports.
struct Summary {
    ok: usize,
    failed: usize,
    seconds: f64,
    /// How long wrk waited for an answer (durable submit), median and p99.
    answer_p50: Duration,
    answer_p99: Duration,
}

async fn wrk_run(
    wrk: &std::path::Path,
    script: &std::path::Path,
    connections: usize,
    seconds: usize,
    url: &str,
) -> anyhow::Result<Summary> {
    let mut cmd = Command::new(wrk);
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(script)
        .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("STEVEDORE "))
        .with_context(|| format!("wrk printed no summary: {text}"))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let (requests, failed, micros) = (n[0] as usize, n[1] as usize, n[2]);
    Ok(Summary {
        ok: requests.saturating_sub(failed),
        failed,
        seconds: micros as f64 / 1e6,
        answer_p50: Duration::from_micros(n[3]),
        answer_p99: Duration::from_micros(n[4]),
    })
}

/// Wait until `want` tasks ended; returns how many did, and when the store
/// was asked and held none unfinished if the event stream missed some ends.
/// Wait until the store holds no waiting or running task, or fail after
/// `deadline`.
async fn settled(queue: &stevedore::queue::Queue, deadline: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + deadline;
    loop {
        let unfinished: u64 = queue
            .counts()
            .await?
            .iter()
            .filter(|c| matches!(c.state, TaskState::Waiting | TaskState::Running))
            .map(|c| c.count)
            .sum();
        if unfinished == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < end,
            "{unfinished} tasks still waiting or running after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(
    queue: &stevedore::queue::Queue,
    finished: &AtomicUsize,
    changed: &Notify,
    want: usize,
    deadline: Duration,
) -> anyhow::Result<(usize, Option<Instant>)> {
    let end = Instant::now() + deadline;
    let mut last = (finished.load(Ordering::Acquire), Instant::now());
    loop {
        let done = finished.load(Ordering::Acquire);
        if done >= want {
            return Ok((done, None));
        }
        // No end seen for a second: if the event stream lagged, the ends it
        // dropped are in the store; and if tasks are stuck, say which.
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            let counts = queue.counts().await?;
            let unfinished: u64 = counts
                .iter()
                .filter(|c| matches!(c.state, TaskState::Waiting | TaskState::Running))
                .map(|c| c.count)
                .sum();
            if unfinished == 0 {
                eprintln!(
                    "{done} of {want} ends seen on the event stream, none left in the store: \
                     the end is counted from now (up to a second late)"
                );
                return Ok((want, Some(Instant::now())));
            }
            anyhow::ensure!(
                Instant::now() < end,
                "only {done} of {want} tasks ended in time; the store holds {:?}",
                counts
                    .iter()
                    .map(|c| format!("{} {:?} {}", c.category, c.state, c.count))
                    .collect::<Vec<_>>()
            );
            last.1 = Instant::now();
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), changed.notified()).await;
    }
}
