//! The Docker categories end to end (issue 4, "Must show"): the real
//! `stevedore serve`, the real plugins, the engine and registries that
//! `cargo xtask test` starts. Fixtures and checks use the `docker` CLI
//! against the same engine.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use stevedore_e2e::engine::PrivateEngine;
use stevedore_e2e::{Client, Options, Server, SseReader};

const CATEGORIES: &[&str] = &[
    "image_download",
    "image_remove",
    "image_push",
    "image_export",
    "create",
    "container_export",
    "container_import",
];

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

fn config() -> String {
    format!(
        "[registries.local]\nurl = \"http://{}\"\n\n[registries.secure]\nurl = \"{}\"\n",
        env("STEVEDORE_TEST_REGISTRY"),
        env("STEVEDORE_TEST_AUTH_REGISTRY")
    )
}

async fn server() -> (Server, Client) {
    let server = Server::start(
        Options::with_plugins(CATEGORIES)
            .test_engine()
            .config(&config()),
    )
    .await;
    let client = server.admin().await;
    (server, client)
}

fn share(server: &Server) -> PathBuf {
    server.data_dir().join("share")
}

/// Run the docker CLI against the test engine; returns stdout, panics on failure.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "e2e-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Wait until task `id` has ended (`completed` or `error`); returns it.
async fn finished(c: &Client, id: i64, secs: u64) -> Value {
    c.wait_until(id, Duration::from_secs(secs), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end within {secs} s: {last:?}"))
}

fn ids(answer: &Value) -> Vec<i64> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn image_download_streams_progress_that_goes_up() {
    let repo = stevedore_e2e::push_noise_image("img", 48, &["1"]);
    let (_server, c) = server().await;
    let resp = c
        .http()
        .get(format!("{}/background/events", c.api))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    let body = format!(
        r#"{{"type":"docker","repository":"private","registry_name":"local","image":"{repo}","tag":"1"}}"#
    );
    let id = c.submit_ok("image_download", &body).await;
    let mut progress = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let last = loop {
        let (_, data) = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events in time")
            .expect("stream open");
        let t: Value = serde_json::from_str(&data).unwrap();
        if t["id"] != id {
            continue;
        }
        if t["state"] == "running" {
            progress.push(t["progress"].as_i64().unwrap());
        }
        if t["state"] == "completed" || t["state"] == "error" {
            break t;
        }
    };
    assert_eq!(last["state"], "completed", "{last}");
    let known: Vec<i64> = progress.iter().copied().filter(|p| *p >= 0).collect();
    assert!(
        known.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {progress:?}"
    );
    assert!(
        known.iter().any(|p| *p > 0 && *p < 100),
        "no progress seen going up: {progress:?}"
    );
    assert!(docker_ok(&[
        "image",
        "inspect",
        &format!("{}/{repo}:1", env("STEVEDORE_TEST_REGISTRY"))
    ]));
}

#[tokio::test]
async fn create_publishes_ports_sets_env_and_limits_and_mounts_a_share_folder() {
    let (server, c) = server().await;
    std::fs::create_dir_all(share(&server).join("web")).unwrap();
    std::fs::write(
        share(&server).join("web/index.html"),
        "hello from the share\n",
    )
    .unwrap();
    let name = unique("web");
    let port = stevedore_e2e::free_port();
    let body = format!(
        r#"{{"type":"docker","name":"{name}","image":"busybox","tag":"latest","repository":"dockerhub","autostart":true,
            "command":["httpd","-f","-p","80","-h","/www"],"environment":["GREETING=hello"],
            "network":{{"hostname":"webbox","port":[[{port},80,"tcp"]]}},
            "resource":{{"limit":{{"cpuweight":512,"cputime":500,"memory":"128m"}}}},
            "volume":{{"host":{{"/web":{{"bind":"/www","ro":true}}}}}}}}"#
    );
    let id = c.submit_ok("create", &body).await;
    let t = finished(&c, id, 120).await;
    assert_eq!(t["state"], "completed", "{t}");
    let inspect: Value = serde_json::from_str(&docker(&["inspect", &name])).unwrap();
    let inspect = &inspect[0];
    assert_eq!(inspect["State"]["Running"], true);
    assert_eq!(inspect["HostConfig"]["CpuShares"], 512);
    assert_eq!(
        inspect["HostConfig"]["CpuQuota"].as_i64().unwrap() * 1000
            / inspect["HostConfig"]["CpuPeriod"].as_i64().unwrap(),
        500
    );
    assert_eq!(inspect["HostConfig"]["Memory"], 128 << 20);
    assert_eq!(inspect["HostConfig"]["RestartPolicy"]["Name"], "always");
    assert_eq!(
        inspect["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert_eq!(inspect["Config"]["Hostname"], "webbox");
    assert!(inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&Value::from("GREETING=hello")));
    // Through the published port, the file from the share folder.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/index.html")).await {
            if r.status() == 200 {
                break r.text().await.unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the published port never served the page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(page, "hello from the share\n");
    docker(&["rm", "-f", &name]);
}

#[tokio::test]
async fn image_remove_removes_the_tag() {
    let (_server, c) = server().await;
    docker(&["pull", "busybox:latest"]);
    let repo = unique("rm");
    docker(&["tag", "busybox:latest", &format!("{repo}:x")]);
    let id = c
        .submit_ok(
            "image_remove",
            &format!(r#"[{{"type":"docker","image":"{repo}","tag":"x"}}]"#),
        )
        .await;
    let t = finished(&c, id, 60).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert!(!docker_ok(&["image", "inspect", &format!("{repo}:x")]));
    assert!(
        docker_ok(&["image", "inspect", "busybox:latest"]),
        "only the named tag goes"
    );
}

#[tokio::test]
async fn image_push_to_an_htpasswd_registry_right_and_wrong_password() {
    let (server, c) = server().await;
    docker(&["pull", "busybox:latest"]);
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let password = env("STEVEDORE_TEST_AUTH_PASSWORD");
    let repo = format!("stevedore/{}", unique("push"));
    let body = |pw: &str| {
        serde_json::json!({"image": "busybox", "tag": "latest", "newImage": repo, "newTag": "v1",
            "registry": registry, "username": env("STEVEDORE_TEST_AUTH_USER"), "password": pw, "rememberme": false})
        .to_string()
    };
    let good = c.submit_ok("image_push", &body(&password)).await;
    let t = finished(&c, good, 60).await;
    assert_eq!(t["state"], "completed", "{t}");
    // The registry has it (asked with the same credentials).
    let tags: Value = reqwest::Client::new()
        .get(format!("http://{registry}/v2/{repo}/tags/list"))
        .basic_auth(env("STEVEDORE_TEST_AUTH_USER"), Some(&password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    let bad = c.submit_ok("image_push", &body("not-the-password")).await;
    let t = finished(&c, bad, 60).await;
    assert_eq!(t["state"], "error", "{t}");
    let detail = t["detail_state"].as_str().unwrap();
    assert!(
        detail.contains("unauthorized") || detail.contains("authentication required"),
        "registry's message: {detail}"
    );
    // rememberme: a later push needs no password, and it is nowhere in
    // clear: not in the data folder (credentials are sealed), not in the log.
    let mut remember: Value = serde_json::from_str(&body(&password)).unwrap();
    remember["rememberme"] = Value::Bool(true);
    remember["newTag"] = "v2".into();
    let id = c.submit_ok("image_push", &remember.to_string()).await;
    assert_eq!(finished(&c, id, 60).await["state"], "completed");
    let again = serde_json::json!({"image": "busybox", "tag": "latest", "newImage": repo,
        "newTag": "v3", "registry": registry});
    let id = c.submit_ok("image_push", &again.to_string()).await;
    let t = finished(&c, id, 60).await;
    assert_eq!(t["state"], "completed", "remembered credentials used: {t}");
    let mut files = vec![server.data_dir()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            checked += 1;
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "the password is in clear in {}",
                path.display()
            );
        }
    }
    assert!(checked > 3, "looked at the data folder's files");

    // The password is shown nowhere.
    let listed = serde_json::to_string(&c.list(None).await).unwrap();
    assert!(!listed.contains(&password) && !listed.contains("not-the-password"));
    assert!(!server.logs().contains(&password));
}

#[tokio::test]
async fn image_export_plain_and_compressed_load_back() {
    let (server, c) = server().await;
    docker(&["pull", "busybox:latest"]);
    for (path, compress) in [
        ("exports/busybox.tar", false),
        ("exports/busybox.tgz", true),
    ] {
        let id = c
            .submit_ok(
                "image_export",
                &format!(
                    r#"{{"image":"busybox","tag":"latest","path":"{path}","compress":{compress}}}"#
                ),
            )
            .await;
        let t = finished(&c, id, 60).await;
        assert_eq!(t["state"], "completed", "{t}");
        let file = share(&server).join(path);
        let head = std::fs::read(&file).unwrap();
        assert_eq!(head[..2] == [0x1f, 0x8b], compress, "{path}");
        let loaded = docker(&["load", "-i", file.to_str().unwrap()]);
        assert!(loaded.contains("busybox:latest"), "{loaded}");
    }
    let names: Vec<String> = std::fs::read_dir(share(&server).join("exports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporaries left: {names:?}");
}

#[tokio::test]
async fn container_export_then_import_brings_back_files_and_settings() {
    let (_server, c) = server().await;
    let name = unique("src");
    let body = format!(
        r#"{{"type":"docker","name":"{name}","image":"busybox","tag":"latest","command":["sleep","3600"],
            "environment":["COLOUR=teal"],"resource":{{"limit":{{"memory":"96m","cpuweight":256}}}}}}"#
    );
    let id = c.submit_ok("create", &body).await;
    let t = finished(&c, id, 120).await;
    assert_eq!(t["state"], "completed", "{t}");
    docker(&["exec", &name, "sh", "-c", "echo written-inside > /data.txt"]);

    let id = c
        .submit_ok(
            "container_export",
            &format!(
                r#"{{"type":"docker","name":"{name}","path":"moves/{name}.tgz","compress":true}}"#
            ),
        )
        .await;
    let t = finished(&c, id, 120).await;
    assert_eq!(t["state"], "completed", "{t}");

    let copy = unique("copy");
    let id = c
        .submit_ok(
            "container_import",
            &format!(r#"{{"type":"docker","name":"{copy}","path":"moves/{name}.tgz"}}"#),
        )
        .await;
    let t = finished(&c, id, 120).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(
        docker(&["exec", &copy, "cat", "/data.txt"]).trim(),
        "written-inside"
    );
    let inspect: Value = serde_json::from_str(&docker(&["inspect", &copy])).unwrap();
    assert!(
        inspect[0]["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::from("COLOUR=teal")),
        "{}",
        inspect[0]["Config"]
    );
    assert_eq!(
        inspect[0]["Config"]["Cmd"],
        serde_json::json!(["sleep", "3600"])
    );
    assert_eq!(inspect[0]["HostConfig"]["Memory"], 96 << 20);
    assert_eq!(inspect[0]["HostConfig"]["CpuShares"], 256);
    docker(&["rm", "-f", &name, &copy]);
}

#[tokio::test]
async fn a_missing_image_ends_in_error_with_a_clear_detail() {
    let (_server, c) = server().await;
    let body = format!(
        r#"{{"type":"docker","name":"{}","image":"stevedore/no-such-image","tag":"1","repository":"private","registry_name":"local"}}"#,
        unique("missing")
    );
    let id = c.submit_ok("create", &body).await;
    let t = finished(&c, id, 60).await;
    assert_eq!(t["state"], "error", "{t}");
    let detail = t["detail_state"].as_str().unwrap();
    assert!(
        detail.contains("stevedore/no-such-image")
            && (detail.contains("not found") || detail.contains("unknown")),
        "{detail}"
    );
}

#[tokio::test]
async fn paths_with_dotdot_or_absolute_are_400_and_unknown_registries_too() {
    let (_server, c) = server().await;
    for path in ["../escape.tar", "a/../../escape.tar", "/etc/escape.tar"] {
        let r = c
            .submit(
                "image_export",
                &format!(r#"{{"image":"busybox","tag":"latest","path":"{path}"}}"#),
            )
            .await;
        r.assert_error(400, None);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("path:"),
            "{:?}",
            r.body
        );
    }
    let r = c.submit("image_download", r#"{"type":"docker","repository":"private","registry_name":"nowhere","image":"busybox","tag":"latest"}"#).await;
    r.assert_error(400, None);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("registry_name:"),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn an_existing_file_is_not_overwritten_without_force() {
    let (server, c) = server().await;
    docker(&["pull", "busybox:latest"]);
    std::fs::create_dir_all(share(&server).join("keep")).unwrap();
    std::fs::write(share(&server).join("keep/b.tar"), "precious").unwrap();
    let id = c
        .submit_ok(
            "image_export",
            r#"{"image":"busybox","tag":"latest","path":"keep/b.tar"}"#,
        )
        .await;
    let t = finished(&c, id, 60).await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["detail_state"].as_str().unwrap().contains("exists"),
        "{t}"
    );
    assert_eq!(
        std::fs::read_to_string(share(&server).join("keep/b.tar")).unwrap(),
        "precious"
    );
    let id = c
        .submit_ok(
            "image_export",
            r#"{"image":"busybox","tag":"latest","path":"keep/b.tar","force":true}"#,
        )
        .await;
    assert_eq!(finished(&c, id, 60).await["state"], "completed");
    assert_ne!(
        std::fs::read_to_string(share(&server).join("keep/b.tar")).unwrap_or_default(),
        "precious"
    );
}

#[tokio::test]
async fn deleting_a_running_download_cancels_it_and_leaves_no_tag() {
    let repo = stevedore_e2e::push_noise_image("img", 384, &["1"]);
    let (_server, c) = server().await;
    let reference = format!("{}/{repo}:1", env("STEVEDORE_TEST_REGISTRY"));
    let body = format!(
        r#"{{"type":"docker","repository":"private","registry_name":"local","image":"{repo}","tag":"1"}}"#
    );
    let id = c.submit_ok("image_download", &body).await;
    c.wait_until(id, Duration::from_secs(60), |t| t["state"] == "running")
        .await
        .expect("it runs");
    let answer = c.delete(&id.to_string()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(ids(&answer.body), vec![id]);
    assert!(c.task(id).await.is_none(), "the task is gone");
    // The engine let go of the pull: the tag never appears.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            !docker_ok(&["image", "inspect", &reference]),
            "a cancelled pull left {reference}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_engine_stopping_mid_task_errors_the_task_and_the_server_still_answers() {
    let repo = stevedore_e2e::push_noise_image("img", 384, &["1"]);
    let mut engine = PrivateEngine::start();
    let mut options = Options::with_plugins(CATEGORIES).config(&config());
    options.docker_host = Some(engine.host());
    let server = Server::start(options).await;
    let c = server.admin().await;
    let body = format!(
        r#"{{"type":"docker","repository":"private","registry_name":"local","image":"{repo}","tag":"1"}}"#
    );
    let id = c.submit_ok("image_download", &body).await;
    c.wait_until(id, Duration::from_secs(60), |t| t["state"] == "running")
        .await
        .expect("it runs");
    engine.kill();
    let t = finished(&c, id, 60).await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(!t["detail_state"].as_str().unwrap().is_empty());
    // Still serving: a new task is accepted and fails cleanly without an engine.
    let id2 = c
        .submit_ok(
            "image_download",
            r#"{"type":"docker","repository":"dockerhub","image":"busybox","tag":"latest"}"#,
        )
        .await;
    let t2 = finished(&c, id2, 60).await;
    assert_eq!(t2["state"], "error");
    assert!(
        t2["detail_state"]
            .as_str()
            .unwrap()
            .contains("Docker engine"),
        "{t2}"
    );
}
