//! A container's logs followed live (`GET container/{type}/{id}/logs?follow=1`)
//! on the real `stevedore serve`, the test engine and LXC: the last `tail`
//! lines first, then a line written after the request started, then a
//! clean end when the container stops or is removed; refusals before the
//! stream starts are the usual JSON errors; a user's followers are capped,
//! and a follower's place is given back when its client goes away; a
//! logout and the server's stop end a follow.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use stevedore_e2e::{
    assert_names, docker, eventually_async, hash_password, unique, Client, Containers, LxcPath,
    Options, Server,
};

/// How long a followed stream may take to show what the test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

fn users_config() -> String {
    format!(
        "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    )
}

async fn server() -> Server {
    Server::start(Options::default().test_engine().config(&users_config())).await
}

async fn user(server: &Server, name: &str) -> Client {
    let c = server.client();
    let a = c.login(name, &format!("{name}-pw")).await;
    assert_eq!(a.status, 200, "{name} login: {:?}", a.body);
    c
}

/// A running busybox container of alice's that wrote `old-1` to `old-3`
/// and then waits (a TERM ends it at once); the test makes it write more
/// with [`say`].
fn talker(containers: &mut Containers) -> String {
    docker(&["pull", "-q", "busybox:latest"]);
    let name = unique("talker");
    containers.0.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "io.stevedore.owner=alice",
        "busybox:latest",
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo old-1; echo old-2; echo old-3; sleep 3600 & wait",
    ]);
    name
}

/// Make container `name` write `line` on its standard output (its init's).
fn say(name: &str, line: &str) {
    docker(&[
        "exec",
        name,
        "sh",
        "-c",
        &format!("echo {line} > /proc/1/fd/1"),
    ]);
}

/// Wait until the non-followed logs of `path` hold `last` `times` times,
/// at their end: what the container wrote is in the engine's log before a
/// follow starts.
async fn logged(c: &Client, path: &str, last: &str, times: usize) {
    let line = format!("{last}\n");
    eventually_async(&format!("`{last}` logged"), DEADLINE, || async {
        let a = c.send(Method::GET, path, None).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        let text = a.body["logs"].as_str().unwrap();
        (text.ends_with(&line) && text.matches(&line).count() == times).then_some(())
    })
    .await;
}

/// A followed log being read: the text so far.
struct Follow {
    resp: reqwest::Response,
    text: String,
}

impl Follow {
    /// Start following `path` (under the API) as `c`; it must be a
    /// streamed text answer.
    async fn open(c: &Client, path: &str) -> Follow {
        let resp = c
            .http()
            .get(format!("{}/{path}", c.api))
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .expect("the follow request");
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers();
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(headers["transfer-encoding"], "chunked");
        Follow {
            resp,
            text: String::new(),
        }
    }

    /// The next chunk, or `None` at a clean end; panics on a broken stream
    /// or after [`DEADLINE`].
    async fn chunk(&mut self) -> Option<String> {
        let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("nothing more within {DEADLINE:?} after {:?}", self.text))
            .unwrap_or_else(|e| panic!("the stream broke after {:?}: {e}", self.text))?;
        let text = String::from_utf8(chunk.to_vec()).expect("UTF-8");
        self.text.push_str(&text);
        Some(text)
    }

    /// Read until the text holds `lines` lines.
    async fn lines(&mut self, lines: usize) -> &str {
        while self.text.matches('\n').count() < lines {
            if self.chunk().await.is_none() {
                panic!("ended before {lines} lines: {:?}", self.text);
            }
        }
        &self.text
    }

    /// Read to the clean end of the stream; the whole text.
    async fn end(&mut self) -> &str {
        while self.chunk().await.is_some() {}
        &self.text
    }
}

#[tokio::test]
async fn a_follow_gets_the_last_lines_then_live_ones_and_ends_when_the_container_stops() {
    let server = server().await;
    let alice = user(&server, "alice").await;
    let mut containers = Containers(Vec::new());
    let name = talker(&mut containers);
    let logs = format!("container/docker/{name}/logs");
    logged(&alice, &logs, "old-3", 1).await;

    let mut follow = Follow::open(&alice, &format!("{logs}?follow=1&tail=2")).await;
    // Exactly the last two lines: nothing else has been written.
    assert_eq!(follow.lines(2).await, "old-2\nold-3\n");
    // A line written after the request started arrives: the stream is live.
    say(&name, "new-1");
    assert_eq!(follow.lines(3).await, "old-2\nold-3\nnew-1\n");
    say(&name, "new-2");
    assert_eq!(follow.lines(4).await, "old-2\nold-3\nnew-1\nnew-2\n");
    // Stopped: the stream ends cleanly.
    let stop = alice
        .send(Method::PUT, &format!("container/docker/{name}/stop"), None)
        .await;
    assert_eq!(stop.status, 200, "{:?}", stop.body);
    assert_eq!(follow.end().await, "old-2\nold-3\nnew-1\nnew-2\n");

    // A stopped container's follow (`follow=true`, the default tail): its
    // lines, then the end at once.
    let mut stopped = Follow::open(&alice, &format!("{logs}?follow=true")).await;
    assert_eq!(stopped.end().await, "old-1\nold-2\nold-3\nnew-1\nnew-2\n");

    // Started again and followed from its end (`tail=0`); removed: the end.
    let start = alice
        .send(Method::PUT, &format!("container/docker/{name}/start"), None)
        .await;
    assert_eq!(start.status, 200, "{:?}", start.body);
    // Its command ran again: `old-3` a second time.
    logged(&alice, &logs, "old-3", 2).await;
    let mut live = Follow::open(&alice, &format!("{logs}?follow=1&tail=0")).await;
    say(&name, "again");
    assert_eq!(live.lines(1).await, "again\n");
    let gone = alice
        .send(Method::DELETE, &format!("container/docker/{name}"), None)
        .await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    assert_eq!(live.end().await, "again\n");

    // Without `follow` the answer is the JSON one, as before.
    let name = talker(&mut containers);
    let logs = format!("container/docker/{name}/logs");
    logged(&alice, &logs, "old-3", 1).await;
    let plain = alice
        .send(Method::GET, &format!("{logs}?tail=2&follow=0"), None)
        .await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, json!({"logs": "old-2\nold-3\n", "tail": 2}));
}

#[tokio::test]
async fn refusals_come_before_the_stream_as_json_errors() {
    let server = server().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let mut containers = Containers(Vec::new());
    let name = talker(&mut containers);
    let logs = format!("container/docker/{name}/logs");

    // No session.
    server
        .client()
        .send(Method::GET, &format!("{logs}?follow=1"), None)
        .await
        .assert_error(401, Some("not_logged_in"));
    // Not bob's: refused as the non-followed logs are, and nothing of it shown.
    let refused = bob
        .send(Method::GET, &format!("{logs}?follow=1"), None)
        .await;
    refused.assert_error(403, Some("denied"));
    assert!(
        !refused.body.to_string().contains("old-"),
        "{:?}",
        refused.body
    );
    // Bad input names its field.
    for bad in ["tail=-1", "tail=x", "tail=10001"] {
        assert_names(
            &alice
                .send(Method::GET, &format!("{logs}?follow=1&{bad}"), None)
                .await,
            "tail",
        );
    }
    for bad in ["follow=yes", "follow=2", "follow="] {
        assert_names(
            &alice
                .send(Method::GET, &format!("{logs}?{bad}"), None)
                .await,
            "follow",
        );
    }
    // Unknown container, unknown runtime.
    alice
        .send(
            Method::GET,
            &format!("container/docker/{}/logs?follow=1", unique("nosuch")),
            None,
        )
        .await
        .assert_error(404, Some("unknown_container"));
    assert_names(
        &alice
            .send(
                Method::GET,
                &format!("container/kvm/{name}/logs?follow=1"),
                None,
            )
            .await,
        "type",
    );
}

#[tokio::test]
async fn followers_are_capped_per_user_and_a_gone_client_gives_its_place_back() {
    let server = server().await;
    let alice = user(&server, "alice").await;
    let admin = server.admin().await;
    let mut containers = Containers(Vec::new());
    let name = talker(&mut containers);
    let path = format!("container/docker/{name}/logs?follow=1&tail=1");
    logged(&alice, &format!("container/docker/{name}/logs"), "old-3", 1).await;

    let mut followers = Vec::new();
    for _ in 0..8 {
        let mut f = Follow::open(&alice, &path).await;
        assert_eq!(f.lines(1).await, "old-3\n");
        followers.push(f);
    }
    let ninth = alice.send(Method::GET, &path, None).await;
    ninth.assert_error(429, Some("too_many_followers"));
    let message = ninth.body["error"]["message"].as_str().unwrap();
    assert!(message.contains('8'), "names the limit: {message}");
    // Another user's cap is their own.
    let mut admins = Follow::open(&admin, &path).await;
    assert_eq!(admins.lines(1).await, "old-3\n");

    // Every follower is live, and a slow reader misses nothing.
    say(&name, "to-all");
    for f in &mut followers {
        assert_eq!(f.lines(2).await, "old-3\nto-all\n");
    }
    // A client that goes away (the container silent meanwhile) gives its
    // place back.
    drop(followers.pop());
    let mut again = eventually_async("a follower admitted again", DEADLINE, || async {
        let resp = alice
            .http()
            .get(format!("{}/{path}", alice.api))
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            429 => None,
            200 => Some(Follow {
                resp,
                text: String::new(),
            }),
            other => panic!("{other}"),
        }
    })
    .await;
    assert_eq!(again.lines(1).await, "to-all\n");
    stevedore_e2e::report!(
        "container_logs: 8 followers of one user live, the 9th refused (429), a place given back once a client went away"
    );
}

#[tokio::test]
async fn an_lxc_containers_console_is_followed_until_it_stops() {
    let path = LxcPath::new();
    let server = Server::start(
        Options::with_plugins(&["create", "image_download"])
            .test_lxc(path.path())
            .config(&users_config()),
    )
    .await;
    let admin = server.admin().await;
    let name = "ltest";
    let made = admin.create_lxc_busybox(name).await;
    assert_eq!(made.status, 200, "{:?}\n{}", made.body, server.logs());
    let console = |line: &str| {
        stevedore_e2e::lxc(
            path.path(),
            "attach",
            name,
            &[
                "--",
                "/bin/sh",
                "-c",
                &format!("echo {line} > /dev/console"),
            ],
        );
    };
    console("before-1");
    console("before-2");
    let logs = format!("container/lxc/{name}/logs");
    eventually_async("the console log", DEADLINE, || async {
        let a = admin
            .send(Method::GET, &format!("{logs}?tail=1"), None)
            .await;
        (a.body["logs"].as_str().unwrap_or_default().trim_end() == "before-2").then_some(())
    })
    .await;

    // The console is a terminal: its lines end in `\r\n`, as the
    // non-followed logs show them too.
    let mut follow = Follow::open(&admin, &format!("{logs}?follow=1&tail=1")).await;
    assert_eq!(follow.lines(1).await, "before-2\r\n");
    console("live-1");
    assert_eq!(follow.lines(2).await, "before-2\r\nlive-1\r\n");
    // Bob may not follow it.
    let bob = user(&server, "bob").await;
    bob.send(Method::GET, &format!("{logs}?follow=1"), None)
        .await
        .assert_error(403, Some("denied"));
    // Stopped: whatever the shutdown printed, then a clean end.
    let stop = admin
        .send(Method::PUT, &format!("container/lxc/{name}/stop"), None)
        .await;
    assert_eq!(stop.status, 200, "{:?}", stop.body);
    let all = follow.end().await.to_string();
    assert!(all.starts_with("before-2\r\nlive-1\r\n"), "{all:?}");
    assert!(all.ends_with('\n'), "{all:?}");
    let gone = admin
        .send(Method::DELETE, &format!("container/lxc/{name}"), None)
        .await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
}

#[tokio::test]
async fn a_follow_ends_when_its_session_logs_out_and_when_the_server_stops() {
    let mut server = server().await;
    let first = user(&server, "alice").await;
    let second = user(&server, "alice").await;
    let mut containers = Containers(Vec::new());
    let name = talker(&mut containers);
    let logs = format!("container/docker/{name}/logs");
    logged(&first, &logs, "old-3", 1).await;
    let path = format!("{logs}?follow=1&tail=1");
    let mut ended = Follow::open(&first, &path).await;
    let mut kept = Follow::open(&second, &path).await;
    assert_eq!(ended.lines(1).await, "old-3\n");
    assert_eq!(kept.lines(1).await, "old-3\n");

    // A logout ends its session's follow, not another session's.
    let out = first.send(Method::PUT, "logout", None).await;
    assert_eq!(out.status, 200, "{:?}", out.body);
    assert_eq!(ended.end().await, "old-3\n");
    say(&name, "after-logout");
    assert_eq!(kept.lines(2).await, "old-3\nafter-logout\n");

    // The server stops at once (SIGTERM), ending the follow cleanly: an
    // open follow does not hold its graceful shutdown.
    let status = tokio::task::spawn_blocking(move || {
        let status = server.stop();
        (status, server)
    })
    .await
    .unwrap();
    let (status, server) = status;
    let status = status.expect("the server was running");
    assert!(status.success(), "{status:?}\n{}", server.logs());
    assert_eq!(kept.end().await, "old-3\nafter-logout\n");
}
