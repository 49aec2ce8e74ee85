//! The Docker categories (`target/plugins/*.wasm`, built by `cargo xtask
//! build-plugins`) against the simulated runtime: the seed page's bodies
//! validate, bad bodies are refused naming the field, and each run makes the
//! host calls it should, in order, with the arguments it should.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use stevedore::plugins::{PluginConfig, PluginHost};
use stevedore::queue::store::Durable;
use stevedore::queue::{
    Executor, LogLevel, Outcome, Reporter, ResultCode, TaskContext, ValidationError,
};
use stevedore::runtime::simulated::Simulator;
use tokio_util::sync::CancellationToken;

const CATEGORIES: &[&str] = &[
    "create",
    "image_download",
    "image_push",
    "image_export",
    "container_export",
    "container_import",
];

/// The request bodies of the seed page (`background-tasks.rst`), verbatim.
mod seed {
    pub const CREATE_LXC: &str = r#"{
        "type": "lxc", "repository": "qnap", "name": "ctest", "image": "ubuntu-trusty", "tag": "latest"
    }"#;
    pub const CREATE_DOCKER: &str = r#"{
        "type": "docker", "repository": "dockerhub", "name": "dtest", "image": "ubuntu", "tag": "latest",
        "download": {
            "description": "I am description.",
            "location": "https://hub.docker.com/_/ubuntu/",
            "icon": "http://download.qnap.com/QPKG/images/QPKG/container/ubuntu_icon.png"
        }
    }"#;
    pub const IMAGE_DOWNLOAD: &str =
        r#"{"type": "docker", "repository": "dockerhub", "image": "busybox", "tag": "latest"}"#;
    pub const IMAGE_PUSH: &str = r#"{
        "type": "docker", "image": "busybox", "tag": "latest", "newImage": "mybusybox", "newTag": "test",
        "registry": "Docker Hub", "username": "qcsuser", "password": "qcspassword", "rememberme": true
    }"#;
    pub const IMAGE_EXPORT: &str = r#"{
        "type": "docker", "image": "ubuntu", "tag": "latest", "path": "test/a.tgz", "compress": true
    }"#;
    pub const CONTAINER_IMPORT: &str = r#"{
        "type": "lxc", "name": "utest_import1", "image": "utest", "path": "test/c.tgz",
        "network": {"hostname": "CustomHostName"},
        "resource": {
            "device": [["allow", "video4linux_(81)", "rw"]],
            "limit": {"cputime": 512, "cpuweight": 512, "memory": "768m"}
        }
    }"#;
    pub const CONTAINER_EXPORT_LXC: &str = r#"{
        "type": "lxc", "id": "ubuntu-trusty-1", "name": "ubuntu-trusty-1", "path": "test/c.tgz", "compress": true
    }"#;
    pub const CONTAINER_EXPORT_DOCKER: &str = r#"{
        "type": "docker", "id": "a4af24dfe4329015e3adebbc169cbb04bb771f458167b41b07ebf98c882cce59",
        "name": "busybox-6", "path": "test/d.tgz", "compress": true
    }"#;
}

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

/// One compiled-code cache for the whole test binary, filled by the first
/// load; loads take turns so that two never write the same entry.
fn shared_cache() -> &'static (tempfile::TempDir, tokio::sync::Mutex<()>) {
    static CACHE: OnceLock<(tempfile::TempDir, tokio::sync::Mutex<()>)> = OnceLock::new();
    CACHE.get_or_init(|| (tempfile::tempdir().unwrap(), tokio::sync::Mutex::new(())))
}

/// A host with every Docker category, over a simulator answering from `script`.
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

async fn run(host: &PluginHost, category: &str, params: &str) -> (Outcome, Arc<Recorder>) {
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

/// The calls made, as `(name, args)`, without the ones `validate` makes
/// again at the start of a run (`images.resolve`).
fn calls(sim: &Simulator) -> Vec<(String, Value)> {
    sim.calls()
        .into_iter()
        .filter(|c| c.call != "images.resolve")
        .map(|c| (c.call, c.args))
        .collect()
}

fn names(sim: &Simulator) -> Vec<String> {
    calls(sim).into_iter().map(|(n, _)| n).collect()
}

async fn invalid(host: &PluginHost, category: &str, params: Value) -> String {
    match host.validate(category, &params.to_string()).await {
        Err(ValidationError::Invalid(m)) => m,
        other => panic!("{category} {params}: expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn categories_describe_themselves() {
    let (_d, host, _) = host(json!({})).await;
    let cats = host.categories();
    let find = |n: &str| cats.iter().find(|c| c.name == n).unwrap().clone();
    for (name, deletable) in [
        ("create", false),
        ("image_download", true),
        ("image_push", true),
        ("image_export", true),
        ("container_export", true),
        ("container_import", false),
    ] {
        assert_eq!(find(name).deletable, deletable, "{name}");
    }
    assert_eq!(find("image_push").secret_fields, ["password"]);
}

#[tokio::test]
async fn the_seed_bodies_validate() {
    let (_d, host, sim) = host(json!({})).await;
    for (category, body) in [
        ("create", seed::CREATE_LXC),
        ("create", seed::CREATE_DOCKER),
        ("image_download", seed::IMAGE_DOWNLOAD),
        ("image_push", seed::IMAGE_PUSH),
        ("image_export", seed::IMAGE_EXPORT),
        ("container_import", seed::CONTAINER_IMPORT),
        ("container_export", seed::CONTAINER_EXPORT_LXC),
        ("container_export", seed::CONTAINER_EXPORT_DOCKER),
    ] {
        host.validate(category, body)
            .await
            .unwrap_or_else(|e| panic!("{category}: {e:?}"));
    }
    // Validation touched nothing, not even the registry lookup (`qnap` is
    // not looked up: a server without a `qnap` registry still takes them).
    assert!(sim.calls().is_empty(), "{:?}", sim.calls());
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let (_d, host, _) = host(json!({})).await;
    for (category, body, message) in [
        (
            "create",
            json!({"name": "x", "image": "busybox"}),
            "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$",
        ),
        (
            "create",
            json!({"name": "web", "image": "busybox", "resource": {"limit": {"memory": "32m"}}}),
            "resource.limit.memory: must be at least 64m",
        ),
        (
            "create",
            json!({"name": "web", "image": "busybox", "network": {"port": [[80, 80, "sctp"]]}}),
            "network.port[0][2]: must be \"tcp\" or \"udp\"",
        ),
        (
            "create",
            json!({"type": "rkt", "name": "web", "image": "busybox"}),
            "type: must be \"docker\" or \"lxc\"",
        ),
        (
            "create",
            json!({"name": "web", "image": "busybox", "volume": {"host": {"../etc": {"bind": "/etc2"}}}}),
            "volume.host[\"../etc\"]: must not contain `..`",
        ),
        (
            "image_download",
            json!({"image": "busybox", "repository": "private"}),
            "registry_name: is required when repository is \"private\"",
        ),
        (
            "image_push",
            json!({"image": "busybox", "username": "u"}),
            "password: is required with username",
        ),
        (
            "image_export",
            json!({"image": "busybox", "path": "../x.tar"}),
            "path: must not contain `..`",
        ),
        (
            "image_export",
            json!({"image": "busybox", "path": "/etc/x.tar"}),
            "path: must be relative to the share root, e.g. \"test/c.tgz\"",
        ),
        (
            "container_export",
            json!({"name": "web", "path": "/x.tar"}),
            "path: must be relative to the share root, e.g. \"test/c.tgz\"",
        ),
        (
            "container_import",
            json!({"name": "web", "path": "a/../../x.tar"}),
            "path: must not contain `..`",
        ),
        (
            "image_export",
            json!({"type": "lxc", "image": "busybox", "path": "x.tar"}),
            "type: must be \"docker\"",
        ),
        (
            "container_export",
            json!({"path": "x.tar"}),
            "name: give the container's \"name\" or \"id\"",
        ),
        (
            "container_import",
            json!({"name": "web"}),
            "path: is required",
        ),
    ] {
        assert_eq!(invalid(&host, category, body).await, message, "{category}");
    }
}

#[tokio::test]
async fn an_unknown_registry_name_is_a_400() {
    let (_d, host, sim) = host(json!({
        "images.resolve": {"err": {"InvalidParams": "registry_name: unknown registry `nope`"}}
    }))
    .await;
    let body = json!({"image": "busybox", "repository": "private", "registry_name": "nope"});
    assert_eq!(
        invalid(&host, "image_download", body.clone()).await,
        "registry_name: unknown registry `nope`"
    );
    let mut create = body;
    create["name"] = json!("web");
    assert_eq!(
        invalid(&host, "create", create).await,
        "registry_name: unknown registry `nope`"
    );
    assert_eq!(sim.calls()[0].args, json!({"source": {"Private": "nope"}}));
}

#[tokio::test]
async fn create_uses_a_present_image() {
    let (_d, host, sim) = host(json!({})).await;
    let (outcome, rec) = run(&host, "create", seed::CREATE_DOCKER).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "created and started container dtest from ubuntu:latest".into()
        ))
    );
    assert_eq!(
        names(&sim),
        ["images.inspect", "containers.create", "containers.start"]
    );
    let calls = calls(&sim);
    assert_eq!(
        calls[0].1,
        json!({"runtime": "Docker", "reference": "ubuntu:latest"})
    );
    assert_eq!(calls[1].1["name"], "dtest");
    assert_eq!(calls[1].1["image"], "ubuntu:latest");
    assert_eq!(
        calls[2].1,
        json!({"runtime": "Docker", "container": "simulated-dtest"})
    );
    let progress = rec.progress.lock().clone();
    assert_eq!(
        progress.last().unwrap(),
        &(100, "container dtest started".to_string())
    );
}

#[tokio::test]
async fn create_pulls_a_missing_image_and_maps_every_field() {
    let (_d, host, sim) = host(json!({
        "images.inspect": {"err": {"NotFound": "no such image: web:1"}},
        "images.pull": {"ok": {"id": "sha256:1", "tags": ["web:1"], "size": 1, "created": 0},
                        "progress": [[40, "downloading"], [100, "pulled"]]},
        "containers.create": {"ok": "c0ffee"}
    }))
    .await;
    let body = json!({
        "type": "docker", "name": "web", "image": "web", "tag": "1",
        "repository": "private", "registry_name": "corp", "autostart": true,
        "entrypoint": "/bin/sh -c", "command": "'httpd -f -p 80'", "user": "www", "working_dir": "/srv",
        "environment": ["A=1"], "links": {"db": "database"},
        "network": {"dns": ["10.0.0.2"], "expose_port": [9000], "hostname": "web",
                    "port": [[8080, 80, "tcp"], [5353, 53, "udp"]]},
        "resource": {"limit": {"cpuweight": 512, "cputime": 500, "memory": "768m"},
                     "device": [["allow", "video4linux_(81)", "rw"]]},
        "volume": {"host": {"/Public/www": {"bind": "/srv/www", "ro": true}},
                   "container": ["data"], "new": ["/cache"]}
    });
    let (outcome, rec) = run(&host, "create", &body.to_string()).await;
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    assert_eq!(
        names(&sim),
        [
            "images.inspect",
            "images.pull",
            "containers.create",
            "containers.start"
        ]
    );
    let calls = calls(&sim);
    // The registry's image is looked for and created from under the
    // registry's name (`corp` resolves to itself here), as the engine
    // names it once pulled: `web:1` would be "No such image".
    assert_eq!(
        calls[0].1,
        json!({"runtime": "Docker", "reference": "corp/web:1"})
    );
    assert_eq!(
        calls[1].1,
        json!({"runtime": "Docker", "image": "web", "tag": "1", "source": {"Private": "corp"}, "credential": false})
    );
    assert_eq!(
        calls[2].1,
        json!({
            "runtime": "Docker", "name": "web", "image": "corp/web:1", "privileged": false,
            "entrypoint": ["/bin/sh", "-c"], "command": ["httpd -f -p 80"], "user": "www", "working_dir": "/srv",
            "environment": ["A=1"], "links": [["db", "database"]], "dns": ["10.0.0.2"], "expose_ports": [9000],
            "hostname": "web",
            "ports": [{"host_port": 8080, "container_port": 80, "protocol": "tcp"},
                      {"host_port": 5353, "container_port": 53, "protocol": "udp"}],
            "cpu_shares": 512, "cpu_time_ms": 500, "memory_bytes": 805306368_u64,
            "device_rules": ["c 81:* rw"],
            "binds": [{"host_path": "Public/www", "container_path": "/srv/www", "read_only": true}],
            "volumes_from": ["data"], "new_volumes": ["/cache"], "autostart": true, "labels": []
        })
    );
    assert_eq!(calls[3].1["container"], "c0ffee");
    let progress = rec.progress.lock().clone();
    assert!(
        progress.contains(&(40, "downloading".to_string())),
        "{progress:?}"
    );
    assert!(
        progress.contains(&(0, "pulling image corp/web:1".to_string())),
        "{progress:?}"
    );
}

#[tokio::test]
async fn the_simulator_refuses_a_container_from_an_image_it_lacks() {
    // The engine said `web:1` is missing and the pull brought
    // `corp/web:1`: creating from `web:1` is the engine's "No such image",
    // whatever the script says about `containers.create`.
    let sim = Simulator::from_script(
        &json!({"images.inspect": {"err": {"NotFound": "no such image: web:1"}},
                "containers.create": {"ok": "c0ffee"}})
        .to_string(),
    )
    .unwrap();
    let cx = stevedore::runtime::CallContext {
        task_id: 1,
        user: "tester".into(),
        cancel: CancellationToken::new(),
        reporter: Arc::new(Recorder::default()),
    };
    use stevedore::runtime::{Containers, ImageRef, Images};
    assert!(sim
        .image_inspect(
            &cx,
            ImageRef::new(stevedore::runtime::RuntimeKind::Docker, "web:1")
        )
        .await
        .is_err());
    let pulled = sim
        .image_pull(
            &cx,
            stevedore::runtime::PullRequest {
                runtime: stevedore::runtime::RuntimeKind::Docker,
                image: "web".into(),
                tag: "1".into(),
                source: stevedore::runtime::Source::Private("corp".into()),
                credential: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(pulled.tags, ["corp/web:1"]);
    let mut spec: stevedore::runtime::ContainerSpec = serde_json::from_value(json!({
        "runtime": "Docker", "name": "web", "image": "web:1", "privileged": false,
        "entrypoint": null, "command": null, "user": null, "working_dir": null,
        "environment": [], "links": [], "dns": [], "expose_ports": [], "hostname": null,
        "ports": [], "cpu_shares": null, "cpu_time_ms": null, "memory_bytes": null,
        "device_rules": [], "binds": [], "volumes_from": [], "new_volumes": [],
        "autostart": false, "labels": []
    }))
    .unwrap();
    match sim.container_create(&cx, spec.clone()).await {
        Err(stevedore::runtime::Error::NotFound(m)) => assert_eq!(m, "No such image: web:1"),
        other => panic!("{other:?}"),
    }
    spec.image = "corp/web:1".into();
    assert_eq!(sim.container_create(&cx, spec).await.unwrap(), "c0ffee");
}

#[tokio::test]
async fn create_stops_at_a_failed_pull() {
    let (_d, host, sim) = host(json!({
        "images.inspect": {"err": {"NotFound": "no such image"}},
        "images.pull": {"err": {"NotFound": "manifest for nosuch:latest not found"}}
    }))
    .await;
    let (outcome, _) = run(&host, "create", r#"{"name": "web", "image": "nosuch"}"#).await;
    assert_eq!(
        outcome,
        Outcome::Failed {
            code: ResultCode::PluginError,
            message: "not found: manifest for nosuch:latest not found".into()
        }
    );
    assert_eq!(names(&sim), ["images.inspect", "images.pull"]);
}

#[tokio::test]
async fn create_says_when_the_container_was_created_but_did_not_start() {
    let (_d, host, _) = host(json!({
        "containers.start": {"err": {"Runtime": "port is already allocated"}}
    }))
    .await;
    let (outcome, _) = run(&host, "create", r#"{"name": "web", "image": "busybox"}"#).await;
    assert_eq!(
        outcome,
        Outcome::Failed {
            code: ResultCode::PluginError,
            message: "container web was created but did not start: port is already allocated"
                .into()
        }
    );
}

#[tokio::test]
async fn image_download_pulls_from_the_repository() {
    let (_d, host, sim) = host(json!({
        "images.pull": {"ok": {"id": "sha256:0123456789abcdef", "tags": ["busybox:latest"], "size": 1, "created": 0},
                        "progress": [[30, "downloading"], [100, "pulled"]]}
    }))
    .await;
    let (outcome, rec) = run(&host, "image_download", seed::IMAGE_DOWNLOAD).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some("pulled busybox:latest (0123456789ab)".into()))
    );
    assert_eq!(
        calls(&sim),
        [(
            "images.pull".to_string(),
            json!({"runtime": "Docker", "image": "busybox", "tag": "latest", "source": "Dockerhub", "credential": false})
        )]
    );
    assert!(rec
        .progress
        .lock()
        .contains(&(30, "downloading".to_string())));
    let (_, _) = run(&host, "image_download", seed::CREATE_LXC).await;
    assert_eq!(
        calls(&sim)[1].1,
        json!({"runtime": "Lxc", "image": "ubuntu-trusty", "tag": "latest", "source": "Qnap", "credential": false})
    );
}

#[tokio::test]
async fn image_push_tags_pushes_and_remembers_without_leaking_the_password() {
    let (_d, host, sim) = host(json!({})).await;
    let (outcome, rec) = run(&host, "image_push", seed::IMAGE_PUSH).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some("pushed qcsuser/mybusybox:test to Docker Hub".into()))
    );
    assert_eq!(
        calls(&sim),
        [
            (
                "images.tag".to_string(),
                json!({"source": "busybox:latest", "repository": "qcsuser/mybusybox", "tag": "test"})
            ),
            (
                "images.push".to_string(),
                json!({"repository": "qcsuser/mybusybox", "tag": "test", "registry": "", "credential": true})
            ),
            (
                "credentials.remember".to_string(),
                json!({"registry": "", "username": "qcsuser"})
            ),
        ]
    );
    let lines = format!("{:?}{:?}", rec.lines.lock(), rec.progress.lock());
    assert!(!lines.contains("qcspassword"), "{lines}");
}

#[tokio::test]
async fn image_push_falls_back_to_remembered_credentials() {
    let (_d, host, sim) = host(json!({
        "credentials.lookup": {"ok": {"registry": "127.0.0.1:5001", "username": "stevedore", "password": "pw"}}
    }))
    .await;
    let body = r#"{"image": "busybox", "registry": "127.0.0.1:5001", "rememberme": true}"#;
    let (outcome, _) = run(&host, "image_push", body).await;
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    assert_eq!(
        calls(&sim),
        [
            (
                "credentials.lookup".to_string(),
                json!({"registry": "127.0.0.1:5001"})
            ),
            (
                "images.tag".to_string(),
                json!({"source": "busybox:latest", "repository": "127.0.0.1:5001/busybox", "tag": "latest"})
            ),
            (
                "images.push".to_string(),
                json!({"repository": "127.0.0.1:5001/busybox", "tag": "latest", "registry": "127.0.0.1:5001", "credential": true})
            ),
        ]
    );
}

#[tokio::test]
async fn image_push_reports_the_registry_refusal() {
    let (_d, host, sim) = host(json!({
        "images.push": {"err": {"Denied": "unauthorized: authentication required"}}
    }))
    .await;
    let body = r#"{"image": "busybox", "registry": "127.0.0.1:5001", "username": "u", "password": "wrong", "rememberme": true}"#;
    let (outcome, _) = run(&host, "image_push", body).await;
    assert_eq!(
        outcome,
        Outcome::Failed {
            code: ResultCode::PluginError,
            message: "denied: unauthorized: authentication required".into()
        }
    );
    assert!(
        !names(&sim).contains(&"credentials.remember".to_string()),
        "refused credentials are not remembered"
    );
    // Docker Hub without any credentials fails before pushing.
    let (outcome, _) = run(&host, "image_push", r#"{"image": "busybox"}"#).await;
    assert!(
        matches!(&outcome, Outcome::Failed { code: ResultCode::InvalidParams, message } if message.starts_with("username: pushing to Docker Hub")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn image_export_saves_to_the_path() {
    let (_d, host, sim) = host(json!({"images.save-to-path": {"ok": 4096}})).await;
    let (outcome, _) = run(&host, "image_export", seed::IMAGE_EXPORT).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "exported ubuntu:latest to /test/a.tgz (4096 bytes)".into()
        ))
    );
    assert_eq!(
        calls(&sim),
        [(
            "images.save-to-path".to_string(),
            json!({"references": ["ubuntu:latest"], "path": "test/a.tgz", "gzip": true, "overwrite": false})
        )]
    );
}

#[tokio::test]
async fn an_existing_file_without_force_is_an_error() {
    let (_d, host, _) = host(json!({
        "images.save-to-path": {"err": {"Conflict": "test/a.tgz exists; set force to overwrite"}},
        "containers.export-to-path": {"err": {"Conflict": "test/d.tgz exists; set force to overwrite"}}
    }))
    .await;
    let (outcome, _) = run(&host, "image_export", seed::IMAGE_EXPORT).await;
    assert_eq!(
        outcome,
        Outcome::Failed {
            code: ResultCode::PluginError,
            message: "conflict: test/a.tgz exists; set force to overwrite".into()
        }
    );
    let (outcome, _) = run(&host, "container_export", seed::CONTAINER_EXPORT_DOCKER).await;
    assert!(matches!(
        outcome,
        Outcome::Failed {
            code: ResultCode::PluginError,
            ..
        }
    ));
}

#[tokio::test]
async fn container_export_names_the_container_by_id() {
    let (_d, host, sim) = host(json!({})).await;
    let (outcome, _) = run(&host, "container_export", seed::CONTAINER_EXPORT_DOCKER).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "exported container busybox-6 to /test/d.tgz (0 bytes)".into()
        ))
    );
    assert_eq!(
        calls(&sim),
        [(
            "containers.export-to-path".to_string(),
            json!({"runtime": "Docker", "container": "a4af24dfe4329015e3adebbc169cbb04bb771f458167b41b07ebf98c882cce59",
                   "path": "test/d.tgz", "gzip": true, "overwrite": false})
        )]
    );
    let (_, _) = run(
        &host,
        "container_export",
        r#"{"name": "web", "path": "w.tar", "force": true}"#,
    )
    .await;
    assert_eq!(
        calls(&sim)[1].1,
        json!({"runtime": "Docker", "container": "web", "path": "w.tar", "gzip": false, "overwrite": true})
    );
}

#[tokio::test]
async fn container_import_recreates_the_recorded_container() {
    let recorded = json!({
        "version": 1,
        "image": "busybox:latest",
        "create": {
            "type": "docker", "name": "web", "image": "busybox", "tag": "latest",
            "autostart": true, "command": ["httpd", "-f", "-p", "80"], "environment": ["A=1"],
            "network": {"hostname": "web", "port": [[8080, 80, "tcp"]]},
            "resource": {"limit": {"memory": 805306368_u64}, "device": ["c 81:* rw"]},
            "volume": {"host": {"/Public/www": {"bind": "/srv/www", "ro": true}}}
        }
    });
    let (_d, host, sim) = host(json!({
        "containers.read-archive-config": {"ok": recorded.to_string()},
        "containers.import-image-from-path": {"ok": "sha256:5"}
    }))
    .await;
    let body = r#"{"type": "docker", "name": "web2", "path": "exports/web.tgz", "network": {"hostname": "web2"}}"#;
    let (outcome, _) = run(&host, "container_import", body).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(
            "created and started container web2 from web2:imported".into()
        ))
    );
    assert_eq!(
        names(&sim),
        [
            "containers.read-archive-config",
            "containers.import-image-from-path",
            "containers.create",
            "containers.start"
        ]
    );
    let calls = calls(&sim);
    assert_eq!(calls[0].1, json!({"path": "exports/web.tgz"}));
    assert_eq!(
        calls[1].1,
        json!({"runtime": "Docker", "path": "exports/web.tgz", "repository": "web2", "tag": "imported"})
    );
    let spec = &calls[2].1;
    assert_eq!(spec["name"], "web2");
    assert_eq!(spec["image"], "web2:imported");
    assert_eq!(spec["hostname"], "web2");
    assert_eq!(spec["autostart"], true);
    assert_eq!(spec["command"], json!(["httpd", "-f", "-p", "80"]));
    assert_eq!(spec["environment"], json!(["A=1"]));
    assert_eq!(
        spec["ports"],
        json!([{"host_port": 8080, "container_port": 80, "protocol": "tcp"}])
    );
    assert_eq!(spec["memory_bytes"], 805306368_u64);
    assert_eq!(spec["device_rules"], json!(["c 81:* rw"]));
    assert_eq!(
        spec["binds"],
        json!([{"host_path": "Public/www", "container_path": "/srv/www", "read_only": true}])
    );
}

#[tokio::test]
async fn container_import_of_a_plain_archive_uses_the_request() {
    let (_d, host, sim) = host(json!({})).await;
    let (outcome, _) = run(&host, "container_import", seed::CONTAINER_IMPORT).await;
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    let calls = calls(&sim);
    assert_eq!(
        calls[1].1,
        json!({"runtime": "Lxc", "path": "test/c.tgz", "repository": "utest", "tag": "latest"})
    );
    let spec = &calls[2].1;
    assert_eq!(spec["runtime"], "Lxc");
    assert_eq!(spec["hostname"], "CustomHostName");
    assert_eq!(spec["cpu_shares"], 512);
    assert_eq!(spec["cpu_time_ms"], 512);
    assert_eq!(spec["memory_bytes"], 768_u64 << 20);
    assert_eq!(spec["device_rules"], json!(["c 81:* rw"]));
}

#[tokio::test]
async fn container_import_refuses_bad_recorded_settings_before_importing() {
    let (_d, host, sim) = host(json!({
        "containers.read-archive-config": {"ok": r#"{"version": 1, "create": {"resource": {"limit": {"cpuweight": 0}}}}"#}
    }))
    .await;
    let (outcome, _) = run(
        &host,
        "container_import",
        r#"{"name": "web", "path": "a.tar"}"#,
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::Failed { code: ResultCode::InvalidParams, message }
                 if message.starts_with("resource.limit.cpuweight: must be an integer 2..=1024 (in the settings recorded")),
        "{outcome:?}"
    );
    assert_eq!(names(&sim), ["containers.read-archive-config"]);
}

/// A run starts while its claim is being committed (the queue's early
/// claims); the plugin host holds every runtime call until the claim is
/// durable, and makes none when it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_calls_wait_until_the_claim_is_durable() {
    let script = json!({
        "images.pull": {"ok": {"id": "sha256:0123456789abcdef", "tags": ["busybox:latest"], "size": 1, "created": 0}}
    });
    for commits in [true, false] {
        let (_d, host, sim) = host(script.clone()).await;
        let host = Arc::new(host);
        let recorder = Arc::new(Recorder::default());
        let (committer, durable) = Durable::pending();
        let ctx = TaskContext {
            id: 7,
            category: "image_download".into(),
            user: "tester".into(),
            params: seed::IMAGE_DOWNLOAD.into(),
            cancel: CancellationToken::new(),
            durable,
            reporter: recorder.clone(),
        };
        let run = tokio::spawn({
            let host = host.clone();
            async move { host.run(ctx).await }
        });
        // The plugin reached its pull (it reports "pulling" just before) ...
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !recorder
            .progress
            .lock()
            .iter()
            .any(|(_, d)| d.starts_with("pulling"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the plugin never got to its pull"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // ... and waits there, however long the commit takes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!run.is_finished());
        assert!(names(&sim).is_empty(), "{:?}", names(&sim));
        if commits {
            committer.settle(&Ok(()));
            let outcome = run.await.unwrap();
            assert_eq!(
                outcome,
                Outcome::Completed(Some("pulled busybox:latest (0123456789ab)".into()))
            );
            assert_eq!(names(&sim), ["images.pull"]);
        } else {
            committer.settle(&Err("disk full".into()));
            let outcome = run.await.unwrap();
            let Outcome::Failed { message, .. } = outcome else {
                panic!("a run whose claim was lost completed: {outcome:?}")
            };
            assert!(message.contains("claim was not stored"), "{message}");
            assert!(names(&sim).is_empty(), "{:?}", names(&sim));
        }
    }
}
