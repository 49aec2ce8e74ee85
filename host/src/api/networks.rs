//! `networks...`: the engine's networks, as Container Station's recorded
//! answers show them (`networks.rst`).
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET networks` | `[{Attachable, ConfigFrom, ConfigOnly, Containers, Created, Driver, EnableIPv6, IPAM, Id, Ingress, Internal, Labels, Name, Options, Scope}]` |
//! | `GET networks/{network_id}` (also `.../inspect`) | one network, with the containers on it |
//! | `POST networks` `{name, driver, internal, ipam, options, labels, check_duplicate}` | `{"Id", "Warning"}`; a name already taken is 409 |
//! | `DELETE networks/{network_id}` | `{}`; a network with containers on it is 409 |
//! | `DELETE networks/` | `{"NetworksDeleted": [names] or null}`: the caller's unused networks removed |
//! | `POST networks/{network_id}/connect` `{container}` | `{}` |
//! | `POST networks/{network_id}/disconnect` `{container, force}` | `{}` |
//!
//! A user sees their own networks (owner label), the engine's built-in
//! ones (`bridge`, `host`, `none`) and, when their policy reaches all
//! containers, every other one; they remove, connect and disconnect only
//! their own, and only their own containers. A non-admin creates `bridge`
//! networks only ([`crate::runtime::guard::networks`]). Another user's
//! network is 403 `not_yours`; an unknown one 404 `unknown_network`.
//! Prune removes what the caller may act on, one network at a time (an
//! admin: every unused network but the built-in ones; anyone else: their
//! own unused ones), never the engine's global prune.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::containers::{check_container, context, runtime_error};
use super::engine_objects::{all, found, pruned, removed, Networks};
use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{body_error, AppError, AppState};
use crate::runtime::guard::networks::{is_built_in, network_refusal};
use crate::runtime::traits::networks::{Attach, IpamPool, NetworkSpec};
use crate::runtime::Error as RtError;

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    let mut all = Vec::new();
    for path in ["/networks", "/networks/"] {
        all.push(entry(M::GET, path, S, list));
        all.push(entry(M::DELETE, path, S, prune));
    }
    all.extend([
        entry(M::POST, "/networks", S, create),
        entry(M::GET, "/networks/{network_id}", S, inspect),
        entry(M::GET, "/networks/{network_id}/inspect", S, inspect_again),
        entry(M::DELETE, "/networks/{network_id}", S, remove),
        entry(M::POST, "/networks/{network_id}/connect", S, connect),
        entry(M::POST, "/networks/{network_id}/disconnect", S, disconnect),
    ]);
    all
}

/// The OpenAPI document of this area.
#[derive(OpenApi)]
#[openapi(
    paths(list, inspect, inspect_again, create, remove, prune, connect, disconnect),
    components(schemas(NetworkCreateBody, IpamBody, IpamPoolBody, AttachBody)),
    tags((name = "networks", description = "The engine's networks"))
)]
pub(super) struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The body of `POST networks`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NetworkCreateBody {
    /// The network's name: a letter or digit, then letters, digits, `_`, `.`, `-` (at most 128).
    name: String,
    /// Accepted; names are always unique here.
    check_duplicate: Option<bool>,
    /// `bridge` (the default); an admin may name another driver (`macvlan`, `ipvlan`).
    driver: Option<String>,
    /// No route to the outside.
    internal: Option<bool>,
    /// The address pools.
    ipam: Option<IpamBody>,
    /// Not supported: `true` is refused.
    #[schema(rename = "enableIPv6")]
    enable_ipv6: Option<bool>,
    /// Driver options (strings); a non-admin may give the MTU and `enable_icc` only.
    options: Option<BTreeMap<String, String>>,
    /// Labels (strings); the owner label is the server's.
    labels: Option<BTreeMap<String, String>>,
}

/// `ipam` of [`NetworkCreateBody`] (Docker's keys; lower-case ones work too).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IpamBody {
    /// `default`.
    #[schema(rename = "Driver")]
    driver: Option<String>,
    /// The pools.
    #[schema(rename = "Config")]
    config: Option<Vec<IpamPoolBody>>,
    /// IPAM driver options (admins).
    #[schema(rename = "Options")]
    options: Option<BTreeMap<String, String>>,
}

/// One pool of [`IpamBody`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IpamPoolBody {
    /// IPv4 CIDR, its host bits zero, e.g. `172.30.0.0/24`.
    #[schema(rename = "Subnet")]
    subnet: Option<String>,
    /// An address inside `Subnet`.
    #[schema(rename = "Gateway")]
    gateway: Option<String>,
    /// A CIDR inside `Subnet`.
    #[schema(rename = "IPRange")]
    ip_range: Option<String>,
}

/// The body of `POST networks/{network_id}/connect` and `.../disconnect`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AttachBody {
    /// The Docker container's id, id prefix or name.
    container: String,
    /// Disconnect only: force it.
    force: Option<bool>,
}

/// The keys of a network as recorded, each with what it is when the engine
/// leaves it out.
fn recorded_network_keys() -> [(&'static str, Value); 15] {
    [
        ("Attachable", json!(false)),
        ("ConfigFrom", json!({"Network": ""})),
        ("ConfigOnly", json!(false)),
        ("Containers", json!({})),
        ("Created", json!("")),
        ("Driver", json!("")),
        ("EnableIPv6", json!(false)),
        (
            "IPAM",
            json!({"Config": [], "Driver": "default", "Options": null}),
        ),
        ("Id", json!("")),
        ("Ingress", json!(false)),
        ("Internal", json!(false)),
        ("Labels", json!({})),
        ("Name", json!("")),
        ("Options", json!({})),
        ("Scope", json!("local")),
    ]
}

/// A network of the engine, in the recorded shape: exactly the recorded
/// keys, whatever the engine's version adds or leaves out.
pub fn network_answer(engine: &Value) -> Value {
    let mut out = Map::new();
    for (key, default) in recorded_network_keys() {
        let value = match engine.get(key) {
            Some(v) if !v.is_null() => v.clone(),
            _ => default,
        };
        out.insert(key.to_string(), value);
    }
    let ipam = &mut out["IPAM"];
    if ipam["Config"].is_null() {
        ipam["Config"] = json!([]);
    }
    if ipam.get("Driver").is_none_or(Value::is_null) {
        ipam["Driver"] = json!("default");
    }
    if ipam.get("Options").is_none() {
        ipam["Options"] = Value::Null;
    }
    Value::Object(out)
}

/// A runtime error of this area: an unknown object is 404 `unknown`, the
/// guard's refusal of another user's object is 403 `not_yours`.
pub(super) fn area_error(e: RtError, unknown: &'static str) -> AppError {
    match e {
        RtError::NotFound(m) => AppError::not_found(unknown, m),
        RtError::Denied(m) => AppError::new(StatusCode::FORBIDDEN, "not_yours", m),
        e => runtime_error(e),
    }
}

/// 400 `invalid_params` naming the field first.
pub(super) fn invalid(message: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_params", message)
}

/// At most 64 characters of a value, for a message.
pub(super) fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Check an engine object's name or id as Docker spells names: a letter or
/// digit, then letters, digits, `_`, `.`, `-`; `min` to `max` characters.
pub(super) fn check_name(field: &str, name: &str, min: usize, max: usize) -> Result<(), AppError> {
    let ok = name.len() >= min
        && crate::user_name::is_name(name, max)
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field}: `{}` is not a valid name ({min} to {max} of letters, digits, `_`, `.`, `-`, starting with a letter or digit)",
            short(name)
        )))
    }
}

/// The request body as a JSON object (whatever the Content-Type); an empty
/// body is `{}` when `empty_ok`.
pub(super) fn body_object(
    body: Result<Bytes, BytesRejection>,
    empty_ok: bool,
) -> Result<Map<String, Value>, AppError> {
    let body = body.map_err(body_error)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(Map::new())
        } else {
            Err(AppError::bad_request(
                "invalid_json",
                "request body is empty: send a JSON object",
            ))
        };
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(AppError::bad_request(
            "wrong_type",
            "request body: expected a JSON object",
        )),
        Err(e) => Err(AppError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )),
    }
}

/// Field `key` of `object` as a string, if present and not null.
pub(super) fn opt_str(
    object: &Map<String, Value>,
    field: &str,
    key: &str,
) -> Result<Option<String>, AppError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{field}: must be a string"))),
    }
}

/// Field `key` of `object` as a boolean (`"true"`/`"false"` too: the
/// documentation calls some of them strings), if present and not null.
pub(super) fn opt_bool(
    object: &Map<String, Value>,
    field: &str,
    key: &str,
) -> Result<Option<bool>, AppError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(_) => Err(invalid(format!("{field}: must be a boolean"))),
    }
}

/// Field `key` of `object` as a map of strings, if present and not null.
pub(super) fn opt_strings(
    object: &Map<String, Value>,
    field: &str,
    key: &str,
) -> Result<BTreeMap<String, String>, AppError> {
    let map = match object.get(key) {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid(format!("{field}: must be an object of strings"))),
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if k.is_empty() || k.len() > 256 || k.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{field}: `{}` is not a valid key",
                short(k)
            )));
        }
        let Value::String(v) = v else {
            return Err(invalid(format!("{field}.{k}: must be a string")));
        };
        if v.len() > 4096 || v.contains('\0') {
            return Err(invalid(format!("{field}.{k}: too long or not text")));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// The first of `keys` present in `object` (Docker's key, then the others).
fn any_key<'a>(object: &'a Map<String, Value>, keys: &[&'a str]) -> &'a str {
    keys.iter()
        .find(|k| object.contains_key(**k))
        .unwrap_or(&keys[0])
}

/// An IPv4 CIDR: its address and prefix length. IPv6 is not supported
/// (the engine's IPv6 is off).
pub fn parse_cidr(field: &str, text: &str) -> Result<(u32, u8), AppError> {
    let bad = || {
        invalid(format!(
            "{field}: `{}` is not an IPv4 CIDR like 172.30.0.0/24",
            short(text)
        ))
    };
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let IpAddr::V4(addr) = addr else {
        return Err(invalid(format!("{field}: IPv6 is not supported")));
    };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (1..=32).contains(l) && !len.starts_with('+'))
        .ok_or_else(bad)?;
    Ok((u32::from(addr), len))
}

/// The mask of a prefix length.
fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// Check one pool: a subnet whose host bits are zero, a gateway and a
/// range inside it.
fn check_pool(i: usize, pool: &IpamPool) -> Result<(), AppError> {
    let at = |key: &str| format!("ipam.Config[{i}].{key}");
    let Some(subnet) = &pool.subnet else {
        if pool.gateway.is_some() || pool.ip_range.is_some() {
            return Err(invalid(format!(
                "{}: required with a Gateway or IPRange",
                at("Subnet")
            )));
        }
        return Ok(());
    };
    let (net, len) = parse_cidr(&at("Subnet"), subnet)?;
    if net & !mask(len) != 0 {
        return Err(invalid(format!(
            "{}: `{subnet}` has host bits set (the network is {}/{len})",
            at("Subnet"),
            std::net::Ipv4Addr::from(net & mask(len))
        )));
    }
    let inside = |a: u32| a & mask(len) == net;
    if let Some(gateway) = &pool.gateway {
        let g: std::net::Ipv4Addr = gateway.parse().map_err(|_| {
            invalid(format!(
                "{}: `{}` is not an IPv4 address",
                at("Gateway"),
                short(gateway)
            ))
        })?;
        if !inside(u32::from(g)) {
            return Err(invalid(format!(
                "{}: {g} is not inside {subnet}",
                at("Gateway")
            )));
        }
    }
    if let Some(range) = &pool.ip_range {
        let (r, rlen) = parse_cidr(&at("IPRange"), range)?;
        if rlen < len || !inside(r) {
            return Err(invalid(format!(
                "{}: {range} is not inside {subnet}",
                at("IPRange")
            )));
        }
    }
    Ok(())
}

/// `ipam` of a create body.
fn parse_ipam(spec: &mut NetworkSpec, value: &Value) -> Result<(), AppError> {
    let ipam = match value {
        Value::Null => return Ok(()),
        Value::Object(o) => o,
        _ => return Err(invalid("ipam: must be an object")),
    };
    spec.ipam_driver = opt_str(ipam, "ipam.Driver", any_key(ipam, &["Driver", "driver"]))?;
    if let Some(d) = &spec.ipam_driver {
        check_name("ipam.Driver", d, 1, 64)?;
    }
    spec.ipam_options = opt_strings(ipam, "ipam.Options", any_key(ipam, &["Options", "options"]))?;
    let config = match ipam.get(any_key(ipam, &["Config", "config"])) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(a)) if a.len() <= 16 => a,
        Some(_) => return Err(invalid("ipam.Config: must be an array of at most 16 pools")),
    };
    for (i, p) in config.iter().enumerate() {
        let Value::Object(p) = p else {
            return Err(invalid(format!("ipam.Config[{i}]: must be an object")));
        };
        let f = |key: &str| format!("ipam.Config[{i}].{key}");
        let pool = IpamPool {
            subnet: opt_str(p, &f("Subnet"), any_key(p, &["Subnet", "subnet"]))?,
            gateway: opt_str(p, &f("Gateway"), any_key(p, &["Gateway", "gateway"]))?,
            ip_range: opt_str(
                p,
                &f("IPRange"),
                any_key(p, &["IPRange", "ip_range", "iprange"]),
            )?,
        };
        check_pool(i, &pool)?;
        spec.pools.push(pool);
    }
    Ok(())
}

/// The body of `POST networks`, checked; the message names the bad field.
pub fn parse_create(body: &Map<String, Value>) -> Result<NetworkSpec, AppError> {
    let name = opt_str(body, "name", "name")?.ok_or_else(|| invalid("name: required"))?;
    check_name("name", &name, 1, 128)?;
    opt_bool(body, "check_duplicate", "check_duplicate")?;
    let driver = opt_str(body, "driver", "driver")?.unwrap_or_else(|| "bridge".into());
    check_name("driver", &driver, 1, 64)?;
    let ipv6 = any_key(body, &["enableIPv6", "enable_ipv6", "EnableIPv6"]);
    if opt_bool(body, ipv6, ipv6)? == Some(true) {
        return Err(invalid(format!("{ipv6}: IPv6 networks are not supported")));
    }
    let mut spec = NetworkSpec {
        name,
        driver,
        internal: opt_bool(body, "internal", "internal")?.unwrap_or(false),
        options: opt_strings(body, "options", "options")?,
        labels: opt_strings(body, "labels", "labels")?.into_iter().collect(),
        ..Default::default()
    };
    if let Some(ipam) = body.get("ipam") {
        parse_ipam(&mut spec, ipam)?;
    }
    Ok(spec)
}

/// The `{network_id}` of a path, checked.
fn network_id(id: &str) -> Result<String, AppError> {
    check_name("network_id", id, 1, 128)?;
    Ok(id.to_string())
}

/// `GET networks`: the networks the caller sees.
#[utoipa::path(get, path = "/networks", tag = "networks",
    summary = "The networks the caller sees",
    responses(
        (status = 200, description = "`[{Attachable, ConfigFrom, ConfigOnly, Containers, Created, Driver, EnableIPv6, IPAM, Id, Ingress, Internal, Labels, Name, Options, Scope}]`", body = Vec<Object>),
        super::error::RuntimeErrors,
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Value>>, AppError> {
    let all = all::<Networks>(&state, &context(&user)).await?;
    Ok(Json(all.iter().map(network_answer).collect()))
}

async fn inspected(state: &AppState, user: &CurrentUser, id: &str) -> Result<Value, AppError> {
    let network = found::<Networks>(state, &context(user), network_id(id)?).await?;
    Ok(network_answer(&network))
}

/// `GET networks/{network_id}`: one network, with the containers on it.
#[utoipa::path(get, path = "/networks/{network_id}", tag = "networks",
    summary = "One network",
    params(("network_id" = String, Path, description = "The network's id, id prefix or name")),
    responses(
        (status = 200, description = "The network, `Containers` by id", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn inspect(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(inspected(&state, &user, &id).await?))
}

/// `GET networks/{network_id}/inspect`: the same, as the recorded example spells it.
#[utoipa::path(get, path = "/networks/{network_id}/inspect", tag = "networks",
    summary = "One network (the recorded example's path)",
    params(("network_id" = String, Path, description = "The network's id, id prefix or name")),
    responses(
        (status = 200, description = "The network, `Containers` by id", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn inspect_again(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(inspected(&state, &user, &id).await?))
}

/// `POST networks`: a new network, the caller's own.
#[utoipa::path(post, path = "/networks", tag = "networks",
    summary = "Create a network",
    request_body(content = NetworkCreateBody, description = "JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "`{\"Id\", \"Warning\"}`", body = Object),
        (status = 409, description = "The name is taken, or the engine refused the addresses", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let spec = parse_create(&body_object(body, false)?)?;
    let policy = state.policies.of(&user.0.username);
    if let Some(refusal) = network_refusal(&policy, &spec) {
        return Err(AppError::new(StatusCode::FORBIDDEN, "denied", refusal));
    }
    let created = state
        .runtime
        .networks
        .network_create_spec(&context(&user), spec)
        .await
        .map_err(|e| match e {
            // The policy was checked above: a refusal now is the engine's
            // (e.g. a pool overlapping another network's).
            RtError::Denied(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
            // The engine has no such driver.
            RtError::NotFound(m) => invalid(format!("driver: {m}")),
            e => area_error(e, "unknown_network"),
        })?;
    Ok(Json(json!({
        "Id": created["Id"].as_str().unwrap_or_default(),
        "Warning": created["Warning"].as_str().unwrap_or_default(),
    })))
}

/// `DELETE networks/{network_id}`: remove one of the caller's networks.
#[utoipa::path(delete, path = "/networks/{network_id}", tag = "networks",
    summary = "Remove a network",
    params(("network_id" = String, Path, description = "The network's id, id prefix or name")),
    responses(
        (status = 200, description = "`{}`", body = Object),
        (status = 409, description = "Containers are on it, or it is one of the engine's own", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
) -> Result<Json<Value>, AppError> {
    removed::<Networks>(&state, &user, network_id(&id)?).await
}

/// `DELETE networks/`: remove the unused networks the caller may act on.
#[utoipa::path(delete, path = "/networks/", tag = "networks",
    summary = "Remove the caller's unused networks",
    responses(
        (status = 200, description = "`{\"NetworksDeleted\": [names]}` (`null`: none)", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn prune(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, AppError> {
    let deleted = pruned::<Networks>(&state, &user, |network| {
        let id = network["Id"].as_str().filter(|_| !is_built_in(network))?;
        Some((id, network["Name"].as_str()?))
    })
    .await?;
    Ok(Json(json!({
        "NetworksDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
    })))
}

/// The body of connect and disconnect, checked.
fn parse_attach(network: String, body: &Map<String, Value>) -> Result<Attach, AppError> {
    let container =
        opt_str(body, "container", "container")?.ok_or_else(|| invalid("container: required"))?;
    check_container(&container).map_err(|_| {
        invalid(format!(
            "container: `{}` is not a container id or name (letters, digits, `_`, `.`, `-`)",
            short(&container)
        ))
    })?;
    Ok(Attach {
        network,
        container,
        force: opt_bool(body, "force", "force")?.unwrap_or(false),
    })
}

/// Connect or disconnect, after looking the network up (so that an unknown
/// network and an unknown container are told apart).
async fn attach(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
    body: Result<Bytes, BytesRejection>,
    connect: bool,
) -> Result<Json<Value>, AppError> {
    let req = parse_attach(network_id(id)?, &body_object(body, false)?)?;
    let cx = context(user);
    found::<Networks>(state, &cx, req.network.clone()).await?;
    let done = if connect {
        state.runtime.networks.network_connect(&cx, req).await
    } else {
        state.runtime.networks.network_disconnect(&cx, req).await
    };
    done.map_err(|e| area_error(e, "unknown_container"))?;
    Ok(Json(json!({})))
}

/// `POST networks/{network_id}/connect`: put one of the caller's containers on one of their networks.
#[utoipa::path(post, path = "/networks/{network_id}/connect", tag = "networks",
    summary = "Connect a container to a network",
    params(("network_id" = String, Path, description = "The network's id, id prefix or name")),
    request_body(content = AttachBody, description = "JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "`{}`", body = Object),
        (status = 409, description = "The container is on it already", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn connect(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    attach(&state, &user, &id, body, true).await
}

/// `POST networks/{network_id}/disconnect`: take one of the caller's containers off one of their networks.
#[utoipa::path(post, path = "/networks/{network_id}/disconnect", tag = "networks",
    summary = "Disconnect a container from a network",
    params(("network_id" = String, Path, description = "The network's id, id prefix or name")),
    request_body(content = AttachBody, description = "JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "`{}`", body = Object),
        (status = 409, description = "The container is not on it", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn disconnect(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path(id)): Api<Path<String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    attach(&state, &user, &id, body, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_body(v: Value) -> Result<NetworkSpec, String> {
        parse_create(v.as_object().unwrap()).map_err(|e| e.message)
    }

    #[test]
    fn a_create_body_is_checked_field_by_field() {
        let spec =
            create_body(json!({"name": "doc_test_network", "check_duplicate": true})).unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.driver.as_str()),
            ("doc_test_network", "bridge")
        );
        let spec = create_body(json!({
            "name": "n1", "internal": "true", "options": {"com.docker.network.driver.mtu": "1400"},
            "ipam": {"Config": [{"Subnet": "172.30.0.0/24", "Gateway": "172.30.0.1", "IPRange": "172.30.0.128/25"}]},
        }))
        .unwrap();
        assert!(spec.internal);
        assert_eq!(spec.pools[0].gateway.as_deref(), Some("172.30.0.1"));
        for (body, field) in [
            (json!({}), "name: "),
            (json!({"name": "-x"}), "name: "),
            (json!({"name": "a/b"}), "name: "),
            (json!({"name": 5}), "name: "),
            (json!({"name": "n", "driver": "a b"}), "driver: "),
            (json!({"name": "n", "internal": 3}), "internal: "),
            (json!({"name": "n", "enableIPv6": true}), "enableIPv6: "),
            (json!({"name": "n", "options": {"a": 1}}), "options.a: "),
            (json!({"name": "n", "labels": []}), "labels: "),
            (
                json!({"name": "n", "ipam": {"Config": [{"Subnet": "10.0.0.0/33"}]}}),
                "ipam.Config[0].Subnet: ",
            ),
            (
                json!({"name": "n", "ipam": {"Config": [{"Subnet": "10.0.0.1/24"}]}}),
                "ipam.Config[0].Subnet: ",
            ),
            (
                json!({"name": "n", "ipam": {"Config": [{"Subnet": "fd00::/64"}]}}),
                "ipam.Config[0].Subnet: ",
            ),
            (
                json!({"name": "n", "ipam": {"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.1.1"}]}}),
                "ipam.Config[0].Gateway: ",
            ),
            (
                json!({"name": "n", "ipam": {"Config": [{"Gateway": "10.0.1.1"}]}}),
                "ipam.Config[0].Subnet: ",
            ),
            (
                json!({"name": "n", "ipam": {"config": [{"subnet": "10.0.0.0/24", "ip_range": "10.0.0.0/16"}]}}),
                "ipam.Config[0].IPRange: ",
            ),
            (json!({"name": "n", "ipam": "x"}), "ipam: "),
        ] {
            let e = create_body(body.clone()).unwrap_err();
            assert!(e.starts_with(field), "{body}: {e}");
        }
    }

    #[test]
    fn a_network_has_the_recorded_keys_only() {
        let engine = json!({
            "Name": "n", "Id": "abc", "Created": "2021-08-11T17:06:46.538300506+08:00",
            "Scope": "local", "Driver": "bridge", "EnableIPv6": false, "EnableIPv4": true,
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.29.0.0/22", "Gateway": "172.29.0.1"}]},
            "Internal": false, "Attachable": false, "Ingress": false,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": false, "Options": {}, "Labels": {}, "Peers": [],
        });
        let answer = network_answer(&engine);
        let keys: Vec<&str> = answer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "Attachable",
                "ConfigFrom",
                "ConfigOnly",
                "Containers",
                "Created",
                "Driver",
                "EnableIPv6",
                "IPAM",
                "Id",
                "Ingress",
                "Internal",
                "Labels",
                "Name",
                "Options",
                "Scope"
            ]
        );
        assert_eq!(answer["Containers"], json!({}));
        assert_eq!(answer["IPAM"]["Options"], Value::Null);
        assert_eq!(network_answer(&json!({}))["IPAM"]["Config"], json!([]));
    }
}
