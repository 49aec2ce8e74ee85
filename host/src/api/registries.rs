//! The registry routes of Container Station's `image.rst`, as its recorded
//! answers show them.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET registry` | `{"privateRegistry": id, "registries": [{enableTrustCert, id, metadata, name, password, url, username, version, readOnly}]}` |
//! | `POST registry` (`{"method": "add"\|"edit", name, url, enableTrustCert, version, setToDefault, username, password, oldname}`) | the list, as `GET registry` |
//! | `DELETE registry/{name}` (or `DELETE registry` with `{"name"}` or `?name=`) | the list, as `GET registry` |
//! | `GET registry/push` | `{"registry", "username", "password", "registries": [names]}`: the default push registry and every one a push may target |
//! | `GET` / `POST registry/ping` (`{"url", "tls", "username", "password"}` or `{"name"}`, as a body or a query) | `{"auth": bool, "version": "v2"\|"", "reachable": bool}` |
//!
//! The list holds `Docker Hub` (id 1), the configuration's
//! `[registries.NAME]` (ids 2 and up, in name order) and the registries
//! added through the API (id 1000 + their store id). The first two are
//! `readOnly: true`: neither edited nor removed through the API (409
//! `read_only`). A password is never answered (`password` is always
//! `""`); an API registry's login is sealed in the store
//! ([`crate::store::registries`]), never written to the configuration.
//!
//! Who may call: an admin, every route. A non-admin may read (`GET
//! registry`, `GET registry/push`, `registry/ping` by `name`) only the
//! registries their policy's `registries` key lists by name (`dockerhub`
//! stands for Docker Hub); without such a list, or for any change, 403
//! `admin_only`. Pinging an arbitrary URL is an admin's.
//!
//! A registry added here is usable at once by name wherever a configured
//! one is (`"repository": "private", "registry_name": NAME` of pulls,
//! creates and pushes), with its login ([`RegistryServices::sync_runtime`]);
//! a configured registry of the same name cannot exist (409 `read_only`).
//! A policy's `registries` list is checked against an API registry's name
//! when the request names it; the guard's host-to-name map for pushes by
//! address holds the configuration's registries only.
//!
//! `enableTrustCert` is kept and used by `registry/ping`; whether the
//! engine itself trusts a registry's certificate or talks plain HTTP to it
//! stays the engine's setting (`insecure-registries` in its `daemon.json`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{body_error, AppError, AppState};
use crate::runtime::catalog::{Catalog, CatalogSwitch};
use crate::runtime::docker::{AddedRegistries, Registry};
use crate::store::credentials::RegistryLogin;
use crate::store::registries::{Edited, NewRegistry, Registries, StoredRegistry};

/// The name Container Station gives Docker Hub.
pub const DOCKER_HUB: &str = "Docker Hub";
/// Docker Hub's address, as recorded.
const DOCKER_HUB_URL: &str = "https://registry.hub.docker.com";
/// Ids of the API's registries start above this one (the read-only ones
/// are numbered below it).
const STORED_ID_BASE: i64 = 1000;
/// The stored preference naming the default registry.
const DEFAULT_PREFERENCE: &str = "registry.default";
/// How long a ping may take in all.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a ping's connection may take to open.
const PING_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A `[registries.NAME]` of the configuration, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredRegistry {
    /// The name.
    pub name: String,
    /// The address.
    pub url: String,
    /// The login's user name, if any.
    pub username: Option<String>,
}

/// What the registry and preference routes reach ([`super::Services`]).
pub struct RegistryServices {
    /// The API's registries and preferences.
    pub store: Arc<dyn Registries>,
    /// The configuration's `[registries]`, read-only.
    pub configured: Vec<ConfiguredRegistry>,
    /// `[repositories] dockerhub` (a mirror), if set.
    pub dockerhub: Option<String>,
    /// The application and image repository in use.
    pub catalog: CatalogSwitch,
    /// `[catalog] url`, the repository when none is stored.
    pub default_catalog: Option<String>,
    /// The API's registries as the Docker runtime uses them for pulls and pushes.
    pub added: AddedRegistries,
    /// The repository URL last applied to [`Self::catalog`] (`None`: the default).
    applied: parking_lot::Mutex<Option<String>>,
}

impl RegistryServices {
    /// The services over `store`, with the configuration's registries and
    /// repository. Call [`RegistryServices::apply_repo`] to use a stored repository.
    pub fn new(
        store: Arc<dyn Registries>,
        configured: Vec<ConfiguredRegistry>,
        dockerhub: Option<String>,
        catalog: CatalogSwitch,
        default_catalog: Option<String>,
        added: AddedRegistries,
    ) -> RegistryServices {
        RegistryServices {
            store,
            configured,
            dockerhub,
            catalog,
            default_catalog,
            added,
            applied: parking_lot::Mutex::new(None),
        }
    }

    /// Hand the stored registries (with their logins) to the Docker
    /// runtime, so pulls and pushes naming them reach them.
    pub async fn sync_runtime(&self) -> anyhow::Result<()> {
        let all = self
            .store
            .list()
            .await?
            .into_iter()
            .map(|s| {
                let r = s.registry;
                let registry = Registry {
                    url: r.url,
                    username: r.login.as_ref().map(|l| l.username.clone()),
                    password: r.login.map(|l| l.password),
                };
                (r.name, registry)
            })
            .collect();
        self.added.set(all);
        Ok(())
    }

    /// Use the stored repository URL (or the configured one when none is
    /// stored) if it changed since the last call: another node may have
    /// set it.
    pub async fn apply_repo(&self) -> anyhow::Result<()> {
        let stored = self.store.preference(super::preferences::REPO).await?;
        self.use_repo(stored);
        Ok(())
    }

    /// Use the repository at `stored` (`None`: the configured one).
    pub(super) fn use_repo(&self, stored: Option<String>) {
        let mut applied = self.applied.lock();
        if *applied == stored {
            return;
        }
        let url = stored.as_deref().or(self.default_catalog.as_deref());
        match url.map(Catalog::new).transpose() {
            Ok(catalog) => self.catalog.set(catalog),
            Err(e) => tracing::warn!("catalog: {e}; the repository is unchanged"),
        }
        *applied = stored;
    }
}

/// A registry usable for pulls, pushes and searches: the configuration's
/// and the API's (Docker Hub is not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsableRegistry {
    /// The name.
    pub name: String,
    /// The address.
    pub url: String,
    /// Trust a self-signed certificate.
    pub insecure: bool,
    /// The login, when the API's registry has one (the configuration's are
    /// the runtime's own).
    pub login: Option<RegistryLogin>,
}

/// Every registry of the configuration and the API, for callers beyond
/// these routes (the images' registry search).
pub async fn all_registries(state: &AppState) -> Result<Vec<UsableRegistry>, AppError> {
    let r = &state.registries;
    let mut out: Vec<UsableRegistry> = r
        .configured
        .iter()
        .map(|c| UsableRegistry {
            name: c.name.clone(),
            url: c.url.clone(),
            insecure: false,
            login: None,
        })
        .collect();
    for s in r.store.list().await.map_err(AppError::internal)? {
        out.push(UsableRegistry {
            name: s.registry.name,
            url: s.registry.url,
            insecure: s.registry.trust_cert,
            login: s.registry.login,
        });
    }
    Ok(out)
}

/// One registry as listed.
struct Listed {
    id: i64,
    name: String,
    url: String,
    trust_cert: bool,
    username: String,
    version: String,
    read_only: bool,
    sealed_login: bool,
}

impl Listed {
    fn json(&self) -> Value {
        json!({
            "enableTrustCert": self.trust_cert,
            "id": self.id,
            "metadata": if self.sealed_login { json!({"crypt": true}) } else { json!("") },
            "name": self.name,
            "password": "",
            "url": self.url,
            "username": self.username,
            "version": self.version,
            "readOnly": self.read_only,
        })
    }
}

/// Docker Hub, the configuration's and the API's registries, in id order.
async fn everything(state: &AppState) -> Result<Vec<Listed>, AppError> {
    let r = &state.registries;
    let hub_url = r
        .dockerhub
        .as_deref()
        .and_then(|d| {
            r.configured
                .iter()
                .find(|c| c.name == d)
                .map(|c| c.url.clone())
                .or_else(|| Some(d.to_string()))
        })
        .unwrap_or_else(|| DOCKER_HUB_URL.to_string());
    let mut out = vec![Listed {
        id: 1,
        name: DOCKER_HUB.into(),
        url: hub_url,
        trust_cert: true,
        username: String::new(),
        version: String::new(),
        read_only: true,
        sealed_login: false,
    }];
    for (i, c) in r.configured.iter().enumerate() {
        out.push(Listed {
            id: 2 + i as i64,
            name: c.name.clone(),
            url: c.url.clone(),
            trust_cert: false,
            username: c.username.clone().unwrap_or_default(),
            version: "v2".into(),
            read_only: true,
            sealed_login: false,
        });
    }
    for s in r.store.list().await.map_err(AppError::internal)? {
        out.push(stored(&s));
    }
    Ok(out)
}

fn stored(s: &StoredRegistry) -> Listed {
    Listed {
        id: STORED_ID_BASE + s.id,
        name: s.registry.name.clone(),
        url: s.registry.url.clone(),
        trust_cert: s.registry.trust_cert,
        username: s
            .registry
            .login
            .as_ref()
            .map(|l| l.username.clone())
            .unwrap_or_default(),
        version: s.registry.version.clone(),
        read_only: false,
        sealed_login: s.registry.login.is_some(),
    }
}

/// The policy name of a listed registry (`dockerhub` for Docker Hub).
fn policy_name(name: &str) -> &str {
    if name == DOCKER_HUB {
        "dockerhub"
    } else {
        name
    }
}

fn admin_only(what: &str) -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "admin_only",
        format!("{what} is for admins (or, to read, users whose policy lists registries by name)"),
    )
}

fn require_admin(user: &CurrentUser, what: &str) -> Result<(), AppError> {
    if user.0.is_admin {
        Ok(())
    } else {
        Err(admin_only(what))
    }
}

/// Which registries `user` may read: all for an admin, the ones their
/// policy lists for another user; refused when the policy lists none.
fn readable(
    state: &AppState,
    user: &CurrentUser,
    what: &str,
) -> Result<Option<std::collections::BTreeSet<String>>, AppError> {
    if user.0.is_admin {
        return Ok(None);
    }
    match state.policies.of(&user.0.username).registries.clone() {
        Some(names) => Ok(Some(names)),
        None => Err(admin_only(what)),
    }
}

/// The list answer, for `user`.
async fn list_answer(
    state: &AppState,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<Value, AppError> {
    let all = everything(state).await?;
    let default = state
        .registries
        .store
        .preference(DEFAULT_PREFERENCE)
        .await
        .map_err(AppError::internal)?;
    let default_id = default
        .and_then(|d| all.iter().find(|l| l.name == d).map(|l| l.id))
        .unwrap_or(1);
    let shown: Vec<Value> = all
        .iter()
        .filter(|l| only.is_none_or(|names| names.contains(policy_name(&l.name))))
        .map(Listed::json)
        .collect();
    Ok(json!({"privateRegistry": default_id, "registries": shown}))
}

/// `GET registry`: every registry the caller may read.
#[utoipa::path(get, path = "/registry", tag = "registries",
    summary = "The registries: Docker Hub, the configuration's (read-only) and the ones added through the API",
    responses(
        (status = 200, description = "`{privateRegistry, registries: [...]}`; passwords are always `\"\"`", body = Object),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin and no registries in the caller's policy", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, AppError> {
    let only = readable(&state, &user, "listing registries")?;
    Ok(Json(list_answer(&state, only.as_ref()).await?))
}

/// The body of `POST registry`.
#[derive(Debug)]
struct AddOrEdit {
    edit: bool,
    old_name: Option<String>,
    registry: NewRegistry,
    set_default: bool,
    /// Edit without a password: keep the stored one.
    keep_password: bool,
}

fn field_error(field: &str, what: &str) -> AppError {
    AppError::bad_request("invalid_params", format!("{field}: {what}"))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, AppError> {
    match super::tasks::parse_params(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(AppError::bad_request(
            "wrong_type",
            "request body: expected a JSON object",
        )),
    }
}

fn opt_string(m: &Map<String, Value>, field: &str) -> Result<Option<String>, AppError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_error(field, "must be a string")),
    }
}

fn opt_bool(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, AppError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(field_error(field, "must be true or false")),
    }
}

/// A registry name: 1 to 64 letters, digits, spaces, `_`, `.` or `-`, not
/// starting or ending with a space.
fn check_name(field: &str, name: &str) -> Result<(), AppError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | '-'))
        && !name.starts_with(' ')
        && !name.ends_with(' ');
    if ok {
        Ok(())
    } else {
        Err(field_error(
            field,
            "must be 1 to 64 letters, digits, spaces, `_`, `.` or `-`",
        ))
    }
}

/// A registry address: `http(s)://host[:port][/path]` or `host[:port]`;
/// answered without a trailing `/`.
fn check_url(field: &str, url: &str) -> Result<String, AppError> {
    let url = url.trim().trim_end_matches('/');
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    match reqwest::Url::parse(&with_scheme) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && url.len() <= 512 =>
        {
            Ok(url.to_string())
        }
        _ => Err(field_error(
            field,
            "must be an http:// or https:// address, or host[:port], without a login in it",
        )),
    }
}

fn parse_add_or_edit(body: &[u8]) -> Result<AddOrEdit, AppError> {
    let m = parse_object(body)?;
    let edit = match opt_string(&m, "method")?.as_deref() {
        Some("add") => false,
        Some("edit") => true,
        Some(_) => return Err(field_error("method", "must be `add` or `edit`")),
        None => return Err(field_error("method", "is required (`add` or `edit`)")),
    };
    let name = opt_string(&m, "name")?.ok_or_else(|| field_error("name", "is required"))?;
    check_name("name", &name)?;
    let url = opt_string(&m, "url")?.ok_or_else(|| field_error("url", "is required"))?;
    let url = check_url("url", &url)?;
    let trust_cert = opt_bool(&m, "enableTrustCert")?.unwrap_or(false);
    let version = match opt_string(&m, "version")?.as_deref() {
        None | Some("") => "v2".to_string(),
        Some(v @ ("v1" | "v2")) => v.to_string(),
        Some(_) => return Err(field_error("version", "must be `v1` or `v2`")),
    };
    let set_default = opt_bool(&m, "setToDefault")?.unwrap_or(false);
    let username = opt_string(&m, "username")?.filter(|u| !u.is_empty());
    let password = opt_string(&m, "password")?.filter(|p| !p.is_empty());
    if let Some(u) = &username {
        if u.len() > 256 || u.chars().any(char::is_control) {
            return Err(field_error(
                "username",
                "must be at most 256 printable characters",
            ));
        }
    }
    if password.as_ref().is_some_and(|p| p.len() > 4096) {
        return Err(field_error("password", "must be at most 4096 bytes"));
    }
    let old_name = opt_string(&m, "oldname")?;
    if edit {
        match &old_name {
            Some(o) => check_name("oldname", o)?,
            None => return Err(field_error("oldname", "is required to edit a registry")),
        }
    }
    let keep_password = edit && username.is_some() && password.is_none();
    let login = match (username, password) {
        (Some(username), password) => Some(RegistryLogin {
            username,
            password: password.unwrap_or_default(),
        }),
        (None, Some(_)) => return Err(field_error("username", "is required with a password")),
        (None, None) => None,
    };
    Ok(AddOrEdit {
        edit,
        old_name,
        registry: NewRegistry {
            name,
            url,
            trust_cert,
            version,
            login,
        },
        set_default,
        keep_password,
    })
}

/// 409 `read_only` when `name` is Docker Hub or a configuration registry.
fn refuse_read_only(state: &AppState, field: &str, name: &str) -> Result<(), AppError> {
    if name == DOCKER_HUB || state.registries.configured.iter().any(|c| c.name == name) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "read_only",
            format!(
                "{field}: registry `{name}` comes from the configuration file; it is read-only through the API"
            ),
        ));
    }
    Ok(())
}

/// `POST registry`: add or edit a registry of the API.
#[utoipa::path(post, path = "/registry", tag = "registries",
    summary = "Add or edit a registry (`method`: `add` or `edit`)",
    request_body(content = Object, content_type = "application/json",
        description = "`{method, name, url, enableTrustCert, version, setToDefault, username, password, oldname}`"),
    responses(
        (status = 200, description = "The list, as `GET registry`", body = Object),
        (status = 400, description = "A bad field; the message names it", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 404, description = "Edit: no registry named `oldname`", body = super::error::ErrorBody),
        (status = 409, description = "The name is taken, or the registry is read-only", body = super::error::ErrorBody),
    ))]
pub async fn add(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    require_admin(&user, "adding or editing a registry")?;
    let body = body.map_err(body_error)?;
    let mut req = parse_add_or_edit(&body)?;
    let store = &state.registries.store;
    refuse_read_only(&state, "name", &req.registry.name)?;
    let taken = || {
        AppError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("name: a registry named `{}` exists", req.registry.name),
        )
    };
    if req.edit {
        let old = req.old_name.clone().unwrap_or_default();
        refuse_read_only(&state, "oldname", &old)?;
        if req.keep_password {
            let before = store.list().await.map_err(AppError::internal)?;
            let kept = before
                .into_iter()
                .find(|s| s.registry.name == old)
                .and_then(|s| s.registry.login)
                .map(|l| l.password)
                .unwrap_or_default();
            if let Some(l) = req.registry.login.as_mut() {
                l.password = kept;
            }
        }
        match store
            .edit(&old, &req.registry)
            .await
            .map_err(AppError::internal)?
        {
            Edited::Done(_) => {}
            Edited::Missing => {
                return Err(AppError::not_found(
                    "unknown_registry",
                    format!("oldname: no registry named `{old}` was added through the API"),
                ))
            }
            Edited::Taken => return Err(taken()),
        }
        let default = store
            .preference(DEFAULT_PREFERENCE)
            .await
            .map_err(AppError::internal)?;
        if default.as_deref() == Some(old.as_str()) && !req.set_default {
            store
                .set_preference(DEFAULT_PREFERENCE, Some(&req.registry.name))
                .await
                .map_err(AppError::internal)?;
        }
    } else if store
        .add(&req.registry)
        .await
        .map_err(AppError::internal)?
        .is_none()
    {
        return Err(taken());
    }
    if req.set_default {
        store
            .set_preference(DEFAULT_PREFERENCE, Some(&req.registry.name))
            .await
            .map_err(AppError::internal)?;
    }
    state
        .registries
        .sync_runtime()
        .await
        .map_err(AppError::internal)?;
    tracing::info!(user = %user.0.username, registry = %req.registry.name, edit = req.edit, "registry saved");
    Ok(Json(list_answer(&state, None).await?))
}

/// `?name=` or `{"name"}` of `DELETE registry`.
#[derive(Debug, Default, Deserialize)]
pub struct NameQuery {
    /// The registry's name.
    pub name: Option<String>,
}

/// `DELETE registry/{name}`: remove a registry of the API.
#[utoipa::path(delete, path = "/registry/{name}", tag = "registries",
    summary = "Remove a registry added through the API",
    params(("name" = String, Path, description = "The registry's name")),
    responses(
        (status = 200, description = "The list, as `GET registry`", body = Object),
        (status = 400, description = "A bad name", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 404, description = "No such registry", body = super::error::ErrorBody),
        (status = 409, description = "A read-only registry (Docker Hub, the configuration's)", body = super::error::ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    remove_named(&state, &user, name).await
}

/// `DELETE registry` with the name in the query (`?name=`) or the body (`{"name"}`).
#[utoipa::path(delete, path = "/registry", tag = "registries",
    summary = "Remove a registry added through the API, named by `?name=` or `{\"name\"}`",
    params(("name" = Option<String>, Query, description = "The registry's name")),
    responses(
        (status = 200, description = "The list, as `GET registry`", body = Object),
        (status = 400, description = "No or a bad name", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 404, description = "No such registry", body = super::error::ErrorBody),
        (status = 409, description = "A read-only registry", body = super::error::ErrorBody),
    ))]
pub async fn remove_by_query(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(q)): Api<Query<NameQuery>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = body.map_err(body_error)?;
    let name = match q.name {
        Some(n) => n,
        None if body.iter().all(u8::is_ascii_whitespace) => {
            return Err(field_error(
                "name",
                "is required (`?name=` or `{\"name\": ...}`)",
            ))
        }
        None => opt_string(&parse_object(&body)?, "name")?
            .ok_or_else(|| field_error("name", "is required"))?,
    };
    remove_named(&state, &user, name).await
}

async fn remove_named(
    state: &AppState,
    user: &CurrentUser,
    name: String,
) -> Result<Json<Value>, AppError> {
    require_admin(user, "removing a registry")?;
    check_name("name", &name)?;
    refuse_read_only(state, "name", &name)?;
    let store = &state.registries.store;
    if !store.remove(&name).await.map_err(AppError::internal)? {
        return Err(AppError::not_found(
            "unknown_registry",
            format!("name: no registry named `{name}`"),
        ));
    }
    let default = store
        .preference(DEFAULT_PREFERENCE)
        .await
        .map_err(AppError::internal)?;
    if default.as_deref() == Some(name.as_str()) {
        store
            .set_preference(DEFAULT_PREFERENCE, None)
            .await
            .map_err(AppError::internal)?;
    }
    state
        .registries
        .sync_runtime()
        .await
        .map_err(AppError::internal)?;
    tracing::info!(user = %user.0.username, registry = %name, "registry removed");
    Ok(Json(list_answer(state, None).await?))
}

/// `GET registry/push`: the default push registry and the ones a push may target.
#[utoipa::path(get, path = "/registry/push", tag = "registries",
    summary = "The default push registry, and every registry the caller may push to",
    responses(
        (status = 200, description = "`{registry, username, password (always \"\"), registries: [names]}`", body = Object),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin and no registries in the caller's policy", body = super::error::ErrorBody),
    ))]
pub async fn push(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, AppError> {
    let only = readable(&state, &user, "reading the push registries")?;
    let all: Vec<Listed> = everything(&state)
        .await?
        .into_iter()
        .filter(|l| {
            only.as_ref()
                .is_none_or(|names| names.contains(policy_name(&l.name)))
        })
        .collect();
    let default = state
        .registries
        .store
        .preference(DEFAULT_PREFERENCE)
        .await
        .map_err(AppError::internal)?
        .and_then(|d| all.iter().find(|l| l.name == d));
    Ok(Json(json!({
        "registry": default.map(|l| l.name.clone()).unwrap_or_default(),
        "username": default.map(|l| l.username.clone()).unwrap_or_default(),
        "password": "",
        "registries": all.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
    })))
}

/// What `registry/ping` reaches, from its body or query.
#[derive(Debug, Default, Deserialize)]
pub struct PingQuery {
    /// The registry's address.
    pub url: Option<String>,
    /// Trust a self-signed certificate.
    pub tls: Option<bool>,
    /// A registry by name instead of `url` (with its stored login).
    pub name: Option<String>,
    /// Login user name.
    pub username: Option<String>,
    /// Login password.
    pub password: Option<String>,
}

fn parse_ping(query: PingQuery, body: &[u8]) -> Result<PingQuery, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(query);
    }
    let m = parse_object(body)?;
    let tls = match m.get("tls") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Some(s == "true"),
        Some(_) => return Err(field_error("tls", "must be true or false")),
    };
    Ok(PingQuery {
        url: opt_string(&m, "url")?,
        tls,
        name: opt_string(&m, "name")?,
        username: opt_string(&m, "username")?,
        password: opt_string(&m, "password")?,
    })
}

/// `GET registry/ping` (`POST` too, as the recorded example sends it):
/// whether a registry's `/v2/` answers.
#[utoipa::path(get, path = "/registry/ping", tag = "registries",
    summary = "Whether a registry answers at `/v2/` (a few seconds at most)",
    params(
        ("url" = Option<String>, Query, description = "The registry's address (admins)"),
        ("tls" = Option<bool>, Query, description = "Trust a self-signed certificate"),
        ("name" = Option<String>, Query, description = "A listed registry instead of `url`"),
    ),
    responses(
        (status = 200, description = "`{auth, version: \"v2\"|\"\", reachable}`", body = Object),
        (status = 400, description = "No or a bad `url`/`name`", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin (a URL), or a registry the policy does not list", body = super::error::ErrorBody),
        (status = 404, description = "No registry of that name", body = super::error::ErrorBody),
    ))]
pub async fn ping(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(query)): Api<Query<PingQuery>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = body.map_err(body_error)?;
    let req = parse_ping(query, &body)?;
    let (url, trust, login) = match (&req.name, &req.url) {
        (Some(name), _) => {
            let only = readable(&state, &user, "pinging a registry")?;
            check_name("name", name)?;
            if only
                .as_ref()
                .is_some_and(|n| !n.contains(policy_name(name)))
            {
                return Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    "not_yours",
                    format!("name: registry `{name}` is not in your policy's registries"),
                ));
            }
            let found = everything(&state)
                .await?
                .into_iter()
                .find(|l| &l.name == name);
            let Some(found) = found else {
                return Err(AppError::not_found(
                    "unknown_registry",
                    format!("name: no registry named `{name}`"),
                ));
            };
            let login = if found.read_only {
                None
            } else {
                all_registries(&state)
                    .await?
                    .into_iter()
                    .find(|r| &r.name == name)
                    .and_then(|r| r.login)
            };
            (found.url, req.tls.unwrap_or(found.trust_cert), login)
        }
        (None, Some(url)) => {
            require_admin(&user, "pinging a registry by URL")?;
            let url = check_url("url", url)?;
            let login = match (&req.username, &req.password) {
                (Some(u), p) if !u.is_empty() => Some(RegistryLogin {
                    username: u.clone(),
                    password: p.clone().unwrap_or_default(),
                }),
                _ => None,
            };
            (url, req.tls.unwrap_or(false), login)
        }
        (None, None) => return Err(field_error("url", "is required (or `name`)")),
    };
    Ok(Json(ping_registry(&url, trust, login.as_ref()).await))
}

/// `POST registry/ping`: [`ping`], as the recorded example sends it.
#[utoipa::path(post, path = "/registry/ping", tag = "registries",
    summary = "Whether a registry answers at `/v2/` (the recorded example's method)",
    request_body(content = Object, content_type = "application/json",
        description = "`{url, tls, username, password}` (admins) or `{name}`"),
    responses(
        (status = 200, description = "`{auth, version: \"v2\"|\"\", reachable}`", body = Object),
        (status = 400, description = "No or a bad `url`/`name`", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin (a URL), or a registry the policy does not list", body = super::error::ErrorBody),
        (status = 404, description = "No registry of that name", body = super::error::ErrorBody),
    ))]
pub async fn ping_post(
    state: State<AppState>,
    user: CurrentUser,
    query: Api<Query<PingQuery>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    ping(state, user, query, body).await
}

/// Reach `url`'s `/v2/` (`https://` first when no scheme is given, then
/// `http://`), with `login` if the registry asks for Basic auth.
async fn ping_registry(url: &str, trust: bool, login: Option<&RegistryLogin>) -> Value {
    let candidates: Vec<String> = if url.contains("://") {
        vec![url.to_string()]
    } else {
        vec![format!("https://{url}"), format!("http://{url}")]
    };
    let client = match reqwest::Client::builder()
        .user_agent(concat!("stevedore/", env!("CARGO_PKG_VERSION")))
        .timeout(PING_TIMEOUT)
        .connect_timeout(PING_CONNECT_TIMEOUT)
        .danger_accept_invalid_certs(trust)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("registry ping: {e}");
            return json!({"auth": false, "version": "", "reachable": false});
        }
    };
    for base in candidates {
        let v2 = format!("{}/v2/", base.trim_end_matches('/'));
        let Ok(answer) = client.get(&v2).send().await else {
            continue;
        };
        let status = answer.status();
        let is_v2 = answer
            .headers()
            .contains_key("docker-distribution-api-version")
            || status == reqwest::StatusCode::OK
            || status == reqwest::StatusCode::UNAUTHORIZED;
        let basic = answer
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("basic"));
        let auth = if status == reqwest::StatusCode::OK {
            true
        } else if let (reqwest::StatusCode::UNAUTHORIZED, true, Some(l)) = (status, basic, login) {
            client
                .get(&v2)
                .basic_auth(&l.username, Some(&l.password))
                .send()
                .await
                .is_ok_and(|a| a.status() == reqwest::StatusCode::OK)
        } else {
            false
        };
        return json!({
            "auth": auth,
            "version": if is_v2 { "v2" } else { "" },
            "reachable": true,
        });
    }
    json!({"auth": false, "version": "", "reachable": false})
}

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    let mut all = Vec::new();
    for path in ["/registry", "/registry/"] {
        all.push(entry(M::GET, path, S, list));
        all.push(entry(M::POST, path, S, add));
        all.push(entry(M::DELETE, path, S, remove_by_query));
    }
    all.extend([
        entry(M::GET, "/registry/push", S, push),
        entry(M::GET, "/registry/ping", S, ping),
        entry(M::POST, "/registry/ping", S, ping_post),
        entry(M::DELETE, "/registry/{name}", S, remove),
    ]);
    all
}

/// The OpenAPI document of this area.
#[derive(OpenApi)]
#[openapi(
    paths(list, add, remove, remove_by_query, push, ping, ping_post),
    tags((name = "registries", description = "Container registries: Docker Hub, the configuration's (read-only) and the ones added through the API")),
)]
pub(super) struct Doc;

/// [`Doc`]'s document.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_checked_field_by_field() {
        let bad = |body: &str| parse_add_or_edit(body.as_bytes()).unwrap_err().message;
        assert!(bad(r#"{"name":"a","url":"http://r"}"#).starts_with("method:"));
        assert!(bad(r#"{"method":"x","name":"a","url":"http://r"}"#).starts_with("method:"));
        assert!(bad(r#"{"method":"add","url":"http://r"}"#).starts_with("name:"));
        assert!(bad(r#"{"method":"add","name":"a/b","url":"http://r"}"#).starts_with("name:"));
        assert!(bad(r#"{"method":"add","name":"a"}"#).starts_with("url:"));
        assert!(bad(r#"{"method":"add","name":"a","url":"ftp://r"}"#).starts_with("url:"));
        assert!(bad(r#"{"method":"add","name":"a","url":"http://u:p@r"}"#).starts_with("url:"));
        assert!(
            bad(r#"{"method":"add","name":"a","url":"r:5000","enableTrustCert":"yes"}"#)
                .starts_with("enableTrustCert:")
        );
        assert!(
            bad(r#"{"method":"add","name":"a","url":"r","version":"v9"}"#).starts_with("version:")
        );
        assert!(
            bad(r#"{"method":"add","name":"a","url":"r","password":"p"}"#).starts_with("username:")
        );
        assert!(bad(r#"{"method":"edit","name":"a","url":"r"}"#).starts_with("oldname:"));
        let ok = parse_add_or_edit(
            br#"{"method":"add","name":"my reg","url":"http://r:5000/","username":"u","password":"p","setToDefault":true}"#,
        )
        .unwrap();
        assert_eq!(ok.registry.url, "http://r:5000");
        assert_eq!(ok.registry.version, "v2");
        assert!(ok.set_default && !ok.edit);
        assert_eq!(ok.registry.login.unwrap().password, "p");
    }

    #[test]
    fn a_listed_registry_never_shows_its_password() {
        let s = StoredRegistry {
            id: 3,
            registry: NewRegistry {
                name: "lab".into(),
                url: "http://r".into(),
                trust_cert: true,
                version: "v2".into(),
                login: Some(RegistryLogin {
                    username: "u".into(),
                    password: "secret-pw".into(),
                }),
            },
        };
        let v = stored(&s).json();
        assert_eq!(v["password"], "");
        assert_eq!(v["id"], 1003);
        assert_eq!(v["metadata"], json!({"crypt": true}));
        assert!(!v.to_string().contains("secret-pw"));
    }
}
