//! What the `networks` and `volumes` test files share: a server with two
//! non-admin users, JSON calls, the names of a listing, and a cleanup of
//! the engine objects a test makes.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::{json, Value};
use stevedore_e2e::{docker_ok, hash_password, unique, Answer, Client, Options, Server};

/// Removes the named Docker containers, networks and volumes when dropped
/// (also when a test fails); containers first, so nothing is in use.
#[derive(Default)]
pub struct Cleanup {
    /// Containers to remove (with their anonymous volumes).
    pub containers: Vec<String>,
    /// Networks to remove.
    pub networks: Vec<String>,
    /// Volumes to remove.
    pub volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for c in &self.containers {
            quiet(&["rm", "-f", "-v", c]);
        }
        for n in &self.networks {
            quiet(&["network", "rm", n]);
        }
        for v in &self.volumes {
            quiet(&["volume", "rm", v]);
        }
    }
}

/// A server on the test engine with two non-admin users; their names and clients.
pub async fn server() -> (Server, Client, (String, Client), (String, Client)) {
    let (alice, bob) = (unique("alice"), unique("bob"));
    let config = format!(
        "[users.{alice}]\npassword_hash = \"{}\"\n[users.{bob}]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    );
    let server = Server::start(Options::default().test_engine().config(&config)).await;
    let admin = server.admin().await;
    let a = server.client();
    assert_eq!(a.login(&alice, "alice-pw").await.status, 200);
    let b = server.client();
    assert_eq!(b.login(&bob, "bob-pw").await.status, 200);
    (server, admin, (alice, a), (bob, b))
}

/// `method path` with `body` as JSON.
pub async fn call(c: &Client, method: Method, path: &str, body: Option<Value>) -> Answer {
    c.send(method, path, body.map(|b| b.to_string()).as_deref())
        .await
}

/// `method path` with `body` as JSON, answered 200 with JSON; that JSON.
pub async fn ok(c: &Client, method: Method, path: &str, body: Option<Value>) -> Value {
    let a = call(c, method.clone(), path, body).await;
    assert_eq!(a.status, 200, "{method} {path}: {:?}", a.body);
    assert!(a.content_type.starts_with("application/json"), "{a:?}");
    a.body
}

/// The `Name`s of a listing.
pub fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect()
}

/// Four new objects of `area` (`networks`, `volumes`) for a prune test, made
/// through `POST {area}` and left to `made` to clean up: two of `a`'s, one
/// of `a`'s that the test puts in use, one of `b`'s.
pub async fn prune_fixture(
    a: &Client,
    b: &Client,
    area: &str,
    prefix: &str,
    made: &mut Vec<String>,
) -> (String, String, String, String) {
    let (a1, a2, busy, b1) = (
        unique(&format!("{prefix}-prune-a")),
        unique(&format!("{prefix}-prune-a")),
        unique(&format!("{prefix}-prune-busy")),
        unique(&format!("{prefix}-prune-b")),
    );
    made.extend([&a1, &a2, &busy, &b1].map(String::clone));
    for (c, name) in [(a, &a1), (a, &a2), (a, &busy), (b, &b1)] {
        ok(c, Method::POST, area, Some(json!({"name": name}))).await;
    }
    (a1, a2, busy, b1)
}

/// `DELETE {area}/{name}` answers `{}`, the engine (`docker {kind}`) has it
/// no more, and then removing it and `GET {inspect}` are 404 `unknown`.
pub async fn assert_removed(
    c: &Client,
    (area, kind): (&str, &str),
    name: &str,
    inspect: &str,
    unknown: &str,
) {
    let path = format!("{area}/{name}");
    assert_eq!(ok(c, Method::DELETE, &path, None).await, json!({}));
    assert!(
        !docker_ok(&[kind, "inspect", name]),
        "removed on the engine"
    );
    call(c, Method::DELETE, &path, None)
        .await
        .assert_error(404, Some(unknown));
    call(c, Method::GET, inspect, None)
        .await
        .assert_error(404, Some(unknown));
}

/// The names a prune answer lists under `key` (a list, not `null`).
pub fn deleted(pruned: &Value, key: &str) -> BTreeSet<String> {
    pruned[key]
        .as_array()
        .unwrap_or_else(|| panic!("{pruned}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// A listing in name order: the engine lists in no fixed order, so two
/// listings of the same objects compare equal only sorted.
pub fn by_name(list: &Value) -> Vec<Value> {
    let mut all = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .clone();
    all.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    all
}
