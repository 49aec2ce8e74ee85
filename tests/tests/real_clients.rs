//! The public clients of Container Station's API, call for call (issue 27).
//!
//! Each test replays what one public client does, read from its source:
//! the method, the path with that client's prefix, the body and the headers
//! it sends, and the keys (with their JSON types) it reads from each answer.
//! They run against the real server, the real plugins and the engine
//! `cargo xtask test` starts. The clients' code is not copied; only the
//! sequence of calls and what they read is restated here.
//!
//! - `anjos/popster`, `popster/qnap.py` (with `deploy.py` and `logs.py`);
//! - `iaburton/go-containerstation`, `containerstation.go`,
//!   `client_container.go`, `client_system.go`, `json_types.go`;
//! - `baekhoej/qnap-containerstation-mcp`, `src/client.ts`;
//! - `g1zm0e/QNAP-ContainerStation-and-Filestation-API`, `qnap.py`,
//!   `qnap_containerstation.py`, `qnap_build_containerconfig.py`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stevedore_e2e::{copy_dir, docker, unique, workspace_root, Options, Server, ADMIN_PASSWORD};

/// The session cookie a real Container Station sets.
const SESSION_COOKIE: &str = "CS_SESS_ID";

fn share(server: &Server) -> PathBuf {
    server.data_dir().join("share")
}

/// A server with the create and application plugins, on the test engine,
/// whose repository is a copy of the fixture catalog.
async fn server() -> (Server, tempfile::TempDir) {
    let catalog = tempfile::tempdir().unwrap();
    copy_dir(
        &workspace_root().join("tests/fixtures/catalog"),
        catalog.path(),
    );
    let server = Server::start(
        Options::with_plugins(&["create", "application"])
            .test_engine()
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string()),
    )
    .await;
    (server, catalog)
}

/// A plain HTTP client with no cookie store of its own: each test carries
/// the session cookie the way its client does.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// An answer's status, headers and body (JSON, or `Value::String` if not JSON).
struct Reply {
    status: StatusCode,
    cookies: Vec<String>,
    content_type: String,
    body: Value,
    json: bool,
}

async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status();
    let cookies = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().await.unwrap_or_default();
    let (body, json) = match serde_json::from_str(&text) {
        Ok(v) => (v, true),
        Err(_) => (Value::String(text), false),
    };
    Reply {
        status,
        cookies,
        content_type,
        body,
        json,
    }
}

/// Send a request and read its reply.
async fn send(req: reqwest::RequestBuilder) -> Reply {
    reply(req.send().await.unwrap()).await
}

/// `name=value` of the session cookie among `Set-Cookie` headers.
fn session_pair(cookies: &[String]) -> String {
    let set = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .unwrap_or_else(|| panic!("no {SESSION_COOKIE} cookie among {cookies:?}"));
    set.split(';').next().unwrap().trim().to_string()
}

// ---- JSON type checks: what a typed client's decoder needs ----------------

fn string(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` must be a string in {v}"))
        .to_string()
}

fn boolean(v: &Value, key: &str) -> bool {
    v[key]
        .as_bool()
        .unwrap_or_else(|| panic!("`{key}` must be a boolean in {v}"))
}

/// A JSON integer (Go's `int` refuses `1.5` and `1e6`).
fn integer(v: &Value, key: &str) -> i64 {
    assert!(
        v[key].is_i64() || v[key].is_u64(),
        "`{key}` must be an integer in {v}"
    );
    v[key].as_i64().unwrap()
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` must be a number in {v}"))
}

fn array<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` must be an array in {v}"))
}

/// Where `key` is present, its type; Go's decoder fails on a wrong type,
/// not on a missing key.
fn if_present(v: &Value, key: &str, check: fn(&Value, &str)) {
    if v.get(key).is_some() {
        check(v, key);
    }
}

/// `logintime` as recorded: `"2021-08-11 16:54:45"`, the server's local time.
fn assert_logintime(v: &Value) {
    let t = string(v, "logintime");
    assert_eq!(t.len(), 19, "logintime {t:?}");
    let b = t.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "logintime {t:?}"),
            10 => assert_eq!(*c, b' ', "logintime {t:?}"),
            13 | 16 => assert_eq!(*c, b':', "logintime {t:?}"),
            _ => assert!(c.is_ascii_digit(), "logintime {t:?}"),
        }
    }
}

/// The keys and types of a Docker container entry a typed client decodes
/// (go-containerstation's `Container`), and the ones the MCP client names.
fn assert_docker_entry(e: &Value, running: bool) {
    string(e, "id");
    string(e, "name");
    string(e, "image");
    string(e, "imageID");
    string(e, "state");
    assert_eq!(e["type"], "docker", "{e}");
    for p in array(e, "tcpPort") {
        assert!(p.is_u64(), "tcpPort holds integers: {e}");
    }
    string(e, "project");
    string(e, "projectPath");
    string(e, "networkMode");
    string(e, "externalIP");
    if running {
        assert_eq!(e["state"], "running", "{e}");
        number(e, "cpu");
        integer(e, "memory");
        integer(e, "rx");
        integer(e, "tx");
        let ips = array(e, "ipaddress");
        assert!(!ips.is_empty(), "a running container has an address: {e}");
        for ip in ips {
            let ip = ip.as_str().expect("ipaddress holds strings");
            ip.parse::<std::net::IpAddr>()
                .unwrap_or_else(|_| panic!("{ip:?} is an address"));
        }
    } else {
        if_present(e, "cpu", |v, k| {
            number(v, k);
        });
        if_present(e, "memory", |v, k| {
            integer(v, k);
        });
        if_present(e, "ipaddress", |v, k| {
            array(v, k);
        });
    }
}

fn entry_named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("GET container answers an array: {list}"))
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {list}"))
}

fn remove_container(name: &str) {
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", name])
        .output();
}

// ---- anjos/popster --------------------------------------------------------

/// `anjos/popster` (`popster/qnap.py`, driven by `deploy.py` and `logs.py`):
/// prefix `/container-station/api/v1`; `requests.Session` keeps the cookie;
/// login sends JSON (`json=`), reads `username`; `login_refresh` is checked
/// with `"error" in result.json()`; create is `POST container` with a
/// `volume.host` entry of `{"bind", "rw": true}` and a `command` string, and
/// reads `id`; logs are read as `["logs"]`.
#[tokio::test]
async fn popster_deploys_reads_logs_and_logs_out() {
    let (server, _catalog) = server().await;
    let base = format!("{}/container-station/api/v1", server.base());
    let session = reqwest::Client::builder()
        .cookie_store(true)
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let call = |m: Method, path: &str| session.request(m, format!("{base}{path}"));

    // login(): POST /login with json=dict(username, password).
    let r = send(
        call(Method::POST, "/login")
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["username"], "admin");
    session_pair(&r.cookies);

    // A stored session is refreshed first; "error" in the answer means stale.
    let r = send(call(Method::GET, "/login_refresh")).await;
    assert!(r.body.get("error").is_none(), "{}", r.body);
    assert_eq!(r.body["username"], "admin");

    // system(): the JSON answer, whole.
    let r = send(call(Method::GET, "/system")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.is_object(), "{}", r.body);

    // deploy.py: the share folders it binds, relative to the share root.
    for dir in ["Pictures/Importar Aqui", "Pictures/Para Organizar"] {
        std::fs::create_dir_all(share(&server).join(dir)).unwrap();
    }
    std::fs::write(
        share(&server).join("Pictures/Importar Aqui/photo.jpg"),
        "not really a photo",
    )
    .unwrap();
    let name = unique("popster");
    let volumes = json!({"host": {
        "/Pictures/Importar Aqui": {"bind": "/imported", "rw": true},
        "/Pictures/Para Organizar": {"bind": "/organized", "rw": true},
    }});
    // The command popster passes is its image's arguments; busybox runs it.
    let command = "sh -c 'echo popster-out; echo popster-err >&2; \
                   ls /imported; touch /organized/sorted; sleep 600'";

    for round in 0..2 {
        // existing = {k["name"]: k for k in GET /container}
        let r = send(call(Method::GET, "/container")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let existing = r.body.as_array().expect("an array").clone();
        for k in &existing {
            string(k, "name");
            string(k, "state");
            string(k, "id");
        }
        if let Some(old) = existing.iter().find(|k| k["name"] == name.as_str()) {
            assert_eq!(round, 1);
            if old["state"] == "running" {
                let id = string(old, "id");
                let r = send(call(Method::PUT, &format!("/container/docker/{id}/stop"))).await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert!(r.json, "stop answers JSON");
            }
            let id = string(old, "id");
            let r = send(call(Method::DELETE, &format!("/container/docker/{id}"))).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.json, "delete answers JSON");
        } else {
            assert_eq!(round, 0, "the first round's container is listed");
        }

        // create_container(): info = {type, name, image, tag} + options.
        let autostart = round == 1;
        let info = json!({"type": "docker", "name": name, "image": "busybox", "tag": "latest",
                          "volume": volumes, "autostart": autostart, "command": command});
        let r = send(call(Method::POST, "/container").json(&info)).await;
        assert_eq!(r.status, 200, "POST container: {}", r.body);
        let id = string(&r.body, "id");
        assert!(docker(&["inspect", "-f", "{{.Id}}", &name]).starts_with(&id));
        if !autostart {
            let r = send(call(Method::PUT, &format!("/container/docker/{id}/stop"))).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }

    // The binds are the user's folders, writable as `rw: true` asked.
    let mounts: Value =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .Mounts}}", &name])).unwrap();
    for dest in ["/imported", "/organized"] {
        let m = mounts
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("no mount at {dest}: {mounts}"));
        assert_eq!(m["RW"], true, "{m}");
    }

    // logs.py: GET /container, then logs?tail=1000 of that id, read ["logs"].
    let r = send(call(Method::GET, "/container")).await;
    let id = string(entry_named(&r.body, &name), "id");
    let path = format!("/container/docker/{id}/logs?tail=1000");
    let until = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let r = send(call(Method::GET, &path)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(integer(&r.body, "tail"), 1000);
        let logs = string(&r.body, "logs");
        if logs.contains("popster-out")
            && logs.contains("popster-err")
            && logs.contains("photo.jpg")
        {
            break logs;
        }
        assert!(
            Instant::now() < until,
            "both streams never reached the logs: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!logs.contains("error"), "{logs}");
    assert!(share(&server)
        .join("Pictures/Para Organizar/sorted")
        .exists());

    // logout(): PUT /logout, answer read as JSON.
    let r = send(call(Method::PUT, "/logout")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"username": "admin"}));
    // The pickled session is now stale: login() sees "error" and logs in anew.
    let r = send(call(Method::GET, "/login_refresh")).await;
    assert!(r.body.get("error").is_some(), "{}", r.body);
    remove_container(&name);
}

// ---- iaburton/go-containerstation -----------------------------------------

/// `iaburton/go-containerstation`: prefix `/containerstation/api/v1`, a
/// `net/http/cookiejar`, form-encoded login; every call must answer 200 and
/// decode into the structs of `json_types.go` (wrong JSON types fail Go's
/// decoder: `memory`, `rx`, `tx`, `tcpPort` are `int`, `ipaddress`
/// `[]string`, `cpu` `float64`, `type` exactly `"docker"` or `"lxc"`).
#[tokio::test]
async fn go_containerstation_decodes_every_answer() {
    let (server, _catalog) = server().await;
    let admin = server.admin().await;
    let name = unique("gocs");
    let a = admin
        .send(
            Method::POST,
            "container",
            Some(
                &json!({"type": "docker", "name": name, "image": "busybox", "tag": "latest",
                        "command": "sleep 600"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    let base = format!("{}/containerstation/api/v1", server.base());
    let jar = reqwest::Client::builder()
        .cookie_store(true)
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let call = |m: Method, path: &str| jar.request(m, format!("{base}{path}"));
    let ok = |r: &Reply, what: &str| {
        assert_eq!(
            r.status, 200,
            "{what}: Go's client refuses any other status: {}",
            r.body
        );
        assert!(r.json, "{what}: JSON");
    };

    // Login: form fields, Content-Type application/x-www-form-urlencoded.
    let r = send(
        call(Method::POST, "/login").form(&[("username", "admin"), ("password", ADMIN_PASSWORD)]),
    )
    .await;
    ok(&r, "login");
    let login_response = |v: &Value| {
        boolean(v, "anonymous");
        boolean(v, "isAdmin");
        assert_eq!(string(v, "username"), "admin");
        assert_logintime(v);
    };
    login_response(&r.body);
    let r = send(call(Method::GET, "/login_refresh")).await;
    ok(&r, "login_refresh");
    login_response(&r.body);

    // SystemInformation.
    let r = send(call(Method::GET, "/system")).await;
    ok(&r, "system");
    let s = &r.body;
    assert!(integer(s, "cpuCore") >= 1);
    assert!(integer(s, "cpuThread") >= integer(s, "cpuCore"));
    for f in array(s, "features") {
        assert!(f.is_string(), "features holds strings: {s}");
    }
    string(s, "hostname");
    string(s, "machine");
    string(s, "processor");
    string(s, "status");
    if_present(s, "needRestart", |v, k| {
        boolean(v, k);
    });
    if_present(s, "gpuDriver", |v, k| {
        boolean(v, k);
    });
    let version = &s["version"];
    assert!(version.is_object(), "version: {s}");
    for key in ["dockerVersion", "firmware", "lxcVersion", "qpkg", "web"] {
        if_present(version, key, |v, k| {
            string(v, k);
        });
    }
    assert!(!string(version, "qpkg").is_empty(), "{s}");

    // ResourceUsage: cpu_usage a string, memory_usage of integers.
    let r = send(call(Method::GET, "/system/resource")).await;
    ok(&r, "system/resource");
    let cpu: f64 = string(&r.body, "cpu_usage")
        .parse()
        .expect("a number in a string");
    assert!((0.0..=100.0 * 1024.0).contains(&cpu), "{}", r.body);
    let m = &r.body["memory_usage"];
    for key in [
        "buffers",
        "cached",
        "percent",
        "percent_buffers",
        "percent_cached",
        "total",
        "used",
    ] {
        integer(m, key);
    }
    assert!(integer(m, "total") > 0 && integer(m, "used") <= integer(m, "total"));

    // NetworkPort: `{"used": bool}`; the server's own port is in use, a port
    // nobody listens on is not.
    let own = server.addr.port();
    let r = send(call(Method::GET, &format!("/system/port/tcp/{own}"))).await;
    ok(&r, "system/port");
    assert!(boolean(&r.body, "used"), "{}", r.body);
    let free = stevedore_e2e::free_port();
    let r = send(call(Method::GET, &format!("/system/port/tcp/{free}"))).await;
    ok(&r, "system/port");
    assert!(!boolean(&r.body, "used"), "{}", r.body);
    let r = send(call(Method::GET, "/system/port/sctp/80")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("protocol"),
        "{}",
        r.body
    );

    // ListContainers: []*Container.
    let r = send(call(Method::GET, "/container")).await;
    ok(&r, "container");
    let list = r.body.as_array().expect("an array");
    for e in list {
        let t = string(e, "type");
        assert!(t == "docker" || t == "lxc", "{e}");
        string(e, "id");
        string(e, "name");
        string(e, "state");
        if_present(e, "cpu", |v, k| {
            number(v, k);
        });
        for k in ["memory", "rx", "tx"] {
            if_present(e, k, |v, k| {
                integer(v, k);
            });
        }
    }
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "the list is sorted by name");
    let entry = entry_named(&r.body, &name);
    assert_docker_entry(entry, true);
    let id = string(entry, "id");

    // GetContainer, StopContainer, StartContainer, RestartContainer: *Container.
    let r = send(call(Method::GET, &format!("/container/docker/{id}"))).await;
    ok(&r, "GetContainer");
    assert_docker_entry(&r.body, true);
    let r = send(call(Method::PUT, &format!("/container/docker/{id}/stop"))).await;
    ok(&r, "StopContainer");
    assert_docker_entry(&r.body, false);
    assert_eq!(r.body["state"], "stopped");
    let r = send(call(Method::PUT, &format!("/container/docker/{id}/start"))).await;
    ok(&r, "StartContainer");
    assert_eq!(r.body["state"], "running");
    let r = send(call(
        Method::PUT,
        &format!("/container/docker/{id}/restart"),
    ))
    .await;
    ok(&r, "RestartContainer");
    assert_eq!(r.body["state"], "running");

    // RemoveContainer decodes the answer into a Container: an object.
    let r = send(call(Method::PUT, &format!("/container/docker/{id}/stop"))).await;
    ok(&r, "StopContainer");
    let r = send(call(Method::DELETE, &format!("/container/docker/{id}"))).await;
    ok(&r, "RemoveContainer");
    assert!(r.body.is_object(), "{}", r.body);

    // Logout: LogoutResponse.
    let r = send(call(Method::PUT, "/logout")).await;
    ok(&r, "logout");
    assert_eq!(string(&r.body, "username"), "admin");
    remove_container(&name);
}

// ---- baekhoej/qnap-containerstation-mcp -----------------------------------

/// `fetch()` of the MCP client: always a JSON content type; the jar's cookie.
async fn mcp_fetch(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut req = http
        .request(m, format!("{base}{path}"))
        .header(CONTENT_TYPE, "application/json");
    if !cookie.is_empty() {
        req = req.header(COOKIE, cookie);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    send(req).await
}

/// `login()` of the MCP client; the cookie its jar keeps.
async fn mcp_login(http: &reqwest::Client, base: &str) -> String {
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD});
    let r = mcp_fetch(http, base, "", Method::POST, "/login", Some(body)).await;
    assert!(
        r.status.is_success(),
        "Login failed ({}): {}",
        r.status,
        r.body
    );
    assert_eq!(
        r.cookies.len(),
        1,
        "headers.get('set-cookie') joins several cookies into one: {:?}",
        r.cookies
    );
    session_pair(&r.cookies)
}

/// `request<T>()` of the MCP client: an ok status and a JSON body.
async fn mcp_request(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    m: Method,
    path: &str,
) -> Value {
    let r = mcp_fetch(http, base, cookie, m, path, None).await;
    assert!(
        r.status.is_success(),
        "Request failed ({}) {path}: {}",
        r.status,
        r.body
    );
    assert!(r.json, "{path}: response.json() needs JSON: {}", r.body);
    r.body
}

/// `baekhoej/qnap-containerstation-mcp` (`src/client.ts`): prefix
/// `/container-station/api/v1`; every request (GET and bodiless PUT and
/// DELETE too) carries `Content-Type: application/json`; the cookie is taken
/// from `response.headers.get("set-cookie")` (several headers would be
/// joined into one, unreadable string) into a tough-cookie jar; a 401 means
/// log in again and retry; every answer is parsed with `response.json()`.
#[tokio::test]
async fn mcp_client_drives_containers_and_apps() {
    let (server, _catalog) = server().await;
    let admin = server.admin().await;
    let base = format!("{}/container-station/api/v1", server.base());
    let http = http();
    let mut cookie = mcp_login(&http, &base).await;

    // A container of the admin's, and an application from the catalog.
    let name = unique("mcp");
    let body = json!({"type": "docker", "name": name, "image": "busybox", "tag": "latest",
                      "command": "sh -c 'echo mcp-was-here; sleep 600'"});
    let a = admin
        .send(Method::POST, "container", Some(&body.to_string()))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let app = unique("mcpapp");
    let task = admin
        .submit_ok(
            "application",
            &json!({"template": "trio", "name": app}).to_string(),
        )
        .await;
    let t = admin
        .wait_until(task, Duration::from_secs(120), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("application did not end: {last:?}"));
    assert_eq!(t["state"], "completed", "{t}");

    // listContainers(): Container[] with the interface's keys.
    let list = mcp_request(&http, &base, &cookie, Method::GET, "/container").await;
    let entry = entry_named(&list, &name);
    assert_docker_entry(entry, true);
    let id = string(entry, "id");
    let member = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["project"] == app.as_str())
        .unwrap_or_else(|| panic!("an app container names its project: {list}"));
    assert!(string(member, "projectPath").ends_with(&app), "{member}");

    // getContainer(type, id).
    let path = format!("/container/docker/{id}");
    let one = mcp_request(&http, &base, &cookie, Method::GET, &path).await;
    assert_docker_entry(&one, true);
    // getContainerLogs(id): no tail given.
    let path = format!("/container/docker/{id}/logs");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let v = mcp_request(&http, &base, &cookie, Method::GET, &path).await;
        assert_eq!(integer(&v, "tail"), 100, "the recorded default: {v}");
        if string(&v, "logs").contains("mcp-was-here") {
            break;
        }
        assert!(
            Instant::now() < until,
            "the output never reached the logs: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // start/stop/restart: bodiless PUTs with a JSON content type.
    for action in ["stop", "start", "restart"] {
        let path = format!("/container/docker/{id}/{action}");
        mcp_request(&http, &base, &cookie, Method::PUT, &path).await;
    }

    // listApps(): {name: {container: string[], yml: boolean, creating: boolean}}.
    let apps = mcp_request(&http, &base, &cookie, Method::GET, "/apps").await;
    let entry = &apps[app.as_str()];
    assert_eq!(array(entry, "container").len(), 3, "{apps}");
    boolean(entry, "yml");
    boolean(entry, "creating");
    for action in ["stop", "start", "restart"] {
        let path = format!("/apps/{app}/{action}");
        let v = mcp_request(&http, &base, &cookie, Method::PUT, &path).await;
        let names = v.as_array().unwrap_or_else(|| panic!("{action}: {v}"));
        assert_eq!(names.len(), 3, "{action}: the app's containers: {v}");
    }

    // getSystemResource().
    let res = mcp_request(&http, &base, &cookie, Method::GET, "/system/resource").await;
    string(&res, "cpu_usage");

    // After a logout the next request is a 401: the client logs in again
    // and retries.
    let r = mcp_fetch(&http, &base, &cookie, Method::PUT, "/logout", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = mcp_fetch(&http, &base, &cookie, Method::GET, "/container", None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    cookie = mcp_login(&http, &base).await;
    mcp_request(&http, &base, &cookie, Method::GET, "/container").await;

    // removeContainer(type, id).
    let path = format!("/container/docker/{id}/stop");
    mcp_request(&http, &base, &cookie, Method::PUT, &path).await;
    let path = format!("/container/docker/{id}");
    mcp_request(&http, &base, &cookie, Method::DELETE, &path).await;
    let a = admin
        .send(
            Method::DELETE,
            &format!("apps/{app}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    remove_container(&name);
}

// ---- g1zm0e/QNAP-ContainerStation-and-Filestation-API ---------------------

/// `g1zm0e/QNAP-ContainerStation-and-Filestation-API`: prefix
/// `/container-station/api/v1`; `requests.post(data=json.dumps(...))` sends
/// JSON with no Content-Type; the login answer's `cookies` are passed
/// explicitly to later calls; a call failed if its status is not 200 or
/// `'error' in response.json().keys()`; the create body is
/// `ContainerConfig.base_config()` with `host_volume(..., 'ro')` entries
/// and a resource limit.
#[tokio::test]
async fn g1zm0e_builds_a_container_from_its_config() {
    let (server, _catalog) = server().await;
    let base = format!("{}/container-station/api/v1", server.base());
    let http = http();

    // ctstation_login(): data=json.dumps({...}), no Content-Type header.
    let r = send(
        http.post(format!("{base}/login"))
            .body(json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("error").is_none(), "{}", r.body);
    let cookie = session_pair(&r.cookies);
    let call = |m: Method, path: &str| {
        http.request(m, format!("{base}{path}"))
            .header(COOKIE, cookie.clone())
    };
    let fine = |r: &Reply, what: &str| {
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let keys = r.body.as_object();
        assert!(
            keys.map(|o| !o.contains_key("error"))
                .unwrap_or(r.body.is_array()),
            "{what}: 'error' in response.json().keys(): {}",
            r.body
        );
    };

    // build_container(config): base_config() with a bind and limits.
    std::fs::create_dir_all(share(&server).join("config")).unwrap();
    std::fs::write(share(&server).join("config/app.conf"), "setting=1\n").unwrap();
    let name = unique("g1z");
    let config = json!({
        "name": name,
        "type": "docker",
        "image": "busybox",
        "autostart": true,
        "entrypoint": "/bin/sh",
        "tag": "latest",
        "command": "-c 'cat /config/app.conf; sleep 600'",
        "environment": ["MODE=test"],
        "volume": {"host": {"/config": {"bind": "/config", "ro": true}}},
        "resource": {"limit": {"cputime": 256, "cpuweight": 256, "memory": "1024m"}},
        "network": {}
    });
    let r = send(call(Method::POST, "/container").body(config.to_string())).await;
    fine(&r, "build_container");

    // list_container_names(): [x['name'] for x in GET /container].
    let r = send(call(Method::GET, "/container")).await;
    fine(&r, "list_containers");
    let entry = entry_named(&r.body, &name).clone();
    let id = string(&entry, "id");
    let mounts: Value =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .Mounts}}", &name])).unwrap();
    let m = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/config")
        .unwrap_or_else(|| panic!("no /config mount: {mounts}"));
    assert_eq!(m["RW"], false, "'ro': True is read-only: {m}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &name]),
        (1024u64 * 1024 * 1024).to_string()
    );

    // inspect_container(c_name): by name, as the client passes it.
    let r = send(call(
        Method::GET,
        &format!("/container/docker/{name}/inspect"),
    ))
    .await;
    fine(&r, "inspect_container");
    assert!(string(&r.body, "Id").starts_with(&id), "{}", r.body);

    // get_container(c_name): `/container/{name}`, a path the API does not
    // have: the client reads `'error'` from a JSON answer, not an HTML page.
    let r = send(call(Method::GET, &format!("/container/{name}"))).await;
    assert_ne!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"), "{}", r.body);
    assert!(r.body.get("error").is_some(), "{}", r.body);

    // stop_container(id), delete_container(id): JSON objects without 'error'.
    let r = send(call(Method::PUT, &format!("/container/docker/{id}/stop"))).await;
    fine(&r, "stop_container");
    let r = send(call(Method::DELETE, &format!("/container/docker/{id}"))).await;
    fine(&r, "delete_container");
    assert!(r.body.is_object(), "{}", r.body);
    let r = send(call(Method::GET, "/container")).await;
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != name.as_str()),
        "deleted"
    );
    remove_container(&name);
}
