//! Small helpers: running commands, signals, processes, a tiny HTTP probe.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM and SIGHUP so that the xtask can stop what it
/// started before exiting. Child commands run in their own process group and
/// get the signal forwarded by [`run`].
pub fn install_signal_handlers() {
    // SAFETY: restoring the default action; `| head` then ends us quietly.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is signal-safe.
        unsafe {
            libc::signal(signal, handler);
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// The repository root (the parent of the xtask crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository root")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Run a long command (cargo, tests) in its own process group, forwarding an
/// interrupt to that group, and return its exit status.
pub fn run(cmd: &mut Command) -> Result<ExitStatus> {
    let what = describe(cmd);
    eprintln!("+ {what}");
    let mut child = cmd
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    wait_forwarding(&mut child)
}

/// Like [`run`], but a non-zero exit is an error.
pub fn run_ok(cmd: &mut Command) -> Result<()> {
    let status = run(cmd)?;
    check_interrupted()?;
    if !status.success() {
        bail!("`{}` failed ({})", describe(cmd), status_text(status));
    }
    Ok(())
}

pub fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

fn wait_forwarding(child: &mut Child) -> Result<ExitStatus> {
    let pgid = child.id() as libc::pid_t;
    let mut interrupted_at: Option<Instant> = None;
    let mut sent = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if interrupted() {
            let since = *interrupted_at.get_or_insert_with(Instant::now);
            // SIGINT at once, SIGTERM after 10 s, SIGKILL after 20 s.
            let wanted = match since.elapsed().as_secs() {
                0..=9 => 1,
                10..=19 => 2,
                _ => 3,
            };
            if wanted > sent {
                let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGKILL][wanted - 1];
                // SAFETY: signalling a process group we created.
                unsafe {
                    libc::kill(-pgid, sig);
                }
                sent = wanted;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run a short helper command, capturing its output; a non-zero exit is an
/// error that shows stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}{}",
            status_text(out.status),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is found in PATH (or is an existing path).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

// ---- processes -------------------------------------------------------------

/// Whether `pid` is a live (not zombie) process. Reaps it if it is our
/// zombie child.
pub fn alive(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: WNOHANG waitpid on a specific pid; fails harmlessly if the
    // process is not our child.
    unsafe {
        libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG);
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    Some(
        raw.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait a little more.
/// Returns whether the process is gone.
pub fn terminate(pid: u32, grace: Duration) -> bool {
    if !alive(pid) {
        return true;
    }
    signal(pid, libc::SIGTERM);
    if wait_gone(pid, grace) {
        return true;
    }
    eprintln!("process {pid} did not stop within {grace:?}; killing it");
    signal(pid, libc::SIGKILL);
    wait_gone(pid, Duration::from_secs(5))
}

pub fn wait_gone(pid: u32, deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

/// Every process whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| cmdline(*pid).is_some_and(|c| c.contains(needle)))
        .collect()
}

/// Unmount everything mounted at or below any of `roots`, deepest first.
pub fn unmount_below(roots: &[&Path]) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| roots.iter().any(|r| p.starts_with(r)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points.dedup();
    for point in points {
        let c = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(c.as_ptr(), 0) };
        if rc != 0 {
            // Busy: detach it lazily rather than leave it behind.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            if rc != 0 {
                eprintln!(
                    "warning: cannot unmount {}: {}",
                    point.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

// ---- HTTP probes -----------------------------------------------------------

/// Where an HTTP endpoint listens.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// Parse a `DOCKER_HOST`-style address.
    pub fn from_docker_host(host: &str) -> Option<Endpoint> {
        if let Some(path) = host.strip_prefix("unix://") {
            Some(Endpoint::Unix(PathBuf::from(path)))
        } else {
            host.strip_prefix("tcp://")
                .or_else(|| host.strip_prefix("http://"))
                .map(|a| Endpoint::Tcp(a.trim_end_matches('/').to_string()))
        }
    }
}

/// `GET path` with a short timeout; returns the status code and body.
pub fn http_get(endpoint: &Endpoint, path: &str, headers: &[&str]) -> Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut response = Vec::new();
    match endpoint {
        Endpoint::Unix(p) => {
            let mut s = UnixStream::connect(p)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut response)?;
        }
        Endpoint::Tcp(a) => {
            let addr = a
                .parse()
                .with_context(|| format!("bad address {a} (want ip:port)"))?;
            let mut s = TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut response)?;
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("not an HTTP answer")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Whether a Docker engine answers `/_ping` at `endpoint`.
pub fn docker_answers(endpoint: &Endpoint) -> bool {
    matches!(http_get(endpoint, "/_ping", &[]), Ok((200, body)) if body.trim() == "OK")
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
