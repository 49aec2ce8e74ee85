//! `system.rst`'s routes beyond `system` and `system/resource` (those are in
//! `recorded_answers.rs`), on the real server: `system/bridge` as recorded
//! and matching this host's addresses, `sharefolder/` confined to the
//! caller's share folder (a planted link is listed, never entered; bob
//! never sees alice's files), `system/report` (admins only; no secret or
//! password hash in it), and `system/port` for a port a test holds.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::Command;

use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{hash_password, Options, Server};

const REGISTRY_PASSWORD: &str = "registry-pw-never-shown-4711";

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

async fn server() -> Server {
    let config = format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n\n\
         [registries.corp]\nurl = \"127.0.0.1:1\"\nusername = \"u\"\npassword = \"{REGISTRY_PASSWORD}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw"),
    );
    Server::start(Options::default().config(&config)).await
}

#[tokio::test]
async fn bridge_lists_this_hosts_adapters_as_recorded() {
    let s = server().await;
    let admin = s.admin().await;
    let a = admin.send(Method::GET, "system/bridge", None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        keys(&a.body),
        BTreeSet::from(["data".into(), "default".into()])
    );
    let data = a.body["data"].as_array().unwrap();
    let addresses = String::from_utf8(
        Command::new("ip")
            .args(["-4", "-o", "addr"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for (i, adapter) in data.iter().enumerate() {
        assert_eq!(
            keys(adapter),
            ["bridge", "display", "gateway", "ip", "name", "netmask"]
                .map(String::from)
                .into(),
            "{adapter}"
        );
        assert!(adapter["bridge"].is_null() || adapter["bridge"].is_string());
        assert_eq!(adapter["display"], format!("Adapter {}", i + 1));
        let (name, ip) = (
            adapter["name"].as_str().unwrap(),
            adapter["ip"].as_str().unwrap(),
        );
        assert_ne!(name, "lo");
        assert!(
            addresses
                .lines()
                .any(|l| l.contains(&format!(" {name} ")) && l.contains(&format!("inet {ip}/"))),
            "{name} {ip} not in `ip addr`: {addresses}"
        );
        assert!(adapter["netmask"]
            .as_str()
            .unwrap()
            .parse::<std::net::Ipv4Addr>()
            .is_ok());
    }
    // `default` points at the adapter that carries the default route.
    let route = String::from_utf8(
        Command::new("ip")
            .args(["-4", "route", "show", "default"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let default = a.body["default"].as_u64().unwrap() as usize;
    match route.split_whitespace().skip_while(|w| *w != "dev").nth(1) {
        Some(dev) => {
            assert!(default >= 1, "{:?}", a.body);
            assert_eq!(data[default - 1]["name"], dev, "{:?}", a.body);
            let via = route.split_whitespace().skip_while(|w| *w != "via").nth(1);
            assert_eq!(data[default - 1]["gateway"].as_str(), via, "{:?}", a.body);
        }
        None => assert_eq!(default, 0, "{:?}", a.body),
    }
}

#[tokio::test]
async fn sharefolder_lists_only_the_callers_folder() {
    let s = server().await;
    let share = s.data_dir().join("share");
    std::fs::create_dir_all(share.join("alice/Public/inner")).unwrap();
    std::fs::write(share.join("alice/Public/inner/big"), vec![7u8; 300_000]).unwrap();
    std::fs::write(share.join("alice/b1.tar"), b"tar").unwrap();
    std::fs::create_dir_all(share.join("bob")).unwrap();
    std::fs::write(share.join("bob/bobs-secret"), b"x").unwrap();
    // A link in alice's folder to bob's.
    std::os::unix::fs::symlink(share.join("bob"), share.join("alice/to-bob")).unwrap();

    let alice = s.client();
    assert_eq!(alice.login("alice", "alice-pw").await.status, 200);
    let a = alice.send(Method::GET, "sharefolder/", None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let listed: Vec<(String, bool)> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(
                keys(e),
                ["isDir", "name", "write"].map(String::from).into(),
                "{e}"
            );
            assert_eq!(e["write"], true);
            (
                e["name"].as_str().unwrap().to_string(),
                e["isDir"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("Public".to_string(), true),
            ("b1.tar".to_string(), false),
            ("to-bob".to_string(), false)
        ]
    );

    let a = alice
        .send(Method::GET, "sharefolder/?size=true", None)
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let public = &a.body[0];
    assert_eq!(
        keys(public),
        ["isDir", "name", "totalSize", "usedSize", "write"]
            .map(String::from)
            .into()
    );
    let used = public["usedSize"].as_str().unwrap();
    assert!(used.ends_with('K') || used.ends_with('M'), "{used}");
    let number: f64 = used[..used.len() - 1].parse().unwrap();
    assert!(
        used.ends_with('M') || number >= 290.0,
        "300 kB counted: {used}"
    );

    let a = alice
        .send(Method::GET, "sharefolder/?path=Public", None)
        .await;
    assert_eq!(a.body[0]["name"], "inner", "{:?}", a.body);

    // The link is not entered, `..` is refused, a missing folder is 404:
    // bob's file never shows.
    let a = alice
        .send(Method::GET, "sharefolder/?path=to-bob", None)
        .await;
    a.assert_error(403, Some("denied"));
    assert!(!a.body.to_string().contains("bobs-secret"));
    let a = alice
        .send(Method::GET, "sharefolder/?path=../bob", None)
        .await;
    a.assert_error(400, Some("invalid_params"));
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("path"));
    let a = alice
        .send(Method::GET, "sharefolder/?path=nothing", None)
        .await;
    a.assert_error(404, Some("unknown_folder"));
    let a = alice
        .send(Method::GET, "sharefolder/?path=b1.tar", None)
        .await;
    a.assert_error(400, Some("invalid_params"));
    let a = alice
        .send(Method::GET, "sharefolder/?size=maybe", None)
        .await;
    a.assert_error(400, Some("invalid_params"));
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("size"));

    // Bob sees his own folder only; an admin sees the root.
    let bob = s.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    let a = bob.send(Method::GET, "sharefolder", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.as_array().unwrap().len(), 1);
    assert_eq!(a.body[0]["name"], "bobs-secret");
    let admin = s.admin().await;
    let a = admin.send(Method::GET, "sharefolder/", None).await;
    let names: Vec<&str> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"bob"),
        "{names:?}"
    );
}

#[tokio::test]
async fn the_report_is_for_admins_and_holds_no_secret() {
    let s = server().await;
    let alice = s.client();
    assert_eq!(alice.login("alice", "alice-pw").await.status, 200);
    alice
        .send(Method::GET, "system/report", None)
        .await
        .assert_error(403, Some("admin_only"));

    let admin = s.admin().await;
    let resp = admin
        .http()
        .get(format!("{}/system/report", s.api(false)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/gzip");
    let bytes = resp.bytes().await.unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        ["config.txt", "log.txt", "versions.json"]
    );
    let versions: Value = serde_json::from_str(&files["versions.json"]).unwrap();
    assert!(versions["stevedore"].is_string());
    assert!(versions["docker"].is_object() && versions["lxc"].is_object());
    // The log holds what this server logged (its listen address).
    assert!(
        files["log.txt"].contains("listening"),
        "{}",
        files["log.txt"]
    );
    // The config is there, its secrets are not.
    let config = &files["config.txt"];
    assert!(
        config.contains("corp") && config.contains("alice"),
        "{config}"
    );
    assert!(!config.contains("argon2"), "a password hash in the report");
    for (name, text) in &files {
        assert!(
            !text.contains(REGISTRY_PASSWORD),
            "the registry password in {name}"
        );
        assert!(!text.contains("alice-pw"), "a password in {name}");
    }
}

#[tokio::test]
async fn the_workspace_is_the_data_folder() {
    let s = server().await;
    let alice = s.client();
    assert_eq!(alice.login("alice", "alice-pw").await.status, 200);
    let want = format!("{}/", s.data_dir().display());
    let a = alice.send(Method::GET, "wizard/workspace", None).await;
    assert_eq!(a.body, serde_json::json!({"data_path": want}));
    let a = alice
        .send(Method::GET, "wizard/workspace/status", None)
        .await;
    assert_eq!(
        keys(&a.body),
        [
            "access",
            "data_path",
            "is_support_zfs",
            "percentage",
            "speed",
            "status",
            "total_size",
            "transfer_size"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(a.body["access"], true);
    assert_eq!(a.body["status"], "success");
    assert_eq!(a.body["data_path"], want.as_str());
}

#[tokio::test]
async fn a_port_a_socket_holds_is_used() {
    let s = server().await;
    let admin = s.admin().await;
    // A port a socket of this test holds is used. (That a released port
    // is free again is the probe's unit test: here, any process of the
    // machine may take a port between a release and a second check.)
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let a = admin
        .send(Method::GET, &format!("system/port/tcp/{port}"), None)
        .await;
    assert_eq!(a.body, serde_json::json!({"used": true}));
    drop(held);
    let a = admin.send(Method::GET, "system/port/sctp/80", None).await;
    a.assert_error(400, Some("invalid_params"));
}
