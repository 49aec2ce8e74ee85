//! Pinned bind sources (`<data>/binds/docker/<token>/<n>` mounts) after a
//! server is killed with SIGKILL: the next start keeps the pin a container
//! still needs, unmounts what no pin needs (here a mount left inside the
//! staging folder) and releases the pin of a container removed meanwhile;
//! the harness's `Server` drop unmounts whatever a killed server left
//! under its folder, so no mount outlives a test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{
    docker, docker_ok, eventually, hash_password, mounts_beneath, unique, Client, Containers,
    Options, Server,
};

async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

/// bob's running busybox `name` binding his `/p` at `/data`.
async fn create(bob: &Client, name: &str) {
    let body = json!({
        "type": "docker", "repository": "dockerhub", "name": name,
        "image": "busybox", "tag": "latest", "command": ["sleep", "600"],
        "volume": {"host": {"/p": {"bind": "/data", "ro": false}}},
    });
    let t = ended(bob, bob.submit_ok("create", &body.to_string()).await).await;
    assert_eq!(t["state"], "completed", "{t}");
}

async fn login(server: &Server) -> Client {
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    bob
}

/// The mounts beneath the server's binds folder.
fn pins(binds: &Path) -> Vec<PathBuf> {
    mounts_beneath(binds)
}

#[tokio::test]
async fn a_killed_servers_pins_are_swept_at_start_and_by_the_harness() {
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    let mut server = Server::start(
        Options::with_plugins(&["create"])
            .test_engine()
            .config(&config),
    )
    .await;
    let root = server.root.path().canonicalize().unwrap();
    let binds = server.data_dir().canonicalize().unwrap().join("binds");
    docker(&["pull", "-q", "busybox:latest"]);
    let (a, b) = (unique("sweep-a"), unique("sweep-b"));
    let _made = Containers(vec![a.clone(), b.clone()]);
    let bob = login(&server).await;
    create(&bob, &a).await;
    let staged = pins(&binds);
    assert_eq!(staged.len(), 1, "one pin: {staged:?}");

    // Killed; a mount is left inside the staging folder (as a crash
    // between two mounts, or anything mounted there, would leave).
    server.kill9();
    let sub = staged[0].join("sub");
    std::fs::create_dir(&sub).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["--bind"])
        .arg(elsewhere.path())
        .arg(&sub)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(pins(&binds).len(), 2);
    server.restart().await;
    eventually(
        "the start unmounts what no pin needs and keeps the pin in use",
        Duration::from_secs(30),
        || (pins(&binds) == staged).then_some(()),
    )
    .await;
    assert!(docker_ok(&["exec", &a, "test", "-d", "/data/sub"]));

    // Killed; its container removed meanwhile: the next start releases the pin.
    server.kill9();
    docker(&["rm", "-f", &a]);
    server.restart().await;
    eventually(
        "the pin of the removed container is released",
        Duration::from_secs(30),
        || pins(&binds).is_empty().then_some(()),
    )
    .await;

    // Dropped (killed) while a container holds a pin: the harness unmounts it.
    let bob = login(&server).await;
    create(&bob, &b).await;
    assert_eq!(pins(&binds).len(), 1);
    drop(server);
    assert_eq!(mounts_beneath(&root), Vec::<PathBuf>::new());
    assert!(!root.exists(), "the server's folder is removed");
}
