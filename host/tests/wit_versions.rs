//! WIT versions: a component built against the frozen 0.1.0 world
//! (`plugins/testing/v0_1_0`, from `wit/v0.1.0/`) still loads, validates and
//! runs beside current ones, and current ones report their params schema.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use stevedore::plugins::versions::WorldVersion;
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{Executor, LogLevel, Outcome, Reporter, TaskContext, ValidationError};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

fn component(dir: &str, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins`",
        path.display()
    );
    path
}

async fn host() -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for (folder, name) in [
        ("test-plugins", "v0_1_0"),
        ("test-plugins", "noop"),
        ("plugins", "image_remove"),
    ] {
        std::fs::copy(
            component(folder, name),
            plugins.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let config = PluginConfig {
        dir: plugins,
        cache_dir: dir.path().join("cache"),
        cpu_budget: Duration::from_secs(2),
        memory_limit: 64 << 20,
        grants: Default::default(),
    };
    let host = PluginHost::load(&config, Arc::new(Simulator::default()))
        .await
        .unwrap();
    (dir, host)
}

#[derive(Default)]
struct Progress(Mutex<Vec<(i32, String)>>);

impl Reporter for Progress {
    fn progress(&self, percent: i32, detail: &str) {
        self.0.lock().push((percent, detail.to_string()));
    }
    fn log(&self, _: LogLevel, _: &str) {}
}

fn task(category: &str, params: &str) -> (TaskContext, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let ctx = TaskContext {
        id: 7,
        category: category.into(),
        user: "tester".into(),
        params: params.into(),
        cancel: CancellationToken::new(),
        durable: stevedore::queue::store::Durable::ready(),
        reporter: progress.clone(),
    };
    (ctx, progress)
}

#[tokio::test]
async fn a_0_1_0_component_loads_validates_and_runs_beside_current_ones() {
    let (_d, host) = host().await;
    let old = host.plugin("v0_1_0").expect("the 0.1.0 plugin is loaded");
    assert_eq!(old.version, WorldVersion::V0_1_0);
    assert!(old.description.deletable);
    assert_eq!(old.description.params_schema, None);
    assert!(
        old.imports
            .contains(&"stevedore:plugin/task@0.1.0".to_string()),
        "{:?}",
        old.imports
    );

    assert_eq!(
        host.validate("v0_1_0", r#"{"steps": 0}"#).await,
        Err(ValidationError::Invalid(
            "steps: must be an integer 1..=10".into()
        ))
    );
    assert_eq!(host.validate("v0_1_0", r#"{"steps": 4}"#).await, Ok(()));

    let (ctx, progress) = task("v0_1_0", r#"{"steps": 4}"#);
    assert_eq!(
        host.run(ctx).await,
        Outcome::Completed(Some("ran 4 steps on 0.1.0".into()))
    );
    let seen: Vec<i32> = progress.0.lock().iter().map(|p| p.0).collect();
    assert_eq!(seen, [25, 50, 75, 100]);

    // A failure of the old plugin maps as a current one's does.
    let (ctx, _) = task("v0_1_0", r#"{"fail": true}"#);
    assert!(
        matches!(host.run(ctx).await, Outcome::Failed { message, .. } if message == "failed as asked")
    );

    // The current ones on the same host run as before.
    let (ctx, _) = task("noop", "{}");
    assert_eq!(host.run(ctx).await, Outcome::Completed(None));
}

#[tokio::test]
async fn current_components_report_their_params_schema() {
    let (_d, host) = host().await;
    let noop = host.plugin("noop").unwrap();
    assert_eq!(noop.version, WorldVersion::Current);
    let schema: serde_json::Value =
        serde_json::from_str(noop.description.params_schema.as_deref().unwrap()).unwrap();
    assert_eq!(schema["type"], "object");
    for field in ["count", "fail", "password", "token"] {
        assert!(
            schema["properties"].get(field).is_some(),
            "{field}: {schema}"
        );
    }
    assert_eq!(
        schema["properties"]["fail"]["description"],
        "End the task as `error`."
    );

    let remove = host.plugin("image_remove").unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(remove.description.params_schema.as_deref().unwrap()).unwrap();
    assert_eq!(schema["type"], "array", "{schema}");
    assert_eq!(schema["items"]["type"], "object", "{schema}");
    assert!(schema["items"]["properties"].get("image").is_some());
}
