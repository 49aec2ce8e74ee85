//! `image_check` and `container_update` (`target/plugins/*.wasm`, built by
//! `cargo xtask build-plugins`) against the simulated runtime: bad bodies
//! are refused naming the field, and each run makes the host calls it
//! should, in order, and ends as it should: an unhealthy new container is
//! replaced by the previous one again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{
    Executor, Finding, LogLevel, Outcome, Reporter, ResultCode, TaskContext, ValidationError,
};
use stevedore::runtime::simulated::{Simulator, SIMULATED_DIGEST};
use tokio_util::sync::CancellationToken;

const CATEGORIES: &[&str] = &["image_check", "container_update"];

fn component(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins`",
        path.display()
    );
    path
}

/// A host with both categories over a simulator answering from `script`.
async fn host(script: Value) -> (tempfile::TempDir, PluginHost, Arc<Simulator>) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in CATEGORIES {
        std::fs::copy(component(name), plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let config = PluginConfig {
        dir: plugins,
        cache_dir: dir.path().join("cache"),
        cpu_budget: Duration::from_secs(2),
        memory_limit: 64 << 20,
        grants: Default::default(),
    };
    let sim = Arc::new(Simulator::from_script(&script.to_string()).unwrap());
    let host = PluginHost::load(&config, sim.clone()).await.unwrap();
    (dir, host, sim)
}

#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<(LogLevel, String)>>,
    found: Mutex<Vec<Finding>>,
}

impl Reporter for Recorder {
    fn progress(&self, _percent: i32, _detail: &str) {}
    fn log(&self, level: LogLevel, message: &str) {
        self.lines.lock().push((level, message.to_string()));
    }
    fn announce(&self, finding: &Finding) {
        self.found.lock().push(finding.clone());
    }
}

async fn run(host: &PluginHost, category: &str, params: Value) -> (Outcome, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let ctx = TaskContext {
        id: 7,
        category: category.to_string(),
        user: "tester".into(),
        params: params.to_string(),
        cancel: CancellationToken::new(),
        durable: stevedore::queue::store::Durable::ready(),
        reporter: recorder.clone(),
    };
    (host.run(ctx).await, recorder)
}

fn names(sim: &Simulator) -> Vec<String> {
    sim.calls().into_iter().map(|c| c.call).collect()
}

fn failed(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed {
            code: ResultCode::PluginError,
            message,
        } => message,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

async fn invalid(host: &PluginHost, category: &str, params: Value) -> String {
    match host.validate(category, &params.to_string()).await {
        Err(ValidationError::Invalid(m)) => m,
        other => panic!("{category} {params}: expected a 400, got {other:?}"),
    }
}

const INSPECT: &str = r#"{"Config": {"Image": "127.0.0.1:5000/app:v1"}}"#;

fn health(status: &str, health: Option<&str>, streak: u32) -> Value {
    json!({"ok": {"status": status, "running": status == "running", "exit_code": if status == "exited" { 1 } else { 0 },
        "health": health, "failing_streak": streak, "last_probe_output": if streak > 0 { "refused" } else { "" }}})
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let (_d, host, sim) = host(json!({})).await;
    let cases = [
        (
            "container_update",
            json!({}),
            "params: missing field `container`",
        ),
        (
            "container_update",
            json!({"container": "a b"}),
            "container:",
        ),
        (
            "container_update",
            json!({"container": "web", "image": "A:b"}),
            "image:",
        ),
        (
            "container_update",
            json!({"container": "web", "stable_secs": 0}),
            "stable_secs:",
        ),
        (
            "container_update",
            json!({"container": "web", "health_timeout_secs": 99999}),
            "health_timeout_secs:",
        ),
        (
            "image_check",
            json!({"container": "web", "app": "blog"}),
            "app:",
        ),
        ("image_check", json!({"app": "a/b"}), "app:"),
    ];
    for (category, body, start) in cases {
        let m = invalid(&host, category, body.clone()).await;
        assert!(m.starts_with(start), "{category} {body}: {m}");
    }
    assert!(sim.calls().is_empty(), "validation touched the runtime");
}

#[tokio::test]
async fn an_update_pulls_recreates_waits_for_health_and_removes_the_previous_container() {
    let (_d, host, sim) = host(json!({
        "containers.inspect": {"ok": INSPECT},
        "containers.health": [health("running", Some("starting"), 0), health("running", Some("healthy"), 0)],
    }))
    .await;
    let (outcome, _) = run(&host, "container_update", json!({"container": "web"})).await;
    assert!(
        matches!(outcome, Outcome::Completed(Some(ref m)) if m.starts_with("web runs 127.0.0.1:5000/app:v1")),
        "{outcome:?}"
    );
    assert_eq!(
        names(&sim),
        [
            "containers.inspect",
            "images.pull",
            "containers.recreate",
            "containers.health",
            "containers.health",
            "containers.remove"
        ]
    );
    let calls = sim.calls();
    assert_eq!(calls[1].args["image"], "127.0.0.1:5000/app");
    assert_eq!(calls[1].args["tag"], "v1");
    assert_eq!(calls[2].args["image"], "127.0.0.1:5000/app:v1");
    assert_eq!(
        calls[3].args["container"], "simulated-web-new",
        "the new one is watched"
    );
    assert_eq!(calls[5].args["container"], "web", "the previous one goes");
}

#[tokio::test]
async fn an_unhealthy_container_is_replaced_by_the_previous_one_again() {
    let (_d, host, sim) = host(json!({
        "containers.health": [health("running", Some("starting"), 1), health("running", Some("unhealthy"), 3)],
    }))
    .await;
    let body = json!({"container": "web", "image": "127.0.0.1:5000/app:v2"});
    let (outcome, _) = run(&host, "container_update", body).await;
    let m = failed(&outcome);
    assert!(
        m.contains("health check failed: unhealthy after 3 failed probes (last probe: refused); the previous container is running again"),
        "{m}"
    );
    let calls = sim.calls();
    assert_eq!(
        names(&sim),
        [
            "images.pull",
            "containers.recreate",
            "containers.health",
            "containers.health",
            "containers.restore"
        ]
    );
    assert_eq!(calls[4].args["replaced"]["id"], "simulated-web-new");
    assert_eq!(calls[4].args["replaced"]["previous"], "web");
}

#[tokio::test]
async fn a_container_that_exits_or_never_turns_healthy_is_rolled_back() {
    let (_d, plugins, sim) = host(json!({"containers.health": health("exited", None, 0)})).await;
    let body = json!({"container": "web", "image": "app:v2"});
    let (outcome, _) = run(&plugins, "container_update", body).await;
    assert!(failed(&outcome)
        .contains("the container exited with code 1; the previous container is running again"));
    assert_eq!(names(&sim).last().unwrap(), "containers.restore");

    let (_d, plugins, sim) =
        host(json!({"containers.health": health("running", Some("starting"), 0)})).await;
    let body = json!({"container": "web", "image": "app:v2", "health_timeout_secs": 1});
    let (outcome, _) = run(&plugins, "container_update", body).await;
    assert!(
        failed(&outcome).contains("not healthy after 1 s"),
        "{outcome:?}"
    );
    assert_eq!(names(&sim).last().unwrap(), "containers.restore");
}

#[tokio::test]
async fn without_a_health_check_the_container_must_keep_running() {
    let (_d, host, sim) = host(json!({})).await;
    let body = json!({"container": "web", "image": "app:v2", "stable_secs": 1});
    let (outcome, _) = run(&host, "container_update", body).await;
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    let health = names(&sim)
        .iter()
        .filter(|n| *n == "containers.health")
        .count();
    assert_eq!(health, 3, "at 0, 0.5 and 1 s");
    assert_eq!(names(&sim).last().unwrap(), "containers.remove");
}

#[tokio::test]
async fn a_failed_recreate_leaves_nothing_to_restore() {
    let (_d, host, sim) = host(json!({
        "containers.recreate": {"err": {"Runtime": "port is already allocated"}}
    }))
    .await;
    let body = json!({"container": "web", "image": "app:v2"});
    let (outcome, _) = run(&host, "container_update", body).await;
    assert!(failed(&outcome).contains("port is already allocated"));
    assert_eq!(names(&sim), ["images.pull", "containers.recreate"]);
}

#[tokio::test]
async fn image_check_reports_nothing_when_the_registry_serves_the_local_version() {
    let (_d, host, sim) = host(json!({
        "containers.list-labelled": {"ok": [
            {"id": "1", "name": "web", "image": "127.0.0.1:5000/app:v1", "running": true, "labels": []},
            {"id": "2", "name": "worker", "image": "127.0.0.1:5000/app:v1", "running": true, "labels": []},
        ]},
    }))
    .await;
    let (outcome, rec) = run(&host, "image_check", json!({})).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some("1 image checked: no update available".into()))
    );
    let calls = sim.calls();
    assert_eq!(
        calls[0].args,
        json!({"runtime": "Docker", "key": "io.stevedore.owner", "value": "tester"})
    );
    assert!(rec.found.lock().is_empty());
    let line: Value = serde_json::from_str(&rec.lines.lock()[0].1).unwrap();
    assert_eq!(
        line,
        json!({"image": "127.0.0.1:5000/app:v1", "containers": ["web", "worker"],
            "update_available": false, "remote_digest": SIMULATED_DIGEST})
    );
}

#[tokio::test]
async fn image_check_announces_an_update_and_says_why_another_image_could_not_be_checked() {
    let newer = format!("sha256:{}", "e".repeat(64));
    let (_d, host, _sim) = host(json!({
        "containers.list-labelled": {"ok": [
            {"id": "1", "name": "web", "image": "127.0.0.1:5000/app:v1", "running": true, "labels": []},
            {"id": "2", "name": "db", "image": "10.9.9.9:5000/db:v1", "running": true, "labels": []},
        ]},
        // Images are checked in the order of their names.
        "images.remote-digest": [
            {"err": {"Runtime": "Get https://10.9.9.9:5000/v2/: connection refused"}},
            {"ok": newer},
        ],
    }))
    .await;
    let (outcome, rec) = run(&host, "image_check", json!({"app": "blog"})).await;
    let Outcome::Completed(Some(detail)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        detail,
        "2 images checked: update available for 127.0.0.1:5000/app:v1 (web); 1 could not be checked (see the log)"
    );
    assert_eq!(
        rec.found.lock()[..],
        [Finding::UpdateAvailable {
            image: "127.0.0.1:5000/app:v1".into(),
            containers: vec!["web".into()],
            remote_digest: newer.clone(),
        }]
    );
    let lines: Vec<Value> = rec
        .lines
        .lock()
        .iter()
        .map(|(_, l)| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["image"], "10.9.9.9:5000/db:v1");
    assert_eq!(
        lines[0]["error"],
        "asking the registry: Get https://10.9.9.9:5000/v2/: connection refused"
    );
    assert_eq!(lines[1]["update_available"], true);
}
