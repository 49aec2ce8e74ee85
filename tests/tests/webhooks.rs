//! Webhooks (issue 31) on the real server, with a receiver of the test's
//! own (an axum server on 127.0.0.1): a completed and a failed `noop`
//! task deliver signed events (checked with the secret), the category
//! filter holds, another user's webhook gets nothing of yours, an admin's
//! `[[webhooks]]` gets every user's; a receiver that answers 500 first,
//! then a server restarted mid-retry, still gets the delivery, once per
//! event id; a task running when the server is killed (SIGKILL) delivers
//! its `task.error` (interrupted) after the restart, once; a `url` to a
//! refused address is a 400 naming `url`, and a configured one fails its
//! delivery with a clear error; the secret is in no answer, event or log
//! line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{
    assert_names, eventually, eventually_async, hash_password, Client, Options, Server,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    hook: String,
    status: u16,
    signature: String,
    event_header: String,
    idempotency: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Got>>,
    /// How many more 500s a hook answers first.
    fail_first: Mutex<HashMap<String, usize>>,
}

/// A receiver on 127.0.0.1: `POST /{hook}` records the request.
struct Receiver {
    port: u16,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let inbox = Arc::new(Inbox::default());
        let app = axum::Router::new()
            .route("/{hook}", axum::routing::post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { port, inbox, task }
    }

    fn url(&self, hook: &str) -> String {
        format!("http://127.0.0.1:{}/{hook}", self.port)
    }

    /// The requests `hook` answered 2xx.
    fn delivered(&self, hook: &str) -> Vec<Got> {
        self.inbox
            .got
            .lock()
            .iter()
            .filter(|g| g.hook == hook && g.status < 300)
            .cloned()
            .collect()
    }

    fn all(&self, hook: &str) -> Vec<Got> {
        self.inbox
            .got
            .lock()
            .iter()
            .filter(|g| g.hook == hook)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(inbox): State<Arc<Inbox>>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let fail = {
        let mut f = inbox.fail_first.lock();
        match f.get_mut(&hook) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    inbox.got.lock().push(Got {
        hook,
        status: status.as_u16(),
        signature: header("x-stevedore-signature"),
        event_header: header("x-stevedore-event"),
        idempotency: header("idempotency-key"),
        body: body.to_vec(),
    });
    let mut answer = HeaderMap::new();
    if fail {
        answer.insert("retry-after", "3".parse().unwrap());
    }
    (status, answer)
}

/// Check `got`'s `X-Stevedore-Signature` with `secret`, as a receiver
/// would: HMAC-SHA256 over `"{t}.{body}"`, `t` recent.
fn assert_signed(got: &Got, secret: &str) {
    let mut t = None;
    let mut v1 = None;
    for part in got.signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t="), v1.expect("v1="));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - t).abs() < 300, "an old timestamp: {t}");
    let mut mac = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&got.body);
    mac.verify_slice(&hex::decode(&v1).unwrap())
        .expect("the signature verifies with the webhook's secret");
    let mut wrong = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(b"another secret").unwrap();
    wrong.update(format!("{t}.").as_bytes());
    wrong.update(&got.body);
    assert!(wrong.verify_slice(&hex::decode(&v1).unwrap()).is_err());
}

/// `alice` and `bob`, two non-admins, loopback allowed for webhooks, plus `extra`.
fn config(extra: &str) -> String {
    format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n\n\
         [webhooks_policy]\nallow_hosts = [\"127.0.0.1\"]\n\n{extra}",
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

async fn create(c: &Client, body: Value) -> i64 {
    let a = c
        .send(Method::POST, "webhooks", Some(&body.to_string()))
        .await;
    assert_eq!(a.status, 201, "create: {:?}", a.body);
    assert!(a.body.get("secret").is_none(), "{:?}", a.body);
    a.body["id"].as_i64().unwrap()
}

async fn deliveries(c: &Client, id: i64) -> Vec<Value> {
    let a = c
        .send(Method::GET, &format!("webhooks/{id}/deliveries"), None)
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn tasks_deliver_signed_events_to_their_owners_webhooks_only() {
    let rx = Receiver::start().await;
    let server = Server::start(Options::with_plugins(&["noop"]).config(&config(&format!(
        "[[webhooks]]\nurl = \"{}\"\nevents = [\"task.error\"]\nsecret = \"cfg-secret-3141\"\n\n\
         [[webhooks]]\nurl = \"http://127.0.0.2:9/refused\"\nevents = [\"task.completed\"]\nsecret = \"cfg-secret-2718\"\n",
        rx.url("admin")
    ))))
    .await;
    let admin = server.admin().await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let secret = "whsec_alice_5c1e7f";
    let hook = create(
        &alice,
        serde_json::json!({"url": rx.url("alice"), "events": ["task.completed", "task.error"],
                           "categories": ["noop"], "secret": secret}),
    )
    .await;
    let filtered = create(
        &alice,
        serde_json::json!({"url": rx.url("filtered"), "events": ["task.completed", "task.error"],
                           "categories": ["image_remove"], "secret": "whsec_filtered"}),
    )
    .await;
    let bobs = create(
        &bob,
        serde_json::json!({"url": rx.url("bob"), "events": ["task.started", "task.completed", "task.error"],
                           "secret": "whsec_bob_9a8b"}),
    )
    .await;

    // Bad input is a 400 naming the field; refused addresses too.
    for (body, field) in [
        (
            serde_json::json!({"url": "http://127.0.0.2:9/", "events": ["task.error"], "secret": "s"}),
            "url",
        ),
        (
            serde_json::json!({"url": "http://169.254.169.254/latest", "events": ["task.error"], "secret": "s"}),
            "url",
        ),
        (
            serde_json::json!({"url": "http://[::1]:9/", "events": ["task.error"], "secret": "s"}),
            "url",
        ),
        (
            serde_json::json!({"url": "http://[::ffff:10.0.0.1]:9/", "events": ["task.error"], "secret": "s"}),
            "url",
        ),
        (
            serde_json::json!({"url": "file:///etc/passwd", "events": ["task.error"], "secret": "s"}),
            "url",
        ),
        (
            serde_json::json!({"url": rx.url("x"), "events": ["task.done"], "secret": "s"}),
            "events",
        ),
        (
            serde_json::json!({"url": rx.url("x"), "events": ["task.error"]}),
            "secret",
        ),
        (
            serde_json::json!({"url": rx.url("x"), "events": ["task.error"], "secret": "s", "categories": "noop"}),
            "categories",
        ),
    ] {
        let a = alice
            .send(Method::POST, "webhooks", Some(&body.to_string()))
            .await;
        a.assert_error(400, None);
        assert_names(&a, field);
    }
    // Another user's webhook is not yours.
    bob.send(Method::GET, &format!("webhooks/{hook}"), None)
        .await
        .assert_error(403, Some("not_yours"));
    bob.send(Method::DELETE, &format!("webhooks/{hook}"), None)
        .await
        .assert_error(403, Some("not_yours"));
    alice
        .send(Method::GET, "webhooks/999999", None)
        .await
        .assert_error(404, None);

    let ok = alice
        .submit_ok("noop", r#"{"password":"hunter2-task-secret"}"#)
        .await;
    let failed = alice.submit_ok("noop", r#"{"fail":true}"#).await;
    alice.wait_state(ok, "completed").await;
    alice.wait_state(failed, "error").await;

    let got = eventually("alice's two deliveries", DEADLINE, || {
        let d = rx.delivered("alice");
        (d.len() >= 2).then_some(d)
    })
    .await;
    let mut seen = HashMap::new();
    for g in &got {
        assert_signed(g, secret);
        let body = g.json();
        assert_eq!(g.event_header, body["id"].as_str().unwrap());
        assert_eq!(g.idempotency, body["id"].as_str().unwrap());
        assert!(body["time"].as_str().unwrap().ends_with('Z'));
        let task = &body["task"];
        assert_eq!(task["user"], "alice");
        seen.insert(
            task["id"].as_i64().unwrap(),
            (body["event"].clone(), task.clone()),
        );
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(seen[&ok].0, "task.completed");
    assert_eq!(seen[&ok].1["state"], "completed");
    assert_eq!(seen[&ok].1["params"]["password"], "******");
    assert_eq!(seen[&failed].0, "task.error");
    assert_eq!(seen[&failed].1["detail_state"], "failed as asked");
    // The task as `GET background/{id}` shows it.
    let shown = alice.task(ok).await.unwrap();
    assert_eq!(seen[&ok].1, shown);

    // The configured webhook gets every user's errors.
    let admin_got = eventually("the configured webhook's delivery", DEADLINE, || {
        let d = rx.delivered("admin");
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_signed(&admin_got[0], "cfg-secret-3141");
    assert_eq!(admin_got[0].json()["task"]["id"], failed);
    // The configured one to a refused address fails with a clear error.
    let refused = eventually_async("the refused delivery", DEADLINE, || async {
        let d = deliveries(&admin, -2).await;
        d.first().filter(|d| d["status"] == "failed").cloned()
    })
    .await;
    let error = refused["last_error"].as_str().unwrap();
    assert!(
        error.contains("127.0.0.2") && error.contains("loopback"),
        "{error}"
    );

    // Listed: delivered at the first attempt.
    let listed = deliveries(&alice, hook).await;
    assert_eq!(listed.len(), 2);
    for d in &listed {
        assert_eq!(
            (
                d["status"].as_str(),
                d["attempts"].as_i64(),
                d["last_code"].as_i64()
            ),
            (Some("delivered"), Some(1), Some(204))
        );
    }
    // Recorded in the same write as those: none for another category, none
    // of alice's for bob.
    assert!(deliveries(&alice, filtered).await.is_empty());
    assert!(rx.all("filtered").is_empty());
    let bob_task = bob.submit_ok("noop", "{}").await;
    bob.wait_state(bob_task, "completed").await;
    let bob_got = eventually("bob's start and end", DEADLINE, || {
        let d = rx.delivered("bob");
        (d.len() >= 2).then_some(d)
    })
    .await;
    for g in &bob_got {
        assert_signed(g, "whsec_bob_9a8b");
        assert_eq!(g.json()["task"]["user"], "bob");
    }
    let mut events: Vec<String> = bob_got
        .iter()
        .map(|g| g.json()["event"].as_str().unwrap().to_string())
        .collect();
    events.sort();
    assert_eq!(events, ["task.completed", "task.started"]);
    for d in deliveries(&bob, bobs).await {
        assert!(
            d["event_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("task-{bob_task}-")),
            "{d}"
        );
    }

    // Lists: the caller's; an admin's: everyone's and the configured ones.
    let mine = alice.send(Method::GET, "webhooks", None).await;
    let ids: Vec<i64> = mine
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [hook, filtered]);
    let all = admin.send(Method::GET, "webhooks", None).await;
    let ids: Vec<i64> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [-1, -2, hook, filtered, bobs]);
    admin
        .send(Method::DELETE, "webhooks/-1", None)
        .await
        .assert_error(409, Some("configured_webhook"));

    // The secrets are in no answer, event, audit record or log line.
    let events = admin.send(Method::GET, "event", None).await;
    let audit = admin.send(Method::GET, "log", None).await;
    let one = alice
        .send(Method::GET, &format!("webhooks/{hook}"), None)
        .await;
    let answers = format!(
        "{}{}{}{}{:?}",
        mine.body, all.body, one.body, events.body, audit.body
    );
    for s in [
        secret,
        "whsec_bob_9a8b",
        "whsec_filtered",
        "cfg-secret-3141",
        "cfg-secret-2718",
    ] {
        assert!(!answers.contains(s), "{s} in an answer");
        assert!(!server.logs().contains(s), "{s} in the log");
    }
    assert!(!answers.contains("hunter2-task-secret"));

    // Deleting a webhook: gone, and bob may not.
    let gone = alice
        .send(Method::DELETE, &format!("webhooks/{filtered}"), None)
        .await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    alice
        .send(Method::GET, &format!("webhooks/{filtered}"), None)
        .await
        .assert_error(404, None);
}

#[tokio::test]
async fn a_delivery_refused_then_interrupted_by_a_restart_arrives_once() {
    let rx = Receiver::start().await;
    rx.inbox.fail_first.lock().insert("retry".into(), 1);
    let mut server = Server::start(Options::with_plugins(&["noop"]).config(&config(""))).await;
    let alice = login(&server, "alice").await;
    let secret = "whsec_retry_77";
    let hook = create(
        &alice,
        serde_json::json!({"url": rx.url("retry"), "events": ["task.completed"], "secret": secret}),
    )
    .await;
    let task = alice.submit_ok("noop", "{}").await;
    alice.wait_state(task, "completed").await;

    // The first attempt is answered 500 (Retry-After: 3): pending, retried.
    eventually("the first attempt", DEADLINE, || {
        (!rx.all("retry").is_empty()).then_some(())
    })
    .await;
    let pending = eventually_async("the failed attempt recorded", DEADLINE, || async {
        deliveries(&alice, hook)
            .await
            .into_iter()
            .find(|d| d["attempts"] == 1 && d["last_code"] == 500)
    })
    .await;
    assert_eq!(pending["status"], "pending");
    assert!(pending["next_attempt"].is_string());
    assert!(pending["last_error"].as_str().unwrap().contains("500"));

    // Restarted before the retry is sent (or while it is): it still arrives.
    server.restart().await;
    let alice = login(&server, "alice").await;
    let got = eventually("the delivery after the restart", DEADLINE, || {
        let d = rx.delivered("retry");
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_signed(&got[0], secret);
    assert_eq!(got[0].json()["task"]["id"], task);
    let done = eventually_async("the delivery recorded as delivered", DEADLINE, || async {
        deliveries(&alice, hook)
            .await
            .into_iter()
            .find(|d| d["status"] == "delivered")
    })
    .await;
    assert!(done["attempts"].as_i64().unwrap() >= 2, "{done}");
    // Delivered: nothing more is sent; the receiver took each event id once.
    let mut ids: Vec<String> = rx
        .delivered("retry")
        .iter()
        .map(|g| g.idempotency.clone())
        .collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (1, 1), "{:?}", rx.all("retry"));
    // Every attempt carried the same event id.
    let all = rx.all("retry");
    assert!(all.iter().all(|g| g.idempotency == all[0].idempotency));
}

#[tokio::test]
async fn a_task_running_when_the_server_is_killed_delivers_its_interruption_once() {
    let rx = Receiver::start().await;
    let mut server =
        Server::start(Options::with_plugins(&["noop", "sleepy"]).config(&config(""))).await;
    let alice = login(&server, "alice").await;
    let secret = "whsec_killed_9";
    let hook = create(
        &alice,
        serde_json::json!({"url": rx.url("killed"), "events": ["task.error"], "secret": secret}),
    )
    .await;
    let task = alice.submit_ok("sleepy", r#"{"seconds": 600}"#).await;
    alice.wait_state(task, "running").await;

    // SIGKILL while it runs: the restart ends it as interrupted, and its
    // delivery is written with that end.
    server.kill9();
    server.restart().await;
    let alice = login(&server, "alice").await;
    let ended = alice.wait_state(task, "error").await;
    assert_eq!(ended["result"], 4, "interrupted: {ended}");
    let got = eventually("the interruption's delivery", DEADLINE, || {
        let d = rx.delivered("killed");
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_signed(&got[0], secret);
    let body = got[0].json();
    let event_id = format!("task-{task}-error");
    assert_eq!(body["id"], event_id.as_str());
    assert_eq!(got[0].idempotency, event_id);
    assert_eq!(body["event"], "task.error");
    assert_eq!(body["task"]["id"], task);
    assert_eq!(body["task"]["result"], 4);
    assert!(
        body["task"]["detail_state"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{body}"
    );
    assert_eq!(body["task"], alice.task(task).await.unwrap());
    eventually_async("the delivery recorded as delivered", DEADLINE, || async {
        deliveries(&alice, hook)
            .await
            .into_iter()
            .find(|d| d["status"] == "delivered")
    })
    .await;

    // Restarted again, then a later error: it arrives, and the first is
    // not sent again.
    server.restart().await;
    let alice = login(&server, "alice").await;
    let later = alice.submit_ok("noop", r#"{"fail":true}"#).await;
    alice.wait_state(later, "error").await;
    eventually("the later error's delivery", DEADLINE, || {
        rx.delivered("killed")
            .iter()
            .any(|g| g.idempotency == format!("task-{later}-error"))
            .then_some(())
    })
    .await;
    let mut ids: Vec<String> = rx
        .all("killed")
        .iter()
        .map(|g| g.idempotency.clone())
        .collect();
    ids.sort();
    let mut want = vec![event_id, format!("task-{later}-error")];
    want.sort();
    assert_eq!(ids, want, "each event id exactly once");
    let listed = deliveries(&alice, hook).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|d| d["status"] == "delivered"));
}
