//! The volume backup categories (`volume_export`, `volume_import`, built by
//! `cargo xtask build-plugins`) against the simulated runtime: bodies
//! validate or are refused naming the field, each run makes the one host
//! call it should with the arguments it should, and the runtime's refusals
//! end the task in error with their message.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{
    Executor, LogLevel, Outcome, Reporter, ResultCode, TaskContext, ValidationError,
};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

const CATEGORIES: &[&str] = &["volume_export", "volume_import"];

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

/// One compiled-code cache for the test binary; loads take turns.
fn shared_cache() -> &'static (tempfile::TempDir, tokio::sync::Mutex<()>) {
    static CACHE: OnceLock<(tempfile::TempDir, tokio::sync::Mutex<()>)> = OnceLock::new();
    CACHE.get_or_init(|| (tempfile::tempdir().unwrap(), tokio::sync::Mutex::new(())))
}

/// A host with both categories, over a simulator answering from `script`.
async fn host(script: Value) -> (tempfile::TempDir, PluginHost, Arc<Simulator>) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in CATEGORIES {
        std::fs::copy(component(name), plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let config = PluginConfig {
        dir: plugins,
        cache_dir: shared_cache().0.path().to_path_buf(),
        cpu_budget: Duration::from_secs(2),
        memory_limit: 64 << 20,
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
    progress: parking_lot::Mutex<Vec<(i32, String)>>,
}

impl Reporter for Recorder {
    fn progress(&self, percent: i32, detail: &str) {
        self.progress.lock().push((percent, detail.to_string()));
    }
    fn log(&self, _level: LogLevel, _message: &str) {}
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

fn calls(sim: &Simulator) -> Vec<(String, Value)> {
    sim.calls().into_iter().map(|c| (c.call, c.args)).collect()
}

#[tokio::test]
async fn bodies_validate_or_name_the_field() {
    let (_d, host, sim) = host(json!({})).await;
    for (category, body) in [
        (
            "volume_export",
            json!({"volume": "data", "path": "b/data.tar"}),
        ),
        (
            "volume_export",
            json!({"volume": "data", "path": "b/data.tgz", "gzip": true, "overwrite": true, "live": true}),
        ),
        (
            "volume_import",
            json!({"volume": "data", "path": "b/data.tgz"}),
        ),
        (
            "volume_import",
            json!({"volume": "data", "path": "b/data.tgz", "overwrite": true}),
        ),
    ] {
        host.validate(category, &body.to_string())
            .await
            .unwrap_or_else(|e| panic!("{category} {body}: {e:?}"));
    }
    assert!(sim.calls().is_empty(), "validation touches no runtime");
    for (category, body, message) in [
        (
            "volume_export",
            json!({"path": "a.tar"}),
            "volume: is required",
        ),
        (
            "volume_import",
            json!({"volume": "data"}),
            "path: is required",
        ),
        (
            "volume_export",
            json!({"volume": "data", "path": "/etc/a.tar"}),
            "path: must be relative to the share root, e.g. \"test/c.tgz\"",
        ),
        (
            "volume_import",
            json!({"volume": "data", "path": "a/../../b.tar"}),
            "path: must not contain `..`",
        ),
    ] {
        match host.validate(category, &body.to_string()).await {
            Err(ValidationError::Invalid(m)) => assert_eq!(m, message, "{category} {body}"),
            other => panic!("{category} {body}: expected a 400, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_export_is_one_host_call_with_its_flags() {
    let (_d, host, sim) = host(json!({
        "volumes.export-to-path": {"ok": 10240, "progress": [[50, "exporting volume data: 1 of 2 MiB"]]}
    }))
    .await;
    let (outcome, recorder) = run(
        &host,
        "volume_export",
        json!({"volume": "data", "path": "b/data.tgz", "gzip": true, "live": true}),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "exported volume data to /b/data.tgz (10240 bytes)".into()
        ))
    );
    assert_eq!(
        calls(&sim),
        [(
            "volumes.export-to-path".to_string(),
            json!({"volume": "data", "path": "b/data.tgz", "gzip": true, "overwrite": false, "live": true})
        )]
    );
    let progress = recorder.progress.lock().clone();
    assert!(
        progress.contains(&(50, "exporting volume data: 1 of 2 MiB".into())),
        "{progress:?}"
    );
    assert_eq!(progress.last().map(|p| p.0), Some(100));
}

#[tokio::test]
async fn an_import_is_one_host_call_and_refusals_end_in_error() {
    let (_d, host, sim) = host(json!({
        "volumes.import-from-path": [
            {"ok": 2048},
            {"err": {"Conflict": "volume data holds files; set `overwrite` to lay the archive over them"}},
            {"err": {"InvalidParams": "path: archive entry `../x` leaves the root with `..`"}}
        ]
    }))
    .await;
    let body = json!({"volume": "data", "path": "b/data.tar"});
    let (outcome, _) = run(&host, "volume_import", body.clone()).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "imported /b/data.tar (2048 bytes) into volume data".into()
        ))
    );
    assert_eq!(
        calls(&sim),
        [(
            "volumes.import-from-path".to_string(),
            json!({"volume": "data", "path": "b/data.tar", "overwrite": false, "labels": []})
        )]
    );
    let (outcome, _) = run(&host, "volume_import", body.clone()).await;
    assert_eq!(
        outcome,
        Outcome::Failed {
            code: ResultCode::PluginError,
            message:
                "conflict: volume data holds files; set `overwrite` to lay the archive over them"
                    .into()
        }
    );
    let (outcome, _) = run(&host, "volume_import", body).await;
    assert!(
        matches!(&outcome, Outcome::Failed { message, .. } if message.contains("leaves the root")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn lxc_folders_validate_or_name_the_field() {
    let (_d, host, sim) = host(json!({})).await;
    for (category, body) in [
        (
            "volume_export",
            json!({"type": "lxc", "container": "web-1", "subtree": "/var/lib/data", "path": "b/d.tar"}),
        ),
        (
            "volume_import",
            json!({"type": "lxc", "container": "web-1", "subtree": "/srv", "path": "b/d.tgz", "overwrite": true}),
        ),
    ] {
        host.validate(category, &body.to_string())
            .await
            .unwrap_or_else(|e| panic!("{category} {body}: {e:?}"));
    }
    for (category, body, message) in [
        (
            "volume_export",
            json!({"type": "lxc", "container": "web-1", "subtree": "/var/../../etc", "path": "a.tar"}),
            "subtree: must not contain `..`",
        ),
        (
            "volume_import",
            json!({"type": "lxc", "container": "web-1", "subtree": "srv", "path": "a.tar"}),
            "subtree: must be an absolute path inside the container",
        ),
        (
            "volume_import",
            json!({"type": "lxc", "subtree": "/srv", "path": "a.tar"}),
            "container: is required",
        ),
        (
            "volume_export",
            json!({"volume": "data", "subtree": "/srv", "path": "a.tar"}),
            "subtree: is for `type: lxc` only",
        ),
    ] {
        match host.validate(category, &body.to_string()).await {
            Err(ValidationError::Invalid(m)) => assert_eq!(m, message, "{category} {body}"),
            other => panic!("{category} {body}: expected a 400, got {other:?}"),
        }
    }
    assert!(sim.calls().is_empty(), "validation touches no runtime");
}

#[tokio::test]
async fn lxc_folder_backups_are_one_host_call_each() {
    let (_d, host, sim) = host(json!({
        "volumes.import-subtree-from-path": [
            {"ok": 4096},
            {"err": {"Conflict": "subtree `/srv/d` holds files; set `overwrite` to lay the archive over them"}},
            {"err": {"InvalidParams": "subtree: `/srv/d` leaves the container's root through a link"}}
        ]
    }))
    .await;
    // Unscripted export: the simulator's empty tar.
    let (outcome, _) = run(
        &host,
        "volume_export",
        json!({"type": "lxc", "container": "web-1", "subtree": "/srv/d", "path": "b/d.tgz", "gzip": true}),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "exported /srv/d of LXC container web-1 to /b/d.tgz (1024 bytes)".into()
        ))
    );
    let body = json!({"type": "lxc", "container": "web-1", "subtree": "/srv/d", "path": "b/d.tgz"});
    let (outcome, _) = run(&host, "volume_import", body.clone()).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "imported /b/d.tgz (4096 bytes) into /srv/d of LXC container web-1".into()
        ))
    );
    assert_eq!(
        calls(&sim),
        [
            (
                "volumes.export-subtree-to-path".to_string(),
                json!({"runtime": "Lxc", "container": "web-1", "subtree": "/srv/d", "path": "b/d.tgz", "gzip": true, "overwrite": false, "live": false})
            ),
            (
                "volumes.import-subtree-from-path".to_string(),
                json!({"runtime": "Lxc", "container": "web-1", "subtree": "/srv/d", "path": "b/d.tgz", "overwrite": false})
            )
        ]
    );
    let (outcome, _) = run(&host, "volume_import", body.clone()).await;
    assert!(
        matches!(&outcome, Outcome::Failed { message, .. } if message.starts_with("conflict: subtree `/srv/d` holds files")),
        "{outcome:?}"
    );
    let (outcome, _) = run(&host, "volume_import", body).await;
    assert!(
        matches!(&outcome, Outcome::Failed { message, .. } if message.contains("subtree: `/srv/d` leaves")),
        "{outcome:?}"
    );
}
