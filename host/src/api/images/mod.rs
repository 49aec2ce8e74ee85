//! `image...`: the images of Container Station's `image.rst` (the local
//! ones of Docker and LXC, and what the configured registries hold), and
//! `POST container/docker/{id}/commit`. The registry routes (`registry*`)
//! are another area's.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET image` (`?category=all\|local\|dockerhub\|private`, default `all`; `filter_text`, `type=docker\|lxc`, `registry_name`) | `{category, filterText, qcsVersion, results: [...], errors: [...]}`: local images (`repository: "local"`, one entry per name), then the registries' repositories; a registry that cannot be asked is an entry of `errors` (`{registry, repository, error: {code, message, reason}}`), not a failure of the list |
//! | `GET image/{type}/{name}/{tag}/inspect` | the runtime's inspect JSON of `name:tag` (a name with `/` is sent as `%2F`) |
//! | `GET image/{name}/tags` (`?registry=`, default Docker Hub) | `{name, installed: [local tags], tags: [the registry's tags], errors: [...]}`; a registry that cannot be asked is an entry of `errors` |
//! | `DELETE image/local/{type}/{name}[/{tag}]` | `{action: "delete", name, state: "success", type}`; an image a container uses: 409 `conflict` |
//! | `POST container/docker/{id}/commit` (`{repository, tag, author, message}`) | `{image_id}`: the container as a new image, the caller's own |
//!
//! A non-admin lists, inspects and removes the images the image rules let
//! them use ([`crate::runtime::image_owners`]): not one another user made
//! or pulled with their credentials. They search only the registries their
//! policy allows. Errors: 404 `unknown_image`, 403 `not_yours`, 409
//! `conflict`, 502 `runtime_error` (the engine). A registry that cannot be
//! asked is never an error status: it is an entry of the answer's `errors`
//! (`registry_unreachable`, `registry_refused`).

mod search;

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::containers::{check_container, context, runtime_error, runtime_kind};
use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{body_error, AppError, AppState};
use crate::runtime::reference::Reference;
use crate::runtime::traits::images::{CommitImage, SearchRegistry};
use crate::runtime::{
    CallContext, ContainerRef, Error as RtError, ImageRef, RemoveImage, RuntimeKind, Source,
};
use search::{Endpoint, SearchError, DOCKER_HUB};

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    vec![
        entry(M::GET, "/image", S, list),
        entry(M::GET, "/image/", S, list),
        entry(M::GET, "/image/{type}/{name}/{tag}/inspect", S, inspect),
        entry(M::GET, "/image/{name}/tags", S, tags),
        entry(M::DELETE, "/image/{repository}/{type}/{name}", S, remove),
        entry(
            M::DELETE,
            "/image/{repository}/{type}/{name}/{tag}",
            S,
            remove_tag,
        ),
        entry(M::POST, "/container/docker/{id}/commit", S, commit),
    ]
}

/// The OpenAPI document of this area.
#[derive(OpenApi)]
#[openapi(
    paths(list, inspect, tags, remove, remove_tag, commit),
    components(schemas(CommitBody)),
    tags((name = "images", description = "Local images, registry searches, commits"))
)]
pub(super) struct Doc;

/// This area's document.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The version the answers name as `qcsVersion`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The registries an image search may ask: the configuration's
/// `[registries.NAME]` (name, URL – its scheme says plain HTTP or TLS, none:
/// TLS then plain HTTP as the engine tries – and login), then those added
/// through the API (`POST registry`) with their sealed logins. A stored
/// registry the store cannot read now is left out (and logged): a search
/// answers with the others.
pub async fn registries_for_search(state: &AppState) -> Vec<SearchRegistry> {
    let mut all = state.runtime.images.search_registries();
    match state.registries.store.list().await {
        Ok(stored) => {
            for s in stored {
                if all.iter().any(|r| r.name == s.registry.name) {
                    continue;
                }
                all.push(SearchRegistry {
                    name: s.registry.name,
                    url: s.registry.url,
                    login: s
                        .registry
                        .login
                        .map(|l| (l.username, crate::secret::Secret(l.password))),
                });
            }
        }
        Err(e) => tracing::warn!("reading the API's registries for a search: {e:#}"),
    }
    all
}

/// An image call's runtime error: no such image is 404 `unknown_image`, a
/// refusal of the policy 403 `not_yours`, the rest as the container calls
/// answer them.
fn image_error(e: RtError) -> AppError {
    match e {
        RtError::NotFound(m) => AppError::not_found("unknown_image", m),
        RtError::Denied(m) => AppError::new(StatusCode::FORBIDDEN, "not_yours", m),
        other => runtime_error(other),
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

fn bad(field: &str, message: impl std::fmt::Display) -> AppError {
    AppError::bad_request("invalid_params", format!("{field}: {message}"))
}

/// `name` and `tag` as one reference of `kind`, checked: Docker's grammar,
/// or LXC's store names (letters, digits, `.`, `_`, `-`, `/`).
fn image_reference(kind: RuntimeKind, name: &str, tag: &str) -> Result<String, AppError> {
    let tag = if tag.is_empty() { "latest" } else { tag };
    check_tag("tag", tag)?;
    match kind {
        RuntimeKind::Docker => {
            let r = Reference::parse(name).map_err(|e| bad("name", e))?;
            if r.tag.is_some() || r.digest.is_some() {
                return Err(bad(
                    "name",
                    format!("`{}` carries a tag: give it in the path", short(name)),
                ));
            }
        }
        RuntimeKind::Lxc => {
            let ok = !name.is_empty()
                && name.len() <= 128
                && name.as_bytes()[0].is_ascii_alphanumeric()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
            if !ok {
                return Err(bad(
                    "name",
                    format!("`{}` is not an LXC image name", short(name)),
                ));
            }
        }
    }
    Ok(format!("{name}:{tag}"))
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(field: &str, tag: &str) -> Result<(), AppError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!(
                "`{}` is not a tag (letters, digits, `_`, `.`, `-`; up to 128)",
                short(tag)
            ),
        ))
    }
}

/// `name:tag` split at the tag's `:` (the last one after the last `/`).
fn split_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

// ---------------------------------------------------------------- GET image

/// The query of `GET image`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `all` (default), `local`, `dockerhub` or `private`.
    pub category: Option<String>,
    /// Keep the names (and descriptions) holding this text; Docker Hub's query.
    pub filter_text: Option<String>,
    /// `docker` or `lxc` (default: both).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Only this configured registry (`private`).
    pub registry_name: Option<String>,
}

/// What `GET image` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    All,
    Local,
    Dockerhub,
    Private,
}

impl Category {
    fn parse(text: Option<&str>) -> Result<Category, AppError> {
        match text.unwrap_or("all") {
            "all" | "" => Ok(Category::All),
            "local" => Ok(Category::Local),
            "dockerhub" => Ok(Category::Dockerhub),
            "private" => Ok(Category::Private),
            other => Err(bad(
                "category",
                format!(
                    "must be all, local, dockerhub or private, got `{}`",
                    short(other)
                ),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Category::All => "all",
            Category::Local => "local",
            Category::Dockerhub => "dockerhub",
            Category::Private => "private",
        }
    }
}

/// A local image's entry: one per name (`name:tag`), in the shape of the
/// recorded listing, plus its `id`, `size` and `created`.
fn local_entry(kind: RuntimeKind, reference: &str, info: &crate::runtime::ImageInfo) -> Value {
    let (name, tag) = split_tag(reference);
    json!({
        "arch": std::env::consts::ARCH,
        "description": "",
        "displayName": name,
        "displayNameLower": name.to_lowercase(),
        "downloading": false,
        "icon": "",
        "installed": true,
        "location": "",
        "name": name,
        "repository": "local",
        "type": crate::runtime::kind_name(kind),
        "version": tag,
        "id": info.id,
        "size": info.size,
        "created": info.created,
    })
}

/// The local images of `kinds` the caller may see whose name holds
/// `filter`, sorted by name and tag, and the local names (canonical, for
/// `installed`). A runtime asked alone that cannot be asked is an entry of
/// `errors`.
async fn local_images(
    state: &AppState,
    cx: &CallContext,
    kinds: &[RuntimeKind],
    filter: &str,
    errors: &mut Vec<Value>,
) -> (Vec<Value>, BTreeSet<String>) {
    let mut results = Vec::new();
    let mut names = BTreeSet::new();
    for &kind in kinds {
        match state.runtime.images.image_list(cx, kind).await {
            Ok(list) => {
                for info in &list {
                    for reference in &info.tags {
                        if reference == "<none>:<none>" {
                            continue;
                        }
                        if kind == RuntimeKind::Docker {
                            if let Ok(r) = Reference::parse(reference) {
                                names.insert(r.canonical());
                            }
                        }
                        if search::matches(reference, filter) {
                            results.push(local_entry(kind, reference, info));
                        }
                    }
                }
            }
            // LXC on a host without it, or no engine: the other runtime's
            // images still list; the runtime is an error entry when asked for.
            Err(e) if kinds.len() > 1 => {
                tracing::debug!(runtime = crate::runtime::kind_name(kind), error = %e.message(), "listing images");
            }
            Err(e) => {
                let e = runtime_error(e);
                errors.push(json!({
                    "registry": format!("local {}", crate::runtime::kind_name(kind)),
                    "repository": "local",
                    "error": e.body()["error"],
                }));
            }
        }
    }
    results.sort_by(|a, b| {
        (a["name"].as_str(), a["version"].as_str())
            .cmp(&(b["name"].as_str(), b["version"].as_str()))
    });
    (results, names)
}

/// An error entry of `errors`: the registry, its repository kind, and an
/// error in the API's error shape.
fn error_entry(registry: &str, repository: &str, e: &SearchError) -> Value {
    let (code, reason) = match e {
        SearchError::Refused(_) => (502, "registry_refused"),
        SearchError::NotFound(_) => (404, "unknown_image"),
        SearchError::Unreachable(_) => (502, "registry_unreachable"),
    };
    json!({
        "registry": registry,
        "repository": repository,
        "error": {"code": code, "message": e.message(), "reason": reason},
    })
}

/// The entries of the repositories `found` in the registry `endpoint`.
/// `dockerhub`: the registry is Docker Hub's mirror, whose official images
/// are `library/<name>` and pulled as `<name>`.
fn registry_entries(
    endpoint: &Endpoint,
    found: Vec<search::Found>,
    dockerhub: bool,
    local: &BTreeSet<String>,
) -> Vec<Value> {
    found
        .into_iter()
        .map(|f| {
            let name = if dockerhub {
                f.repository
                    .strip_prefix("library/")
                    .unwrap_or(&f.repository)
                    .to_string()
            } else {
                f.repository.clone()
            };
            let pulled_as = |tag: &str| {
                let full = if dockerhub {
                    format!("{name}:{tag}")
                } else {
                    format!("{}/{}:{tag}", endpoint.host, f.repository)
                };
                Reference::parse(&full).map(|r| r.canonical()).ok()
            };
            let installed = f
                .tags
                .iter()
                .any(|t| pulled_as(t).is_some_and(|c| local.contains(&c)));
            json!({
                "description": "",
                "downloading": false,
                "installed": installed,
                "is_automated": false,
                "is_official": false,
                "location": format!("{}/{}", endpoint.host, f.repository),
                "name": name,
                "registry": endpoint.name,
                "repository": if dockerhub { "dockerhub" } else { "private" },
                "star_count": 0,
                "tags": f.tags,
                "type": "docker",
                "version": f.tags.last(),
            })
        })
        .collect()
}

/// Docker Hub's search results as the recorded answer shows them.
fn hub_entries(found: Vec<search::HubResult>, local: &BTreeSet<String>) -> Vec<Value> {
    found
        .into_iter()
        .map(|r| {
            let installed = local.iter().any(|l| {
                Reference::parse(&r.name).is_ok_and(|p| l.starts_with(&format!("{}:", p.name())))
            });
            let location = if r.name.contains('/') {
                format!("https://hub.docker.com/r/{}", r.name)
            } else {
                format!("https://hub.docker.com/_/{}", r.name)
            };
            json!({
                "description": r.description,
                "downloading": false,
                "installed": installed,
                "is_automated": r.is_automated,
                "is_official": r.is_official,
                "location": location,
                "name": r.name,
                "repository": "dockerhub",
                "star_count": r.star_count,
                "type": "docker",
            })
        })
        .collect()
}

/// Where `dockerhub` points: Docker Hub itself (`None`), or the configured
/// mirror's endpoint.
fn dockerhub_mirror(state: &AppState, registries: &[SearchRegistry]) -> Option<Endpoint> {
    let host = state
        .runtime
        .images
        .resolve_source(&Source::Dockerhub)
        .ok()
        .filter(|h| !h.is_empty())?;
    let configured = registries.iter().map(Endpoint::of).find(|e| e.host == host);
    Some(configured.map_or_else(
        || Endpoint::at(DOCKER_HUB, &host, None),
        |e| Endpoint {
            name: DOCKER_HUB.to_string(),
            ..e
        },
    ))
}

/// `GET image`: local images, and what the registries hold.
#[utoipa::path(get, path = "/image", tag = "images",
    summary = "Local images, and the repositories of Docker Hub and the configured registries",
    description = "`results[]` holds the local images (`repository: \"local\"`, one entry per name and tag) and the registries' repositories (`dockerhub`, `private`, each with its `tags`). A registry that cannot be asked is an entry of `errors[]`, not a failure of the list. Docker Hub is searched only with a `filter_text`.",
    params(ListQuery),
    responses(
        (status = 200, description = "The images", body = Object),
        (status = 400, description = "A query field is not valid (`category`, `type`, `registry_name`)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<ListQuery>>,
) -> Result<Json<Value>, AppError> {
    let category = Category::parse(query.category.as_deref())?;
    let filter = query.filter_text.clone().unwrap_or_default();
    let kinds: Vec<RuntimeKind> = match query.kind.as_deref() {
        None | Some("") => vec![RuntimeKind::Docker, RuntimeKind::Lxc],
        Some(t) => vec![runtime_kind(t)?],
    };
    let registries = registries_for_search(&state).await;
    if let Some(name) = query.registry_name.as_deref().filter(|n| !n.is_empty()) {
        if !registries.iter().any(|r| r.name == name) {
            let known: Vec<&str> = registries.iter().map(|r| r.name.as_str()).collect();
            return Err(bad(
                "registry_name",
                format!(
                    "unknown registry `{}` (configured: {})",
                    short(name),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let cx = context(&user);
    let policy = state.policies.of(&user.0.username);
    let mut errors = Vec::new();
    let (local, local_names) = local_images(&state, &cx, &kinds, &filter, &mut errors).await;
    let mut results = Vec::new();
    if matches!(category, Category::All | Category::Local) {
        results.extend(local);
    }
    let registry_images = kinds.contains(&RuntimeKind::Docker);
    if registry_images
        && matches!(category, Category::All | Category::Dockerhub)
        && policy.allows_registry("dockerhub").is_ok()
    {
        match dockerhub_mirror(&state, &registries) {
            Some(mirror) => match search::search_catalog(&mirror, &filter).await {
                Ok(found) => results.extend(registry_entries(&mirror, found, true, &local_names)),
                Err(e) => errors.push(error_entry(DOCKER_HUB, "dockerhub", &e)),
            },
            // Docker Hub's search needs a query: without one there is nothing to ask.
            None if filter.is_empty() => {}
            None => match search::search_hub(&filter).await {
                Ok(found) => results.extend(hub_entries(found, &local_names)),
                Err(e) => errors.push(error_entry(DOCKER_HUB, "dockerhub", &e)),
            },
        }
    }
    if registry_images && matches!(category, Category::All | Category::Private) {
        let asked: Vec<Endpoint> = registries
            .iter()
            .filter(|r| {
                query
                    .registry_name
                    .as_deref()
                    .is_none_or(|n| n.is_empty() || n == r.name)
            })
            .filter(|r| policy.allows_registry(&r.name).is_ok())
            .map(Endpoint::of)
            .collect();
        let filter = &filter;
        let answers = futures::future::join_all(
            asked
                .iter()
                .map(|e| async move { (e, search::search_catalog(e, filter).await) }),
        )
        .await;
        for (endpoint, answer) in answers {
            match answer {
                Ok(found) => results.extend(registry_entries(endpoint, found, false, &local_names)),
                Err(e) => errors.push(error_entry(&endpoint.name, "private", &e)),
            }
        }
    }
    Ok(Json(json!({
        "category": category.name(),
        "filterText": filter,
        "qcsVersion": VERSION,
        "results": results,
        "errors": errors,
    })))
}

// ---------------------------------------------------------------- inspect

/// `GET image/{type}/{name}/{tag}/inspect`: the runtime's inspect JSON.
#[utoipa::path(get, path = "/image/{type}/{name}/{tag}/inspect", tag = "images",
    summary = "An image's inspect JSON (Docker's own; LXC's record)",
    params(
        ("type" = String, Path, description = "`docker` or `lxc`"),
        ("name" = String, Path, description = "Image name (`/` as `%2F`)"),
        ("tag" = String, Path, description = "Tag"),
    ),
    responses(
        (status = 200, description = "The inspect data", body = Object),
        (status = 400, description = "A path segment is not valid (`type`, `name`, `tag`)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's image (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "No such image (`unknown_image`)", body = super::error::ErrorBody),
        (status = 501, description = "This server has no such runtime", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn inspect(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((kind, name, tag))): Api<Path<(String, String, String)>>,
) -> Result<Response, AppError> {
    let kind = runtime_kind(&kind)?;
    let reference = image_reference(kind, &name, &tag)?;
    let text = state
        .runtime
        .images
        .image_inspect_json(&context(&user), ImageRef::new(kind, reference))
        .await
        .map_err(image_error)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

// ---------------------------------------------------------------- tags

/// The query of `GET image/{name}/tags`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TagsQuery {
    /// A configured registry's name; `Docker Hub` (default) or `dockerhub` for Docker Hub.
    pub registry: Option<String>,
}

/// `GET image/{name}/tags`: a repository's tags in a registry, and which
/// of them are local.
#[utoipa::path(get, path = "/image/{name}/tags", tag = "images",
    summary = "A repository's tags in a registry, and which of them are local",
    params(("name" = String, Path, description = "Repository (`/` as `%2F`)"), TagsQuery),
    responses(
        (status = 200, description = "`{name, installed, tags, errors}`: a registry that cannot be asked is an entry of `errors` (and `tags` is empty)", body = Object),
        (status = 400, description = "Not valid (`name`, `registry`)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "The caller's policy does not allow this registry", body = super::error::ErrorBody),
        (status = 404, description = "The registry has no such repository (`unknown_image`)", body = super::error::ErrorBody),
    ))]
pub async fn tags(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
    Api(Query(query)): Api<Query<TagsQuery>>,
) -> Result<Json<Value>, AppError> {
    let parsed = Reference::parse(&name).map_err(|e| bad("name", e))?;
    if parsed.tag.is_some() || parsed.digest.is_some() || parsed.domain != "docker.io" {
        return Err(bad(
            "name",
            format!(
                "`{}`: give the repository alone, without a registry or tag",
                short(&name)
            ),
        ));
    }
    let registries = registries_for_search(&state).await;
    let asked = query.registry.as_deref().unwrap_or(DOCKER_HUB);
    let hub = asked == DOCKER_HUB || asked == "dockerhub" || asked.is_empty();
    let policy_name = if hub { "dockerhub" } else { asked };
    state
        .policies
        .of(&user.0.username)
        .allows_registry(policy_name)
        .map_err(|r| AppError::new(StatusCode::FORBIDDEN, "denied", r.message))?;
    let (endpoint, found) = if hub {
        match dockerhub_mirror(&state, &registries) {
            Some(mirror) => {
                let path = if name.contains('/') {
                    name.clone()
                } else {
                    format!("library/{name}")
                };
                let found = search::tags_of(&mirror, &path).await;
                (Some(mirror), found)
            }
            None => (None, search::hub_tags(&name).await),
        }
    } else {
        let Some(r) = registries.iter().find(|r| r.name == asked) else {
            return Err(bad(
                "registry",
                format!("unknown registry `{}`", short(asked)),
            ));
        };
        let endpoint = Endpoint::of(r);
        let found = search::tags_of(&endpoint, &name).await;
        (Some(endpoint), found)
    };
    // A registry that cannot be asked is an error entry, as in the listing.
    let registry_name = endpoint.as_ref().map_or(DOCKER_HUB, |e| e.name.as_str());
    let mut errors = Vec::new();
    let tags = match found {
        Ok(tags) => tags,
        Err(SearchError::NotFound(m)) => return Err(AppError::not_found("unknown_image", m)),
        Err(e) => {
            let kind = if hub { "dockerhub" } else { "private" };
            errors.push(error_entry(registry_name, kind, &e));
            Vec::new()
        }
    };
    // The local name of each tag: the registry's host prefix for a private
    // registry, the name as asked for Docker Hub and its mirror.
    let prefix = match &endpoint {
        Some(e) if !hub => format!("{}/", e.host),
        _ => String::new(),
    };
    let cx = context(&user);
    let mut installed = Vec::new();
    if let Ok(list) = state
        .runtime
        .images
        .image_list(&cx, RuntimeKind::Docker)
        .await
    {
        let local: BTreeSet<String> = list
            .iter()
            .flat_map(|i| i.tags.iter())
            .filter_map(|t| Reference::parse(t).ok().map(|r| r.canonical()))
            .collect();
        for tag in &tags {
            let canonical = Reference::parse(&format!("{prefix}{name}:{tag}"))
                .map(|r| r.canonical())
                .ok();
            if canonical.is_some_and(|c| local.contains(&c)) {
                installed.push(tag.clone());
            }
        }
    }
    Ok(Json(
        json!({"name": name, "installed": installed, "tags": tags, "errors": errors}),
    ))
}

// ---------------------------------------------------------------- delete

async fn remove_image(
    state: &AppState,
    user: &CurrentUser,
    repository: &str,
    kind: &str,
    name: &str,
    tag: &str,
) -> Result<Json<Value>, AppError> {
    if repository != "local" {
        return Err(bad(
            "repository",
            format!(
                "only `local` images are removed, got `{}`",
                short(repository)
            ),
        ));
    }
    let kind_enum = runtime_kind(kind)?;
    let reference = image_reference(kind_enum, name, tag)?;
    let cx = context(user);
    state
        .runtime
        .images
        .image_remove(
            &cx,
            RemoveImage {
                image: ImageRef::new(kind_enum, reference.clone()),
                force: false,
            },
        )
        .await
        .map_err(image_error)?;
    tracing::info!(user = %user.0.username, image = %reference, "image removed");
    Ok(Json(json!({
        "action": "delete",
        "name": name,
        "state": "success",
        "type": kind,
    })))
}

/// `DELETE image/{repository}/{type}/{name}`: remove `name:latest`.
#[utoipa::path(delete, path = "/image/{repository}/{type}/{name}", tag = "images",
    summary = "Remove a local image (`name:latest`)",
    params(
        ("repository" = String, Path, description = "`local`"),
        ("type" = String, Path, description = "`docker` or `lxc`"),
        ("name" = String, Path, description = "Image name (`/` as `%2F`)"),
    ),
    responses(
        (status = 200, description = "`{action, name, state, type}`", body = Object),
        (status = 400, description = "A path segment is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's image (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "No such image (`unknown_image`)", body = super::error::ErrorBody),
        (status = 409, description = "A container uses it (`conflict`)", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((repository, kind, name))): Api<Path<(String, String, String)>>,
) -> Result<Json<Value>, AppError> {
    remove_image(&state, &user, &repository, &kind, &name, "latest").await
}

/// `DELETE image/{repository}/{type}/{name}/{tag}`: remove `name:tag`.
#[utoipa::path(delete, path = "/image/{repository}/{type}/{name}/{tag}", tag = "images",
    summary = "Remove a local image",
    params(
        ("repository" = String, Path, description = "`local`"),
        ("type" = String, Path, description = "`docker` or `lxc`"),
        ("name" = String, Path, description = "Image name (`/` as `%2F`)"),
        ("tag" = String, Path, description = "Tag"),
    ),
    responses(
        (status = 200, description = "`{action, name, state, type}`", body = Object),
        (status = 400, description = "A path segment is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's image (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "No such image (`unknown_image`)", body = super::error::ErrorBody),
        (status = 409, description = "A container uses it (`conflict`)", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn remove_tag(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((repository, kind, name, tag))): Api<Path<(String, String, String, String)>>,
) -> Result<Json<Value>, AppError> {
    remove_image(&state, &user, &repository, &kind, &name, &tag).await
}

// ---------------------------------------------------------------- commit

/// The body of `POST container/docker/{id}/commit`.
#[derive(Debug, Default, utoipa::ToSchema)]
pub struct CommitBody {
    /// The new image's repository (required).
    pub repository: String,
    /// Its tag (default `latest`).
    pub tag: Option<String>,
    /// Its author.
    pub author: Option<String>,
    /// Its commit message (`comment` is read too).
    pub message: Option<String>,
}

/// The longest author or message kept.
const MAX_TEXT: usize = 4096;

/// Read the commit body: a JSON object whose fields are strings.
fn commit_body(body: &[u8]) -> Result<CommitBody, AppError> {
    let value: Value = super::tasks::parse_params(body)?;
    let Value::Object(map) = value else {
        return Err(AppError::bad_request(
            "wrong_type",
            "request body must be a JSON object",
        ));
    };
    let text = |map: &Map<String, Value>, field: &str| -> Result<Option<String>, AppError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(bad(field, format!("longer than {MAX_TEXT} bytes"))),
            Some(_) => Err(bad(field, "must be a string")),
        }
    };
    let repository = text(&map, "repository")?
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("repository", "required: the new image's name"))?;
    let message = match text(&map, "message")? {
        Some(m) => Some(m),
        None => text(&map, "comment")?,
    };
    Ok(CommitBody {
        repository,
        tag: text(&map, "tag")?.filter(|t| !t.is_empty()),
        author: text(&map, "author")?,
        message,
    })
}

/// `POST container/docker/{id}/commit`: the container as a new image.
#[utoipa::path(post, path = "/container/docker/{id}/commit", tag = "images",
    summary = "Commit a Docker container as a new image (the caller's own)",
    params(("id" = String, Path, description = "Container id, 12+ character id prefix, or name")),
    request_body(content = CommitBody, content_type = "application/json"),
    responses(
        (status = 200, description = "`{image_id}`", body = Object),
        (status = 400, description = "Not valid; the message names the field (`repository`, `tag`, `author`, `message`)", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Another user's container, or a name another user made (`not_yours`)", body = super::error::ErrorBody),
        (status = 404, description = "No such container (`unknown_container`)", body = super::error::ErrorBody),
        (status = 502, description = "The engine refused or failed", body = super::error::ErrorBody),
    ))]
pub async fn commit(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    check_container(&id)?;
    let body = commit_body(&body.map_err(body_error)?)?;
    let tag = body.tag.unwrap_or_else(|| "latest".to_string());
    check_tag("tag", &tag)?;
    let parsed = Reference::parse(&body.repository).map_err(|e| bad("repository", e))?;
    if parsed.tag.is_some() || parsed.digest.is_some() {
        return Err(bad(
            "repository",
            format!(
                "`{}` carries a tag: give it as `tag`",
                short(&body.repository)
            ),
        ));
    }
    let cx = context(&user);
    let container = ContainerRef::new(RuntimeKind::Docker, id);
    let id = state
        .runtime
        .images
        .image_commit(
            &cx,
            CommitImage {
                container,
                repository: body.repository.clone(),
                tag: tag.clone(),
                author: body.author.unwrap_or_default(),
                message: body.message.unwrap_or_default(),
            },
        )
        .await
        .map_err(|e| match e {
            RtError::NotFound(m) => AppError::not_found("unknown_container", m),
            other => image_error(other),
        })?;
    tracing::info!(user = %user.0.username, image = %format!("{}:{tag}", body.repository), "container committed");
    Ok(Json(json!({ "image_id": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_at_the_tag() {
        assert_eq!(split_tag("busybox:latest"), ("busybox", "latest"));
        assert_eq!(
            split_tag("127.0.0.1:5000/stevedore/x:1.0"),
            ("127.0.0.1:5000/stevedore/x", "1.0")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x", "latest")
        );
    }

    #[test]
    fn references_are_checked_naming_the_field() {
        assert_eq!(
            image_reference(RuntimeKind::Docker, "busybox", "1").unwrap(),
            "busybox:1"
        );
        assert_eq!(
            image_reference(RuntimeKind::Docker, "127.0.0.1:5000/a/b", "").unwrap(),
            "127.0.0.1:5000/a/b:latest"
        );
        for (name, tag, field) in [
            ("Busy Box", "1", "name: "),
            ("busybox:1", "1", "name: "),
            ("busybox", "-x", "tag: "),
            ("busybox", "a/b", "tag: "),
        ] {
            let e = image_reference(RuntimeKind::Docker, name, tag).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.starts_with(field), "{}", e.message);
        }
        assert!(image_reference(RuntimeKind::Lxc, "ubuntu-trusty", "latest").is_ok());
        assert!(image_reference(RuntimeKind::Lxc, "../x", "latest").is_err());
    }

    #[test]
    fn the_document_names_the_query_fields_as_sent() {
        let doc = serde_json::to_value(doc()).unwrap();
        let params: Vec<&str> = doc["paths"]["/image"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(params, ["category", "filter_text", "type", "registry_name"]);
        for path in [
            "/image/{type}/{name}/{tag}/inspect",
            "/image/{name}/tags",
            "/image/{repository}/{type}/{name}",
            "/image/{repository}/{type}/{name}/{tag}",
            "/container/docker/{id}/commit",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
    }

    #[test]
    fn categories() {
        assert_eq!(Category::parse(None).unwrap(), Category::All);
        assert_eq!(Category::parse(Some("local")).unwrap(), Category::Local);
        let e = Category::parse(Some("kvm")).unwrap_err();
        assert!(e.message.starts_with("category: "), "{}", e.message);
    }

    #[test]
    fn commit_bodies() {
        let b = commit_body(br#"{"repository":"aaa","tag":"v1","author":"jj","message":"hi"}"#)
            .unwrap();
        assert_eq!(b.repository, "aaa");
        assert_eq!(b.tag.as_deref(), Some("v1"));
        assert_eq!(b.message.as_deref(), Some("hi"));
        let b = commit_body(br#"{"repository":"aaa","comment":"c"}"#).unwrap();
        assert_eq!(b.message.as_deref(), Some("c"));
        for (body, start) in [
            (&br#"{"tag":"v1"}"#[..], "repository: "),
            (br#"{"repository":1}"#, "repository: "),
            (br#"{"repository":"a","author":[]}"#, "author: "),
        ] {
            let e = commit_body(body).unwrap_err();
            assert!(e.message.starts_with(start), "{}", e.message);
        }
        assert_eq!(commit_body(b"[1]").unwrap_err().reason, "wrong_type");
        assert_eq!(commit_body(b"{").unwrap_err().reason, "invalid_json");
    }

    #[test]
    fn registry_entries_say_what_is_local() {
        let e = Endpoint::at("local", "http://127.0.0.1:5000", None);
        let found = vec![search::Found {
            repository: "stevedore/x".into(),
            tags: vec!["1".into(), "2".into()],
        }];
        let local = BTreeSet::from(["127.0.0.1:5000/stevedore/x:2".to_string()]);
        let v = registry_entries(&e, found, false, &local);
        assert_eq!(v[0]["installed"], true);
        assert_eq!(v[0]["name"], "stevedore/x");
        assert_eq!(v[0]["registry"], "local");
        assert_eq!(v[0]["location"], "127.0.0.1:5000/stevedore/x");
        let found = vec![search::Found {
            repository: "library/busybox".into(),
            tags: vec!["latest".into()],
        }];
        let local = BTreeSet::from(["docker.io/library/busybox:latest".to_string()]);
        let v = registry_entries(&e, found, true, &local);
        assert_eq!(v[0]["name"], "busybox");
        assert_eq!(v[0]["repository"], "dockerhub");
        assert_eq!(v[0]["installed"], true);
    }
}
