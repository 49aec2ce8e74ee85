//! Attacks on the web front of the server (issue 26), each through the real
//! server binary: cross-site requests riding the admin's cookie, login
//! floods, connections that never finish a request, per-user floods of
//! waiting tasks and event streams, sessions that outlive a logout or a
//! password change, user names that are paths, and files holding hashes
//! written readable before they are locked down. Each test asserts the
//! precise non-effect and reports what it counted.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use stevedore_e2e::{
    binary, free_port, hash_password, report, Client, Options, Server, SseReader, ADMIN_PASSWORD,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Failures the login limiter lets through before it locks an address out
/// (`auth::limiter::FREE_FAILURES`).
const FREE_FAILURES: usize = 3;

/// The server's peak resident set (`VmHWM` of `/proc/<pid>/status`), bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// A counter of `GET /metrics` (0 when absent).
async fn metric(server: &Server, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.base()))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// The session cookie (`CS_SESS_ID=...`) of a successful login.
async fn login_cookie(server: &Server, user: &str, password: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/login", server.api(false)))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200, "login {user}");
    let set = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    set.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn cross_site_requests_with_the_admins_cookie_change_nothing() {
    let server = Server::start(Options::default().test_engine()).await;
    let admin = server.admin().await;
    let cookie = login_cookie(&server, "admin", ADMIN_PASSWORD).await;
    let before = admin.list(None).await.len();
    let http = reqwest::Client::new();
    let url = format!("{}/background/noop", server.api(false));
    let own_port = server.addr.port();
    let other = loop {
        let p = free_port();
        if p != own_port {
            break p;
        }
    };

    // A page on another port of the same host: what a container's web
    // server on the NAS would send from the admin's browser.
    let attacks: Vec<(&str, String)> = vec![
        ("Origin", format!("http://127.0.0.1:{other}")),
        ("Origin", format!("http://localhost:{own_port}")),
        ("Origin", "null".to_string()),
        ("Sec-Fetch-Site", "same-site".to_string()),
        ("Sec-Fetch-Site", "cross-site".to_string()),
    ];
    let mut refused = 0;
    for (header, value) in &attacks {
        let r = http
            .post(&url)
            .header("cookie", &cookie)
            .header("content-type", "text/plain")
            .header(*header, value)
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 403, "{header}: {value}: {body}");
        assert_eq!(body["error"]["reason"], "cross_site", "{body}");
        refused += 1;
    }
    // Logging out and deleting are state changes too.
    let r = http
        .put(format!("{}/logout", server.api(false)))
        .header("cookie", &cookie)
        .header("Origin", format!("http://127.0.0.1:{other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .delete(format!("{}/background/", server.api(false)))
        .header("cookie", &cookie)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(admin.list(None).await.len(), before, "no task created");

    // The same origin (the dashboard), and no Origin at all (curl, the
    // CLI), still work; so does a reading GET from anywhere.
    let same = http
        .post(&url)
        .header("cookie", &cookie)
        .header("Origin", server.base())
        .header("Sec-Fetch-Site", "same-origin")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    let plain = http
        .post(&url)
        .header("cookie", &cookie)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(admin.list(None).await.len(), before + 2);
    // The cookie is never sent by a browser on a cross-site request.
    let login = server.client().login("admin", ADMIN_PASSWORD).await;
    let set = login.set_cookie.unwrap();
    assert!(set.contains("SameSite=Strict"), "{set}");
    report!("attacks_web: cross-site requests refused {refused}+2 of {}+2, tasks created by them 0; same-origin and Origin-less submits 2 of 2", attacks.len());
}

/// `n` wrong logins at once, each from `source(i)`; counts of 401 and 429.
async fn flood(server: &Server, n: usize, source: impl Fn(usize) -> IpAddr) -> (usize, usize) {
    let url = format!("{}/login", server.api(false));
    let mut all = Vec::new();
    for i in 0..n {
        let http = reqwest::Client::builder()
            .local_address(source(i))
            .build()
            .unwrap();
        let url = url.clone();
        all.push(tokio::spawn(async move {
            http.post(url)
                .form(&[("username", "admin"), ("password", "wrong")])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let (mut unauthorized, mut busy) = (0, 0);
    for task in all {
        match task.await.unwrap() {
            401 => unauthorized += 1,
            429 => busy += 1,
            other => panic!("a wrong login answered {other}"),
        }
    }
    (unauthorized, busy)
}

#[tokio::test]
async fn a_login_flood_from_one_address_reaches_few_password_checks() {
    let server = Server::start(Options::default()).await;
    let pid = server.pid().unwrap();
    let checks_before = metric(&server, "stevedore_password_checks_total").await;
    let (unauthorized, refused) = flood(&server, 200, |_| IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let checks = metric(&server, "stevedore_password_checks_total").await - checks_before;
    let peak = peak_rss(pid);
    report!(
        "attacks_web: 200 parallel wrong logins from one address: {unauthorized} answered 401 \
         (password checked), {refused} answered 429; password checks counted {checks}; \
         peak RSS {} MiB",
        peak >> 20
    );
    assert!(
        unauthorized <= FREE_FAILURES + 2,
        "{unauthorized} wrong logins reached the password check"
    );
    assert!(
        (1..=FREE_FAILURES as u64 + 2).contains(&checks),
        "{checks} password checks"
    );
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test]
async fn a_login_flood_from_many_addresses_is_bounded_in_memory() {
    let server = Server::start(Options::default()).await;
    let pid = server.pid().unwrap();
    let checks_before = metric(&server, "stevedore_password_checks_total").await;
    // 200 loopback addresses: the per-address limiter sees one failure each.
    let (unauthorized, busy) = flood(&server, 200, |i| {
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            1 + (i / 250) as u8,
            1 + (i % 250) as u8,
        ))
    })
    .await;
    let checks = metric(&server, "stevedore_password_checks_total").await - checks_before;
    let peak = peak_rss(pid);
    report!(
        "attacks_web: 200 parallel wrong logins from 200 addresses: {unauthorized} answered 401, \
         {busy} answered 429 (password checks full); password checks counted {checks}; \
         peak RSS {} MiB",
        peak >> 20
    );
    assert_eq!(unauthorized + busy, 200);
    assert!(
        busy > 0,
        "no login was turned away while the checks were full"
    );
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
}

/// Wait until the server closes `stream` (a read gives EOF or an error),
/// reading and dropping whatever it answers first; the time it took, or
/// `None` if it stayed open past `deadline`.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn connections_that_never_finish_a_request_are_closed() {
    let server = Server::start(Options::default()).await;
    let deadline = Duration::from_secs(60);
    // Headers one byte at a time, never ending them.
    let slow_headers = async {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut buf = [0u8; 64];
        for byte in request.iter().cycle() {
            if start.elapsed() > deadline {
                return None;
            }
            tokio::select! {
                _ = tick.tick() => {
                    if s.write_all(&[*byte]).await.is_err() {
                        return Some(start.elapsed());
                    }
                }
                read = s.read(&mut buf) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        return Some(start.elapsed());
                    }
                }
            }
        }
        None
    };
    // A body announced and never sent whole.
    let slow_body = async {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(
            b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nusername=admin",
        )
        .await
        .unwrap();
        closed_within(&mut s, deadline).await
    };
    // A connection that never sends a byte.
    let silent = async {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        closed_within(&mut s, deadline).await
    };
    let (headers, body, silent) = tokio::join!(slow_headers, slow_body, silent);
    report!(
        "attacks_web: a request whose headers never end closed after {:?}; one whose body \
         never ends closed after {:?}; a silent connection closed after {:?} (bound {deadline:?})",
        headers,
        body,
        silent
    );
    assert!(headers.is_some(), "the slow-header connection stayed open");
    assert!(body.is_some(), "the slow-body connection stayed open");
    assert!(silent.is_some(), "the silent connection stayed open");
}

fn bob_config(extra: &str) -> String {
    format!(
        "[users.bob]\npassword_hash = \"{}\"\n{extra}",
        hash_password("bob-pw")
    )
}

async fn bob(server: &Server) -> Client {
    let bob = server.client();
    assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
    bob
}

#[tokio::test]
async fn waiting_tasks_are_capped_per_user() {
    // bob has the default policy except that one task runs at a time, so
    // the rest of his tasks wait: the default cap of waiting tasks holds.
    let config = bob_config("[users.bob.policy.limits]\nrunning_tasks = 1\n");
    let server = Server::start(
        Options::with_plugins(&["sleepy"])
            .test_engine()
            .config(&config),
    )
    .await;
    let admin = server.admin().await;
    let bob = bob(&server).await;
    let first = bob.submit_ok("sleepy", r#"{"seconds":600}"#).await;
    bob.wait_state(first, "running").await;
    const CAP: usize = 1000;
    const SLEEPY: &str = r#"{"seconds":600}"#;
    // Up to near the cap, 16 at a time; then one at a time until refused.
    let mut accepted = 0;
    while accepted + 16 <= CAP - 16 {
        let answers =
            futures::future::join_all((0..16).map(|_| bob.submit("sleepy", SLEEPY))).await;
        for a in answers {
            assert_eq!(a.status, 200, "below the cap: {:?}", a.body);
            accepted += 1;
        }
    }
    loop {
        let a = bob.submit("sleepy", SLEEPY).await;
        match a.status {
            200 => accepted += 1,
            429 => break,
            s => panic!("submit answered {s}: {:?}", a.body),
        }
        assert!(accepted <= CAP + 5, "no cap: {accepted} tasks accepted");
    }
    let over = bob.submit("sleepy", SLEEPY).await;
    over.assert_error(429, Some("too_many_waiting"));
    let message = over.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("limits.waiting_tasks"), "{message}");
    assert!(message.contains("bob"), "{message}");
    let tasks = bob.list(None).await;
    let waiting = tasks.iter().filter(|t| t["state"] == "waiting").count();
    report!(
        "attacks_web: bob submitted {} tasks past his running one: {accepted} accepted, then 2 \
         answered 429; {waiting} of his tasks wait (cap {CAP}), {} in all",
        accepted + 2,
        tasks.len()
    );
    assert_eq!(waiting, CAP, "exactly the cap waits");
    assert_eq!(tasks.len(), CAP + 1, "nothing lost, nothing over");
    // The admin is not capped by bob's queue.
    admin.submit_ok("sleepy", r#"{"seconds":1}"#).await;
}

async fn open_events(server: &Server, cookie: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/background/events", server.api(false)))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn event_streams_are_capped_per_user() {
    let server = Server::start(Options::default().config(&bob_config(""))).await;
    let cookie = login_cookie(&server, "bob", "bob-pw").await;
    let mut open = Vec::new();
    let mut refused = None;
    for i in 0..64 {
        let r = open_events(&server, &cookie).await;
        if r.status() == 429 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["reason"], "too_many_streams", "{body}");
            refused = Some(i);
            break;
        }
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    report!(
        "attacks_web: bob opened {} event streams before a 429 (asked up to 64)",
        open.len()
    );
    assert_eq!(refused, Some(16), "the 17th stream is refused");
    // A stream that ends gives its place back.
    drop(open.pop());
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = open_events(&server, &cookie).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the freed place was never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another user has places of their own.
    let admin = login_cookie(&server, "admin", ADMIN_PASSWORD).await;
    assert_eq!(open_events(&server, &admin).await.status(), 200);
}

#[tokio::test]
async fn an_event_stream_ends_when_its_session_logs_out() {
    let server = Server::start(Options::default().config(&bob_config(""))).await;
    let cookie = login_cookie(&server, "bob", "bob-pw").await;
    let stream = open_events(&server, &cookie).await;
    assert_eq!(stream.status(), 200);
    let mut events = SseReader::new(stream);
    let r = reqwest::Client::new()
        .put(format!("{}/logout", server.api(false)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let start = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while events.next().await.is_some() {}
    })
    .await;
    report!(
        "attacks_web: an event stream after its session logged out: {}",
        match ended {
            Ok(()) => format!("ended after {:?}", start.elapsed()),
            Err(_) => "still open after 10 s".to_string(),
        }
    );
    assert!(ended.is_ok(), "the stream outlived the logout");
}

#[tokio::test]
async fn sessions_end_when_the_password_changes() {
    let mut server = Server::start(Options::default().config(&bob_config(""))).await;
    let bob = bob(&server).await;
    let kept = server.client();
    assert_eq!(kept.login("admin", ADMIN_PASSWORD).await.status, 200);
    let config_path = server.root.path().join("stevedore.toml");
    // The operator changes bob's password (`stevedore user passwd`) and restarts.
    std::fs::write(
        &config_path,
        format!(
            "[users.bob]\npassword_hash = \"{}\"\n",
            hash_password("new-pw")
        ),
    )
    .unwrap();
    server.restart().await;
    let bob = bob.with_api(server.api(false));
    let kept = kept.with_api(server.api(false));
    let old = bob.send(Method::GET, "me", None).await;
    let admin = kept.send(Method::GET, "me", None).await;
    report!(
        "attacks_web: after bob's password changed, his old session answered {}; the admin's \
         (unchanged) answered {}",
        old.status,
        admin.status
    );
    old.assert_error(401, Some("not_logged_in"));
    assert_eq!(admin.status, 200, "a session whose password stayed lives");
    assert_eq!(server.client().login("bob", "new-pw").await.status, 200);
}

#[tokio::test]
async fn sessions_have_an_absolute_lifetime() {
    let config = bob_config("[http]\nsession_max_secs = 3\n");
    let server = Server::start(Options::default().config(&config)).await;
    let bob = bob(&server).await;
    let start = Instant::now();
    // Used all along (each use would push an idle expiry forward).
    let ended = loop {
        let me = bob.send(Method::GET, "login_refresh", None).await;
        if me.status == 401 {
            break Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(20) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report!("attacks_web: a session used all along with a 3 s lifetime ended after {ended:?}");
    assert!(
        ended.is_some(),
        "the session outlived its absolute lifetime"
    );
}

/// `stevedore user add NAME` against `config` with `password` on stdin.
fn user_add(config: &std::path::Path, name: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(binary())
        .args(["user", "add", name])
        .env("STEVEDORE_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_names_that_are_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stevedore.toml");
    let mut refused = 0;
    for name in [".", "..", "a/b", ""] {
        let out = user_add(&config, name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "`{name}` was added");
        assert!(stderr.contains("user name"), "{stderr}");
        refused += 1;
    }
    assert!(
        !config.exists() || !std::fs::read_to_string(&config).unwrap().contains("users"),
        "nothing written"
    );
    // The same names in a configuration file stop the server at start.
    let mut refused_at_start = 0;
    for name in [".", ".."] {
        let text = format!(
            "[users.\"{name}\"]\npassword_hash = \"{}\"\n",
            hash_password("x")
        );
        let out = Command::new(binary())
            .arg("serve")
            .env("STEVEDORE_CONFIG", {
                std::fs::write(&config, &text).unwrap();
                &config
            })
            .env("STEVEDORE_DATA_DIR", dir.path().join("data"))
            .env("STEVEDORE_LISTEN", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a server with user `{name}` started");
        assert!(stderr.contains("user name"), "{stderr}");
        refused_at_start += 1;
    }
    report!("attacks_web: user names that are paths refused by `user add` {refused} of 4, at start {refused_at_start} of 2");
}

#[tokio::test]
async fn the_user_file_is_created_private_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stevedore.toml");
    // Every file the CLI creates, with the mode it asked for (strace shows
    // the open: a file created 0644 then chmod-ed is readable in between).
    let trace = dir.path().join("trace");
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat,open,creat", "-o"])
        .arg(&trace)
        .arg(binary())
        .args(["user", "add", "bob"])
        .env("STEVEDORE_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    let dir_text = dir.path().to_str().unwrap();
    let created: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains(dir_text) && l.contains("O_CREAT"))
        .collect();
    report!(
        "attacks_web: `user add` created {} file(s) in the config's folder: {:?}",
        created.len(),
        created
    );
    assert!(!created.is_empty(), "{trace}");
    for line in &created {
        assert!(
            line.contains(", 0600)"),
            "created with a wider mode: {line}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
