//! `create` from a `private` registry, and `POST container` (the
//! synchronous create), end to end: the real `stevedore serve`, the real
//! `create` plugin, the test engine and the test registries (the
//! authenticated one with credentials the server remembered through the
//! API).

use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{docker, docker_ok, env, registries_config, unique, Client, Options, Server};

async fn server(plugins: &[&str]) -> (Server, Client) {
    let server = Server::start(
        Options::with_plugins(plugins)
            .test_engine()
            .config(&registries_config()),
    )
    .await;
    let client = server.admin().await;
    (server, client)
}

/// Wait until task `id` has ended; returns it.
async fn finished(c: &Client, id: i64, secs: u64) -> Value {
    c.wait_until(id, Duration::from_secs(secs), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end within {secs} s: {last:?}"))
}

/// `POST container` with `body`; the answer and the task header.
async fn post_container(c: &Client, body: &Value) -> (u16, Value, Option<i64>) {
    let r = c
        .http()
        .post(format!("{}/container", c.api))
        .body(body.to_string())
        .timeout(Duration::from_secs(180))
        .send()
        .await
        .expect("POST container");
    let status = r.status().as_u16();
    let task = r
        .headers()
        .get("x-stevedore-task")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, task)
}

fn inspect(name: &str) -> Value {
    let out = docker(&["inspect", name]);
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

#[tokio::test]
async fn create_pulls_from_the_authenticated_registry_then_creates_starts_and_lists() {
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let (_server, c) = server(&["image_push", "create"]).await;
    docker(&["pull", "busybox:latest"]);
    let repo = format!("stevedore/{}", unique("private"));
    // The image exists only in the registry, pushed with credentials the
    // server is asked to remember.
    let push = json!({"image": "busybox", "tag": "latest", "newImage": repo, "newTag": "v1",
        "registry": registry, "username": env("STEVEDORE_TEST_AUTH_USER"),
        "password": env("STEVEDORE_TEST_AUTH_PASSWORD"), "rememberme": true});
    let id = c.submit_ok("image_push", &push.to_string()).await;
    assert_eq!(finished(&c, id, 120).await["state"], "completed");
    let pulled = format!("{registry}/{repo}:v1");
    docker_ok(&["rmi", &pulled]);
    assert!(
        !docker_ok(&["image", "inspect", &pulled]),
        "the engine no longer has {pulled}"
    );
    // A local image with the short name must not stand in for the registry's.
    docker(&["tag", "busybox:latest", &format!("{repo}:v1")]);

    let name = unique("private");
    let create = json!({"type": "docker", "name": name, "repository": "private",
        "registry_name": "secure", "image": repo, "tag": "v1", "command": "sleep 3600"});
    let id = c.submit_ok("create", &create.to_string()).await;
    let t = finished(&c, id, 180).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert!(
        docker_ok(&["image", "inspect", &pulled]),
        "the pull brought {pulled}"
    );
    let container = inspect(&name);
    assert_eq!(container["Config"]["Image"], pulled.as_str());
    assert_eq!(
        container["Image"],
        docker(&["image", "inspect", "--format", "{{.Id}}", &pulled]).trim(),
        "made from the registry's image"
    );
    assert_eq!(container["State"]["Running"], true);
    let listed = c.send(reqwest::Method::GET, "container", None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let entry = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} is listed: {:?}", listed.body))
        .clone();
    assert_eq!(entry["state"], "running", "{entry}");
    assert_eq!(entry["image"], pulled.as_str(), "{entry}");
    docker(&["rm", "-f", &name]);
    docker_ok(&["rmi", &pulled, &format!("{repo}:v1")]);
}

#[tokio::test]
async fn without_remembered_credentials_the_registry_refuses_the_pull() {
    // The control of the test above: the same create on a server that
    // remembers no credentials fails at the registry.
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let (_first, c) = server(&["image_push"]).await;
    docker(&["pull", "busybox:latest"]);
    let repo = format!("stevedore/{}", unique("nocreds"));
    let push = json!({"image": "busybox", "tag": "latest", "newImage": repo, "newTag": "v1",
        "registry": registry, "username": env("STEVEDORE_TEST_AUTH_USER"),
        "password": env("STEVEDORE_TEST_AUTH_PASSWORD"), "rememberme": false});
    let id = c.submit_ok("image_push", &push.to_string()).await;
    assert_eq!(finished(&c, id, 120).await["state"], "completed");
    let pulled = format!("{registry}/{repo}:v1");
    docker_ok(&["rmi", &pulled]);

    let (_second, c) = server(&["create"]).await;
    let name = unique("nocreds");
    let create = json!({"type": "docker", "name": name, "repository": "private",
        "registry_name": "secure", "image": repo, "tag": "v1", "command": "sleep 3600"});
    let id = c.submit_ok("create", &create.to_string()).await;
    let t = finished(&c, id, 120).await;
    assert_eq!(t["state"], "error", "{t}");
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
    assert!(!docker_ok(&["inspect", &name]), "no container was made");
}

#[tokio::test]
async fn post_container_answers_the_recorded_shape_once_the_container_runs() {
    let repo = stevedore_e2e::push_noise_image("sync", 1, &["1"]);
    let (_server, c) = server(&["create"]).await;
    let name = unique("sync");
    let body = json!({"type": "docker", "name": name, "repository": "private",
        "registry_name": "local", "image": repo, "tag": "1", "command": "sleep 3600"});
    let (status, answer, task) = post_container(&c, &body).await;
    assert_eq!(status, 200, "{answer}");
    // Container Station's recorded answer: exactly these keys.
    let container = inspect(&name);
    assert_eq!(
        answer,
        json!({"id": container["Id"], "name": name, "type": "docker"})
    );
    assert_eq!(
        container["State"]["Running"], true,
        "it runs when the answer comes"
    );
    // The task that did it stays in the list, completed.
    let task = task.expect("the X-Stevedore-Task header");
    let t = c.task(task).await.expect("the task is listed");
    assert_eq!(t["category"], "create");
    assert_eq!(t["state"], "completed", "{t}");

    // The name is taken now: the engine's conflict, with the task's message.
    let (status, again, task) = post_container(&c, &body).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], 409);
    let t = c.task(task.expect("header")).await.unwrap();
    assert_eq!(t["state"], "error");
    assert_eq!(again["error"]["message"], t["detail_state"]);
    docker(&["rm", "-f", &name]);
}

#[tokio::test]
async fn post_container_refuses_bad_bodies_and_reports_failed_tasks() {
    let (_server, c) = server(&["create"]).await;
    // Refused at submit, naming the field; no task is stored.
    let before = c.list(Some("create")).await.len();
    let (status, answer, task) = post_container(&c, &json!({"image": "busybox"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("name:"),
        "{answer}"
    );
    assert!(task.is_none());
    assert_eq!(c.list(Some("create")).await.len(), before);

    // An image no registry has: the task fails, and the answer carries its message.
    let name = unique("missing");
    let body = json!({"type": "docker", "name": name, "repository": "private",
        "registry_name": "local", "image": "stevedore/no-such-image", "tag": "1"});
    let (status, answer, task) = post_container(&c, &body).await;
    assert!(status == 404 || status == 502, "{status} {answer}");
    let t = c.task(task.expect("header")).await.unwrap();
    assert_eq!(t["state"], "error", "{t}");
    assert_eq!(answer["error"]["message"], t["detail_state"]);
    assert!(
        t["detail_state"]
            .as_str()
            .unwrap()
            .contains("stevedore/no-such-image"),
        "{t}"
    );
    assert!(!docker_ok(&["inspect", &name]));
}
