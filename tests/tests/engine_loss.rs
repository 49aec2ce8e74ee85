//! Engine loss (issue 10): dockerd is killed (SIGKILL) in the middle of each
//! long Docker category (those that pull, push, save, export or import). The task must end in `error` within 5 s of the
//! engine going away, the server must go on answering, and once the engine
//! is back the same task succeeds.
//!
//! An engine that is frozen (SIGSTOP) instead keeps its socket open and
//! answers nothing: the task must fail once nothing has moved for the
//! configured stall limit (`STEVEDORE_DOCKER_STALL_SECS`).
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

/// When a task counts as busy with the engine, so that the kill lands in
/// the middle of its work.
#[derive(Debug, Clone, Copy)]
enum Busy {
    /// The engine's progress stream has moved past 0% (pulls and pushes:
    /// the bytes flow between the engine and the registry).
    Progress,
    /// The engine call has begun (progress -1) and the server has moved
    /// [`STREAMED`] bytes since (saves, exports, imports: the bytes flow
    /// between the engine and the server).
    Streaming,
}

/// Bytes through the server that count as "streaming".
const STREAMED: u64 = 32 << 20;

/// Bytes the process `pid` read and wrote so far (`/proc/PID/io`).
fn io_bytes(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| *k == "rchar" || *k == "wchar")
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Files under `dir` named as unfinished outputs.
fn partial_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".stevedore-partial-"))
        {
            out.push(p);
        }
    }
    out
}

/// Whether a task has ended.
fn ended(t: &Value) -> bool {
    t["state"] == "completed" || t["state"] == "error"
}

/// One category to lose the engine under.
struct Case {
    category: &'static str,
    /// `docker` commands run against the engine first.
    prepare: Vec<Vec<String>>,
    /// When the kill lands.
    when: Busy,
    /// The task that loses its engine.
    body: Value,
    /// The task that must complete once the engine is back.
    again: Value,
    /// The file it writes (relative to the share root), if any.
    output: Option<&'static str>,
}

/// Submit `body`, kill the engine once the task is busy with it, check that
/// the task fails within [`WITHIN`] and that the server still answers; then
/// start the engine again and check that `again` completes.
async fn lose_engine_mid_task(
    engine: &mut PrivateEngine,
    server: &Server,
    c: &Client,
    case: Case,
) -> Timing {
    let Case {
        category,
        prepare,
        when,
        body,
        again,
        output,
    } = case;
    let share = server.data_dir().join("share");
    for args in &prepare {
        engine.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let id = c.submit_ok(category, &body.to_string()).await;
    let progress = |t: &Value| t["progress"].as_i64().unwrap_or(0);
    let mut busy = c
        .wait_until(id, Duration::from_secs(120), |t| {
            ended(t)
                || (t["state"] == "running"
                    && match when {
                        Busy::Progress => progress(t) > 0,
                        Busy::Streaming => progress(t) == -1,
                    })
        })
        .await
        .unwrap_or_else(|last| panic!("{category}: task {id} never got busy: {last:?}"));
    if matches!(when, Busy::Streaming) && !ended(&busy) {
        let pid = server.pid().expect("the server runs");
        let from = io_bytes(pid);
        let until = Instant::now() + Duration::from_secs(60);
        while io_bytes(pid) < from + STREAMED {
            assert!(Instant::now() < until, "{category}: no bytes flow");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        busy = c.task(id).await.expect("listed");
    }
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
    // A failed export leaves neither its file nor a partial one.
    if let Some(path) = output {
        assert!(!share.join(path).exists(), "{category} left {path}");
    }
    let partial = partial_files(&share);
    assert!(partial.is_empty(), "{category} left {partial:?}");

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
    if let Some(path) = output {
        assert!(share.join(path).is_file(), "{category} wrote {path}");
    }
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
        "create",
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
    let pull = json!({"type": "docker", "repository": "private", "registry_name": "local",
        "image": remote, "tag": "1"});
    let pushed = format!("stevedore/{}", unique("loss-push"));
    let push = |tag: &str| {
        json!({"image": local, "tag": "1", "newImage": pushed, "newTag": tag,
            "registry": registry})
    };
    let save = json!({"type": "docker", "image": local, "tag": "1",
        "path": "loss/image.tar.gz", "compress": true});
    let export = json!({"type": "docker", "name": container,
        "path": "loss/container.tar.gz", "compress": true});
    let import =
        |name: &str| json!({"type": "docker", "name": name, "path": "loss/container.tar.gz"});
    let create = |name: &str| {
        // `private`: pulled as, and created from, `registry/image:tag`.
        json!({"type": "docker", "name": name, "repository": "private", "registry_name": "local",
            "image": remote, "tag": "1", "command": ["sh", "-c", "exit 0"]})
    };
    // In this order: create pulls again what the download pulled once it
    // is removed; the import reads what the export wrote.
    let cases = [
        Case {
            category: "image_download",
            when: Busy::Progress,
            body: pull.clone(),
            again: pull,
            output: None,
            prepare: Vec::new(),
        },
        Case {
            category: "create",
            prepare: vec![vec!["rmi".into(), remote_ref.clone()]],
            when: Busy::Progress,
            body: create(&unique("loss-create")),
            again: create(&unique("loss-create")),
            output: None,
        },
        Case {
            category: "image_push",
            when: Busy::Progress,
            body: push("1"),
            again: push("2"),
            output: None,
            prepare: Vec::new(),
        },
        Case {
            category: "image_export",
            when: Busy::Streaming,
            body: save.clone(),
            again: save,
            output: Some("loss/image.tar.gz"),
            prepare: Vec::new(),
        },
        Case {
            category: "container_export",
            when: Busy::Streaming,
            body: export.clone(),
            again: export,
            output: Some("loss/container.tar.gz"),
            prepare: Vec::new(),
        },
        Case {
            category: "container_import",
            when: Busy::Streaming,
            body: import(&unique("loss-i")),
            again: import(&unique("loss-i")),
            output: None,
            prepare: Vec::new(),
        },
    ];
    let mut timings = Vec::new();
    for case in cases {
        timings.push(lose_engine_mid_task(&mut engine, &server, &c, case).await);
    }

    for t in &timings {
        stevedore_e2e::report!(
            "engine loss: {:16} failed {:>6.0} ms after dockerd was killed (progress {}): {}",
            t.category,
            t.failed_after.as_secs_f64() * 1000.0,
            t.progress_at_kill,
            t.detail
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_engine_fails_the_task_once_nothing_moves_for_the_stall_limit() {
    const STALL: Duration = Duration::from_secs(2);
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let fixtures = tempfile::tempdir().unwrap();
    let remote = format!("stevedore/{}", unique("frozen-pull"));
    let remote_ref = format!("{registry}/{remote}:1");
    let tar = rootfs_tar(fixtures.path(), 128, 0x51_7cc1_b727_220a);
    docker(&["import", &tar, &remote_ref]);
    docker(&["push", &remote_ref]);
    docker(&["rmi", &remote_ref]);

    let engine = PrivateEngine::start();
    let mut options = Options::with_plugins(&["image_download"])
        .env("STEVEDORE_DOCKER_STALL_SECS", &STALL.as_secs().to_string())
        .config(&format!(
            "[registries.local]\nurl = \"http://{registry}\"\n"
        ));
    options.docker_host = Some(engine.host());
    let server = Server::start(options).await;
    let c = server.admin().await;
    let pull = json!({"type": "docker", "repository": "private", "registry_name": "local",
        "image": remote, "tag": "1"})
    .to_string();

    let id = c.submit_ok("image_download", &pull).await;
    let busy = c
        .wait_until(id, Duration::from_secs(120), |t| {
            ended(t) || (t["state"] == "running" && t["progress"].as_i64().unwrap_or(0) > 0)
        })
        .await
        .expect("the pull gets under way");
    assert_eq!(busy["state"], "running", "ended before the freeze: {busy}");
    engine.freeze();
    let frozen = Instant::now();
    let t = c
        .wait_until(id, STALL + WITHIN + Duration::from_secs(30), ended)
        .await
        .expect("the task ends");
    let failed_after = frozen.elapsed();
    engine.thaw();
    let detail = t["detail_state"].clone();
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["detail_state"]
            .as_str()
            .is_some_and(|d| d.contains("stopped answering")),
        "{t}"
    );
    assert!(
        failed_after <= STALL + WITHIN,
        "the task ended {failed_after:?} after the engine froze (stall limit {STALL:?})"
    );
    // The server answered throughout, and the thawed engine serves again.
    assert_eq!(
        reqwest::get(format!("{}/metrics", server.base()))
            .await
            .unwrap()
            .status(),
        200
    );
    let id = c.submit_ok("image_download", &pull).await;
    let t = c
        .wait_until(id, Duration::from_secs(120), ended)
        .await
        .expect("the pull ends");
    assert_eq!(t["state"], "completed", "{t}");
    stevedore_e2e::report!(
        "engine frozen: image_download failed {:.0} ms after dockerd was stopped (stall limit {} s, progress {}): {}",
        failed_after.as_secs_f64() * 1000.0,
        STALL.as_secs(),
        busy["progress"],
        detail
    );
}
