//! The registry and preference routes (`image.rst`'s registry part,
//! `preference.rst`): a registry added through the API pointing at the
//! test registries, listed in the recorded shape without its password,
//! pinged (reachable, and an unused port answered fast as unreachable),
//! edited, refused to non-admins, bad input named, removed; the
//! configuration's registries read-only; the password in no file of the
//! data folder and not in clear in the shared database; a second node of
//! that database sees the registry; `preference/repo` set on one node is
//! used by the template lookups of both without a restart; a 501 route.
//!
//! Needs the test services (`cargo xtask services env`): the registries,
//! PostgreSQL and the catalog.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    env, free_port, fresh_database, hash_password, registries_config, unique, Answer, Client,
    Options, Server,
};

/// The keys and JSON types of one registry of the recorded `GET registry`.
fn assert_recorded_entry(r: &Value) {
    for (key, check) in [
        ("enableTrustCert", Value::is_boolean as fn(&Value) -> bool),
        ("id", Value::is_i64),
        ("name", Value::is_string),
        ("password", Value::is_string),
        ("url", Value::is_string),
        ("username", Value::is_string),
        ("version", Value::is_string),
    ] {
        assert!(check(&r[key]), "{key} of {r}");
    }
    assert!(
        r["metadata"].is_string() || r["metadata"].is_object(),
        "{r}"
    );
    assert_eq!(r["password"], "", "a password is never answered: {r}");
}

/// The recorded list shape; returns the entries.
fn assert_recorded_list(v: &Value) -> Vec<Value> {
    assert!(v["privateRegistry"].is_i64(), "{v}");
    let list = v["registries"].as_array().expect("registries[]").clone();
    for r in &list {
        assert_recorded_entry(r);
    }
    list
}

fn names(v: &Value) -> Vec<String> {
    v["registries"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|r| r["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn entry<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["registries"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {v}"))
}

async fn ok(c: &Client, method: Method, path: &str, body: Option<&str>) -> Value {
    let a = c.send(method.clone(), path, body).await;
    assert_eq!(a.status, 200, "{method} {path}: {:?}", a.body);
    a.body
}

/// The auth registry's login, from the test services.
fn auth_login() -> (String, String) {
    (
        env("STEVEDORE_TEST_AUTH_USER"),
        env("STEVEDORE_TEST_AUTH_PASSWORD"),
    )
}

fn add_body(name: &str, url: &str, user: &str, password: &str) -> String {
    json!({
        "method": "add",
        "name": name,
        "url": url,
        "enableTrustCert": false,
        "version": "v2",
        "setToDefault": true,
        "username": user,
        "password": password,
    })
    .to_string()
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn registries_are_added_listed_pinged_edited_refused_and_removed() {
    let config = format!(
        "{}\n[users.bob]\npassword_hash = \"{}\"\n\n[users.carol]\npassword_hash = \"{}\"\n\n[users.carol.policy]\nregistries = [\"local\"]\n",
        registries_config(),
        hash_password("bob-pw"),
        hash_password("carol-pw"),
    );
    let server = Server::start(Options::default().config(&config)).await;
    let admin = server.admin().await;
    let (user, password) = auth_login();
    let name = unique("lab");

    // Docker Hub and the configuration's registries, read-only.
    let listed = ok(&admin, Method::GET, "registry", None).await;
    let list = assert_recorded_list(&listed);
    assert_eq!(list[0]["name"], "Docker Hub");
    assert_eq!(list[0]["id"], 1);
    for n in ["local", "secure"] {
        assert_eq!(entry(&listed, n)["readOnly"], true);
    }

    // Add one pointing at the registry with a login.
    let url = format!("http://{}", env("STEVEDORE_TEST_AUTH_REGISTRY"));
    let added = admin
        .send(
            Method::POST,
            "registry",
            Some(&add_body(&name, &url, &user, &password)),
        )
        .await;
    assert_eq!(added.status, 200, "{:?}", added.body);
    assert!(!added.body.to_string().contains(&password));
    assert_recorded_list(&added.body);
    let mine = entry(&added.body, &name).clone();
    assert_eq!(mine["url"], url.as_str());
    assert_eq!(mine["username"], user.as_str());
    assert_eq!(mine["metadata"], json!({"crypt": true}));
    assert_eq!(mine["readOnly"], false);
    assert_eq!(added.body["privateRegistry"], mine["id"], "setToDefault");
    let listed = ok(&admin, Method::GET, "registry/", None).await;
    assert_eq!(entry(&listed, &name), &mine);

    // The default push registry, without its password.
    let push = ok(&admin, Method::GET, "registry/push", None).await;
    assert_eq!(push["registry"], name.as_str());
    assert_eq!(push["username"], user.as_str());
    assert_eq!(push["password"], "");
    assert!(push["registries"]
        .as_array()
        .unwrap()
        .contains(&json!(name)));

    // A taken name, a configuration name.
    admin
        .send(
            Method::POST,
            "registry",
            Some(&add_body(&name, &url, &user, &password)),
        )
        .await
        .assert_error(409, Some("conflict"));
    admin
        .send(
            Method::POST,
            "registry",
            Some(&add_body("local", &url, &user, &password)),
        )
        .await
        .assert_error(409, Some("read_only"));

    // Bad input names the field.
    for (body, field) in [
        (json!({"name": "x", "url": "http://r"}), "method"),
        (json!({"method": "add", "url": "http://r"}), "name"),
        (
            json!({"method": "add", "name": "a/b", "url": "http://r"}),
            "name",
        ),
        (json!({"method": "add", "name": "x"}), "url"),
        (
            json!({"method": "add", "name": "x", "url": "ftp://r"}),
            "url",
        ),
        (
            json!({"method": "add", "name": "x", "url": "http://r", "enableTrustCert": "yes"}),
            "enableTrustCert",
        ),
        (
            json!({"method": "add", "name": "x", "url": "http://r", "version": 2}),
            "version",
        ),
        (
            json!({"method": "add", "name": "x", "url": "http://r", "password": "p"}),
            "username",
        ),
        (
            json!({"method": "edit", "name": "x", "url": "http://r"}),
            "oldname",
        ),
    ] {
        let a = admin
            .send(Method::POST, "registry", Some(&body.to_string()))
            .await;
        stevedore_e2e::assert_names(&a, field);
    }
    admin
        .send(Method::POST, "registry", Some("{not json"))
        .await
        .assert_error(400, Some("invalid_json"));

    // Ping: by name with its stored login, by URL, and an unused port.
    let pinged = ok(
        &admin,
        Method::POST,
        "registry/ping",
        Some(&json!({"name": name}).to_string()),
    )
    .await;
    assert_eq!(
        pinged,
        json!({"auth": true, "version": "v2", "reachable": true})
    );
    let open = format!("http://{}", env("STEVEDORE_TEST_REGISTRY"));
    let pinged = ok(
        &admin,
        Method::GET,
        &format!("registry/ping?url={open}&tls=false"),
        None,
    )
    .await;
    assert_eq!(
        pinged,
        json!({"auth": true, "version": "v2", "reachable": true})
    );
    // The auth registry without a login answers, refusing it.
    let pinged = ok(
        &admin,
        Method::POST,
        "registry/ping",
        Some(&json!({"url": url, "tls": false}).to_string()),
    )
    .await;
    assert_eq!(pinged["reachable"], true);
    assert_eq!(pinged["auth"], false);
    let started = Instant::now();
    let unused = format!("http://127.0.0.1:{}", free_port());
    let pinged = ok(
        &admin,
        Method::POST,
        "registry/ping",
        Some(&json!({"url": unused, "tls": true}).to_string()),
    )
    .await;
    assert_eq!(
        pinged,
        json!({"auth": false, "version": "", "reachable": false})
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "an unreachable registry answered after {:?}",
        started.elapsed()
    );
    stevedore_e2e::assert_names(
        &admin.send(Method::POST, "registry/ping", Some("{}")).await,
        "url",
    );
    admin
        .send(
            Method::POST,
            "registry/ping",
            Some(r#"{"name": "nothing-here"}"#),
        )
        .await
        .assert_error(404, Some("unknown_registry"));

    // Edit: renamed, the login kept when no password is sent.
    let renamed = unique("lab2");
    let edited = ok(
        &admin,
        Method::POST,
        "registry",
        Some(
            &json!({"method": "edit", "oldname": name, "name": renamed, "url": url,
                    "enableTrustCert": true, "username": user})
            .to_string(),
        ),
    )
    .await;
    let now = entry(&edited, &renamed);
    assert_eq!(now["id"], mine["id"]);
    assert_eq!(now["enableTrustCert"], true);
    assert!(!names(&edited).contains(&name));
    let pinged = ok(
        &admin,
        Method::GET,
        &format!("registry/ping?name={renamed}"),
        None,
    )
    .await;
    assert_eq!(pinged["auth"], true, "the stored password was kept");

    // The password is in no file of the data folder, nor in the log.
    for f in files(&server.data_dir()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !contains(&bytes, password.as_bytes()),
            "{} holds the password",
            f.display()
        );
    }
    assert!(!server.logs().contains(&password));

    // Non-admins: bob has no registries in his policy, carol reads `local`.
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    for (method, path, body) in [
        (Method::GET, "registry", None),
        (Method::GET, "registry/push", None),
        (
            Method::POST,
            "registry",
            Some(add_body("b", &url, &user, "x")),
        ),
        (Method::DELETE, &*format!("registry/{renamed}"), None),
        (
            Method::POST,
            "registry/ping",
            Some(json!({"url": open}).to_string()),
        ),
        (
            Method::PUT,
            "preference/repo",
            Some(json!({"url": "http://127.0.0.1:1/"}).to_string()),
        ),
    ] {
        bob.send(method, path, body.as_deref())
            .await
            .assert_error(403, Some("admin_only"));
    }
    let carol = server.client();
    assert_eq!(carol.login("carol", "carol-pw").await.status, 200);
    let seen = ok(&carol, Method::GET, "registry", None).await;
    assert_recorded_list(&seen);
    assert_eq!(names(&seen), vec!["local".to_string()]);
    carol
        .send(
            Method::POST,
            "registry/ping",
            Some(&json!({"name": renamed}).to_string()),
        )
        .await
        .assert_error(403, Some("not_yours"));
    carol
        .send(Method::DELETE, "registry/local", None)
        .await
        .assert_error(403, Some("admin_only"));

    // The configuration's registries and Docker Hub stay.
    for n in ["local", "Docker%20Hub"] {
        admin
            .send(Method::DELETE, &format!("registry/{n}"), None)
            .await
            .assert_error(409, Some("read_only"));
    }
    stevedore_e2e::assert_names(&admin.send(Method::DELETE, "registry", None).await, "name");
    let removed = ok(
        &admin,
        Method::DELETE,
        &format!("registry?name={renamed}"),
        None,
    )
    .await;
    assert_recorded_list(&removed);
    assert!(!names(&removed).contains(&renamed));
    assert_eq!(removed["privateRegistry"], 1, "the default went with it");
    admin
        .send(Method::DELETE, &format!("registry/{renamed}"), None)
        .await
        .assert_error(404, Some("unknown_registry"));
    let push = ok(&admin, Method::GET, "registry/push", None).await;
    assert_eq!(push["registry"], "");

    // The documented routes this server does not serve: 501, named.
    for (method, path, named) in [
        (Method::GET, "tls", "TLS"),
        (Method::POST, "tls/rotation", "TLS"),
        (Method::GET, "preference/", "preference"),
        (Method::PUT, "preference/network", "LXC network"),
        (Method::GET, "preference/doc_test", "preference"),
        (Method::GET, "lxd_registry", "LXD"),
        (Method::DELETE, "lxd_registry/images", "LXD"),
    ] {
        let a = admin.send(method.clone(), path, None).await;
        a.assert_error(501, Some("not_supported"));
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(named) && message.contains(path.trim_end_matches('/')),
            "{method} {path}: {message}"
        );
    }
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

/// `psql` on `db`, one query, unaligned rows.
fn psql(db: &str, query: &str) -> String {
    let out = std::process::Command::new("psql")
        .arg(db)
        .args(["-At", "-c", query])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `path` on `c` until `done` holds for its answer (20 s deadline).
async fn poll(c: &Client, path: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let a = c.send(Method::GET, path, None).await;
        if done(&a) {
            return a;
        }
        assert!(Instant::now() < end, "{path}: still {:?}", a.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_second_node_sees_the_registry_and_the_repository_applies_without_restart() {
    let db = fresh_database("registries");
    let key = shared_key();
    // A configured repository where nothing listens: templates fail until
    // the API names the test catalog.
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let node = |name: &str| {
        let mut o = Options::default()
            .config(&format!(
                "[users.bob]\npassword_hash = \"{}\"\n",
                hash_password("bob-pw")
            ))
            .env("STEVEDORE_DATABASE_URL", &db)
            .env("STEVEDORE_NODE", name)
            .env("STEVEDORE_CATALOG", &dead);
        o.data_files.push(("secret.key".into(), key.clone()));
        o
    };
    let a = Server::start(node(&unique("a"))).await;
    let b = Server::start(node(&unique("b"))).await;
    let ca = a.admin().await;
    let cb = b.admin().await;
    let (user, password) = auth_login();
    let name = unique("shared");
    let url = format!("http://{}", env("STEVEDORE_TEST_AUTH_REGISTRY"));

    ok(
        &ca,
        Method::POST,
        "registry",
        Some(&add_body(&name, &url, &user, &password)),
    )
    .await;
    // B lists it and pings it with the login A stored.
    let on_b = ok(&cb, Method::GET, "registry", None).await;
    assert_recorded_list(&on_b);
    assert_eq!(entry(&on_b, &name)["username"], user.as_str());
    let pinged = ok(
        &cb,
        Method::POST,
        "registry/ping",
        Some(&json!({"name": name}).to_string()),
    )
    .await;
    assert_eq!(pinged["auth"], true, "{pinged}");
    // Not in clear in the database (nor hex-encoded).
    let rows = psql(&db, "SELECT t::text FROM registries t");
    assert!(rows.contains(&name), "{rows}");
    assert!(!rows.contains(&password));
    assert!(!rows.contains(&hex(password.as_bytes())));

    // The repository: the configured one at first, unusable.
    let repo = ok(&ca, Method::GET, "preference/repo", None).await;
    for k in ["user", "project", "branch", "default", "from"] {
        assert!(repo[k].is_string(), "{k} of {repo}");
    }
    assert_eq!(repo["from"], "default");
    assert_ne!(
        ca.send(Method::GET, "template/gitlab/wizard", None)
            .await
            .status,
        200
    );
    // Bad input names the field; a non-admin may read but not set it.
    stevedore_e2e::assert_names(
        &ca.send(
            Method::PUT,
            "preference/repo",
            Some(r#"{"url": "ftp://x/"}"#),
        )
        .await,
        "url",
    );
    stevedore_e2e::assert_names(
        &ca.send(
            Method::PUT,
            "preference/repo",
            Some(r#"{"user": "a b", "project": "p", "branch": "b"}"#),
        )
        .await,
        "user",
    );
    stevedore_e2e::assert_names(
        &ca.send(
            Method::PUT,
            "preference/repo",
            Some(r#"{"user": "qnap-dev", "project": "container-apps"}"#),
        )
        .await,
        "branch",
    );
    let bob = a.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    ok(&bob, Method::GET, "preference/repo", None).await;

    // Set on A: A's next template lookup uses it, B's within its refresh.
    let catalog = env("STEVEDORE_TEST_CATALOG");
    let set = ok(
        &ca,
        Method::PUT,
        "preference/repo",
        Some(&json!({"url": catalog}).to_string()),
    )
    .await;
    assert_eq!(set["result"], true);
    assert_eq!(set["from"], "user");
    let wizard = ok(&ca, Method::GET, "template/gitlab/wizard", None).await;
    assert_eq!(wizard["title"], "GitLab");
    poll(&cb, "template/gitlab/wizard", |a| a.status == 200).await;
    let on_b = ok(&cb, Method::GET, "preference/repo", None).await;
    assert_eq!(on_b["from"], "user");
    assert_eq!(on_b["url"], catalog.as_str());

    // GitHub's form is understood and answered back.
    let gh = ok(
        &ca,
        Method::PUT,
        "preference/repo",
        Some(r#"{"user": "qnap-dev", "project": "container-apps", "branch": "master"}"#),
    )
    .await;
    assert_eq!(
        (
            gh["user"].as_str(),
            gh["project"].as_str(),
            gh["branch"].as_str()
        ),
        (Some("qnap-dev"), Some("container-apps"), Some("master"))
    );
    // Back to the configured one.
    let back = ok(&ca, Method::PUT, "preference/repo", Some(r#"{"url": ""}"#)).await;
    assert_eq!(back["from"], "default");
    assert_ne!(
        ca.send(Method::GET, "template/gitlab/wizard", None)
            .await
            .status,
        200
    );

    // Removed on B: gone on A.
    ok(&cb, Method::DELETE, &format!("registry/{name}"), None).await;
    let on_a = ok(&ca, Method::GET, "registry", None).await;
    assert!(!names(&on_a).contains(&name));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Wait for task `id` to end (3 min deadline); returns it.
async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(180), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

#[tokio::test]
async fn a_pull_names_a_registry_added_through_the_api_and_uses_its_login() {
    let server =
        Server::start(Options::with_plugins(&["image_push", "image_download"]).test_engine()).await;
    let c = server.admin().await;
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let (user, password) = auth_login();
    stevedore_e2e::docker(&["pull", "-q", "busybox:latest"]);
    // The image is only in the registry with a login; nothing remembered.
    let repo = format!("stevedore/{}", unique("apireg"));
    let push = json!({"image": "busybox", "tag": "latest", "newImage": repo, "newTag": "v1",
        "registry": registry, "username": user, "password": password, "rememberme": false});
    let id = c.submit_ok("image_push", &push.to_string()).await;
    assert_eq!(ended(&c, id).await["state"], "completed");
    let pulled = format!("{registry}/{repo}:v1");
    stevedore_e2e::docker_ok(&["rmi", &pulled]);

    // Unknown before it is added.
    let pull = |name: &str| {
        json!({"type": "docker", "repository": "private", "registry_name": name,
            "image": repo, "tag": "v1"})
        .to_string()
    };
    let name = unique("pullfrom");
    let before = c.submit("image_download", &pull(&name)).await;
    if before.status == 200 {
        let t = ended(&c, before.body["id"].as_i64().unwrap()).await;
        assert_eq!(t["state"], "error", "{t}");
    } else {
        before.assert_error(400, None);
    }

    ok(
        &c,
        Method::POST,
        "registry",
        Some(&add_body(&name, &registry, &user, &password)),
    )
    .await;
    // The image search asks it too, with its sealed login.
    let search = ok(
        &c,
        Method::GET,
        &format!("image?category=private&registry_name={name}&filter_text={repo}"),
        None,
    )
    .await;
    assert!(
        search["results"]
            .as_array()
            .is_some_and(|r| r.iter().any(|e| e.to_string().contains(&repo))),
        "the search lists {repo}: {search}"
    );
    assert_eq!(search["errors"], json!([]), "{search}");
    let id = c.submit_ok("image_download", &pull(&name)).await;
    let t = ended(&c, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert!(
        stevedore_e2e::docker_ok(&["image", "inspect", &pulled]),
        "the pull brought {pulled}"
    );
    stevedore_e2e::docker_ok(&["rmi", &pulled]);
    ok(&c, Method::DELETE, &format!("registry/{name}"), None).await;
}
