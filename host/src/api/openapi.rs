//! `GET openapi.json` (no session needed): the server's OpenAPI 3.1
//! document, generated, never kept by hand. The routes and their types come
//! from the `#[utoipa::path]` and `ToSchema` annotations beside the
//! handlers; each loaded category adds an operation of its own, whose
//! request body is the params schema its plugin returns from `describe()`,
//! so a third-party plugin documents itself.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::session::LoginInfo;
use super::{apps, containers, session, system, tasks, AppState};
use crate::queue::{CategoryDoc, Task, TaskState};
use crate::runtime::{ContainerEntry, ContainerState};

/// The prefix the document's paths are written under; the same routes are
/// served under `/containerstation/api/v1` and `/container-station/api/v1`.
pub const PREFIX: &str = "/api/v1";

/// Name of the session cookie's security scheme.
const SESSION: &str = "session";

/// The body of `POST login` (form fields, or a JSON object).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginRequest {
    /// User name.
    username: String,
    /// Password.
    #[schema(format = Password)]
    password: String,
}

/// What `GET me` answers.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Me {
    /// User name.
    username: String,
    /// Whether the user is an admin.
    #[schema(rename = "isAdmin")]
    is_admin: bool,
    /// The effective policy: `categories`, `privileged`, `devices`,
    /// `share`, `registries`, `containers`, `limits`.
    policy: Map<String, Value>,
}

/// What `PUT logout` answers.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Logout {
    /// Whose session ended, if there was one.
    username: Option<String>,
}

/// The session cookie, as a security scheme every operation uses unless it
/// says otherwise.
struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE_NAME,
                "The session cookie `POST login` sets",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stevedore",
        description = "Background tasks for containers (QNAP Container Station's API), each task category a sandboxed WebAssembly plugin. Every path is also served under `/containerstation/api/v1` and `/container-station/api/v1`. Request bodies are JSON whatever the Content-Type says; every error is `{\"error\": {\"code\", \"message\", \"reason\"}}`.",
    ),
    paths(
        session::login,
        session::login_refresh,
        session::logout,
        session::me,
        tasks::list,
        tasks::delete_finished,
        tasks::events,
        tasks::submit,
        tasks::delete_one,
        tasks::log,
        containers::list,
        containers::get_id,
        containers::get,
        containers::inspect,
        containers::action,
        containers::delete,
        containers::logs,
        system::info,
        system::resource,
        super::ports::port,
        super::container_create::create,
        apps::list,
        apps::get,
        apps::action,
        apps::delete,
        apps::template_wizard,
        serve,
        super::metrics,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, Task, TaskState, LoginInfo, LoginRequest, Me, Logout,
        ContainerEntry, ContainerState, containers::Logs, tasks::TaskLogAnswer,
        crate::queue::LogLine, crate::queue::LogLevel,
    )),
    modifiers(&SessionCookie),
    security(("session" = [])),
    tags(
        (name = "session", description = "Login and the current user"),
        (name = "tasks", description = "Background tasks: list, delete, events"),
        (name = "categories", description = "One operation per loaded category: submit a task of it (the params schema comes from the category's plugin)"),
        (name = "containers", description = "Synchronous container calls"),
        (name = "applications", description = "Installed applications"),
        (name = "system", description = "The host and its engines"),
        (name = "metrics", description = "Prometheus metrics"),
    ),
)]
struct ApiDoc;

/// The documents of the areas that keep their annotations beside their
/// handlers (each area's `#[derive(OpenApi)]`), merged into [`ApiDoc`].
const AREAS: &[fn() -> utoipa::openapi::OpenApi] = &[
    super::audit::doc,
    super::bridge::doc,
    super::catalog::doc,
    super::events::doc,
    super::images::doc,
    super::networks::doc,
    super::preferences::doc,
    super::registries::doc,
    super::report::doc,
    super::resources::doc,
    super::schedules::doc,
    super::sharefolder::doc,
    super::volumes::doc,
    super::webhooks::doc,
    super::workspace::doc,
];

/// `GET openapi.json`: the document, with the categories loaded now.
#[utoipa::path(get, path = "/openapi.json", tag = "session",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.queue.category_docs()))
}

/// The whole document: the annotated routes under [`PREFIX`] (`/metrics`
/// stays at the root), plus one operation per category.
pub fn document(categories: &[CategoryDoc]) -> Value {
    let mut api = ApiDoc::openapi();
    for area in AREAS {
        api.merge(area());
    }
    let mut doc = serde_json::to_value(api).unwrap_or_else(|_| json!({}));
    let paths: Map<String, Value> = doc["paths"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(path, mut item)| {
            name_operations(&mut item);
            let path = if path == "/metrics" {
                path
            } else {
                format!("{PREFIX}{path}")
            };
            (path, item)
        })
        .collect();
    doc["paths"] = Value::Object(paths);
    let submit = format!("{PREFIX}/background/{{target}}");
    let responses = doc["paths"][&submit]["post"]["responses"].clone();
    let deleted = doc["paths"][&submit]["delete"]["responses"].clone();
    for category in categories {
        let schema = params_schema(category, &mut doc["components"]["schemas"]);
        doc["paths"][format!("{PREFIX}/background/{}", category.name)] =
            category_item(category, schema, &responses, &deleted);
    }
    doc
}

/// Make each operation's id unique: utoipa takes the handler's name, and
/// `list` or `get` exist in several modules; the tag tells them apart.
fn name_operations(item: &mut Value) {
    let Some(ops) = item.as_object_mut() else {
        return;
    };
    for op in ops.values_mut() {
        let tag = op["tags"][0].as_str().unwrap_or("api").to_string();
        if let Some(id) = op.get("operationId").and_then(Value::as_str) {
            op["operationId"] = Value::from(format!("{tag}_{id}"));
        }
    }
}

/// The path item of one category: submit it, delete its finished tasks.
fn category_item(
    category: &CategoryDoc,
    schema: Value,
    responses: &Value,
    deleted: &Value,
) -> Value {
    let name = &category.name;
    let summary = if category.summary.is_empty() {
        format!("Submit a `{name}` task")
    } else {
        category.summary.clone()
    };
    let deletable = if category.deletable {
        "A running task of this category may be deleted (it is cancelled)."
    } else {
        "A running task of this category may not be deleted."
    };
    let described = if category.params_schema.is_some() {
        "The params schema comes from the category's plugin."
    } else {
        "The category's plugin does not describe its params (it was built against WIT 0.1.0)."
    };
    json!({
        "post": {
            "tags": ["categories"],
            "operationId": format!("submit_{name}"),
            "summary": summary,
            "description": format!("Submit a `{name}` task. {deletable} {described}"),
            "x-stevedore-category": name,
            "x-stevedore-deletable": category.deletable,
            "requestBody": {
                "required": true,
                "content": {"application/json": {"schema": schema}},
            },
            "responses": responses,
        },
        "delete": {
            "tags": ["categories"],
            "operationId": format!("delete_finished_{name}"),
            "summary": format!("Delete the finished `{name}` tasks the caller may see"),
            "responses": deleted,
        },
    })
}

/// The category's params schema, ready to sit inside the document: its
/// `$schema` dropped, its own `$defs` moved to the document's components
/// (as `<category>.<name>`) with every reference to them rewritten. No
/// schema, or one that is not JSON: any JSON value.
fn params_schema(category: &CategoryDoc, components: &mut Value) -> Value {
    let Some(text) = &category.params_schema else {
        return json!({});
    };
    let Ok(mut schema) = serde_json::from_str::<Value>(text) else {
        tracing::warn!(category = %category.name, "the plugin's params schema is not JSON");
        return json!({"description": "The plugin's params schema is not valid JSON."});
    };
    let Value::Object(map) = &mut schema else {
        // `true`/`false` are schemas too.
        return schema;
    };
    map.remove("$schema");
    let defs = map.remove("$defs");
    let prefix = format!("#/components/schemas/{}.", category.name);
    rewrite_refs(&mut schema, &prefix);
    if let Some(Value::Object(defs)) = defs {
        for (name, mut def) in defs {
            rewrite_refs(&mut def, &prefix);
            components[format!("{}.{name}", category.name)] = def;
        }
    }
    schema
}

/// Point every `$ref` to `#/$defs/X` at `<prefix>X`.
fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "$ref" => {
                        if let Some(name) = s.strip_prefix("#/$defs/") {
                            *s = format!("{prefix}{name}");
                        }
                    }
                    other => rewrite_refs(other, prefix),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, prefix)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, schema: Option<&str>) -> CategoryDoc {
        CategoryDoc {
            name: name.into(),
            summary: format!("Do {name}"),
            deletable: true,
            params_schema: schema.map(str::to_string),
        }
    }

    #[test]
    fn document_is_3_1_with_every_route_under_the_prefix() {
        let d = document(&[]);
        assert_eq!(d["openapi"], "3.1.0");
        let paths = d["paths"].as_object().unwrap();
        for p in [
            "/api/v1/login",
            "/api/v1/login_refresh",
            "/api/v1/logout",
            "/api/v1/me",
            "/api/v1/background/",
            "/api/v1/background/events",
            "/api/v1/background/{target}",
            "/api/v1/container",
            "/api/v1/container/{type}/{id}/{action}",
            "/api/v1/apps/{name}",
            "/api/v1/openapi.json",
            "/metrics",
        ] {
            assert!(paths.contains_key(p), "{p} missing: {:?}", paths.keys());
        }
        let mut ids = std::collections::BTreeSet::new();
        for item in paths.values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap().to_string();
                assert!(ids.insert(id.clone()), "operationId {id} twice");
            }
        }
        assert!(d["components"]["schemas"]["Task"].is_object());
        assert!(d["components"]["schemas"]["ErrorBody"].is_object());
        assert_eq!(
            d["components"]["securitySchemes"]["session"]["in"],
            "cookie"
        );
        // Login and the document itself need no session.
        assert_eq!(d["paths"]["/api/v1/login"]["post"]["security"], json!([{}]));
    }

    #[test]
    fn every_path_parameter_is_in_its_path_and_every_placeholder_is_documented() {
        let d = document(&[]);
        for (path, item) in d["paths"].as_object().unwrap() {
            let placeholders: std::collections::BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let in_path: std::collections::BTreeSet<String> = params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .collect();
                let want: std::collections::BTreeSet<String> =
                    placeholders.iter().map(|s| s.to_string()).collect();
                assert_eq!(in_path, want, "{method} {path}: path parameters");
            }
        }
    }

    #[test]
    fn the_task_list_documents_its_page_parameters() {
        let d = document(&[]);
        let params = d["paths"]["/api/v1/background/"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{name} missing: {params:?}"))
                .clone()
        };
        for name in ["category", "node", "limit", "before"] {
            let p = param(name);
            assert_eq!(p["in"], "query", "{p}");
            assert_ne!(p["required"], true, "{p}");
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{p}"
            );
        }
        let limit = &param("limit")["schema"];
        assert!(limit["type"].to_string().contains("integer"), "{limit}");
        assert_eq!(
            (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
            (Some(1), Some(1000))
        );
        let before = &param("before")["schema"];
        assert!(before["type"].to_string().contains("integer"), "{before}");
        assert_eq!(before["minimum"].as_u64(), Some(1), "{before}");
    }

    #[test]
    fn each_category_gets_its_plugins_schema() {
        let schema = r##"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
            "properties":{"a":{"$ref":"#/$defs/A"}},"$defs":{"A":{"type":"string"}}}"##;
        let d = document(&[doc("mine", Some(schema)), doc("old", None)]);
        let op = &d["paths"]["/api/v1/background/mine"]["post"];
        assert_eq!(op["x-stevedore-category"], "mine");
        assert_eq!(op["summary"], "Do mine");
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(body.get("$schema").is_none());
        assert_eq!(
            body["properties"]["a"]["$ref"],
            "#/components/schemas/mine.A"
        );
        assert_eq!(d["components"]["schemas"]["mine.A"]["type"], "string");
        assert!(op["responses"]["400"].is_object());
        let old = &d["paths"]["/api/v1/background/old"]["post"];
        assert_eq!(
            old["requestBody"]["content"]["application/json"]["schema"],
            json!({})
        );
        assert!(d["paths"]["/api/v1/background/old"]["delete"].is_object());
    }
}
