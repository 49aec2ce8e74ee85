//! `catalog...`: the application repository's `list.json` as the
//! dashboard's app store shows it, and its icons served from our origin
//! (Stevedore's own routes: Container Station has none such).
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET catalog` (`?type=app\|docker\|lxc`, `q=` up to 100 characters) | `{entries: [{name, displayName, version, type, description, icon, installed}], errors: [...]}`: this host's architecture's entries in `list.json` order; `icon` is `/api/v1/catalog/icon/<key>` or `null`; `installed` (`app` entries only) names the caller's applications installed from that template. No repository, or one that cannot be read: `entries` empty and one entry in `errors` (`{error: {code, message, reason}}`, reason `no_repository` or `repository_error`) |
//! | `GET catalog/icon/{key}` | the icon of a listed entry, fetched by the server (PNG, JPEG, GIF, WebP or ICO, told by their magic bytes), `Cache-Control: private, max-age=3600`; an unknown key or a failed fetch: our placeholder SVG with `X-Stevedore-Icon: placeholder` (200) |
//!
//! `q` matches, case-insensitively, a substring of the name, `displayName`
//! or description. The icons are cached by the repository
//! ([`crate::runtime::icons`]): the key is derived from the icon's resolved
//! URL, so a client can only have the server fetch what `list.json` lists.
//! Errors: 400 `invalid_params` (`type`, `q`).

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::containers::context;
use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::runtime::catalog::{Catalog, CatalogError};
use crate::runtime::icons;

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    vec![
        entry(M::GET, "/catalog", S, list),
        entry(M::GET, "/catalog/", S, list),
        entry(M::GET, "/catalog/icon/{key}", S, icon),
    ]
}

/// The OpenAPI document of this area.
#[derive(OpenApi)]
#[openapi(
    paths(list, icon),
    components(schemas(CatalogList, CatalogEntry)),
    tags((name = "catalog", description = "The application repository as an app store: entries and icons"))
)]
pub(super) struct Doc;

/// This area's document.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The longest `q` accepted, in characters.
const QUERY_MAX: usize = 100;

/// Where an icon is served, before its key.
const ICON_PATH: &str = "/api/v1/catalog/icon/";

/// `?type=` and `?q=` of `GET catalog`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogQuery {
    /// Only entries of this type: `app`, `docker` or `lxc`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Only entries whose name, `displayName` or description holds this
    /// text, case-insensitively (at most 100 characters).
    #[serde(default)]
    pub q: Option<String>,
}

/// What `GET catalog` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogList {
    /// This host's architecture's entries, in `list.json` order.
    pub entries: Vec<CatalogEntry>,
    /// Why the list is empty when the repository is missing or unreadable:
    /// `{error: {code, message, reason}}`, reason `no_repository` or
    /// `repository_error`.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<serde_json::Value>,
}

/// One entry of `list.json`, as the store's card shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogEntry {
    /// `name`: the template (`app`), image (`docker`) or LXC image name.
    pub name: String,
    /// `displayName`, else the name.
    #[serde(rename = "displayName")]
    pub display_name: String,
    /// `version`, if given.
    pub version: Option<String>,
    /// `app`, `docker` or `lxc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `description`, if given.
    pub description: Option<String>,
    /// Where the server serves its icon (`/api/v1/catalog/icon/<key>`), or
    /// `null` when the entry names none.
    pub icon: Option<String>,
    /// `app` entries only: the caller's applications installed from this
    /// template, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<Vec<String>>,
}

/// `list.json`'s error, for the answer: what went wrong, without the
/// repository's URL (a configured one may hold a login).
fn repository_message(e: &CatalogError) -> String {
    match e {
        CatalogError::Fetch { source, .. } => {
            format!("list.json: {}", source_text(source))
        }
        CatalogError::Status { status, .. } => format!("list.json: HTTP {status}"),
        CatalogError::Read { source, .. } => format!("list.json: {source}"),
        CatalogError::TooLarge { .. } => format!(
            "list.json: larger than {} bytes",
            crate::runtime::catalog::CACHE_FILE_MAX
        ),
        CatalogError::Parse { reason, .. } => format!("list.json: {reason}"),
        other => other.to_string(),
    }
}

/// A client error's text without its URL.
fn source_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the repository");
    }
    text
}

/// An entry of `errors`.
fn error_entry(code: u16, reason: &str, message: String) -> serde_json::Value {
    serde_json::json!({"error": {"code": code, "message": message, "reason": reason}})
}

/// Check `GET catalog`'s query; the lowercased search text, if any.
fn check_query(query: &CatalogQuery) -> Result<Option<String>, AppError> {
    if let Some(kind) = &query.kind {
        if !matches!(kind.as_str(), "app" | "docker" | "lxc") {
            return Err(AppError::bad_request(
                "invalid_params",
                "type: must be app, docker or lxc",
            ));
        }
    }
    match query.q.as_deref().map(str::trim) {
        Some(q) if q.chars().count() > QUERY_MAX => Err(AppError::bad_request(
            "invalid_params",
            format!("q: at most {QUERY_MAX} characters"),
        )),
        Some(q) if !q.is_empty() => Ok(Some(q.to_lowercase())),
        _ => Ok(None),
    }
}

/// Whether `entry` holds `q` (lowercase) in its name, `displayName` or description.
fn holds(entry: &CatalogEntry, q: &str) -> bool {
    [
        Some(&entry.name),
        Some(&entry.display_name),
        entry.description.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|text| text.to_lowercase().contains(q))
}

/// The caller's installed applications by template: those their policy
/// reaches. An application store that cannot be read lists none.
async fn installed_by_template(
    state: &AppState,
    user: &CurrentUser,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let records = match crate::apps::records(&state.runtime).await {
        Ok(records) => records,
        Err(e) => {
            tracing::debug!("catalog: no installed applications listed: {e}");
            return out;
        }
    };
    let cx = context(user);
    for (name, record) in records {
        let Ok(record) = record else { continue };
        let template = record
            .fields
            .get("template")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        if template.is_empty() || !super::apps::reaches(state, &cx, &name).await {
            continue;
        }
        out.entry(template).or_default().push(name);
    }
    out
}

/// `GET catalog`: the repository's entries for this host, filtered.
#[utoipa::path(get, path = "/catalog", tag = "catalog",
    summary = "The repository's entries for this host's architecture, as the app store lists them",
    params(CatalogQuery),
    responses(
        (status = 200, description = "`entries` in `list.json` order; with no repository, or one that cannot be read, `entries` is empty and `errors` says why (`no_repository`, `repository_error`)", body = CatalogList),
        (status = 400, description = "`type` or `q` is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    query: Result<Query<CatalogQuery>, QueryRejection>,
) -> Result<Json<CatalogList>, AppError> {
    let Query(query) = query.map_err(|e| {
        AppError::bad_request("invalid_params", format!("type, q: {}", e.body_text()))
    })?;
    let q = check_query(&query)?;
    let Some(catalog) = state.registries.catalog.current() else {
        return Ok(Json(CatalogList {
            entries: Vec::new(),
            errors: vec![error_entry(
                503,
                "no_repository",
                CatalogError::Unconfigured.to_string(),
            )],
        }));
    };
    let listed = match catalog.entries().await {
        Ok(listed) => listed,
        Err(e) => {
            return Ok(Json(CatalogList {
                entries: Vec::new(),
                errors: vec![error_entry(502, "repository_error", repository_message(&e))],
            }))
        }
    };
    let installed = installed_by_template(&state, &user).await;
    let entries = listed
        .iter()
        .filter(|e| query.kind.as_deref().is_none_or(|k| e.kind == k))
        .map(|e| card(&catalog, e, &installed))
        .filter(|card| q.as_deref().is_none_or(|q| holds(card, q)))
        .collect();
    Ok(Json(CatalogList {
        entries,
        errors: Vec::new(),
    }))
}

/// The card of `entry`.
fn card(
    catalog: &Catalog,
    entry: &crate::runtime::catalog::Entry,
    installed: &BTreeMap<String, Vec<String>>,
) -> CatalogEntry {
    let display_name = entry
        .raw
        .get("displayName")
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(&entry.name)
        .to_string();
    CatalogEntry {
        name: entry.name.clone(),
        display_name,
        version: entry.version.clone(),
        kind: entry.kind.clone(),
        description: entry.description.clone(),
        icon: catalog
            .icon_location(entry)
            .map(|l| format!("{ICON_PATH}{}", icons::key(&l))),
        installed: (entry.kind == "app")
            .then(|| installed.get(&entry.name).cloned().unwrap_or_default()),
    }
}

/// Our placeholder icon: a box, drawn here, served when there is no icon.
const PLACEHOLDER: &str = include_str!("catalog_placeholder.svg");

/// `GET catalog/icon/{key}`: a listed entry's icon, or the placeholder.
#[utoipa::path(get, path = "/catalog/icon/{key}", tag = "catalog",
    summary = "A listed entry's icon, fetched and cached by the server",
    params(("key" = String, Path, description = "The key in the entry's `icon` (16 hex digits)")),
    responses(
        (status = 200, description = "The icon (`image/png`, `image/jpeg`, `image/gif`, `image/webp` or `image/x-icon`, by its magic bytes), `Cache-Control: private, max-age=3600`. An unknown key or an icon that could not be fetched or is no accepted image: the placeholder (`image/svg+xml`, `X-Stevedore-Icon: placeholder`, `Cache-Control: private, max-age=60`)", content_type = "image/png"),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn icon(
    State(state): State<AppState>,
    _user: CurrentUser,
    Api(Path(key)): Api<Path<String>>,
) -> Response {
    let found = match state.registries.catalog.current() {
        Some(catalog) => catalog.icon(&key).await.ok(),
        None => None,
    };
    let (content_type, body, cache, kind) = match found {
        Some(icon) => (
            icon.content_type,
            axum::body::Body::from(icon.bytes),
            "private, max-age=3600",
            "fetched",
        ),
        None => (
            "image/svg+xml",
            axum::body::Body::from(PLACEHOLDER),
            "private, max-age=60",
            "placeholder",
        ),
    };
    let mut answer = body.into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-stevedore-icon", HeaderValue::from_static(kind));
    if kind == "placeholder" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        );
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, display: &str, description: Option<&str>) -> CatalogEntry {
        CatalogEntry {
            name: name.into(),
            display_name: display.into(),
            version: None,
            kind: "app".into(),
            description: description.map(Into::into),
            icon: None,
            installed: None,
        }
    }

    #[test]
    fn the_query_is_checked_and_searches_three_fields() {
        let query = |kind: Option<&str>, q: Option<&str>| CatalogQuery {
            kind: kind.map(Into::into),
            q: q.map(Into::into),
        };
        for kind in ["app", "docker", "lxc"] {
            assert!(check_query(&query(Some(kind), None)).is_ok());
        }
        let e = check_query(&query(Some("App"), None)).unwrap_err();
        assert!(e.message.starts_with("type: "), "{}", e.message);
        let e = check_query(&query(None, Some(&"x".repeat(101)))).unwrap_err();
        assert!(e.message.starts_with("q: "), "{}", e.message);
        assert_eq!(
            check_query(&query(None, Some(&"é".repeat(100)))).unwrap(),
            Some("é".repeat(100))
        );
        assert_eq!(check_query(&query(None, Some("  "))).unwrap(), None);
        let q = check_query(&query(None, Some(" NoTeS "))).unwrap().unwrap();
        assert!(holds(&entry("notes", "Notes", None), &q));
        assert!(holds(&entry("x", "My Notes", None), &q));
        assert!(holds(&entry("x", "y", Some("keeps notes")), &q));
        assert!(!holds(&entry("x", "y", Some("other")), &q));
    }

    #[test]
    fn the_placeholder_is_a_small_svg_of_our_own() {
        assert!(PLACEHOLDER.starts_with("<svg"), "{PLACEHOLDER}");
        assert!(PLACEHOLDER.len() < 2048);
        assert!(!PLACEHOLDER.contains("script") && !PLACEHOLDER.contains("href"));
    }
}
