//! Test services on loopback: a Docker engine on a private socket, an open
//! registry (also the engine's mirror, seeded with a busybox image), a
//! registry with htpasswd auth, the LXC image catalog ([`crate::catalog`]),
//! stand-ins for the application templates' images ([`STAND_INS`])
//! and PostgreSQL ([`crate::postgres`]).
//!
//! Data and logs live in `target/services/` of the tree that started them;
//! sockets, pidfiles, the lock and the leases in `/run/stevedore-test/`, since
//! the ports and the socket are the machine's. Several xtask runs (from any
//! clone) may share the services: each holds a lease
//! (`/run/stevedore-test/leases/<pid>`), and the last one to finish stops them.

use crate::install;
use crate::util::{
    self, alive, check_interrupted, cmdline, docker_answers, http_get, interrupted, output,
    pids_matching, repo_root, tail, terminate, unmount_below, Endpoint,
};
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const RUN_DIR: &str = "/run/stevedore-test";
pub const REGISTRY: &str = "127.0.0.1:5000";
pub const AUTH_REGISTRY: &str = "127.0.0.1:5001";
pub const AUTH_USER: &str = "stevedore";
/// Five `~` in a row put `+` (and five `?` put `/`) into the standard
/// base64 of any text that contains the password verbatim, whatever the
/// alignment, so the X-Registry-Auth header needs the URL-safe alphabet.
pub const AUTH_PASSWORD: &str = "stevedore-~~~~~-?????";
/// A bridge of its own, so the test engine never shares `docker0` with
/// another engine on the machine.
const BRIDGE: &str = "stvtest0";
const BRIDGE_CIDR: &str = "172.30.213.1/24";

fn state_dir() -> PathBuf {
    repo_root().join("target/services")
}

/// The environment the tests get.
pub fn test_env() -> Vec<(String, String)> {
    [
        ("DOCKER_HOST", format!("unix://{RUN_DIR}/docker.sock")),
        ("STEVEDORE_TEST_REGISTRY", REGISTRY.to_string()),
        ("STEVEDORE_TEST_AUTH_REGISTRY", AUTH_REGISTRY.to_string()),
        ("STEVEDORE_TEST_AUTH_USER", AUTH_USER.to_string()),
        ("STEVEDORE_TEST_AUTH_PASSWORD", AUTH_PASSWORD.to_string()),
        ("STEVEDORE_TEST_SERVICES", "1".to_string()),
        ("STEVEDORE_TEST_DATABASE_URL", crate::postgres::url()),
        ("STEVEDORE_TEST_CATALOG", crate::catalog::url()),
        (
            "STEVEDORE_TEST_LXC_BRIDGE",
            crate::catalog::LXC_BRIDGE.to_string(),
        ),
        (
            "STEVEDORE_TEST_LXC_SUBNET",
            crate::catalog::LXC_SUBNET.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

// ---- a Docker engine -------------------------------------------------------

/// One dockerd with private socket, data and exec roots.
pub struct Engine {
    pub socket: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
    /// Own bridge (created here), or None for the default docker0.
    pub bridge: Option<(&'static str, &'static str)>,
    pub extra_args: Vec<String>,
    /// Start from an empty data root, and kill the containers on stop
    /// instead of waiting out their stop timeout (10 s for a `sleep`).
    pub throwaway: bool,
}

impl Engine {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket.clone())
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The pid of the dockerd serving our socket, if any: from the pidfile,
    /// else (pidfile lost) the process whose command line names the socket.
    fn pid(&self) -> Option<u32> {
        let host = format!("--host {}", self.docker_host());
        let ours = |pid: u32| {
            alive(pid)
                && cmdline(pid).is_some_and(|c| {
                    c.split(' ').next().is_some_and(|a| a.ends_with("dockerd")) && c.contains(&host)
                })
        };
        let from_file = fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        from_file
            .filter(|pid| ours(*pid))
            .or_else(|| pids_matching(&host).into_iter().find(|pid| ours(*pid)))
    }

    pub fn running(&self) -> bool {
        self.pid().is_some() && docker_answers(&self.endpoint())
    }

    /// Start the engine unless it already runs; returns whether it started it.
    pub fn start(&self) -> Result<bool> {
        if self.running() {
            return Ok(false);
        }
        install::ensure(install::DOCKER)?;
        // Leftovers of an engine that did not stop cleanly.
        self.stop()?;
        if self.throwaway && self.data_root.exists() {
            fs::remove_dir_all(&self.data_root)
                .with_context(|| format!("cannot clear {}", self.data_root.display()))?;
        }
        for d in [&self.data_root, &self.exec_root] {
            fs::create_dir_all(d)?;
        }
        if let Some(parent) = self.socket.parent() {
            fs::create_dir_all(parent)?;
        }
        if !self.config.exists() {
            // Our own (empty) daemon.json, so /etc/docker/daemon.json cannot
            // conflict with the flags below.
            fs::write(&self.config, "{}\n")?;
        }
        if let Some((bridge, cidr)) = self.bridge {
            ensure_bridge(bridge, cidr)?;
        }
        let started = Instant::now();
        match self.spawn(&[]) {
            Ok(()) => {}
            Err(e) if tail(&self.log, 40).contains("iptables") => {
                eprintln!(
                    "warning: dockerd failed with iptables ({e:#}); retrying with --iptables=false"
                );
                self.stop()?;
                self.spawn(&["--iptables=false", "--ip-masq=false"])?;
            }
            Err(e) => return Err(e),
        }
        eprintln!(
            "==> dockerd ready at {} in {:.2?}",
            self.docker_host(),
            started.elapsed()
        );
        Ok(true)
    }

    fn spawn(&self, more: &[&str]) -> Result<()> {
        let log = File::create(&self.log)?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--host")
            .arg(self.docker_host())
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .arg("--pidfile")
            .arg(&self.pidfile)
            .arg("--config-file")
            .arg(&self.config)
            .args(&self.extra_args)
            .args(more);
        if let Some((bridge, _)) = self.bridge {
            cmd.args(["--bridge", bridge]);
        }
        let mut child = spawn_daemon(&mut cmd, log)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if docker_answers(&self.endpoint()) {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "dockerd exited ({}) before answering; the end of {}:\n{}",
                    util::status_text(status),
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            if interrupted() || Instant::now() > deadline {
                let _ = terminate(child.id(), Duration::from_secs(10));
                check_interrupted()?;
                bail!(
                    "dockerd did not answer within 60 s; the end of {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the engine (if it runs) and clean up after it.
    pub fn stop(&self) -> Result<()> {
        let exec = self.exec_root.to_string_lossy().into_owned();
        let mut data_roots = vec![self.data_root.clone()];
        if let Some(pid) = self.pid() {
            // It may have been started from another clone, with its data there.
            let args = cmdline(pid).unwrap_or_default();
            let mut args = args.split(' ');
            if args.any(|a| a == "--data-root") {
                data_roots.extend(args.next().map(PathBuf::from));
            }
            let started = Instant::now();
            if self.throwaway {
                self.kill_containers();
            }
            // dockerd stops its containers and containerd.
            if !terminate(pid, Duration::from_secs(40)) {
                bail!("dockerd (pid {pid}) does not exit");
            }
            eprintln!("==> dockerd stopped in {:.2?}", started.elapsed());
        }
        // After a kill: containerd and shims that still use our exec root.
        for pid in pids_matching(&exec) {
            if cmdline(pid).is_some_and(|c| c.contains("containerd")) {
                terminate(pid, Duration::from_secs(5));
            }
        }
        let mut roots: Vec<&Path> = data_roots.iter().map(PathBuf::as_path).collect();
        roots.push(&self.exec_root);
        unmount_below(&roots);
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_file(&self.pidfile);
        if let Some((bridge, _)) = self.bridge {
            if bridge_exists(bridge) {
                let _ = output(Command::new("ip").args(["link", "del", bridge]));
            }
        }
        Ok(())
    }

    fn kill_containers(&self) {
        let Ok(ids) = output(self.docker().args(["ps", "-q"])) else {
            return;
        };
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = output(self.docker().arg("kill").args(&ids));
        }
    }

    /// The `docker` CLI against this engine, with a private client config.
    fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.arg("--config")
            .arg(state_dir().join("docker-cli"))
            .arg("-H")
            .arg(self.docker_host());
        cmd
    }
}

fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn ensure_bridge(name: &str, cidr: &str) -> Result<()> {
    if bridge_exists(name) {
        return Ok(());
    }
    output(Command::new("ip").args(["link", "add", "name", name, "type", "bridge"]))?;
    output(Command::new("ip").args(["addr", "add", cidr, "dev", name]))?;
    output(Command::new("ip").args(["link", "set", name, "up"]))?;
    Ok(())
}

/// Spawn a long-running service: own process group (a Ctrl-C in the terminal
/// reaches the xtask, which stops it in order), output to `log`.
pub fn spawn_daemon(cmd: &mut Command, log: File) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let what = util::describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))
}

/// The test engine.
pub fn test_engine() -> Engine {
    let state = state_dir().join("docker");
    let mut extra = Vec::new();
    for r in [REGISTRY, AUTH_REGISTRY] {
        extra.push("--insecure-registry".to_string());
        extra.push(r.to_string());
    }
    extra.extend(["--shutdown-timeout".to_string(), "2".to_string()]);
    extra.push("--registry-mirror".to_string());
    extra.push(format!("http://{REGISTRY}"));
    Engine {
        socket: PathBuf::from(RUN_DIR).join("docker.sock"),
        data_root: state.join("data"),
        exec_root: PathBuf::from(RUN_DIR).join("exec"),
        pidfile: PathBuf::from(RUN_DIR).join("dockerd.pid"),
        log: state.join("dockerd.log"),
        config: state.join("daemon.json"),
        bridge: Some((BRIDGE, BRIDGE_CIDR)),
        extra_args: extra,
        throwaway: true,
    }
}

// ---- registries ------------------------------------------------------------

struct Registry {
    name: &'static str,
    addr: &'static str,
    auth: bool,
}

const REGISTRIES: [Registry; 2] = [
    Registry {
        name: "registry",
        addr: REGISTRY,
        auth: false,
    },
    Registry {
        name: "auth-registry",
        addr: AUTH_REGISTRY,
        auth: true,
    },
];

impl Registry {
    fn dir(&self) -> PathBuf {
        state_dir().join(self.name)
    }

    fn config(&self) -> PathBuf {
        self.dir().join("config.yml")
    }

    fn pidfile(&self) -> PathBuf {
        PathBuf::from(RUN_DIR).join(format!("{}.pid", self.name))
    }

    fn log(&self) -> PathBuf {
        self.dir().join("registry.log")
    }

    /// The pid of the running registry: from the pidfile, else the process
    /// serving a config of this name (from any clone).
    fn pid(&self) -> Option<u32> {
        let config = format!("/{}/config.yml", self.name);
        let ours = |pid: u32| {
            alive(pid)
                && cmdline(pid)
                    .is_some_and(|c| c.contains("docker-registry serve") && c.ends_with(&config))
        };
        let from_file = fs::read_to_string(self.pidfile())
            .ok()
            .and_then(|s| s.trim().parse().ok());
        from_file
            .filter(|pid| ours(*pid))
            .or_else(|| pids_matching(&config).into_iter().find(|pid| ours(*pid)))
    }

    fn answers(&self) -> bool {
        let want = if self.auth { 401 } else { 200 };
        matches!(http_get(&Endpoint::Tcp(self.addr.into()), "/v2/", &[]), Ok((s, _)) if s == want)
    }

    fn start(&self) -> Result<()> {
        if self.pid().is_some() && self.answers() {
            return Ok(());
        }
        self.stop();
        let addr = self.addr.parse().expect("a socket address");
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            bail!(
                "{} is taken by another process; the {} needs it",
                self.addr,
                self.name
            );
        }
        let dir = self.dir();
        // Start empty, as the engine and PostgreSQL do: what tests and
        // benchmarks pushed (gigabytes of benchmark images) goes, and the
        // images the tests need are seeded again below.
        if dir.join("data").exists() {
            fs::remove_dir_all(dir.join("data"))?;
        }
        fs::create_dir_all(dir.join("data"))?;
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {}\n  secret: stevedore-test-{}\n",
            dir.join("data").display(),
            self.addr,
            self.name
        );
        if self.auth {
            let line = output(Command::new("htpasswd").args(["-Bbn", AUTH_USER, AUTH_PASSWORD]))?;
            let htpasswd = dir.join("htpasswd");
            fs::write(&htpasswd, line.trim().to_string() + "\n")?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stevedore-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        fs::write(self.config(), config)?;
        let log = File::create(self.log())?;
        let mut child = spawn_daemon(
            Command::new("docker-registry")
                .arg("serve")
                .arg(self.config()),
            log,
        )?;
        fs::write(self.pidfile(), child.id().to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.answers() {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the {} on {} exited ({}); the end of {}:\n{}",
                    self.name,
                    self.addr,
                    util::status_text(status),
                    self.log().display(),
                    tail(&self.log(), 10)
                );
            }
            if interrupted() || Instant::now() > deadline {
                self.stop();
                check_interrupted()?;
                bail!(
                    "the {} on {} did not answer within 30 s (is the port taken?)",
                    self.name,
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&self) {
        if let Some(pid) = self.pid() {
            terminate(pid, Duration::from_secs(10));
        }
        let _ = fs::remove_file(self.pidfile());
    }
}

/// The images the open registry serves, all the same busybox rootfs:
/// `busybox` for the tests, `ubuntu` for the seed page's Docker `create`
/// example (it creates `dtest` from `ubuntu:latest`).
const SEEDED_IMAGES: [&str; 2] = ["busybox", "ubuntu"];

/// Whether the open registry holds `library/<name>:latest`.
fn image_seeded(name: &str) -> bool {
    matches!(
        http_get(
            &Endpoint::Tcp(REGISTRY.into()),
            &format!("/v2/library/{name}/manifests/latest"),
            &["Accept: application/vnd.docker.distribution.manifest.v2+json"],
        ),
        Ok((200, _))
    )
}

/// Whether every image of [`SEEDED_IMAGES`] is served.
fn busybox_seeded() -> bool {
    SEEDED_IMAGES.iter().all(|name| image_seeded(name))
}

/// A busybox image from `busybox-static`, pushed as
/// `127.0.0.1:5000/library/<name>:latest` for each of [`SEEDED_IMAGES`], so
/// that `busybox:latest` pulls through the engine's mirror.
fn seed_busybox(engine: &Engine) -> Result<()> {
    if busybox_seeded() {
        return Ok(());
    }
    let started = Instant::now();
    let rootfs = state_dir().join("busybox-rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)?;
    }
    for d in ["bin", "etc", "root", "tmp", "var/www", "proc", "sys", "dev"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copying /bin/busybox")?;
    let applets = output(Command::new("/bin/busybox").arg("--list"))?;
    for applet in applets.lines().map(str::trim) {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;

    let image = format!("{REGISTRY}/library/busybox:latest");
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let imported = engine
        .docker()
        .args(["import", "--change", "CMD [\"sh\"]", "-", &image])
        .stdin(tar.stdout.take().expect("piped"))
        .output()?;
    let tar_status = tar.wait()?;
    if !imported.status.success() || !tar_status.success() {
        bail!(
            "docker import of the busybox rootfs failed: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
    }
    for name in SEEDED_IMAGES {
        let named = format!("{REGISTRY}/library/{name}:latest");
        if named != image {
            output(engine.docker().args(["tag", &image, &named]))?;
        }
        output(engine.docker().args(["push", &named]))?;
        if named != image {
            output(engine.docker().args(["rmi", &named]))?;
        }
    }
    output(engine.docker().args(["rmi", &image]))?;
    if !busybox_seeded() {
        bail!("pushed {SEEDED_IMAGES:?}, but the registry does not serve them all");
    }
    eprintln!("==> seeded {SEEDED_IMAGES:?} in {:.2?}", started.elapsed());
    Ok(())
}

/// Stand-ins for the images of the application templates shaped as QNAP's
/// (`tests/fixtures/catalog/template/{gitlab,joomla,wordpress}`), as the
/// engine names them on Docker Hub: with no internet, `docker pull` of any
/// of them is served by the mirror. Each is the seeded busybox layer (no
/// layer of its own) whose entrypoint serves its own name over HTTP on port
/// 80 until stopped, whatever command the template gives.
pub const STAND_INS: [&str; 7] = [
    "sameersbn/gitlab:11.4.0",
    "sameersbn/redis:latest",
    "sameersbn/postgresql:9.6-2",
    "joomla:3.8",
    "mysql:5.7",
    "wordpress:4.9.8",
    "mariadb:10.2",
];

/// The entrypoint of a stand-in: serve `$STAND_IN` at `/` with busybox
/// httpd; the template's command arrives as arguments and is ignored.
const STAND_IN_SCRIPT: &str = "trap 'exit 0' TERM; mkdir -p /tmp/www; \
echo \"$STAND_IN\" > /tmp/www/index.html; httpd -f -p 80 -h /tmp/www & wait";

/// `repository:tag` of a Docker Hub reference as the registry stores it
/// (official images under `library/`).
fn hub_path(reference: &str) -> (String, String) {
    let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    let repo = if repo.contains('/') {
        repo.to_string()
    } else {
        format!("library/{repo}")
    };
    (repo, tag.to_string())
}

fn stand_ins_seeded() -> bool {
    STAND_INS.iter().all(|reference| {
        let (repo, tag) = hub_path(reference);
        matches!(
            http_get(
                &Endpoint::Tcp(REGISTRY.into()),
                &format!("/v2/{repo}/manifests/{tag}"),
                &["Accept: application/vnd.docker.distribution.manifest.v2+json"],
            ),
            Ok((200, _))
        )
    })
}

/// Push each of [`STAND_INS`]: a commit of an unchanged busybox container
/// with the stand-in's entrypoint and `STAND_IN` set, so every blob but a
/// small config is the busybox layer already in the registry.
fn seed_stand_ins(engine: &Engine) -> Result<()> {
    if stand_ins_seeded() {
        return Ok(());
    }
    let started = Instant::now();
    let base = format!("{REGISTRY}/library/busybox:latest");
    output(engine.docker().args(["pull", &base]))?;
    let entrypoint = serde_json::to_string(&["/bin/sh", "-c", STAND_IN_SCRIPT, "stand-in"])?;
    for (i, reference) in STAND_INS.iter().enumerate() {
        let (repo, tag) = hub_path(reference);
        let named = format!("{REGISTRY}/{repo}:{tag}");
        let container = format!("stevedore-seed-{}-{i}", std::process::id());
        output(
            engine
                .docker()
                .args(["create", "--name", &container, &base]),
        )?;
        let committed = output(engine.docker().args([
            "commit",
            "--change",
            &format!("ENTRYPOINT {entrypoint}"),
            "--change",
            &format!("ENV STAND_IN={reference}"),
            "--change",
            "EXPOSE 80",
            &container,
            &named,
        ]));
        let _ = output(engine.docker().args(["rm", "-f", &container]));
        committed?;
        output(engine.docker().args(["push", &named]))?;
        output(engine.docker().args(["rmi", &named]))?;
    }
    let _ = output(engine.docker().args(["rmi", &base]));
    if !stand_ins_seeded() {
        bail!("pushed {STAND_INS:?}, but the registry does not serve them all");
    }
    eprintln!(
        "==> seeded {} application stand-ins in {:.2?}",
        STAND_INS.len(),
        started.elapsed()
    );
    Ok(())
}

// ---- leases and the whole set ----------------------------------------------

fn lock() -> Result<File> {
    fs::create_dir_all(RUN_DIR)?;
    let f = File::create(PathBuf::from(RUN_DIR).join("lock"))?;
    f.lock().context("locking /run/stevedore-test/lock")?;
    Ok(f)
}

fn leases_dir() -> PathBuf {
    PathBuf::from(RUN_DIR).join("leases")
}

/// Live leases other than `except`; drops the ones of dead processes.
fn other_leases(except: Option<&str>) -> Vec<String> {
    let mut live = Vec::new();
    for entry in fs::read_dir(leases_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if Some(name.as_str()) == except {
            continue;
        }
        let dead = name.parse::<u32>().is_ok_and(|pid| !alive(pid));
        if dead {
            let _ = fs::remove_file(entry.path());
        } else {
            live.push(name);
        }
    }
    live
}

fn start_all() -> Result<()> {
    if !util::is_root() {
        bail!("the test services (dockerd) need root");
    }
    install::ensure(install::DOCKER)?;
    install::ensure(install::SERVICES)?;
    install::ensure(install::LXC)?;
    fs::create_dir_all(RUN_DIR)?;
    let engine = test_engine();
    let started = Instant::now();
    for r in &REGISTRIES {
        r.start()?;
    }
    crate::catalog::start(&state_dir())?;
    crate::postgres::start()?;
    engine.start()?;
    seed_busybox(&engine)?;
    seed_stand_ins(&engine)?;
    eprintln!("==> test services up in {:.2?}", started.elapsed());
    Ok(())
}

fn stop_all() -> Result<()> {
    let engine_result = test_engine().stop();
    for r in &REGISTRIES {
        r.stop();
    }
    crate::catalog::stop();
    crate::postgres::stop();
    engine_result
}

/// Test services held for as long as this value lives.
pub struct Lease {
    name: String,
}

impl Lease {
    /// Start the services (or join running ones) under a lease named after
    /// this process.
    pub fn acquire() -> Result<Lease> {
        Self::acquire_named(std::process::id().to_string())
    }

    fn acquire_named(name: String) -> Result<Lease> {
        let lock = lock()?;
        fs::create_dir_all(leases_dir())?;
        fs::write(leases_dir().join(&name), "")?;
        let lease = Lease { name };
        let started = start_all();
        drop(lock);
        // On error `lease` is dropped (after the lock is released), which
        // stops what was started unless someone else uses it.
        started.map(|()| lease)
    }

    /// Release without stopping (for `services start`).
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Ok(_lock) = lock() else { return };
        let _ = fs::remove_file(leases_dir().join(&self.name));
        let others = other_leases(None);
        if others.is_empty() {
            if let Err(e) = stop_all() {
                eprintln!("warning: stopping the test services: {e:#}");
            }
        } else {
            eprintln!(
                "==> leaving the test services running for: {}",
                others.join(", ")
            );
        }
    }
}

/// `cargo xtask services start|stop|status|env`.
pub fn command(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("start") => {
            Lease::acquire_named("manual".to_string())?.keep();
            print_env();
            eprintln!("(stop them with `cargo xtask services stop`)");
            Ok(())
        }
        Some("stop") => {
            let _lock = lock()?;
            let others = other_leases(Some("manual"));
            if !others.is_empty() {
                eprintln!(
                    "warning: stopping services still leased by: {}",
                    others.join(", ")
                );
            }
            let _ = fs::remove_dir_all(leases_dir());
            stop_all()?;
            eprintln!("==> test services stopped");
            Ok(())
        }
        Some("status") => {
            status();
            Ok(())
        }
        Some("env") => {
            print_env();
            Ok(())
        }
        _ => bail!("usage: cargo xtask services start|stop|status|env"),
    }
}

fn print_env() {
    for (k, v) in test_env() {
        println!("export {k}='{v}'");
    }
}

fn status() {
    let engine = test_engine();
    let up = |b: bool| if b { "running" } else { "stopped" };
    println!(
        "dockerd        {:8} {} (log {})",
        up(engine.running()),
        engine.docker_host(),
        engine.log.display()
    );
    for r in &REGISTRIES {
        println!(
            "{:14} {:8} http://{} (log {})",
            r.name,
            up(r.pid().is_some() && r.answers()),
            r.addr,
            r.log().display()
        );
    }
    let seed = if !REGISTRIES[0].answers() {
        "unknown (registry stopped)"
    } else if busybox_seeded() {
        "present"
    } else {
        "absent"
    };
    println!("busybox seed   {seed}");
    println!("{}", crate::postgres::status_line());
    println!(
        "catalog        {:8} {}",
        up(crate::catalog::running()),
        crate::catalog::url()
    );
    let leases = other_leases(None);
    println!(
        "leases         {}",
        if leases.is_empty() {
            "none".to_string()
        } else {
            leases.join(", ")
        }
    );
}
