//! The params' JSON Schema, as `describe()` reports it.

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// The JSON Schema (draft 2020-12) of `T` as JSON text, self-contained:
/// sub-schemas are inlined, so the host can embed it anywhere (a recursive
/// type keeps its own `$defs`, which the host handles too).
pub fn schema_json<T: JsonSchema>() -> String {
    let settings = SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    let schema = settings.into_generator().into_root_schema_for::<T>();
    serde_json::to_string(&schema).unwrap_or_else(|_| "{}".to_string())
}

/// Params a category accepts whatever they are (its schema allows any
/// JSON); for categories that take none.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyParams;

impl<'de> serde::Deserialize<'de> for AnyParams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| AnyParams)
    }
}

impl JsonSchema for AnyParams {
    fn schema_name() -> Cow<'static, str> {
        "AnyParams".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "description": "Any JSON value; the category ignores it." })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        /// A tag.
        tag: String,
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Outer {
        /// The image.
        image: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn schema_is_inlined_and_documented() {
        let v: serde_json::Value = serde_json::from_str(&schema_json::<Outer>()).unwrap();
        assert_eq!(v["type"], "object");
        assert_eq!(v["required"], serde_json::json!(["image"]));
        assert_eq!(v["properties"]["image"]["description"], "The image.");
        assert!(v.get("$defs").is_none(), "{v}");
        let text = v.to_string();
        assert!(!text.contains("$ref"), "{text}");
        assert!(text.contains("A tag."), "{text}");
    }
}
