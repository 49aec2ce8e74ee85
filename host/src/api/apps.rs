//! `apps...`: installed applications (the `application` category's work),
//! synchronous host routes over the application store and the runtime.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET apps` | `{name: {"container": ["<project>_web_1", ...], "creating": bool, "yml": true, "template", "version", "latestVersion", "updateAvailable", "proxy"}}` |
//! | `GET apps/{name}` | the record (`template`, `version`, `binding`, `createFrom: "wizard"`, `virtual_path`, `httpPort` as a string, `autostart`, times), `latestVersion`, `updateAvailable`, `proxy`, and `containers`: `[{name, id, image, state, ports: [{host, container, protocol}]}]` |
//! | `PUT apps/{name}/start` | the services started, as recorded: `["web"]` (dependency order) |
//! | `PUT apps/{name}/{stop,restart,kill}` | the containers acted on, as recorded: `["joomla_web_1"]` (stop and kill in reverse dependency order) |
//! | `DELETE apps/{name}` (`?remove_volumes=true`) | the containers removed, as recorded: `["joomla_web_1"]`; networks and the folder go too, named and anonymous volumes only when asked |
//! | `GET template/{name}/wizard?lang=eng` | the template's wizard translated: `api_version`, `title`, `description`, `default`, `wizard: [{title, schema: {type, properties}, form}]` |
//!
//! `latestVersion` is the repository's version of the application's
//! template for this host's architecture (`null` when the repository has
//! none or cannot be read); `updateAvailable` is `true` when it is newer
//! than the installed `version` ([`compare_versions`]: dotted parts
//! numerically, then as text). A container's `ports` are the host ports it
//! publishes (from the engine's inspect: the live bindings of a running
//! container, the configured ones of a stopped one). `proxy` is
//! `{port, path}` when the reverse proxy ([`crate::proxy`]) is on and serves
//! the application (it has a `virtual_path`): the page opens
//! `http://<its host>:<port><path>`; otherwise `null`.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::containers::{context, runtime_error};
use super::extract::Api;
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::apps::{self, Action, AppsError};
use crate::runtime::apps::{valid_name, wizard, TEMPLATE_COMPOSE};
use crate::runtime::catalog::{compare_versions, pick, Entry};
use crate::runtime::{Backends, CallContext, ContainerRef};

/// An application service error as the routes answer it.
impl From<AppsError> for AppError {
    fn from(e: AppsError) -> AppError {
        match e {
            AppsError::InvalidName { .. } => AppError::bad_request("invalid_params", e.to_string()),
            AppsError::Unknown { .. } => AppError::not_found("unknown_app", e.to_string()),
            AppsError::Unreadable { name, reason } => {
                tracing::warn!(
                    app = name.as_str(),
                    "unreadable application record: {reason}"
                );
                AppError::internal("an application record is unreadable")
            }
            AppsError::UnknownAction { .. } => AppError::not_found("unknown_path", e.to_string()),
            AppsError::Runtime { source } => runtime_error(source),
        }
    }
}

/// Whether the caller's policy reaches application `name`: every one, or
/// (a non-admin's default) those their own tasks installed.
pub(super) async fn reaches(state: &AppState, cx: &CallContext, name: &str) -> bool {
    let policy = state.policies.of(&cx.user);
    if policy.containers == crate::policy::ContainerScope::All {
        return true;
    }
    apps::owner(&state.runtime, cx, name).await.as_deref() == Some(cx.user.as_str())
}

/// 403 unless the caller's policy reaches application `name`.
async fn check_reach(state: &AppState, cx: &CallContext, name: &str) -> Result<(), AppError> {
    if reaches(state, cx, name).await {
        Ok(())
    } else {
        Err(AppError::new(
            axum::http::StatusCode::FORBIDDEN,
            "denied",
            format!("application {name} was not installed by user {}", cx.user),
        ))
    }
}

/// The repository's entries for this host, or `None` when there is no
/// repository or it cannot be read now (then no update is known).
async fn repository_entries(state: &AppState) -> Option<Vec<Entry>> {
    let catalog = state.registries.catalog.current()?;
    match catalog.entries().await {
        Ok(entries) => Some(entries),
        Err(e) => {
            tracing::debug!("apps: no repository versions: {e}");
            None
        }
    }
}

/// Add `latestVersion` (the repository's version of the record's template,
/// or `null`) and `updateAvailable` (it is newer than the installed one) to
/// an application's answer `fields`.
fn add_latest(fields: &mut Map<String, Value>, entries: Option<&[Entry]>) {
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (template, installed) = (text("template"), text("version"));
    let latest = entries
        .filter(|_| !template.is_empty())
        .and_then(|entries| pick(entries, "app", &template, "latest"))
        .and_then(|e| e.version.clone());
    let newer = latest.as_deref().is_some_and(|latest| {
        !installed.is_empty() && compare_versions(latest, &installed).is_gt()
    });
    fields.insert("latestVersion".into(), latest.into());
    fields.insert("updateAvailable".into(), newer.into());
}

/// Where the reverse proxy serves the application of `fields` (its
/// record): `{port, path: "/<virtual_path>/"}`, or `null` when the proxy is
/// off or does not route it (the proxy's own rule, [`crate::apps::virtual_paths`]).
fn proxy_of(name: &str, fields: &Map<String, Value>, proxy_port: Option<u16>) -> Value {
    let Some(port) = proxy_port else {
        return Value::Null;
    };
    let record = Value::Object(fields.clone()).to_string();
    match crate::apps::virtual_paths::routes(&[(name.to_string(), record)]).first() {
        Some(route) => json!({"port": port, "path": format!("{}/", route.prefix)}),
        None => Value::Null,
    }
}

/// The host ports a container publishes, from its engine inspect JSON:
/// `[{host, container, protocol}]`, the live bindings
/// (`NetworkSettings.Ports`) and the configured ones
/// (`HostConfig.PortBindings`, all a stopped container has), each once.
fn published_ports(inspect: &Value) -> Vec<Value> {
    let mut found = std::collections::BTreeSet::new();
    for bindings in [
        &inspect["NetworkSettings"]["Ports"],
        &inspect["HostConfig"]["PortBindings"],
    ] {
        let Some(bindings) = bindings.as_object() else {
            continue;
        };
        for (spec, hosts) in bindings {
            let (port, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let Ok(container) = port.parse::<u16>() else {
                continue;
            };
            for host in hosts.as_array().into_iter().flatten() {
                let host = host["HostPort"]
                    .as_str()
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(host) = host.filter(|p| *p != 0) {
                    found.insert((container, host, protocol.to_string()));
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(container, host, protocol)| {
            json!({"host": host, "container": container, "protocol": protocol})
        })
        .collect()
}

/// Give each of `answer`'s `containers` its `ports` ([`published_ports`]);
/// a container that cannot be inspected now shows none.
async fn add_ports(rt: &Backends, cx: &CallContext, answer: &mut Value) {
    let Some(containers) = answer.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    let inspects = containers.iter().map(|c| {
        let id = c["id"].as_str().unwrap_or_default().to_string();
        async move {
            let found = rt
                .containers
                .container_inspect(cx, &ContainerRef::new(apps::APP_RUNTIME, id))
                .await;
            found
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .map(|inspect| published_ports(&inspect))
                .unwrap_or_default()
        }
    });
    let ports = futures::future::join_all(inspects).await;
    for (container, ports) in containers.iter_mut().zip(ports) {
        if let Some(fields) = container.as_object_mut() {
            fields.insert("ports".into(), ports.into());
        }
    }
}

/// `GET apps`: every application the caller's policy reaches, by name.
#[utoipa::path(get, path = "/apps", tag = "applications",
    summary = "Every application the caller may see, by name",
    responses(
        (status = 200, description = "By name: `container`, `creating`, `yml`, `template`, `version`, `latestVersion` (the repository's, or null), `updateAvailable`, `proxy` (`{port, path}` or null)", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<BTreeMap<String, Value>>, AppError> {
    let records = apps::records(&state.runtime).await?;
    let cx = context(&user);
    let entries = repository_entries(&state).await;
    let mut out = BTreeMap::new();
    for (name, record) in records {
        if !reaches(&state, &cx, &name).await {
            continue;
        }
        let record = record?;
        let mut summary = record.summary();
        if let Some(fields) = summary.as_object_mut() {
            add_latest(fields, entries.as_deref());
            let proxy = proxy_of(&name, &record.fields, state.proxy_port);
            fields.insert("proxy".into(), proxy);
        }
        out.insert(name, summary);
    }
    Ok(Json(out))
}

/// `GET apps/{name}`: the record and the state of each container.
#[utoipa::path(get, path = "/apps/{name}", tag = "applications",
    summary = "An application's record and the state of each of its containers",
    params(("name" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "The record, `latestVersion`, `updateAvailable`, `proxy` (`{port, path}` where the reverse proxy serves it, or null) and `containers` (`name`, `id`, `image`, `state`, `ports`: `[{host, container, protocol}]`)", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    let record = apps::load(&state.runtime, &name).await?;
    let cx = context(&user);
    check_reach(&state, &cx, &name).await?;
    let mut answer = apps::describe(&state.runtime, &cx, record).await?;
    add_ports(&state.runtime, &cx, &mut answer).await;
    if let Some(fields) = answer.as_object_mut() {
        add_latest(fields, repository_entries(&state).await.as_deref());
        let proxy = proxy_of(&name, fields, state.proxy_port);
        fields.insert("proxy".into(), proxy);
    }
    Ok(Json(answer))
}

/// `PUT apps/{name}/{start|stop|restart|kill}`: what was acted on, as the
/// recorded answers have it: the services started (`["web"]`), or the
/// containers stopped, restarted or killed (`["joomla_web_1"]`).
#[utoipa::path(put, path = "/apps/{name}/{action}", tag = "applications",
    summary = "Start, stop, restart or kill (force stop) an application",
    params(("name" = String, Path, description = "Application name"), ("action" = String, Path, description = "`start`, `stop`, `restart` or `kill`")),
    responses(
        (status = 200, description = "`start`: the services started; otherwise the containers acted on", body = [String]),
        super::error::RuntimeErrors,
    ))]
pub async fn action(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((name, action))): Api<Path<(String, String)>>,
) -> Result<Json<Vec<String>>, AppError> {
    let record = apps::load(&state.runtime, &name).await?;
    let todo: Action = action.parse()?;
    let cx = context(&user);
    check_reach(&state, &cx, &name).await?;
    let done = apps::act(&state.runtime, &cx, &record, todo).await?;
    tracing::info!(user = %user.0.username, app = %name, %action, "application call");
    Ok(Json(done))
}

/// `?remove_volumes=` of `DELETE apps/{name}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also remove the application's volumes (named and anonymous).
    #[serde(default)]
    pub remove_volumes: bool,
}

/// `DELETE apps/{name}`: the containers removed, as recorded (`["joomla_web_1"]`).
#[utoipa::path(delete, path = "/apps/{name}", tag = "applications",
    summary = "Remove an application: containers, networks, folder",
    params(("name" = String, Path, description = "Application name"), DeleteQuery),
    responses(
        (status = 200, description = "The names of the containers removed", body = [String]),
        super::error::RuntimeErrors,
    ))]
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Vec<String>>, AppError> {
    let Query(query) = query.map_err(|e| {
        AppError::bad_request(
            "invalid_params",
            format!("remove_volumes: {}", e.body_text()),
        )
    })?;
    // An application still `creating` may be deleted too: its install task
    // (if it still runs) then fails at its next write and removes what it
    // made, and one interrupted by a restart leaves no other way out.
    let record = apps::load(&state.runtime, &name).await?;
    let cx = context(&user);
    check_reach(&state, &cx, &name).await?;
    let removed = apps::remove(&state.runtime, &cx, &record, query.remove_volumes).await?;
    tracing::info!(user = %user.0.username, app = %name, remove_volumes = query.remove_volumes, "application deleted");
    Ok(Json(removed))
}

/// `?lang=` of `GET template/{name}/wizard`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WizardQuery {
    /// Language of the strings, as QTS spells it (`eng`, `cht`, `ger`, ...);
    /// `eng` when not given, and English for strings the language lacks.
    #[serde(default)]
    pub lang: Option<String>,
}

/// A template file as text, `None` when the template has no such file.
async fn template_file(rt: &Backends, app: &str, path: &str) -> Result<Option<String>, AppError> {
    match rt
        .templates
        .template_read(app.to_string(), path.to_string())
        .await
    {
        Ok(text) => Ok(Some(text)),
        Err(crate::runtime::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(template_error(app, e)),
    }
}

fn template_error(app: &str, e: crate::runtime::Error) -> AppError {
    match e {
        crate::runtime::Error::NotFound(m) => AppError::not_found("unknown_template", m),
        // No repository (or no store) on this server: it has no templates.
        crate::runtime::Error::Other(m) | crate::runtime::Error::Unsupported(m)
            if m.contains("is configured") || m.contains("no application store") =>
        {
            AppError::not_found("unknown_template", m)
        }
        crate::runtime::Error::Other(m)
        | crate::runtime::Error::Unsupported(m)
        | crate::runtime::Error::Runtime(m) => AppError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "repository_error",
            format!("template {app}: {m}"),
        ),
        other => runtime_error(other),
    }
}

/// A template's JSON file, parsed; unreadable JSON is the repository's fault.
fn parse_json(app: &str, path: &str, text: &str) -> Result<Value, AppError> {
    serde_json::from_str(text).map_err(|e| {
        AppError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "repository_error",
            format!("template {app}: {path}: {e}"),
        )
    })
}

/// `GET template/{name}/wizard?lang=`: the template's wizard, translated.
#[utoipa::path(get, path = "/template/{name}/wizard", tag = "applications",
    summary = "A template's wizard, its strings in the language asked for",
    params(("name" = String, Path, description = "Template (application) name"), WizardQuery),
    responses(
        (status = 200, description = "`api_version`, `title`, `description`, `default` (each bound field's value in the template), `wizard`: `[{title, schema: {type: object, properties}, form}]`", body = Object),
        (status = 400, description = "A path segment or query is not valid", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 404, description = "No such template (or no repository configured)", body = super::error::ErrorBody),
        (status = 502, description = "The repository could not be read, or holds a broken file", body = super::error::ErrorBody),
    ))]
pub async fn template_wizard(
    State(state): State<AppState>,
    _user: CurrentUser,
    Api(Path(app)): Api<Path<String>>,
    query: Result<Query<WizardQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(query) = query
        .map_err(|e| AppError::bad_request("invalid_params", format!("lang: {}", e.body_text())))?;
    if !valid_name(&app) {
        return Err(AppError::bad_request(
            "invalid_params",
            "application: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$",
        ));
    }
    let lang = query.lang.unwrap_or_else(|| "eng".into());
    if !wizard::valid_lang(&lang) {
        return Err(AppError::bad_request(
            "invalid_params",
            "lang: must be a language code such as eng, cht or ger",
        ));
    }
    let rt = &state.runtime;
    let template = rt
        .templates
        .template_get(app.clone())
        .await
        .map_err(|e| template_error(&app, e))?;
    let has = |f: &str| template.files.iter().any(|t| t == f);
    let mut install = json!({});
    for file in wizard::FILES {
        // A folder lists its files; over HTTP only the known ones are probed.
        if has(file) {
            if let Some(text) = template_file(rt, &app, file).await? {
                install = parse_json(&app, file, &text)?;
                break;
            }
        }
    }
    // English first, the language asked for over it.
    let mut strings = Map::new();
    let mut langs = vec!["eng"];
    if lang != "eng" {
        langs.push(&lang);
    }
    for l in langs {
        let file = format!("wizard/i18n/{l}.json");
        if let Some(text) = template_file(rt, &app, &file).await? {
            if let Value::Object(map) = parse_json(&app, &file, &text)? {
                strings.extend(map);
            }
        }
    }
    let mut description = String::new();
    for file in [
        format!("wizard/description/{lang}.md"),
        "wizard/description/eng.md".into(),
        "description.md".into(),
    ] {
        if let Some(text) = template_file(rt, &app, &file).await? {
            description = text;
            break;
        }
    }
    let compose = template_file(rt, &app, TEMPLATE_COMPOSE)
        .await?
        .unwrap_or_default();
    Ok(Json(wizard::answer(
        &template.name,
        install,
        &strings,
        &description,
        &compose,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_come_once_from_live_and_configured_bindings() {
        let inspect = json!({
            "NetworkSettings": {"Ports": {
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18081"},
                           {"HostIp": "::", "HostPort": "18081"}],
                "443/tcp": null,
                "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}]
            }},
            "HostConfig": {"PortBindings": {
                "80/tcp": [{"HostIp": "", "HostPort": "18081"}],
                "8080/tcp": [{"HostIp": "", "HostPort": ""}],
                "bad/tcp": [{"HostPort": "1"}]
            }}
        });
        assert_eq!(
            published_ports(&inspect),
            vec![
                json!({"host": 5353, "container": 53, "protocol": "udp"}),
                json!({"host": 18081, "container": 80, "protocol": "tcp"}),
            ]
        );
        let stopped = json!({"NetworkSettings": {"Ports": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "2000"}]}}});
        assert_eq!(
            published_ports(&stopped),
            vec![json!({"host": 2000, "container": 80, "protocol": "tcp"})]
        );
        assert!(published_ports(&json!({})).is_empty());
    }

    #[test]
    fn the_proxy_path_only_when_the_proxy_is_on_and_routes_the_app() {
        let record = |vp: Value| {
            let mut fields = Map::new();
            fields.insert("virtual_path".into(), vp);
            fields
        };
        assert_eq!(
            proxy_of("a", &record(json!("/notes")), Some(8081)),
            json!({"port": 8081, "path": "/notes/"})
        );
        assert_eq!(
            proxy_of("a", &record(json!("/notes/")), Some(8081)),
            json!({"port": 8081, "path": "/notes/"})
        );
        assert_eq!(proxy_of("a", &record(json!("/notes")), None), Value::Null);
        for vp in [json!(""), json!("/"), json!("notes"), Value::Null] {
            assert_eq!(
                proxy_of("a", &record(vp.clone()), Some(8081)),
                Value::Null,
                "{vp}"
            );
        }
    }

    #[test]
    fn the_latest_version_and_whether_it_is_newer() {
        let c = crate::runtime::catalog::Catalog::new("/srv/repo").unwrap();
        let entries = c
            .parse(
                "list.json",
                br#"[{"name":"notes","type":"app","version":"1.10"},
                     {"name":"notes","type":"docker","version":"9"},
                     {"name":"bare","type":"app"}]"#,
            )
            .unwrap();
        let answer = |template: &str, version: &str, entries: Option<&[Entry]>| {
            let mut fields = Map::new();
            fields.insert("template".into(), template.into());
            fields.insert("version".into(), version.into());
            add_latest(&mut fields, entries);
            (
                fields["latestVersion"].clone(),
                fields["updateAvailable"].clone(),
            )
        };
        let e = Some(&entries[..]);
        assert_eq!(answer("notes", "1.9", e), (json!("1.10"), json!(true)));
        assert_eq!(answer("notes", "1.10", e), (json!("1.10"), json!(false)));
        assert_eq!(answer("notes", "1.11", e), (json!("1.10"), json!(false)));
        assert_eq!(answer("notes", "", e), (json!("1.10"), json!(false)));
        assert_eq!(answer("bare", "1", e), (Value::Null, json!(false)));
        assert_eq!(answer("gone", "1", e), (Value::Null, json!(false)));
        assert_eq!(answer("notes", "1", None), (Value::Null, json!(false)));
    }
}
