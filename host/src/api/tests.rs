//! Router-level tests: the real queue (SQLite store in a temp folder) under a
//! Rust executor, driven with `tower::ServiceExt::oneshot`, no socket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{app, AppState, Services};
use crate::auth::{password, Auth, SessionStore, User};
use crate::queue::{
    CategoryInfo, Executor, Outcome, Queue, QueueConfig, ResultCode, SqliteStore, TaskContext,
    ValidationError,
};
use crate::runtime::{
    AppFolders, Backends, CallContext, ContainerEntry, ContainerRef, ContainerState, Containers,
    Credentials, DeleteContainer, Error as RtError, Images, Networks, RtResult, RuntimeKind,
    StopContainer, Templates, Volumes,
};

/// `noop` completes at once (`count` must be an integer); `sleepy` waits until
/// cancelled (deletable); `locked` waits 1 s and may not be deleted; `timed`
/// waits 1 s (for the run-time metrics only).
struct TestExecutor;

impl TestExecutor {
    fn all() -> Vec<CategoryInfo> {
        let c = |name: &str, deletable: bool| CategoryInfo {
            name: name.into(),
            deletable,
            secret_fields: vec!["token".into()],
        };
        vec![
            c("image_download", true),
            c("locked", false),
            c("noop", true),
            c("sleepy", true),
            c("timed", true),
        ]
    }
}

#[async_trait]
impl Executor for TestExecutor {
    fn categories(&self) -> Vec<CategoryInfo> {
        Self::all()
    }
    fn category(&self, name: &str) -> Option<CategoryInfo> {
        Self::all().into_iter().find(|c| c.name == name)
    }
    async fn validate(&self, _category: &str, params: &str) -> Result<(), ValidationError> {
        let v: Value =
            serde_json::from_str(params).map_err(|e| ValidationError::Invalid(e.to_string()))?;
        if let Some(c) = v.get("count") {
            if !c.is_u64() {
                return Err(ValidationError::Invalid(
                    "count: must be a non-negative integer".into(),
                ));
            }
        }
        Ok(())
    }
    async fn run(&self, ctx: TaskContext) -> Outcome {
        match ctx.category.as_str() {
            "noop" | "image_download" => {
                ctx.reporter.progress(100, "done");
                Outcome::Completed(None)
            }
            "sleepy" => {
                ctx.reporter.progress(-1, "sleeping");
                ctx.cancel.cancelled().await;
                Outcome::Failed {
                    code: ResultCode::Cancelled,
                    message: "cancelled".into(),
                }
            }
            _ => {
                ctx.reporter.progress(-1, "busy");
                tokio::time::sleep(Duration::from_millis(1000)).await;
                Outcome::Completed(None)
            }
        }
    }
}

/// The container routes' view of a runtime: a fixed set of Docker
/// containers whose state the start/stop/delete calls change. (The routes'
/// real-engine behaviour is tested end to end in `tests/tests/api.rs`.)
#[derive(Default)]
struct FixedContainers {
    entries: parking_lot::Mutex<Vec<ContainerEntry>>,
}

impl FixedContainers {
    fn with_one() -> FixedContainers {
        let c = FixedContainers::default();
        c.entries.lock().push(ContainerEntry {
            id: "0123456789abcdef0123".into(),
            name: "dtest".into(),
            image: "busybox:latest".into(),
            image_id: Some("sha256:1".into()),
            state: ContainerState::Running,
            kind: "docker",
            tcp_port: vec![8080],
            project: Some(String::new()),
            project_path: Some(String::new()),
            network_mode: Some(String::new()),
            external_ip: Some(String::new()),
            cpu: None,
            memory: None,
            rx: None,
            tx: None,
            ipaddress: Some(vec![]),
            labels: Default::default(),
        });
        c
    }
    fn set(&self, id: &str, state: ContainerState) -> RtResult<()> {
        let mut all = self.entries.lock();
        let e = all
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| RtError::NotFound(format!("no such container: {id}")))?;
        e.state = state;
        Ok(())
    }
}

impl crate::runtime::Backend for FixedContainers {}
impl Images for FixedContainers {}
impl Networks for FixedContainers {}
impl Volumes for FixedContainers {}
impl Templates for FixedContainers {}
impl AppFolders for FixedContainers {}
impl Credentials for FixedContainers {}

#[async_trait]
impl Containers for FixedContainers {
    async fn container_list(
        &self,
        _cx: &CallContext,
        kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        match kind {
            RuntimeKind::Docker => Ok(self.entries.lock().clone()),
            RuntimeKind::Lxc => Err(crate::runtime::Backend::unsupported(
                self,
                crate::runtime::traits::containers::LIST,
            )),
        }
    }
    async fn container_start(&self, _cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        self.set(&c.id, ContainerState::Running)
    }
    async fn container_stop(&self, _cx: &CallContext, req: StopContainer) -> RtResult<()> {
        self.set(&req.container.id, ContainerState::Stopped)
    }
    async fn container_delete(&self, _cx: &CallContext, req: DeleteContainer) -> RtResult<()> {
        self.entries.lock().retain(|e| e.id != req.container.id);
        Ok(())
    }
}

pub(super) struct Harness {
    router: Router,
    _dir: tempfile::TempDir,
    queue: Arc<Queue>,
    store: Arc<SqliteStore>,
}

impl Harness {
    pub(super) async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut users = BTreeMap::new();
        for (name, admin) in [("admin", true), ("alice", false), ("bob", false)] {
            users.insert(
                name.to_string(),
                User {
                    password_hash: password::hash(&format!("{name}-pw")).unwrap(),
                    admin,
                },
            );
        }
        let auth = Arc::new(Auth::new(users, SessionStore::in_memory().unwrap(), 3600).unwrap());
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let queue = Queue::start(
            store.clone(),
            Arc::new(TestExecutor),
            QueueConfig {
                workers: 4,
                per_category: Default::default(),
                per_user: Default::default(),
                lease: crate::queue::DEFAULT_LEASE,
                retention: Some(crate::queue::DEFAULT_RETENTION),
                task_log: Default::default(),
            },
        )
        .await
        .unwrap();
        let state = AppState::new(Services {
            queue: queue.clone(),
            runtime: Backends::all(Arc::new(FixedContainers::with_one())),
            policies: Arc::new(crate::policy::Policies::open()),
            auth,
            max_body_bytes: 4096,
            body_timeout: std::time::Duration::from_secs(30),
            streams: crate::api::streams::Streams::new(
                crate::api::streams::DEFAULT_STREAMS_PER_USER,
            ),
            submitting: Default::default(),
            secure_cookies: false,
            events: crate::api::events::Events::start(
                &queue,
                crate::api::audit::Recorder::start(
                    Arc::new(crate::store::sqlite::audit::SqliteAudit::in_memory().unwrap()),
                    None,
                ),
            ),
            shutdown: CancellationToken::new(),
            share: crate::runtime::storage::ShareRoot::new(&dir.path().join("share")).unwrap(),
            config_text: String::new(),
            data_dir: dir.path().to_path_buf(),
            registries: crate::api::registries::RegistryServices::new(
                Arc::new(
                    crate::store::sqlite::SqliteRegistries::in_memory(
                        crate::store::secret::SecretBox::from_key(&[1; 32]),
                    )
                    .unwrap(),
                ),
                Vec::new(),
                None,
                Default::default(),
                None,
                Default::default(),
            ),
            proxy_port: None,
            schedule_wake: Default::default(),
            webhooks: Default::default(),
        });
        Harness {
            router: app(state),
            _dir: dir,
            queue,
            store,
        }
    }

    pub(super) async fn call(
        &self,
        method: Method,
        uri: &str,
        cookie: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value, Option<String>) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let req = req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, headers, bytes) = self.exchange(req).await;
        let set_cookie = text_header(&headers, header::SET_COOKIE);
        let ctype = text_header(&headers, header::CONTENT_TYPE).unwrap_or_default();
        let value = if ctype.starts_with("application/json") {
            serde_json::from_slice(&bytes).unwrap()
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        (status, value, set_cookie)
    }

    /// Send `req` to the router: the status, the headers and the whole body.
    async fn exchange(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let (parts, body) = self.router.clone().oneshot(req).await.unwrap().into_parts();
        let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    /// A harness with a session of each of `users`: their cookies, in order.
    async fn with_sessions<const N: usize>(users: [&str; N]) -> (Harness, [String; N]) {
        let h = Harness::new().await;
        let mut cookies = Vec::new();
        for user in users {
            cookies.push(h.login(user).await);
        }
        (h, cookies.try_into().unwrap())
    }

    pub(super) async fn login(&self, user: &str) -> String {
        let (status, body, cookie) = self
            .call(
                Method::POST,
                "/containerstation/api/v1/login",
                None,
                &format!("username={user}&password={user}-pw"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cookie = cookie.unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        cookie.split(';').next().unwrap().to_string()
    }

    async fn wait_state(&self, cookie: &str, id: i64, state: &str) -> Value {
        for _ in 0..200 {
            let (_, list, _) = self
                .call(Method::GET, "/api/v1/background/", Some(cookie), "")
                .await;
            if let Some(t) = list.as_array().unwrap().iter().find(|t| t["id"] == id) {
                if t["state"] == state {
                    return t.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("task {id} never reached {state}");
    }

    /// Send `request`, written `METHOD URI` or `METHOD URI BODY`, as
    /// `cookie`: the status and the answer.
    async fn send(&self, request: &str, cookie: Option<&str>) -> (StatusCode, Value) {
        let mut parts = request.splitn(3, ' ');
        let method = Method::from_bytes(parts.next().unwrap().as_bytes()).unwrap();
        let uri = parts.next().unwrap();
        let (status, body, _) = self
            .call(method, uri, cookie, parts.next().unwrap_or(""))
            .await;
        (status, body)
    }

    /// Send `request` (as [`Harness::send`]), which must succeed: the answer.
    async fn ok(&self, request: &str, cookie: Option<&str>) -> Value {
        let (status, body) = self.send(request, cookie).await;
        assert_eq!(status, StatusCode::OK, "{request}: {body}");
        body
    }

    /// Send `request` (as [`Harness::send`]), which must be refused with a
    /// JSON error as `want` says ([`assert_error`]): the error.
    async fn refused(&self, request: &str, cookie: Option<&str>, want: Refusal) -> Value {
        let (status, body) = self.send(request, cookie).await;
        assert!(body.is_object(), "{request}: not JSON: {body}");
        assert_error(status, &body, StatusCode::from_u16(want.0).unwrap(), want.1);
        body
    }
}

/// The value of header `name`, as text.
fn text_header(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// An error a test expects: its status and `error.reason`.
type Refusal = (u16, &'static str);

/// The errors of the API the tests expect, by reason.
const BAD_CREDENTIALS: Refusal = (401, "bad_credentials");
const NOT_LOGGED_IN: Refusal = (401, "not_logged_in");
const NOT_YOURS: Refusal = (403, "not_yours");
const CONFLICT: Refusal = (409, "conflict");
const MISSING_FIELD: Refusal = (400, "missing_field");
const INVALID_JSON: Refusal = (400, "invalid_json");
const WRONG_TYPE: Refusal = (400, "wrong_type");
const INVALID_PARAMS: Refusal = (400, "invalid_params");
const INVALID_PATH: Refusal = (400, "invalid_path");
const UNKNOWN_CATEGORY: Refusal = (404, "unknown_category");
const UNKNOWN_TASK: Refusal = (404, "unknown_task");
const UNKNOWN_CONTAINER: Refusal = (404, "unknown_container");
const UNKNOWN_PATH: Refusal = (404, "unknown_path");
const METHOD_NOT_ALLOWED: Refusal = (405, "method_not_allowed");
const BODY_TOO_LARGE: Refusal = (413, "body_too_large");

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, reason: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], want.as_u16(), "{body}");
    assert_eq!(body["error"]["reason"], reason, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// The ids of a task list answer, in its order.
fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_logout() {
    let h = Harness::new().await;
    for (request, want) in [
        (
            "POST /api/v1/login username=alice&password=wrong",
            BAD_CREDENTIALS,
        ),
        ("POST /api/v1/login username=alice", MISSING_FIELD),
        ("GET /api/v1/login_refresh", NOT_LOGGED_IN),
    ] {
        h.refused(request, None, want).await;
    }

    let cookie = h.login("alice").await;
    let b = h.ok("GET /api/v1/login_refresh", Some(&cookie)).await;
    assert_eq!(b["username"], "alice");
    assert_eq!(b["isAdmin"], false);
    assert_eq!(b["anonymous"], false);
    assert!(b["logintime"].is_string());
    let (s, _, set) = h
        .call(Method::PUT, "/api/v1/logout", Some(&cookie), "")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(set.unwrap().contains("Max-Age=0"));
    // The ended session's cookie, and a forged one.
    for cookie in [cookie.as_str(), "CS_SESS_ID=forged"] {
        h.refused("GET /api/v1/background/", Some(cookie), NOT_LOGGED_IN)
            .await;
    }
    let cookie = h.login("admin").await;
    let b = h.ok("GET /api/v1/login_refresh", Some(&cookie)).await;
    assert_eq!(b["isAdmin"], true);
    h.queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_list_delete_and_visibility() {
    let (h, [alice, bob, admin]) = Harness::with_sessions(["alice", "bob", "admin"]).await;

    let t = h
        .ok(
            r#"POST /containerstation/api/v1/background/noop {"password":"hunter2","token":"tok","count":1}"#,
            Some(&alice),
        )
        .await;
    assert_eq!(t["state"], "waiting");
    assert_eq!(t["user"], "alice");
    assert_eq!(t["category"], "noop");
    let id = t["id"].as_i64().unwrap();
    // The posted object itself, secrets masked; no `result` while waiting.
    assert_eq!(
        t["params"],
        json!({"password": "******", "token": "******", "count": 1})
    );
    assert!(t.get("result").is_none() && t.get("start").is_none(), "{t}");
    let done = h.wait_state(&alice, id, "completed").await;
    assert_eq!(done["result"], 0);
    assert!(done["start"].is_i64() && done["end"].is_i64());

    let t2 = h.ok("POST /api/v1/background/sleepy {}", Some(&bob)).await;
    let bob_id = t2["id"].as_i64().unwrap();

    // Visibility.
    let list = h.ok("GET /api/v1/background/", Some(&alice)).await;
    assert_eq!(ids(&list), vec![id]);
    let list = h.ok("GET /api/v1/background", Some(&admin)).await;
    assert_eq!(ids(&list), vec![bob_id, id], "newest first");
    let sleepy = "GET /api/v1/background/?category=sleepy";
    let list = h.ok(sleepy, Some(&admin)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], bob_id);
    let delete_bobs = format!("DELETE /api/v1/background/{bob_id}");
    h.refused(&delete_bobs, Some(&alice), NOT_YOURS).await;

    // Cancel a running deletable task.
    h.wait_state(&bob, bob_id, "running").await;
    assert_eq!(h.ok(&delete_bobs, Some(&bob)).await, json!([bob_id]));

    // A running task that is not deletable: 409.
    let t3 = h
        .ok("POST /api/v1/background/locked {}", Some(&alice))
        .await;
    let locked = t3["id"].as_i64().unwrap();
    h.wait_state(&alice, locked, "running").await;
    let delete_locked = format!("DELETE /api/v1/background/{locked}");
    h.refused(&delete_locked, Some(&alice), CONFLICT).await;
    // Delete by category removes finished ones only; then all finished.
    let b = h.ok("DELETE /api/v1/background/noop", Some(&alice)).await;
    assert_eq!(b, json!([id]));
    h.wait_state(&alice, locked, "completed").await;
    let b = h.ok("DELETE /api/v1/background/", Some(&alice)).await;
    assert_eq!(b, json!([locked]));
    let list = h.ok("GET /api/v1/background/", Some(&alice)).await;
    assert_eq!(list, json!([]));
    h.queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json() {
    let (h, [c]) = Harness::with_sessions(["alice"]).await;
    let too_large = format!(
        "POST /api/v1/background/noop {{\"a\":\"{}\"}}",
        "x".repeat(5000)
    );
    let with_session = [
        ("POST /api/v1/background/noop {not json", INVALID_JSON),
        ("POST /api/v1/background/noop", INVALID_JSON),
        ("POST /api/v1/background/noop 42", WRONG_TYPE),
        (
            r#"POST /api/v1/background/noop {"count":"x"}"#,
            INVALID_PARAMS,
        ),
        ("POST /api/v1/background/nosuch {}", UNKNOWN_CATEGORY),
        (too_large.as_str(), BODY_TOO_LARGE),
        ("GET /api/v1/nowhere", UNKNOWN_PATH),
        ("PATCH /api/v1/background/", METHOD_NOT_ALLOWED),
        ("DELETE /api/v1/background/12345", UNKNOWN_TASK),
        ("DELETE /api/v1/background/nosuch", UNKNOWN_CATEGORY),
        ("POST /api/v1/background/%FF {}", INVALID_PATH),
    ];
    for (request, want) in with_session {
        h.refused(request, Some(&c), want).await;
    }
    let without = [
        ("POST /api/v1/background/noop {}", NOT_LOGGED_IN),
        // `/` is the dashboard; anything else outside the API is unknown.
        ("GET /nowhere", UNKNOWN_PATH),
        ("GET /api/v1/login", METHOD_NOT_ALLOWED),
    ];
    for (request, want) in without {
        h.refused(request, None, want).await;
    }
    h.queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_without_secrets() {
    let (h, [c]) = Harness::with_sessions(["alice"]).await;
    let submit = r#"POST /api/v1/background/noop {"password":"pw-in-metrics"}"#;
    let t = h.ok(submit, Some(&c)).await;
    h.wait_state(&c, t["id"].as_i64().unwrap(), "completed")
        .await;
    let text = h.ok("GET /metrics", None).await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("stevedore_tasks{category=\"noop\",state=\"completed\"}"),
        "{text}"
    );
    assert!(text.contains("# TYPE stevedore_task_run_seconds histogram"));
    assert!(text.contains("stevedore_queue_depth{category=\"noop\"} 0"));
    assert!(!text.contains("pw-in-metrics"));
    h.queue.shutdown().await;
}

/// The run-time histogram measures with a monotonic clock: a 1 s task lands
/// above the 1 s bucket with a fractional sum (epoch seconds gave 1 or 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_time_metrics_have_sub_second_resolution() {
    let (h, [c]) = Harness::with_sessions(["alice"]).await;
    let t = h.ok("POST /api/v1/background/timed {}", Some(&c)).await;
    h.wait_state(&c, t["id"].as_i64().unwrap(), "completed")
        .await;
    // The run is counted once its end is stored, which readers may see a
    // moment before the run's task records it: poll, with a deadline.
    let mut text = String::new();
    for _ in 0..200 {
        let (_, got, _) = h.call(Method::GET, "/metrics", None, "").await;
        text = got.as_str().unwrap().to_string();
        if text.contains("stevedore_task_run_seconds_count{category=\"timed\"}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let value = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} not in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    let bucket = |le: &str| {
        value(&format!(
            "stevedore_task_run_seconds_bucket{{category=\"timed\",le=\"{le}\"}}"
        ))
    };
    assert_eq!(bucket("1"), 0.0, "{text}");
    assert_eq!(bucket("5"), 1.0, "{text}");
    let sum = value("stevedore_task_run_seconds_sum{category=\"timed\"}");
    assert!(sum > 1.0 && sum < 1.5 && sum.fract() != 0.0, "{sum}");
    h.queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prefix_and_both_login_bodies() {
    let h = Harness::new().await;
    for prefix in super::PREFIXES {
        // 1.x: form fields; 2.x: a JSON body sent by `curl -d` (form content type).
        for body in [
            "username=alice&password=alice-pw".to_string(),
            r#"{"username": "alice", "password": "alice-pw"}"#.to_string(),
        ] {
            let (s, b, cookie) = h
                .call(Method::POST, &format!("{prefix}/login"), None, &body)
                .await;
            assert_eq!(s, StatusCode::OK, "{prefix} {body}: {b}");
            assert_eq!(b["username"], "alice");
            let cookie = cookie.unwrap().split(';').next().unwrap().to_string();
            let list_tasks = format!("GET {prefix}/background/");
            let list = h.ok(&list_tasks, Some(&cookie)).await;
            assert!(list.is_array());
        }
    }
    h.queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_is_image_download() {
    let (h, [c]) = Harness::with_sessions(["alice"]).await;
    let pull = r#"POST /container-station/api/v1/background/image_pull {"image": "busybox", "tag": "1.36"}"#;
    let t = h.ok(pull, Some(&c)).await;
    // The task keeps the name it was submitted as (the 2023 recording).
    assert_eq!(t["category"], "image_pull");
    assert_eq!(t["name"], "busybox:1.36");
    let id = t["id"].as_i64().unwrap();
    h.wait_state(&c, id, "completed").await;
    for filter in ["image_pull", "image_download"] {
        let list_tasks = format!("GET /api/v1/background/?category={filter}");
        let list = h.ok(&list_tasks, Some(&c)).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{filter}: {list}");
    }
    let b = h.ok("DELETE /api/v1/background/image_pull", Some(&c)).await;
    assert_eq!(b, json!([id]));
    h.queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_routes() {
    let h = Harness::new().await;
    h.refused("GET /api/v1/container", None, NOT_LOGGED_IN)
        .await;
    let c = h.login("alice").await;
    // `METHOD PATH` of a container route, under one of the prefixes.
    let route = |request: &str| {
        let (method, path) = request.split_once(' ').unwrap();
        format!("{method} /containerstation/api/v1/container/{path}")
    };
    let list = h
        .ok("GET /containerstation/api/v1/container", Some(&c))
        .await;
    assert_eq!(list[0]["name"], "dtest");
    assert_eq!(list[0]["type"], "docker");
    assert_eq!(list[0]["imageID"], "sha256:1");
    assert_eq!(list[0]["tcpPort"], json!([8080]));
    assert_eq!(list[0]["project"], "");
    assert_eq!(list[0]["state"], "running");

    // The bare id, as text, for the shell.
    let id = h.ok(&route("GET docker/getid/dtest"), Some(&c)).await;
    assert_eq!(id, "0123456789abcdef0123");
    for (request, want) in [
        ("GET docker/getid/nosuch", UNKNOWN_CONTAINER),
        ("PUT docker/dtest/explode", UNKNOWN_PATH),
        ("PUT kvm/dtest/stop", INVALID_PARAMS),
    ] {
        let b = h.refused(&route(request), Some(&c), want).await;
        assert!(b.to_string().contains("error"));
    }
    let b = h
        .refused(&route("GET docker/a%2Fb"), Some(&c), INVALID_PARAMS)
        .await;
    assert!(b["error"]["message"].as_str().unwrap().starts_with("id: "));

    let stop = route("PUT docker/0123456789abcdef0123/stop");
    assert_eq!(h.ok(&stop, Some(&c)).await["state"], "stopped");
    let restart = route("PUT docker/dtest/restart");
    let (_, e) = h.send(&restart, Some(&c)).await;
    assert_eq!(e["state"], "running");
    let (s, b) = h.send(&route("GET lxc/ctest"), Some(&c)).await;
    assert!(b["error"].is_object(), "{s} {b}");

    let delete = route("DELETE docker/dtest?remove_volumes=true");
    assert_eq!(h.ok(&delete, Some(&c)).await, json!({}));
    let delete_again = route("DELETE docker/dtest");
    h.refused(&delete_again, Some(&c), UNKNOWN_CONTAINER).await;
    h.queue.shutdown().await;
}

/// `n` waiting tasks of `user` in a category no executor serves (they stay
/// as they are), stored at once; their ids, increasing.
async fn park(h: &Harness, user: &str, n: usize) -> Vec<i64> {
    use crate::queue::store::{NewTask, TaskStore};
    let tasks = (0..n).map(|i| {
        h.store.insert(NewTask {
            category: "parked".into(),
            user: user.into(),
            deletable: true,
            name: format!("p{i}"),
            shown_params: format!(r#"{{"n":{i},"password":"******"}}"#),
            full_params: None,
            init: 1_700_000_000 + i as i64,
            node: None,
        })
    });
    let mut ids: Vec<i64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|t| t.unwrap().id)
        .collect();
    ids.sort_unstable();
    ids
}

/// `GET uri` as `cookie`: the status and the raw body.
async fn get_raw(h: &Harness, uri: &str, cookie: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .uri(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = h.exchange(req).await;
    let ctype = text_header(&headers, header::CONTENT_TYPE).unwrap_or_default();
    (status, ctype, body)
}

/// Every id of `GET background/?{query}` read in pages of `limit`.
async fn paged_ids(h: &Harness, cookie: &str, query: &str, limit: usize) -> Vec<i64> {
    let mut out = Vec::new();
    let mut before = String::new();
    loop {
        let uri = format!("GET /api/v1/background/?limit={limit}{before}{query}");
        let page = ids(&h.ok(&uri, Some(cookie)).await);
        assert!(page.len() <= limit, "{uri}: {} tasks", page.len());
        match page.last() {
            Some(last) => before = format!("&before={last}"),
            None => break out,
        }
        out.extend(page);
    }
}

/// The whole list (no `limit`) is streamed a page of the store at a time,
/// and is byte for byte the JSON array the store's listing serialises to,
/// across page boundaries (1,000 tasks per read) and on either side of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_list_streams_the_same_json() {
    use crate::queue::store::{Owner, TaskStore};
    let (h, [admin, alice]) = Harness::with_sessions(["admin", "alice"]).await;
    let (s, ctype, body) = get_raw(&h, "/api/v1/background/", &admin).await;
    assert_eq!(
        (s, ctype.as_str(), body.as_slice()),
        (StatusCode::OK, "application/json", &b"[]"[..])
    );
    park(&h, "alice", 1999).await;
    park(&h, "bob", 1).await;
    for total in [2000, 2001] {
        let (s, ctype, body) = get_raw(&h, "/api/v1/background/", &admin).await;
        assert_eq!((s, ctype.as_str()), (StatusCode::OK, "application/json"));
        let want = serde_json::to_vec(&h.store.list(Owner::Anyone, None).await.unwrap()).unwrap();
        assert_eq!(body.len(), want.len(), "{total} tasks");
        assert!(
            body == want,
            "{total} tasks: the body differs from the listing's JSON"
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), total);
        park(&h, "alice", 1).await;
    }
    // A user's whole list, and `before` without `limit`: the older ones, all.
    let (_, _, body) = get_raw(&h, "/api/v1/background/", &alice).await;
    let want =
        serde_json::to_vec(&h.store.list(Owner::User("alice"), None).await.unwrap()).unwrap();
    assert!(body == want, "alice's list");
    let older = h
        .ok("GET /api/v1/background/?before=1001", Some(&admin))
        .await;
    assert_eq!(ids(&older), (1..=1000).rev().collect::<Vec<i64>>());
    h.queue.shutdown().await;
}

/// `?limit=N&before=ID`: pages cover every task exactly once, newest
/// first, with the other filters; past the end is `[]`; bad values are
/// 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_the_task_list() {
    let (h, [admin, alice]) = Harness::with_sessions(["admin", "alice"]).await;
    let mine = park(&h, "alice", 23).await;
    let bobs = park(&h, "bob", 4).await;
    let t = h.ok("POST /api/v1/background/noop {}", Some(&alice)).await;
    let noop = t["id"].as_i64().unwrap();
    h.wait_state(&alice, noop, "completed").await;
    let everything = ids(&h.ok("GET /api/v1/background/", Some(&admin)).await);
    assert_eq!(everything.len(), 28);
    for limit in [1, 5, 27, 28, 1000] {
        assert_eq!(
            paged_ids(&h, &admin, "", limit).await,
            everything,
            "limit {limit}"
        );
    }
    // A non-admin pages through their own tasks only; with a category too.
    let hers = ids(&h.ok("GET /api/v1/background/", Some(&alice)).await);
    assert_eq!(hers.len(), 24);
    assert_eq!(paged_ids(&h, &alice, "", 4).await, hers);
    let parked_hers: Vec<i64> = mine.iter().rev().copied().collect();
    assert_eq!(
        paged_ids(&h, &alice, "&category=parked", 10).await,
        parked_hers
    );
    assert_eq!(
        paged_ids(&h, &alice, "&category=noop", 10).await,
        vec![noop]
    );
    assert_eq!(
        paged_ids(&h, &admin, "&category=parked&node=", 3)
            .await
            .len(),
        27
    );
    // One store of one node: `?node=` keeps every task, as before.
    assert_eq!(
        paged_ids(&h, &admin, "&node=elsewhere", 100).await,
        everything
    );
    // One page, exactly.
    let one_page = format!("GET /api/v1/background/?limit=2&before={}", bobs[2]);
    let page = h.ok(&one_page, Some(&admin)).await;
    assert_eq!(ids(&page), vec![bobs[1], bobs[0]]);
    assert_eq!(page[0]["user"], "bob");
    assert_eq!(page[0]["params"], json!({"n": 1, "password": "******"}));
    // Past the end, and before the first id there is.
    let oldest = *everything.last().unwrap();
    for before in [oldest.to_string(), "1".into()] {
        let past = format!("GET /api/v1/background/?limit=10&before={before}");
        assert_eq!(
            h.ok(&past, Some(&admin)).await,
            json!([]),
            "before={before}"
        );
    }
    // Bad values: 400 JSON errors naming the field.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("before=0", "before"),
        ("before=-5", "before"),
        ("before=x", "before"),
        ("limit=10&before=1.5", "before"),
        ("before=99999999999999999999999", "before"),
    ] {
        let uri = format!("GET /api/v1/background/?{query}");
        let b = h.refused(&uri, Some(&alice), (400, "invalid_query")).await;
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{query}: {message}"
        );
    }
    // Empty values mean absent, as for `?category=`.
    let empty = h
        .ok("GET /api/v1/background/?limit=&before=", Some(&admin))
        .await;
    assert_eq!(ids(&empty), everything);
    h.queue.shutdown().await;
}

/// A body in several frames is read whole (the handler sees all of it);
/// one over the limit, or one that breaks off, is refused with a JSON
/// error that says the connection closes (its rest is unread); an answer
/// after a whole body does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_whole_and_unread_ones_close_the_connection() {
    let (h, [c]) = Harness::with_sessions(["alice"]).await;
    let send = |chunks: Vec<Result<&'static str, std::io::Error>>| {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/background/noop")
            .header(header::COOKIE, &c)
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
        h.router.clone().oneshot(req)
    };
    let closes = |resp: &axum::response::Response| {
        resp.headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v == "close")
    };
    let json = |resp: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };

    let resp = send(vec![Ok(r#"{"cou"#), Ok(r#"nt": 4"#), Ok("2}")])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!closes(&resp));
    let task = json(resp).await;
    assert_eq!(task["params"]["count"], 42, "{task}");

    // Over the harness's limit (4096 bytes), and broken off.
    let big: &'static str =
        Box::leak(format!(r#"{{"a":"{}"}}"#, "x".repeat(3000)).into_boxed_str());
    let broken = Err(std::io::Error::other("peer went away"));
    for (chunks, want) in [
        (vec![Ok(big), Ok(big)], BODY_TOO_LARGE),
        (vec![Ok(r#"{"count""#), broken], (400, "invalid_body")),
    ] {
        let resp = send(chunks).await.unwrap();
        let status = StatusCode::from_u16(want.0).unwrap();
        assert_eq!(resp.status(), status);
        assert!(closes(&resp));
        let body = json(resp).await;
        assert_error(status, &body, status, want.1);
    }
    h.queue.shutdown().await;
}

/// Reads `GET background/events` as it streams: whole events, each as
/// (event name, data).
struct EventStream {
    body: axum::body::BodyDataStream,
    buffered: String,
}

impl EventStream {
    async fn open(h: &Harness, cookie: &str) -> EventStream {
        let req = Request::builder()
            .uri("/api/v1/background/events")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        let resp = h.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        EventStream {
            body: resp.into_body().into_data_stream(),
            buffered: String::new(),
        }
    }

    /// The next event, within a deadline.
    async fn next(&mut self) -> (String, Value) {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffered.find("\n\n") {
                let block: String = self.buffered.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_string)
                };
                let (Some(event), Some(data)) = (field("event: "), field("data: ")) else {
                    continue; // a keep-alive comment
                };
                return (event, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("an event in time")
                .expect("the stream stays open")
                .unwrap();
            self.buffered.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Skip to the next `deleted` event.
    async fn next_deleted(&mut self) -> Value {
        loop {
            let (event, data) = self.next().await;
            if event == "deleted" {
                return data;
            }
        }
    }
}

/// Deleting a task, one by id or all finished at once, is an event too:
/// a live list learns that the task is gone. Others' deletions stay
/// unseen, as their tasks do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_are_events_for_the_owner_and_admins() {
    let (h, [alice, bob, admin]) = Harness::with_sessions(["alice", "bob", "admin"]).await;
    let mut bobs = EventStream::open(&h, &bob).await;
    let mut admins = EventStream::open(&h, &admin).await;
    let submit = |cookie: String| {
        let h = &h;
        async move {
            let submit = r#"POST /api/v1/background/noop {"count": 1}"#;
            let t = h.ok(submit, Some(&cookie)).await;
            t["id"].as_i64().unwrap()
        }
    };
    let hers = submit(alice.clone()).await;
    let his = submit(bob.clone()).await;
    h.wait_state(&alice, hers, "completed").await;
    h.wait_state(&bob, his, "completed").await;

    // Alice deletes hers by id: the admin sees it go, Bob does not.
    let delete_hers = format!("DELETE /api/v1/background/{hers}");
    assert_eq!(h.ok(&delete_hers, Some(&alice)).await, json!([hers]));
    assert_eq!(
        admins.next_deleted().await,
        json!({"id": hers, "category": "noop"})
    );
    // Bob deletes all his finished tasks: his stream's first deletion is his.
    let deleted = h.ok("DELETE /api/v1/background/", Some(&bob)).await;
    assert_eq!(deleted, json!([his]));
    assert_eq!(bobs.next_deleted().await["id"], his);
    assert_eq!(admins.next_deleted().await["id"], his);
}
