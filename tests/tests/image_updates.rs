//! Safe image updates on the real engine and the test registry:
//! `image_check` sees a new version pushed under the same tag (and tells
//! the owner on the event stream), `container_update` moves a container to
//! an image that passes its health check keeping its volume and port, and
//! puts the previous container back when the new image fails its check;
//! another user's container is refused.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    docker, docker_ok, env, eventually_async, free_port, hash_password, registries_config, unique,
    Client, Options, Server, SseReader,
};

/// What the test made on the shared engine, removed at the end whatever happens.
struct Made {
    container: String,
    volume: String,
    repository: String,
}

impl Drop for Made {
    fn drop(&mut self) {
        let aside = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name={}-replaced-", self.container),
        ]);
        for id in aside.lines() {
            docker_ok(&["rm", "-f", id.trim()]);
        }
        docker_ok(&["rm", "-f", &self.container]);
        docker_ok(&["volume", "rm", "-f", &self.volume]);
        let images = docker(&["images", "-q", &self.repository]);
        for id in images.lines() {
            docker_ok(&["rmi", "-f", id.trim()]);
        }
    }
}

/// Build `reference` from busybox: a process that stops at once on
/// SIGTERM, writing `marker` to `/version`, with `healthcheck`.
fn build(reference: &str, marker: &str, healthcheck: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM busybox:latest\n\
         RUN echo {marker} > /version\n\
         HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD {healthcheck}\n\
         CMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n"
    );
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", reference])
        .arg(dir.path())
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn image_id(reference: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", reference])
        .trim()
        .to_string()
}

fn container_image(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Image}}", container])
        .trim()
        .to_string()
}

fn running(container: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", container]).trim() == "true"
}

async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
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

#[tokio::test]
async fn updates_are_seen_applied_when_healthy_and_rolled_back_when_not() {
    let config = format!(
        "{}\n[users.bob]\npassword_hash = \"{}\"\n\n[webhooks_policy]\nallow_hosts = [\"127.0.0.1\"]\n",
        registries_config(),
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["image_check", "container_update"])
            .test_engine()
            .config(&config),
    )
    .await;
    let admin = server.admin().await;
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let repository = format!("{registry}/stevedore/{}", unique("upd"));
    let made = Made {
        container: unique("upd"),
        volume: unique("updvol"),
        repository: repository.clone(),
    };
    let name = made.container.as_str();
    let tagged = format!("{repository}:v1");
    docker(&["pull", "-q", "busybox:latest"]);

    // Version one, pushed (so the local image has its registry digest), run
    // with a volume and a published port, as the admin's.
    build(&tagged, "one", "test -f /version");
    docker(&["push", &tagged]);
    let first = image_id(&tagged);
    let port = free_port();
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "io.stevedore.owner=admin",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-v",
        &format!("{}:/data", made.volume),
        &tagged,
    ]);
    docker(&["exec", name, "sh", "-c", "echo kept > /data/file"]);

    // Nothing to update yet.
    let check = json!({"container": name}).to_string();
    let t = ended(&admin, admin.submit_ok("image_check", &check).await).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(t["detail_state"], "1 image checked: no update available");

    // Version two pushed under the same tag; the local tag stays on version one.
    build(&tagged, "two", "test -f /version");
    docker(&["push", &tagged]);
    let second = image_id(&tagged);
    assert_ne!(first, second);
    docker(&["tag", &first, &tagged]);

    // A webhook for updates: what the check finds is recorded for it (its
    // receiver is a closed port: the delivery stays listed, pending).
    let hook = admin
        .send(
            Method::POST,
            "webhooks",
            Some(
                &json!({"url": format!("http://127.0.0.1:{}/hook", free_port()),
                        "events": ["image.update_available"], "secret": "update-hook-secret"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(hook.status, 201, "{:?}", hook.body);
    let hook = hook.body["id"].as_i64().unwrap();

    let mut stream = events(&admin).await;
    let id = admin.submit_ok("image_check", &check).await;
    let t = ended(&admin, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(
        t["detail_state"],
        format!("1 image checked: update available for {tagged} ({name})")
    );
    let announced = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (event, data) = stream.next().await.expect("the event stream ended");
            if event == "update_available" {
                return serde_json::from_str::<Value>(&data).unwrap();
            }
        }
    })
    .await
    .expect("an update_available event");
    assert_eq!(announced["id"], id);
    assert_eq!(announced["image"], tagged);
    assert_eq!(announced["containers"], json!([name]));
    let recorded = eventually_async(
        "the update's webhook delivery",
        Duration::from_secs(30),
        || async {
            let a = admin
                .send(Method::GET, &format!("webhooks/{hook}/deliveries"), None)
                .await;
            assert_eq!(a.status, 200, "{:?}", a.body);
            a.body.as_array().unwrap().first().cloned()
        },
    )
    .await;
    assert_eq!(recorded["event"], "image.update_available", "{recorded}");
    assert!(
        recorded["event_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("task-{id}-update-{tagged}-sha256:")),
        "{recorded}"
    );

    // The update to version two passes its health check: the container
    // runs it, with its volume's data and its port.
    let update = json!({"container": name, "health_timeout_secs": 60}).to_string();
    let t = ended(&admin, admin.submit_ok("container_update", &update).await).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(container_image(name), second);
    assert!(running(name));
    assert_eq!(
        docker(&["exec", name, "cat", "/data/file", "/version"]),
        "kept\ntwo"
    );
    assert!(docker(&["port", name, "80/tcp"]).contains(&format!("127.0.0.1:{port}")));
    let aside = docker(&["ps", "-aq", "--filter", &format!("name={name}-replaced-")]);
    assert_eq!(aside.trim(), "", "the previous container was removed");

    // An image whose health check fails: the task ends in error saying
    // so, and the previous container runs again with its data.
    let bad = format!("{repository}:bad");
    build(&bad, "bad", "exit 1");
    docker(&["push", &bad]);
    let update = json!({"container": name, "image": bad, "health_timeout_secs": 60}).to_string();
    let t = ended(&admin, admin.submit_ok("container_update", &update).await).await;
    assert_eq!(t["state"], "error", "{t}");
    let detail = t["detail_state"].as_str().unwrap();
    assert!(
        detail.contains("health check failed: unhealthy"),
        "{detail}"
    );
    assert!(
        detail.contains("the previous container is running again"),
        "{detail}"
    );
    assert!(running(name));
    assert_eq!(container_image(name), second);
    assert_eq!(
        docker(&["exec", name, "cat", "/data/file", "/version"]),
        "kept\ntwo"
    );
    let aside = docker(&["ps", "-aq", "--filter", &format!("name={name}-replaced-")]);
    assert_eq!(aside.trim(), "", "no container left aside");

    // Bob may not update the admin's container.
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let t = ended(&bob, bob.submit_ok("container_update", &update).await).await;
    assert_eq!(t["state"], "error", "{t}");
    assert_eq!(container_image(name), second);
    assert!(running(name));
    drop(made);
}
