//! Container Station compatibility (issue 7): task objects as a real server
//! answered them, both API generations, `image_pull`, and the synchronous
//! container calls, against the real server, plugins and test engine.
//! Fixtures and checks use the `docker` CLI against the same engine.

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{docker, docker_ok, unique, Client, Options, Server, ADMIN_PASSWORD};

const CATEGORIES: &[&str] = &[
    "image_download",
    "image_remove",
    "image_push",
    "image_export",
    "create",
    "container_export",
    "container_import",
];

/// The prefixes of Container Station 1.x, 2.x and our short one.
const PREFIXES: [&str; 3] = [
    "/containerstation/api/v1",
    "/container-station/api/v1",
    "/api/v1",
];

async fn server() -> (Server, Client) {
    let server = Server::start(Options::with_plugins(CATEGORIES).test_engine()).await;
    let client = server.admin().await;
    (server, client)
}

fn sorted_keys(t: &Value) -> Vec<String> {
    let mut keys: Vec<String> = t.as_object().expect("an object").keys().cloned().collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn task_objects_are_named_and_carry_their_params_as_json() {
    let (_server, c) = server().await;
    let waiting_keys = [
        "category",
        "deletable",
        "detail_state",
        "id",
        "init",
        "name",
        "params",
        "progress",
        "state",
        "user",
    ];
    // (category, body, name): the rules of the recorded answers.
    let cases = [
        (
            "image_download",
            json!({"type": "docker", "repository": "dockerhub", "image": "busybox", "tag": "latest"}),
            "busybox:latest",
        ),
        (
            "image_remove",
            json!([{"type": "docker", "image": "nosuch-image", "tag": "x1"}, {"image": "other"}]),
            "nosuch-image:x1",
        ),
        (
            "image_export",
            json!({"type": "docker", "image": "nosuch-image", "tag": "2", "path": "t/a.tar"}),
            "nosuch-image:2",
        ),
        (
            "image_push",
            json!({"type": "docker", "image": "nosuch-image", "tag": "latest", "newImage": "n",
                   "newTag": "t", "registry": "127.0.0.1:9", "username": "u",
                   "password": "pw-not-shown", "rememberme": false}),
            "nosuch-image:latest",
        ),
        (
            "create",
            json!({"type": "docker", "repository": "dockerhub", "name": unique("named"),
                   "image": "nosuch-image", "tag": "latest"}),
            "",
        ),
        (
            "container_export",
            json!({"type": "docker", "name": "nosuch-container", "id": "nosuch-container",
                   "path": "t/c.tar"}),
            "nosuch-container",
        ),
    ];
    let mut ids = Vec::new();
    for (category, body, name) in cases {
        let a = c.submit(category, &body.to_string()).await;
        assert_eq!(a.status, 200, "{category}: {:?}", a.body);
        let t = &a.body;
        assert_eq!(sorted_keys(t), waiting_keys, "{category}: {t}");
        let want_name = if name.is_empty() {
            body["name"].as_str().unwrap()
        } else {
            name
        };
        assert_eq!(t["name"], want_name, "{category}: {t}");
        // The posted JSON itself (an array for image_remove), secrets masked.
        let mut shown = body.clone();
        if let Some(pw) = shown.get_mut("password") {
            *pw = json!("******");
        }
        assert_eq!(t["params"], shown, "{category}");
        assert!(!t.to_string().contains("pw-not-shown"));
        ids.push(t["id"].as_i64().unwrap());
    }
    // Listed newest first; `result`, `start` and `end` once the task ended.
    let listed: Vec<i64> = c
        .list(None)
        .await
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    for id in ids {
        let t = c
            .wait_until(id, std::time::Duration::from_secs(120), |t| {
                t["state"] == "completed" || t["state"] == "error"
            })
            .await
            .unwrap_or_else(|last| panic!("task {id} did not finish: {last:?}"));
        for k in ["result", "start", "end"] {
            assert!(t.get(k).is_some(), "{k} once ended: {t}");
        }
        assert!(t["params"].is_object() || t["params"].is_array(), "{t}");
    }
    let all = c.send(Method::GET, "background/", None).await;
    assert!(!all.body.to_string().contains("pw-not-shown"));
}

#[tokio::test]
async fn both_api_generations_and_image_pull() {
    let (server, _) = server().await;
    for prefix in PREFIXES {
        let c = Client::new(format!("{}{prefix}", server.base()));
        // 2.x logs in with a JSON body sent by `curl -d` (form content type).
        let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
        let r = c.send(Method::POST, "login", Some(&body)).await;
        assert_eq!(r.status, 200, "{prefix}: {:?}", r.body);
        assert_eq!(r.body["isAdmin"], true);
        // 1.x with form fields, on every prefix too.
        assert_eq!(c.login("admin", ADMIN_PASSWORD).await.status, 200);
        assert!(c.send(Method::GET, "container", None).await.body.is_array());
    }
    let c = Client::new(format!("{}/container-station/api/v1", server.base()));
    c.login("admin", ADMIN_PASSWORD).await;
    let a = c
        .submit(
            "image_pull",
            r#"{"type": "docker", "repository": "dockerhub", "image": "busybox", "tag": "latest"}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // The task keeps the name it was submitted as, as the 2023 recording shows.
    assert_eq!(a.body["category"], "image_pull");
    assert_eq!(a.body["name"], "busybox:latest");
    let id = a.body["id"].as_i64().unwrap();
    let t = c.wait_state(id, "completed").await;
    assert_eq!(t["result"], 0, "{t}");
    assert_eq!(c.list(Some("image_pull")).await.len(), 1);
    assert_eq!(c.list(Some("image_download")).await.len(), 1);
    // A bad body for the alias is the category's own 400, naming the field.
    let bad = c.submit("image_pull", r#"{"image": 5}"#).await;
    bad.assert_error(400, Some("invalid_params"));
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("image"),
        "{:?}",
        bad.body
    );
    let d = c.delete("image_pull").await;
    assert_eq!(d.body, json!([id]));
}

/// The entry of `name` in `GET container`.
async fn listed(c: &Client, name: &str) -> Option<Value> {
    let all = c.send(Method::GET, "container", None).await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    all.body
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

#[tokio::test]
async fn container_calls_on_the_engine() {
    let (_server, c) = server().await;
    docker(&["pull", "-q", "busybox:latest"]);
    let name = unique("routes");
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        "127.0.0.1::80",
        "--label",
        "com.docker.compose.project=proj",
        "-v",
        "/data",
        "busybox:latest",
        "sleep",
        "600",
    ]);
    let volume = docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &id]);
    assert!(!volume.is_empty());

    // GET container: the entry as Container Station lists it.
    let e = listed(&c, &name).await.expect("listed");
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["type"], "docker");
    assert_eq!(e["state"], "running");
    assert_eq!(e["image"], "busybox:latest");
    assert!(e["imageID"].as_str().unwrap().starts_with("sha256:"), "{e}");
    assert_eq!(e["project"], "proj");
    let port = docker(&["port", &id, "80/tcp"]);
    let port: u16 = port.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(e["tcpPort"], json!([port]));
    let ips = e["ipaddress"].as_array().expect("ipaddress is an array");
    assert!(!ips.is_empty() && ips.iter().all(Value::is_string), "{e}");

    // getid: the bare id as text; a missing name is a JSON error.
    let r = c
        .send(Method::GET, &format!("container/docker/getid/{name}"), None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain"), "{r:?}");
    assert_eq!(r.body, Value::String(id.clone()));
    let r = c
        .send(
            Method::GET,
            "container/docker/getid/no-such-container",
            None,
        )
        .await;
    r.assert_error(404, Some("unknown_container"));

    // One entry, by id, short id or name; inspect is the engine's own JSON.
    for key in [id.as_str(), &id[..12], name.as_str()] {
        let r = c
            .send(Method::GET, &format!("container/docker/{key}"), None)
            .await;
        assert_eq!(r.status, 200, "{key}: {:?}", r.body);
        assert_eq!(r.body["id"], id.as_str());
    }
    let r = c
        .send(
            Method::GET,
            &format!("container/docker/{name}/inspect"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["Id"], id.as_str());

    // stop, start, restart answer the entry after the change.
    let r = c
        .send(Method::PUT, &format!("container/docker/{id}/stop"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "stopped");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &id]),
        "false"
    );
    let r = c
        .send(Method::PUT, &format!("container/docker/{id}/start"), None)
        .await;
    assert_eq!(r.body["state"], "running", "{:?}", r.body);
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]);
    let r = c
        .send(
            Method::PUT,
            &format!("container/docker/{name}/restart"),
            None,
        )
        .await;
    assert_eq!(r.body["state"], "running", "{:?}", r.body);
    assert_ne!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]),
        started,
        "restarted"
    );
    c.send(Method::PUT, &format!("container/docker/{id}/pause"), None)
        .await
        .assert_error(404, Some("unknown_path"));

    // DELETE of a running container stops it first; volumes stay unless asked.
    let r = c
        .send(Method::DELETE, &format!("container/docker/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({}));
    assert!(!docker_ok(&["inspect", &id]), "removed");
    assert!(docker_ok(&["volume", "inspect", &volume]), "volume kept");
    assert!(listed(&c, &name).await.is_none());
    c.send(Method::DELETE, &format!("container/docker/{id}"), None)
        .await
        .assert_error(404, Some("unknown_container"));
    docker(&["volume", "rm", &volume]);

    // ?remove_volumes=true takes the anonymous volumes with it.
    let name2 = unique("routes-v");
    let id2 = docker(&[
        "create",
        "--name",
        &name2,
        "-v",
        "/data",
        "busybox:latest",
        "true",
    ]);
    let volume2 = docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &id2]);
    let r = c
        .send(
            Method::DELETE,
            &format!("container/docker/{name2}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(!docker_ok(&["inspect", &id2]));
    assert!(
        !docker_ok(&["volume", "inspect", &volume2]),
        "volume removed"
    );

    // Bad input: JSON errors naming the field.
    c.send(Method::GET, "container/kvm/x1", None)
        .await
        .assert_error(400, Some("invalid_params"));
    let r = c.send(Method::GET, "container/docker/-rf", None).await;
    r.assert_error(400, Some("invalid_params"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("id:"));
    // Without a session: 401.
    Client::new(c.api.clone())
        .send(Method::GET, "container", None)
        .await
        .assert_error(401, Some("not_logged_in"));
}
