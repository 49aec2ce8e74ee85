//! Who may do what: one [`Policy`] per user, from the configuration, and
//! the checks that enforce it. The checks are plain functions of a policy
//! and a request, unit-tested here; [`crate::runtime::guard`] applies them
//! to every runtime call, whichever plugin (or container route) makes it,
//! so a policy holds at the capability layer and not only at submit time.
//!
//! ```toml
//! [policy.default]                  # every non-admin, key by key
//! categories = ["create", "image_download", "image_export"]
//! privileged = false                # default false for non-admins
//! devices = []                      # device rules allowed: "c 81" (type, major) or "*"
//! share = "{user}"                  # the user's folder under the share root
//! registries = ["local", "dockerhub"]
//! containers = "own"                # or "all": which containers the routes show and act on
//! ports = "1024-65535"              # host ports a container may publish ("" or "*": any)
//! [policy.default.limits]
//! memory = "1g"                     # per container: caps and default
//! cpu_weight = 512                  # 2..=1024
//! cpu_time = 500                    # ms of CPU per 1000 ms
//! running_tasks = 2                 # the user's tasks running at once
//! waiting_tasks = 1000              # the user's tasks waiting at once (default 1000 for non-admins)
//! schedules = 20                    # the user's schedules (default 20 for non-admins; 0: none)
//! webhooks = 10                     # the user's webhooks (default 10 for non-admins; 0: none)
//!
//! [users.bob.policy]                # bob's own keys win over [policy.default]
//! privileged = true
//! ```
//!
//! Admins are unrestricted unless `[users.NAME.policy]` says otherwise.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The label that records which user a container (network, volume) was
/// created for.
pub use stevedore_contract::labels::OWNER as OWNER_LABEL;

/// The file in an application's folder that records who installed it.
pub use stevedore_contract::files::APP_OWNER as APP_OWNER_FILE;

/// The policy keys of the configuration file, every one optional: a key
/// left out keeps the value of the layer below (defaults, then
/// `[policy.default]` for non-admins, then `[users.NAME.policy]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Categories the user may submit (absent: every loaded one).
    pub categories: Option<Vec<String>>,
    /// Whether the user may create privileged containers.
    pub privileged: Option<bool>,
    /// Device rules that may be passed through: `"c 81"` (type and major
    /// number, any minor) or `"*"` for every device.
    pub devices: Option<Vec<String>>,
    /// The user's folder under the share root, for every `path` and volume
    /// host folder; `{user}` stands for the user name, `""` is the whole root.
    pub share: Option<String>,
    /// Registry names (from `[registries]`, plus `dockerhub` and `qnap`)
    /// the user may pull from and push to (absent: all).
    pub registries: Option<Vec<String>>,
    /// Which containers the container routes show and act on.
    pub containers: Option<ContainerScope>,
    /// Caps.
    pub limits: Option<LimitsConfig>,
    /// Host ports a container may publish: `"1024-65535"`, `"8000"`, or
    /// `"*"` (or `""`) for any.
    pub ports: Option<String>,
}

/// `limits` of a policy, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Memory per container, e.g. `"768m"`, `"1g"`: the most a container
    /// may ask, and what it gets when it asks nothing.
    pub memory: Option<String>,
    /// Highest relative CPU weight per container (2..=1024).
    pub cpu_weight: Option<u32>,
    /// Most CPU time per container, ms per 1000 ms (10..=999).
    pub cpu_time: Option<u32>,
    /// The user's tasks running at the same time; more wait.
    pub running_tasks: Option<usize>,
    /// The user's tasks waiting at the same time; a submit past it is
    /// refused (429).
    pub waiting_tasks: Option<usize>,
    /// The user's schedules; creating one past it is refused (429).
    pub schedules: Option<usize>,
    /// The user's webhooks; creating one past it is refused (429).
    pub webhooks: Option<usize>,
}

/// Which containers a user's container calls reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerScope {
    /// Only those created by the user's own tasks (labelled with [`OWNER_LABEL`]).
    Own,
    /// Every container.
    All,
}

/// `[policy]` of the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// What every non-admin gets, over the safe defaults.
    pub default: Option<PolicyConfig>,
}

/// A user's effective policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Whose.
    pub user: String,
    /// Whether the user is an admin.
    pub admin: bool,
    /// Categories allowed; `None`: all.
    pub categories: Option<BTreeSet<String>>,
    /// Privileged containers allowed.
    pub privileged: bool,
    /// Device rules allowed (`"c 81"`, `"*"`).
    pub devices: Vec<String>,
    /// The user's folder, relative to the share root (`""`: the whole root).
    pub share: String,
    /// Registries allowed; `None`: all.
    pub registries: Option<BTreeSet<String>>,
    /// Which containers the user's calls reach.
    pub containers: ContainerScope,
    /// Memory cap per container, bytes.
    pub memory: Option<u64>,
    /// CPU weight cap per container.
    pub cpu_weight: Option<u32>,
    /// CPU time cap per container, ms per 1000 ms.
    pub cpu_time: Option<u32>,
    /// The user's tasks running at once.
    pub running_tasks: Option<usize>,
    /// The user's tasks waiting at once; `None`: no cap.
    pub waiting_tasks: Option<usize>,
    /// The user's schedules at once; `None`: no cap.
    pub schedules: Option<usize>,
    /// The user's webhooks at once; `None`: no cap.
    pub webhooks: Option<usize>,
    /// Host ports the user may publish, inclusive; `None`: any.
    pub ports: Option<(u16, u16)>,
}

/// The default `limits.waiting_tasks` of a non-admin.
pub const DEFAULT_WAITING_TASKS: usize = 1000;

/// The default `limits.schedules` of a non-admin.
pub const DEFAULT_SCHEDULES: usize = 20;

/// The default `limits.webhooks` of a non-admin.
pub const DEFAULT_WEBHOOKS: usize = 10;

/// The host ports a non-admin may publish by default: none of the
/// privileged ones below 1024 (ssh, http, the NAS's own services).
pub const DEFAULT_PORTS: (u16, u16) = (1024, 65535);

/// Why a policy refused; the text names the rule and the user, e.g.
/// `privileged containers are not allowed for user bob`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// The sentence shown to the user.
    pub message: String,
}

fn refused(message: String) -> Refused {
    Refused { message }
}

impl Policy {
    /// No restriction at all: an admin without policy keys.
    pub fn unrestricted(user: &str) -> Policy {
        Policy {
            user: user.to_string(),
            admin: true,
            categories: None,
            privileged: true,
            devices: vec!["*".into()],
            share: String::new(),
            registries: None,
            containers: ContainerScope::All,
            memory: None,
            cpu_weight: None,
            cpu_time: None,
            running_tasks: None,
            waiting_tasks: None,
            schedules: None,
            webhooks: None,
            ports: None,
        }
    }

    /// The safe defaults of a non-admin: no privileged containers, no
    /// devices, their own share folder and their own containers.
    pub fn restricted(user: &str) -> Policy {
        Policy {
            admin: false,
            privileged: false,
            devices: Vec::new(),
            share: user.to_string(),
            containers: ContainerScope::Own,
            waiting_tasks: Some(DEFAULT_WAITING_TASKS),
            schedules: Some(DEFAULT_SCHEDULES),
            webhooks: Some(DEFAULT_WEBHOOKS),
            ports: Some(DEFAULT_PORTS),
            ..Policy::unrestricted(user)
        }
    }

    /// This policy with the keys `layer` sets.
    pub fn overlay(mut self, layer: &PolicyConfig) -> Result<Policy, String> {
        if let Some(c) = &layer.categories {
            self.categories = Some(c.iter().cloned().collect());
        }
        if let Some(p) = layer.privileged {
            self.privileged = p;
        }
        if let Some(d) = &layer.devices {
            for rule in d {
                parse_device_allow(rule)?;
            }
            self.devices = d.clone();
        }
        if let Some(s) = &layer.share {
            self.share = share_folder(s, &self.user)?;
        }
        if let Some(r) = &layer.registries {
            self.registries = Some(r.iter().cloned().collect());
        }
        if let Some(c) = layer.containers {
            self.containers = c;
        }
        if let Some(p) = &layer.ports {
            self.ports = parse_port_range(p).map_err(|e| format!("ports: {e}"))?;
        }
        if let Some(l) = &layer.limits {
            if let Some(m) = &l.memory {
                self.memory = Some(parse_memory(m).map_err(|e| format!("limits.memory: {e}"))?);
            }
            if let Some(w) = l.cpu_weight {
                if !(2..=1024).contains(&w) {
                    return Err("limits.cpu_weight: must be 2..=1024".into());
                }
                self.cpu_weight = Some(w);
            }
            if let Some(t) = l.cpu_time {
                if !(10..=999).contains(&t) {
                    return Err("limits.cpu_time: must be 10..=999".into());
                }
                self.cpu_time = Some(t);
            }
            if let Some(n) = l.running_tasks {
                if n == 0 {
                    return Err("limits.running_tasks: must be at least 1".into());
                }
                self.running_tasks = Some(n);
            }
            if let Some(n) = l.waiting_tasks {
                if n == 0 {
                    return Err("limits.waiting_tasks: must be at least 1".into());
                }
                self.waiting_tasks = Some(n);
            }
            if let Some(n) = l.schedules {
                self.schedules = Some(n);
            }
            if let Some(n) = l.webhooks {
                self.webhooks = Some(n);
            }
        }
        Ok(self)
    }

    /// Refused: `what` (`category x`, `device ...`) is not allowed for the user.
    fn not_allowed(&self, what: &str) -> Refused {
        refused(format!("{what} is not allowed for user {}", self.user))
    }

    /// `Ok` when `allowed` (`None`: every one) holds `name`, else refused
    /// naming it (`<kind> <name>`).
    fn allows_in(
        &self,
        allowed: &Option<BTreeSet<String>>,
        kind: &str,
        name: &str,
    ) -> Result<(), Refused> {
        match allowed {
            Some(set) if !set.contains(name) => Err(self.not_allowed(&format!("{kind} {name}"))),
            _ => Ok(()),
        }
    }

    /// May the user submit tasks of `category`?
    pub fn allows_category(&self, category: &str) -> Result<(), Refused> {
        self.allows_in(&self.categories, "category", category)
    }

    /// May the user create a privileged container?
    pub fn allows_privileged(&self, privileged: bool) -> Result<(), Refused> {
        if privileged && !self.privileged {
            return Err(refused(format!(
                "privileged containers are not allowed for user {}",
                self.user
            )));
        }
        Ok(())
    }

    /// May the user pass this device rule (`c 81:* rwm`) through?
    pub fn allows_device(&self, rule: &str) -> Result<(), Refused> {
        let asked = device_of_rule(rule);
        let ok = self.devices.iter().any(|allowed| {
            allowed == "*" || (asked.is_some() && parse_device_allow(allowed).ok() == asked)
        });
        if ok {
            Ok(())
        } else {
            Err(self.not_allowed(&format!("device `{rule}`")))
        }
    }

    /// May the user use the registry named `name` (`dockerhub`, `qnap`, or a
    /// name from `[registries]`)?
    pub fn allows_registry(&self, name: &str) -> Result<(), Refused> {
        self.allows_in(&self.registries, "registry", name)
    }

    /// May the user publish host port `port` (entry `index` of `network.port`)?
    /// Port 0 (the engine picks a free one) is always allowed.
    pub fn allows_host_port(&self, index: usize, port: u16) -> Result<(), Refused> {
        match self.ports {
            Some((low, high)) if port != 0 && !(low..=high).contains(&port) => {
                Err(refused(format!(
                    "network.port[{index}]: host port {port} is outside {low}-{high}, the ports allowed for user {}",
                    self.user
                )))
            }
            _ => Ok(()),
        }
    }

    /// May the user act on a container whose owner label is `owner`?
    pub fn allows_container(&self, name: &str, owner: Option<&str>) -> Result<(), Refused> {
        if self.containers == ContainerScope::All || owner == Some(self.user.as_str()) {
            Ok(())
        } else {
            Err(refused(format!(
                "container {name} was not created by user {}",
                self.user
            )))
        }
    }

    /// A user path (relative to the share root, a leading `/` meaning the
    /// root) as a path relative to the share root inside the user's folder.
    pub fn scope_path(&self, path: &str) -> String {
        let rel = path.trim_start_matches('/');
        if self.share.is_empty() {
            rel.to_string()
        } else if rel.is_empty() {
            self.share.clone()
        } else {
            format!("{}/{rel}", self.share)
        }
    }

    /// Apply the memory and CPU caps to a container's asks: a missing ask
    /// gets the cap, a larger one is refused.
    pub fn cap_resources(
        &self,
        memory: &mut Option<u64>,
        cpu_weight: &mut Option<u32>,
        cpu_time: &mut Option<u32>,
    ) -> Result<(), Refused> {
        fn cap<T: PartialOrd + Copy + std::fmt::Display>(
            user: &str,
            what: &str,
            ask: &mut Option<T>,
            max: Option<T>,
            show: impl Fn(T) -> String,
        ) -> Result<(), Refused> {
            let Some(max) = max else { return Ok(()) };
            match *ask {
                None => *ask = Some(max),
                Some(a) if a > max => {
                    return Err(refused(format!(
                        "{what} {} is over the limit {} for user {user}",
                        show(a),
                        show(max)
                    )))
                }
                Some(_) => {}
            }
            Ok(())
        }
        cap(&self.user, "memory", memory, self.memory, show_bytes)?;
        cap(&self.user, "cpu weight", cpu_weight, self.cpu_weight, |v| {
            v.to_string()
        })?;
        cap(&self.user, "cpu time", cpu_time, self.cpu_time, |v| {
            format!("{v} ms/s")
        })
    }
}

fn show_bytes(b: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if b.is_multiple_of(1024 * MIB) {
        format!("{}g", b / (1024 * MIB))
    } else if b.is_multiple_of(MIB) {
        format!("{}m", b / MIB)
    } else {
        format!("{b} bytes")
    }
}

/// `"768m"`, `"1g"`, `"512k"`, `"1048576"` as bytes.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 768m or 1g"))?;
    let mult = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("`{text}`: the unit is k, m or g")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `"c 81"` → `('c', 81)`; also accepts `"c 81:*"`.
fn parse_device_allow(text: &str) -> Result<(char, u32), String> {
    if text == "*" {
        return Ok(('*', 0));
    }
    device_of_rule(text).ok_or_else(|| {
        format!("devices: `{text}` is not a device like \"c 81\" (type, major number) or \"*\"")
    })
}

/// The type and major number of a device cgroup rule (`c 81:* rwm`).
fn device_of_rule(rule: &str) -> Option<(char, u32)> {
    let mut parts = rule.split_whitespace();
    let kind = parts.next()?;
    let kind = match kind {
        "c" | "b" => kind.chars().next()?,
        _ => return None,
    };
    let major = parts.next()?.split(':').next()?;
    Some((kind, major.parse().ok()?))
}

/// `"1024-65535"` or `"8080"` as an inclusive range; `"*"` or `""`: any port.
fn parse_port_range(text: &str) -> Result<Option<(u16, u16)>, String> {
    let t = text.trim();
    if t.is_empty() || t == "*" {
        return Ok(None);
    }
    let bad = || format!("`{text}` is not a port range like \"1024-65535\"");
    let (low, high) = t.split_once('-').unwrap_or((t, t));
    let low: u16 = low.trim().parse().map_err(|_| bad())?;
    let high: u16 = high.trim().parse().map_err(|_| bad())?;
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok(Some((low, high)))
}

/// The share folder a policy names, `{user}` replaced; no `..`, no absolute path.
fn share_folder(template: &str, user: &str) -> Result<String, String> {
    let folder = template.replace("{user}", user);
    let folder = folder.trim_matches('/').to_string();
    if folder
        .split('/')
        .any(|p| p == ".." || p == "." || (p.is_empty() && !folder.is_empty()))
    {
        return Err(format!(
            "share: `{template}` must be a folder under the share root, without `..`"
        ));
    }
    Ok(folder)
}

/// Every user's effective policy, built once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    by_user: BTreeMap<String, Policy>,
    default: PolicyConfig,
}

impl Policies {
    /// From the users (name → admin) and their policy keys.
    pub fn new(
        users: impl IntoIterator<Item = (String, bool, Option<PolicyConfig>)>,
        default: Option<PolicyConfig>,
    ) -> Result<Policies, String> {
        let default = default.unwrap_or_default();
        let mut by_user = BTreeMap::new();
        for (name, admin, own) in users {
            let base = if admin {
                Policy::unrestricted(&name)
            } else {
                Policy::restricted(&name)
                    .overlay(&default)
                    .map_err(|e| format!("policy.default.{e}"))?
            };
            let policy = match &own {
                Some(layer) => base
                    .overlay(layer)
                    .map_err(|e| format!("users.{name}.policy.{e}"))?,
                None => base,
            };
            by_user.insert(name, policy);
        }
        Ok(Policies { by_user, default })
    }

    /// Every user unrestricted (tests, benchmarks, `plugin test`).
    pub fn open() -> Policies {
        Policies::default()
    }

    /// The policy of `user`. A user the configuration does not know (an
    /// empty `Policies`, or a task of a user removed since) is restricted
    /// by the default policy, except with [`Policies::open`]. Borrowed for
    /// a configured user (asked on every submit and runtime call).
    pub fn of(&self, user: &str) -> Cow<'_, Policy> {
        if let Some(p) = self.by_user.get(user) {
            return Cow::Borrowed(p);
        }
        if self.by_user.is_empty() {
            return Cow::Owned(Policy::unrestricted(user));
        }
        Cow::Owned(
            Policy::restricted(user)
                .overlay(&self.default)
                .unwrap_or_else(|_| Policy::restricted(user)),
        )
    }

    /// Users with a cap on running tasks, and the cap.
    pub fn running_caps(&self) -> BTreeMap<String, usize> {
        self.by_user
            .iter()
            .filter_map(|(u, p)| p.running_tasks.map(|n| (u.clone(), n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Policy {
        Policy::restricted("bob")
    }

    #[test]
    fn non_admins_are_safe_by_default() {
        let p = bob();
        assert_eq!(
            p.allows_privileged(true).unwrap_err().message,
            "privileged containers are not allowed for user bob"
        );
        assert!(p.allows_privileged(false).is_ok());
        assert!(p.allows_device("c 81:* rwm").is_err());
        assert_eq!(p.scope_path("test/a.tgz"), "bob/test/a.tgz");
        assert_eq!(p.scope_path("/test/a.tgz"), "bob/test/a.tgz");
        assert!(p.allows_container("x", Some("alice")).is_err());
        assert!(p.allows_container("x", None).is_err());
        assert!(p.allows_container("x", Some("bob")).is_ok());
        assert!(p.allows_category("image_push").is_ok());
        assert!(p.allows_registry("anything").is_ok());
    }

    #[test]
    fn published_ports_stay_in_the_range() {
        let p = bob();
        assert!(p.allows_host_port(0, 8080).is_ok());
        assert!(p.allows_host_port(0, 0).is_ok(), "0: the engine picks");
        assert_eq!(
            p.allows_host_port(1, 80).unwrap_err().message,
            "network.port[1]: host port 80 is outside 1024-65535, the ports allowed for user bob"
        );
        assert!(Policy::unrestricted("root").allows_host_port(0, 22).is_ok());
        let layer = |ports: &str| PolicyConfig {
            ports: Some(ports.into()),
            ..Default::default()
        };
        let narrow = bob().overlay(&layer("8000-8099")).unwrap();
        assert!(narrow.allows_host_port(0, 8000).is_ok());
        assert!(narrow.allows_host_port(0, 8100).is_err());
        assert!(bob()
            .overlay(&layer("*"))
            .unwrap()
            .allows_host_port(0, 22)
            .is_ok());
        for bad in ["80-", "x", "9000-8000", "0-10", "70000"] {
            assert!(
                bob()
                    .overlay(&layer(bad))
                    .unwrap_err()
                    .starts_with("ports:"),
                "{bad}"
            );
        }
    }

    #[test]
    fn admins_are_unrestricted() {
        let p = Policy::unrestricted("root");
        assert!(p.allows_privileged(true).is_ok());
        assert!(p.allows_device("b 8:0 rw").is_ok());
        assert_eq!(p.scope_path("/test/a.tgz"), "test/a.tgz");
        assert!(p.allows_container("x", Some("bob")).is_ok());
    }

    #[test]
    fn layers_override_key_by_key() {
        let default = PolicyConfig {
            categories: Some(vec!["create".into()]),
            devices: Some(vec!["c 81".into()]),
            share: Some("users/{user}".into()),
            registries: Some(vec!["local".into()]),
            limits: Some(LimitsConfig {
                memory: Some("1g".into()),
                running_tasks: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bob = PolicyConfig {
            privileged: Some(true),
            ..Default::default()
        };
        let policies = Policies::new(
            [
                ("admin".to_string(), true, None),
                ("bob".to_string(), false, Some(bob)),
                ("carol".to_string(), false, None),
            ],
            Some(default),
        )
        .unwrap();
        let b = policies.of("bob");
        assert!(b.privileged, "bob's own key");
        assert_eq!(b.share, "users/bob");
        assert_eq!(b.memory, Some(1 << 30));
        assert!(b.allows_device("c 81:* rw").is_ok());
        assert!(b.allows_device("c 4:* rw").is_err());
        assert_eq!(
            b.allows_category("image_push").unwrap_err().message,
            "category image_push is not allowed for user bob"
        );
        assert_eq!(
            b.allows_registry("dockerhub").unwrap_err().message,
            "registry dockerhub is not allowed for user bob"
        );
        assert!(!policies.of("carol").privileged);
        assert!(policies.of("admin").allows_category("image_push").is_ok());
        assert_eq!(
            policies.running_caps(),
            BTreeMap::from([("bob".into(), 2), ("carol".into(), 2)])
        );
        // Someone the configuration does not know gets the default, not admin rights.
        assert!(!policies.of("mallory").privileged);
        assert_eq!(policies.of("mallory").share, "users/mallory");
    }

    #[test]
    fn caps_fill_in_and_refuse() {
        let p = Policy {
            memory: Some(768 << 20),
            cpu_time: Some(500),
            ..bob()
        };
        let (mut m, mut w, mut t) = (None, Some(100), None);
        p.cap_resources(&mut m, &mut w, &mut t).unwrap();
        assert_eq!((m, w, t), (Some(768 << 20), Some(100), Some(500)));
        let mut m = Some(1 << 30);
        assert_eq!(
            p.cap_resources(&mut m, &mut None, &mut None)
                .unwrap_err()
                .message,
            "memory 1g is over the limit 768m for user bob"
        );
    }

    #[test]
    fn bad_policy_keys_are_named() {
        let bad = |c: PolicyConfig| bob().overlay(&c).unwrap_err();
        assert!(bad(PolicyConfig {
            share: Some("../alice".into()),
            ..Default::default()
        })
        .starts_with("share:"));
        assert!(bad(PolicyConfig {
            devices: Some(vec!["video".into()]),
            ..Default::default()
        })
        .starts_with("devices:"));
        assert!(bad(PolicyConfig {
            limits: Some(LimitsConfig {
                memory: Some("lots".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .starts_with("limits.memory:"));
        assert_eq!(parse_memory("768m").unwrap(), 768 << 20);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
    }
}
