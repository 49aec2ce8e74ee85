//! Access between users (issue 10): a second configured user can neither
//! see, delete nor cancel another user's tasks, and cannot push with the
//! registry credentials another user asked the server to remember. (That
//! every route refuses a request without a session is tested on the route
//! table itself: `host/src/api/access_tests.rs`.)

use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{docker, hash_password, unique, Client, Options, Server};

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
    assert_eq!(a.body["isAdmin"], false);
    c
}

fn ids(tasks: &[Value]) -> Vec<i64> {
    tasks.iter().map(|t| t["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn a_second_user_can_neither_see_delete_nor_cancel_anothers_tasks() {
    let server = Server::start(
        Options::with_plugins(&["noop", "sleepy"])
            .env("STEVEDORE_WORKERS", "1")
            .config(&users("")),
    )
    .await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;

    // Alice: one task running (deletable, so its owner could cancel it),
    // one waiting behind it, one finished.
    let done = alice.submit_ok("noop", "{}").await;
    alice.wait_state(done, "completed").await;
    let running = alice.submit_ok("sleepy", r#"{"seconds": 4}"#).await;
    alice.wait_state(running, "running").await;
    let waiting = alice.submit_ok("noop", r#"{"count": 1}"#).await;
    let mine = bob.submit_ok("noop", "{}").await;

    // Bob sees none of them, by any filter.
    assert_eq!(ids(&bob.list(None).await), vec![mine]);
    assert!(bob.list(Some("sleepy")).await.is_empty());
    // He can delete (cancel) none of them by id...
    for id in [done, running, waiting] {
        bob.delete(&id.to_string())
            .await
            .assert_error(403, Some("not_yours"));
    }
    // ...nor through the bulk forms, which touch only his own.
    let gone = bob.delete("sleepy").await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    assert_eq!(gone.body, json!([]));
    let gone = bob.delete("noop").await;
    assert_eq!(gone.status, 200);
    assert!(
        gone.body.as_array().unwrap().iter().all(|v| v != done),
        "{:?}",
        gone.body
    );
    let gone = bob.delete("").await;
    assert_eq!(gone.status, 200);
    assert!(!gone.body.to_string().contains(&done.to_string()));

    // Alice's tasks are untouched: the running one was not cancelled and
    // ends on its own, the waiting one runs after it.
    let t = alice.task(running).await.expect("still listed");
    assert_eq!(t["state"], "running", "{t}");
    let t = alice.wait_state(running, "completed").await;
    assert_eq!(t["result"], 0, "{t}");
    alice.wait_state(waiting, "completed").await;
    let listed = ids(&alice.list(None).await);
    for id in [done, running, waiting] {
        assert!(listed.contains(&id), "{id} lost: {listed:?}");
    }
    // Bob's event stream carries none of Alice's tasks either.
    let resp = bob
        .http()
        .get(format!("{}/background/events", bob.api))
        .send()
        .await
        .unwrap();
    let mut events = stevedore_e2e::SseReader::new(resp);
    let hers = alice.submit_ok("noop", "{}").await;
    alice.wait_state(hers, "completed").await;
    let his = bob.submit_ok("noop", "{}").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, data) = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("bob's own event in time")
            .expect("stream open");
        let t: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(t["user"], "bob", "bob saw {t}");
        if t["id"] == his && t["state"] == "completed" {
            break;
        }
    }
}

#[tokio::test]
async fn remembered_credentials_serve_only_the_user_who_gave_them() {
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let config = users(&format!("[registries.secure]\nurl = \"{registry}\"\n"));
    let server = Server::start(
        Options::with_plugins(&["image_push"])
            .test_engine()
            .config(&config),
    )
    .await;
    docker(&["pull", "busybox:latest"]);
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let repo = format!("stevedore/{}", unique("creds"));
    let push = |tag: &str| {
        json!({"image": "busybox", "tag": "latest", "newImage": repo, "newTag": tag,
               "registry": registry})
    };
    let ended = |c: Client, id: i64| async move {
        c.wait_until(id, Duration::from_secs(60), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
    };

    // Alice pushes with her password and asks us to remember it.
    let mut first = push("alice1");
    first["username"] = env("STEVEDORE_TEST_AUTH_USER").into();
    first["password"] = env("STEVEDORE_TEST_AUTH_PASSWORD").into();
    first["rememberme"] = true.into();
    let id = alice.submit_ok("image_push", &first.to_string()).await;
    let t = ended(alice.clone(), id).await;
    assert_eq!(t["state"], "completed", "{t}");

    // Bob, giving no credentials, is not lent hers: the registry refuses him.
    let id = bob.submit_ok("image_push", &push("bob1").to_string()).await;
    let t = ended(bob.clone(), id).await;
    assert_eq!(
        t["state"], "error",
        "bob pushed with alice's credentials: {t}"
    );
    let detail = t["detail_state"].as_str().unwrap();
    assert!(
        [
            "unauthorized",
            "authentication required",
            "no basic auth credentials"
        ]
        .iter()
        .any(|m| detail.contains(m)),
        "the registry's refusal: {detail}"
    );
    // Naming her user name does not lend him her password either.
    let mut as_her = push("bob2");
    as_her["username"] = env("STEVEDORE_TEST_AUTH_USER").into();
    let a = bob.submit("image_push", &as_her.to_string()).await;
    if a.status == 200 {
        let t = ended(bob.clone(), a.body["id"].as_i64().unwrap()).await;
        assert_eq!(t["state"], "error", "{t}");
    } else {
        a.assert_error(400, Some("invalid_params"));
    }

    // Alice herself pushes again without a password: hers are remembered.
    let id = alice
        .submit_ok("image_push", &push("alice2").to_string())
        .await;
    let t = ended(alice.clone(), id).await;
    assert_eq!(t["state"], "completed", "remembered for alice: {t}");

    // The registry holds only Alice's tags.
    let tags: Value = reqwest::Client::new()
        .get(format!("http://{registry}/v2/{repo}/tags/list"))
        .basic_auth(
            env("STEVEDORE_TEST_AUTH_USER"),
            Some(env("STEVEDORE_TEST_AUTH_PASSWORD")),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut got: Vec<String> = serde_json::from_value(tags["tags"].clone()).unwrap();
    got.sort();
    assert_eq!(got, vec!["alice1", "alice2"]);
}
