//! Capability grants: which WIT interfaces a category may import. One
//! granter, consulted at load time; a plugin importing more is refused.

use std::collections::{BTreeMap, BTreeSet};

/// The capability interfaces an operator can grant.
pub const CAPABILITIES: &[&str] = &[
    "task",
    "images",
    "containers",
    "credentials",
    "networks",
    "volumes",
    "repository",
    "app-store",
];

/// What the built-in categories need; unknown categories get `task` only.
pub fn default_grants(category: &str) -> &'static [&'static str] {
    match category {
        "image_download" | "image_remove" | "image_export" => &["task", "images"],
        "image_push" => &["task", "images", "credentials"],
        "create" | "container_import" => &["task", "images", "containers", "credentials"],
        // Only the application categories lay out networks and volumes and
        // read the repository and the application store.
        "application" | "application_upgrade" => &[
            "task",
            "images",
            "containers",
            "credentials",
            "networks",
            "volumes",
            "repository",
            "app-store",
        ],
        "container_export" => &["task", "containers"],
        _ => &["task"],
    }
}

/// Decides which interfaces each category may import.
#[derive(Debug, Clone, Default)]
pub struct Granter {
    configured: BTreeMap<String, BTreeSet<String>>,
    everything: bool,
}

/// Why an import was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The interface is one of ours but not granted to the category.
    #[error(
        "imports `{interface}`, which is not granted to category `{category}` (granted: {granted})"
    )]
    NotGranted {
        /// The full import name.
        interface: String,
        /// The category.
        category: String,
        /// What is granted, comma-separated.
        granted: String,
    },
    /// The import is neither ours nor WASI.
    #[error("imports `{interface}`, which this host does not provide")]
    Unknown {
        /// The full import name.
        interface: String,
    },
}

impl Granter {
    /// A granter from configuration (`[plugins.grants]`); unlisted categories get [`default_grants`].
    pub fn new(configured: &BTreeMap<String, Vec<String>>) -> Result<Granter, String> {
        for (category, list) in configured {
            if let Some(bad) = list.iter().find(|c| !CAPABILITIES.contains(&c.as_str())) {
                return Err(format!(
                    "plugins.grants.{category}: unknown capability `{bad}` (known: {})",
                    CAPABILITIES.join(", ")
                ));
            }
        }
        let configured = configured
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
            .collect();
        Ok(Granter {
            configured,
            everything: false,
        })
    }

    /// Grants every capability to every category: for `stevedore plugin
    /// test`, which runs against the simulator, never for serving.
    pub fn permissive() -> Granter {
        Granter {
            configured: BTreeMap::new(),
            everything: true,
        }
    }

    /// The interfaces granted to `category`.
    pub fn granted(&self, category: &str) -> BTreeSet<String> {
        if self.everything {
            return CAPABILITIES.iter().map(|s| s.to_string()).collect();
        }
        match self.configured.get(category) {
            Some(set) => set.clone(),
            None => default_grants(category)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Whether `category` may import the component import named `import`
    /// (`stevedore:plugin/images@0.1.0`, `wasi:cli/stdout@0.2.6`, ...).
    /// `types` and WASI are always allowed: WASI is linked deny-by-default.
    pub fn allows(&self, category: &str, import: &str) -> Result<(), GrantError> {
        if import.starts_with("wasi:") {
            return Ok(());
        }
        let Some(rest) = import.strip_prefix("stevedore:plugin/") else {
            return Err(GrantError::Unknown {
                interface: import.to_string(),
            });
        };
        let short = rest.split('@').next().unwrap_or(rest);
        if short == "types" {
            return Ok(());
        }
        if !CAPABILITIES.contains(&short) {
            return Err(GrantError::Unknown {
                interface: import.to_string(),
            });
        }
        let granted = self.granted(category);
        if granted.contains(short) {
            Ok(())
        } else {
            Err(GrantError::NotGranted {
                interface: import.to_string(),
                category: category.to_string(),
                granted: granted.into_iter().collect::<Vec<_>>().join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granter(pairs: &[(&str, &[&str])]) -> Granter {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        Granter::new(&map).unwrap()
    }

    #[test]
    fn defaults_cover_builtin_categories() {
        let g = Granter::default();
        assert!(g
            .allows("image_remove", "stevedore:plugin/images@0.1.0")
            .is_ok());
        assert!(g
            .allows("image_remove", "stevedore:plugin/task@0.1.0")
            .is_ok());
        let err = g
            .allows("image_remove", "stevedore:plugin/containers@0.1.0")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "imports `stevedore:plugin/containers@0.1.0`, which is not granted to category `image_remove` (granted: images, task)"
        );
    }

    #[test]
    fn unknown_categories_get_task_only() {
        let g = Granter::default();
        assert!(g.allows("mine", "stevedore:plugin/task@0.1.0").is_ok());
        assert!(g.allows("mine", "stevedore:plugin/images@0.1.0").is_err());
    }

    #[test]
    fn types_and_wasi_are_always_allowed() {
        let g = granter(&[("x", &[])]);
        assert!(g.allows("x", "stevedore:plugin/types@0.1.0").is_ok());
        assert!(g.allows("x", "wasi:cli/stdout@0.2.6").is_ok());
        assert!(
            g.allows("x", "stevedore:plugin/task@0.1.0").is_err(),
            "configured empty means nothing"
        );
    }

    #[test]
    fn configuration_overrides_defaults() {
        let g = granter(&[
            ("image_remove", &["task"]),
            ("mine", &["task", "containers"]),
        ]);
        assert!(g
            .allows("image_remove", "stevedore:plugin/images@0.1.0")
            .is_err());
        assert!(g
            .allows("mine", "stevedore:plugin/containers@0.1.0")
            .is_ok());
    }

    #[test]
    fn foreign_imports_are_refused() {
        let g = Granter::default();
        assert!(matches!(
            g.allows("x", "acme:evil/net@1.0.0"),
            Err(GrantError::Unknown { .. })
        ));
        assert!(g
            .allows("create", "stevedore:plugin/networks@0.1.0")
            .is_err());
        assert!(g
            .allows("application", "stevedore:plugin/networks@0.1.0")
            .is_ok());
        assert!(matches!(
            g.allows("x", "stevedore:plugin/network@0.1.0"),
            Err(GrantError::Unknown { .. })
        ));
    }

    #[test]
    fn unknown_capability_in_config_names_the_key() {
        let map = [("x".to_string(), vec!["network".to_string()])]
            .into_iter()
            .collect();
        assert_eq!(
            Granter::new(&map).unwrap_err(),
            "plugins.grants.x: unknown capability `network` (known: task, images, containers, credentials, networks, volumes, repository, app-store)"
        );
    }
}
