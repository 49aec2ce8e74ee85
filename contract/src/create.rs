//! The body of `create` (Container Station's `POST container`): the
//! params the `create` category decodes and checks, the settings an export
//! records for `container_import` (the host writes them from a container's
//! configuration), and what the API reads before admitting a task.
//!
//! Fields are loose where Container Station accepts several shapes
//! (`serde_json::Value`); the `create` category checks them field by field.
//! Absent fields are left out when written, so a body written by the host
//! reads back as the same body.
//!
//! With the `schema` feature (the guest, which only reads bodies) the types
//! derive `JsonSchema` instead of `Serialize`: a schema derived from a
//! writable type would state other defaults than the published document
//! does (`"default": null` on plain optional fields only).

use std::collections::BTreeMap;

use serde::Deserialize;
#[cfg(not(feature = "schema"))]
use serde::Serialize;
use serde_json::Value;

use crate::Object;

/// JSON Pointers into a body, for the fields the host's policy decides
/// before a plugin sees the body (whatever the category).
pub mod pointers {
    /// `privileged`: a privileged container.
    pub const PRIVILEGED: &str = "/privileged";
    /// `resource.device`: device rules.
    pub const DEVICES: &str = "/resource/device";
    /// `network.port`: published ports, `[[host, container, protocol]]`.
    pub const PORTS: &str = "/network/port";
}

/// The `create` params.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateParams {
    /// `docker` (default) or `lxc`.
    #[serde(rename = "type", default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub kind: Option<String>,
    /// Container name.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub name: Option<String>,
    /// Image repository.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub image: Option<String>,
    /// Image tag; `latest` when absent.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub tag: Option<String>,
    /// `dockerhub` (default), `qnap` or `private`.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub repository: Option<String>,
    /// The configured registry for `repository: private`.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub registry_name: Option<String>,
    /// Image metadata from the catalog (informational).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub download: Option<Object<Download>>,
    /// Restart the container when the engine restarts.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub autostart: Option<bool>,
    /// Run privileged (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub privileged: Option<bool>,
    /// Entrypoint override: a string (split like a shell) or a list (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub entrypoint: Option<Value>,
    /// Command override: a string (split like a shell) or a list (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub command: Option<Value>,
    /// User name or uid[:gid] (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub user: Option<String>,
    /// Working directory (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub working_dir: Option<String>,
    /// `["K=V"]` or `{"K": "V"}` (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub environment: Option<Value>,
    /// `{"container": "alias"}` (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub links: Option<Value>,
    /// Labels to set (an extension).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub labels: Option<BTreeMap<String, String>>,
    /// Network settings.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub network: Option<Object<Network>>,
    /// Resource limits and devices.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub resource: Option<Object<Resource>>,
    /// Volumes.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub volume: Option<Object<Volume>>,
}

/// Catalog metadata of the image; not used to create the container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Download {
    /// Description of the image.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub description: Option<String>,
    /// URL of the image's page.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub location: Option<String>,
    /// Icon URL.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub icon: Option<String>,
}

/// `network`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Network {
    /// DNS servers (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub dns: Option<Vec<String>>,
    /// Ports exposed without publishing (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub expose_port: Option<Vec<Value>>,
    /// Host name.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub hostname: Option<String>,
    /// Published ports, `[[host, container, "tcp"|"udp"]]`.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub port: Option<Vec<Value>>,
    /// `nat` (the engine's default network) or `bridge` (a host interface).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub mode: Option<String>,
    /// The `bridge` mode's settings.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub bridge: Option<Object<Bridge>>,
    /// MAC address of the container's interface.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub mac_addr: Option<String>,
    /// Host interface for `bridge` mode.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub interface: Option<String>,
    /// `true`/`false` (join the interface's existing network), or the name
    /// of a container whose network namespace to share.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub join: Option<Value>,
}

/// `network.bridge`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Bridge {
    /// `dhcp` (the default: the address is assigned on the network).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub mode: Option<String>,
    /// The host interface and the container's interface name.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub interface: Option<Object<BridgeInterface>>,
}

/// `network.bridge.interface`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BridgeInterface {
    /// The host interface (or bridge) to attach to.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub bridge: Option<String>,
    /// The container's interface name; `eth0`.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub name: Option<String>,
}

/// `resource`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Resource {
    /// CPU and memory limits.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub limit: Option<Object<Limit>>,
    /// Devices, `[["allow", "video4linux_(81)", "rw"]]`.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub device: Option<Vec<Value>>,
}

/// `resource.limit`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Relative CPU weight, 2..=1024.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub cpuweight: Option<Value>,
    /// Milliseconds of CPU per 1000 ms, 10..=999.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub cputime: Option<Value>,
    /// Memory limit, `"768m"`, at least 64m.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub memory: Option<Value>,
}

/// `volume`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Volume {
    /// Share folders to mount: `{"/share/path": {"bind": "/in/container", "ro": false}}`.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub host: Option<BTreeMap<String, Object<HostBind>>>,
    /// Containers whose volumes to mount (docker).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub container: Option<Vec<String>>,
    /// New anonymous volumes, by path inside the container (docker): a list,
    /// or an object whose keys are the paths (as the engine's inspect shows them).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub new: Option<Value>,
}

/// One `volume.host` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(not(feature = "schema"), derive(Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HostBind {
    /// Path inside the container.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub bind: Option<String>,
    /// Mount read-only.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub ro: Option<bool>,
    /// Mount read-write (what some clients send instead of `ro`); `ro` and
    /// `rw` given together must agree.
    #[serde(default)]
    #[cfg_attr(
        not(feature = "schema"),
        serde(skip_serializing_if = "Option::is_none")
    )]
    pub rw: Option<bool>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_fields_are_left_out_and_a_written_body_reads_back() {
        let body = CreateParams {
            kind: Some("lxc".into()),
            name: Some("a".into()),
            network: Some(Object(Network {
                port: Some(vec![json!([80, 8080, "tcp"])]),
                ..Default::default()
            })),
            ..Default::default()
        };
        let written = serde_json::to_value(&body).unwrap();
        assert_eq!(
            written,
            json!({"type": "lxc", "name": "a", "network": {"port": [[80, 8080, "tcp"]]}})
        );
        assert_eq!(
            serde_json::from_value::<CreateParams>(written).unwrap(),
            body
        );
    }

    #[test]
    fn nested_settings_must_be_objects() {
        let err = serde_json::from_value::<CreateParams>(json!({"network": [1]})).unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        let err = serde_json::from_value::<CreateParams>(
            json!({"resource": {"limit": {"memroy": "1g"}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `memroy`"), "{err}");
    }

    #[test]
    fn the_pointers_reach_the_fields_of_the_type() {
        let body = CreateParams {
            privileged: Some(true),
            resource: Some(Object(Resource {
                device: Some(vec![json!("c 81:* rw")]),
                ..Default::default()
            })),
            network: Some(Object(Network {
                port: Some(vec![json!([8080, 80])]),
                ..Default::default()
            })),
            ..Default::default()
        };
        let written = serde_json::to_value(&body).unwrap();
        assert_eq!(written.pointer(pointers::PRIVILEGED), Some(&json!(true)));
        assert_eq!(
            written.pointer(pointers::DEVICES),
            Some(&json!(["c 81:* rw"]))
        );
        assert_eq!(written.pointer(pointers::PORTS), Some(&json!([[8080, 80]])));
    }
}
