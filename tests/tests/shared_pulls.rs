//! Tasks pulling the same image at the same time share one engine pull
//! (issue 13): both report its progress, the engine logs one `pull`, and
//! cancelling one task leaves the other's pull running.
//!
//! The pulls go through a throttling proxy in front of the test registry,
//! so they last until the test has seen what it waits for, and then end at
//! full speed once it opens the proxy up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stevedore_e2e::{docker, docker_ok, push_noise_image, Client, Options, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn registry() -> String {
    std::env::var("STEVEDORE_TEST_REGISTRY")
        .expect("STEVEDORE_TEST_REGISTRY is not set: run the tests with `cargo xtask test`")
}

/// A TCP proxy to `upstream` that passes answers at `rate` bytes a second
/// until [`Throttle::open`] (requests pass at once).
struct Throttle {
    addr: SocketAddr,
    rate: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Throttle {
    async fn start(upstream: String, rate: u64) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        let rate = Arc::new(AtomicU64::new(rate));
        let shared = rate.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), shared.clone()));
            }
        });
        Throttle { addr, rate, accept }
    }

    /// Let answers through at full speed from now on.
    fn open(&self) {
        self.rate.store(0, Ordering::SeqCst);
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Relay one connection; the answer direction sleeps after each chunk so
/// that it averages `rate` bytes a second (0: no limit).
async fn relay(client: TcpStream, upstream: String, rate: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let answers = async {
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            let limit = rate.load(Ordering::SeqCst);
            if limit > 0 {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / limit as f64)).await;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, answers);
}

/// A fresh 64 MiB image in the test registry, a server pulling it through
/// a [`Throttle`] at 2 MiB/s (the pull lasts until the test opens it up),
/// and the time the test began, to read the engine's events from.
struct Fixture {
    proxy: Throttle,
    _server: Server,
    c: Client,
    /// The repository, as tasks name it.
    repo: String,
    /// The image as the engine names it once pulled.
    reference: String,
    since: SystemTime,
}

impl Fixture {
    async fn start() -> Fixture {
        let repo = push_noise_image("shared", 64, &["1"]);
        let proxy = Throttle::start(registry(), 2 << 20).await;
        let config = format!("[registries.slow]\nurl = \"http://{}\"\n", proxy.addr);
        let server = Server::start(
            Options::with_plugins(&["image_download"])
                .test_engine()
                .config(&config),
        )
        .await;
        let c = server.admin().await;
        Fixture {
            reference: format!("{}/{repo}:1", proxy.addr),
            proxy,
            _server: server,
            c,
            repo,
            since: SystemTime::now(),
        }
    }

    /// Submit a download of the image; returns the task id.
    async fn download(&self) -> i64 {
        let body = format!(
            r#"{{"type":"docker","repository":"private","registry_name":"slow","image":"{}","tag":"1"}}"#,
            self.repo
        );
        self.c.submit_ok("image_download", &body).await
    }

    /// The image is on the engine, which pulled it once since the start;
    /// then it is removed.
    fn assert_pulled_once(&self) {
        let reference = &self.reference;
        assert!(docker_ok(&["image", "inspect", reference]));
        // The engine logs its `pull` before it ends the answer stream.
        let logged = pulls_logged(reference, self.since, SystemTime::now());
        docker(&["rmi", reference]);
        assert_eq!(logged, 1, "the engine pulled {reference} {logged} times");
    }
}

/// Wait until task `id` runs and shows a progress above 0.
async fn pulling(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(60), |t| {
        t["state"] == "running" && t["progress"].as_i64().is_some_and(|p| p > 0)
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} never showed pull progress: {last:?}"))
}

/// Wait until task `id` has ended; returns it.
async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

/// Epoch seconds with nanoseconds, as `docker events --since/--until` take them.
fn engine_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).expect("after 1970");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// How many `pull` events the test engine logged for `reference` in `since..until`.
fn pulls_logged(reference: &str, since: SystemTime, until: SystemTime) -> usize {
    let since = engine_time(since);
    let until = engine_time(until);
    docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=image",
        "--filter",
        "event=pull",
        "--format",
        "{{.Actor.ID}}",
    ])
    .lines()
    .filter(|id| *id == reference)
    .count()
}

#[tokio::test]
async fn two_downloads_of_one_image_share_one_engine_pull_and_both_show_its_progress() {
    let f = Fixture::start().await;
    let c = &f.c;
    let a = f.download().await;
    let b = f.download().await;
    pulling(c, a).await;
    pulling(c, b).await;
    f.proxy.open();
    for id in [a, b] {
        let t = ended(c, id).await;
        assert_eq!(t["state"], "completed", "{t}");
        assert_eq!(t["progress"], 100, "{t}");
    }
    f.assert_pulled_once();
}

#[tokio::test]
async fn cancelling_one_of_two_downloads_of_one_image_leaves_the_other_pulling() {
    let f = Fixture::start().await;
    let c = &f.c;
    // A starts the engine pull, B joins it; cancelling A must not stop it.
    let a = f.download().await;
    pulling(c, a).await;
    let b = f.download().await;
    let before = pulling(c, b).await["progress"].as_i64().unwrap_or(0);
    let answer = c.delete(&a.to_string()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body, serde_json::json!([a]), "A is cancelled");
    assert!(c.task(a).await.is_none(), "the cancelled task is gone");
    // B's pull goes on: its progress still moves while the proxy is slow.
    let moved = c
        .wait_until(b, Duration::from_secs(60), |t| {
            t["state"] != "running" || t["progress"].as_i64().is_some_and(|p| p > before)
        })
        .await
        .unwrap_or_else(|last| panic!("B's pull stalled after A was cancelled: {last:?}"));
    assert_eq!(moved["state"], "running", "{moved}");
    f.proxy.open();
    let t = ended(c, b).await;
    assert_eq!(t["state"], "completed", "{t}");
    f.assert_pulled_once();
}
