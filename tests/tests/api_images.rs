//! The image routes of `image.rst` and `POST container/docker/{id}/commit`
//! (`container.rst`), on the real `stevedore serve`, the test engine
//! (`DOCKER_HOST`) and the test registries: local listing, the registries'
//! search (a configured `[registries.x]` pointing at the open test
//! registry, an unreachable one, Docker Hub), inspect, tags, remove (and
//! 409 while a container uses the image), commit, bad input, and the
//! policy (bob can neither see, inspect, remove nor commit alice's).
//! Answers are checked key by key against the recorded ones.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    docker, docker_ok, env, free_port, hash_password, push_noise_image, unique, Client, Options,
    Server,
};

/// The owner label the server puts on a container it creates.
const OWNER: &str = "io.stevedore.owner";

use stevedore_e2e::shape::{assert_has, assert_shape, Kind, Kind::*};

/// `v` has every key of `recorded` with its type (and, when `exact`, no other).
fn assert_keys(what: &str, v: &Value, recorded: &[(&str, Kind)], exact: bool) {
    if exact {
        assert_shape(what, v, recorded)
    } else {
        assert_has(what, v, recorded)
    }
}

/// `GET image`'s envelope (recorded: `category`, `filterText`,
/// `qcsVersion`, `results`; ours adds `errors`).
const LISTING: &[(&str, Kind)] = &[
    ("category", Str),
    ("filterText", Str),
    ("qcsVersion", Str),
    ("results", Array),
    ("errors", Array),
];

/// A listed image as the `category=all` recording shows one.
const LISTED: &[(&str, Kind)] = &[
    ("arch", Str),
    ("description", Str),
    ("displayName", Str),
    ("displayNameLower", Str),
    ("downloading", Bool),
    ("icon", Str),
    ("installed", Bool),
    ("location", Str),
    ("name", Str),
    ("repository", Str),
    ("type", Str),
    ("version", Str),
];

/// A searched repository as the `category=dockerhub` recording shows one.
const SEARCHED: &[(&str, Kind)] = &[
    ("description", Str),
    ("downloading", Bool),
    ("installed", Bool),
    ("is_automated", Bool),
    ("is_official", Bool),
    ("location", Str),
    ("name", Str),
    ("repository", Str),
    ("star_count", Int),
    ("type", Str),
];

/// The inspect recording's keys that every engine answers.
const INSPECTED: &[(&str, Kind)] = &[
    ("Architecture", Str),
    ("Author", Str),
    ("Comment", Str),
    ("Config", Object),
    ("Created", Str),
    ("Id", Str),
    ("Os", Str),
    ("RepoDigests", StrArray),
    ("RepoTags", StrArray),
    ("RootFS", Object),
    ("Size", Int),
];

/// A name in a path segment: `/` as `%2F`.
fn enc(name: &str) -> String {
    name.replace('/', "%2F")
}

/// `alice` and `bob` (non-admins), the test registries as `local` and
/// `secure`, and `gone`: a registry nobody answers at.
fn config() -> String {
    format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n\n{}\n\
         [registries.gone]\nurl = \"http://127.0.0.1:{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw"),
        stevedore_e2e::registries_config(),
        free_port()
    )
}

async fn start() -> Server {
    Server::start(Options::default().test_engine().config(&config())).await
}

async fn login(server: &Server, user: &str) -> Client {
    let c = server.client();
    let a = c.login(user, &format!("{user}-pw")).await;
    assert_eq!(a.status, 200, "{user} login: {:?}", a.body);
    c
}

async fn get(c: &Client, path: &str) -> stevedore_e2e::Answer {
    c.send(Method::GET, path, None).await
}

/// The local Docker entries of `GET image` named `name`.
async fn local_named(c: &Client, name: &str) -> Vec<Value> {
    let a = get(c, "image?category=local&type=docker").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == name)
        .cloned()
        .collect()
}

/// Removes the test's containers and images, also when it fails.
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            docker_ok(&["rm", "-f", c]);
        }
        for i in &self.images {
            docker_ok(&["rmi", "-f", i]);
        }
    }
}

#[tokio::test]
async fn list_search_inspect_tags_and_remove() {
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let repo = push_noise_image("images", 1, &["1", "2"]);
    let local = format!("{registry}/{repo}");
    let mut cleanup = Cleanup {
        containers: Vec::new(),
        images: vec![format!("{local}:1"), format!("{local}:2")],
    };
    docker(&["pull", &format!("{local}:1")]);
    let server = start().await;
    let admin = server.admin().await;

    // Local: one entry per name and tag, in the recorded shape.
    let a = get(&admin, "image?category=local&type=docker").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_keys("GET image?category=local", &a.body, LISTING, true);
    assert_eq!(a.body["category"], "local");
    let mine = local_named(&admin, &local).await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_keys("a local image", &mine[0], LISTED, false);
    assert_eq!(mine[0]["version"], "1");
    assert_eq!(mine[0]["repository"], "local");
    assert_eq!(mine[0]["type"], "docker");
    assert_eq!(mine[0]["installed"], true);
    // `filter_text` keeps matching names only; the default category is `all`.
    let unique_part = repo.rsplit('/').next().unwrap();
    let a = get(&admin, &format!("image?filter_text={unique_part}")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["category"], "all");
    assert_eq!(a.body["filterText"], unique_part);
    for e in a.body["results"].as_array().unwrap() {
        assert!(
            e["name"].as_str().unwrap().contains(unique_part),
            "{e} does not match the filter"
        );
    }

    // The registries: `local` holds both tags; `gone` is an error entry.
    let started = Instant::now();
    let a = get(
        &admin,
        &format!("image?category=private&filter_text={unique_part}"),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_keys("GET image?category=private", &a.body, LISTING, true);
    let results = a.body["results"].as_array().unwrap();
    let found: Vec<&Value> = results.iter().filter(|e| e["name"] == repo).collect();
    assert_eq!(found.len(), 1, "{results:?}");
    assert_keys("a registry's repository", found[0], SEARCHED, false);
    assert_eq!(found[0]["registry"], "local");
    assert_eq!(found[0]["repository"], "private");
    assert_eq!(found[0]["tags"], json!(["1", "2"]));
    assert_eq!(found[0]["installed"], true);
    let errors = a.body["errors"].as_array().unwrap();
    let gone: Vec<&Value> = errors.iter().filter(|e| e["registry"] == "gone").collect();
    assert_eq!(gone.len(), 1, "{errors:?}");
    assert_eq!(gone[0]["error"]["reason"], "registry_unreachable");
    assert!(gone[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gone"));
    // One registry by name: no other registry asked.
    let a = get(
        &admin,
        &format!("image?category=private&registry_name=local&filter_text={unique_part}"),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["errors"], json!([]));
    assert_eq!(a.body["results"].as_array().unwrap().len(), 1);
    // Docker Hub cannot be reached from here: an error entry, quickly.
    let started = Instant::now();
    let a = get(&admin, "image?category=dockerhub&filter_text=busybox").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(started.elapsed() < Duration::from_secs(15));
    let errors = a.body["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["registry"] == "Docker Hub"),
        "{errors:?}"
    );

    // Bad queries name the field.
    for (query, field) in [
        ("category=kvm", "category"),
        ("type=kvm", "type"),
        ("category=private&registry_name=nope", "registry_name"),
    ] {
        let a = get(&admin, &format!("image?{query}")).await;
        a.assert_error(400, Some("invalid_params"));
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{query}: {message}");
    }

    // Inspect: Docker's own answer; 404 and 400 as JSON errors.
    let a = get(&admin, &format!("image/docker/{}/1/inspect", enc(&local))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_keys("image inspect", &a.body, INSPECTED, false);
    assert_eq!(a.body["RepoTags"], json!([format!("{local}:1")]));
    get(&admin, &format!("image/docker/{}/9/inspect", enc(&local)))
        .await
        .assert_error(404, Some("unknown_image"));
    let a = get(&admin, "image/kvm/busybox/latest/inspect").await;
    a.assert_error(400, Some("invalid_params"));
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("type"));
    let a = get(&admin, "image/docker/Bad%20Name/latest/inspect").await;
    a.assert_error(400, Some("invalid_params"));

    // Tags: the registry's, and which are local.
    let a = get(&admin, &format!("image/{}/tags?registry=local", enc(&repo))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_keys(
        "image tags",
        &a.body,
        &[
            ("installed", StrArray),
            ("name", Str),
            ("tags", StrArray),
            ("errors", Array),
        ],
        true,
    );
    assert_eq!(a.body["errors"], json!([]));
    assert_eq!(a.body["tags"], json!(["1", "2"]));
    assert_eq!(a.body["installed"], json!(["1"]));
    get(
        &admin,
        &format!("image/{}/tags?registry=local", enc(&format!("{repo}-none"))),
    )
    .await
    .assert_error(404, Some("unknown_image"));
    // A registry that cannot be asked: an error entry, no tags.
    let a = get(&admin, &format!("image/{}/tags?registry=gone", enc(&repo))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["tags"], json!([]));
    assert_eq!(a.body["errors"][0]["registry"], "gone");
    assert_eq!(
        a.body["errors"][0]["error"]["reason"],
        "registry_unreachable"
    );
    let a = get(
        &admin,
        &format!("image/{}/tags?registry=Docker%20Hub", enc(&repo)),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["errors"][0]["registry"], "Docker Hub");
    let a = get(&admin, &format!("image/{}/tags?registry=nope", enc(&repo))).await;
    a.assert_error(400, Some("invalid_params"));
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("registry"));

    // Remove: refused while a container uses the image, then done.
    let user = unique("images-user");
    docker(&["create", "--name", &user, &format!("{local}:1"), "sh"]);
    cleanup.containers.push(user.clone());
    let path = format!("image/local/docker/{}/1", enc(&local));
    admin
        .send(Method::DELETE, &path, None)
        .await
        .assert_error(409, Some("conflict"));
    docker(&["rm", &user]);
    let a = admin.send(Method::DELETE, &path, None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        a.body,
        json!({"action": "delete", "name": local, "state": "success", "type": "docker"})
    );
    get(&admin, &format!("image/docker/{}/1/inspect", enc(&local)))
        .await
        .assert_error(404, Some("unknown_image"));
    admin
        .send(Method::DELETE, &path, None)
        .await
        .assert_error(404, Some("unknown_image"));
    let a = admin
        .send(Method::DELETE, "image/remote/docker/busybox/latest", None)
        .await;
    a.assert_error(400, Some("invalid_params"));
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("repository"));
    // The shorter form removes `:latest`.
    docker(&["pull", &format!("{local}:2")]);
    docker(&["tag", &format!("{local}:2"), &format!("{local}:latest")]);
    cleanup.images.push(format!("{local}:latest"));
    let a = admin
        .send(
            Method::DELETE,
            &format!("image/local/docker/{}", enc(&local)),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(!docker_ok(&[
        "image",
        "inspect",
        &format!("{local}:latest")
    ]));
}

#[tokio::test]
async fn commit_is_the_callers_and_others_cannot_touch_it() {
    let registry = env("STEVEDORE_TEST_REGISTRY");
    let repo = push_noise_image("commit", 1, &["1"]);
    let base = format!("{registry}/{repo}:1");
    let container = unique("alice-box");
    let committed = unique("alice-img");
    let mut cleanup = Cleanup {
        containers: vec![container.clone()],
        images: vec![base.clone(), format!("{committed}:v1")],
    };
    docker(&["pull", &base]);
    // Alice's container, as the server labels the ones it creates for her.
    let id = docker(&[
        "create",
        "--name",
        &container,
        "--label",
        &format!("{OWNER}=alice"),
        &base,
        "sh",
    ]);
    let server = start().await;
    let admin = server.admin().await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let body =
        json!({"repository": committed, "tag": "v1", "author": "jj", "message": "hi"}).to_string();

    // Bob cannot commit alice's container.
    bob.send(
        Method::POST,
        &format!("container/docker/{id}/commit"),
        Some(&body),
    )
    .await
    .assert_error(403, Some("not_yours"));
    // Alice can: the recorded `{image_id}`.
    let a = alice
        .send(
            Method::POST,
            &format!("container/docker/{container}/commit"),
            Some(&body),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_keys("commit", &a.body, &[("image_id", Str)], true);
    let image_id = a.body["image_id"].as_str().unwrap().to_string();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    let inspected = get(&alice, &format!("image/docker/{committed}/v1/inspect")).await;
    assert_eq!(inspected.status, 200, "{:?}", inspected.body);
    assert_eq!(inspected.body["Id"], image_id);
    assert_eq!(inspected.body["Author"], "jj");
    assert_eq!(inspected.body["Comment"], "hi");

    // The image is alice's: bob neither sees, inspects nor removes it.
    assert_eq!(local_named(&alice, &committed).await.len(), 1);
    assert_eq!(local_named(&admin, &committed).await.len(), 1);
    assert!(local_named(&bob, &committed).await.is_empty());
    get(&bob, &format!("image/docker/{committed}/v1/inspect"))
        .await
        .assert_error(403, Some("not_yours"));
    let path = format!("image/local/docker/{committed}/v1");
    bob.send(Method::DELETE, &path, None)
        .await
        .assert_error(403, Some("not_yours"));
    // Nor can bob give the name new content by committing his own container.
    let bobs = unique("bob-box");
    docker(&[
        "create",
        "--name",
        &bobs,
        "--label",
        &format!("{OWNER}=bob"),
        &base,
        "sh",
    ]);
    cleanup.containers.push(bobs.clone());
    bob.send(
        Method::POST,
        &format!("container/docker/{bobs}/commit"),
        Some(&body),
    )
    .await
    .assert_error(403, Some("not_yours"));

    // Bad input names the field; an unknown container is a 404.
    for (body, field) in [
        (json!({"tag": "v1"}), "repository"),
        (json!({"repository": "Bad Name"}), "repository"),
        (json!({"repository": "ok", "tag": "-x"}), "tag"),
        (json!({"repository": "ok", "author": 5}), "author"),
    ] {
        let a = alice
            .send(
                Method::POST,
                &format!("container/docker/{container}/commit"),
                Some(&body.to_string()),
            )
            .await;
        a.assert_error(400, Some("invalid_params"));
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    alice
        .send(
            Method::POST,
            &format!("container/docker/{container}/commit"),
            Some("{"),
        )
        .await
        .assert_error(400, Some("invalid_json"));
    alice
        .send(
            Method::POST,
            &format!("container/docker/{}/commit", unique("none")),
            Some(&body),
        )
        .await
        .assert_error(404, Some("unknown_container"));

    // Alice removes her image.
    let a = alice.send(Method::DELETE, &path, None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(!docker_ok(&[
        "image",
        "inspect",
        &format!("{committed}:v1")
    ]));
    cleanup.images.retain(|i| !i.starts_with(&committed));
}

#[tokio::test]
async fn lxc_images_list_inspect_and_remove() {
    // A server with an LXC store of its own and the test image repository.
    let path = tempfile::Builder::new()
        .prefix("stevedore-lxc-")
        .tempdir()
        .unwrap();
    let server = Server::start(
        Options::with_plugins(&["image_download"])
            .env("STEVEDORE_CATALOG", &env("STEVEDORE_TEST_CATALOG"))
            .env("STEVEDORE_LXC_PATH", &path.path().display().to_string())
            .env("STEVEDORE_LXC_BRIDGE", &env("STEVEDORE_TEST_LXC_BRIDGE"))
            .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET")),
    )
    .await;
    let admin = server.admin().await;
    let id = admin
        .submit_ok(
            "image_download",
            &json!({"type": "lxc", "repository": "qnap", "image": "busybox", "tag": "latest"})
                .to_string(),
        )
        .await;
    let task = admin
        .wait_until(id, Duration::from_secs(90), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("task {id} did not finish: {last:?}"));
    assert_eq!(task["state"], "completed", "{task}");

    let a = get(&admin, "image?category=local&type=lxc").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_keys("GET image?type=lxc", &a.body, LISTING, true);
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_keys("an LXC image", &results[0], LISTED, false);
    assert_eq!(results[0]["name"], "busybox");
    assert_eq!(results[0]["version"], "latest");
    assert_eq!(results[0]["type"], "lxc");

    let a = get(&admin, "image/lxc/busybox/latest/inspect").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["RepoTags"], json!(["busybox:latest"]));
    assert!(a.body["Id"].as_str().unwrap().starts_with("sha256:"));

    let a = admin
        .send(Method::DELETE, "image/local/lxc/busybox/latest", None)
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        a.body,
        json!({"action": "delete", "name": "busybox", "state": "success", "type": "lxc"})
    );
    get(&admin, "image/lxc/busybox/latest/inspect")
        .await
        .assert_error(404, Some("unknown_image"));
    let a = get(&admin, "image?category=local&type=lxc").await;
    assert_eq!(a.body["results"], json!([]));
}

#[tokio::test]
async fn dockerhub_through_a_configured_mirror() {
    // The open test registry stands in for Docker Hub (it is the engine's
    // mirror too): `dockerhub` searches its catalog instead of Docker Hub.
    let server = Server::start(Options::default().test_engine().config(&format!(
        "{}\n[repositories]\ndockerhub = \"local\"\n",
        stevedore_e2e::registries_config()
    )))
    .await;
    let admin = server.admin().await;
    let a = get(&admin, "image?category=dockerhub&filter_text=busybox").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["errors"], json!([]), "{:?}", a.body);
    let results = a.body["results"].as_array().unwrap();
    let busybox: Vec<&Value> = results.iter().filter(|e| e["name"] == "busybox").collect();
    assert_eq!(busybox.len(), 1, "{results:?}");
    assert_keys("a mirrored repository", busybox[0], SEARCHED, false);
    assert_eq!(busybox[0]["repository"], "dockerhub");
    assert_eq!(busybox[0]["registry"], "Docker Hub");
    assert!(busybox[0]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("latest")));
    // Tags from Docker Hub (the default registry) come from the mirror too.
    let a = get(&admin, "image/busybox/tags").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["errors"], json!([]), "{:?}", a.body);
    assert!(a.body["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("latest")));
}
