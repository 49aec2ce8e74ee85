//! Access (issue 10): every route of the route table, tried without a
//! session, with a forged session cookie and with a real one. The table is
//! what the router is built from, so a route cannot be served without
//! being tried here.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::Value;

use super::routes::{self, Access};
use super::tests::Harness;

/// The route's path with each `{param}` filled in with a plausible value
/// (the value must not matter: the session is checked first).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{target}" => "noop",
            "{type}" => "docker",
            "{id}" => "dtest",
            "{name}" => "dtest",
            "{action}" => "start",
            "{protocol}" => "tcp",
            "{port}" => "8080",
            "{network_id}" => "dtest",
            "{volume_name}" => "dtest",
            "{state}" => "running",
            "{tag}" => "latest",
            "{repository}" => "local",
            "{key}" => "doc_test",
            "{file}" => "main.js",
            "{registry_name}" => "images",
            s if s.starts_with('{') => panic!("no sample value for {s} in {path}"),
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn assert_not_logged_in(what: &str, status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(body["error"]["code"], 401, "{what}: {body}");
    assert_eq!(body["error"]["reason"], "not_logged_in", "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_the_public_ones_needs_a_session() {
    let h = Harness::new().await;
    let all = routes::list();
    let forged = format!("{}={}", crate::auth::COOKIE_NAME, "0".repeat(64));
    let session = h.login("alice").await;
    let mut public = BTreeSet::new();
    let mut checked = 0;
    for route in &all {
        let uri = concrete(&route.path);
        let what = format!("{} {}", route.method, route.path);
        match route.access {
            Access::Session => {
                // No cookie, and a cookie naming no session: 401 JSON, even
                // with a body the handler would accept.
                for cookie in [None, Some(forged.as_str())] {
                    let (status, body, _) = h.call(route.method.clone(), &uri, cookie, "{}").await;
                    assert_not_logged_in(&what, status, &body);
                }
                checked += 1;
                if route.path.ends_with("/events") {
                    // With a session it is an endless event stream (tested
                    // in `tests.rs` and end to end).
                    continue;
                }
                // With a session the same request reaches the handler.
                let (status, body, _) = h
                    .call(route.method.clone(), &uri, Some(&session), "{}")
                    .await;
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}: {body}");
                assert_ne!(body["error"]["reason"], "unknown_path", "{what}: {body}");
            }
            Access::Public(why) => {
                assert!(why.len() > 20, "{what}: say why it is public");
                let (status, body, _) = h.call(route.method.clone(), &uri, None, "").await;
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                assert_ne!(status, StatusCode::NOT_FOUND, "{what}: {body}");
                public.insert(format!("{} {}", route.method, route.path));
            }
        }
    }
    // The public routes are exactly these; a new one must be added here on purpose.
    let mut want: BTreeSet<String> = super::PREFIXES
        .iter()
        .flat_map(|p| {
            [
                format!("POST {p}/login"),
                format!("PUT {p}/logout"),
                format!("GET {p}/openapi.json"),
            ]
        })
        .collect();
    for root in ["/metrics", "/", "/dashboard/{file}"] {
        want.insert(format!("GET {root}"));
    }
    assert_eq!(public, want);
    // A route table that forgot the prefixes would be much shorter.
    assert!(checked >= 3 * 20, "{checked} session routes");
    stevedore_e2e::report!(
        "access: {} routes checked ({checked} need a session, 401 JSON without one; public: {})",
        all.len(),
        public.into_iter().collect::<Vec<_>>().join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_the_table_does_not_list_are_refused() {
    let h = Harness::new().await;
    let listed: BTreeSet<(Method, String)> = routes::list()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    // A method the table does not list on a listed path is refused as a
    // wrong method, not served.
    let session = h.login("admin").await;
    for (method, path) in &listed {
        for other in [Method::PATCH, Method::POST, Method::PUT, Method::DELETE] {
            if listed.contains(&(other.clone(), path.clone())) || other == *method {
                continue;
            }
            let (status, body, _) = h
                .call(other.clone(), &concrete(path), Some(&session), "{}")
                .await;
            assert!(
                status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND,
                "{other} {path} is served but not in the table: {status} {body}"
            );
        }
    }
}
