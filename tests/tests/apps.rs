//! Applications end to end (issue 9): the real `stevedore serve` with the
//! `application` and `application_upgrade` plugins, a template repository
//! of our own (`tests/fixtures/catalog`, copied to a temporary folder so an
//! upgrade can change it), and the engine and registry `cargo xtask test`
//! starts. Checks go through the API, HTTP to the published ports, and the
//! `docker` CLI against the same engine.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use stevedore_e2e::catalog::{push_busybox, set_image, set_notes};
use stevedore_e2e::{copy_dir, free_port, workspace_root, Client, Options, Server};

const PLUGINS: &[&str] = &["application", "application_upgrade"];

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// A server whose repository is a fresh copy of the fixture catalog.
async fn server() -> (Server, Client, tempfile::TempDir) {
    let catalog = tempfile::tempdir().unwrap();
    copy_dir(
        &workspace_root().join("tests/fixtures/catalog"),
        catalog.path(),
    );
    let server = Server::start(
        Options::with_plugins(PLUGINS)
            .test_engine()
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string()),
    )
    .await;
    let client = server.admin().await;
    (server, client, catalog)
}

/// Run the docker CLI against the test engine; returns stdout, panics on failure.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    docker(args)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Names of containers, networks or volumes of a compose project.
fn project_objects(kind: &str, project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    match kind {
        "container" => docker_lines(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]),
        "network" => docker_lines(&[
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ]),
        _ => docker_lines(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]),
    }
}

fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "e2e{what}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn finished(c: &Client, id: i64, secs: u64) -> Value {
    c.wait_until(id, Duration::from_secs(secs), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end within {secs} s: {last:?}"))
}

/// GET `http://127.0.0.1:{port}{path}` until it answers 200 (deadline 20 s).
async fn http_get(port: u16, path: &str) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return r.text().await.unwrap();
            }
        }
        assert!(Instant::now() < until, "{url} did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(c: &Client, path: &str) -> Value {
    let a = c.send(reqwest::Method::GET, path, None).await;
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.body
}

/// `DELETE apps/{name}`; returns its answer (the containers removed).
async fn remove_app(c: &Client, name: &str) -> Value {
    let a = c
        .send(
            reqwest::Method::DELETE,
            &format!("apps/{name}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "DELETE apps/{name}: {:?}", a.body);
    a.body
}

fn inspect(container: &str) -> Value {
    let text = docker(&["inspect", container]);
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

#[tokio::test]
async fn v1_template_with_links_and_bindings_installs_answers_and_is_listed() {
    let (server, c, _catalog) = server().await;
    let name = unique("web");
    let port = free_port();
    let body = format!(
        r#"{{"template": "weblinks", "name": "{name}", "autostart": true, "port": {port},
             "virtual_path": "/{name}", "binding": {{"http_port": {port}, "greeting": "bonjour"}}}}"#
    );
    let id = c.submit_ok("application", &body).await;
    let task = finished(&c, id, 120).await;
    assert_eq!(task["state"], "completed", "{task}");
    assert_eq!(task["name"], name.as_str());

    // The bound port answers with the template's file, bound by a relative path.
    assert_eq!(http_get(port, "/").await, "weblinks web says hi\n");
    let web = format!("{name}_web_1");
    let db = format!("{name}_db_1");
    // The link alias resolves to the db container.
    assert_eq!(
        docker(&["exec", &web, "wget", "-q", "-O", "-", "http://database/"]),
        "weblinks db says hi"
    );
    let w = inspect(&web);
    let env: Vec<&str> = w["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"GREETING=bonjour"), "{env:?}");
    assert!(env.contains(&"KEEP=me"), "{env:?}");
    assert_eq!(w["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    let labels = &w["Config"]["Labels"];
    assert_eq!(labels["com.docker.compose.project"], name.as_str());
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert_eq!(
        labels["com.docker.compose.config-hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(labels["com.docker.compose.version"].is_string());
    let folder = server.data_dir().join("apps").join(&name);
    let folder = folder.canonicalize().unwrap();
    assert_eq!(
        labels["com.docker.compose.project.working_dir"],
        folder.display().to_string().as_str()
    );
    assert_eq!(
        labels["com.docker.compose.project.config_files"],
        folder
            .join("docker-compose.yml")
            .display()
            .to_string()
            .as_str()
    );
    let rendered = std::fs::read_to_string(folder.join("docker-compose.yml")).unwrap();
    assert!(rendered.contains("services:"), "v1 normalised: {rendered}");
    assert!(rendered.contains(&format!("{port}:80")), "{rendered}");
    assert_eq!(
        project_objects("network", &name),
        [format!("{name}_default")]
    );
    let net =
        serde_json::from_str::<Value>(&docker(&["network", "inspect", &format!("{name}_default")]))
            .unwrap()[0]
            .clone();
    assert_eq!(net["Labels"]["com.docker.compose.project"], name.as_str());
    assert_eq!(net["Labels"]["com.docker.compose.network"], "default");
    assert!(inspect(&db)["State"]["Running"].as_bool().unwrap());

    // GET apps and GET apps/{name}.
    let apps = get(&c, "apps").await;
    let entry = &apps[name.as_str()];
    assert_eq!(entry["container"], serde_json::json!([db, web]), "{apps}");
    assert_eq!(entry["creating"], false);
    assert_eq!(entry["yml"], true);
    assert_eq!(entry["template"], "weblinks");
    assert_eq!(entry["version"], "1.0");
    let one = get(&c, &format!("apps/{name}")).await;
    assert_eq!(one["binding"]["greeting"], "bonjour");
    // As recorded: `httpPort` is a string, and the app came from a wizard.
    assert_eq!(one["httpPort"], port.to_string().as_str());
    assert_eq!(one["createFrom"], "wizard");
    assert_eq!(one["virtual_path"], format!("/{name}").as_str());
    assert!(one["created"].as_i64().unwrap() > 0);
    assert_eq!(one["containers"][1]["state"], "running");

    // The port and the path are taken now; so is the name.
    let again = |n: &str, p: u16, vp: &str| {
        format!(
            r#"{{"template": "weblinks", "name": "{n}", "port": {p}, "virtual_path": "{vp}",
                 "binding": {{"http_port": {}}}}}"#,
            free_port()
        )
    };
    let a = c
        .submit("application", &again(&unique("b"), port, "/other"))
        .await;
    a.assert_error(400, Some("invalid_params"));
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("port: "),
        "{:?}",
        a.body
    );
    let a = c
        .submit(
            "application",
            &again(&unique("b"), free_port(), &format!("/{name}")),
        )
        .await;
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("virtual_path: "),
        "{:?}",
        a.body
    );
    let a = c
        .submit("application", &again(&name, free_port(), "/x"))
        .await;
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("name: "),
        "{:?}",
        a.body
    );

    // Stop, start, restart and kill through the API: each answers what it
    // acted on as Container Station's recorded answers do (containers in
    // the order acted on; `start` the services).
    let act = |verb: &'static str| {
        let c = c.clone();
        let path = format!("apps/{name}/{verb}");
        async move {
            let a = c.send(reqwest::Method::PUT, &path, None).await;
            assert_eq!(a.status, 200, "PUT {path}: {:?}", a.body);
            a.body
        }
    };
    let running = |c: &str| inspect(c)["State"]["Running"] == true;
    assert_eq!(act("stop").await, serde_json::json!([web, db]));
    assert!(!running(&web) && !running(&db));
    assert_eq!(act("start").await, serde_json::json!(["db", "web"]));
    assert!(running(&web) && running(&db));
    assert_eq!(http_get(port, "/").await, "weblinks web says hi\n");
    assert_eq!(act("restart").await, serde_json::json!([db, web]));
    assert_eq!(http_get(port, "/").await, "weblinks web says hi\n");
    assert_eq!(act("kill").await, serde_json::json!([web, db]));
    assert!(!running(&web) && !running(&db));

    assert_eq!(remove_app(&c, &name).await, serde_json::json!([web, db]));
    assert!(project_objects("container", &name).is_empty());
    assert!(project_objects("network", &name).is_empty());
    assert!(!folder.exists());
    c.send(reqwest::Method::GET, &format!("apps/{name}"), None)
        .await
        .assert_error(404, Some("unknown_app"));
}

#[tokio::test]
async fn bad_params_are_400_naming_the_field() {
    let (_server, c, _catalog) = server().await;
    let cases = [
        (
            r#"{"template": "weblinks", "name": "a1", "binding": {"http_port": 70000}}"#,
            "binding.http_port: must be at most 65535",
        ),
        (
            r#"{"template": "weblinks", "name": "a1", "binding": {"http_port": 80}}"#,
            "binding.http_port: must be at least 1024",
        ),
        (
            r#"{"template": "weblinks", "name": "a1", "binding": {"http_port": "eighty"}}"#,
            "binding.http_port: must be an integer",
        ),
        (
            r#"{"template": "weblinks", "name": "a1", "binding": {}}"#,
            "binding.http_port: is required",
        ),
        (
            r#"{"template": "weblinks", "name": "a1", "binding": {"http_port": 2000, "mode": "turbo"}}"#,
            "binding.mode: must be one of",
        ),
        (
            r#"{"template": "weblinks", "name": "a1", "binding": {"http_port": 2000, "nope": 1}}"#,
            "binding.nope: ",
        ),
        (
            r#"{"template": "nosuch", "name": "a1"}"#,
            "template: no template `nosuch`",
        ),
        (
            r#"{"template": "weblinks", "name": "-bad", "binding": {"http_port": 2000}}"#,
            "name: must match",
        ),
        (r#"{"name": "a1"}"#, "params: missing field `template`"),
        (
            r#"{"template": "weblinks", "name": "a1", "port": "x", "binding": {"http_port": 2000}}"#,
            "port: invalid type",
        ),
        (
            r#"{"template": "notes", "name": "a1", "virtual_path": "no slash", "binding": {"http_port": 2000}}"#,
            "virtual_path: ",
        ),
    ];
    for (body, want) in cases {
        let a = c.submit("application", body).await;
        a.assert_error(400, Some("invalid_params"));
        let got = a.body["error"]["message"].as_str().unwrap();
        assert!(got.starts_with(want), "{body}: {got}");
    }
    let a = c
        .submit(
            "application_upgrade",
            r#"{"template": "notes", "name": "never"}"#,
        )
        .await;
    a.assert_error(400, Some("invalid_params"));
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("name: no application"));
    // A template with an empty install.json has no wizard: any answer is unknown.
    let a = c
        .submit(
            "application",
            r#"{"template": "empty", "name": "a1", "binding": {"x": 1}}"#,
        )
        .await;
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("binding.x: "));
    assert_eq!(get(&c, "apps").await, serde_json::json!({}));
}

#[tokio::test]
async fn v3_template_installs_with_a_named_volume_and_upgrades_one_service() {
    let (_server, c, catalog) = server().await;
    let repo = unique("notesweb");
    let v1 = push_busybox(&repo, "1");
    let v2 = push_busybox(&repo, "2");
    set_notes(catalog.path(), "1", &v1);
    let name = unique("notes");
    let port = free_port();
    let id = c
        .submit_ok(
            "application",
            &format!(
                r#"{{"template": "notes", "name": "{name}", "binding": {{"http_port": {port}}}}}"#
            ),
        )
        .await;
    let task = finished(&c, id, 120).await;
    assert_eq!(task["state"], "completed", "{task}");
    assert_eq!(http_get(port, "/").await, "noted\n");
    let web = format!("{name}_web_1");
    let writer = format!("{name}_writer_1");
    assert_eq!(project_objects("volume", &name), [format!("{name}_notes")]);
    let writer_id = inspect(&writer)["Id"].as_str().unwrap().to_string();
    let web_id = inspect(&web)["Id"].as_str().unwrap().to_string();
    assert_eq!(inspect(&web)["Config"]["Image"], v1.as_str());

    // Upgrade: the repository now has version 2, whose web runs another image.
    set_notes(catalog.path(), "2", &v2);
    let id = c
        .submit_ok(
            "application_upgrade",
            &format!(r#"{{"template": "notes", "name": "{name}"}}"#),
        )
        .await;
    let task = finished(&c, id, 120).await;
    assert_eq!(task["state"], "completed", "{task}");
    assert!(
        task["detail_state"]
            .as_str()
            .unwrap()
            .contains("recreated: web"),
        "{task}"
    );
    assert_eq!(inspect(&web)["Config"]["Image"], v2.as_str());
    assert_ne!(inspect(&web)["Id"].as_str().unwrap(), web_id);
    assert_eq!(
        inspect(&writer)["Id"].as_str().unwrap(),
        writer_id,
        "writer untouched"
    );
    // The binding survived (same port) and so did the data in the named volume.
    assert_eq!(http_get(port, "/").await, "noted\n");
    let one = get(&c, &format!("apps/{name}")).await;
    assert_eq!(one["version"], "2");
    assert_eq!(one["binding"]["http_port"], port);

    // Upgrade to an image that does not exist: error, and the app still answers.
    let missing = format!("{}/stevedore/{repo}:nope", env("STEVEDORE_TEST_REGISTRY"));
    set_notes(catalog.path(), "3", &missing);
    let id = c
        .submit_ok(
            "application_upgrade",
            &format!(r#"{{"template": "notes", "name": "{name}"}}"#),
        )
        .await;
    let task = finished(&c, id, 120).await;
    assert_eq!(task["state"], "error", "{task}");
    let detail = task["detail_state"].as_str().unwrap();
    assert!(
        detail.contains("upgrade failed") && detail.contains(&missing),
        "{detail}"
    );
    assert_eq!(http_get(port, "/").await, "noted\n");
    assert_eq!(inspect(&web)["Config"]["Image"], v2.as_str());
    assert_eq!(get(&c, &format!("apps/{name}")).await["version"], "2");

    // Upgrade the writer instead: its anonymous volume comes along, web stays.
    set_image(catalog.path(), "4", "web", &v2);
    set_image(catalog.path(), "4", "writer", &v1);
    docker(&["exec", &writer, "sh", "-c", "echo kept > /scratch/mark"]);
    let web_id = inspect(&web)["Id"].as_str().unwrap().to_string();
    let id = c
        .submit_ok(
            "application_upgrade",
            &format!(r#"{{"template": "notes", "name": "{name}"}}"#),
        )
        .await;
    let task = finished(&c, id, 120).await;
    assert_eq!(task["state"], "completed", "{task}");
    assert!(
        task["detail_state"]
            .as_str()
            .unwrap()
            .ends_with("recreated: writer"),
        "{task}"
    );
    assert_eq!(
        inspect(&web)["Id"].as_str().unwrap(),
        web_id,
        "web untouched"
    );
    assert_ne!(inspect(&writer)["Id"].as_str().unwrap(), writer_id);
    assert_eq!(docker(&["exec", &writer, "cat", "/scratch/mark"]), "kept");
    assert_eq!(http_get(port, "/").await, "noted\n");

    remove_app(&c, &name).await;
    assert!(project_objects("volume", &name).is_empty());
    assert!(project_objects("container", &name).is_empty());
}

/// A registry that accepts connections and never answers: a pull from it
/// hangs until cancelled.
async fn silent_registry() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, handle)
}

#[tokio::test]
async fn cancelling_an_install_leaves_nothing() {
    let (server, c, catalog) = server().await;
    let (registry, _held) = silent_registry().await;
    // weblinks with web's image on the silent registry: db is created and
    // started first, then web's pull hangs.
    let compose = catalog.path().join("template/weblinks/docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap().replacen(
        "image: busybox:latest",
        &format!("image: 127.0.0.1:{registry}/stevedore/hangs:1"),
        1,
    );
    std::fs::write(&compose, text).unwrap();
    let name = unique("cancel");
    let id = c
        .submit_ok(
            "application",
            &format!(
                r#"{{"template": "weblinks", "name": "{name}", "binding": {{"http_port": {}}}}}"#,
                free_port()
            ),
        )
        .await;
    let seen = c
        .wait_until(id, Duration::from_secs(60), |t| {
            // The host names the image it pulls; db (busybox) is started by then.
            t["detail_state"]
                .as_str()
                .is_some_and(|d| d.contains("stevedore/hangs"))
        })
        .await
        .expect("the install reaches the hanging pull");
    assert_eq!(seen["state"], "running");
    assert_eq!(
        project_objects("container", &name),
        [format!("{name}_db_1")]
    );
    let a = c.delete(&id.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // Deleting a running task cancels it first; it is gone once undone.
    let until = Instant::now() + Duration::from_secs(30);
    while c.task(id).await.is_some() {
        assert!(Instant::now() < until, "task {id} still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(project_objects("container", &name).is_empty());
    assert!(project_objects("network", &name).is_empty());
    assert!(!server.data_dir().join("apps").join(&name).exists());
    assert_eq!(get(&c, "apps").await, serde_json::json!({}));
}

/// User policies over applications (issue 14): a non-admin sees and acts on
/// only the applications their own tasks installed; the admin on all.
#[tokio::test]
async fn a_non_admin_reaches_only_their_own_applications() {
    let catalog = tempfile::tempdir().unwrap();
    copy_dir(
        &workspace_root().join("tests/fixtures/catalog"),
        catalog.path(),
    );
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        stevedore_e2e::hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(PLUGINS)
            .test_engine()
            .config(&config)
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string()),
    )
    .await;
    let admin = server.admin().await;
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let (mine, theirs) = (unique("bob"), unique("adm"));
    for (c, name) in [(&admin, &theirs), (&bob, &mine)] {
        let id = c
            .submit_ok(
                "application",
                &format!(r#"{{"template": "empty", "name": "{name}"}}"#),
            )
            .await;
        let t = finished(c, id, 120).await;
        assert_eq!(t["state"], "completed", "{t}");
    }
    let seen = |c: &Client| {
        let c = c.clone();
        async move {
            let r = c.send(reqwest::Method::GET, "apps", None).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    let bobs = seen(&bob).await;
    assert!(bobs.contains(&mine) && !bobs.contains(&theirs), "{bobs:?}");
    let all = seen(&admin).await;
    assert!(all.contains(&mine) && all.contains(&theirs), "{all:?}");
    for (method, path) in [
        (reqwest::Method::GET, format!("apps/{theirs}")),
        (reqwest::Method::PUT, format!("apps/{theirs}/stop")),
        (reqwest::Method::DELETE, format!("apps/{theirs}")),
    ] {
        bob.send(method, &path, None)
            .await
            .assert_error(403, Some("denied"));
    }
    // An upgrade of the admin's application on bob's behalf is refused by the host.
    let id = bob
        .submit_ok(
            "application_upgrade",
            &format!(r#"{{"template": "empty", "name": "{theirs}"}}"#),
        )
        .await;
    let t = finished(&bob, id, 60).await;
    assert_eq!(t["state"], "error", "{t}");
    let detail = t["detail_state"].as_str().unwrap();
    assert!(detail.contains("by user bob"), "refused by the policy: {t}");
    assert_eq!(
        project_objects("container", &theirs).len(),
        1,
        "the admin's app is untouched"
    );
    for (c, name) in [(&bob, &mine), (&admin, &theirs)] {
        let r = c
            .send(reqwest::Method::DELETE, &format!("apps/{name}"), None)
            .await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        assert!(project_objects("container", name).is_empty());
    }
}
