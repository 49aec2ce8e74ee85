//! The LXC backend through the runtime the server builds
//! (`stevedore::server::make_runtime`, the router over Docker and LXC),
//! against Debian's `lxc` tools and the test catalog of `cargo xtask test`
//! (STEVEDORE_TEST_CATALOG, STEVEDORE_TEST_LXC_BRIDGE, STEVEDORE_TEST_LXC_SUBNET).

use std::process::{Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use stevedore::plugins::bindings::PortBinding;
use stevedore::queue::{LogLevel, Reporter};
use stevedore::runtime::{
    ArchiveFile, Backends, CallContext, ContainerRef, ContainerSpec, ContainerState,
    DeleteContainer, Error, ExportContainer, ImageRef, ImportImage, PullRequest, RemoveContainer,
    RemoveImage, RuntimeKind, Source, StopContainer,
};
use tokio_util::sync::CancellationToken;

const LXC: RuntimeKind = RuntimeKind::Lxc;

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
    runtime: Backends,
    data: tempfile::TempDir,
    lxc: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.lxc.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            for args in [vec!["lxc-stop", "-k"], vec!["lxc-destroy"]] {
                let _ = Command::new(args[0])
                    .arg("-P")
                    .arg(self.lxc.path())
                    .args(["-n", &name])
                    .args(&args[1..])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn fixture_with(catalog: Option<String>) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let lxc = tempfile::tempdir().unwrap();
    let vars = [
        ("STEVEDORE_DATA_DIR", data.path().display().to_string()),
        ("STEVEDORE_LXC_PATH", lxc.path().display().to_string()),
        ("STEVEDORE_LXC_BRIDGE", env("STEVEDORE_TEST_LXC_BRIDGE")),
        ("STEVEDORE_LXC_SUBNET", env("STEVEDORE_TEST_LXC_SUBNET")),
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_string()),
    ];
    let config = stevedore::config::Config::load_with(|k| {
        if k == "STEVEDORE_CATALOG" {
            return catalog.clone();
        }
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let runtime = stevedore::server::make_runtime(&config).unwrap();
    Fixture { runtime, data, lxc }
}

fn fixture() -> Fixture {
    fixture_with(Some(env("STEVEDORE_TEST_CATALOG")))
}

fn cx() -> (CallContext, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let cx = CallContext {
        task_id: 1,
        user: "t".into(),
        cancel: CancellationToken::new(),
        reporter: recorder.clone(),
    };
    (cx, recorder)
}

fn spec(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec::new(LXC, name, image)
}

fn pull(image: &str) -> PullRequest {
    PullRequest {
        runtime: LXC,
        image: image.into(),
        tag: "latest".into(),
        source: Source::Qnap,
        credential: None,
    }
}

fn nft_rules(bridge: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", &format!("stevedore_{bridge}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.contains("200 OK").then_some(body)
}

#[tokio::test]
async fn lifecycle_list_restart_delete_and_rules_going_with_the_container() {
    let f = fixture();
    let (cx, progress) = cx();
    let info = f
        .runtime
        .images
        .image_pull(&cx, pull("ubuntu-trusty"))
        .await
        .unwrap();
    assert_eq!(info.tags, ["ubuntu-trusty:latest"]);
    assert!(info.id.starts_with("sha256:"));
    let percents: Vec<i32> = progress.0.lock().iter().map(|p| p.0).collect();
    assert!(
        percents.contains(&100) && percents.iter().any(|p| (1..100).contains(p)),
        "{percents:?}"
    );
    let listed = f.runtime.images.image_list(&cx, LXC).await.unwrap();
    assert_eq!(listed.len(), 1);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = spec("life", "ubuntu-trusty:latest");
    s.ports = vec![PortBinding {
        host_port: port,
        container_port: 80,
        protocol: "tcp".into(),
    }];
    assert_eq!(
        f.runtime
            .containers
            .container_create(&cx, s.clone())
            .await
            .unwrap(),
        "life"
    );
    match f.runtime.containers.container_create(&cx, s).await {
        Err(Error::Conflict(m)) => assert!(m.contains("already exists"), "{m}"),
        other => panic!("{other:?}"),
    }
    let entry = f
        .runtime
        .containers
        .container_entry(&cx, &ContainerRef::new(LXC, "life"))
        .await
        .unwrap();
    assert_eq!(entry.state, ContainerState::Stopped);
    assert_eq!(entry.image, "ubuntu-trusty:latest");
    assert_eq!(entry.tcp_port, [port]);
    assert_eq!(entry.kind, "lxc");
    f.runtime
        .containers
        .container_start(&cx, &ContainerRef::new(LXC, "life"))
        .await
        .unwrap();
    let list = f.runtime.containers.container_list(&cx, LXC).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, ContainerState::Running);
    let ips = list[0].ipaddress.clone().unwrap();
    assert_eq!(ips.len(), 1, "one address on the bridge: {ips:?}");
    let ip = ips[0].clone();
    let body = wait_for("httpd through the mapped port", || http_get(port)).await;
    assert!(body.contains("hello from stevedore lxc"));
    let bridge = env("STEVEDORE_TEST_LXC_BRIDGE");
    let rule = format!("tcp dport {port} dnat to {ip}:80");
    assert!(nft_rules(&bridge).contains(&rule), "{}", nft_rules(&bridge));

    let inspect: serde_json::Value = serde_json::from_str(
        &f.runtime
            .containers
            .container_inspect(&cx, &ContainerRef::new(LXC, "life"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(inspect["State"]["Running"], true);

    // An uncompressed export of the running container: settings first, then config and rootfs.
    let export = || ExportContainer {
        container: ContainerRef::new(LXC, "life"),
        file: ArchiveFile {
            path: "out/life.tar".into(),
            gzip: false,
            overwrite: false,
        },
    };
    let size = f
        .runtime
        .containers
        .container_export(&cx, export())
        .await
        .unwrap();
    let file = f.data.path().join("share/out/life.tar");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
    let recorded: serde_json::Value = serde_json::from_str(
        &f.runtime
            .containers
            .archive_config(&cx, "out/life.tar".into())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(recorded["create"]["network"]["port"][0][0], port);
    assert_eq!(recorded["create"]["type"], "lxc");
    let listing = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.lines().any(|l| l == "rootfs/bin/busybox"),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l == "config"), "{listing}");
    match f.runtime.containers.container_export(&cx, export()).await {
        Err(Error::Conflict(m)) => assert!(m.contains("force"), "{m}"),
        other => panic!("{other:?}"),
    }
    let entry = f
        .runtime
        .containers
        .container_entry(&cx, &ContainerRef::new(LXC, "life"))
        .await
        .unwrap();
    assert_eq!(
        entry.state,
        ContainerState::Running,
        "thawed after the export"
    );

    f.runtime
        .containers
        .container_restart(&cx, StopContainer::new(ContainerRef::new(LXC, "life"), 5))
        .await
        .unwrap();
    let entry = f
        .runtime
        .containers
        .container_entry(&cx, &ContainerRef::new(LXC, "life"))
        .await
        .unwrap();
    assert_eq!(entry.state, ContainerState::Running);
    assert_eq!(
        entry.ipaddress.as_deref(),
        Some(std::slice::from_ref(&ip)),
        "the address is kept"
    );
    wait_for("httpd after the restart", || http_get(port)).await;

    // The image is in use.
    assert!(matches!(
        f.runtime
            .images
            .image_remove(
                &cx,
                RemoveImage {
                    image: ImageRef::new(LXC, "ubuntu-trusty"),
                    force: false
                }
            )
            .await,
        Err(Error::Conflict(_))
    ));
    // A running container is removed only by force; delete stops it first.
    assert!(matches!(
        f.runtime
            .containers
            .container_remove(
                &cx,
                RemoveContainer {
                    container: ContainerRef::new(LXC, "life"),
                    force: false
                }
            )
            .await,
        Err(Error::Conflict(_))
    ));
    f.runtime
        .containers
        .container_delete(
            &cx,
            DeleteContainer {
                container: ContainerRef::new(LXC, "life"),
                remove_volumes: true,
            },
        )
        .await
        .unwrap();
    assert!(!f.lxc.path().join("life").exists());
    assert!(!nft_rules(&bridge).contains(&rule), "rules go with it");
    assert!(matches!(
        f.runtime
            .containers
            .container_entry(&cx, &ContainerRef::new(LXC, "life"))
            .await,
        Err(Error::NotFound(_))
    ));
    let removed = f
        .runtime
        .images
        .image_remove(
            &cx,
            RemoveImage {
                image: ImageRef::new(LXC, "ubuntu-trusty"),
                force: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed[0], "ubuntu-trusty:latest");
    assert!(f
        .runtime
        .images
        .image_list(&cx, LXC)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_hostile_import_creates_nothing_and_writes_nothing_outside() {
    let f = fixture();
    let (cx, _) = cx();
    let share = f.data.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let outside = f.data.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A symlink to a folder outside, then a file through it.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_path("escape").unwrap();
    h.set_link_name(&outside).unwrap();
    h.set_size(0);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("escape/planted").unwrap();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    std::fs::write(share.join("evil.tar"), b.into_inner().unwrap()).unwrap();
    assert_eq!(
        f.runtime
            .containers
            .archive_config(&cx, "evil.tar".into())
            .await
            .unwrap(),
        None
    );
    // The whole archive is checked before it is stored: the import is
    // refused naming the entry, so no image exists to create from.
    match f
        .runtime
        .containers
        .image_import(
            &cx,
            ImportImage {
                kind: LXC,
                path: "evil.tar".into(),
                repository: "evil".into(),
                tag: "latest".into(),
            },
        )
        .await
    {
        Err(e) => assert!(format!("{e:?}").contains("escape/planted"), "{e:?}"),
        Ok(id) => panic!("imported {id}"),
    }
    assert!(f
        .runtime
        .containers
        .container_create(&cx, spec("evil", "evil:latest"))
        .await
        .is_err());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!f.lxc.path().join("evil").exists());
    // Paths out of the share root are refused before any work.
    assert!(matches!(
        f.runtime
            .containers
            .image_import(
                &cx,
                ImportImage {
                    kind: LXC,
                    path: "../x.tar".into(),
                    repository: "x".into(),
                    tag: "latest".into()
                }
            )
            .await,
        Err(Error::Denied(_))
    ));
}

#[tokio::test]
async fn without_a_catalog_or_lxc_tools_the_errors_say_why() {
    let f = fixture_with(None);
    let (cx, _) = cx();
    match f
        .runtime
        .images
        .image_pull(&cx, pull("ubuntu-trusty"))
        .await
    {
        Err(Error::InvalidParams(m)) => assert!(m.contains("STEVEDORE_CATALOG"), "{m}"),
        other => panic!("{other:?}"),
    }
    match f
        .runtime
        .images
        .image_inspect(&cx, ImageRef::new(LXC, "nope"))
        .await
    {
        Err(Error::NotFound(m)) => assert_eq!(m, "no such image: nope"),
        other => panic!("{other:?}"),
    }
    // Docker calls still reach Docker (here: no engine).
    assert!(f
        .runtime
        .images
        .image_list(&cx, RuntimeKind::Docker)
        .await
        .is_err());
    // No LXC container here: the list is empty without running a tool.
    assert!(f
        .runtime
        .containers
        .container_list(&cx, LXC)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn autostart_containers_start_when_the_runtime_is_made_again() {
    let f = fixture();
    let (cx, _) = cx();
    f.runtime
        .images
        .image_pull(&cx, pull("busybox"))
        .await
        .unwrap();
    let mut s = spec("auto", "busybox:latest");
    s.autostart = true;
    f.runtime.containers.container_create(&cx, s).await.unwrap();
    let mut s = spec("manual", "busybox:latest");
    s.autostart = false;
    f.runtime.containers.container_create(&cx, s).await.unwrap();
    let state = |name: &str| {
        let out = Command::new("lxc-info")
            .arg("-P")
            .arg(f.lxc.path())
            .args(["-n", name, "-s", "-H"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(state("auto"), "STOPPED");
    // What a restarted server does: build the runtime again over the same folders.
    let again = fixture_again(&f);
    wait_for("the autostart container running", || {
        (state("auto") == "RUNNING").then_some(())
    })
    .await;
    assert_eq!(state("manual"), "STOPPED");
    drop(again);
}

/// The runtime `make_runtime` builds over `f`'s folders, as after a server restart.
fn fixture_again(f: &Fixture) -> Backends {
    let vars = [
        ("STEVEDORE_DATA_DIR", f.data.path().display().to_string()),
        ("STEVEDORE_LXC_PATH", f.lxc.path().display().to_string()),
        ("STEVEDORE_LXC_BRIDGE", env("STEVEDORE_TEST_LXC_BRIDGE")),
        ("STEVEDORE_LXC_SUBNET", env("STEVEDORE_TEST_LXC_SUBNET")),
        ("STEVEDORE_CATALOG", env("STEVEDORE_TEST_CATALOG")),
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_string()),
    ];
    let config = stevedore::config::Config::load_with(|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    stevedore::server::make_runtime(&config).unwrap()
}
