//! The sandbox against real components: the test plugins that
//! `cargo xtask build-plugins` builds into `target/test-plugins/` (and the
//! real categories in `target/plugins/`). Each failure must end as an error
//! naming the plugin while the host keeps serving other calls.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use stevedore::plugins::grants::Granter;
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{
    Executor, LogLevel, Outcome, Reporter, ResultCode, TaskContext, ValidationError,
};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

/// Test programs, by the name their crate declares.
mod programs {
    pub const NOOP: &str = "noop";
    pub const SLEEPY: &str = "sleepy";
    pub const SPIN: &str = "spin";
    pub const MEMORY_BOMB: &str = "memory_bomb";
    pub const TRAP: &str = "trap";
    pub const UNGRANTED: &str = "ungranted";
    pub const UNDECLARED: &str = "undeclared";
    pub const WASI_PRINT: &str = "wasi_print";
    pub const IMAGE_REMOVE: &str = "image_remove";
}
use programs::*;

const BUDGET: Duration = Duration::from_millis(300);
const MEMORY: u64 = 64 << 20;

fn component(name: &str) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let test = target.join("test-plugins").join(format!("{name}.wasm"));
    let real = target.join("plugins").join(format!("{name}.wasm"));
    let path = if test.exists() { test } else { real };
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins`",
        path.display()
    );
    path
}

/// A plugins folder holding copies of the named components.
fn folder(names: &[&str]) -> (tempfile::TempDir, PluginConfig) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in names {
        std::fs::copy(component(name), plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let config = PluginConfig {
        dir: plugins,
        cache_dir: dir.path().join("cache"),
        cpu_budget: BUDGET,
        memory_limit: MEMORY,
        grants: Default::default(),
    };
    (dir, config)
}

/// The start-up error of loading `config`'s folder, which must fail.
async fn load_error(config: &PluginConfig) -> String {
    let err = PluginHost::load(config, Arc::new(Simulator::default()))
        .await
        .err()
        .expect("must refuse");
    format!("{err:#}")
}

async fn host(names: &[&str]) -> (tempfile::TempDir, PluginHost) {
    let (dir, config) = folder(names);
    let host = PluginHost::load(&config, Arc::new(Simulator::default()))
        .await
        .unwrap();
    (dir, host)
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

fn task(category: &str, params: &str) -> (TaskContext, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let ctx = TaskContext {
        id: 42,
        category: category.to_string(),
        user: "tester".into(),
        params: params.to_string(),
        cancel: CancellationToken::new(),
        durable: stevedore::queue::store::Durable::ready(),
        reporter: recorder.clone(),
    };
    (ctx, recorder)
}

async fn still_serving(host: &PluginHost) {
    let (ctx, rec) = task(NOOP, "{}");
    assert_eq!(host.run(ctx).await, Outcome::Completed(None));
    assert_eq!(rec.progress.lock().last().unwrap().0, 100);
}

#[tokio::test]
async fn endless_loop_is_stopped_within_a_second_of_its_budget() {
    let (_d, host) = host(&[SPIN, NOOP]).await;
    let (ctx, _) = task(SPIN, "{}");
    let started = Instant::now();
    let outcome = host.run(ctx).await;
    let took = started.elapsed();
    assert!(took >= BUDGET, "stopped early: {took:?}");
    assert!(
        took < BUDGET + Duration::from_secs(1),
        "stopped late: {took:?}"
    );
    assert_eq!(
        outcome,
        Outcome::Failed {
            code: ResultCode::LimitExceeded,
            message: "plugin `spin` exceeded its CPU budget of 300 ms".into()
        }
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn endless_loop_in_validate_is_a_plugin_error_not_a_hang() {
    let (_d, host) = host(&[SPIN, NOOP]).await;
    let started = Instant::now();
    let err = host
        .validate(SPIN, r#"{"in_validate": true}"#)
        .await
        .unwrap_err();
    assert!(started.elapsed() < BUDGET + Duration::from_secs(1));
    assert_eq!(
        err,
        ValidationError::Plugin("plugin `spin` exceeded its CPU budget of 300 ms".into())
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn memory_bomb_ends_at_its_cap() {
    // The CPU budget is wall time between epoch ticks: on a loaded machine
    // 300 ms can pass before the bomb has touched 64 MiB. This test is
    // about memory, so give it a budget it cannot hit first.
    let (_d, mut config) = folder(&[MEMORY_BOMB, NOOP]);
    config.cpu_budget = Duration::from_secs(30);
    let host = PluginHost::load(&config, Arc::new(Simulator::default()))
        .await
        .unwrap();
    let (ctx, _) = task(MEMORY_BOMB, "{}");
    match host.run(ctx).await {
        Outcome::Failed {
            code: ResultCode::LimitExceeded,
            message,
        } => {
            assert!(
                message.starts_with("plugin `memory_bomb` exceeded its memory limit of 64 MiB"),
                "{message}"
            );
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    still_serving(&host).await;
}

#[tokio::test]
async fn trap_becomes_an_error_naming_the_plugin() {
    let (_d, host) = host(&[TRAP, NOOP]).await;
    let (ctx, _) = task(TRAP, "{}");
    match host.run(ctx).await {
        Outcome::Failed {
            code: ResultCode::PluginError,
            message,
        } => {
            assert!(
                message.starts_with("plugin `trap` trapped: wasm trap:"),
                "{message}"
            );
        }
        other => panic!("expected a trap error, got {other:?}"),
    }
    still_serving(&host).await;
}

#[tokio::test]
async fn ungranted_import_is_refused_at_load_naming_the_interface() {
    let (_d, config) = folder(&[UNGRANTED, NOOP]);
    let msg = load_error(&config).await;
    assert!(msg.contains("ungranted.wasm"), "{msg}");
    assert!(
        msg.contains("imports `stevedore:plugin/containers@0.3.0`, which is not granted to category `ungranted`"),
        "{msg}"
    );
    assert!(
        msg.contains(r#"allow it with `[plugins.grants] ungranted = ["task", "containers"]`"#),
        "the refusal names the configuration line: {msg}"
    );
    // Granting it in configuration makes it load.
    let mut config = config;
    config
        .grants
        .insert(UNGRANTED.into(), vec!["task".into(), "containers".into()]);
    let host = PluginHost::load(&config, Arc::new(Simulator::default()))
        .await
        .unwrap();
    assert!(host.plugin(UNGRANTED).is_some());
}

#[tokio::test]
async fn an_undeclared_import_is_refused_at_load_whatever_the_operator_allows() {
    let (_d, mut config) = folder(&[UNDECLARED]);
    config
        .grants
        .insert(UNDECLARED.into(), vec!["task".into(), "images".into()]);
    let msg = load_error(&config).await;
    assert!(
        msg.contains("undeclared.wasm")
            && msg.contains("imports `stevedore:plugin/images@0.3.0` but does not declare `images` in its capabilities (declared: task)"),
        "{msg}"
    );
    // `plugin check` and `plugin test` allow everything, yet not what the
    // plugin does not declare.
    let mut permissive = PluginHost::empty(&config, Arc::new(Simulator::default())).unwrap();
    let err = permissive
        .add_file(&config, &Granter::permissive(), &component(UNDECLARED))
        .await
        .err()
        .expect("must refuse");
    assert!(
        format!("{err:#}").contains("does not declare `images`"),
        "{err:#}"
    );
}

#[tokio::test]
async fn wasi_print_lands_in_the_task_log_and_wasi_denies_by_default() {
    let (_d, host) = host(&[WASI_PRINT]).await;
    let (ctx, rec) = task(WASI_PRINT, "{}");
    let outcome = host.run(ctx).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "file readable: false, env vars: 0, network: false".into()
        ))
    );
    let lines = rec.lines.lock().clone();
    assert!(
        lines.contains(&(LogLevel::Info, "hello from wasi stdout".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(LogLevel::Warn, "hello from wasi stderr".into())),
        "{lines:?}"
    );
}

#[tokio::test]
async fn cancelling_a_waiting_plugin_returns_promptly() {
    let (_d, host) = host(&[SLEEPY]).await;
    let (ctx, rec) = task(SLEEPY, r#"{"seconds": 60}"#);
    let cancel = ctx.cancel.clone();
    let run = tokio::spawn({
        let host = Arc::new(host);
        async move { host.run(ctx).await }
    });
    // Wait until the plugin is inside its run (it reports before each wait).
    let deadline = Instant::now() + Duration::from_secs(5);
    while rec.progress.lock().is_empty() {
        assert!(Instant::now() < deadline, "sleepy never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .expect("prompt")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        outcome,
        Outcome::Failed {
            code: ResultCode::Cancelled,
            message: "cancelled".into()
        }
    );
}

#[tokio::test]
async fn two_plugins_claiming_one_category_name_both_files() {
    let (_d, config) = folder(&[NOOP]);
    std::fs::copy(component(NOOP), config.dir.join("noop-copy.wasm")).unwrap();
    let msg = load_error(&config).await;
    assert!(
        msg.contains("noop.wasm")
            && msg.contains("noop-copy.wasm")
            && msg.contains("category `noop`"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_named() {
    let (_d, config) = folder(&[NOOP]);
    std::fs::write(config.dir.join("junk.wasm"), b"\0asm junk").unwrap();
    let msg = format!(
        "{:#}",
        PluginHost::load(&config, Arc::new(Simulator::default()))
            .await
            .err()
            .unwrap()
    );
    assert!(
        msg.contains("junk.wasm") && msg.contains("not a loadable component"),
        "{msg}"
    );
}

#[tokio::test]
async fn compiled_code_is_cached_for_the_next_start() {
    let (_d, config) = folder(&[NOOP, IMAGE_REMOVE]);
    PluginHost::load(&config, Arc::new(Simulator::default()))
        .await
        .unwrap();
    let entries = std::fs::read_dir(&config.cache_dir).unwrap().count();
    assert_eq!(entries, 2, "one cache entry per component");
    let host = PluginHost::load(&config, Arc::new(Simulator::default()))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_dir(&config.cache_dir).unwrap().count(),
        2,
        "reused, not rewritten"
    );
    assert_eq!(host.categories().len(), 2);
}

#[tokio::test]
async fn validate_names_the_field_and_capabilities_are_refused_outside_a_run() {
    let (_d, host) = host(&[IMAGE_REMOVE]).await;
    assert_eq!(
        host.validate(IMAGE_REMOVE, r#"[{"type":"rkt","image":"x"}]"#)
            .await,
        Err(ValidationError::Invalid(
            "[0].type: must be \"docker\" or \"lxc\"".into()
        ))
    );
    assert_eq!(
        host.validate(IMAGE_REMOVE, r#"{"image":"x"}"#).await,
        Err(ValidationError::Invalid(
            "params: invalid type: map, expected a sequence".into()
        ))
    );
    assert!(host
        .validate(IMAGE_REMOVE, r#"[{"image":"busybox"}]"#)
        .await
        .is_ok());
}

#[tokio::test]
async fn run_drives_the_runtime_and_reports_progress() {
    let sim = Arc::new(
        Simulator::from_script(r#"{"images.remove": [{"ok": ["a"]}, {"err": {"NotFound": "no such image: b:latest"}}]}"#).unwrap(),
    );
    let (_d, config) = folder(&[IMAGE_REMOVE]);
    let host = PluginHost::load(&config, sim.clone()).await.unwrap();
    let (ctx, rec) = task(IMAGE_REMOVE, r#"[{"image":"a"},{"image":"b"}]"#);
    assert_eq!(
        host.run(ctx).await,
        Outcome::Failed {
            code: ResultCode::PluginError,
            message: "not found: no such image: b:latest".into()
        }
    );
    let calls: Vec<String> = sim
        .calls()
        .iter()
        .map(|c| c.args["reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(calls, ["a:latest", "b:latest"]);
    assert_eq!(rec.progress.lock()[0], (0, "removing a:latest".to_string()));
    // The call's wall time is fed to the metrics.
    let text = stevedore::metrics::render(&Default::default());
    let key = format!(
        "stevedore_plugin_call_seconds_total{{plugin=\"{IMAGE_REMOVE}\",function=\"run\"}} "
    );
    let seconds: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .unwrap_or_else(|| panic!("{key} not in {text}"))
        .parse()
        .unwrap();
    assert!(seconds > 0.0, "{seconds}");
}

#[tokio::test]
async fn permissive_granter_loads_what_the_defaults_refuse() {
    // `stevedore plugin test` uses the permissive granter; serving never does.
    let (_d, config) = folder(&[]);
    let mut permissive = PluginHost::empty(&config, Arc::new(Simulator::default())).unwrap();
    let plugin = permissive
        .add_file(&config, &Granter::permissive(), &component(UNGRANTED))
        .await
        .unwrap();
    assert_eq!(plugin.description.name, UNGRANTED);
    let mut strict = PluginHost::empty(&config, Arc::new(Simulator::default())).unwrap();
    let err = strict
        .add_file(&config, &Granter::default(), &component(UNGRANTED))
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("not granted to category `ungranted`"),
        "{err:#}"
    );
}

/// Params a pure `validate` accepted are not validated again; refusals are,
/// and a plugin that may read changing state (WASI here; `repository` and
/// `app-store` likewise) is validated every time.
#[tokio::test]
async fn accepted_params_of_a_pure_validate_are_remembered() {
    let (_dir, host) = host(&[NOOP, WASI_PRINT]).await;
    assert!(host.plugin(NOOP).unwrap().pure_validate);
    assert!(!host.plugin(WASI_PRINT).unwrap().pure_validate);

    for _ in 0..3 {
        host.call_validate(NOOP, r#"{"count":1}"#).await.unwrap();
    }
    assert_eq!(
        host.validate_instances(),
        1,
        "one instance for three submits"
    );
    host.call_validate(NOOP, r#"{"count":2}"#).await.unwrap();
    assert_eq!(host.validate_instances(), 2, "other params are validated");

    for _ in 0..2 {
        let refused = host.validate(NOOP, r#"{"count":"x"}"#).await;
        assert!(
            matches!(&refused, Err(ValidationError::Invalid(m)) if m.contains("count")),
            "{refused:?}"
        );
    }
    assert_eq!(host.validate_instances(), 4, "refusals are not remembered");

    for _ in 0..2 {
        host.call_validate(WASI_PRINT, "{}").await.unwrap();
    }
    assert_eq!(
        host.validate_instances(),
        6,
        "an impure validate runs each time"
    );
}
