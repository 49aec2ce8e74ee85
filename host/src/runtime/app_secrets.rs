//! Secret wizard answers in an application's record, at rest.
//!
//! The application plugins write the record (`binding`: the wizard's
//! answers) through the host, and list in `secrets` the answers the
//! template's wizard declares `password`. The host seals each secret answer
//! (those listed, and those whose name looks like a secret,
//! [`is_secret_name`]) under the data folder's `secret.key`, bound to the
//! application and the answer's name, into `sealed`; `binding` keeps
//! `"******"` in its place. So the file holds no answer in clear.
//!
//! The record is shown ([`shown`]: `app-store.record`, `GET apps/{name}`)
//! with the secret answers masked and without `sealed`; only a read of the
//! record file by a task its owner runs (`app-store.read-file`, which the
//! guard lets through for the owner alone) gets them back ([`open`]), which
//! is what `application_upgrade` renders with.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Error, RtResult};
use crate::queue::mask::{is_secret_name, MASK};
use crate::store::secret::SecretBox;

/// The record key listing the answers the plugin says are secret.
const SECRETS: &str = "secrets";
/// The record key holding the sealed answers, by name (base64).
const SEALED: &str = "sealed";

/// What a sealed answer is bound to: it opens for this application and
/// this answer only.
fn aad(app: &str, answer: &str) -> Vec<u8> {
    format!("stevedore app answer\0{app}\0{answer}").into_bytes()
}

fn object(what: &str, text: &str) -> RtResult<Map<String, Value>> {
    serde_json::from_str(text)
        .map_err(|e| Error::InvalidParams(format!("{what}: must be a JSON object: {e}")))
}

fn to_text(record: &Map<String, Value>) -> RtResult<String> {
    serde_json::to_string_pretty(record).map_err(|e| Error::Other(e.to_string()))
}

/// The names of `record`'s answers that are secret.
fn secret_answers(record: &Map<String, Value>) -> Vec<String> {
    let listed: Vec<&str> = record
        .get(SECRETS)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(Value::Object(binding)) = record.get("binding") else {
        return Vec::new();
    };
    binding
        .iter()
        .filter(|(k, v)| !v.is_null() && (listed.contains(&k.as_str()) || is_secret_name(k)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The record text to store for application `app`: `content` (as the
/// plugin wrote it) with its secret answers sealed. An answer written as
/// `"******"` (a plugin writing back a shown record) keeps the sealed value
/// of the `stored` record.
pub fn seal(
    secrets: &SecretBox,
    app: &str,
    content: &str,
    stored: Option<&str>,
) -> RtResult<String> {
    let mut record = object("record", content)?;
    let kept = stored
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
        .and_then(|mut r| r.remove(SEALED))
        .and_then(|s| match s {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let names = secret_answers(&record);
    let mut sealed = Map::new();
    if let Some(Value::Object(binding)) = record.get_mut("binding") {
        for name in names {
            let Some(answer) = binding.get_mut(&name) else {
                continue;
            };
            if answer.as_str() == Some(MASK) {
                if let Some(old) = kept.get(&name) {
                    sealed.insert(name, old.clone());
                }
                continue;
            }
            let plain = serde_json::to_vec(answer).map_err(|e| Error::Other(e.to_string()))?;
            let blob = secrets
                .seal_bound(&aad(app, &name), &plain)
                .map_err(|e| Error::Other(format!("application {app}: {e}")))?;
            sealed.insert(name, Value::String(STANDARD.encode(blob)));
            *answer = Value::String(MASK.to_string());
        }
    }
    record.remove(SEALED);
    if !sealed.is_empty() {
        record.insert(SEALED.into(), Value::Object(sealed));
    }
    to_text(&record)
}

/// The record as anyone may see it: secret answers `"******"` (also in a
/// record stored before answers were sealed), no sealed values.
pub fn shown(text: &str) -> String {
    let Ok(mut record) = serde_json::from_str::<Map<String, Value>>(text) else {
        return text.to_string();
    };
    let names = secret_answers(&record);
    if let Some(Value::Object(binding)) = record.get_mut("binding") {
        for name in names {
            binding.insert(name, Value::String(MASK.to_string()));
        }
    }
    record.remove(SEALED);
    to_text(&record).unwrap_or_else(|_| text.to_string())
}

/// The record of application `app` with its sealed answers opened, for a
/// task of its owner.
pub fn open(secrets: &SecretBox, app: &str, text: &str) -> RtResult<String> {
    let mut record = object("record", text)?;
    let Some(Value::Object(sealed)) = record.remove(SEALED) else {
        return Ok(text.to_string());
    };
    let mut opened = Map::new();
    for (name, blob) in sealed {
        let fail = || {
            Error::Other(format!(
                "application {app}: the sealed answer `{name}` does not open (another secret.key?)"
            ))
        };
        let bytes = blob
            .as_str()
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(fail)?;
        let plain = secrets
            .open_bound(&aad(app, &name), &bytes)
            .map_err(|_| fail())?;
        let value: Value = serde_json::from_slice(&plain).map_err(|_| fail())?;
        opened.insert(name, value);
    }
    if let Some(Value::Object(binding)) = record.get_mut("binding") {
        binding.extend(opened);
    }
    to_text(&record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::secret::KEY_LEN;
    use serde_json::json;

    fn record(binding: Value, secrets: &[&str]) -> String {
        json!({"name": "a1", "binding": binding, "secrets": secrets}).to_string()
    }

    #[test]
    fn secret_answers_are_sealed_shown_masked_and_opened_for_their_app() {
        let key = SecretBox::from_key(&[7u8; KEY_LEN]);
        let written = record(
            json!({"admin_pw": "s3cr3t-1", "DB_TOKEN": "s3cr3t-2", "port": 8080, "none": null}),
            &["admin_pw", "none"],
        );
        let stored = seal(&key, "a1", &written, None).unwrap();
        assert!(!stored.contains("s3cr3t"), "{stored}");
        let r: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(r["binding"]["admin_pw"], MASK);
        assert_eq!(r["binding"]["DB_TOKEN"], MASK);
        assert_eq!(r["binding"]["port"], 8080);
        assert_eq!(r["binding"]["none"], Value::Null);

        let s: Value = serde_json::from_str(&shown(&stored)).unwrap();
        assert!(s.get(SEALED).is_none());
        assert_eq!(s["binding"]["admin_pw"], MASK);

        let o: Value = serde_json::from_str(&open(&key, "a1", &stored).unwrap()).unwrap();
        assert_eq!(o["binding"]["admin_pw"], "s3cr3t-1");
        assert_eq!(o["binding"]["DB_TOKEN"], "s3cr3t-2");
        assert!(o.get(SEALED).is_none());

        // Bound to the application: moved to another, it does not open.
        assert!(open(&key, "a2", &stored).is_err());
        // Another key does not open it.
        assert!(open(&SecretBox::from_key(&[8u8; KEY_LEN]), "a1", &stored).is_err());
    }

    #[test]
    fn a_masked_answer_written_back_keeps_its_sealed_value() {
        let key = SecretBox::from_key(&[7u8; KEY_LEN]);
        let stored = seal(&key, "a1", &record(json!({"pw": "v1"}), &["pw"]), None).unwrap();
        let again = seal(&key, "a1", &shown(&stored), Some(&stored)).unwrap();
        let o: Value = serde_json::from_str(&open(&key, "a1", &again).unwrap()).unwrap();
        assert_eq!(o["binding"]["pw"], "v1");
    }

    #[test]
    fn a_record_stored_in_clear_is_shown_masked() {
        let old = record(
            json!({"pw": "clear", "DB_PASSWORD": "clear2", "x": 1}),
            &["pw"],
        );
        let s = shown(&old);
        assert!(!s.contains("clear"), "{s}");
        let key = SecretBox::from_key(&[7u8; KEY_LEN]);
        assert_eq!(open(&key, "a1", &old).unwrap(), old);
    }
}
