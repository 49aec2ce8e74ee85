//! A container's settings (`resource.rst`) end to end: the real server, the
//! `create` plugin and the test engine (and LXC for the `lxc` routes).
//! Each answer is checked against the keys and JSON types of Container
//! Station's recorded answer, each change against the engine's own view
//! (`docker inspect`, the LXC config); a recreate that fails leaves the old
//! container running with its data; another user can neither see nor
//! change a container; a non-admin's new port, device or host folder is
//! refused as at create; bad input names the field.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{
    docker, docker_ok, eventually, free_port, hash_password, http_get, unique, Answer, Client,
    LxcPath, Options, Server,
};

/// The recorded answer of `GET container/lxc/utest/all` (resource.html).
const RECORDED_ALL: &str = r#"{
    "arch": "amd64", "autostart": false, "image": "ubuntu-bionic", "name": "utest",
    "network": {"hostname": "utest", "mode": "", "port": []},
    "resource": {"device": [], "limit": {}},
    "type": "lxc", "version": "latest",
    "volume": {"container": [], "host": {}}
}"#;

/// Assert `got` has the keys and JSON types of `recorded`, recursively
/// through objects (arrays: their type only).
fn same_shape(what: &str, recorded: &Value, got: &Value) {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    assert_eq!(kind(recorded), kind(got), "{what}: {got}");
    if let (Value::Object(r), Value::Object(g)) = (recorded, got) {
        let rk: Vec<&String> = r.keys().collect();
        let gk: Vec<&String> = g.keys().collect();
        // `limit` holds only the limits set, as recorded after a change;
        // `volume.host` is keyed by host folder.
        if what.ends_with(".limit") || what.ends_with(".volume.host") {
            return;
        }
        assert_eq!(rk, gk, "{what}: {got}");
        for (k, v) in r {
            same_shape(&format!("{what}.{k}"), v, &g[k]);
        }
    }
}

fn assert_all_shape(answer: &Answer) {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let recorded: Value = serde_json::from_str(RECORDED_ALL).unwrap();
    same_shape("all", &recorded, &answer.body);
}

/// A Docker container, removed (with its anonymous volumes) when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker_ok(&["rm", "-f", "-v", &self.0]);
        // A recreate that was cut short leaves the old one under an aside name.
        let listed = std::process::Command::new("docker")
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .args(["--filter", &format!("name={}-replaced-", self.0)])
            .output();
        for name in listed
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
        {
            let _ = docker_ok(&["rm", "-f", "-v", name]);
        }
    }
}

async fn create(c: &Client, name: &str, extra: Value) -> Container {
    let mut body = json!({
        "type": "docker", "repository": "dockerhub", "name": name,
        "image": "busybox", "tag": "latest", "command": ["sleep", "600"],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let guard = Container(name.to_string());
    let r = c
        .send(Method::POST, "container", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 200, "create {name}: {:?}", r.body);
    guard
}

fn inspect(name: &str) -> Value {
    let text = docker(&["inspect", name]);
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

async fn send(c: &Client, method: Method, path: &str, body: Value) -> Answer {
    c.send(method, path, Some(&body.to_string())).await
}

fn ports_of(all: &Value) -> Vec<Value> {
    all["network"]["port"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn admin_server() -> (Server, Client) {
    let server = Server::start(Options::with_plugins(&["create"]).test_engine()).await;
    let admin = server.admin().await;
    docker(&["pull", "-q", "busybox:latest"]);
    (server, admin)
}

#[tokio::test]
async fn docker_settings_are_read_and_changed_as_recorded() {
    let (_server, admin) = admin_server().await;
    let name = unique("res");
    let _c = create(&admin, &name, json!({})).await;
    let base = format!("container/docker/{name}");

    let all = admin.send(Method::GET, &format!("{base}/all"), None).await;
    assert_all_shape(&all);
    assert_eq!(all.body["name"], name.as_str());
    assert_eq!(all.body["image"], "busybox");
    assert_eq!(all.body["version"], "latest");
    assert_eq!(all.body["type"], "docker");
    assert_eq!(all.body["autostart"], false);

    // Autostart: the restart policy, changed in place.
    let id_before = inspect(&name)["Id"].clone();
    let on = admin
        .send(Method::PUT, &format!("{base}/autostart/on"), None)
        .await;
    assert_all_shape(&on);
    assert_eq!(on.body["autostart"], true);
    assert_eq!(
        inspect(&name)["HostConfig"]["RestartPolicy"]["Name"],
        "always"
    );
    let off = admin
        .send(Method::PUT, &format!("{base}/autostart/off"), None)
        .await;
    assert_eq!(off.body["autostart"], false, "{:?}", off.body);
    assert_eq!(inspect(&name)["HostConfig"]["RestartPolicy"]["Name"], "no");

    // Limits: set in place.
    let set = send(
        &admin,
        Method::POST,
        &format!("{base}/resource/limit"),
        json!({"cputime": 100, "cpuweight": 600, "memory": "512m"}),
    )
    .await;
    assert_all_shape(&set);
    assert_eq!(
        set.body["resource"]["limit"],
        json!({"cputime": 100, "cpuweight": 600, "memory": "512m"})
    );
    let host = inspect(&name)["HostConfig"].clone();
    assert_eq!(host["Memory"], 512u64 << 20);
    assert_eq!(host["CpuShares"], 600);
    assert_eq!(host["CpuQuota"], 10_000);
    assert_eq!(inspect(&name)["Id"], id_before, "limits change in place");

    // Dropping one limit (the engine cannot: a recreate) keeps the others.
    let dropped = send(
        &admin,
        Method::DELETE,
        &format!("{base}/resource/limit"),
        json!({"cputime": 0}),
    )
    .await;
    assert_eq!(dropped.status, 200, "{:?}", dropped.body);
    assert_eq!(dropped.body, json!([]));
    let all = admin.send(Method::GET, &format!("{base}/all"), None).await;
    assert_eq!(
        all.body["resource"]["limit"],
        json!({"cpuweight": 600, "memory": "512m"})
    );
    let after = inspect(&name);
    assert_eq!(after["HostConfig"]["CpuQuota"], 0);
    assert_eq!(after["State"]["Running"], true, "the new one runs");

    // Port forwards: add, replace, delete.
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let added = send(
        &admin,
        Method::POST,
        &format!("{base}/network/port"),
        json!([p1, 80, "tcp"]),
    )
    .await;
    assert_all_shape(&added);
    assert_eq!(ports_of(&added.body), vec![json!([p1, 80, "tcp"])]);
    let bound = &inspect(&name)["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"];
    assert_eq!(bound, &json!(p1.to_string()));
    let again = send(
        &admin,
        Method::POST,
        &format!("{base}/network/port"),
        json!([p1, 81, "tcp"]),
    )
    .await;
    again.assert_error(409, Some("conflict"));

    let replaced = send(
        &admin,
        Method::POST,
        &format!("{base}/network/ports"),
        json!([[p2, 80, "tcp"], [p3, 53, "udp"]]),
    )
    .await;
    assert_all_shape(&replaced);
    let mut ports = ports_of(&replaced.body);
    ports.sort_by_key(|p| p[0].as_u64());
    let mut want = vec![json!([p2, 80, "tcp"]), json!([p3, 53, "udp"])];
    want.sort_by_key(|p| p[0].as_u64());
    assert_eq!(ports, want);
    let bindings = inspect(&name)["HostConfig"]["PortBindings"].clone();
    assert_eq!(bindings["53/udp"][0]["HostPort"], p3.to_string());
    assert!(bindings.get("80/tcp").is_some(), "{bindings}");

    let deleted = send(
        &admin,
        Method::DELETE,
        &format!("{base}/network/port"),
        json!([p2, 80, "tcp"]),
    )
    .await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    assert_eq!(deleted.body, json!([]));
    let all = admin.send(Method::GET, &format!("{base}/all"), None).await;
    assert_eq!(ports_of(&all.body), vec![json!([p3, 53, "udp"])]);
    let none = send(
        &admin,
        Method::DELETE,
        &format!("{base}/network/port"),
        json!([p2, 80, "tcp"]),
    )
    .await;
    none.assert_error(404, Some("unknown_port"));
    let cleared = send(
        &admin,
        Method::POST,
        &format!("{base}/network/ports"),
        json!([]),
    )
    .await;
    assert_eq!(ports_of(&cleared.body), Vec::<Value>::new());

    // Devices.
    let devices = admin.send(Method::GET, "resource/device", None).await;
    assert_eq!(devices.status, 200);
    let names = devices.body.as_array().unwrap();
    assert!(names.contains(&json!("Input_(13)")), "{names:?}");
    assert!(names.iter().all(Value::is_string));
    let dev = send(
        &admin,
        Method::POST,
        &format!("{base}/resource/device"),
        json!(["allow", "Input_(13)", "rwm"]),
    )
    .await;
    assert_all_shape(&dev);
    assert_eq!(
        dev.body["resource"]["device"],
        json!([["allow", "Input_(13)", "rwm"]])
    );
    assert_eq!(
        inspect(&name)["HostConfig"]["DeviceCgroupRules"],
        json!(["c 13:* rwm"])
    );
    let two = send(
        &admin,
        Method::POST,
        &format!("{base}/resource/devices"),
        json!([["allow", "Input_(13)", "rwm"], ["allow", "TTY_(4)", "rwm"]]),
    )
    .await;
    assert_eq!(
        two.body["resource"]["device"],
        json!([["allow", "Input_(13)", "rwm"], ["allow", "TTY_(4)", "rwm"]])
    );
    let gone = send(
        &admin,
        Method::DELETE,
        &format!("{base}/resource/device"),
        json!(["allow", "Input_(13)", "rwm"]),
    )
    .await;
    assert_eq!(gone.body, json!([]), "{:?}", gone.body);
    assert_eq!(
        inspect(&name)["HostConfig"]["DeviceCgroupRules"],
        json!(["c 4:* rwm"])
    );

    // The owner label stays through every recreate.
    let labels = inspect(&name)["Config"]["Labels"].clone();
    assert!(
        labels.as_object().unwrap().values().any(|v| v == "admin"),
        "{labels}"
    );
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let (_server, admin) = admin_server().await;
    let name = unique("resbad");
    let _c = create(&admin, &name, json!({})).await;
    let base = format!("container/docker/{name}");
    let cases: Vec<(Method, String, Option<&str>, &str)> = vec![
        (
            Method::PUT,
            format!("{base}/autostart/maybe"),
            None,
            "state",
        ),
        (
            Method::POST,
            format!("{base}/network/port"),
            Some("[70000, 80, \"tcp\"]"),
            "port[0]",
        ),
        (
            Method::POST,
            format!("{base}/network/port"),
            Some("[8080, 80, \"sctp\"]"),
            "port[2]",
        ),
        (
            Method::POST,
            format!("{base}/network/ports"),
            Some("{}"),
            "ports",
        ),
        (
            Method::POST,
            format!("{base}/resource/device"),
            Some("[\"allow\", \"Input\", \"rwm\"]"),
            "device[1]",
        ),
        (
            Method::POST,
            format!("{base}/resource/devices"),
            Some("[[\"deny\", \"Input_(13)\"]]"),
            "devices[0][0]",
        ),
        (
            Method::POST,
            format!("{base}/resource/limit"),
            Some("{\"cputime\": 5}"),
            "cputime",
        ),
        (
            Method::POST,
            format!("{base}/resource/limit"),
            Some("{\"memory\": \"32m\"}"),
            "memory",
        ),
        (
            Method::DELETE,
            format!("{base}/resource/limit"),
            Some("{\"memroy\": 0}"),
            "memroy",
        ),
        (
            Method::POST,
            format!("{base}/volume/host"),
            Some("{\"/a\": {\"bind\": \"rel\"}}"),
            "volume.host[/a].bind",
        ),
        (
            Method::PUT,
            "container/kvm/x/autostart/on".to_string(),
            None,
            "type",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = admin.send(method.clone(), &path, body).await;
        r.assert_error(400, None);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{method} {path} {body:?}: {message}"
        );
    }
    let r = admin
        .send(Method::POST, &format!("{base}/network/port"), Some("[1,"))
        .await;
    r.assert_error(400, Some("invalid_json"));
    let r = admin
        .send(
            Method::GET,
            "container/docker/no-such-container-x/all",
            None,
        )
        .await;
    r.assert_error(404, None);
    // Nothing changed.
    let all = admin.send(Method::GET, &format!("{base}/all"), None).await;
    assert_eq!(ports_of(&all.body), Vec::<Value>::new());
}

#[tokio::test]
async fn a_failed_recreate_leaves_the_old_container_running_with_its_data() {
    let (_server, admin) = admin_server().await;
    let name = unique("resfail");
    let (p1, taken) = (free_port(), free_port());
    let _c = create(
        &admin,
        &name,
        json!({"network": {"port": [[p1, 80, "tcp"]]}}),
    )
    .await;
    let old_id = inspect(&name)["Id"].clone();
    // Data in the writable layer, which a recreate would not keep.
    docker(&["exec", &name, "sh", "-c", "echo kept > /tmp/mark"]);
    let listener = std::net::TcpListener::bind(("0.0.0.0", taken)).unwrap();
    let r = send(
        &admin,
        Method::POST,
        &format!("container/docker/{name}/network/port"),
        json!([taken, 8080, "tcp"]),
    )
    .await;
    assert!(r.status == 502 || r.status == 409, "{:?}", r.body);
    assert!(r.body["error"]["message"].is_string(), "{:?}", r.body);
    drop(listener);

    let now = inspect(&name);
    assert_eq!(
        now["Id"], old_id,
        "the old container is back under its name"
    );
    assert_eq!(now["State"]["Running"], true);
    assert_eq!(
        docker(&["exec", &name, "cat", "/tmp/mark"]),
        "kept",
        "its data is still there"
    );
    assert_eq!(
        now["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        p1.to_string()
    );
    let leftovers = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(leftovers, name, "no new or aside container is left");
    let all = admin
        .send(Method::GET, &format!("container/docker/{name}/all"), None)
        .await;
    assert_eq!(ports_of(&all.body), vec![json!([p1, 80, "tcp"])]);
}

#[tokio::test]
async fn another_user_cannot_change_a_container_and_a_non_admin_is_checked_as_at_create() {
    let config = format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    );
    let server = Server::start(
        Options::with_plugins(&["create"])
            .test_engine()
            .config(&config),
    )
    .await;
    docker(&["pull", "-q", "busybox:latest"]);
    let alice = server.client();
    assert_eq!(alice.login("alice", "alice-pw").await.status, 200);
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let name = unique("resalice");
    let _c = create(&alice, &name, json!({})).await;
    let base = format!("container/docker/{name}");

    // Bob can neither see nor change alice's container.
    let port = free_port();
    let refused: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{base}/all"), None),
        (Method::PUT, format!("{base}/autostart/on"), None),
        (
            Method::POST,
            format!("{base}/network/port"),
            Some(json!([port, 80, "tcp"])),
        ),
        (
            Method::POST,
            format!("{base}/resource/limit"),
            Some(json!({"memory": "128m"})),
        ),
        (Method::DELETE, format!("{base}/resource/limit"), None),
        (
            Method::POST,
            format!("{base}/resource/devices"),
            Some(json!([])),
        ),
        (Method::POST, format!("{base}/volume/host"), Some(json!({}))),
    ];
    for (method, path, body) in refused {
        let body = body.map(|b| b.to_string());
        let r = bob.send(method.clone(), &path, body.as_deref()).await;
        r.assert_error(403, Some("not_yours"));
    }
    let id = inspect(&name)["Id"].clone();
    assert_eq!(inspect(&name)["HostConfig"]["RestartPolicy"]["Name"], "no");

    // Alice's own changes pass the create checks: no port below 1024, no
    // device, no host folder outside her share folder.
    let low = send(
        &alice,
        Method::POST,
        &format!("{base}/network/port"),
        json!([80, 80, "tcp"]),
    )
    .await;
    low.assert_error(403, Some("denied"));
    assert!(
        low.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("host port 80"),
        "{:?}",
        low.body
    );
    let dev = send(
        &alice,
        Method::POST,
        &format!("{base}/resource/device"),
        json!(["allow", "Input_(13)", "rwm"]),
    )
    .await;
    dev.assert_error(403, Some("denied"));
    let out = send(
        &alice,
        Method::POST,
        &format!("{base}/volume/host"),
        json!({"/../bob": {"bind": "/x", "ro": false}}),
    )
    .await;
    // As at create: refused, as outside her folder or as a bad path.
    assert!(out.status == 403 || out.status == 400, "{:?}", out.body);
    assert_eq!(inspect(&name)["Id"], id, "nothing was recreated");
    let devices = alice.send(Method::GET, "resource/device", None).await;
    assert_eq!(devices.body, json!([]), "alice's policy allows no device");

    // What her policy allows works.
    let ok = send(
        &alice,
        Method::POST,
        &format!("{base}/network/port"),
        json!([port, 80, "tcp"]),
    )
    .await;
    assert_all_shape(&ok);
    assert_eq!(ports_of(&ok.body), vec![json!([port, 80, "tcp"])]);
    let folder = server.data_dir().join("share/alice/web");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("index.html"), "from alice's folder").unwrap();
    let bound = send(
        &alice,
        Method::POST,
        &format!("{base}/volume/host"),
        json!({"/web": {"bind": "/srv", "ro": true}}),
    )
    .await;
    assert_all_shape(&bound);
    assert_eq!(
        bound.body["volume"]["host"].as_object().unwrap().len(),
        1,
        "{:?}",
        bound.body
    );
    assert_eq!(
        docker(&["exec", &name, "cat", "/srv/index.html"]),
        "from alice's folder"
    );
    let on = alice
        .send(Method::PUT, &format!("{base}/autostart/on"), None)
        .await;
    assert_eq!(on.body["autostart"], true, "{:?}", on.body);
}

/// LXC containers of one test's own LXC path, destroyed when dropped.
fn config_of(path: &Path, name: &str) -> String {
    std::fs::read_to_string(path.join(name).join("config")).unwrap()
}

#[tokio::test]
async fn lxc_settings_change_its_config_and_port_forwards() {
    let path = LxcPath::new();
    let server =
        Server::start(Options::with_plugins(&["create", "image_download"]).test_lxc(path.0.path()))
            .await;
    let admin = server.admin().await;
    let name = "utest";
    let made = send(
        &admin,
        Method::POST,
        "container",
        json!({"type": "lxc", "repository": "qnap", "name": name, "image": "busybox", "tag": "latest"}),
    )
    .await;
    assert_eq!(made.status, 200, "{:?}\n{}", made.body, server.logs());
    let base = format!("container/lxc/{name}");

    let all = admin.send(Method::GET, &format!("{base}/all"), None).await;
    assert_all_shape(&all);
    assert_eq!(all.body["type"], "lxc");
    assert_eq!(all.body["name"], name);

    let on = admin
        .send(Method::PUT, &format!("{base}/autostart/on"), None)
        .await;
    assert_all_shape(&on);
    assert_eq!(on.body["autostart"], true);
    assert!(config_of(path.0.path(), name).contains("lxc.start.auto = 1\n"));
    let off = admin
        .send(Method::PUT, &format!("{base}/autostart/off"), None)
        .await;
    assert_eq!(off.body["autostart"], false);
    let config = config_of(path.0.path(), name);
    assert!(config.contains("lxc.start.auto = 0\n"), "{config}");
    assert!(!config.contains("lxc.start.auto = 1"), "{config}");

    let limited = send(
        &admin,
        Method::POST,
        &format!("{base}/resource/limit"),
        json!({"memory": "256m", "cputime": 100}),
    )
    .await;
    assert_all_shape(&limited);
    assert_eq!(
        limited.body["resource"]["limit"],
        json!({"cputime": 100, "memory": "256m"})
    );
    let config = config_of(path.0.path(), name);
    assert!(
        config.contains(&format!("memory.max = {}", 256u64 << 20))
            || config.contains(&format!("memory.limit_in_bytes = {}", 256u64 << 20)),
        "{config}"
    );
    let dropped = send(
        &admin,
        Method::DELETE,
        &format!("{base}/resource/limit"),
        json!({"memory": 0}),
    )
    .await;
    assert_eq!(dropped.body, json!([]), "{:?}", dropped.body);
    let all = admin.send(Method::GET, &format!("{base}/all"), None).await;
    assert_eq!(all.body["resource"]["limit"], json!({"cputime": 100}));
    let config = config_of(path.0.path(), name);
    assert!(!config.contains("memory."), "{config}");

    // Host folders: replaced, mounted from the next start.
    let folder = server.data_dir().join("share/web");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("index.html"), "from the share").unwrap();
    let bound = send(
        &admin,
        Method::POST,
        &format!("{base}/volume/host"),
        json!({"/web": {"bind": "/srv", "ro": true}}),
    )
    .await;
    assert_all_shape(&bound);
    assert_eq!(
        bound.body["volume"]["host"],
        json!({"/web": {"bind": "/srv", "ro": true}})
    );
    let config = config_of(path.0.path(), name);
    assert_eq!(config.matches("lxc.mount.entry").count(), 1, "{config}");
    assert!(
        config.contains(" srv none bind,create=dir,ro 0 0"),
        "{config}"
    );

    // The container starts with its new config.
    let started = admin
        .send(Method::PUT, &format!("container/lxc/{name}/restart"), None)
        .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    eventually("the container runs", Duration::from_secs(30), || {
        (stevedore_e2e::lxc(path.0.path(), "info", name, &["-s", "-H"]) == "RUNNING").then_some(())
    })
    .await;
    assert_eq!(
        stevedore_e2e::lxc(
            path.0.path(),
            "attach",
            name,
            &["--", "/bin/cat", "/srv/index.html"]
        ),
        "from the share"
    );
    let cleared = send(
        &admin,
        Method::POST,
        &format!("{base}/volume/host"),
        json!({}),
    )
    .await;
    assert_eq!(
        cleared.body["volume"]["host"],
        json!({}),
        "{:?}",
        cleared.body
    );
    let config = config_of(path.0.path(), name);
    assert!(!config.contains("lxc.mount.entry"), "{config}");
    // Port forwards: the container's DNAT rules, changed at once.
    let (p1, p2) = (free_port(), free_port());
    let added = send(
        &admin,
        Method::POST,
        &format!("{base}/network/port"),
        json!([p1, 80, "tcp"]),
    )
    .await;
    assert_all_shape(&added);
    assert_eq!(ports_of(&added.body), vec![json!([p1, 80, "tcp"])]);
    let page = eventually(
        "busybox httpd through the forwarded port",
        Duration::from_secs(30),
        || http_get(p1),
    )
    .await;
    assert!(page.contains("hello from stevedore lxc"), "{page}");
    let replaced = send(
        &admin,
        Method::POST,
        &format!("{base}/network/ports"),
        json!([[p2, 80, "tcp"]]),
    )
    .await;
    assert_eq!(ports_of(&replaced.body), vec![json!([p2, 80, "tcp"])]);
    eventually("the new port", Duration::from_secs(30), || http_get(p2)).await;
    assert!(http_get(p1).is_none(), "the old port is forwarded no more");
    // A port a host socket holds is refused; the old forward stays.
    let held = std::net::TcpListener::bind(("0.0.0.0", p1)).unwrap();
    let taken = send(
        &admin,
        Method::POST,
        &format!("{base}/network/ports"),
        json!([[p1, 80, "tcp"]]),
    )
    .await;
    assert!(
        taken.status == 409 || taken.status == 400,
        "{:?}",
        taken.body
    );
    drop(held);
    eventually("the old forward", Duration::from_secs(30), || http_get(p2)).await;
    let all = admin.send(Method::GET, &format!("{base}/all"), None).await;
    assert_eq!(ports_of(&all.body), vec![json!([p2, 80, "tcp"])]);
    let deleted = send(
        &admin,
        Method::DELETE,
        &format!("{base}/network/port"),
        json!([p2, 80, "tcp"]),
    )
    .await;
    assert_eq!(deleted.body, json!([]), "{:?}", deleted.body);
    assert!(http_get(p2).is_none());
}
