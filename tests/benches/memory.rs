//! The server's memory as its work grows (issue 33, item 6), measured on
//! the real `stevedore serve` binary from `/proc/PID/status`, for SQLite
//! and for PostgreSQL (a fresh database per round):
//!
//! 1. **Waiting tasks:** RSS once `BENCH_TASKS` (default 100,000) tasks wait
//!    (a `sleepy` limit of 1, its slot held by a long task), against the
//!    same server idle before the submits. Targets: ≤ 64 MiB on SQLite,
//!    ≤ 96 MiB on PostgreSQL.
//! 2. **Listing them:** the peak RSS (`VmHWM`, reset through
//!    `/proc/PID/clear_refs` first) while `GET background/` streams every
//!    waiting task, over the RSS just before. Target: ≤ +8 MiB. The answer
//!    is read whole and its entries counted: a listing that came back short
//!    fails the bench.
//! 3. **Watchers:** the RSS with `BENCH_WATCHERS` (default 1,000) event
//!    streams open, each having received the same task's end, over the RSS
//!    before they opened. Target: ≤ +32 MiB.
//!
//! Tasks are submitted by 32 concurrent clients, each task with its own body.
//! Rounds alternate SQLite and PostgreSQL; medians of `STEVEDORE_BENCH_ROUNDS`
//! (default 5) with the spread. Run with `cargo xtask bench` (it starts the
//! services), or with them up: `cargo bench -p stevedore-e2e --bench memory`.

use std::time::Duration;

use reqwest::Method;
use stevedore_e2e::bench::{rounds, sized, status_kib};
use stevedore_e2e::{Client, Options, Server, SseReader};

/// Concurrent submitters.
const SUBMITTERS: usize = 32;

/// What one round measured, in KiB.
#[derive(Default, Clone, Copy)]
struct Round {
    idle: u64,
    waiting: u64,
    listing_over: u64,
    /// Of `listing_over`, what the listing added to file-backed pages (the
    /// memory-mapped SQLite file: page cache, which the kernel may reclaim).
    listing_file: u64,
    watchers_over: u64,
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("memory: bench");
        return;
    }
    let tasks = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| sized(100_000, 2_000));
    let watchers = std::env::var("BENCH_WATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| sized(1_000, 50));
    raise_open_files(watchers as u64 * 2 + 1_024);
    let rounds = rounds();
    // `BENCH_STORES=sqlite` (or `postgres`) measures one store only.
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    println!(
        "memory: {tasks} waiting tasks, {watchers} event-stream watchers, {rounds} rounds, \
         SQLite and PostgreSQL alternating"
    );
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    for round in 0..rounds {
        // Alternate which store goes first, so neither always runs on a
        // machine the other has just warmed.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for pg in order {
            if !stores.contains(if pg { "postgres" } else { "sqlite" }) {
                continue;
            }
            let r = measure(pg, tasks, watchers).await;
            println!(
                "  round {}: {:<10} idle {:>6.1} MiB, {tasks} waiting {:>6.1} MiB, \
                 listing +{:.1} MiB ({:.1} file-backed), {watchers} watchers +{:.1} MiB",
                round + 1,
                if pg { "PostgreSQL" } else { "SQLite" },
                mib(r.idle),
                mib(r.waiting),
                mib(r.listing_over),
                mib(r.listing_file),
                mib(r.watchers_over),
            );
            if pg {
                postgres.push(r);
            } else {
                sqlite.push(r);
            }
        }
    }
    for (name, runs, waiting_target) in [("SQLite", &sqlite, 64), ("PostgreSQL", &postgres, 96)] {
        if runs.is_empty() {
            continue;
        }
        println!("memory, {name} (median [min–max] of {}):", runs.len());
        line("idle RSS", runs, |r| r.idle, None);
        line(
            &format!("RSS with {tasks} waiting"),
            runs,
            |r| r.waiting,
            Some(waiting_target),
        );
        line(
            "GET background/, peak over before",
            runs,
            |r| r.listing_over,
            Some(8),
        );
        line(
            "  of which file-backed (mapped database)",
            runs,
            |r| r.listing_file,
            None,
        );
        line(
            "  the rest (anonymous: heap, buffers)",
            runs,
            |r| r.listing_over.saturating_sub(r.listing_file),
            Some(8),
        );
        line(
            &format!("{watchers} watchers, over before"),
            runs,
            |r| r.watchers_over,
            Some(32),
        );
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Print the median and spread of one figure, and its target when it has one.
fn line(what: &str, runs: &[Round], f: impl Fn(&Round) -> u64, target_mib: Option<u64>) {
    let mut v: Vec<u64> = runs.iter().map(f).collect();
    v.sort_unstable();
    let median = v[v.len() / 2];
    let target = match target_mib {
        Some(t) if mib(median) <= t as f64 => format!("  (target ≤ {t} MiB: met)"),
        Some(t) => format!("  (target ≤ {t} MiB: NOT met)"),
        None => String::new(),
    };
    println!(
        "  {what:<40} {:>7.1} MiB [{:.1}–{:.1}]{target}",
        mib(median),
        mib(v[0]),
        mib(v[v.len() - 1]),
    );
}

/// One round on a fresh server (and, for PostgreSQL, a fresh database).
async fn measure(pg: bool, tasks: usize, watchers: usize) -> Round {
    let config = format!(
        "[queue.limits]\nsleepy = 1\n[http]\nstreams_per_user = {}\n",
        watchers + 8
    );
    let mut options = Options::with_plugins(&["noop", "sleepy"]).config(&config);
    let database = pg.then(|| stevedore_e2e::fresh_database("bench_memory"));
    if let Some(db) = &database {
        options = options.env("STEVEDORE_DATABASE_URL", db);
    }
    let server = Server::start(options).await;
    let pid = server.pid().expect("the server runs");
    let c = server.admin().await;
    let mut r = Round {
        idle: status_kib(pid, "VmRSS:"),
        ..Round::default()
    };

    // The slot of the sleepy limit, held for the whole round.
    let holder = c.submit_ok("sleepy", r#"{"seconds": 3600}"#).await;
    c.wait_state(holder, "running").await;
    submit_all(&c, tasks).await;
    r.waiting = status_kib(pid, "VmRSS:");

    let before = status_kib(pid, "VmRSS:");
    let file_before = status_kib(pid, "RssFile:");
    reset_peak(pid);
    let listed = c.list(Some("sleepy")).await;
    let waiting = listed.iter().filter(|t| t["state"] == "waiting").count();
    assert_eq!(waiting, tasks, "the listing holds every waiting task");
    drop(listed);
    r.listing_over = status_kib(pid, "VmHWM:").saturating_sub(before);
    r.listing_file = status_kib(pid, "RssFile:").saturating_sub(file_before);

    r.watchers_over = watch(&server, &c, pid, watchers).await;

    // Free the slot and the queue: the server is stopped with its data.
    drop(server);
    if let Some(db) = database {
        drop_database(&db);
    }
    r
}

/// Submit `tasks` sleepy tasks, each with its own body, from [`SUBMITTERS`]
/// clients; every submit must be accepted.
async fn submit_all(c: &Client, tasks: usize) {
    let mut handles = Vec::new();
    for s in 0..SUBMITTERS {
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            let mut i = s;
            while i < tasks {
                let body = format!(r#"{{"seconds": {}}}"#, 1 + i % 3_000);
                let a = c.send(Method::POST, "background/sleepy", Some(&body)).await;
                assert_eq!(a.status, 200, "submit {i}: {:?}", a.body);
                i += SUBMITTERS;
            }
        }));
    }
    for h in handles {
        h.await.expect("a submitter");
    }
}

/// Open `watchers` event streams, let each receive the end of one task, and
/// give the RSS then over the RSS before they opened.
async fn watch(server: &Server, c: &Client, pid: u32, watchers: usize) -> u64 {
    // One session for every stream (a login per stream would measure argon2).
    let login = server
        .client()
        .login("admin", stevedore_e2e::ADMIN_PASSWORD)
        .await;
    let cookie = login
        .set_cookie
        .as_deref()
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let before = status_kib(pid, "VmRSS:");
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        // Each stream on its own connection, as separate browsers would be.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let resp = http
            .get(format!("{}/background/events", c.api))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("an event stream");
        assert_eq!(resp.status(), 200, "event stream {}", streams.len());
        streams.push(SseReader::new(resp));
    }
    let id = c.submit_ok("noop", "{}").await;
    let ends = futures::future::join_all(streams.iter_mut().map(|s| async move {
        loop {
            let (event, data) = s.next().await.expect("the stream stays open");
            if event != "task" {
                continue;
            }
            let t: serde_json::Value = serde_json::from_str(&data).unwrap();
            if t["id"] == id && t["state"] == "completed" {
                return;
            }
        }
    }));
    tokio::time::timeout(Duration::from_secs(60), ends)
        .await
        .expect("every watcher saw the task end");
    let over = status_kib(pid, "VmRSS:").saturating_sub(before);
    drop(streams);
    over
}

/// Reset the process's peak RSS (`VmHWM`) to its current RSS.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs (root is needed)");
}

/// Raise this process's open-file limit (the server it starts inherits it)
/// to at least `want`, within the hard limit.
fn raise_open_files(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn drop_database(url: &str) {
    let (server, name) = url.rsplit_once('/').expect("postgres://.../db");
    let base = std::env::var("STEVEDORE_TEST_DATABASE_URL").unwrap_or_default();
    let admin = if base.is_empty() {
        format!("{server}/postgres")
    } else {
        base
    };
    let _ = std::process::Command::new("psql")
        .arg(&admin)
        .args([
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ])
        .output();
}
