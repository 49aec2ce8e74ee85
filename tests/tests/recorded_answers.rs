//! The answers real Container Station clients read, against the answers a
//! real Container Station recorded (`qnap-dev/container-station-api`,
//! gh-pages: `container.html`, `system.html`, `background.html`): every key
//! of a recorded answer is there with the recorded JSON type, and no key the
//! recording does not have. The real `stevedore serve`, the test engine
//! (`DOCKER_HOST`) and, for the LXC entry and its logs, Debian's `lxc` tools
//! with the test image repository (`cargo xtask test` serves both).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    docker, env, eventually_async, hash_password, unique, Client, Containers, Options, Server,
    ADMIN_PASSWORD,
};

use stevedore_e2e::shape::{assert_shape, Kind, Kind::*};

/// A running Docker container's entry (`GET container`, `DockerTestAPI2`).
const DOCKER_RUNNING: &[(&str, Kind)] = &[
    ("cpu", Float),
    ("externalIP", Str),
    ("id", Str),
    ("image", Str),
    ("imageID", Str),
    ("ipaddress", StrArray),
    ("memory", Int),
    ("name", Str),
    ("networkMode", Str),
    ("project", Str),
    ("projectPath", Str),
    ("rx", Int),
    ("state", Str),
    ("tcpPort", IntArray),
    ("tx", Int),
    ("type", Str),
];

/// A stopped Docker container's entry (`GET container`, `DockerTestAPI`).
const DOCKER_STOPPED: &[(&str, Kind)] = &[
    ("externalIP", Str),
    ("id", Str),
    ("image", Str),
    ("imageID", Str),
    ("name", Str),
    ("networkMode", Str),
    ("project", Str),
    ("projectPath", Str),
    ("state", Str),
    ("tcpPort", IntArray),
    ("type", Str),
];

/// A running LXC container's entry (`GET container/lxc/utest`).
const LXC_RUNNING: &[(&str, Kind)] = &[
    ("cpu", Float),
    ("id", Str),
    ("image", Str),
    ("ipaddress", StrArray),
    ("memory", Int),
    ("name", Str),
    ("rx", Int),
    ("state", Str),
    ("tcpPort", IntArray),
    ("tx", Int),
    ("type", Str),
];

/// A stopped LXC container's entry (`PUT container/lxc/utest/stop`).
const LXC_STOPPED: &[(&str, Kind)] = &[
    ("id", Str),
    ("image", Str),
    ("name", Str),
    ("state", Str),
    ("tcpPort", IntArray),
    ("type", Str),
];

/// `GET container/docker/DockerTestAPI/logs`.
const LOGS: &[(&str, Kind)] = &[("logs", Str), ("tail", Int)];

/// `POST login` and `GET login_refresh`.
const LOGIN: &[(&str, Kind)] = &[
    ("anonymous", Bool),
    ("isAdmin", Bool),
    ("logintime", Str),
    ("username", Str),
];

/// `GET system/resource`'s `memory_usage`.
const MEMORY_USAGE: &[(&str, Kind)] = &[
    ("buffers", Int),
    ("cached", Int),
    ("percent", Int),
    ("percent_buffers", Int),
    ("percent_cached", Int),
    ("total", Int),
    ("used", Int),
];

/// Keys of `GET system` the recording has and that we answer with our own
/// values (the QNAP-only ones, e.g. `migrationDir`, are left out), with
/// their types.
const SYSTEM: &[(&str, Kind)] = &[
    ("cpuCore", Int),
    ("cpuThread", Int),
    ("features", StrArray),
    ("gpu", Object),
    ("hostname", Str),
    ("machine", Str),
    ("memory", Int),
    ("memoryPageSize", Int),
    ("needRestart", Bool),
    ("platform", Str),
    ("processor", Str),
    ("status", Str),
    ("version", Object),
];

fn users_config() -> String {
    format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    )
}

async fn docker_server() -> (Server, Client) {
    let server = Server::start(Options::default().test_engine().config(&users_config())).await;
    let client = server.admin().await;
    (server, client)
}

async fn get(c: &Client, path: &str) -> Value {
    let a = c.send(Method::GET, path, None).await;
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.body
}

#[tokio::test]
async fn docker_entries_and_logs_are_as_recorded() {
    let (_server, c) = docker_server().await;
    docker(&["pull", "-q", "busybox:latest"]);
    // Names that sort apart from the order they are made in.
    let (z, a) = (unique("zz-recorded"), unique("aa-recorded"));
    let _cleanup = Containers(vec![z.clone(), a.clone()]);
    // Apart in time, so the engine's order of the two streams is certain.
    let script = "echo out-one; sleep 0.3; echo err-two >&2; sleep 0.3; echo out-three; \
                  while true; do head -c 65536 /dev/zero > /tmp/x; sleep 0.05; done";
    let running = docker(&[
        "run",
        "-d",
        "--name",
        &z,
        "busybox:latest",
        "sh",
        "-c",
        script,
    ]);
    docker(&["create", "--name", &a, "busybox:latest", "true"]);

    // GET container: sorted by name, each entry as recorded.
    let list = get(&c, "container").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "the list is sorted by name");
    let entry = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed: {list}"))
    };
    let (e, s) = (entry(&z), entry(&a));
    assert_shape("running docker entry", &e, DOCKER_RUNNING);
    assert_shape("stopped docker entry", &s, DOCKER_STOPPED);
    assert_eq!(e["id"], running.as_str());
    assert_eq!(e["state"], "running");
    assert_eq!(s["state"], "stopped");
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &z,
    ]);
    assert_eq!(e["ipaddress"], json!([ip]), "{e}");
    assert!(e["memory"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(
        (e["networkMode"].as_str(), e["externalIP"].as_str()),
        (Some(""), Some(""))
    );

    // One entry, by name; the rates come from two samples: a container that
    // keeps writing shows CPU use at the second look.
    let busy = eventually_async(
        "CPU use of a busy container",
        Duration::from_secs(20),
        || {
            let c = &c;
            let z = &z;
            async move {
                let e = get(c, &format!("container/docker/{z}")).await;
                assert_shape("docker entry", &e, DOCKER_RUNNING);
                (e["cpu"].as_f64().unwrap() > 0.0).then_some(e)
            }
        },
    )
    .await;
    assert!(busy["cpu"].as_f64().unwrap() <= 100.0 * 64.0, "{busy}");

    // Logs: both streams from the engine, the last `tail` lines.
    let logs = eventually_async("the container's output", Duration::from_secs(20), || {
        let c = &c;
        let z = &z;
        async move {
            let l = get(c, &format!("container/docker/{z}/logs")).await;
            l["logs"]
                .as_str()
                .unwrap()
                .contains("out-three")
                .then_some(l)
        }
    })
    .await;
    assert_shape("logs", &logs, LOGS);
    assert_eq!(logs["tail"], 100, "the recorded default");
    assert_eq!(
        logs["logs"].as_str().unwrap().lines().collect::<Vec<_>>(),
        ["out-one", "err-two", "out-three"],
        "stdout and stderr, in order"
    );
    let two = get(
        &c,
        &format!("container/docker/{}/logs?tail=2", &running[..12]),
    )
    .await;
    assert_eq!(two, json!({"logs": "err-two\nout-three\n", "tail": 2}));
    for bad in ["-1", "x", "10001", "1e3"] {
        let r = c
            .send(
                Method::GET,
                &format!("container/docker/{z}/logs?tail={bad}"),
                None,
            )
            .await;
        r.assert_error(400, Some("invalid_params"));
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(m.starts_with("tail: "), "{m}");
    }
    c.send(Method::GET, "container/docker/no-such-one/logs", None)
        .await
        .assert_error(404, Some("unknown_container"));

    // start/stop/restart answer the entry, as recorded.
    let stopped = c
        .send(Method::PUT, &format!("container/docker/{z}/stop"), None)
        .await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.body);
    assert_shape("entry after stop", &stopped.body, DOCKER_STOPPED);
    let started = c
        .send(Method::PUT, &format!("container/docker/{z}/start"), None)
        .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_shape("entry after start", &started.body, DOCKER_RUNNING);
    let restarted = c
        .send(Method::PUT, &format!("container/docker/{z}/restart"), None)
        .await;
    assert_eq!(restarted.status, 200, "{:?}", restarted.body);
    assert_shape("entry after restart", &restarted.body, DOCKER_RUNNING);

    // A non-admin reads the logs of their own containers only.
    let bob = _server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    bob.send(Method::GET, &format!("container/docker/{z}/logs"), None)
        .await
        .assert_error(403, Some("denied"));
    let bobs = get(&bob, "container").await;
    assert!(
        bobs.as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != z.as_str()),
        "{bobs}"
    );
}

#[tokio::test]
async fn login_logout_and_system_are_as_recorded() {
    // A zone five hours east of UTC, without the zone database (POSIX form).
    let server = Server::start(Options::default().test_engine().env("TZ", "XST-5")).await;
    let c = server.client();
    let local = |secs: i64| {
        let out = Command::new("date")
            .env("TZ", "XST-5")
            .arg("-d")
            .arg(format!("@{secs}"))
            .arg("+%Y-%m-%d %H:%M:%S")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let before = now();
    let login = c.login("admin", ADMIN_PASSWORD).await;
    let after = now();
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert_shape("login", &login.body, LOGIN);
    let cookie = login.set_cookie.clone().unwrap();
    assert!(cookie.starts_with("CS_SESS_ID="), "{cookie}");
    let time = login.body["logintime"].as_str().unwrap().to_string();
    assert!(
        (before..=after).any(|s| local(s) == time),
        "logintime {time} is the server's local time (UTC+5) of the login"
    );
    let refresh = get(&c, "login_refresh").await;
    assert_shape("login_refresh", &refresh, LOGIN);
    assert_eq!(refresh["logintime"], time.as_str());

    // GET system: the recorded keys that apply here, with this host's values.
    let system = get(&c, "system").await;
    assert_shape("system", &system, SYSTEM);
    assert!(system["cpuCore"].as_u64().unwrap() >= 1);
    assert!(system["cpuThread"].as_u64().unwrap() >= system["cpuCore"].as_u64().unwrap());
    assert!(system["memory"].as_u64().unwrap() > 0);
    let engine = docker(&["version", "-f", "{{.Server.Version}}"]);
    assert_eq!(
        system["version"]["dockerVersion"],
        engine.as_str(),
        "{system}"
    );
    assert_eq!(system["version"]["qpkg"], env!("CARGO_PKG_VERSION"));
    assert!(system["version"]["lxc"].is_string(), "{system}");
    assert!(
        system["features"]
            .as_array()
            .unwrap()
            .contains(&json!("docker")),
        "{system}"
    );
    let uname = Command::new("uname").arg("-m").output().unwrap();
    assert_eq!(
        system["machine"],
        String::from_utf8_lossy(&uname.stdout).trim()
    );

    // GET system/resource: a percent as a string, memory in MB.
    for _ in 0..2 {
        let r = get(&c, "system/resource").await;
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["cpu_usage", "memory_usage"]), "{r}");
        let cpu: f64 = r["cpu_usage"].as_str().unwrap().parse().unwrap();
        assert!((0.0..=100.0).contains(&cpu), "{r}");
        assert_shape("memory_usage", &r["memory_usage"], MEMORY_USAGE);
        let m = &r["memory_usage"];
        let total = m["total"].as_u64().unwrap();
        assert!(total > 0 && m["used"].as_u64().unwrap() <= total, "{r}");
    }

    // Logout answers the user, as recorded, and ends the session.
    let out = c.send(Method::PUT, "logout", None).await;
    assert_eq!(out.status, 200);
    assert_eq!(out.body, json!({"username": "admin"}));
    c.send(Method::GET, "system", None)
        .await
        .assert_error(401, Some("not_logged_in"));
}

/// An LXC server with its own LXC path; its containers are destroyed when
/// it goes (as in `lxc.rs`).
struct Lxc {
    client: Client,
    server: Server,
    path: tempfile::TempDir,
}

impl Drop for Lxc {
    fn drop(&mut self) {
        stevedore_e2e::lxc_destroy_all(self.path.path());
    }
}

impl Lxc {
    async fn start() -> Lxc {
        let path = tempfile::Builder::new()
            .prefix("stevedore-lxc-")
            .tempdir()
            .unwrap();
        let server = Server::start(
            Options::with_plugins(&["create"])
                .env("STEVEDORE_CATALOG", &env("STEVEDORE_TEST_CATALOG"))
                .env("STEVEDORE_LXC_PATH", &path.path().display().to_string())
                .env("STEVEDORE_LXC_BRIDGE", &env("STEVEDORE_TEST_LXC_BRIDGE"))
                .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET"))
                .config(&users_config()),
        )
        .await;
        let client = server.admin().await;
        Lxc {
            client,
            server,
            path,
        }
    }

    fn path(&self) -> PathBuf {
        self.path.path().to_path_buf()
    }
}

fn lxc_attach(path: &Path, name: &str, script: &str) {
    stevedore_e2e::lxc(path, "attach", name, &["--", "/bin/sh", "-c", script]);
}

#[tokio::test]
async fn lxc_entry_and_console_logs_are_as_recorded() {
    let lxc = Lxc::start().await;
    let c = &lxc.client;
    let id = c
        .submit_ok(
            "create",
            &json!({"type": "lxc", "repository": "qnap", "name": "utest",
                    "image": "busybox", "autostart": true})
            .to_string(),
        )
        .await;
    let t = c
        .wait_until(id, Duration::from_secs(90), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("create did not finish: {last:?}"));
    assert_eq!(t["state"], "completed", "{t}\n{}", lxc.server.logs());
    let config = std::fs::read_to_string(lxc.path().join("utest/config")).unwrap();
    assert!(
        config.contains(&format!(
            "lxc.console.logfile = {}\n",
            lxc.path().join("utest/console.log").display()
        )),
        "{config}"
    );

    // The running entry, as recorded: no Docker keys, an address list.
    let e = get(c, "container/lxc/utest").await;
    assert_shape("running lxc entry", &e, LXC_RUNNING);
    let ip = e["ipaddress"][0].as_str().expect("an address").to_string();
    assert_eq!(e["ipaddress"].as_array().unwrap().len(), 1, "{e}");
    // The address is the one the container comes up with.
    let path = lxc.path();
    eventually_async("the container's address", Duration::from_secs(30), || {
        let ips = stevedore_e2e::lxc(&path, "info", "utest", &["-i", "-H"]);
        let found = ips.lines().any(|l| l.trim() == ip);
        async move { found.then_some(()) }
    })
    .await;
    assert!(e["memory"].as_u64().unwrap() > 0, "{e}");
    let listed = get(c, "container").await;
    let l = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "lxc" && e["name"] == "utest")
        .cloned()
        .expect("listed");
    assert_shape("listed lxc entry", &l, LXC_RUNNING);

    // What the container writes to its console is in its logs.
    lxc_attach(
        &lxc.path(),
        "utest",
        "echo console-one > /dev/console; echo console-two > /dev/console",
    );
    let logs = eventually_async("the console log", Duration::from_secs(20), || async {
        let l = get(c, "container/lxc/utest/logs?tail=1").await;
        (l["logs"].as_str().unwrap().trim_end() == "console-two").then_some(l)
    })
    .await;
    assert_shape("lxc logs", &logs, LOGS);
    assert_eq!(logs["tail"], 1);
    let all = get(c, "container/lxc/utest/logs").await;
    assert!(
        all["logs"].as_str().unwrap().contains("console-one"),
        "{all}"
    );
    assert_eq!(all["tail"], 100);

    // Not bob's container: neither its logs nor its entry.
    let bob = lxc.server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    bob.send(Method::GET, "container/lxc/utest/logs", None)
        .await
        .assert_error(403, Some("denied"));

    // Stopped: the recorded stopped entry.
    let stopped = c.send(Method::PUT, "container/lxc/utest/stop", None).await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.body);
    assert_shape("stopped lxc entry", &stopped.body, LXC_STOPPED);
    let started = c.send(Method::PUT, "container/lxc/utest/start", None).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_shape("started lxc entry", &started.body, LXC_RUNNING);
}

/// The task objects of `background.html`: `deletable` and the params the
/// real server adds.
#[tokio::test]
async fn tasks_are_as_recorded() {
    let server = Server::start(
        Options::with_plugins(&["create", "image_download", "image_remove"]).test_engine(),
    )
    .await;
    let c = server.admin().await;
    // `POST background/create` (dtest): waiting, not deletable, the body as sent.
    let body = json!({"type": "docker", "repository": "dockerhub", "name": unique("dtest"),
                      "image": "busybox", "tag": "latest",
                      "download": {"description": "I am description.",
                                   "location": "https://hub.docker.com/_/ubuntu/",
                                   "icon": "http://download.qnap.com/QPKG/images/QPKG/container/ubuntu_icon.png"}});
    let a = c.submit("create", &body.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["category"], "create");
    assert_eq!(a.body["deletable"], false);
    assert_eq!(a.body["state"], "waiting");
    assert_eq!(a.body["params"], body);
    let created = a.body["id"].as_i64().unwrap();
    // `image_pull` keeps its name; `image_download` is the same filter.
    let p = c
        .submit(
            "image_pull",
            r#"{"type": "docker", "repository": "dockerhub", "image": "busybox", "tag": "latest"}"#,
        )
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["category"], "image_pull");
    assert_eq!(p.body["name"], "busybox:latest");
    let pulled = p.body["id"].as_i64().unwrap();
    let t = c.wait_state(pulled, "completed").await;
    assert_eq!(t["category"], "image_pull");
    for filter in ["image_pull", "image_download"] {
        let ids: Vec<i64> = c
            .list(Some(filter))
            .await
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [pulled], "{filter}");
    }
    // `image_remove` takes an array and shows it as sent.
    let r = c
        .submit(
            "image_remove",
            r#"[{"type": "docker", "image": "no-such-image", "tag": "latest", "id": "fake_id"}]"#,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["deletable"], false);
    assert!(r.body["params"].is_array(), "{:?}", r.body);
    let removed = r.body["id"].as_i64().unwrap();
    c.wait_until(removed, Duration::from_secs(60), |t| {
        t["state"] == "error" || t["state"] == "completed"
    })
    .await
    .unwrap();
    c.wait_until(created, Duration::from_secs(120), |t| {
        t["state"] == "error" || t["state"] == "completed"
    })
    .await
    .unwrap();
    let name = body["name"].as_str().unwrap().to_string();
    let _cleanup = Containers(vec![name]);
    let d = c.delete("image_download").await;
    assert_eq!(
        d.body,
        json!([pulled]),
        "DELETE by either name deletes both"
    );
}
