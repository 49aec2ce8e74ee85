//! Folder backups of LXC containers end to end (issue 31, item 5):
//! `volume_export` / `volume_import` with `type: lxc` through the real
//! server, plugins and Debian's `lxc` tools, on a running container of the
//! test catalog's busybox image (`Options::test_lxc`, as in `lxc.rs`).
//! Files written inside (odd names, links, modes, an owner other than root,
//! a larger file) round-trip byte for byte as tar and tar.gz, owners as the
//! container sees them; the container is FROZEN while read (LXC's own
//! state, in the task's log) and not with `live`; a folder holding files is
//! refused without `overwrite`; hostile archives are refused with nothing
//! written; another user's container is refused; a subtree leaving the
//! container's root is a 400 (words) or a task error (links) naming
//! `subtree`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::hostile_tar::{link_entry, raw_entry};
use stevedore_e2e::{hash_password, unique, Client, Options, Server};

struct Fixture {
    server: Server,
    alice: String,
    a: Client,
    b: Client,
    path: tempfile::TempDir,
    /// Alice's running container.
    c: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        stevedore_e2e::lxc_destroy_all(self.path.path());
    }
}

/// A server with both categories, its own LXC path, two non-admin users,
/// and a running busybox container of alice's.
async fn fixture() -> Fixture {
    let (alice, bob) = (unique("alice"), unique("bob"));
    let config = format!(
        "[users.{alice}]\npassword_hash = \"{}\"\n[users.{bob}]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    );
    let path = tempfile::Builder::new()
        .prefix("stevedore-lxc-")
        .tempdir()
        .unwrap();
    let server = Server::start(
        Options::with_plugins(&["volume_export", "volume_import", "create", "image_download"])
            .test_lxc(path.path())
            .config(&config),
    )
    .await;
    let a = server.client();
    assert_eq!(a.login(&alice, "alice-pw").await.status, 200);
    let b = server.client();
    assert_eq!(b.login(&bob, "bob-pw").await.status, 200);
    let c = unique("vbl");
    let made = a.create_lxc_busybox(&c).await;
    assert_eq!(made.status, 200, "{:?}\n{}", made.body, server.logs());
    let f = Fixture {
        server,
        alice,
        a,
        b,
        path,
        c,
    };
    if f.state() != "RUNNING" {
        f.lxc("start", &[]);
    }
    stevedore_e2e::eventually("the container runs", Duration::from_secs(30), || {
        (f.state() == "RUNNING").then_some(())
    })
    .await;
    f
}

impl Fixture {
    fn lxc(&self, verb: &str, args: &[&str]) -> String {
        stevedore_e2e::lxc(self.path.path(), verb, &self.c, args)
    }

    fn state(&self) -> String {
        self.lxc("info", &["-s", "-H"])
    }

    /// Run `script` in the container; its output.
    fn inside(&self, script: &str) -> String {
        self.lxc("attach", &["--", "/bin/sh", "-c", script])
    }

    fn share(&self) -> PathBuf {
        self.server.data_dir().join("share").join(&self.alice)
    }

    /// The task's log lines, joined.
    async fn log(&self, id: i64) -> String {
        let answer = self
            .a
            .send(Method::GET, &format!("background/{id}/log"), None)
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.body.to_string()
    }
}

/// Submit and wait for the end; the task.
async fn task(c: &Client, category: &str, params: &Value) -> Value {
    let id = c.submit_ok(category, &params.to_string()).await;
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

async fn completed(c: &Client, category: &str, params: Value) -> Value {
    let t = task(c, category, &params).await;
    assert_eq!(t["state"], "completed", "{category} {params}: {t}");
    t
}

/// The task ends in error, its detail containing `words`.
async fn refused(c: &Client, category: &str, params: Value, words: &str) {
    let t = task(c, category, &params).await;
    assert_eq!(t["state"], "error", "{category} {params}: {t}");
    let detail = t["detail_state"].as_str().unwrap_or_default();
    assert!(
        detail.contains(words),
        "{category} {params}: `{words}` not in {t}"
    );
}

/// Files with a symbolic link, a hard link, an empty file, a larger file of
/// noise, nested folders, odd names, modes and an owner other than root.
const FILL: &str = r#"set -e; mkdir -p /srv/data; cd /srv/data
mkdir -p 'dir with space/nested' empty-dir
printf 'hello\n' > plain.txt
dd if=/dev/urandom of=big.bin bs=1024 count=12288 2>/dev/null
: > empty
printf 'x' > 'dir with space/nested/-leading-dash'
printf 'u' > "$(printf 'n\303\244me-\342\202\254')"
printf 'q' > 'quote'"'"'s & $dollar'
ln -s plain.txt link-to-plain
ln -s /etc/passwd absolute-link
ln big.bin hard-link-to-big
chown 1000:1001 plain.txt 'dir with space'
chmod 0751 'dir with space'; chmod 0600 plain.txt; chmod 4755 empty
"#;

/// Every entry's name, type, mode, owner, size and link target, and every
/// regular file's sha256, sorted, as the container sees `dir`.
fn manifest(dir: &str) -> String {
    format!(
        r#"cd {dir} && find . | sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "L $f -> $(readlink "$f")";
  elif [ -d "$f" ]; then echo "D $f $(stat -c '%a %u:%g' "$f")";
  else echo "F $f $(stat -c '%a %u:%g %s %h' "$f") $(sha256sum < "$f" | cut -d' ' -f1)"; fi
done"#
    )
}

/// `(name, uid, gid)` of each entry of a plain tar.
fn tar_owners(bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_folder_round_trips_byte_for_byte_frozen_unless_live() {
    let f = fixture().await;
    f.inside(FILL);
    let before = f.inside(&manifest("/srv/data"));
    assert!(
        before.contains("L ./link-to-plain -> plain.txt"),
        "{before}"
    );
    assert!(
        before.contains("F ./plain.txt 600 1000:1001 6 1 "),
        "{before}"
    );
    assert!(before.contains(" 2 "), "the hard link: {before}");

    // tar, frozen while read: LXC's own state, in the task's log.
    let body = json!({"type": "lxc", "container": f.c, "subtree": "/srv/data", "path": "b/d.tar"});
    let t = completed(&f.a, "volume_export", body).await;
    assert!(
        t["detail_state"].as_str().unwrap().starts_with(&format!(
            "exported /srv/data of LXC container {} to /b/d.tar",
            f.c
        )),
        "{t}"
    );
    let log = f.log(t["id"].as_i64().unwrap()).await;
    assert!(
        log.contains(&format!(
            "container {} is FROZEN while /srv/data is read",
            f.c
        )),
        "{log}"
    );
    assert!(log.contains("thawed"), "{log}");
    assert_eq!(f.state(), "RUNNING");
    let tar = std::fs::read(f.share().join("b/d.tar")).unwrap();
    let owners = tar_owners(&tar);
    assert!(
        owners.iter().all(|(n, _, _)| n.starts_with("./")),
        "{owners:?}"
    );
    // The owners as the container sees them, not the host's shifted ids.
    assert!(
        owners.contains(&("./plain.txt".into(), 1000, 1001)),
        "{owners:?}"
    );
    assert!(owners.contains(&("./big.bin".into(), 0, 0)), "{owners:?}");

    // tar.gz, live: never frozen.
    let body = json!({"type": "lxc", "container": f.c, "subtree": "/srv/data",
                      "path": "b/d.tgz", "gzip": true, "live": true});
    let t = completed(&f.a, "volume_export", body).await;
    let log = f.log(t["id"].as_i64().unwrap()).await;
    assert!(!log.contains("FROZEN") && !log.contains("thawed"), "{log}");
    let gz = std::fs::read(f.share().join("b/d.tgz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip");

    // The folder goes; the import makes it again, equal to it.
    f.inside("rm -rf /srv/data");
    completed(
        &f.a,
        "volume_import",
        json!({"type": "lxc", "container": f.c, "subtree": "/srv/data", "path": "b/d.tar"}),
    )
    .await;
    assert_eq!(f.inside(&manifest("/srv/data")), before);
    // From the tar.gz into a new folder, made owned by the container's root.
    completed(
        &f.a,
        "volume_import",
        json!({"type": "lxc", "container": f.c, "subtree": "/srv/new/again", "path": "b/d.tgz"}),
    )
    .await;
    assert_eq!(f.inside(&manifest("/srv/new/again")), before);
    assert_eq!(
        f.inside("stat -c '%u:%g' /srv/new /srv/new/again"),
        "0:0\n0:0"
    );

    // A folder holding files is refused without `overwrite`, untouched;
    // with it, the archive is laid over what is there.
    f.inside("echo mine > /srv/data/plain.txt; echo extra > /srv/data/extra");
    let body = json!({"type": "lxc", "container": f.c, "subtree": "/srv/data", "path": "b/d.tar"});
    refused(&f.a, "volume_import", body.clone(), "holds files").await;
    assert_eq!(f.inside("cat /srv/data/plain.txt"), "mine");
    let mut over = body;
    over["overwrite"] = json!(true);
    completed(&f.a, "volume_import", over).await;
    assert_eq!(
        f.inside("cat /srv/data/plain.txt /srv/data/extra"),
        "hello\nextra"
    );
    // An existing archive is kept unless `overwrite`.
    refused(
        &f.a,
        "volume_export",
        json!({"type": "lxc", "container": f.c, "subtree": "/srv/data", "path": "b/d.tgz"}),
        "exists",
    )
    .await;
    assert_eq!(std::fs::read(f.share().join("b/d.tgz")).unwrap(), gz);
}

#[tokio::test]
async fn hostile_archives_are_refused_with_nothing_written() {
    let f = fixture().await;
    let share = f.share();
    std::fs::create_dir_all(&share).unwrap();
    let fine = raw_entry(b"ok.txt", tar::EntryType::Regular, b"fine");
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot.tar",
            raw_entry(b"../escaped.txt", tar::EntryType::Regular, b"x"),
            "`..`",
        ),
        (
            "absolute.tar",
            raw_entry(b"/tmp/escaped.txt", tar::EntryType::Regular, b"x"),
            "absolute",
        ),
        (
            "through-link.tar",
            [
                link_entry("out", tar::EntryType::Symlink, "/"),
                raw_entry(b"out/tmp/escaped.txt", tar::EntryType::Regular, b"x"),
            ]
            .concat(),
            "symbolic link",
        ),
        (
            "hard-link-out.tar",
            link_entry("passwd", tar::EntryType::Link, "../../../../etc/passwd"),
            "`..`",
        ),
        (
            "device.tar",
            raw_entry(b"sda", tar::EntryType::Block, b""),
            "device",
        ),
        ("junk.tar", Vec::new(), "not a tar"),
    ];
    for (file, entries, words) in hostile {
        let bytes = if file == "junk.tar" {
            b"this is no archive at all".to_vec()
        } else {
            let mut b = [fine.clone(), entries].concat();
            b.extend([0u8; 1024]);
            b
        };
        std::fs::write(share.join(file), &bytes).unwrap();
        refused(
            &f.a,
            "volume_import",
            json!({"type": "lxc", "container": f.c, "subtree": "/srv/hostile", "path": file}),
            words,
        )
        .await;
        assert_eq!(
            f.inside("test -e /srv/hostile && echo written || echo nothing"),
            "nothing",
            "{file}"
        );
    }
    assert!(!Path::new("/tmp/escaped.txt").exists());
    let rootfs = f.path.path().join(&f.c).join("rootfs");
    assert!(!rootfs.join("tmp/escaped.txt").exists());
    assert!(!rootfs.parent().unwrap().join("escaped.txt").exists());
}

#[tokio::test]
async fn another_users_container_and_escaping_subtrees_are_refused() {
    let f = fixture().await;
    f.inside("mkdir -p /srv/s && echo secret > /srv/s/s && ln -s / /srv/root-link && ln -s ../../../../../.. /srv/up");

    // Bob may neither read alice's container nor restore into it.
    refused(
        &f.b,
        "volume_export",
        json!({"type": "lxc", "container": f.c, "subtree": "/srv/s", "path": "stolen.tar"}),
        "was not created by user",
    )
    .await;
    let bobs = f.server.data_dir().join("share");
    assert!(
        !walk(&bobs).iter().any(|p| p.ends_with("stolen.tar")),
        "nothing written for bob"
    );
    completed(
        &f.a,
        "volume_export",
        json!({"type": "lxc", "container": f.c, "subtree": "/srv/s", "path": "s.tar"}),
    )
    .await;
    refused(
        &f.b,
        "volume_import",
        json!({"type": "lxc", "container": f.c, "subtree": "/srv/t", "path": "s.tar"}),
        "was not created by user",
    )
    .await;
    assert_eq!(
        f.inside("cat /srv/s/s; test -e /srv/t && echo written || echo nothing"),
        "secret\nnothing"
    );

    // Words leaving the root: 400 naming `subtree`, before any task.
    for subtree in ["/srv/../../etc", "srv/s", "/.."] {
        for category in ["volume_export", "volume_import"] {
            let body =
                json!({"type": "lxc", "container": f.c, "subtree": subtree, "path": "s.tar"});
            let answer = f.a.submit(category, &body.to_string()).await;
            answer.assert_error(400, None);
            stevedore_e2e::assert_names(&answer, "subtree");
        }
    }
    // Links leaving the root: the task ends in error naming `subtree`,
    // and nothing is read or written outside.
    for subtree in ["/srv/root-link/etc", "/srv/up/etc", "/srv/up"] {
        refused(
            &f.a,
            "volume_export",
            json!({"type": "lxc", "container": f.c, "subtree": subtree, "path": "out.tar"}),
            "subtree: ",
        )
        .await;
        refused(
            &f.a,
            "volume_import",
            json!({"type": "lxc", "container": f.c, "subtree": format!("{subtree}/x"), "path": "s.tar"}),
            "leaves the container's root",
        )
        .await;
    }
    assert!(!f.share().join("out.tar").exists());
    assert!(!Path::new("/etc/x").exists());
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}
