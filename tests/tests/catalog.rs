//! The app store's API (issue 30) on the real `stevedore serve`: `GET
//! catalog` over a copy of the fixture repository (`tests/fixtures/catalog`,
//! copied so a test can change it), `GET catalog/icon/{key}` (a file of the
//! repository, a local HTTP server's icon fetched once, an unreachable host,
//! text posing as an icon, an unknown key), and `latestVersion` /
//! `updateAvailable` / published `ports` on `GET apps[/{name}]` with
//! `notes` installed on the test engine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{
    assert_names, copy_dir, eventually_async, free_port, unique, workspace_root, Client, Options,
    Server,
};

/// The bytes of a 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// A fresh copy of the fixture repository.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&workspace_root().join("tests/fixtures/catalog"), dir.path());
    dir
}

/// Rewrite the copy's `list.json`: `change` gets each entry.
fn edit_list(repo: &Path, mut change: impl FnMut(&mut Value)) {
    let path = repo.join("list.json");
    let mut list: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for e in list.as_array_mut().unwrap() {
        change(e);
    }
    std::fs::write(&path, list.to_string()).unwrap();
}

/// A server on the repository `repo` (with `options`), and an admin client.
async fn server(repo: &Path, options: Options) -> (Server, Client) {
    let server = Server::start(options.env("STEVEDORE_CATALOG", &repo.display().to_string())).await;
    let client = server.admin().await;
    (server, client)
}

async fn get(c: &Client, path: &str) -> Value {
    let a = c.send(Method::GET, path, None).await;
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.body
}

/// `(name, version)` of each listed entry.
fn listed(answer: &Value) -> Vec<(String, String)> {
    answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["version"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn names(answer: &Value) -> Vec<String> {
    listed(answer).into_iter().map(|(n, _)| n).collect()
}

#[tokio::test]
async fn the_list_is_this_hosts_entries_filtered_by_type_and_search() {
    let repo = repository();
    let (server, c) = server(repo.path(), Options::default()).await;

    let all = get(&c, "catalog").await;
    assert_eq!(all["errors"], serde_json::json!([]), "{all}");
    // list.json order; the armhf gitlab and weblinks and the arm64
    // wordpress are another architecture's (this host is amd64).
    assert_eq!(
        listed(&all),
        [
            ("ubuntu-xenial", "16.04"),
            ("busybox", "1"),
            ("linuxserver/deluge", "143"),
            ("gitlab", "11.4.0"),
            ("joomla", "3.8"),
            ("wordpress", "4.9.8"),
            ("weblinks", "1.0"),
            ("notes", "1"),
            ("empty", "1"),
            ("vault", "1"),
            ("trio", "1"),
            ("proxied", "1"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    let entries = all["entries"].as_array().unwrap();
    let by_name = |name: &str| entries.iter().find(|e| e["name"] == name).unwrap();
    let gitlab = by_name("gitlab");
    assert_eq!(gitlab["displayName"], "GitLab");
    assert_eq!(gitlab["type"], "app");
    assert!(gitlab["description"]
        .as_str()
        .unwrap()
        .starts_with("three services"));
    assert_eq!(gitlab["installed"], serde_json::json!([]));
    let icon = gitlab["icon"].as_str().unwrap();
    let key = icon.strip_prefix("/api/v1/catalog/icon/").unwrap();
    assert!(
        key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{icon}"
    );
    // No displayName: the name; no icon: null; not an app: no `installed`.
    let busybox = by_name("busybox");
    assert_eq!(busybox["displayName"], "busybox");
    assert_eq!(busybox["icon"], Value::Null);
    assert_eq!(busybox["description"], Value::Null);
    assert!(busybox.get("installed").is_none(), "{busybox}");
    // One icon URL, one key.
    assert_eq!(by_name("notes")["icon"], by_name("weblinks")["icon"]);
    assert_ne!(by_name("notes")["icon"], gitlab["icon"]);

    assert_eq!(
        names(&get(&c, "catalog?type=docker").await),
        ["linuxserver/deluge"]
    );
    assert_eq!(
        names(&get(&c, "catalog?type=lxc").await),
        ["ubuntu-xenial", "busybox"]
    );
    let apps = get(&c, "catalog/?type=app").await;
    assert_eq!(names(&apps).len(), 9);
    assert!(apps["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "app" && e["installed"].is_array()));
    // Search: name, displayName or description, any case; with a type.
    assert_eq!(names(&get(&c, "catalog?q=NoTeS").await), ["notes"]);
    assert_eq!(
        names(&get(&c, "catalog?q=compose%20V3").await),
        ["notes"],
        "displayName"
    );
    assert_eq!(
        names(&get(&c, "catalog?q=linked").await),
        ["gitlab", "weblinks"],
        "description"
    );
    assert_eq!(
        names(&get(&c, "catalog?q=ubuntu&type=app").await),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&get(&c, "catalog?q=ubuntu&type=lxc").await),
        ["ubuntu-xenial"]
    );

    // Bad input names its field; no session, no list.
    assert_names(
        &c.send(Method::GET, "catalog?type=apps", None).await,
        "type",
    );
    let long = "x".repeat(101);
    assert_names(
        &c.send(Method::GET, &format!("catalog?q={long}"), None)
            .await,
        "q",
    );
    let anonymous = server.client();
    anonymous
        .send(Method::GET, "catalog", None)
        .await
        .assert_error(401, Some("not_logged_in"));

    // A repository that cannot be read: no entries, and why.
    std::fs::write(repo.path().join("list.json"), "{not json").unwrap();
    let broken = get(&c, "catalog").await;
    assert_eq!(broken["entries"], serde_json::json!([]));
    assert_eq!(broken["errors"][0]["error"]["reason"], "repository_error");
    let message = broken["errors"][0]["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("list.json: "), "{message}");
}

#[tokio::test]
async fn no_repository_is_an_empty_list_that_says_so() {
    let server = Server::start(Options::default()).await;
    let c = server.admin().await;
    let answer = get(&c, "catalog").await;
    assert_eq!(answer["entries"], serde_json::json!([]));
    assert_eq!(answer["errors"][0]["error"]["reason"], "no_repository");
    assert_eq!(answer["errors"][0]["error"]["code"], 503);
    let icon = raw_icon(&server, &c, "/api/v1/catalog/icon/0123456789abcdef").await;
    assert_eq!(icon.kind, "placeholder");
}

/// A served icon: its headers and bytes.
struct Icon {
    status: u16,
    kind: String,
    content_type: String,
    cache: String,
    nosniff: String,
    csp: Option<String>,
    bytes: Vec<u8>,
}

async fn raw_icon(server: &Server, c: &Client, path: &str) -> Icon {
    let r = c
        .http()
        .get(format!("{}{path}", server.base()))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    Icon {
        status: r.status().as_u16(),
        kind: header("x-stevedore-icon").unwrap_or_default(),
        content_type: header("content-type").unwrap_or_default(),
        cache: header("cache-control").unwrap_or_default(),
        nosniff: header("x-content-type-options").unwrap_or_default(),
        csp: header("content-security-policy"),
        bytes: r.bytes().await.unwrap().to_vec(),
    }
}

fn assert_placeholder(icon: &Icon, what: &str) {
    assert_eq!(icon.status, 200, "{what}");
    assert_eq!(icon.kind, "placeholder", "{what}");
    assert_eq!(icon.content_type, "image/svg+xml", "{what}");
    assert_eq!(icon.nosniff, "nosniff", "{what}");
    assert_eq!(
        icon.csp.as_deref(),
        Some("default-src 'none'; style-src 'unsafe-inline'"),
        "{what}"
    );
    assert!(icon.bytes.starts_with(b"<svg"), "{what}");
}

/// An HTTP server answering every request with `PNG`, counting them.
async fn icon_server() -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    PNG.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(PNG).await;
            });
        }
    });
    (port, count)
}

#[tokio::test]
async fn icons_are_fetched_sniffed_and_kept_or_replaced_by_the_placeholder() {
    let repo = repository();
    std::fs::create_dir(repo.path().join("icons")).unwrap();
    std::fs::write(repo.path().join("icons/notes.png"), PNG).unwrap();
    std::fs::write(
        repo.path().join("icons/vault.png"),
        "<html>not an icon</html>",
    )
    .unwrap();
    let (port, requests) = icon_server().await;
    edit_list(repo.path(), |e| match e["name"].as_str() {
        Some("notes") => e["icon"] = "icons/notes.png".into(),
        Some("vault") => e["icon"] = "icons/vault.png".into(),
        Some("trio") => e["icon"] = format!("http://127.0.0.1:{port}/trio.png").into(),
        Some("empty") => e["icon"] = "../outside.png".into(),
        _ => {}
    });
    // The icon fetches logged at debug: with their host only.
    let options = Options::default().env("RUST_LOG", "info,stevedore::runtime::catalog=debug");
    let (server, c) = server(repo.path(), options).await;
    let list = get(&c, "catalog").await;
    let icon_of = |name: &str| {
        list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["icon"]
            .as_str()
            .map(str::to_string)
    };

    // A file of the repository, as a PNG with the cache headers.
    let notes = icon_of("notes").unwrap();
    let icon = raw_icon(&server, &c, &notes).await;
    assert_eq!(icon.status, 200);
    assert_eq!(icon.kind, "fetched");
    assert_eq!(icon.content_type, "image/png");
    assert_eq!(icon.cache, "private, max-age=3600");
    assert_eq!(icon.nosniff, "nosniff");
    assert_eq!(icon.csp, None);
    assert_eq!(icon.bytes, PNG);
    // Kept: the file gone, the icon is still served.
    std::fs::remove_file(repo.path().join("icons/notes.png")).unwrap();
    assert_eq!(raw_icon(&server, &c, &notes).await.bytes, PNG);
    // Under the other prefixes too.
    let short = notes.replace("/api/v1/", "/containerstation/api/v1/");
    assert_eq!(raw_icon(&server, &c, &short).await.kind, "fetched");

    // Over HTTP: typed by its bytes, not its Content-Type; one fetch for
    // many concurrent asks.
    let trio = icon_of("trio").unwrap();
    let asks = (0..8).map(|_| raw_icon(&server, &c, &trio));
    for icon in futures::future::join_all(asks).await {
        assert_eq!(icon.kind, "fetched");
        assert_eq!(icon.content_type, "image/png");
        assert_eq!(icon.bytes, PNG);
    }
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    // An unreachable host, text posing as an icon, a path out of the
    // repository (listed with no icon), an unknown or malformed key.
    let gitlab = icon_of("gitlab").unwrap();
    assert_placeholder(&raw_icon(&server, &c, &gitlab).await, "unreachable");
    let vault = icon_of("vault").unwrap();
    assert_placeholder(&raw_icon(&server, &c, &vault).await, "text");
    assert_eq!(icon_of("empty"), None, "outside the repository");
    for key in ["0123456789abcdef", "not-a-key", "..%2F..%2Fetc%2Fpasswd"] {
        let icon = raw_icon(&server, &c, &format!("/api/v1/catalog/icon/{key}")).await;
        assert_placeholder(&icon, key);
    }
    assert_eq!(requests.load(Ordering::SeqCst), 1, "nothing else fetched");
    // No session: refused before anything.
    let anonymous = server.client();
    anonymous
        .send(Method::GET, &format!("catalog/icon/{}", &notes[21..]), None)
        .await
        .assert_error(401, Some("not_logged_in"));
    // The log names the icon hosts only, never the paths.
    let logs = server.logs();
    assert!(logs.contains("fetching an icon"), "{logs}");
    assert!(logs.contains("example.invalid"), "{logs}");
    assert!(
        !logs.contains("trio.png") && !logs.contains("app_gitlab.png"),
        "{logs}"
    );
}

/// Removes what the application `project` left on the engine, also when the
/// test fails before its `DELETE apps/{name}`.
struct Project(String);

impl Drop for Project {
    fn drop(&mut self) {
        let filter = format!("label=com.docker.compose.project={}", self.0);
        let list = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(args)
                .args(["--filter", &filter, "-q"])
                .stderr(Stdio::null())
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        for (found, remove) in [
            (list(&["ps", "-a"]), vec!["rm", "-f", "-v"]),
            (list(&["volume", "ls"]), vec!["volume", "rm", "-f"]),
            (list(&["network", "ls"]), vec!["network", "rm"]),
        ] {
            if !found.is_empty() {
                let _ = Command::new("docker")
                    .args(&remove)
                    .args(&found)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

#[tokio::test]
async fn an_update_is_available_once_the_repository_version_is_newer() {
    let repo = repository();
    let proxy_port = free_port();
    let options = Options::with_plugins(&["application"])
        .test_engine()
        .env("STEVEDORE_PROXY_LISTEN", &format!("127.0.0.1:{proxy_port}"));
    let (_server, c) = server(repo.path(), options).await;
    let name = unique("store");
    let _cleanup = Project(name.clone());
    let port = free_port();
    let id = c
        .submit_ok(
            "application",
            &format!(
                r#"{{"template": "notes", "name": "{name}", "port": {port}, "virtual_path": "/{name}",
                     "binding": {{"http_port": {port}}}}}"#
            ),
        )
        .await;
    let task = c
        .wait_until(id, Duration::from_secs(120), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("install did not end: {last:?}"));
    assert_eq!(task["state"], "completed", "{task}");

    let listed = get(&c, "apps").await;
    let app = &listed[&name];
    assert_eq!(app["version"], "1", "{app}");
    assert_eq!(app["latestVersion"], "1", "{app}");
    assert_eq!(app["updateAvailable"], false, "{app}");
    // Where the reverse proxy serves it, and it does.
    let proxy = serde_json::json!({"port": proxy_port, "path": format!("/{name}/")});
    assert_eq!(app["proxy"], proxy, "{app}");
    let url = format!("http://127.0.0.1:{proxy_port}/{name}/");
    let page = eventually_async(
        "the app through the proxy",
        Duration::from_secs(20),
        || async {
            let r = reqwest::get(&url).await.ok()?;
            if r.status() != 200 {
                return None;
            }
            r.text().await.ok()
        },
    )
    .await;
    assert_eq!(page, "noted\n");
    // The store names it among the template's installed applications.
    let store = get(&c, "catalog?type=app&q=notes").await;
    assert_eq!(store["entries"][0]["installed"], serde_json::json!([name]));

    // The repository moves on.
    edit_list(repo.path(), |e| {
        if e["name"] == "notes" {
            e["version"] = "1.1".into();
        }
    });
    let listed = get(&c, "apps").await;
    let app = &listed[&name];
    assert_eq!(app["version"], "1", "{app}");
    assert_eq!(app["latestVersion"], "1.1", "{app}");
    assert_eq!(app["updateAvailable"], true, "{app}");
    let one = get(&c, &format!("apps/{name}")).await;
    assert_eq!(one["latestVersion"], "1.1", "{one}");
    assert_eq!(one["updateAvailable"], true, "{one}");
    assert_eq!(one["proxy"], proxy, "{one}");
    // Every recorded key kept, the containers' published ports added.
    for key in [
        "template",
        "version",
        "binding",
        "createFrom",
        "httpPort",
        "containers",
    ] {
        assert!(one.get(key).is_some(), "{key}: {one}");
    }
    let containers = one["containers"].as_array().unwrap();
    let ports = |service: &str| {
        containers
            .iter()
            .find(|c| c["name"] == format!("{name}_{service}_1"))
            .unwrap_or_else(|| panic!("{service}: {one}"))["ports"]
            .clone()
    };
    assert_eq!(
        ports("web"),
        serde_json::json!([{"host": port, "container": 80, "protocol": "tcp"}])
    );
    assert_eq!(ports("writer"), serde_json::json!([]));

    // An older repository version is no update.
    edit_list(repo.path(), |e| {
        if e["name"] == "notes" {
            e["version"] = "0.9".into();
        }
    });
    assert_eq!(get(&c, "apps").await[&name]["updateAvailable"], false);

    let a = c
        .send(
            Method::DELETE,
            &format!("apps/{name}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}
