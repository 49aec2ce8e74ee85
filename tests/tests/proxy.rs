//! The applications' reverse proxy end to end (issue 27): the real
//! `stevedore serve` with its proxy listener on, the `application` plugin
//! installing the `proxied` fixture template (busybox httpd with CGI
//! scripts, and a WebSocket echo) on the engine `cargo xtask test` starts,
//! and HTTP (and raw TCP for the WebSocket) to the proxy.
//!
//! Decided and asserted here: a deleted application's path is a 404
//! (`unknown_path`) as soon as `DELETE apps/{name}` has answered (its
//! record is gone, and the proxy reads the records for every request); a
//! stopped one is a 502 (`app_down`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use stevedore_e2e::{
    copy_dir, free_port, unique, workspace_root, Client, Options, Server, ADMIN_PASSWORD,
};

/// RFC 6455's example key, and the accept value it must produce (§1.3).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

struct Proxied {
    server: Server,
    api: Client,
    /// `http://127.0.0.1:<proxy port>`.
    proxy: String,
    proxy_port: u16,
    _catalog: tempfile::TempDir,
}

/// A server with the proxy on, its repository a copy of the fixture catalog.
async fn server() -> Proxied {
    server_with("").await
}

/// [`server`] with `config` as its configuration file.
async fn server_with(config: &str) -> Proxied {
    let catalog = tempfile::tempdir().unwrap();
    copy_dir(
        &workspace_root().join("tests/fixtures/catalog"),
        catalog.path(),
    );
    let proxy_port = free_port();
    let server = Server::start(
        Options::with_plugins(&["application"])
            .test_engine()
            .env("STEVEDORE_CATALOG", &catalog.path().display().to_string())
            .env("STEVEDORE_PROXY_LISTEN", &format!("127.0.0.1:{proxy_port}"))
            .config(config),
    )
    .await;
    let api = server.admin().await;
    Proxied {
        server,
        api,
        proxy: format!("http://127.0.0.1:{proxy_port}"),
        proxy_port,
        _catalog: catalog,
    }
}

/// Install `proxied` as `name` at `virtual_path`, its `port` being `port`
/// (one of the two it publishes, or another); waits for the task.
async fn install(c: &Client, name: &str, virtual_path: &str, port: u16, http: u16, ws: u16) {
    let body = format!(
        r#"{{"template": "proxied", "name": "{name}", "port": {port}, "virtual_path": "{virtual_path}",
             "binding": {{"http_port": {http}, "ws_port": {ws}}}}}"#
    );
    let id = c.submit_ok("application", &body).await;
    let task = c
        .wait_until(id, Duration::from_secs(180), |t| {
            t["state"] == "completed" || t["state"] == "error"
        })
        .await
        .unwrap_or_else(|last| panic!("application task {id} did not end: {last:?}"));
    assert_eq!(task["state"], "completed", "{task}");
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GET `url` until it answers 200 (the container's httpd may still be
/// starting: 502 until then); deadline 30 s.
async fn get_when_up(url: &str) -> String {
    let client = http();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match client.get(url).send().await {
            Ok(r) if r.status() == 200 => return r.text().await.unwrap(),
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < until, "{url} did not answer 200: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Status and JSON body of a GET through the proxy.
async fn get_json(url: &str) -> (u16, Value) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().await.unwrap();
    assert!(ct.starts_with("application/json"), "{status} {ct}: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

fn assert_error(answer: &(u16, Value), status: u16, reason: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], status, "{body}");
    assert_eq!(body["error"]["reason"], reason, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// A fresh login's session cookie, `name=value`.
async fn session_cookie(server: &Server) -> String {
    let login = server.client().login("admin", ADMIN_PASSWORD).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let cookie = login.set_cookie.expect("the login sets a cookie");
    cookie.split(';').next().unwrap().trim().to_string()
}

#[tokio::test]
async fn http_reaches_the_app_without_the_session_cookie_and_the_route_follows_the_app() {
    let p = server().await;
    let name = unique("px");
    let vp = format!("/{name}");
    let base = format!("{}{vp}", p.proxy);

    // Before the application exists: a 404 shaped as the API's errors.
    assert_error(&get_json(&format!("{base}/")).await, 404, "unknown_path");

    // Installed while the server runs: the route is there at once.
    let (http_port, ws_port) = (free_port(), free_port());
    install(&p.api, &name, &vp, http_port, http_port, ws_port).await;
    assert_eq!(get_when_up(&format!("{base}/")).await, "proxied says hi\n");
    let bare = http().get(&base).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], format!("{vp}/").as_str());

    // What the application sees: the path after the prefix, the
    // forwarded headers, the other cookies, and no session cookie.
    let session = session_cookie(&p.server).await;
    let (_, session_id) = session.split_once('=').unwrap();
    let seen = http()
        .get(format!("{base}/cgi-bin/headers?x=1"))
        .header(
            "cookie",
            format!("theme=dark; {session}; CS_SESS_ID=forged; stevedore_sid=forged2; lang=fr"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), 200);
    let seen = seen.text().await.unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert!(
        lines.contains(&"REQUEST_URI=/cgi-bin/headers?x=1"),
        "{seen}"
    );
    assert!(
        lines.contains(&"HTTP_COOKIE=theme=dark; lang=fr"),
        "only the application's cookies: {seen}"
    );
    assert!(
        !seen.contains(session_id),
        "the session reached the app: {seen}"
    );
    assert!(!seen.contains("forged"), "{seen}");
    assert!(
        lines.contains(&format!("HTTP_X_FORWARDED_PREFIX={vp}").as_str()),
        "{seen}"
    );
    assert!(lines.contains(&"HTTP_X_FORWARDED_FOR=127.0.0.1"), "{seen}");
    assert!(lines.contains(&"HTTP_X_FORWARDED_PROTO=http"), "{seen}");
    assert!(
        lines.contains(&format!("HTTP_X_FORWARDED_HOST=127.0.0.1:{}", p.proxy_port).as_str()),
        "{seen}"
    );
    // The session still works on the API: the proxy only dropped it.
    assert_eq!(
        p.api.send(reqwest::Method::GET, "apps", None).await.status,
        200
    );

    // A streamed answer: `first` arrives while the script still waits for
    // the release, which is asked for only after `first` was read.
    let mut stream = http()
        .get(format!("{base}/cgi-bin/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut got = String::new();
    while !got.contains("first\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
            .await
            .expect("the first part arrives before the body ends")
            .unwrap()
            .expect("the body goes on");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!got.contains("second"), "{got}");
    assert_eq!(
        get_when_up(&format!("{base}/cgi-bin/release")).await,
        "released\n"
    );
    while let Some(chunk) = stream.chunk().await.unwrap() {
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(got, "first\nsecond\n");

    // Stopped: a 502 JSON error; started again: served again.
    let stop = p
        .api
        .send(reqwest::Method::PUT, &format!("apps/{name}/stop"), None)
        .await;
    assert_eq!(stop.status, 200, "{:?}", stop.body);
    assert_error(&get_json(&format!("{base}/")).await, 502, "app_down");
    let start = p
        .api
        .send(reqwest::Method::PUT, &format!("apps/{name}/start"), None)
        .await;
    assert_eq!(start.status, 200, "{:?}", start.body);
    assert_eq!(get_when_up(&format!("{base}/")).await, "proxied says hi\n");

    // Deleted: the route is gone as soon as the delete has answered.
    let gone = p
        .api
        .send(
            reqwest::Method::DELETE,
            &format!("apps/{name}?remove_volumes=true"),
            None,
        )
        .await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    assert_error(&get_json(&format!("{base}/")).await, 404, "unknown_path");
}

/// Send a WebSocket handshake for `path` to the proxy; the status line
/// and headers of the answer, and the stream (positioned after them).
fn handshake(port: u16, path: &str, cookie: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert_eq!(
            n, 1,
            "the connection closed within the answer's head: {head:?}"
        );
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), s)
}

#[tokio::test]
async fn websocket_upgrades_pass_end_to_end_and_only_published_ports_are_reached() {
    let p = server().await;
    let name = unique("pxws");
    let vp = format!("/{name}");
    let (http_port, ws_port) = (free_port(), free_port());
    // The application's `port` is its WebSocket echo here.
    install(&p.api, &name, &vp, ws_port, http_port, ws_port).await;
    let session = session_cookie(&p.server).await;

    let port = p.proxy_port;
    let path = format!("{vp}/chat");
    let cookie = session.clone();
    let (head, mut ws) = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (head, s) = handshake(port, &path, &cookie);
            if head.starts_with("HTTP/1.1 101") || Instant::now() > until {
                return (head, s);
            }
            // 502 while the echo in the container is still starting.
            assert!(head.starts_with("HTTP/1.1 502"), "{head}");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    assert!(
        header("upgrade").eq_ignore_ascii_case("websocket"),
        "{head}"
    );
    assert!(
        header("connection").eq_ignore_ascii_case("upgrade"),
        "{head}"
    );
    // Computed upstream from the key the client sent: the handshake
    // reached the application intact.
    assert_eq!(header("sec-websocket-accept"), WS_ACCEPT, "{head}");
    // A masked text frame ("hello"), both ways through the tunnel, twice.
    let echoed = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for _ in 0..2 {
            let frame = b"\x81\x85abcd\x09\x07\x0f\x08\x0e";
            ws.write_all(frame).unwrap();
            let mut back = [0u8; 11];
            ws.read_exact(&mut back).unwrap();
            out.push(back == *frame);
        }
        out
    })
    .await
    .unwrap();
    assert_eq!(echoed, [true, true]);

    // An application whose `port` is not one its containers publish (here
    // the API's own port) is never reached: the proxy answers 502.
    let other = unique("pxapi");
    let api_port = p.server.addr.port();
    install(
        &p.api,
        &other,
        &format!("/{other}"),
        api_port,
        free_port(),
        free_port(),
    )
    .await;
    let answer = get_json(&format!("{}/{other}/containerstation/api/v1/apps", p.proxy)).await;
    assert_error(&answer, 502, "app_down");
    let message = answer.1["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(&api_port.to_string()), "{message}");

    for app in [&name, &other] {
        let gone = p
            .api
            .send(
                reqwest::Method::DELETE,
                &format!("apps/{app}?remove_volumes=true"),
                None,
            )
            .await;
        assert_eq!(gone.status, 200, "{:?}", gone.body);
    }
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_by_the_proxy() {
    let p = server_with("[http]\nheader_read_timeout_secs = 2\n").await;
    let bound = Duration::from_secs(30);
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", p.proxy_port)).unwrap();
    silent.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match silent.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    let took = started.elapsed();
    assert!(
        closed && took < bound,
        "the proxy kept a silent connection open for {took:?}"
    );
    stevedore_e2e::report!("proxy: a silent connection closed after {took:?} (header limit 2 s)");
}
