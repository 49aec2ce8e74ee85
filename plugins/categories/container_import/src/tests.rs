use super::*;
use serde_json::json;

fn body(v: Value) -> Body {
    stevedore_sdk::decode::<Body>(&v.to_string()).unwrap()
}

fn message(v: Value) -> String {
    stevedore_sdk::expect_invalid(
        &v,
        stevedore_sdk::decode::<Body>(&v.to_string()).and_then(|b| import(&b)),
    )
}

const SEED: &str = r#"{
    "type": "lxc", "name": "utest_import1", "image": "utest", "path": "test/c.tgz",
    "network": {"hostname": "CustomHostName"},
    "resource": {"device": [["allow", "video4linux_(81)", "rw"]],
                 "limit": {"cputime": 512, "cpuweight": 512, "memory": "768m"}}
}"#;

fn recorded() -> Map<String, Value> {
    parse_recorded(
        &json!({
            "version": 1,
            "image": "busybox:latest",
            "create": {
                "type": "docker", "name": "web", "image": "busybox", "tag": "latest", "repository": "private",
                "autostart": true, "command": ["httpd", "-f", "-p", "80"], "environment": ["A=1"],
                "network": {"hostname": "web", "port": [[8080, 80, "tcp"]]},
                "resource": {"limit": {"memory": 805306368_u64, "cpuweight": null}, "device": ["c 81:* rw"]},
                "volume": {"host": {"/Public/www": {"bind": "/srv/www", "ro": true}}}
            }
        })
        .to_string(),
    )
    .unwrap()
}

#[test]
fn accepts_the_seed_body() {
    let b: Body = stevedore_sdk::decode(SEED).unwrap();
    let i = import(&b).unwrap();
    assert_eq!(i.runtime, RuntimeKind::Lxc);
    assert_eq!(
        (i.name.as_str(), i.path.as_str()),
        ("utest_import1", "test/c.tgz")
    );
    assert_eq!((i.repository.as_str(), i.tag.as_str()), ("utest", "latest"));
    let p = plan_with(&i, None).unwrap();
    assert_eq!(p.spec.image, "utest:latest");
    assert_eq!(p.spec.hostname.as_deref(), Some("CustomHostName"));
    assert_eq!(p.spec.device_rules, ["c 81:* rw"]);
    assert_eq!(
        (p.spec.cpu_shares, p.spec.cpu_time_ms, p.spec.memory_bytes),
        (Some(512), Some(512), Some(768 << 20))
    );
}

#[test]
fn image_names() {
    let i = import(&body(json!({"name": "Web_1-", "path": "a.tar"}))).unwrap();
    assert_eq!(
        (i.repository.as_str(), i.tag.as_str()),
        ("web_1", "imported")
    );
    let i = import(&body(
        json!({"name": "web", "path": "a.tar", "image": "back/web:v2"}),
    ))
    .unwrap();
    assert_eq!((i.repository.as_str(), i.tag.as_str()), ("back/web", "v2"));
    let i = import(&body(
        json!({"name": "web", "path": "a.tar", "image": "back/web:v2", "tag": "v3"}),
    ))
    .unwrap();
    assert_eq!(i.tag, "v3");
    let i = import(&body(
        json!({"name": "web", "path": "a.tar", "image": "127.0.0.1:5000/web"}),
    ))
    .unwrap();
    assert_eq!(
        (i.repository.as_str(), i.tag.as_str()),
        ("127.0.0.1:5000/web", "latest")
    );
    assert_eq!(split_reference("a:1"), ("a", Some("1")));
    assert_eq!(split_reference("h:5/a"), ("h:5/a", None));
}

#[test]
fn names_the_field_in_errors() {
    assert_eq!(message(json!({"path": "a.tar"})), "name: is required");
    assert_eq!(message(json!({"name": "web"})), "path: is required");
    assert_eq!(
        message(json!({"name": 5, "path": "a"})),
        "name: must be a string"
    );
    assert_eq!(
        message(json!({"name": "web", "path": "../a"})),
        "path: must not contain `..`"
    );
    assert_eq!(
        message(json!({"type": "rkt", "name": "web", "path": "a"})),
        "type: must be \"docker\" or \"lxc\""
    );
    assert!(message(json!({"name": "web", "path": "a", "image": "Web"}))
        .starts_with("image: must be a repository"));
    assert!(
        message(json!({"name": "web", "path": "a", "tag": "a b"})).starts_with("tag: must match")
    );
    // Create fields are checked at submit time too.
    assert_eq!(
        message(json!({"name": "web", "path": "a", "resource": {"limit": {"memory": "32m"}}})),
        "resource.limit.memory: must be at least 64m"
    );
    assert_eq!(
        message(json!({"name": "web", "path": "a", "network": {"port": [[1, 2, "icmp"]]}})),
        "network.port[0][2]: must be \"tcp\" or \"udp\""
    );
    match stevedore_sdk::decode::<Body>("[]") {
        Err(Error::InvalidParams(m)) => {
            assert_eq!(m, "params: invalid type: sequence, expected a map")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_fields_lay_over_the_recorded_settings() {
    let i = import(&body(json!({
        "name": "web2", "path": "exports/web.tar", "image": "web-copy",
        "network": {"hostname": "web2"}, "environment": ["B=2"],
        "repository": "qnap", "download": {"icon": "x"}
    })))
    .unwrap();
    let p = plan_with(&i, Some(&recorded())).unwrap();
    let s = &p.spec;
    assert_eq!(s.runtime, RuntimeKind::Docker);
    assert_eq!(s.name, "web2");
    assert_eq!(s.image, "web-copy:latest");
    assert!(s.autostart);
    assert_eq!(s.command.as_deref().unwrap(), ["httpd", "-f", "-p", "80"]);
    assert_eq!(s.environment, ["B=2"], "lists replace");
    assert_eq!(s.hostname.as_deref(), Some("web2"), "objects merge");
    assert_eq!(s.ports.len(), 1, "recorded ports stay");
    assert_eq!(s.memory_bytes, Some(805306368));
    assert_eq!(s.cpu_shares, None);
    assert_eq!(s.device_rules, ["c 81:* rw"]);
    assert_eq!(s.binds[0].host_path, "Public/www");
    assert!(s.binds[0].read_only);
}

#[test]
fn plain_archives_use_the_request_alone() {
    let i = import(&body(
        json!({"name": "web", "path": "rootfs.tar", "command": "sh -c 'sleep 1000'"}),
    ))
    .unwrap();
    let p = plan_with(&i, None).unwrap();
    assert_eq!(p.spec.image, "web:imported");
    assert_eq!(
        p.spec.command.as_deref().unwrap(),
        ["sh", "-c", "sleep 1000"]
    );
}

#[test]
fn recorded_settings_are_read_carefully() {
    // A bare create object is accepted.
    let bare = parse_recorded(r#"{"autostart": true, "network": {"hostname": "h"}}"#).unwrap();
    assert_eq!(bare.get("autostart"), Some(&json!(true)));
    for (text, why) in [
        ("not json", "are not JSON"),
        ("[1]", "are not a JSON object"),
        (r#"{"version": 2, "create": {}}"#, "have version 2"),
        (
            r#"{"version": 1, "create": []}"#,
            "have a `create` that is not an object",
        ),
    ] {
        match parse_recorded(text) {
            Err(Error::Other(m)) => assert!(m.contains(why), "{text}: {m}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    // A bad recorded value names the field and says where it came from.
    let i = import(&body(json!({"name": "web", "path": "a.tar"}))).unwrap();
    let rec = parse_recorded(r#"{"create": {"resource": {"limit": {"cpuweight": 0}}}}"#).unwrap();
    match plan_with(&i, Some(&rec)) {
        Err(Error::InvalidParams(m)) => {
            assert!(m.starts_with("resource.limit.cpuweight: must be an integer 2..=1024 (in the settings recorded"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // The request can repair it.
    let i = import(&body(
        json!({"name": "web", "path": "a.tar", "resource": {"limit": {"cpuweight": 100}}}),
    ))
    .unwrap();
    assert_eq!(
        plan_with(&i, Some(&rec)).unwrap().spec.cpu_shares,
        Some(100)
    );
}

#[test]
fn describes_itself() {
    let d = stevedore_sdk::__describe::<ContainerImport>();
    assert_eq!(d.name, "container_import");
    assert!(!d.deletable);
    assert_eq!(d.capabilities, ["task", "containers"]);
}

#[test]
fn params_schema_is_the_create_fields_plus_path() {
    let schema: Value = serde_json::from_str(&params_schema()).unwrap();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["name", "path"]));
    assert_eq!(schema["properties"]["path"]["type"], "string");
    assert!(schema["properties"]["network"].is_object(), "{schema}");
    assert!(schema["properties"]["volume"].is_object(), "{schema}");
}
