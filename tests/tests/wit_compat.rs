//! The WIT compatibility suite on the real engine: the components kept in
//! `plugins/compat/<version>/` (real categories built against each released
//! version of the package) pull an image from the test registry, create and
//! start a container from it, and remove the image, on a current server.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::catalog::push_busybox;
use stevedore_e2e::{docker, docker_ok, registries_config, unique, Client, Options, Server};

/// The released versions kept in `plugins/compat/`.
const VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];

fn kept(version: &str, category: &str) -> String {
    stevedore_e2e::workspace_root()
        .join("plugins/compat")
        .join(version)
        .join(format!("{category}.wasm"))
        .display()
        .to_string()
}

async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

async fn pull_create_remove(version: &str) {
    let plugins: Vec<String> = ["image_download", "create", "image_remove"]
        .iter()
        .map(|c| kept(version, c))
        .collect();
    let plugins: Vec<&str> = plugins.iter().map(String::as_str).collect();
    let server = Server::start(
        Options::with_plugins(&plugins)
            .test_engine()
            .config(&registries_config()),
    )
    .await;
    let c = server.admin().await;
    let me = c.send(Method::GET, "openapi.json", None).await;
    assert!(
        me.body["paths"]["/api/v1/background/image_download"].is_object(),
        "{version}: the kept image_download is served"
    );

    let repo = unique("compat");
    let tag = version.replace('.', "-");
    let pulled = push_busybox(&repo, &tag);
    let image = pulled.rsplit_once(':').unwrap().0.to_string();

    // Pull it back through the registry the configuration names.
    let pull = json!({"type": "docker", "repository": "private", "registry_name": "local",
        "image": format!("stevedore/{repo}"), "tag": tag});
    let id = c.submit_ok("image_download", &pull.to_string()).await;
    let task = ended(&c, id).await;
    assert_eq!(task["state"], "completed", "{version}: {task}");
    assert!(
        docker_ok(&["image", "inspect", &pulled]),
        "{version}: the pull brought {pulled}"
    );

    // A container from it, started. The image is named as the engine has it
    // (0.1.0's `create` did not yet prefix a `private` image with its
    // registry when it looked for it: a bug of the plugin, not of the host).
    let name = unique("compat");
    let create = json!({"type": "docker", "name": name, "image": image, "tag": tag,
        "command": ["sleep", "300"]});
    let id = c.submit_ok("create", &create.to_string()).await;
    let task = ended(&c, id).await;
    assert_eq!(task["state"], "completed", "{version}: {task}");
    let state = docker(&["inspect", "-f", "{{.State.Running}}", &name]);
    assert_eq!(state.trim(), "true", "{version}: {name} runs");
    let gone = c
        .send(
            Method::DELETE,
            &format!("container/docker/{name}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(gone.status, 200, "{version}: {:?}", gone.body);

    // And the image removed.
    let remove = json!([{"type": "docker", "image": image, "tag": tag}]);
    let id = c.submit_ok("image_remove", &remove.to_string()).await;
    let task = ended(&c, id).await;
    assert_eq!(task["state"], "completed", "{version}: {task}");
    assert!(
        !docker_ok(&["image", "inspect", &pulled]),
        "{version}: {pulled} is removed"
    );
}

#[tokio::test]
async fn wit_0_1_0_categories_run_on_the_engine() {
    pull_create_remove(VERSIONS[0]).await;
}

#[tokio::test]
async fn wit_0_2_0_categories_run_on_the_engine() {
    pull_create_remove(VERSIONS[1]).await;
}
