//! A private Docker engine for tests that break it: its own socket, data
//! root, exec root, pidfile and (empty) configuration file, no bridge and
//! no iptables rules, so killing it never disturbs the shared test engine
//! that other tests (and other engineers' runs) use. It pulls from and
//! pushes to the shared open registry (`$STEVEDORE_TEST_REGISTRY`), an
//! insecure registry here, which is also its mirror.
//!
//! [`PrivateEngine::kill`] is SIGKILL; [`PrivateEngine::start_again`] starts
//! a new dockerd on the same folders (images and containers kept). Dropping
//! it kills dockerd and the containerd it started, unmounts what they left
//! mounted and removes the folders, also when a test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A dockerd of one test.
pub struct PrivateEngine {
    child: Option<Child>,
    dir: tempfile::TempDir,
    starts: u32,
}

impl PrivateEngine {
    /// Start one and wait until it answers (60 s deadline).
    pub fn start() -> PrivateEngine {
        // Short paths: the socket's must fit a sockaddr_un.
        let dir = tempfile::Builder::new()
            .prefix("stv-eng")
            .tempdir_in("/run")
            .expect("a folder for the private engine");
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        let mut engine = PrivateEngine {
            child: None,
            dir,
            starts: 0,
        };
        engine.spawn();
        engine
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `unix:///run/stv-engXXXX/d.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path("d.sock").display())
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.path("dockerd.log"))
            .unwrap();
        let mut cmd = Command::new("dockerd");
        cmd.arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            .arg("--config-file")
            .arg(self.path("daemon.json"))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"]);
        if let Ok(registry) = std::env::var("STEVEDORE_TEST_REGISTRY") {
            cmd.arg("--insecure-registry")
                .arg(&registry)
                .arg("--registry-mirror")
                .arg(format!("http://{registry}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker_ok(&["version"]) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("private dockerd exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "private dockerd did not answer within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What dockerd printed, all starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
    }

    /// SIGKILL dockerd and reap it, then SIGKILL the containerd it started
    /// (which would outlive it, and keep the next dockerd's own containerd
    /// from starting): the whole engine is gone at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in self.containerd_pids() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        // Its pidfile would make the next dockerd wait for it (a killed
        // orphan may stay a zombie, which still looks alive).
        let _ = std::fs::remove_file(self.path("exec/containerd/containerd.pid"));
    }

    /// The containerd processes (and their shims) of this engine: those whose
    /// command line names its folder.
    fn containerd_pids(&self) -> Vec<u32> {
        let ours = self.dir.path().to_string_lossy().into_owned();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains("containerd") && c.contains(&ours)
                })
            })
            .collect()
    }

    /// Stop dockerd without killing it (SIGSTOP): its socket stays open and
    /// takes connections, but nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Let a [`freeze`](Self::freeze)d dockerd go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("dockerd runs").id();
        let ok = Command::new("kill")
            .arg(which)
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {which} {pid}");
    }

    /// Start dockerd again on the same folders, after [`kill`](Self::kill).
    pub fn start_again(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The `docker` CLI against this engine; its trimmed stdout, panics on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether a `docker` CLI command against this engine succeeds.
    pub fn docker_ok(&self, args: &[&str]) -> bool {
        Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        self.kill();
        // Unmount what they left (deepest first), so the folder can go.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r umount -l",
                self.dir.path().display()
            ))
            .status();
    }
}
