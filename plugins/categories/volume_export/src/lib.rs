//! `volume_export`: write a named volume's files to `path` under the share
//! root, as a tar (`gzip`: a tar.gz), the names relative to the volume's
//! root. The containers using the volume are paused while it is read and
//! unpaused afterwards (also on an error or a cancel), unless `live`. The
//! host writes to a temporary name and renames at the end; an existing file
//! is refused unless `overwrite`. A running export may be deleted (the host
//! removes the partial file and unpauses the containers).
//!
//! With `type: "lxc"`, the files are those under `subtree`, an absolute
//! path inside the root file system of the LXC container `container`
//! (resolved beneath it: `..` and links leading out are refused, naming
//! `subtree`), with the owners the container sees; the container is frozen
//! while they are read, unless `live`.
//!
//! Body: `{volume, path, gzip?, overwrite?, live?}`, or `{type: "lxc",
//! container, subtree, path, gzip?, overwrite?, live?}` (`type` is
//! `docker` by default; each flag false by default). Unknown fields are
//! refused.

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
    /// The folder inside the LXC container, e.g. `/var/lib/data` (`type: lxc`).
    #[serde(default)]
    pub subtree: Option<String>,
    /// The volume's name (`type: docker`).
    #[serde(default)]
    pub volume: Option<String>,
    /// Output file, relative to the share root.
    #[serde(default)]
    pub path: Option<String>,
    /// Gzip the tar.
    #[serde(default)]
    pub gzip: Option<bool>,
    /// Replace an existing file.
    #[serde(default)]
    pub overwrite: Option<bool>,
    /// Leave the containers using the volume running (not paused).
    #[serde(default)]
    pub live: Option<bool>,
}

/// What to export, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// What is backed up.
    pub source: Source,
    /// Output path, relative to the share root.
    pub path: String,
    /// Gzip.
    pub gzip: bool,
    /// Overwrite.
    pub overwrite: bool,
    /// Do not pause the volume's containers (freeze the LXC container).
    pub live: bool,
}

/// Check every field.
pub fn export(p: &Params) -> Result<Export, Error> {
    let source = check::backup_source(
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
    Ok(Export {
        source,
        path: path.to_string(),
        gzip: p.gzip.unwrap_or(false),
        overwrite: p.overwrite.unwrap_or(false),
        live: p.live.unwrap_or(false),
    })
}

/// The category.
pub struct VolumeExport;

impl Category for VolumeExport {
    const NAME: &'static str = "volume_export";
    const SUMMARY: &'static str =
        "Write a named volume's files, or an LXC container's folder, to a tar under the share root";
    const DELETABLE: bool = true;
    const CAPABILITIES: &'static [&'static str] = &["volumes"];
    type Params = Object<Params>;

    fn validate(p: &Object<Params>) -> Result<(), Error> {
        export(&p.0).map(|_| ())
    }

    fn run(p: Object<Params>) -> Result<Option<String>, Error> {
        let e = export(&p.0)?;
        let shown = format!("/{}", e.path.trim_start_matches('/'));
        let what = e.source.shown();
        task::progress(0, &format!("exporting {what} to {shown}"));
        let bytes = match &e.source {
            Source::Volume(volume) => {
                volumes::export_to_path(volume, &e.path, e.gzip, e.overwrite, e.live)?
            }
            Source::Lxc { container, subtree } => volumes::export_subtree_to_path(
                container,
                subtree,
                &e.path,
                e.gzip,
                e.overwrite,
                e.live,
            )?,
        };
        task::progress(100, &format!("exported {what} to {shown}"));
        Ok(Some(format!("exported {what} to {shown} ({bytes} bytes)")))
    }
}

stevedore_sdk::category!(VolumeExport);

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
    fn defaults_and_flags() {
        let e = check(r#"{"volume": "data", "path": "backups/data.tar"}"#).unwrap();
        assert_eq!(
            e,
            Export {
                source: Source::Volume("data".into()),
                path: "backups/data.tar".into(),
                gzip: false,
                overwrite: false,
                live: false
            }
        );
        let e = check(
            r#"{"volume": "data", "path": "d.tgz", "gzip": true, "overwrite": true, "live": true}"#,
        )
        .unwrap();
        assert!(e.gzip && e.overwrite && e.live);
    }

    #[test]
    fn lxc_folders() {
        let e = check(
            r#"{"type": "lxc", "container": "web-1", "subtree": "/var/lib/data", "path": "b/d.tgz", "gzip": true, "live": true}"#,
        )
        .unwrap();
        assert_eq!(
            e.source,
            Source::Lxc {
                container: "web-1".into(),
                subtree: "/var/lib/data".into()
            }
        );
        assert!(e.gzip && e.live && !e.overwrite);
        let lxc = |rest: &str| message(&format!(r#"{{"type": "lxc", "path": "a.tar"{rest}}}"#));
        assert_eq!(lxc(r#", "subtree": "/a""#), "container: is required");
        assert_eq!(lxc(r#", "container": "web""#), "subtree: is required");
        assert_eq!(
            lxc(r#", "container": "web", "subtree": "var/lib""#),
            "subtree: must be an absolute path inside the container"
        );
        assert_eq!(
            lxc(r#", "container": "web", "subtree": "/var/../../etc""#),
            "subtree: must not contain `..`"
        );
        assert!(
            lxc(r#", "container": "../x", "subtree": "/a""#).starts_with("container: must match")
        );
        assert!(
            lxc(r#", "container": "web", "subtree": "/a", "volume": "v1""#)
                .starts_with("volume: is for `type: docker` only")
        );
        assert_eq!(
            message(r#"{"volume": "data", "path": "a", "subtree": "/a"}"#),
            "subtree: is for `type: lxc` only"
        );
        assert_eq!(
            message(r#"{"type": "rkt", "volume": "data", "path": "a"}"#),
            "type: must be \"docker\" or \"lxc\""
        );
    }

    #[test]
    fn names_the_field_in_errors() {
        assert_eq!(message(r#"{"path": "a.tar"}"#), "volume: is required");
        assert_eq!(message(r#"{"volume": "data"}"#), "path: is required");
        assert!(message(r#"{"volume": "../x", "path": "a"}"#)
            .starts_with("volume: must be a volume name"));
        assert_eq!(
            message(r#"{"volume": "data", "path": "/etc/x.tar"}"#),
            "path: must be relative to the share root, e.g. \"test/c.tgz\""
        );
        assert_eq!(
            message(r#"{"volume": "data", "path": "x/../../a"}"#),
            "path: must not contain `..`"
        );
        assert!(message(r#"{"volume": "data", "path": "a", "gzip": 1}"#)
            .starts_with("gzip: invalid type"));
        assert!(message(r#"{"volume": "data", "path": "a", "force": true}"#)
            .starts_with("force: unknown field"));
    }

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<VolumeExport>();
        assert_eq!(d.name, "volume_export");
        assert!(d.deletable);
        assert_eq!(d.capabilities, ["task", "volumes"]);
    }
}
