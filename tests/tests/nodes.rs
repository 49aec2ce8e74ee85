//! Two Stevedore nodes sharing one PostgreSQL queue and the one test engine:
//! a login on one works on the other, tasks go to the node named by
//! `?node=`, both list and stream every node's tasks, a cancel crosses
//! nodes, and a node killed with SIGKILL is taken for dead within its lease
//! while its waiting tasks wait for its restart, saying why (until it returns).
//!
//! Needs `STEVEDORE_TEST_DATABASE_URL` (the test PostgreSQL) and the test
//! engine and registry: run with `cargo xtask test`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{docker_ok, unique, Client, Options, Server, SseReader};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
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

struct Cluster {
    db: String,
    key: Vec<u8>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            db: stevedore_e2e::fresh_database("nodes"),
            key: shared_key(),
        }
    }

    /// A node of the cluster, on the test engine, with the open registry as `local`.
    fn node(&self, name: &str, lease_secs: u32) -> Options {
        let mut o = Options::with_plugins(&["noop", "sleepy", "image_download"])
            .test_engine()
            .config(&format!(
                "[registries.local]\nurl = \"http://{}\"\n",
                env("STEVEDORE_TEST_REGISTRY")
            ))
            .env("STEVEDORE_DATABASE_URL", &self.db)
            .env("STEVEDORE_NODE", name)
            .env("STEVEDORE_LEASE_SECS", &lease_secs.to_string());
        o.data_files.push(("secret.key".into(), self.key.clone()));
        o
    }
}

async fn events(c: &Client) -> SseReader {
    let resp = c
        .http()
        .get(format!("{}/background/events", c.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    SseReader::new(resp)
}

/// Collect the tasks of a stream, in arrival order, until the test ends.
fn collect(mut sse: SseReader) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some((event, data)) = sse.next().await {
            if event == "task" {
                out.lock().push(serde_json::from_str(&data).unwrap());
            }
        }
    });
    seen
}

async fn until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < end, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ended(t: &Value) -> bool {
    t["state"] == "completed" || t["state"] == "error"
}

#[tokio::test]
async fn two_nodes_share_logins_lists_events_and_cancels() {
    let cluster = Cluster::new();
    let (na, nb) = (unique("a"), unique("b"));
    let a = Server::start(cluster.node(&na, 30)).await;
    let b = Server::start(cluster.node(&nb, 30)).await;

    // The login made on A works on B (the cookie jar is the same, the port differs).
    let ca = a.admin().await;
    let cb = ca.with_api(b.api(false));
    let refreshed = cb.send(Method::GET, "login_refresh", None).await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["username"], "admin");
    assert_eq!(
        b.client()
            .send(Method::GET, "background/", None)
            .await
            .status,
        401
    );

    let on_b = collect(events(&cb).await);

    // Sent to A for B: B runs it.
    let sent = ca
        .send(
            Method::POST,
            &format!("background/noop?node={nb}"),
            Some(r#"{"count": 1}"#),
        )
        .await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    assert_eq!(sent.body["node"], nb.as_str());
    let for_b = sent.body["id"].as_i64().unwrap();
    let t = ca.wait_state(for_b, "completed").await;
    assert_eq!(t["node"], nb.as_str());
    let ran = format!("task{{task_id={for_b} category=noop}}");
    assert!(b.logs().contains(&ran), "B ran it");
    assert!(!a.logs().contains(&ran), "A did not run it");

    // An unknown node is refused, naming the field.
    let refused = ca
        .send(
            Method::POST,
            "background/noop?node=no-such-node",
            Some("{}"),
        )
        .await;
    refused.assert_error(400, Some("unknown_node"));
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("node:"));

    // A's own task shows on B's stream, up to its end.
    let for_a = ca.submit_ok("noop", r#"{"count": 1}"#).await;
    until(
        "B streams A's task to its end",
        Duration::from_secs(20),
        || {
            on_b.lock()
                .iter()
                .any(|t| t["id"] == for_a && t["state"] == "completed" && t["node"] == na.as_str())
        },
    )
    .await;

    // Both nodes list the same tasks; `?node=` filters.
    let ids = |ts: Vec<Value>| {
        ts.iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(ca.list(None).await), ids(cb.list(None).await));
    assert_eq!(ids(ca.list(None).await), vec![for_a, for_b]);
    let only_a = ca
        .send(Method::GET, &format!("background/?node={na}"), None)
        .await;
    assert_eq!(
        ids(serde_json::from_value(only_a.body).unwrap()),
        vec![for_a]
    );

    // A cancel sent to A stops a download running on B, and B cleans up.
    let repo = stevedore_e2e::push_noise_image("nodes-img", 256, &["1"]);
    let body = format!(
        r#"{{"type":"docker","repository":"private","registry_name":"local","image":"{repo}","tag":"1"}}"#
    );
    let pull = ca
        .send(
            Method::POST,
            &format!("background/image_download?node={nb}"),
            Some(&body),
        )
        .await;
    assert_eq!(pull.status, 200, "{:?}", pull.body);
    let id = pull.body["id"].as_i64().unwrap();
    ca.wait_until(id, Duration::from_secs(60), |t| t["state"] == "running")
        .await
        .expect("it runs on B");
    let answer = ca.delete(&id.to_string()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body, serde_json::json!([id]));
    assert!(cb.task(id).await.is_none(), "the task is gone on B too");
    assert!(
        b.logs()
            .contains("cancelling running task for a deletion on another node"),
        "B cancelled it"
    );
    let reference = format!("{}/{repo}:1", env("STEVEDORE_TEST_REGISTRY"));
    let quiet = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet {
        assert!(
            !docker_ok(&["image", "inspect", &reference]),
            "a cancelled pull left {reference}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_killed_node_is_taken_for_dead_and_its_restart_runs_its_waiting_tasks() {
    const LEASE: u64 = 3;
    let cluster = Cluster::new();
    let (na, nb) = (unique("a"), unique("b"));
    let mut a = Server::start(
        cluster
            .node(&na, LEASE as u32)
            .env("STEVEDORE_WORKERS", "2"),
    )
    .await;
    let b = Server::start(cluster.node(&nb, LEASE as u32)).await;
    let ca = a.admin().await;
    let cb = ca.with_api(b.api(false));
    let on_b = collect(events(&cb).await);

    let long: Vec<i64> = vec![
        ca.submit_ok("sleepy", r#"{"seconds": 600}"#).await,
        ca.submit_ok("sleepy", r#"{"seconds": 600}"#).await,
    ];
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(ca.submit_ok("sleepy", r#"{"seconds": 1}"#).await);
    }
    for id in &long {
        cb.wait_until(*id, Duration::from_secs(30), |t| t["state"] == "running")
            .await
            .expect("A runs it");
    }

    a.kill9();
    let killed = Instant::now();
    for id in &long {
        let t = cb
            .wait_until(*id, Duration::from_secs(4 * LEASE + 10), ended)
            .await
            .expect("B settles A's runs");
        assert_eq!(
            (t["state"].as_str(), t["result"].as_i64()),
            (Some("error"), Some(4)),
            "{t}"
        );
    }
    let took = killed.elapsed();
    // Silent past the lease, noticed at B's next check (every third of it).
    assert!(
        took >= Duration::from_secs(LEASE - 1) && took < Duration::from_secs(2 * LEASE + 3),
        "interrupted after {took:?} with a lease of {LEASE} s"
    );
    // A's waiting tasks wait for A, and say so: named, with its last
    // heartbeat, on B's answers and B's stream.
    let silent = format!("waiting: node `{na}` has not been seen since ");
    let says_why = |t: &Value| {
        let detail = t["detail_state"].as_str().unwrap_or_default();
        t["state"] == "waiting" && detail.starts_with(&silent) && detail.ends_with(" UTC")
    };
    for id in &waiting {
        let t = cb
            .wait_until(*id, Duration::from_secs(2 * LEASE + 5), |t| {
                t["state"] != "waiting" || says_why(t)
            })
            .await
            .expect("A's waiting task says why it waits");
        assert!(says_why(&t), "{t}");
    }
    until(
        "B streams why A's tasks wait",
        Duration::from_secs(20),
        || {
            let seen = on_b.lock();
            waiting
                .iter()
                .all(|id| seen.iter().any(|t| t["id"] == *id && says_why(t)))
        },
    )
    .await;
    cb.send(
        Method::POST,
        &format!("background/noop?node={na}"),
        Some("{}"),
    )
    .await
    .assert_error(400, Some("unknown_node"));

    // A comes back: its waiting tasks no longer say it is silent (cleared
    // before it answers), it runs them, and nothing ends twice.
    a.restart().await;
    for id in &waiting {
        let t = cb.task(*id).await.unwrap();
        assert!(
            !t["detail_state"]
                .as_str()
                .unwrap_or_default()
                .contains("not been seen"),
            "cleared when A returned: {t}"
        );
    }
    for id in &waiting {
        cb.wait_until(*id, Duration::from_secs(60), |t| t["state"] == "completed")
            .await
            .expect("A runs its waiting task after its restart");
    }
    for id in &long {
        assert_eq!(cb.task(*id).await.unwrap()["result"], 4, "not run again");
    }
    until("B streams every end", Duration::from_secs(20), || {
        let seen = on_b.lock();
        waiting
            .iter()
            .all(|id| seen.iter().any(|t| t["id"] == *id && ended(t)))
    })
    .await;
    let mut ends: HashMap<i64, usize> = HashMap::new();
    for t in on_b.lock().iter().filter(|t| ended(t)) {
        *ends.entry(t["id"].as_i64().unwrap()).or_default() += 1;
    }
    for id in long.iter().chain(&waiting) {
        assert_eq!(ends.get(id), Some(&1), "task {id} ended once: {ends:?}");
    }
}
