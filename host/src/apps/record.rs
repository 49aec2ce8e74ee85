//! An application's record (the JSON file its install wrote), its owner
//! and its containers.

use serde_json::{json, Map, Value};
use stevedore_contract::files::APP_COMPOSE;
use stevedore_contract::labels::COMPOSE_PROJECT;

use super::{AppsError, APP_RUNTIME};
use crate::policy::APP_OWNER_FILE;
use crate::runtime::apps::{valid_name, wizard};
use crate::runtime::{AppFile, Backends, CallContext, ContainerSummary, LabelQuery};

/// An installed application's record, as its install wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The application's name (its folder's).
    pub name: String,
    /// The record's fields.
    pub fields: Map<String, Value>,
}

impl Record {
    /// The record `text` of application `name`, parsed.
    pub fn parse(name: &str, text: &str) -> Result<Record, AppsError> {
        match serde_json::from_str(text) {
            Ok(fields) => Ok(Record {
                name: name.to_string(),
                fields,
            }),
            Err(e) => Err(AppsError::Unreadable {
                name: name.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// A text field, `""` when missing or not text.
    fn text(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The Compose project its containers, networks and volumes are labelled with.
    pub fn project(&self) -> &str {
        self.text("project")
    }

    /// Its containers' names, as recorded: in start (dependency) order.
    pub fn containers(&self) -> Vec<String> {
        self.fields
            .get("containers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether its install is still running (`state` is `creating`).
    pub fn creating(&self) -> bool {
        self.fields.get("state").and_then(Value::as_str) == Some("creating")
    }

    /// What `GET apps` lists for it: `container`, `creating`, `yml`,
    /// `template`, `version`.
    pub fn summary(&self) -> Value {
        json!({
            "container": self.containers(),
            "creating": self.creating(),
            "yml": true,
            "template": self.text("template"),
            "version": self.text("version"),
        })
    }
}

/// `Ok` when `name` may be an application's name.
pub fn check_name(name: &str) -> Result<(), AppsError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(AppsError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// Application `name`'s record.
pub async fn load(rt: &Backends, name: &str) -> Result<Record, AppsError> {
    check_name(name)?;
    let text = rt
        .apps
        .app_record(name.to_string())
        .await?
        .ok_or_else(|| AppsError::Unknown {
            name: name.to_string(),
        })?;
    Record::parse(name, &text)
}

/// Every installed application, by name, with its record parsed (or why
/// it could not be): a caller that skips some never sees their errors.
pub async fn records(rt: &Backends) -> Result<Vec<(String, Result<Record, AppsError>)>, AppsError> {
    let raw = rt.apps.app_records().await?;
    Ok(raw
        .into_iter()
        .map(|(name, text)| {
            let record = Record::parse(&name, &text);
            (name, record)
        })
        .collect())
}

/// The user whose task installed application `name`, as the owner file the
/// host wrote at install time says; `None` when it cannot be read.
pub async fn owner(rt: &Backends, cx: &CallContext, name: &str) -> Option<String> {
    rt.apps
        .app_read_file(cx, AppFile::new(name, APP_OWNER_FILE))
        .await
        .ok()
        .map(|owner| owner.trim().to_string())
}

/// The application's containers, in the record's start order (unknown ones last).
pub async fn containers_of(
    rt: &Backends,
    cx: &CallContext,
    record: &Record,
) -> Result<Vec<ContainerSummary>, AppsError> {
    let query = LabelQuery {
        kind: APP_RUNTIME,
        key: COMPOSE_PROJECT.to_string(),
        value: record.project().to_string(),
    };
    let mut found = rt.containers.container_list_labelled(cx, query).await?;
    let order = record.containers();
    found.sort_by_key(|c| {
        order
            .iter()
            .position(|n| *n == c.name)
            .unwrap_or(usize::MAX)
    });
    Ok(found)
}

/// What `GET apps/{name}` answers: the record, with `httpPort`,
/// `createFrom`, `name` and its `containers` (`name`, `id`, `image`, `state`).
pub async fn describe(rt: &Backends, cx: &CallContext, record: Record) -> Result<Value, AppsError> {
    let containers = containers_of(rt, cx, &record).await?;
    let Record { name, mut fields } = record;
    // A string, as recorded: the port the install was given, else the first
    // host port the application's compose file publishes, else "".
    let port = match fields.get("port").and_then(Value::as_u64) {
        Some(p) => p.to_string(),
        None => rt
            .apps
            .app_read_file(cx, AppFile::new(&name, APP_COMPOSE))
            .await
            .ok()
            .and_then(|text| wizard::first_host_port(&text))
            .map(|p| p.to_string())
            .unwrap_or_default(),
    };
    fields.insert("httpPort".into(), port.into());
    // Every application here comes from a template's wizard.
    fields.insert("createFrom".into(), "wizard".into());
    fields.insert("name".into(), name.into());
    fields.insert(
        "containers".into(),
        containers
            .iter()
            .map(|c| {
                json!({"name": c.name, "id": c.id, "image": c.image,
                       "state": if c.running { "running" } else { "stopped" }})
            })
            .collect(),
    );
    Ok(Value::Object(fields))
}
