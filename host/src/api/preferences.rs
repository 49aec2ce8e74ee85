//! Container Station's `preference.rst`, plus the `tls` and `lxd_registry`
//! routes: the application repository is served, every other documented
//! route answers 501 `not_supported` naming what is not.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET preference/repo` | `{"user", "project", "branch", "default", "from": "user"\|"default", "url"}` |
//! | `PUT preference/repo` (admin; `{"user", "project", "branch"}` of a GitHub repository, or `{"url"}`; `{"url": ""}` goes back to the configured one) | `{"result": true}` and the same keys as `GET` |
//! | [`UNSUPPORTED`]'s routes | 501 `not_supported` |
//!
//! The repository is the one of application templates and LXC images
//! (`[catalog] url` in the configuration). A URL set here is stored
//! (shared by every node with a shared database) and used from the next
//! template or image lookup on, without a restart: at once on the node
//! that took the `PUT`, within [`REPO_REFRESH`] on the others. GitHub's
//! `user`/`project`/`branch` stand for
//! `https://raw.githubusercontent.com/<user>/<project>/<branch>/`, the root
//! of QNAP's `container-apps` layout.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, State};
use axum::http::{Method, StatusCode, Uri};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{body_error, AppError, AppState, PREFIXES};
use crate::runtime::catalog::Catalog;

/// The stored preference holding the repository URL.
pub const REPO: &str = "repo";
/// How often a node reads the stored repository URL again (another node
/// may have set it).
pub const REPO_REFRESH: Duration = Duration::from_secs(5);
/// GitHub's raw files: QNAP's repositories are read from here.
const GITHUB_RAW: &str = "https://raw.githubusercontent.com/";

/// The documented routes this server does not support: path (after a
/// prefix), methods, and what is not supported.
pub const UNSUPPORTED: &[(&str, &[&str], &str)] = &[
    ("/preference", &["GET"], "the table of every preference key"),
    (
        "/preference/",
        &["GET"],
        "the table of every preference key",
    ),
    (
        "/preference/{key}",
        &["GET", "POST", "PUT", "DELETE"],
        "free-form preference keys (only `preference/repo` is kept)",
    ),
    (
        "/preference/network",
        &["GET", "PUT"],
        "changing the LXC network here (set `[lxc] bridge` and `subnet` in the configuration)",
    ),
    (
        "/preference/network_docker",
        &["GET", "PUT"],
        "changing Docker's default network (it is the engine's setting)",
    ),
    (
        "/preference/network_lxdbr0",
        &["GET", "PUT"],
        "LXD's network (this server runs no LXD)",
    ),
    (
        "/tls",
        &["GET", "POST"],
        "a TLS certificate of the API (serve it behind a TLS-terminating proxy)",
    ),
    (
        "/tls/domain_names",
        &["GET", "PUT"],
        "the TLS certificate's domain names (the API speaks no TLS itself)",
    ),
    (
        "/tls/export",
        &["GET"],
        "exporting a TLS certificate (the API speaks no TLS itself)",
    ),
    (
        "/tls/rotation",
        &["POST"],
        "rotating a TLS certificate (the API speaks no TLS itself)",
    ),
    (
        "/lxd_registry",
        &["GET", "POST"],
        "LXD image registries (this server runs no LXD)",
    ),
    (
        "/lxd_registry/{registry_name}",
        &["PATCH", "DELETE"],
        "LXD image registries (this server runs no LXD)",
    ),
];

/// 501 for every route of [`UNSUPPORTED`], naming what is not supported.
pub async fn not_supported(method: Method, uri: Uri, matched: Option<MatchedPath>) -> AppError {
    let unprefixed = |full: &str| -> String {
        PREFIXES
            .iter()
            .find_map(|p| full.strip_prefix(p))
            .unwrap_or(full)
            .to_string()
    };
    let route = unprefixed(matched.as_ref().map_or("", |m| m.as_str()));
    let what = UNSUPPORTED
        .iter()
        .find(|(p, _, _)| *p == route)
        .map_or("this route", |(_, _, what)| what);
    let asked = unprefixed(uri.path());
    AppError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_supported",
        format!(
            "{method} {}: {what} is not supported by this server",
            asked.trim_start_matches('/')
        ),
    )
}

/// The repository as `GET preference/repo` answers it.
fn repo_view(stored: Option<&str>, default: Option<&str>) -> Value {
    let current = stored.or(default).map(shown_url).unwrap_or_default();
    let (user, project, branch) = github_parts(&current).unwrap_or_default();
    let default_shown = default
        .map(|d| {
            let d = shown_url(d);
            match github_parts(&d) {
                Some((u, p, b)) => format!("{u}/{p}:{b}"),
                None => d,
            }
        })
        .unwrap_or_default();
    json!({
        "user": user,
        "project": project,
        "branch": branch,
        "default": default_shown,
        "from": if stored.is_some() { "user" } else { "default" },
        "url": current,
    })
}

/// `url` without a login in it.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `user`, `project` and `branch` of a raw.githubusercontent.com root.
fn github_parts(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix(GITHUB_RAW)?.trim_end_matches('/');
    let mut parts = rest.splitn(3, '/');
    let (u, p, b) = (parts.next()?, parts.next()?, parts.next()?);
    Some((u.to_string(), p.to_string(), b.to_string()))
}

/// `GET preference/repo`: the application repository in use.
#[utoipa::path(get, path = "/preference/repo", tag = "preferences",
    summary = "The application and image repository in use",
    responses(
        (status = 200, description = "`{user, project, branch, default, from, url}`", body = Object),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn get_repo(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<Value>, AppError> {
    let r = &state.registries;
    let stored = r.store.preference(REPO).await.map_err(AppError::internal)?;
    Ok(Json(repo_view(
        stored.as_deref(),
        r.default_catalog.as_deref(),
    )))
}

fn field_error(field: &str, what: &str) -> AppError {
    AppError::bad_request("invalid_params", format!("{field}: {what}"))
}

fn string_field(m: &Map<String, Value>, field: &str) -> Result<Option<String>, AppError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_error(field, "must be a string")),
    }
}

/// A GitHub name part: 1 to 100 letters, digits, `_`, `.`, `-` (and `/`
/// inside a branch), never `..`.
fn github_part(field: &str, value: Option<String>, slash: bool) -> Result<String, AppError> {
    let v = value.ok_or_else(|| field_error(field, "is required (or give `url`)"))?;
    let ok = (1..=100).contains(&v.len())
        && v.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || (slash && c == '/')
        })
        && !v.contains("..")
        && !v.starts_with('/')
        && !v.ends_with('/');
    if ok {
        Ok(v)
    } else {
        Err(field_error(
            field,
            "must be 1 to 100 letters, digits, `_`, `.` or `-`",
        ))
    }
}

/// The repository URL a `PUT preference/repo` body asks for (`None`: the
/// configured one).
fn parse_repo(body: &[u8]) -> Result<Option<String>, AppError> {
    let m = match super::tasks::parse_params(body)? {
        Value::Object(m) => m,
        _ => {
            return Err(AppError::bad_request(
                "wrong_type",
                "request body: expected a JSON object",
            ))
        }
    };
    if m.contains_key("url") {
        let url = string_field(&m, "url")?.unwrap_or_default();
        let url = url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        match parsed {
            Some(u) if u.username().is_empty() && u.password().is_none() && url.len() <= 1024 => {
                Catalog::new(url).map_err(|e| field_error("url", &e.to_string()))?;
                Ok(Some(url.to_string()))
            }
            _ => Err(field_error(
                "url",
                "must be an http:// or https:// URL without a login in it",
            )),
        }
    } else {
        let user = github_part("user", string_field(&m, "user")?, false)?;
        let project = github_part("project", string_field(&m, "project")?, false)?;
        let branch = github_part("branch", string_field(&m, "branch")?, true)?;
        Ok(Some(format!("{GITHUB_RAW}{user}/{project}/{branch}/")))
    }
}

/// `PUT preference/repo`: use another application repository from now on.
#[utoipa::path(put, path = "/preference/repo", tag = "preferences",
    summary = "Set the application and image repository (admins), used without a restart",
    request_body(content = Object, content_type = "application/json",
        description = "`{user, project, branch}` of a GitHub repository, or `{url}` (`\"\"`: the configured one)"),
    responses(
        (status = 200, description = "`{result: true}` and the keys of `GET preference/repo`", body = Object),
        (status = 400, description = "A bad field; the message names it", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
    ))]
pub async fn put_repo(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    if !user.0.is_admin {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "admin_only",
            "setting the application repository is for admins",
        ));
    }
    let body = body.map_err(body_error)?;
    let url = parse_repo(&body)?;
    let r = &state.registries;
    r.store
        .set_preference(REPO, url.as_deref())
        .await
        .map_err(AppError::internal)?;
    r.use_repo(url.clone());
    tracing::info!(user = %user.0.username, url = ?url.as_deref().map(shown_url), "application repository set");
    let mut view = repo_view(url.as_deref(), r.default_catalog.as_deref());
    view["result"] = json!(true);
    Ok(Json(view))
}

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    let mut all = vec![
        entry(Method::GET, "/preference/repo", S, get_repo),
        entry(Method::PUT, "/preference/repo", S, put_repo),
    ];
    for (path, methods, _) in UNSUPPORTED {
        for m in *methods {
            let method = Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET);
            all.push(entry(method, path, S, not_supported));
        }
    }
    all
}

/// The OpenAPI document of the served routes.
#[derive(OpenApi)]
#[openapi(
    paths(get_repo, put_repo),
    tags((name = "preferences", description = "The application repository; the other preferences, TLS and LXD registries answer 501")),
)]
pub(super) struct Doc;

/// [`Doc`]'s document, plus one operation per route of [`UNSUPPORTED`].
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Required, ResponseBuilder, ResponsesBuilder};
    let mut api = Doc::openapi();
    for (path, methods, what) in UNSUPPORTED {
        for m in *methods {
            let method = match *m {
                "POST" => HttpMethod::Post,
                "PUT" => HttpMethod::Put,
                "DELETE" => HttpMethod::Delete,
                "PATCH" => HttpMethod::Patch,
                _ => HttpMethod::Get,
            };
            let id: String = format!("not_supported_{m}{path}")
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let mut op = OperationBuilder::new()
                .tag("preferences")
                .operation_id(Some(id))
                .summary(Some(format!("Not supported: {what}")))
                .responses(
                    ResponsesBuilder::new()
                        .response(
                            "501",
                            ResponseBuilder::new().description(
                                "`not_supported`: the message names what is not supported",
                            ),
                        )
                        .response("401", ResponseBuilder::new().description("Not logged in")),
                );
            for param in ["key", "registry_name"] {
                if path.contains(&format!("{{{param}}}")) {
                    op = op.parameter(
                        ParameterBuilder::new()
                            .name(param)
                            .parameter_in(ParameterIn::Path)
                            .required(Required::True)
                            .schema(Some(
                                utoipa::openapi::ObjectBuilder::new()
                                    .schema_type(utoipa::openapi::schema::Type::String),
                            )),
                    );
                }
            }
            api.paths
                .add_path_operation(*path, vec![method], op.build());
        }
    }
    api
}
