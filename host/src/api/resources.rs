//! A container's settings (Container Station's `resource.rst`): read them
//! all, and change autostart, port forwards, devices, CPU and memory
//! limits and host folders one setting at a time.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET container/{type}/{id}/all` | the settings: `{arch, autostart, image, name, network: {hostname, mode, port}, resource: {device, limit}, type, version, volume: {container, host}}` |
//! | `PUT container/{type}/{id}/autostart/{on,off}` | the settings after the change |
//! | `POST container/{type}/{id}/network/port` (`[host, container, "tcp"]`) | the settings, with the port forward added |
//! | `DELETE container/{type}/{id}/network/port` (`[host, container, "tcp"]`) | `[]` |
//! | `POST container/{type}/{id}/network/ports` (`[[host, container, "udp"], ...]`) | the settings, with these port forwards only |
//! | `GET resource/device` | the device names a container may get (`["Input_(13)", ...]`), those the caller's policy `devices` allows |
//! | `POST container/{type}/{id}/resource/device` (`["allow", "Input_(13)", "rwm"]`) | the settings, with the device added |
//! | `DELETE container/{type}/{id}/resource/device` (the same) | `[]` |
//! | `POST container/{type}/{id}/resource/devices` (`[[...], ...]`) | the settings, with these devices only |
//! | `POST container/{type}/{id}/resource/limit` (`{"cputime", "cpuweight", "memory"}`, each optional) | the settings, with the limits given set |
//! | `DELETE container/{type}/{id}/resource/limit` (`{"cputime": 0}`: the keys named; no body: all) | `[]` |
//! | `POST container/{type}/{id}/volume/host` (`{"/share/path": {"bind": "/in", "ro": false}}`) | the settings, with these host folders only |
//!
//! Each change goes through the runtime's policy guard as a create with the
//! new setting would: a non-admin's new port, device, limit or host folder
//! is checked as at create. Docker changes the restart policy and limits in
//! place; ports, devices, host folders and a dropped limit recreate the
//! container (see [`crate::runtime::docker::settings`]), which keeps its
//! volumes but not its writable layer. LXC changes its config for the
//! next start (autostart, limits, devices, host folders) and its port
//! forwards (DNAT rules) at once.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::containers::{check_container, context, runtime_error, runtime_kind, Target};
use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{body_error, AppError, AppState};
use crate::runtime::{
    kind_name, BindMount, CallContext, ChangeSettings, ContainerRef, Error as RtError, Limits,
    PortBinding, RuntimeKind, SettingsChange,
};

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    vec![
        entry(M::GET, "/container/{type}/{id}/all", S, all),
        entry(
            M::PUT,
            "/container/{type}/{id}/autostart/{state}",
            S,
            autostart,
        ),
        entry(M::POST, "/container/{type}/{id}/network/port", S, port_add),
        entry(
            M::DELETE,
            "/container/{type}/{id}/network/port",
            S,
            port_delete,
        ),
        entry(
            M::POST,
            "/container/{type}/{id}/network/ports",
            S,
            ports_set,
        ),
        entry(M::GET, "/resource/device", S, devices_available),
        entry(
            M::POST,
            "/container/{type}/{id}/resource/device",
            S,
            device_add,
        ),
        entry(
            M::DELETE,
            "/container/{type}/{id}/resource/device",
            S,
            device_delete,
        ),
        entry(
            M::POST,
            "/container/{type}/{id}/resource/devices",
            S,
            devices_set,
        ),
        entry(
            M::POST,
            "/container/{type}/{id}/resource/limit",
            S,
            limit_set,
        ),
        entry(
            M::DELETE,
            "/container/{type}/{id}/resource/limit",
            S,
            limit_delete,
        ),
        entry(M::POST, "/container/{type}/{id}/volume/host", S, host_set),
    ]
}

/// This area's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        all,
        autostart,
        port_add,
        port_delete,
        ports_set,
        devices_available,
        device_add,
        device_delete,
        devices_set,
        limit_set,
        limit_delete,
        host_set
    ),
    tags((name = "resources", description = "A container's settings: autostart, port forwards, devices, limits, host folders")),
)]
pub(super) struct Doc;

/// This area's part of the OpenAPI document.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The devices a container may be given, as Container Station names them
/// (`name_(major)`, several majors `name_(a,_b)`), and their major numbers.
pub const DEVICES: [(&str, &[u32]); 6] = [
    ("Input_(13)", &[13]),
    ("Sound_and_ALSA_(14,_116)", &[14, 116]),
    ("ACM_USB_modems_(166)", &[166]),
    ("Direct_Rendering_Infrastructure_(226)", &[226]),
    ("video4linux_(81)", &[81]),
    ("TTY_(4)", &[4]),
];

/// The body of a port forward's add and delete.
const PORT_BODY: &str = "[host port, container port, \"tcp\"]";

/// The body of a device's add and delete.
const DEVICE_BODY: &str = "[\"allow\", \"Input_(13)\", \"rwm\"]";

fn bad(message: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_params", message)
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The request body as JSON (whatever the Content-Type says); `None` for
/// an empty body.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Option<Value>, AppError> {
    let bytes = body.map_err(body_error)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        AppError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
    })
}

/// The body, required.
fn required_body(body: Result<Bytes, BytesRejection>, shape: &str) -> Result<Value, AppError> {
    json_body(body)?.ok_or_else(|| {
        AppError::bad_request(
            "invalid_json",
            format!("request body is empty: send {shape}"),
        )
    })
}

/// A port number of `field`: `low..=65535`.
fn port_number(field: &str, value: Option<&Value>, low: u16) -> Result<u16, AppError> {
    let n = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= u64::from(low) && n <= 65535 => Ok(n as u16),
        _ => Err(bad(format!("{field}: must be a port number {low}..=65535"))),
    }
}

/// One port forward, `[host, container, "tcp"|"udp"]` (the protocol
/// defaults to tcp; host port 0 lets the runtime pick one).
pub fn parse_port(field: &str, value: &Value) -> Result<PortBinding, AppError> {
    let Some(parts) = value.as_array().filter(|a| (2..=3).contains(&a.len())) else {
        return Err(bad(format!(
            "{field}: must be [host port, container port, \"tcp\" or \"udp\"]"
        )));
    };
    let host_port = port_number(&format!("{field}[0]"), parts.first(), 0)?;
    let container_port = port_number(&format!("{field}[1]"), parts.get(1), 1)?;
    let protocol = match parts.get(2) {
        None => "tcp".to_string(),
        Some(Value::String(p)) if p == "tcp" || p == "udp" => p.clone(),
        Some(_) => return Err(bad(format!("{field}[2]: must be \"tcp\" or \"udp\""))),
    };
    Ok(PortBinding {
        host_port,
        container_port,
        protocol,
    })
}

/// A list of port forwards, `[[host, container, protocol], ...]`.
pub fn parse_ports(field: &str, value: &Value) -> Result<Vec<PortBinding>, AppError> {
    let Some(items) = value.as_array() else {
        return Err(bad(format!(
            "{field}: must be a list of [host port, container port, protocol]"
        )));
    };
    let ports = items
        .iter()
        .enumerate()
        .map(|(i, p)| parse_port(&format!("{field}[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, p) in ports.iter().enumerate() {
        let taken = ports[..i]
            .iter()
            .any(|q| p.host_port != 0 && q.host_port == p.host_port && q.protocol == p.protocol);
        if taken {
            return Err(bad(format!(
                "{field}[{i}]: host port {}/{} is forwarded twice",
                p.host_port, p.protocol
            )));
        }
    }
    Ok(ports)
}

/// The major numbers (and minor, `*` for any) a device name names:
/// `Input_(13)`, `Sound_and_ALSA_(14,_116)`, `x_(81:3)`.
fn device_numbers(name: &str) -> Option<Vec<(u32, String)>> {
    let open = name.rfind('(')?;
    let inner = name.get(open + 1..)?.strip_suffix(')')?;
    inner
        .split(',')
        .map(|part| {
            let part = part.trim_matches(|c: char| c == '_' || c.is_whitespace());
            let (major, minor) = part.split_once(':').unwrap_or((part, "*"));
            let major = major.parse::<u32>().ok()?;
            let minor_ok = minor == "*" || minor.parse::<u32>().is_ok();
            minor_ok.then(|| (major, minor.to_string()))
        })
        .collect()
}

/// One device, `["allow", "Input_(13)", "rwm"]`, as device cgroup rules
/// (one per major number).
pub fn parse_device(field: &str, value: &Value) -> Result<Vec<String>, AppError> {
    let Some(parts) = value.as_array().filter(|a| (2..=3).contains(&a.len())) else {
        return Err(bad(format!(
            "{field}: must be [\"allow\", \"name_(major)\", \"rwm\"]"
        )));
    };
    if parts[0].as_str() != Some("allow") {
        return Err(bad(format!("{field}[0]: must be \"allow\"")));
    }
    let numbers = parts[1]
        .as_str()
        .and_then(device_numbers)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "{field}[1]: must name a device with its major number, as \"Input_(13)\""
            ))
        })?;
    let access = match parts.get(2) {
        None => "rwm",
        Some(Value::String(a)) => a.as_str(),
        Some(_) => return Err(bad(format!("{field}[2]: must be letters from \"rwm\""))),
    };
    let mut seen = String::new();
    for c in access.chars() {
        if !matches!(c, 'r' | 'w' | 'm') || seen.contains(c) {
            seen.clear();
            break;
        }
        seen.push(c);
    }
    if seen.is_empty() {
        return Err(bad(format!(
            "{field}[2]: must be letters from \"rwm\", each at most once"
        )));
    }
    Ok(numbers
        .into_iter()
        .map(|(major, minor)| format!("c {major}:{minor} {access}"))
        .collect())
}

/// The type, major and minor of a device cgroup rule (`c 81:* rw`), and its access.
fn rule_parts(rule: &str) -> Option<(&str, u32, &str, &str)> {
    let mut parts = rule.split_whitespace();
    let kind = parts.next()?;
    let (major, minor) = parts.next()?.split_once(':')?;
    let access = parts.next().unwrap_or("rwm");
    Some((kind, major.parse().ok()?, minor, access))
}

/// Device cgroup rules as Container Station shows devices,
/// `[["allow", "Input_(13)", "rwm"]]`: a known device by its name (once
/// for its several majors), another as `device_(major)` or `device_(major:minor)`.
pub fn show_devices(rules: &[String]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut shown: Vec<&str> = Vec::new();
    for rule in rules {
        let Some((kind, major, minor, access)) = rule_parts(rule) else {
            out.push(json!(["allow", rule, ""]));
            continue;
        };
        let known = DEVICES
            .iter()
            .find(|(_, majors)| kind == "c" && minor == "*" && majors.contains(&major));
        match known {
            Some((name, _)) if shown.contains(name) => {}
            Some((name, _)) => {
                shown.push(name);
                out.push(json!(["allow", name, access]));
            }
            None if minor == "*" => out.push(json!(["allow", format!("device_({major})"), access])),
            None => out.push(json!([
                "allow",
                format!("device_({major}:{minor})"),
                access
            ])),
        }
    }
    out
}

/// The limits a body names.
const LIMITS: [&str; 3] = ["cputime", "cpuweight", "memory"];

/// The limit `key` names, or 400 naming it.
fn limit_key(key: &str) -> Result<&'static str, AppError> {
    LIMITS.into_iter().find(|k| *k == key).ok_or_else(|| {
        bad(format!(
            "{}: unknown limit (cputime, cpuweight or memory)",
            short(key)
        ))
    })
}

/// The limits body, `{"cputime", "cpuweight", "memory"}`: each key given
/// is set (`None` inside: a key given as `null` or `""`).
fn parse_limits(value: &Value) -> Result<Vec<(&'static str, Option<u64>)>, AppError> {
    let Some(object) = value.as_object() else {
        return Err(bad(
            "request body: must be an object of \"cputime\", \"cpuweight\", \"memory\"",
        ));
    };
    let mut out = Vec::new();
    for (key, v) in object {
        let field = limit_key(key)?;
        let empty = v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty());
        if empty {
            out.push((field, None));
            continue;
        }
        let number = |range: std::ops::RangeInclusive<u64>, what: &str| {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            n.filter(|n| range.contains(n))
                .ok_or_else(|| bad(format!("{field}: must be {what}")))
        };
        let n = match field {
            "cputime" => number(10..=999, "an integer 10..=999 (ms of CPU per second)")?,
            "cpuweight" => number(2..=1024, "an integer 2..=1024")?,
            _ => {
                let bytes = match v {
                    Value::String(s) => {
                        crate::policy::parse_memory(s).map_err(|e| bad(format!("memory: {e}")))?
                    }
                    Value::Number(n) => n
                        .as_u64()
                        .ok_or_else(|| bad("memory: must be a size such as \"512m\""))?,
                    _ => return Err(bad("memory: must be a size such as \"512m\"")),
                };
                if bytes < 64 << 20 {
                    return Err(bad("memory: must be at least 64m"));
                }
                bytes
            }
        };
        out.push((field, Some(n)));
    }
    Ok(out)
}

/// The limits the settings (create body shape) hold.
fn current_limits(settings: &Value) -> Limits {
    let limit = &settings["resource"]["limit"];
    let number = |key: &str| match &limit[key] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let memory = match &limit["memory"] {
        Value::String(s) => crate::policy::parse_memory(s).ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    Limits {
        cpu_shares: number("cpuweight").map(|n| n as u32),
        cpu_time_ms: number("cputime").map(|n| n as u32),
        memory_bytes: memory,
    }
}

/// The ports the settings hold (entries that do not parse are left out).
fn current_ports(settings: &Value) -> Vec<PortBinding> {
    settings["network"]["port"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| parse_port("network.port", p).ok())
        .collect()
}

/// The device rules the settings hold.
fn current_devices(settings: &Value) -> Vec<String> {
    settings["resource"]["device"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| match d {
            Value::String(rule) => Some(vec![rule.clone()]),
            other => parse_device("resource.device", other).ok(),
        })
        .flatten()
        .collect()
}

/// The machine's architecture as Container Station names it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// The settings (create body shape) as `GET container/{type}/{id}/all`
/// answers them.
pub fn show(kind: RuntimeKind, settings: &Value) -> Value {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let name = text(&settings["name"]);
    let network = &settings["network"];
    let hostname = network["hostname"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| name.clone());
    let ports: Vec<Value> = current_ports(settings)
        .into_iter()
        .map(|p| json!([p.host_port, p.container_port, p.protocol]))
        .collect();
    let limits = current_limits(settings);
    let mut limit = Map::new();
    if let Some(ms) = limits.cpu_time_ms {
        limit.insert("cputime".into(), json!(ms));
    }
    if let Some(w) = limits.cpu_shares {
        limit.insert("cpuweight".into(), json!(w));
    }
    if let Some(m) = limits.memory_bytes {
        limit.insert("memory".into(), json!(format!("{}m", m >> 20)));
    }
    let mut host = Map::new();
    for (path, bind) in settings["volume"]["host"].as_object().into_iter().flatten() {
        let ro = bind["ro"]
            .as_bool()
            .or_else(|| bind["rw"].as_bool().map(|rw| !rw))
            .unwrap_or(false);
        host.insert(path.clone(), json!({"bind": text(&bind["bind"]), "ro": ro}));
    }
    let tag = settings["tag"].as_str().filter(|t| !t.is_empty());
    json!({
        "arch": arch(),
        "autostart": settings["autostart"].as_bool().unwrap_or(false),
        "image": text(&settings["image"]),
        "name": name,
        "network": {
            "hostname": hostname,
            "mode": text(&network["mode"]),
            "port": ports,
        },
        "resource": {
            "device": show_devices(&current_devices(settings)),
            "limit": limit,
        },
        "type": kind_name(kind),
        "version": tag.unwrap_or("latest"),
        "volume": {
            "container": settings["volume"]["container"].as_array().cloned().unwrap_or_default(),
            "host": host,
        },
    })
}

/// The container, resolved to its id; 403 `not_yours` when it is not the
/// caller's to see.
async fn resolve(
    state: &AppState,
    cx: &CallContext,
    kind: RuntimeKind,
    id: String,
) -> Result<Resolved, AppError> {
    let entry = state
        .runtime
        .containers
        .container_entry(cx, &ContainerRef::new(kind, id))
        .await
        .map_err(|e| match e {
            RtError::Denied(m) => AppError::new(StatusCode::FORBIDDEN, "not_yours", m),
            other => runtime_error(other),
        })?;
    Ok(Resolved {
        container: ContainerRef::new(kind, entry.id),
        name: entry.name,
    })
}

/// A container the caller may act on: its id (what a change acts on) and
/// its name (what finds it again after a recreate gave it a new id).
struct Resolved {
    container: ContainerRef,
    name: String,
}

/// The container's settings in the create body's shape.
async fn settings_of(
    state: &AppState,
    cx: &CallContext,
    c: &ContainerRef,
) -> Result<Value, AppError> {
    state
        .runtime
        .containers
        .container_settings(cx, c)
        .await
        .map_err(runtime_error)
}

/// What a change answers: the settings after it, or `[]` (the deletes).
#[derive(Clone, Copy)]
enum After {
    Settings,
    Nothing,
}

/// Apply `change` to `c` and answer as `after` says (the settings are
/// found by name: a recreate gives the container a new id).
async fn change(
    state: &AppState,
    user: &CurrentUser,
    cx: &CallContext,
    c: Resolved,
    change: SettingsChange,
    after: After,
) -> Result<Json<Value>, AppError> {
    let field = change.field();
    state
        .runtime
        .containers
        .container_change_settings(
            cx,
            ChangeSettings {
                container: c.container.clone(),
                change,
            },
        )
        .await
        .map_err(runtime_error)?;
    tracing::info!(user = %user.0.username, container = %c.container.id, setting = field, "container settings changed");
    if let After::Nothing = after {
        return Ok(Json(json!([])));
    }
    let now = ContainerRef::new(c.container.kind, c.name);
    let settings = settings_of(state, cx, &now).await?;
    Ok(Json(show(now.kind, &settings)))
}

/// Set `new` on the caller's container `kind`/`id`; answer its settings after.
async fn set(
    state: &AppState,
    user: &CurrentUser,
    kind: RuntimeKind,
    id: String,
    new: SettingsChange,
) -> Result<Json<Value>, AppError> {
    let cx = context(user);
    let c = resolve(state, &cx, kind, id).await?;
    change(state, user, &cx, c, new, After::Settings).await
}

/// Make the change `make` builds from the current settings of the
/// caller's container `kind`/`id`; answer as `after` says.
async fn edit(
    state: &AppState,
    user: &CurrentUser,
    kind: RuntimeKind,
    id: String,
    after: After,
    make: impl FnOnce(&Value) -> Result<SettingsChange, AppError>,
) -> Result<Json<Value>, AppError> {
    let cx = context(user);
    let c = resolve(state, &cx, kind, id).await?;
    let new = make(&settings_of(state, &cx, &c.container).await?)?;
    change(state, user, &cx, c, new, after).await
}

/// `GET container/{type}/{id}/all`.
#[utoipa::path(get, path = "/container/{type}/{id}/all", tag = "resources",
    summary = "A container's settings",
    params(Target),
    responses(
        (status = 200, description = "`{arch, autostart, image, name, network: {hostname, mode, port}, resource: {device, limit}, type, version, volume: {container, host}}`", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn all(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
) -> Result<Json<Value>, AppError> {
    let cx = context(&user);
    let c = resolve(&state, &cx, kind, id).await?;
    let settings = settings_of(&state, &cx, &c.container).await?;
    Ok(Json(show(kind, &settings)))
}

/// `PUT container/{type}/{id}/autostart/{on|off}`.
#[utoipa::path(put, path = "/container/{type}/{id}/autostart/{state}", tag = "resources",
    summary = "Start the container when the engine or the host starts, or not",
    params(Target, ("state" = String, Path, description = "`on` or `off`")),
    responses(
        (status = 200, description = "The settings after the change", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn autostart(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Path((kind, id, on))): Api<Path<(String, String, String)>>,
) -> Result<Json<Value>, AppError> {
    let kind = runtime_kind(&kind)?;
    check_container(&id)?;
    let on = match on.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return Err(bad(format!(
                "state: must be \"on\" or \"off\", got `{}`",
                short(other)
            )))
        }
    };
    set(&state, &user, kind, id, SettingsChange::Autostart(on)).await
}

/// `POST container/{type}/{id}/network/port`.
#[utoipa::path(post, path = "/container/{type}/{id}/network/port", tag = "resources",
    summary = "Add a port forward (Docker: recreates the container)",
    params(Target),
    request_body(content = Vec<Object>, description = "`[host port, container port, \"tcp\" or \"udp\"]`", content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", body = Object),
        (status = 409, description = "The host port is forwarded already", body = super::error::ErrorBody),
        super::error::RuntimeErrors,
    ))]
pub async fn port_add(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let port = parse_port("port", &required_body(body, PORT_BODY)?)?;
    edit(&state, &user, kind, id, After::Settings, |now| {
        let mut ports = current_ports(now);
        let taken = ports
            .iter()
            .any(|p| p.host_port == port.host_port && p.protocol == port.protocol);
        if taken && port.host_port != 0 {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "port: host port {}/{} is forwarded already",
                    port.host_port, port.protocol
                ),
            ));
        }
        ports.push(port);
        Ok(SettingsChange::Ports(ports))
    })
    .await
}

/// `DELETE container/{type}/{id}/network/port`.
#[utoipa::path(delete, path = "/container/{type}/{id}/network/port", tag = "resources",
    summary = "Delete a port forward (Docker: recreates the container)",
    params(Target),
    request_body(content = Vec<Object>, description = "`[host port, container port, \"tcp\" or \"udp\"]`", content_type = "application/json"),
    responses(
        (status = 200, description = "`[]`", body = Vec<Object>),
        super::error::RuntimeErrors,
    ))]
pub async fn port_delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let port = parse_port("port", &required_body(body, PORT_BODY)?)?;
    edit(&state, &user, kind, id, After::Nothing, |now| {
        let mut ports = current_ports(now);
        let before = ports.len();
        ports.retain(|p| p != &port);
        if ports.len() == before {
            return Err(AppError::not_found(
                "unknown_port",
                format!(
                    "port: the container forwards no host port {} to {}/{}",
                    port.host_port, port.container_port, port.protocol
                ),
            ));
        }
        Ok(SettingsChange::Ports(ports))
    })
    .await
}

/// `POST container/{type}/{id}/network/ports`.
#[utoipa::path(post, path = "/container/{type}/{id}/network/ports", tag = "resources",
    summary = "Replace every port forward (`[]`: none; Docker: recreates the container)",
    params(Target),
    request_body(content = Vec<Object>, description = "`[[host port, container port, \"tcp\" or \"udp\"], ...]`", content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn ports_set(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = required_body(body, "[[host port, container port, \"tcp\"], ...]")?;
    let ports = parse_ports("ports", &body)?;
    set(&state, &user, kind, id, SettingsChange::Ports(ports)).await
}

/// `GET resource/device`.
#[utoipa::path(get, path = "/resource/device", tag = "resources",
    summary = "The devices a container may be given (those the caller's policy allows)",
    responses(
        (status = 200, description = "Device names, as `Input_(13)`", body = Vec<String>),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn devices_available(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Json<Vec<&'static str>> {
    let policy = state.policies.of(&user.0.username);
    let allowed = DEVICES
        .iter()
        .filter(|(_, majors)| {
            majors
                .iter()
                .all(|m| policy.allows_device(&format!("c {m}:* rwm")).is_ok())
        })
        .map(|(name, _)| *name)
        .collect();
    Json(allowed)
}

/// `POST container/{type}/{id}/resource/device`.
#[utoipa::path(post, path = "/container/{type}/{id}/resource/device", tag = "resources",
    summary = "Give the container a device (Docker: recreates the container)",
    params(Target),
    request_body(content = Vec<String>, description = "`[\"allow\", \"Input_(13)\", \"rwm\"]`", content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn device_add(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let rules = parse_device("device", &required_body(body, DEVICE_BODY)?)?;
    edit(&state, &user, kind, id, After::Settings, |now| {
        let mut devices = current_devices(now);
        // A device given again replaces its access.
        let numbers = |r: &String| {
            rule_parts(r).map(|(k, maj, min, _)| (k.to_string(), maj, min.to_string()))
        };
        let new: Vec<_> = rules.iter().filter_map(numbers).collect();
        devices.retain(|d| numbers(d).is_none_or(|n| !new.contains(&n)));
        devices.extend(rules);
        Ok(SettingsChange::Devices(devices))
    })
    .await
}

/// `DELETE container/{type}/{id}/resource/device`.
#[utoipa::path(delete, path = "/container/{type}/{id}/resource/device", tag = "resources",
    summary = "Take a device from the container (Docker: recreates the container)",
    params(Target),
    request_body(content = Vec<String>, description = "`[\"allow\", \"Input_(13)\", \"rwm\"]`", content_type = "application/json"),
    responses(
        (status = 200, description = "`[]`", body = Vec<Object>),
        super::error::RuntimeErrors,
    ))]
pub async fn device_delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = required_body(body, DEVICE_BODY)?;
    let rules = parse_device("device", &body)?;
    edit(&state, &user, kind, id, After::Nothing, |now| {
        let mut devices = current_devices(now);
        let numbers = |r: &String| rule_parts(r).map(|(_, maj, min, _)| (maj, min.to_string()));
        let gone: Vec<_> = rules.iter().filter_map(numbers).collect();
        let before = devices.len();
        devices.retain(|d| numbers(d).is_none_or(|n| !gone.contains(&n)));
        if devices.len() == before {
            return Err(AppError::not_found(
                "unknown_device",
                format!(
                    "device: the container has no device `{}`",
                    short(body[1].as_str().unwrap_or_default())
                ),
            ));
        }
        Ok(SettingsChange::Devices(devices))
    })
    .await
}

/// `POST container/{type}/{id}/resource/devices`.
#[utoipa::path(post, path = "/container/{type}/{id}/resource/devices", tag = "resources",
    summary = "Replace every device of the container (`[]`: none; Docker: recreates the container)",
    params(Target),
    request_body(content = Vec<Object>, description = "`[[\"allow\", \"Input_(13)\", \"rwm\"], ...]`", content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn devices_set(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = required_body(body, "[[\"allow\", \"Input_(13)\", \"rwm\"], ...]")?;
    let Some(items) = body.as_array() else {
        return Err(bad(
            "devices: must be a list of [\"allow\", \"name_(major)\", \"rwm\"]",
        ));
    };
    let mut devices = Vec::new();
    for (i, item) in items.iter().enumerate() {
        devices.extend(parse_device(&format!("devices[{i}]"), item)?);
    }
    set(&state, &user, kind, id, SettingsChange::Devices(devices)).await
}

/// The change setting `keys` on the container's current limits.
fn limits_change<'a>(
    keys: &'a [(&'static str, Option<u64>)],
) -> impl FnOnce(&Value) -> Result<SettingsChange, AppError> + 'a {
    move |now| {
        Ok(SettingsChange::Limits(with_limits(
            current_limits(now),
            keys,
        )))
    }
}

/// `limits` with the keys of `keys` set to their values.
fn with_limits(mut limits: Limits, keys: &[(&str, Option<u64>)]) -> Limits {
    for (key, value) in keys {
        match *key {
            "cputime" => limits.cpu_time_ms = value.map(|v| v as u32),
            "cpuweight" => limits.cpu_shares = value.map(|v| v as u32),
            _ => limits.memory_bytes = *value,
        }
    }
    limits
}

/// `POST container/{type}/{id}/resource/limit`.
#[utoipa::path(post, path = "/container/{type}/{id}/resource/limit", tag = "resources",
    summary = "Set CPU and memory limits (the keys given; Docker changes them in place)",
    params(Target),
    request_body(content = Object, description = "`{\"cputime\": 10..999, \"cpuweight\": 2..1024, \"memory\": \"512m\"}`, each optional", content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn limit_set(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = required_body(body, "{\"cputime\", \"cpuweight\", \"memory\"}")?;
    let keys = parse_limits(&body)?;
    edit(
        &state,
        &user,
        kind,
        id,
        After::Settings,
        limits_change(&keys),
    )
    .await
}

/// `DELETE container/{type}/{id}/resource/limit`.
#[utoipa::path(delete, path = "/container/{type}/{id}/resource/limit", tag = "resources",
    summary = "Drop limits (the keys named, their values ignored; no body: every one). A non-admin keeps the policy's caps; Docker recreates the container",
    params(Target),
    request_body(content = Object, description = "`{\"cputime\": 0}`", content_type = "application/json"),
    responses(
        (status = 200, description = "`[]`", body = Vec<Object>),
        super::error::RuntimeErrors,
    ))]
pub async fn limit_delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let named =
        match json_body(body)? {
            None => Map::new(),
            Some(Value::Object(o)) => o,
            Some(_) => return Err(bad(
                "request body: must be an object naming the limits to drop, as {\"cputime\": 0}",
            )),
        };
    let keys = if named.is_empty() {
        LIMITS.map(|k| (k, None)).to_vec()
    } else {
        named
            .keys()
            .map(|k| Ok((limit_key(k)?, None)))
            .collect::<Result<Vec<_>, AppError>>()?
    };
    edit(
        &state,
        &user,
        kind,
        id,
        After::Nothing,
        limits_change(&keys),
    )
    .await
}

/// The host folders body, `{"/share/path": {"bind": "/in", "ro": false}}`.
pub fn parse_binds(value: &Value) -> Result<Vec<BindMount>, AppError> {
    let Some(object) = value.as_object() else {
        return Err(bad(
            "volume.host: must be an object of {\"/share/path\": {\"bind\": \"/in/container\", \"ro\": false}}",
        ));
    };
    let mut out = Vec::new();
    for (path, bind) in object {
        let field = format!("volume.host[{}]", short(path));
        if path.trim().is_empty() {
            return Err(bad("volume.host: a host path is empty"));
        }
        let Some(entry) = bind.as_object() else {
            return Err(bad(format!("{field}: must be {{\"bind\", \"ro\"}}")));
        };
        if let Some(other) = entry
            .keys()
            .find(|k| !["bind", "ro", "rw"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "{field}.{}: unknown key (bind, ro)",
                short(other)
            )));
        }
        let inside = entry
            .get("bind")
            .and_then(Value::as_str)
            .filter(|b| b.starts_with('/'))
            .ok_or_else(|| {
                bad(format!(
                    "{field}.bind: must be an absolute path in the container"
                ))
            })?;
        let flag = |key: &str| match entry.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(format!("{field}.{key}: must be true or false"))),
        };
        let read_only = match (flag("ro")?, flag("rw")?) {
            (Some(ro), Some(rw)) if ro == rw => {
                return Err(bad(format!("{field}: ro and rw disagree")))
            }
            (Some(ro), _) => ro,
            (None, Some(rw)) => !rw,
            (None, None) => false,
        };
        out.push(BindMount {
            host_path: path.clone(),
            container_path: inside.to_string(),
            read_only,
        });
    }
    Ok(out)
}

/// `POST container/{type}/{id}/volume/host`.
#[utoipa::path(post, path = "/container/{type}/{id}/volume/host", tag = "resources",
    summary = "Replace the host folders mounted in the container (`{}`: none; Docker: recreates the container)",
    params(Target),
    request_body(content = Object, description = "`{\"/share/path\": {\"bind\": \"/in/container\", \"ro\": false}}`", content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", body = Object),
        super::error::RuntimeErrors,
    ))]
pub async fn host_set(
    State(state): State<AppState>,
    user: CurrentUser,
    Target { kind, id }: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = required_body(body, "{\"/share/path\": {\"bind\", \"ro\"}}")?;
    let binds = parse_binds(&body)?;
    set(&state, &user, kind, id, SettingsChange::HostBinds(binds)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_name_the_field() {
        let p = parse_port("port", &json!([12345, 80, "udp"])).unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (12345, 80, "udp")
        );
        assert_eq!(parse_port("port", &json!([1, 2])).unwrap().protocol, "tcp");
        for (bad, field) in [
            (json!([70000, 80, "tcp"]), "port[0]: "),
            (json!([80, 0, "tcp"]), "port[1]: "),
            (json!([80, 80, "sctp"]), "port[2]: "),
            (json!({"host": 1}), "port: "),
            (json!([80]), "port: "),
        ] {
            let e = parse_port("port", &bad).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.starts_with(field), "{bad}: {}", e.message);
        }
        let twice = parse_ports("ports", &json!([[8080, 80], [8080, 81, "tcp"]])).unwrap_err();
        assert!(twice.message.starts_with("ports[1]: "), "{}", twice.message);
        assert!(parse_ports("ports", &json!([[8080, 80], [8080, 81, "udp"]])).is_ok());
    }

    #[test]
    fn devices_map_to_rules_and_back() {
        assert_eq!(
            parse_device("device", &json!(["allow", "Input_(13)", "rwm"])).unwrap(),
            ["c 13:* rwm"]
        );
        assert_eq!(
            parse_device(
                "device",
                &json!(["allow", "Sound_and_ALSA_(14,_116)", "rw"])
            )
            .unwrap(),
            ["c 14:* rw", "c 116:* rw"]
        );
        assert_eq!(
            parse_device("device", &json!(["allow", "x_(81:3)"])).unwrap(),
            ["c 81:3 rwm"]
        );
        for (bad, field) in [
            (json!(["deny", "Input_(13)", "rwm"]), "device[0]: "),
            (json!(["allow", "Input", "rwm"]), "device[1]: "),
            (json!(["allow", "Input_(x)", "rwm"]), "device[1]: "),
            (json!(["allow", "Input_(13)", "rwx"]), "device[2]: "),
            (json!(["allow", "Input_(13)", "rr"]), "device[2]: "),
            (json!("c 13:* rwm"), "device: "),
        ] {
            let e = parse_device("device", &bad).unwrap_err();
            assert!(e.message.starts_with(field), "{bad}: {}", e.message);
        }
        let rules: Vec<String> = [
            "c 14:* rw",
            "c 116:* rw",
            "c 13:* rwm",
            "c 99:* r",
            "c 99:1 r",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            show_devices(&rules),
            vec![
                json!(["allow", "Sound_and_ALSA_(14,_116)", "rw"]),
                json!(["allow", "Input_(13)", "rwm"]),
                json!(["allow", "device_(99)", "r"]),
                json!(["allow", "device_(99:1)", "r"]),
            ]
        );
        // What is shown parses back to the same rules.
        let again: Vec<String> = show_devices(&rules)
            .iter()
            .flat_map(|d| parse_device("d", d).unwrap())
            .collect();
        assert_eq!(again, rules);
    }

    #[test]
    fn limits_are_checked_and_merged() {
        let keys =
            parse_limits(&json!({"cputime": 100, "cpuweight": "600", "memory": "512m"})).unwrap();
        let l = with_limits(Limits::default(), &keys);
        assert_eq!(l.cpu_time_ms, Some(100));
        assert_eq!(l.cpu_shares, Some(600));
        assert_eq!(l.memory_bytes, Some(512 << 20));
        let dropped = with_limits(l, &[("cputime", None)]);
        assert_eq!(dropped.cpu_time_ms, None);
        assert_eq!(dropped.memory_bytes, Some(512 << 20));
        for (bad, field) in [
            (json!({"cputime": 5}), "cputime: "),
            (json!({"cpuweight": 2000}), "cpuweight: "),
            (json!({"memory": "32m"}), "memory: "),
            (json!({"memory": "lots"}), "memory: "),
            (json!({"memroy": "1g"}), "memroy: "),
            (json!([1]), "request body: "),
        ] {
            let e = parse_limits(&bad).unwrap_err();
            assert!(e.message.starts_with(field), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn binds_parse_and_name_the_field() {
        let b = parse_binds(
            &json!({"/test": {"bind": "/test1", "ro": false}, "/t/s": {"bind": "/t2", "ro": true}}),
        )
        .unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.iter().any(|b| b.host_path == "/t/s" && b.read_only));
        assert!(parse_binds(&json!({})).unwrap().is_empty());
        for (bad, field) in [
            (json!({"/a": {"bind": "rel"}}), "volume.host[/a].bind: "),
            (
                json!({"/a": {"bind": "/x", "ro": "yes"}}),
                "volume.host[/a].ro: ",
            ),
            (
                json!({"/a": {"bind": "/x", "mode": 1}}),
                "volume.host[/a].mode: ",
            ),
            (json!([1]), "volume.host: "),
        ] {
            let e = parse_binds(&bad).unwrap_err();
            assert!(e.message.starts_with(field), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn settings_show_in_the_recorded_shape() {
        let settings = json!({
            "type": "docker", "name": "utest", "image": "busybox", "tag": "1.36",
            "autostart": true,
            "network": {"port": [[12345, 80, "tcp"]]},
            "resource": {"limit": {"cputime": 100, "memory": "512m"}, "device": ["c 13:* rwm"]},
            "volume": {"host": {"/share/test": {"bind": "/test1", "ro": false}}},
        });
        let shown = show(RuntimeKind::Docker, &settings);
        let keys: Vec<&str> = shown
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "arch",
                "autostart",
                "image",
                "name",
                "network",
                "resource",
                "type",
                "version",
                "volume"
            ]
        );
        assert_eq!(
            shown["network"],
            json!({"hostname": "utest", "mode": "", "port": [[12345, 80, "tcp"]]})
        );
        assert_eq!(
            shown["resource"],
            json!({"device": [["allow", "Input_(13)", "rwm"]], "limit": {"cputime": 100, "memory": "512m"}})
        );
        assert_eq!(shown["version"], "1.36");
        assert_eq!(
            shown["volume"],
            json!({"container": [], "host": {"/share/test": {"bind": "/test1", "ro": false}}})
        );
        // LXC records memory in bytes.
        let lxc = show(
            RuntimeKind::Lxc,
            &json!({"name": "l", "resource": {"limit": {"memory": 268435456}}}),
        );
        assert_eq!(lxc["resource"]["limit"], json!({"memory": "256m"}));
        assert_eq!(lxc["version"], "latest");
        assert_eq!(lxc["type"], "lxc");
    }
}
