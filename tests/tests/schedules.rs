//! Scheduled tasks (issue 31) on the real server: a schedule with a
//! seconds field fires `noop` tasks owned by its user, pause stops it and
//! resume restarts it, delete ends it; another user can neither see nor
//! delete it; bad `cron`, `timezone` and `params` are 400 naming the field;
//! the owner's policy is checked again when it fires (changed in the
//! configuration, then a restart: `last_error`, no task); after downtime
//! past several occurrences it fires once; and on two nodes of one
//! PostgreSQL database, `* * * * *` for three minutes gives exactly one
//! task per minute.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{assert_names, hash_password, Answer, Client, Options, Server};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// `alice` and `bob`, two non-admins, plus `extra` configuration.
fn users(extra: &str) -> String {
    format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n\n{extra}",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    )
}

async fn login(server: &Server, user: &str) -> Client {
    let c = server.client();
    let a = c.login(user, &format!("{user}-pw")).await;
    assert_eq!(a.status, 200, "{user} login: {:?}", a.body);
    c
}

async fn create(c: &Client, body: &str) -> Answer {
    c.send(Method::POST, "schedules", Some(body)).await
}

async fn create_ok(c: &Client, body: &str) -> Value {
    let a = create(c, body).await;
    assert_eq!(a.status, 201, "create: {:?}", a.body);
    a.body
}

async fn get(c: &Client, id: i64) -> Answer {
    c.send(Method::GET, &format!("schedules/{id}"), None).await
}

/// The caller's `noop` tasks, by id.
async fn noop_tasks(c: &Client) -> Vec<Value> {
    let mut tasks = c.list(Some("noop")).await;
    tasks.sort_by_key(|t| t["id"].as_i64());
    tasks
}

fn epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Poll until `c` has more than `n` `noop` tasks; returns them.
async fn more_than(c: &Client, n: usize, deadline: Duration) -> Vec<Value> {
    stevedore_e2e::eventually_async(&format!("more than {n} tasks"), deadline, || async {
        let tasks = noop_tasks(c).await;
        (tasks.len() > n).then_some(tasks)
    })
    .await
}

#[tokio::test]
async fn a_schedule_fires_pauses_resumes_and_is_deleted_by_its_owner_only() {
    let server = Server::start(Options::with_plugins(&["noop"]).config(&users(""))).await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;

    let made = create_ok(
        &alice,
        r#"{"category":"noop","params":{"count":1,"password":"hunter2-schedule"},
            "cron":"*/5 * * * * *","timezone":"Europe/Paris","name":"often"}"#,
    )
    .await;
    let id = made["id"].as_i64().unwrap();
    assert_eq!(made["owner"], "alice");
    assert_eq!(made["name"], "often");
    assert_eq!(made["paused"], false);
    assert_eq!(made["params"]["password"], "******", "{made:?}");
    assert!(
        made["next_run"].as_str().unwrap().ends_with("+01:00"),
        "{made:?}"
    );
    assert!(!made.to_string().contains("hunter2-schedule"));

    // It fires: tasks owned by alice, secrets masked, run with the real ones.
    let tasks = more_than(&alice, 1, Duration::from_secs(20)).await;
    for t in &tasks {
        assert_eq!(t["user"], "alice");
        assert_eq!(t["params"]["password"], "******");
    }
    let id_of = |t: &Value| t["id"].as_i64().unwrap();
    alice.wait_state(id_of(&tasks[0]), "completed").await;
    let now = get(&alice, id).await.body;
    assert!(now["last_task"].as_i64().is_some(), "{now:?}");
    assert!(now["last_run"].is_string(), "{now:?}");
    assert!(now["last_error"].is_null(), "{now:?}");
    assert!(!server.logs().contains("hunter2-schedule"));

    // Bob: not in his list, not his to read, pause or delete.
    let bobs = bob.send(Method::GET, "schedules", None).await;
    assert_eq!(bobs.status, 200);
    assert_eq!(bobs.body, Value::Array(Vec::new()));
    get(&bob, id).await.assert_error(403, Some("not_yours"));
    bob.send(Method::PUT, &format!("schedules/{id}/pause"), None)
        .await
        .assert_error(403, Some("not_yours"));
    bob.send(Method::DELETE, &format!("schedules/{id}"), None)
        .await
        .assert_error(403, Some("not_yours"));
    bob.send(Method::GET, "schedules?user=alice", None)
        .await
        .assert_error(403, Some("not_yours"));
    assert!(bob.list(Some("noop")).await.is_empty());
    // The admin sees it, and can filter by user.
    let admin = server.admin().await;
    let all = admin.send(Method::GET, "schedules?user=alice", None).await;
    assert_eq!(all.body.as_array().unwrap().len(), 1, "{:?}", all.body);

    // Paused: nothing fires over more than one period.
    let paused = alice
        .send(Method::PUT, &format!("schedules/{id}/pause"), None)
        .await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    assert_eq!(paused.body["paused"], true);
    let before = noop_tasks(&alice).await.len();
    // Not a synchronisation: the window in which no occurrence may fire.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        noop_tasks(&alice).await.len(),
        before,
        "a paused schedule fired"
    );

    // Resumed: it fires again.
    let resumed = alice
        .send(Method::PUT, &format!("schedules/{id}/resume"), None)
        .await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    assert_eq!(resumed.body["paused"], false);
    // Resuming again changes nothing.
    let again = alice
        .send(Method::PUT, &format!("schedules/{id}/resume"), None)
        .await;
    assert_eq!(again.body["next_run"], resumed.body["next_run"]);
    more_than(&alice, before, Duration::from_secs(20)).await;

    // Deleted: gone for its owner; the tasks it submitted stay.
    let gone = alice
        .send(Method::DELETE, &format!("schedules/{id}"), None)
        .await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    get(&alice, id)
        .await
        .assert_error(404, Some("unknown_schedule"));
    alice
        .send(Method::DELETE, &format!("schedules/{id}"), None)
        .await
        .assert_error(404, Some("unknown_schedule"));
    assert!(!noop_tasks(&alice).await.is_empty());
}

#[tokio::test]
async fn bad_schedules_are_refused_at_once_naming_the_field() {
    let server = Server::start(
        Options::with_plugins(&["noop", "sleepy"])
            .config(&users("[users.bob.policy]\ncategories = [\"sleepy\"]\n")),
    )
    .await;
    let alice = login(&server, "alice").await;
    for (body, field) in [
        (r#"{"category":"noop","cron":"61 * * * *"}"#, "cron"),
        (r#"{"category":"noop","cron":"* * *"}"#, "cron"),
        (r#"{"category":"noop"}"#, "cron"),
        (r#"{"category":"noop","cron":7}"#, "cron"),
        (
            r#"{"category":"noop","cron":"* * * * *","timezone":"Mars/Olympus"}"#,
            "timezone",
        ),
        (r#"{"cron":"* * * * *"}"#, "category"),
        (
            r#"{"category":"noop","cron":"* * * * *","params":"x"}"#,
            "params",
        ),
        (
            r#"{"category":"noop","cron":"* * * * *","name":"a\u0001b"}"#,
            "name",
        ),
    ] {
        assert_names(&create(&alice, body).await, field);
    }
    // The plugin's validation, as a submit answers it.
    let bad = create(
        &alice,
        r#"{"category":"noop","cron":"* * * * *","params":{"count":"many"}}"#,
    )
    .await;
    bad.assert_error(400, Some("invalid_params"));
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("count"),
        "{:?}",
        bad.body
    );
    create(&alice, r#"{"category":"nothing_here","cron":"* * * * *"}"#)
        .await
        .assert_error(404, Some("unknown_category"));
    create(&alice, "not json").await.assert_error(400, None);
    // Bob's policy allows `sleepy` only.
    let bob = login(&server, "bob").await;
    create(&bob, r#"{"category":"noop","cron":"* * * * *"}"#)
        .await
        .assert_error(403, Some("denied"));
    get(&alice, 0).await.assert_error(400, None);
    get(&alice, 424_242)
        .await
        .assert_error(404, Some("unknown_schedule"));
    // Nothing was stored.
    let mine = alice.send(Method::GET, "schedules", None).await;
    assert_eq!(mine.body, Value::Array(Vec::new()));
}

#[tokio::test]
async fn the_owners_policy_is_checked_again_when_it_fires() {
    let mut server =
        Server::start(Options::with_plugins(&["noop", "sleepy"]).config(&users(""))).await;
    let alice = login(&server, "alice").await;
    let made = create_ok(&alice, r#"{"category":"noop","cron":"*/2 * * * * *"}"#).await;
    let id = made["id"].as_i64().unwrap();
    more_than(&alice, 0, Duration::from_secs(20)).await;

    // Alice may no longer submit `noop`.
    std::fs::write(
        server.root.path().join("stevedore.toml"),
        users("[users.alice.policy]\ncategories = [\"sleepy\"]\n"),
    )
    .unwrap();
    server.stop();
    server.restart().await;
    let restarted = epoch();
    let alice = login(&server, "alice").await;
    let had = noop_tasks(&alice).await;
    let refused =
        stevedore_e2e::eventually_async("a refused firing", Duration::from_secs(20), || async {
            let s = get(&alice, id).await.body;
            s["last_error"].as_str().map(str::to_string)
        })
        .await;
    assert!(refused.contains("noop"), "{refused}");
    // The schedule stays, and goes on trying.
    let s = get(&alice, id).await.body;
    assert_eq!(s["paused"], false);
    assert!(s["next_run"].is_string());
    let now = noop_tasks(&alice).await;
    assert_eq!(now.len(), had.len(), "a refused firing stored a task");
    assert!(now.iter().all(|t| t["init"].as_i64().unwrap() <= restarted));
}

#[tokio::test]
async fn after_downtime_past_several_occurrences_it_fires_once() {
    let mut server = Server::start(Options::with_plugins(&["noop"]).config(&users(""))).await;
    let alice = login(&server, "alice").await;
    create_ok(&alice, r#"{"category":"noop","cron":"*/10 * * * * *"}"#).await;
    let first = more_than(&alice, 0, Duration::from_secs(30)).await;
    server.stop();
    // Down past at least two occurrences (every 10 s).
    tokio::time::sleep(Duration::from_secs(25)).await;
    server.restart().await;
    let alice = login(&server, "alice").await;
    let last_before = first.last().unwrap()["id"].as_i64().unwrap();
    // Wait for the catch-up and then the first regular firing after it.
    let tasks = stevedore_e2e::eventually_async(
        "a regular firing after the catch-up",
        Duration::from_secs(40),
        || async {
            let new: Vec<Value> = noop_tasks(&alice)
                .await
                .into_iter()
                .filter(|t| t["id"].as_i64().unwrap() > last_before)
                .collect();
            let catch_up = new.first()?["init"].as_i64()?;
            let next = (catch_up / 10 + 1) * 10;
            new.iter()
                .any(|t| t["init"].as_i64().unwrap() >= next)
                .then_some((new, next))
        },
    )
    .await;
    let (new, next) = tasks;
    let early: Vec<&Value> = new
        .iter()
        .filter(|t| t["init"].as_i64().unwrap() < next)
        .collect();
    assert_eq!(
        early.len(),
        1,
        "exactly one catch-up task for the missed occurrences: {new:?}"
    );
}

// ---- two nodes on one PostgreSQL database ------------------------------------

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

fn node(db: &str, key: &[u8], name: &str) -> Options {
    let mut o = Options::with_plugins(&["noop"])
        .config(&users(""))
        .env("STEVEDORE_DATABASE_URL", db)
        .env("STEVEDORE_NODE", name);
    o.data_files.push(("secret.key".into(), key.to_vec()));
    o
}

#[tokio::test]
async fn two_nodes_fire_each_minute_exactly_once() {
    let _ = env("STEVEDORE_TEST_DATABASE_URL");
    let db = stevedore_e2e::fresh_database("schedules");
    let key = shared_key();
    let (na, nb) = (
        stevedore_e2e::unique("sched-a"),
        stevedore_e2e::unique("sched-b"),
    );
    let a = Server::start(node(&db, &key, &na)).await;
    let b = Server::start(node(&db, &key, &nb)).await;
    let alice_a = login(&a, "alice").await;
    let alice_b = login(&b, "alice").await;
    let made = create_ok(&alice_a, r#"{"category":"noop","cron":"* * * * *"}"#).await;
    // Both nodes see it.
    let id = made["id"].as_i64().unwrap();
    assert_eq!(get(&alice_b, id).await.status, 200);

    // Three minute boundaries pass.
    let start = epoch();
    let third = (start / 60 + 3) * 60;
    let end = Instant::now() + Duration::from_secs((third - start) as u64 + 30);
    let tasks = loop {
        let tasks = noop_tasks(&alice_b).await;
        let past_third = tasks.iter().any(|t| t["init"].as_i64().unwrap() >= third);
        if past_third {
            break tasks;
        }
        assert!(
            Instant::now() < end,
            "three firings not within time: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Pause it so that no firing lands while the answer is read.
    alice_a
        .send(Method::PUT, &format!("schedules/{id}/pause"), None)
        .await;
    let tasks = {
        let mut all = noop_tasks(&alice_a).await;
        all.retain(|t| t["init"].as_i64().unwrap() <= third + 59);
        assert!(all.len() >= tasks.len());
        all
    };
    let mut per_minute: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for t in &tasks {
        let minute = t["init"].as_i64().unwrap() / 60;
        per_minute
            .entry(minute)
            .or_default()
            .push(t["node"].as_str().unwrap_or_default().to_string());
    }
    let minutes: Vec<i64> = per_minute.keys().copied().collect();
    assert!(minutes.len() >= 3, "{per_minute:?}");
    // None missing between the first and the last, none twice.
    assert_eq!(
        minutes,
        (minutes[0]..=*minutes.last().unwrap()).collect::<Vec<_>>(),
        "a minute was missed: {per_minute:?}"
    );
    for (minute, nodes) in &per_minute {
        assert_eq!(nodes.len(), 1, "minute {minute} fired {nodes:?}");
    }
    let by_a = per_minute.values().filter(|n| n[0] == na).count();
    stevedore_e2e::report(&format!(
        "schedules on two nodes: {} minutes, {} fired by {na}, {} by {nb}",
        per_minute.len(),
        by_a,
        per_minute.len() - by_a
    ));
}
