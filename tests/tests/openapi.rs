//! `GET openapi.json` against a live server: the document is served
//! without a session, validates as OpenAPI 3.1 (`openapi-spec-validator`),
//! carries each loaded plugin's params schema, and schemathesis, run from
//! it with a logged-in session and a bounded number of examples, finds no
//! 5xx on any operation.

use std::time::Duration;

use serde_json::Value;
use stevedore_e2e::{run_python, Options, Server};

/// Plugins of every kind: current test ones, real categories (an array
/// body, a hand-written schema) and one built against WIT 0.1.0.
const PLUGINS: &[&str] = &[
    "noop",
    "sleepy",
    "image_remove",
    "create",
    "container_import",
    "v0_1_0",
];

async fn document(server: &Server) -> Value {
    let url = format!("{}/api/v1/openapi.json", server.base());
    let resp = reqwest::get(&url).await.expect("GET openapi.json");
    assert_eq!(resp.status(), 200, "no session is needed");
    resp.json().await.expect("JSON")
}

#[tokio::test]
async fn the_document_validates_and_documents_each_plugin() {
    let server = Server::start(Options::with_plugins(PLUGINS)).await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let paths = doc["paths"].as_object().unwrap();
    for category in PLUGINS {
        let op = &paths[&format!("/api/v1/background/{category}")]["post"];
        assert_eq!(op["x-stevedore-category"], *category, "{category}");
    }
    let body = |c: &str| {
        doc["paths"][format!("/api/v1/background/{c}")]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]
            .clone()
    };
    assert_eq!(body("sleepy")["properties"]["seconds"]["type"], "integer");
    assert_eq!(body("sleepy")["required"], serde_json::json!(["seconds"]));
    assert_eq!(body("image_remove")["type"], "array");
    assert!(body("create")["properties"]["network"].is_object());
    assert_eq!(
        body("container_import")["required"],
        serde_json::json!(["name", "path"])
    );
    assert_eq!(
        body("v0_1_0"),
        serde_json::json!({}),
        "0.1.0 plugins give no schema"
    );

    let file = server.root.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let (ok, out) = run_python(
        &["-m", "openapi_spec_validator", file.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    )
    .await;
    assert!(ok, "openapi-spec-validator: {out}");
}

#[tokio::test]
async fn schemathesis_finds_no_server_error() {
    // An engine of this test's own: the admin's fuzzed calls prune, delete
    // and commit, which on the shared engine would reach other tests' objects.
    let engine = stevedore_e2e::engine::PrivateEngine::start();
    let mut options = Options::with_plugins(PLUGINS);
    options.docker_host = Some(engine.host());
    let server = Server::start(options).await;
    // Schemathesis gets the session as a header.
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/login", server.base()))
        .form(&[
            ("username", "admin"),
            ("password", stevedore_e2e::ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let cookie = answer
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    let doc = format!("{}/api/v1/openapi.json", server.base());
    let config = stevedore_e2e::workspace_root().join("tests/schemathesis.toml");
    let (ok, out) = run_python(
        &[
            "-m",
            "schemathesis.cli",
            "--config-file",
            config.to_str().unwrap(),
            "run",
            &doc,
            "--url",
            &server.base(),
            "--header",
            &format!("Cookie: {cookie}"),
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            // One worker: hypothesis parses lambdas' sources with `ast` while
            // it builds strategies, and CPython 3.11's `ast` keeps its
            // recursion depth per interpreter, not per thread, so two worker
            // threads sometimes stop an operation with "AST constructor
            // recursion depth mismatch" (a tool error, not a server one).
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--seed",
            "1",
            // A stream that stays open, and the end of the session itself.
            "--exclude-path",
            "/api/v1/background/events",
            "--exclude-path",
            "/api/v1/logout",
        ],
        &[],
        Duration::from_secs(600),
    )
    .await;
    assert!(ok, "schemathesis: {out}\nserver log:\n{}", server.logs());
}
