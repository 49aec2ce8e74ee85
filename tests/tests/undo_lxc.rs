//! A cancelled run's containers are removed from the runtime they were
//! created in (issue 29): the host undoes what a cancelled run created, and
//! an LXC container must go as a Docker one does. The `create_then_wait`
//! test category creates one container and then waits to be cancelled.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use stevedore_e2e::{Client, Options, Server};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// The containers under an LXC path (each is a folder; the host's own
/// folders there are hidden).
fn containers(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

async fn complete(client: &Client, server: &Server, category: &str, params: &str) {
    let id = client.submit_ok(category, params).await;
    let t = client
        .wait_until(id, Duration::from_secs(90), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("task {id} did not finish: {last:?}"));
    assert_eq!(t["state"], "completed", "{t}\n{}", server.logs());
}

#[tokio::test]
async fn a_cancelled_lxc_create_leaves_no_container() {
    let path = tempfile::Builder::new()
        .prefix("stevedore-lxc-")
        .tempdir()
        .unwrap();
    let _cleanup = scopeguard(path.path());
    let server = Server::start(
        Options::with_plugins(&["image_download", "create_then_wait"])
            .config("[plugins.grants]\ncreate_then_wait = [\"task\", \"containers\"]\n")
            .env("STEVEDORE_CATALOG", &env("STEVEDORE_TEST_CATALOG"))
            .env("STEVEDORE_LXC_PATH", &path.path().display().to_string())
            .env("STEVEDORE_LXC_BRIDGE", &env("STEVEDORE_TEST_LXC_BRIDGE"))
            .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET")),
    )
    .await;
    let client = server.admin().await;
    complete(
        &client,
        &server,
        "image_download",
        &json!({"type": "lxc", "repository": "qnap", "image": "ubuntu-trusty"}).to_string(),
    )
    .await;

    let id = client
        .submit_ok(
            "create_then_wait",
            &json!({"type": "lxc", "name": "undone", "image": "ubuntu-trusty:latest"}).to_string(),
        )
        .await;
    let seen = client
        .wait_until(id, Duration::from_secs(60), |t| {
            t["progress"].as_i64().unwrap_or(-1) >= 50
                || t["state"] != "running" && t["state"] != "waiting"
        })
        .await
        .unwrap_or_else(|last| panic!("the container was not created: {last:?}"));
    assert_eq!(seen["state"], "running", "{seen}\n{}", server.logs());
    assert_eq!(
        containers(path.path()),
        ["undone"],
        "created before the cancel"
    );

    let deleted = client.delete(&id.to_string()).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    // Deleting a running task cancels it; it is gone once its run is undone.
    let until = Instant::now() + Duration::from_secs(30);
    while client.task(id).await.is_some() {
        assert!(Instant::now() < until, "task {id} still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        containers(path.path()),
        Vec::<String>::new(),
        "the cancelled run's LXC container is removed\n{}",
        server.logs()
    );
}

/// Destroys what a failed test left under `path` when dropped.
fn scopeguard(path: &Path) -> impl Drop + '_ {
    struct Guard<'a>(&'a Path);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            stevedore_e2e::lxc_destroy_all(self.0);
        }
    }
    Guard(path)
}
