//! Secrets and shared limits under attack (issue 26, items 7a, 8 and the
//! catalog fetch), through the real server, plugins and engine, as the
//! non-admin `bob` with the default policy:
//! - a template wizard's `password` answer, and a `create` environment
//!   entry named like a secret, are `"******"` in the task list, in the event
//!   stream and in the server log, and nowhere in clear in the data folder
//!   (task store, application record); the container still gets the value;
//! - a flood of `application` submits does not turn into a flood of fetches
//!   from the template repository.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    copy_dir, docker, hash_password, unique, workspace_root, Client, Options, Server, SseReader,
};

const APP_PLUGINS: &[&str] = &["application", "application_upgrade"];

/// A `[users.bob]` section: a non-admin with the default policy.
fn bob_config() -> String {
    format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    )
}

async fn bob(server: &Server) -> Client {
    let c = server.client();
    assert_eq!(c.login("bob", "bob-pw").await.status, 200);
    c
}

/// A fresh copy of the fixture template repository.
fn catalog_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&workspace_root().join("tests/fixtures/catalog"), dir.path());
    dir
}

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

/// The secret as it might appear: itself, JSON-escaped, base64.
fn needles(secret: &str) -> Vec<Vec<u8>> {
    vec![
        secret.as_bytes().to_vec(),
        serde_json::to_string(secret).unwrap().into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
    ]
}

fn holds(hay: &[u8], secret: &str) -> bool {
    needles(secret)
        .iter()
        .any(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
}

/// Files of the data folder holding `secret`, except those `allowed`.
fn files_holding(
    data: &Path,
    secret: &str,
    allowed: impl Fn(&Path) -> bool,
) -> (usize, Vec<PathBuf>) {
    let all = files(data);
    let found = all
        .iter()
        .filter(|p| !allowed(p))
        .filter(|p| holds(&std::fs::read(p).unwrap_or_default(), secret))
        .cloned()
        .collect();
    (all.len(), found)
}

/// The event stream of `c`, open before anything is submitted.
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

/// Read events until task `last` ends; returns every data text seen.
async fn events_until_end(stream: &mut SseReader, last: i64) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut seen = Vec::new();
    loop {
        let (_, data) = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the task's last event in time")
            .expect("stream open");
        let t: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        let done = t["id"] == last && (t["state"] == "completed" || t["state"] == "error");
        seen.push(data);
        if done {
            return seen;
        }
    }
}

async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(180), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

/// The environment of the one container of compose project `project`.
fn project_env(project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let id = docker(&["ps", "-aq", "--filter", &filter]);
    assert!(
        !id.is_empty() && !id.contains('\n'),
        "one container: {id:?}"
    );
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &id]);
    serde_json::from_str(&env).unwrap()
}

#[tokio::test]
async fn wizard_password_masked_in_params_and_events() {
    let catalog = catalog_copy();
    let mut server = Server::start(
        Options::with_plugins(APP_PLUGINS)
            .test_engine()
            .config(&bob_config())
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string()),
    )
    .await;
    docker(&["pull", "-q", "busybox:latest"]);
    let bob = bob(&server).await;
    let mut stream = events(&bob).await;
    // A secret no convention would spot by name: only the wizard's field type says so.
    let secret = format!("pw-{}-zq7", unique("vault").replace('-', ""));
    let name = unique("vault");
    let install = json!({"template": "vault", "name": name,
        "binding": {"admin_pw": secret, "mode": "two"}});
    let a = bob.submit("application", &install.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        a.body["params"]["binding"]["admin_pw"], "******",
        "{}",
        a.body
    );
    assert_eq!(a.body["params"]["binding"]["mode"], "two");
    let id = a.body["id"].as_i64().unwrap();
    let t = ended(&bob, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    let project_name = project_of(&name);
    assert!(
        project_env(&project_name).contains(&format!("ADMIN_PW={secret}")),
        "the container gets the answer"
    );

    // The upgrade renders with the stored answer, unsealed by the host.
    let list = catalog.path().join("list.json");
    let text = std::fs::read_to_string(&list).unwrap().replace(
        r#"{"name": "vault", "version": "1""#,
        r#"{"name": "vault", "version": "2""#,
    );
    std::fs::write(&list, text).unwrap();
    let compose = catalog.path().join("template/vault/docker-compose.yml");
    let text = std::fs::read_to_string(&compose)
        .unwrap()
        .replace("MODE: one", "MODE: one\n      RELEASE: \"2\"");
    std::fs::write(&compose, text).unwrap();
    let up = json!({"template": "vault", "name": name}).to_string();
    let up = bob.submit_ok("application_upgrade", &up).await;
    let t = ended(&bob, up).await;
    assert_eq!(t["state"], "completed", "{t}");
    let env = project_env(&project_name);
    assert!(env.contains(&"RELEASE=2".to_string()), "upgraded: {env:?}");
    assert!(
        env.contains(&format!("ADMIN_PW={secret}")),
        "the upgrade kept the answer: {env:?}"
    );

    let shown = events_until_end(&mut stream, up).await;
    for data in &shown {
        assert!(
            !holds(data.as_bytes(), &secret),
            "an event shows it: {data}"
        );
    }
    let listed = bob.send(Method::GET, "background/", None).await;
    assert!(
        !holds(listed.body.to_string().as_bytes(), &secret),
        "{:?}",
        listed.body
    );
    let app = bob.send(Method::GET, &format!("apps/{name}"), None).await;
    assert!(
        !holds(app.body.to_string().as_bytes(), &secret),
        "{:?}",
        app.body
    );

    let removed = bob
        .send(
            Method::DELETE,
            &format!("apps/{name}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    // The folder is gone with the app: look at a record kept by a second,
    // untouched install while the server still runs, then at rest.
    let kept = unique("vault");
    let install = json!({"template": "vault", "name": kept, "binding": {"admin_pw": secret}});
    let id = bob.submit_ok("application", &install.to_string()).await;
    assert_eq!(ended(&bob, id).await["state"], "completed");
    let record = server
        .data_dir()
        .join(format!("apps/{kept}/.stevedore-app.json"));
    let record_text = std::fs::read_to_string(&record).unwrap();
    assert!(
        !holds(record_text.as_bytes(), &secret),
        "record: {record_text}"
    );
    let removed = bob
        .send(
            Method::DELETE,
            &format!("apps/{kept}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    server.stop();

    // The rendered docker-compose.yml is the container's configuration: it
    // holds the value as the container's environment, by necessity.
    let (checked, found) = files_holding(&server.data_dir(), &secret, |p| {
        p.ends_with("docker-compose.yml")
    });
    assert!(found.is_empty(), "in clear in {found:?}");
    let log = server.logs();
    assert!(!holds(log.as_bytes(), &secret), "the server log shows it");
    stevedore_e2e::report!(
        "attacks_secrets: wizard password: {} events, the task list, the app, {checked} data files \
         and a {} byte log searched: no clear answer; the upgrade rendered it from the sealed record",
        shown.len(),
        log.len()
    );
}

/// The compose project of application `name` (the plugins' rule).
fn project_of(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect()
}

#[tokio::test]
async fn create_env_secret_masked() {
    let mut server = Server::start(
        Options::with_plugins(&["create"])
            .test_engine()
            .config(&bob_config()),
    )
    .await;
    docker(&["pull", "-q", "busybox:latest"]);
    let bob = bob(&server).await;
    let mut stream = events(&bob).await;
    let secret = format!("db-{}-k9", unique("env").replace('-', ""));
    let token = format!("tk-{}-q3", unique("env").replace('-', ""));
    let name = unique("envsecret");
    let body = json!({"type": "docker", "repository": "dockerhub", "name": name,
        "image": "busybox", "tag": "latest", "command": ["sleep", "600"],
        "environment": [format!("DB_PASSWORD={secret}"), "PLAIN=visible",
            format!("api_token={token}")]});
    let a = bob.submit("create", &body.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        a.body["params"]["environment"],
        json!(["DB_PASSWORD=******", "PLAIN=visible", "api_token=******"]),
        "{}",
        a.body
    );
    let id = a.body["id"].as_i64().unwrap();
    let t = ended(&bob, id).await;
    let shown = events_until_end(&mut stream, id).await;
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &name]);
    docker(&["rm", "-f", &name]);
    assert_eq!(t["state"], "completed", "{t}");
    assert!(env.contains(&format!("DB_PASSWORD={secret}")), "{env}");
    assert!(env.contains(&format!("api_token={token}")), "{env}");
    let listed = bob
        .send(Method::GET, "background/", None)
        .await
        .body
        .to_string();
    server.stop();
    let (checked, found) = files_holding(&server.data_dir(), &secret, |_| false);
    let log = server.logs();
    for value in [&secret, &token] {
        assert!(!holds(listed.as_bytes(), value), "{listed}");
        for data in &shown {
            assert!(!holds(data.as_bytes(), value), "an event shows it: {data}");
        }
        assert!(!holds(log.as_bytes(), value), "the server log shows it");
    }
    assert!(found.is_empty(), "in clear in {found:?}");
    let (_, found) = files_holding(&server.data_dir(), &token, |_| false);
    assert!(found.is_empty(), "in clear in {found:?}");
    stevedore_e2e::report!(
        "attacks_secrets: create environment: {} events, the task list, {checked} data files and \
         a {} byte log searched: no clear value; the container has both",
        shown.len(),
        log.len()
    );
}

/// A tiny HTTP/1.1 server over a folder that counts the requests it answers.
struct Repository {
    url: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Repository {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(root: PathBuf) -> Repository {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            let root = root.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let file = (!path.split('/').any(|p| p == ".."))
                    .then(|| root.join(path))
                    .filter(|p| p.is_file());
                let (status, body) = match file {
                    Some(f) => ("200 OK", std::fs::read(f).unwrap()),
                    None => ("404 Not Found", b"not found".to_vec()),
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
    Repository {
        url,
        requests,
        task,
    }
}

#[tokio::test]
async fn application_submits_do_not_refetch_the_catalog() {
    const SUBMITS: usize = 40;
    let catalog = catalog_copy();
    let repo = serve(catalog.path().to_path_buf()).await;
    let server = Server::start(
        Options::with_plugins(APP_PLUGINS)
            .test_engine()
            .config(&bob_config())
            .env("STEVEDORE_CATALOG", &repo.url),
    )
    .await;
    let bob = bob(&server).await;
    // Every one is read through the template (a field it does not have),
    // then refused: no task, only the validation's fetches.
    let submits = (0..SUBMITS).map(|i| {
        let bob = &bob;
        async move {
            let body = json!({"template": "vault", "name": format!("flood{i}"),
                "binding": {"admin_pw": "x", "nope": i}});
            bob.submit("application", &body.to_string()).await
        }
    });
    for a in futures::future::join_all(submits).await {
        a.assert_error(400, None);
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("binding.nope:"), "{:?}", a.body);
    }
    let fetched = repo.requests.load(Ordering::SeqCst);
    assert!(
        fetched <= 8,
        "{SUBMITS} submits fetched from the repository {fetched} times"
    );
    stevedore_e2e::report!(
        "attacks_secrets: {SUBMITS} concurrent application submits made {fetched} requests to the template repository"
    );
}
