//! What the benchmarks in `tests/benches/` share: running a shell line,
//! timing it or a task the same way, medians, and the server's memory.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Client, SseReader};

/// Run `script` with `sh -c` (stdout discarded); panics when it fails.
pub fn sh(script: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// Wall time of `script`, after a `sync` so no run pays for the previous
/// run's writeback.
pub fn timed(script: &str) -> Duration {
    sh("sync");
    let started = Instant::now();
    sh(script);
    started.elapsed()
}

/// Wall time of a task from submit to `completed` (after a `sync`, as
/// [`timed`]); panics when it ends in error or outlives `deadline`. The end
/// is read from the event stream, opened before the submit, so the time
/// holds no polling interval.
pub async fn task(c: &Client, category: &str, body: &str, deadline: Duration) -> Duration {
    tasks(c, category, &[body], deadline).await
}

/// Wall time of tasks submitted back to back, from the first submit until
/// the last of them is `completed`; as [`task`] otherwise.
pub async fn tasks(c: &Client, category: &str, bodies: &[&str], deadline: Duration) -> Duration {
    sh("sync");
    let resp = c
        .http()
        .get(format!("{}/background/events", c.api))
        // The stream stays open as long as the tasks may run.
        .timeout(deadline + Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "background/events");
    let mut events = SseReader::new(resp);
    let started = Instant::now();
    let mut running = Vec::new();
    for body in bodies {
        running.push(c.submit_ok(category, body).await);
    }
    tokio::time::timeout(deadline, async {
        while !running.is_empty() {
            let Some((event, data)) = events.next().await else {
                panic!("the event stream ended before tasks {running:?} did");
            };
            if event != "task" {
                assert_ne!(event, "lagged", "the event stream lagged: {data}");
                continue;
            }
            let t: serde_json::Value = serde_json::from_str(&data).unwrap();
            let Some(id) = t["id"].as_i64().filter(|id| running.contains(id)) else {
                continue;
            };
            if t["state"] == "completed" || t["state"] == "error" {
                assert_eq!(t["state"], "completed", "{t}");
                running.retain(|r| *r != id);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("tasks did not end within {deadline:?}"));
    started.elapsed()
}

/// How many rounds a benchmark runs: `STEVEDORE_BENCH_ROUNDS`, default 5
/// (timings here swing by up to 25% between runs: medians of at least 5).
pub fn rounds() -> usize {
    std::env::var("STEVEDORE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(if smoke() { 1 } else { 5 })
}

/// Whether this is a smoke run (`STEVEDORE_BENCH_SMOKE=1`, as `cargo xtask
/// bench --smoke` sets): one short round on small inputs, to show that the
/// bench completes and prints sane figures, not to measure.
pub fn smoke() -> bool {
    std::env::var_os("STEVEDORE_BENCH_SMOKE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `full`, or `small` in a smoke run.
pub fn sized(full: usize, small: usize) -> usize {
    if smoke() {
        small
    } else {
        full
    }
}

/// Print the filesystem type of `path` (a server's data folder) and refuse
/// a tmpfs, where an fsync costs nothing, unless `BENCH_ALLOW_TMPFS=1`.
pub fn check_data_fs(bench: &str, path: &std::path::Path) {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .expect("stat");
    let fs = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!("{bench}: data in {} ({fs})", path.display());
    assert!(
        !(fs == "tmpfs" || fs == "ramfs") || std::env::var_os("BENCH_ALLOW_TMPFS").is_some(),
        "{} is on a {fs}, where an fsync costs nothing: set TMPDIR to a folder on a disk, \
         or BENCH_ALLOW_TMPFS=1 to measure anyway",
        path.display()
    );
}

/// Whether `tool` is on the `PATH`.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in KiB; 0 if unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
