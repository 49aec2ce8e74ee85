//! `image_export`: save `image:tag` (`docker save`) to `path` under the
//! share root, gzip-compressed when `compress`. The host writes to a
//! temporary name and renames at the end; an existing file is refused unless
//! `force`. A running export may be deleted (the host removes the partial file).
//!
//! Body: `{type, image, tag, path, compress, force}`; `type` is `docker`
//! (the default), `tag` defaults to `latest`, `compress` and `force` to
//! false. The body is known exactly, so unknown fields are refused.

use serde::Deserialize;
use stevedore_sdk::check::{self, Object};
use stevedore_sdk::{images, task, Category, Error};

/// The params.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `docker` only.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Image repository.
    #[serde(default)]
    pub image: Option<String>,
    /// Tag; `latest` when absent.
    #[serde(default)]
    pub tag: Option<String>,
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

/// What to save, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `image:tag`.
    pub reference: String,
    /// Output path, relative to the share root.
    pub path: String,
    /// Gzip.
    pub gzip: bool,
    /// Overwrite.
    pub overwrite: bool,
}

/// Check every field.
pub fn export(p: &Params) -> Result<Export, Error> {
    check::docker_only("type", p.kind.as_deref())?;
    let image = p
        .image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| Error::invalid("image", "is required"))?;
    check::repository("image", image)?;
    let tag = p
        .tag
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("latest");
    check::tag("tag", tag)?;
    let path = p
        .path
        .as_deref()
        .ok_or_else(|| Error::invalid("path", "is required"))?;
    check::share_path("path", path)?;
    Ok(Export {
        reference: format!("{image}:{tag}"),
        path: path.to_string(),
        gzip: p.compress.unwrap_or(false),
        overwrite: p.force.unwrap_or(false),
    })
}

/// The category.
pub struct ImageExport;

impl Category for ImageExport {
    const NAME: &'static str = "image_export";
    const SUMMARY: &'static str =
        "Save an image (docker save) to a file under the share root, optionally gzip-compressed";
    const DELETABLE: bool = true;
    const CAPABILITIES: &'static [&'static str] = &["images"];
    type Params = Object<Params>;

    fn validate(p: &Object<Params>) -> Result<(), Error> {
        export(&p.0).map(|_| ())
    }

    fn run(p: Object<Params>) -> Result<Option<String>, Error> {
        let e = export(&p.0)?;
        let shown = format!("/{}", e.path.trim_start_matches('/'));
        task::progress(0, &format!("exporting {} to {shown}", e.reference));
        let bytes = images::save_to_path(
            std::slice::from_ref(&e.reference),
            &e.path,
            e.gzip,
            e.overwrite,
        )?;
        task::progress(100, &format!("exported {} to {shown}", e.reference));
        Ok(Some(format!(
            "exported {} to {shown} ({bytes} bytes)",
            e.reference
        )))
    }
}

stevedore_sdk::category!(ImageExport);

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
    fn accepts_the_seed_body() {
        let e = check(r#"{"type": "docker", "image": "ubuntu", "tag": "latest", "path": "test/a.tgz", "compress": true}"#).unwrap();
        assert_eq!(
            e,
            Export {
                reference: "ubuntu:latest".into(),
                path: "test/a.tgz".into(),
                gzip: true,
                overwrite: false
            }
        );
    }

    #[test]
    fn defaults() {
        let e = check(r#"{"image": "busybox", "path": "out/b.tar", "force": true}"#).unwrap();
        assert_eq!(
            e,
            Export {
                reference: "busybox:latest".into(),
                path: "out/b.tar".into(),
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
        assert_eq!(message(r#"{"path": "a.tar"}"#), "image: is required");
        assert_eq!(message(r#"{"image": "busybox"}"#), "path: is required");
        assert_eq!(
            message(r#"{"type": "lxc", "image": "busybox", "path": "a"}"#),
            "type: must be \"docker\""
        );
        assert!(message(r#"{"image": "Busybox", "path": "a"}"#)
            .starts_with("image: must be a repository"));
        assert!(message(r#"{"image": "busybox", "tag": "-x", "path": "a"}"#)
            .starts_with("tag: must match"));
        assert_eq!(
            message(r#"{"image": "busybox", "path": "../a.tar"}"#),
            "path: must not contain `..`"
        );
        assert_eq!(
            message(r#"{"image": "busybox", "path": "/etc/a.tar"}"#),
            "path: must be relative to the share root, e.g. \"test/c.tgz\""
        );
        assert!(
            message(r#"{"image": "busybox", "path": "a", "compress": "yes"}"#)
                .starts_with("compress: invalid type")
        );
        assert!(
            message(r#"{"image": "busybox", "path": "a", "compres": true}"#)
                .starts_with("compres: unknown field")
        );
    }

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<ImageExport>();
        assert_eq!(d.name, "image_export");
        assert!(d.deletable);
        assert_eq!(d.capabilities, ["task", "images"]);
    }
}
