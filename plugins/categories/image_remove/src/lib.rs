//! `image_remove`: the body is a JSON array of `{type, image, tag, id}`;
//! each entry names an image by `id`, or by `image` and `tag`.

use serde::Deserialize;
use stevedore_sdk::{check, images, task, Category, Error, RuntimeKind};

/// One image to remove.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `docker` (default) or `lxc`.
    #[serde(rename = "type", default = "docker")]
    pub kind: String,
    /// Repository name.
    #[serde(default)]
    pub image: Option<String>,
    /// Tag; `latest` when absent.
    #[serde(default)]
    pub tag: Option<String>,
    /// Image id; wins over `image`/`tag`.
    #[serde(default)]
    pub id: Option<String>,
}

fn docker() -> String {
    "docker".into()
}

/// The category.
pub struct ImageRemove;

impl Entry {
    fn runtime(&self, field: &str) -> Result<RuntimeKind, Error> {
        match self.kind.as_str() {
            "docker" => Ok(RuntimeKind::Docker),
            "lxc" => Ok(RuntimeKind::Lxc),
            _ => Err(Error::invalid(field, "must be \"docker\" or \"lxc\"")),
        }
    }

    /// The reference the runtime understands: the id, else `image:tag`.
    pub fn reference(&self) -> String {
        match (&self.id, &self.image) {
            (Some(id), _) if !id.is_empty() => id.clone(),
            (_, Some(image)) => format!("{image}:{}", self.tag.as_deref().unwrap_or("latest")),
            _ => String::new(),
        }
    }
}

impl Category for ImageRemove {
    const NAME: &'static str = "image_remove";
    const SUMMARY: &'static str = "Remove images by id or by image and tag";
    const CAPABILITIES: &'static [&'static str] = &["images"];
    type Params = Vec<Entry>;

    fn validate(entries: &Vec<Entry>) -> Result<(), Error> {
        if entries.is_empty() {
            return Err(Error::invalid("params", "must list at least one image"));
        }
        for (i, e) in entries.iter().enumerate() {
            e.runtime(&format!("[{i}].type"))?;
            match (&e.id, &e.image) {
                (Some(id), _) if !id.is_empty() => check::image_part(&format!("[{i}].id"), id)?,
                (_, Some(image)) => {
                    check::image_part(&format!("[{i}].image"), image)?;
                    if let Some(tag) = &e.tag {
                        check::image_part(&format!("[{i}].tag"), tag)?;
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        &format!("[{i}].image"),
                        "give `image` (and `tag`) or `id`",
                    ))
                }
            }
        }
        Ok(())
    }

    fn run(entries: Vec<Entry>) -> Result<Option<String>, Error> {
        let total = entries.len();
        let mut removed = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            task::check_cancelled()?;
            let reference = e.reference();
            task::progress((i * 100 / total) as i8, &format!("removing {reference}"));
            images::remove(e.runtime("type")?, &reference, false)?;
            removed.push(reference);
        }
        task::progress(100, "done");
        Ok(Some(format!("removed {}", removed.join(", "))))
    }
}

stevedore_sdk::category!(ImageRemove);

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(json: &str) -> Result<(), Error> {
        stevedore_sdk::__validate::<ImageRemove>(json)
    }

    fn message(json: &str) -> String {
        stevedore_sdk::expect_invalid(json, validate(json))
    }

    #[test]
    fn accepts_the_seed_body() {
        validate(r#"[{"type":"docker","image":"busybox","tag":"latest"},{"type":"docker","id":"sha256:abc"}]"#).unwrap();
    }

    #[test]
    fn names_the_field_in_errors() {
        assert_eq!(message("[]"), "params: must list at least one image");
        assert_eq!(
            message(r#"{"image":"x"}"#),
            "params: invalid type: map, expected a sequence"
        );
        assert_eq!(
            message(r#"[{"type":"rkt","image":"x"}]"#),
            "[0].type: must be \"docker\" or \"lxc\""
        );
        assert_eq!(
            message(r#"[{"type":"docker"}]"#),
            "[0].image: give `image` (and `tag`) or `id`"
        );
        assert!(message(r#"[{"image":"a","tag":5}]"#).starts_with("[0].tag: invalid type: integer"));
        assert!(message(r#"[{"image":"a b"}]"#).starts_with("[0].image:"));
    }

    #[test]
    fn reference_prefers_id_and_defaults_tag() {
        let e: Vec<Entry> =
            serde_json::from_str(r#"[{"image":"busybox"},{"id":"abc","image":"x"}]"#).unwrap();
        assert_eq!(e[0].reference(), "busybox:latest");
        assert_eq!(e[1].reference(), "abc");
    }
}
