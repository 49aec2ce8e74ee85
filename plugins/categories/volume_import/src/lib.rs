//! `volume_import`: restore the tar (or tar.gz) at `path` under the share
//! root into a named volume. A missing volume is created (the caller's); a
//! volume holding files is refused unless `overwrite`, which lays the
//! archive over what is there (files of the archive replace those of the
//! same name, the others stay). The host reads the whole archive through
//! its archive rules before writing anything: absolute names, `..`, links
//! leading out, device nodes and too large a content are refused, naming
//! `path`.
//!
//! With `type: "lxc"`, the archive is restored into `subtree`, an absolute
//! path inside the root file system of the LXC container `container`
//! (made when missing; `..` and links leading out are refused, naming
//! `subtree`), the owners mapped to the container's ids, under the same
//! rules.
//!
//! Body: `{volume, path, overwrite?}`, or `{type: "lxc", container,
//! subtree, path, overwrite?}` (`type` is `docker` by default). Unknown
//! fields are refused.

use serde::Deserialize;
use stevedore_sdk::check::{self, BackupSource as Source, Object};
use stevedore_sdk::{task, volumes, Category, Error};

/// The params.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `docker` (a named volume, the default) or `lxc` (a folder of an LXC
    /// container).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The LXC container (`type: lxc`).
    #[serde(default)]
    pub container: Option<String>,
    /// The folder inside the LXC container, e.g. `/var/lib/data`; made
    /// when missing (`type: lxc`).
    #[serde(default)]
    pub subtree: Option<String>,
    /// The volume's name; created when missing (`type: docker`).
    #[serde(default)]
    pub volume: Option<String>,
    /// The archive, relative to the share root.
    #[serde(default)]
    pub path: Option<String>,
    /// Lay the archive over a volume that holds files.
    #[serde(default)]
    pub overwrite: Option<bool>,
}

/// What to import, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Where the files go.
    pub target: Source,
    /// The archive, relative to the share root.
    pub path: String,
    /// Overwrite.
    pub overwrite: bool,
}

/// Check every field.
pub fn import(p: &Params) -> Result<Import, Error> {
    let target = check::backup_source(
        p.kind.as_deref(),
        p.volume.as_deref(),
        p.container.as_deref(),
        p.subtree.as_deref(),
    )?;
    let path = p
        .path
        .as_deref()
        .ok_or_else(|| Error::invalid("path", "is required"))?;
    check::share_path("path", path)?;
    Ok(Import {
        target,
        path: path.to_string(),
        overwrite: p.overwrite.unwrap_or(false),
    })
}

/// The category.
pub struct VolumeImport;

impl Category for VolumeImport {
    const NAME: &'static str = "volume_import";
    const SUMMARY: &'static str =
        "Restore a tar under the share root into a new or empty named volume, or an LXC container's folder";
    const DELETABLE: bool = false;
    const CAPABILITIES: &'static [&'static str] = &["volumes"];
    type Params = Object<Params>;

    fn validate(p: &Object<Params>) -> Result<(), Error> {
        import(&p.0).map(|_| ())
    }

    fn run(p: Object<Params>) -> Result<Option<String>, Error> {
        let i = import(&p.0)?;
        let shown = format!("/{}", i.path.trim_start_matches('/'));
        let what = i.target.shown();
        task::progress(0, &format!("importing {shown} into {what}"));
        let bytes = match &i.target {
            Source::Volume(volume) => volumes::import_from_path(volume, &i.path, i.overwrite)?,
            Source::Lxc { container, subtree } => {
                volumes::import_subtree_from_path(container, subtree, &i.path, i.overwrite)?
            }
        };
        task::progress(100, &format!("imported {shown} into {what}"));
        Ok(Some(format!(
            "imported {shown} ({bytes} bytes) into {what}"
        )))
    }
}

stevedore_sdk::category!(VolumeImport);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Import, Error> {
        import(&stevedore_sdk::decode::<Object<Params>>(json)?.0)
    }

    fn message(json: &str) -> String {
        stevedore_sdk::expect_invalid(json, check(json))
    }

    #[test]
    fn defaults_and_flags() {
        let i = check(r#"{"volume": "data", "path": "backups/data.tgz"}"#).unwrap();
        assert_eq!(
            i,
            Import {
                target: Source::Volume("data".into()),
                path: "backups/data.tgz".into(),
                overwrite: false
            }
        );
        assert!(
            check(r#"{"volume": "data", "path": "d.tar", "overwrite": true}"#)
                .unwrap()
                .overwrite
        );
    }

    #[test]
    fn lxc_folders() {
        let i = check(
            r#"{"type": "lxc", "container": "web-1", "subtree": "/srv/d", "path": "d.tar", "overwrite": true}"#,
        )
        .unwrap();
        assert_eq!(
            i.target,
            Source::Lxc {
                container: "web-1".into(),
                subtree: "/srv/d".into()
            }
        );
        assert!(i.overwrite);
        assert_eq!(
            message(r#"{"type": "lxc", "container": "web", "subtree": "/a/../..", "path": "a"}"#),
            "subtree: must not contain `..`"
        );
        assert_eq!(
            message(r#"{"type": "lxc", "container": "web", "path": "a"}"#),
            "subtree: is required"
        );
    }

    #[test]
    fn names_the_field_in_errors() {
        assert_eq!(message(r#"{"path": "a.tar"}"#), "volume: is required");
        assert_eq!(message(r#"{"volume": "data"}"#), "path: is required");
        assert!(
            message(r#"{"volume": "a", "path": "a"}"#).starts_with("volume: must be a volume name")
        );
        assert_eq!(
            message(r#"{"volume": "data", "path": "/x.tar"}"#),
            "path: must be relative to the share root, e.g. \"test/c.tgz\""
        );
        assert!(message(r#"{"volume": "data", "path": "a", "gzip": true}"#)
            .starts_with("gzip: unknown field"));
    }

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<VolumeImport>();
        assert_eq!(d.name, "volume_import");
        assert!(!d.deletable);
        assert_eq!(d.capabilities, ["task", "volumes"]);
    }
}
