//! The policy of the API's `networks` and `volumes` routes, as pure
//! functions of a user's [`Policy`] and an object's engine JSON, so the
//! guard and the API decide alike:
//!
//! - a user sees their own networks and volumes (owner label), the
//!   engine's built-in networks, and every other one when their policy
//!   reaches all containers;
//! - a non-admin creates `bridge` networks only, with no driver options but
//!   the MTU and inter-container traffic, and `local` volumes only, with no
//!   driver options but a `tmpfs` (a `local` volume's options can bind any
//!   host folder or mount a network share).

use serde_json::Value;

use crate::policy::{ContainerScope, Policy, OWNER_LABEL};
use crate::runtime::traits::networks::NetworkSpec;
use crate::runtime::traits::volumes::VolumeSpec;

/// The networks every Docker engine makes itself; everyone sees them, and
/// nobody removes them.
pub const BUILT_IN_NETWORKS: &[&str] = &["bridge", "host", "none"];

/// The driver options a non-admin may give a network.
const USER_NETWORK_OPTIONS: &[&str] = &[
    "com.docker.network.driver.mtu",
    "com.docker.network.bridge.enable_icc",
];

/// The mount options a non-admin may give a `tmpfs` volume.
const USER_TMPFS_OPTIONS: &[&str] = &["size", "uid", "gid", "mode", "nr_inodes"];

/// The owner label of an engine object's JSON (`Labels`), if any.
pub fn owner_of(object: &Value) -> Option<&str> {
    object["Labels"][OWNER_LABEL].as_str()
}

/// Whether `network` (the engine's JSON) is one of its built-in networks.
pub fn is_built_in(network: &Value) -> bool {
    owner_of(network).is_none()
        && network["Name"]
            .as_str()
            .is_some_and(|n| BUILT_IN_NETWORKS.contains(&n))
}

/// Whether `policy` reaches every container, network and volume.
fn reaches_all(policy: &Policy) -> bool {
    policy.containers == ContainerScope::All
}

/// Whether `object` (a network or volume) is the user's own.
pub fn is_own(policy: &Policy, object: &Value) -> bool {
    owner_of(object) == Some(policy.user.as_str())
}

/// Whether the user sees `network`.
pub fn sees_network(policy: &Policy, network: &Value) -> bool {
    reaches_all(policy) || is_own(policy, network) || is_built_in(network)
}

/// Whether the user sees `volume`.
pub fn sees_volume(policy: &Policy, volume: &Value) -> bool {
    reaches_all(policy) || is_own(policy, volume)
}

/// Whether the user may remove `object`, connect to or disconnect from it.
pub fn acts_on(policy: &Policy, object: &Value) -> bool {
    reaches_all(policy) || is_own(policy, object)
}

/// Why the user may not create `spec`, naming the field; `None`: they may.
pub fn network_refusal(policy: &Policy, spec: &NetworkSpec) -> Option<String> {
    if policy.admin {
        return None;
    }
    if spec.driver != "bridge" {
        return Some(format!(
            "driver: only `bridge` networks are allowed for user {} (`{}` reaches the host's network)",
            policy.user, spec.driver
        ));
    }
    if spec.ipam_driver.as_deref().is_some_and(|d| d != "default") {
        return Some(format!(
            "ipam.Driver: only the `default` IPAM driver is allowed for user {}",
            policy.user
        ));
    }
    if !spec.ipam_options.is_empty() {
        return Some(format!(
            "ipam.Options: not allowed for user {}",
            policy.user
        ));
    }
    spec.options
        .keys()
        .find(|k| !USER_NETWORK_OPTIONS.contains(&k.as_str()))
        .map(|k| {
            format!(
                "options.{k}: not allowed for user {} (allowed: {})",
                policy.user,
                USER_NETWORK_OPTIONS.join(", ")
            )
        })
}

/// Why the user may not create `spec`, naming the field; `None`: they may.
pub fn volume_refusal(policy: &Policy, spec: &VolumeSpec) -> Option<String> {
    if policy.admin {
        return None;
    }
    if spec.driver != "local" {
        return Some(format!(
            "driver: only `local` volumes are allowed for user {}",
            policy.user
        ));
    }
    for (key, value) in &spec.driver_opts {
        let allowed = match key.as_str() {
            "type" | "device" => value == "tmpfs",
            "o" => value.split(',').all(|o| {
                let name = o.split_once('=').map_or(o, |(n, _)| n);
                USER_TMPFS_OPTIONS.contains(&name)
            }),
            _ => false,
        };
        if !allowed {
            return Some(format!(
                "driver_opts.{key}: only a tmpfs (`type` and `device` `tmpfs`, `o` of {}) is allowed for user {}",
                USER_TMPFS_OPTIONS.join(", "),
                policy.user
            ));
        }
    }
    if !spec.driver_opts.is_empty()
        && (spec.driver_opts.get("type").map(String::as_str) != Some("tmpfs")
            || spec.driver_opts.get("device").map(String::as_str) != Some("tmpfs"))
    {
        return Some(format!(
            "driver_opts: a tmpfs volume needs both `type` and `device` `tmpfs` for user {}",
            policy.user
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bob() -> Policy {
        Policy::restricted("bob")
    }

    #[test]
    fn a_user_sees_their_own_and_the_built_in_networks() {
        let mine = json!({"Name": "n1", "Labels": {OWNER_LABEL: "bob"}});
        let theirs = json!({"Name": "n2", "Labels": {OWNER_LABEL: "alice"}});
        let bridge = json!({"Name": "bridge", "Labels": {}});
        let unlabelled = json!({"Name": "other", "Labels": {}});
        let fake_bridge = json!({"Name": "bridge", "Labels": {OWNER_LABEL: "alice"}});
        let p = bob();
        assert!(sees_network(&p, &mine) && acts_on(&p, &mine));
        assert!(!sees_network(&p, &theirs) && !acts_on(&p, &theirs));
        assert!(sees_network(&p, &bridge) && !acts_on(&p, &bridge));
        assert!(!sees_network(&p, &unlabelled));
        assert!(!sees_network(&p, &fake_bridge));
        let admin = Policy::unrestricted("admin");
        assert!(sees_network(&admin, &theirs) && acts_on(&admin, &unlabelled));
        assert!(sees_volume(&p, &json!({"Labels": {OWNER_LABEL: "bob"}})));
        assert!(!sees_volume(&p, &json!({"Labels": null})));
    }

    #[test]
    fn a_non_admin_makes_plain_bridges_and_local_volumes() {
        let p = bob();
        let mut net = NetworkSpec {
            name: "n".into(),
            driver: "bridge".into(),
            ..Default::default()
        };
        assert_eq!(network_refusal(&p, &net), None);
        net.options
            .insert("com.docker.network.driver.mtu".into(), "1400".into());
        assert_eq!(network_refusal(&p, &net), None);
        net.options
            .insert("com.docker.network.bridge.name".into(), "eth0".into());
        assert!(network_refusal(&p, &net)
            .unwrap()
            .starts_with("options.com.docker.network.bridge.name: "));
        net.options.clear();
        net.driver = "macvlan".into();
        assert!(network_refusal(&p, &net).unwrap().starts_with("driver: "));
        assert_eq!(network_refusal(&Policy::unrestricted("admin"), &net), None);

        let mut vol = VolumeSpec {
            name: "v".into(),
            driver: "local".into(),
            ..Default::default()
        };
        assert_eq!(volume_refusal(&p, &vol), None);
        vol.driver_opts = [
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=100m,uid=1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(volume_refusal(&p, &vol), None);
        vol.driver_opts.insert("o".into(), "bind".into());
        assert!(volume_refusal(&p, &vol)
            .unwrap()
            .starts_with("driver_opts.o: "));
        vol.driver_opts = [("type", "none"), ("device", "/etc"), ("o", "bind")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(volume_refusal(&p, &vol)
            .unwrap()
            .starts_with("driver_opts."));
        vol.driver_opts = [("o", "size=1m")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(volume_refusal(&p, &vol)
            .unwrap()
            .starts_with("driver_opts: "));
        assert_eq!(volume_refusal(&Policy::unrestricted("admin"), &vol), None);
    }
}
