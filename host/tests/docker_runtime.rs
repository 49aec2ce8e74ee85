//! The Docker backend against the real engine and registries that
//! `cargo xtask test` starts (DOCKER_HOST, STEVEDORE_TEST_*).

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use stevedore::plugins::bindings::{BindMount, PortBinding};
use stevedore::queue::{LogLevel, Reporter};
use stevedore::runtime::archives::tar_entry;
use stevedore::runtime::docker::{DockerRuntime, DockerSettings, Registry};
use stevedore::runtime::{
    ArchiveFile, CallContext, ContainerRef, ContainerSpec, Containers, Credential, Error,
    ExportContainer, ImageRef, Images, ImportImage, PullRequest, PushImage, RemoveContainer,
    RemoveImage, RuntimeKind, SaveImages, Source, TagImage,
};
use tokio_util::sync::CancellationToken;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(i32, String)>>);

impl Reporter for Recorder {
    fn progress(&self, percent: i32, detail: &str) {
        self.0.lock().push((percent, detail.to_string()));
    }
    fn log(&self, _: LogLevel, _: &str) {}
}

struct Fixture {
    share: tempfile::TempDir,
    _data: tempfile::TempDir,
    runtime: DockerRuntime,
    api: bollard::Docker,
}

fn fixture() -> Fixture {
    fixture_with(None)
}

/// A fixture whose `dockerhub` repository maps to the named registry.
fn fixture_with(dockerhub: Option<&str>) -> Fixture {
    let share = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let registries = [
        (
            "local".to_string(),
            Registry {
                url: format!("http://{}", env("STEVEDORE_TEST_REGISTRY")),
                ..Default::default()
            },
        ),
        (
            "secure".to_string(),
            Registry {
                url: env("STEVEDORE_TEST_AUTH_REGISTRY"),
                ..Default::default()
            },
        ),
    ]
    .into_iter()
    .collect();
    let settings = DockerSettings {
        host: Some(env("DOCKER_HOST")),
        registries,
        dockerhub: dockerhub.map(str::to_string),
        qnap: None,
        share_root: share.path().to_path_buf(),
        data_dir: data.path().to_path_buf(),
        stall: None,
        max_expanded_bytes: stevedore::runtime::archives::DEFAULT_MAX_EXPANDED_BYTES,
    };
    let socket = env("DOCKER_HOST").trim_start_matches("unix://").to_string();
    let api = bollard::Docker::connect_with_unix(
        &socket,
        120,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        },
    )
    .unwrap();
    Fixture {
        share,
        _data: data,
        runtime: DockerRuntime::new(settings).unwrap(),
        api,
    }
}

fn cx() -> (CallContext, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let cx = CallContext {
        task_id: 7,
        user: "tester".into(),
        cancel: CancellationToken::new(),
        reporter: recorder.clone(),
    };
    (cx, recorder)
}

fn busybox() -> PullRequest {
    PullRequest {
        runtime: RuntimeKind::Docker,
        image: "busybox".into(),
        tag: "latest".into(),
        source: Source::Dockerhub,
        credential: None,
    }
}

/// A rootfs tar: busybox plus `mib` MiB of incompressible data.
fn rootfs_tar(mib: usize, marker: &str) -> Vec<u8> {
    let mut tar = tar_entry("bin/busybox", &std::fs::read("/bin/busybox").unwrap());
    let data = stevedore_e2e::noise(mib << 20, 0x9e37_79b9_7f4a_7c15 ^ marker.len() as u64);
    tar.extend(tar_entry("data/blob", &data));
    tar.extend(tar_entry("data/marker", marker.as_bytes()));
    tar.extend([0u8; 1024]);
    tar
}

async fn exec(api: &bollard::Docker, container: &str, cmd: &[&str]) -> String {
    let exec = api
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        api.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.push_str(&chunk.to_string());
        }
    }
    out
}

#[tokio::test]
async fn pull_reports_progress_that_never_goes_back_and_ends_at_100() {
    let f = fixture();
    let (cx, rec) = cx();
    // Make a 24 MiB image and put it in the registry under a unique name.
    let name = format!("stevedore-test/pull-{}", std::process::id());
    std::fs::write(f.share.path().join("big.tar"), rootfs_tar(24, "pull")).unwrap();
    f.runtime
        .image_import(
            &cx,
            ImportImage {
                kind: RuntimeKind::Docker,
                path: "big.tar".into(),
                repository: format!("{}/{name}", env("STEVEDORE_TEST_REGISTRY")),
                tag: "1".into(),
            },
        )
        .await
        .unwrap();
    f.runtime
        .image_push(
            &cx,
            PushImage {
                repository: format!("{}/{name}", env("STEVEDORE_TEST_REGISTRY")),
                tag: "1".into(),
                registry: env("STEVEDORE_TEST_REGISTRY"),
                credential: None,
            },
        )
        .await
        .unwrap();
    f.runtime
        .image_remove(
            &cx,
            RemoveImage {
                image: ImageRef::new(
                    RuntimeKind::Docker,
                    format!("{}/{name}:1", env("STEVEDORE_TEST_REGISTRY")),
                ),
                force: true,
            },
        )
        .await
        .unwrap();
    rec.0.lock().clear();

    let request = PullRequest {
        image: name.clone(),
        tag: "1".into(),
        source: Source::Private("local".into()),
        ..busybox()
    };
    let info = f.runtime.image_pull(&cx, request).await.unwrap();
    assert!(
        info.tags
            .contains(&format!("{}/{name}:1", env("STEVEDORE_TEST_REGISTRY"))),
        "{:?}",
        info.tags
    );
    let seen: Vec<i32> = rec.0.lock().iter().map(|(p, _)| *p).collect();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {seen:?}"
    );
    assert_eq!(seen.first(), Some(&0));
    assert_eq!(seen.last(), Some(&100));
    assert!(
        seen.iter().any(|p| *p > 0 && *p < 100),
        "no intermediate progress: {seen:?}"
    );
}

#[tokio::test]
async fn dockerhub_mapped_to_a_mirror_pulls_official_images_under_library() {
    let f = fixture_with(Some("local"));
    let (cx, _) = cx();
    let info = f.runtime.image_pull(&cx, busybox()).await.unwrap();
    let mirror = format!("{}/library/busybox:latest", env("STEVEDORE_TEST_REGISTRY"));
    assert!(info.tags.contains(&mirror), "{:?}", info.tags);
    assert!(
        info.tags.contains(&"busybox:latest".to_string()),
        "named as asked: {:?}",
        info.tags
    );
}

#[tokio::test]
async fn pull_of_a_missing_tag_fails_with_the_daemon_message() {
    let f = fixture();
    let (cx, _) = cx();
    let request = PullRequest {
        image: "library/busybox".into(),
        tag: "no-such-tag".into(),
        source: Source::Private("local".into()),
        ..busybox()
    };
    match f.runtime.image_pull(&cx, request).await {
        Err(Error::NotFound(m)) | Err(Error::Runtime(m)) => {
            assert!(m.contains("not found") || m.contains("unknown"), "{m}")
        }
        other => panic!("expected a not-found error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_registry_name_is_invalid_params() {
    let f = fixture();
    assert_eq!(
        f.runtime.resolve_source(&Source::Private("nope".into())),
        Err(Error::InvalidParams(
            "registry_name: unknown registry `nope` (configured: local, secure)".into()
        ))
    );
    assert_eq!(
        f.runtime.resolve_source(&Source::Private("local".into())),
        Ok(env("STEVEDORE_TEST_REGISTRY"))
    );
}

#[tokio::test]
async fn push_to_an_htpasswd_registry_with_a_password_that_breaks_standard_base64() {
    let f = fixture();
    let (cx, _) = cx();
    f.runtime.image_pull(&cx, busybox()).await.unwrap();
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let repo = format!("{registry}/stevedore/busybox");
    f.runtime
        .image_tag(
            &cx,
            TagImage {
                source: "busybox:latest".into(),
                repository: repo.clone(),
                tag: "auth".into(),
            },
        )
        .await
        .unwrap();
    let right = Credential {
        registry: registry.clone(),
        username: env("STEVEDORE_TEST_AUTH_USER"),
        password: env("STEVEDORE_TEST_AUTH_PASSWORD"),
    };
    f.runtime
        .image_push(
            &cx,
            PushImage {
                repository: repo.clone(),
                tag: "auth".into(),
                registry: registry.clone(),
                credential: Some(right.clone()),
            },
        )
        .await
        .unwrap();

    let wrong = Credential {
        password: "wrong".into(),
        ..right
    };
    match f
        .runtime
        .image_push(
            &cx,
            PushImage {
                repository: repo.clone(),
                tag: "auth".into(),
                registry: registry.clone(),
                credential: Some(wrong),
            },
        )
        .await
    {
        Err(Error::Runtime(m)) | Err(Error::Denied(m)) => assert!(
            m.contains("unauthorized") || m.contains("authentication"),
            "{m}"
        ),
        other => panic!("expected the registry's refusal, got {other:?}"),
    }
    assert!(
        f.runtime
            .image_push(
                &cx,
                PushImage {
                    repository: repo,
                    tag: "auth".into(),
                    registry,
                    credential: None
                }
            )
            .await
            .is_err(),
        "anonymous push must be refused"
    );
}

#[tokio::test]
async fn save_plain_and_gzip_then_load_back() {
    let f = fixture();
    let (cx, _) = cx();
    f.runtime.image_pull(&cx, busybox()).await.unwrap();
    let plain = f
        .runtime
        .image_save(
            &cx,
            SaveImages {
                references: vec!["busybox:latest".into()],
                file: ArchiveFile {
                    path: "out/b.tar".into(),
                    gzip: false,
                    overwrite: false,
                },
            },
        )
        .await
        .unwrap();
    let gz = f
        .runtime
        .image_save(
            &cx,
            SaveImages {
                references: vec!["busybox:latest".into()],
                file: ArchiveFile {
                    path: "/out/b.tar.gz".into(),
                    gzip: true,
                    overwrite: false,
                },
            },
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(f.share.path().join("out/b.tar"))
            .unwrap()
            .len(),
        plain
    );
    let gz_bytes = std::fs::read(f.share.path().join("out/b.tar.gz")).unwrap();
    assert_eq!(gz_bytes.len() as u64, gz);
    assert_eq!(&gz_bytes[..2], &[0x1f, 0x8b]);
    assert!(gz < plain);
    let names: Vec<String> = std::fs::read_dir(f.share.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporaries left: {names:?}");
    // Both load back as the same image.
    for file in ["out/b.tar", "out/b.tar.gz"] {
        let id = f
            .runtime
            .image_import(
                &cx,
                ImportImage {
                    kind: RuntimeKind::Docker,
                    path: file.into(),
                    repository: "stevedore-loaded".into(),
                    tag: "x".into(),
                },
            )
            .await
            .unwrap();
        let original = f
            .runtime
            .image_inspect(&cx, ImageRef::new(RuntimeKind::Docker, "busybox:latest"))
            .await
            .unwrap();
        assert_eq!(id, original.id, "{file}");
    }
}

#[tokio::test]
async fn existing_file_is_kept_without_overwrite() {
    let f = fixture();
    let (cx, _) = cx();
    f.runtime.image_pull(&cx, busybox()).await.unwrap();
    std::fs::write(f.share.path().join("keep.tar"), b"precious").unwrap();
    let err = f
        .runtime
        .image_save(
            &cx,
            SaveImages {
                references: vec!["busybox:latest".into()],
                file: ArchiveFile {
                    path: "keep.tar".into(),
                    gzip: false,
                    overwrite: false,
                },
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::Conflict("path `keep.tar` exists; set `force` to overwrite it".into())
    );
    assert_eq!(
        std::fs::read(f.share.path().join("keep.tar")).unwrap(),
        b"precious"
    );
    f.runtime
        .image_save(
            &cx,
            SaveImages {
                references: vec!["busybox:latest".into()],
                file: ArchiveFile {
                    path: "keep.tar".into(),
                    gzip: false,
                    overwrite: true,
                },
            },
        )
        .await
        .unwrap();
    assert_ne!(
        std::fs::read(f.share.path().join("keep.tar")).unwrap(),
        b"precious"
    );
}

#[tokio::test]
async fn paths_out_of_the_share_root_are_denied() {
    let f = fixture();
    let (cx, _) = cx();
    for bad in ["../x.tar", "a/../../x.tar"] {
        let err = f
            .runtime
            .image_save(
                &cx,
                SaveImages {
                    references: vec!["busybox:latest".into()],
                    file: ArchiveFile {
                        path: bad.into(),
                        gzip: false,
                        overwrite: false,
                    },
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Denied(_)), "{bad}: {err:?}");
    }
}

#[tokio::test]
async fn a_save_dropped_midway_leaves_no_file() {
    let f = fixture();
    let (cx, rec) = cx();
    std::fs::write(f.share.path().join("huge.tar"), rootfs_tar(64, "cancel")).unwrap();
    f.runtime
        .image_import(
            &cx,
            ImportImage {
                kind: RuntimeKind::Docker,
                path: "huge.tar".into(),
                repository: "stevedore-huge".into(),
                tag: "1".into(),
            },
        )
        .await
        .unwrap();
    std::fs::remove_file(f.share.path().join("huge.tar")).unwrap();
    rec.0.lock().clear();
    let mut save = Box::pin(f.runtime.image_save(
        &cx,
        SaveImages {
            references: vec!["stevedore-huge:1".into()],
            file: ArchiveFile {
                path: "out/huge.tar.gz".into(),
                gzip: true,
                overwrite: false,
            },
        },
    ));
    // Drop the save once it has started writing (as a cancelled task does).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::select! {
            r = &mut save => panic!("save finished before it could be cancelled: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        let started = std::fs::read_dir(f.share.path().join("out"))
            .map(|d| d.count() > 0)
            .unwrap_or(false);
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "save never started writing");
    }
    drop(save);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(f.share.path().join("out"))
        .unwrap()
        .count()
        > 0
    {
        assert!(Instant::now() < deadline, "partial output left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn create_maps_ports_env_limits_and_a_share_volume() {
    let f = fixture();
    let (cx, _) = cx();
    f.runtime.image_pull(&cx, busybox()).await.unwrap();
    std::fs::create_dir_all(f.share.path().join("web")).unwrap();
    std::fs::write(
        f.share.path().join("web/index.html"),
        b"served from the share\n",
    )
    .unwrap();
    let name = format!("stevedore-create-{}", std::process::id());
    let port = 18000 + (std::process::id() % 1000) as u16;
    let spec = ContainerSpec {
        command: Some(vec![
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "80".into(),
            "-h".into(),
            "/www".into(),
        ]),
        working_dir: Some("/www".into()),
        environment: vec!["GREETING=hello".into()],
        dns: vec!["127.0.0.1".into()],
        expose_ports: vec![8080],
        hostname: Some("webbox".into()),
        ports: vec![PortBinding {
            host_port: port,
            container_port: 80,
            protocol: "tcp".into(),
        }],
        cpu_shares: Some(512),
        cpu_time_ms: Some(500),
        memory_bytes: Some(128 << 20),
        device_rules: vec!["c 81:* rw".into()],
        binds: vec![BindMount {
            host_path: "/web".into(),
            container_path: "/www".into(),
            read_only: true,
        }],
        new_volumes: vec!["/scratch".into()],
        autostart: true,
        labels: vec![("io.stevedore.test".into(), "yes".into())],
        ..base_spec(&name, "busybox:latest")
    };
    f.runtime.container_create(&cx, spec).await.unwrap();
    f.runtime
        .container_start(&cx, &ContainerRef::new(RuntimeKind::Docker, name.clone()))
        .await
        .unwrap();
    let inspect: serde_json::Value = serde_json::from_str(
        &f.runtime
            .container_inspect(&cx, &ContainerRef::new(RuntimeKind::Docker, name.clone()))
            .await
            .unwrap(),
    )
    .unwrap();
    let host = &inspect["HostConfig"];
    assert_eq!(host["CpuShares"], 512);
    assert_eq!(host["CpuQuota"], 50_000);
    assert_eq!(host["CpuPeriod"], 100_000);
    assert_eq!(host["Memory"], 128 << 20);
    assert_eq!(host["RestartPolicy"]["Name"], "always");
    assert_eq!(host["DeviceCgroupRules"][0], "c 81:* rw");
    assert_eq!(
        host["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    // The engine binds a staging folder pinned to the share's `web`, never
    // the user's path itself: the same directory, under another name.
    let bind = host["Binds"][0].as_str().unwrap();
    let source = bind
        .strip_suffix(":/www:ro")
        .expect("a read-only bind at /www");
    assert!(
        !source.starts_with(&*f.share.path().to_string_lossy()),
        "{bind}"
    );
    let same_dir = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    };
    assert_eq!(
        same_dir(std::path::Path::new(source)),
        same_dir(&f.share.path().join("web"))
    );
    assert_eq!(inspect["Config"]["Hostname"], "webbox");
    assert!(inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("GREETING=hello")));
    // The published port serves the file from the share.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/index.html")).await {
            break resp.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "port {port} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body, "served from the share\n");
    assert_eq!(
        exec(&f.api, &name, &["sh", "-c", "echo $GREETING"])
            .await
            .trim(),
        "hello"
    );
    f.runtime
        .container_remove(
            &cx,
            RemoveContainer {
                container: ContainerRef::new(RuntimeKind::Docker, name),
                force: true,
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn export_then_import_keeps_files_and_settings() {
    let f = fixture();
    let (cx, _) = cx();
    f.runtime.image_pull(&cx, busybox()).await.unwrap();
    let name = format!("stevedore-export-{}", std::process::id());
    let spec = ContainerSpec {
        command: Some(vec!["sleep".into(), "3600".into()]),
        environment: vec!["COLOUR=teal".into()],
        cpu_shares: Some(256),
        memory_bytes: Some(96 << 20),
        ..base_spec(&name, "busybox:latest")
    };
    f.runtime.container_create(&cx, spec).await.unwrap();
    f.runtime
        .container_start(&cx, &ContainerRef::new(RuntimeKind::Docker, name.clone()))
        .await
        .unwrap();
    exec(
        &f.api,
        &name,
        &["sh", "-c", "echo written-inside > /data.txt"],
    )
    .await;
    for (path, gzip) in [("c/c.tar", false), ("c/c.tgz", true)] {
        f.runtime
            .container_export(
                &cx,
                ExportContainer {
                    container: ContainerRef::new(RuntimeKind::Docker, name.clone()),
                    file: ArchiveFile {
                        path: path.into(),
                        gzip,
                        overwrite: false,
                    },
                },
            )
            .await
            .unwrap();
        let config: serde_json::Value = serde_json::from_str(
            &f.runtime
                .archive_config(&cx, path.into())
                .await
                .unwrap()
                .expect("config recorded"),
        )
        .unwrap();
        assert_eq!(config["format"], "stevedore-container/1");
        assert_eq!(config["create"]["name"], name);
        assert_eq!(
            config["create"]["command"],
            serde_json::json!(["sleep", "3600"])
        );
        assert!(config["create"]["environment"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("COLOUR=teal")));
        assert_eq!(config["create"]["resource"]["limit"]["cpuweight"], 256);
        assert_eq!(config["create"]["resource"]["limit"]["memory"], "96m");
        let repo = format!("stevedore-imported-{}", gzip);
        f.runtime
            .image_import(
                &cx,
                ImportImage {
                    kind: RuntimeKind::Docker,
                    path: path.into(),
                    repository: repo.clone(),
                    tag: "1".into(),
                },
            )
            .await
            .unwrap();
        let copy = format!("{name}-copy-{gzip}");
        let spec = ContainerSpec {
            command: Some(vec!["sleep".into(), "3600".into()]),
            ..base_spec(&copy, &format!("{repo}:1"))
        };
        f.runtime.container_create(&cx, spec).await.unwrap();
        f.runtime
            .container_start(&cx, &ContainerRef::new(RuntimeKind::Docker, copy.clone()))
            .await
            .unwrap();
        assert_eq!(
            exec(&f.api, &copy, &["cat", "/data.txt"]).await.trim(),
            "written-inside"
        );
        let root = exec(&f.api, &copy, &["ls", "-a", "/"]).await;
        assert!(
            !root.contains(".stevedore"),
            "config entry must not land in the rootfs: {root}"
        );
        f.runtime
            .container_remove(
                &cx,
                RemoveContainer {
                    container: ContainerRef::new(RuntimeKind::Docker, copy),
                    force: true,
                },
            )
            .await
            .unwrap();
    }
    f.runtime
        .container_remove(
            &cx,
            RemoveContainer {
                container: ContainerRef::new(RuntimeKind::Docker, name),
                force: true,
            },
        )
        .await
        .unwrap();
}

/// A spec with every optional setting left to the image.
fn base_spec(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec::new(RuntimeKind::Docker, name, image)
}
