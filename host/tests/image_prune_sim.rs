//! `image_prune`, the category written in Python (`plugins/python/image_prune`,
//! built by `cargo xtask build-plugins` with componentize-py), against the
//! simulated runtime, as `categories_sim` tests the Rust ones: it describes
//! itself and its params, refuses bad bodies naming the field, imports only
//! what it declares, fits the default memory cap, and removes exactly the
//! dangling images the host lists for the user.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{
    Executor, LogLevel, Outcome, Reporter, ResultCode, TaskContext, ValidationError,
};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

const CATEGORY: &str = "image_prune";

fn component() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/image_prune.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins`",
        path.display()
    );
    path
}

/// The compiled-code cache of the test binary: the Python component takes
/// seconds to compile, so only the first test does; loads take turns so
/// two never write the same entry.
fn shared_cache() -> &'static (tempfile::TempDir, tokio::sync::Mutex<()>) {
    static CACHE: std::sync::OnceLock<(tempfile::TempDir, tokio::sync::Mutex<()>)> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(|| (tempfile::tempdir().unwrap(), tokio::sync::Mutex::new(())))
}

/// A host with `image_prune` under the server's default limits (64 MiB of
/// memory, the default grants), over a simulator answering from `script`.
async fn host(script: Value) -> (tempfile::TempDir, PluginHost, Arc<Simulator>) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(component(), plugins.join("image_prune.wasm")).unwrap();
    let config = PluginConfig {
        dir: plugins,
        cache_dir: shared_cache().0.path().to_path_buf(),
        cpu_budget: Duration::from_millis(stevedore::plugins::config::DEFAULT_CPU_BUDGET_MS),
        memory_limit: stevedore::plugins::config::DEFAULT_MEMORY_MB << 20,
        grants: Default::default(),
    };
    let sim = Arc::new(Simulator::from_script(&script.to_string()).unwrap());
    let host = {
        let _turn = shared_cache().1.lock().await;
        PluginHost::load(&config, sim.clone()).await.unwrap()
    };
    (dir, host, sim)
}

#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<(LogLevel, String)>>,
    progress: Mutex<Vec<(i32, String)>>,
}

impl Reporter for Recorder {
    fn progress(&self, percent: i32, detail: &str) {
        self.progress.lock().push((percent, detail.to_string()));
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.lines.lock().push((level, message.to_string()));
    }
}

async fn run(host: &PluginHost, params: &str) -> (Outcome, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let ctx = TaskContext {
        id: 7,
        category: CATEGORY.to_string(),
        user: "tester".into(),
        params: params.to_string(),
        cancel: CancellationToken::new(),
        durable: stevedore::queue::store::Durable::ready(),
        reporter: recorder.clone(),
    };
    (host.run(ctx).await, recorder)
}

fn calls(sim: &Simulator) -> Vec<(String, Value)> {
    sim.calls().into_iter().map(|c| (c.call, c.args)).collect()
}

async fn invalid(host: &PluginHost, params: &str) -> String {
    match host.validate(CATEGORY, params).await {
        Err(ValidationError::Invalid(m)) => m,
        other => panic!("{params}: expected a 400, got {other:?}"),
    }
}

fn image(id: &str, tags: &[&str], size: u64) -> Value {
    json!({"id": id, "tags": tags, "size": size, "created": 0})
}

/// Two dangling images (as Docker lists them, and with no tags at all)
/// among tagged ones.
fn listed() -> Value {
    json!({"ok": [
        image("sha256:aaa", &["<none>:<none>"], 10),
        image("sha256:bbb", &["busybox:latest"], 20),
        image("sha256:ccc", &[], 30),
        image("sha256:ddd", &["<none>:<none>", "mine:1"], 40),
    ]})
}

fn remove(id: &str) -> (String, Value) {
    (
        "images.remove".into(),
        json!({"runtime": "Docker", "reference": id, "force": false}),
    )
}

#[tokio::test]
async fn describes_itself_and_imports_only_what_it_declares() {
    let (_d, host, sim) = host(json!({})).await;
    let plugin = host.plugin(CATEGORY).expect("loaded");
    let d = &plugin.description;
    assert_eq!(d.capabilities, ["task", "images"]);
    assert!(d.deletable);
    assert!(d.summary.starts_with("Remove the dangling images"));
    let ours: Vec<&String> = plugin
        .imports
        .iter()
        .filter(|i| i.starts_with("stevedore:"))
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    for i in ["types", "task", "images"] {
        assert!(
            ours.iter()
                .any(|o| o.starts_with(&format!("stevedore:plugin/{i}@"))),
            "{i} in {ours:?}"
        );
    }
    let schema: Value = serde_json::from_str(d.params_schema.as_deref().unwrap()).unwrap();
    assert_eq!(schema["properties"]["dry_run"]["type"], "boolean");
    assert_eq!(
        schema["properties"]["type"]["enum"],
        json!(["docker", "lxc"])
    );
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let (_d, host, sim) = host(json!({})).await;
    host.validate(CATEGORY, "{}").await.unwrap();
    host.validate(CATEGORY, r#"{"type": "lxc", "dry_run": true}"#)
        .await
        .unwrap();
    assert_eq!(
        invalid(&host, r#"{"dry_run": 1}"#).await,
        "dry_run: must be a boolean"
    );
    assert_eq!(
        invalid(&host, r#"{"type": "rkt"}"#).await,
        r#"type: must be one of "docker", "lxc""#
    );
    assert_eq!(
        invalid(&host, r#"{"force": true}"#).await,
        "force: unknown field (known: type, dry_run)"
    );
    assert_eq!(invalid(&host, "[]").await, "params: must be an object");
    assert!(invalid(&host, "{").await.starts_with("params: not JSON"));
    assert!(sim.calls().is_empty(), "validate touched the runtime");
}

#[tokio::test]
async fn removes_the_dangling_images_only() {
    let (_d, host, sim) = host(json!({"images.list": listed()})).await;
    let (outcome, rec) = run(&host, "{}").await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some("removed 2 (40 bytes): sha256:aaa, sha256:ccc".into()))
    );
    assert_eq!(
        calls(&sim),
        [
            ("images.list".into(), json!({"runtime": "Docker"})),
            remove("sha256:aaa"),
            remove("sha256:ccc"),
        ]
    );
    assert_eq!(rec.progress.lock().last().unwrap(), &(100, "done".into()));
}

#[tokio::test]
async fn a_dry_run_removes_nothing() {
    let (_d, host, sim) = host(json!({"images.list": listed()})).await;
    let (outcome, rec) = run(&host, r#"{"dry_run": true, "type": "lxc"}"#).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some("would remove 2: sha256:aaa, sha256:ccc".into()))
    );
    assert_eq!(
        calls(&sim),
        [("images.list".into(), json!({"runtime": "Lxc"}))]
    );
    assert!(rec
        .lines
        .lock()
        .contains(&(LogLevel::Info, "would remove sha256:ccc (30 bytes)".into())));
}

#[tokio::test]
async fn an_image_in_use_or_refused_is_kept_and_logged() {
    let (_d, host, _sim) = host(json!({
        "images.list": listed(),
        "images.remove": [
            {"err": {"Conflict": "image is being used by running container 1234"}},
            {"err": {"Denied": "image sha256:ccc was made by another user"}},
        ],
    }))
    .await;
    let (outcome, rec) = run(&host, "{}").await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "removed 0 (0 bytes); kept 2: sha256:aaa, sha256:ccc".into()
        ))
    );
    assert!(rec.lines.lock().contains(&(
        LogLevel::Warn,
        "kept sha256:aaa: image is being used by running container 1234".into()
    )));
}

#[tokio::test]
async fn a_failed_list_fails_the_task_with_the_engine_message() {
    let (_d, host, _sim) = host(json!({
        "images.list": {"err": {"Runtime": "Cannot connect to the Docker daemon"}},
    }))
    .await;
    let (outcome, _) = run(&host, "{}").await;
    assert!(
        matches!(&outcome, Outcome::Failed { code: ResultCode::PluginError, message } if message.contains("Cannot connect to the Docker daemon")),
        "{outcome:?}"
    );
}
