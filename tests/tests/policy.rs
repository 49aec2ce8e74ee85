//! User policies end to end (issue 14): an admin and a non-admin (`bob`,
//! the safe defaults) on the real server, plugins and test engine. What the
//! non-admin may not do is refused (403 at submit, or the task ends in
//! `error` with `denied`) and leaves nothing behind; the admin's same
//! requests work. Checks use the `docker` CLI against the same engine.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{docker, docker_ok, hash_password, unique, Client, Options, Server};

const PLUGINS: &[&str] = &["create", "image_export", "image_download", "privileged"];

fn exists(container: &str) -> bool {
    docker_ok(&["inspect", container])
}

struct Setup {
    server: Server,
    admin: Client,
    bob: Client,
}

impl Setup {
    async fn new() -> Setup {
        let config = format!(
            "[users.bob]\npassword_hash = \"{}\"\n\n[plugins.grants]\nprivileged = [\"task\", \"containers\"]\n",
            hash_password("bob-pw")
        );
        let server =
            Server::start(Options::with_plugins(PLUGINS).test_engine().config(&config)).await;
        let admin = server.admin().await;
        let bob = server.client();
        assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
        docker(&["pull", "-q", "busybox:latest"]);
        Setup { server, admin, bob }
    }

    fn share(&self) -> PathBuf {
        self.server.data_dir().join("share")
    }
}

/// Wait for a task's end; returns it.
async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

fn create_body(name: &str, extra: Value) -> String {
    let mut body = json!({
        "type": "docker", "repository": "dockerhub", "name": name,
        "image": "busybox", "tag": "latest", "command": ["sleep", "600"],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

#[tokio::test]
async fn non_admins_are_refused_what_admins_may_do() {
    let s = Setup::new().await;

    // GET me shows the effective policy.
    let me = s.bob.send(Method::GET, "me", None).await;
    assert_eq!(me.body["policy"]["privileged"], false, "{:?}", me.body);
    assert_eq!(me.body["policy"]["share"], "bob");
    let me = s.admin.send(Method::GET, "me", None).await;
    assert_eq!(me.body["policy"]["privileged"], true);

    // Privileged and device pass-through: 403 at submit, naming the rule.
    let name = unique("priv");
    let body = create_body(&name, json!({"privileged": true}));
    let r = s.bob.submit("create", &body).await;
    r.assert_error(403, Some("denied"));
    assert_eq!(
        r.body["error"]["message"],
        "privileged containers are not allowed for user bob"
    );
    let dev = create_body(
        &unique("dev"),
        json!({"resource": {"device": [["allow", "video4linux_(81)", "rw"]]}}),
    );
    s.bob
        .submit("create", &dev)
        .await
        .assert_error(403, Some("denied"));
    assert!(!exists(&name), "nothing created");

    // The same from the admin works. (This sandbox's runc may not start a
    // privileged container: the policy's part is that it is created so.)
    let id = s.admin.submit_ok("create", &body).await;
    let t = ended(&s.admin, id).await;
    assert!(
        !t["detail_state"].as_str().unwrap().contains("not allowed"),
        "{t}"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.Privileged}}", &name]),
        "true"
    );
    let id = s.admin.submit_ok("create", &dev).await;
    let t = ended(&s.admin, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    let admins = dev_name(&dev);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.DeviceCgroupRules}}",
            &admins
        ]),
        "[c 81:* rw]"
    );

    // A plugin asking for a privileged container on bob's behalf: denied by
    // the host, whatever the plugin says; nothing created.
    let probe = unique("probe");
    let params = json!({"name": probe, "image": "busybox:latest"}).to_string();
    let id = s.bob.submit_ok("privileged", &params).await;
    let t = ended(&s.bob, id).await;
    assert_eq!(t["state"], "error", "{t}");
    let detail = t["detail_state"].as_str().unwrap();
    assert!(
        detail.contains("denied")
            && detail.contains("privileged containers are not allowed for user bob"),
        "{t}"
    );
    assert!(!exists(&probe));
    // The admin's run of the same plugin creates it, labelled as the admin's.
    let id = s.admin.submit_ok("privileged", &params).await;
    assert_eq!(ended(&s.admin, id).await["state"], "completed");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.stevedore.owner\"}}",
            &probe
        ]),
        "admin"
    );

    // A host folder outside bob's share folder: refused, nothing created.
    std::fs::create_dir_all(s.share().join("alice")).unwrap();
    std::fs::create_dir_all(s.share().join("bob")).unwrap();
    std::os::unix::fs::symlink(s.share().join("alice"), s.share().join("bob/to-alice")).unwrap();
    for host in ["/../alice", "/to-alice/x"] {
        let vname = unique("vol");
        let body = create_body(
            &vname,
            json!({"volume": {"host": {host: {"bind": "/data", "ro": false}}}}),
        );
        let r = s.bob.submit("create", &body).await;
        if r.status == 200 {
            let t = ended(&s.bob, r.body["id"].as_i64().unwrap()).await;
            assert_eq!(t["state"], "error", "{host}: {t}");
        } else {
            assert!(r.status == 400 || r.status == 403, "{host}: {r:?}");
        }
        assert!(!exists(&vname), "{host}: nothing created");
    }
    // Inside it, a bind works and lands in bob's folder.
    let vname = unique("vol-ok");
    let body = create_body(
        &vname,
        json!({"volume": {"host": {"/data": {"bind": "/data", "ro": false}}}}),
    );
    let id = s.bob.submit_ok("create", &body).await;
    let t = ended(&s.bob, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    let source = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Source}}{{end}}",
        &vname,
    ]);
    // The engine binds a pinned staging folder holding bob's `data` itself.
    let meta = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    };
    assert_eq!(
        meta(std::path::Path::new(&source)),
        meta(&s.share().join("bob/data")),
        "{source}"
    );

    // Container routes: bob sees and acts on his own containers only.
    let listed = s.bob.send(Method::GET, "container", None).await;
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&vname.as_str()), "{names:?}");
    assert!(
        !names.contains(&admins.as_str()),
        "the admin's container is hidden: {names:?}"
    );
    s.bob
        .send(
            Method::PUT,
            &format!("container/docker/{admins}/stop"),
            None,
        )
        .await
        .assert_error(403, Some("denied"));
    s.bob
        .send(Method::DELETE, &format!("container/docker/{admins}"), None)
        .await
        .assert_error(403, Some("denied"));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &admins]),
        "true",
        "the admin's container still runs"
    );
    let r = s
        .bob
        .send(Method::PUT, &format!("container/docker/{vname}/stop"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The admin acts on anyone's.
    for c in [&name, &vname, &probe, &admins] {
        let r = s
            .admin
            .send(Method::DELETE, &format!("container/docker/{c}"), None)
            .await;
        assert_eq!(r.status, 200, "{c}: {:?}", r.body);
    }
}

fn dev_name(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn exports_land_in_the_users_share_folder() {
    let s = Setup::new().await;
    let body = |path: &str| {
        json!({"type": "docker", "image": "busybox", "tag": "latest", "path": path}).to_string()
    };
    let id = s.bob.submit_ok("image_export", &body("out/b.tar")).await;
    let t = ended(&s.bob, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert!(s.share().join("bob/out/b.tar").is_file());
    assert!(!s.share().join("out/b.tar").exists());

    let id = s.admin.submit_ok("image_export", &body("out/a.tar")).await;
    assert_eq!(ended(&s.admin, id).await["state"], "completed");
    assert!(s.share().join("out/a.tar").is_file());

    // Another user's folder is out of reach: by `..`, or through a link.
    std::fs::create_dir_all(s.share().join("alice")).unwrap();
    std::os::unix::fs::symlink(s.share().join("alice"), s.share().join("bob/alice")).unwrap();
    for path in ["../alice/x.tar", "alice/x.tar"] {
        let r = s.bob.submit("image_export", &body(path)).await;
        if r.status == 200 {
            let t = ended(&s.bob, r.body["id"].as_i64().unwrap()).await;
            assert_eq!(t["state"], "error", "{path}: {t}");
        } else {
            assert!(r.status == 400 || r.status == 403, "{path}: {r:?}");
        }
    }
    let in_alice: Vec<_> = std::fs::read_dir(s.share().join("alice"))
        .unwrap()
        .collect();
    assert!(in_alice.is_empty(), "nothing written in alice's folder");
}
