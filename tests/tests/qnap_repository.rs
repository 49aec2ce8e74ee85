//! QNAP's application repository as it is published (issue 27): a
//! `list.json` of QNAP's shape (`app` entries whose `location` is a Docker
//! Hub page, `displayName`, `icon`, entries for other architectures, `lxc`
//! and `docker` entries), templates in `template/<name>/` beside it in
//! Compose v1 with both wizard formats and i18n strings
//! (`tests/fixtures/catalog`, written for these tests in QNAP's shape).
//! The real server installs `gitlab` (three linked services), `joomla` and
//! `wordpress` through the `application` plugin on the real engine, whose
//! registry mirror serves stand-ins for the templates' images
//! (`cargo xtask services`, [`STAND_INS`](../../xtask/src/services.rs)).
//! The repository is served over HTTP by a small file server here, and read
//! from a folder, so both kinds of root are exercised. The application
//! routes answer as Container Station's recorded answers do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{copy_dir, docker, free_port, workspace_root, Client, Options, Server};

const PLUGINS: &[&str] = &["application", "application_upgrade"];

/// A name for an application (letters and digits: also its project name).
fn unique(what: &str) -> String {
    stevedore_e2e::unique(what).replace('-', "x")
}

/// A copy of the fixture repository in a temporary folder.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&workspace_root().join("tests/fixtures/catalog"), dir.path());
    dir
}

/// Serve `dir`'s files over HTTP/1.1 GET on loopback (404 for anything
/// else); returns the root URL. Requests are counted per path.
async fn serve(dir: PathBuf) -> (String, std::sync::Arc<parking_lot::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let dir = dir.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                log.lock().push(path.clone());
                let rel = path.trim_start_matches('/');
                let safe = !rel.split('/').any(|p| p == ".." || p.is_empty());
                let body = if safe {
                    std::fs::read(dir.join(rel)).ok()
                } else {
                    None
                };
                let (status, body) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    (url, seen)
}

async fn start_server(catalog: &str) -> (Server, Client) {
    let server = Server::start(
        Options::with_plugins(PLUGINS)
            .test_engine()
            .env("STEVEDORE_CATALOG", catalog),
    )
    .await;
    let client = server.admin().await;
    (server, client)
}

async fn install(c: &Client, body: Value) -> Value {
    let id = c.submit_ok("application", &body.to_string()).await;
    let task = c
        .wait_until(id, Duration::from_secs(240), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("install {body} did not end: {last:?}"));
    assert_eq!(task["state"], "completed", "{task}");
    task
}

fn inspect(container: &str) -> Value {
    serde_json::from_str::<Value>(&docker(&["inspect", container])).unwrap()[0].clone()
}

fn running(container: &str) -> bool {
    inspect(container)["State"]["Running"] == true
}

fn env_of(container: &str) -> Vec<String> {
    inspect(container)["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn host_port(container: &str, port: &str) -> String {
    inspect(container)["HostConfig"]["PortBindings"][port][0]["HostPort"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// GET `http://127.0.0.1:{port}/` until it answers 200 (deadline 30 s).
async fn http_text(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return r.text().await.unwrap().trim().to_string();
            }
        }
        assert!(Instant::now() < until, "{url} did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A name from inside a container (a link alias), answered by its httpd.
fn through_link(container: &str, host: &str) -> String {
    docker(&[
        "exec",
        container,
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{host}/"),
    ])
}

async fn call(c: &Client, method: Method, path: &str) -> Value {
    let a = c.send(method.clone(), path, None).await;
    assert_eq!(a.status, 200, "{method} {path}: {:?}", a.body);
    a.body
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array of names: {v}"))
        .iter()
        .map(|n| n.as_str().expect("a name").to_string())
        .collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

/// Remove an application and check its containers went.
async fn remove(c: &Client, name: &str, containers: &[String]) {
    let gone = call(
        c,
        Method::DELETE,
        &format!("apps/{name}?remove_volumes=true"),
    )
    .await;
    assert_eq!(set(&names(&gone)), set(containers), "{gone}");
    for container in containers {
        assert!(
            !stevedore_e2e::docker_ok(&["inspect", container]),
            "{container} is still there"
        );
    }
}

/// `gitlab` and `joomla` from a repository served over HTTP: the templates
/// come from `template/<name>/` beside `list.json`, never from the entries'
/// Docker Hub `location`s; the 2.0 wizard wins over the older
/// `wizard/install.json` beside it; the answers land in the published ports
/// and the environment; the application routes answer as recorded.
#[tokio::test]
async fn gitlab_and_joomla_install_from_a_repository_served_over_http() {
    let repo = repository();
    let (url, requests) = serve(repo.path().to_path_buf()).await;
    let (_server, c) = start_server(&url).await;

    // The wizard, translated, as `GET template/gitlab/wizard?lang=eng` was recorded.
    let wizard = call(&c, Method::GET, "template/gitlab/wizard?lang=eng").await;
    assert_eq!(wizard["api_version"], "v1");
    assert_eq!(wizard["title"], "GitLab");
    assert_eq!(
        wizard["default"],
        json!({"http_port": 12080, "ssh_port": 12022})
    );
    assert!(wizard.get("binding").is_none(), "{wizard}");
    assert!(wizard["description"]
        .as_str()
        .unwrap()
        .starts_with("## Description\nGitLab with its PostgreSQL and Redis"));
    let page = &wizard["wizard"][0];
    assert_eq!(page["title"], "Configure the ports");
    assert_eq!(page["form"], json!(["*"]));
    assert_eq!(page["schema"]["type"], "object");
    let http = &page["schema"]["properties"]["http_port"];
    assert_eq!(http["type"], "integer");
    assert_eq!(http["required"], true);
    assert_eq!(
        http["description"],
        "The host port of the GitLab web server. Defaults to 12080."
    );
    assert_eq!(wizard["wizard"].as_array().unwrap().len(), 1, "{wizard}");
    // No `lang` is English; another language overrides what it translates.
    assert_eq!(
        call(&c, Method::GET, "template/gitlab/wizard").await,
        wizard
    );
    let cht = call(&c, Method::GET, "template/gitlab/wizard?lang=cht").await;
    assert_eq!(cht["wizard"][0]["title"], "設定連接埠");
    assert_eq!(cht["title"], "GitLab", "untranslated strings stay English");
    c.send(Method::GET, "template/gitlab/wizard?lang=../eng", None)
        .await
        .assert_error(400, Some("invalid_params"));
    c.send(Method::GET, "template/nosuch/wizard", None)
        .await
        .assert_error(404, Some("unknown_template"));

    // gitlab: three services, linked, both ports and their env bound.
    let name = unique("gitlab");
    let (web_port, ssh_port) = (free_port(), free_port());
    install(
        &c,
        json!({"template": "gitlab", "name": name,
               "binding": {"http_port": web_port, "ssh_port": ssh_port}}),
    )
    .await;
    let [gitlab, redis, postgresql] =
        ["gitlab", "redis", "postgresql"].map(|s| format!("{name}_{s}_1"));
    for container in [&gitlab, &redis, &postgresql] {
        assert!(running(container), "{container} runs");
    }
    assert_eq!(host_port(&gitlab, "80/tcp"), web_port.to_string());
    assert_eq!(host_port(&gitlab, "22/tcp"), ssh_port.to_string());
    let env = env_of(&gitlab);
    assert!(env.contains(&format!("GITLAB_PORT={web_port}")), "{env:?}");
    assert!(
        env.contains(&format!("GITLAB_SSH_PORT={ssh_port}")),
        "{env:?}"
    );
    assert!(env.contains(&"DEBUG=false".to_string()), "{env:?}");
    assert_eq!(http_text(web_port).await, "sameersbn/gitlab:11.4.0");
    assert_eq!(through_link(&gitlab, "redisio"), "sameersbn/redis:latest");
    assert_eq!(
        through_link(&gitlab, "postgresql"),
        "sameersbn/postgresql:9.6-2"
    );
    // Nothing was asked of the entries' web pages: only the repository's files.
    let asked = requests.lock().clone();
    assert!(asked.iter().any(|p| p == "/list.json"), "{asked:?}");
    assert!(
        asked
            .iter()
            .any(|p| p == "/template/gitlab/docker-compose.yml"),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .all(|p| p == "/list.json" || p.starts_with("/template/")),
        "{asked:?}"
    );

    // GET apps/{name} as recorded: `httpPort` a string, `createFrom`.
    let app = call(&c, Method::GET, &format!("apps/{name}")).await;
    assert_eq!(app["httpPort"], web_port.to_string().as_str(), "{app}");
    assert_eq!(app["createFrom"], "wizard");
    assert_eq!(app["name"], name.as_str());
    assert_eq!(app["template"], "gitlab");
    assert_eq!(app["version"], "11.4.0");
    assert_eq!(app["binding"]["http_port"], web_port);

    // The actions answer the recorded arrays: container names, except
    // `start`, which answers the services.
    let all = vec![gitlab.clone(), redis.clone(), postgresql.clone()];
    let stopped = names(&call(&c, Method::PUT, &format!("apps/{name}/stop")).await);
    assert_eq!(set(&stopped), set(&all));
    assert_eq!(
        stopped[0], gitlab,
        "stopped before what it links: {stopped:?}"
    );
    assert!(all.iter().all(|x| !running(x)));
    let started = names(&call(&c, Method::PUT, &format!("apps/{name}/start")).await);
    assert_eq!(
        set(&started),
        set(&["gitlab", "redis", "postgresql"].map(String::from)),
    );
    assert_eq!(started.last().unwrap(), "gitlab", "{started:?}");
    assert!(all.iter().all(|x| running(x)));
    let restarted = names(&call(&c, Method::PUT, &format!("apps/{name}/restart")).await);
    assert_eq!(set(&restarted), set(&all));
    assert_eq!(http_text(web_port).await, "sameersbn/gitlab:11.4.0");
    let killed = names(&call(&c, Method::PUT, &format!("apps/{name}/kill")).await);
    assert_eq!(set(&killed), set(&all));
    assert!(all.iter().all(|x| !running(x)));
    c.send(Method::PUT, &format!("apps/{name}/explode"), None)
        .await
        .assert_error(404, Some("unknown_path"));
    remove(&c, &name, &all).await;

    // joomla: the site and its database; a password answer lands in both.
    let name = unique("joomla");
    let port = free_port();
    let password = format!("pw{}", std::process::id());
    install(
        &c,
        json!({"template": "joomla", "name": name,
               "binding": {"http_port": port, "db_password": password}}),
    )
    .await;
    let (web, db) = (format!("{name}_web_1"), format!("{name}_db_1"));
    assert!(running(&web) && running(&db));
    assert_eq!(host_port(&web, "80/tcp"), port.to_string());
    assert!(env_of(&web).contains(&format!("JOOMLA_DB_PASSWORD={password}")));
    assert!(env_of(&web).contains(&"JOOMLA_DB_HOST=mysql".to_string()));
    assert!(env_of(&db).contains(&format!("MYSQL_PASSWORD={password}")));
    assert_eq!(http_text(port).await, "joomla:3.8");
    assert_eq!(through_link(&web, "mysql"), "mysql:5.7");
    let apps = call(&c, Method::GET, "apps").await;
    assert_eq!(apps[name.as_str()]["container"], json!([db, web]), "{apps}");
    assert_eq!(apps[name.as_str()]["creating"], false);
    assert_eq!(apps[name.as_str()]["yml"], true);
    let app = call(&c, Method::GET, &format!("apps/{name}")).await;
    assert_eq!(app["httpPort"], port.to_string().as_str());
    assert_ne!(
        app["binding"]["db_password"],
        password.as_str(),
        "kept secret"
    );
    remove(&c, &name, &[web, db]).await;
}

/// `wordpress` from a repository in a local folder: the template beside
/// `list.json` too; its older, empty `wizard/install.json` loses to the 2.0
/// wizard (whose answers it would otherwise refuse); map-form environment.
#[tokio::test]
async fn wordpress_installs_from_a_repository_folder() {
    let repo = repository();
    let (_server, c) = start_server(&repo.path().display().to_string()).await;
    let wizard = call(&c, Method::GET, "template/wordpress/wizard").await;
    assert_eq!(wizard["title"], "WordPress");
    assert_eq!(
        wizard["default"],
        json!({"http_port": 10084, "db_root_password": "stand-in"})
    );
    assert!(wizard["description"]
        .as_str()
        .unwrap()
        .starts_with("## About\nWordPress and MariaDB"));
    // The fixture of the earlier tests: the 2.0 file in `wizard/stage/`,
    // the older format in `wizard/install.json`, German over English.
    let weblinks = call(&c, Method::GET, "template/weblinks/wizard?lang=ger").await;
    assert_eq!(weblinks["title"], "Web with links");
    assert_eq!(weblinks["wizard"][0]["title"], "Einstellungen");
    assert_eq!(
        weblinks["default"],
        json!({"http_port": 18080, "greeting": "hello"})
    );

    let name = unique("wordpress");
    let port = free_port();
    install(
        &c,
        json!({"template": "wordpress", "name": name,
               "binding": {"http_port": port, "db_root_password": "rootpw"}}),
    )
    .await;
    let (site, db) = (format!("{name}_wordpress_1"), format!("{name}_db_1"));
    assert!(running(&site) && running(&db));
    assert_eq!(host_port(&site, "80/tcp"), port.to_string());
    assert!(env_of(&site).contains(&"WORDPRESS_DB_PASSWORD=rootpw".to_string()));
    assert!(env_of(&db).contains(&"MYSQL_ROOT_PASSWORD=rootpw".to_string()));
    assert_eq!(http_text(port).await, "wordpress:4.9.8");
    assert_eq!(through_link(&site, "mysql"), "mariadb:10.2");
    let app = call(&c, Method::GET, &format!("apps/{name}")).await;
    assert_eq!(app["httpPort"], port.to_string().as_str());
    assert_eq!(app["createFrom"], "wizard");
    let folder: &Path = repo.path();
    assert!(folder
        .join("template/wordpress/wizard/install.json")
        .exists());
    remove(&c, &name, &[site, db]).await;
}
