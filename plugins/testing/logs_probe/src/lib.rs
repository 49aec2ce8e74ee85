//! `logs_probe`: reads the tail of a container's log through
//! `containers.logs` and ends with it, so a test can see what a plugin is
//! lent of whose container.

use serde::Deserialize;
use stevedore_sdk::{containers, task, Category, Error, RuntimeKind};

/// Whose log to read.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `docker` or `lxc`.
    #[serde(rename = "type")]
    kind: String,
    /// Container id or name.
    container: String,
    /// How many lines from the end.
    tail: u32,
}

/// The category.
pub struct LogsProbe;

impl Category for LogsProbe {
    const NAME: &'static str = "logs_probe";
    const SUMMARY: &'static str = "End with the tail of a container's log";
    const CAPABILITIES: &'static [&'static str] = &["containers"];
    type Params = Params;
    fn validate(p: &Params) -> Result<(), Error> {
        match p.kind.as_str() {
            "docker" | "lxc" => Ok(()),
            _ => Err(Error::invalid("type", "must be `docker` or `lxc`")),
        }
    }
    fn run(p: Params) -> Result<Option<String>, Error> {
        let runtime = if p.kind == "lxc" {
            RuntimeKind::Lxc
        } else {
            RuntimeKind::Docker
        };
        let log = containers::logs(runtime, &p.container, p.tail)?;
        task::progress(100, "read");
        Ok(Some(format!("log: {}", log.trim_end())))
    }
}

stevedore_sdk::category!(LogsProbe);
