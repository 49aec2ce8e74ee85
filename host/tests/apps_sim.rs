//! The application categories (`target/plugins/application*.wasm`, built by
//! `cargo xtask build-plugins`) against the simulated runtime: no Docker,
//! every host call recorded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::{
    Executor, LogLevel, Outcome, Reporter, ResultCode, TaskContext, ValidationError,
};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

async fn host(script: Value) -> (tempfile::TempDir, PluginHost, Arc<Simulator>) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in ["application", "application_upgrade"] {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/plugins")
            .join(format!("{name}.wasm"));
        assert!(
            src.exists(),
            "{} is missing: run `cargo xtask build-plugins`",
            src.display()
        );
        std::fs::copy(src, plugins.join(format!("{name}.wasm"))).unwrap();
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

struct Quiet;
impl Reporter for Quiet {
    fn progress(&self, _percent: i32, _detail: &str) {}
    fn log(&self, _level: LogLevel, _message: &str) {}
}

async fn run(host: &PluginHost, category: &str, params: Value) -> Outcome {
    host.run(TaskContext {
        id: 9,
        category: category.into(),
        user: "tester".into(),
        params: params.to_string(),
        cancel: CancellationToken::new(),
        durable: stevedore::queue::store::Durable::ready(),
        reporter: Arc::new(Quiet),
    })
    .await
}

fn calls(sim: &Simulator) -> Vec<(String, Value)> {
    sim.calls().into_iter().map(|c| (c.call, c.args)).collect()
}

const INSTALL_JSON: &str = r#"{"wizard": [{"schema": {"http_port": {"type": "integer", "required": true, "maximum": 65535}}}],
  "binding": {"type": "yaml", "file": "docker-compose.yml", "data": {"http_port": ["web.ports[0]"]}}}"#;
const V1: &str = "web:\n  image: busybox:latest\n  ports: [\"8080:80\"]\n  links: [db]\ndb:\n  image: busybox:latest\n";

fn v1_template() -> Value {
    json!({
        "repository.get": {"ok": {"name": "t", "version": "3", "files": ["docker-compose.yml", "wizard/install.json"]}},
        // validate (again at the start of a run), then run: compose, install.json each time.
        "repository.read-file": [{"ok": V1}, {"ok": INSTALL_JSON}, {"ok": V1}, {"ok": INSTALL_JSON}],
    })
}

#[tokio::test]
async fn install_lays_out_the_project_in_dependency_order() {
    let (_d, host, sim) = host(v1_template()).await;
    let params =
        json!({"template": "t", "name": "Shop", "autostart": true, "binding": {"http_port": 9000}});
    let outcome = run(&host, "application", params).await;
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    let made: Vec<(String, Value)> = calls(&sim)
        .into_iter()
        .filter(|(n, _)| {
            matches!(
                n.as_str(),
                "app-store.install-template"
                    | "networks.create"
                    | "containers.create-with"
                    | "containers.start"
            )
        })
        .collect();
    let names: Vec<&str> = made.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "app-store.install-template",
            "networks.create",
            "containers.create-with",
            "containers.start",
            "containers.create-with",
            "containers.start"
        ]
    );
    assert_eq!(made[1].1["name"], "shop_default");
    let db = &made[2].1;
    assert_eq!(db["spec"]["name"], "shop_db_1");
    let web = &made[4].1;
    assert_eq!(web["spec"]["name"], "shop_web_1");
    assert_eq!(web["spec"]["ports"][0]["host_port"], 9000);
    assert_eq!(web["extra"]["restart_policy"], "unless-stopped");
    assert_eq!(
        web["extra"]["networks"][0]["links"][0],
        json!(["shop_db_1", "db"])
    );
    let labels: Vec<(String, String)> =
        serde_json::from_value(web["spec"]["labels"].clone()).unwrap();
    assert!(labels.contains(&("com.docker.compose.project".into(), "shop".into())));
    assert!(labels.contains(&("com.docker.compose.service".into(), "web".into())));
}

#[tokio::test]
async fn a_failed_install_removes_what_it_created() {
    let mut script = v1_template();
    script["containers.start"] =
        json!([{"ok": null}, {"err": {"Runtime": "port is already allocated"}}]);
    let (_d, host, sim) = host(script).await;
    let params = json!({"template": "t", "name": "shop", "binding": {"http_port": 9000}});
    match run(&host, "application", params).await {
        Outcome::Failed { code, message } => {
            assert_eq!(code, ResultCode::PluginError);
            assert!(
                message.contains("starting container shop_web_1"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let names: Vec<String> = calls(&sim).into_iter().map(|(n, _)| n).collect();
    let tail: Vec<&str> = names
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "containers.remove",
            "containers.remove",
            "networks.remove",
            "app-store.remove"
        ]
    );
}

#[tokio::test]
async fn answers_are_checked_against_the_wizard_at_submit_time() {
    let (_d, host, sim) = host(v1_template()).await;
    let params = json!({"template": "t", "name": "shop", "binding": {"http_port": 99999}});
    match host.validate("application", &params.to_string()).await {
        Err(ValidationError::Invalid(m)) => {
            assert_eq!(m, "binding.http_port: must be at most 65535")
        }
        other => panic!("{other:?}"),
    }
    // Only lookups were made.
    assert!(
        calls(&sim).iter().all(|(n, _)| n.starts_with("repository.")
            || n.starts_with("app-store.re")
            || n == "app-store.folder"),
        "{:?}",
        calls(&sim)
    );
}

#[tokio::test]
async fn an_upgrade_that_changes_the_service_set_is_refused_untouched() {
    let record = json!({"name": "shop", "project": "shop", "template": "t", "version": "3",
        "binding": {"http_port": 9000}, "state": "installed", "autostart": false});
    let installed = "version: \"2\"\nservices:\n  web:\n    image: busybox:1\n  db:\n    image: busybox:latest\n";
    let v4 = "web:\n  image: busybox:2\n  ports: [\"8080:80\"]\n  links: [db]\ndb:\n  image: busybox:latest\ncache:\n  image: busybox:latest\n";
    let script = json!({
        "app-store.record": {"ok": record.to_string()},
        "app-store.read-file": {"ok": installed},
        "repository.get": {"ok": {"name": "t", "version": "4", "files": ["docker-compose.yml", "wizard/install.json"]}},
        "repository.read-file": [{"ok": v4}, {"ok": INSTALL_JSON}, {"ok": v4}, {"ok": INSTALL_JSON}, {"ok": v4}, {"ok": INSTALL_JSON}],
    });
    let (_d, host, sim) = host(script).await;
    match run(
        &host,
        "application_upgrade",
        json!({"template": "t", "name": "shop"}),
    )
    .await
    {
        Outcome::Failed { message, .. } => {
            assert!(message.contains("added: [\"cache\"]"), "{message}");
            assert!(message.contains("left as it was"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was pulled, stopped, removed or created.
    assert!(
        calls(&sim)
            .iter()
            .all(|(n, _)| n.starts_with("repository.") || n.starts_with("app-store.")),
        "{:?}",
        calls(&sim)
    );
    let a = host
        .validate(
            "application_upgrade",
            &json!({"template": "other", "name": "shop"}).to_string(),
        )
        .await;
    match a {
        Err(ValidationError::Invalid(m)) => assert!(
            m.starts_with("template: application `shop` was installed from template `t`"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_upgraded_service_that_turns_unhealthy_brings_the_previous_version_back() {
    let record = json!({"name": "shop", "project": "shop", "template": "t", "version": "3",
        "binding": {"http_port": 9000}, "state": "installed", "autostart": false});
    let installed = "version: \"2\"\nservices:\n  web:\n    image: busybox:1\n  db:\n    image: busybox:latest\n";
    let v4 = "web:\n  image: busybox:2\n  ports: [\"8080:80\"]\n  links: [db]\ndb:\n  image: busybox:latest\n";
    let labels = |service: &str| {
        json!([
            ["com.docker.compose.project", "shop"],
            ["com.docker.compose.service", service],
            ["com.docker.compose.config-hash", "old"]
        ])
    };
    let script = json!({
        "app-store.record": {"ok": record.to_string()},
        "app-store.read-file": {"ok": installed},
        "repository.get": {"ok": {"name": "t", "version": "4", "files": ["docker-compose.yml", "wizard/install.json"]}},
        "repository.read-file": [{"ok": v4}, {"ok": INSTALL_JSON}, {"ok": v4}, {"ok": INSTALL_JSON}, {"ok": v4}, {"ok": INSTALL_JSON}],
        "containers.list-labelled": {"ok": [
            {"id": "w1", "name": "shop_web_1", "image": "busybox:1", "running": true, "labels": labels("web")},
            {"id": "d1", "name": "shop_db_1", "image": "busybox:latest", "running": true, "labels": labels("db")},
        ]},
        "containers.health": [
            {"ok": {"status": "running", "running": true, "exit_code": 0, "health": "healthy", "failing_streak": 0, "last_probe_output": ""}},
            {"ok": {"status": "running", "running": true, "exit_code": 0, "health": "unhealthy", "failing_streak": 3, "last_probe_output": ""}},
        ],
    });
    let (_d, host, sim) = host(script).await;
    let params = json!({"template": "t", "name": "shop", "health_timeout_secs": 5});
    match run(&host, "application_upgrade", params).await {
        Outcome::Failed { message, .. } => {
            assert!(
                message.contains("health check failed: unhealthy after 3 failed probes"),
                "{message}"
            );
            assert!(message.contains("service "), "{message}");
            assert!(
                message.contains("previous version was restored"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let names: Vec<String> = calls(&sim).into_iter().map(|(n, _)| n).collect();
    let gate = names.iter().position(|n| n == "containers.health").unwrap();
    assert!(
        names[gate..]
            .iter()
            .any(|n| n.starts_with("containers.create")),
        "the previous containers are created again after the gate: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "app-store.write-file"),
        "the new compose file is not kept: {names:?}"
    );
}
