//! Capability grants: which WIT interfaces a plugin may import. A plugin is
//! granted what it declares (`describe` → `capabilities`) and the operator
//! allows its category (`[plugins.grants]`, else [`default_grants`]); one
//! granter, consulted at load time, refuses a plugin importing more.

use std::collections::{BTreeMap, BTreeSet};

use stevedore_contract::capabilities::{self, interface_of};

/// The capability interfaces an operator can grant.
pub use stevedore_contract::capabilities::ALL as CAPABILITIES;
/// What the built-in categories need; unknown categories get `task` only.
pub fn default_grants(category: &str) -> &'static [&'static str] {
    match category {
        "image_download" | "image_remove" | "image_export" | "image_prune" => &["task", "images"],
        "image_push" => &["task", "images", "credentials"],
        "create" | "container_import" => &["task", "images", "containers", "credentials"],
        // Only the application categories lay out networks and volumes and
        // read the repository and the application store: they need every
        // capability.
        "application" | "application_upgrade" => CAPABILITIES,
        "container_export" => &["task", "containers"],
        "volume_export" | "volume_import" => &["task", "volumes"],
        "image_check" | "container_update" => &["task", "images", "containers"],
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
    /// The operator does not allow the interface to the category.
    #[error(
        "imports `{interface}`, which is not granted to category `{category}` (granted: {granted}); allow it with `[plugins.grants] {category} = [{needed}]`"
    )]
    NotGranted {
        /// The full import name.
        interface: String,
        /// The category.
        category: String,
        /// What is granted, comma-separated.
        granted: String,
        /// The plugin's declared capabilities, quoted and comma-separated:
        /// the configuration value that lets it load.
        needed: String,
    },
    /// The plugin imports an interface its `describe` does not declare.
    #[error(
        "imports `{interface}` but does not declare `{short}` in its capabilities (declared: {declared}); a plugin is granted at most what it declares"
    )]
    NotDeclared {
        /// The full import name.
        interface: String,
        /// The interface's short name, as a declaration spells it.
        short: String,
        /// What the plugin declares, comma-separated.
        declared: String,
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
            if let Some(bad) = list.iter().find(|c| !capabilities::is_capability(c)) {
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

    /// Allows every capability to every category, so that a plugin gets
    /// what it declares: for `stevedore plugin check` and `plugin test`,
    /// which run against the simulator, never for serving.
    pub fn permissive() -> Granter {
        Granter {
            configured: BTreeMap::new(),
            everything: true,
        }
    }

    /// The interfaces the operator allows `category`.
    pub fn allowed(&self, category: &str) -> BTreeSet<String> {
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

    /// The interfaces linked for a plugin of `category` that declares
    /// `declared`: the declared ones the operator allows. Names that are
    /// not capabilities are never granted.
    pub fn granted(&self, category: &str, declared: &[String]) -> BTreeSet<String> {
        let allowed = self.allowed(category);
        declared
            .iter()
            .filter(|d| allowed.contains(d.as_str()))
            .cloned()
            .collect()
    }

    /// Whether a plugin of `category` that declares `declared` may import
    /// the component import named `import` (`stevedore:plugin/images@0.1.0`,
    /// `wasi:cli/stdout@0.2.6`, ...). `types` and WASI are always allowed:
    /// WASI is linked deny-by-default.
    pub fn allows(
        &self,
        category: &str,
        declared: &[String],
        import: &str,
    ) -> Result<(), GrantError> {
        if import.starts_with("wasi:") {
            return Ok(());
        }
        let unknown = || GrantError::Unknown {
            interface: import.to_string(),
        };
        let short = interface_of(import).ok_or_else(unknown)?;
        if short == capabilities::TYPES {
            return Ok(());
        }
        if !capabilities::is_capability(short) {
            return Err(unknown());
        }
        if !declared.iter().any(|d| d == short) {
            return Err(GrantError::NotDeclared {
                interface: import.to_string(),
                short: short.to_string(),
                declared: declared.join(", "),
            });
        }
        let granted = self.granted(category, declared);
        if granted.contains(short) {
            return Ok(());
        }
        let needed: Vec<String> = CAPABILITIES
            .iter()
            .filter(|c| declared.iter().any(|d| d == *c))
            .map(|c| format!("\"{c}\""))
            .collect();
        Err(GrantError::NotGranted {
            interface: import.to_string(),
            category: category.to_string(),
            granted: granted.into_iter().collect::<Vec<_>>().join(", "),
            needed: needed.join(", "),
        })
    }

    /// What a plugin of `category` declaring `declared` and importing
    /// `imports` is linked with, or the first import refused.
    pub fn grant(
        &self,
        category: &str,
        declared: &[String],
        imports: &[String],
    ) -> Result<BTreeSet<String>, GrantError> {
        for import in imports {
            self.allows(category, declared, import)?;
        }
        Ok(self.granted(category, declared))
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

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Everything a plugin can declare: the tests of what the operator
    /// allows, apart from the declaration.
    fn all() -> Vec<String> {
        names(CAPABILITIES)
    }

    /// Whether `g` lets `category`, declaring every capability, import `interface`.
    fn allowed(g: &Granter, category: &str, interface: &str) -> bool {
        g.allows(category, &all(), interface).is_ok()
    }

    #[test]
    fn defaults_cover_builtin_categories() {
        let g = Granter::default();
        assert!(allowed(&g, "image_remove", "stevedore:plugin/images@0.1.0"));
        assert!(allowed(&g, "image_remove", "stevedore:plugin/task@0.1.0"));
        let err = g
            .allows("image_remove", &all(), "stevedore:plugin/containers@0.1.0")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "imports `stevedore:plugin/containers@0.1.0`, which is not granted to category `image_remove` (granted: images, task); allow it with `[plugins.grants] image_remove = [\"task\", \"images\", \"containers\", \"credentials\", \"networks\", \"volumes\", \"repository\", \"app-store\"]`"
        );
    }

    #[test]
    fn the_refusal_names_the_config_line_that_allows_the_plugin() {
        let declared = names(&["task", "containers"]);
        let err = Granter::default()
            .grant(
                "ungranted",
                &declared,
                &names(&[
                    "stevedore:plugin/types@0.2.0",
                    "stevedore:plugin/task@0.2.0",
                    "stevedore:plugin/containers@0.2.0",
                ]),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "imports `stevedore:plugin/containers@0.2.0`, which is not granted to category `ungranted` (granted: task); allow it with `[plugins.grants] ungranted = [\"task\", \"containers\"]`"
        );
        // The line it names does let the plugin load.
        let configured = granter(&[("ungranted", &["task", "containers"])]);
        let imports = names(&["stevedore:plugin/containers@0.2.0"]);
        assert_eq!(
            configured.grant("ungranted", &declared, &imports).unwrap(),
            declared.into_iter().collect::<BTreeSet<_>>()
        );
    }

    #[test]
    fn an_import_the_plugin_does_not_declare_is_refused_even_when_allowed() {
        for g in [Granter::default(), Granter::permissive()] {
            let err = g
                .allows(
                    "create",
                    &names(&["task", "images"]),
                    "stevedore:plugin/containers@0.2.0",
                )
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "imports `stevedore:plugin/containers@0.2.0` but does not declare `containers` in its capabilities (declared: task, images); a plugin is granted at most what it declares"
            );
        }
    }

    #[test]
    fn the_grant_is_what_is_declared_and_allowed() {
        let g = Granter::default();
        // `create` is allowed credentials by default but does not declare them.
        let declared = names(&["task", "images", "containers"]);
        assert_eq!(
            g.granted("create", &declared),
            declared.iter().cloned().collect::<BTreeSet<_>>()
        );
        // Declaring more than is allowed grants only what is allowed.
        assert_eq!(
            g.granted("image_remove", &all()),
            names(&["images", "task"])
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
        // A declared name that is no capability is never granted.
        assert!(g.granted("mine", &names(&["network"])).is_empty());
        // The permissive granter grants what is declared, no more.
        assert_eq!(
            Granter::permissive().granted("mine", &names(&["task", "networks"])),
            names(&["networks", "task"])
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
    }

    #[test]
    fn unknown_categories_get_task_only() {
        let g = Granter::default();
        assert!(allowed(&g, "mine", "stevedore:plugin/task@0.1.0"));
        assert!(!allowed(&g, "mine", "stevedore:plugin/images@0.1.0"));
    }

    #[test]
    fn types_and_wasi_are_always_allowed() {
        let g = granter(&[("x", &[])]);
        assert!(g.allows("x", &[], "stevedore:plugin/types@0.1.0").is_ok());
        assert!(g.allows("x", &[], "wasi:cli/stdout@0.2.6").is_ok());
        assert!(
            !allowed(&g, "x", "stevedore:plugin/task@0.1.0"),
            "configured empty means nothing"
        );
    }

    #[test]
    fn configuration_overrides_defaults() {
        let g = granter(&[
            ("image_remove", &["task"]),
            ("mine", &["task", "containers"]),
        ]);
        assert!(!allowed(
            &g,
            "image_remove",
            "stevedore:plugin/images@0.1.0"
        ));
        assert!(allowed(&g, "mine", "stevedore:plugin/containers@0.1.0"));
    }

    #[test]
    fn foreign_imports_are_refused() {
        let g = Granter::default();
        assert!(matches!(
            g.allows("x", &all(), "acme:evil/net@1.0.0"),
            Err(GrantError::Unknown { .. })
        ));
        assert!(!allowed(&g, "create", "stevedore:plugin/networks@0.1.0"));
        assert!(allowed(
            &g,
            "application",
            "stevedore:plugin/networks@0.1.0"
        ));
        assert!(matches!(
            g.allows("x", &names(&["network"]), "stevedore:plugin/network@0.1.0"),
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
