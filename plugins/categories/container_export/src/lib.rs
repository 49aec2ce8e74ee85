//! `container_export`: write a container's files, and the settings an
//! import needs to recreate it, to `path` under the share root (gzip when
//! `compress`). The host records the settings in the archive in the format
//! that `container_import` documents. It writes to a temporary name and
//! renames at the end; an existing file is refused unless `force`. A running
//! export may be deleted (the host removes the partial file).
//!
//! Body: `{type, name, id, path, compress, force}`. The container is named by
//! `id` when given (the seed sends both), else by `name`. `type` defaults to
//! `docker`, `compress` and `force` to false. The body is known exactly, so
//! unknown fields are refused.

use serde::Deserialize;
use stevedore_sdk::check::{self, Object};
use stevedore_sdk::{containers, task, Category, Error, RuntimeKind};

/// The params.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `docker` (default) or `lxc`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Container name.
    #[serde(default)]
    pub name: Option<String>,
    /// Container id; wins over `name`.
    #[serde(default)]
    pub id: Option<String>,
    /// Output file, relative to the share root.
    #[serde(default)]
    pub path: Option<String>,
    /// Gzip the file.
    #[serde(default)]
    pub compress: Option<bool>,
    /// Overwrite an existing file.
    #[serde(default)]
    pub force: Option<bool>,
}

/// What to export, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Runtime of the container.
    pub runtime: RuntimeKind,
    /// The container's id, else its name.
    pub container: String,
    /// Output path, relative to the share root.
    pub path: String,
    /// Gzip.
    pub gzip: bool,
    /// Overwrite.
    pub overwrite: bool,
}

/// Check every field.
pub fn export(p: &Params) -> Result<Export, Error> {
    let runtime = check::runtime("type", p.kind.as_deref().unwrap_or("docker"))?;
    let name = p.name.as_deref().filter(|n| !n.is_empty());
    let id = p.id.as_deref().filter(|i| !i.is_empty());
    if let Some(name) = name {
        check::name("name", name)?;
    }
    if let Some(id) = id {
        let ok = id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(Error::invalid(
                "id",
                "must be a container id (letters, digits, _ . -)",
            ));
        }
    }
    let container = id
        .or(name)
        .ok_or_else(|| Error::invalid("name", "give the container's \"name\" or \"id\""))?;
    let path = p
        .path
        .as_deref()
        .ok_or_else(|| Error::invalid("path", "is required"))?;
    check::share_path("path", path)?;
    Ok(Export {
        runtime,
        container: container.to_string(),
        path: path.to_string(),
        gzip: p.compress.unwrap_or(false),
        overwrite: p.force.unwrap_or(false),
    })
}

/// The category.
pub struct ContainerExport;

impl Category for ContainerExport {
    const NAME: &'static str = "container_export";
    const SUMMARY: &'static str =
        "Write a container's files and settings to a file under the share root";
    const DELETABLE: bool = true;
    const CAPABILITIES: &'static [&'static str] = &["containers"];
    type Params = Object<Params>;

    fn validate(p: &Object<Params>) -> Result<(), Error> {
        export(&p.0).map(|_| ())
    }

    fn run(p: Object<Params>) -> Result<Option<String>, Error> {
        let e = export(&p.0)?;
        let label =
            p.0.name
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(&e.container)
                .to_string();
        let shown = format!("/{}", e.path.trim_start_matches('/'));
        task::progress(0, &format!("exporting container {label} to {shown}"));
        let bytes =
            containers::export_to_path(e.runtime, &e.container, &e.path, e.gzip, e.overwrite)?;
        task::progress(100, &format!("exported container {label} to {shown}"));
        Ok(Some(format!(
            "exported container {label} to {shown} ({bytes} bytes)"
        )))
    }
}

stevedore_sdk::category!(ContainerExport);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Export, Error> {
        export(&stevedore_sdk::decode::<Object<Params>>(json)?.0)
    }

    fn message(json: &str) -> String {
        stevedore_sdk::expect_invalid(json, check(json))
    }

    #[test]
    fn accepts_the_seed_bodies() {
        let e = check(r#"{"type": "lxc", "id": "ubuntu-trusty-1", "name": "ubuntu-trusty-1", "path": "test/c.tgz", "compress": true}"#).unwrap();
        assert_eq!(
            e,
            Export {
                runtime: RuntimeKind::Lxc,
                container: "ubuntu-trusty-1".into(),
                path: "test/c.tgz".into(),
                gzip: true,
                overwrite: false
            }
        );
        let id = "a4af24dfe4329015e3adebbc169cbb04bb771f458167b41b07ebf98c882cce59";
        let e = check(&format!(
            r#"{{"type": "docker", "id": "{id}", "name": "busybox-6", "path": "test/d.tgz", "compress": true}}"#
        ))
        .unwrap();
        assert_eq!((e.runtime, e.container.as_str()), (RuntimeKind::Docker, id));
    }

    #[test]
    fn name_alone_and_defaults() {
        let e = check(r#"{"name": "web", "path": "exports/web.tar", "force": true}"#).unwrap();
        assert_eq!(
            e,
            Export {
                runtime: RuntimeKind::Docker,
                container: "web".into(),
                path: "exports/web.tar".into(),
                gzip: false,
                overwrite: true
            }
        );
    }

    #[test]
    fn names_the_field_in_errors() {
        assert_eq!(
            message("[]"),
            "params: invalid type: sequence, expected a JSON object"
        );
        assert_eq!(
            message(r#"{"path": "a.tar"}"#),
            "name: give the container's \"name\" or \"id\""
        );
        assert_eq!(message(r#"{"name": "web"}"#), "path: is required");
        assert_eq!(
            message(r#"{"type": "rkt", "name": "web", "path": "a"}"#),
            "type: must be \"docker\" or \"lxc\""
        );
        assert_eq!(
            message(r#"{"name": "w", "path": "a"}"#),
            "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"
        );
        assert_eq!(
            message(r#"{"id": "a b", "path": "a"}"#),
            "id: must be a container id (letters, digits, _ . -)"
        );
        assert_eq!(
            message(r#"{"name": "web", "path": "x/../../a"}"#),
            "path: must not contain `..`"
        );
        assert_eq!(
            message(r#"{"name": "web", "path": ""}"#),
            "path: must name a file under the share root"
        );
        assert!(message(r#"{"name": "web", "path": "a", "force": 1}"#)
            .starts_with("force: invalid type"));
        assert!(
            message(r#"{"name": "web", "path": "a", "overwrite": true}"#)
                .starts_with("overwrite: unknown field")
        );
    }

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<ContainerExport>();
        assert_eq!(d.name, "container_export");
        assert!(d.deletable);
        assert_eq!(d.capabilities, ["task", "containers"]);
    }
}
