//! Attacks on bind sources and user paths (issue 26, "Binds are pinned"),
//! end to end: the real server, the real engine, a non-admin (`bob`) with
//! the default policy. bob controls what is inside his share folder (from a
//! container binding it, or over the share); the tests do what his
//! container could, on the host file system, and check that no start,
//! restart or engine-initiated start shows a host folder outside his share
//! folder, and that no output lands in another user's folder.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    copy_dir, docker, docker_ok, hash_password, report, unique, Client, Options, Server,
};

const PLUGINS: &[&str] = &["create", "image_export", "container_export"];

/// The marker file of the host folder bob must never reach.
const MARKER: &str = "host-marker";

struct Setup {
    server: Server,
    bob: Client,
    /// A host folder outside the share root, holding [`MARKER`].
    host: tempfile::TempDir,
    /// Containers to remove at the end.
    made: Vec<String>,
}

impl Setup {
    async fn new() -> Setup {
        let config = format!(
            "[users.bob]\npassword_hash = \"{}\"\n",
            hash_password("bob-pw")
        );
        let server =
            Server::start(Options::with_plugins(PLUGINS).test_engine().config(&config)).await;
        let bob = server.client();
        assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
        docker(&["pull", "-q", "busybox:latest"]);
        let host = tempfile::Builder::new()
            .prefix("stevedore-host-")
            .tempdir()
            .unwrap();
        std::fs::write(host.path().join(MARKER), b"host secret").unwrap();
        std::fs::create_dir(host.path().join("t")).unwrap();
        std::fs::write(host.path().join("t").join(MARKER), b"host secret").unwrap();
        Setup {
            server,
            bob,
            host,
            made: Vec::new(),
        }
    }

    fn share(&self) -> PathBuf {
        self.server.data_dir().join("share")
    }

    fn bob_folder(&self) -> PathBuf {
        self.share().join("bob")
    }

    /// bob's `create` of a running busybox binding his `host` at `/data`;
    /// returns the task as it ended.
    async fn create(&mut self, name: &str, host: &str) -> Value {
        let body = json!({
            "type": "docker", "repository": "dockerhub", "name": name,
            "image": "busybox", "tag": "latest", "command": ["sleep", "600"],
            "volume": {"host": {host: {"bind": "/data", "ro": false}}},
        });
        self.made.push(name.to_string());
        let id = self.bob.submit_ok("create", &body.to_string()).await;
        ended(&self.bob, id).await
    }

    async fn route(&self, container: &str, action: &str) -> u16 {
        self.bob
            .send(
                Method::PUT,
                &format!("container/docker/{container}/{action}"),
                None,
            )
            .await
            .status
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for c in &self.made {
            let _ = docker_ok(&["rm", "-f", c]);
        }
        unpin(&self.server.data_dir());
    }
}

/// Detach the staging mounts a server left under its data folder: its
/// containers are removed with the `docker` CLI here, not through the
/// server, so their pins would outlive the test.
fn unpin(data_dir: &Path) {
    let binds = data_dir.join("binds");
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in text.lines().filter_map(|l| l.split(' ').nth(4)) {
        if Path::new(point).starts_with(&binds) {
            let c = std::ffi::CString::new(point).unwrap();
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Wait for a task's end; returns it.
async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

fn running(container: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", container]) == "true"
}

/// Whether the running `container` sees the host marker at `/data`.
fn sees_marker(container: &str) -> bool {
    running(container) && docker_ok(&["exec", container, "test", "-e", &format!("/data/{MARKER}")])
}

/// Swap `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let (a, b) = (
        std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap(),
        std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The scenario: `a` binds bob's `/p`, `b` binds `/p/t`; with `b`
/// stopped, `p/t` is replaced (from inside `a`) by a link to a host folder;
/// bob's `PUT .../b/start` must not show the host folder in `b`. Nor may
/// the engine's own start of `b` (what a restart policy or an engine restart
/// does, without the server).
#[tokio::test]
async fn bind_source_swapped_for_link_after_create() {
    let mut s = Setup::new().await;
    let (a, b) = (unique("pin-a"), unique("pin-b"));
    let t = s.create(&a, "/p").await;
    assert_eq!(t["state"], "completed", "{t}");
    let body = json!({
        "type": "docker", "repository": "dockerhub", "name": b,
        "image": "busybox", "tag": "latest", "command": ["sleep", "600"],
        "volume": {"host": {"/p/t": {"bind": "/data", "ro": false}}},
    });
    s.made.push(b.clone());
    let id = s.bob.submit_ok("create", &body.to_string()).await;
    assert_eq!(ended(&s.bob, id).await["state"], "completed");
    std::fs::write(s.bob_folder().join("p/t/bobs"), b"bob").unwrap();
    assert!(!sees_marker(&b));
    assert_eq!(s.route(&b, "stop").await, 200);

    // From inside `a` (which binds share/bob/p at /data).
    let host = s.host.path().display().to_string();
    docker(&[
        "exec",
        &a,
        "sh",
        "-c",
        &format!("mv /data/t /data/t.old && ln -s {host} /data/t"),
    ]);
    assert!(s.bob_folder().join("p/t").is_symlink());

    let status = s.route(&b, "start").await;
    let seen_after_route = sees_marker(&b);
    // The engine's own start (restart policy, engine restart), no server.
    if running(&b) {
        docker(&["stop", "-t", "0", &b]);
    }
    docker(&["start", &b]);
    let seen_after_engine = sees_marker(&b);
    let bobs_file = docker_ok(&["exec", &b, "test", "-e", "/data/bobs"]);
    report!(
        "attacks_binds: bind swapped for a link after create: route start answered {status}, \
         marker seen after the route start: {seen_after_route}, after the engine's start: \
         {seen_after_engine}; bob's own file still at /data: {bobs_file}"
    );
    assert!(
        !seen_after_route,
        "the route start (status {status}) showed the host folder in {b}"
    );
    assert!(
        status == 403 || status == 400,
        "a start through a link is refused, got {status}"
    );
    assert!(
        !seen_after_engine,
        "the engine's own start showed the host folder in {b}"
    );
    assert!(bobs_file, "the pinned folder is the one bob bound");
}

/// The parent of a bind source swapped between a folder and a link to a
/// host folder in a tight loop while bob starts and restarts the container:
/// no start ever shows the host folder.
#[tokio::test]
async fn bind_parent_swapped_races_start() {
    let mut s = Setup::new().await;
    let b = unique("pin-race");
    let t = s.create(&b, "/p/t").await;
    assert_eq!(t["state"], "completed", "{t}");
    let bob = s.bob_folder();
    // `p-link` → the host folder (which has `t/host-marker`); swapped with `p`.
    symlink(s.host.path(), bob.join("p-link")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let (p, link) = (bob.join("p"), bob.join("p-link"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                exchange(&p, &link).unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
            // Leave `p` a folder.
            if p.is_symlink() {
                exchange(&p, &link).unwrap();
            }
        })
    };
    let (mut trials, mut started, mut refused, mut seen) = (0, 0, 0, 0);
    let until = Instant::now() + Duration::from_secs(60);
    while trials < 40 && Instant::now() < until {
        trials += 1;
        let action = if trials % 2 == 0 { "restart" } else { "start" };
        if action == "start" && running(&b) {
            s.route(&b, "stop").await;
        }
        match s.route(&b, action).await {
            200 => started += 1,
            _ => refused += 1,
        }
        if sees_marker(&b) {
            seen += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    report!(
        "attacks_binds: parent swapped while starting: {trials} starts/restarts, {started} \
         started, {refused} refused, {seen} showed the host folder; {} swaps",
        swaps.load(Ordering::Relaxed)
    );
    assert_eq!(seen, 0, "{seen} of {trials} starts showed the host folder");
    assert!(started > 0, "some starts went through");
}

/// The user paths of saves and exports are resolved beneath the user's
/// folder by the backend too: bob's `out` swapped (in a tight loop) with a
/// link to alice's folder between the policy's check and the write never
/// puts a file into alice's folder.
#[tokio::test]
async fn export_path_swapped_to_another_users_folder() {
    let s = Setup::new().await;
    let (bob, alice) = (s.bob_folder(), s.share().join("alice"));
    std::fs::create_dir_all(bob.join("out")).unwrap();
    std::fs::create_dir_all(&alice).unwrap();
    // Relative, as a link made inside a container binding bob's folder would be.
    symlink("../alice", bob.join("out-link")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (out, link) = (bob.join("out"), bob.join("out-link"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                exchange(&out, &link).unwrap();
            }
        })
    };
    let (mut trials, mut completed, mut failed) = (0, 0, 0);
    let mut landed = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while trials < 400 && Instant::now() < until && landed.is_empty() {
        trials += 1;
        let body = json!({"type": "docker", "image": "busybox", "tag": "latest",
                          "path": format!("out/x-{trials}.tar")});
        let r = s.bob.submit("image_export", &body.to_string()).await;
        if r.status != 200 {
            failed += 1;
            continue;
        }
        let t = ended(&s.bob, r.body["id"].as_i64().unwrap()).await;
        if t["state"] == "completed" {
            completed += 1;
        } else {
            failed += 1;
        }
        landed = std::fs::read_dir(&alice)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    report!(
        "attacks_binds: export path swapped to alice's folder: {trials} exports, {completed} \
         completed, {failed} refused or failed, {} files landed in alice's folder",
        landed.len()
    );
    assert!(landed.is_empty(), "landed in alice's folder: {landed:?}");
    assert!(completed > 0, "some exports went through");
}

/// A server with the application plugins, bob, and a fresh copy of the
/// fixture catalog; bob's `weblinks` application installed.
async fn app_setup() -> (Server, Client, tempfile::TempDir, String) {
    let catalog = tempfile::tempdir().unwrap();
    copy_dir(
        &stevedore_e2e::workspace_root().join("tests/fixtures/catalog"),
        catalog.path(),
    );
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["application", "application_upgrade"])
            .test_engine()
            .config(&config)
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string()),
    )
    .await;
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let name = unique("pinapp").replace('-', "x");
    let port = stevedore_e2e::free_port();
    let body = json!({"template": "weblinks", "name": name, "port": port,
                      "virtual_path": format!("/{name}"), "binding": {"http_port": port}});
    let id = bob.submit_ok("application", &body.to_string()).await;
    let t = ended(&bob, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    (server, bob, catalog, name)
}

/// Remove bob's application (containers and folder) at the end.
async fn remove_app(bob: &Client, name: &str) {
    let _ = bob
        .send(Method::DELETE, &format!("apps/{name}"), None)
        .await;
    for service in ["web", "db"] {
        let _ = docker_ok(&["rm", "-f", &format!("{name}_{service}_1")]);
    }
    let _ = docker_ok(&["network", "rm", &format!("{name}_default")]);
}

/// An application's relative bind (`./www`) swapped for a link to a host
/// folder after install: bob's `PUT apps/{name}/restart` must not show the
/// host folder in the service's container.
#[tokio::test]
async fn app_bind_swapped_for_link_after_install() {
    let (server, bob, _catalog, name) = app_setup().await;
    let host = tempfile::Builder::new()
        .prefix("stevedore-host-")
        .tempdir()
        .unwrap();
    std::fs::write(host.path().join(MARKER), b"host secret").unwrap();
    let folder = server.data_dir().join("apps").join(&name);
    let web = format!("{name}_web_1");
    let seen =
        |c: &str| running(c) && docker_ok(&["exec", c, "test", "-e", &format!("/www/{MARKER}")]);
    assert!(!seen(&web));
    std::fs::rename(folder.join("www"), folder.join("www.old")).unwrap();
    symlink(host.path(), folder.join("www")).unwrap();
    let r = bob
        .send(Method::PUT, &format!("apps/{name}/restart"), None)
        .await;
    let after_route = seen(&web);
    if running(&web) {
        docker(&["stop", "-t", "0", &web]);
    }
    docker(&["start", &web]);
    let after_engine = seen(&web);
    report!(
        "attacks_binds: app bind swapped for a link: restart answered {}, marker seen after \
         the route: {after_route}, after the engine's start: {after_engine}",
        r.status
    );
    remove_app(&bob, &name).await;
    unpin(&server.data_dir());
    assert!(!after_route, "the app restart showed the host folder");
    assert!(!after_engine, "the engine's start showed the host folder");
}

/// Links planted in an application's folder (which its containers may
/// mount): a file the host rewrites on upgrade made a link to a host file,
/// and a folder it writes into made a link to a host folder. The upgrade
/// must neither overwrite the host file nor create a file in the host folder.
#[tokio::test]
async fn app_folder_links_do_not_redirect_host_writes() {
    let (server, bob, _catalog, name) = app_setup().await;
    let host = tempfile::Builder::new()
        .prefix("stevedore-host-")
        .tempdir()
        .unwrap();
    let victim = host.path().join("victim.txt");
    std::fs::write(&victim, b"untouched").unwrap();
    let into = host.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let folder = server.data_dir().join("apps").join(&name);
    std::fs::remove_file(folder.join("www/index.html")).unwrap();
    symlink(&victim, folder.join("www/index.html")).unwrap();
    std::fs::rename(folder.join("db"), folder.join("db.old")).unwrap();
    symlink(&into, folder.join("db")).unwrap();
    let body = json!({"template": "weblinks", "name": name});
    let id = bob
        .submit_ok("application_upgrade", &body.to_string())
        .await;
    let t = ended(&bob, id).await;
    let victim_now = std::fs::read_to_string(&victim).unwrap();
    let planted: Vec<_> = std::fs::read_dir(&into)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    report!(
        "attacks_binds: app folder links: upgrade ended {}, host file now {victim_now:?}, \
         files created in the host folder: {}",
        t["state"],
        planted.len()
    );
    remove_app(&bob, &name).await;
    unpin(&server.data_dir());
    assert_eq!(victim_now, "untouched", "the host file was overwritten");
    assert!(
        planted.is_empty(),
        "written into the host folder: {planted:?}"
    );
}

/// `lxc-<verb> -P <path> -n <name> args...`; whether it succeeded.
fn lxc_ok(path: &Path, verb: &str, name: &str, args: &[&str]) -> bool {
    std::process::Command::new(format!("lxc-{verb}"))
        .arg("-P")
        .arg(path)
        .args(["-n", name])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The LXC variant of the scenario: bob's LXC container binds his
/// `/p/t`; with it stopped, `p/t` is replaced by a link to a host folder;
/// neither bob's `PUT container/lxc/{name}/start` nor `lxc-start` run by
/// hand (as `lxc-autostart` at boot would) shows the host folder in it.
#[tokio::test]
async fn lxc_bind_source_swapped_for_link_after_create() {
    let env = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n}: run `cargo xtask test`"));
    let path = tempfile::Builder::new()
        .prefix("stevedore-lxc-")
        .tempdir()
        .unwrap();
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["create"])
            .config(&config)
            .env("STEVEDORE_CATALOG", &env("STEVEDORE_TEST_CATALOG"))
            .env("STEVEDORE_LXC_PATH", &path.path().display().to_string())
            .env("STEVEDORE_LXC_BRIDGE", &env("STEVEDORE_TEST_LXC_BRIDGE"))
            .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET")),
    )
    .await;
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let host = tempfile::Builder::new()
        .prefix("stevedore-host-")
        .tempdir()
        .unwrap();
    std::fs::write(host.path().join(MARKER), b"host secret").unwrap();
    let name = unique("pinlxc");
    let body = json!({"type": "lxc", "repository": "qnap", "name": name, "image": "busybox",
                      "volume": {"host": {"/p/t": {"bind": "/data", "ro": false}}}});
    let id = bob.submit_ok("create", &body.to_string()).await;
    let t = ended(&bob, id).await;
    let lxc_path = path.path().to_path_buf();
    let cleanup = |name: &str| {
        lxc_ok(&lxc_path, "stop", name, &["-k"]);
        lxc_ok(&lxc_path, "destroy", name, &[]);
    };
    assert_eq!(t["state"], "completed", "{t}");
    let bob_folder = server.data_dir().join("share/bob");
    std::fs::write(bob_folder.join("p/t/bobs"), b"bob").unwrap();
    let route = |action: &str| {
        let (bob, name, action) = (bob.clone(), name.clone(), action.to_string());
        async move {
            bob.send(Method::PUT, &format!("container/lxc/{name}/{action}"), None)
                .await
                .status
        }
    };
    let seen = |name: &str| {
        lxc_ok(
            &lxc_path,
            "attach",
            name,
            &["--", "test", "-e", &format!("/data/{MARKER}")],
        )
    };
    assert_eq!(route("stop").await, 200);
    std::fs::rename(bob_folder.join("p/t"), bob_folder.join("p/t.old")).unwrap();
    symlink(host.path(), bob_folder.join("p/t")).unwrap();
    let status = route("start").await;
    let after_route = seen(&name);
    lxc_ok(&lxc_path, "stop", &name, &["-k"]);
    let started = lxc_ok(&lxc_path, "start", &name, &["-d"]);
    let after_engine = seen(&name);
    let bobs = lxc_ok(
        &lxc_path,
        "attach",
        &name,
        &["--", "test", "-e", "/data/bobs"],
    );
    report!(
        "attacks_binds: LXC bind swapped for a link: route start answered {status}, marker \
         seen after it: {after_route}; lxc-start by hand started: {started}, marker seen: \
         {after_engine}, bob's file seen: {bobs}"
    );
    cleanup(&name);
    unpin(&server.data_dir());
    assert!(!after_route, "the route start showed the host folder");
    assert!(!after_engine, "lxc-start showed the host folder");
    assert!(
        status == 403 || status == 400,
        "a start through a link is refused, got {status}"
    );
}
