//! The service over a simulated runtime: what it calls, in which order,
//! and what it answers.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::runtime::simulated::Simulator;
use crate::runtime::{Backends, CallContext};

/// A reporter that drops what it is told: these calls report nothing.
struct Silent;

impl crate::queue::Reporter for Silent {
    fn progress(&self, _percent: i32, _detail: &str) {}
    fn log(&self, _level: crate::queue::LogLevel, _message: &str) {}
}

/// The simulator answering `script`, the backends over it and a caller.
fn setup(script: Value) -> (Arc<Simulator>, Backends, CallContext) {
    let sim = Arc::new(Simulator::from_script(&script.to_string()).unwrap());
    let cx = CallContext {
        task_id: 0,
        user: "alice".into(),
        cancel: Default::default(),
        reporter: Arc::new(Silent),
    };
    (sim.clone(), Backends::all(sim), cx)
}

/// `web` (service `web`) and `db` (service `db`) of project `blog`, listed
/// in the wrong order: the record says `db` starts first.
fn blog() -> Value {
    json!({
        "app-store.record": {"ok": r#"{"project": "blog", "containers": ["blog_db_1", "blog_web_1"], "template": "wordpress", "version": "6", "state": "creating"}"#},
        "containers.list-labelled": {"ok": [
            {"id": "w", "name": "blog_web_1", "image": "wp", "running": true,
             "labels": [["com.docker.compose.service", "web"]]},
            {"id": "d", "name": "blog_db_1", "image": "mysql", "running": false,
             "labels": [["com.docker.compose.service", "db"]]},
        ]},
        "networks.list": {"ok": [{"id": "n1", "name": "blog_default", "labels": []}]},
        "volumes.list": {"ok": [{"name": "blog_data", "labels": []}]},
    })
}

/// The calls made, as `call container-or-name`, app-store reads left out.
fn calls(sim: &Simulator) -> Vec<String> {
    sim.calls()
        .into_iter()
        .filter(|c| c.call != "app-store.record")
        .map(|c| {
            let arg = c.args.get("container").or(c.args.get("name"));
            match arg.and_then(Value::as_str) {
                Some(a) => format!("{} {a}", c.call),
                None => c.call,
            }
        })
        .collect()
}

#[tokio::test]
async fn a_name_is_checked_and_a_missing_or_broken_record_told_apart() {
    let (_, rt, _) = setup(json!({}));
    assert!(matches!(
        load(&rt, "../x").await,
        Err(AppsError::InvalidName { .. })
    ));
    assert_eq!(
        load(&rt, "blog").await.unwrap_err().to_string(),
        "no application `blog`"
    );
    let (_, rt, _) = setup(json!({"app-store.record": {"ok": "{"}}));
    assert!(matches!(
        load(&rt, "blog").await,
        Err(AppsError::Unreadable { name, .. }) if name == "blog"
    ));
}

#[tokio::test]
async fn records_are_parsed_one_by_one_and_summarised() {
    let (_, rt, _) = setup(json!({"app-store.records": {"ok": [
        ["blog", r#"{"containers": ["blog_web_1"], "template": "wordpress", "version": "6", "state": "creating"}"#],
        ["bad", "not json"],
    ]}}));
    let records = records(&rt).await.unwrap();
    assert_eq!(records.len(), 2);
    let blog = records[0].1.as_ref().unwrap();
    assert_eq!(
        blog.summary(),
        json!({"container": ["blog_web_1"], "creating": true, "yml": true,
               "template": "wordpress", "version": "6"})
    );
    assert!(records[1].1.is_err());
}

#[tokio::test]
async fn containers_are_the_projects_docker_ones_in_start_order() {
    let (sim, rt, cx) = setup(blog());
    let record = load(&rt, "blog").await.unwrap();
    let found = containers_of(&rt, &cx, &record).await.unwrap();
    let names: Vec<_> = found.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["blog_db_1", "blog_web_1"]);
    let query = &sim.calls()[1].args;
    assert_eq!(query["runtime"], json!(APP_RUNTIME));
    assert_eq!(
        (query["key"].as_str(), query["value"].as_str()),
        (Some("com.docker.compose.project"), Some("blog"))
    );
}

#[tokio::test]
async fn a_description_has_the_compose_files_port_and_each_containers_state() {
    let mut script = blog();
    script["app-store.read-file"] = json!({"ok": "services:\n  web:\n    ports: [\"8080:80\"]\n"});
    let (_, rt, cx) = setup(script);
    let record = load(&rt, "blog").await.unwrap();
    let described = describe(&rt, &cx, record).await.unwrap();
    assert_eq!(described["httpPort"], "8080");
    assert_eq!(described["createFrom"], "wizard");
    assert_eq!(described["name"], "blog");
    assert_eq!(
        described["containers"],
        json!([
            {"name": "blog_db_1", "id": "d", "image": "mysql", "state": "stopped"},
            {"name": "blog_web_1", "id": "w", "image": "wp", "state": "running"},
        ])
    );
}

#[tokio::test]
async fn each_action_goes_in_dependency_order_and_answers_as_recorded() {
    for (action, answer, made) in [
        ("start", vec!["db", "web"], vec!["start d", "start w"]),
        (
            "stop",
            vec!["blog_web_1", "blog_db_1"],
            vec!["stop w", "stop d"],
        ),
        (
            "kill",
            vec!["blog_web_1", "blog_db_1"],
            vec!["stop w", "stop d"],
        ),
        (
            "restart",
            vec!["blog_db_1", "blog_web_1"],
            vec!["stop w", "stop d", "start d", "start w"],
        ),
    ] {
        let (sim, rt, cx) = setup(blog());
        let record = load(&rt, "blog").await.unwrap();
        let done = act(&rt, &cx, &record, action.parse().unwrap()).await;
        assert_eq!(done.unwrap(), answer, "{action}");
        let want: Vec<String> = std::iter::once("containers.list-labelled".to_string())
            .chain(made.iter().map(|m| format!("containers.{m}")))
            .collect();
        assert_eq!(calls(&sim), want, "{action}");
        let timeouts: Vec<_> = sim
            .calls()
            .iter()
            .filter_map(|c| c.args["timeout_secs"].as_u64())
            .collect();
        let grace = if action == "kill" { 0 } else { 10 };
        assert!(timeouts.iter().all(|t| *t == grace), "{action}");
    }
    assert_eq!(
        "pause".parse::<Action>().unwrap_err().to_string(),
        "unknown application action: start, stop, restart or kill"
    );
}

#[tokio::test]
async fn removal_takes_containers_networks_asked_for_volumes_then_the_folder() {
    for remove_volumes in [false, true] {
        let (sim, rt, cx) = setup(blog());
        let record = load(&rt, "blog").await.unwrap();
        let removed = remove(&rt, &cx, &record, remove_volumes).await.unwrap();
        assert_eq!(removed, ["blog_web_1", "blog_db_1"]);
        let mut want = vec![
            "containers.list-labelled",
            "containers.remove w",
            "containers.remove d",
            "networks.list",
            "networks.remove blog_default",
        ];
        if remove_volumes {
            want.extend(["volumes.list", "volumes.remove blog_data"]);
        }
        want.push("app-store.remove blog");
        assert_eq!(calls(&sim), want);
    }
}

#[tokio::test]
async fn a_runtime_failure_stops_the_work_and_is_passed_on() {
    let mut script = blog();
    script["containers.stop"] = json!({"err": {"Runtime": "engine down"}});
    let (sim, rt, cx) = setup(script);
    let record = load(&rt, "blog").await.unwrap();
    let err = act(&rt, &cx, &record, Action::Stop).await.unwrap_err();
    assert_eq!(
        err,
        AppsError::Runtime {
            source: crate::runtime::Error::Runtime("engine down".into())
        }
    );
    assert_eq!(calls(&sim).len(), 2);
}
