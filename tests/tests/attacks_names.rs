//! Attacks on names (issue 26, items 2, 3, 7b and the network names): a
//! non-admin (`bob`, the default policy) on the real server, the real
//! engine and the local registries tries to give someone else's image name
//! new content, to reach a registry the policy does not list by naming it
//! in the image, to borrow configured registry credentials, and to use an
//! image another user pulled with credentials. Each test asserts the
//! precise non-effect: the image id behind the name, the registry's
//! catalogue, what the plugin got.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{docker, docker_ok, hash_password, unique, Client, Options, Server};

const PLUGINS: &[&str] = &["container_import", "image_push", "image_download", "create"];

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// A server with `bob` and `alice` (non-admins), the two test registries
/// (`local` open, `secure` with its password configured), and `policy`
/// lines under `[policy.default]`, then `extra`.
async fn setup(plugins: &[&str], policy: &str) -> (Server, Client, Client) {
    setup_with(plugins, policy, "").await
}

async fn setup_with(plugins: &[&str], policy: &str, extra: &str) -> (Server, Client, Client) {
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n\n[users.alice]\npassword_hash = \"{}\"\n\n\
         [registries.local]\nurl = \"http://{}\"\n\n\
         [registries.secure]\nurl = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\n\n\
         [policy.default]\n{policy}\n\n{extra}\n",
        hash_password("bob-pw"),
        hash_password("alice-pw"),
        env("STEVEDORE_TEST_REGISTRY"),
        env("STEVEDORE_TEST_AUTH_REGISTRY"),
        env("STEVEDORE_TEST_AUTH_USER"),
        env("STEVEDORE_TEST_AUTH_PASSWORD"),
    );
    let server = Server::start(Options::with_plugins(plugins).test_engine().config(&config)).await;
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let alice = server.client();
    assert_eq!(alice.login("alice", "alice-pw").await.status, 200);
    docker(&["pull", "-q", "busybox:latest"]);
    (server, bob, alice)
}

/// Wait for a task's end; returns it.
async fn ended(c: &Client, id: i64) -> Value {
    c.wait_until(id, Duration::from_secs(120), |t| {
        t["state"] == "completed" || t["state"] == "error"
    })
    .await
    .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"))
}

/// Submit; a 403 at submit or a task ending in `error` is a refusal
/// (returns its message), a completed task is not (returns `None`).
async fn refusal(c: &Client, category: &str, params: &str) -> Option<String> {
    let r = c.submit(category, params).await;
    if r.status == 403 {
        return Some(r.body["error"]["message"].to_string());
    }
    assert_eq!(r.status, 200, "{category}: {:?}", r.body);
    let id = r.body["id"].as_i64().expect("a task id");
    let t = ended(c, id).await;
    (t["state"] == "error").then(|| t["detail_state"].to_string())
}

/// The image id a name points to, or `None`.
fn image_id(reference: &str) -> Option<String> {
    docker_ok(&["image", "inspect", reference])
        .then(|| docker(&["image", "inspect", "-f", "{{.Id}}", reference]))
}

/// A busybox root filesystem with a marker file, as a tar at `out`.
fn rootfs_tar(out: &Path, marker: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for link in ["sh", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(link)).unwrap();
    }
    std::fs::write(root.join("marker"), marker).unwrap();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let ok = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar");
}

/// A name the admin made: `reference` tagged on a fresh image of its own.
fn admins_image(reference: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("admin.tar");
    rootfs_tar(&tar, &format!("admin's {reference}"));
    docker(&["import", tar.to_str().unwrap(), reference]);
    image_id(reference).unwrap()
}

fn bobs_folder(server: &Server) -> PathBuf {
    server.data_dir().join("share/bob")
}

fn cleanup(containers: &[&str], images: &[&str]) {
    for c in containers {
        let _ = docker_ok(&["rm", "-f", c]);
    }
    for i in images {
        let _ = docker_ok(&["rmi", "-f", i]);
    }
}

#[tokio::test]
async fn import_cannot_retag_anothers_image() {
    let (server, bob, _) = setup(PLUGINS, "").await;
    let victim = unique("victim-import");
    let reference = format!("{victim}:latest");
    let before = admins_image(&reference);
    rootfs_tar(&bobs_folder(&server).join("evil.tar"), "bob's files");
    let name = unique("bobimport");
    let params = json!({"type": "docker", "name": name, "path": "evil.tar",
        "image": victim, "tag": "latest", "command": ["sleep", "60"]});
    let refused = refusal(&bob, "container_import", &params.to_string()).await;
    let after = image_id(&reference);
    cleanup(&[&name], &[&reference]);
    assert!(
        refused.is_some(),
        "bob's import naming {reference} completed"
    );
    assert_eq!(after.as_deref(), Some(before.as_str()), "{reference} moved");
    stevedore_e2e::report!(
        "attacks_names: container_import naming another's image refused ({}); its id unchanged",
        refused.unwrap()
    );
}

/// `docker save` of a fresh image of bob's, whose manifest names `claims`.
fn archive_claiming(out: &Path, claims: &str) {
    let dir = tempfile::tempdir().unwrap();
    let own = unique("bobsaved");
    let tar = dir.path().join("rootfs.tar");
    rootfs_tar(&tar, "bob's saved files");
    docker(&["import", tar.to_str().unwrap(), &format!("{own}:1")]);
    let saved = dir.path().join("saved.tar");
    docker(&["save", "-o", saved.to_str().unwrap(), &format!("{own}:1")]);
    docker(&["rmi", &format!("{own}:1")]);
    let mut input = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut output = tar::Builder::new(std::fs::File::create(out).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let mut header = entry.header().clone();
        if path == Path::new("manifest.json") {
            let mut m: Value = serde_json::from_slice(&data).unwrap();
            m[0]["RepoTags"] = json!([claims]);
            data = serde_json::to_vec(&m).unwrap();
        }
        if path == Path::new("repositories") {
            let (repo, tag) = claims.rsplit_once(':').unwrap();
            let id = serde_json::from_slice::<Value>(&data).unwrap();
            let layer = id.as_object().unwrap().values().next().unwrap()["1"].clone();
            data = serde_json::to_vec(&json!({repo: {tag: layer}})).unwrap();
        }
        header.set_size(data.len() as u64);
        output
            .append_data(&mut header, &path, data.as_slice())
            .unwrap();
    }
    output.finish().unwrap();
}

#[tokio::test]
async fn archive_repotags_cannot_replace() {
    let (server, bob, _) = setup(PLUGINS, "").await;
    let reference = format!("{}:latest", unique("victim-load"));
    let before = admins_image(&reference);
    archive_claiming(&bobs_folder(&server).join("saved.tar"), &reference);
    let name = unique("bobload");
    let own = unique("bobown");
    let params = json!({"type": "docker", "name": name, "path": "saved.tar",
        "image": own, "tag": "1", "command": ["sleep", "60"]});
    let outcome = refusal(&bob, "container_import", &params.to_string()).await;
    let after = image_id(&reference);
    cleanup(&[&name], &[&reference, &format!("{own}:1")]);
    assert_eq!(
        after.as_deref(),
        Some(before.as_str()),
        "the archive's RepoTags moved {reference} (import: {outcome:?})"
    );
    stevedore_e2e::report!(
        "attacks_names: an archive whose RepoTags name another's image loaded without its names ({outcome:?}); the name's id unchanged"
    );
}

#[tokio::test]
async fn push_tag_cannot_replace() {
    let (_server, bob, _) = setup(PLUGINS, "").await;
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let repo = format!("{registry}/stevedore/{}", unique("victim-push"));
    let reference = format!("{repo}:1");
    let before = admins_image(&reference);
    let params = json!({"image": "busybox", "tag": "latest", "newImage": repo,
        "newTag": "1", "registry": registry});
    let refused = refusal(&bob, "image_push", &params.to_string()).await;
    let after = image_id(&reference);
    cleanup(&[], &[&reference]);
    assert!(refused.is_some(), "bob's push retagged {reference}");
    assert_eq!(after.as_deref(), Some(before.as_str()), "{reference} moved");
    stevedore_e2e::report!(
        "attacks_names: image_push's tag over another's image refused ({}); its id unchanged",
        refused.unwrap()
    );
}

#[tokio::test]
async fn registry_in_image_name_is_checked() {
    let (_server, bob, _) = setup(PLUGINS, "registries = [\"dockerhub\"]").await;
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let repo = stevedore_e2e::push_noise_image("names-pull", 1, &["1"]);
    let reference = format!("{registry}/{repo}:1");
    assert!(image_id(&reference).is_none());
    let params =
        json!({"repository": "dockerhub", "image": format!("{registry}/{repo}"), "tag": "1"});
    let refused = refusal(&bob, "image_download", &params.to_string()).await;
    let pulled = image_id(&reference);
    cleanup(&[], &[&reference]);
    assert!(
        refused.is_some(),
        "bob pulled from {registry} with repository dockerhub"
    );
    assert!(pulled.is_none(), "the pull reached {registry}");
    // `create` pulls a missing image: the same check.
    let name = unique("bobcreate");
    let params = json!({"type": "docker", "name": name, "repository": "dockerhub",
        "image": format!("{registry}/{repo}"), "tag": "1", "command": ["sleep", "60"]});
    let refused_create = refusal(&bob, "create", &params.to_string()).await;
    let pulled = image_id(&reference);
    cleanup(&[&name], &[&reference]);
    assert!(
        refused_create.is_some(),
        "bob's create pulled from {registry}"
    );
    assert!(pulled.is_none(), "create's pull reached {registry}");
    stevedore_e2e::report!(
        "attacks_names: a pull naming an unlisted registry in the image refused ({}), create's too; nothing pulled",
        refused.unwrap()
    );
}

/// The tags the open test registry holds for `repo` (empty: none).
async fn registry_tags(repo: &str) -> Vec<String> {
    let url = format!(
        "http://{}/v2/{repo}/tags/list",
        env("STEVEDORE_TEST_REGISTRY")
    );
    let r = reqwest::get(&url).await.unwrap();
    if !r.status().is_success() {
        return Vec::new();
    }
    let v: Value = r.json().await.unwrap();
    v["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn push_to_unlisted_registry_refused() {
    let (_server, bob, _) = setup(PLUGINS, "registries = [\"dockerhub\"]").await;
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let repo = format!("stevedore/{}", unique("names-push"));
    // `registry` says Docker Hub (allowed); the name says the local registry.
    let params = json!({"image": "busybox", "tag": "latest",
        "newImage": format!("{registry}/{repo}"), "newTag": "1",
        "username": "someone", "password": "anything"});
    let refused = refusal(&bob, "image_push", &params.to_string()).await;
    let tags = registry_tags(&repo).await;
    cleanup(&[], &[&format!("{registry}/{repo}:1")]);
    assert!(tags.is_empty(), "pushed to {registry}: {tags:?}");
    assert!(refused.is_some(), "bob's push to {registry} completed");
    stevedore_e2e::report!(
        "attacks_names: a push whose name is in an unlisted registry refused ({}); the registry has no such repository",
        refused.unwrap()
    );
}

/// Push a fresh image to the password registry, with the docker CLI
/// logged in under its own configuration folder; returns the reference.
fn push_to_secure(prefix: &str) -> String {
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().to_str().unwrap();
    let registry = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let reference = format!("{registry}/stevedore/{}:1", unique(prefix));
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("private.tar");
    rootfs_tar(&tar, "a private image");
    docker(&["import", tar.to_str().unwrap(), &reference]);
    let ok = Command::new("docker")
        .args(["--config", cfg, "login", "-u"])
        .arg(env("STEVEDORE_TEST_AUTH_USER"))
        .arg("--password-stdin")
        .arg(&registry)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .unwrap()
                .write_all(env("STEVEDORE_TEST_AUTH_PASSWORD").as_bytes())?;
            c.wait()
        })
        .unwrap()
        .success();
    assert!(ok, "docker login {registry}");
    let ok = Command::new("docker")
        .args(["--config", cfg, "push", &reference])
        .status()
        .unwrap()
        .success();
    assert!(ok, "docker push {reference}");
    docker(&["rmi", &reference]);
    reference
}

#[tokio::test]
async fn create_refuses_image_pulled_with_anothers_credentials() {
    let (_server, bob, alice) = setup(PLUGINS, "").await;
    let reference = push_to_secure("names-private");
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    let path = repo.split_once('/').unwrap().1;
    // alice pulls it with the configured credentials of `secure`.
    let params = json!({"repository": "private", "registry_name": "secure",
        "image": path, "tag": tag});
    let id = alice.submit_ok("image_download", &params.to_string()).await;
    let t = ended(&alice, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert!(image_id(&reference).is_some());
    // bob's create of the same name finds it present and would use it.
    let name = unique("bobprivate");
    let params = json!({"type": "docker", "name": name, "image": repo, "tag": tag,
        "command": ["sleep", "60"]});
    let refused = refusal(&bob, "create", &params.to_string()).await;
    let created = docker_ok(&["inspect", &name]);
    cleanup(&[&name], &[&reference]);
    assert!(
        refused.is_some() && !created,
        "bob created a container of the image alice pulled with credentials"
    );
    stevedore_e2e::report!(
        "attacks_names: create of an image another user pulled with credentials refused ({}); no container",
        refused.unwrap()
    );
}

#[tokio::test]
async fn credentials_not_lent_to_disallowed_user() {
    let (server, bob, _) = setup_with(
        &["credential_probe"],
        "registries = [\"local\"]",
        "[plugins.grants]\ncredential_probe = [\"task\", \"credentials\"]",
    )
    .await;
    let secure = env("STEVEDORE_TEST_AUTH_REGISTRY");
    let probe = json!({"registry": secure}).to_string();
    let lent = |t: Value| t["detail_state"].as_str().unwrap_or_default().to_string();
    let id = bob.submit_ok("credential_probe", &probe).await;
    let bobs = lent(ended(&bob, id).await);
    // The admin, whom the policy allows every registry, is lent them.
    let admin = server.admin().await;
    let id = admin.submit_ok("credential_probe", &probe).await;
    let admins = lent(ended(&admin, id).await);
    assert!(
        admins.contains(&format!("lent: {}", env("STEVEDORE_TEST_AUTH_USER"))),
        "{admins}"
    );
    assert!(
        bobs.contains("lent: nothing"),
        "the credentials of {secure} reached bob's plugin: {bobs}"
    );
    stevedore_e2e::report!(
        "attacks_names: configured credentials of a registry bob may not use not lent to his plugin ({bobs}); the admin's: {admins}"
    );
}

#[tokio::test]
async fn network_joined_by_id_prefix_is_checked() {
    // A catalog with one application whose default network is an external
    // one, named by the first 12 digits of the id of alice's network.
    let net = unique("alicenet");
    let id = docker(&[
        "network",
        "create",
        "--label",
        "io.stevedore.owner=alice",
        &net,
    ]);
    let prefix = &id[..12];
    let catalog = tempfile::tempdir().unwrap();
    let template = catalog.path().join("template/joiner");
    std::fs::create_dir_all(&template).unwrap();
    std::fs::write(
        catalog.path().join("list.json"),
        r#"[{"name": "joiner", "version": "1", "type": "app", "location": "template/joiner"}]"#,
    )
    .unwrap();
    std::fs::write(
        template.join("docker-compose.yml"),
        format!(
            "version: \"2\"\nservices:\n  solo:\n    image: busybox:latest\n    command: sleep 600\n\
             networks:\n  default:\n    external: true\n    name: \"{prefix}\"\n"
        ),
    )
    .unwrap();
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["application"])
            .test_engine()
            .config(&config)
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string()),
    )
    .await;
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    docker(&["pull", "-q", "busybox:latest"]);
    let app = unique("joiner");
    let params = json!({"template": "joiner", "name": app});
    let refused = refusal(&bob, "application", &params.to_string()).await;
    let attached = docker(&["network", "inspect", "-f", "{{len .Containers}}", &id]);
    let _ = docker_ok(&["rm", "-f", &format!("{app}_solo_1")]);
    let _ = docker_ok(&["network", "rm", &id]);
    assert_eq!(
        attached, "0",
        "bob's container joined alice's network {net}"
    );
    assert!(refused.is_some(), "bob's application installed on {prefix}");
    stevedore_e2e::report!(
        "attacks_names: joining another user's network by an id prefix refused ({}); nothing attached",
        refused.unwrap()
    );
}

/// The id the LXC image store records for `reference`, if any.
fn lxc_image_id(server: &Server, reference: &str) -> Option<String> {
    let key: String = reference
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let file = server
        .data_dir()
        .join("lxc/images")
        .join(key)
        .join("image.json");
    let record: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    record["id"].as_str().map(String::from)
}

#[tokio::test]
async fn lxc_import_cannot_replace_anothers_image() {
    let lxc_path = tempfile::Builder::new()
        .prefix("stevedore-lxc-")
        .tempdir()
        .unwrap();
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["image_download", "container_import"])
            .config(&config)
            .env("STEVEDORE_CATALOG", &env("STEVEDORE_TEST_CATALOG"))
            .env("STEVEDORE_LXC_PATH", &lxc_path.path().display().to_string())
            .env("STEVEDORE_LXC_BRIDGE", &env("STEVEDORE_TEST_LXC_BRIDGE"))
            .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET")),
    )
    .await;
    let admin = server.admin().await;
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let pull = json!({"type": "lxc", "repository": "qnap", "image": "busybox"});
    let id = admin.submit_ok("image_download", &pull.to_string()).await;
    let t = ended(&admin, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    let before = lxc_image_id(&server, "busybox:latest").expect("the admin's busybox:latest");
    rootfs_tar(&bobs_folder(&server).join("evil.tar"), "bob's files");
    let name = unique("boblxc");
    let params = json!({"type": "lxc", "name": name, "path": "evil.tar",
        "image": "busybox", "tag": "latest"});
    let refused = refusal(&bob, "container_import", &params.to_string()).await;
    let after = lxc_image_id(&server, "busybox:latest");
    let _ = Command::new("lxc-destroy")
        .arg("-P")
        .arg(lxc_path.path())
        .args(["-n", &name, "-f"])
        .output();
    assert_eq!(
        after.as_deref(),
        Some(before.as_str()),
        "busybox:latest moved"
    );
    assert!(
        refused.is_some(),
        "bob's LXC import over busybox:latest completed"
    );
    stevedore_e2e::report!(
        "attacks_names: LXC import over another's image name refused ({}); its id unchanged",
        refused.unwrap()
    );
}

#[tokio::test]
async fn container_logs_reach_only_the_owners_plugin() {
    let (_server, bob, alice) = setup_with(
        &["logs_probe"],
        "",
        "[plugins.grants]\nlogs_probe = [\"task\", \"containers\"]",
    )
    .await;
    // Runs to its end in the foreground, so its log is complete when `docker run` returns.
    let name = unique("alicelog");
    docker(&[
        "run",
        "--name",
        &name,
        "--label",
        "io.stevedore.owner=alice",
        "busybox:latest",
        "sh",
        "-c",
        "echo first; echo alice-only-line",
    ]);
    let probe = |tail: u32| json!({"type": "docker", "container": name, "tail": tail}).to_string();

    let id = alice.submit_ok("logs_probe", &probe(1)).await;
    let t = ended(&alice, id).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(
        t["detail_state"], "log: alice-only-line",
        "the last line only: {t}"
    );

    let refused = refusal(&bob, "logs_probe", &probe(10))
        .await
        .expect("bob's plugin read alice's container log");
    assert!(!refused.contains("alice-only-line"), "{refused}");
    assert!(refused.contains("denied"), "{refused}");
    docker(&["rm", "-f", &name]);
    stevedore_e2e::report!(
        "attacks_names: containers.logs lent to alice's plugin, refused to bob's: {refused}"
    );
}
