//! `volumes...` (`volumes.rst`) on the real engine (`DOCKER_HOST`, the test
//! engine): create, list, inspect, remove and prune, each answer with the
//! recorded keys and JSON types; a volume a container mounts is 409; one
//! user can neither see nor remove another's volumes; a user's prune
//! leaves another's unused volumes alone; bad input is 400 naming the field.
//!
//! An admin's prune is left out: it removes every unused volume of the
//! shared engine, other tests' too.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{docker, docker_ok, unique};

mod engine_objects;
use engine_objects::{
    assert_removed, by_name, call, deleted, names, ok, prune_fixture, server, Cleanup,
};

/// The owner label (`stevedore_contract::labels::OWNER`).
const OWNER: &str = "io.stevedore.owner";

use stevedore_e2e::shape::Kind;

/// A volume as recorded (`volumes.html`).
const VOLUME: &[(&str, Kind)] = &[
    ("CreatedAt", Kind::Str),
    ("Driver", Kind::Str),
    ("Labels", Kind::ObjectOrNull),
    ("Mountpoint", Kind::Str),
    ("Name", Kind::Str),
    ("Options", Kind::ObjectOrNull),
    ("Scope", Kind::Str),
];

fn assert_shape(what: &str, v: &Value) {
    stevedore_e2e::shape::assert_shape(what, v, VOLUME);
}

#[tokio::test]
async fn volumes_are_as_recorded_and_each_users_own() {
    let (_server, admin, (alice, a), (_bob, b)) = server().await;
    docker(&["pull", "-q", "busybox:latest"]);
    let mut cleanup = Cleanup::default();
    let (v1, v2) = (unique("vol-alice"), unique("vol-alice"));
    cleanup.volumes.extend([v1.clone(), v2.clone()]);

    // Create, both ways the page shows: the name in the body, or in the path.
    let one = ok(&a, Method::POST, "volumes", Some(json!({"name": v1}))).await;
    assert_shape("created volume", &one);
    assert_eq!(
        (one["Name"].as_str(), one["Driver"].as_str()),
        (Some(&*v1), Some("local"))
    );
    assert_eq!(one["Labels"][OWNER], alice.as_str(), "{one}");
    assert_eq!(one["Options"], Value::Null, "none asked: null, as recorded");
    let two = ok(
        &a,
        Method::POST,
        &format!("volumes/{v2}"),
        Some(json!({
            "name": v2,
            "labels": {"key": "value"},
            "driver_opts": {"device": "tmpfs", "type": "tmpfs", "o": "size=100m,uid=1000"},
        })),
    )
    .await;
    assert_shape("created tmpfs volume", &two);
    assert_eq!(two["Labels"]["key"], "value");
    assert_eq!(
        two["Options"],
        json!({"device": "tmpfs", "type": "tmpfs", "o": "size=100m,uid=1000"})
    );
    call(&a, Method::POST, "volumes", Some(json!({"name": v1})))
        .await
        .assert_error(409, Some("conflict"));
    assert_eq!(
        docker(&["volume", "inspect", "-f", "{{.Name}}", &v1]),
        v1,
        "made on the engine"
    );

    // List and inspect.
    let list = ok(&a, Method::GET, "volumes", None).await;
    for v in list.as_array().unwrap() {
        assert_shape("listed volume", v);
    }
    let seen = names(&list);
    assert!(seen.contains(&v1) && seen.contains(&v2), "{seen:?}");
    assert_eq!(
        by_name(&ok(&a, Method::GET, "volumes/", None).await),
        by_name(&list)
    );
    let inspected = ok(&a, Method::GET, &format!("volumes/{v2}/inspect"), None).await;
    assert_shape("inspected volume", &inspected);
    assert_eq!(inspected, two);

    // Bob neither sees nor removes them; the admin sees them.
    let bobs = names(&ok(&b, Method::GET, "volumes", None).await);
    assert!(!bobs.contains(&v1) && !bobs.contains(&v2), "{bobs:?}");
    assert!(names(&ok(&admin, Method::GET, "volumes", None).await).contains(&v1));
    call(&b, Method::GET, &format!("volumes/{v1}/inspect"), None)
        .await
        .assert_error(403, Some("not_yours"));
    call(&b, Method::DELETE, &format!("volumes/{v1}"), None)
        .await
        .assert_error(403, Some("not_yours"));
    call(&b, Method::POST, "volumes", Some(json!({"name": v1})))
        .await
        .assert_error(409, Some("conflict"));

    // In use: removing it is 409 with the engine's message.
    let user = unique("vol-c");
    cleanup.containers.push(user.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &user,
        "--label",
        &format!("{OWNER}={alice}"),
        "-v",
        &format!("{v1}:/data"),
        "busybox:latest",
        "sleep",
        "600",
    ]);
    let in_use = call(&a, Method::DELETE, &format!("volumes/{v1}"), None).await;
    in_use.assert_error(409, Some("conflict"));
    assert!(
        in_use.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in use"),
        "{:?}",
        in_use.body
    );
    docker(&["rm", "-f", &user]);

    // Remove: `{}`; again, 404.
    assert_removed(
        &a,
        ("volumes", "volume"),
        &v1,
        &format!("volumes/{v1}/inspect"),
        "unknown_volume",
    )
    .await;
}

#[tokio::test]
async fn a_prune_removes_the_callers_unused_volumes_only() {
    let (_server, _admin, (alice, a), (_bob, b)) = server().await;
    docker(&["pull", "-q", "busybox:latest"]);
    let mut cleanup = Cleanup::default();
    let (a1, a2, busy, b1) = prune_fixture(&a, &b, "volumes", "vol", &mut cleanup.volumes).await;
    let user = unique("vol-c");
    cleanup.containers.push(user.clone());
    docker(&[
        "create",
        "--name",
        &user,
        "--label",
        &format!("{OWNER}={alice}"),
        "-v",
        &format!("{busy}:/data"),
        "busybox:latest",
        "true",
    ]);

    // Bob's prune: his own only; alice's unused ones stay.
    let pruned = ok(&b, Method::DELETE, "volumes/", None).await;
    assert_eq!(pruned, json!({"SpaceReclaimed": 0, "VolumesDeleted": [b1]}));
    for v in [&a1, &a2, &busy] {
        assert!(docker_ok(&["volume", "inspect", v]), "{v} left alone");
    }
    assert_eq!(
        ok(&b, Method::DELETE, "volumes", None).await,
        json!({"SpaceReclaimed": 0, "VolumesDeleted": []}),
        "nothing left: [], as recorded"
    );

    // Alice's: her unused ones; the one a container mounts stays.
    let pruned = ok(&a, Method::DELETE, "volumes/", None).await;
    assert_eq!(pruned["SpaceReclaimed"], 0);
    assert_eq!(deleted(&pruned, "VolumesDeleted"), BTreeSet::from([a1, a2]));
    assert!(docker_ok(&["volume", "inspect", &busy]));
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let (_server, admin, (_alice, a), _) = server().await;
    for (path, body, field) in [
        ("volumes", json!({}), "name: "),
        ("volumes", json!({"name": "x"}), "name: "),
        ("volumes", json!({"name": "../etc"}), "name: "),
        ("volumes", json!({"name": 3}), "name: "),
        ("volumes/v-one", json!({"name": "v-two"}), "name: "),
        (
            "volumes",
            json!({"name": "v-x", "driver": "a b"}),
            "driver: ",
        ),
        (
            "volumes",
            json!({"name": "v-x", "labels": ["k"]}),
            "labels: ",
        ),
        (
            "volumes",
            json!({"name": "v-x", "driver_opts": {"size": 5}}),
            "driver_opts.size: ",
        ),
    ] {
        let r = call(&a, Method::POST, path, Some(body.clone())).await;
        stevedore_e2e::assert_names(&r, field);
    }
    a.send(Method::POST, "volumes", Some("{"))
        .await
        .assert_error(400, Some("invalid_json"));
    a.send(Method::POST, "volumes", Some("\"v\""))
        .await
        .assert_error(400, Some("wrong_type"));
    call(&a, Method::GET, "volumes/-x/inspect", None)
        .await
        .assert_error(400, Some("invalid_params"));
    call(&a, Method::GET, "volumes/no-such-volume-here/inspect", None)
        .await
        .assert_error(404, Some("unknown_volume"));
    // An admin may name any driver, but the engine must have it.
    let r = call(
        &admin,
        Method::POST,
        "volumes",
        Some(json!({"name": unique("vol-drv"), "driver": "nosuchdriver"})),
    )
    .await;
    stevedore_e2e::assert_names(&r, "driver: ");

    // A non-admin binds no host folder through a volume's options.
    let name = unique("vol-bind");
    let r = call(
        &a,
        Method::POST,
        "volumes",
        Some(json!({"name": name, "driver_opts": {"type": "none", "device": "/etc", "o": "bind"}})),
    )
    .await;
    r.assert_error(403, Some("denied"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("driver_opts."));
    assert!(!docker_ok(&["volume", "inspect", &name]));
}
