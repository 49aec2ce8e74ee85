//! Masking of secrets in the params a task shows.

use serde_json::Value;

/// What a masked secret is shown as.
pub const MASK: &str = "******";

/// Whether `key` names a secret: `password` (any case) or one of `secret_fields` (any case).
fn is_secret(key: &str, secret_fields: &[String]) -> bool {
    key.eq_ignore_ascii_case("password")
        || secret_fields.iter().any(|f| f.eq_ignore_ascii_case(key))
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
                has_secrets(v, secret_fields)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        ] {
            for fields in [&token[..], &[]] {
                let (_, masked) = mask_secrets(&p, fields);
                assert_eq!(has_secrets(&p, fields), masked, "{p} with {fields:?}");
            }
        }
    }
}
