//! Events and the audit log (`log.rst`: `log.html`) on the real `stevedore
//! serve`, the test engine and the `create` and `noop` plugins:
//! `event/wait` answers once a container (Docker, and LXC with the test
//! image repository) started by another request runs,
//! and 408 near its duration; `event` shows only the caller's task events;
//! `log` records submits, deletes and logins (never a password) with their
//! user and outcome, filters, exports CSV, is emptied only by an admin, and
//! survives a restart.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    docker, docker_ok, eventually_async, hash_password, unique, Client, Containers, LxcPath,
    Options, Server,
};

fn users_config() -> String {
    format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    )
}

async fn server() -> Server {
    Server::start(
        Options::with_plugins(&["create", "noop"])
            .test_engine()
            .config(&users_config()),
    )
    .await
}

async fn user(server: &Server, name: &str) -> Client {
    let c = server.client();
    let a = c.login(name, &format!("{name}-pw")).await;
    assert_eq!(a.status, 200, "{name} login: {:?}", a.body);
    c
}

async fn get(c: &Client, path: &str) -> Value {
    let a = c.send(Method::GET, path, None).await;
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.body
}

use stevedore_e2e::shape::{assert_shape as assert_keys, Kind};

/// A key of a recorded answer, and its JSON type.
type Key = (&'static str, Kind);

/// A log record (`GET log?limit=5&category=image,export`).
const RECORD: &[Key] = &[
    ("category", Kind::Str),
    ("id", Kind::Int),
    ("level", Kind::Str),
    ("message", Kind::Str),
    ("ts", Kind::Int),
    ("user", Kind::Str),
];

/// `GET event`.
const EVENT_PAGE: &[Key] = &[
    ("index", Kind::Int),
    ("messages", Kind::StrArray),
    ("offset", Kind::Int),
];

#[tokio::test]
async fn waits_answer_the_entry_once_the_state_is_reached_or_408_at_the_duration() {
    let server = server().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    docker(&["pull", "-q", "busybox:latest"]);
    let name = unique("wait");
    let _cleanup = Containers(vec![name.clone()]);
    let body = json!({"type": "docker", "name": name, "image": "busybox", "tag": "latest",
        "repository": "dockerhub", "command": "sleep 3600"});
    let created = alice
        .http()
        .post(format!("{}/container", alice.api))
        .body(body.to_string())
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "{:?}", created.text().await);
    let stop = alice
        .send(Method::PUT, &format!("container/docker/{name}/stop"), None)
        .await;
    assert_eq!(stop.status, 200, "{:?}", stop.body);
    assert_eq!(stop.body["state"], "stopped");

    // A wait for `running`, answered once another request started it.
    let waiting = {
        let alice = alice.clone();
        let path = format!("event/wait/docker/{name}/running?duration=60");
        tokio::spawn(async move { alice.send(Method::GET, &path, None).await })
    };
    // A second wait, for 1 s, ends in 408 while the first one is still
    // under way: the container is stopped, and the first one waits on.
    let t0 = Instant::now();
    let short = alice
        .send(
            Method::GET,
            &format!("event/wait/docker/{name}/running?duration=1"),
            None,
        )
        .await;
    short.assert_error(408, Some("wait_timeout"));
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert!(
        !waiting.is_finished(),
        "the first wait answered while the container was stopped"
    );
    let start = alice
        .send(Method::PUT, &format!("container/docker/{name}/start"), None)
        .await;
    assert_eq!(start.status, 200, "{:?}", start.body);
    let waited = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the wait answered once the container ran")
        .unwrap();
    assert_eq!(waited.status, 200, "{:?}", waited.body);
    assert_eq!(waited.body["state"], "running");
    assert_eq!(waited.body["name"], name.as_str());
    // The same entry as `GET container/docker/{name}` answers.
    let entry = get(&alice, &format!("container/docker/{name}")).await;
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&waited.body), keys(&entry));

    // Already running: answered at once.
    let now = alice
        .send(
            Method::GET,
            &format!("event/wait/docker/{name}/running?duration=5"),
            None,
        )
        .await;
    assert_eq!(now.status, 200, "{:?}", now.body);

    // Never stopped within 2 s: 408 JSON, near 2 s.
    let t0 = Instant::now();
    let late = alice
        .send(
            Method::GET,
            &format!("event/wait/docker/{name}/stopped?duration=2"),
            None,
        )
        .await;
    let took = t0.elapsed();
    late.assert_error(408, Some("wait_timeout"));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(3500),
        "answered after {took:?}"
    );

    // Bad state and duration name their field.
    let bad_state = alice
        .send(
            Method::GET,
            &format!("event/wait/docker/{name}/paused"),
            None,
        )
        .await;
    stevedore_e2e::assert_names(&bad_state, "state");
    for d in ["0", "301", "x", "-5"] {
        let a = alice
            .send(
                Method::GET,
                &format!("event/wait/docker/{name}/running?duration={d}"),
                None,
            )
            .await;
        stevedore_e2e::assert_names(&a, "duration");
    }
    let bad_type = alice
        .send(Method::GET, &format!("event/wait/kvm/{name}/running"), None)
        .await;
    stevedore_e2e::assert_names(&bad_type, "type");

    // Bob may not wait on alice's container, as he may not read it (the
    // same refusal).
    let theirs = bob
        .send(
            Method::GET,
            &format!("event/wait/docker/{name}/running?duration=2"),
            None,
        )
        .await;
    theirs.assert_error(403, None);
    let read = bob
        .send(Method::GET, &format!("container/docker/{name}"), None)
        .await;
    assert_eq!(theirs.body["error"]["reason"], read.body["error"]["reason"]);
    let unknown = alice
        .send(
            Method::GET,
            &format!("event/wait/docker/{}/running?duration=2", unique("none")),
            None,
        )
        .await;
    unknown.assert_error(404, None);

    // Removing it through the API leaves the engine as it was.
    let del = alice
        .send(Method::DELETE, &format!("container/docker/{name}"), None)
        .await;
    assert_eq!(del.status, 200, "{:?}", del.body);
    assert!(!docker_ok(&["inspect", &name]));
}

/// The messages of `GET event` as `(category, user, json)`.
fn parsed(page: &Value) -> Vec<(String, String, Value)> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let m = m.as_str().unwrap();
            let mut parts = m.splitn(4, ':');
            let (cat, user, ts, json) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts
                    .next()
                    .unwrap_or_else(|| panic!("Category:User:Timestamp:JSON: {m}")),
            );
            assert!(ts.parse::<u64>().is_ok(), "{m}");
            (
                cat.to_string(),
                user.to_string(),
                serde_json::from_str(json).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn events_show_the_callers_tasks_only() {
    let server = server().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let admin = server.admin().await;
    let a = alice.submit_ok("noop", "{}").await;
    let b = bob.submit_ok("noop", "{}").await;
    alice.wait_state(a, "completed").await;
    bob.wait_state(b, "completed").await;

    let mine = eventually_async(
        "alice's completed task in `event`",
        Duration::from_secs(10),
        || async {
            let page = get(&alice, "event").await;
            let done = parsed(&page)
                .iter()
                .any(|(_, _, j)| j["tid"] == a && j["state"] == "completed");
            done.then_some(page)
        },
    )
    .await;
    assert_keys("event page", &mine, EVENT_PAGE);
    let events = parsed(&mine);
    assert!(
        events
            .iter()
            .all(|(c, u, _)| c == "background" && u == "alice"),
        "{mine}"
    );
    assert!(
        events.iter().all(|(_, _, j)| j["tid"] != b),
        "bob's task: {mine}"
    );
    let done = events
        .iter()
        .find(|(_, _, j)| j["tid"] == a && j["state"] == "completed")
        .unwrap();
    assert_eq!(done.2["category"], "noop");
    assert_eq!(done.2["result"], 0);
    let states: Vec<&Value> = events
        .iter()
        .filter(|(_, _, j)| j["tid"] == a)
        .map(|(_, _, j)| &j["state"])
        .collect();
    assert_eq!(
        states,
        [&json!("completed"), &json!("running"), &json!("waiting")],
        "newest first, one per state"
    );

    // The admin sees both users' tasks.
    let all = eventually_async(
        "both tasks in the admin's `event`",
        Duration::from_secs(10),
        || async {
            let page = get(&admin, "event").await;
            let tids: BTreeSet<i64> = parsed(&page)
                .iter()
                .filter_map(|(_, _, j)| j["tid"].as_i64())
                .collect();
            (tids.contains(&a) && tids.contains(&b)).then_some(page)
        },
    )
    .await;
    // Paging by sequence number: from `offset` on there is nothing new yet.
    let offset = all["offset"].as_u64().unwrap();
    let later = get(&admin, &format!("event?index={offset}")).await;
    assert_eq!(later["messages"], json!([]), "{later}");
    assert_eq!(later["offset"], offset);
    let c = alice.submit_ok("noop", "{}").await;
    alice.wait_state(c, "completed").await;
    let newer = eventually_async(
        "the new task's events after `offset`",
        Duration::from_secs(10),
        || async {
            let page = get(&alice, &format!("event?index={offset}")).await;
            (parsed(&page).len() == 3).then_some(page)
        },
    )
    .await;
    assert!(
        parsed(&newer).iter().all(|(_, _, j)| j["tid"] == c),
        "{newer}"
    );
    let none_for_bob = get(&bob, &format!("event?index={offset}")).await;
    assert_eq!(none_for_bob["messages"], json!([]), "{none_for_bob}");

    for (q, field) in [("index=x", "index"), ("offset=-1", "offset")] {
        stevedore_e2e::assert_names(
            &alice.send(Method::GET, &format!("event?{q}"), None).await,
            field,
        );
    }
}

/// Every record `c` may read (the most one page holds).
async fn records(c: &Client, query: &str) -> Vec<Value> {
    let sep = if query.is_empty() { "" } else { "&" };
    get(c, &format!("log?limit=1000{sep}{query}"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// CSV rows, read by Python's `csv` module.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.reader(sys.stdin, strict=True))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "csv: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_log_records_calls_filters_exports_survives_a_restart_and_only_an_admin_empties_it() {
    let mut server = server().await;
    let secret = "hunter2-never-logged-9f3c";
    // A refused login with a password that must appear nowhere.
    let stranger = server.client();
    stranger
        .login("alice", secret)
        .await
        .assert_error(401, None);
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let admin = server.admin().await;
    let task = alice.submit_ok("noop", "{}").await;
    alice.wait_state(task, "completed").await;
    let del = alice.delete(&task.to_string()).await;
    assert_eq!(del.status, 200, "{:?}", del.body);
    let missing = alice.delete("999999").await;
    assert_eq!(missing.status, 404, "{:?}", missing.body);
    // A read is no record.
    get(&alice, "background/").await;

    let submit_msg = format!("/background/noop: 200 (task {task})");
    let delete_msg = format!("DELETE /containerstation/api/v1/background/{task}: 200");
    let all = eventually_async(
        "the submit and the delete in the log",
        Duration::from_secs(10),
        || async {
            let all = records(&admin, "").await;
            let has = |m: &str| {
                all.iter()
                    .any(|r| r["message"].as_str().unwrap().contains(m))
            };
            (has(&submit_msg) && has(&delete_msg) && has("background/999999: 404")).then_some(all)
        },
    )
    .await;
    for r in &all {
        assert_keys("log record", r, RECORD);
        assert!(
            !r["message"].as_str().unwrap().contains('?'),
            "no query string: {r}"
        );
    }
    let find = |m: &str| {
        all.iter()
            .find(|r| r["message"].as_str().unwrap().contains(m))
            .unwrap()
            .clone()
    };
    let submit = find(&submit_msg);
    assert_eq!(
        (
            submit["user"].as_str(),
            submit["level"].as_str(),
            submit["category"].as_str()
        ),
        (Some("alice"), Some("INFO"), Some("container"))
    );
    assert!(submit["message"]
        .as_str()
        .unwrap()
        .starts_with("POST /containerstation/api/v1/"));
    let delete = find(&delete_msg);
    assert_eq!(delete["user"], "alice");
    let not_found = find("background/999999: 404");
    assert_eq!(
        (not_found["level"].as_str(), not_found["user"].as_str()),
        (Some("WARN"), Some("alice"))
    );
    // Logins: the refused one has no user, the others name theirs; no GET is recorded.
    let logins: Vec<&Value> = all
        .iter()
        .filter(|r| r["message"].as_str().unwrap().contains("/login:"))
        .collect();
    let outcomes: BTreeSet<(String, String)> = logins
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("-", "WARN"),
        ("alice", "INFO"),
        ("bob", "INFO"),
        ("admin", "INFO"),
    ] {
        assert!(
            outcomes.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {outcomes:?}"
        );
    }
    assert!(logins.iter().all(|r| r["category"] == "system"));
    assert!(all
        .iter()
        .all(|r| !r["message"].as_str().unwrap().starts_with("GET ")));
    let ids: Vec<u64> = all.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    // Filters.
    let only_alice = records(&admin, "user=alice").await;
    assert!(!only_alice.is_empty() && only_alice.iter().all(|r| r["user"] == "alice"));
    let warns = records(&admin, "level=WARN").await;
    assert!(
        warns.len() >= 2 && warns.iter().all(|r| r["level"] == "WARN"),
        "{warns:?}"
    );
    let two_levels = records(&admin, "level=warn,info").await;
    assert_eq!(two_levels.len(), all.len());
    let system = records(&admin, "category=system,image").await;
    assert!(system.len() >= 4 && system.iter().all(|r| r["category"] == "system"));
    let text = records(&admin, "text=BACKGROUND/NOOP").await;
    assert_eq!(text.len(), 1, "{text:?}");
    let page = get(&admin, "log?limit=1&offset=1").await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], all[1]["id"]);
    assert_eq!(
        get(&admin, "log").await.as_array().unwrap().len(),
        all.len().min(20)
    );
    let ts = submit["ts"].as_u64().unwrap();
    let window = records(&admin, &format!("start={ts}&end={ts}")).await;
    assert!(window.iter().any(|r| r["id"] == submit["id"]), "{window:?}");
    let future = records(&admin, &format!("start={}", ts + 3600)).await;
    assert!(future.is_empty());
    for (q, field) in [
        ("level=LOUD", "level"),
        ("category=kitchen", "category"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("start=yesterday", "start"),
        ("end=-1", "end"),
        ("offset=x", "offset"),
    ] {
        stevedore_e2e::assert_names(
            &admin.send(Method::GET, &format!("log?{q}"), None).await,
            field,
        );
    }

    // A non-admin reads only their own records.
    let bobs = records(&bob, "").await;
    assert!(
        !bobs.is_empty() && bobs.iter().all(|r| r["user"] == "bob"),
        "{bobs:?}"
    );
    assert!(records(&bob, "user=alice").await.is_empty());

    // CSV export: the recorded header, one row per record, quoted as needed.
    let export = admin
        .http()
        .get(format!("{}/log/export", admin.api))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    assert!(export.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv_text = export.text().await.unwrap();
    let rows = read_csv(&csv_text);
    assert_eq!(rows[0], ["Date", "Level", "Category", "User", "Message"]);
    assert_eq!(rows.len() - 1, all.len(), "{csv_text}");
    let row = rows
        .iter()
        .find(|r| r[4] == submit["message"].as_str().unwrap())
        .expect("the submit's row");
    assert_eq!(
        (row[1].as_str(), row[2].as_str(), row[3].as_str()),
        ("INFO", "container", "alice")
    );
    assert_eq!(row[0].len(), "2021-08-11 16:42:51.676762".len(), "{row:?}");
    let bob_rows = read_csv(
        &bob.http()
            .get(format!("{}/log/export", bob.api))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(bob_rows[1..].iter().all(|r| r[3] == "bob"), "{bob_rows:?}");

    // The password is in no answer, no log line and no file of the data folder.
    assert!(!csv_text.contains(secret));
    assert!(!records(&admin, &format!("text={secret}"))
        .await
        .iter()
        .any(|_| true));
    assert!(!server.logs().contains(secret));
    let grep = Command::new("grep")
        .args(["-r", "-l", "-a", secret])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // A logout names the user it ended.
    let out = bob.send(Method::PUT, "logout", None).await;
    assert_eq!(out.status, 200, "{:?}", out.body);
    let logout = eventually_async(
        "bob's logout in the log",
        Duration::from_secs(10),
        || async { records(&admin, "text=/logout:").await.into_iter().next() },
    )
    .await;
    assert_eq!(
        (logout["user"].as_str(), logout["level"].as_str()),
        (Some("bob"), Some("INFO"))
    );

    // The log survives a restart.
    server.restart().await;
    let admin = server.admin().await;
    let alice = user(&server, "alice").await;
    let after = records(&admin, "").await;
    assert!(after
        .iter()
        .any(|r| r["id"] == submit["id"] && r["message"] == submit["message"]));
    assert!(after.iter().any(|r| r["id"] == logout["id"]));

    // Only an admin empties it.
    alice
        .send(Method::DELETE, "log", None)
        .await
        .assert_error(403, Some("admin_only"));
    let newest = eventually_async(
        "alice's refused DELETE log in the log",
        Duration::from_secs(10),
        || async {
            let r = records(&admin, "").await;
            r.iter()
                .any(|r| {
                    r["message"].as_str().unwrap().starts_with("DELETE ")
                        && r["message"].as_str().unwrap().ends_with("/log: 403")
                })
                .then_some(r)
        },
    )
    .await;
    let cleared = admin.send(Method::DELETE, "log", None).await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    assert_keys("DELETE log", &cleared.body, &[("records", Kind::Int)]);
    assert_eq!(
        cleared.body["records"].as_u64().unwrap() as usize,
        newest.len()
    );
    let top = newest[0]["id"].as_u64().unwrap();
    let left = eventually_async(
        "the DELETE log itself recorded",
        Duration::from_secs(10),
        || async {
            let r = records(&admin, "").await;
            (!r.is_empty()).then_some(r)
        },
    )
    .await;
    assert!(
        left.iter().all(|r| r["id"].as_u64().unwrap() > top),
        "only records newer than the clear: {left:?}"
    );
    assert!(left
        .iter()
        .any(|r| r["user"] == "admin" && r["message"].as_str().unwrap().ends_with("/log: 200")));
}

/// 32 random bytes: the sealing key every node of a database shares.
fn shared_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut key)
        .unwrap();
    key
}

#[tokio::test]
async fn with_a_shared_database_every_nodes_calls_are_in_one_log() {
    let db = stevedore_e2e::fresh_database("audit");
    let key = shared_key();
    let node = |name: &str| {
        let mut o = Options::with_plugins(&["noop"])
            .config(&users_config())
            .env("STEVEDORE_DATABASE_URL", &db)
            .env("STEVEDORE_NODE", name);
        o.data_files.push(("secret.key".into(), key.clone()));
        o
    };
    let a = Server::start(node("audit-a")).await;
    let b = Server::start(node("audit-b")).await;
    let alice = user(&a, "alice").await;
    let task = alice.submit_ok("noop", "{}").await;
    let admin_b = b.admin().await;
    let submit = format!("/background/noop: 200 (task {task})");
    let seen = eventually_async(
        "node a's submit in node b's log",
        Duration::from_secs(10),
        || async {
            let all = records(&admin_b, "user=alice").await;
            all.into_iter()
                .find(|r| r["message"].as_str().unwrap().contains(&submit))
        },
    )
    .await;
    assert_keys("log record", &seen, RECORD);
    // And node b's own calls are there for node a.
    let admin_a = a.admin().await;
    eventually_async(
        "both nodes' admin logins in node a's log",
        Duration::from_secs(10),
        || async {
            let logins = records(&admin_a, "user=admin&category=system").await;
            (logins.len() >= 2).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn waits_are_capped_per_user_and_end_when_the_client_goes_away() {
    let server = server().await;
    let admin = server.admin().await;
    docker(&["pull", "-q", "busybox:latest"]);
    let name = unique("capped");
    let _cleanup = Containers(vec![name.clone()]);
    docker(&["create", "--name", &name, "busybox:latest", "true"]);
    let path = format!(
        "{}/event/wait/docker/{name}/running?duration=300",
        admin.api
    );
    // 17 waits whose client gives up after 8 s (the server would wait
    // 300): 16 are admitted, one is refused at once.
    let waits: Vec<_> = (0..17)
        .map(|_| {
            let req = admin.http().get(&path).timeout(Duration::from_secs(8));
            tokio::spawn(async move {
                match req.send().await {
                    Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
                    Err(e) => {
                        assert!(e.is_timeout(), "{e}");
                        None
                    }
                }
            })
        })
        .collect();
    let mut answered = Vec::new();
    for w in waits {
        answered.extend(w.await.unwrap());
    }
    assert_eq!(answered.len(), 1, "one refused, 16 waiting: {answered:?}");
    assert_eq!(answered[0].0, 429);
    assert!(answered[0].1.contains("too_many_waits"), "{answered:?}");
    let short = format!("event/wait/docker/{name}/running?duration=1");
    // Their places are given back once the clients went away.
    let again = eventually_async("a wait admitted again", Duration::from_secs(10), || async {
        let a = admin.send(Method::GET, &short, None).await;
        (a.status != 429).then_some(a)
    })
    .await;
    again.assert_error(408, Some("wait_timeout"));
}

#[tokio::test]
async fn a_wait_on_an_lxc_container_answers_once_it_runs() {
    let path = LxcPath::new();
    let server =
        Server::start(Options::with_plugins(&["create", "image_download"]).test_lxc(path.path()))
            .await;
    let admin = server.admin().await;
    let name = "wtest";
    let made = admin.create_lxc_busybox(name).await;
    assert_eq!(made.status, 200, "{:?}\n{}", made.body, server.logs());
    let stop = admin
        .send(Method::PUT, &format!("container/lxc/{name}/stop"), None)
        .await;
    assert_eq!(stop.status, 200, "{:?}", stop.body);
    assert_eq!(stop.body["state"], "stopped");

    let waiting = {
        let admin = admin.clone();
        let path = format!("event/wait/lxc/{name}/running?duration=60");
        tokio::spawn(async move { admin.send(Method::GET, &path, None).await })
    };
    // Stopped: a short wait for `running` ends in 408.
    admin
        .send(
            Method::GET,
            &format!("event/wait/lxc/{name}/running?duration=1"),
            None,
        )
        .await
        .assert_error(408, Some("wait_timeout"));
    assert!(!waiting.is_finished(), "answered while stopped");
    let start = admin
        .send(Method::PUT, &format!("container/lxc/{name}/start"), None)
        .await;
    assert_eq!(start.status, 200, "{:?}", start.body);
    let waited = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the wait answered once the container ran")
        .unwrap();
    assert_eq!(waited.status, 200, "{:?}", waited.body);
    assert_eq!(waited.body["state"], "running");
    assert_eq!(waited.body["type"], "lxc");
    assert_eq!(waited.body["name"], name);
    // Running: a wait for `running` answers at once.
    let now = admin
        .send(
            Method::GET,
            &format!("event/wait/lxc/{name}/running?duration=5"),
            None,
        )
        .await;
    assert_eq!(now.body["state"], "running", "{:?}", now.body);
    let gone = admin
        .send(Method::DELETE, &format!("container/lxc/{name}"), None)
        .await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
}
