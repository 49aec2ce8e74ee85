//! `GET system` and `GET system/resource`: the host and its engines, as
//! Container Station's recorded answers show them, with this host's values.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET system` | `{cpuCore, cpuThread, hostname, processor, machine, memory (kB), memoryPageSize, features, gpu, status, platform, needRestart, version: {qpkg, dockerVersion, lxc}}` |
//! | `GET system/resource` | `{"cpu_usage": "12.5", "memory_usage": {total, used, buffers, cached (MB), percent, percent_buffers, percent_cached}}` |
//!
//! The host's figures come from `/proc` (`cpuinfo`, `meminfo`, `stat`) and
//! `uname`; the engines' versions from the runtimes (an engine that does
//! not answer shows `""` and is not listed in `features`).

use std::collections::HashSet;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::containers::context;
use super::session::CurrentUser;
use super::AppState;
use crate::runtime::RuntimeKind;

/// `GET system`: the host and its engines.
#[utoipa::path(get, path = "/system", tag = "system",
    summary = "The host and its engines",
    responses(
        (status = 200, description = "The host", body = Object),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn info(State(state): State<AppState>, user: CurrentUser) -> Json<Value> {
    let cx = context(&user);
    let (docker, lxc) = tokio::join!(
        state
            .runtime
            .containers
            .engine_version(&cx, RuntimeKind::Docker),
        state
            .runtime
            .containers
            .engine_version(&cx, RuntimeKind::Lxc)
    );
    let mut features = Vec::new();
    if docker.is_ok() {
        features.push("docker");
    }
    if lxc.is_ok() {
        features.push("lxc");
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (cores, threads_listed, processor) = cpu_info(&cpu);
    let threads = if threads_listed > 0 {
        threads_listed
    } else {
        threads
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0);
    Json(json!({
        "cpuCore": if cores > 0 { cores } else { threads },
        "cpuThread": threads,
        "hostname": hostname,
        "processor": processor,
        "machine": machine(),
        "memory": meminfo_kb(&meminfo, "MemTotal"),
        "memoryPageSize": page,
        "features": features,
        "gpu": {"csMode": false, "device": [], "driverInstalled": false},
        "status": "running",
        "platform": std::env::consts::OS,
        "needRestart": false,
        "version": {
            "qpkg": env!("CARGO_PKG_VERSION"),
            "dockerVersion": docker.unwrap_or_default(),
            "lxc": lxc.unwrap_or_default(),
        },
    }))
}

/// `GET system/resource`: the host's CPU use since the previous call (since
/// boot on the first) and its memory use.
#[utoipa::path(get, path = "/system/resource", tag = "system",
    summary = "The host's CPU and memory use",
    responses(
        (status = 200, description = "The use", body = Object),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn resource(_user: CurrentUser) -> Json<Value> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpu = cpu_ticks(&stat).map_or(0.0, |now| {
        let previous = LAST_TICKS.lock().replace(now);
        busy_percent(previous.unwrap_or_default(), now)
    });
    Json(json!({
        "cpu_usage": format!("{cpu:.1}"),
        "memory_usage": memory_usage(&meminfo),
    }))
}

/// The host's CPU ticks at the previous `system/resource` call.
static LAST_TICKS: parking_lot::Mutex<Option<Ticks>> = parking_lot::Mutex::new(None);

/// Total and busy (not idle, not waiting on I/O) CPU ticks of the host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Ticks {
    total: u64,
    busy: u64,
}

/// The `cpu` line of `/proc/stat`.
fn cpu_ticks(stat: &str) -> Option<Ticks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let total: u64 = n.iter().take(8).sum();
    let idle = n.get(3).copied().unwrap_or(0) + n.get(4).copied().unwrap_or(0);
    Some(Ticks {
        total,
        busy: total.saturating_sub(idle),
    })
}

/// Busy share of the ticks between two readings, in percent.
fn busy_percent(before: Ticks, now: Ticks) -> f64 {
    let total = now.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    (now.busy.saturating_sub(before.busy) as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
}

/// A `/proc/meminfo` figure in kB (0 when missing).
fn meminfo_kb(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == key).then(|| v.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// The recorded `memory_usage`: MB (MiB, rounded down) and whole percents.
fn memory_usage(meminfo: &str) -> Value {
    let kb = |k| meminfo_kb(meminfo, k);
    let total = kb("MemTotal");
    let buffers = kb("Buffers");
    let cached = kb("Cached") + kb("SReclaimable");
    let used = total.saturating_sub(kb("MemFree") + buffers + cached);
    let percent = |part: u64| part.saturating_mul(100).checked_div(total).unwrap_or(0);
    json!({
        "total": total / 1024,
        "used": used / 1024,
        "buffers": buffers / 1024,
        "cached": cached / 1024,
        "percent": percent(used),
        "percent_buffers": percent(buffers),
        "percent_cached": percent(cached),
    })
}

/// Physical cores, logical CPUs and the model name listed in `/proc/cpuinfo`.
fn cpu_info(cpuinfo: &str) -> (usize, usize, String) {
    let mut cores = HashSet::new();
    let mut threads = 0;
    let mut model = String::new();
    let (mut package, mut core) = (String::new(), String::new());
    for line in cpuinfo.lines().chain(std::iter::once("")) {
        let Some((k, v)) = line.split_once(':') else {
            // A blank line ends one CPU's block.
            if !core.is_empty() {
                cores.insert((std::mem::take(&mut package), std::mem::take(&mut core)));
            }
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => threads += 1,
            "model name" | "Model" | "Hardware" if model.is_empty() => model = v.to_string(),
            "physical id" => package = v.to_string(),
            "core id" => core = v.to_string(),
            _ => {}
        }
    }
    (cores.len(), threads, model)
}

/// `uname -m`.
fn machine() -> String {
    // SAFETY: uname fills the zeroed struct it is given; its fields are
    // NUL-terminated C strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return String::new();
        }
        std::ffi::CStr::from_ptr(u.machine.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_and_share() {
        let a = cpu_ticks("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(
            a,
            Ticks {
                total: 1000,
                busy: 200
            }
        );
        let b = Ticks {
            total: 2000,
            busy: 700,
        };
        assert!((busy_percent(a, b) - 50.0).abs() < 1e-9);
        assert_eq!(busy_percent(b, b), 0.0);
        assert_eq!(cpu_ticks("nothing"), None);
    }

    #[test]
    fn memory_as_recorded() {
        let m = "MemTotal:        7998068 kB\nMemFree:         1846272 kB\nBuffers:          599040 kB\n\
                 Cached:          3416064 kB\nSReclaimable:          0 kB\n";
        let v = memory_usage(m);
        assert_eq!(v["total"], 7810);
        assert_eq!(v["buffers"], 585);
        assert_eq!(v["cached"], 3336);
        assert_eq!(v["used"], 2086);
        assert_eq!(v["percent"], 26);
        assert_eq!(v["percent_buffers"], 7);
        assert_eq!(v["percent_cached"], 42);
        assert_eq!(memory_usage("")["percent"], 0);
    }

    #[test]
    fn counts_cores_and_threads() {
        let c = "processor\t: 0\nmodel name\t: Intel(R) X\nphysical id\t: 0\ncore id\t: 0\n\n\
                 processor\t: 1\nmodel name\t: Intel(R) X\nphysical id\t: 0\ncore id\t: 0\n\n\
                 processor\t: 2\nmodel name\t: Intel(R) X\nphysical id\t: 0\ncore id\t: 1\n";
        assert_eq!(cpu_info(c), (2, 3, "Intel(R) X".to_string()));
        assert_eq!(cpu_info(""), (0, 0, String::new()));
    }
}
