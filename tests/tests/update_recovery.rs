//! A server killed (SIGKILL) while a `container_update` waits on its new
//! container leaves the previous container stopped under its aside name
//! and the new one under the container's name. The next start rolls the
//! update back: the previous container (same id) runs again under its
//! name with its volume's data, the aside name and the new container are
//! gone, and the task ended in `error` as interrupted.

use std::time::Duration;

use serde_json::json;
use stevedore_e2e::{
    docker, docker_ok, env, eventually, eventually_async, registries_config, unique, Options,
    Server,
};

/// What the test made on the shared engine, removed at the end whatever happens.
struct Made {
    container: String,
    volume: String,
    repository: String,
}

impl Drop for Made {
    fn drop(&mut self) {
        for id in aside(&self.container).lines() {
            docker_ok(&["rm", "-f", id.trim()]);
        }
        docker_ok(&["rm", "-f", &self.container]);
        docker_ok(&["volume", "rm", "-f", &self.volume]);
        for id in docker(&["images", "-q", &self.repository]).lines() {
            docker_ok(&["rmi", "-f", id.trim()]);
        }
    }
}

/// The ids of the containers under an aside name of `name`.
fn aside(name: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("name={name}-replaced-"),
    ])
}

/// `{{.Id}} {{.State.Running}}` of `name`, if it exists.
fn holder(name: &str) -> Option<(String, bool)> {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.Id}} {{.State.Running}}", name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (id, running) = text.trim().split_once(' ')?;
    Some((id.to_string(), running == "true"))
}

#[tokio::test]
async fn an_update_killed_mid_way_is_rolled_back_at_the_next_start() {
    let mut server = Server::start(
        Options::with_plugins(&["container_update"])
            .test_engine()
            .config(&registries_config()),
    )
    .await;
    let admin = server.admin().await;
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let repository = format!("{registry}/stevedore/{}", unique("rec"));
    let made = Made {
        container: unique("rec"),
        volume: unique("recvol"),
        repository: repository.clone(),
    };
    let name = made.container.as_str();
    let tagged = format!("{repository}:v1");
    docker(&["pull", "-q", "busybox:latest"]);
    docker(&["tag", "busybox:latest", &tagged]);
    docker(&["push", &tagged]);
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "io.stevedore.owner=admin",
        "-v",
        &format!("{}:/data", made.volume),
        &tagged,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    docker(&["exec", name, "sh", "-c", "echo kept > /data/file"]);
    let (original, _) = holder(name).expect("the container");

    // The update recreates the container and then waits an hour for the
    // new one to keep running: the server is killed during that wait.
    let update = json!({"container": name, "stable_secs": 3600}).to_string();
    let id = admin.submit_ok("container_update", &update).await;
    let old = original.as_str();
    eventually_async(
        "the update waits on its new container",
        Duration::from_secs(120),
        || {
            let admin = &admin;
            async move {
                let t = admin.task(id).await?;
                let waiting = t["detail_state"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("waiting for"));
                let (now, running) = holder(name)?;
                (waiting && running && now != old && aside(name).trim() == old).then_some(())
            }
        },
    )
    .await;
    let (new, _) = holder(name).unwrap();
    server.kill9();
    assert_eq!(
        aside(name).trim(),
        original,
        "the crash left the previous container aside"
    );

    server.restart().await;
    eventually(
        "the previous container runs again under its name",
        Duration::from_secs(60),
        || {
            let (now, running) = holder(name)?;
            (now == original && running).then_some(())
        },
    )
    .await;
    assert_eq!(aside(name), "", "no container left aside");
    assert!(
        !docker_ok(&["inspect", &new]),
        "the half-made new container is removed"
    );
    assert_eq!(docker(&["exec", name, "cat", "/data/file"]), "kept");
    let logs = server.logs();
    assert!(
        logs.contains("interrupted recreate: the replaced container runs again"),
        "{logs}"
    );
    let admin = server.admin().await;
    let t = admin.task(id).await.expect("the task");
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["detail_state"]
            .as_str()
            .is_some_and(|d| d.contains("interrupted")),
        "{t}"
    );
    drop(made);
}
