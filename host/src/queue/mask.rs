//! Masking of secrets in the params a task shows.
//!
//! A value is secret when its key is `password` or one of the category's
//! `secret-fields` (any case, at any depth); when it is an entry of a set of
//! named values (a container's `environment`, as `["K=V"]` or `{K: V}`, or an
//! application's wizard answers, `binding`) whose name looks like a secret
//! ([`is_secret_name`]); or when the plugin's `validate` marked it
//! (`task.mark-secret`, a JSON Pointer: a template's `password` fields).

use serde_json::Value;

/// What a masked secret is shown as.
pub const MASK: &str = "******";

/// Keys whose value is a set of named values, whose entries are secret when
/// their name looks like one.
const NAMED_VALUES: &[&str] = &["environment", "binding"];

/// Whether `key` names a secret: `password` (any case) or one of `secret_fields` (any case).
fn is_secret(key: &str, secret_fields: &[String]) -> bool {
    key.eq_ignore_ascii_case("password")
        || secret_fields.iter().any(|f| f.eq_ignore_ascii_case(key))
}

/// Whether a variable or answer name looks like a secret by the usual
/// convention (any case): it contains `PASSWORD`, `PASSWD`, `SECRET` or
/// `TOKEN`, or one of its words (split at anything not a letter or digit)
/// is `KEY`, `APIKEY`, `PASS` or `PWD`. `DB_PASSWORD`, `api_token`,
/// `AWS_SECRET_ACCESS_KEY` and `API-KEY` are; `MONKEY` and `KEYBOARD` are not.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN"]
        .iter()
        .any(|w| upper.contains(w))
        || upper
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| matches!(w, "KEY" | "APIKEY" | "PASS" | "PWD"))
}

fn is_named_values(key: &str) -> bool {
    NAMED_VALUES.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// The name of a `K=V` entry, when it has a value.
fn entry_name(entry: &str) -> Option<&str> {
    entry.split_once('=').map(|(k, _)| k)
}

/// Whether a set of named values holds an entry [`mask_named`] would mask.
fn named_has_secrets(v: &Value) -> bool {
    match v {
        Value::Array(items) => items
            .iter()
            .any(|i| i.as_str().and_then(entry_name).is_some_and(is_secret_name)),
        Value::Object(map) => map.iter().any(|(k, v)| is_secret_name(k) && !v.is_null()),
        _ => false,
    }
}

/// Mask the secret entries of a set of named values: `K=******` in a list,
/// `"******"` in an object.
fn mask_named(v: &mut Value) -> bool {
    let mut any = false;
    match v {
        Value::Array(items) => {
            for item in items {
                let masked = match item.as_str().and_then(entry_name) {
                    Some(k) if is_secret_name(k) => format!("{k}={MASK}"),
                    _ => continue,
                };
                *item = Value::String(masked);
                any = true;
            }
        }
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_name(k) && !val.is_null() {
                    *val = Value::String(MASK.to_string());
                    any = true;
                }
            }
        }
        _ => {}
    }
    any
}

/// Whether any of `pointers` (JSON Pointers a plugin marked secret) names a
/// value of `params` that is not `null`.
pub fn marks_anything(params: &Value, pointers: &[String]) -> bool {
    pointers
        .iter()
        .any(|p| params.pointer(p).is_some_and(|v| !v.is_null()))
}

/// Replace the value at each of `pointers` by `"******"` (`null`s and
/// pointers that name nothing are left alone). Returns whether anything was.
pub fn mask_pointers(params: &mut Value, pointers: &[String]) -> bool {
    let mut any = false;
    for p in pointers {
        if let Some(v) = params.pointer_mut(p).filter(|v| !v.is_null()) {
            *v = Value::String(MASK.to_string());
            any = true;
        }
    }
    any
}

/// A copy of `params` with the value of every secret key replaced by `"******"`,
/// at any depth, inside objects and arrays alike. `null` values stay `null`.
/// Returns the masked value and whether anything was masked.
pub fn mask_secrets(params: &Value, secret_fields: &[String]) -> (Value, bool) {
    let mut out = params.clone();
    let masked = mask_in_place(&mut out, secret_fields);
    (out, masked)
}

/// Whether `params` hold a secret [`mask_secrets`] would mask: most do
/// not, and then no copy is needed.
pub fn has_secrets(params: &Value, secret_fields: &[String]) -> bool {
    match params {
        Value::Object(map) => map.iter().any(|(k, v)| {
            if is_secret(k, secret_fields) {
                !v.is_null()
            } else {
                (is_named_values(k) && named_has_secrets(v)) || has_secrets(v, secret_fields)
            }
        }),
        Value::Array(items) => items.iter().any(|v| has_secrets(v, secret_fields)),
        _ => false,
    }
}

fn mask_in_place(v: &mut Value, secret_fields: &[String]) -> bool {
    let mut any = false;
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret(k, secret_fields) {
                    if !val.is_null() {
                        *val = Value::String(MASK.to_string());
                        any = true;
                    }
                } else {
                    if is_named_values(k) {
                        any |= mask_named(val);
                    }
                    any |= mask_in_place(val, secret_fields);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                any |= mask_in_place(item, secret_fields);
            }
        }
        _ => {}
    }
    any
}

/// The secret values of `full` params: those masked in `shown`, the same
/// params as the task shows them (a value shown as `"******"`, and the
/// value of a `K=******` entry). Longest first, so that masking a text
/// hides a secret that contains another whole.
pub fn secret_values(full: &Value, shown: &Value) -> Vec<String> {
    fn walk(full: &Value, shown: &Value, out: &mut Vec<String>) {
        match (full, shown) {
            (Value::Object(f), Value::Object(s)) => {
                for (k, fv) in f {
                    if let Some(sv) = s.get(k) {
                        walk(fv, sv, out);
                    }
                }
            }
            (Value::Array(f), Value::Array(s)) => {
                for (fv, sv) in f.iter().zip(s) {
                    walk(fv, sv, out);
                }
            }
            (f, Value::String(s)) if s == MASK && f != shown => match f {
                Value::String(text) => out.push(text.clone()),
                Value::Object(_) | Value::Array(_) => collect_leaves(f, out),
                other => out.push(other.to_string()),
            },
            (Value::String(f), Value::String(s)) if f != s => {
                if let (Some((_, value)), Some((_, MASK))) = (f.split_once('='), s.split_once('='))
                {
                    out.push(value.to_string());
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(full, shown, &mut out);
    out.retain(|s| !s.is_empty());
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// Every scalar inside a masked object or array, as text.
fn collect_leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => map.values().for_each(|v| collect_leaves(v, out)),
        Value::Array(items) => items.iter().for_each(|v| collect_leaves(v, out)),
        Value::String(s) => out.push(s.clone()),
        Value::Null => {}
        other => out.push(other.to_string()),
    }
}

/// `text` with every occurrence of each of `secrets` replaced by `"******"`
/// (borrowed when none occurs).
pub fn mask_text<'a>(text: &'a str, secrets: &[String]) -> std::borrow::Cow<'a, str> {
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in secrets {
        if out.contains(s.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_what_the_shown_params_mask() {
        let full = json!({
            "password": "hunter22",
            "environment": ["DB_PASSWORD=s3cr=t", "PLAIN=v"],
            "binding": {"admin_token": 1234, "mode": "a"},
            "auth": {"password": {"deep": "d33p"}},
            "image": "busybox"
        });
        let (shown, _) = mask_secrets(&full, &[]);
        let secrets = secret_values(&full, &shown);
        assert_eq!(secrets, ["hunter22", "s3cr=t", "1234", "d33p"]);
        let line = "login hunter22 with s3cr=t, pin 1234 and d33p on busybox";
        assert_eq!(
            mask_text(line, &secrets),
            "login ****** with ******, pin ****** and ****** on busybox"
        );
        assert!(matches!(
            mask_text("nothing here", &secrets),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(secret_values(&json!({"a": 1}), &json!({"a": 1})).is_empty());
    }

    #[test]
    fn masks_nested_and_in_arrays() {
        let p = json!({
            "image": "busybox",
            "password": "top",
            "auth": {"Password": {"deep": 1}, "user": "u"},
            "registries": [{"token": "t1", "name": "a"}, [{"password": "p2"}], "password"],
            "none": {"password": null}
        });
        let (m, any) = mask_secrets(&p, &["token".to_string()]);
        assert!(any);
        assert_eq!(
            m,
            json!({
                "image": "busybox",
                "password": MASK,
                "auth": {"Password": MASK, "user": "u"},
                "registries": [{"token": MASK, "name": "a"}, [{"password": MASK}], "password"],
                "none": {"password": null}
            })
        );
        let text = m.to_string();
        for secret in ["top", "t1", "p2", "deep"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }

    #[test]
    fn nothing_to_mask() {
        let p = json!([{"type": "docker", "image": "a", "tag": "1"}]);
        let (m, any) = mask_secrets(&p, &[]);
        assert!(!any);
        assert_eq!(m, p);
    }

    /// `has_secrets` answers what `mask_secrets` would: the submit path
    /// stores params unmasked (and unsealed) when it says no.
    #[test]
    fn has_secrets_agrees_with_masking() {
        let token = ["token".to_string()];
        for p in [
            json!({"image": "a"}),
            json!({"password": "x"}),
            json!({"password": null}),
            json!({"auth": {"Token": "t"}}),
            json!([{"name": "a"}, [{"token": "deep"}]]),
            json!([{"name": "a"}, [{"token": null}]]),
            json!("password"),
            json!({"token": {"password": 1}}),
            json!({"environment": ["A=1", "DB_PASSWORD=x"]}),
            json!({"environment": ["A=1", "KEYBOARD=x", "DB_PASSWORD"]}),
            json!({"environment": {"API_KEY": "k"}}),
            json!({"binding": {"admin_token": null, "port": 80}}),
            json!({"nested": {"Environment": ["TOKEN=t"]}}),
        ] {
            for fields in [&token[..], &[]] {
                let (_, masked) = mask_secrets(&p, fields);
                assert_eq!(has_secrets(&p, fields), masked, "{p} with {fields:?}");
            }
        }
    }

    #[test]
    fn secret_names_follow_the_convention() {
        for name in [
            "DB_PASSWORD",
            "mysql_root_password",
            "PASSWD",
            "api_token",
            "AWS_SECRET_ACCESS_KEY",
            "API-KEY",
            "apikey",
            "KEY",
            "DB_PASS",
            "ADMIN_PWD",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "MONKEY",
            "KEYBOARD",
            "PASSTHROUGH",
            "PATH",
            "MODE",
            "http_port",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn environment_and_binding_entries_are_masked_by_name() {
        let p = json!({
            "environment": ["DB_PASSWORD=s1", "PLAIN=v", "NOVALUE", "api_key=s2=x"],
            "binding": {"admin_token": "s3", "http_port": 80, "mode": "a"},
            "labels": {"TOKEN": "not a set of named values"}
        });
        let (m, any) = mask_secrets(&p, &[]);
        assert!(any);
        assert_eq!(
            m,
            json!({
                "environment": ["DB_PASSWORD=******", "PLAIN=v", "NOVALUE", "api_key=******"],
                "binding": {"admin_token": MASK, "http_port": 80, "mode": "a"},
                "labels": {"TOKEN": "not a set of named values"}
            })
        );
    }

    #[test]
    fn marked_pointers_are_masked() {
        let p = json!({"binding": {"admin_pw": "s", "none": null, "a/b": 1}});
        let marks = [
            "/binding/admin_pw".to_string(),
            "/binding/none".to_string(),
            "/binding/a~1b".to_string(),
            "/nothing".to_string(),
        ];
        assert!(marks_anything(&p, &marks));
        assert!(!marks_anything(&p, &marks[1..2]));
        let mut m = p.clone();
        assert!(mask_pointers(&mut m, &marks));
        assert_eq!(
            m,
            json!({"binding": {"admin_pw": MASK, "none": null, "a/b": MASK}})
        );
    }
}
