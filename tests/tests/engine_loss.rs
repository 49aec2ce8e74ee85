//! Engine loss (issue 10): dockerd is killed (SIGKILL) in the middle of each
//! long Docker category. The task must end in `error` within 5 s of the
//! engine going away, the server must go on answering, and once the engine
//! is back the same task succeeds.
//!
//! The engine is a private dockerd ([`PrivateEngine`]), never the shared
//! test engine; it pulls from and pushes to the shared open registry.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stevedore_e2e::engine::PrivateEngine;
use stevedore_e2e::{docker, unique, Client, Options, Server};

/// How soon a task must end after its engine is killed.
const WITHIN: Duration = Duration::from_secs(5);
/// Size of the random payload of each test image: large enough that every
/// category is still busy when the engine is killed.
const PAYLOAD_MIB: usize = 256;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// `mib` MiB that do not compress.
fn random_bytes(mib: usize, mut seed: u64) -> Vec<u8> {
    (0..mib << 20)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A tar of a busybox rootfs plus `mib` MiB of random data, in `dir`.
fn rootfs_tar(dir: &Path, mib: usize, seed: u64) -> String {
    let root = dir.join(format!("rootfs-{seed}"));
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for link in ["sh", "cat", "sleep", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(link)).unwrap();
    }
    std::fs::write(root.join("blob"), random_bytes(mib, seed)).unwrap();
    let tar = dir.join(format!("rootfs-{seed}.tar"));
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    std::fs::remove_dir_all(&root).unwrap();
    tar.to_string_lossy().into_owned()
}

/// How long one category took to fail after the kill.
struct Timing {
    category: &'static str,
    failed_after: Duration,
    progress_at_kill: i64,
    detail: String,
}

/// Whether a task has ended.
fn ended(t: &Value) -> bool {
    t["state"] == "completed" || t["state"] == "error"
}

/// Submit `body`, kill the engine once the task is busy with it, check that
/// the task fails within [`WITHIN`] and that the server still answers; then
/// start the engine again and check that `again` completes.
async fn lose_engine_mid_task(
    engine: &mut PrivateEngine,
    server: &Server,
    c: &Client,
    category: &'static str,
    body: Value,
    again: Value,
) -> Timing {
    let id = c.submit_ok(category, &body.to_string()).await;
    // Busy: running and past its first progress report (the engine call is
    // under way).
    let busy = c
        .wait_until(id, Duration::from_secs(120), |t| {
            ended(t) || (t["state"] == "running" && t["progress"].as_i64().unwrap_or(0) != 0)
        })
        .await
        .unwrap_or_else(|last| panic!("{category}: task {id} never got busy: {last:?}"));
    assert_eq!(
        busy["state"], "running",
        "{category} ended before the engine was killed (make the payload larger): {busy}"
    );
    engine.kill();
    let killed = Instant::now();
    let t = c
        .wait_until(id, WITHIN + Duration::from_secs(30), ended)
        .await
        .unwrap_or_else(|last| panic!("{category}: task {id} never ended: {last:?}"));
    let failed_after = killed.elapsed();
    assert_eq!(t["state"], "error", "{category}: {t}");
    assert!(
        failed_after <= WITHIN,
        "{category}: the task ended {failed_after:?} after the engine went away (want <= {WITHIN:?}): {t}"
    );
    let detail = t["detail_state"].as_str().unwrap_or("").to_string();
    assert!(!detail.is_empty(), "{category}: an error says why: {t}");
    // The server serves on.
    let metrics = reqwest::get(format!("{}/metrics", server.base()))
        .await
        .expect("metrics answer");
    assert_eq!(metrics.status(), 200);
    assert!(c.list(None).await.iter().any(|t| t["id"] == id));

    engine.start_again();
    let id = c.submit_ok(category, &again.to_string()).await;
    let t = c
        .wait_until(id, Duration::from_secs(180), ended)
        .await
        .unwrap_or_else(|last| panic!("{category}: task {id} did not end: {last:?}"));
    assert_eq!(
        t["state"], "completed",
        "{category} with the engine back: {t}"
    );
    Timing {
        category,
        failed_after,
        progress_at_kill: busy["progress"].as_i64().unwrap_or(0),
        detail,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_engine_fails_each_long_task_within_5_s_and_tasks_succeed_once_it_is_back() {
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let fixtures = tempfile::tempdir().unwrap();
    // An image only the registry has (pushed from the shared engine), to pull.
    let remote = format!("stevedore/{}", unique("loss-pull"));
    let remote_ref = format!("{registry}/{remote}:1");
    let tar = rootfs_tar(fixtures.path(), PAYLOAD_MIB, 0x2545_f491_4f6c_dd1d);
    docker(&["import", &tar, &remote_ref]);
    docker(&["push", &remote_ref]);
    docker(&["rmi", &remote_ref]);
    std::fs::remove_file(&tar).unwrap();

    let mut engine = PrivateEngine::start();
    // An image only the private engine has (its layer new to the registry),
    // to push and save, and a container of it to export.
    let local = unique("loss-local");
    let tar = rootfs_tar(fixtures.path(), PAYLOAD_MIB, 0x9e37_79b9_7f4a_7c15);
    engine.docker(&["import", &tar, &format!("{local}:1")]);
    std::fs::remove_file(&tar).unwrap();
    let container = unique("loss-c");
    engine.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        &container,
        &format!("{local}:1"),
        "sh",
    ]);

    let mut options = Options::with_plugins(&[
        "image_download",
        "image_push",
        "image_export",
        "container_export",
        "container_import",
    ])
    .config(&format!(
        "[registries.local]\nurl = \"http://{registry}\"\n"
    ));
    options.docker_host = Some(engine.host());
    let server = Server::start(options).await;
    let c = server.admin().await;
    let share = server.data_dir().join("share");
    let mut timings = Vec::new();

    let pull = json!({"type": "docker", "repository": "private", "registry_name": "local",
        "image": remote, "tag": "1"});
    timings.push(
        lose_engine_mid_task(
            &mut engine,
            &server,
            &c,
            "image_download",
            pull.clone(),
            pull,
        )
        .await,
    );

    let pushed = format!("stevedore/{}", unique("loss-push"));
    let push = |tag: &str| {
        json!({"image": local, "tag": "1", "newImage": pushed, "newTag": tag,
            "registry": registry})
    };
    timings.push(
        lose_engine_mid_task(&mut engine, &server, &c, "image_push", push("1"), push("2")).await,
    );

    let save = json!({"type": "docker", "image": local, "tag": "1",
        "path": "loss/image.tar.gz", "compress": true});
    timings.push(
        lose_engine_mid_task(&mut engine, &server, &c, "image_export", save.clone(), save).await,
    );
    assert!(share.join("loss/image.tar.gz").is_file());

    let export = json!({"type": "docker", "name": container,
        "path": "loss/container.tar.gz", "compress": true});
    timings.push(
        lose_engine_mid_task(
            &mut engine,
            &server,
            &c,
            "container_export",
            export.clone(),
            export,
        )
        .await,
    );
    assert!(share.join("loss/container.tar.gz").is_file());

    let import =
        |name: &str| json!({"type": "docker", "name": name, "path": "loss/container.tar.gz"});
    timings.push(
        lose_engine_mid_task(
            &mut engine,
            &server,
            &c,
            "container_import",
            import(&unique("loss-i")),
            import(&unique("loss-i")),
        )
        .await,
    );

    for t in &timings {
        println!(
            "engine loss: {:16} failed {:>6.0} ms after dockerd was killed (at {}%): {}",
            t.category,
            t.failed_after.as_secs_f64() * 1000.0,
            t.progress_at_kill,
            t.detail
        );
    }
}
