//! A template's `install.json`: the wizard's fields (a JSON-schema-like
//! `schema` per page) and the `binding` that says where each answer goes in
//! `docker-compose.yml`. Answers are checked against the fields here, at
//! submit time.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One wizard field.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Field {
    /// `integer`, `string`, `password` (a string kept secret), `boolean`
    /// (also `number`); absent: any scalar.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Shown to the user.
    #[serde(default)]
    pub title: Option<String>,
    /// Shown to the user.
    #[serde(default)]
    pub description: Option<String>,
    /// An answer is needed (unless the field has a `default`).
    #[serde(default)]
    pub required: bool,
    /// Smallest number allowed.
    #[serde(default)]
    pub minimum: Option<f64>,
    /// Largest number allowed.
    #[serde(default)]
    pub maximum: Option<f64>,
    /// The value the wizard proposes.
    #[serde(default)]
    pub default: Option<Value>,
    /// The only values allowed.
    #[serde(rename = "enum", default)]
    pub choices: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
struct Page {
    #[serde(default)]
    schema: IndexMap<String, Field>,
}

#[derive(Debug, Default, Deserialize)]
struct Binding {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    data: IndexMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct InstallJson {
    #[serde(default)]
    wizard: Vec<Page>,
    #[serde(default)]
    binding: Option<Binding>,
}

/// A parsed `install.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wizard {
    /// Every field of every page, in order.
    pub fields: IndexMap<String, Field>,
    /// Where each field's answer goes: paths into the compose document.
    pub paths: IndexMap<String, Vec<String>>,
}

impl Wizard {
    /// Parse `install.json` text. An empty object (some real templates
    /// ship `{"app": {}, "wizard": [], "env": {}}`) is a wizard with no fields.
    pub fn parse(text: &str) -> Result<Wizard, String> {
        let parsed: InstallJson =
            serde_json::from_str(text).map_err(|e| format!("install.json: {e}"))?;
        let mut fields = IndexMap::new();
        for page in parsed.wizard {
            fields.extend(page.schema);
        }
        let binding = parsed.binding.unwrap_or_default();
        if let Some(file) = &binding.file {
            if file != "docker-compose.yml" {
                return Err(format!(
                    "install.json: binding.file `{file}` is not supported (only docker-compose.yml)"
                ));
            }
        }
        Ok(Wizard {
            fields,
            paths: binding.data,
        })
    }

    /// The fields of type `password`: their answers are secret.
    pub fn secret_fields(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(_, f)| f.is_secret())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Check `answers` (the task's `binding`): every key is a field, every
    /// value fits its field, and required fields without a default are
    /// answered. Errors name the field: `binding.http_port: ...`.
    pub fn check(&self, answers: &Map<String, Value>) -> Result<(), (String, String)> {
        for (name, value) in answers {
            let field = self.fields.get(name).ok_or_else(|| {
                let known: Vec<&str> = self.fields.keys().map(String::as_str).collect();
                (
                    format!("binding.{name}"),
                    format!(
                        "the template's wizard has no such field (fields: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
            check_value(field, value).map_err(|m| (format!("binding.{name}"), m))?;
        }
        for (name, field) in &self.fields {
            if field.required && field.default.is_none() && !answers.contains_key(name) {
                return Err((format!("binding.{name}"), "is required".into()));
            }
        }
        Ok(())
    }
}

impl Field {
    /// Whether the field's answer is secret (type `password`).
    pub fn is_secret(&self) -> bool {
        self.kind.as_deref() == Some("password")
    }
}

fn check_value(field: &Field, value: &Value) -> Result<(), String> {
    if field.is_secret() {
        // The answer is never echoed: it is not shown anywhere else either.
        return match value {
            Value::String(_) => Ok(()),
            _ => Err("must be a string".into()),
        };
    }
    let number = match field.kind.as_deref() {
        Some("integer") => {
            let n = match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => n.as_f64(),
                Value::String(s) => s.trim().parse::<i64>().ok().map(|n| n as f64),
                _ => None,
            };
            Some(n.ok_or_else(|| format!("must be an integer, not {value}"))?)
        }
        Some("number") => {
            let n = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            Some(n.ok_or_else(|| format!("must be a number, not {value}"))?)
        }
        Some("boolean") => {
            if !value.is_boolean() {
                return Err(format!("must be true or false, not {value}"));
            }
            None
        }
        Some("string") => {
            if !value.is_string() {
                return Err(format!("must be a string, not {value}"));
            }
            None
        }
        _ => {
            if value.is_object() || value.is_array() || value.is_null() {
                return Err(format!("must be a single value, not {value}"));
            }
            None
        }
    };
    if let Some(n) = number {
        if let Some(min) = field.minimum {
            if n < min {
                return Err(format!("must be at least {min}"));
            }
        }
        if let Some(max) = field.maximum {
            if n > max {
                return Err(format!("must be at most {max}"));
            }
        }
    }
    if let Some(choices) = &field.choices {
        let same = |c: &Value| {
            c == value
                || matches!((c, value), (Value::Number(a), Value::String(b)) if a.to_string() == b.trim())
        };
        if !choices.iter().any(same) {
            let shown: Vec<String> = choices.iter().map(Value::to_string).collect();
            return Err(format!("must be one of {}", shown.join(", ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GITLAB: &str = r#"{"api_version": "v1", "title": "{{GITLAB_NAME}}",
       "wizard": [{"title": "Ports", "schema": {
           "http_port": {"type": "integer", "title": "HTTP Port", "required": true, "maximum": 65535, "minimum": 1},
           "mode": {"type": "string", "enum": ["a", "b"]},
           "debug": {"type": "boolean", "default": false}}, "form": ["*"]}],
       "binding": {"type": "yaml", "file": "docker-compose.yml",
         "data": {"http_port": ["gitlab.ports[0]", "gitlab.environment.GITLAB_PORT"]}}}"#;

    fn answers(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_qnap_and_empty_install_json() {
        let w = Wizard::parse(GITLAB).unwrap();
        assert_eq!(w.fields.len(), 3);
        assert_eq!(w.paths["http_port"].len(), 2);
        let empty = Wizard::parse(r#"{"app": {}, "wizard": [], "env": {}}"#).unwrap();
        assert!(empty.fields.is_empty() && empty.paths.is_empty());
    }

    #[test]
    fn the_older_master_format_reads_as_no_fields() {
        // `wizard/install.json` as QNAP's master branch may hold it beside
        // the 2.0 file: pages of `items`, no `schema`, no `binding`.
        let old = r#"{"app": {"type": "web", "entry": {"port": "app.web.ports.80"}},
            "wizard": [{"step_title": "{{'SETTINGS' | translate}}",
              "items": [{"type": "textfield", "desc": "",
                "subitems": [{"key": "app.web.ports['80']", "desc": "", "validator": {}}]}]}],
            "env": {"web": {"environment": {"PORT": "app.web.ports.80"}}}}"#;
        let w = Wizard::parse(old).unwrap();
        assert!(w.fields.is_empty() && w.paths.is_empty());
    }

    #[test]
    fn password_fields_are_secret_strings_never_echoed() {
        let w = Wizard::parse(
            r#"{"wizard": [{"schema": {"pw": {"type": "password", "required": true},
                "port": {"type": "integer"}}}]}"#,
        )
        .unwrap();
        assert_eq!(w.secret_fields(), ["pw"]);
        assert!(w.check(&answers(json!({"pw": "s3cr3t"}))).is_ok());
        assert_eq!(
            w.check(&answers(json!({"pw": 12345}))).unwrap_err(),
            ("binding.pw".into(), "must be a string".into())
        );
    }

    #[test]
    fn checks_answers_naming_the_field() {
        let w = Wizard::parse(GITLAB).unwrap();
        assert!(w.check(&answers(json!({"http_port": 8080}))).is_ok());
        assert!(w.check(&answers(json!({"http_port": "8080"}))).is_ok());
        let err = |v| w.check(&answers(v)).unwrap_err();
        assert_eq!(
            err(json!({})),
            ("binding.http_port".into(), "is required".into())
        );
        assert_eq!(err(json!({"http_port": 70000})).1, "must be at most 65535");
        assert_eq!(err(json!({"http_port": 0})).1, "must be at least 1");
        assert_eq!(
            err(json!({"http_port": "x"})).1,
            "must be an integer, not \"x\""
        );
        assert_eq!(
            err(json!({"http_port": 1, "mode": "c"})),
            ("binding.mode".into(), "must be one of \"a\", \"b\"".into())
        );
        assert_eq!(
            err(json!({"http_port": 1, "debug": "yes"})).1,
            "must be true or false, not \"yes\""
        );
        assert_eq!(err(json!({"http_port": 1, "nope": 1})).0, "binding.nope");
    }
}
