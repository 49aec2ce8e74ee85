//! Volume backups end to end (issue 31, item 5): `volume_export` and
//! `volume_import` through the real server, plugins and engine. A volume
//! with a symbolic link, a hard link, a big-ish file and odd names
//! round-trips byte for byte (tar and tar.gz); the containers using a volume
//! are paused while it is read (the engine's pause and unpause events), and
//! not with `live`; a volume holding files is refused without `overwrite`;
//! hostile archives are refused with nothing written; another user's volume
//! and a path outside the share are refused.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::hostile_tar::{link_entry, raw_entry};
use stevedore_e2e::{docker, docker_ok, hash_password, unique, Client, Options, Server};

// Shared with the `networks` and `volumes` files; this one uses a part.
#[allow(dead_code)]
mod engine_objects;
use engine_objects::{ok, Cleanup};

/// The owner label (`stevedore_contract::labels::OWNER`).
const OWNER: &str = "io.stevedore.owner";

struct Fixture {
    server: Server,
    alice: String,
    a: Client,
    b: Client,
}

/// A server with both categories and two non-admin users.
async fn fixture() -> Fixture {
    let (alice, bob) = (unique("alice"), unique("bob"));
    let config = format!(
        "[users.{alice}]\npassword_hash = \"{}\"\n[users.{bob}]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["volume_export", "volume_import"])
            .test_engine()
            .config(&config),
    )
    .await;
    let a = server.client();
    assert_eq!(a.login(&alice, "alice-pw").await.status, 200);
    let b = server.client();
    assert_eq!(b.login(&bob, "bob-pw").await.status, 200);
    docker(&["pull", "-q", "busybox:latest"]);
    Fixture {
        server,
        alice,
        a,
        b,
    }
}

impl Fixture {
    /// The user's share folder.
    fn share_of(&self, user: &str) -> PathBuf {
        self.server.data_dir().join("share").join(user)
    }
}

/// Submit and wait for the end; the task.
async fn task(c: &Client, category: &str, params: Value) -> Value {
    let id = c.submit_ok(category, &params.to_string()).await;
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

async fn completed(c: &Client, category: &str, params: Value) -> Value {
    let t = task(c, category, params.clone()).await;
    assert_eq!(t["state"], "completed", "{category} {params}: {t}");
    t
}

/// The task ends in error, its detail containing `words`.
async fn refused(c: &Client, category: &str, params: Value, words: &str) {
    let t = task(c, category, params.clone()).await;
    assert_eq!(t["state"], "error", "{category} {params}: {t}");
    let detail = t["detail_state"].as_str().unwrap_or_default();
    assert!(
        detail.contains(words),
        "{category} {params}: `{words}` not in {t}"
    );
}

/// Run `script` in busybox with `volume` at `/v`; its output.
fn in_volume(volume: &str, script: &str) -> String {
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/v"),
        "busybox:latest",
        "sh",
        "-c",
        script,
    ])
}

/// Files with a symbolic link, a hard link, an empty file, a big-ish file
/// of noise, nested folders, odd names and modes.
const FILL: &str = r#"set -e; cd /v
mkdir -p 'dir with space/nested' empty-dir
printf 'hello\n' > plain.txt
dd if=/dev/urandom of=big.bin bs=1M count=24 2>/dev/null
: > empty
printf 'x' > 'dir with space/nested/-leading-dash'
printf 'ü' > "$(printf 'n\303\244me-\342\202\254')"
printf 'long' > "$(printf 'l%.0s' $(seq 1 200))"
ln -s plain.txt link-to-plain
ln -s /etc/passwd absolute-link
ln big.bin hard-link-to-big
chmod 0751 'dir with space'; chmod 0600 plain.txt; chmod 4755 empty
"#;

/// Every entry's name, type, mode, size and link target, and every regular
/// file's sha256, sorted: what must survive a round trip.
const MANIFEST: &str = r#"cd /v && find . | sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "L $f -> $(readlink "$f")";
  elif [ -d "$f" ]; then echo "D $f $(stat -c %a "$f")";
  else echo "F $f $(stat -c '%a %s %h' "$f") $(sha256sum < "$f" | cut -d' ' -f1)"; fi
done"#;

#[tokio::test]
async fn a_volume_round_trips_byte_for_byte_as_tar_and_tar_gz() {
    let f = fixture().await;
    let mut cleanup = Cleanup::default();
    let (v, restored, again) = (unique("vb-src"), unique("vb-restored"), unique("vb-again"));
    cleanup
        .volumes
        .extend([v.clone(), restored.clone(), again.clone()]);
    ok(&f.a, Method::POST, "volumes", Some(json!({"name": v}))).await;
    in_volume(&v, FILL);
    let before = in_volume(&v, MANIFEST);
    assert!(
        before.contains("L ./link-to-plain -> plain.txt"),
        "{before}"
    );
    assert!(before.contains(" 2 "), "the hard link: {before}");

    // tar, into the user's share folder.
    let t = completed(
        &f.a,
        "volume_export",
        json!({"volume": v, "path": "backups/v.tar"}),
    )
    .await;
    assert!(
        t["detail_state"]
            .as_str()
            .unwrap()
            .starts_with(&format!("exported volume {v} to /backups/v.tar")),
        "{t}"
    );
    let tar = f.share_of(&f.alice).join("backups/v.tar");
    let names = list_tar(&std::fs::read(&tar).unwrap());
    assert!(names.contains(&"./plain.txt".to_string()), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("./")), "{names:?}");

    // The volume goes; the import makes a new one, the user's, equal to it.
    docker(&["volume", "rm", &v]);
    completed(
        &f.a,
        "volume_import",
        json!({"volume": restored, "path": "backups/v.tar"}),
    )
    .await;
    assert_eq!(in_volume(&restored, MANIFEST), before);
    assert_eq!(
        docker(&[
            "volume",
            "inspect",
            "-f",
            &format!("{{{{index .Labels \"{OWNER}\"}}}}"),
            &restored
        ]),
        f.alice
    );

    // tar.gz, the same way.
    completed(
        &f.a,
        "volume_export",
        json!({"volume": restored, "path": "backups/v.tgz", "gzip": true}),
    )
    .await;
    let gz = std::fs::read(f.share_of(&f.alice).join("backups/v.tgz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip");
    assert!((gz.len() as u64) < std::fs::metadata(&tar).unwrap().len());
    completed(
        &f.a,
        "volume_import",
        json!({"volume": again, "path": "backups/v.tgz"}),
    )
    .await;
    assert_eq!(in_volume(&again, MANIFEST), before);

    // An existing file is kept unless `overwrite`.
    refused(
        &f.a,
        "volume_export",
        json!({"volume": again, "path": "backups/v.tgz"}),
        "exists",
    )
    .await;
    assert_eq!(
        std::fs::read(f.share_of(&f.alice).join("backups/v.tgz")).unwrap(),
        gz
    );
    completed(
        &f.a,
        "volume_export",
        json!({"volume": again, "path": "backups/v.tgz", "gzip": true, "overwrite": true}),
    )
    .await;

    // A volume holding files is refused without `overwrite`, untouched;
    // with it, the archive is laid over what is there.
    in_volume(&again, "echo mine > /v/plain.txt; echo extra > /v/extra");
    refused(
        &f.a,
        "volume_import",
        json!({"volume": again, "path": "backups/v.tar"}),
        "holds files",
    )
    .await;
    assert_eq!(in_volume(&again, "cat /v/plain.txt"), "mine");
    completed(
        &f.a,
        "volume_import",
        json!({"volume": again, "path": "backups/v.tar", "overwrite": true}),
    )
    .await;
    assert_eq!(
        in_volume(&again, "cat /v/plain.txt /v/extra"),
        "hello\nextra"
    );
    // No helper container is left behind (one dropped on a refusal is
    // removed in the background).
    let helpers = format!("label=io.stevedore.volume-helper={again}");
    stevedore_e2e::eventually("the helpers removed", Duration::from_secs(20), || {
        docker(&["ps", "-aq", "--filter", &helpers])
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Entry names of a plain tar.
fn list_tar(bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

/// The engine's pause and unpause events of `container` since `since`.
fn pause_events(container: &str, since: &str) -> Vec<String> {
    let until = docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    docker(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        &format!("container={container}"),
        "--filter",
        "event=pause",
        "--filter",
        "event=unpause",
        "--format",
        "{{.Action}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

#[tokio::test]
async fn the_containers_using_a_volume_are_paused_unless_live() {
    let f = fixture().await;
    let mut cleanup = Cleanup::default();
    let (v, c) = (unique("vb-busy"), unique("vb-user"));
    cleanup.volumes.push(v.clone());
    cleanup.containers.push(c.clone());
    ok(&f.a, Method::POST, "volumes", Some(json!({"name": v}))).await;
    in_volume(&v, "echo data > /v/f");
    docker(&[
        "run",
        "-d",
        "--name",
        &c,
        "--network",
        "none",
        "--label",
        &format!("{OWNER}={}", f.alice),
        "-v",
        &format!("{v}:/v"),
        "busybox:latest",
        "sleep",
        "600",
    ]);

    let since = docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    completed(
        &f.a,
        "volume_export",
        json!({"volume": v, "path": "paused.tar"}),
    )
    .await;
    assert_eq!(pause_events(&c, &since), ["pause", "unpause"]);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &c]),
        "running"
    );

    let since = docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    completed(
        &f.a,
        "volume_export",
        json!({"volume": v, "path": "live.tar", "live": true}),
    )
    .await;
    assert_eq!(pause_events(&c, &since), Vec::<String>::new());
    assert_eq!(
        list_tar(&std::fs::read(f.share_of(&f.alice).join("live.tar")).unwrap()),
        ["./", "./f"]
    );
}

#[tokio::test]
async fn hostile_archives_are_refused_with_nothing_written() {
    let f = fixture().await;
    let mut cleanup = Cleanup::default();
    let share = f.share_of(&f.alice);
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
            "device.tar",
            raw_entry(b"sda", tar::EntryType::Block, b""),
            "device",
        ),
        (
            "junk.tar",
            b"this is no archive at all".to_vec(),
            "not a tar",
        ),
    ];
    for (file, entries, words) in hostile {
        let mut bytes = [fine.clone(), entries].concat();
        if file != "junk.tar" {
            bytes.extend([0u8; 1024]);
        } else {
            bytes = b"this is no archive at all".to_vec();
        }
        std::fs::write(share.join(file), &bytes).unwrap();
        let v = unique("vb-hostile");
        cleanup.volumes.push(v.clone());
        refused(
            &f.a,
            "volume_import",
            json!({"volume": v, "path": file}),
            words,
        )
        .await;
        assert!(
            !docker_ok(&["volume", "inspect", &v]),
            "{file}: the new volume is not left behind"
        );
    }
    assert!(!share.join("escaped.txt").exists());
    assert!(!std::path::Path::new("/tmp/escaped.txt").exists());
}

#[tokio::test]
async fn another_users_volume_and_paths_outside_the_share_are_refused() {
    let f = fixture().await;
    let mut cleanup = Cleanup::default();
    let v = unique("vb-alices");
    cleanup.volumes.push(v.clone());
    ok(&f.a, Method::POST, "volumes", Some(json!({"name": v}))).await;
    in_volume(&v, "echo secret > /v/s");

    // Bob may neither read alice's volume nor restore into it.
    refused(
        &f.b,
        "volume_export",
        json!({"volume": v, "path": "stolen.tar"}),
        "was not created by user",
    )
    .await;
    std::fs::create_dir_all(f.share_of(&f.alice)).unwrap();
    refused(
        &f.b,
        "volume_import",
        json!({"volume": v, "path": "x.tar"}),
        "was not created by user",
    )
    .await;
    assert_eq!(in_volume(&v, "cat /v/s"), "secret");

    // Paths outside the share: 400 naming `path`, before any task.
    for path in ["/etc/x.tar", "../x.tar", "a/../../x.tar"] {
        for category in ["volume_export", "volume_import"] {
            let answer =
                f.a.submit(category, &json!({"volume": v, "path": path}).to_string())
                    .await;
            answer.assert_error(400, None);
            stevedore_e2e::assert_names(&answer, "path");
        }
    }
    // Alice's relative path lands in her own folder.
    completed(
        &f.a,
        "volume_export",
        json!({"volume": v, "path": "mine.tar"}),
    )
    .await;
    assert!(f.share_of(&f.alice).join("mine.tar").exists());
    assert!(!f.server.data_dir().join("share/mine.tar").exists());
}
