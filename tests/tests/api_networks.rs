//! `networks...` (`networks.rst`) on the real engine (`DOCKER_HOST`, the
//! test engine): create, list, inspect, connect, disconnect, remove and
//! prune, each answer with the recorded keys and JSON types; a network in
//! use is 409; one user can neither see nor act on another's networks or
//! connect another's containers; a user's prune leaves another's unused
//! networks alone; bad input is 400 naming the field.
//!
//! An admin's prune is left out: it removes every unused network of the
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

/// A network as recorded (`networks.html`, "List all networks").
const NETWORK: &[(&str, Kind)] = &[
    ("Attachable", Kind::Bool),
    ("ConfigFrom", Kind::Object),
    ("ConfigOnly", Kind::Bool),
    ("Containers", Kind::Object),
    ("Created", Kind::Str),
    ("Driver", Kind::Str),
    ("EnableIPv6", Kind::Bool),
    ("IPAM", Kind::Object),
    ("Id", Kind::Str),
    ("Ingress", Kind::Bool),
    ("Internal", Kind::Bool),
    ("Labels", Kind::Object),
    ("Name", Kind::Str),
    ("Options", Kind::Object),
    ("Scope", Kind::Str),
];

/// `v` has exactly the keys of `recorded`, each of its type, and the
/// recorded inner shape of `IPAM` and `ConfigFrom`.
fn assert_shape(what: &str, v: &Value, recorded: &[(&str, Kind)]) {
    stevedore_e2e::shape::assert_shape(what, v, recorded);
    // IPAM as recorded: `Config` a list of pools, `Driver` a string.
    assert!(v["IPAM"]["Config"].is_array(), "{what}: {v}");
    assert!(v["IPAM"]["Driver"].is_string(), "{what}: {v}");
    assert!(v["ConfigFrom"]["Network"].is_string(), "{what}: {v}");
}

/// A running busybox container of `owner`.
fn container_of(owner: &str, cleanup: &mut Cleanup) -> String {
    let name = unique("nw-c");
    cleanup.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &format!("{OWNER}={owner}"),
        "busybox:latest",
        "sleep",
        "600",
    ]);
    name
}

#[tokio::test]
async fn networks_are_as_recorded_and_each_users_own() {
    let (_server, admin, (alice, a), (bob, b)) = server().await;
    docker(&["pull", "-q", "busybox:latest"]);
    let mut cleanup = Cleanup::default();
    let net = unique("nw-alice");
    cleanup.networks.push(net.clone());

    // Create: `{"Id", "Warning"}`; the name taken is 409.
    let created = ok(
        &a,
        Method::POST,
        "networks",
        Some(json!({"name": net, "check_duplicate": true})),
    )
    .await;
    assert_eq!(
        created.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["Id", "Warning"]
    );
    let id = created["Id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64, "{created}");
    assert!(created["Warning"].is_string());
    let again = call(&a, Method::POST, "networks", Some(json!({"name": net}))).await;
    again.assert_error(409, Some("conflict"));
    assert!(
        again.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&net),
        "{:?}",
        again.body
    );
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Id}}", &net]),
        id,
        "made on the engine"
    );

    // List: every entry as recorded; the built-in networks and her own.
    let list = ok(&a, Method::GET, "networks", None).await;
    for n in list.as_array().unwrap() {
        assert_shape("listed network", n, NETWORK);
    }
    let seen = names(&list);
    for built_in in ["bridge", "host", "none"] {
        assert!(seen.contains(built_in), "{seen:?}");
    }
    assert!(seen.contains(&net), "{seen:?}");
    assert_eq!(
        by_name(&ok(&a, Method::GET, "networks/", None).await),
        by_name(&list)
    );

    // Inspect, by name, id and id prefix, under both paths.
    for path in [
        format!("networks/{net}"),
        format!("networks/{id}/inspect"),
        format!("networks/{}", &id[..12]),
    ] {
        let n = ok(&a, Method::GET, &path, None).await;
        assert_shape("inspected network", &n, NETWORK);
        assert_eq!(
            (n["Name"].as_str(), n["Id"].as_str()),
            (Some(&*net), Some(&*id))
        );
        assert_eq!(n["Labels"][OWNER], alice.as_str(), "{n}");
        assert_eq!(n["Driver"], "bridge");
    }

    // Bob neither sees nor acts on it; the admin sees it.
    assert!(!names(&ok(&b, Method::GET, "networks", None).await).contains(&net));
    assert!(names(&ok(&admin, Method::GET, "networks", None).await).contains(&net));
    call(&b, Method::GET, &format!("networks/{net}"), None)
        .await
        .assert_error(403, Some("not_yours"));
    call(&b, Method::DELETE, &format!("networks/{net}"), None)
        .await
        .assert_error(403, Some("not_yours"));
    let bobs = container_of(&bob, &mut cleanup);
    let alices = container_of(&alice, &mut cleanup);
    call(
        &b,
        Method::POST,
        &format!("networks/{net}/connect"),
        Some(json!({"container": bobs})),
    )
    .await
    .assert_error(403, Some("not_yours"));
    // Nor does alice connect bob's container to her network.
    call(
        &a,
        Method::POST,
        &format!("networks/{net}/connect"),
        Some(json!({"container": bobs})),
    )
    .await
    .assert_error(403, Some("not_yours"));
    // Nor remove the engine's own.
    call(&a, Method::DELETE, "networks/bridge", None)
        .await
        .assert_error(403, Some("not_yours"));

    // Connect: `{}`, and the inspect shows the container; twice is 409.
    let connected = ok(
        &a,
        Method::POST,
        &format!("networks/{net}/connect"),
        Some(json!({"container": alices})),
    )
    .await;
    assert_eq!(connected, json!({}));
    let alices_id = docker(&["inspect", "-f", "{{.Id}}", &alices]);
    let n = ok(&a, Method::GET, &format!("networks/{net}/inspect"), None).await;
    assert_shape("network after connect", &n, NETWORK);
    assert_eq!(n["Containers"][&alices_id]["Name"], alices.as_str(), "{n}");
    call(
        &a,
        Method::POST,
        &format!("networks/{net}/connect"),
        Some(json!({"container": alices})),
    )
    .await
    .assert_error(409, Some("conflict"));

    // In use: removing it is 409 with the engine's message.
    let in_use = call(&a, Method::DELETE, &format!("networks/{net}"), None).await;
    in_use.assert_error(409, Some("conflict"));
    assert!(
        in_use.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("active endpoints"),
        "{:?}",
        in_use.body
    );
    // Bob cannot take her container off it either.
    call(
        &b,
        Method::POST,
        &format!("networks/{net}/disconnect"),
        Some(json!({"container": alices})),
    )
    .await
    .assert_error(403, Some("not_yours"));

    // Disconnect (the recorded body, with its `forct`), then remove.
    let disconnected = ok(
        &a,
        Method::POST,
        &format!("networks/{net}/disconnect"),
        Some(json!({"container": alices, "forct": false})),
    )
    .await;
    assert_eq!(disconnected, json!({}));
    let n = ok(&a, Method::GET, &format!("networks/{net}"), None).await;
    assert_eq!(n["Containers"], json!({}), "{n}");
    // Off it already: 409, not an engine failure.
    call(
        &a,
        Method::POST,
        &format!("networks/{net}/disconnect"),
        Some(json!({"container": alices})),
    )
    .await
    .assert_error(409, Some("conflict"));
    assert_removed(
        &a,
        ("networks", "network"),
        &net,
        &format!("networks/{net}"),
        "unknown_network",
    )
    .await;
}

#[tokio::test]
async fn a_prune_removes_the_callers_unused_networks_only() {
    let (_server, _admin, (alice, a), (_bob, b)) = server().await;
    docker(&["pull", "-q", "busybox:latest"]);
    let mut cleanup = Cleanup::default();
    let (a1, a2, busy, b1) = prune_fixture(&a, &b, "networks", "nw", &mut cleanup.networks).await;
    let alices = container_of(&alice, &mut cleanup);
    ok(
        &a,
        Method::POST,
        &format!("networks/{busy}/connect"),
        Some(json!({"container": alices})),
    )
    .await;

    // Bob's prune: his own only; alice's unused ones stay.
    let pruned = ok(&b, Method::DELETE, "networks/", None).await;
    assert_eq!(pruned, json!({"NetworksDeleted": [b1]}));
    for n in [&a1, &a2, &busy] {
        assert!(docker_ok(&["network", "inspect", n]), "{n} left alone");
    }
    // Nothing of his left: `null`, as recorded.
    assert_eq!(
        ok(&b, Method::DELETE, "networks", None).await,
        json!({"NetworksDeleted": null})
    );

    // Alice's: her unused ones; the one in use stays, the built-in ones too.
    let pruned = ok(&a, Method::DELETE, "networks/", None).await;
    assert_eq!(
        deleted(&pruned, "NetworksDeleted"),
        BTreeSet::from([a1, a2])
    );
    assert!(docker_ok(&["network", "inspect", &busy]));
    assert!(docker_ok(&["network", "inspect", "bridge"]));
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let (_server, admin, (_alice, a), _) = server().await;
    for (body, field) in [
        (json!({}), "name: "),
        (json!({"name": "bad/name"}), "name: "),
        (json!({"name": 7}), "name: "),
        (json!({"name": "n-x", "internal": "maybe"}), "internal: "),
        (json!({"name": "n-x", "enableIPv6": true}), "enableIPv6: "),
        (json!({"name": "n-x", "options": {"k": 1}}), "options.k: "),
        (
            json!({"name": "n-x", "ipam": {"Config": [{"Subnet": "10.1.2.3"}]}}),
            "ipam.Config[0].Subnet: ",
        ),
        (
            json!({"name": "n-x", "ipam": {"Config": [{"Subnet": "10.1.2.0/24", "Gateway": "10.9.9.9"}]}}),
            "ipam.Config[0].Gateway: ",
        ),
    ] {
        let r = call(&a, Method::POST, "networks", Some(body.clone())).await;
        stevedore_e2e::assert_names(&r, field);
    }
    let r = a.send(Method::POST, "networks", Some("{not json")).await;
    r.assert_error(400, Some("invalid_json"));
    let r = a.send(Method::POST, "networks", Some("[1]")).await;
    r.assert_error(400, Some("wrong_type"));

    // A non-admin keeps to plain bridges; the refusal names the field.
    let r = call(
        &a,
        Method::POST,
        "networks",
        Some(json!({"name": unique("nw-mac"), "driver": "macvlan", "options": {"parent": "lo"}})),
    )
    .await;
    r.assert_error(403, Some("denied"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("driver: "));
    let r = call(
        &a,
        Method::POST,
        "networks",
        Some(json!({"name": unique("nw-opt"), "options": {"com.docker.network.bridge.name": "eth0"}})),
    )
    .await;
    r.assert_error(403, Some("denied"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("options.com.docker.network.bridge.name: "));

    // Paths and connect bodies.
    call(&a, Method::GET, "networks/-x", None)
        .await
        .assert_error(400, Some("invalid_params"));
    call(&a, Method::GET, "networks/no-such-network-here", None)
        .await
        .assert_error(404, Some("unknown_network"));
    call(
        &admin,
        Method::POST,
        "networks/no-such-network-here/connect",
        Some(json!({"container": "x1"})),
    )
    .await
    .assert_error(404, Some("unknown_network"));
    for (body, field) in [
        (json!({}), "container: "),
        (json!({"container": "../x"}), "container: "),
        (json!({"container": "c1", "force": "x"}), "force: "),
    ] {
        let r = call(&admin, Method::POST, "networks/bridge/connect", Some(body)).await;
        stevedore_e2e::assert_names(&r, field);
    }
    call(
        &admin,
        Method::POST,
        "networks/bridge/connect",
        Some(json!({"container": "no-such-container-here"})),
    )
    .await
    .assert_error(404, Some("unknown_container"));
    // An admin may name any driver, but the engine must have it.
    let r = call(
        &admin,
        Method::POST,
        "networks",
        Some(json!({"name": unique("nw-drv"), "driver": "nosuchdriver"})),
    )
    .await;
    stevedore_e2e::assert_names(&r, "driver: ");
}
