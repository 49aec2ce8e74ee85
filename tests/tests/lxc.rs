//! The LXC runtime end to end (issue 8): the real `stevedore serve`, the real
//! plugins, Debian's `lxc` tools, and the test image repository that `cargo
//! xtask test` serves on loopback (`STEVEDORE_TEST_CATALOG`: a busybox rootfs
//! listed as `ubuntu-trusty`, the name the seed page uses). Every server gets
//! its own LXC path; all share the test bridge (`STEVEDORE_TEST_LXC_BRIDGE`).
//! Checks look at the containers with the `lxc-*` tools and `/sys/fs/cgroup`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{eventually, free_port, http_get, Client, Options, Server, ADMIN_PASSWORD};

const SEED: &str = include_str!("../seed/background-tasks.rst");
const CATEGORIES: &[&str] = &[
    "create",
    "image_download",
    "image_remove",
    "container_export",
    "container_import",
];

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// A server with an LXC path of its own; its containers are killed and
/// destroyed when it goes (also when a test fails).
struct Lxc {
    client: Client,
    server: Server,
    path: tempfile::TempDir,
}

impl Lxc {
    async fn start() -> Lxc {
        let path = tempfile::Builder::new()
            .prefix("stevedore-lxc-")
            .tempdir()
            .unwrap();
        let server = Server::start(Options::with_plugins(CATEGORIES).test_lxc(path.path())).await;
        let client = server.admin().await;
        Lxc {
            client,
            server,
            path,
        }
    }

    fn path(&self) -> &Path {
        self.path.path()
    }

    fn share(&self) -> PathBuf {
        self.server.data_dir().join("share")
    }

    /// `lxc-<verb>` on this server's LXC path ([`stevedore_e2e::lxc`]).
    fn lxc(&self, verb: &str, name: &str, args: &[&str]) -> String {
        stevedore_e2e::lxc(self.path(), verb, name, args)
    }

    fn state(&self, name: &str) -> String {
        self.lxc("info", name, &["-s", "-H"])
    }

    /// Run a task to its end; panics unless it is `completed`.
    async fn complete(&self, category: &str, params: &Value) -> Value {
        let id = self.client.submit_ok(category, &params.to_string()).await;
        self.finish(id).await
    }

    async fn finish(&self, id: i64) -> Value {
        let t = self
            .client
            .wait_until(id, Duration::from_secs(90), |t| {
                t["state"] == "completed" || t["state"] == "error"
            })
            .await
            .unwrap_or_else(|last| panic!("task {id} did not finish: {last:?}"));
        assert_eq!(t["state"], "completed", "{t}\n{}", self.server.logs());
        t
    }
}

impl Drop for Lxc {
    fn drop(&mut self) {
        stevedore_e2e::lxc_destroy_all(self.path.path());
    }
}

/// The `$ curl` commands of the seed's `sourcecode:: bash` blocks (continuations
/// followed), as `seed_curl.rs` reads them.
fn seed_commands() -> Vec<String> {
    let mut out = Vec::new();
    let mut in_bash = false;
    let mut lines = SEED.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with(".. ") {
            in_bash = t == ".. sourcecode:: bash";
            continue;
        }
        let Some(cmd) = t.strip_prefix("$ ").filter(|_| in_bash) else {
            continue;
        };
        let mut text = cmd.to_string();
        let quotes = |s: &str| s.matches('\'').count() % 2 == 1;
        let mut open = quotes(cmd);
        while open || text.ends_with('\\') {
            let Some(next) = lines.next() else { break };
            text.push('\n');
            text.push_str(next);
            open ^= quotes(next);
        }
        out.push(text);
    }
    out
}

fn curl(dir: &Path, server: &Server, cmd: &str) -> Value {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("QIP", "127.0.0.1")
        .env("QPORT", server.addr.port().to_string())
        .env("QPASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("bash and curl");
    assert!(out.status.success(), "`{cmd}`: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`{cmd}` did not answer JSON ({e}): {out:?}"))
}

/// The cgroup folder of `pid` for a v1 controller, or the unified one.
fn cgroup_file(pid: &str, controller: &str, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == controller) {
            return PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}/{file}"));
        }
    }
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    PathBuf::from(format!("/sys/fs/cgroup{path}/{file}"))
}

#[tokio::test]
async fn seed_lxc_bodies_create_export_and_import() {
    let lxc = Lxc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let commands = seed_commands();
    // The login command of the page's `exec` block.
    let login = {
        let start = SEED.find("curl -sq -XPOST -c cookies.txt").unwrap();
        let rest = &SEED[start..];
        rest[..rest.find('\'').unwrap()].to_string()
    };
    assert_eq!(curl(dir.path(), &lxc.server, &login)["username"], "admin");
    let lxc_bodies: Vec<&String> = commands
        .iter()
        .filter(|c| c.contains("\"type\": \"lxc\""))
        .collect();
    assert_eq!(lxc_bodies.len(), 3, "{lxc_bodies:#?}");
    let (create, import, export) = (lxc_bodies[0], lxc_bodies[1], lxc_bodies[2]);
    assert!(create.ends_with("background/create") && create.contains("\"ctest\""));
    assert!(export.contains("background/container_export"));
    assert!(import.contains("background/container_import"));

    // 1. create `ctest` from `ubuntu-trusty` (pulled from the catalog first).
    let task = curl(dir.path(), &lxc.server, create);
    let t = lxc.finish(task["id"].as_i64().unwrap()).await;
    eprintln!("create: {}", t["detail_state"]);
    assert_eq!(lxc.state("ctest"), "RUNNING");

    // The export body names `ubuntu-trusty-1`: make it, with a file in it.
    lxc.complete(
        "create",
        &json!({"type": "lxc", "repository": "qnap", "name": "ubuntu-trusty-1",
                "image": "ubuntu-trusty", "tag": "latest"}),
    )
    .await;
    lxc.lxc(
        "attach",
        "ubuntu-trusty-1",
        &[
            "--",
            "/bin/sh",
            "-c",
            "echo written-inside > /root/marker && ln /root/marker /root/hard && mkfifo /root/fifo",
        ],
    );

    // 2. export it, compressed, while it runs (frozen meanwhile, thawed after).
    let task = curl(dir.path(), &lxc.server, export);
    lxc.finish(task["id"].as_i64().unwrap()).await;
    let archive = lxc.share().join("test/c.tgz");
    assert!(archive.is_file());
    assert_eq!(lxc.state("ubuntu-trusty-1"), "RUNNING");
    let listing = Command::new("tar")
        .arg("-tvzf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let first = listing.lines().next().unwrap();
    assert!(first.ends_with(".stevedore/container.json"), "{first}");
    assert!(listing.lines().any(|l| l.ends_with(" config")), "{listing}");
    assert!(
        listing.lines().any(|l| l.contains(" link to rootfs/root/")
            && l.contains("rootfs/root/hard")
            && l.contains("rootfs/root/marker")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('p') && l.ends_with("rootfs/root/fifo")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with("rootfs/sbin/init -> ../bin/busybox")),
        "{listing}"
    );

    // 3. import it as `utest_import1` with the seed's host name, device and limits.
    let task = curl(dir.path(), &lxc.server, import);
    let t = lxc.finish(task["id"].as_i64().unwrap()).await;
    eprintln!("import: {}", t["detail_state"]);
    assert_eq!(lxc.state("utest_import1"), "RUNNING");
    let rootfs = lxc.path().join("utest_import1/rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("root/marker")).unwrap(),
        "written-inside\n"
    );
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (a, b) = (
        std::fs::metadata(rootfs.join("root/marker")).unwrap(),
        std::fs::metadata(rootfs.join("root/hard")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "the hard link survives");
    assert!(std::fs::symlink_metadata(rootfs.join("root/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let config = std::fs::read_to_string(lxc.path().join("utest_import1/config")).unwrap();
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let wants: &[&str] = if v1 {
        &[
            "lxc.cgroup.memory.limit_in_bytes = 805306368",
            "lxc.cgroup.cpu.shares = 512",
            "lxc.cgroup.cpu.cfs_quota_us = 51200",
            "lxc.cgroup.devices.allow = c 81:* rw",
        ]
    } else {
        &[
            "lxc.cgroup2.memory.max = 805306368",
            "lxc.cgroup2.cpu.max = 51200 100000",
            "lxc.cgroup2.devices.allow = c 81:* rw",
        ]
    };
    for want in wants.iter().chain(&["lxc.uts.name = CustomHostName"]) {
        assert!(
            config.lines().any(|l| l == *want),
            "no `{want}` in:\n{config}"
        );
    }
    // ... and in effect.
    let pid = lxc.lxc("info", "utest_import1", &["-p", "-H"]);
    if v1 {
        let read = |c: &str, f: &str| {
            std::fs::read_to_string(cgroup_file(&pid, c, f))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), "805306368");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "51200");
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert!(read("devices", "devices.list")
            .lines()
            .any(|l| l == "c 81:* rw"));
    } else {
        let read = |f: &str| std::fs::read_to_string(cgroup_file(&pid, "", f)).unwrap();
        assert_eq!(read("memory.max").trim(), "805306368");
        assert_eq!(read("cpu.max").trim(), "51200 100000");
    }
    assert_eq!(
        lxc.lxc("attach", "utest_import1", &["--", "/bin/hostname"]),
        "CustomHostName"
    );
}

#[tokio::test]
async fn a_published_port_reaches_httpd_in_the_container() {
    let lxc = Lxc::start().await;
    let port = free_port();
    lxc.complete(
        "create",
        &json!({"type": "lxc", "repository": "qnap", "name": "web", "image": "busybox",
                "network": {"port": [[port, 80, "tcp"]], "hostname": "web", "dns": ["10.0.0.2"]},
                "autostart": true}),
    )
    .await;
    assert_eq!(lxc.state("web"), "RUNNING");
    let body = eventually(
        "busybox httpd through the mapped port",
        Duration::from_secs(30),
        || http_get(port),
    )
    .await;
    assert!(body.contains("hello from stevedore lxc"), "{body}");
    // The address survives the image's DHCP client (which flushes it first).
    let ip = lxc.lxc("info", "web", &["-i", "-H"]);
    assert!(
        ip.starts_with(&env("STEVEDORE_TEST_LXC_SUBNET")[..8]),
        "{ip}"
    );
    let config = std::fs::read_to_string(lxc.path().join("web/config")).unwrap();
    assert!(config.contains("lxc.start.auto = 1\n"), "{config}");
    assert_eq!(
        lxc.lxc("attach", "web", &["--", "/bin/cat", "/etc/resolv.conf"]),
        "nameserver 10.0.0.2"
    );
    // A second container may not take the same host port.
    let id = lxc
        .client
        .submit_ok(
            "create",
            &json!({"type": "lxc", "repository": "qnap", "name": "web2", "image": "busybox",
                    "network": {"port": [[port, 80, "tcp"]]}})
            .to_string(),
        )
        .await;
    let t = lxc
        .client
        .wait_until(id, Duration::from_secs(60), |t| {
            t["state"] == "error" || t["state"] == "completed"
        })
        .await
        .unwrap();
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["detail_state"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{t}"
    );
    assert!(
        !lxc.path().join("web2").exists(),
        "a failed create leaves nothing"
    );
}

#[tokio::test]
async fn image_download_checks_skips_unchanged_and_cancels_cleanly() {
    let lxc = Lxc::start().await;
    let body =
        json!({"type": "lxc", "repository": "qnap", "image": "ubuntu-trusty", "tag": "latest"});
    lxc.complete("image_download", &body).await;
    let store = lxc
        .server
        .data_dir()
        .join("lxc/images/ubuntu-trusty%3Alatest");
    let file = store.join("rootfs.tar.gz");
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::metadata(&file).unwrap();
    // A second download of an unchanged image does no work.
    lxc.complete("image_download", &body).await;
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );

    // An xz image in LXC's layout works too, and image_remove removes it.
    lxc.complete(
        "image_download",
        &json!({"type": "lxc", "repository": "qnap", "image": "busybox"}),
    )
    .await;
    assert!(lxc
        .server
        .data_dir()
        .join("lxc/images/busybox%3Alatest/rootfs.tar.xz")
        .is_file());
    lxc.complete(
        "image_remove",
        &json!([{"type": "lxc", "image": "busybox", "tag": "latest"}]),
    )
    .await;
    assert!(!lxc
        .server
        .data_dir()
        .join("lxc/images/busybox%3Alatest")
        .exists());

    // An unknown image is a clear error.
    let id = lxc
        .client
        .submit_ok(
            "image_download",
            &json!({"type": "lxc", "repository": "qnap", "image": "nope"}).to_string(),
        )
        .await;
    let t = lxc.client.wait_state(id, "error").await;
    assert!(t["detail_state"].as_str().unwrap().contains("nope"), "{t}");

    // A cancelled download (the catalog sends this one slowly) leaves no file.
    let id = lxc
        .client
        .submit_ok(
            "image_download",
            &json!({"type": "lxc", "repository": "qnap", "image": "slow"}).to_string(),
        )
        .await;
    lxc.client
        .wait_until(id, Duration::from_secs(30), |t| {
            t["progress"].as_i64().unwrap_or(-1) >= 1
        })
        .await
        .unwrap_or_else(|t| panic!("no download progress: {t:?}"));
    let slow = lxc.server.data_dir().join("lxc/images/slow%3Alatest");
    assert!(
        std::fs::read_dir(&slow).unwrap().count() > 0,
        "a partial file while it runs"
    );
    let deleted = lxc.client.delete(&id.to_string()).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    eventually(
        "the partial download removed",
        Duration::from_secs(10),
        || (std::fs::read_dir(&slow).map(|d| d.count()).unwrap_or(0) == 0).then_some(()),
    )
    .await;
}
