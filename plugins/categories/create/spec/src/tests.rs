use super::*;
use serde_json::json;

fn plan_of(v: Value) -> Result<Plan, Error> {
    plan(&decode(&stevedore_sdk::decode::<Body>(&v.to_string())?)?)
}

fn message(v: Value) -> String {
    stevedore_sdk::expect_invalid(&v, plan_of(v.clone()))
}

/// A valid docker body with `extra` laid over it.
fn docker(extra: Value) -> Value {
    let mut base = json!({"type": "docker", "name": "web", "image": "busybox", "tag": "latest", "repository": "dockerhub"});
    merge(&mut base, &extra);
    base
}

fn lxc(extra: Value) -> Value {
    let mut base = json!({"type": "lxc", "name": "ctest", "image": "ubuntu-trusty", "tag": "latest", "repository": "qnap"});
    merge(&mut base, &extra);
    base
}

#[test]
fn seed_bodies_plan() {
    let p = plan_of(lxc(json!({}))).unwrap();
    assert_eq!(p.spec.runtime, RuntimeKind::Lxc);
    assert_eq!(p.spec.image, "ubuntu-trusty:latest");
    assert!(matches!(p.source, Source::Qnap));
    let p = plan_of(json!({
        "type": "docker", "repository": "dockerhub", "name": "dtest", "image": "ubuntu", "tag": "latest",
        "download": {"description": "I am description.", "location": "https://hub.docker.com/_/ubuntu/",
                     "icon": "http://download.qnap.com/QPKG/images/QPKG/container/ubuntu_icon.png"}
    }))
    .unwrap();
    assert_eq!(p.reference(), "ubuntu:latest");
    assert_eq!(p.spec.name, "dtest");
    assert!(matches!(p.source, Source::Dockerhub));
    // The container_import example's create fields, for lxc.
    plan_of(lxc(json!({
        "network": {"hostname": "CustomHostName"},
        "resource": {"device": [["allow", "video4linux_(81)", "rw"]],
                     "limit": {"cputime": 512, "cpuweight": 512, "memory": "768m"}}
    })))
    .unwrap();
}

#[test]
fn minimal_body_takes_defaults() {
    let p = plan_of(json!({"name": "ab", "image": "busybox"})).unwrap();
    assert_eq!(p.spec.runtime, RuntimeKind::Docker);
    assert_eq!(p.reference(), "busybox:latest");
    assert!(matches!(p.source, Source::Dockerhub));
    let s = &p.spec;
    assert!(!s.privileged && !s.autostart);
    assert!(s.entrypoint.is_none() && s.command.is_none() && s.user.is_none());
    assert!(s.working_dir.is_none() && s.hostname.is_none());
    assert!(s.environment.is_empty() && s.links.is_empty() && s.ports.is_empty());
    assert!(s.cpu_shares.is_none() && s.cpu_time_ms.is_none() && s.memory_bytes.is_none());
    assert!(s.binds.is_empty() && s.volumes_from.is_empty() && s.new_volumes.is_empty());
}

#[test]
fn everything_maps_to_the_spec() {
    let p = plan_of(docker(json!({
        "autostart": true, "privileged": true,
        "entrypoint": "/bin/sh -c", "command": ["httpd", "-f", "-p", "80"],
        "user": "1000:1000", "working_dir": "/srv",
        "environment": ["A=1", "B=x=y"], "links": {"db": "database", "cache": ""},
        "labels": {"team": "infra"},
        "network": {"dns": ["8.8.8.8", "::1"], "expose_port": [9000, "9001"], "hostname": "web-1",
                    "port": [[8080, 80, "tcp"], ["5353", 53, "UDP"], [0, 443]], "mode": "nat"},
        "resource": {"limit": {"cpuweight": 512, "cputime": "500", "memory": "768m"},
                     "device": [["allow", "video4linux_(81)", "rw"], ["allow", "sound_(116:3)", "rwm"], "c 189:* rwm"]},
        "volume": {"host": {"/Public/web": {"bind": "/srv/www", "ro": true}, "data": {"bind": "/data"}},
                   "container": ["db", "logs:ro"], "new": ["/cache"]}
    })))
    .unwrap();
    let s = p.spec;
    assert!(s.autostart && s.privileged);
    assert_eq!(s.entrypoint.unwrap(), ["/bin/sh", "-c"]);
    assert_eq!(s.command.unwrap(), ["httpd", "-f", "-p", "80"]);
    assert_eq!(s.user.as_deref(), Some("1000:1000"));
    assert_eq!(s.working_dir.as_deref(), Some("/srv"));
    assert_eq!(s.environment, ["A=1", "B=x=y"]);
    assert_eq!(
        s.links,
        [
            ("cache".to_string(), "cache".to_string()),
            ("db".to_string(), "database".to_string())
        ]
    );
    assert_eq!(s.labels, [("team".to_string(), "infra".to_string())]);
    assert_eq!(s.dns, ["8.8.8.8", "::1"]);
    assert_eq!(s.expose_ports, [9000, 9001]);
    assert_eq!(s.hostname.as_deref(), Some("web-1"));
    let ports: Vec<(u16, u16, &str)> = s
        .ports
        .iter()
        .map(|p| (p.host_port, p.container_port, p.protocol.as_str()))
        .collect();
    assert_eq!(
        ports,
        [(8080, 80, "tcp"), (5353, 53, "udp"), (0, 443, "tcp")]
    );
    assert_eq!(s.cpu_shares, Some(512));
    assert_eq!(s.cpu_time_ms, Some(500));
    assert_eq!(s.memory_bytes, Some(768 << 20));
    assert_eq!(s.device_rules, ["c 81:* rw", "c 116:3 rwm", "c 189:* rwm"]);
    let binds: Vec<(&str, &str, bool)> = s
        .binds
        .iter()
        .map(|b| (b.host_path.as_str(), b.container_path.as_str(), b.read_only))
        .collect();
    assert_eq!(
        binds,
        [("Public/web", "/srv/www", true), ("data", "/data", false)]
    );
    assert_eq!(s.volumes_from, ["db", "logs:ro"]);
    assert_eq!(s.new_volumes, ["/cache"]);
}

#[test]
fn top_level_fields_are_checked() {
    assert_eq!(message(json!({"image": "busybox"})), "name: is required");
    assert_eq!(message(json!({"name": "web"})), "image: is required");
    assert_eq!(
        message(docker(json!({"name": "-web"}))),
        "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"
    );
    assert_eq!(
        message(docker(json!({"type": "rkt"}))),
        "type: must be \"docker\" or \"lxc\""
    );
    assert!(message(docker(json!({"image": "Ubuntu"}))).starts_with("image: must be a repository"));
    assert!(message(docker(json!({"tag": "a b"}))).starts_with("tag: must match"));
    assert_eq!(
        message(docker(json!({"repository": "gcr"}))),
        "repository: must be \"dockerhub\", \"qnap\" or \"private\""
    );
    assert_eq!(
        message(docker(json!({"repository": "private"}))),
        "registry_name: is required when repository is \"private\""
    );
    let p = plan_of(docker(
        json!({"repository": "private", "registry_name": "corp"}),
    ))
    .unwrap();
    assert!(matches!(p.source, Source::Private(n) if n == "corp"));
    // Type errors name the field, via serde.
    assert!(message(docker(json!({"autostart": "yes"}))).starts_with("autostart: invalid type"));
    assert!(message(docker(json!({"download": "x"}))).starts_with("download: invalid type"));
    assert!(message(docker(json!({"network": {"dns": [1]}})))
        .starts_with("network.dns[0]: invalid type"));
    // Unknown top-level fields are ignored.
    plan_of(docker(json!({"fingerprint": "abc", "cpu": 1}))).unwrap();
}

#[test]
fn docker_fields_are_checked() {
    assert_eq!(
        message(docker(json!({"command": "echo 'unclosed"}))),
        "command: has an unclosed ' quote"
    );
    assert_eq!(
        message(docker(json!({"entrypoint": 5}))),
        "entrypoint: must be a string or a list of strings"
    );
    assert_eq!(
        message(docker(json!({"command": ["a", 1]}))),
        "command[1]: must be a string"
    );
    assert_eq!(
        message(docker(json!({"user": "a b"}))),
        "user: must be a user name or uid[:gid] without spaces"
    );
    assert_eq!(
        message(docker(json!({"working_dir": "srv"}))),
        "working_dir: must be an absolute path inside the container"
    );
    assert_eq!(
        message(docker(json!({"environment": ["NOVALUE"]}))),
        "environment[0]: must be \"KEY=value\""
    );
    assert_eq!(
        message(docker(json!({"environment": ["=x"]}))),
        "environment[0]: must be \"KEY=value\""
    );
    assert_eq!(
        message(docker(json!({"environment": [1]}))),
        "environment[0]: must be a string \"KEY=value\""
    );
    assert_eq!(
        message(docker(json!({"environment": "A=1"}))),
        "environment: must be a list of \"KEY=value\" strings or an object"
    );
    let p = plan_of(docker(
        json!({"environment": {"A": 1, "B": true, "C": "x"}}),
    ))
    .unwrap();
    assert_eq!(p.spec.environment, ["A=1", "B=true", "C=x"]);
    assert_eq!(
        message(docker(json!({"environment": {"A": [1]}}))),
        "environment.A: must be a string, number or boolean"
    );
    assert_eq!(
        message(docker(json!({"links": {"-db": "x"}}))),
        "links.-db: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"
    );
    assert_eq!(
        message(docker(json!({"links": {"db": "a b"}}))),
        "links.db: alias must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"
    );
    assert_eq!(
        message(docker(json!({"links": {"db": 1}}))),
        "links.db: must be the alias, a string"
    );
    assert_eq!(
        message(docker(json!({"links": "db"}))),
        "links: must be an object {\"container\": \"alias\"}"
    );
    let p = plan_of(docker(json!({"links": ["db:database", "cache"]}))).unwrap();
    assert_eq!(
        p.spec.links,
        [
            ("db".to_string(), "database".to_string()),
            ("cache".to_string(), "cache".to_string())
        ]
    );
    assert_eq!(
        message(docker(json!({"links": [1]}))),
        "links[0]: must be \"container:alias\""
    );
}

#[test]
fn docker_only_fields_are_refused_for_lxc() {
    for (body, field) in [
        (json!({"privileged": true}), "privileged"),
        (json!({"entrypoint": "/bin/sh"}), "entrypoint"),
        (json!({"command": ["init"]}), "command"),
        (json!({"user": "root"}), "user"),
        (json!({"working_dir": "/"}), "working_dir"),
        (json!({"environment": ["A=1"]}), "environment"),
        (json!({"links": {"db": "db"}}), "links"),
        (json!({"volume": {"container": ["db"]}}), "volume.container"),
        (json!({"volume": {"new": ["/data"]}}), "volume.new"),
    ] {
        assert_eq!(
            message(lxc(body)),
            format!("{field}: only docker containers take this field")
        );
    }
    // LXC takes DNS servers and exposed ports.
    let p = plan_of(lxc(
        json!({"network": {"dns": ["8.8.8.8"], "expose_port": [80]}}),
    ))
    .unwrap();
    assert_eq!(p.spec.dns, ["8.8.8.8"]);
    assert_eq!(p.spec.expose_ports, [80]);
    // Values that ask for nothing pass: a UI may send them for both types.
    plan_of(lxc(
        json!({"privileged": false, "command": "", "environment": [], "user": "",
                      "network": {"dns": [], "port": [[2222, 22, "tcp"]]},
                      "volume": {"host": {"/Public": {"bind": "/mnt/public"}}}}),
    ))
    .unwrap();
}

#[test]
fn network_fields_are_checked() {
    assert_eq!(
        message(docker(json!({"network": {"dns": ["1.2.3"]}}))),
        "network.dns[0]: must be an IP address"
    );
    assert_eq!(
        message(docker(json!({"network": {"expose_port": [0]}}))),
        "network.expose_port[0]: must be a port number 1..=65535"
    );
    assert_eq!(
        message(docker(json!({"network": {"expose_port": ["http"]}}))),
        "network.expose_port[0]: must be a port number 1..=65535"
    );
    assert!(message(docker(json!({"network": {"hostname": "a_b"}})))
        .starts_with("network.hostname: must be a host name"));
    assert_eq!(
        message(docker(json!({"network": {"port": [[8080, 80, "sctp"]]}}))),
        "network.port[0][2]: must be \"tcp\" or \"udp\""
    );
    assert_eq!(
        message(docker(json!({"network": {"port": [[8080, 80, 6]]}}))),
        "network.port[0][2]: must be \"tcp\" or \"udp\""
    );
    assert_eq!(
        message(docker(json!({"network": {"port": [[70000, 80]]}}))),
        "network.port[0][0]: must be a port number 0..=65535"
    );
    assert_eq!(
        message(docker(json!({"network": {"port": [[80, 0]]}}))),
        "network.port[0][1]: must be a port number 1..=65535"
    );
    assert_eq!(
        message(docker(json!({"network": {"port": [8080]}}))),
        "network.port[0]: must be [host port, container port, \"tcp\" or \"udp\"]"
    );
    assert_eq!(
        message(docker(json!({"network": {"port": [[1, 2, "tcp", 4]]}}))),
        "network.port[0]: must be [host port, container port, \"tcp\" or \"udp\"]"
    );
    assert_eq!(
        message(docker(
            json!({"network": {"port": [[8080, 80], [8080, 81, "tcp"]]}})
        )),
        "network.port[1][0]: host port 8080/tcp is published twice"
    );
    // Same host port on tcp and udp is fine; so are several "any port" entries.
    plan_of(docker(
        json!({"network": {"port": [[53, 53, "tcp"], [53, 53, "udp"], [0, 1], [0, 2]]}}),
    ))
    .unwrap();
    assert_eq!(
        message(docker(json!({"network": {"mode": "host"}}))),
        "network.mode: must be \"nat\" (the engine's default network) or \"bridge\" (a host interface)"
    );
    let p = plan_of(docker(
        json!({"network": {"mode": "", "mac_addr": "", "interface": "", "join": false}}),
    ))
    .unwrap();
    assert!(p.network.is_none(), "the default bridge: a plain create");
}

#[test]
fn network_modes_map_to_a_choice() {
    let choice = |net: Value| plan_of(docker(json!({ "network": net }))).unwrap().network;
    // A MAC address on the default bridge, normalised.
    let c = choice(json!({"mode": "nat", "mac_addr": "02-42-AC-11-00-99"})).unwrap();
    assert!(matches!(c.mode, NetworkMode::Nat));
    assert_eq!(c.mac_address.as_deref(), Some("02:42:ac:11:00:99"));
    // Container Station's own `bridge` example, and `interface` alone.
    let c = choice(json!({"mode": "bridge", "bridge": {"mode": "dhcp",
        "interface": {"bridge": "br0", "name": "eth0"}}, "join": true}))
    .unwrap();
    assert!(matches!(c.mode, NetworkMode::HostInterface(ref i) if i == "br0"));
    let c = choice(json!({"interface": "eth1", "mac_addr": "02:00:00:00:00:01"})).unwrap();
    assert!(matches!(c.mode, NetworkMode::HostInterface(ref i) if i == "eth1"));
    assert_eq!(c.mac_address.as_deref(), Some("02:00:00:00:00:01"));
    // Another container's network.
    let c = choice(json!({"join": "db"})).unwrap();
    assert!(matches!(c.mode, NetworkMode::Join(ref n) if n == "db"));
    assert!(c.mac_address.is_none());
}

#[test]
fn network_settings_we_cannot_honour_are_refused_naming_the_field() {
    let net = |n: Value| message(docker(json!({ "network": n })));
    assert_eq!(
        net(json!({"mode": "bridge"})),
        "network.interface: is required with network.mode \"bridge\""
    );
    assert_eq!(
        net(json!({"mode": "nat", "interface": "eth0"})),
        "network.interface: needs network.mode \"bridge\" (\"nat\" is the engine's default network)"
    );
    assert_eq!(
        net(json!({"interface": "eth0", "bridge": {"interface": {"bridge": "br0"}}})),
        "network.bridge.interface.bridge: `br0` differs from network.interface `eth0`"
    );
    assert_eq!(
        net(json!({"interface": "../../etc"})),
        "network.interface: must be a host interface name (1 to 15 letters, digits, `_`, `.` or `-`)"
    );
    assert_eq!(
        net(json!({"mode": "bridge", "interface": "eth0", "bridge": {"mode": "static"}})),
        "network.bridge.mode: only \"dhcp\" is supported: the engine assigns the address on the interface's network"
    );
    assert_eq!(
        net(json!({"interface": "eth0", "bridge": {"interface": {"name": "eth1"}}})),
        "network.bridge.interface.name: must be \"eth0\": the engine names the container's interface"
    );
    assert_eq!(
        net(json!({"mac_addr": "02:42:ac:11:00"})),
        "network.mac_addr: must be a MAC address such as \"02:42:ac:11:00:02\""
    );
    assert_eq!(
        net(json!({"mac_addr": "01:00:5e:00:00:01"})),
        "network.mac_addr: must be a unicast address (the first octet even)"
    );
    assert_eq!(
        net(json!({"join": "db", "interface": "eth0"})),
        "network.join: cannot be a container with network.mode \"bridge\" or network.interface"
    );
    assert_eq!(
        net(json!({"join": "db", "mac_addr": "02:00:00:00:00:01"})),
        "network.mac_addr: cannot be set with network.join: the joined container's network decides it"
    );
    assert_eq!(
        net(json!({"join": "db", "port": [[8080, 80]]})),
        "network.port: cannot be set with network.join: the joined container's network decides it"
    );
    assert_eq!(
        net(json!({"join": 3})),
        "network.join: must be true, false or the name of a container whose network to share"
    );
    assert_eq!(
        message(lxc(json!({"network": {"mac_addr": "02:00:00:00:00:01"}}))),
        "network: only docker containers take this field"
    );
}

#[test]
fn resource_fields_are_checked() {
    let limit = |l: Value| message(docker(json!({"resource": {"limit": l}})));
    assert_eq!(
        limit(json!({"cpuweight": 1})),
        "resource.limit.cpuweight: must be an integer 2..=1024"
    );
    assert_eq!(
        limit(json!({"cpuweight": 1025})),
        "resource.limit.cpuweight: must be an integer 2..=1024"
    );
    assert_eq!(
        limit(json!({"cpuweight": 2.5})),
        "resource.limit.cpuweight: must be an integer 2..=1024"
    );
    assert_eq!(
        limit(json!({"cputime": 9})),
        "resource.limit.cputime: must be an integer 10..=999"
    );
    assert_eq!(
        limit(json!({"cputime": 1000})),
        "resource.limit.cputime: must be an integer 10..=999"
    );
    assert_eq!(
        limit(json!({"memory": "63m"})),
        "resource.limit.memory: must be at least 64m"
    );
    assert_eq!(
        limit(json!({"memory": 1024})),
        "resource.limit.memory: must be at least 64m"
    );
    assert_eq!(
        limit(json!({"memory": "lots"})),
        "resource.limit.memory: must be a size such as \"768m\""
    );
    assert_eq!(
        limit(json!({"memory": true})),
        "resource.limit.memory: must be a size such as \"768m\""
    );
    assert!(
        limit(json!({"memroy": "1g"})).starts_with("resource.limit.memroy: unknown field `memroy`")
    );
    // Bounds are inclusive; empty and null mean unset.
    let p = plan_of(docker(
        json!({"resource": {"limit": {"cpuweight": 2, "cputime": 999, "memory": "64m"}}}),
    ))
    .unwrap();
    assert_eq!(
        (p.spec.cpu_shares, p.spec.cpu_time_ms, p.spec.memory_bytes),
        (Some(2), Some(999), Some(64 << 20))
    );
    let p = plan_of(docker(
        json!({"resource": {"limit": {"cpuweight": 1024, "cputime": 10, "memory": "1g"}}}),
    ))
    .unwrap();
    assert_eq!(
        (p.spec.cpu_shares, p.spec.cpu_time_ms, p.spec.memory_bytes),
        (Some(1024), Some(10), Some(1 << 30))
    );
    let p = plan_of(docker(
        json!({"resource": {"limit": {"cpuweight": null, "memory": ""}}}),
    ))
    .unwrap();
    assert_eq!((p.spec.cpu_shares, p.spec.memory_bytes), (None, None));

    let device = |d: Value| message(docker(json!({"resource": {"device": [d]}})));
    assert_eq!(
        device(json!(["deny", "video4linux_(81)", "rw"])),
        "resource.device[0][0]: must be \"allow\""
    );
    assert_eq!(
        device(json!(["allow", "video4linux", "rw"])),
        "resource.device[0][1]: must name a device with its major number, as \"video4linux_(81)\""
    );
    assert_eq!(
        device(json!(["allow", "video4linux_(x)", "rw"])),
        "resource.device[0][1]: must name a device with its major number, as \"video4linux_(81)\""
    );
    assert_eq!(
        device(json!(["allow", "video4linux_(81)", "rx"])),
        "resource.device[0][2]: must be letters from \"rwm\", each at most once"
    );
    assert_eq!(
        device(json!(["allow", "video4linux_(81)", "rr"])),
        "resource.device[0][2]: must be letters from \"rwm\", each at most once"
    );
    assert_eq!(
        device(json!(["allow", 81, "rw"])),
        "resource.device[0][1]: must be a string"
    );
    assert_eq!(
        device(json!(["allow"])),
        "resource.device[0]: must be [\"allow\", \"name_(major)\", \"rw\"]"
    );
    assert_eq!(
        device(json!(81)),
        "resource.device[0]: must be [\"allow\", \"name_(major)\", \"rw\"]"
    );
    assert!(
        device(json!("x 81:* rw")).starts_with("resource.device[0]: must be a device cgroup rule")
    );
    assert!(
        device(json!("c 81 rw")).starts_with("resource.device[0]: must be a device cgroup rule")
    );
    let p = plan_of(docker(
        json!({"resource": {"device": [["allow", "(81)"], ["allow", "4", "r"], "a * rwm"]}}),
    ))
    .unwrap();
    assert_eq!(p.spec.device_rules, ["c 81:* rwm", "c 4:* r", "a * rwm"]);
}

#[test]
fn volume_fields_are_checked() {
    let host = |h: Value| message(docker(json!({"volume": {"host": h}})));
    assert_eq!(
        host(json!({"../etc": {"bind": "/etc2"}})),
        "volume.host[\"../etc\"]: must not contain `..`"
    );
    assert_eq!(
        host(json!({"/": {"bind": "/x"}})),
        "volume.host[\"/\"]: must name a file under the share root"
    );
    assert_eq!(
        host(json!({"/Public": {"ro": true}})),
        "volume.host[\"/Public\"].bind: is required"
    );
    assert_eq!(
        host(json!({"/Public": {"bind": "mnt"}})),
        "volume.host[\"/Public\"].bind: must be an absolute path inside the container"
    );
    assert!(host(json!({"/Public": {"bind": "/mnt", "readonly": true}}))
        .contains("unknown field `readonly`"));
    assert!(host(json!({"/Public": {"bind": "/mnt", "ro": "yes"}})).contains("invalid type"));
    // `rw`, as public clients send it, and `ro` with it when they agree.
    let read_only = |entry: Value| {
        plan_of(docker(json!({"volume": {"host": {"/Public": entry}}})))
            .unwrap()
            .spec
            .binds[0]
            .read_only
    };
    assert!(!read_only(json!({"bind": "/mnt", "rw": true})));
    assert!(read_only(json!({"bind": "/mnt", "rw": false})));
    assert!(read_only(json!({"bind": "/mnt", "ro": true, "rw": false})));
    assert!(!read_only(json!({"bind": "/mnt", "ro": false, "rw": true})));
    assert!(!read_only(json!({"bind": "/mnt"})));
    assert_eq!(
        host(json!({"/Public": {"bind": "/mnt", "ro": true, "rw": true}})),
        "volume.host[\"/Public\"].rw: rw: true conflicts with ro: true"
    );
    assert!(host(json!({"/Public": {"bind": "/mnt", "rw": "yes"}})).contains("invalid type"));
    assert_eq!(
        host(json!({"/A": {"bind": "/mnt"}, "/B": {"bind": "/mnt/"}})),
        "volume.host[\"/B\"].bind: /mnt/ is mounted twice"
    );
    assert_eq!(
        message(docker(json!({"volume": {"container": ["-db"]}}))),
        "volume.container[0]: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"
    );
    assert_eq!(
        message(docker(json!({"volume": {"new": ["data"]}}))),
        "volume.new[0]: must be an absolute path inside the container"
    );
    let p = plan_of(docker(
        json!({"volume": {"host": {"/A": {"bind": "/data"}}, "new": ["/data/", "/cache", "/cache"]}}),
    ))
    .unwrap();
    assert_eq!(
        p.spec.new_volumes,
        ["/cache"],
        "bound and repeated paths need no new volume"
    );
    let p = plan_of(docker(json!({"volume": {"new": {"/a": {}, "/b": {}}}}))).unwrap();
    assert_eq!(p.spec.new_volumes, ["/a", "/b"]);
    assert_eq!(
        message(docker(json!({"volume": {"new": [1]}}))),
        "volume.new[0]: must be a path inside the container"
    );
    assert_eq!(
        message(docker(json!({"volume": {"new": "/data"}}))),
        "volume.new: must be a list of paths inside the container"
    );
    assert_eq!(
        message(docker(json!({"volume": {"new": {"data": {}}}}))),
        "volume.new.data: must be an absolute path inside the container"
    );
}

#[test]
fn words_split_like_a_shell() {
    let split = |s: &str| split_words("command", s).unwrap();
    assert_eq!(split("sh -c 'echo a  b'"), ["sh", "-c", "echo a  b"]);
    assert_eq!(
        split(r#"echo "a \"b\" \$x \n" c\ d"#),
        ["echo", r#"a "b" $x \n"#, "c d"]
    );
    assert_eq!(split("  a\tb\n c  "), ["a", "b", "c"]);
    assert_eq!(split("''"), [""]);
    assert_eq!(split("a''b"), ["ab"]);
    assert!(split("").is_empty());
    assert!(split_words("command", "\"open").is_err());
    assert!(split_words("command", "trailing\\").is_err());
    assert_eq!(words("command", &Some(json!(""))).unwrap(), None);
    assert_eq!(words("command", &Some(json!([]))).unwrap(), None);
    assert_eq!(words("command", &None).unwrap(), None);
    assert_eq!(
        words("command", &Some(json!(["a b"]))).unwrap().unwrap(),
        ["a b"]
    );
}

#[test]
fn bodies_must_be_objects() {
    assert_eq!(
        message(json!(["docker", "web", "busybox"])),
        "params: invalid type: sequence, expected a map"
    );
    assert_eq!(
        message(json!("x")),
        "params: invalid type: string \"x\", expected a map"
    );
}

#[test]
fn merge_lays_objects_over_and_replaces_the_rest() {
    let mut base = json!({"name": "a", "network": {"hostname": "old", "port": [[1, 1]]}, "environment": ["A=1"]});
    merge(
        &mut base,
        &json!({"network": {"hostname": "new"}, "environment": ["B=2"], "autostart": true}),
    );
    assert_eq!(
        base,
        json!({"name": "a", "network": {"hostname": "new", "port": [[1, 1]]}, "environment": ["B=2"], "autostart": true})
    );
    let map = without(base.as_object().unwrap().clone(), &["network", "missing"]);
    assert!(!map.contains_key("network") && map.contains_key("name"));
}

#[test]
fn nested_objects_must_be_objects() {
    for (body, field) in [
        (json!({"network": []}), "network"),
        (json!({"resource": [1]}), "resource"),
        (json!({"resource": {"limit": [512]}}), "resource.limit"),
        (json!({"volume": []}), "volume"),
        (
            json!({"volume": {"host": {"/P": ["/mnt", true]}}}),
            "volume.host./P",
        ),
        (json!({"download": []}), "download"),
    ] {
        assert_eq!(
            message(docker(body)),
            format!("{field}: invalid type: sequence, expected a JSON object")
        );
    }
}
