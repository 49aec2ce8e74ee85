//! End-to-end tests of the REST API against the real `stevedore serve` binary
//! (issue 3, "Must show"). Each test starts its own server on a free loopback
//! port with its own data folder.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{hash_password, Options, Server, SseReader, ADMIN_PASSWORD};

fn users_config() -> String {
    format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    )
}

#[tokio::test]
async fn login_bad_password_missing_cookie_refresh_logout() {
    let server = Server::start(Options::default()).await;
    let c = server.client();

    // Missing cookie: 401 on every session endpoint.
    c.send(Method::GET, "background/", None)
        .await
        .assert_error(401, Some("not_logged_in"));
    c.submit("noop", "{}")
        .await
        .assert_error(401, Some("not_logged_in"));
    c.delete("").await.assert_error(401, Some("not_logged_in"));
    c.send(Method::GET, "login_refresh", None)
        .await
        .assert_error(401, Some("not_logged_in"));

    // Bad password and unknown user: 401 with an `error`, and no cookie.
    let bad = c.login("admin", "wrong").await;
    bad.assert_error(401, Some("bad_credentials"));
    assert!(bad.set_cookie.is_none());
    c.login("nobody", "x")
        .await
        .assert_error(401, Some("bad_credentials"));

    // Good login.
    let ok = c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["username"], "admin");
    assert_eq!(ok.body["isAdmin"], true);
    assert_eq!(ok.body["anonymous"], false);
    assert!(ok.body["logintime"].is_string(), "{:?}", ok.body);
    let cookie = ok.set_cookie.unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let id = cookie.split(';').next().unwrap().split('=').nth(1).unwrap();
    assert_eq!(id.len(), 64, "256-bit session id in hex: {cookie}");

    let r = c.send(Method::GET, "login_refresh", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["username"], "admin");
    assert_eq!(r.body["logintime"], ok.body["logintime"]);
    assert_eq!(c.send(Method::GET, "background/", None).await.status, 200);

    // The short prefix works too.
    let short = stevedore_e2e::Client::new(server.api(true));
    assert_eq!(short.login("admin", ADMIN_PASSWORD).await.status, 200);
    assert_eq!(short.list(None).await.len(), 0);

    // Logout ends the session.
    assert_eq!(c.send(Method::PUT, "logout", None).await.status, 200);
    c.send(Method::GET, "background/", None)
        .await
        .assert_error(401, Some("not_logged_in"));
}

#[tokio::test]
async fn sessions_survive_restart_and_failed_logins_are_slowed() {
    let mut server = Server::start(Options::default()).await;
    let c = server.admin().await;
    server.restart().await;
    let c = c.with_api(server.api(false));
    assert_eq!(
        c.list(None).await.len(),
        0,
        "the session outlived the restart"
    );

    // Three failures from one address lock it out: even the right password waits.
    let other = server.client();
    for _ in 0..3 {
        other.login("admin", "guess").await.assert_error(401, None);
    }
    let locked = other.login("admin", ADMIN_PASSWORD).await;
    locked.assert_error(429, Some("too_many_attempts"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(other.login("admin", ADMIN_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn submit_list_filter_and_every_delete_form() {
    let server = Server::start(Options::with_plugins(&["noop", "sleepy"])).await;
    let c = server.admin().await;

    let a = c.submit("noop", r#"{"count": 1}"#).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let t = &a.body;
    assert_eq!(t["category"], "noop");
    assert_eq!(t["state"], "waiting");
    assert_eq!(t["user"], "admin");
    // Exactly the keys a real Container Station answered a new task with,
    // plus our `progress`; `params` is the posted object itself.
    let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "category",
            "deletable",
            "detail_state",
            "id",
            "init",
            "name",
            "params",
            "progress",
            "state",
            "user"
        ],
        "{t}"
    );
    assert_eq!(t["params"], serde_json::json!({"count": 1}));
    assert!(t["init"].is_i64());
    let n1 = t["id"].as_i64().unwrap();
    let n2 = c.submit_ok("noop", "{}").await;
    let s1 = c.submit_ok("sleepy", r#"{"seconds": 1}"#).await;
    let s2 = c.submit_ok("sleepy", r#"{"seconds": 1}"#).await;
    assert!(n1 < n2 && n2 < s1 && s1 < s2, "ids increase");
    for id in [n1, n2, s1, s2] {
        let done = c.wait_state(id, "completed").await;
        assert_eq!(done["result"], 0);
        assert_eq!(done["progress"], 100);
        assert!(done["start"].as_i64().unwrap() <= done["end"].as_i64().unwrap());
    }

    let all: Vec<i64> = c
        .list(None)
        .await
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(all, vec![s2, s1, n2, n1], "newest first");
    let noops: Vec<i64> = c
        .list(Some("noop"))
        .await
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(noops, vec![n2, n1]);
    assert_eq!(c.list(Some("nosuch")).await.len(), 0);

    // DELETE background/{id}
    let d = c.delete(&n1.to_string()).await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    assert_eq!(d.body, serde_json::json!([n1]));
    c.delete(&n1.to_string())
        .await
        .assert_error(404, Some("unknown_task"));
    // DELETE background/{category}
    let d = c.delete("sleepy").await;
    assert_eq!(d.body, serde_json::json!([s1, s2]));
    // DELETE background/ (finished only: a waiting task stays)
    let w = c.submit_ok("sleepy", r#"{"seconds": 30}"#).await;
    let d = c.delete("").await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body, serde_json::json!([n2]));
    let left: Vec<i64> = c
        .list(None)
        .await
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, vec![w]);
    // A waiting or running deletable task can be deleted by id (it is cancelled).
    let d = c.delete(&w.to_string()).await;
    assert_eq!(d.body, serde_json::json!([w]));
    assert_eq!(c.list(None).await.len(), 0);
}

#[tokio::test]
async fn running_tasks_conflict_or_cancel() {
    let server = Server::start(Options::with_plugins(&["sleepy", "sleepy_locked"])).await;
    let c = server.admin().await;

    let locked = c.submit_ok("sleepy_locked", r#"{"seconds": 2}"#).await;
    let t = c.wait_state(locked, "running").await;
    assert_eq!(t["deletable"], false);
    c.delete(&locked.to_string())
        .await
        .assert_error(409, Some("conflict"));
    // Still there, and it completes.
    assert_eq!(c.wait_state(locked, "completed").await["result"], 0);

    let sleepy = c.submit_ok("sleepy", r#"{"seconds": 600}"#).await;
    let t = c.wait_state(sleepy, "running").await;
    assert_eq!(t["deletable"], true);
    let started = std::time::Instant::now();
    let d = c.delete(&sleepy.to_string()).await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    assert_eq!(d.body, serde_json::json!([sleepy]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel is prompt"
    );
    assert!(c.task(sleepy).await.is_none(), "a cancelled task is gone");
}

#[tokio::test]
async fn users_see_only_their_own_tasks() {
    let server = Server::start(Options::default().config(&users_config())).await;
    let alice = server.client();
    assert_eq!(
        alice.login("alice", "alice-pw").await.body["isAdmin"],
        false
    );
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let admin = server.admin().await;

    let a = alice.submit_ok("noop", "{}").await;
    let b = bob.submit_ok("noop", "{}").await;
    alice.wait_state(a, "completed").await;
    bob.wait_state(b, "completed").await;

    let ids = |v: Vec<Value>| {
        v.iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(alice.list(None).await), vec![a]);
    assert_eq!(ids(bob.list(None).await), vec![b]);
    assert_eq!(ids(bob.list(Some("noop")).await), vec![b]);
    assert_eq!(ids(admin.list(None).await), vec![b, a], "newest first");
    assert_eq!(alice.list(None).await[0]["user"], "alice");

    // Bob can neither delete Alice's task by id nor through the bulk forms.
    bob.delete(&a.to_string())
        .await
        .assert_error(403, Some("not_yours"));
    bob.delete("999999")
        .await
        .assert_error(404, Some("unknown_task"));
    assert_eq!(bob.delete("noop").await.body, serde_json::json!([b]));
    assert_eq!(ids(alice.list(None).await), vec![a]);
    assert_eq!(bob.delete("").await.body, serde_json::json!([]));
    // The admin deletes everyone's.
    assert_eq!(admin.delete("").await.body, serde_json::json!([a]));

    // Events too: Bob's stream carries Bob's tasks only.
    let resp = bob
        .http()
        .get(format!("{}/background/events", bob.api))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    let hidden = alice.submit_ok("noop", "{}").await;
    alice.wait_state(hidden, "completed").await;
    let mine = bob.submit_ok("noop", "{}").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, data) = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("bob's event in time")
            .expect("stream open");
        let t: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(t["user"], "bob", "bob saw {t}");
        if t["id"] == mine && t["state"] == "completed" {
            break;
        }
    }
}

#[tokio::test]
async fn secrets_never_shown_logged_or_exported() {
    let server =
        Server::start(Options::default().env("RUST_LOG", "info,stevedore=trace,tower_http=trace"))
            .await;
    let c = server.admin().await;
    const PW: &str = "Pa55-e2e-very-secret";
    const TOKEN: &str = "T0ken-e2e-very-secret";
    let body = format!(r#"{{"password": "{PW}", "token": "{TOKEN}", "count": 3}}"#);
    let resp = c
        .http()
        .get(format!("{}/background/events", c.api))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    let a = c.submit("noop", &body).await;
    assert_eq!(a.status, 200);
    let id = a.body["id"].as_i64().unwrap();
    c.wait_state(id, "completed").await;
    // The event stream shows the masked params too.
    loop {
        let (_, data) = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("events")
            .expect("stream open");
        assert!(!data.contains(PW) && !data.contains(TOKEN), "{data}");
        if data.contains("\"completed\"") {
            break;
        }
    }
    // A failing task too (its error path logs).
    let f = c
        .submit_ok("noop", &format!(r#"{{"password": "{PW}", "fail": true}}"#))
        .await;
    c.wait_state(f, "error").await;

    let listed = c.send(Method::GET, "background/", None).await;
    let text = listed.body.to_string();
    assert!(!text.contains(PW) && !text.contains(TOKEN), "{text}");
    let params = c.task(id).await.unwrap()["params"].clone();
    assert_eq!(params["password"], "******");
    assert_eq!(params["token"], "******");
    assert_eq!(params["count"], 3);

    let metrics = reqwest::get(format!("{}/metrics", server.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(PW) && !metrics.contains(TOKEN));

    let logs = server.logs();
    assert!(!logs.is_empty());
    for secret in [PW, TOKEN, ADMIN_PASSWORD] {
        assert!(
            !logs.contains(secret),
            "`{secret}` leaked into the log:\n{logs}"
        );
    }
    // The data folder keeps no plain copy either (full params are sealed).
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(
                !hay.contains(PW),
                "{} holds the password in clear",
                p.display()
            );
        }
    }
}

#[tokio::test]
async fn json_bodies_whatever_the_content_type_and_4xx_errors() {
    let server = Server::start(Options::with_plugins(&["noop", "sleepy"])).await;
    let c = server.admin().await;

    // curl -d sends application/x-www-form-urlencoded: still JSON.
    let a = c.submit("noop", r#"{"count": 2}"#).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // Also with a JSON content type, and with none.
    let r = c
        .http()
        .post(format!("{}/background/noop", c.api))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .http()
        .post(format!("{}/background/noop", c.api))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Invalid JSON.
    c.submit("noop", "{\"count\": ")
        .await
        .assert_error(400, Some("invalid_json"));
    c.submit("noop", "type=docker&name=x")
        .await
        .assert_error(400, Some("invalid_json"));
    // A wrong type: of the body, and of a field (the plugin names the field).
    c.submit("noop", "42")
        .await
        .assert_error(400, Some("wrong_type"));
    let w = c.submit("noop", r#"{"count": "three"}"#).await;
    w.assert_error(400, Some("invalid_params"));
    let w = c.submit("sleepy", r#"{"seconds": "x"}"#).await;
    w.assert_error(400, Some("invalid_params"));
    assert!(
        w.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("seconds"),
        "{:?}",
        w.body
    );
    let w = c.submit("sleepy", r#"{"seconds": 99999}"#).await;
    w.assert_error(400, Some("invalid_params"));
    assert!(
        w.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("seconds"),
        "{:?}",
        w.body
    );
    // Unknown category.
    c.submit("no_such_category", "{}")
        .await
        .assert_error(404, Some("unknown_category"));
    // Unknown path, wrong method, too large a body: JSON too.
    c.send(Method::GET, "nowhere", None)
        .await
        .assert_error(404, None);
    c.send(Method::PATCH, "background/", None)
        .await
        .assert_error(405, None);
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    c.submit("noop", &big)
        .await
        .assert_error(413, Some("body_too_large"));
    // Nothing was stored by the refused submissions.
    assert_eq!(c.list(None).await.len(), 3);
}

#[tokio::test]
async fn restart_recovery_after_kill9() {
    let mut server = Server::start(
        Options::with_plugins(&["noop", "sleepy_locked"]).env("STEVEDORE_WORKERS", "1"),
    )
    .await;
    let c = server.admin().await;
    let running = c.submit_ok("sleepy_locked", r#"{"seconds": 600}"#).await;
    c.wait_state(running, "running").await;
    let mut waiting = Vec::new();
    for i in 0..5 {
        waiting.push(c.submit_ok("noop", &format!(r#"{{"count": {i}}}"#)).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in &waiting {
        assert_eq!(c.task(*id).await.unwrap()["state"], "waiting");
    }

    server.kill9();
    server.restart().await;
    let c = server.admin().await;
    let t = c.wait_state(running, "error").await;
    assert_eq!(t["result"], 4, "interrupted: {t}");
    assert!(
        t["detail_state"].as_str().unwrap().contains("interrupted"),
        "{t}"
    );
    for (i, id) in waiting.iter().enumerate() {
        let t = c.wait_state(*id, "completed").await;
        assert_eq!(t["params"]["count"], i, "params survived: {t}");
    }
    // Nothing lost, nothing duplicated.
    let ids: Vec<i64> = c
        .list(None)
        .await
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let mut want = vec![running];
    want.extend(&waiting);
    want.reverse();
    assert_eq!(ids, want, "newest first");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    // New ids keep increasing after the restart.
    let next = c.submit_ok("noop", "{}").await;
    assert!(next > *want.iter().max().unwrap());
}

#[tokio::test]
async fn sse_delivers_a_tasks_states_in_order() {
    let server = Server::start(Options::with_plugins(&["noop", "sleepy"])).await;
    let c = server.admin().await;
    // Without a session: 401 JSON.
    server
        .client()
        .send(Method::GET, "background/events", None)
        .await
        .assert_error(401, None);

    let resp = c
        .http()
        .get(format!("{}/background/events", c.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = SseReader::new(resp);

    let id = c.submit_ok("sleepy", r#"{"seconds": 1}"#).await;
    let mut states: Vec<String> = Vec::new();
    let mut progress = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while states.last().map(String::as_str) != Some("completed") {
        let (event, data) = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events in time")
            .expect("stream open");
        assert_eq!(event, "task");
        let t: Value = serde_json::from_str(&data).unwrap();
        if t["id"] != id {
            continue;
        }
        progress.push(t["progress"].as_i64().unwrap());
        let s = t["state"].as_str().unwrap().to_string();
        if states.last() != Some(&s) {
            states.push(s);
        }
    }
    assert_eq!(states, vec!["waiting", "running", "completed"]);
    assert!(progress.len() > 3, "progress is streamed too: {progress:?}");
    assert_eq!(*progress.last().unwrap(), 100);
}

#[tokio::test]
async fn metrics_count_tasks_by_state_and_category() {
    let server = Server::start(Options::default()).await;
    let c = server.admin().await;
    // The engine counts a task's end before it announces it: a client that
    // has seen both ends on the stream must find them counted. (The store
    // shows an end a moment before it is counted, so polling the task would
    // race the counters.)
    let resp = c
        .http()
        .get(format!("{}/background/events", c.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = SseReader::new(resp);
    let a = c.submit_ok("noop", "{}").await;
    let b = c.submit_ok("noop", r#"{"fail": true}"#).await;
    let mut ends = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ends.len() < 2 {
        let (_, data) = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("both ends announced in time")
            .expect("stream open");
        let t: Value = serde_json::from_str(&data).unwrap();
        let state = t["state"].as_str().unwrap_or_default().to_string();
        if state == "completed" || state == "error" {
            ends.insert(t["id"].as_i64().unwrap(), state);
        }
    }
    assert_eq!(ends[&a], "completed");
    assert_eq!(ends[&b], "error");
    let r = reqwest::get(format!("{}/metrics", server.base()))
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for want in [
        "stevedore_tasks{category=\"noop\",state=\"completed\"} 1",
        "stevedore_tasks{category=\"noop\",state=\"error\"} 1",
        "stevedore_tasks_finished_total{category=\"noop\",state=\"completed\"} 1",
        "stevedore_task_run_seconds_count{category=\"noop\"} 2",
        "stevedore_tasks_submitted_total{category=\"noop\"} 2",
    ] {
        assert!(text.contains(want), "`{want}` missing:\n{text}");
    }
}

#[tokio::test]
async fn generated_admin_password_is_printed_once() {
    let mut server = Server::start(Options {
        admin_password: false,
        ..Options::default()
    })
    .await;
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("created user `admin` with password: "))
        .unwrap_or_else(|| panic!("no generated password in:\n{logs}"));
    let pw = line.rsplit(": ").next().unwrap().trim().to_string();
    assert!(pw.len() >= 16);
    assert_eq!(server.client().login("admin", &pw).await.status, 200);
    let hash = std::fs::read_to_string(server.data_dir().join("admin.hash")).unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&pw));

    server.restart().await;
    assert_eq!(
        server.logs().matches("created user `admin`").count(),
        1,
        "printed once"
    );
    assert_eq!(server.client().login("admin", &pw).await.status, 200);
}

#[tokio::test]
async fn a_wrong_config_file_is_a_startup_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[queue]\nwokers = 3\n").unwrap();
    let out = std::process::Command::new(stevedore_e2e::binary())
        .arg("serve")
        .env("STEVEDORE_CONFIG", &cfg)
        .env("STEVEDORE_DATA_DIR", dir.path().join("data"))
        .env(
            "STEVEDORE_LISTEN",
            format!("127.0.0.1:{}", stevedore_e2e::free_port()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wokers") && err.contains("bad.toml"), "{err}");
}

#[tokio::test]
async fn sigterm_stops_gracefully_with_an_sse_client_connected() {
    let mut server = Server::start(Options::default()).await;
    let c = server.admin().await;
    let resp = c
        .http()
        .get(format!("{}/background/events", c.api))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = server.stop();
        (s, server)
    })
    .await
    .unwrap();
    assert!(
        status.0.unwrap().success(),
        "clean exit:\n{}",
        status.1.logs()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(events.next().await.is_none(), "the stream ends");
}

#[tokio::test]
async fn misbehaving_plugins_fail_their_task_not_the_server() {
    let config = "[plugins]\ncpu_budget_ms = 300\nmemory_mb = 32\n";
    let server = Server::start(
        Options::with_plugins(&["noop", "trap", "spin", "memory_bomb"]).config(config),
    )
    .await;
    let c = server.admin().await;
    let trap = c.submit_ok("trap", "{}").await;
    let spin = c.submit_ok("spin", "{}").await;
    let bomb = c.submit_ok("memory_bomb", "{}").await;
    // A trap is the plugin's own failure (1); budgets exceeded are 5.
    for (id, code) in [(trap, 1), (spin, 5), (bomb, 5)] {
        let t = c
            .wait_until(id, Duration::from_secs(60), |t| t["state"] == "error")
            .await
            .unwrap_or_else(|last| panic!("task {id} did not fail: {last:?}"));
        assert_eq!(t["result"], code, "{t}");
        assert!(!t["detail_state"].as_str().unwrap().is_empty(), "{t}");
    }
    // A plugin that spins in validate: the submit is refused, as JSON, in bounded time.
    let started = std::time::Instant::now();
    let a = c.submit("spin", r#"{"in_validate": true}"#).await;
    assert!(a.status == 503 || a.status == 400, "{:?}", a);
    a.assert_error(a.status, None);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server still serves and runs tasks.
    let ok = c.submit_ok("noop", "{}").await;
    assert_eq!(c.wait_state(ok, "completed").await["result"], 0);
    assert_eq!(
        c.list(None).await.len(),
        4,
        "the refused submit stored nothing"
    );
}

#[tokio::test]
async fn an_ungranted_plugin_is_a_startup_error_naming_the_interface() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        stevedore_e2e::plugin_file("ungranted").expect("ungranted.wasm built"),
        plugins.join("ungranted.wasm"),
    )
    .unwrap();
    let out = std::process::Command::new(stevedore_e2e::binary())
        .arg("serve")
        .env("STEVEDORE_DATA_DIR", dir.path().join("data"))
        .env("STEVEDORE_PLUGINS_DIR", &plugins)
        .env("STEVEDORE_ADMIN_PASSWORD", "x")
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .env(
            "STEVEDORE_LISTEN",
            format!("127.0.0.1:{}", stevedore_e2e::free_port()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ungranted") && err.contains("containers"),
        "{err}"
    );
}

#[tokio::test]
async fn per_category_limits_hold_tasks_waiting() {
    let config = "[queue]\nworkers = 4\n[queue.limits]\nsleepy = 1\n";
    let server = Server::start(Options::with_plugins(&["noop", "sleepy"]).config(config)).await;
    let c = server.admin().await;
    let first = c.submit_ok("sleepy", r#"{"seconds": 2}"#).await;
    let second = c.submit_ok("sleepy", r#"{"seconds": 1}"#).await;
    c.wait_state(first, "running").await;
    // Other categories are not held back by the sleepy limit.
    let n = c.submit_ok("noop", "{}").await;
    c.wait_state(n, "completed").await;
    let t = c.task(second).await.unwrap();
    assert_eq!(t["state"], "waiting", "limit 1: {t}");
    // Progress and detail of the running one are visible while it runs.
    let running = c
        .wait_until(first, Duration::from_secs(10), |t| {
            t["progress"].as_i64().unwrap_or(0) > 0 && t["state"] == "running"
        })
        .await
        .expect("progress while running");
    assert!(
        running["detail_state"]
            .as_str()
            .unwrap()
            .contains("waiting"),
        "{running}"
    );
    c.wait_state(first, "completed").await;
    let s = c.wait_state(second, "completed").await;
    let f = c.task(first).await.unwrap();
    assert!(
        s["start"].as_i64().unwrap() >= f["end"].as_i64().unwrap(),
        "one at a time"
    );
}

#[tokio::test]
async fn curl_n_follows_the_event_stream() {
    let server = Server::start(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let base = server.api(false);
    let login = std::process::Command::new("curl")
        .args(["-sq", "-c", "cookies.txt", "-d"])
        .arg(format!("username=admin&password={ADMIN_PASSWORD}"))
        .arg(format!("{base}/login"))
        .current_dir(dir.path())
        .output()
        .expect("curl");
    assert!(login.status.success());
    let mut follow = tokio::process::Command::new("curl")
        .args(["-N", "-sq", "-b", "cookies.txt", "--max-time", "20"])
        .arg(format!("{base}/background/events"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl -N");
    let mut out = tokio::io::BufReader::new(follow.stdout.take().unwrap());
    // Give curl time to connect before the task exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = server.admin().await;
    let id = c.submit_ok("noop", "{}").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    loop {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        let n = tokio::time::timeout_at(deadline, out.read_line(&mut line))
            .await
            .expect("events in time")
            .unwrap();
        assert!(n > 0, "stream ended early: {seen}");
        seen.push_str(&line);
        if line.starts_with("data:")
            && line.contains(&format!("\"id\":{id}"))
            && line.contains("\"completed\"")
        {
            break;
        }
    }
    assert!(seen.contains("event: task"), "{seen}");
    assert!(seen.contains(&format!("id: {id}")), "{seen}");
}
