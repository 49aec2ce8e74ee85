//! `create_then_wait`: creates one container, reports it as progress 50,
//! then waits until the task is cancelled. A test cancels it there, with
//! the container created, to see the host remove what the run created.

use serde::Deserialize;
use stevedore_sdk::containers::{self, ContainerSpec};
use stevedore_sdk::{task, Category, Error, RuntimeKind};

/// What to create.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `docker` or `lxc`.
    #[serde(rename = "type")]
    kind: String,
    /// Container name.
    name: String,
    /// Image reference, `repository:tag`, already present.
    image: String,
}

/// The category.
pub struct CreateThenWait;

impl Category for CreateThenWait {
    const NAME: &'static str = "create_then_wait";
    const SUMMARY: &'static str = "Create a container, then wait until cancelled";
    const DELETABLE: bool = true;
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
        let spec = ContainerSpec {
            runtime,
            name: p.name,
            image: p.image,
            privileged: false,
            entrypoint: None,
            command: None,
            user: None,
            working_dir: None,
            environment: Vec::new(),
            links: Vec::new(),
            dns: Vec::new(),
            expose_ports: Vec::new(),
            hostname: None,
            ports: Vec::new(),
            cpu_shares: None,
            cpu_time_ms: None,
            memory_bytes: None,
            device_rules: Vec::new(),
            binds: Vec::new(),
            volumes_from: Vec::new(),
            new_volumes: Vec::new(),
            autostart: false,
            labels: Vec::new(),
        };
        let id = containers::create(&spec)?;
        task::progress(50, &format!("created {id}"));
        while !task::sleep(100) {}
        Err(Error::Cancelled)
    }
}

stevedore_sdk::category!(CreateThenWait);
