//! The capability interfaces of the WIT package `stevedore:plugin`: what a
//! plugin declares in `describe` (`capabilities`), what it imports, and
//! what the operator grants per category.

/// The package prefix of every capability import
/// (`stevedore:plugin/images@0.2.0`).
pub const PACKAGE_PREFIX: &str = "stevedore:plugin/";

/// The shared types interface: imported by every plugin, never granted.
pub const TYPES: &str = "types";

/// The current task: params, progress, log. Every category has it.
pub const TASK: &str = "task";

/// Every capability interface a plugin can declare and be granted, in the
/// order the WIT world imports them.
pub const ALL: &[&str] = &[
    TASK,
    "images",
    "containers",
    "credentials",
    "networks",
    "volumes",
    "repository",
    "app-store",
];

/// Whether `name` is a capability interface (see [`ALL`]).
pub fn is_capability(name: &str) -> bool {
    ALL.contains(&name)
}

/// The interface name of a component import of this package, without the
/// version: `images` for `stevedore:plugin/images@0.2.0`; `None` for
/// imports of other packages (`wasi:cli/stdout@0.2.6`).
pub fn interface_of(import: &str) -> Option<&str> {
    let rest = import.strip_prefix(PACKAGE_PREFIX)?;
    Some(rest.split('@').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_name_their_interface() {
        assert_eq!(
            interface_of("stevedore:plugin/images@0.2.0"),
            Some("images")
        );
        assert_eq!(
            interface_of("stevedore:plugin/app-store"),
            Some("app-store")
        );
        assert_eq!(interface_of("wasi:cli/stdout@0.2.6"), None);
        assert!(is_capability("app-store"));
        assert!(!is_capability(TYPES));
        assert!(!is_capability("network"));
    }
}
