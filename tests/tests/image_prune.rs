//! `image_prune`, the category written in Python, on the real
//! `stevedore serve` and a private Docker engine of this test (pruning
//! touches every dangling image an engine has, so never the shared one):
//! a dry run lists and keeps; a non-admin removes the dangling images the
//! host lets them use and never another user's; an image a container uses
//! is kept; bad params are a 400 naming the field; the category is in the
//! OpenAPI document with its params schema.

use std::time::Instant;

use serde_json::{json, Value};
use stevedore_e2e::engine::PrivateEngine;
use stevedore_e2e::{assert_names, hash_password, report, unique, Client, Options, Server};

/// The owner label the server puts on a container it creates.
const OWNER: &str = "io.stevedore.owner";

async fn login(server: &Server, user: &str) -> Client {
    let c = server.client();
    let a = c.login(user, &format!("{user}-pw")).await;
    assert_eq!(a.status, 200, "{user} login: {:?}", a.body);
    c
}

/// Run `params` as `c` and return the completed task.
async fn prune(c: &Client, params: Value) -> Value {
    let id = c.submit_ok("image_prune", &params.to_string()).await;
    let t = c
        .wait_until(id, std::time::Duration::from_secs(60), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"));
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(t["result"], 0, "{t}");
    t
}

fn detail(t: &Value) -> String {
    t["detail_state"].as_str().unwrap_or_default().to_string()
}

/// A new dangling image: a commit of `container` without a name.
fn dangling(engine: &PrivateEngine, container: &str) -> String {
    engine.docker(&["commit", container])
}

#[tokio::test]
async fn prunes_only_the_dangling_images_the_user_may_use() {
    let engine = PrivateEngine::start();
    engine.docker(&["pull", "busybox:latest"]);
    let base = unique("prune-base");
    engine.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        &base,
        "busybox:latest",
        "true",
    ]);
    let d1 = dangling(&engine, &base);
    let d2 = dangling(&engine, &base);
    // In use by a container: kept.
    let used = dangling(&engine, &base);
    engine.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        &unique("prune-user"),
        &used,
        "true",
    ]);
    let tagged = unique("prune-tagged");
    let kept_tagged = engine.docker(&["commit", &base, &format!("{tagged}:1")]);
    // Alice's container, as the server labels the ones it makes for her.
    let hers = unique("prune-alice");
    engine.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        &hers,
        "--label",
        &format!("{OWNER}=alice"),
        "busybox:latest",
        "true",
    ]);

    let mut options = Options::with_plugins(&["image_prune"]).config(&format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw"),
    ));
    options.docker_host = Some(engine.host());
    let server = Server::start(options).await;
    let admin = server.admin().await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;

    // Alice commits her container as `alice-img:v1` (the host records the
    // name as hers); moving the name away leaves her image dangling, and
    // still hers only.
    let alice_img = unique("alice-img");
    let a = alice
        .send(
            reqwest::Method::POST,
            &format!("container/docker/{hers}/commit"),
            Some(&json!({"repository": alice_img, "tag": "v1"}).to_string()),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let hers_id = a.body["image_id"].as_str().unwrap().to_string();
    engine.docker(&["tag", "busybox:latest", &format!("{alice_img}:v1")]);

    // Bad params: a 400 naming the field, before any task exists.
    assert_names(
        &admin.submit("image_prune", r#"{"dry_run": "yes"}"#).await,
        "dry_run",
    );
    assert_names(
        &admin.submit("image_prune", r#"{"type": "rkt"}"#).await,
        "type",
    );
    assert_names(
        &admin.submit("image_prune", r#"{"all": true}"#).await,
        "all",
    );

    // A dry run (admin: every dangling image) removes nothing.
    let started = Instant::now();
    let t = prune(&admin, json!({"dry_run": true})).await;
    report(&format!(
        "image_prune (Python) dry run, submit to completed: {:.0?}",
        started.elapsed()
    ));
    let d = detail(&t);
    assert!(d.starts_with("would remove 4: "), "{d}");
    for id in [&d1, &d2, &used, &hers_id] {
        assert!(d.contains(id.as_str()), "{id} in {d}");
        assert!(
            engine.docker_ok(&["image", "inspect", id]),
            "{id} kept by the dry run"
        );
    }
    assert!(!d.contains(&kept_tagged), "{d}");

    // Bob: the unrecorded dangling images, not alice's; the used one kept.
    let t = prune(&bob, json!({})).await;
    let d = detail(&t);
    assert!(d.starts_with("removed 2 "), "{d}");
    assert!(d.contains(&format!("kept 1: {used}")), "{d}");
    for id in [&d1, &d2] {
        assert!(!engine.docker_ok(&["image", "inspect", id]), "{id} removed");
    }
    assert!(
        engine.docker_ok(&["image", "inspect", &hers_id]),
        "alice's kept from bob"
    );
    assert!(engine.docker_ok(&["image", "inspect", &used]));
    assert!(engine.docker_ok(&["image", "inspect", &kept_tagged]));

    // Alice: her own.
    let d = detail(&prune(&alice, json!({})).await);
    assert!(d.starts_with("removed 1 "), "{d}");
    assert!(d.contains(&hers_id), "{d}");
    assert!(!engine.docker_ok(&["image", "inspect", &hers_id]));

    // The OpenAPI document describes the category and its params.
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", server.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = doc["paths"].to_string();
    assert!(text.contains("image_prune"), "no image_prune operation");
    assert!(text.contains("dry_run"), "no params schema");
}
