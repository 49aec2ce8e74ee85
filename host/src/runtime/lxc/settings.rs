//! An LXC container's settings, read from our record and changed in its
//! `config` (the resource routes). LXC reads the config at each start:
//! autostart, limits, devices and host folders changed here apply from the
//! container's next start (a running one keeps them until then); ports
//! are its DNAT rules, changed at once.

use std::path::Path;

use serde_json::{json, Value};

use super::conf::{self, Cgroups, Record};
use super::{io_err, LxcRuntime};
use crate::runtime::{
    BindMount, ChangeSettings, ContainerRef, ContainerSpec, Error, Limits, PortBinding, RtResult,
    RuntimeKind, SettingsChange,
};

/// The config keys (after the cgroup prefix) that hold limits.
const LIMIT_KEYS: [&str; 7] = [
    "memory.max",
    "memory.limit_in_bytes",
    "cpu.weight",
    "cpu.shares",
    "cpu.max",
    "cpu.cfs_period_us",
    "cpu.cfs_quota_us",
];

/// The key of a config line, trimmed (`None` for a comment or a blank line).
fn key_of(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.starts_with('#') {
        return None;
    }
    line.split_once('=').map(|(k, _)| k.trim())
}

/// Whether `key` is a cgroup setting (`lxc.cgroup.X` or `lxc.cgroup2.X`)
/// whose `X` is one of `names`.
fn cgroup_key_in(key: &str, names: &[&str]) -> bool {
    let rest = key
        .strip_prefix("lxc.cgroup2.")
        .or_else(|| key.strip_prefix("lxc.cgroup."));
    rest.is_some_and(|r| names.contains(&r))
}

/// `config` without the lines whose key `drop` picks, with `added` lines after.
fn rewrite(config: &str, drop: impl Fn(&str) -> bool, added: &[(String, String)]) -> String {
    let mut out = String::new();
    for line in config.lines() {
        if key_of(line).is_some_and(&drop) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (k, v) in added {
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// The config lines of `limits` under `cgroups`' keys (as a create writes them).
fn limit_lines(cgroups: Cgroups, limits: &Limits) -> Vec<(String, String)> {
    let (prefix, v2) = match cgroups {
        Cgroups::V1 => ("lxc.cgroup", false),
        Cgroups::V2 => ("lxc.cgroup2", true),
    };
    let mut out = Vec::new();
    if let Some(bytes) = limits.memory_bytes {
        let key = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        out.push((format!("{prefix}.{key}"), bytes.to_string()));
    }
    if let Some(shares) = limits.cpu_shares {
        if v2 {
            let weight = conf::shares_to_weight(shares).to_string();
            out.push((format!("{prefix}.cpu.weight"), weight));
        } else {
            out.push((format!("{prefix}.cpu.shares"), shares.to_string()));
        }
    }
    if let Some(ms) = limits.cpu_time_ms {
        let quota = u64::from(ms) * 100;
        if v2 {
            out.push((format!("{prefix}.cpu.max"), format!("{quota} 100000")));
        } else {
            out.push((format!("{prefix}.cpu.cfs_period_us"), "100000".into()));
            out.push((format!("{prefix}.cpu.cfs_quota_us"), quota.to_string()));
        }
    }
    out
}

/// Set `value` at `path` (object keys) in `create`, making the objects on
/// the way; `None` removes the key.
fn set_in(create: &mut Value, path: &[&str], value: Option<Value>) {
    if !create.is_object() {
        *create = json!({});
    }
    let mut at = create;
    for key in &path[..path.len() - 1] {
        let object = at.as_object_mut().expect("made an object above");
        let next = object.entry(*key).or_insert_with(|| json!({}));
        if !next.is_object() {
            *next = json!({});
        }
        at = next;
    }
    let object = at.as_object_mut().expect("made an object above");
    let last = path[path.len() - 1];
    match value {
        Some(v) => {
            object.insert(last.to_string(), v);
        }
        None => {
            object.remove(last);
        }
    }
}

impl LxcRuntime {
    /// The container's settings in the create body's shape: our record's,
    /// with the config's autostart.
    pub(super) fn settings(&self, c: &ContainerRef) -> RtResult<Value> {
        let dir = self.existing(&c.id)?;
        let mut create = Record::read(&dir).map(|r| r.create).unwrap_or(Value::Null);
        let config = std::fs::read_to_string(dir.join("config"))
            .map_err(|e| io_err("reading", &dir.join("config"), e))?;
        let autostart = config.lines().any(|l| {
            key_of(l) == Some("lxc.start.auto")
                && l.split_once('=').is_some_and(|(_, v)| v.trim() == "1")
        });
        set_in(&mut create, &["autostart"], Some(json!(autostart)));
        set_in(&mut create, &["type"], Some(json!("lxc")));
        set_in(&mut create, &["name"], Some(json!(c.id)));
        Ok(create)
    }

    /// Change one setting in the container's config and our record.
    pub(super) async fn change_settings(&self, req: ChangeSettings) -> RtResult<()> {
        let dir = self.existing(&req.container.id)?;
        let path = dir.join("config");
        let config = std::fs::read_to_string(&path).map_err(|e| io_err("reading", &path, e))?;
        let mut record = Record::read(&dir);
        let create = record.as_mut().map(|r| &mut r.create);
        let new = match &req.change {
            SettingsChange::Autostart(on) => {
                if let Some(c) = create {
                    set_in(c, &["autostart"], Some(json!(on)));
                }
                let value = if *on { "1" } else { "0" };
                let added = [("lxc.start.auto".to_string(), value.to_string())];
                rewrite(&config, |k| k == "lxc.start.auto", &added)
            }
            SettingsChange::Limits(l) => {
                if let Some(c) = create {
                    let limit = json!({
                        "cpuweight": l.cpu_shares,
                        "cputime": l.cpu_time_ms,
                        "memory": l.memory_bytes,
                    });
                    let limit: serde_json::Map<String, Value> = limit
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    set_in(c, &["resource", "limit"], Some(Value::Object(limit)));
                }
                let added = limit_lines(self.cgroups, l);
                rewrite(&config, |k| cgroup_key_in(k, &LIMIT_KEYS), &added)
            }
            SettingsChange::Devices(rules) => {
                let mut added = Vec::new();
                let prefix = match self.cgroups {
                    Cgroups::V1 => "lxc.cgroup",
                    Cgroups::V2 => "lxc.cgroup2",
                };
                for rule in rules {
                    let key = format!("{prefix}.devices.allow");
                    added.push((key, conf::device_rule(rule)?));
                }
                if let Some(c) = create {
                    set_in(c, &["resource", "device"], Some(json!(rules)));
                }
                rewrite(&config, |k| cgroup_key_in(k, &["devices.allow"]), &added)
            }
            SettingsChange::HostBinds(binds) => {
                return self.change_binds(&dir, &config, record, binds);
            }
            SettingsChange::Ports(ports) => {
                return self
                    .change_ports(&dir, record, &req.container.id, ports)
                    .await;
            }
        };
        write_atomically(&path, &new)?;
        if let Some(r) = record {
            r.write(&dir)?;
        }
        Ok(())
    }
}

impl LxcRuntime {
    /// Replace the container's published ports (its DNAT rules, at once):
    /// the old ones are dropped and the new ones published; when the new
    /// ones cannot be (a port taken), the old ones are published again.
    async fn change_ports(
        &self,
        dir: &Path,
        record: Option<Record>,
        name: &str,
        ports: &[PortBinding],
    ) -> RtResult<()> {
        let mut record = record.ok_or_else(|| {
            Error::Unsupported(format!("container {name} was not made by this server"))
        })?;
        let lease = record
            .lease
            .clone()
            .ok_or_else(|| Error::Runtime(format!("container {name} has no address")))?;
        let spec = ContainerSpec {
            ports: ports.to_vec(),
            ..ContainerSpec::new(RuntimeKind::Lxc, name, String::new())
        };
        let new = conf::ports(&spec)?;
        self.network.unpublish(&lease).await?;
        if let Err(e) = self.network.publish(&lease, &new).await {
            if let Err(back) = self.network.publish(&lease, &record.ports).await {
                tracing::warn!(container = %name, "republishing the old ports: {}", back.message());
            }
            return Err(e);
        }
        let shown: Vec<Value> = new
            .iter()
            .map(|p| json!([p.host, p.container, if p.udp { "udp" } else { "tcp" }]))
            .collect();
        set_in(
            &mut record.create,
            &["network", "port"],
            Some(Value::Array(shown)),
        );
        record.ports = new;
        record.write(dir)
    }

    /// Replace the container's host folders: the new ones pinned, their
    /// `lxc.mount.entry` lines in place of the old pinned ones, whose pins
    /// are released once the config is written (the new ones', on a failure).
    fn change_binds(
        &self,
        dir: &Path,
        config: &str,
        mut record: Option<Record>,
        binds: &[BindMount],
    ) -> RtResult<()> {
        let sources = self.share.pin_sources(binds)?;
        let staged = self.pins.pin(&sources)?;
        let staged_text: Vec<String> = staged.iter().map(|p| p.display().to_string()).collect();
        let old: Vec<String> = conf::mount_sources(config)
            .into_iter()
            .filter(|s| self.pins.original(s).is_some())
            .collect();
        let written = (|| {
            let mut added = Vec::new();
            for (i, (bind, host)) in binds.iter().zip(&staged).enumerate() {
                let entry = conf::mount_entry(&format!("volume.host[{i}]"), bind, host)?;
                added.push(("lxc.mount.entry".to_string(), entry));
            }
            // Only the entries of pinned folders are the container's host folders.
            let mut kept = String::new();
            for line in config.lines() {
                let pinned = key_of(line) == Some("lxc.mount.entry")
                    && conf::mount_sources(line)
                        .first()
                        .is_some_and(|s| old.contains(s));
                if !pinned {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            let text = rewrite(&kept, |_| false, &added);
            write_atomically(&dir.join("config"), &text)?;
            if let Some(r) = record.as_mut() {
                let host: serde_json::Map<String, Value> = binds
                    .iter()
                    .map(|b| {
                        let key = format!("/{}", b.host_path.trim_start_matches('/'));
                        (key, json!({"bind": b.container_path, "ro": b.read_only}))
                    })
                    .collect();
                set_in(
                    &mut r.create,
                    &["volume", "host"],
                    Some(Value::Object(host)),
                );
                r.write(dir)?;
            }
            Ok(())
        })();
        match written {
            Ok(()) => self.pins.release(old.iter().map(String::as_str)),
            Err(_) => self.pins.release(staged_text.iter().map(String::as_str)),
        }
        written
    }
}

/// Write `text` to `path` through a temporary file beside it.
fn write_atomically(path: &Path, text: &str) -> RtResult<()> {
    let temp = path.with_extension("stevedore-tmp");
    std::fs::write(&temp, text)
        .and_then(|_| std::fs::rename(&temp, path))
        .map_err(|e| io_err("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_replaces_only_the_named_keys() {
        let config = "# c\nlxc.start.auto = 0\nlxc.cgroup2.memory.max = 5\nlxc.cgroup2.devices.allow = c 1:* r\nlxc.uts.name = a\n";
        let on = [("lxc.start.auto".to_string(), "1".to_string())];
        let out = rewrite(config, |k| k == "lxc.start.auto", &on);
        assert_eq!(
            out,
            "# c\nlxc.cgroup2.memory.max = 5\nlxc.cgroup2.devices.allow = c 1:* r\nlxc.uts.name = a\nlxc.start.auto = 1\n"
        );
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            ..Default::default()
        };
        let out = rewrite(
            config,
            |k| cgroup_key_in(k, &LIMIT_KEYS),
            &limit_lines(Cgroups::V2, &limits),
        );
        assert!(
            out.ends_with("lxc.cgroup2.memory.max = 67108864\n"),
            "{out}"
        );
        assert!(!out.contains("= 5\n"));
        assert!(out.contains("devices.allow = c 1:* r"));
    }

    #[test]
    fn settings_are_set_in_nested_objects() {
        let mut create = json!({"resource": {"device": ["c 1:* r"]}});
        set_in(
            &mut create,
            &["resource", "limit"],
            Some(json!({"cputime": 100})),
        );
        set_in(&mut create, &["autostart"], Some(json!(true)));
        assert_eq!(
            create,
            json!({"autostart": true, "resource": {"device": ["c 1:* r"], "limit": {"cputime": 100}}})
        );
        set_in(&mut create, &["resource", "device"], None);
        assert_eq!(create["resource"], json!({"limit": {"cputime": 100}}));
    }
}
