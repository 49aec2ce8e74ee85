//! `volumes...`: the engine's volumes, as Container Station's recorded
//! answers show them (`volumes.rst`).
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET volumes` | `[{CreatedAt, Driver, Labels, Mountpoint, Name, Options, Scope}]` |
//! | `GET volumes/{volume_name}/inspect` | one volume |
//! | `POST volumes` `{name, driver, driver_opts, labels}` (also `POST volumes/{volume_name}`, the name from the path) | the new volume; a name already taken is 409 |
//! | `DELETE volumes/{volume_name}` | `{}`; a volume a container mounts is 409 |
//! | `DELETE volumes/` | `{"SpaceReclaimed": 0, "VolumesDeleted": [names]}`: the caller's unused volumes removed |
//!
//! A user sees and acts on their own volumes (owner label), and on every
//! other one when their policy reaches all containers. A non-admin creates
//! `local` volumes only, with no driver options but a tmpfs
//! ([`crate::runtime::guard::networks`]). Another user's volume is 403
//! `not_yours`; an unknown one 404 `unknown_volume`. A `password=` in a
//! volume's mount options (a CIFS share) is never shown. Prune removes what
//! the caller may act on, one volume at a time (an admin: every unused
//! volume; anyone else: their own unused ones), never the engine's global
//! prune.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::containers::context;
use super::engine_objects::{all, found, pruned, removed, Volumes};
use super::extract::Api;
use super::networks::{area_error, body_object, check_name, invalid, opt_str, opt_strings};
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::runtime::guard::networks::volume_refusal;
use crate::runtime::traits::volumes::VolumeSpec;
use crate::runtime::Error as RtError;

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    let mut all = Vec::new();
    for path in ["/volumes", "/volumes/"] {
        all.push(entry(M::GET, path, S, list));
        all.push(entry(M::DELETE, path, S, prune));
    }
    all.extend([
        entry(M::POST, "/volumes", S, create),
        entry(M::POST, "/volumes/{volume_name}", S, create_named),
        entry(M::GET, "/volumes/{volume_name}/inspect", S, inspect),
        entry(M::DELETE, "/volumes/{volume_name}", S, remove),
    ]);
    all
}

/// The OpenAPI document of this area.
#[derive(OpenApi)]
#[openapi(
    paths(list, inspect, create, create_named, remove, prune),
    components(schemas(VolumeCreateBody)),
    tags((name = "volumes", description = "The engine's volumes"))
)]
pub(super) struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The body of `POST volumes`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct VolumeCreateBody {
    /// The volume's name: a letter or digit, then letters, digits, `_`,
    /// `.`, `-` (2 to 128); with `POST volumes/{volume_name}`, the path's.
    name: Option<String>,
    /// `local` (the default); an admin may name another driver.
    driver: Option<String>,
    /// Driver options (strings); a non-admin may ask a tmpfs only
    /// (`type` and `device` `tmpfs`, `o` of `size`, `uid`, `gid`, `mode`, `nr_inodes`).
    driver_opts: Option<BTreeMap<String, String>>,
    /// Labels (strings); the owner label is the server's.
    labels: Option<BTreeMap<String, String>>,
}

/// The keys of a volume as recorded.
const RECORDED_VOLUME_KEYS: [&str; 7] = [
    "CreatedAt",
    "Driver",
    "Labels",
    "Mountpoint",
    "Name",
    "Options",
    "Scope",
];

/// `password=...` in mount options (`o`, as CIFS takes it) hidden.
fn without_password(options: &str) -> String {
    options
        .split(',')
        .map(|o| match o.split_once('=') {
            Some((k, _))
                if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") =>
            {
                format!("{k}=********")
            }
            _ => o.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A volume of the engine, in the recorded shape: exactly the recorded
/// keys (`Labels`, `Options`: `null` when empty, as recorded), no password.
pub fn volume_answer(engine: &Value) -> Value {
    let mut out = Map::new();
    for key in RECORDED_VOLUME_KEYS {
        let mut value = engine.get(key).cloned().unwrap_or(Value::Null);
        if value.as_object().is_some_and(Map::is_empty) {
            value = Value::Null;
        }
        if key == "Options" {
            if let Some(options) = value.as_object_mut() {
                for v in options.values_mut() {
                    if let Some(s) = v.as_str() {
                        *v = Value::from(without_password(s));
                    }
                }
            }
        }
        if value.is_null() && !matches!(key, "Labels" | "Options") {
            value = json!("");
        }
        out.insert(key.to_string(), value);
    }
    Value::Object(out)
}

/// A volume name, checked (Docker's rule: at least 2 characters).
fn volume_name(field: &str, name: &str) -> Result<String, AppError> {
    check_name(field, name, 2, 128)?;
    Ok(name.to_string())
}

/// The body of `POST volumes`, checked; `path_name` is the path's name, if any.
pub fn parse_create(
    body: &Map<String, Value>,
    path_name: Option<&str>,
) -> Result<VolumeSpec, AppError> {
    let named = opt_str(body, "name", "name")?;
    let name = match (path_name, named) {
        (Some(p), Some(n)) if p != n => {
            return Err(invalid(format!(
                "name: `{}` differs from the path's `{}`",
                super::networks::short(&n),
                super::networks::short(p)
            )))
        }
        (Some(p), _) => volume_name("volume_name", p)?,
        (None, Some(n)) => volume_name("name", &n)?,
        (None, None) => return Err(invalid("name: required")),
    };
    let driver = opt_str(body, "driver", "driver")?.unwrap_or_else(|| "local".into());
    check_name("driver", &driver, 1, 64)?;
    Ok(VolumeSpec {
        name,
        driver,
        driver_opts: opt_strings(body, "driver_opts", "driver_opts")?,
        labels: opt_strings(body, "labels", "labels")?.into_iter().collect(),
    })
}

/// `GET volumes`: the volumes the caller sees.
#[utoipa::path(get, path = "/volumes", tag = "volumes",
    summary = "The volumes the caller sees",
    responses(
        (status = 200, description = "`[{CreatedAt, Driver, Labels, Mountpoint, Name, Options, Scope}]`", body = Vec<Object>),
        super::error::RuntimeErrors,
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Value>>, AppError> {
    let all = all::<Volumes>(&state, &context(&user)).await?;
    Ok(Json(all.iter().map(volume_answer).collect()))
}

/// `GET volumes/{volume_name}/inspect`: one volume.
#[utoipa::path(get, path = "/volumes/{volume_name}/inspect", tag = "volumes",
    summary = "One volume",
    params(("volume_name" = String, Path, description = "The volume's name")),
    responses(
        (status = 200, description = "`{CreatedAt, Driver, Labels, Mountpoint, Name, Options, Scope}`", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn inspect(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    let name = volume_name("volume_name", &name)?;
    let volume = found::<Volumes>(&state, &context(&user), name).await?;
    Ok(Json(volume_answer(&volume)))
}

async fn created(
    state: &AppState,
    user: &CurrentUser,
    spec: VolumeSpec,
) -> Result<Json<Value>, AppError> {
    let policy = state.policies.of(&user.0.username);
    if let Some(refusal) = volume_refusal(&policy, &spec) {
        return Err(AppError::new(StatusCode::FORBIDDEN, "denied", refusal));
    }
    let volume = state
        .runtime
        .volumes
        .volume_create_spec(&context(user), spec)
        .await
        .map_err(|e| match e {
            // The engine has no such driver, or the driver refused its options.
            RtError::NotFound(m) => invalid(format!("driver: {m}")),
            RtError::InvalidParams(m) => invalid(format!("driver_opts: {m}")),
            e => area_error(e, "unknown_volume"),
        })?;
    Ok(Json(volume_answer(&volume)))
}

/// `POST volumes`: a new volume, the caller's own.
#[utoipa::path(post, path = "/volumes", tag = "volumes",
    summary = "Create a volume",
    request_body(content = VolumeCreateBody, description = "JSON whatever the Content-Type; `name` required"),
    responses(
        (status = 200, description = "The new volume", body = Object),
        (status = 409, description = "The name is taken", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let spec = parse_create(&body_object(body, false)?, None)?;
    created(&state, &user, spec).await
}

/// `POST volumes/{volume_name}`: a new volume of that name.
#[utoipa::path(post, path = "/volumes/{volume_name}", tag = "volumes",
    summary = "Create a volume named by the path",
    params(("volume_name" = String, Path, description = "The new volume's name")),
    request_body(content = VolumeCreateBody, description = "JSON whatever the Content-Type; may be empty"),
    responses(
        (status = 200, description = "The new volume", body = Object),
        (status = 409, description = "The name is taken", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn create_named(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let spec = parse_create(&body_object(body, true)?, Some(&name))?;
    created(&state, &user, spec).await
}

/// `DELETE volumes/{volume_name}`: remove one of the caller's volumes.
#[utoipa::path(delete, path = "/volumes/{volume_name}", tag = "volumes",
    summary = "Remove a volume",
    params(("volume_name" = String, Path, description = "The volume's name")),
    responses(
        (status = 200, description = "`{}`", body = Object),
        (status = 409, description = "A container mounts it", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(name)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    removed::<Volumes>(&state, &user, volume_name("volume_name", &name)?).await
}

/// `DELETE volumes/`: remove the unused volumes the caller may act on.
#[utoipa::path(delete, path = "/volumes/", tag = "volumes",
    summary = "Remove the caller's unused volumes",
    responses(
        (status = 200, description = "`{\"SpaceReclaimed\": 0, \"VolumesDeleted\": [names]}`", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn prune(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, AppError> {
    let deleted = pruned::<Volumes>(&state, &user, |volume| {
        let name = volume["Name"].as_str()?;
        Some((name, name))
    })
    .await?;
    Ok(Json(
        json!({"SpaceReclaimed": 0, "VolumesDeleted": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_body(v: Value, path: Option<&str>) -> Result<VolumeSpec, String> {
        parse_create(v.as_object().unwrap(), path).map_err(|e| e.message)
    }

    #[test]
    fn a_create_body_is_checked_field_by_field() {
        let spec = create_body(json!({"name": "test_volume_1"}), None).unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.driver.as_str()),
            ("test_volume_1", "local")
        );
        let spec = create_body(json!({}), Some("from_path")).unwrap();
        assert_eq!(spec.name, "from_path");
        let spec = create_body(
            json!({"name": "v2", "labels": {"key": "value"}, "driver_opts": {"type": "tmpfs"}}),
            None,
        )
        .unwrap();
        assert_eq!(spec.labels, [("key".to_string(), "value".to_string())]);
        for (body, path, field) in [
            (json!({}), None, "name: "),
            (json!({"name": "x"}), None, "name: "),
            (json!({"name": "../etc"}), None, "name: "),
            (json!({"name": "a"}), Some("b1"), "name: "),
            (json!({}), Some("_x"), "volume_name: "),
            (json!({"name": "ok", "driver": ""}), None, "driver: "),
            (
                json!({"name": "ok", "driver_opts": {"o": 1}}),
                None,
                "driver_opts.o: ",
            ),
            (json!({"name": "ok", "labels": "x"}), None, "labels: "),
        ] {
            let e = create_body(body.clone(), path).unwrap_err();
            assert!(e.starts_with(field), "{body}: {e}");
        }
    }

    #[test]
    fn a_volume_has_the_recorded_keys_and_no_password() {
        let engine = json!({
            "CreatedAt": "2021-08-11T17:07:34+08:00", "Driver": "local", "Labels": {},
            "Mountpoint": "/var/lib/docker/volumes/v/_data", "Name": "v",
            "Options": {"type": "cifs", "device": "//nas/share", "o": "username=u,password=secret,vers=3.0"},
            "Scope": "local", "UsageData": null,
        });
        let answer = volume_answer(&engine);
        let keys: Vec<&str> = answer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, RECORDED_VOLUME_KEYS);
        assert_eq!(answer["Labels"], Value::Null);
        assert_eq!(
            answer["Options"]["o"],
            "username=u,password=********,vers=3.0"
        );
        assert!(!answer.to_string().contains("secret"));
    }
}
