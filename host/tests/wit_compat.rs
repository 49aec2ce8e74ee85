//! The WIT compatibility suite on the simulator: every component kept in
//! `plugins/compat/<version>/` (real categories built against a released
//! version of the package, from the sources of their time) loads on this
//! host as that version, describes itself, validates, and runs its usual
//! calls against the simulated engine. A host change that breaks a
//! published plugin fails here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use stevedore::plugins::versions::WorldVersion;
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{Executor, LogLevel, Outcome, Reporter, TaskContext, ValidationError};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

/// The released versions kept, with the version the host must detect.
const VERSIONS: [(&str, WorldVersion); 2] = [
    ("0.1.0", WorldVersion::V0_1_0),
    ("0.2.0", WorldVersion::V0_2_0),
];

/// The categories kept for every version.
const CATEGORIES: [&str; 4] = ["image_download", "image_remove", "create", "application"];

fn folder(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/compat")
        .join(version)
}

/// A host loading one version's folder over a simulator answering `script`.
async fn host(version: &str, script: Value) -> (tempfile::TempDir, PluginHost, Arc<Simulator>) {
    let dir = tempfile::tempdir().unwrap();
    let config = PluginConfig {
        dir: folder(version),
        cache_dir: dir.path().join("cache"),
        cpu_budget: Duration::from_secs(2),
        memory_limit: 64 << 20,
        grants: Default::default(),
    };
    let sim = Arc::new(Simulator::from_script(&script.to_string()).unwrap());
    let host = PluginHost::load(&config, sim.clone())
        .await
        .unwrap_or_else(|e| panic!("the {version} components load: {e:#}"));
    (dir, host, sim)
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(i32, String)>>);

impl Reporter for Recorder {
    fn progress(&self, percent: i32, detail: &str) {
        self.0.lock().push((percent, detail.to_string()));
    }
    fn log(&self, _: LogLevel, _: &str) {}
}

async fn run(host: &PluginHost, category: &str, params: &Value) -> Outcome {
    let ctx = TaskContext {
        id: 7,
        category: category.to_string(),
        user: "tester".into(),
        params: params.to_string(),
        cancel: CancellationToken::new(),
        durable: stevedore::queue::store::Durable::ready(),
        reporter: Arc::new(Recorder::default()),
    };
    host.run(ctx).await
}

/// The simulator's calls, without the `images.resolve` that `validate`
/// makes again at the start of a run.
fn calls(sim: &Simulator) -> Vec<String> {
    sim.calls()
        .into_iter()
        .map(|c| c.call)
        .filter(|c| c != "images.resolve")
        .collect()
}

#[test]
fn every_version_keeps_every_category() {
    for (version, _) in VERSIONS {
        for category in CATEGORIES {
            let file = folder(version).join(format!("{category}.wasm"));
            assert!(file.exists(), "{} is kept", file.display());
        }
    }
}

#[tokio::test]
async fn each_version_loads_as_itself_and_describes_its_category() {
    for (version, expected) in VERSIONS {
        let (_d, host, _) = host(version, json!({})).await;
        for category in CATEGORIES {
            let plugin = host
                .plugin(category)
                .unwrap_or_else(|| panic!("{version}: {category} is loaded"));
            assert_eq!(plugin.version, expected, "{version}: {category}");
            assert!(
                plugin
                    .imports
                    .iter()
                    .any(|i| i.ends_with(&format!("@{version}"))),
                "{version}: {category} imports the package at its version: {:?}",
                plugin.imports
            );
            assert_eq!(
                plugin.description.params_schema.is_some(),
                expected != WorldVersion::V0_1_0,
                "{version}: {category}: only 0.1.0 has no params schema"
            );
        }
    }
}

#[tokio::test]
async fn each_version_validates_as_it_did() {
    for (version, _) in VERSIONS {
        let (_d, host, _) = host(version, json!({})).await;
        let body = json!({"type": "docker", "image": "busybox", "tag": "latest"});
        assert_eq!(
            host.validate("image_download", &body.to_string()).await,
            Ok(()),
            "{version}"
        );
        match host
            .validate("image_download", &json!({"type": "docker"}).to_string())
            .await
        {
            Err(ValidationError::Invalid(message)) => {
                assert!(message.contains("image"), "{version}: {message}")
            }
            other => panic!("{version}: a body without an image is refused, got {other:?}"),
        }
        assert_eq!(
            host.validate("image_remove", &json!([body]).to_string())
                .await,
            Ok(()),
            "{version}"
        );
    }
}

#[tokio::test]
async fn each_version_pulls_creates_and_removes_on_the_simulator() {
    for (version, _) in VERSIONS {
        let (_d, host, sim) = host(
            version,
            json!({
                "images.pull": {"ok": {"id": "sha256:0123456789abcdef", "tags": ["busybox:latest"], "size": 1, "created": 0},
                                "progress": [[50, "downloading"], [100, "pulled"]]},
                "images.remove": {"ok": ["sha256:0123456789abcdef"]}
            }),
        )
        .await;
        let image = json!({"type": "docker", "image": "busybox", "tag": "latest"});
        let outcome = run(&host, "image_download", &image).await;
        assert!(
            matches!(outcome, Outcome::Completed(_)),
            "{version}: image_download: {outcome:?}"
        );
        assert_eq!(calls(&sim), ["images.pull"], "{version}");

        let create =
            json!({"type": "docker", "name": "compat", "image": "busybox", "tag": "latest"});
        let outcome = run(&host, "create", &create).await;
        assert!(
            matches!(outcome, Outcome::Completed(_)),
            "{version}: create: {outcome:?}"
        );
        let seen = calls(&sim);
        assert!(
            seen.ends_with(&["containers.create".into(), "containers.start".into()]),
            "{version}: {seen:?}"
        );

        let outcome = run(&host, "image_remove", &json!([image])).await;
        assert!(
            matches!(outcome, Outcome::Completed(_)),
            "{version}: image_remove: {outcome:?}"
        );
        assert_eq!(calls(&sim).last().unwrap(), "images.remove", "{version}");
    }
}

/// The category in the second language, kept as built: `image_prune`
/// (Python, componentize-py 0.25.1, WIT 0.3.0), compressed with xz.
fn python_component(into: &std::path::Path) {
    let packed = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/compat/python/image_prune.wasm.xz");
    let mut reader = xz2::read::XzDecoder::new(std::fs::File::open(&packed).unwrap());
    let mut out = std::fs::File::create(into.join("image_prune.wasm")).unwrap();
    std::io::copy(&mut reader, &mut out).unwrap();
}

#[tokio::test]
async fn the_kept_python_component_loads_validates_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    python_component(&plugins);
    let config = PluginConfig {
        dir: plugins,
        cache_dir: dir.path().join("cache"),
        cpu_budget: Duration::from_millis(stevedore::plugins::config::DEFAULT_CPU_BUDGET_MS),
        memory_limit: stevedore::plugins::config::DEFAULT_MEMORY_MB << 20,
        grants: Default::default(),
    };
    let listed = json!({"ok": [
        {"id": "sha256:aaa", "tags": ["<none>:<none>"], "size": 10, "created": 0},
        {"id": "sha256:bbb", "tags": ["busybox:latest"], "size": 20, "created": 0},
    ]});
    let sim =
        Arc::new(Simulator::from_script(&json!({"images.list": listed}).to_string()).unwrap());
    let host = PluginHost::load(&config, sim.clone())
        .await
        .unwrap_or_else(|e| panic!("the kept Python component loads: {e:#}"));
    let plugin = host.plugin("image_prune").expect("loaded");
    assert_eq!(plugin.version, WorldVersion::Current);
    assert!(plugin.description.params_schema.is_some());
    match host.validate("image_prune", r#"{"dry_run": "yes"}"#).await {
        Err(ValidationError::Invalid(message)) => assert!(message.contains("dry_run"), "{message}"),
        other => panic!("a bad dry_run is refused naming it, got {other:?}"),
    }
    assert_eq!(host.validate("image_prune", "{}").await, Ok(()));
    assert_eq!(
        run(&host, "image_prune", &json!({})).await,
        Outcome::Completed(Some("removed 1 (10 bytes): sha256:aaa".into()))
    );
    assert_eq!(
        calls(&sim),
        ["images.list", "images.remove"],
        "it listed, then removed the dangling image only"
    );
}
