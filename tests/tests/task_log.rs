//! Each task's own log lines (issue 31, item 1; the dashboard of issue 30
//! shows them): `GET background/{id}/log` after the run, `log` events of
//! `background/events?logs=1` while it runs, a secret from the params
//! masked in both, another user refused, the lines bounded by the
//! configuration and gone with the task, the engine's pull progress
//! relayed into an `image_download` task's log, and `stevedore task watch`
//! printing the lines.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{
    binary, docker, hash_password, push_noise_image, registries_config, Client, Options, Server,
    SseReader,
};

const SECRET: &str = "Chatty-pw-7f3e9b2c";

fn users_config() -> String {
    format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    )
}

async fn user(server: &Server, name: &str) -> Client {
    let c = server.client();
    let r = c.login(name, &format!("{name}-pw")).await;
    assert_eq!(r.status, 200, "login {name}: {:?}", r.body);
    c
}

async fn events(c: &Client, query: &str) -> SseReader {
    let resp = c
        .http()
        .get(format!("{}/background/events{query}", c.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    SseReader::new(resp)
}

async fn log_of(c: &Client, id: i64) -> stevedore_e2e::Answer {
    c.send(Method::GET, &format!("background/{id}/log"), None)
        .await
}

/// The rows `task_log` holds for task `id` in the server's SQLite file.
fn stored_rows(server: &Server, id: i64) -> i64 {
    let db = rusqlite::Connection::open(server.data_dir().join("stevedore.db")).unwrap();
    db.query_row(
        "SELECT count(*) FROM task_log WHERE task_id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_tasks_lines_over_http_and_sse_with_its_secret_masked() {
    let server = Server::start(Options::with_plugins(&["chatty"]).config(&users_config())).await;
    let (alice, bob, admin) = (
        user(&server, "alice").await,
        user(&server, "bob").await,
        server.admin().await,
    );
    alice
        .send(Method::GET, "background/events?logs=maybe", None)
        .await
        .assert_error(400, Some("invalid_query"));
    let mut stream = events(&alice, "?logs=1").await;
    let mut plain = events(&alice, "").await;

    let params = format!(r#"{{"lines": 20, "pause_ms": 50, "password": "{SECRET}"}}"#);
    let id = alice.submit_ok("chatty", &params).await;

    // The lines arrive as `log` events while the task runs, before its end.
    let mut streamed = Vec::new();
    let mut running_lines = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (event, data) = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the task's events in time")
            .expect("stream open");
        assert!(!data.contains(SECRET), "secret in an event: {data}");
        let v: Value = serde_json::from_str(&data).unwrap();
        match event.as_str() {
            "log" => {
                assert_eq!(v["id"], id, "{v}");
                for key in ["ts", "level", "message"] {
                    assert!(v[key].is_string(), "{key} in {v}");
                }
                streamed.push(v["message"].as_str().unwrap().to_string());
            }
            "task" if v["id"] == id && v["state"] == "running" => running_lines = streamed.len(),
            "task" if v["id"] == id && v["state"] == "completed" => break,
            _ => {}
        }
    }
    let mut want: Vec<String> = (0..20)
        .map(|i| format!("line {i} password=******"))
        .collect();
    want.push("stdout password=******".into());
    want.push("stderr line".into());
    assert_eq!(streamed, want);
    assert!(
        running_lines < 20,
        "the lines came while the task ran ({running_lines} before it was running)"
    );

    // The same lines over HTTP, in order, with their levels and times.
    let a = log_of(&alice, id).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(!a.body.to_string().contains(SECRET), "{}", a.body);
    assert_eq!(a.body["id"], id);
    assert_eq!(a.body["truncated"], false);
    let lines = a.body["lines"].as_array().unwrap();
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, want);
    let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(&levels[..4], ["info", "warn", "info", "warn"]);
    assert_eq!(&levels[20..], ["info", "warn"], "stdout info, stderr warn");
    let times: Vec<&str> = lines.iter().map(|l| l["ts"].as_str().unwrap()).collect();
    for t in &times {
        // 2026-12-07T17:03:52.123Z
        assert!(
            t.len() == 24
                && t.as_bytes()[10] == b'T'
                && t.as_bytes()[19] == b'.'
                && t.ends_with('Z'),
            "{t}"
        );
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(stored_rows(&server, id), 22);

    // Without `logs=1` the stream carries no lines.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (event, data) = tokio::time::timeout_at(deadline, plain.next())
            .await
            .expect("the task's events in time")
            .expect("stream open");
        assert_ne!(event, "log", "{data}");
        let v: Value = serde_json::from_str(&data).unwrap();
        if v["id"] == id && v["state"] == "completed" {
            break;
        }
    }

    // The owner or an admin only.
    log_of(&bob, id).await.assert_error(403, Some("not_yours"));
    let by_admin = log_of(&admin, id).await;
    assert_eq!(by_admin.status, 200);
    assert_eq!(by_admin.body["lines"], a.body["lines"]);
    log_of(&alice, 999_999)
        .await
        .assert_error(404, Some("unknown_task"));
    alice
        .send(Method::GET, "background/chatty/log", None)
        .await
        .assert_error(404, Some("unknown_task"));

    // Gone with the task.
    let d = alice.delete(&id.to_string()).await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    log_of(&alice, id)
        .await
        .assert_error(404, Some("unknown_task"));
    assert_eq!(stored_rows(&server, id), 0);
}

#[tokio::test]
async fn the_log_keeps_the_last_lines_the_configuration_allows() {
    let server =
        Server::start(Options::with_plugins(&["chatty"]).config("[queue]\ntask_log_lines = 5\n"))
            .await;
    let c = server.admin().await;
    let id = c
        .submit_ok(
            "chatty",
            &format!(r#"{{"lines": 30, "password": "{SECRET}"}}"#),
        )
        .await;
    c.wait_state(id, "completed").await;
    let a = log_of(&c, id).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["truncated"], true);
    let messages: Vec<&str> = a.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "line 27 password=******",
            "line 28 password=******",
            "line 29 password=******",
            "stdout password=******",
            "stderr line",
        ]
    );
    assert_eq!(stored_rows(&server, id), 5);
}

#[tokio::test]
async fn a_pulls_progress_is_relayed_into_the_tasks_log() {
    let repo = push_noise_image("tasklog", 8, &["1"]);
    let server = Server::start(
        Options::with_plugins(&["image_download"])
            .test_engine()
            .config(&registries_config()),
    )
    .await;
    let c = server.admin().await;
    let body = format!(
        r#"{{"type":"docker","repository":"private","registry_name":"local","image":"{repo}","tag":"1"}}"#
    );
    let id = c.submit_ok("image_download", &body).await;
    let done = c
        .wait_until(id, Duration::from_secs(120), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .expect("the pull ends");
    let reference = format!("{}/{repo}:1", stevedore_e2e::env("STEVEDORE_TEST_REGISTRY"));
    docker(&["rmi", &reference]);
    assert_eq!(done["state"], "completed", "{done}");
    let a = log_of(&c, id).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let messages: Vec<&str> = a.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&repo) && m.contains("MiB")),
        "no layer progress of {repo} in {messages:#?}"
    );
}

#[tokio::test]
async fn task_watch_prints_each_line_once() {
    let server = Server::start(Options::with_plugins(&["chatty"])).await;
    let c = server.admin().await;
    let id = c
        .submit_ok(
            "chatty",
            &format!(r#"{{"lines": 10, "pause_ms": 100, "password": "{SECRET}"}}"#),
        )
        .await;
    // Joined while the task runs: lines logged before come from the log,
    // later ones from the stream, none twice.
    c.wait_until(id, Duration::from_secs(30), |t| t["state"] == "running")
        .await
        .expect("the task runs");
    let out = std::process::Command::new(binary())
        .args(["task", "watch", &id.to_string()])
        .env("STEVEDORE_URL", server.base())
        .env("STEVEDORE_USER", "admin")
        .env("STEVEDORE_PASSWORD", stevedore_e2e::ADMIN_PASSWORD)
        .output()
        .expect("stevedore task watch");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("task {id} (chatty) completed")),
        "{stdout}\n{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    for i in 0..10 {
        let line = format!(" line {i} password=******");
        assert_eq!(stderr.matches(&line).count(), 1, "{line} in {stderr}");
    }
    assert_eq!(stderr.matches("stderr line").count(), 1, "{stderr}");
}
