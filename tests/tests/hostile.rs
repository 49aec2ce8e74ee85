//! Hostile input through the real server (issue 10): every category that
//! takes a `path` is tried with `..`, absolute paths, NUL, over-long names
//! and links planted inside the share root that lead out of it; and
//! `container_import` (Docker and LXC) with crafted archives. Each must be
//! refused at submit (400 naming `path`) or end the task in `error` with a
//! clear detail, and nothing may be read or written outside the share root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{docker, docker_ok, unique, Client, Options, Server};

const CATEGORIES: &[&str] = &[
    "create",
    "image_export",
    "container_export",
    "container_import",
];
/// The server's cap on an archive's expanded size in these tests.
const CAP: u64 = 8 << 20;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// A server on the test engine, with LXC set up (a path of its own) and a
/// small archive cap; its share root and a folder outside it.
struct Setup {
    server: Server,
    client: Client,
    _lxc: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let lxc = tempfile::Builder::new()
            .prefix("stevedore-lxc-")
            .tempdir()
            .unwrap();
        let server = Server::start(
            Options::with_plugins(CATEGORIES)
                .test_engine()
                .env("STEVEDORE_MAX_EXPANDED_BYTES", &CAP.to_string())
                .env("STEVEDORE_LXC_PATH", &lxc.path().display().to_string())
                .env("STEVEDORE_LXC_BRIDGE", &env("STEVEDORE_TEST_LXC_BRIDGE"))
                .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET")),
        )
        .await;
        let client = server.admin().await;
        let outside = tempfile::Builder::new()
            .prefix("stevedore-outside-")
            .tempdir()
            .unwrap();
        std::fs::write(outside.path().join("secret"), b"outside").unwrap();
        Setup {
            server,
            client,
            _lxc: lxc,
            outside,
        }
    }

    fn share(&self) -> PathBuf {
        self.server.data_dir().join("share")
    }

    /// The folder outside still holds only `secret`, unchanged.
    fn assert_outside_untouched(&self) {
        assert!(!Path::new("/tmp/stevedore-evil").exists());
        let names: Vec<String> = std::fs::read_dir(self.outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["secret".to_string()], "written outside");
        assert_eq!(
            std::fs::read(self.outside.path().join("secret")).unwrap(),
            b"outside"
        );
    }

    async fn finished(&self, id: i64) -> Value {
        self.client
            .wait_until(id, Duration::from_secs(60), |t| {
                t["state"] == "completed" || t["state"] == "error"
            })
            .await
            .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
    }

    /// Submit (accepted: the task runs); returns its id.
    async fn submit(&self, category: &str, body: &Value) -> i64 {
        let answer = self.client.submit(category, &body.to_string()).await;
        assert_eq!(answer.status, 200, "{category} {body}: {:?}", answer.body);
        answer.body["id"].as_i64().unwrap()
    }

    /// Task `id` must end in `error` with a detail containing `words`.
    async fn ends_in_error(&self, id: i64, what: &str, words: &str) -> String {
        let t = self.finished(id).await;
        assert_eq!(t["state"], "error", "{what}: {t}");
        let detail = t["detail_state"].as_str().unwrap().to_string();
        assert!(
            detail.contains(words),
            "{what}: `{detail}` does not say `{words}`"
        );
        detail
    }
}

/// `body` with `path` (or the volume host path, for `create`) set to `path`.
fn with_path(category: &str, base: &Value, path: &str) -> Value {
    let mut body = base.clone();
    if category == "create" {
        body["volume"] = json!({"host": {path: {"bind": "/data", "ro": false}}});
    } else {
        body["path"] = json!(path);
    }
    body
}

#[tokio::test]
async fn hostile_paths_are_refused_and_nothing_leaves_the_share_root() {
    let s = Setup::start().await;
    let container = unique("hostile-src");
    docker(&["create", "--name", &container, "busybox:latest", "true"]);
    let bases: Vec<(&str, Value)> = vec![
        (
            "image_export",
            json!({"type": "docker", "image": "busybox", "tag": "latest", "force": true}),
        ),
        (
            "container_export",
            json!({"type": "docker", "name": container, "force": true}),
        ),
        (
            "container_import",
            json!({"type": "docker", "name": unique("hostile-imp")}),
        ),
        (
            "container_import",
            json!({"type": "lxc", "name": unique("hostile-imp")}),
        ),
        (
            "create",
            json!({"type": "docker", "name": unique("hostile-vol"), "image": "busybox", "tag": "latest"}),
        ),
    ];
    // Refused at submit: 400, the message naming the field.
    let long_name = "n".repeat(256);
    let long_path = "d/".repeat(2100);
    let at_submit = [
        "../secret",
        "a/../../secret",
        "..",
        "/etc/passwd",
        "//etc/passwd",
        "a\u{0}b",
        long_name.as_str(),
        long_path.as_str(),
        "",
        ".",
    ];
    let mut refused = 0;
    for (category, base) in &bases {
        for bad in at_submit {
            if *category == "create" && bad.starts_with('/') {
                continue; // a volume's `/web` is `<share>/web`, as Container Station shows it
            }
            let body = with_path(category, base, bad);
            let answer = s.client.submit(category, &body.to_string()).await;
            answer.assert_error(400, None);
            let message = answer.body["error"]["message"].as_str().unwrap();
            let field = if *category == "create" {
                "volume.host"
            } else {
                "path"
            };
            assert!(message.starts_with(field), "{category} {bad:?}: {message}");
            refused += 1;
        }
    }
    // Links planted inside the share root, leading out: as a parent folder
    // and as the last name; relative and absolute targets.
    let share = s.share();
    std::fs::create_dir_all(share.join("planted")).unwrap();
    std::os::unix::fs::symlink(s.outside.path(), share.join("planted/dir")).unwrap();
    std::os::unix::fs::symlink(
        Path::new("../../..").join(s.outside.path().strip_prefix("/").unwrap()),
        share.join("planted/reldir"),
    )
    .unwrap();
    std::os::unix::fs::symlink(s.outside.path().join("secret"), share.join("planted/file"))
        .unwrap();
    let through_links = [
        "planted/dir/secret",
        "planted/dir/new.tar",
        "planted/dir/sub/new.tar",
        "planted/reldir/secret",
        "planted/file",
    ];
    // Submitted all at once (they run side by side), then awaited.
    let mut tasks = Vec::new();
    for (category, base) in &bases {
        for bad in through_links {
            let body = with_path(category, base, bad);
            tasks.push((
                s.submit(category, &body).await,
                format!("{category} {body}"),
            ));
        }
    }
    let failed = tasks.len();
    for (id, what) in tasks {
        s.ends_in_error(id, &what, "leaves the share root").await;
    }
    s.assert_outside_untouched();
    assert!(!share.join("planted/dir").is_dir() || share.join("planted/dir").is_symlink());
    docker(&["rm", "-f", &container]);
    stevedore_e2e::report!(
        "hostile paths: {refused} refused at submit (400), {failed} tasks ended in error, \
         over {} category bodies; nothing outside the share root changed",
        bases.len()
    );
}

// ---- crafted archives ----

fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(
        header(name.as_bytes(), tar::EntryType::Regular, data.len() as u64).as_bytes(),
    );
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn link(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, target: &str) {
    let mut h = header(name.as_bytes(), kind, 0);
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
}

fn end(mut out: Vec<u8>) -> Vec<u8> {
    out.extend([0u8; 1024]);
    out
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Crafted archives: (file name, bytes, words the task's detail must hold).
fn hostile_archives(outside: &Path) -> Vec<(String, Vec<u8>, &'static str)> {
    use tar::EntryType::{Link as H, Symlink as S};
    let out = outside.display().to_string();
    let mut list = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, words: &'static str| {
        list.push((name.to_string(), bytes, words));
    };
    let mut t = Vec::new();
    file(&mut t, "etc/ok", b"x");
    file(&mut t, "../../../../../../../../tmp/stevedore-evil", b"x");
    add("dotdot.tar", end(t), "with `..`");
    let mut t = Vec::new();
    file(&mut t, &format!("{out}/abs-evil"), b"x");
    add("absolute.tar", end(t), "absolute name");
    let mut t = Vec::new();
    link(&mut t, "escape", S, &out);
    file(&mut t, "escape/through-symlink", b"x");
    add(
        "symlink-then-file.tar",
        end(t),
        "goes through the symbolic link",
    );
    let mut t = Vec::new();
    link(&mut t, "up", S, "../../../../../..");
    link(&mut t, "passwd", H, "up/etc/passwd");
    add(
        "symlink-then-hardlink.tar",
        end(t),
        "goes through the symbolic link",
    );
    let mut t = Vec::new();
    link(&mut t, "secret", H, &format!("{out}/secret"));
    add("hardlink-out.tar", end(t), "hard link");
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("path", format!("../../{out}/pax-evil").as_bytes())])
        .unwrap();
    b.append(&header(b"harmless", tar::EntryType::Regular, 1), &b"z"[..])
        .unwrap();
    add("pax-dotdot.tar", b.into_inner().unwrap(), "with `..`");
    // A base-256 size of 8 GiB, the stream cut after 4 KiB.
    let mut t = header(b"big", tar::EntryType::Regular, 8 << 30)
        .as_bytes()
        .to_vec();
    t.extend(vec![1u8; 4096]);
    add("base256-8gib.tar", t, "more than");
    // A PAX size of 9 GiB over a 1-byte entry.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", &b"9663676416"[..])])
        .unwrap();
    b.append(&header(b"pax-big", tar::EntryType::Regular, 1), &b"z"[..])
        .unwrap();
    add("pax-size-9gib.tar", b.into_inner().unwrap(), "more than");
    // Truncated gzip.
    let mut t = Vec::new();
    file(&mut t, "data", &vec![3u8; 300_000]);
    let whole = gz(&end(t));
    add(
        "truncated.tar.gz",
        whole[..whole.len() / 2].to_vec(),
        "truncated",
    );
    // A decompression bomb: 64 MiB of zeros, about 64 KiB on disk.
    let mut t = header(b"zeros", tar::EntryType::Regular, 64 << 20)
        .as_bytes()
        .to_vec();
    t.extend(vec![0u8; 64 << 20]);
    add("bomb.tar.gz", gz(&end(t)), "more than");
    // A bomb the headers do not announce: zeros after the end marker.
    let mut t = Vec::new();
    file(&mut t, "small", b"x");
    let mut t = end(t);
    t.extend(vec![0u8; 64 << 20]);
    add("bomb-after-end.tar.gz", gz(&t), "more than");
    add(
        "garbage.tar",
        b"this is not a tar archive at all".repeat(40),
        "not a tar archive",
    );
    list
}

#[tokio::test]
async fn hostile_archives_end_container_import_in_error_for_docker_and_lxc() {
    let s = Setup::start().await;
    let archives = hostile_archives(s.outside.path());
    let folder = s.share().join("hostile");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, bytes, _) in &archives {
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    let bomb = std::fs::metadata(folder.join("bomb.tar.gz")).unwrap().len();
    assert!(bomb < 1 << 20, "the bomb is small on disk: {bomb}");
    let mut tasks = Vec::new();
    for kind in ["docker", "lxc"] {
        for (file, _, words) in &archives {
            let name = unique("hostile-arc");
            let body = json!({"type": kind, "name": name, "path": format!("hostile/{file}")});
            let id = s.submit("container_import", &body).await;
            tasks.push((id, kind, file, *words, name));
        }
    }
    let mut tried = 0;
    for (id, kind, file, words, name) in tasks {
        let detail = s.ends_in_error(id, &format!("{kind} {file}"), words).await;
        assert!(
            detail.contains("path") || detail.contains(file.as_str()),
            "{kind} {file}: the detail names the archive: {detail}"
        );
        if kind == "docker" {
            let image = format!("{}:imported", name.to_ascii_lowercase());
            assert!(
                !docker_ok(&["image", "inspect", &image]),
                "{image} was created"
            );
        }
        println!("{kind} {file}: error: {detail}");
        tried += 1;
    }
    s.assert_outside_untouched();
    assert!(!Path::new("/tmp/stevedore-evil").exists());
    stevedore_e2e::report!(
        "hostile archives tried: {tried} ({} kinds x 2 runtimes), each ended in error, \
         nothing written outside",
        archives.len()
    );
}
