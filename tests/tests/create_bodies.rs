//! Create bodies as real clients send them and as the real Container
//! Station accepted them, through `POST container` on the real server,
//! the real `create` plugin and the test engine: volume entries with `rw`
//! (popster and g1zm0e's client send it), a MAC address, `bridge` mode on a
//! host interface (a macvlan network), `interface`, and `join`.
//!
//! The host interface is one end of a veth pair the test makes and
//! removes: this kernel has no `dummy` link type, and a veth end is an
//! interface a macvlan network can sit on just the same.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{docker, docker_ok, hash_password, unique, Client, Options, Server};

async fn server() -> (Server, Client) {
    let config = format!(
        "[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["create"])
            .test_engine()
            .config(&config),
    )
    .await;
    let client = server.admin().await;
    docker(&["pull", "busybox:latest"]);
    (server, client)
}

async fn bob(server: &Server) -> Client {
    let c = server.client();
    let a = c.login("bob", "bob-pw").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    c
}

/// A busybox container named `name` that sleeps, with `extra` laid over.
fn body(name: &str, extra: Value) -> Value {
    let mut b = json!({"type": "docker", "name": name, "image": "busybox", "tag": "latest",
        "repository": "dockerhub", "command": "sleep 3600"});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// `POST container`: status and body.
async fn create(c: &Client, body: &Value) -> (u16, Value) {
    let r = c
        .http()
        .post(format!("{}/container", c.api))
        .body(body.to_string())
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("POST container");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn inspect(name: &str) -> Value {
    serde_json::from_str::<Value>(&docker(&["inspect", name])).unwrap()[0].clone()
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_default()
}

/// A locally administered unicast MAC address of this run.
fn mac(n: u8) -> String {
    let pid = std::process::id();
    format!(
        "02:5e:{:02x}:{:02x}:{:02x}:{n:02x}",
        (pid >> 16) & 0xff,
        (pid >> 8) & 0xff,
        pid & 0xff
    )
}

/// One end of a veth pair; dropped, it removes the containers on its
/// macvlan network, the network, and the pair.
struct HostInterface(String);

impl HostInterface {
    fn new() -> HostInterface {
        let name = format!("stv{}a", std::process::id() % 100_000);
        let peer = format!("stv{}b", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &name, "up"]);
        ip(&["link", "set", &peer, "up"]);
        HostInterface(name)
    }
}

impl Drop for HostInterface {
    fn drop(&mut self) {
        let network = format!("stevedore-macvlan-{}", self.0);
        let on = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("network={network}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in on.split_whitespace() {
            docker_ok(&["rm", "-f", id]);
        }
        docker_ok(&["network", "rm", &network]);
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[tokio::test]
async fn volume_entries_take_rw_as_public_clients_send_it() {
    let (server, c) = server().await;
    let name = unique("rw");
    let share = server.data_dir().join("share/Public");
    for folder in ["rw", "ro"] {
        std::fs::create_dir_all(share.join(format!("{name}-{folder}"))).unwrap();
    }
    let volume = |rw: Value| {
        json!({"host": {
            format!("/Public/{name}-rw"): {"bind": "/rw", "rw": true},
            format!("/Public/{name}-ro"): rw,
        }})
    };
    let (status, answer) = create(
        &c,
        &body(
            &name,
            json!({"volume": volume(json!({"bind": "/ro", "rw": false}))}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mounts = inspect(&name)["Mounts"].clone();
    let rw_of = |dest: &str| {
        mounts
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("{dest} is mounted: {mounts}"))["RW"]
            .clone()
    };
    assert_eq!(rw_of("/rw"), true);
    assert_eq!(rw_of("/ro"), false);
    docker(&["rm", "-f", &name]);

    // `ro` and `rw` that disagree: a 400 naming the field; nothing is made.
    let other = unique("rw");
    let (status, answer) = create(
        &c,
        &body(
            &other,
            json!({"volume": volume(json!({"bind": "/ro", "ro": true, "rw": true}))}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        message(&answer),
        format!("volume.host[\"/Public/{name}-ro\"].rw: rw: true conflicts with ro: true")
    );
    assert!(!docker_ok(&["inspect", &other]));
}

#[tokio::test]
async fn a_mac_address_on_the_default_network() {
    let (_server, c) = server().await;
    let name = unique("mac");
    let (status, answer) = create(
        &c,
        &body(
            &name,
            json!({"network": {"mode": "nat", "mac_addr": mac(1)}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let container = inspect(&name);
    assert_eq!(
        container["NetworkSettings"]["Networks"]["bridge"]["MacAddress"],
        mac(1).as_str(),
        "{}",
        container["NetworkSettings"]
    );
    docker(&["rm", "-f", &name]);
}

#[tokio::test]
async fn bridge_mode_and_interface_put_the_container_on_a_macvlan_network_of_the_host_interface() {
    let (server, c) = server().await;
    let interface = HostInterface::new();
    let network = format!("stevedore-macvlan-{}", interface.0);
    // Container Station's own `bridge` example, with a MAC address.
    let first = unique("bridge");
    let (status, answer) = create(
        &c,
        &body(
            &first,
            json!({"network": {"mode": "bridge", "mac_addr": mac(2), "bridge": {"mode": "dhcp",
                "interface": {"bridge": interface.0, "name": "eth0"}}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let container = inspect(&first);
    assert_eq!(container["HostConfig"]["NetworkMode"], network.as_str());
    let endpoint = &container["NetworkSettings"]["Networks"][&network];
    assert_eq!(endpoint["MacAddress"], mac(2).as_str(), "{container}");
    assert_eq!(container["State"]["Running"], true);
    let driver = docker(&[
        "network",
        "inspect",
        "--format",
        "{{.Driver}} {{index .Options \"parent\"}}",
        &network,
    ]);
    assert_eq!(driver.trim(), format!("macvlan {}", interface.0));

    // `interface` alone: the same network, not a second one.
    let second = unique("iface");
    let (status, answer) = create(
        &c,
        &body(&second, json!({"network": {"interface": interface.0}})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let container = inspect(&second);
    assert!(
        container["NetworkSettings"]["Networks"][&network].is_object(),
        "{}",
        container["NetworkSettings"]
    );
    let on_parent = docker(&[
        "network",
        "ls",
        "--filter",
        "driver=macvlan",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(
        on_parent
            .lines()
            .filter(|n| n.contains(&interface.0))
            .count(),
        1,
        "{on_parent}"
    );

    // A non-admin may not put a container on the host's network.
    let bob = bob(&server).await;
    let (status, answer) = create(
        &bob,
        &body(
            &unique("bob"),
            json!({"network": {"interface": interface.0}}),
        ),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        message(&answer).starts_with("denied: network.interface:"),
        "{answer}"
    );

    docker(&["rm", "-f", &first, &second]);
    docker(&["network", "rm", &network]);
    drop(interface);
    assert!(!docker_ok(&["network", "inspect", &network]));
}

#[tokio::test]
async fn an_interface_the_host_does_not_have_is_a_400_naming_the_field() {
    let (_server, c) = server().await;
    let name = unique("noif");
    let (status, answer) = create(
        &c,
        &body(
            &name,
            json!({"network": {"mode": "bridge", "interface": "stvnosuch0"}}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        message(&answer),
        "network.interface: this host has no interface `stvnosuch0`"
    );
    assert!(!docker_ok(&["inspect", &name]));
}

#[tokio::test]
async fn join_shares_the_network_namespace_of_a_container_the_caller_may_use() {
    let (server, c) = server().await;
    let host = unique("host");
    let (status, answer) = create(&c, &body(&host, json!({}))).await;
    assert_eq!(status, 200, "{answer}");
    let guest = unique("guest");
    let (status, answer) = create(&c, &body(&guest, json!({"network": {"join": host}}))).await;
    assert_eq!(status, 200, "{answer}");
    let (a, b) = (inspect(&host), inspect(&guest));
    // The engine records the joined container by its id.
    assert_eq!(
        b["HostConfig"]["NetworkMode"],
        format!("container:{}", a["Id"].as_str().unwrap()).as_str()
    );
    let netns = |c: &Value| {
        std::fs::read_link(format!("/proc/{}/ns/net", c["State"]["Pid"]))
            .unwrap_or_else(|e| panic!("the network namespace of {}: {e}", c["Name"]))
    };
    assert_eq!(netns(&a), netns(&b), "one network namespace");

    // Bob may not join the admin's container: a 400 naming the field.
    let bob = bob(&server).await;
    let theirs = unique("bob");
    let (status, answer) = create(&bob, &body(&theirs, json!({"network": {"join": host}}))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(message(&answer).starts_with("network.join: "), "{answer}");
    assert!(!docker_ok(&["inspect", &theirs]));
    // Nor can anyone join a container that does not exist.
    let (status, answer) = create(
        &c,
        &body(
            &unique("lost"),
            json!({"network": {"join": "stv-no-such-container"}}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        message(&answer),
        "network.join: no container `stv-no-such-container`"
    );
    docker(&["rm", "-f", &guest, &host]);
}
